"""Region encoders: features of a vision tower + regions -> one feature vector per region.

Both encoders take :class:`~regiongpt.modeling.vision.VisionFeatures` of ``B`` images and a
:class:`RegionInputs` of ``R`` regions (boxes in pixel xyxy of the preprocessed ``S x S`` image,
masks ``(R, S, S)``), and return ``(R, hidden_size)`` region features plus the image tokens
``(B, T, C)`` that the projector maps into the LLM (``None`` when ``image_token_grid`` is 0).

* :class:`GPT4RoIEncoder`: multi-level pyramid with coordinate channels, scale-shuffle fusion,
  RoIAlign on every level, per-level 3x3 conv + sum, reduction, box embedding. Masks and points
  enter through their tight boxes.
* :class:`RegionGPTEncoder`: feature refinement (two stride-2 transposed convs, LayerNorm2d, GELU)
  and mask pooling (mean of refined features under the soft mask). Boxes are filled rectangles.
  Optionally (``box_embedding``) an MLP of the region's geometry is added to the pooled feature,
  and (``geometry_frequencies``) an MLP of a Fourier embedding of its box, and (``fine_levels``) finer tower maps join the refinement where its grid matches theirs, and
  (``layout_grid``) an MLP of an RoIAlign grid over the box adds the layout inside the region,
  and (``region_crop_size``) an MLP of a zoomed crop of the region, encoded by the vision tower
  on its own (the model runs the tower: :func:`region_crops` cuts the crops), adds its detail,
  and (``image_view_size``) an MLP of a larger view of the whole image, pooled to the image-token
  grid (:func:`view_tokens`; the model runs the tower), adds detail to the image tokens.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from regiongpt.modeling.configuration import RegionEncoderConfig
from regiongpt.modeling.region_inputs import (
    BOX_POINTS,
    RegionInputs,
    box_fourier_features,
    box_rois,
    grid_tokens,
    roi_align_float32,
)
from regiongpt.modeling.vision import VisionFeatures

GEOMETRY_FEATURES = 6  # see RegionGPTEncoder.geometry


class LayerNorm2d(nn.Module):
    """LayerNorm over the channel dimension of a ``(B, C, H, W)`` map."""

    def __init__(self, channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(channels, eps=eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


def _resize(x: torch.Tensor, size: tuple[int, int] | int) -> torch.Tensor:
    size = (size, size) if isinstance(size, int) else size
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=True)


def _zero_init(layer: nn.Module) -> None:
    """Zero a layer's weight and bias, so the branch it ends starts as a no-op (it can then be
    added to a trained encoder without changing its outputs)."""
    nn.init.zeros_(layer.weight)
    nn.init.zeros_(layer.bias)


def _added_branch(in_features: int, width: int, enabled: bool, normed: bool = False) -> nn.Sequential | None:
    """MLP ``in_features -> width -> width`` (GELU; LayerNorm first with ``normed``, for inputs of
    mixed scale) whose output layer starts at zero, so adding it to a trained encoder changes
    nothing until it is trained; ``None`` unless ``enabled``."""
    if not enabled:
        return None
    norm = [nn.LayerNorm(in_features)] if normed else []
    branch = nn.Sequential(*norm, nn.Linear(in_features, width), nn.GELU(), nn.Linear(width, width))
    _zero_init(branch[-1])
    return branch


def _select(features: VisionFeatures, levels: list[int]) -> tuple[list[torch.Tensor], list[float]]:
    return [features.maps[i] for i in levels], [features.strides[i] for i in levels]


class GPT4RoIEncoder(nn.Module):
    def __init__(
        self, config: RegionEncoderConfig, in_channels: list[int], token_channels: int, image_size: int
    ) -> None:
        super().__init__()
        self.config = config
        self.image_size = image_size
        width = config.hidden_size
        levels = len(config.feature_levels)
        if config.level_sizes is not None and len(config.level_sizes) != levels:
            raise ValueError(
                f"level_sizes {config.level_sizes} must have one size per feature level ({levels})"
            )
        self.input_convs = nn.ModuleList(nn.Conv2d(c + 2, width, 1) for c in in_channels)
        self.fuse_convs = nn.ModuleList(
            nn.ModuleDict(
                {
                    "conv": nn.Conv2d(width, width, 3, padding=1, bias=False),
                    "gn": nn.GroupNorm(config.group_norm_groups, width),
                }
            )
            for _ in range(config.fuse_rounds)
        )
        self.pconvs = nn.ModuleList(nn.Conv2d(width, width, 3, padding=1) for _ in range(levels))
        side = config.roi_output_size
        self.reduce = nn.Linear(width * side * side if config.reduction == "flatten" else width, width)
        hidden = config.box_embed_hidden
        self.box_embed = nn.Sequential(
            nn.Linear(4, hidden),
            nn.ReLU(),
            nn.LayerNorm(hidden),
            nn.Linear(hidden, width),
            nn.ReLU(),
            nn.LayerNorm(width),
        )
        self.token_channels = token_channels

    @staticmethod
    def _coords(x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        xs = torch.linspace(-1, 1, w, device=x.device, dtype=x.dtype).view(1, 1, 1, w).expand(b, 1, h, w)
        ys = torch.linspace(-1, 1, h, device=x.device, dtype=x.dtype).view(1, 1, h, 1).expand(b, 1, h, w)
        return torch.cat([x, xs, ys], dim=1)

    def pyramid(self, features: VisionFeatures) -> tuple[list[torch.Tensor], list[float]]:
        """Fused pyramid ``[(B, W, s_l, s_l)]`` and the stride (input pixels per cell) of each level."""
        maps, strides = _select(features, self.config.feature_levels)
        if self.config.level_sizes is not None:
            maps = [_resize(m, s) for m, s in zip(maps, self.config.level_sizes)]
            strides = [self.image_size / s for s in self.config.level_sizes]
        levels = [conv(self._coords(m)) for conv, m in zip(self.input_convs, maps)]
        width, last = self.config.hidden_size, len(levels) - 1
        half, three_quarters = width // 2, 3 * width // 4
        for fuse in self.fuse_convs:
            fused = []
            for index, level in enumerate(levels):
                size = tuple(level.shape[-2:])
                coarser = _resize(levels[min(index + 1, last)][:, three_quarters:], size)
                finer = _resize(levels[max(index - 1, 0)][:, half:three_quarters], size)
                x = torch.cat([level[:, :half], coarser, finer], dim=1)
                fused.append(F.relu(fuse["gn"](fuse["conv"](x))))
            levels = fused
        return levels, strides

    def forward(
        self, features: VisionFeatures, regions: RegionInputs
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        tokens = self.image_tokens(features)
        if len(regions) == 0:
            return features.maps[0].new_zeros(0, self.config.hidden_size), tokens
        levels, strides = self.pyramid(features)
        rois = box_rois(regions)
        cfg = self.config
        pooled = sum(
            conv(
                roi_align_float32(
                    level, rois, cfg.roi_output_size, 1.0 / stride, cfg.roi_sampling_ratio, cfg.roi_aligned
                )
            )
            for conv, level, stride in zip(self.pconvs, levels, strides)
        )
        pooled = F.relu(pooled)
        flat = pooled.flatten(1) if cfg.reduction == "flatten" else pooled.mean(dim=(2, 3))
        boxes = (rois[:, 1:] / self.image_size).to(flat.dtype)
        return self.reduce(flat) + self.box_embed(boxes), tokens

    def image_tokens(self, features: VisionFeatures) -> torch.Tensor | None:
        grid = self.config.image_token_grid
        return grid_tokens(features, grid) if grid else None


class RegionGPTEncoder(nn.Module):
    def __init__(
        self,
        config: RegionEncoderConfig,
        in_channels: list[int],
        token_channels: int,
        image_size: int,
        fine_channels: list[int] | None = None,
        crop_channels: int = 0,
        view_channels: int = 0,
    ) -> None:
        """``crop_channels``: width of the crop features the model passes in (the tower's maps'
        channels summed; needed when ``region_crop_size`` is set); ``view_channels``: width of the
        image-view tokens (:func:`view_tokens`; needed when ``image_view_size`` is set)."""
        super().__init__()
        self.config = config
        width = config.hidden_size
        needs_projection = len(in_channels) > 1 or any(c != width for c in in_channels)
        self.input_projs = (
            nn.ModuleList(nn.Conv2d(c, width, 1) for c in in_channels) if needs_projection else None
        )
        self.refine = (
            nn.Sequential(
                nn.ConvTranspose2d(width, width, 2, stride=2),
                LayerNorm2d(width),
                nn.GELU(),
                nn.ConvTranspose2d(width, width, 2, stride=2),
            )
            if config.refine
            else nn.Identity()
        )
        side = config.layout_grid
        self.layout_embed = _added_branch(width * side * side, width, bool(side))
        fine_channels = fine_channels or []
        if len(fine_channels) != len(config.fine_levels):
            raise ValueError(
                f"fine_levels {config.fine_levels} need one entry each in fine_channels, got {fine_channels}"
            )
        self.fine_projs = (
            nn.ModuleList(nn.Conv2d(c, width, 1) for c in fine_channels) if fine_channels else None
        )
        for proj in self.fine_projs or []:
            _zero_init(proj)
        grid = config.image_token_grid
        self.from_tower = config.image_token_source == "tower"
        merge = grid and not self.from_tower
        self.patch_merge = nn.Sequential(nn.Linear(4 * width, width), nn.GELU()) if merge else None
        self.token_channels = token_channels if self.from_tower else width
        self.image_size = image_size
        self.box_embed = _added_branch(GEOMETRY_FEATURES, width, config.box_embedding)
        bands = config.geometry_frequencies
        self.box_fourier_embed = _added_branch(2 * BOX_POINTS * bands, width, bool(bands))
        if config.region_crop_size and crop_channels <= 0:
            raise ValueError(f"region_crop_size {config.region_crop_size} needs crop_channels > 0")
        # LayerNorm first: the tower's maps differ in scale, as do average and max pools.
        self.crop_embed = _added_branch(crop_channels, width, bool(config.region_crop_size), normed=True)
        if config.image_view_size and view_channels <= 0:
            raise ValueError(f"image_view_size {config.image_view_size} needs view_channels > 0")
        self.view_embed = _added_branch(view_channels, width, bool(config.image_view_size), normed=True)

    def feature_map(self, features: VisionFeatures) -> torch.Tensor:
        """Refined map ``(B, W, 4h, 4w)``, or ``(B, W, h, w)`` with ``refine=False`` (``h, w``: the
        first selected level's grid).

        Each ``fine_levels`` map ``(B, C, 2h, 2w)`` or ``(B, C, 4h, 4w)``, projected to ``W``, is
        added right after the transposed conv that reaches its grid."""
        maps, _ = _select(features, self.config.feature_levels)
        if self.input_projs is not None:
            maps = [proj(m) for proj, m in zip(self.input_projs, maps)]
        size = tuple(maps[0].shape[-2:])
        fmap = maps[0]
        for extra in maps[1:]:
            fmap = fmap + _resize(extra, size)
        if self.fine_projs is None:
            return self.refine(fmap)
        fine, _ = _select(features, self.config.fine_levels)
        fine = [proj(m) for proj, m in zip(self.fine_projs, fine)]
        grids = {(2 * size[0], 2 * size[1]), (4 * size[0], 4 * size[1])}
        for level, m in zip(self.config.fine_levels, fine):
            if tuple(m.shape[-2:]) not in grids:
                raise ValueError(
                    f"fine level {level} has a {tuple(m.shape[-2:])} grid; the refinement of a {size} "
                    f"map reaches {sorted(grids)}"
                )
        for layer in self.refine:
            fmap = layer(fmap)
            if isinstance(layer, nn.ConvTranspose2d):
                for m in fine:
                    if m.shape[-2:] == fmap.shape[-2:]:
                        fmap = fmap + m
        return fmap

    def pool_masks(self, fmap: torch.Tensor, regions: RegionInputs) -> torch.Tensor:
        """Mean of ``fmap[b]`` under each soft mask resized to the map grid: ``(R, W)``."""
        weights = F.interpolate(regions.masks[:, None].to(fmap.dtype), size=fmap.shape[-2:], mode="area")
        weights = weights.flatten(1)  # (R, h*w)
        flat = fmap.flatten(2)  # (B, W, h*w)
        out = fmap.new_zeros(len(regions), fmap.shape[1])
        for b in regions.batch_index.unique().tolist():
            rows = (regions.batch_index == b).nonzero(as_tuple=True)[0]
            out = out.index_copy(0, rows, weights[rows] @ flat[b].T)
        return out / (weights.sum(dim=1, keepdim=True) + self.config.mask_eps)

    def layout(self, fmap: torch.Tensor, regions: RegionInputs) -> torch.Tensor:
        """RoIAlign of the square map ``fmap`` ``(B, W, m, m)`` over each box: ``(R, W * g * g)``,
        ``g`` = ``layout_grid`` (boxes in pixel xyxy of the ``S x S`` input, so the scale is
        ``m / S``)."""
        grid = roi_align_float32(
            fmap, box_rois(regions), self.config.layout_grid, fmap.shape[-1] / self.image_size, 2, True
        )
        return grid.flatten(1)

    def geometry(self, regions: RegionInputs) -> torch.Tensor:
        """``(R, 6)``: box x0, y0, x1, y1, its area (all relative to the image side ``S``) and the
        mask's share of the image."""
        boxes = regions.boxes.to(torch.float32) / self.image_size
        box_area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
        mask_area = regions.masks.flatten(1).to(torch.float32).mean(dim=1)
        return torch.cat([boxes, box_area[:, None], mask_area[:, None]], dim=1)

    def image_tokens(self, fmap: torch.Tensor, view: torch.Tensor | None = None) -> torch.Tensor | None:
        """``(B, g * g, W)`` by patch merge of the refined map (``None`` without it), plus the
        embedded image-view tokens ``view`` ``(B, g * g, view_channels)`` when the encoder takes them."""
        grid = self.config.image_token_grid
        if self.patch_merge is None:
            return None
        if self.view_embed is not None and (view is None or view.shape[:2] != (fmap.shape[0], grid * grid)):
            got = None if view is None else tuple(view.shape)
            raise ValueError(
                f"image_view_size {self.config.image_view_size}: the encoder needs view tokens "
                f"({fmap.shape[0]}, {grid * grid}, C), got {got}"
            )
        pooled = F.adaptive_avg_pool2d(fmap, 2 * grid)  # (B, W, 2g, 2g)
        b, w = pooled.shape[:2]
        merged = (
            pooled.reshape(b, w, grid, 2, grid, 2).permute(0, 2, 4, 3, 5, 1).reshape(b, grid * grid, 4 * w)
        )
        tokens = self.patch_merge(merged)
        if self.view_embed is not None:
            tokens = tokens + self.view_embed(view.to(tokens.dtype))
        return tokens

    def forward(
        self,
        features: VisionFeatures,
        regions: RegionInputs,
        crop_features: torch.Tensor | None = None,
        view_features: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(R, W)`` region features and image tokens (or ``None``); ``crop_features``
        ``(R, crop_channels)``: each region's crop through the tower, maps averaged (required with
        ``region_crop_size``, ignored otherwise); ``view_features`` ``(B, g * g, view_channels)``:
        :func:`view_tokens` of the larger view (required with ``image_view_size``)."""
        grid = self.config.image_token_grid
        tokens = grid_tokens(features, grid) if grid and self.from_tower else None
        if len(regions) == 0 and tokens is not None:
            return features.tokens.new_zeros(0, self.config.hidden_size), tokens
        fmap = self.feature_map(features)
        if tokens is None:
            tokens = self.image_tokens(fmap, view_features)
        if len(regions) == 0:
            return fmap.new_zeros(0, self.config.hidden_size), tokens
        pooled = self.pool_masks(fmap, regions)
        if self.box_embed is not None:
            pooled = pooled + self.box_embed(self.geometry(regions).to(pooled.dtype))
        if self.box_fourier_embed is not None:
            fourier = box_fourier_features(regions.boxes, self.image_size, self.config.geometry_frequencies)
            pooled = pooled + self.box_fourier_embed(fourier.to(pooled.dtype))
        if self.layout_embed is not None:
            pooled = pooled + self.layout_embed(self.layout(fmap, regions))
        if self.crop_embed is not None:
            if crop_features is None or crop_features.shape[0] != len(regions):
                got = None if crop_features is None else tuple(crop_features.shape)
                raise ValueError(
                    f"region_crop_size {self.config.region_crop_size}: the encoder needs crop features "
                    f"for each of the {len(regions)} regions, got {got}"
                )
            pooled = pooled + self.crop_embed(crop_features.to(pooled.dtype))
        return pooled, tokens


def _level_channels(tower: nn.Module, levels: list[int], key: str) -> list[int]:
    """Channels of the tower's maps ``levels`` (negative indices count from the end)."""
    n = len(tower.channels)
    bad = [i for i in levels if not -n <= i < n]
    if bad:
        raise ValueError(f"{key} {levels}: the vision tower has {n} maps, so {bad} name no map")
    return [tower.channels[i] for i in levels]


def build_region_encoder(config: RegionEncoderConfig, tower: nn.Module) -> nn.Module:
    in_channels = _level_channels(tower, config.feature_levels, "feature_levels")
    if config.type == "gpt4roi":
        return GPT4RoIEncoder(config, in_channels, tower.token_channels, tower.image_size)
    fine_channels = _level_channels(tower, config.fine_levels, "fine_levels")
    strides = getattr(tower, "strides", None)
    if config.fine_levels and strides:
        base = strides[config.feature_levels[0]]
        wrong = [i for i in config.fine_levels if strides[i] not in (base / 2, base / 4)]
        if wrong:
            raise ValueError(
                f"fine_levels {wrong} have strides {[strides[i] for i in wrong]}; the refinement of the "
                f"stride-{base:g} map reaches strides {base / 2:g} and {base / 4:g} only"
            )
    crop = config.region_crop_size
    view = config.image_view_size
    for key, side in (("region_crop_size", crop), ("image_view_size", view)):
        if side and getattr(tower, "fixed_input_size", False) and side != tower.image_size:
            raise ValueError(f"{key} {side}: this vision tower takes {tower.image_size}-pixel inputs only")
    crop_channels = sum(tower.channels) if crop else 0
    view_channels = 2 * sum(tower.channels) if view else 0
    return RegionGPTEncoder(
        config,
        in_channels,
        tower.token_channels,
        tower.image_size,
        fine_channels,
        crop_channels,
        view_channels,
    )
