"""The ``regiongpt`` command: describe output formats and user errors (exit 2, one line)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from regiongpt.api import RegionGPT
from regiongpt.cli import app


@pytest.fixture()
def saved_model(tiny_factory, tmp_path):
    model, processor = tiny_factory()
    path = tmp_path / "tiny"
    RegionGPT(model, processor).save_pretrained(path)
    return path


@pytest.fixture()
def image_file(tmp_path, rgb_image):
    path = tmp_path / "scene.png"
    Image.fromarray(rgb_image).save(path)
    return path


def run(*args: str):
    return CliRunner().invoke(app, [str(a) for a in args])


def test_describe_prints_one_tab_separated_line_per_region(saved_model, image_file):
    result = run(
        "describe",
        image_file,
        "--box",
        "0,0,20,20",
        "--box=-5,10,40,50",
        "--point",
        "30,30",
        "--model",
        saved_model,
        "--max-new-tokens",
        "3",
    )
    assert result.exit_code == 0, result.output
    lines = result.stdout.strip().splitlines()
    assert [line.split("\t")[0] for line in lines] == ["region1", "region2", "region3"]


def test_describe_json_and_annotated_output(saved_model, image_file, tmp_path):
    out = tmp_path / "annotated.png"
    result = run(
        "describe",
        image_file,
        "--box",
        "1.5,2,20,20",
        "--task",
        "category",
        "--json",
        "--model",
        saved_model,
        "--out",
        out,
        "--max-new-tokens",
        "3",
    )
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["task"] == "category" and payload["model"] == str(saved_model)
    assert payload["regions"][0]["index"] == 1 and payload["regions"][0]["type"] == "box"
    assert payload["regions"][0]["box"] == [1.5, 2.0, 20.0, 20.0]
    assert isinstance(payload["regions"][0]["answer"], str)
    assert Image.open(out).size == (80, 60)


def test_describe_dtype_option(saved_model, image_file):
    base = ["describe", image_file, "--box", "0,0,20,20", "--model", saved_model, "--max-new-tokens", "2"]
    assert run(*base, "--dtype", "bfloat16").exit_code == 0
    bad = run(*base, "--dtype", "bf17")
    assert bad.exit_code == 2 and "unknown dtype 'bf17'" in bad.output


@pytest.mark.parametrize(
    ("make_args", "message"),
    [
        (lambda img, tmp: ["describe", tmp / "nope.png", "--box", "0,0,5,5"], "image file not found"),
        (lambda img, tmp: ["describe", img, "--box", "10,0,5,5"], "region 1 (--box 10,0,5,5): box"),
        (lambda img, tmp: ["describe", img, "--box", "1,2,3"], "expected 4 comma-separated numbers"),
        (lambda img, tmp: ["describe", img], "give at least one region"),
        (lambda img, tmp: ["describe", img, "--box", "0,0,5,5", "--task", "relation"], "describe supports"),
        (lambda img, tmp: ["describe", img, "--box", "0,0,5,5", "--model", tmp / "none"], "no model at"),
        (lambda img, tmp: ["describe", img, "--box", "0,0,5,5", "--max-new-tokens", "0"], "--max-new-tokens"),
        (  # checked before the model loads: this one does not exist
            lambda img, tmp: [
                "describe",
                img,
                "--box",
                "0,0,5,5",
                "--model",
                tmp / "none",
                "--out",
                tmp / "a.txt",
            ],
            "cannot write an image to",
        ),
    ],
)
def test_user_errors_exit_2_with_one_line(image_file, tmp_path, make_args, message):
    result = run(*make_args(image_file, tmp_path))
    assert result.exit_code == 2, result.output
    assert result.stderr.strip().startswith("error: ") and message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.output


def test_corrupt_image_and_wrong_mask_size_exit_2(tmp_path, image_file):
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    result = run("describe", corrupt, "--box", "0,0,5,5")
    assert result.exit_code == 2 and "cannot read image" in result.stderr
    mask = tmp_path / "mask.png"
    Image.fromarray(np.ones((10, 10), dtype=np.uint8) * 255).save(mask)
    result = run("describe", image_file, "--mask", mask)
    assert result.exit_code == 2 and "region 1: mask is 10x10" in result.stderr


def test_help_teaches_by_example():
    result = run("--help")
    assert result.exit_code == 0 and "regiongpt describe photo.jpg" in result.stdout
    result = run("describe", "--help")
    assert "--box=-5,0,40,40" in result.stdout


def test_help_does_not_load_torch():
    """``regiongpt --help`` and subcommands' help are instant: the model stack (torch,
    transformers) is imported only when a command runs."""
    import subprocess
    import sys

    code = (
        "import sys\nfrom typer.testing import CliRunner\nfrom regiongpt.cli import app\n"
        "for args in (['--help'], ['describe', '--help'], ['serve', '--help'], ['eval', 'regionworld', '--help']):\n"
        "    r = CliRunner().invoke(app, args); assert r.exit_code == 0, r.output\n"
        "print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
