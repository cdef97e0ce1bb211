"""Region encoders in isolation, on constructed feature maps."""

from __future__ import annotations

import pytest
import torch

from regiongpt.modeling.configuration import RegionEncoderConfig
from regiongpt.modeling.region_encoders import (
    GPT4RoIEncoder,
    RegionGPTEncoder,
    build_region_encoder,
)
from regiongpt.modeling.region_inputs import RegionInputs
from regiongpt.modeling.vision import VisionFeatures


def _features(fmap: torch.Tensor, stride: float = 8.0) -> VisionFeatures:
    return VisionFeatures([fmap], [stride], fmap.permute(0, 2, 3, 1))


def _box_region(box, size: int = 64) -> RegionInputs:
    mask = torch.zeros(1, size, size)
    x1, y1, x2, y2 = box
    mask[0, y1:y2, x1:x2] = 1
    return RegionInputs(torch.tensor([box], dtype=torch.float32), mask, torch.tensor([0]))


def test_mask_pooling_equals_hand_computed_mean():
    torch.manual_seed(0)
    config = RegionEncoderConfig(
        type="regiongpt", hidden_size=4, feature_levels=[0], refine=False, image_token_grid=0
    )
    encoder = RegionGPTEncoder(config, [4], 4, 64)
    fmap = torch.randn(1, 4, 8, 8)
    mask = torch.zeros(1, 64, 64)
    mask[0, 8:24, 16:40] = 1  # exactly feature cells rows 1..2, cols 2..4 (8 px per cell)
    features, _ = encoder(
        _features(fmap), RegionInputs(torch.tensor([[16.0, 8, 40, 24]]), mask, torch.tensor([0]))
    )
    expected = fmap[0, :, 1:3, 2:5].mean(dim=(1, 2))
    torch.testing.assert_close(features[0], expected, rtol=1e-5, atol=1e-5)


def test_mask_pooling_weights_partial_cells_softly():
    config = RegionEncoderConfig(
        type="regiongpt", hidden_size=1, feature_levels=[0], refine=False, image_token_grid=0
    )
    encoder = RegionGPTEncoder(config, [1], 1, 64)
    fmap = torch.zeros(1, 1, 8, 8)
    fmap[0, 0, 0, 0], fmap[0, 0, 0, 1] = 1.0, 3.0
    mask = torch.zeros(1, 64, 64)
    mask[0, 0:8, 0:12] = 1  # all of cell (0,0), half of cell (0,1)
    features, _ = encoder(
        _features(fmap), RegionInputs(torch.tensor([[0.0, 0, 12, 8]]), mask, torch.tensor([0]))
    )
    assert abs(features[0, 0].item() - (1.0 * 1 + 3.0 * 0.5) / 1.5) < 1e-5


def test_regiongpt_token_depends_on_inside_not_far_outside():
    torch.manual_seed(0)
    config = RegionEncoderConfig(type="regiongpt", hidden_size=8, feature_levels=[0], image_token_grid=0)
    encoder = RegionGPTEncoder(config, [8], 8, 64).eval()
    fmap = torch.randn(1, 8, 8, 8)
    region = _box_region([0, 0, 16, 16])
    base, _ = encoder(_features(fmap), region)
    inside = fmap.clone()
    inside[0, :, 0:2, 0:2] += 1.0
    far = fmap.clone()
    far[0, :, 5:8, 5:8] += 1.0
    changed, _ = encoder(_features(inside), region)
    same, _ = encoder(_features(far), region)
    assert (changed - base).abs().max() > 1e-3
    torch.testing.assert_close(same, base)


