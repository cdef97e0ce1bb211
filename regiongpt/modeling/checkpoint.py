"""Checkpoints: build a model from a config with its pretrained parts, save and load it.

A checkpoint directory holds ``config.json`` (:class:`RegionGPTConfig`), ``model.safetensors``
and the tokenizer files. Components named in ``config.pretrained_parts`` are loaded from their
source (an offline registry name, a local path or a hub id) and their frozen weights are left
out of ``model.safetensors`` (LoRA adapters on them are kept), so a checkpoint of the embedded
default model is about 12 MB. Directories are written atomically (temporary directory + rename).
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import warnings
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from regiongpt.atomic import replace_directory
from regiongpt.modeling.configuration import RegionGPTConfig
from regiongpt.modeling.modeling import RegionGPTForConditionalGeneration
from regiongpt.modeling.pretrained import (
    efficientnet_lite0_weights,
    load_language_model,
    transformers_progress_bars,
)
from regiongpt.modeling.region_encoders import build_region_encoder
from regiongpt.modeling.vision import EfficientNetLiteTower, HFVisionTower, build_vision_tower

logger = logging.getLogger(__name__)

WEIGHTS_NAME = "model.safetensors"


def load_vision_tower(config: RegionGPTConfig, source: str | None) -> nn.Module:
    tower = build_vision_tower(config)
    if source is None:
        return tower
    if isinstance(tower, EfficientNetLiteTower):
        if source != "efficientnet-lite0":
            raise ValueError(f"EfficientNet-Lite towers load from 'efficientnet-lite0', got {source!r}")
        tower.model.load_state_dict(efficientnet_lite0_weights())
        return tower
    assert isinstance(tower, HFVisionTower)
    model = type(tower.model).from_pretrained(source, config=config.vision_config)
    return HFVisionTower(config.vision_config, config.vision_feature_layers, config.vision_token_layer, model)


def apply_lora(model: RegionGPTForConditionalGeneration, lora: dict) -> None:
    """Wrap the LM with peft LoRA adapters (``lora``: LoraConfig keyword arguments)."""
    from peft import LoraConfig, get_peft_model

    with warnings.catch_warnings():  # peft reads a property transformers 5.24 deprecates; not ours to act on
        warnings.filterwarnings("ignore", "`is_gradient_checkpointing` is deprecated", FutureWarning)
        model.language_model = get_peft_model(model.language_model, LoraConfig(**lora))
    model.config.lora = dict(lora)


def extend_lora(model: RegionGPTForConditionalGeneration, lora: dict) -> None:
    """Put LoRA adapters on more of the LM's modules, keeping the trained ones.

    ``lora`` must equal ``model.config.lora`` except for a ``target_modules`` list that contains
    the present one; the new adapters start as zero updates (peft's init), so the model's outputs
    do not change until they are trained."""
    present = model.config.lora
    if not present:
        raise ValueError("extend_lora needs a model with LoRA adapters; use apply_lora")
    old_targets, new_targets = present.get("target_modules"), lora.get("target_modules")
    others_differ = {k: v for k, v in present.items() if k != "target_modules"} != {
        k: v for k, v in lora.items() if k != "target_modules"
    }
    if (
        others_differ
        or not isinstance(old_targets, list)
        or not isinstance(new_targets, list)
        or not set(old_targets) <= set(new_targets)
    ):
        raise ValueError(
            f"LoRA {lora} cannot continue the model's LoRA {present}: only a target_modules list that "
            "contains the present one may change"
        )
    if any(getattr(module, "merged", False) for module in model.language_model.modules()):
        model.language_model.unmerge_adapter()  # (from_pretrained merges) unload() would keep the merge
    trained = {k: v.detach().clone() for k, v in model.language_model.state_dict().items() if "lora_" in k}
    model.language_model = model.language_model.unload()  # the base model, adapters removed unmerged
    apply_lora(model, lora)
    _, unexpected = model.language_model.load_state_dict(trained, strict=False)
    if unexpected:
        raise RuntimeError(f"adapters did not map onto the extended LoRA model: {unexpected[:5]}")


def build_model(
    config: RegionGPTConfig,
    dtype: torch.dtype = torch.float32,
    language_model: nn.Module | None = None,
) -> RegionGPTForConditionalGeneration:
    """A model for ``config``: pretrained parts loaded, everything else freshly initialised
    (``language_model``: one already built, e.g. by :func:`stored_language_model`)."""
    parts = config.pretrained_parts
    unknown = sorted(set(parts) - {"vision_tower", "language_model"})
    if unknown:
        raise ValueError(f"pretrained_parts may name vision_tower and language_model, got {unknown}")
    tower = load_vision_tower(config, parts.get("vision_tower")) if "vision_tower" in parts else None
    if language_model is None and "language_model" in parts:
        language_model = load_language_model(parts["language_model"], dtype)
    model = RegionGPTForConditionalGeneration(config, vision_tower=tower, language_model=language_model)
    if config.lora:
        lora = config.lora
        config.lora = None
        apply_lora(model, lora)
    return model.to(dtype)


def stored_language_model(
    config: RegionGPTConfig, state: dict[str, torch.Tensor], dtype: torch.dtype
) -> nn.Module | None:
    """The language model made straight from a checkpoint's weights ``state``, or ``None`` when
    the checkpoint does not store it (a pretrained part).

    transformers builds it on the meta device and loads into that, so a converted 7B checkpoint
    is never randomly initialised in float32 first (minutes and ~28 GB). Base weights under LoRA
    (``base_model.model.*.base_layer.weight``, ``*.original_module.*``) map back to the plain
    model's names; adapters and trained copies load afterwards with the whole checkpoint."""
    if "language_model" in config.pretrained_parts:
        return None
    from transformers import MODEL_FOR_CAUSAL_LM_MAPPING

    prefix = "language_model."
    lm_state = {}
    for key, tensor in state.items():
        if not key.startswith(prefix) or "lora_" in key or ".modules_to_save." in key:
            continue
        name = key[len(prefix) :]
        if config.lora:  # peft's wrappers: LoRA layers and modules_to_save copies
            name = name.removeprefix("base_model.model.").replace(".base_layer.", ".")
            name = name.replace(".original_module.", ".")
        lm_state[name] = tensor
    if not lm_state:
        return None
    model_class = MODEL_FOR_CAUSAL_LM_MAPPING.get(type(config.text_config), None)
    if model_class is None:
        raise ValueError(
            f"no causal LM class in transformers for text_config {type(config.text_config).__name__}"
        )
    return model_class.from_pretrained(None, config=config.text_config, state_dict=lm_state, dtype=dtype)


def _from_pretrained_part(key: str, parts: dict[str, str]) -> bool:
    return key.split(".", 1)[0] in parts and "lora_" not in key


def checkpoint_state(
    model: RegionGPTForConditionalGeneration, state_dict: dict[str, torch.Tensor] | None = None
) -> dict[str, torch.Tensor]:
    """The weights a checkpoint stores: all but the frozen pretrained parts; shared tensors once.

    ``state_dict``: an already gathered state dict (e.g. from FSDP/DeepSpeed); default the model's,
    with LoRA adapters unmerged (``RegionGPT.from_pretrained`` merges them into the base weights for
    inference; a checkpoint keeps base and adapter apart)."""
    if state_dict is not None:
        return _kept(state_dict, model.config.pretrained_parts)
    language_model = model.language_model
    if not any(getattr(module, "merged", False) for module in language_model.modules()):
        return _kept(model.state_dict(), model.config.pretrained_parts)
    language_model.unmerge_adapter()
    try:  # copies, since merging again changes the base weights in place
        return {key: t.clone() for key, t in _kept(model.state_dict(), model.config.pretrained_parts).items()}
    finally:
        language_model.merge_adapter()


def _kept(state_dict: dict[str, torch.Tensor], parts: dict[str, str]) -> dict[str, torch.Tensor]:
    state, seen = {}, set()
    for key, tensor in state_dict.items():
        if _from_pretrained_part(key, parts):
            continue
        pointer = (tensor.data_ptr(), tensor.shape, tensor.stride())
        if pointer in seen:  # tied weight
            continue
        seen.add(pointer)
        state[key] = tensor.detach().to("cpu").contiguous()
    return state


def save_checkpoint(
    model: RegionGPTForConditionalGeneration,
    out_dir: str | Path,
    tokenizer=None,
    state_dict: dict[str, torch.Tensor] | None = None,
) -> Path:
    """Write ``config.json``, ``model.safetensors`` (and the tokenizer) atomically into ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        state = checkpoint_state(model, state_dict)
        save_file(state, str(tmp / WEIGHTS_NAME), metadata={"format": "pt", "producer": "regiongpt"})
        model.config.save_pretrained(tmp)
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)
        os.chmod(tmp, 0o755)  # mkdtemp makes 0700 directories
        for written in tmp.iterdir():
            os.chmod(written, 0o644)
        replace_directory(tmp, out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out_dir


def load_checkpoint(
    path: str | Path,
    dtype: torch.dtype = torch.float32,
    region_overrides: dict | None = None,
    progress: bool = True,
    vision_overrides: dict | None = None,
) -> RegionGPTForConditionalGeneration:
    """Load a checkpoint directory written by :func:`save_checkpoint`.

    ``region_overrides`` changes the saved region encoder settings first (e.g. ``{"box_embedding":
    True}`` to extend a trained model): region encoder weights that exist only with the change keep
    their initialisation (logged); any other missing weight, or one whose shape the change alters,
    is a ValueError. ``vision_overrides`` changes vision tower settings the same way (e.g. more
    EfficientNet ``feature_blocks`` for ``fine_levels``; a frozen pretrained tower's weights are
    unchanged). ``progress=False`` silences transformers' "Loading weights" bars."""
    path = Path(path)
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"{path} is not a regiongpt checkpoint (no config.json)")
    if not (path / WEIGHTS_NAME).is_file():
        raise FileNotFoundError(f"{path} has no {WEIGHTS_NAME}")
    config = RegionGPTConfig.from_pretrained(path)
    saved_region = config.region
    config.override_vision(vision_overrides or {})
    config.override_region(region_overrides or {})
    state = load_file(str(path / WEIGHTS_NAME))
    with transformers_progress_bars(progress):
        model = build_model(config, dtype, language_model=stored_language_model(config, state, dtype))
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as error:  # shapes differ: the override changed a trained layer
        first = str(error).strip().splitlines()[-1].strip()
        overrides = {**(vision_overrides or {}), **(region_overrides or {})}
        raise ValueError(
            f"{path}: weights do not fit the model{' with ' + str(overrides) if overrides else ''}: {first}"
        ) from None
    if unexpected:
        raise ValueError(f"{path / WEIGHTS_NAME} holds weights this model does not have: {unexpected[:5]}")
    new = set()
    if region_overrides:
        before = build_region_encoder(saved_region, model.vision_tower).state_dict()
        new = {f"region_encoder.{key}" for key in model.region_encoder.state_dict().keys() - before.keys()}
    really_missing = sorted(set(missing) & set(checkpoint_state(model)))
    fresh = [key for key in really_missing if key in new]
    if fresh:
        logger.warning(
            "%s: %d weights new with %s keep their initialisation: %s",
            path,
            len(fresh),
            region_overrides,
            fresh[:5],
        )
    lacking = [key for key in really_missing if key not in new]
    if lacking:
        raise ValueError(f"{path / WEIGHTS_NAME} lacks weights: {lacking[:5]} ({len(lacking)} in all)")
    return model.to(dtype).eval()
