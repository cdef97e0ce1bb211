"""POPE, REC, VCR and classification numbers on hand-computed examples."""

from __future__ import annotations

import json

import pytest
import torch

from regiongpt.api import RegionGPT
from regiongpt.data.format import write_jsonl
from regiongpt.eval.classify import evaluate_classify
from regiongpt.eval.engine import ModelEngine, ScoringEngine
from regiongpt.eval.harness import PREDICTIONS
from regiongpt.eval.metrics import semantic_iou
from regiongpt.eval.pope import evaluate_pope
from regiongpt.eval.rec import evaluate_rec, rec_question
from regiongpt.eval.vcr import evaluate_vcr
from regiongpt.regions import Box
from regiongpt.tasks import Task, build_question, with_instruction
from tests.eval.fakes import FakeEngine, FakeScoringEngine, record, write_images


def test_pope_per_split_hand_computed(tmp_path) -> None:
    write_images(tmp_path, ["p.png"])
    rows = [  # (split, label, answer)
        ("random", "yes", "Yes."),
        ("random", "yes", "no"),
        ("random", "no", "yes, there is"),
        ("random", "no", "No"),
        ("adversarial", "yes", "yes"),
        ("adversarial", "no", "No."),
    ]
    recs = [
        record(
            f"q{i}",
            "p.png",
            with_instruction(f"Is there a thing {i} in the image?", Task.YES_NO),
            label,
            task=Task.YES_NO,
            pope_split=split,
        )
        for i, (split, label, _) in enumerate(rows)
    ]
    write_jsonl(tmp_path / "pope.jsonl", recs)
    answers = {r.conversations[0]["value"]: a for r, (_, _, a) in zip(recs, rows)}
    metrics = evaluate_pope(FakeEngine(answers), tmp_path / "pope.jsonl", tmp_path / "o", progress=False)
    # random: predicted yes T F T F, truth T T F F -> tp 1, fp 1, fn 1: acc 2/4, p 1/2, r 1/2, f1 1/2
    assert metrics["random"] == pytest.approx(
        {"accuracy": 0.5, "precision": 0.5, "recall": 0.5, "f1": 0.5, "yes_ratio": 0.5, "count": 4}
    )
    assert metrics["adversarial"] == pytest.approx(
        {"accuracy": 1.0, "precision": 1.0, "recall": 1.0, "f1": 1.0, "yes_ratio": 0.5, "count": 2}
    )
    assert "popular" not in metrics and metrics["mean_f1"] == pytest.approx(0.75)


BOXES = [[0, 0, 20, 20], [30, 0, 60, 20], [0, 25, 30, 45]]


def _rec_data(tmp_path):
    write_images(tmp_path, ["COCO_val2014_000000000007.png"])
    image = "COCO_val2014_000000000007.png"
    regions = [{"box": b} for b in BOXES]
    tags = " ".join(f"<region{k}>" for k in (1, 2, 3))
    recs = []
    for i, (expr, target) in enumerate([("left cup", 1), ("right cup", 2), ("low cup", 3), ("any cup", 2)]):
        question = with_instruction(f"Which region does '{expr}' describe? {tags}", Task.CHOOSE_REGION)
        recs.append(
            record(
                f"r{i}",
                image,
                question,
                f"region {target}",
                regions,
                task=Task.CHOOSE_REGION,
                target_box=BOXES[target - 1],
            )
        )
    write_jsonl(tmp_path / "rec.jsonl", recs)
    return tmp_path / "rec.jsonl"


def test_rec_choose_mode_hand_computed(tmp_path) -> None:
    data = _rec_data(tmp_path)
    answers = {
        "left cup": "region 1",
        "right cup": "It is <region1>.",
        "low cup": "region 3",
        "any cup": "none",
    }
    engine = FakeEngine(lambda q, regions, name: next(a for e, a in answers.items() if f"'{e}'" in q))
    metrics = evaluate_rec(engine, data, tmp_path / "o", progress=False)
    # r0 right, r1 picks region 1 (IoU 0 with region 2), r2 right, r3 unparsed -> 2/4
    assert metrics["accuracy"] == 0.5 and metrics["parsed"] == 0.75
    assert metrics["candidate_recall"] == 1.0 and metrics["candidates_per_question"] == 3
    rows = [json.loads(line) for line in (tmp_path / "o" / PREDICTIONS).open()]
    assert [r["choice"] for r in rows] == [1, 1, 3, None] and rows[0]["box"] == BOXES[0]


