"""Shared conversion machinery: reading foreign checkpoints, checking shapes, writing ours.

* :class:`WeightFiles` reads a checkpoint directory tensor by tensor from ``*.safetensors`` or
  ``pytorch_model*.bin`` shards (``torch.load(weights_only=True)``, never arbitrary pickles).
* :func:`meta_model` builds our model on the meta device (no memory for a 7B model);
  :func:`fresh_parameters` gives newly initialised components real weights;
  :func:`write_checkpoint` checks every key and shape and writes atomically via ``save_checkpoint``.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from safetensors import safe_open
from torch import nn
from tqdm.auto import tqdm

from regiongpt.modeling.configuration import RegionGPTConfig
from regiongpt.modeling.modeling import RegionGPTForConditionalGeneration


def note(message: str) -> None:
    """A progress or advisory line on stderr."""
    print(f"note: {message}", file=sys.stderr)


class ConversionError(ValueError):
    """A problem with the user's inputs (paths, layouts, shapes), reported as one line."""


def require_dir(path: str | Path, what: str) -> Path:
    path = Path(path)
    if not path.exists():
        raise ConversionError(f"{what} {path} does not exist")
    if not path.is_dir():
        raise ConversionError(f"{what} {path} is not a directory")
    return path


def read_json(path: Path) -> dict:
    if not path.is_file():
        raise ConversionError(f"missing file {path}")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ConversionError(f"{path} is not valid JSON: {error}") from None


class WeightFiles:
    """The tensors of a checkpoint directory, read one file at a time.

    Accepts ``model.safetensors``, sharded ``model-*.safetensors`` (with or without the index),
    ``pytorch_model.bin`` or ``pytorch_model-*.bin`` shards. ``.bin`` files are read with
    ``torch.load(weights_only=True)`` (memory-mapped where the file format allows)."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = require_dir(directory, "checkpoint directory")
        self._bin_cache: tuple[Path, dict[str, torch.Tensor]] | None = None  # _discover may read .bin
        self._key_file = self._discover()

    def _discover(self) -> dict[str, Path]:
        d = self.directory
        for index_name in ("model.safetensors.index.json", "pytorch_model.bin.index.json"):
            if (d / index_name).is_file():
                weight_map = read_json(d / index_name).get("weight_map") or {}
                missing = sorted({f for f in weight_map.values() if not (d / f).is_file()})
                if missing:
                    raise ConversionError(f"{d / index_name} names shard(s) that are missing: {missing[:3]}")
                return {key: d / name for key, name in weight_map.items()}
        files = sorted(d.glob("*.safetensors")) or sorted(d.glob("pytorch_model*.bin"))
        if not files:
            raise ConversionError(
                f"no weights in {d}: expected model.safetensors, model-*.safetensors or pytorch_model*.bin"
            )
        mapping: dict[str, Path] = {}
        for file in files:
            for key in self._file_keys(file):
                mapping[key] = file
        return mapping

    def _file_keys(self, file: Path) -> list[str]:
        if file.suffix == ".safetensors":
            with safe_open(str(file), framework="pt") as handle:
                return list(handle.keys())
        return list(self._load_bin(file))

    def _load_bin(self, file: Path) -> dict[str, torch.Tensor]:
        if self._bin_cache is not None and self._bin_cache[0] == file:
            return self._bin_cache[1]
        self._bin_cache = None
        try:
            try:
                state = torch.load(file, map_location="cpu", weights_only=True, mmap=True)
            except RuntimeError:  # legacy (non-zip) format cannot be memory-mapped
                state = torch.load(file, map_location="cpu", weights_only=True)
        except Exception as error:  # noqa: BLE001 - unpickling errors come in many types
            raise ConversionError(f"cannot read {file} as a plain tensor file: {error}") from None
        if not isinstance(state, dict):
            raise ConversionError(f"{file} does not hold a state dict (got {type(state).__name__})")
        self._bin_cache = (file, state)
        return state

    def keys(self) -> list[str]:
        return list(self._key_file)

    def __contains__(self, key: str) -> bool:
        return key in self._key_file

    def __len__(self) -> int:
        return len(self._key_file)

    def get(self, key: str) -> torch.Tensor:
        if key not in self._key_file:
            raise ConversionError(f"{self.directory} has no tensor {key!r}")
        file = self._key_file[key]
        if file.suffix == ".safetensors":
            with safe_open(str(file), framework="pt") as handle:
                return handle.get_tensor(key)
        return self._load_bin(file)[key]

    def items(self, desc: str | None = None, progress: bool = True) -> Iterator[tuple[str, torch.Tensor]]:
        """All tensors, file by file (so each ``.bin`` shard is loaded once)."""
        by_file: dict[Path, list[str]] = {}
        for key, file in self._key_file.items():
            by_file.setdefault(file, []).append(key)
        bar = tqdm(total=len(self._key_file), desc=desc, disable=not progress, unit="tensor")
        for file, keys in by_file.items():
            if file.suffix == ".safetensors":
                with safe_open(str(file), framework="pt") as handle:
                    for key in keys:
                        yield key, handle.get_tensor(key)
                        bar.update()
            else:
                state = self._load_bin(file)
                for key in keys:
                    yield key, state[key]
                    bar.update()
        bar.close()


@contextmanager
def quiet_transformers() -> Iterator[None]:
    """Silence transformers' load reports (e.g. a CLIP text tower left out on purpose)."""
    from transformers.utils import logging

    level = logging.get_verbosity()
    logging.set_verbosity_error()
    try:
        yield
    finally:
        logging.set_verbosity(level)


