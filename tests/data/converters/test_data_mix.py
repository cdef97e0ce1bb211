"""Deterministic mixing of canonical JSONL files from a YAML mix file."""

from collections import Counter

import pytest

from regiongpt.data.format import read_jsonl, write_jsonl
from regiongpt.data.mix import load_mix, write_mix


def _source(tmp_path, name, count):
    records = [
        {"id": f"{name}-{i}", "image": f"{i}.jpg", "regions": [{"box": [0, 0, 1, 1]}],
         "conversations": [{"from": "human", "value": "q <region1>"}, {"from": "gpt", "value": "a"}]}
        for i in range(count)
    ]  # fmt: skip
    write_jsonl(tmp_path / f"{name}.jsonl", records)


def _mix_file(tmp_path, text):
    path = tmp_path / "mix.yaml"
    path.write_text(text)
    return path


def test_mix_counts_ratios_and_determinism(tmp_path):
    _source(tmp_path, "coco", 10)
    _source(tmp_path, "vg", 4)
    mix = _mix_file(
        tmp_path,
        "seed: 3\ndatasets:\n  - {path: coco.jsonl, ratio: 0.5}\n  - {path: vg.jsonl, count: 10, name: visual_genome}\n",
    )
    counts = write_mix(mix, tmp_path / "a.jsonl")
    assert counts == {"coco": 5, "visual_genome": 10}
    records = list(read_jsonl(tmp_path / "a.jsonl"))
    assert len(records) == 15 and len({r.id for r in records}) == 15
    per_source = Counter(r.meta["mix"] for r in records)
    assert per_source == {"coco": 5, "visual_genome": 10}
    # 10 from 4 records: every record twice plus 2 drawn a third time
    copies = Counter(r.id.split("#")[0] for r in records if r.meta["mix"] == "visual_genome")
    assert sorted(copies.values()) == [2, 2, 3, 3]
    write_mix(mix, tmp_path / "b.jsonl")
    assert (tmp_path / "a.jsonl").read_text() == (tmp_path / "b.jsonl").read_text()
    write_mix(mix, tmp_path / "c.jsonl", seed=4)
    assert (tmp_path / "a.jsonl").read_text() != (tmp_path / "c.jsonl").read_text()


def test_mix_plain_list_unshuffled(tmp_path):
    _source(tmp_path, "coco", 3)
    mix = _mix_file(tmp_path, "- path: coco.jsonl\n")
    write_mix(mix, tmp_path / "out.jsonl", shuffle=False)
    assert [r.id for r in read_jsonl(tmp_path / "out.jsonl")] == ["coco/coco-0", "coco/coco-1", "coco/coco-2"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("- {path: coco.jsonl, ratoi: 0.5}\n", r"datasets\[0\]: unknown key\(s\) \['ratoi'\]"),
        ("- {path: coco.jsonl, ratio: 0.5, count: 3}\n", "not both"),
        ("- {path: coco.jsonl, ratio: -1}\n", "'ratio' must be a positive number, got -1"),
        ("- {path: coco.jsonl, count: 1.5}\n", "'count' must be a positive integer"),
        ("- {path: missing.jsonl}\n", r"datasets\[0\]: .*missing\.jsonl does not exist"),
        ("- {path: coco.jsonl}\n- {path: coco.jsonl}\n", "names must be unique"),
        ("seed: 1\nsets: []\n", r"unknown key\(s\) \['sets'\]"),
        ("- [unclosed\n", "not valid YAML"),
        ("seed: 1\nseed: 2\ndatasets: [{path: coco.jsonl}]\n", r"not valid YAML .*key 'seed' appears twice"),
        ("- {path: coco.jsonl, tasks: [yes_no, colour]}\n", r"datasets\[0\]: unknown task 'colour'"),
        ("- {path: coco.jsonl, tasks: yes_no}\n", "'tasks' must be a non-empty list of task names"),
    ],
)
def test_mix_validation(tmp_path, text, message):
    _source(tmp_path, "coco", 2)
    with pytest.raises(ValueError, match=message):
        load_mix(_mix_file(tmp_path, text))


