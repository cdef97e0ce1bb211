"""HF-format LLaVA-1.5 (``LlavaForConditionalGeneration``) -> a regiongpt checkpoint.

The CLIP tower, the multi-modal projector (Linear-GELU-Linear) and the LM are taken over unchanged;
the region encoder (and, for ``gpt4roi``, the region projector) is freshly initialised. The image
path then equals LLaVA's: hidden state ``vision_feature_layer`` (CLS dropped, all ``g x g`` patch
tokens) -> the LLaVA projector -> the LM, with our image placeholders where LLaVA puts ``<image>``.

That needs two region-encoder settings: ``image_projector="mlp"`` (for ``gpt4roi``, whose image
projector is otherwise a Linear) and ``image_token_source="tower"`` (for ``regiongpt``, whose image
tokens otherwise come from the refined map). With ``regiongpt``'s shared connector the LLaVA
projector becomes the connector shared by image and region features.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Literal

import torch
from transformers import AutoConfig, AutoTokenizer

from regiongpt.convert.gpt4roi import pyramid_layers
from regiongpt.convert.templates import LLAVA_SYSTEM, VICUNA_V1_TEMPLATE
from regiongpt.convert.weights import (
    ConversionError,
    fresh_parameters,
    guard_output,
    meta_model,
    note,
    quiet_transformers,
    require_dir,
    write_checkpoint,
)
from regiongpt.modeling.configuration import RegionEncoderConfig, RegionGPTConfig, preset_config
from regiongpt.processing import RegionGPTProcessor

#: Region-encoder settings this conversion relies on (see the module docstring).
REQUIRED_SETTINGS = ("image_projector", "image_token_source")


def _check_llava_config(config, src: Path) -> None:
    if config.model_type != "llava":
        raise ConversionError(
            f"{src / 'config.json'} describes a {config.model_type!r} model, not LLaVA ('llava')"
        )
    vision = config.vision_config
    if vision.model_type != "clip_vision_model":
        raise ConversionError(f"only CLIP vision towers convert exactly; {src} has {vision.model_type!r}")
    if not isinstance(config.vision_feature_layer, int):
        raise ConversionError(f"vision_feature_layer must be one layer, got {config.vision_feature_layer!r}")
    if config.vision_feature_select_strategy != "default":
        raise ConversionError(
            f"vision_feature_select_strategy {config.vision_feature_select_strategy!r} keeps the CLS token; "
            "only 'default' (CLS dropped) is supported"
        )
    if config.projector_hidden_act != "gelu" or not getattr(config, "multimodal_projector_bias", True):
        raise ConversionError(
            f"the projector must be Linear(bias)-GELU-Linear(bias); {src} has act "
            f"{config.projector_hidden_act!r}, bias {config.multimodal_projector_bias}"
        )


def _region_config(encoder: str, width: int, grid: int) -> RegionEncoderConfig:
    known = {f.name for f in dataclasses.fields(RegionEncoderConfig)}
    lacking = [name for name in REQUIRED_SETTINGS if name not in known]
    if lacking:
        raise ConversionError(
            f"this regiongpt version cannot express LLaVA's image path: RegionEncoderConfig lacks {lacking}"
        )
    region = preset_config(encoder).region
    if encoder == "gpt4roi":
        return dataclasses.replace(
            region,
            hidden_size=width,
            group_norm_groups=math.gcd(region.group_norm_groups, width),
            image_token_grid=grid,
            level_sizes=[grid * 8, grid * 4, grid * 2, grid],
            image_projector="mlp",
        )
    return dataclasses.replace(region, hidden_size=width, image_token_grid=grid, image_token_source="tower")


def llava_region_config(llava_config, encoder: str) -> RegionGPTConfig:
    """Our config reproducing ``llava_config``'s image path, with ``encoder``'s region encoder."""
    vision, text = llava_config.vision_config, llava_config.text_config
    grid = vision.image_size // vision.patch_size
    token_layer = llava_config.vision_feature_layer
    n_hidden = vision.num_hidden_layers + 1
    if encoder == "gpt4roi":
        layers = pyramid_layers(n_hidden, token_layer, levels=4, clamp=True)
    else:
        layers = [token_layer]
    return RegionGPTConfig(
        vision_config=vision,
        text_config=text,
        vision_feature_layers=layers,
        vision_token_layer=token_layer,
        region_config=_region_config(encoder, int(vision.hidden_size), grid),
        image_resize="pad",
        system_prompt=LLAVA_SYSTEM,
    )


def map_llava_key(key: str, projector: str) -> str:
    """A ``LlavaForConditionalGeneration`` state-dict key -> ours (``projector``: where the MLP goes)."""
    table = (
        ("model.vision_tower.", "vision_tower.model."),
        ("model.language_model.", "language_model.model."),
        ("lm_head.", "language_model.lm_head."),
        ("model.multi_modal_projector.linear_1.", f"{projector}.0."),
        ("model.multi_modal_projector.linear_2.", f"{projector}.2."),
    )
    for old, new in table:
        if key.startswith(old):
            return new + key[len(old) :]
    raise ConversionError(f"unexpected LLaVA weight {key!r}: not a vision tower, projector or LM tensor")


def convert_llava_hf(
    src: str | Path,
    out: str | Path,
    encoder: Literal["regiongpt", "gpt4roi"] = "regiongpt",
    dtype: torch.dtype | None = None,
    seed: int = 0,
) -> Path:
    """Convert the LLaVA checkpoint directory ``src`` into our checkpoint ``out``; returns ``out``.

    ``dtype``: of the written weights (default: the LLaVA LM's). ``seed``: for the new region encoder."""
    from transformers import LlavaForConditionalGeneration

    if encoder not in ("regiongpt", "gpt4roi"):
        raise ConversionError(f"encoder must be 'regiongpt' or 'gpt4roi', got {encoder!r}")
    src, out = require_dir(src, "LLaVA checkpoint"), Path(out)
    guard_output(out, src)
    if not (src / "config.json").is_file():
        raise ConversionError(f"missing file {src / 'config.json'}")
    llava_config = AutoConfig.from_pretrained(src)
    _check_llava_config(llava_config, src)
    try:
        tokenizer = AutoTokenizer.from_pretrained(src)
    except (OSError, ValueError) as error:
        raise ConversionError(f"cannot load the tokenizer from {src}: {error}") from None
    image_id = int(llava_config.image_token_index)
    image_token = tokenizer.convert_ids_to_tokens(image_id)
    if image_token is None or tokenizer.convert_tokens_to_ids(image_token) != image_id:
        raise ConversionError(f"the tokenizer in {src} has no token for LLaVA's image_token_index {image_id}")

    config = llava_region_config(llava_config, encoder)
    config.image_token = image_token
    tokenizer.chat_template = VICUNA_V1_TEMPLATE
    RegionGPTProcessor.from_config(config, tokenizer)  # adds the region placeholder, sets both ids
    grid = config.region.image_token_grid
    if llava_config.image_seq_length not in (None, grid * grid):
        raise ConversionError(
            f"LLaVA's image_seq_length {llava_config.image_seq_length} is not {grid}x{grid}"
        )

    model = meta_model(config)
    projector = "image_projector" if model.image_projector is not None else "region_projector"
    note(f"loading LLaVA from {src}")
    with quiet_transformers():
        llava = LlavaForConditionalGeneration.from_pretrained(src, dtype="auto" if dtype is None else dtype)
    state = {map_llava_key(key, projector): tensor for key, tensor in llava.state_dict().items()}
    state.update(fresh_parameters(model.region_encoder, "region_encoder.", seed))
    if projector == "image_projector":
        state.update(fresh_parameters(model.region_projector, "region_projector.", seed + 1))
    out_dtype = dtype or llava.get_output_embeddings().weight.dtype
    return write_checkpoint(model, state, tokenizer, out, out_dtype)
