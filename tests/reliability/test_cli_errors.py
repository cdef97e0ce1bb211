"""Every user error of the ``regiongpt`` command exits 2 with one ``error: ...`` line, no traceback.

Beyond tests/test_cli.py (describe): data generation and conversion, training with bad recipes
and bad data, evaluation with missing files, the server/chat commands and weight conversion.
Usage errors that typer itself reports (unknown option, missing argument, out-of-range value)
are one line too."""

from __future__ import annotations

import json
import pickle
import re
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from PIL import Image
from typer.testing import CliRunner

from regiongpt.api import RegionGPT
from regiongpt.cli import app
from regiongpt.data.converters.base import region_turns
from regiongpt.data.format import write_jsonl
from regiongpt.tasks import Task


def run(*args: object):
    return CliRunner().invoke(app, [str(a) for a in args])


# tqdm's bar with its optional label, printed while training runs or weights load ("Loading weights:")
PROGRESS_BAR = re.compile(r"(?:[A-Za-z][A-Za-z ]*:)?\s*\d+%\|[^|]*\| [^\]]*\]")


def assert_one_line_error(result, message: str) -> None:
    assert result.exit_code == 2, (result.exit_code, repr(result.exception), result.output[-2000:])
    assert "Traceback" not in result.output
    lines = [line for line in PROGRESS_BAR.sub("", result.stderr).strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    assert message in lines[0], lines[0]


class _Exploit:
    def __reduce__(self):
        return (print, ("pwned",))


def _instances(tmp: Path) -> Path:
    path = tmp / "instances.json"
    path.write_text(
        json.dumps({"images": [{"id": 1, "file_name": "1.jpg", "width": 8, "height": 8}], "annotations": []})
    )
    return path


DATA_CASES: dict[str, tuple[Callable[[Path], list[object]], str]] = {
    "convert: missing input": (lambda t: ["data", "convert", "coco", t / "nope.json", "--out", t / "o.jsonl"], "No such file"),
    "convert: not JSON": (
        lambda t: [
            "data", "convert", "vg", (t / "r.json").write_text("{oops") and t / "r.json", "--out", t / "o.jsonl",
        ],
        "not valid JSON",
    ),
    "convert: not UTF-8": (
        lambda t: ["data", "convert", "pope", (t / "x_random.json").write_bytes(b"\xff\xfe{") and t / "x_random.json", "--out", t / "o.jsonl"],
        "not UTF-8",
    ),
    "convert: POPE split unknown": (
        lambda t: ["data", "convert", "pope", (t / "questions.json").write_text("") or t / "questions.json", "--out", t / "o.jsonl"],
        "cannot tell the POPE split",
    ),
    "convert: pickle naming code": (
        lambda t: [
            "data", "convert", "refcoco", (t / "refs.p").write_bytes(pickle.dumps([_Exploit()])) and t / "refs.p",
            _instances(t), "--out", t / "o.jsonl",
        ],
        "refusing to load the global",
    ),
    "convert: truncated pickle": (
        lambda t: [
            "data", "convert", "refcoco", (t / "refs.p").write_bytes(pickle.dumps([{"a": 1}])[:-4]) and t / "refs.p",
            _instances(t), "--out", t / "o.jsonl",
        ],
        "not a valid pickle",
    ),
    "convert: VCR metadata missing": (
        lambda t: [
            "data", "convert", "vcr",
            (t / "val.jsonl").write_text(json.dumps({
                "objects": ["person"], "img_fn": "a.jpg", "metadata_fn": "a.json", "question": ["Hi", "?"],
                "answer_choices": [["a"]], "rationale_choices": [["b"]], "answer_label": 0, "rationale_label": 0,
            }) + "\n") and t / "val.jsonl",
            "--images-dir", t, "--out", t / "o.jsonl",
        ],
        "metadata file 'a.json' not found",
    ),
    "convert: output is a directory": (
        lambda t: ["data", "convert", "coco", _instances(t), "--out", t],
        "Is a directory",
    ),
    "convert: output is the input": (
        lambda t: ["data", "convert", "coco", _instances(t), "--out", _instances(t)],
        "is an input of this command",
    ),
    "mix: output is the mix file": (
        lambda t: ["data", "convert", "mix", (t / "mix.yaml").write_text("datasets: []\n") and t / "mix.yaml", "--out", t / "mix.yaml"],
        "is an input of this command",
    ),
    "mix: missing source": (
        lambda t: ["data", "convert", "mix", (t / "mix.yaml").write_text(f"datasets:\n  - {{path: {t / 'none.jsonl'}}}\n") and t / "mix.yaml", "--out", t / "o.jsonl"],
        "none.jsonl",
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", list(DATA_CASES))
def test_data_command_errors(tmp_path, case):
    make_args, message = DATA_CASES[case]
    args = make_args(tmp_path)
    before = {p: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
    assert_one_line_error(run(*args), message)
    assert {p: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()} == before, (
        "inputs must stay as they were"
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["data", "regionworld", "--out", "{tmp}", "--n", "-1"], "Invalid value for '--n'"),
        (["data", "regionworld", "--out", "{tmp}", "--n", "1", "--samples", "category=oops"], "--samples"),
        (["data", "convert", "coco"], "Missing argument"),
        (["describe", "--nope"], "No such option: --nope"),
        (["nosuchcommand"], "No such command"),
    ],
)
def test_usage_errors_are_one_line(tmp_path, args, message):
    result = run(*[a.replace("{tmp}", str(tmp_path / "rw")) if isinstance(a, str) else a for a in args])
    assert_one_line_error(result, message)


# ------------------------------------------------------------------------------------ train
@pytest.fixture()
def tiny_run(tiny_factory, tmp_path, rgb_image):
    model, processor = tiny_factory()
    RegionGPT(model, processor).save_pretrained(tmp_path / "init")
    Image.fromarray(rgb_image).save(tmp_path / "img.png")
    record = {"image": "img.png", "regions": [{"box": [1, 1, 20, 30]}], "task": "brief",
              "conversations": region_turns(Task.BRIEF, ["a red box"])}  # fmt: skip
    write_jsonl(tmp_path / "train.jsonl", [{**record, "id": str(k)} for k in range(2)])
    write_jsonl(tmp_path / "bad.jsonl", [{**record, "id": "x", "image": "missing.png"}])
    (tmp_path / "empty.jsonl").write_text("")
    return tmp_path


def _recipe(root: Path, **changes) -> dict:
    recipe = {
        "model": {"init_from": str(root / "init")},
        "data": {"train": str(root / "train.jsonl")},
        "output_dir": str(root / "out"),
        "training": {"batch_size": 2, "max_steps": 1, "save_steps": 1, "logging_steps": 1, "bf16": False},
        "stages": [{"name": "s1", "trainable": ["region_projector"]}],
    }
    for dotted, value in changes.items():
        node = recipe
        keys = dotted.split("__")
        for key in keys[:-1]:
            node = node[key]
        node[keys[-1]] = value
    return recipe


def _write_recipe(root: Path, recipe: dict | str) -> Path:
    path = root / "recipe.yaml"
    path.write_text(recipe if isinstance(recipe, str) else yaml.safe_dump(recipe))
    return path


RECIPE_CASES = [
    pytest.param(None, "recipe file not found", id="missing file"),
    pytest.param("model: [unclosed", "not valid YAML", id="not YAML"),
    pytest.param("- 1\n- 2\n", "recipe", id="not a mapping"),
    pytest.param({"lr": 1}, "unknown keys ['lr']", id="unknown key"),
    pytest.param({"training__learning_rate": -1.0}, "learning_rate must be positive", id="bad value"),
    pytest.param(
        {"stages": [{"name": "s1", "trainable": ["wheels"]}]},
        "unknown components ['wheels']",
        id="unknown component",
    ),
    pytest.param(
        {"model": {"preset": "tiny-default", "init_from": "x"}}, "exactly one of", id="preset and init_from"
    ),
    pytest.param({"stages": []}, "at least one stage", id="no stages"),
]


@pytest.mark.parametrize(("change", "message"), RECIPE_CASES)
def test_train_with_a_bad_recipe(tiny_run, change, message):
    if change is None:
        path = tiny_run / "nope.yaml"
    elif isinstance(change, str):
        path = _write_recipe(tiny_run, change)
    elif "lr" in change:
        path = _write_recipe(tiny_run, {**_recipe(tiny_run), **change})
    else:
        path = _write_recipe(tiny_run, _recipe(tiny_run, **change))
    assert_one_line_error(run("train", path), message)


def test_train_with_a_bad_override(tiny_run):
    path = _write_recipe(tiny_run, _recipe(tiny_run))
    assert_one_line_error(run("train", path, "stages.7.max_steps=3"), "no such key path")
    assert_one_line_error(run("train", path, "training.batch_size"), "must look like key=value")


TRAIN_RUN_CASES = {
    "data file missing": ({"data__train": "{root}/missing.jsonl"}, "data file not found"),
    "init_from missing": ({"model__init_from": "{root}/no-model"}, "no-model"),
    "malformed record": ({"data__train": "{root}/bad.jsonl"}, "bad.jsonl:1"),
    "empty data file": ({"data__train": "{root}/empty.jsonl"}, "empty.jsonl: the file holds no records"),
}


@pytest.mark.parametrize("case", list(TRAIN_RUN_CASES))
def test_train_errors_found_after_parsing_the_recipe(tiny_run, case):
    change, message = TRAIN_RUN_CASES[case]
    change = {k: v.replace("{root}", str(tiny_run)) for k, v in change.items()}
    assert_one_line_error(run("train", _write_recipe(tiny_run, _recipe(tiny_run, **change))), message)


# ------------------------------------------------------------------------------------ eval
@pytest.mark.parametrize("benchmark", ["caption", "classify", "rec", "pope", "vcr"])
def test_eval_with_a_missing_data_file(tmp_path, benchmark):
    assert_one_line_error(
        run("eval", benchmark, "--data", tmp_path / "nope.jsonl", "--out", tmp_path / "out"), "nope.jsonl"
    )


def test_eval_regionworld_with_a_missing_folder(tmp_path):
    assert_one_line_error(
        run("eval", "regionworld", "--data", tmp_path / "nope", "--out", tmp_path / "out"), "nope"
    )


def test_eval_with_a_malformed_data_file(tmp_path):
    data = tmp_path / "val.jsonl"
    data.write_text('{"image": "a.png", "conversations": []}\n')
    assert_one_line_error(run("eval", "caption", "--data", data, "--out", tmp_path / "out"), "val.jsonl:1")


def test_eval_with_a_missing_model(tmp_path, tiny_run):
    assert_one_line_error(
        run(
            "eval",
            "caption",
            "--data",
            tiny_run / "train.jsonl",
            "--model",
            tmp_path / "nomodel",
            "--out",
            tmp_path / "out",
            "--no-progress",
        ),
        "nomodel",
    )


# ------------------------------------------------------------------------------------ serve, convert
def test_serve_settings_and_weight_conversion_errors(tmp_path):
    """(Missing models, busy ports and bad --box values are in tests/serve/test_chat_cli.py.)"""
    assert_one_line_error(run("serve", "--max-regions", "0", "--port", "0"), "max_regions must be at least 1")
    assert_one_line_error(run("serve", "--timeout", "0", "--port", "0"), "request_timeout_s must be positive")
    assert_one_line_error(run("convert", "llava-hf", tmp_path / "src", tmp_path / "out"), "src")
    assert_one_line_error(run("convert", "gpt4roi", tmp_path / "src", tmp_path / "out"), "src")


@pytest.mark.parametrize("args", [[], ["data"], ["eval"]])
def test_no_arguments_print_help_and_no_error(args):
    result = run(*args)
    assert result.exit_code == 0 and "error:" not in result.stderr and "Usage" in result.output


def test_eval_refuses_to_resume_predictions_of_another_benchmark_or_data(tmp_path, tiny_run):
    data = tiny_run / "train.jsonl"
    out = tmp_path / "out"
    out.mkdir()
    (out / "predictions.jsonl").write_text('{"id": "x", "prediction": "a"}\n')
    earlier = {"model": "default", "dtype": "float32", "device": "cpu", "benchmark": "regionworld"}
    (out / "run.json").write_text(json.dumps(earlier))
    args = ["eval", "caption", "--data", data, "--dtype", "float32", "--device", "cpu", "--out", out]
    assert_one_line_error(run(*args), "benchmark 'regionworld', not benchmark 'caption'")
    (out / "run.json").write_text(
        json.dumps({**earlier, "benchmark": "caption", "data": str(tmp_path / "other.jsonl")})
    )
    assert_one_line_error(run(*args), "other.jsonl")
    assert (out / "predictions.jsonl").read_text() == '{"id": "x", "prediction": "a"}\n'
