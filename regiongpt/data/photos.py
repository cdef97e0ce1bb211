"""Region samples on real photos, labelled by distillation from EfficientNet-Lite0.

The photos are the ones that ship inside PyPI packages (scikit-image, scikit-learn, matplotlib),
so the data set builds offline. Each photo gets random boxes; EfficientNet-Lite0 classifies each
crop, and a box whose top-1 ImageNet label has softmax probability >= ``min_confidence`` becomes
a ``category`` sample answered with that label (torchvision's ImageNet class names as they are,
e.g. ``"Egyptian cat"``, ``"espresso"``). Boxes are split into train and test at random, so the
test split holds boxes the model never saw, on photos it did see: it measures agreement with the
teacher on new regions of known photos, not recognition of new photos. Labels the teacher gave
fewer than ``min_label_count`` training boxes are dropped from both splits as noise.

Output folder (relative paths, like RegionWorld's)::

    images/<photo>.png          the photos as RGB PNG
    train.jsonl, test.jsonl     canonical records (task ``category``, one box each)
    info.json                   sources, settings, counts and the label histogram
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from regiongpt.atomic import building_directory, write_text_atomic
from regiongpt.data.format import GPT, HUMAN, Record, write_jsonl
from regiongpt.tasks import Task, build_question

VERSION = "photos-1"


def _skimage(name: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        from skimage import data

        return getattr(data, name)()

    return load


def _sklearn(file_name: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        from sklearn.datasets import load_sample_image

        return load_sample_image(file_name)

    return load


def _matplotlib(file_name: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        from matplotlib import cbook

        with cbook.get_sample_data(file_name) as handle:
            return np.array(Image.open(handle).convert("RGB"))

    return load


#: Photo name -> loader of an (H, W) or (H, W, 3|4) uint8 array. Only photographs of things
#: ImageNet names: no micrographs, text or test patterns, and not ``moon`` or ``coins``, whose
#: crops EfficientNet-Lite0 calls "nematode" and "Petri dish".
PHOTO_SOURCES: dict[str, Callable[[], np.ndarray]] = {
    "skimage-astronaut": _skimage("astronaut"),
    "skimage-chelsea": _skimage("chelsea"),
    "skimage-coffee": _skimage("coffee"),
    "skimage-rocket": _skimage("rocket"),
    "skimage-camera": _skimage("camera"),
    "sklearn-china": _sklearn("china.jpg"),
    "sklearn-flower": _sklearn("flower.jpg"),
    "matplotlib-grace_hopper": _matplotlib("grace_hopper.jpg"),
}


@dataclass(frozen=True)
class PhotoRegionConfig:
    """How boxes are drawn and kept. Sizes are fractions of the photo's shorter side."""

    boxes_per_photo: int = 400
    min_confidence: float = 0.4
    min_label_count: int = 5  # labels the teacher gave fewer training boxes are dropped (noise)
    min_size: float = 0.15
    max_size: float = 0.9
    test_fraction: float = 0.2

    def __post_init__(self) -> None:
        if self.boxes_per_photo < 1:
            raise ValueError(f"boxes_per_photo must be at least 1, got {self.boxes_per_photo}")
        if not 0.0 <= self.min_confidence <= 1.0:
            raise ValueError(f"min_confidence must be in [0, 1], got {self.min_confidence}")
        if not 0.0 < self.min_size <= self.max_size <= 1.0:
            raise ValueError(f"need 0 < min_size <= max_size <= 1, got {self.min_size}, {self.max_size}")
        if self.min_label_count < 1:
            raise ValueError(f"min_label_count must be at least 1, got {self.min_label_count}")
        if not 0.0 <= self.test_fraction < 1.0:
            raise ValueError(f"test_fraction must be in [0, 1), got {self.test_fraction}")


def load_photos(names: list[str] | None = None) -> dict[str, Image.Image]:
    """The named photos (default: every one in :data:`PHOTO_SOURCES`) as RGB images. A photo whose
    package is missing is skipped; an unknown name is a ValueError."""
    unknown = sorted(set(names or []) - set(PHOTO_SOURCES))
    if unknown:
        raise ValueError(f"unknown photo(s) {unknown}; known: {sorted(PHOTO_SOURCES)}")
    photos = {}
    for name in names or list(PHOTO_SOURCES):
        try:
            array = PHOTO_SOURCES[name]()
        except ImportError:
            continue
        photos[name] = Image.fromarray(np.asarray(array)).convert("RGB")
    return photos


