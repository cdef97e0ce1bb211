"""RegionWorld: determinism, exact labels, task coverage, splits and POPE negatives."""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from functools import cache
from pathlib import Path

import numpy as np
import pytest
import typer
from PIL import Image
from typer.testing import CliRunner

from regiongpt.data.format import Record, read_jsonl
from regiongpt.data.regionworld import (
    BRIEF_ORDER,
    COLOURS,
    HELD_OUT_PAIRS,
    SHAPES,
    RegionWorldConfig,
    Scene,
    render_scene,
    shape_statistics,
    size_bucket,
    texture_shade,
    tight_box,
)
from regiongpt.data.regionworld_cli import regionworld_command
from regiongpt.data.regionworld_generate import generate_regionworld
from regiongpt.data.regionworld_tasks import DEFAULT_SAMPLES_PER_IMAGE, direction
from regiongpt.regions import Box, Mask
from regiongpt.tasks import REGION_QUESTIONS, TASK_INSTRUCTIONS, Task, build_question

SEED = 3
SIZES = {"n_train": 120, "n_val": 10, "n_test": 120, "n_comp": 60}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict, dict[str, list[Record]]]:
    root = tmp_path_factory.mktemp("regionworld")
    info = generate_regionworld(root, seed=SEED, progress=False, **SIZES)
    records = {split: list(read_jsonl(root / f"{split}.jsonl")) for split in info["splits"]}
    return root, info, records


@cache
def _scene(split: str, index: int) -> Scene:
    return render_scene(SEED, split, index)


def _digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_same_seed_same_bytes_other_seed_differs(tmp_path: Path) -> None:
    small = {"n_train": 6, "n_val": 2, "n_test": 3, "n_comp": 2, "progress": False}
    generate_regionworld(tmp_path / "a", seed=7, **small)
    generate_regionworld(tmp_path / "b", seed=7, **small)
    generate_regionworld(tmp_path / "c", seed=8, **small)
    a, b, c = _digest(tmp_path / "a"), _digest(tmp_path / "b"), _digest(tmp_path / "c")
    assert a == b
    assert len(a) == 6 + 2 + 3 + 2 + 4 + 1  # images, 4 jsonl, info.json
    assert a.keys() == c.keys()
    assert a["train.jsonl"] != c["train.jsonl"]
    assert a["images/train/000000.png"] != c["images/train/000000.png"]


def test_layout_and_info(dataset) -> None:
    root, info, records = dataset
    assert set(info["splits"]) == {"train", "val", "test", "test_comp"}
    for split, count in zip(("train", "val", "test", "test_comp"), SIZES.values()):
        assert len(list((root / "images" / split).glob("*.png"))) == count
        assert info["splits"][split]["samples"] == len(records[split])
        expected = {t.value: 0 for t in Task}
        expected.update(Counter(r.task.value for r in records[split]))
        assert info["splits"][split]["tasks"] == expected
    assert json.loads((root / "info.json").read_text())["held_out_pairs"] == [list(p) for p in HELD_OUT_PAIRS]


def test_every_task_in_every_split(dataset) -> None:
    _, _, records = dataset
    for split in ("train", "test", "test_comp"):
        assert {r.task for r in records[split]} == set(Task), split


def test_default_test_size_gives_300_per_task(dataset) -> None:
    _, _, records = dataset
    n_test = 1000  # generate_regionworld's default
    produced = Counter(r.task.value for r in records["test"])
    for task, rate in DEFAULT_SAMPLES_PER_IMAGE.items():
        planned = SIZES["n_test"] * rate
        assert planned - 2 <= produced[task] <= planned + 1, task
        kept = produced[task] / planned  # relation / choose_region skip ambiguous images
        assert kept > 0.9, task
        assert 0.9 * rate * n_test >= 300, task


def test_questions_use_task_instructions(dataset) -> None:
    _, _, records = dataset
    for record in records["train"]:
        question = record.conversations[0]["value"]
        assert question.endswith(TASK_INSTRUCTIONS[record.task]), question
        if record.task in REGION_QUESTIONS:
            assert question == build_question(record.task, 1)
        tags = {int(k) for k in re.findall(r"<region(\d+)>", question)}
        assert tags == set(range(1, len(record.regions) + 1)), record.id