def test_gpt4roi_token_changes_with_features_inside_the_box():
    torch.manual_seed(0)
    config = RegionEncoderConfig(
        type="gpt4roi",
        hidden_size=16,
        feature_levels=[0, 1],
        level_sizes=[8, 4],
        group_norm_groups=4,
        roi_output_size=2,
        fuse_rounds=1,
        image_token_grid=0,
    )
    encoder = GPT4RoIEncoder(config, [16, 16], 16, 64).eval()
    fmap = torch.randn(1, 16, 8, 8)
    features = VisionFeatures([fmap, fmap], [8.0, 8.0], fmap.permute(0, 2, 3, 1))
    region = _box_region([0, 0, 16, 16])
    base, _ = encoder(features, region)
    inside = fmap.clone()
    inside[0, :, 0:2, 0:2] += 2.0
    changed, _ = encoder(VisionFeatures([inside, inside], [8.0, 8.0], inside.permute(0, 2, 3, 1)), region)
    assert base.shape == (1, 16)
    assert (changed - base).abs().max() > 1e-3


def test_scale_shuffle_takes_the_documented_channel_slices():
    """Level l's fuse input: [own 0:W/2 | coarser 3W/4:W | finer W/2:3W/4] (DESIGN section 8)."""
    config = RegionEncoderConfig(
        type="gpt4roi",
        hidden_size=8,
        feature_levels=[0, 1],
        level_sizes=[4, 2],
        group_norm_groups=1,
        roi_output_size=2,
        fuse_rounds=1,
        image_token_grid=0,
    )
    encoder = GPT4RoIEncoder(config, [8, 8], 8, 64)
    captured = []
    conv = encoder.fuse_convs[0]["conv"]
    conv.register_forward_hook(lambda module, inputs, output: captured.append(inputs[0]))
    levels = [torch.randn(1, 8, 4, 4), torch.randn(1, 8, 2, 2)]
    for i, level in enumerate(levels):
        encoder.input_convs[i] = _Passthrough(level)
    encoder.pyramid(VisionFeatures(levels, [16.0, 32.0], levels[1].permute(0, 2, 3, 1)))
    fine_input = captured[0]
    torch.testing.assert_close(fine_input[:, :4], levels[0][:, :4])
    coarse_up = torch.nn.functional.interpolate(levels[1], size=(4, 4), mode="bilinear", align_corners=True)
    torch.testing.assert_close(fine_input[:, 4:6], coarse_up[:, 6:8])
    torch.testing.assert_close(fine_input[:, 6:8], levels[0][:, 4:6])  # finest level's "finer" is itself


class _Passthrough(torch.nn.Module):
    def __init__(self, value: torch.Tensor) -> None:
        super().__init__()
        self.value = value

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.value


def test_box_embedding_starts_as_a_no_op_and_then_tells_equal_looking_regions_apart():
    torch.manual_seed(0)
    plain = RegionEncoderConfig(
        type="regiongpt", hidden_size=4, feature_levels=[0], refine=False, image_token_grid=0
    )
    with_geometry = RegionEncoderConfig(**{**plain.to_dict(), "box_embedding": True})
    encoder = RegionGPTEncoder(with_geometry, [4], 4, 64)
    fmap = torch.ones(1, 4, 8, 8)  # a uniform map: pooling alone cannot tell regions apart
    small, large = _box_region([0, 0, 16, 16]), _box_region([16, 16, 64, 64])
    pooled, _ = RegionGPTEncoder(plain, [4], 4, 64)(_features(fmap), small)
    start, _ = encoder(_features(fmap), small)
    torch.testing.assert_close(start, pooled)  # zero-initialised output layer
    torch.testing.assert_close(
        encoder.geometry(large), torch.tensor([[0.25, 0.25, 1.0, 1.0, 0.5625, 0.5625]])
    )
    torch.nn.init.normal_(encoder.box_embed[-1].weight)
    a, _ = encoder(_features(fmap), small)
    b, _ = encoder(_features(fmap), large)
    assert (a - b).abs().max() > 1e-3


