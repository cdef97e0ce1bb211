"""The embedded default model: ships inside the package, loads by name, knows RegionWorld."""

from __future__ import annotations

from pathlib import Path

import pytest

from regiongpt.api import RegionGPT, default_model_dir
from regiongpt.data.format import read_jsonl
from regiongpt.data.regionworld_generate import generate_regionworld
from regiongpt.regions import Box

pytestmark = pytest.mark.real


@pytest.fixture(scope="module")
def default_model():
    return RegionGPT.from_pretrained("default")


@pytest.fixture(scope="module")
def category_questions(tmp_path_factory):
    """50 fixed category questions of the RegionWorld test split (seed 0, as the model was evaluated)."""
    root = tmp_path_factory.mktemp("rw")
    generate_regionworld(root, n_train=0, n_val=0, n_test=50, n_comp=0, seed=0, progress=False)
    records = [
        r for r in read_jsonl(root / "test.jsonl") if r.task is not None and r.task.value == "category"
    ]
    assert len(records) >= 50
    return root, records[:50]


def test_shipped_weights_are_small_and_hold_no_frozen_parts():
    folder = default_model_dir()
    size = sum(f.stat().st_size for f in folder.iterdir())
    assert size < 30 * 2**20, f"default model files take {size / 2**20:.1f} MiB"
    from safetensors import safe_open

    with safe_open(str(folder / "model.safetensors"), "pt") as weights:
        keys = list(weights.keys())
    assert keys and not any(
        k.startswith(("vision_tower", "language_model")) and "lora_" not in k for k in keys
    )


def test_default_model_names_the_category_of_most_test_objects(default_model, category_questions):
    root, records = category_questions
    correct = 0
    for record in records:
        image = root / record.image
        (region,) = record.load_regions(root, (224, 224))
        answer = default_model.describe(image, [region], task="category")[0]
        correct += answer.strip().lower() == record.conversations[1]["value"]
    # The bar: 80% (measured 48/50 with the shipped stage-30 weights, 46/50 with stage 17).
    # docs/default-model.md has the full report.
    assert correct >= 40, f"{correct}/50 category answers right"


def test_default_model_names_held_out_photo_regions_as_its_teacher_does(default_model):
    """34 boxes of the real-photo test split (never trained on): the default's category answer
    against EfficientNet-Lite0's ImageNet label of the same crop, computed here."""
    import json

    from regiongpt.data.photos import load_photos
    from regiongpt.datagen.offline_teacher import ImageNetLabeler

    questions = json.loads((Path(__file__).parent / "photo_questions.json").read_text())["questions"]
    photos = load_photos(sorted({q["photo"] for q in questions}))
    teacher = ImageNetLabeler()
    agree = 0
    for q in questions:
        label = teacher.labels(photos[q["photo"]].crop(tuple(q["box"])), 1)[0][0]
        assert label == q["teacher"]  # the file matches the teacher as installed
        agree += default_model.describe(photos[q["photo"]], [Box(*q["box"])], task="category")[0] == label
    # measured 28/34 with the shipped stage-30 weights, 27/34 with stage 17 (a model trained without
    # the photos: 0); the teacher's majority label per photo would give 25/34, so this checks that
    # the photos are known, not more
    assert agree >= 20, f"{agree}/{len(questions)} photo regions named as the teacher does"


def test_default_model_answers_a_real_photo_without_error(default_model):
    from skimage import data

    answers = default_model.describe(data.chelsea(), [Box(135, 85, 210, 150)], task="brief")
    assert len(answers) == 1 and answers[0].strip()


def test_demo_runs_and_writes_an_annotated_image(tmp_path: Path, capsys):
    from regiongpt.demo import run_demo

    out = tmp_path / "demo.png"
    run_demo("default", out)
    printed = capsys.readouterr().out
    assert out.is_file() and "region1\t" in printed and "trained on RegionWorld" in printed
