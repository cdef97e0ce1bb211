"""Property tests of the data readers: canonical records, JSONL files and dataset converters.

Any input ends in records or a ValueError with a message, never another exception. Records that
come out are checked, not trusted: they parse again, round-trip through ``write_jsonl`` /
``read_jsonl``, their ``<regionK>`` tags match their regions, and their regions are usable on an
image of the size the record states."""

from __future__ import annotations

import copy
import json
import math
import pickle
import re
import subprocess
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from regiongpt.data.converters import (
    Stats,
    coco_category_records,
    flickr30k_records,
    llava_instruct_records,
    pope_records,
    refcoco_records,
    vcr_records,
    vg_region_records,
)
from regiongpt.data.format import Record, parse_record, read_jsonl, region_from_json, write_jsonl
from regiongpt.data.safe_pickle import decode_py2_strings, safe_loads
from regiongpt.regions import validate_regions
from tests.reliability.helpers import PROPS, count

TAG = re.compile(r"<region(\d+)>")
ROOT = str(Path(__file__).resolve().parents[2])

# ------------------------------------------------------------------------------------ values
WEIRD = [
    None, 0, -1, 1, 2.5, -7.25, 10**30, 10**400, float("nan"), float("inf"), -float("inf"), True, False,
    "", "x", "0", "12", "\ud800", "<region1>", "<image>", "é\u202e", [], {}, [0], [1, 2, 3, 4],
    [[0, 0, 5, 0, 0, 5]], [0, 0, 1e9, 1e9], {"a": 1}, {"size": [2, 2], "counts": [0, 3]}, [[[[[]]]]],
]  # fmt: skip
weird = st.sampled_from(WEIRD)
json_value = st.recursive(
    st.one_of(weird, st.text(max_size=8), st.integers(-(10**6), 10**6), st.floats()),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=10,
)


def paths(value: Any, prefix: tuple = ()) -> Iterable[tuple]:
    """Every location in a JSON tree (the root included)."""
    yield prefix
    if isinstance(value, dict):
        for key, item in value.items():
            yield from paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from paths(item, (*prefix, index))


def mutate(tree: Any, data: st.DataObject, rounds: int = 3) -> Any:
    """Replace, delete or duplicate 1..rounds random locations of a deep copy of ``tree``."""
    tree = copy.deepcopy(tree)
    for _ in range(data.draw(st.integers(1, rounds))):
        where = data.draw(st.sampled_from(list(paths(tree))))
        operation = data.draw(st.sampled_from(["replace", "replace", "delete", "duplicate"]))
        if not where:
            if operation == "replace":
                tree = copy.deepcopy(data.draw(json_value))
            continue
        parent = tree
        for key in where[:-1]:
            parent = parent[key]
        last = where[-1]
        if operation == "replace":  # a copy: later rounds edit in place, and WEIRD is shared
            parent[last] = copy.deepcopy(data.draw(json_value))
        elif operation == "delete":
            del parent[last]
        elif isinstance(parent, list):
            parent.insert(last, copy.deepcopy(parent[last]))
        else:
            parent[last] = [parent[last], copy.deepcopy(parent[last])]
    return tree


# ------------------------------------------------------------------------------------ record checks
def check_records(records: list[Record], tmp: Path) -> None:
    """Parse again, round-trip through JSONL, tags match regions, regions fit the stated image."""
    again = list(read_jsonl(tmp / "out.jsonl"))
    assert [r.to_json() for r in again] == [json.loads(json.dumps(r.to_json())) for r in records]
    for record in again:
        parse_record(record.to_json())
        tags = {int(k) for turn in record.conversations for k in TAG.findall(turn["value"])}
        assert tags == set(range(1, len(record.regions) + 1)), (record.id, tags, len(record.regions))
        size = (record.width, record.height) if record.width is not None else None
        entries = [r for r in record.regions if "mask" not in r]
        if size is None:  # only geometry that needs no size can be checked
            entries = [r for r in entries if "polygon" not in r]
        regions = [region_from_json(r, tmp, size or (10**4, 10**4)) for r in entries]
        if size is not None:
            validate_regions(regions, size)
        for entry in entries:
            if "box" in entry:
                x1, y1, x2, y2 = entry["box"]
                assert all(math.isfinite(v) for v in entry["box"]) and x2 > x1 and y2 > y1


