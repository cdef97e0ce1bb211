"""Tiny random-weight configs of the real HF classes, for fast tests of real code paths."""

from __future__ import annotations

import torch
from transformers import CLIPVisionConfig, LlamaConfig, SiglipVisionConfig

from regiongpt.modeling.configuration import EfficientNetLiteConfig, RegionEncoderConfig, RegionGPTConfig
from regiongpt.modeling.modeling import RegionGPTForConditionalGeneration
from regiongpt.processing import RegionGPTProcessor


def tiny_config(
    encoder: str = "regiongpt", tower: str = "clip", text_overrides: dict | None = None, **overrides
) -> RegionGPTConfig:
    vision_kwargs = dict(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=4,
        num_attention_heads=4,
        image_size=56,
        patch_size=14,
    )
    if tower == "efficientnet":  # random-weight EfficientNet-Lite0 at 64 px (maps 8x8, 4x4, 2x2)
        vision = EfficientNetLiteConfig(image_size=64)
    elif tower == "clip":
        vision = CLIPVisionConfig(**vision_kwargs)
    else:
        vision = SiglipVisionConfig(**vision_kwargs)
    text = LlamaConfig(
        vocab_size=49152,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        pad_token_id=2,
        eos_token_id=2,
        bos_token_id=1,
        tie_word_embeddings=True,
        max_position_embeddings=512,
    )
    for key, value in (text_overrides or {}).items():
        setattr(text, key, value)
    if encoder == "gpt4roi":
        region = dict(
            type="gpt4roi",
            hidden_size=32,
            feature_levels=[0, 1, 2, 3],
            level_sizes=[16, 8, 4, 2],
            group_norm_groups=8,
            roi_output_size=4,
            fuse_rounds=2,
            image_token_grid=2,
        )
        layers = [1, 2, 3, 4]
    else:
        region = dict(type="regiongpt", hidden_size=32, feature_levels=[0], image_token_grid=2)
        layers = [-2]
    region.update(overrides)
    return RegionGPTConfig(
        vision_config=vision,
        text_config=text,
        vision_feature_layers=layers,
        region_config=RegionEncoderConfig(**region),
        system_prompt="Be brief.",
    )


def make_tiny(
    tokenizer,
    encoder: str = "regiongpt",
    tower: str = "clip",
    seed: int = 0,
    text_overrides: dict | None = None,
    **overrides,
):
    torch.manual_seed(seed)
    config = tiny_config(encoder, tower, text_overrides, **overrides)
    processor = RegionGPTProcessor.from_config(config, tokenizer)
    model = RegionGPTForConditionalGeneration(config).eval()
    return model, processor