def test_rec_with_proposals_hand_computed(tmp_path) -> None:
    data = _rec_data(tmp_path)
    proposals = [  # image 7: a box close to region 1 (IoU 0.81) and one near region 2 (IoU 1/3)
        {"image_id": 7, "bbox": [0, 0, 18, 18], "score": 0.9, "category_id": 1},
        {"image_id": 7, "bbox": [30, 0, 10, 20], "score": 0.8, "category_id": 1},
        {"image_id": 9, "bbox": [0, 0, 5, 5], "score": 0.9, "category_id": 1},
    ]
    (tmp_path / "dets.json").write_text(json.dumps(proposals))
    engine = FakeEngine(lambda q, regions, name: "region 1" if "left" in q or "any" in q else "region 2")
    metrics = evaluate_rec(engine, data, tmp_path / "o", proposals=tmp_path / "dets.json", progress=False)
    asked = engine.calls[0]["questions"]
    assert asked[0] == rec_question("left cup", 2)  # rebuilt over the two proposals of image 7
    # r0: proposal 1 vs [0,0,20,20]: 324/400 = 0.81 hit; r1: proposal 2 vs region 2: 200/600 miss;
    # r2: proposal 2 vs region 3: miss; r3: proposal 1 vs region 2: miss -> 1/4
    assert metrics["accuracy"] == 0.25 and metrics["candidate_recall"] == 0.25
    assert metrics["candidates_per_question"] == 2


def test_rec_likelihood_picks_the_region_that_makes_the_expression_most_likely(tmp_path) -> None:
    data = _rec_data(tmp_path)
    targets = {"left cup": 1, "right cup": 2, "low cup": 3, "any cup": 3}

    def score(regions, text):  # highest for the expression's intended box
        return -abs(regions[0].x1 - BOXES[targets[text] - 1][0]) - abs(
            regions[0].y1 - BOXES[targets[text] - 1][1]
        )

    engine = FakeScoringEngine(lambda q, r, n: "unused", score=score)
    assert isinstance(engine, ScoringEngine)
    metrics = evaluate_rec(engine, data, tmp_path / "o", mode="likelihood", batch_size=2, progress=False)
    assert metrics["accuracy"] == 0.75  # "any cup" is scored highest on region 3, its target is region 2
    assert [c["score_batch"] for c in engine.calls] == [2, 1] * 4  # 3 candidates in chunks of 2
    rows = [json.loads(line) for line in (tmp_path / "o" / PREDICTIONS).open()]
    assert [r["choice"] for r in rows] == [1, 2, 3, 3] and len(rows[0]["scores"]) == 3
    with pytest.raises(ValueError, match="unknown REC mode"):
        evaluate_rec(engine, data, tmp_path / "o2", mode="vote", progress=False)


def test_model_engine_score_is_the_batched_answer_log_likelihood(tiny_factory, rgb_image) -> None:
    model, processor = tiny_factory()
    engine = ModelEngine(RegionGPT(model, processor, name="tiny"))
    image, features = engine.encode_image(rgb_image)
    conv = [{"from": "human", "value": build_question(Task.BRIEF, 1)}, {"from": "gpt", "value": "a red cup"}]
    regions = [[Box(0, 0, 40, 30)], [Box(10, 10, 70, 50)], [Box(50, 5, 60, 15)]]
    batched = engine.score([conv] * 3, image, regions, features=features)
    singles = [engine.score([conv], image, [r])[0] for r in regions]
    assert batched == pytest.approx(singles, abs=1e-4)
    assert len(set(round(s, 4) for s in batched)) == 3  # the region changes the likelihood
    batch = processor([conv], [image], [regions[0]])
    with torch.no_grad():
        loss = model(**batch).loss  # mean negative log-likelihood of the supervised tokens
    count = int((batch["labels"][:, 1:] != -100).sum())
    assert singles[0] == pytest.approx(-float(loss) * count, rel=1e-4)


