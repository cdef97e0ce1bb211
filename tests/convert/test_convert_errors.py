"""Conversion errors name what is wrong; the CLI turns them into one ``error:`` line and exit 2."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file
from typer.testing import CliRunner

from regiongpt.api import RegionGPT
from regiongpt.convert.commands import convert_app
from regiongpt.convert.gpt4roi import convert_gpt4roi
from regiongpt.convert.weights import ConversionError, WeightFiles
from tests.convert.builders import GN_GROUPS, make_gpt4roi


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    return make_gpt4roi(tmp_path_factory.mktemp("gpt4roi"))


def _convert(files, out, **kwargs):
    options = dict(base=files.base, vision=files.clip, group_norm_groups=GN_GROUPS) | kwargs
    return convert_gpt4roi(options.pop("src", files.delta), out, **options)


def test_missing_paths_are_named(files, tmp_path):
    with pytest.raises(ConversionError, match=str(tmp_path / "nope")):
        _convert(files, tmp_path / "out", src=tmp_path / "nope")
    with pytest.raises(ConversionError, match="LLaMA base .*missing-base"):
        _convert(files, tmp_path / "out", base=tmp_path / "missing-base")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ConversionError, match=f"no weights in {empty}"):
        WeightFiles(empty)


def test_shape_mismatch_names_key_and_both_shapes(files, tmp_path):
    delta = tmp_path / "delta"
    delta.mkdir()
    state = load_file(str(files.delta / "model.safetensors"))
    state["model.layers.0.self_attn.q_proj.weight"] = torch.zeros(48, 40)
    save_file(state, str(delta / "model.safetensors"))
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json"):
        (delta / name).write_bytes((files.delta / name).read_bytes())
    with pytest.raises(
        ConversionError, match=r"q_proj.weight: delta shape \(48, 40\), base shape \(48, 48\)"
    ):
        _convert(files, tmp_path / "out", src=delta)


def test_llama2_like_base_is_refused_unless_forced(tmp_path):
    files = make_gpt4roi(tmp_path, base_positions=4096)
    with pytest.raises(ConversionError, match="looks like LLaMA-2"):
        _convert(files, tmp_path / "out")
    RegionGPT.from_pretrained(_convert(files, tmp_path / "out", skip_base_check=True))


def test_base_must_have_llama1_vocabulary(tmp_path):
    files = make_gpt4roi(tmp_path / "a", base_vocab=32001)
    with pytest.raises(ConversionError, match="32001-token vocabulary"):
        _convert(files, tmp_path / "out")
    with pytest.raises(ConversionError, match=r"(lm_head|embed_tokens).weight: base shape \(32001, 48\)"):
        _convert(files, tmp_path / "out", skip_base_check=True)


def test_wrong_tokenizer_is_refused(files, tmp_path):
    delta = tmp_path / "delta"
    delta.mkdir()
    (delta / "model.safetensors").write_bytes((files.delta / "model.safetensors").read_bytes())
    (delta / "config.json").write_bytes((files.delta / "config.json").read_bytes())
    from tests.convert.builders import word_tokenizer

    tokenizer = word_tokenizer()
    tokenizer.add_tokens(["<im_patch>"], special_tokens=True)  # GPT4RoI's [PAD] missing: ids shift
    tokenizer.save_pretrained(delta)
    with pytest.raises(ConversionError, match="'\\[PAD\\]' is id 32001 .* row for it is 32000"):
        _convert(files, tmp_path / "out", src=delta)


def test_without_vision_the_default_clip_is_named(files, tmp_path):
    # The tiny checkpoint is 32 wide, so the default CLIP-L (1024) cannot serve it: a clear error.
    with pytest.raises(ConversionError, match="CLIP tower is 1024 wide.* take 32"):
        _convert(files, tmp_path / "out", vision=None)


def test_output_never_replaces_inputs_or_foreign_directories(files, tmp_path):
    with pytest.raises(ConversionError, match="outside the input"):
        _convert(files, files.delta / "out")
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(ConversionError, match="not a regiongpt checkpoint"):
        _convert(files, foreign)


def test_cli_converts_and_reports_errors(files, tmp_path):
    runner = CliRunner()
    out = tmp_path / "cli-out"
    args = [
        "gpt4roi",
        str(files.delta),
        str(out),
        "--base",
        str(files.base),
        "--vision",
        str(files.clip),
        "--group-norm-groups",
        str(GN_GROUPS),
    ]
    result = runner.invoke(convert_app, args)
    assert result.exit_code == 0, result.output
    assert json.loads((out / "config.json").read_text())["region_token"] == "<bbox>"
    # Converting again over our own previous output is allowed (atomic replace).
    assert runner.invoke(convert_app, args).exit_code == 0

    result = runner.invoke(convert_app, ["gpt4roi", str(tmp_path / "missing"), str(tmp_path / "o")])
    assert result.exit_code == 2
    assert result.stderr.strip().count("\n") == 0 and result.stderr.startswith("error: ")
    assert str(tmp_path / "missing") in result.stderr
    result = runner.invoke(convert_app, ["llava-hf", str(tmp_path), str(tmp_path / "o"), "--encoder", "x"])
    assert result.exit_code == 2 and result.stderr.startswith("error: --encoder")
    result = runner.invoke(convert_app, ["llava-hf", str(files.base), str(tmp_path / "o2")])
    assert result.exit_code == 2 and "not LLaVA" in result.stderr
