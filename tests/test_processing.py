"""The processor: tag expansion, labels from turn spans, image/region transforms."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from regiongpt.processing import IGNORE_INDEX, ImagePreprocessor, RegionGPTProcessor, expand_region_tags
from regiongpt.regions import Box


def test_tags_expand_to_words_and_placeholders_in_text_order():
    text, order = expand_region_tags("Is <region2> left of <region1>? And <region2>?", 2, "<R>")
    assert text == "Is region 2<R> left of region 1<R>? And region 2<R>?"
    assert order == [1, 0, 1]


def test_gpt4roi_bbox_syntax_maps_the_ith_bbox_to_region_i():
    text, order = expand_region_tags("What is region1 <bbox> doing with region2 <bbox>?", 2, "<R>")
    assert text == "What is region 1<R> doing with region 2<R>?"
    assert order == [0, 1]


def test_tag_without_region_is_an_error_naming_the_tag():
    with pytest.raises(ValueError, match=r"<region3>.*2 region"):
        expand_region_tags("<region1> <region3>", 2, "<R>")


def test_labels_supervise_assistant_replies_and_their_end_of_turn(tiny_factory, rgb_image):
    _, processor = tiny_factory()
    tok = processor.tokenizer
    conv = [
        {"from": "human", "value": "What is <region1>?"},
        {"from": "gpt", "value": "a dog"},
        {"from": "human", "value": "And <region2>?"},
        {"from": "gpt", "value": "a cat"},
    ]
    sample = processor.encode(conv, rgb_image, [[0, 0, 10, 10], [20, 20, 40, 40]])
    supervised = [t for t, label in zip(sample.input_ids, sample.labels) if label != IGNORE_INDEX]
    text = tok.decode(supervised)
    assert text.count("<|im_end|>") == 2, text
    assert "a dog" in text and "a cat" in text and "region" not in text
    end_id = tok.convert_tokens_to_ids("<|im_end|>")
    assert end_id == tok.pad_token_id  # the SmolLM2 trap: labels must not come from the pad id
    assert sample.input_ids.count(processor.region_token_id) == 2
    assert sample.input_ids.count(processor.image_token_id) == processor.num_image_tokens
    assert sample.region_token_index == [0, 1]
    rendered = tok.decode(sample.input_ids)
    assert rendered.startswith("<|im_start|>system\nBe brief.<|im_end|>")


def test_unreferenced_region_and_reserved_placeholder_are_errors(tiny_factory, rgb_image):
    _, processor = tiny_factory()
    with pytest.raises(ValueError, match="region 2 given but never referenced"):
        processor.encode([{"role": "user", "content": "<region1>?"}], rgb_image, [[0, 0, 5, 5], [1, 1, 6, 6]])
    with pytest.raises(ValueError, match="reserved placeholder"):
        processor.encode([{"role": "user", "content": "<region> <region1>"}], rgb_image, [[0, 0, 5, 5]])


def test_batch_with_regions_for_the_wrong_number_of_samples_is_an_error(tiny_factory, rgb_image):
    _, processor = tiny_factory()
    conv = [{"role": "user", "content": "<region1>?"}]
    with pytest.raises(ValueError, match="batch sizes differ"):
        processor([conv, conv], [rgb_image, rgb_image], [[[0, 0, 5, 5]]])


def test_collate_offsets_region_indices_per_sample(tiny_factory, rgb_image):
    _, processor = tiny_factory()
    batch = processor(
        [
            [{"role": "user", "content": "<region1> <region2>"}],
            [{"role": "user", "content": "plain"}],
            [{"role": "user", "content": "<region1>"}],
        ],
        [rgb_image] * 3,
        [[[0, 0, 5, 5], [1, 1, 9, 9]], [], [[2, 2, 8, 8]]],
    )
    assert batch["region_token_index"].tolist() == [0, 1, 2]
    assert batch["region_image_index"].tolist() == [0, 0, 2]


def test_pad_transform_keeps_boxes_on_the_same_pixels():
    processor = ImagePreprocessor(100, [0.5] * 3, [0.5] * 3, "pad")
    image = np.zeros((50, 200, 3), dtype=np.uint8)
    image[10:20, 40:60] = 255  # a white patch
    from PIL import Image

    pixels, transform = processor(Image.fromarray(image))
    box = transform.box(Box(40, 10, 60, 20))
    assert box.as_list() == pytest.approx([20.0, 42.5, 30.0, 47.5])  # scale 0.5, pad_y 75 px
    inside = pixels[:, int(box.y1) + 1 : int(box.y2) - 1, int(box.x1) + 1 : int(box.x2) - 1]
    assert torch.all(inside > 0.9)  # white -> (1 - 0.5) / 0.5 = 1
    boxes, masks = processor.region_tensors([Box(40, 10, 60, 20)], (200, 50), transform)
    assert masks[0].sum() == pytest.approx(10 * 5, abs=10)
    assert masks[0, 45, 25] == 1 and masks[0, 10, 10] == 0


def test_stop_strings_cut_answers_and_end_generation(tiny_factory, tokenizer):
    from regiongpt.api import RegionGPT

    model, _ = tiny_factory()
    model.config.stop_strings = ["###"]
    processor = RegionGPTProcessor.from_config(model.config, tokenizer)
    stop_ids = processor.stop_token_ids
    assert stop_ids and all(tokenizer.convert_tokens_to_string([tokenizer.convert_ids_to_tokens(i)]).strip() == "###"
                            for i in stop_ids)  # fmt: skip
    text_ids = tokenizer("a red circle", add_special_tokens=False)["input_ids"]
    assert processor.decode(text_ids + [stop_ids[0]] + text_ids) == "a red circle"
    assert (
        processor.decode(tokenizer("a red### Human: next", add_special_tokens=False)["input_ids"]) == "a red"
    )
    kwargs = RegionGPT(model, processor)._generate_kwargs(8, 0.0)
    assert kwargs["eos_token_id"] == [tokenizer.eos_token_id, *stop_ids]
    plain = RegionGPTProcessor.from_config(tiny_factory()[0].config, tokenizer)
    assert plain.stop_token_ids == [] and plain.decode(text_ids + [stop_ids[0]]) == "a red circle###"
