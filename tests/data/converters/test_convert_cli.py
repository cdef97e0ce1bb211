"""The converters' typer app: a conversion, its summary line, and the one-line error path."""

import json

from typer.testing import CliRunner

from regiongpt.data.converters.cli import app
from regiongpt.data.format import read_jsonl

INSTANCES = {
    "images": [{"id": 1, "file_name": "000000000001.jpg", "width": 64, "height": 48}],
    "categories": [{"id": 18, "name": "dog"}],
    "annotations": [
        {"id": 1, "image_id": 1, "category_id": 18, "bbox": [10, 5, 20, 15], "area": 300.0, "iscrowd": 0},
        {"id": 2, "image_id": 1, "category_id": 18, "bbox": [0, 0, 64, 48], "area": 3072.0, "iscrowd": 1},
    ],
}


def test_cli_coco_and_error(tmp_path):
    runner = CliRunner()
    path = tmp_path / "instances.json"
    path.write_text(json.dumps(INSTANCES))
    out = tmp_path / "coco.jsonl"
    args = ["coco", str(path), "--out", str(out), "--image-root", "coco/val2017", "--geometry", "box"]
    result = runner.invoke(app, [*args, "--no-progress"])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == f"wrote 1 records to {out}; skipped 1 (crowd: 1)"
    (record,) = read_jsonl(out)
    assert record.image == "coco/val2017/000000000001.jpg" and record.regions == [
        {"box": [10.0, 5.0, 30.0, 20.0]}
    ]

    bad = json.loads(json.dumps(INSTANCES))
    bad["annotations"][0]["bbox"] = [10, 5, None, 15]
    path.write_text(json.dumps(bad))
    result = runner.invoke(app, [*args, "--no-progress"])
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [
        "error: instances.json annotations[0] (id 1): 'bbox' [x, y, width, height] must be 4 finite numbers, "
        "got [10, 5, None, 15]"
    ]
    assert "Traceback" not in result.output
    assert len(list(read_jsonl(out))) == 1  # the earlier output is left as it was

    missing = runner.invoke(app, ["pope", str(tmp_path / "nope_random.json"), "--out", str(out)])
    assert missing.exit_code == 2 and missing.stderr.startswith("error: [Errno 2] No such file")


def test_cli_help_lists_every_format():
    result = CliRunner().invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("coco", "lvis", "refcoco", "mdetr-refexp", "vg", "vg-grit", "flickr30k", "vcr",
                    "llava-instruct", "pope", "mix"):  # fmt: skip
        assert command in result.stdout
