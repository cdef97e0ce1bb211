"""The keyword a transformers language model takes its key/value cache under."""

from __future__ import annotations

import functools
import inspect
from typing import Any

import torch


@functools.cache
def _cache_keyword(decoder_class: type) -> str:
    parameters = inspect.signature(decoder_class.forward).parameters  # (follows functools.wraps)
    return "cache" if "cache" in parameters else "past_key_values"


def cache_argument(language_model: torch.nn.Module, cache: Any) -> dict[str, Any]:
    """``{keyword: cache}`` for a forward or ``generate`` call of ``language_model`` (or of its
    decoder): ``cache`` where its decoder takes that (transformers >= 5.24, which deprecates
    ``past_key_values``), else ``past_key_values``."""
    return {_cache_keyword(type(language_model.get_decoder())): cache}