def test_pixels_are_exactly_the_masks(dataset) -> None:
    root, _, _ = dataset
    for split, index in [("train", i) for i in range(40)] + [("test_comp", i) for i in range(20)]:
        scene = _scene(split, index)
        pixels = np.asarray(Image.open(root / f"images/{split}/{index:06d}.png").convert("RGB"))
        assert np.array_equal(pixels, np.asarray(scene.image))
        for obj in scene.objects:
            assert obj.box == tight_box(obj.mask)
            assert obj.area >= 0.6 * obj.full_area
            assert size_bucket(max(obj.box[2] - obj.box[0], obj.box[3] - obj.box[1])) == obj.size
            inside = pixels[obj.mask]
            colour = np.all(inside == COLOURS[obj.colour], axis=1)
            shade = np.all(inside == texture_shade(obj.colour), axis=1)
            assert np.all(colour | shade)
            assert shade.any() == (obj.texture != "solid") or obj.area < 40


def test_record_regions_are_the_visible_masks(dataset) -> None:
    root, _, records = dataset
    kinds = Counter()
    for record in records["train"] + records["test_comp"]:
        scene = _scene(record.meta["split"], record.meta["image_index"])
        loaded = record.load_regions(root, (224, 224))
        for entry, region, meta in zip(record.regions, loaded, record.meta["objects"]):
            kinds["rle" if "rle" in entry else "box"] += 1
            obj = next(o for o in scene.objects if o.box == meta["box"] and o.brief == entry["label"])
            if isinstance(region, Mask):
                assert np.array_equal(region.data, obj.mask)
                assert region.to_box((224, 224)).as_list() == obj.box
            else:
                assert region == Box(*obj.box)
    assert 0.15 < kinds["rle"] / (kinds["rle"] + kinds["box"]) < 0.35


def test_answers_match_meta(dataset) -> None:
    _, _, records = dataset
    for record in records["train"] + records["test"]:
        answer, meta, objs = record.conversations[1]["value"], record.meta, record.meta["objects"]
        if record.task == Task.CATEGORY:
            assert answer == objs[0]["shape"]
        elif record.task == Task.BRIEF:
            assert answer == " ".join(objs[0][k] for k in BRIEF_ORDER)
            assert answer.split()[0] == meta["size"]
        elif record.task == Task.DETAILED:
            assert all(objs[0][k] in answer for k in BRIEF_ORDER)
            assert meta["position"] in answer
        elif record.task == Task.CHOOSE_REGION:
            target = objs[int(answer.removeprefix("region ")) - 1]
            words = meta["expression"].removeprefix("the ").split()
            matches = [
                o for o in objs if [o[k] for k in BRIEF_ORDER if k in meta["expression_kinds"]] == words
            ]
            assert matches == [target]
        elif record.task == Task.MULTIPLE_CHOICE:
            assert meta["options"]["ABCD".index(answer)] == objs[0][meta["attribute"]]
            assert len(set(meta["options"])) == 4
        elif record.task == Task.YES_NO:
            assert answer == ("yes" if meta["query"] in meta["shapes_present"] else "no")
            assert f"Is there a {meta['query']} in the image?" in record.conversations[0]["value"]
            assert record.regions == []
        elif record.task == Task.RELATION:
            (a, b), kind = objs, meta["relation"]
            if kind == "larger":
                assert answer == ("yes" if a["area"] > b["area"] else "no")
                assert max(a["area"], b["area"]) >= 1.5 * min(a["area"], b["area"])
            elif kind == "overlap":
                intersects = min(a["box"][2], b["box"][2]) > max(a["box"][0], b["box"][0]) and min(
                    a["box"][3], b["box"][3]
                ) > max(a["box"][1], b["box"][1])
                assert answer == ("yes" if intersects else "no")
            else:
                dx = (a["box"][0] + a["box"][2] - b["box"][0] - b["box"][2]) / 2
                dy = (a["box"][1] + a["box"][3] - b["box"][1] - b["box"][3]) / 2
                major, minor = max(abs(dx), abs(dy)), min(abs(dx), abs(dy))
                assert major >= 12 and major >= 1.5 * minor
                horizontal = abs(dx) >= abs(dy)
                assert answer == (
                    ("left" if dx < 0 else "right") if horizontal else ("above" if dy < 0 else "below")
                )


