"""The web UI's logic without a browser: box numbering, region renumbering for the model,
rotation, examples, and that the Blocks app builds with analytics off."""

from __future__ import annotations

import numpy as np
import pytest

from regiongpt.api import RegionGPT
from regiongpt.regions import Box
from regiongpt.serve.regionchat import (
    ChatState,
    RegionChat,
    annotation_boxes,
    annotation_image,
    example_images,
    relabel,
)
from tests.serve.util import make_image


class ScriptedEngine(RegionGPT):
    """Answers with a fixed text and records what reached ``generate``."""

    def __init__(self, engine: RegionGPT, answer: str) -> None:
        super().__init__(engine.model, engine.processor, name="scripted")
        self.answer, self.calls = answer, []

    def generate(self, conversations, image, regions, features=None, max_new_tokens=48, temperature=0.0):
        self.processor.encode(
            conversations[0], image, regions[0], add_generation_prompt=True
        )  # must be valid
        self.calls.append((conversations[0], regions[0], features))
        return [self.answer]


def box(x1, y1, x2, y2, label=""):
    return {"xmin": x1, "ymin": y1, "xmax": x2, "ymax": y2, "label": label}


def test_new_boxes_get_the_next_numbers_and_old_ones_keep_theirs():
    # The annotator puts a new box first in its list.
    assert [b["label"] for b in relabel([box(0, 0, 5, 5)])] == ["region1"]
    boxes = [box(1, 1, 9, 9), box(0, 0, 5, 5, "region1")]
    assert [b["label"] for b in relabel(boxes)] == ["region2", "region1"]
    after_delete = [box(2, 2, 8, 8), box(1, 1, 9, 9, "region2")]  # region1 was removed
    assert [b["label"] for b in relabel(after_delete)] == ["region3", "region2"]
    assert [b["label"] for b in relabel([box(0, 0, 1, 1, "region1"), box(0, 0, 2, 2, "region1")])] == [
        "region1",
        "region2",
    ]
    assert annotation_boxes({"boxes": boxes}) == {1: Box(0, 0, 5, 5), 2: Box(1, 1, 9, 9)}


def test_rotated_annotations_use_the_rotated_image():
    array = np.asarray(make_image(80, 60))
    value = {"image": array, "boxes": [], "orientation": 1}  # one clockwise quarter turn
    rotated = annotation_image(value)
    assert rotated.size == (60, 80)
    assert np.array_equal(np.asarray(rotated), np.rot90(array, k=-1))
    assert annotation_image({**value, "orientation": 0}).size == (80, 60)


def test_asking_about_region2_first_renumbers_for_the_model_and_back(tiny_engine):
    engine = ScriptedEngine(tiny_engine, "region 1 is left of region 2")
    chat = RegionChat(engine)
    image = make_image(80, 60)
    boxes = {1: Box(0, 0, 20, 20), 2: Box(40, 10, 70, 50)}
    answer, state = chat.ask(image, boxes, "Where is <region2>?", ChatState())
    conversation, regions, _ = engine.calls[-1]
    assert conversation == [{"role": "user", "content": "Where is <region1>?"}]
    assert regions == [Box(40, 10, 70, 50)]
    assert answer == "region 2 is left of region 2"  # the model's "region 1" is box 2 on screen
    answer, state = chat.ask(image, boxes, "And <region1> versus <region2>?", state)
    conversation, regions, features = engine.calls[-1]
    assert [t["content"] for t in conversation] == [
        "Where is <region1>?",
        "region 1 is left of region 2",
        "And <region2> versus <region1>?",
    ]
    assert regions == [Box(40, 10, 70, 50), Box(0, 0, 20, 20)]
    assert answer == "region 2 is left of region 1"
    assert features is engine.calls[0][2]  # the image was encoded once


def test_mistakes_raise_clear_errors_and_a_new_image_starts_over(tiny_engine):
    engine = ScriptedEngine(tiny_engine, "a box")
    chat = RegionChat(engine)
    image = make_image(80, 60)
    with pytest.raises(ValueError, match=r"<region3> is not drawn \(boxes on the image: region1\)"):
        chat.ask(image, {1: Box(0, 0, 20, 20)}, "What is <region3>?", ChatState())
    with pytest.raises(ValueError, match="type a question"):
        chat.ask(image, {}, "  ", ChatState())
    _, state = chat.ask(image, {1: Box(0, 0, 20, 20)}, "What is <region1>?", ChatState())
    with pytest.raises(ValueError, match="region1 was removed but the chat refers to it"):
        chat.ask(image, {2: Box(0, 0, 20, 20)}, "And <region2>?", state)
    _, fresh = chat.ask(make_image(80, 60, seed=9), {2: Box(0, 0, 20, 20)}, "And <region2>?", state)
    assert len(fresh.turns) == 2 and fresh.order == [2]


def test_examples_are_local_files_with_boxes_inside(tmp_path):
    pytest.importorskip("skimage")
    from PIL import Image

    rows = example_images(tmp_path)
    assert len(rows) >= 2
    for value, question in rows:
        assert "<region1>" in question
        with Image.open(value["image"]) as image:
            for b in value["boxes"]:
                assert (
                    0 <= b["xmin"] < b["xmax"] <= image.width and 0 <= b["ymin"] < b["ymax"] <= image.height
                )


def test_blocks_build_offline_with_analytics_off(tiny_engine):
    pytest.importorskip("gradio")
    pytest.importorskip("gradio_image_annotation")
    from regiongpt.serve.ui import build_ui

    demo = build_ui(tiny_engine, examples=[])
    assert demo.analytics_enabled is False
    assert demo.title == "regiongpt"
