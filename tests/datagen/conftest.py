"""Fixtures for the datagen tests: a folder of small photos with COCO and JSONL annotations."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image


def photos() -> dict[str, Image.Image]:
    """Small real photos (scikit-image) and one random image."""
    data = pytest.importorskip("skimage.data")
    rng = np.random.default_rng(0)
    noise = Image.fromarray((rng.random((90, 120, 3)) * 255).astype(np.uint8))
    return {
        "chelsea.jpg": Image.fromarray(data.chelsea()).resize((225, 150)),
        "coffee.jpg": Image.fromarray(data.coffee()).resize((240, 160)),
        "noise.png": noise,
    }


#: file -> [(category, [x, y, w, h])]; several regions per image, one duplicate box.
ANNOTATIONS = {
    "chelsea.jpg": [("cat", [40, 10, 140, 135]), ("cat", [60, 15, 60, 50]), ("couch", [0, 100, 225, 50])],
    "coffee.jpg": [("cup", [50, 20, 150, 120]), ("dining table", [0, 110, 240, 50])],
    "noise.png": [("kite", [10, 10, 40, 30]), ("kite", [60, 40, 50, 40]), ("kite", [10, 10, 40, 30])],
}


@pytest.fixture()
def image_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "images"
    folder.mkdir()
    for name, image in photos().items():
        image.save(folder / name)
    return folder


@pytest.fixture()
def coco_file(image_dir: Path) -> Path:
    categories = sorted({c for anns in ANNOTATIONS.values() for c, _ in anns})
    images, annotations = [], []
    for image_id, (name, anns) in enumerate(ANNOTATIONS.items(), start=1):
        with Image.open(image_dir / name) as image:
            images.append({"id": image_id, "file_name": name, "width": image.width, "height": image.height})
        for category, (x, y, w, h) in anns:
            annotations.append(
                {
                    "id": 100 + len(annotations),
                    "image_id": image_id,
                    "bbox": [x, y, w, h],
                    "area": w * h,
                    "category_id": categories.index(category) + 1,
                    "iscrowd": 0,
                    "segmentation": [[x, y, x + w, y, x + w / 2, y + h]],
                }
            )
    annotations.append(
        {
            "id": 999,
            "image_id": 1,
            "bbox": [0, 0, 10, 10],
            "category_id": 1,
            "iscrowd": 1,
            "segmentation": {"size": [150, 225], "counts": [0, 100]},
        }
    )
    path = image_dir.parent / "instances.json"
    cats = [{"id": i + 1, "name": c} for i, c in enumerate(categories)]
    path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": cats}))
    return path


@pytest.fixture()
def regions_file(image_dir: Path) -> Path:
    """A canonical JSONL: labelled regions, a category record and an unlabelled region."""
    rows = [
        {
            "id": "a",
            "image": "images/chelsea.jpg",
            "regions": [{"box": [40, 10, 180, 145], "label": "cat"}, {"box": [0, 100, 225, 150]}],
            "conversations": [
                {"from": "human", "value": "<region1> <region2>"},
                {"from": "gpt", "value": "x"},
            ],
        },
        {
            "id": "b",
            "image": "images/coffee.jpg",
            "regions": [{"box": [50, 20, 200, 140]}],
            "task": "category",
            "conversations": [
                {"from": "human", "value": "What is <region1>?"},
                {"from": "gpt", "value": "cup"},
            ],
        },
    ]
    path = image_dir.parent / "regions.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path
