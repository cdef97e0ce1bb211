"""What region encoders read besides the tower's maps: the regions themselves, and inputs cut or
pooled from the image for the encoders' optional branches.

* :class:`RegionInputs`: ``R`` regions of a batch (pixel xyxy boxes and masks of the
  preprocessed ``S x S`` image, and the image each belongs to).
* :func:`box_rois` / :func:`roi_align_float32`: torchvision RoIAlign on those boxes.
* :func:`region_crops`: zoomed crops around each box (the crop branch, ``region_crop_size``).
* :func:`box_fourier_features`: sines and cosines of each box (``geometry_frequencies``).
* :func:`view_tokens`: a larger view's maps pooled to the image-token grid (``image_view_size``).
* :func:`grid_tokens`: a ViT tower's token grid pooled to the image-token grid.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torchvision.ops import roi_align

from regiongpt.modeling.vision import VisionFeatures

BOX_POINTS = 6  # x0, y0, x1, y1, centre x, centre y: see box_fourier_features
#: A region crop is the square of side ``context`` (``region_crop_context``) x the box's longer
#: side + CROP_MARGIN pixels centred on the box: the region and a little of what surrounds it.
CROP_MARGIN = 4.0


@dataclass
class RegionInputs:
    """``boxes``: (R, 4) float pixel xyxy in the preprocessed image; ``masks``: (R, S, S) bool or
    float; ``batch_index``: (R,) long, the image each region belongs to."""

    boxes: torch.Tensor
    masks: torch.Tensor
    batch_index: torch.Tensor

    def __len__(self) -> int:
        return int(self.boxes.shape[0])


def grid_tokens(features: VisionFeatures, grid: int) -> torch.Tensor:
    """The tower's token grid pooled to ``grid x grid``: ``(B, grid*grid, C)``."""
    tokens = features.tokens.permute(0, 3, 1, 2)
    if tokens.shape[-1] != grid:
        tokens = F.adaptive_avg_pool2d(tokens, grid)
    return tokens.flatten(2).transpose(1, 2)


def roi_align_float32(
    x: torch.Tensor, rois: torch.Tensor, side: int, scale: float, sampling_ratio: int, aligned: bool
) -> torch.Tensor:
    """torchvision's ``roi_align`` of ``x`` ``(B, C, H, W)`` at ``rois`` ``(R, 5)`` (batch index,
    pixel xyxy): ``(R, C, side, side)`` in ``x``'s dtype, computed in float32 (the CPU kernel has
    no bfloat16; autocast would cast the same way)."""
    out = roi_align(x.float(), rois.float(), side, scale, sampling_ratio, aligned)
    return out.to(x.dtype)


def box_rois(regions: RegionInputs) -> torch.Tensor:
    """``(R, 5)`` float32 rois for ``roi_align``: batch index, then the pixel xyxy box (never
    rounded to a 16-bit model dtype)."""
    boxes = regions.boxes.to(torch.float32)
    return torch.cat([regions.batch_index[:, None].to(boxes.dtype), boxes], dim=1)


def crop_squares(regions: RegionInputs, context: float) -> torch.Tensor:
    """``(R, 5)`` float32 rois (batch index, pixel xyxy) of the square crop around each box: side
    ``context`` x the box's longer side + :data:`CROP_MARGIN`; it may reach past the image."""
    boxes = regions.boxes.to(torch.float32)
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2
    side = (boxes[:, 2:] - boxes[:, :2]).amax(dim=1, keepdim=True) * context + CROP_MARGIN
    squares = torch.cat([centre - side / 2, centre + side / 2], dim=1)
    return torch.cat([regions.batch_index[:, None].to(squares.dtype), squares], dim=1)


def region_crops(pixels: torch.Tensor, regions: RegionInputs, size: int, context: float) -> torch.Tensor:
    """Zoomed crops ``(R, 3, size, size)`` of the preprocessed images ``pixels`` ``(B, 3, S, S)``
    over :func:`crop_squares` (bilinear; outside the image reads as 0, the normalised mean)."""
    return roi_align_float32(pixels, crop_squares(regions, context), size, 1.0, 2, True)


def box_fourier_features(boxes: torch.Tensor, image_size: int, frequencies: int) -> torch.Tensor:
    """``(R, 2 * BOX_POINTS * frequencies)``: sin and cos of ``2^k * pi * v`` for ``k < frequencies``
    and each of the box's x0, y0, x1, y1, centre x, centre y in ``boxes`` ``(R, 4)`` (pixel xyxy of
    the ``image_size`` square, ``v`` relative to its side)."""
    rel = boxes.to(torch.float32) / image_size
    centre = (rel[:, :2] + rel[:, 2:]) / 2
    points = torch.cat([rel, centre], dim=1)  # (R, 6)
    scales = math.pi * 2.0 ** torch.arange(frequencies, device=boxes.device, dtype=torch.float32)
    angles = (points[:, :, None] * scales).flatten(1)  # (R, 6 * F)
    return torch.cat([angles.sin(), angles.cos()], dim=1)


def view_tokens(maps: list[torch.Tensor], grid: int) -> torch.Tensor:
    """``(B, grid * grid, 2 * sum C_l)``: each map ``(B, C_l, H_l, W_l)`` average- and max-pooled
    to ``grid x grid`` cells, channels concatenated, cells in row-major order (as the image tokens)."""
    pooled = [pool(m, grid) for m in maps for pool in (F.adaptive_avg_pool2d, F.adaptive_max_pool2d)]
    return torch.cat(pooled, dim=1).flatten(2).transpose(1, 2)
