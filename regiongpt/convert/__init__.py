"""Converters from public checkpoints (LLaVA-1.5 in HF format, GPT4RoI's delta) to ours.

Imported lazily so that mounting :data:`regiongpt.convert.commands.convert_app` in the CLI stays cheap.
"""

from __future__ import annotations

from typing import Any

_EXPORTS = {
    "convert_llava_hf": "regiongpt.convert.llava_hf",
    "convert_gpt4roi": "regiongpt.convert.gpt4roi",
    "ConversionError": "regiongpt.convert.weights",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'regiongpt.convert' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(_EXPORTS[name]), name)
