"""GPT4RoI's released checkpoint (a delta over LLaMA-7B) -> a regiongpt ``gpt4roi`` checkpoint.

Layout (DESIGN.md section 8): ``model.spi_module.*`` (the region module) and ``model.mm_projector.*``
are stored in full, and so are the rows beyond 32000 of ``model.embed_tokens.weight`` and
``lm_head.weight``; every other LM tensor is a delta added to LLaMA-7B (``--base``). Without
``--base`` the source must hold already merged weights. The CLIP tower is not in the checkpoint:
it comes from ``--vision`` (stored in our checkpoint) or, without it, is named in our config and
loaded from its hub id at load time. ``<im_patch>`` and ``<bbox>`` become our image and region
placeholders, so token ids stay GPT4RoI's.
"""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import AutoConfig, LlamaConfig

from regiongpt.convert.gpt4roi_checks import (
    LLAMA_VOCAB,
    SPI,
    Layout,
    check_base_config,
    check_delta_kind,
    inspect_layout,
    load_tokenizer,
    need,
)
from regiongpt.convert.templates import LLAVA_SYSTEM
from regiongpt.convert.weights import (
    ConversionError,
    WeightFiles,
    guard_output,
    meta_model,
    note,
    quiet_transformers,
    read_json,
    require_dir,
    write_checkpoint,
)
from regiongpt.modeling.configuration import RegionEncoderConfig, RegionGPTConfig, preset_config
from regiongpt.processing import RegionGPTProcessor

DEFAULT_VISION = "openai/clip-vit-large-patch14"
FULL_PREFIXES = (SPI, "model.mm_projector.")
VOCAB_KEYS = ("model.embed_tokens.weight", "lm_head.weight")
KEY_MAP = (
    (SPI + "mlvl_fuse.input_conv.", "region_encoder.input_convs."),
    (SPI + "mlvl_fuse.fuse_convs.", "region_encoder.fuse_convs."),
    (SPI + "roi_align.pconvs.", "region_encoder.pconvs."),
    (SPI + "roi_align.flatten_linear.", "region_encoder.reduce."),
    (SPI + "roi_align.pos_embedd.", "region_encoder.box_embed."),
    (SPI + "roi_align.updims.", "region_projector."),
    ("model.mm_projector.", "image_projector."),
    ("model.", "language_model.model."),
    ("lm_head.", "language_model.lm_head."),
)


def pyramid_layers(
    num_hidden_states: int, token_layer: int, levels: int = 4, clamp: bool = False
) -> list[int]:
    """GPT4RoI's pyramid: every third hidden state counting back from ``token_layer``, oldest first
    (CLIP-L: 25 hidden states, -2 -> 14, 17, 20, 23). ``clamp``: repeat layer 0 for shallow towers."""
    start = token_layer % num_hidden_states
    layers = [start - 3 * i for i in reversed(range(levels))]
    if min(layers) < 0:
        if not clamp:
            raise ConversionError(
                f"a {levels}-level pyramid needs a deeper tower than {num_hidden_states - 1} layers"
            )
        layers = [max(layer, 0) for layer in layers]
    return layers


def map_key(key: str) -> str:
    for old, new in KEY_MAP:
        if key.startswith(old):
            return new + key[len(old) :]
    raise ConversionError(f"unexpected GPT4RoI weight {key!r}")


def _text_config(src_config: dict, base: Path | None, layout: Layout, skip_base_check: bool) -> LlamaConfig:
    if base is not None:
        config = AutoConfig.from_pretrained(base)
        if config.model_type != "llama":
            raise ConversionError(
                f"the base {base} is a {config.model_type!r} model; GPT4RoI's delta is over LLaMA-7B"
            )
        if not skip_base_check:
            check_base_config(config, src_config, base)
    else:
        fields = (
            "hidden_size",
            "intermediate_size",
            "num_hidden_layers",
            "num_attention_heads",
            "num_key_value_heads",
            "rms_norm_eps",
            "max_position_embeddings",
            "hidden_act",
        )
        config = LlamaConfig(**{k: src_config[k] for k in fields if k in src_config})
        if "max_sequence_length" in src_config and "max_position_embeddings" not in src_config:
            config.max_position_embeddings = src_config["max_sequence_length"]
    if config.hidden_size != layout.lm_width:
        raise ConversionError(
            f"the LM is {config.hidden_size} wide but updims/mm_projector map to {layout.lm_width}"
        )
    config.vocab_size = layout.vocab
    config.tie_word_embeddings = False
    config.bos_token_id, config.eos_token_id = 1, 2  # LLaMA's; some early conversions say 0 / 1
    return config


