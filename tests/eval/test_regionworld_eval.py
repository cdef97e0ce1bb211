"""`eval regionworld` end to end on a tiny generated RegionWorld with a tiny random model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from regiongpt.api import RegionGPT
from regiongpt.data.format import read_jsonl, region_from_json
from regiongpt.data.regionworld_generate import generate_regionworld
from regiongpt.eval import regionworld as rw_eval
from regiongpt.eval.commands import eval_app
from regiongpt.eval.engine import ModelEngine
from regiongpt.eval.harness import METRICS, PREDICTIONS, REPORT, load_items
from regiongpt.eval.rec import evaluate_rec
from regiongpt.eval.regionworld import evaluate_regionworld, score_regionworld
from regiongpt.tasks import Task, build_question


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("rw")
    generate_regionworld(root, n_train=0, n_val=0, n_test=8, n_comp=0, progress=False)
    return root


@pytest.fixture()
def short_answers(monkeypatch):
    """A random model talks until the limit: keep limits tiny so the tests stay fast."""
    monkeypatch.setattr(rw_eval, "MAX_NEW_TOKENS", {task: 3 for task in rw_eval.MAX_NEW_TOKENS})


class CountingEngine(ModelEngine):
    def __init__(self, model: RegionGPT) -> None:
        super().__init__(model)
        self.encoded: list[str] = []

    def encode_image(self, image):
        self.encoded.append(str(image))
        return super().encode_image(image)


def test_regionworld_end_to_end_with_a_tiny_model(world, tiny_factory, tmp_path, short_answers) -> None:
    model, processor = tiny_factory()
    engine = CountingEngine(RegionGPT(model, processor, name="tiny"))
    out = tmp_path / "out"
    metrics = evaluate_regionworld(engine, world, out, batch_size=8, progress=False, model_name="tiny")
    records = list(read_jsonl(world / "test.jsonl"))
    assert len(engine.encoded) == len(set(engine.encoded)) == 8  # every image encoded once
    rows = [json.loads(line) for line in (out / PREDICTIONS).open()]
    assert sorted(r["id"] for r in rows) == sorted(r.id for r in records)
    assert all(set(r) >= {"id", "task", "question", "prediction", "references"} for r in rows)
    tasks = {r.task.value for r in records}
    assert set(metrics) == {"questions"} | tasks and metrics["questions"] == len(records)
    assert set(metrics["category"]) >= {"accuracy", "count", "by_size"}
    assert set(metrics["brief"]) >= {"all_attributes_correct", "by_attribute", "by_size"}
    if "yes_no" in metrics:
        assert set(metrics["yes_no"]["all"]) == {"accuracy", "precision", "recall", "f1", "yes_ratio"}
    saved = json.loads((out / METRICS).read_text())
    assert saved["metrics"] == json.loads(json.dumps(metrics)) and saved["config"]["split"] == "test"
    report = (out / REPORT).read_text()
    assert "| category.accuracy |" in report and "| questions |" in report


def test_regionworld_scoring_of_perfect_and_empty_answers(world) -> None:
    items = load_items(world / "test.jsonl")
    perfect = score_regionworld(items, [{"prediction": it.reference} for it in items])
    for task, values in perfect.items():
        headline = {"brief": "all_attributes_correct", "detailed": "region_attributes_correct"}
        if task == "yes_no":
            assert values["all"]["f1"] == 1.0
        else:
            assert values[headline.get(task, "accuracy")] == 1.0, task
    empty = score_regionworld(items, [{"prediction": ""} for it in items])
    assert empty["category"]["accuracy"] == 0.0 and empty["brief"]["all_attributes_correct"] == 0.0
    # recall of the present shapes, by shape and by size: all or nothing here
    positives = [it for it in items if it.task == Task.YES_NO and it.reference == "yes"]
    assert positives
    assert perfect["yes_no"]["recall_by_query"] == {it.meta["query"]: 1.0 for it in positives}
    assert set(empty["yes_no"]["recall_by_size"].values()) == {0.0}
    assert set(empty["yes_no"]["recall_by_size"]) == {it.meta["size"] for it in positives}
    assert empty["yes_no"]["recall_by_size_count"] == len(positives)


def test_recall_by_size_counts_only_questions_that_record_a_size(world) -> None:
    items = [it for it in load_items(world / "test.jsonl") if it.task == Task.YES_NO]
    positives = [it for it in items if it.reference == "yes"]
    assert len(positives) >= 2
    positives[0].meta.pop("size")  # as in a set from generator 1.0
    scores = score_regionworld(items, [{"prediction": it.reference} for it in items])["yes_no"]
    assert scores["recall_by_size_count"] == len(positives) - 1
    assert set(scores["recall_by_query"].values()) == {1.0}  # every question still scored by shape


def test_rec_likelihood_with_a_tiny_model_takes_the_unbatched_argmax(world, tiny_factory, tmp_path) -> None:
    model, processor = tiny_factory()
    engine = ModelEngine(RegionGPT(model, processor, name="tiny"))
    evaluate_rec(engine, world / "test.jsonl", tmp_path / "o", mode="likelihood", limit=2, progress=False)
    rows = [json.loads(line) for line in (tmp_path / "o" / PREDICTIONS).open()]
    records = {r.id: r for r in read_jsonl(world / "test.jsonl")}
    assert len(rows) == 2
    for row in rows:
        rec = records[row["id"]]
        image, _ = engine.encode_image(world / rec.image)
        conv = [
            {"from": "human", "value": build_question(Task.BRIEF, 1)},
            {"from": "gpt", "value": rec.meta["expression"]},
        ]
        singles = [
            engine.score([conv], image, [[region_from_json(r, world, image.size)]])[0] for r in rec.regions
        ]
        assert row["scores"] == pytest.approx(singles, abs=1e-4)
        assert row["choice"] == max(range(len(singles)), key=singles.__getitem__) + 1


def test_cli_regionworld_and_user_errors(world, tiny_factory, tmp_path, short_answers) -> None:
    model, processor = tiny_factory()
    RegionGPT(model, processor, name="tiny").save_pretrained(tmp_path / "ckpt")
    runner = CliRunner()
    out = tmp_path / "cli"
    args = [
        "regionworld",
        "--model",
        str(tmp_path / "ckpt"),
        "--data",
        str(world),
        "--out",
        str(out),
        "--limit",
        "6",
        "--batch-size",
        "4",
        "--device",
        "cpu",
        "--no-progress",
    ]
    result = runner.invoke(eval_app, args)
    assert result.exit_code == 0, result.output
    assert "| metric | value |" in result.stdout
    assert "Loading weights" not in result.stderr  # --no-progress reaches transformers' bar too
    assert len((out / PREDICTIONS).read_text().splitlines()) == 6
    missing = runner.invoke(eval_app, [*args[:4], str(tmp_path / "nowhere"), *args[5:]])
    assert missing.exit_code == 2 and missing.stderr.startswith("error: no test.jsonl")
    bad_model = runner.invoke(
        eval_app,
        [
            "regionworld",
            "--model",
            str(tmp_path / "none"),
            "--data",
            str(world),
            "--out",
            str(tmp_path / "o2"),
            "--no-progress",
        ],
    )
    assert bad_model.exit_code == 2 and bad_model.stderr.startswith("error: no model at")
    assert len(bad_model.stderr.strip().splitlines()) == 1
    comp = runner.invoke(eval_app, [*args, "--split", "nope"])
    assert comp.exit_code == 2 and "unknown RegionWorld split" in comp.stderr
    only = runner.invoke(
        eval_app, [*args[:6], str(tmp_path / "only"), *args[7:], "--task", "category", "--task", "relation"]
    )
    assert only.exit_code == 0, only.output
    rows = [json.loads(line) for line in (tmp_path / "only" / PREDICTIONS).open()]
    assert len(rows) == 6 and {r["task"] for r in rows} <= {"category", "relation"}
    assert "relation" in {r["task"] for r in rows}  # the first 6 of those two tasks, not of all tasks
    saved = json.loads((tmp_path / "only" / METRICS).read_text())
    assert saved["config"]["tasks"] == "category,relation"
    assert saved["config"]["dtype"] == "float32"  # from run.json: the precision of the predictions
    assert set(saved["metrics"]) <= {"questions", "category", "relation"}
    wrong = runner.invoke(eval_app, [*args, "--task", "colour"])
    assert wrong.exit_code == 2 and "unknown task 'colour'" in wrong.stderr
    assert json.loads((out / "run.json").read_text()) == {
        "model": str(tmp_path / "ckpt"), "dtype": "float32", "device": "cpu",
        "benchmark": "regionworld", "data": str(Path(world).resolve()), "split": "test",
    }  # fmt: skip
    more = [*args[:8], "8", *args[9:]]  # 2 more questions into the same --out
    mixed = runner.invoke(eval_app, [*more, "--dtype", "bfloat16"])
    assert mixed.exit_code == 2 and "made with dtype 'float32', not dtype 'bfloat16'" in mixed.stderr
    assert len((out / PREDICTIONS).read_text().splitlines()) == 6  # nothing added
    bad_dtype = runner.invoke(eval_app, [*args, "--dtype", "bf17"])
    assert bad_dtype.exit_code == 2 and "unknown dtype 'bf17'" in bad_dtype.stderr
    assert runner.invoke(eval_app, more).exit_code == 0  # same settings: resumes
    assert len((out / PREDICTIONS).read_text().splitlines()) == 8


def test_detailed_scores_the_region_attributes_whatever_the_template() -> None:
    from regiongpt.eval.regionworld import described_attributes

    reference = (
        "In the upper left of the image there is a small yellow solid star, to the left of the white heart."
    )
    same = {"size": ["small"], "colour": ["yellow"], "texture": ["solid"], "shape": ["star"]}
    assert described_attributes(reference) == same
    assert described_attributes("This star is small, yellow and solid, in the upper left of the image. "
                                "The nearest object is the white heart, right of it.") == same  # fmt: skip
    assert described_attributes("A small yellow solid star in the upper left of the image.") == same
    assert described_attributes("A small yellow solid star above the red solid heart.") == same
    hedged = "A small or medium yellow solid star in the upper left of the image."
    assert described_attributes(hedged)["size"] == ["small", "medium"]  # not the reference's
    assert described_attributes("A yellow star.")["size"] == []
