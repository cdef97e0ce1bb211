"""Shared pieces of the reliability tests: hypothesis settings and a counter of tried cases."""

from __future__ import annotations

from collections import Counter
from typing import Any

from hypothesis import HealthCheck

#: Tried inputs per property, printed in pytest's terminal summary (see conftest.py).
CASES: Counter[str] = Counter()

#: Bounded, reproducible hypothesis runs (the machine is shared with a training run).
PROPS: dict[str, Any] = {
    "deadline": None,
    "derandomize": True,
    "database": None,
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
}


def count(name: str, n: int = 1) -> None:
    """Record ``n`` tried cases of property ``name``."""
    CASES[name] += n
