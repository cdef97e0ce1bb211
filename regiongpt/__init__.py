"""regiongpt: region-level vision-language models (RegionGPT and GPT4RoI) in one toolkit."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from regiongpt.regions import Box, Mask, Point
from regiongpt.tasks import Task

__all__ = ["Box", "Mask", "Point", "RegionGPT", "Task", "__version__"]
__version__ = "0.1.0"

if TYPE_CHECKING:
    from regiongpt.api import RegionGPT


def __getattr__(name: str) -> Any:
    if name == "RegionGPT":  # imported lazily: keeps `import regiongpt` free of torch work
        from regiongpt.api import RegionGPT

        return RegionGPT
    raise AttributeError(f"module 'regiongpt' has no attribute {name!r}")
