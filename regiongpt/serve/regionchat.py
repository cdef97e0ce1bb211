"""The web UI's logic, free of Gradio: numbered boxes, the chat about them, examples.

The model wants every region it is given to be named in the text, while a user may ask about
``<region2>`` first; :class:`RegionChat` therefore hands the model only the boxes the chat has
named, numbered in the order they were first named, and maps ``region N`` in answers back to
the numbers on screen."""

from __future__ import annotations

import hashlib
import re
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np
from PIL import Image

from regiongpt.api import RegionGPT
from regiongpt.modeling.vision import VisionFeatures
from regiongpt.processing import TAG_PATTERN
from regiongpt.regions import Box, validate_regions

ANSWER_REGION = re.compile(r"(region\s*)(\d+)", re.IGNORECASE)
REGION_LABEL = re.compile(r"region(\d+)")


@dataclass
class ChatState:
    """Model-facing history of one chat: ``order[j]`` is the on-screen K of the box the model
    calls region j+1."""

    image_key: str = ""
    turns: list[dict[str, str]] = field(default_factory=list)
    order: list[int] = field(default_factory=list)


def annotation_image(value: dict[str, Any]) -> Image.Image:
    """The image as the user sees it (the annotator's clockwise quarter turns applied)."""
    array = np.asarray(value["image"])
    turns = int(value.get("orientation") or 0) % 4
    return Image.fromarray(np.ascontiguousarray(np.rot90(array, k=-turns)) if turns else array).convert("RGB")


def box_number(label: Any) -> Optional[int]:
    match = REGION_LABEL.fullmatch(str(label or ""))
    return int(match.group(1)) if match else None


def relabel(boxes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Boxes with a ``regionK`` label keep it; new ones (the annotator puts them FIRST in its
    list) get the next free numbers, oldest first, so numbers never move once shown."""
    numbers = [box_number(box.get("label")) for box in boxes]
    seen: set[int] = set()
    for index, number in enumerate(numbers):  # a duplicated label counts as new
        if number is not None and number in seen:
            numbers[index] = None
        elif number is not None:
            seen.add(number)
    following = max(seen, default=0) + 1
    for index in reversed(range(len(boxes))):
        if numbers[index] is None:
            numbers[index], following = following, following + 1
    return [{**box, "label": f"region{n}"} for box, n in zip(boxes, numbers)]


def annotation_boxes(value: dict[str, Any]) -> dict[int, Box]:
    """``{K: box}`` for the boxes on screen, K as in their ``regionK`` labels."""
    return {
        box_number(b["label"]): Box(b["xmin"], b["ymin"], b["xmax"], b["ymax"])
        for b in relabel(value.get("boxes") or [])
        if b["xmax"] > b["xmin"] and b["ymax"] > b["ymin"]
    }


class RegionChat:
    """Chat logic of the UI, free of Gradio: image features are cached per image."""

    def __init__(self, engine: RegionGPT, max_new_tokens: int = 128, cache_size: int = 4) -> None:
        self.engine, self.max_new_tokens, self.cache_size = engine, max_new_tokens, cache_size
        self._features: OrderedDict[str, VisionFeatures] = OrderedDict()

    def features(self, key: str, image: Image.Image) -> VisionFeatures:
        if key not in self._features:
            self._features[key] = self.engine.encode_image(image)[1]
            while len(self._features) > self.cache_size:
                self._features.popitem(last=False)
        self._features.move_to_end(key)
        return self._features[key]

    def ask(
        self, image: Image.Image, boxes: dict[int, Box], question: str, state: ChatState
    ) -> tuple[str, ChatState]:
        """Answer ``question`` about ``boxes`` (``{K: box}`` for ``<regionK>``) drawn on ``image``;
        raises ValueError for user errors."""
        if not question.strip():
            raise ValueError("type a question, for example: What is <region1>?")
        key = hashlib.sha1(np.asarray(image).tobytes() + repr(image.size).encode()).hexdigest()
        if key != state.image_key:  # a new image starts a new chat
            state = ChatState(image_key=key)
        order = list(state.order)
        for match in TAG_PATTERN.finditer(question):
            k = int(match.group(1))
            if k not in boxes:
                drawn = ", ".join(f"region{n}" for n in sorted(boxes)) or "none yet"
                raise ValueError(
                    f"<region{k}> is not drawn (boxes on the image: {drawn}); drag on the image to draw one"
                )
            if k not in order:
                order.append(k)
        missing = [k for k in order if k not in boxes]
        if missing:
            raise ValueError(f"region{missing[0]} was removed but the chat refers to it: press Reset chat")
        regions = validate_regions([boxes[k] for k in order], image.size)
        text = TAG_PATTERN.sub(lambda m: f"<region{order.index(int(m.group(1))) + 1}>", question.strip())
        conversation = [*state.turns, {"role": "user", "content": text}]
        raw = self.engine.generate(
            [conversation], image, [regions], self.features(key, image), self.max_new_tokens
        )[0]
        turns = [*conversation, {"role": "assistant", "content": raw}]
        shown = ANSWER_REGION.sub(
            lambda m: (
                f"{m.group(1)}{order[int(m.group(2)) - 1]}"
                if 1 <= int(m.group(2)) <= len(order)
                else m.group(0)
            ),
            raw,
        )
        return shown, ChatState(key, turns, order)


def example_images(directory: Path, regionworld: Path = Path("data/regionworld")) -> list[list[Any]]:
    """Example rows ``[annotator value, question]``: scikit-image's cat and astronaut, and
    RegionWorld test images when present; boxes are pre-drawn."""
    rows: list[list[Any]] = []
    try:
        from skimage import data

        for name, array, box in (
            ("chelsea", data.chelsea(), (140, 20, 330, 210)),
            ("astronaut", data.astronaut(), (160, 30, 300, 200)),
        ):
            path = directory / f"{name}.png"
            Image.fromarray(array).save(path)
            rows.append(_example(path, [box], "What is <region1>?"))
    except ImportError:
        pass
    records = regionworld / "test.jsonl"
    if records.is_file():
        import json

        with records.open() as handle:
            for line in handle:
                record = json.loads(line)
                path = regionworld / record["image"]
                if path.is_file() and all(str(path.resolve()) != row[0]["image"] for row in rows):
                    rows.append(
                        _example(
                            path.resolve(),
                            [tuple(r["box"]) for r in record["regions"]],
                            record["conversations"][0]["value"],
                        )
                    )
                if len(rows) >= 4:
                    break
    return rows


def _example(path: Path, boxes: list[tuple], question: str) -> list[Any]:
    drawn = [
        {"xmin": int(b[0]), "ymin": int(b[1]), "xmax": int(b[2]), "ymax": int(b[3]), "label": f"region{k}"}
        for k, b in enumerate(boxes, start=1)
    ]
    return [{"image": str(path), "boxes": drawn}, question]


def lossless_copy(image: Any, directory: Path) -> str:
    """The annotator's image as a PNG file (named by content), so round trips keep every pixel."""
    if isinstance(image, (str, Path)):
        return str(image)
    array = np.ascontiguousarray(np.asarray(image))
    path = directory / f"{hashlib.sha1(array.tobytes() + repr(array.shape).encode()).hexdigest()}.png"
    if not path.exists():
        Image.fromarray(array).save(path)
    return str(path)