def test_relation_answers_cover_all_values(dataset) -> None:
    _, _, records = dataset
    answers = Counter(
        r.conversations[1]["value"] for r in records["train"] + records["test"] if r.task == Task.RELATION
    )
    assert set(answers) == {"left", "right", "above", "below", "yes", "no"}


def test_small_objects_at_least_a_quarter(dataset) -> None:
    _, _, records = dataset
    sizes = Counter(r.meta["size"] for r in records["train"] if r.task in (Task.CATEGORY, Task.BRIEF))
    assert sizes["small"] / sum(sizes.values()) >= 0.25
    assert set(sizes) == {"small", "medium", "large"}


def test_compositional_pairs_only_in_test_comp(dataset) -> None:
    _, _, records = dataset
    held = {tuple(p) for p in HELD_OUT_PAIRS}
    for split in ("train", "val", "test"):
        for index in range(SIZES["n_" + split]):
            assert not {(o.shape, o.colour) for o in _scene(split, index).objects} & held
        assert not any(r.meta["compositional"] for r in records[split])
    comp_pairs = set()
    for index in range(SIZES["n_comp"]):
        comp_pairs |= {(o.shape, o.colour) for o in _scene("test_comp", index).objects} & held
    assert len(comp_pairs) >= 6
    region_tasks = [r for r in records["test_comp"] if r.regions]
    assert region_tasks and all(r.meta["compositional"] for r in region_tasks)


def test_yes_no_balanced_per_pope_split(dataset) -> None:
    _, _, records = dataset
    for split in ("train", "test"):
        counts = Counter(
            (r.meta["pope_split"], r.conversations[1]["value"])
            for r in records[split]
            if r.task == Task.YES_NO
        )
        for pope in ("random", "popular", "adversarial"):
            assert counts[(pope, "yes")] == counts[(pope, "no")] > 0, (split, pope)


def test_a_yes_question_records_the_size_of_the_queried_shapes_largest_instance(dataset) -> None:
    _, _, records = dataset
    yes_no = [r for r in records["test"] if r.task == Task.YES_NO]
    for record in yes_no:
        meta = record.meta
        if record.conversations[1]["value"] == "no":
            assert meta["size"] is None
            continue
        scene = _scene("test", meta["image_index"])
        sides = [o.box[2] - o.box[0] for o in scene.objects if o.shape == meta["query"]]
        sides += [o.box[3] - o.box[1] for o in scene.objects if o.shape == meta["query"]]
        assert meta["size"] == size_bucket(max(sides)), record.id
    assert {r.meta["size"] for r in yes_no} > {None}


def test_pope_negative_kinds_differ(dataset) -> None:
    _, _, records = dataset
    stats = shape_statistics()
    assert stats.popular_order()[0] == "circle"
    assert stats.adversarial_order({"circle"})[0] == "heart"
    assert stats.adversarial_order({"square"})[0] == "cross"
    assert [s for s in stats.popular_order() if s != "circle"][0] == "square"
    no_samples = [
        r
        for r in records["train"] + records["test"]
        if r.task == Task.YES_NO and r.conversations[1]["value"] == "no"
    ]
    differ, random_queries = 0, Counter()
    for record in no_samples:
        present = set(record.meta["shapes_present"])
        popular = next(s for s in stats.popular_order() if s not in present)
        adversarial = stats.adversarial_order(present)[0]
        differ += popular != adversarial
        query, split = record.meta["query"], record.meta["pope_split"]
        assert query not in present
        if split == "popular":
            assert query == popular
        elif split == "adversarial":
            assert query == adversarial
        else:
            random_queries[query] += 1
    assert differ / len(no_samples) > 0.3
    assert len(random_queries) >= 5
    assert random_queries.most_common(1)[0][1] < 0.4 * sum(random_queries.values())


def test_shape_frequencies_are_skewed(dataset) -> None:
    _, _, records = dataset
    shapes = Counter(r.meta["objects"][0]["shape"] for r in records["train"] if r.task == Task.CATEGORY)
    assert shapes.most_common(1)[0][0] == "circle"
    assert shapes["circle"] > 2.5 * min(shapes[s] for s in SHAPES)