def test_geometry_frequencies_start_as_a_no_op_and_then_tell_nearby_boxes_apart():
    torch.manual_seed(0)
    plain = RegionEncoderConfig(
        type="regiongpt", hidden_size=4, feature_levels=[0], refine=False, image_token_grid=0
    )
    encoder = RegionGPTEncoder(
        RegionEncoderConfig(**{**plain.to_dict(), "geometry_frequencies": 4}), [4], 4, 64
    )
    assert encoder.box_fourier_embed[0].in_features == 2 * 6 * 4
    fmap = torch.ones(1, 4, 8, 8)
    left, shifted = _box_region([8, 8, 24, 24]), _box_region([10, 8, 26, 24])
    pooled, _ = RegionGPTEncoder(plain, [4], 4, 64)(_features(fmap), left)
    start, _ = encoder(_features(fmap), left)
    torch.testing.assert_close(start, pooled)  # zero-initialised output layer
    torch.nn.init.normal_(encoder.box_fourier_embed[-1].weight)
    a, _ = encoder(_features(fmap), left)
    b, _ = encoder(_features(fmap), shifted)
    assert (a - b).abs().max() > 1e-3
    with pytest.raises(ValueError, match="geometry_frequencies"):
        RegionEncoderConfig(type="gpt4roi", geometry_frequencies=2)
    with pytest.raises(ValueError, match="geometry_frequencies"):
        RegionEncoderConfig(geometry_frequencies=-1)


def test_the_image_view_is_an_option_of_the_regiongpt_encoder_and_needs_its_tokens():
    encoder = RegionGPTEncoder(
        RegionEncoderConfig(type="regiongpt", hidden_size=4, feature_levels=[0], image_view_size=64),
        [4],
        4,
        64,
        view_channels=6,
    )
    with pytest.raises(ValueError, match="needs view tokens"):
        encoder.image_tokens(torch.randn(1, 4, 32, 32))
    with pytest.raises(ValueError, match="image_view_size"):
        RegionEncoderConfig(image_view_size=64, image_token_grid=0)


def test_fine_levels_start_as_a_no_op_and_then_add_detail_at_their_grid():
    torch.manual_seed(0)
    plain = RegionEncoderConfig(type="regiongpt", hidden_size=4, feature_levels=[0], image_token_grid=0)
    with_fine = RegionEncoderConfig(**{**plain.to_dict(), "fine_levels": [1, 2]})
    base = RegionGPTEncoder(plain, [4], 4, 64)
    encoder = RegionGPTEncoder(with_fine, [4], 4, 64, fine_channels=[3, 2])
    encoder.load_state_dict(base.state_dict(), strict=False)  # the trained part, as from a checkpoint
    coarse, finer, finest = torch.randn(1, 4, 4, 4), torch.randn(1, 3, 8, 8), torch.randn(1, 2, 16, 16)
    features = VisionFeatures([coarse, finer, finest], [16.0, 8.0, 4.0], coarse.permute(0, 2, 3, 1))
    torch.testing.assert_close(encoder.feature_map(features), base.feature_map(features))
    torch.nn.init.normal_(encoder.fine_projs[1].weight)  # only the finest level's projection
    diff = encoder.feature_map(features) - base.feature_map(features)
    expected = torch.nn.functional.conv2d(finest, encoder.fine_projs[1].weight, encoder.fine_projs[1].bias)
    torch.testing.assert_close(diff, expected)  # added after the last transposed conv, nothing after it
    torch.nn.init.zeros_(encoder.fine_projs[1].weight)
    torch.nn.init.normal_(encoder.fine_projs[0].weight)  # now only the 8x8 level's projection
    first, norm, gelu, last = encoder.refine
    added = torch.nn.functional.conv2d(finer, encoder.fine_projs[0].weight, encoder.fine_projs[0].bias)
    expected = last(gelu(norm(first(coarse) + added)))  # added after the first transposed conv
    torch.testing.assert_close(encoder.feature_map(features), expected)


def test_fine_levels_name_a_grid_the_refinement_does_not_reach():
    config = RegionEncoderConfig(type="regiongpt", hidden_size=4, feature_levels=[0], fine_levels=[1])
    encoder = RegionGPTEncoder(config, [4], 4, 64, fine_channels=[2])
    coarse = torch.randn(1, 4, 4, 4)
    features = VisionFeatures([coarse, torch.randn(1, 2, 12, 12)], [16.0, 5.0], coarse.permute(0, 2, 3, 1))
    with pytest.raises(ValueError, match=r"fine level 1 has a \(12, 12\) grid"):
        encoder.feature_map(features)