def random_boxes(
    width: int, height: int, count: int, config: PhotoRegionConfig, rng: np.random.Generator
) -> list[tuple[int, int, int, int]]:
    """``count`` pixel xyxy boxes inside a ``width`` x ``height`` photo: side lengths are
    ``min_size``..``max_size`` of the shorter side (aspect 1:2 to 2:1), positions uniform."""
    short = min(width, height)
    boxes = []
    for _ in range(count):
        side = rng.uniform(config.min_size, config.max_size) * short
        aspect = float(np.exp(rng.uniform(np.log(0.5), np.log(2.0))))
        w = min(width, max(8, round(side * np.sqrt(aspect))))
        h = min(height, max(8, round(side / np.sqrt(aspect))))
        x0 = int(rng.integers(0, width - w + 1))
        y0 = int(rng.integers(0, height - h + 1))
        boxes.append((x0, y0, x0 + w, y0 + h))
    return boxes


def build_photo_regions(
    out: str | Path,
    labeler: Any,
    *,
    seed: int = 0,
    config: PhotoRegionConfig | None = None,
    photos: list[str] | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Write the data set to ``out`` and return its info. ``labeler.labels(crop, k)`` returns
    ``[(name, probability), ...]`` best first (e.g. :class:`~regiongpt.datagen.offline_teacher.
    ImageNetLabeler`). The same seed, photos and labeler give the same files.

    The folder is built beside ``out`` and replaces it only when complete (an error leaves the
    previous one whole); a non-empty ``out`` that is not such a data set is a ValueError."""
    config = config or PhotoRegionConfig()
    images = load_photos(photos)
    if not images:
        raise ValueError("no photo could be loaded: install scikit-image, scikit-learn or matplotlib")
    with building_directory(out, replaceable=_is_photo_regions) as folder:
        return _build_into(folder, images, labeler, seed, config, progress)


def _is_photo_regions(folder: Path) -> bool:
    try:
        info = json.loads((folder / "info.json").read_text())
        return isinstance(info, dict) and {"teacher", "photos", "boxes_drawn"} <= info.keys()
    except (OSError, ValueError):
        return False


def _build_into(
    out: Path,
    images: dict[str, Image.Image],
    labeler: Any,
    seed: int,
    config: PhotoRegionConfig,
    progress: bool,
) -> dict[str, Any]:
    from tqdm import tqdm

    (out / "images").mkdir(parents=True, exist_ok=True)
    splits: dict[str, list[Record]] = {"train": [], "test": []}
    drawn = 0
    bar = tqdm(
        total=len(images) * config.boxes_per_photo, desc="labelling crops", unit="box", disable=not progress
    )
    order = sorted(PHOTO_SOURCES)  # a photo's boxes do not depend on which others are chosen
    for name, image in sorted(images.items()):
        image_file = f"images/{name}.png"
        image.save(out / image_file)
        rng = np.random.default_rng([seed, order.index(name)])
        for k, box in enumerate(random_boxes(image.width, image.height, config.boxes_per_photo, config, rng)):
            drawn += 1
            bar.update()
            label, probability = labeler.labels(image.crop(box), 1)[0]
            split = "test" if rng.random() < config.test_fraction else "train"
            if probability < config.min_confidence:
                continue
            splits[split].append(
                Record(
                    id=f"photo-{name}-{k:04d}",
                    image=image_file,
                    regions=[{"box": list(box), "label": label}],
                    conversations=[
                        {"from": HUMAN, "value": build_question(Task.CATEGORY, 1)},
                        {"from": GPT, "value": label},
                    ],
                    task=Task.CATEGORY,
                    width=image.width,
                    height=image.height,
                    meta={"photo": name, "teacher_probability": round(float(probability), 4)},
                )
            )
    bar.close()
    for stale in (out / "images").glob("*.png"):  # photos of an earlier run with other --photos
        if stale.stem not in images:
            stale.unlink()
    counts = Counter(r.regions[0]["label"] for r in splits["train"])
    frequent = {label for label, n in counts.items() if n >= config.min_label_count}
    splits = {
        split: [r for r in records if r.regions[0]["label"] in frequent] for split, records in splits.items()
    }
    for split, records in splits.items():
        write_jsonl(out / f"{split}.jsonl", records)
    info = {
        "version": VERSION,
        "seed": seed,
        "config": asdict(config),
        "teacher": getattr(labeler, "name", type(labeler).__name__),
        "photos": sorted(images),
        "boxes_drawn": drawn,
        "splits": {split: len(records) for split, records in splits.items()},
        "labels": dict(Counter(r.regions[0]["label"] for r in splits["train"]).most_common()),
    }
    write_text_atomic(out / "info.json", json.dumps(info, indent=2) + "\n")
    return info
