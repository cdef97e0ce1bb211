"""``make demo`` / ``regiongpt demo``: the default model on bundled scenes and a real photo."""

from __future__ import annotations

import json
import time
from pathlib import Path

from PIL import Image

from regiongpt.imaging import image_format_for, save_image_atomic
from regiongpt.regions import Box
from regiongpt.tasks import Task
from regiongpt.visualize import draw_regions

#: Regions on scikit-image's ``chelsea`` photo (451x300): the left eye, the nose, the right ear.
CHELSEA_BOXES = [Box(135, 85, 210, 150), Box(230, 220, 295, 270), Box(320, 0, 400, 60)]

HONESTY = (
    "The default model was trained on RegionWorld, procedural scenes of shapes (it names shape,\n"
    "colour, texture and size), and on regions of 8 photos that ship with scikit-image,\n"
    "scikit-learn and matplotlib, labelled with EfficientNet-Lite0's ImageNet class. On real photos\n"
    "its category answers are such classes; its captions there are not to be trusted\n"
    "(RegionWorld attribute words, sometimes an object name)."
)


def _say(text: str = "") -> None:
    print(text, flush=True)


def run_demo(model_name: str, out: Path) -> None:
    """Describe the bundled scenes and photo with ``model_name`` and write their annotated
    contact sheet to ``out`` (an image file name: .png, .jpg, ...; checked before any work)."""
    from regiongpt.api import RegionGPT

    image_format_for(out)
    start = time.perf_counter()
    engine = RegionGPT.from_pretrained(model_name)
    _say(f"loaded model {model_name!r} in {time.perf_counter() - start:.1f} s\n{HONESTY}\n")
    assets = Path(__file__).resolve().parent / "assets" / "demo"
    scenes = json.loads((assets / "scenes.json").read_text())["scenes"]
    panels = []
    correct = total = 0
    for scene in scenes:
        image = Image.open(assets / scene["image"]).convert("RGB")
        boxes = [Box(*o["box"]) for o in scene["objects"]]
        answers = engine.describe(image, boxes, task=Task.BRIEF)
        _say(f"RegionWorld scene {scene['image']}")
        for k, (obj, answer) in enumerate(zip(scene["objects"], answers), start=1):
            ok = answer.strip().lower() == obj["truth"]
            correct, total = correct + ok, total + 1
            _say(f"  region{k}\t{answer}\t(truth: {obj['truth']}{'' if ok else ', differs'})")
        panels.append(draw_regions(image, boxes, answers))
    _say(f"  {correct}/{total} brief captions exactly right on the bundled scenes\n")
    try:
        from skimage import data

        photo = Image.fromarray(data.chelsea())
    except ImportError:
        photo = None
        _say("scikit-image is not installed: skipping the real photo (pip install 'regiongpt[demo]')")
    if photo is not None:
        answers = engine.describe(photo, CHELSEA_BOXES, task=Task.BRIEF)
        categories = engine.describe(photo, CHELSEA_BOXES, task=Task.CATEGORY)
        _say("Real photo: scikit-image 'chelsea' (a cat); regions: left eye, nose, right ear")
        for k, (brief, category) in enumerate(zip(answers, categories), start=1):
            _say(f"  region{k}\t{brief}\t(category: {category})")
        panels.append(draw_regions(photo, CHELSEA_BOXES, answers))
    sheet = _contact_sheet(panels)
    save_image_atomic(sheet, out)
    _say(f"\nannotated image: {out.resolve()}  (total {time.perf_counter() - start:.1f} s)")


def _contact_sheet(panels: list[Image.Image], height: int = 300) -> Image.Image:
    scaled = [p.resize((max(1, round(p.width * height / p.height)), height)) for p in panels]
    sheet = Image.new("RGB", (sum(p.width for p in scaled) + 8 * (len(scaled) - 1), height), "white")
    x = 0
    for panel in scaled:
        sheet.paste(panel, (x, 0))
        x += panel.width + 8
    return sheet
