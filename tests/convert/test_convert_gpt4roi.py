"""GPT4RoI delta -> regiongpt: our encoder + projector and the full model reproduce GPT4RoI's forward."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torchvision.ops import roi_align
from transformers import LlamaForCausalLM

from regiongpt.api import RegionGPT
from regiongpt.convert.gpt4roi import convert_gpt4roi, pyramid_layers
from regiongpt.convert.weights import ConversionError
from regiongpt.modeling.region_inputs import RegionInputs
from tests.convert.builders import GN_GROUPS, IMAGE_SIZE, SPI, llama_config, make_gpt4roi


def reference_spi(
    w: dict[str, torch.Tensor], hidden_states, boxes: torch.Tensor, image_size: int
) -> torch.Tensor:
    """GPT4RoI's region tokens for one image, written from DESIGN.md section 8 (``boxes``: normalised xyxy)."""
    chosen = list(hidden_states[-2::-3])[::-1][-4:]  # layers 14, 17, 20, 23 of CLIP-L
    tokens = [h[:, 1:] for h in chosen]  # CLS dropped
    batch, count, width = tokens[0].shape
    side = math.isqrt(count)
    sizes = [side * 8, side * 4, side * 2, side]
    levels = []
    for index, (t, size) in enumerate(zip(tokens, sizes)):
        grid = t.reshape(batch, side, side, width).permute(0, 3, 1, 2)
        grid = F.interpolate(grid, size=(size, size), mode="bilinear", align_corners=True)
        ys, xs = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
        coords = torch.stack([xs, ys])[None].expand(batch, 2, size, size)  # x channel, then y
        conv = f"{SPI}mlvl_fuse.input_conv.{index}"
        levels.append(F.conv2d(torch.cat([grid, coords], 1), w[f"{conv}.weight"], w[f"{conv}.bias"]))
    quarter = width // 4
    for r in range(5):
        fuse = f"{SPI}mlvl_fuse.fuse_convs.{r}"
        fused = []
        for index, level in enumerate(levels):
            size = level.shape[-2:]
            coarser = levels[min(index + 1, 3)][:, 3 * quarter :]
            finer = levels[max(index - 1, 0)][:, 2 * quarter : 3 * quarter]
            x = torch.cat(
                [
                    level[:, : 2 * quarter],
                    F.interpolate(coarser, size=size, mode="bilinear", align_corners=True),
                    F.interpolate(finer, size=size, mode="bilinear", align_corners=True),
                ],
                1,
            )
            x = F.conv2d(x, w[f"{fuse}.conv.weight"], padding=1)
            fused.append(F.relu(F.group_norm(x, GN_GROUPS, w[f"{fuse}.gn.weight"], w[f"{fuse}.gn.bias"])))
        levels = fused
    rois = torch.cat([torch.zeros(len(boxes), 1), boxes * image_size], 1)
    pooled = 0
    for index, (level, size) in enumerate(zip(levels, sizes)):
        stride = image_size / size
        roi = roi_align(level, rois, 14, spatial_scale=1 / stride, sampling_ratio=2, aligned=True)
        pconv = f"{SPI}roi_align.pconvs.{index}"
        pooled = pooled + F.conv2d(roi, w[f"{pconv}.weight"], w[f"{pconv}.bias"], padding=1)
    p = f"{SPI}roi_align."
    feature = F.linear(
        F.relu(pooled).flatten(1), w[p + "flatten_linear.weight"], w[p + "flatten_linear.bias"]
    )
    box = F.relu(F.linear(boxes, w[p + "pos_embedd.0.weight"], w[p + "pos_embedd.0.bias"]))
    box = F.layer_norm(box, box.shape[-1:], w[p + "pos_embedd.2.weight"], w[p + "pos_embedd.2.bias"])
    box = F.relu(F.linear(box, w[p + "pos_embedd.3.weight"], w[p + "pos_embedd.3.bias"]))
    box = F.layer_norm(box, box.shape[-1:], w[p + "pos_embedd.5.weight"], w[p + "pos_embedd.5.bias"])
    return F.linear(feature + box, w[p + "updims.weight"], w[p + "updims.bias"])


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    root = tmp_path_factory.mktemp("gpt4roi")
    files = make_gpt4roi(root)
    out = convert_gpt4roi(
        files.delta, root / "out", base=files.base, vision=files.clip, group_norm_groups=GN_GROUPS
    )
    return files, RegionGPT.from_pretrained(out)


def test_pyramid_layers_match_gpt4roi():
    assert pyramid_layers(25, -2) == [14, 17, 20, 23]
    with pytest.raises(ConversionError):
        pyramid_layers(5, -2)


def test_region_encoder_and_projector_reproduce_gpt4roi(converted):
    files, engine = converted
    model = engine.model
    torch.manual_seed(1)
    pixels = torch.randn(1, 3, IMAGE_SIZE, IMAGE_SIZE)
    boxes = torch.tensor([[0.1, 0.2, 0.7, 0.9], [0.33, 0.05, 0.52, 0.4], [0.0, 0.0, 1.0, 1.0]])
    with torch.no_grad():
        features = model.encode_images(pixels)
        regions = RegionInputs(boxes * IMAGE_SIZE, torch.zeros(3, 1, 1), torch.zeros(3, dtype=torch.long))
        ours = model.region_projector(model.region_encoder(features, regions)[0])
        hidden = files.clip_model.vision_model(pixel_values=pixels, output_hidden_states=True).hidden_states
        expected = reference_spi(files.finetuned, hidden, boxes, IMAGE_SIZE)
    torch.testing.assert_close(ours, expected, rtol=1e-4, atol=1e-5)


