"""Real-photo region samples: boxes, teacher filtering, splits and determinism (fake teacher)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from regiongpt.data.format import read_jsonl
from regiongpt.data.photos import PhotoRegionConfig, build_photo_regions, random_boxes

pytest.importorskip("skimage")


class BrightnessTeacher:
    """'bright' or 'dark' by the crop's mean grey level, as sure as the crop is large."""

    name = "fake-brightness"

    def __init__(self) -> None:
        self.calls = 0

    def labels(self, crop: Image.Image, k: int) -> list[tuple[str, float]]:
        self.calls += 1
        grey = np.asarray(crop.convert("L"), dtype=np.float32).mean()
        confidence = min(1.0, crop.width * crop.height / 40000)
        return [("bright" if grey > 110 else "dark", confidence)][:k]


def test_samples_follow_the_teacher_and_are_deterministic(tmp_path):
    config = PhotoRegionConfig(boxes_per_photo=60, min_confidence=0.5, min_label_count=1, test_fraction=0.25)
    teacher = BrightnessTeacher()
    info = build_photo_regions(
        tmp_path / "a", teacher, seed=3, config=config, photos=["skimage-chelsea"], progress=False
    )
    assert teacher.calls == 60 and info["boxes_drawn"] == 60 and info["teacher"] == "fake-brightness"
    image = Image.open(tmp_path / "a" / "images" / "skimage-chelsea.png")
    assert image.size == (451, 300)
    records = {split: list(read_jsonl(tmp_path / "a" / f"{split}.jsonl")) for split in ("train", "test")}
    assert info["splits"] == {split: len(r) for split, r in records.items()}
    assert records["train"] and records["test"]
    for record in records["train"] + records["test"]:
        x0, y0, x1, y1 = record.regions[0]["box"]
        assert 0 <= x0 < x1 <= 451 and 0 <= y0 < y1 <= 300
        answer = record.conversations[1]["value"]
        assert (answer, record.task.value) == (record.regions[0]["label"], "category")
        assert "<region1>" in record.conversations[0]["value"]
        crop = image.crop((x0, y0, x1, y1))
        assert teacher.labels(crop, 1)[0] == (
            answer,
            pytest.approx(record.meta["teacher_probability"], abs=1e-4),
        )
        assert record.meta["teacher_probability"] >= 0.5
    ids = [r.id for r in records["train"] + records["test"]]
    assert len(set(ids)) == len(ids) < 60  # some small crops fell below the confidence
    build_photo_regions(
        tmp_path / "b", BrightnessTeacher(), seed=3, config=config, photos=["skimage-chelsea"], progress=False
    )
    for name in ("train.jsonl", "test.jsonl", "info.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_rare_labels_are_dropped_from_both_splits(tmp_path):
    config = PhotoRegionConfig(boxes_per_photo=40, min_confidence=0.0, min_label_count=1000)
    info = build_photo_regions(
        tmp_path, BrightnessTeacher(), config=config, photos=["skimage-chelsea"], progress=False
    )
    assert info["splits"] == {"train": 0, "test": 0} and info["labels"] == {}
    assert json.loads((tmp_path / "info.json").read_text())["boxes_drawn"] == 40


def test_random_boxes_stay_inside_and_respect_the_size_range():
    config = PhotoRegionConfig(min_size=0.2, max_size=0.5)
    boxes = random_boxes(300, 200, 500, config, np.random.default_rng(0))
    for x0, y0, x1, y1 in boxes:
        assert 0 <= x0 < x1 <= 300 and 0 <= y0 < y1 <= 200
        side = ((x1 - x0) * (y1 - y0)) ** 0.5
        assert 0.2 * 200 - 1 <= side <= 0.5 * 200 + 1


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"boxes_per_photo": 0}, "boxes_per_photo must be at least 1, got 0"),
        ({"min_confidence": 1.5}, r"min_confidence must be in \[0, 1\], got 1.5"),
        ({"min_size": 0.6, "max_size": 0.5}, "need 0 < min_size <= max_size <= 1, got 0.6, 0.5"),
        ({"test_fraction": 1.0}, r"test_fraction must be in \[0, 1\), got 1.0"),
    ],
)
def test_bad_settings_name_the_value(kwargs, message):
    with pytest.raises(ValueError, match=message):
        PhotoRegionConfig(**kwargs)


def test_an_unknown_photo_is_named(tmp_path):
    with pytest.raises(ValueError, match=r"unknown photo\(s\) \['skimage-moonn'\]"):
        build_photo_regions(tmp_path, BrightnessTeacher(), photos=["skimage-moonn"], progress=False)
    assert not (tmp_path / "train.jsonl").exists()


def test_a_failed_run_leaves_the_previous_folder_whole(tmp_path):
    out = tmp_path / "photos"
    config = PhotoRegionConfig(boxes_per_photo=12, min_label_count=1)
    build_photo_regions(
        out, BrightnessTeacher(), seed=1, config=config, photos=["skimage-chelsea"], progress=False
    )
    before = {p.name: p.read_bytes() for p in out.rglob("*") if p.is_file()}

    class FailingTeacher(BrightnessTeacher):
        def labels(self, crop, k):
            if self.calls == 5:
                raise RuntimeError("teacher crashed")
            return super().labels(crop, k)

    with pytest.raises(RuntimeError, match="teacher crashed"):
        build_photo_regions(
            out, FailingTeacher(), seed=2, config=config, photos=["skimage-chelsea"], progress=False
        )
    assert {p.name: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["photos"]  # no temporary folder left
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    with pytest.raises(ValueError, match="is not empty and not a data set"):
        build_photo_regions(
            tmp_path / "mine", BrightnessTeacher(), photos=["skimage-chelsea"], progress=False
        )
    assert [p.name for p in (tmp_path / "mine").iterdir()] == ["notes.txt"]