def run_converter(make: Callable[[], Iterable[Record]], tmp: Path, name: str) -> None:
    count(f"converters.{name}")
    try:  # write_jsonl validates every record: the CLI writes nothing read_jsonl would refuse
        records = list(make())
        assert write_jsonl(tmp / "out.jsonl", records) == len(records)
    except ValueError as error:
        assert str(error).strip()
        return
    count(f"converters.{name} (records written)")
    check_records(records, tmp)


def write_json(path: Path, value: Any) -> Path:
    path.write_text(json.dumps(value))
    return path


# ------------------------------------------------------------------------------------ parse_record
VALID = {
    "id": "r1",
    "image": "images/1.png",
    "width": 64,
    "height": 48,
    "regions": [
        {"box": [1, 2, 30, 40]},
        {"point": [5, 5]},
        {"polygon": [[0, 0, 10, 0, 10, 10]]},
        {"rle": {"size": [48, 64], "counts": [10, 5, 3057]}},
    ],
    "conversations": [
        {"from": "human", "value": "What is <region1>, <region2>, <region3> and <region4>?"},
        {"from": "gpt", "value": "things"},
    ],
    "task": "brief",
    "meta": {"source": "test"},
}


@settings(max_examples=600, **PROPS)
@given(data=st.data())
def test_parse_record_accepts_only_usable_records(data, tmp_path_factory):
    obj = mutate(VALID, data) if data.draw(st.booleans()) else copy.deepcopy(data.draw(json_value))
    count("data.parse_record")
    try:
        record = parse_record(obj)
    except ValueError as error:
        assert str(error).strip()
        return
    assert isinstance(record.image, str) and record.image
    assert isinstance(record.meta, dict) and isinstance(record.id, str)
    for key in ("width", "height"):
        value = getattr(record, key)
        assert value is None or (isinstance(value, int) and value > 0)
    assert (record.width is None) == (record.height is None)
    for index, turn in enumerate(record.conversations):
        assert turn["from"] == ("human" if index % 2 == 0 else "gpt") and isinstance(turn["value"], str)
    tmp = tmp_path_factory.mktemp("rec")
    size = (record.width, record.height) if record.width is not None else (64, 48)
    for entry in record.regions:  # shapes are checked by parse_record; sizes need the image
        if "mask" in entry:
            assert isinstance(entry["mask"], str)
            continue
        try:
            validate_regions([region_from_json(entry, tmp, size)], size)
        except ValueError as error:
            assert str(error).strip()
    again = parse_record(json.loads(json.dumps(record.to_json()))).to_json()
    assert json.dumps(again) == json.dumps(record.to_json())  # (as text: NaN in meta is not == NaN)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"width": "64"}, "'width' and 'height' must be positive integers"),
        ({"width": None}, "'width' and 'height' must be positive integers"),
        ({"meta": [1, 2]}, "'meta' must be an object"),
        ({"task": 5}, "unknown task"),
        ({"task": ["brief"]}, "unknown task"),
        ({"regions": [{"box": [1, 2, 3]}]}, "region 1: box must be a list of 4 numbers"),
        ({"regions": [{"point": "5,5"}]}, "region 1: point must be a list of 2 numbers"),
        ({"regions": [{"point": [5]}]}, "region 1: point must be a list of 2 numbers"),
        ({"regions": [{"box": [1, 2, 3, True]}]}, "region 1: box must be a list of 4 finite numbers"),
        ({"regions": [{"box": [1, 2, 3, float("nan")]}]}, "region 1: box must be a list of 4 finite numbers"),
        ({"regions": [{"box": [1, 2, 3, 10**400]}]}, "region 1: box must be a list of 4 finite numbers"),
        ({"width": 10**400, "height": 5}, "exceeds the limit"),
        ({"regions": [{"polygon": [1, 2, 3, 4, 5, 6]}]}, "region 1: polygon must be a list of"),
        ({"regions": [{"rle": [1, 2]}]}, "region 1: rle must be an object"),
        ({"regions": [{"mask": 5}]}, "region 1: mask must be a file path"),
    ],
)
def test_parse_record_names_each_problem(change, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        parse_record({**VALID, **change})


# ------------------------------------------------------------------------------------ JSONL files
LINES = st.one_of(
    st.builds(lambda v: json.dumps(v).encode(), json_value),
    st.just(json.dumps(VALID).encode()),
    st.just(b"[" * 100_000),  # nesting deeper than the JSON parser's recursion limit
    st.just(b'{"image": "a\xff\xfe.png"}'),  # not UTF-8
    st.just(b'{"image": "\\ud800.png", "conversations": [{"from": "human", "value": "hi \\udc00"}]}'),
    st.just(b"   "),
    st.binary(max_size=20).filter(lambda b: b"\n" not in b and b"\r" not in b),
)


@settings(max_examples=300, **PROPS)
@given(data=st.data(), lines=st.lists(LINES, max_size=6))
def test_read_jsonl_and_dataset_index_any_file(data, lines, tmp_path_factory):
    lines = [*lines, json.dumps(mutate(VALID, data)).encode()]
    path = tmp_path_factory.mktemp("jsonl") / "data.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    count("data.read_jsonl files")
    skipped: list[str] = []
    kept = list(read_jsonl(path, skip_invalid=True, skipped=skipped))
    assert len(kept) + len(skipped) == sum(1 for line in path.read_bytes().splitlines() if line.strip())
    assert all(re.match(rf"{re.escape(str(path))}:\d+: .+", message) for message in skipped), skipped
    try:
        strict = list(read_jsonl(path))
    except ValueError as error:
        assert skipped and str(error) == skipped[0]
    else:
        assert not skipped and [r.to_json() for r in strict] == [r.to_json() for r in kept]
    from regiongpt.data.dataset import RegionDataset

    dataset = RegionDataset(path, processor=None)  # indexing and record() need no processor
    assert len(dataset) == len(kept) + len(skipped)
    for index in range(len(dataset)):
        try:
            dataset.record(index)
        except ValueError as error:
            assert re.match(rf"{re.escape(str(path))}:\d+: .+", str(error)), str(error)


def test_lone_surrogates_round_trip_through_write_jsonl_and_never_reach_the_tokenizer(tmp_path):
    record = parse_record({"image": "odd \ud800.png", "conversations": [{"from": "human", "value": "ok"}]})
    write_jsonl(tmp_path / "out.jsonl", [record])
    assert next(read_jsonl(tmp_path / "out.jsonl")).image == "odd \ud800.png"
    with pytest.raises(ValueError, match="turn 0 holds invalid Unicode"):
        parse_record({"image": "a.png", "conversations": [{"from": "human", "value": "odd \ud800"}]})


# ------------------------------------------------------------------------------------ converters
COCO = {
    "images": [
        {"id": 1, "file_name": "1.jpg", "width": 64, "height": 48},
        {"id": 2, "file_name": "2.jpg", "width": 32, "height": 32},
    ],
    "categories": [{"id": 18, "name": "dog"}, {"id": 1, "name": "person"}],
    "annotations": [
        {"id": 101, "image_id": 1, "category_id": 18, "bbox": [10, 5, 20, 15], "area": 300.0, "iscrowd": 0,
         "segmentation": [[10, 5, 30, 5, 30, 20, 10, 20]]},
        {"id": 102, "image_id": 1, "category_id": 1, "bbox": [0.5, 1.5, 4, 8], "area": 30.0, "iscrowd": 0,
         "segmentation": {"size": [48, 64], "counts": [100, 20, 2952]}},
        {"id": 104, "image_id": 2, "category_id": 18, "bbox": [1, 1, 2, 2], "area": 4.0, "iscrowd": 0,
         "segmentation": [[1, 1, 3, 1, 3, 3]]},
        {"id": 106, "image_id": 2, "category_id": 1, "bbox": [2, 3, 10, 20], "area": 200.0, "iscrowd": 0,
         "segmentation": []},
    ],
}  # fmt: skip


@settings(max_examples=300, **PROPS)
@given(data=st.data(), geometry=st.sampled_from(["mask", "box"]), per_sample=st.sampled_from([1, 2]))
def test_coco_converter_on_mutated_files(data, geometry, per_sample, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("coco")
    path = write_json(tmp / "instances.json", mutate(COCO, data))
    run_converter(
        lambda: coco_category_records(
            path, geometry=geometry, regions_per_sample=per_sample, show_progress=False
        ),
        tmp,
        "coco",
    )


VG = [
    {"id": 1, "regions": [
        {"region_id": 1382, "width": 82, "height": 139, "image_id": 1, "phrase": "the clock", "y": 57, "x": 421},
        {"region_id": 1383, "width": 20, "height": 30, "image_id": 1, "phrase": "shade", "y": 590, "x": 790},
    ]},
    {"id": 10, "regions": [{"region_id": 5000, "width": 5, "height": 6, "image_id": 10, "phrase": "man", "y": 2, "x": 3}]},
]  # fmt: skip
VG_IMAGES = [
    {"width": 800, "url": "https://x/VG_100K_2/1.jpg", "height": 600, "image_id": 1},
    {"width": 640, "url": "https://x/VG_100K/10.jpg", "height": 480, "image_id": 10},
]


@settings(max_examples=200, **PROPS)
@given(data=st.data(), per_sample=st.sampled_from([1, 3]))
def test_vg_converter_on_mutated_files(data, per_sample, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("vg")
    regions = write_json(tmp / "region_descriptions.json", mutate(VG, data))
    images = write_json(
        tmp / "image_data.json", mutate(VG_IMAGES, data, rounds=1) if data.draw(st.booleans()) else VG_IMAGES
    )
    run_converter(
        lambda: vg_region_records(
            regions, image_data=images, regions_per_sample=per_sample, show_progress=False
        ),
        tmp,
        "vg",
    )


POPE = [
    {"question_id": 1, "image": "COCO_val2014_000000310196.jpg", "text": "Is there a snowboard in the image?", "label": "yes"},
    {"question_id": 2, "image": "COCO_val2014_000000310196.jpg", "text": "Is there a dog in the image?", "label": "no"},
]  # fmt: skip


@settings(max_examples=150, **PROPS)
@given(data=st.data(), as_array=st.booleans())
def test_pope_converter_on_mutated_files(data, as_array, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pope")
    lines = mutate(POPE, data)
    path = tmp / "coco_pope_random.json"
    if as_array or not isinstance(lines, list):
        write_json(path, lines)
    else:
        path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    run_converter(lambda: pope_records(path, show_progress=False), tmp, "pope")


VCR_LINE = {
    "objects": ["person", "person", "car"],
    "img_fn": "movie/1.jpg",
    "metadata_fn": "movie/1.json",
    "question": ["What", "is", [0], "doing", "with", [2], "?"],
    "answer_choices": [[[0], "is", "driving", [2], "."], [[1], "is", "sleeping", "."], ["He", "reads", "."], [[0, 1], "dance", "."]],
    "answer_label": 0,
    "rationale_choices": [[[0], "holds", "the", "wheel", "."], ["It", "'s", "night", "."], [[1], "is", "away", "."], ["Nothing", "."]],
    "rationale_label": 0,
    "annot_id": "val-0",
}  # fmt: skip
VCR_META = {
    "boxes": [[10.0, 10.0, 50.0, 80.0, 0.99], [60.0, 10.0, 90.0, 80.0, 0.9], [0.0, 40.0, 130.0, 100.0, 0.8]],
    "segms": [[[[10, 10], [50, 10], [50, 80], [10, 80]]], [[[60, 10], [90, 10], [90, 80]]], []],
    "width": 120,
    "height": 100,
}


@settings(max_examples=250, **PROPS)
@given(data=st.data(), geometry=st.sampled_from(["mask", "box"]))
def test_vcr_converter_on_mutated_files(data, geometry, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("vcr")
    images = tmp / "vcr1images"
    (images / "movie").mkdir(parents=True)
    mutate_meta = data.draw(st.booleans())
    write_json(images / "movie" / "1.json", mutate(VCR_META, data) if mutate_meta else VCR_META)
    line = VCR_LINE if mutate_meta else mutate(VCR_LINE, data)
    path = tmp / "val.jsonl"
    path.write_text(json.dumps(line) + "\n")
    run_converter(
        lambda: vcr_records(path, images_dir=images, geometry=geometry, show_progress=False), tmp, "vcr"
    )


REF_INSTANCES = {
    "images": [{"id": 581857, "file_name": "COCO_train2014_000000581857.jpg", "width": 100, "height": 80}],
    "categories": [{"id": 1, "name": "person"}, {"id": 44, "name": "bottle"}],
    "annotations": [
        {"id": 1719310, "image_id": 581857, "category_id": 1, "bbox": [10, 20, 30, 40], "iscrowd": 0,
         "segmentation": [[10, 20, 40, 20, 40, 60, 10, 60]]},
        {"id": 1719311, "image_id": 581857, "category_id": 44, "bbox": [50, 5, 10, 20], "iscrowd": 0,
         "segmentation": [[50, 5, 60, 5, 60, 25, 50, 25]]},
    ],
}  # fmt: skip
REFS = [
    {"ann_id": 1719310, "ref_id": 0, "image_id": 581857, "split": "train",
     "sentences": [{"sent_id": 0, "sent": "the lady"}, {"sent_id": 1, "sent": "woman left"}]},
    {"ann_id": 1719311, "ref_id": 1, "image_id": 581857, "split": "val",
     "sentences": [{"sent_id": 2, "sent": "green bottle"}]},
]  # fmt: skip


@settings(max_examples=250, **PROPS)
@given(data=st.data(), geometry=st.sampled_from(["mask", "box"]), protocol=st.sampled_from([0, 2, 4]))
def test_refcoco_converter_on_mutated_files(data, geometry, protocol, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("refcoco")
    mutate_refs = data.draw(st.booleans())
    refs = tmp / "refs(unc).p"
    refs.write_bytes(pickle.dumps(mutate(REFS, data) if mutate_refs else REFS, protocol=protocol))
    instances = write_json(
        tmp / "instances.json", REF_INSTANCES if mutate_refs else mutate(REF_INSTANCES, data)
    )
    run_converter(
        lambda: refcoco_records(refs, instances, geometry=geometry, show_progress=False), tmp, "refcoco"
    )


CAPTION = "Two young guys with shaggy hair look at their hands ."
FLICKR = {
    "images": [{"file_name": "1.jpg", "height": "333", "width": "500", "id": 0, "caption": CAPTION, "original_img_id": 1}],
    "annotations": [
        {"image_id": 0, "id": 0, "bbox": [100, 20, 50, 80], "tokens_positive": [[40, 51]]},
        {"image_id": 0, "id": 1, "bbox": [10, 30, 60, 150], "tokens_positive": [[0, 3], [10, 14]]},
        {"image_id": 0, "id": 2, "bbox": [480, 300, 40, 50], "tokens_positive": [[0, 14]]},
    ],
}  # fmt: skip


@settings(max_examples=200, **PROPS)
@given(data=st.data())
def test_flickr30k_converter_on_mutated_files(data, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("flickr")
    path = write_json(tmp / "flickr.json", mutate(FLICKR, data))
    run_converter(lambda: flickr30k_records(path, show_progress=False), tmp, "flickr30k")


LLAVA = [
    {"id": "000000033471", "image": "000000033471.jpg", "conversations": [
        {"from": "human", "value": "<image>\nWhat colour is the bus?"}, {"from": "gpt", "value": "White."}]},
]  # fmt: skip
DETECTIONS = [
    {"image_id": 33471, "category_id": 6, "bbox": [10.0, 20.0, 100.0, 50.0], "score": 0.98},
    {"image_id": 33471, "category_name": "apple", "bbox": [0.0, 0.0, 4.0, 4.0], "score": 0.6},
]
CATEGORIES = {"categories": [{"id": 1, "name": "person"}, {"id": 6, "name": "bus"}]}


@settings(max_examples=200, **PROPS)
@given(data=st.data())
def test_llava_instruct_converter_on_mutated_files(data, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("llava")
    which = data.draw(st.sampled_from(["llava", "detections", "categories"]))
    llava = write_json(tmp / "llava.json", mutate(LLAVA, data) if which == "llava" else LLAVA)
    dets = write_json(tmp / "dets.json", mutate(DETECTIONS, data) if which == "detections" else DETECTIONS)
    cats = write_json(tmp / "cats.json", mutate(CATEGORIES, data) if which == "categories" else CATEGORIES)
    run_converter(
        lambda: llava_instruct_records(llava, dets, categories=cats, show_progress=False),
        tmp,
        "llava-instruct",
    )


def test_converters_name_the_record_for_wrong_container_types(tmp_path):
    coco = write_json(tmp_path / "c.json", {**COCO, "categories": 5})
    with pytest.raises(ValueError, match="'categories' must be a list"):
        list(coco_category_records(coco, show_progress=False))
    meta = {**VCR_META, "segms": [5, 5, 5]}
    (tmp_path / "v" / "movie").mkdir(parents=True)
    write_json(tmp_path / "v" / "movie" / "1.json", meta)
    (tmp_path / "val.jsonl").write_text(json.dumps(VCR_LINE) + "\n")
    with pytest.raises(ValueError, match=r"segms\[0\] must be a list of polygons"):
        list(vcr_records(tmp_path / "val.jsonl", images_dir=tmp_path / "v", show_progress=False))
    dets = write_json(tmp_path / "d.json", [{**DETECTIONS[0], "category_id": [6]}])
    cats = write_json(tmp_path / "k.json", CATEGORIES)
    with pytest.raises(ValueError, match="category_id"):
        list(
            llava_instruct_records(
                write_json(tmp_path / "l.json", LLAVA), dets, categories=cats, show_progress=False
            )
        )


def test_boxes_outside_the_stated_image_are_skipped_not_written(tmp_path):
    """A COCO box entirely outside its image would fail every training step that draws it."""
    data = copy.deepcopy(COCO)
    data["annotations"][0]["bbox"] = [100, 100, 5, 5]  # image 1 is 64x48
    data["annotations"][0]["segmentation"] = []
    stats = Stats()
    records = list(
        coco_category_records(write_json(tmp_path / "c.json", data), stats=stats, show_progress=False)
    )
    assert "coco-101" not in {r.id for r in records} and stats.skipped["box outside image"] == 1


# ------------------------------------------------------------------------------------ pickles
def test_shared_references_do_not_blow_up_python2_decoding():
    """40 levels of [x, x] pickle in a few hundred bytes but are 2**40 nodes once copied.

    Run in a child with 2 GB of address space and 120 s, so a regression fails instead of
    eating the machine's memory."""
    script = """
import pickle, resource, sys
resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))
from regiongpt.data.safe_pickle import decode_py2_strings, safe_loads
value = ["leaf"]
for _ in range(40):
    value = [value, value]
payload = pickle.dumps(value, protocol=2)
assert len(payload) < 1000, len(payload)
node = decode_py2_strings(safe_loads(payload, encoding="bytes"))
for _ in range(40):
    assert node[0] is node[1]
    node = node[0]
assert node == ["leaf"], node
"""
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=ROOT
    )
    assert result.returncode == 0, result.stderr[-2000:]


def test_deeply_nested_pickle_is_a_value_error():
    depth = 100_000
    payload = b"\x80\x02" + b"(" * depth + b"l" * depth + b"."  # MARK ... LIST: lists in lists
    with pytest.raises(ValueError, match="nested"):
        decode_py2_strings(safe_loads(payload, encoding="bytes"))


@settings(max_examples=400, **PROPS)
@given(data=st.data())
def test_restricted_unpickler_on_mutated_pickles(data):
    """Bytes near a valid pickle: plain data or UnsafePickleError (a ValueError), nothing else."""
    protocol = data.draw(st.sampled_from([0, 1, 2, 4, 5]))
    payload = bytearray(pickle.dumps(REFS, protocol=protocol))
    for _ in range(data.draw(st.integers(1, 4))):
        payload[data.draw(st.integers(0, len(payload) - 1))] = data.draw(st.integers(0, 255))
    if data.draw(st.booleans()):
        payload = payload[: data.draw(st.integers(0, len(payload)))]
    count("safe_pickle.mutated")
    try:
        decode_py2_strings(
            safe_loads(bytes(payload), encoding=data.draw(st.sampled_from(["bytes", "utf-8", "latin-1"])))
        )
    except ValueError as error:
        assert str(error).strip()
