"""Region inputs: crops, Fourier features of boxes and view tokens, on constructed tensors."""

from __future__ import annotations

import torch

from regiongpt.modeling.region_inputs import (
    RegionInputs,
    box_fourier_features,
    crop_squares,
    region_crops,
    view_tokens,
)


def test_box_fourier_features_are_sines_and_cosines_of_edges_and_centre():
    boxes = torch.tensor([[16.0, 0.0, 48.0, 32.0]])  # relative: 0.25, 0, 0.75, 0.5; centre 0.5, 0.25
    features = box_fourier_features(boxes, 64, 2)
    points = torch.tensor([0.25, 0.0, 0.75, 0.5, 0.5, 0.25])
    angles = torch.stack([points * torch.pi, points * 2 * torch.pi], dim=1).flatten()  # point-major
    torch.testing.assert_close(features, torch.cat([angles.sin(), angles.cos()])[None])


def test_region_crops_zoom_on_a_square_around_each_box():
    pixels = torch.arange(64.0).expand(1, 3, 64, 64).clone()  # each pixel holds its x coordinate
    pixels = torch.cat([pixels, 100 + pixels])  # image 1: x + 100
    regions = RegionInputs(
        torch.tensor([[10.0, 20, 30, 30], [0, 0, 8, 4]]), torch.ones(2, 64, 64), torch.tensor([0, 1])
    )
    # longer side 20 -> 20 * 1.3 + 4 = 30 around the centre (20, 25); 8 -> 14.4 around (4, 2)
    torch.testing.assert_close(
        crop_squares(regions, 1.3), torch.tensor([[0, 5.0, 10, 35, 40], [1, -3.2, -5.2, 11.2, 9.2]])
    )
    crops = region_crops(pixels, regions, 30, 1.3)
    assert crops.shape == (2, 3, 30, 30)
    torch.testing.assert_close(crops[0, 1, 7], torch.arange(5.0, 35.0))  # one column per pixel
    assert crops[1].max() <= 100 + 12 and crops[1].min() >= 0  # image 1; outside the image reads 0
    # context 1.0: the box's own square plus the margin, 20 + 4 = 24 around (20, 25)
    torch.testing.assert_close(crop_squares(regions, 1.0)[0], torch.tensor([0, 8.0, 13, 32, 37]))
    torch.testing.assert_close(region_crops(pixels, regions, 24, 1.0)[0, 0, 3], torch.arange(8.0, 32.0))


def test_view_tokens_pool_each_map_to_the_grid_in_row_major_order():
    fine = torch.arange(16.0).reshape(1, 1, 4, 4)  # 2x2 cells of 2x2 values
    coarse = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])
    tokens = view_tokens([fine, coarse], 2)
    assert tokens.shape == (1, 4, 4)  # avg and max of each of the two one-channel maps
    torch.testing.assert_close(tokens[0, :, 0], torch.tensor([2.5, 4.5, 10.5, 12.5]))  # fine, avg
    torch.testing.assert_close(tokens[0, :, 1], torch.tensor([5.0, 7.0, 13.0, 15.0]))  # fine, max
    torch.testing.assert_close(tokens[0, :, 2], torch.tensor([1.0, 2.0, 3.0, 4.0]))  # coarse