def test_mix_rewrites_paths_of_sources_with_a_root_relative_to_the_output(tmp_path):
    for name in ("world", "photos", "converted"):
        (tmp_path / name).mkdir()
        record = {"id": f"{name}-0", "image": "images/0.png", "regions": [{"mask": "masks/0.png"}, {"box": [0, 0, 1, 1]}],
                  "conversations": [{"from": "human", "value": "q <region1> <region2>"}, {"from": "gpt", "value": "a"}]}  # fmt: skip
        absolute = {**record, "id": f"{name}-1", "image": str(tmp_path / "elsewhere.png")}
        write_jsonl(tmp_path / name / "train.jsonl", [record, absolute])
    mix = _mix_file(
        tmp_path,
        "- {path: world/train.jsonl, name: world, root: world, ratio: 2}\n"
        "- {path: photos/train.jsonl, name: photos, root: photos}\n"
        "- {path: converted/train.jsonl, name: converted}\n",  # paths relative to a training data.root
    )
    write_mix(mix, tmp_path / "mixed" / "train.jsonl", shuffle=False)
    records = list(read_jsonl(tmp_path / "mixed" / "train.jsonl"))
    assert [(r.id, r.image, r.regions[0]["mask"]) for r in records] == [
        ("world/world-0", "../world/images/0.png", "../world/masks/0.png"),
        ("world/world-0#1", "../world/images/0.png", "../world/masks/0.png"),
        ("world/world-1", str(tmp_path / "elsewhere.png"), "../world/masks/0.png"),
        ("world/world-1#1", str(tmp_path / "elsewhere.png"), "../world/masks/0.png"),
        ("photos/photos-0", "../photos/images/0.png", "../photos/masks/0.png"),
        ("photos/photos-1", str(tmp_path / "elsewhere.png"), "../photos/masks/0.png"),
        ("converted/converted-0", "images/0.png", "masks/0.png"),
        ("converted/converted-1", str(tmp_path / "elsewhere.png"), "masks/0.png"),
    ]
    assert records[0].regions[1] == {"box": [0, 0, 1, 1]}
    # written into a source's root, that source's paths stay as they were
    write_mix(mix, tmp_path / "world" / "mixed.jsonl", shuffle=False)
    assert [r.image for r in read_jsonl(tmp_path / "world" / "mixed.jsonl")][::2][:3] == [
        "images/0.png",
        str(tmp_path / "elsewhere.png"),
        "../photos/images/0.png",
    ]


def test_mix_root_must_be_a_folder(tmp_path):
    _source(tmp_path, "coco", 2)
    with pytest.raises(ValueError, match=r"datasets\[0\]: 'root' must be an existing folder, got 'nowhere'"):
        load_mix(_mix_file(tmp_path, "- {path: coco.jsonl, root: nowhere}\n"))


def test_mix_tasks_keeps_only_those_tasks_before_the_amount(tmp_path):
    tasks = ["yes_no", "category", "yes_no", "brief", "yes_no", "yes_no"]
    records = [
        {"id": f"w-{i}", "image": f"{i}.jpg", "regions": [], "task": task,
         "conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}]}
        for i, task in enumerate(tasks)
    ]  # fmt: skip
    write_jsonl(tmp_path / "world.jsonl", records)
    mix = _mix_file(tmp_path, "- {path: world.jsonl, tasks: [yes_no], ratio: 0.5}\n")
    assert write_mix(mix, tmp_path / "out.jsonl") == {"world": 2}  # half of the 4 yes/no records
    assert {r.task.value for r in read_jsonl(tmp_path / "out.jsonl")} == {"yes_no"}
    none = _mix_file(tmp_path, "- {path: world.jsonl, tasks: [relation]}\n")
    with pytest.raises(ValueError, match=r"no records with tasks \['relation'\]"):
        write_mix(none, tmp_path / "none.jsonl")


def test_mix_where_keeps_records_whose_meta_matches(tmp_path):
    kinds = ["position", "larger", "position", None, "overlap", "position", "position"]
    records = [
        {"id": f"w-{i}", "image": f"{i}.jpg", "regions": [], "task": "relation" if i < 6 else "category",
         "meta": {} if kind is None else {"relation": kind},
         "conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}]}
        for i, kind in enumerate(kinds)
    ]  # fmt: skip
    write_jsonl(tmp_path / "world.jsonl", records)
    mix = _mix_file(tmp_path, "- {path: world.jsonl, tasks: [relation], where: {relation: position}}\n")
    assert write_mix(mix, tmp_path / "out.jsonl") == {"world": 3}
    assert {r.meta["relation"] for r in read_jsonl(tmp_path / "out.jsonl")} == {"position"}
    either = _mix_file(tmp_path, "- {path: world.jsonl, where: {relation: [larger, overlap]}, count: 4}\n")
    out = tmp_path / "either.jsonl"
    assert write_mix(either, out) == {"world": 4}  # the 2 matches twice each
    assert Counter(r.meta["relation"] for r in read_jsonl(out)) == {"larger": 2, "overlap": 2}
    none = _mix_file(tmp_path, "- {path: world.jsonl, where: {relation: inside}}\n")
    with pytest.raises(ValueError, match=r"no records with meta relation in \['inside'\]"):
        write_mix(none, tmp_path / "none.jsonl")
    both = _mix_file(tmp_path, "- {path: world.jsonl, tasks: [brief], where: {relation: position}}\n")
    with pytest.raises(
        ValueError, match=r"no records with tasks \['brief'\] and meta relation in \['position'\]"
    ):
        write_mix(both, tmp_path / "both.jsonl")
    for bad, message in [("[relation]", "must map meta fields"), ("{relation: []}", "lists no values for")]:
        with pytest.raises(ValueError, match=message):
            load_mix(_mix_file(tmp_path, f"- {{path: world.jsonl, where: {bad}}}\n"))