def test_vcr_hand_computed(tmp_path) -> None:
    write_images(tmp_path, ["v.png"])
    options = "\n(A) yes\n(B) no\n(C) maybe\n(D) later"
    recs = []
    for annot, (qa, qar) in enumerate([("A", "B"), ("C", "C"), ("D", "A")]):
        for mode, label in (("qa", qa), ("qar", qar)):
            question = with_instruction(f"Why {annot} {mode}?{options}", Task.MULTIPLE_CHOICE)
            recs.append(
                record(
                    f"vcr-{annot}-{mode}",
                    "v.png",
                    question,
                    label,
                    task=Task.MULTIPLE_CHOICE,
                    mode=mode,
                    annot_id=annot,
                )
            )
    write_jsonl(tmp_path / "vcr.jsonl", recs)
    answers = ["A", "(B) no", "C", "A", "the answer is B", "A"]  # Q->A: 2/3, QA->R: 2/3, both: 1/3
    by_question = {r.conversations[0]["value"]: a for r, a in zip(recs, answers)}
    metrics = evaluate_vcr(FakeEngine(by_question), tmp_path / "vcr.jsonl", tmp_path / "o", progress=False)
    assert metrics["q_a"] == pytest.approx(2 / 3) and metrics["qa_r"] == pytest.approx(2 / 3)
    assert metrics["q_ar"] == pytest.approx(1 / 3) and metrics["n_q_ar"] == 3 and metrics["parsed"] == 1.0


INSTANCES = {
    "images": [
        {"id": 1, "file_name": "c1.png", "width": 64, "height": 48},
        {"id": 2, "file_name": "c2.png", "width": 64, "height": 48},
    ],
    "categories": [{"id": 10, "name": "dog"}, {"id": 20, "name": "baseball_bat"}],
    "annotations": [
        {"id": 101, "image_id": 1, "category_id": 10, "bbox": [0, 0, 20, 20], "area": 400, "iscrowd": 0},
        {"id": 102, "image_id": 1, "category_id": 20, "bbox": [30, 5, 20, 30], "area": 600, "iscrowd": 0},
        {"id": 201, "image_id": 2, "category_id": 20, "bbox": [5, 5, 40, 10], "area": 400, "iscrowd": 0},
    ],
}


def test_classify_accuracy_map_and_semantic_hand_computed(tmp_path) -> None:
    write_images(tmp_path, ["c1.png", "c2.png"])
    q = build_question(Task.CATEGORY)
    recs = [
        record(
            f"coco-{a['id']}",
            f"c{a['image_id']}.png",
            q,
            {10: "dog", 20: "baseball_bat"}[a["category_id"]],
            [{"box": [0, 0, 10, 10]}],
            task=Task.CATEGORY,
            image_id=a["image_id"],
            ann_ids=[a["id"]],
        )
        for a in INSTANCES["annotations"]
    ]
    write_jsonl(tmp_path / "coco.jsonl", recs)
    (tmp_path / "instances.json").write_text(json.dumps(INSTANCES))
    answers = iter(["A dog.", "banana", "baseball bat"])  # images in order: c1 (101, 102), c2 (201)
    engine = FakeEngine(lambda q, r, n: next(answers))
    metrics = evaluate_classify(
        engine, tmp_path / "coco.jsonl", tmp_path / "o", instances=tmp_path / "instances.json", progress=False
    )
    assert metrics["accuracy"] == pytest.approx(2 / 3)  # normalised: "A dog." = "dog", "_" is a space
    # dog: its one box found -> AP 1; baseball bat: 1 of 2 boxes at precision 1 -> 51/101 recall points
    assert metrics["map"] == pytest.approx((1 + 51 / 101) / 2) and metrics["map50"] == metrics["map"]
    assert metrics["answers_naming_no_category"] == 1
    assert metrics["semantic_iou"] == pytest.approx((0.5 + 0 + 1) / 3)  # Osprey keeps "a": {a, dog} vs {dog}
    assert 0.6 < metrics["semantic_similarity"] < 0.95  # "dog", "baseball bat" exact; "banana" far
    assert semantic_iou("red baseball bat", "baseball_bat") == pytest.approx(2 / 3)
    assert semantic_iou("Category: dog.", "dog") == 1.0 and semantic_iou("", "dog") == 0.0


def test_classify_without_instances_or_embedder_reports_skipped(tmp_path) -> None:
    write_images(tmp_path, ["c1.png"])
    recs = [
        record(
            "c", "c1.png", build_question(Task.CATEGORY), "dog", [{"box": [0, 0, 9, 9]}], task=Task.CATEGORY
        )
    ]
    write_jsonl(tmp_path / "d.jsonl", recs)
    metrics = evaluate_classify(
        FakeEngine(lambda q, r, n: ""), tmp_path / "d.jsonl", tmp_path / "o", semantic=False, progress=False
    )
    assert metrics["accuracy"] == 0.0 and metrics["map"] == "skipped" and metrics["semantic_iou"] == "skipped"