def test_direction_helper() -> None:
    scene = render_scene(0, "train", 0)
    a, b = scene.objects[0], scene.objects[1]
    forward, backward = direction(a, b), direction(b, a)
    opposite = {"left": "right", "right": "left", "above": "below", "below": "above"}
    assert (forward is None and backward is None) or opposite[forward] == backward


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="min_objects"):
        RegionWorldConfig(min_objects=3, max_objects=2)
    with pytest.raises(ValueError, match="unknown task"):
        RegionWorldConfig(samples_per_image={"colour": 1.0})
    with pytest.raises(ValueError, match="mask_fraction"):
        RegionWorldConfig(mask_fraction=1.5)


def test_samples_per_image_control(tmp_path: Path) -> None:
    config = RegionWorldConfig(
        samples_per_image={
            "category": 3,
            "brief": 0,
            "detailed": 0,
            "relation": 0,
            "choose_region": 0,
            "yes_no": 4,
            "multiple_choice": 0,
        }
    )
    info = generate_regionworld(
        tmp_path, n_train=5, n_val=0, n_test=0, n_comp=0, seed=1, config=config, progress=False
    )
    assert info["splits"]["train"]["tasks"]["category"] == 15
    assert info["splits"]["train"]["tasks"]["yes_no"] == 20
    assert info["splits"]["train"]["samples"] == 35
    assert set(info["splits"]) == {"train"}


def test_cli_json_summary(tmp_path: Path) -> None:
    app = typer.Typer()
    app.command()(regionworld_command)
    args = [
        "--out",
        str(tmp_path),
        "--n",
        "4",
        "--n-val",
        "1",
        "--n-test",
        "2",
        "--n-comp",
        "1",
        "--seed",
        "2",
        "--samples",
        "yes_no=2",
        "--json",
        "--no-progress",  # the same as --quiet
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "%|" not in result.output  # no progress bar
    summary = json.loads(result.stdout)
    assert summary["splits"]["train"]["images"] == 4
    assert summary["splits"]["train"]["tasks"]["yes_no"] == 8
    assert (tmp_path / "train.jsonl").is_file() and (tmp_path / "images/test_comp/000000.png").is_file()
    bad = CliRunner().invoke(app, ["--out", str(tmp_path), "--n", "1", "--samples", "colour=1"])
    assert bad.exit_code != 0


def test_the_folder_is_replaced_only_when_complete(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    from regiongpt.data import regionworld_generate

    out = tmp_path / "world"
    small = {"n_train": 3, "n_val": 0, "n_test": 2, "n_comp": 0, "progress": False}
    generate_regionworld(out, seed=1, **small)
    umask = os.umask(0)
    os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o777 & ~umask  # not mkdtemp's 0700
    before = _digest(out)
    real, calls = regionworld_generate._generate_one, []

    def fails_at_the_fourth_image(job):
        calls.append(job)
        if len(calls) == 4:
            raise RuntimeError("disk full")
        return real(job)

    monkeypatch.setattr(regionworld_generate, "_generate_one", fails_at_the_fourth_image)
    with pytest.raises(RuntimeError, match="disk full"):
        generate_regionworld(out, seed=2, **small)
    assert _digest(out) == before  # the seed-1 set, whole
    assert [p.name for p in tmp_path.iterdir()] == ["world"]  # no temporary folder left
    monkeypatch.setattr(regionworld_generate, "_generate_one", real)
    generate_regionworld(out, seed=2, **small)
    assert _digest(out) != before and json.loads((out / "info.json").read_text())["seed"] == 2
    assert [p.name for p in tmp_path.iterdir()] == ["world"]
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    with pytest.raises(ValueError, match="mine is not empty and not a data set this command wrote"):
        generate_regionworld(mine, seed=1, **small)
    assert [p.name for p in mine.iterdir()] == ["notes.txt"]


def test_cli_refuses_a_folder_that_is_not_regionworld(tmp_path: Path) -> None:
    app = typer.Typer()
    app.command()(regionworld_command)
    (tmp_path / "notes.txt").write_text("keep")
    result = CliRunner().invoke(app, ["--out", str(tmp_path), "--n", "1", "--quiet"])
    assert result.exit_code == 2 and "not a data set this command wrote" in result.output
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]
