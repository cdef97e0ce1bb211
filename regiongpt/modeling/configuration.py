"""Model configuration: a composite HF ``PretrainedConfig`` with vision, text and region parts.

Presets (:func:`preset_config`):

* ``gpt4roi``: CLIP ViT-L/14 at 224 px + a 7B Llama-shaped LM, GPT4RoI's region encoder.
* ``regiongpt``: CLIP ViT-L/14 at 336 px + a 7B Llama-shaped LM, RegionGPT's region encoder.
* ``tiny-default``: EfficientNet-Lite0 + SmolLM2-135M-Instruct, RegionGPT's encoder (with a box
  embedding: a convolutional tower's pooled features do not say where a region is), small widths.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal

from transformers import AutoConfig, CLIPVisionConfig, LlamaConfig, PretrainedConfig


class EfficientNetLiteConfig(PretrainedConfig):
    """EfficientNet-Lite0 as a feature pyramid (strides 8, 16, 32 from blocks 4, 10, 15)."""

    model_type = "efficientnet_lite"

    def __init__(
        self,
        variant: str = "efficientnet-lite0",
        image_size: int = 224,
        feature_blocks: tuple[int, ...] = (4, 10, 15),
        feature_channels: tuple[int, ...] = (40, 112, 320),
        feature_strides: tuple[int, ...] = (8, 16, 32),
        image_mean: tuple[float, ...] = (0.5, 0.5, 0.5),
        image_std: tuple[float, ...] = (0.5, 0.5, 0.5),
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.variant = variant
        self.image_size = image_size
        self.feature_blocks = list(feature_blocks)
        self.feature_channels = list(feature_channels)
        self.feature_strides = list(feature_strides)
        self.image_mean = list(image_mean)
        self.image_std = list(image_std)


AutoConfig.register("efficientnet_lite", EfficientNetLiteConfig, exist_ok=True)


@dataclass
class RegionEncoderConfig:
    """Region encoder settings, validated on construction.

    Shared: ``type`` picks the encoder; ``hidden_size`` is the width of region features before the
    projector; ``feature_levels`` index the vision tower's feature maps the encoder reads;
    ``image_token_grid`` is the side of the image-token grid (0 = no image tokens).
    """

    type: Literal["gpt4roi", "regiongpt"] = "regiongpt"
    hidden_size: int = 1024
    feature_levels: list[int] = field(default_factory=lambda: [-1])
    image_token_grid: int = 12
    # GPT4RoI: pyramid + scale shuffle + RoIAlign.
    level_sizes: list[int] | None = None  # resize level l to level_sizes[l]^2 (paper: 128,64,32,16)
    fuse_rounds: int = 5
    group_norm_groups: int = 64
    roi_output_size: int = 14
    roi_sampling_ratio: int = 2
    roi_aligned: bool = True
    reduction: Literal["flatten", "pool"] = "pool"
    box_embed_hidden: int = 256
    # RegionGPT: feature refinement + mask pooling.
    refine: bool = True
    connector: Literal["shared", "separate"] = "shared"
    mask_eps: float = 1e-6
    # Tower maps finer than the first feature level (e.g. EfficientNet's stride-4 block), each
    # added through a zero-initialised 1x1 projection where the refinement's upsampled grid
    # matches its own. Shape detail of small regions that a stride-8 map blurs; off by default.
    fine_levels: list[int] = field(default_factory=list)
    # Side of an RoIAlign grid of the refined map over each region's box, flattened through an MLP
    # (last layer zero-initialised) and added to the pooled feature: the layout inside the region
    # (its shape) that a mean under the mask averages away. 0 = off (RegionGPT's encoder as is).
    layout_grid: int = 0
    # Side in pixels of a zoomed crop of each region (a square around its box, with context) that
    # the vision tower encodes on its own; the crop's maps, averaged, go through an MLP (last layer
    # zero-initialised) added to the pooled feature: the detail of a small region that the whole
    # image's maps blur. Costs one tower pass per region. 0 = off.
    region_crop_size: int = 0
    # The crop's side as a multiple of the box's longer side (plus 4 pixels): 1.0 is the box's
    # own square, larger values add context around it.
    region_crop_context: float = 1.3
    # Add an MLP embedding of the region's geometry (normalised box and mask area) to the pooled
    # feature. Mask pooling of a convolutional tower's maps keeps what a region looks like but
    # not where it is or how large; ViT towers carry that in their position embeddings.
    box_embedding: bool = False
    # Bands of a sine/cosine (Fourier) embedding of the box's edges and centre, through its own MLP
    # (last layer zero-initialised) added to the pooled feature: the fine position detail that
    # relations between regions turn on (which edge lies past which), and that an MLP of six raw
    # numbers renders coarsely. Band k has frequency 2^k cycles per image side. 0 = off.
    geometry_frequencies: int = 0
    # Side in pixels of a second, larger view of the whole image that the vision tower encodes
    # (the input resized); each of its maps, average- and max-pooled to the image-token grid,
    # goes through an MLP (last layer zero-initialised) added to the image tokens: the detail of
    # small objects that questions about the whole image (yes/no) turn on, which the S-pixel
    # view blurs. Needs the regiongpt encoder's own image tokens. Costs one tower pass per image
    # at this side. 0 = off.
    image_view_size: int = 0
    # Image tokens: "encoder" (GPT4RoI: tower tokens pooled to the grid; RegionGPT: patch merge of
    # the refined map) or "tower" (the tower's token grid as is, e.g. LLaVA's 576 CLIP tokens).
    image_token_source: Literal["encoder", "tower"] = "encoder"
    image_projector: Literal["auto", "linear", "mlp"] = "auto"  # auto: linear (gpt4roi) / MLP (regiongpt)

    def __post_init__(self) -> None:
        if self.type not in ("gpt4roi", "regiongpt"):
            raise ValueError(f"region encoder type must be 'gpt4roi' or 'regiongpt', got {self.type!r}")
        if self.hidden_size <= 0:
            raise ValueError(f"hidden_size must be positive, got {self.hidden_size}")
        if not self.feature_levels:
            raise ValueError("feature_levels must name at least one feature map")
        if self.image_token_grid < 0:
            raise ValueError(f"image_token_grid must be >= 0, got {self.image_token_grid}")
        if self.box_embedding and self.type != "regiongpt":
            raise ValueError(
                "box_embedding is an option of the regiongpt encoder; gpt4roi always embeds its boxes"
            )
        if self.geometry_frequencies < 0 or (self.geometry_frequencies and self.type != "regiongpt"):
            raise ValueError(
                "geometry_frequencies must be >= 0 and is an option of the regiongpt encoder, got "
                f"{self.geometry_frequencies}"
            )
        if self.layout_grid < 0 or (self.layout_grid and self.type != "regiongpt"):
            raise ValueError(
                f"layout_grid must be >= 0 and is an option of the regiongpt encoder, got {self.layout_grid}"
            )
        if self.region_crop_size < 0 or (self.region_crop_size and self.type != "regiongpt"):
            raise ValueError(
                "region_crop_size must be >= 0 and is an option of the regiongpt encoder, got "
                f"{self.region_crop_size}"
            )
        if isinstance(self.region_crop_context, bool) or not (
            isinstance(self.region_crop_context, (int, float)) and 0 < self.region_crop_context < math.inf
        ):
            raise ValueError(
                f"region_crop_context must be a positive number, got {self.region_crop_context!r}"
            )
        if self.image_view_size < 0 or (
            self.image_view_size
            and (
                self.type != "regiongpt" or not self.image_token_grid or self.image_token_source != "encoder"
            )
        ):
            raise ValueError(
                "image_view_size must be >= 0 and needs the regiongpt encoder's own image tokens "
                f"(image_token_grid > 0, image_token_source 'encoder'), got {self.image_view_size}"
            )
        if self.fine_levels and (self.type != "regiongpt" or not self.refine):
            raise ValueError(
                f"fine_levels {self.fine_levels} need the regiongpt encoder with refine: true "
                "(they join its upsampling)"
            )
        if self.reduction not in ("flatten", "pool"):
            raise ValueError(f"reduction must be 'flatten' or 'pool', got {self.reduction!r}")
        if self.image_token_source not in ("encoder", "tower"):
            raise ValueError(
                f"image_token_source must be 'encoder' or 'tower', got {self.image_token_source!r}"
            )
        if self.image_projector not in ("auto", "linear", "mlp"):
            raise ValueError(
                f"image_projector must be 'auto', 'linear' or 'mlp', got {self.image_projector!r}"
            )
        if self.connector not in ("shared", "separate"):
            raise ValueError(f"connector must be 'shared' or 'separate', got {self.connector!r}")
        if self.type == "gpt4roi" and self.hidden_size % self.group_norm_groups:
            raise ValueError(
                f"hidden_size {self.hidden_size} must divide into group_norm_groups {self.group_norm_groups}"
            )
        if self.type == "gpt4roi" and self.hidden_size % 4:
            raise ValueError(f"scale shuffle needs hidden_size divisible by 4, got {self.hidden_size}")

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> RegionEncoderConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown region encoder settings: {unknown}; known: {sorted(known)}")
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class RegionGPTConfig(PretrainedConfig):
    """Composite config: ``vision_config`` (CLIP/SigLIP vision or EfficientNet-Lite), ``text_config``
    (any causal LM config), ``region_config`` (:class:`RegionEncoderConfig` as a dict).

    ``vision_feature_layers``: for ViT towers, the hidden-state indices that become feature maps
    (``hidden_states[0]`` is the patch embedding); ignored for CNN towers, whose maps are fixed.
    ``vision_token_layer``: the hidden state used for image tokens by the GPT4RoI path (LLaVA: -2).
    ``pretrained_parts``: component name -> a pretrained source loaded when the checkpoint does not
    hold that component's weights (e.g. ``{"language_model": "smollm2-135m-instruct"}``).
    ``lora``: a peft LoraConfig as a dict when the LM carries LoRA adapters.
    """

    model_type = "regiongpt"
    sub_configs = {"text_config": AutoConfig, "vision_config": AutoConfig}

    def __init__(
        self,
        vision_config: dict | PretrainedConfig | None = None,
        text_config: dict | PretrainedConfig | None = None,
        region_config: dict | RegionEncoderConfig | None = None,
        vision_feature_layers: list[int] | None = None,
        vision_token_layer: int = -2,
        image_resize: Literal["pad", "resize"] = "pad",
        image_token: str = "<image>",
        region_token: str = "<region>",
        image_token_id: int | None = None,
        region_token_id: int | None = None,
        system_prompt: str = "You are a helpful assistant that answers questions about image regions.",
        pretrained_parts: dict[str, str] | None = None,
        lora: dict[str, Any] | None = None,
        freeze_vision_tower: bool = True,
        stop_strings: list[str] | None = None,
        **kwargs: Any,
    ) -> None:
        if isinstance(vision_config, dict):
            vision_config = AutoConfig.for_model(**vision_config)
        if isinstance(text_config, dict):
            text_config = AutoConfig.for_model(**text_config)
        self.vision_config = vision_config if vision_config is not None else CLIPVisionConfig()
        self.text_config = text_config if text_config is not None else LlamaConfig()
        if isinstance(region_config, RegionEncoderConfig):
            region_config = region_config.to_dict()
        self.region_config = RegionEncoderConfig.from_dict(region_config or {}).to_dict()
        self.vision_feature_layers = list(vision_feature_layers or [-2])
        self.vision_token_layer = vision_token_layer
        if image_resize not in ("pad", "resize"):
            raise ValueError(f"image_resize must be 'pad' or 'resize', got {image_resize!r}")
        self.image_resize = image_resize
        self.image_token = image_token
        self.region_token = region_token
        self.image_token_id = image_token_id
        self.region_token_id = region_token_id
        self.system_prompt = system_prompt
        self.pretrained_parts = dict(pretrained_parts or {})
        self.lora = lora
        self.freeze_vision_tower = freeze_vision_tower
        self.stop_strings = list(stop_strings or [])  # answers end there too (e.g. GPT4RoI's "###")
        super().__init__(**kwargs)

    @property
    def region(self) -> RegionEncoderConfig:
        return RegionEncoderConfig.from_dict(self.region_config)

    def override_region(self, overrides: dict[str, Any]) -> None:
        """Change region encoder settings in place (validated: a bad value is a ValueError)."""
        if overrides:
            self.region_config = RegionEncoderConfig.from_dict({**self.region_config, **overrides}).to_dict()

    def override_vision(self, overrides: dict[str, Any]) -> None:
        """Change vision tower settings in place, e.g. ``{"feature_blocks": [4, 10, 15, 2], ...}``
        to expose a finer EfficientNet map; only settings the vision config has may change."""
        known = self.vision_config.to_dict()
        unknown = sorted(set(overrides) - set(known))
        if unknown:
            raise ValueError(f"unknown vision tower settings: {unknown}; known: {sorted(known)}")
        for key, value in overrides.items():
            setattr(self.vision_config, key, value)

    @property
    def image_size(self) -> int:
        return int(self.vision_config.image_size)

    @property
    def num_image_tokens(self) -> int:
        return self.region.image_token_grid**2

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        out["vision_config"] = self.vision_config.to_dict()
        out["text_config"] = self.text_config.to_dict()
        return out


AutoConfig.register("regiongpt", RegionGPTConfig, exist_ok=True)


def _llama_7b(**overrides: Any) -> LlamaConfig:
    values = dict(
        vocab_size=32000,
        hidden_size=4096,
        intermediate_size=11008,
        num_hidden_layers=32,
        num_attention_heads=32,
        num_key_value_heads=32,
        max_position_embeddings=4096,
        rms_norm_eps=1e-6,
        tie_word_embeddings=False,
    )
    values.update(overrides)
    return LlamaConfig(**values)


def _clip_large(image_size: int) -> CLIPVisionConfig:
    return CLIPVisionConfig(
        hidden_size=1024,
        intermediate_size=4096,
        num_hidden_layers=24,
        num_attention_heads=16,
        image_size=image_size,
        patch_size=14,
        projection_dim=768,
        hidden_act="quick_gelu",
    )


def preset_config(name: str) -> RegionGPTConfig:
    """Build a named preset config (see the module docstring)."""
    if name == "gpt4roi":
        return RegionGPTConfig(
            vision_config=_clip_large(224),
            text_config=_llama_7b(),
            vision_feature_layers=[14, 17, 20, 23],
            vision_token_layer=-2,
            image_resize="resize",
            region_config=RegionEncoderConfig(
                type="gpt4roi",
                hidden_size=1024,
                feature_levels=[0, 1, 2, 3],
                image_token_grid=16,
                level_sizes=[128, 64, 32, 16],
                reduction="flatten",
            ),
        )
    if name == "regiongpt":
        return RegionGPTConfig(
            vision_config=_clip_large(336),
            text_config=_llama_7b(),
            vision_feature_layers=[-2],
            region_config=RegionEncoderConfig(
                type="regiongpt",
                hidden_size=1024,
                feature_levels=[0],
                image_token_grid=12,
                connector="shared",
            ),
        )
    if name == "tiny-default":
        from regiongpt.modeling.pretrained import smollm2_text_config

        return RegionGPTConfig(
            vision_config=EfficientNetLiteConfig(),
            text_config=smollm2_text_config(),
            region_config=RegionEncoderConfig(
                type="regiongpt",
                hidden_size=128,
                feature_levels=[0, 1],
                image_token_grid=4,
                connector="separate",
                box_embedding=True,
            ),
            system_prompt="Answer questions about image regions.",
            pretrained_parts={
                "vision_tower": "efficientnet-lite0",
                "language_model": "smollm2-135m-instruct",
            },
        )
    raise ValueError(f"unknown preset {name!r}; choose one of: gpt4roi, regiongpt, tiny-default")