def test_fine_levels_need_the_refining_regiongpt_encoder():
    with pytest.raises(ValueError, match="fine_levels"):
        RegionEncoderConfig(type="regiongpt", refine=False, fine_levels=[1])
    with pytest.raises(ValueError, match="fine_levels"):
        RegionEncoderConfig(type="gpt4roi", hidden_size=64, fine_levels=[1])


def test_layout_grid_starts_as_a_no_op_and_then_tells_shapes_with_equal_means_apart():
    torch.manual_seed(0)
    plain = RegionEncoderConfig(
        type="regiongpt", hidden_size=4, feature_levels=[0], refine=False, image_token_grid=0
    )
    encoder = RegionGPTEncoder(RegionEncoderConfig(**{**plain.to_dict(), "layout_grid": 2}), [4], 4, 64)
    top, bottom = torch.zeros(1, 4, 8, 8), torch.zeros(1, 4, 8, 8)
    top[..., :4, :], bottom[..., 4:, :] = 1.0, 1.0  # same mean over the whole image, different layout
    region = _box_region([0, 0, 64, 64])
    pooled, _ = RegionGPTEncoder(plain, [4], 4, 64)(_features(top), region)
    start, _ = encoder(_features(top), region)
    torch.testing.assert_close(start, pooled)  # zero-initialised output layer
    torch.testing.assert_close(  # 2x2 grid over the box: top cells 1, bottom cells 0, per channel
        encoder.layout(top, region).view(4, 2, 2), torch.tensor([[1.0, 1.0], [0.0, 0.0]]).expand(4, 2, 2)
    )
    torch.nn.init.normal_(encoder.layout_embed[-1].weight)
    a, _ = encoder(_features(top), region)
    b, _ = encoder(_features(bottom), region)
    torch.testing.assert_close(  # mask pooling alone sees the same mean
        RegionGPTEncoder(plain, [4], 4, 64)(_features(top), region)[0],
        RegionGPTEncoder(plain, [4], 4, 64)(_features(bottom), region)[0],
    )
    assert (a - b).abs().max() > 1e-3
    with torch.no_grad():  # a bfloat16 model (no autocast) runs it too, close to float32
        noisy = top + 0.3 * torch.randn_like(top)
        full = encoder.layout(noisy, region)
        half = encoder.to(torch.bfloat16).layout(noisy.bfloat16(), region)
    assert half.dtype == torch.bfloat16
    torch.testing.assert_close(half.float(), full, atol=2e-2, rtol=2e-2)


def test_layout_grid_is_an_option_of_the_regiongpt_encoder():
    with pytest.raises(ValueError, match="layout_grid"):
        RegionEncoderConfig(type="gpt4roi", hidden_size=64, layout_grid=4)
    with pytest.raises(ValueError, match="layout_grid"):
        RegionEncoderConfig(type="regiongpt", layout_grid=-1)


def test_gpt4roi_runs_in_bfloat16_on_cpu():
    """torchvision's CPU roi_align has no bfloat16 kernel: a bfloat16 model must still encode."""
    torch.manual_seed(0)
    config = RegionEncoderConfig(
        type="gpt4roi", hidden_size=8, feature_levels=[0], group_norm_groups=2, roi_output_size=2,
        fuse_rounds=1, image_token_grid=0,
    )  # fmt: skip
    encoder = GPT4RoIEncoder(config, [4], 4, 64)
    fmap = torch.randn(1, 4, 8, 8)
    expected, _ = encoder(_features(fmap), _box_region([8, 8, 40, 48]))
    with torch.no_grad():
        got, _ = encoder.to(torch.bfloat16)(_features(fmap.bfloat16()), _box_region([8, 8, 40, 48]))
    assert got.dtype == torch.bfloat16
    torch.testing.assert_close(got.float(), expected.detach(), rtol=0.05, atol=0.05)


