"""Vision towers: one interface returning feature maps (and token features) for an image batch.

* :class:`HFVisionTower` wraps any HF vision transformer (CLIPVisionModel, SiglipVisionModel);
  the hidden states named by ``vision_feature_layers`` become ``(B, C, g, g)`` maps.
* :class:`EfficientNetLiteTower` is EfficientNet-Lite0 with maps at strides 8, 16, 32 (by default;
  ``feature_blocks`` may add finer ones, e.g. block 2 at stride 4).

A frozen tower stays in eval mode (BatchNorm statistics untouched) even when the model trains.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from transformers import AutoModel, PretrainedConfig


@dataclass
class VisionFeatures:
    """Output of a vision tower for a batch of ``B`` preprocessed ``S x S`` images.

    ``maps[l]``: ``(B, C_l, H_l, W_l)``; ``strides[l]``: input pixels per cell of map ``l``;
    ``tokens``: ``(B, g, g, C)`` grid used for GPT4RoI-style image tokens; ``pixels``: the
    ``(B, 3, S, S)`` preprocessed input they came from (region crops are cut from it); ``view``:
    ``(B, g * g, V)`` pooled larger view of each image, when the model takes one (set by
    ``RegionGPTForConditionalGeneration.encode_images``, so one encoding serves many questions)."""

    maps: list[torch.Tensor]
    strides: list[float]
    tokens: torch.Tensor
    pixels: torch.Tensor | None = None
    view: torch.Tensor | None = None

    def select(self, index: torch.Tensor | list[int]) -> VisionFeatures:
        """Features of a subset of images (e.g. one image repeated for many questions)."""
        pixels = self.pixels[index] if self.pixels is not None else None
        view = self.view[index] if self.view is not None else None
        return VisionFeatures([m[index] for m in self.maps], self.strides, self.tokens[index], pixels, view)


class HFVisionTower(nn.Module):
    #: Position embeddings fix the input side: region crops must be ``image_size`` pixels.
    fixed_input_size = True

    def __init__(
        self,
        config: PretrainedConfig,
        feature_layers: list[int],
        token_layer: int,
        model: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.model = model if model is not None else AutoModel.from_config(config)
        self.feature_layers = list(feature_layers)
        self.token_layer = token_layer
        self.image_size = int(config.image_size)
        self.patch_size = int(config.patch_size)
        self.grid = self.image_size // self.patch_size
        self.channels = [int(config.hidden_size)] * len(self.feature_layers)
        self.token_channels = int(config.hidden_size)

    def _grid(self, hidden: torch.Tensor) -> torch.Tensor:
        if hidden.shape[1] == self.grid**2 + 1:  # CLIP: drop the CLS token
            hidden = hidden[:, 1:]
        b, n, c = hidden.shape
        side = int(math.isqrt(n))
        return hidden.reshape(b, side, side, c)

    def forward(self, pixel_values: torch.Tensor) -> VisionFeatures:
        out = self.model(pixel_values=pixel_values, output_hidden_states=True)
        hidden = out.hidden_states
        maps = [self._grid(hidden[i]).permute(0, 3, 1, 2) for i in self.feature_layers]
        stride = float(self.patch_size)
        tokens = self._grid(hidden[self.token_layer])
        return VisionFeatures(maps, [stride] * len(maps), tokens, pixel_values)


class EfficientNetLiteTower(nn.Module):
    fixed_input_size = False  # fully convolutional: any input side

    def __init__(self, config: PretrainedConfig) -> None:
        super().__init__()
        from efficientnet_lite_pytorch import EfficientNet

        self.model = EfficientNet.from_name(config.variant)
        self.feature_blocks = list(config.feature_blocks)
        self.strides = [float(s) for s in config.feature_strides]
        self.channels = list(config.feature_channels)
        counts = {len(self.feature_blocks), len(self.strides), len(self.channels)}
        if len(counts) != 1 or len(set(self.feature_blocks)) != len(self.feature_blocks):
            raise ValueError(
                "feature_blocks, feature_strides and feature_channels need one entry per map and "
                f"distinct blocks, got {config.feature_blocks}, {config.feature_strides}, "
                f"{config.feature_channels}"
            )
        self.token_channels = self.channels[self.feature_blocks.index(max(self.feature_blocks))]
        self.image_size = int(config.image_size)

    def forward(self, pixel_values: torch.Tensor) -> VisionFeatures:
        """Maps in ``feature_blocks`` order (e.g. blocks 4, 10, 15 and a finer 2 after them);
        tokens ``(B, h, w, C)`` from the deepest block."""
        net = self.model
        x = net._swish(net._bn0(net._conv_stem(pixel_values)))
        outputs = {}
        last = max(self.feature_blocks)
        for index, block in enumerate(net._blocks[: last + 1]):
            x = block(x)
            if index in self.feature_blocks:
                outputs[index] = x
        maps = [outputs[index] for index in self.feature_blocks]
        return VisionFeatures(maps, self.strides, outputs[last].permute(0, 2, 3, 1), pixel_values)

    def classify(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """ImageNet logits ``(B, 1000)`` (used to check the weights and for distillation labels)."""
        return self.model(pixel_values)


def build_vision_tower(config) -> nn.Module:
    """The tower named by ``config.vision_config.model_type`` (random init; weights load later)."""
    vision = config.vision_config
    if vision.model_type == "efficientnet_lite":
        return EfficientNetLiteTower(vision)
    return HFVisionTower(vision, config.vision_feature_layers, config.vision_token_layer)


def image_normalization(config) -> tuple[list[float], list[float]]:
    """``(mean, std)`` the tower expects on ``[0, 1]`` RGB input."""
    vision = config.vision_config
    if vision.model_type == "efficientnet_lite":
        return list(vision.image_mean), list(vision.image_std)
    if vision.model_type.startswith("siglip"):
        return [0.5] * 3, [0.5] * 3
    return [0.48145466, 0.4578275, 0.40821073], [0.26862954, 0.26130258, 0.27577711]  # CLIP
