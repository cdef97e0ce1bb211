"""RegionDataset: file:line errors, and skipping invalid records when asked."""

from __future__ import annotations

import logging

import pytest
import torch
from PIL import Image

from regiongpt.data.converters.base import region_turns
from regiongpt.data.dataset import Collator, DataError, RegionDataset, sample_loss_weights
from regiongpt.data.format import write_jsonl
from regiongpt.tasks import Task


@pytest.fixture()
def data_with_a_bad_record(tmp_path, rgb_image, tiny_factory):
    _, processor = tiny_factory()
    Image.fromarray(rgb_image).save(tmp_path / "img.png")
    good = {"image": "img.png", "regions": [{"box": [1, 1, 20, 30]}], "task": "brief",
            "conversations": region_turns(Task.BRIEF, ["a red box"])}  # fmt: skip
    other = {**good, "id": "c", "conversations": region_turns(Task.BRIEF, ["a small blue dot"])}
    records = [{**good, "id": "a"}, {**good, "id": "b", "image": "missing.png"}, other]
    write_jsonl(tmp_path / "train.jsonl", records)
    return tmp_path / "train.jsonl", processor


def test_a_bad_record_is_an_error_naming_file_and_line(data_with_a_bad_record):
    path, processor = data_with_a_bad_record
    dataset = RegionDataset(path, processor)
    assert dataset[0].input_ids
    with pytest.raises(ValueError, match=rf"{path}:2: .*missing\.png"):
        dataset[1]


def test_skip_invalid_returns_the_next_valid_record_and_logs_the_bad_one(data_with_a_bad_record, caplog):
    path, processor = data_with_a_bad_record
    dataset = RegionDataset(path, processor, skip_invalid=True)
    with caplog.at_level(logging.WARNING, logger="regiongpt.data.dataset"):
        items = [dataset[i] for i in range(len(dataset))]
    assert items[1].input_ids == dataset.encode(2).input_ids  # record 3 stands in for the bad one
    assert items[1].input_ids != dataset.encode(0).input_ids
    assert len(dataset.skipped) == 1 and f"{path}:2:" in dataset.skipped[0]
    assert f"{path}:2:" in caplog.text


def test_skip_invalid_with_no_valid_record_is_an_error(data_with_a_bad_record, tmp_path):
    path, processor = data_with_a_bad_record
    lines = path.read_text().splitlines()
    only_bad = tmp_path / "bad.jsonl"
    only_bad.write_text(lines[1] + "\n")
    with pytest.raises(ValueError, match="no valid record"):
        RegionDataset(only_bad, processor, skip_invalid=True)[0]


@pytest.mark.parametrize("skip_invalid", [False, True])
def test_an_empty_file_is_an_error_naming_it(data_with_a_bad_record, tmp_path, skip_invalid):
    _, processor = data_with_a_bad_record
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    with pytest.raises(DataError, match=f"{empty}: the file holds no records"):
        RegionDataset(empty, processor, skip_invalid=skip_invalid)


def test_sample_loss_weights_give_every_answer_the_same_total_weight():
    ignored = -100
    labels = torch.tensor(
        [
            [ignored, ignored, 5, 6, ignored, ignored],  # 2 target tokens
            [ignored, 7, 8, 9, 10, 11],  # 5 target tokens
            [ignored] * 6,  # none: weighs nothing and does not count as a sample
            [3, ignored, ignored, ignored, ignored, 4],  # column 0 is never a target: 1 token
        ]
    )
    weights = sample_loss_weights(labels)
    assert weights.shape == labels.shape and weights[:, 0].eq(0).all()
    targets = labels[:, 1:] != ignored
    assert weights[:, 1:][~targets].eq(0).all()
    per_sample = weights.sum(dim=1)
    torch.testing.assert_close(per_sample, torch.tensor([8 / 3, 8 / 3, 0.0, 8 / 3]))
    assert float(weights.sum()) == pytest.approx(float(targets.sum()))  # the token count: 8


def test_collator_adds_loss_weights_only_for_sample_averaging_and_refuses_unknown_modes(
    tiny_factory, rgb_image
):
    _, processor = tiny_factory()
    samples = [
        processor.encode([{"from": "human", "value": "What is <region1>?"}, {"from": "gpt", "value": answer}],
                         rgb_image, [[0, 0, 20, 20]])
        for answer in ("a cat", "a small grey cat sitting on a striped red and white mat")
    ]  # fmt: skip
    assert "loss_weights" not in Collator(processor)(samples)
    batch = Collator(processor, "sample")(samples)
    tokens = (batch["labels"][:, 1:] != -100).sum(dim=1)
    assert tokens[1] > tokens[0]
    row_sums = batch["loss_weights"].sum(dim=1)  # each answer weighs the mean token count in all
    torch.testing.assert_close(row_sums, torch.full((2,), tokens.float().mean().item()))
    with pytest.raises(ValueError, match="loss_average must be one of .* got 'samples'"):
        Collator(processor, "samples")