def meta_model(config: RegionGPTConfig) -> RegionGPTForConditionalGeneration:
    """Our model with every weight on the meta device: the layout without the memory."""
    with torch.device("meta"):
        return RegionGPTForConditionalGeneration(config)


def fresh_parameters(module: nn.Module, prefix: str, seed: int = 0) -> dict[str, torch.Tensor]:
    """Materialise a meta ``module`` with PyTorch's default initialisation (as ``RegionGPTForConditionalGeneration``
    leaves its own layers); returns its state under ``prefix``."""
    module.to_empty(device="cpu")
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        for sub in module.modules():
            if next(sub.parameters(recurse=False), None) is None:
                continue
            if not hasattr(sub, "reset_parameters"):
                raise RuntimeError(f"cannot initialise {type(sub).__name__} in {prefix}: no reset_parameters")
            sub.reset_parameters()
    finally:
        torch.random.set_rng_state(generator_state)
    return {f"{prefix}{key}": tensor for key, tensor in module.state_dict().items()}


def check_shape(key: str, tensor: torch.Tensor, expected: tuple[int, ...], source: str = "") -> None:
    if tuple(tensor.shape) != tuple(expected):
        where = f" (from {source})" if source else ""
        raise ConversionError(f"{key}{where}: shape {tuple(tensor.shape)}, expected {tuple(expected)}")


def check_state(model: nn.Module, state: dict[str, torch.Tensor], skip: tuple[str, ...] = ()) -> None:
    """Every key of ``model`` present in ``state`` with the same shape, and nothing else; keys of the
    components named in ``skip`` (loaded from their own source at load time) must be absent."""
    expected = {
        key: tuple(t.shape) for key, t in model.state_dict().items() if key.split(".", 1)[0] not in skip
    }
    missing = sorted(set(expected) - set(state))
    extra = sorted(set(state) - set(expected))
    if missing:
        raise ConversionError(f"converted weights lack {len(missing)} tensor(s) of the model: {missing[:4]}")
    if extra:
        raise ConversionError(f"converted weights hold {len(extra)} tensor(s) the model lacks: {extra[:4]}")
    for key, shape in expected.items():
        check_shape(key, state[key], shape)


def cast_state(state: dict[str, torch.Tensor], dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """Floating tensors to ``dtype``; tensors shared under several keys (tied weights) stay shared."""
    done: dict[int, torch.Tensor] = {}
    out = {}
    for key, tensor in state.items():
        if id(tensor) not in done:
            done[id(tensor)] = tensor.to(dtype) if tensor.is_floating_point() else tensor
        out[key] = done[id(tensor)]
    return out


def guard_output(out: Path, *inputs: Path | None) -> None:
    """Refuse to replace an input or a directory that is not a regiongpt checkpoint."""
    resolved = out.resolve()
    for path in inputs:
        if path is not None and (resolved == path.resolve() or path.resolve() in resolved.parents):
            raise ConversionError(f"output {out} must lie outside the input {path}")
    if out.exists():
        if not out.is_dir():
            raise ConversionError(f"output {out} exists and is not a directory")
        config = out / "config.json"
        try:
            is_ours = config.is_file() and json.loads(config.read_text()).get("model_type") == "regiongpt"
        except (json.JSONDecodeError, AttributeError):
            is_ours = False
        if any(out.iterdir()) and not is_ours:
            raise ConversionError(f"refusing to replace {out}: it exists and is not a regiongpt checkpoint")


def write_checkpoint(
    model: RegionGPTForConditionalGeneration,
    state: dict[str, torch.Tensor],
    tokenizer,
    out: Path,
    dtype: torch.dtype,
) -> Path:
    """Check ``state`` against ``model``'s layout, cast it, and write our checkpoint atomically."""
    from regiongpt.modeling.checkpoint import save_checkpoint

    check_state(model, state, skip=tuple(model.config.pretrained_parts))
    note(f"writing {out} ({sum(t.numel() for t in state.values()) / 1e6:.1f}M parameters, {dtype})")
    return save_checkpoint(model, out, tokenizer=tokenizer, state_dict=cast_state(state, dtype))


def parse_dtype(name: str | None) -> torch.dtype | None:
    """``None``/``"auto"`` -> ``None`` (keep the source's dtype); else a floating torch dtype."""
    if name in (None, "auto"):
        return None
    table = {
        "float32": torch.float32,
        "fp32": torch.float32,
        "float16": torch.float16,
        "fp16": torch.float16,
        "bfloat16": torch.bfloat16,
        "bf16": torch.bfloat16,
    }
    if name not in table:
        raise ConversionError(f"unknown dtype {name!r}; choose auto, float32, float16 or bfloat16")
    return table[name]