def test_levels_the_tower_does_not_have_or_cannot_reach_are_refused_at_build():
    class Tower(torch.nn.Module):
        channels, strides, token_channels, image_size = [8, 16, 4], [8.0, 16.0, 2.0], 16, 64

    def build(**options):
        config = RegionEncoderConfig(type="regiongpt", hidden_size=8, feature_levels=[0], **options)
        return build_region_encoder(config, Tower())

    with pytest.raises(ValueError, match=r"fine_levels \[3\]: the vision tower has 3 maps, so \[3\]"):
        build(fine_levels=[3])
    with pytest.raises(ValueError, match=r"fine_levels \[1\] have strides \[16.0\]"):
        build(fine_levels=[1])
    assert build(fine_levels=[2]).fine_projs[0].in_channels == 4  # stride 2 = 8 / 4
    with pytest.raises(ValueError, match=r"feature_levels \[-4\]"):
        build_region_encoder(
            RegionEncoderConfig(type="gpt4roi", hidden_size=64, feature_levels=[-4]), Tower()
        )
    with pytest.raises(ValueError, match="one entry each in fine_channels"):
        RegionGPTEncoder(RegionEncoderConfig(type="regiongpt", hidden_size=8, fine_levels=[1]), [8], 8, 64)


def test_region_crop_starts_as_a_no_op_and_then_adds_the_crops_features():
    torch.manual_seed(0)
    plain = RegionEncoderConfig(
        type="regiongpt", hidden_size=4, feature_levels=[0], refine=False, image_token_grid=0
    )
    cropping = RegionEncoderConfig(**{**plain.to_dict(), "region_crop_size": 32})
    encoder = RegionGPTEncoder(cropping, [4], 4, 64, crop_channels=6)
    fmap, region = torch.randn(1, 4, 8, 8), _box_region([8, 8, 40, 48])
    star, cross = torch.randn(1, 6), torch.randn(1, 6)  # crop features of two different shapes
    expected, _ = RegionGPTEncoder(plain, [4], 4, 64)(_features(fmap), region)
    start, _ = encoder(_features(fmap), region, star)
    torch.testing.assert_close(start, expected)  # zero-initialised output layer
    torch.nn.init.normal_(encoder.crop_embed[-1].weight)
    a, _ = encoder(_features(fmap), region, star)
    b, _ = encoder(_features(fmap), region, cross)
    assert (a - b).abs().max() > 1e-3
    with pytest.raises(ValueError, match="crop features for each of the 1 regions, got None"):
        encoder(_features(fmap), region)
    with pytest.raises(ValueError, match=r"got \(2, 6\)"):
        encoder(_features(fmap), region, torch.randn(2, 6))


def test_region_crop_is_an_option_of_the_regiongpt_encoder_and_fits_the_tower():
    with pytest.raises(ValueError, match="region_crop_size"):
        RegionEncoderConfig(type="gpt4roi", hidden_size=64, region_crop_size=112)
    with pytest.raises(ValueError, match="region_crop_size"):
        RegionEncoderConfig(type="regiongpt", region_crop_size=-1)
    for bad in (0, -1.0, "wide", True, float("inf")):
        with pytest.raises(ValueError, match=f"region_crop_context must be a positive number, got {bad!r}"):
            RegionEncoderConfig(type="regiongpt", region_crop_size=32, region_crop_context=bad)

    class Tower(torch.nn.Module):
        channels, strides, token_channels, image_size, fixed_input_size = [8, 16], [8.0, 16.0], 16, 64, True

    def build(size):
        config = RegionEncoderConfig(
            type="regiongpt", hidden_size=8, feature_levels=[0], region_crop_size=size
        )
        return build_region_encoder(config, Tower())

    with pytest.raises(ValueError, match="region_crop_size 32: this vision tower takes 64-pixel inputs only"):
        build(32)
    assert build(64).crop_embed[1].in_features == 24  # every map's channels