def _vision(vision: Path | None, src_config: dict, layout: Layout, dtype: torch.dtype):
    """``(vision_config, state under vision_tower.model., pretrained_parts)``."""
    if vision is None:
        config = preset_config("gpt4roi").vision_config
        name = src_config.get("mm_vision_tower", DEFAULT_VISION)
        state, parts = {}, {"vision_tower": name}
        note(f"no --vision: the CLIP tower is loaded from {name!r} when the model loads")
    else:
        from transformers import CLIPVisionModel

        if not (vision / "config.json").is_file():
            raise ConversionError(f"missing file {vision / 'config.json'}")
        with quiet_transformers():
            tower = CLIPVisionModel.from_pretrained(vision, dtype=dtype)
        config = tower.config
        state = {f"vision_tower.model.{k}": v for k, v in tower.state_dict().items()}
        parts = {}
    if config.hidden_size != layout.vision_width:
        raise ConversionError(
            f"the CLIP tower is {config.hidden_size} wide; the checkpoint's mm_projector and spi_module take "
            f"{layout.vision_width}"
        )
    return config, state, parts


def _merge(delta: WeightFiles, base: WeightFiles | None, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    state = {}
    for key, tensor in delta.items(desc="merging GPT4RoI" if base else "reading GPT4RoI"):
        if key.endswith("rotary_emb.inv_freq"):
            continue
        target = map_key(key)
        if base is None or key.startswith(FULL_PREFIXES):
            state[target] = tensor.to(dtype)
            continue
        if key not in base:
            raise ConversionError(f"the base {base.directory} lacks {key}")
        original = base.get(key)
        merged = tensor.float()
        if key in VOCAB_KEYS:
            if tuple(original.shape) != (LLAMA_VOCAB, tensor.shape[1]):
                raise ConversionError(
                    f"{key}: base shape {tuple(original.shape)}, expected ({LLAMA_VOCAB}, {tensor.shape[1]}) "
                    f"(delta {tuple(tensor.shape)}): the base must be the 32000-token LLaMA-1-7B"
                )
            merged[:LLAMA_VOCAB] += original.float()
        else:
            if original.shape != tensor.shape:
                raise ConversionError(
                    f"{key}: delta shape {tuple(tensor.shape)}, base shape {tuple(original.shape)}"
                )
            merged += original.float()
        state[target] = merged.to(dtype)
    return state


def convert_gpt4roi(
    src: str | Path,
    out: str | Path,
    base: str | Path | None = None,
    vision: str | Path | None = None,
    dtype: torch.dtype | None = None,
    group_norm_groups: int = 64,
    skip_base_check: bool = False,
) -> Path:
    """Convert GPT4RoI's checkpoint ``src`` (+ LLaMA ``base``, CLIP ``vision``) into ``out``; returns ``out``.

    ``dtype``: of the written weights (default: the checkpoint's). ``group_norm_groups``: of the fuse
    convs' GroupNorm (64 in GPT4RoI; not recorded in the checkpoint)."""
    src = require_dir(src, "GPT4RoI checkpoint")
    base_dir = require_dir(base, "LLaMA base") if base is not None else None
    vision_dir = require_dir(vision, "CLIP checkpoint") if vision is not None else None
    out = Path(out)
    guard_output(out, src, base_dir, vision_dir)
    delta = WeightFiles(src)
    base_files = WeightFiles(base_dir) if base_dir is not None else None
    src_config = read_json(src / "config.json") if (src / "config.json").is_file() else {}
    layout = inspect_layout(delta)
    check_delta_kind(delta, base_files)
    out_dtype = dtype or need(delta, "model.norm.weight").dtype
    text_config = _text_config(src_config, base_dir, layout, skip_base_check)
    vision_config, vision_state, parts = _vision(vision_dir, src_config, layout, out_dtype)
    grid = vision_config.image_size // vision_config.patch_size
    if grid != 16:
        note(f"GPT4RoI was trained on a 16x16 grid (224 px); this tower gives {grid}x{grid}")
    token_layer = int(src_config.get("mm_vision_select_layer", -2))
    tokenizer = load_tokenizer(src, base_dir, layout.vocab)
    text_config.pad_token_id = tokenizer.pad_token_id
    try:
        region = RegionEncoderConfig(
            type="gpt4roi",
            hidden_size=layout.width,
            feature_levels=list(range(layout.levels)),
            image_token_grid=grid,
            level_sizes=[grid * 2 ** (layout.levels - 1 - i) for i in range(layout.levels)],
            fuse_rounds=layout.fuse_rounds,
            group_norm_groups=group_norm_groups,
            roi_output_size=layout.roi_size,
            roi_sampling_ratio=2,
            roi_aligned=True,
            reduction="flatten",
            box_embed_hidden=layout.box_hidden,
        )
    except ValueError as error:
        raise ConversionError(str(error)) from None
    config = RegionGPTConfig(
        vision_config=vision_config,
        text_config=text_config,
        region_config=region,
        vision_feature_layers=pyramid_layers(vision_config.num_hidden_layers + 1, token_layer, layout.levels),
        vision_token_layer=token_layer,
        image_resize="resize",
        image_token="<im_patch>",
        region_token="<bbox>",
        system_prompt=LLAVA_SYSTEM,
        pretrained_parts=parts,
        stop_strings=["###"],  # GPT4RoI ends its answers with the next "###" turn marker
    )
    RegionGPTProcessor.from_config(config, tokenizer)  # placeholders are GPT4RoI's own tokens: nothing added
    model = meta_model(config)
    state = _merge(delta, base_files, out_dtype)
    state.update(vision_state)
    return write_checkpoint(model, state, tokenizer, out, out_dtype)
