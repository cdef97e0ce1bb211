"""The harness: items, grouping by image, resumable predictions, reports."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from regiongpt.data.format import Record, write_jsonl
from regiongpt.eval.caption import evaluate_caption
from regiongpt.eval.harness import (
    PREDICTIONS,
    PredictionStore,
    items_from_records,
    load_items,
    markdown_report,
    run_benchmark,
)
from regiongpt.tasks import Task, build_question
from tests.eval.fakes import FakeEngine, Killed, caption_answer


def test_multi_turn_records_give_one_item_per_turn() -> None:
    turns = [
        {"from": "human", "value": build_question(Task.CATEGORY, 1)},
        {"from": "gpt", "value": "dog"},
        {"from": "human", "value": build_question(Task.CATEGORY, 2)},
        {"from": "gpt", "value": "cat"},
    ]
    regions = [{"box": [0, 0, 5, 5]}, {"box": [5, 5, 9, 9]}]
    multi = Record(id="m", image="x.png", regions=regions, conversations=turns, task=Task.CATEGORY)
    single = Record(id="s", image="x.png", regions=[], conversations=turns[:2], task=Task.BRIEF)
    items = items_from_records([multi, single], tasks={Task.CATEGORY}, max_new_tokens={Task.CATEGORY: 7})
    assert [it.id for it in items] == ["m#1", "m#2"]
    assert items[0].regions == regions[:1] and items[1].regions == regions
    assert items[1].conversation == turns[:3]  # the first answer is the reference, as context
    assert [it.reference for it in items] == ["dog", "cat"] and [it.turn for it in items] == [0, 1]
    assert items[0].max_new_tokens == 7
    with pytest.raises(ValueError, match="duplicate record id"):
        items_from_records([single, single])


def test_questions_are_grouped_by_image_and_answers_keep_their_ids(caption_data, tmp_path) -> None:
    engine = FakeEngine(lambda q, regions, name: f"{name} {regions[0].as_list()}")
    items = load_items(caption_data)
    run_benchmark(
        "t",
        engine,
        items,
        root=caption_data.parent,
        out=tmp_path / "out",
        batch_size=10,
        score=lambda its, rows: {},
        progress=False,
    )
    assert engine.encoded == ["a.png", "b.png", "c.png"]  # each image once, in first-use order
    assert len(engine.calls) == 3 and all(len(c["questions"]) == 2 for c in engine.calls)
    rows = [json.loads(line) for line in (tmp_path / "out" / PREDICTIONS).read_text().splitlines()]
    assert sorted(r["id"] for r in rows) == sorted(it.id for it in items)
    by_id = {it.id: it for it in items}
    for row in rows:
        item = by_id[row["id"]]
        # answered with this record's own image features and its own region
        assert row["prediction"] == f"{item.image} {[float(v) for v in item.regions[0]['box']]}"
        assert row["references"] == item.references and row["question"] == item.question


def test_batches_never_exceed_batch_size(caption_data, tmp_path) -> None:
    engine = FakeEngine(lambda q, regions, name: "x")
    run_benchmark(
        "t",
        engine,
        load_items(caption_data),
        root=caption_data.parent,
        out=tmp_path / "o",
        batch_size=1,
        score=lambda its, rows: {},
        progress=False,
    )
    assert len(engine.calls) == 6 and engine.encoded == ["a.png", "b.png", "c.png"]


def test_store_drops_a_torn_last_line(tmp_path) -> None:
    path = tmp_path / PREDICTIONS
    path.write_text('{"id": "a", "prediction": "x"}\n{"id": "b", "prediction": "y"}\n{"id": "c", "predi')
    store = PredictionStore(path)
    assert set(store.rows) == {"a", "b"}
    store.append([{"id": "c", "prediction": "z"}])
    assert [json.loads(line)["id"] for line in path.read_text().splitlines()] == ["a", "b", "c"]
    path.write_text('{"id": "a"}\n{"id": "b"}')  # complete last line without its newline
    assert set(PredictionStore(path).rows) == {"a", "b"} and path.read_text().endswith("}\n")
    path.write_text('{"id": "a"}\nnot json\n{"id": "b"}\n')
    with pytest.raises(ValueError, match=":2: not a JSON line"):
        PredictionStore(path)


def test_resumed_run_equals_one_shot_run(caption_data, tmp_path) -> None:
    one_shot = evaluate_caption(
        FakeEngine(caption_answer),
        caption_data,
        tmp_path / "once",
        batch_size=1,
        metrics=("bleu", "cider"),
        progress=False,
    )
    out = tmp_path / "resumed"
    with pytest.raises(Killed):
        evaluate_caption(
            FakeEngine(caption_answer, fail_after_calls=2),
            caption_data,
            out,
            batch_size=1,
            metrics=("bleu", "cider"),
            progress=False,
        )
    with (out / PREDICTIONS).open("a") as handle:
        handle.write('{"id": "rc-c-1", "predic')  # killed while writing the third answer
    engine = FakeEngine(caption_answer)
    resumed = evaluate_caption(
        engine, caption_data, out, batch_size=1, metrics=("bleu", "cider"), progress=False
    )
    assert sum(len(c["questions"]) for c in engine.calls) == 3  # 5 distinct questions, 2 were done
    assert resumed["cider"] == pytest.approx(one_shot["cider"], abs=1e-12) and one_shot["cider"] > 0
    assert resumed == one_shot
    lines = (out / PREDICTIONS).read_text().splitlines()
    assert len(lines) == 5 and all(json.loads(line) for line in lines)
    again = FakeEngine(caption_answer)  # a finished run is re-scored without asking anything
    assert evaluate_caption(again, caption_data, out, metrics=("bleu", "cider"), progress=False) == one_shot
    assert again.calls == [] and again.encoded == []


def test_repeated_questions_share_one_prediction_with_all_references(caption_data, tmp_path) -> None:
    evaluate_caption(
        FakeEngine(caption_answer), caption_data, tmp_path / "o", metrics=("cider",), progress=False
    )
    rows = {json.loads(line)["id"]: json.loads(line) for line in (tmp_path / "o" / PREDICTIONS).open()}
    assert "rc-b-2" not in rows and rows["rc-b-1"]["references"] == [
        "the green cup",
        "green mug on the table",
    ]


def test_other_data_in_the_output_directory_is_refused(caption_data, tmp_path) -> None:
    out = tmp_path / "o"
    out.mkdir()
    (out / PREDICTIONS).write_text('{"id": "rc-a-1", "question": "something else", "prediction": "x"}\n')
    with pytest.raises(ValueError, match="different question"):
        evaluate_caption(FakeEngine(caption_answer), caption_data, out, metrics=("cider",), progress=False)


def test_metrics_name_the_dtype_of_the_run_that_made_them(caption_data, tmp_path) -> None:
    import torch

    out = tmp_path / "o"
    out.mkdir()
    (out / "run.json").write_text(json.dumps({"model": "default", "dtype": "bfloat16", "device": "cpu"}))
    engine = FakeEngine(caption_answer)  # no model: its dtype is unknown, and run.json is another run's
    evaluate_caption(engine, caption_data, out, metrics=("cider",), progress=False, model_name="mine")
    assert "dtype" not in json.loads((out / "metrics.json").read_text())["config"]
    fresh = tmp_path / "fresh"
    engine.model = SimpleNamespace(dtype=torch.float64)  # an engine passed in names its own
    evaluate_caption(engine, caption_data, fresh, metrics=("cider",), progress=False, model_name="mine")
    assert json.loads((fresh / "metrics.json").read_text())["config"]["dtype"] == "float64"
    assert json.loads((fresh / "run.json").read_text()) == {"model": "mine", "dtype": "float64"}


def test_an_engine_passed_in_resumes_only_predictions_of_its_dtype(caption_data, tmp_path) -> None:
    import torch

    def engine_in(dtype: torch.dtype) -> FakeEngine:
        engine = FakeEngine(caption_answer)
        engine.model = SimpleNamespace(dtype=dtype, device="cpu")
        return engine

    out = tmp_path / "o"
    evaluate_caption(
        engine_in(torch.bfloat16), caption_data, out, limit=2, metrics=("cider",), progress=False
    )
    full = engine_in(torch.float32)
    with pytest.raises(ValueError, match="dtype 'bfloat16', not dtype 'float32'"):
        evaluate_caption(full, caption_data, out, metrics=("cider",), progress=False)
    assert full.calls == [] and len((out / PREDICTIONS).read_text().splitlines()) == 2
    (out / "run.json").write_text(json.dumps({"model": "default", "dtype": "bfloat16", "device": "cpu"}))
    with pytest.raises(ValueError, match="model 'default', not model 'other'"):
        evaluate_caption(engine_in(torch.bfloat16), caption_data, out, progress=False, model_name="other")
    same = engine_in(torch.bfloat16)  # no model name: only the dtype is compared, the CLI's name kept
    evaluate_caption(same, caption_data, out, metrics=("cider",), progress=False)
    assert sum(len(c["questions"]) for c in same.calls) == 3
    assert json.loads((out / "run.json").read_text()) == {
        "model": "default",
        "dtype": "bfloat16",
        "device": "cpu",
    }
    again = engine_in(torch.bfloat16)  # a finished run is re-scored: nothing predicted, run.json kept
    again.model.device = "cuda"
    evaluate_caption(again, caption_data, out, metrics=("cider",), progress=False)
    assert again.calls == [] and json.loads((out / "run.json").read_text())["device"] == "cpu"


def test_a_stale_run_json_without_predictions_names_nothing(caption_data, tmp_path) -> None:
    import torch

    out = tmp_path / "o"
    out.mkdir()  # e.g. a CLI run killed while loading its model: run.json, no predictions
    (out / "run.json").write_text(json.dumps({"model": "default", "dtype": "float32", "device": "cpu"}))
    engine = FakeEngine(caption_answer)
    engine.model = SimpleNamespace(dtype=torch.bfloat16)
    evaluate_caption(engine, caption_data, out, metrics=("cider",), progress=False)
    assert json.loads((out / "run.json").read_text()) == {"dtype": "bfloat16"}


def test_no_questions_is_an_error(tmp_path) -> None:
    write_jsonl(tmp_path / "empty.jsonl", [])
    with pytest.raises(ValueError, match="no caption questions"):
        evaluate_caption(FakeEngine(caption_answer), tmp_path / "empty.jsonl", tmp_path / "o", progress=False)
    with pytest.raises(FileNotFoundError, match="no data file"):
        evaluate_caption(FakeEngine(caption_answer), tmp_path / "missing.jsonl", tmp_path / "o")


@pytest.mark.slow
def test_empty_predictions_are_scored_with_every_caption_metric(caption_data, tmp_path) -> None:
    metrics = evaluate_caption(FakeEngine(lambda q, r, n: ""), caption_data, tmp_path / "o", progress=False)
    assert metrics["empty_predictions"] == 5 and metrics["questions"] == 5
    for key in ("bleu1", "bleu4", "meteor", "rouge_l", "cider"):
        assert metrics[key] == pytest.approx(0.0, abs=1e-6), key
    assert metrics["spice"] == "skipped"  # its models are not installed here: never 0
    report = (tmp_path / "o" / "report.md").read_text()
    assert "| spice | skipped |" in report and "| cider | 0.0 |" in report


def test_markdown_report_scales_scores_and_keeps_counts() -> None:
    text = markdown_report("x", {"questions": 3, "cider": 1.099, "pope": {"f1": 0.5}, "map": None}, {"a": 1})
    assert "| questions | 3 |" in text and "| cider | 109.9 |" in text
    assert "| pope.f1 | 50.0 |" in text and "| map | n/a |" in text and "- a: `1`" in text
