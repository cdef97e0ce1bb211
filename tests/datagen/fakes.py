"""A fast deterministic teacher for pipeline and resume tests (``py:tests.datagen.fakes:make_fake``)."""

from __future__ import annotations

import hashlib
import os
import time

from PIL import Image

from regiongpt.datagen.teacher import Caption, RegionRequest, TeacherOptions

WORDS = [
    "red",
    "green",
    "blue",
    "small",
    "large",
    "wooden",
    "metal",
    "shiny",
    "round",
    "square",
    "striped",
    "soft",
]


class FakeTeacher:
    """Captions from the region's box and crop colour; every 5th box gets a too-short caption and
    every 7th a copy of a fixed sentence (a duplicate after the first)."""

    name = "fake"

    def __init__(self, delay: float = 0.0, workers: int = 1) -> None:
        self.delay, self.max_workers = delay, workers
        self.global_calls = 0
        self.region_calls = 0

    def global_caption(self, image: Image.Image) -> Caption:
        self.global_calls += 1
        return Caption(
            f"A test picture of {image.width} by {image.height} pixels.", {"size": list(image.size)}
        )

    def region_caption(self, request: RegionRequest) -> Caption:
        self.region_calls += 1
        time.sleep(self.delay)
        box = [round(v) for v in request.box.as_list()]
        key = int(hashlib.sha1(str(box).encode()).hexdigest(), 16)
        if key % 5 == 0:
            return Caption("Too short.")
        if key % 7 == 0:
            return Caption("The same sentence for many different regions of the picture.")
        colour = request.crop.convert("RGB").resize((1, 1)).getpixel((0, 0))
        adjectives = " ".join(WORDS[(key >> (4 * i)) % len(WORDS)] for i in range(3))
        return Caption(
            f"A {adjectives} thing {request.position} with mean colour {colour} inside box {box}.",
            {"box": box},
        )


def make_fake(options: TeacherOptions) -> FakeTeacher:
    """Factory for ``--teacher py:tests.datagen.fakes:make_fake`` (delay from FAKE_TEACHER_DELAY)."""
    return FakeTeacher(delay=float(os.environ.get("FAKE_TEACHER_DELAY", "0")), workers=options.workers)