def test_full_model_reproduces_gpt4roi_forward(converted):
    files, engine = converted
    rng = np.random.default_rng(0)
    image = (rng.random((60, 80, 3)) * 255).astype(np.uint8)
    conversation = [{"role": "user", "content": "What is <region2> doing next to <region1>?"}]
    batch = engine.processor(
        [conversation], [image], [[[5, 5, 40, 50], [30, 10, 78, 58]]], add_generation_prompt=True
    )
    ids = batch["input_ids"]
    tokenizer = engine.processor.tokenizer
    patch, bbox, start, end = tokenizer.convert_tokens_to_ids(
        ["<im_patch>", "<bbox>", "<im_start>", "<im_end>"]
    )
    where = (ids[0] == patch).nonzero().flatten()
    assert len(where) == 16 and ids[0, where[0] - 1] == start and ids[0, where[-1] + 1] == end
    assert (ids == bbox).sum() == 2 and engine.model.config.region_token_id == bbox
    assert engine.model.config.stop_strings == ["###"]  # GPT4RoI's answers end at the next turn marker
    assert engine.processor.stop_strings == ["###"]  # (cutting at it: tests/test_processing.py)

    w = files.finetuned
    with torch.no_grad():
        hidden = files.clip_model.vision_model(
            pixel_values=batch["pixel_values"], output_hidden_states=True
        ).hidden_states
        expected = F.embedding(ids, w["model.embed_tokens.weight"])
        image_tokens = F.linear(
            hidden[-2][:, 1:], w["model.mm_projector.weight"], w["model.mm_projector.bias"]
        )
        expected[ids == patch] = image_tokens[0]
        # The i-th <bbox> takes the i-th box of the text: region 2 first here.
        boxes = batch["region_boxes"][batch["region_token_index"]] / IMAGE_SIZE
        expected[ids == bbox] = reference_spi(w, hidden, boxes, IMAGE_SIZE)
        inputs = {k: v for k, v in batch.items() if k != "labels"}
        ours = engine.model.embed_inputs(
            ids,
            inputs["pixel_values"],
            inputs["region_boxes"],
            inputs["region_masks"],
            inputs["region_image_index"],
            inputs["region_token_index"],
        )
        torch.testing.assert_close(ours, expected, rtol=1e-4, atol=1e-5)

        lm = LlamaForCausalLM(llama_config(vocab=w["model.embed_tokens.weight"].shape[0])).eval()
        lm.load_state_dict(
            {k: v for k, v in w.items() if not k.startswith(("model.spi_module", "model.mm_proj"))}
        )
        reference_logits = lm(inputs_embeds=expected).logits
        logits = engine.model(**inputs).logits
    torch.testing.assert_close(logits, reference_logits, rtol=1e-4, atol=1e-4)


def test_prompt_follows_gpt4roi_format(converted):
    _, engine = converted
    rendered = engine.processor._render(
        [{"role": "system", "content": "SYS"}, {"role": "user", "content": "<im_patch><im_patch>\nQ"}], True
    )
    assert rendered == (
        "<s>SYS\n\n### Human: The <im_start><im_patch><im_patch><im_end> provides an overview of the picture.\n"
        "Q\n### Assistant:"
    )


def test_bin_shards_base_tokenizer_and_repaired_special_tokens(tmp_path, capsys):
    files = make_gpt4roi(tmp_path, bins=True, tokenizer_in_delta=False, base_special_tokens=False)
    out = convert_gpt4roi(
        files.delta,
        tmp_path / "out",
        base=files.base,
        vision=files.clip,
        group_norm_groups=GN_GROUPS,
        dtype=torch.float32,
    )
    assert "set to '<s>'" in capsys.readouterr().err
    engine = RegionGPT.from_pretrained(out)
    tokenizer = engine.processor.tokenizer
    assert tokenizer.convert_tokens_to_ids("<im_end>") == 32005 and tokenizer.pad_token == "[PAD]"
    state = engine.model.state_dict()
    torch.testing.assert_close(
        state["language_model.model.layers.1.mlp.up_proj.weight"],
        files.finetuned["model.layers.1.mlp.up_proj.weight"],
    )
    torch.testing.assert_close(state["language_model.lm_head.weight"], files.finetuned["lm_head.weight"])


def test_merged_weights_convert_without_base(tmp_path):
    from safetensors.torch import save_file

    files = make_gpt4roi(tmp_path)
    merged = tmp_path / "merged"
    merged.mkdir()
    save_file({k: v.contiguous() for k, v in files.finetuned.items()}, str(merged / "model.safetensors"))
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json"):
        (merged / name).write_bytes((files.delta / name).read_bytes())
    out = convert_gpt4roi(merged, tmp_path / "out", vision=files.clip, group_norm_groups=GN_GROUPS)
    state = RegionGPT.from_pretrained(out).model.state_dict()
    torch.testing.assert_close(
        state["language_model.model.embed_tokens.weight"], files.finetuned["model.embed_tokens.weight"]
    )
    with pytest.raises(ConversionError, match="merged weights, not a delta"):
        convert_gpt4roi(
            merged, tmp_path / "out2", base=files.base, vision=files.clip, group_norm_groups=GN_GROUPS
        )
    with pytest.raises(ConversionError, match="looks like a delta"):
        convert_gpt4roi(files.delta, tmp_path / "out3", vision=files.clip, group_norm_groups=GN_GROUPS)
