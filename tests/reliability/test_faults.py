"""Faults: a training run SIGKILLed and resumed, and writers that die half-way through a save.

* ``regiongpt train`` killed with SIGKILL once its N-th checkpoint is complete, then run again
  with ``--resume``, ends at the same step with the same weights as an uninterrupted run of the
  same recipe and seed (slow).
* Checkpoints (``save_checkpoint``, also used by the weight converters), canonical JSONL
  (``write_jsonl``) and evaluation outputs: a writer that raises midway leaves the previous file
  intact and loadable, and no temporary files behind."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from safetensors.torch import load_file

from regiongpt.api import RegionGPT
from regiongpt.data.format import read_jsonl, write_jsonl
from regiongpt.modeling import checkpoint as checkpoint_module
from regiongpt.modeling.checkpoint import load_checkpoint, save_checkpoint

ROOT = Path(__file__).resolve().parents[2]
TOTAL_STEPS, KILL_AFTER, SAVE_STEPS = 9, 3, 3


# ------------------------------------------------------------------------------------ kill and resume
@pytest.fixture()
def tiny_recipe_root(tiny_factory, tmp_path):
    """A saved tiny model and 8 samples on one 1200x900 photo-sized image (slow enough to decode
    that a training step lasts far longer than the kill's polling interval)."""
    model, processor = tiny_factory()
    RegionGPT(model, processor).save_pretrained(tmp_path / "init")
    rng = np.random.default_rng(0)
    Image.fromarray((rng.random((900, 1200, 3)) * 255).astype(np.uint8)).save(tmp_path / "img.png")
    records = [
        {"id": str(i), "image": "img.png", "regions": [{"box": [10 * i, 10 * i, 300 + 50 * i, 400]}],
         "conversations": [{"from": "human", "value": f"Is <region1> number {i}?"},
                           {"from": "gpt", "value": "yes" if i % 2 else "no"}]}
        for i in range(8)
    ]  # fmt: skip
    write_jsonl(tmp_path / "train.jsonl", records)
    return tmp_path


def _recipe(root: Path, out: str) -> Path:
    recipe = {
        "model": {"init_from": str(root / "init")},
        "data": {"train": str(root / "train.jsonl")},
        "output_dir": str(root / out),
        "seed": 7,
        "training": {"batch_size": 2, "learning_rate": 1e-2, "warmup_ratio": 0.0, "lr_scheduler": "cosine",
                     "logging_steps": 1, "save_steps": SAVE_STEPS, "save_total_limit": 5, "bf16": False,
                     "max_steps": TOTAL_STEPS},
        "stages": [{"name": "s1", "trainable": ["region_encoder", "region_projector"]}],
    }  # fmt: skip
    path = root / f"{out}.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


def _train(recipe: Path, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
           "TOKENIZERS_PARALLELISM": "false", "CUDA_VISIBLE_DEVICES": ""}  # fmt: skip
    command = [sys.executable, "-c", "from regiongpt.cli import main; main()", "train", str(recipe), *extra]
    return subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _finish(process: subprocess.Popen, timeout: float = 600) -> None:
    out, err = process.communicate(timeout=timeout)
    assert process.returncode == 0, err.decode()[-3000:]


def _state(checkpoint: Path) -> dict:
    return json.loads((checkpoint / "trainer_state.json").read_text())


@pytest.mark.slow
def test_sigkill_then_resume_matches_an_uninterrupted_run(tiny_recipe_root):
    root = tiny_recipe_root
    _finish(_train(_recipe(root, "reference")))

    recipe = _recipe(root, "killed")
    marker = root / "killed" / "s1" / f"checkpoint-{KILL_AFTER}" / "trainer_state.json"  # written last
    process = _train(recipe)
    deadline = time.monotonic() + 600
    while not marker.is_file():
        assert process.poll() is None, process.stderr.read().decode()[-3000:]
        assert time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL
    stage = root / "killed" / "s1"
    assert not (stage / "final").exists(), "the run finished before it was killed"
    at_kill = sorted(p.name for p in stage.glob("checkpoint-*"))
    partial = [p.name for p in stage.glob("checkpoint-*") if not (p / "trainer_state.json").is_file()]
    assert not partial, (
        f"the kill landed inside a checkpoint save: {partial} (see test_resume_skips_a_partial_checkpoint)"
    )

    _finish(_train(recipe, "--resume"))
    reference = load_file(str(root / "reference" / "final" / "model.safetensors"))
    resumed = load_file(str(root / "killed" / "final" / "model.safetensors"))
    initial = load_file(str(root / "init" / "model.safetensors"))
    assert reference.keys() == resumed.keys()
    assert any(not torch.equal(reference[k], initial[k]) for k in reference), (
        "training did not move the weights"
    )
    worst = max(float((reference[k] - resumed[k]).abs().max()) for k in reference)
    for key in reference:
        torch.testing.assert_close(resumed[key], reference[key], rtol=1e-5, atol=1e-6)
    steps = [
        _state(stage / f"checkpoint-{TOTAL_STEPS}")["global_step"],
        _state(root / "reference" / "s1" / f"checkpoint-{TOTAL_STEPS}")["global_step"],
    ]
    assert steps == [TOTAL_STEPS, TOTAL_STEPS]
    losses = {
        name: [
            round(e["loss"], 5)
            for e in _state(root / name / "s1" / f"checkpoint-{TOTAL_STEPS}")["log_history"]
            if "loss" in e
        ]
        for name in ("reference", "killed")
    }
    assert losses["killed"][-(TOTAL_STEPS - KILL_AFTER) :] == losses["reference"][KILL_AFTER:], losses
    report = {"steps": TOTAL_STEPS, "killed_after_checkpoint": KILL_AFTER, "checkpoints_at_kill": at_kill,
              "max_abs_weight_diff": worst, "losses_after_resume": losses["killed"][-(TOTAL_STEPS - KILL_AFTER):]}  # fmt: skip
    print("\nkill/resume:", json.dumps(report))
    if os.environ.get("RELIABILITY_RESUME_JSON"):
        Path(os.environ["RELIABILITY_RESUME_JSON"]).write_text(json.dumps(report, indent=2))


@pytest.mark.slow
def test_resume_skips_a_partial_checkpoint(tiny_recipe_root):
    """A kill during a save leaves checkpoint-N without trainer_state.json; resume must use N-1."""
    root = tiny_recipe_root
    recipe = _recipe(root, "partial")
    _finish(_train(recipe))
    stage = root / "partial" / "s1"
    shutil.rmtree(stage / "final")  # as if the kill came before the end of the stage
    shutil.rmtree(root / "partial" / "final")
    newest = stage / f"checkpoint-{TOTAL_STEPS}"
    for name in ("trainer_state.json", "optimizer.pt", "scheduler.pt", "rng_state.pth"):
        (newest / name).unlink(missing_ok=True)  # what a kill in the middle of _save_checkpoint leaves
    _finish(_train(recipe, "--resume"))
    assert _state(stage / f"checkpoint-{TOTAL_STEPS}")["global_step"] == TOTAL_STEPS


# ------------------------------------------------------------------------------------ atomic writers
def _digest(directory: Path) -> dict[str, str]:
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(directory.iterdir()) if p.is_file()
    }


def _leftovers(parent: Path, name: str) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p.name.startswith(f".{name}"))


@pytest.fixture()
def saved(tiny_factory, tmp_path):
    model, processor = tiny_factory()
    out = save_checkpoint(model, tmp_path / "ckpt", tokenizer=processor.tokenizer)
    return model, processor, out


def test_a_failing_weights_writer_leaves_the_old_checkpoint(saved, monkeypatch):
    model, processor, out = saved
    before = _digest(out)
    real_save = checkpoint_module.save_file

    def dies_midway(state, path, metadata=None):
        Path(path).write_bytes(b"\x00" * 1000)  # half a file on disk ...
        raise OSError(28, "No space left on device")  # ... then the disk fills up

    monkeypatch.setattr(checkpoint_module, "save_file", dies_midway)
    with torch.no_grad():
        next(model.parameters()).add_(1.0)
    with pytest.raises(OSError, match="No space left"):
        save_checkpoint(model, out, tokenizer=processor.tokenizer)
    assert _digest(out) == before and _leftovers(out.parent, out.name) == []
    monkeypatch.setattr(checkpoint_module, "save_file", real_save)
    load_checkpoint(out)  # still loads


class _Unserialisable(torch.Tensor):
    """A state tensor whose serialisation fails (what a broken custom parameter looks like)."""

    def contiguous(self, *args, **kwargs):
        raise RuntimeError("cannot serialise this tensor")


def test_a_state_tensor_that_cannot_be_serialised_leaves_the_old_checkpoint(saved):
    model, processor, out = saved
    before = _digest(out)
    state = dict(model.state_dict())
    key = next(k for k in state if k.startswith("region_projector"))
    state[key] = state[key].detach().clone().as_subclass(_Unserialisable)
    with pytest.raises(RuntimeError, match="cannot serialise"):
        save_checkpoint(model, out, tokenizer=processor.tokenizer, state_dict=state)
    assert _digest(out) == before and _leftovers(out.parent, out.name) == []
    load_checkpoint(out)


def test_a_failing_tokenizer_save_leaves_the_old_checkpoint(saved, monkeypatch):
    model, processor, out = saved
    before = _digest(out)

    def broken(*args, **kwargs):
        raise KeyboardInterrupt  # Ctrl-C in the middle of the save

    monkeypatch.setattr(processor.tokenizer, "save_pretrained", broken)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(model, out, tokenizer=processor.tokenizer)
    assert _digest(out) == before and _leftovers(out.parent, out.name) == []


def test_converted_weights_that_fail_midway_leave_the_old_output(saved, monkeypatch):
    """The weight converters write through save_checkpoint (convert.weights.write_checkpoint)."""
    from regiongpt.convert.weights import write_checkpoint

    model, processor, out = saved
    before = _digest(out)

    def dies_midway(state, path, metadata=None):
        Path(path).write_bytes(b"\x00" * 1000)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(checkpoint_module, "save_file", dies_midway)
    state = {k: v.clone() + 1 for k, v in model.state_dict().items()}
    with pytest.raises(OSError, match="No space left"):
        write_checkpoint(model, state, processor.tokenizer, out, torch.float16)
    assert _digest(out) == before and _leftovers(out.parent, out.name) == []


def test_replacing_a_checkpoint_is_one_atomic_exchange(saved, monkeypatch):
    from regiongpt import atomic

    model, processor, out = saved
    exchanges = []
    real_exchange = atomic.exchange_paths

    def spy(a, b):
        exchanges.append(real_exchange(a, b))
        return exchanges[-1]

    monkeypatch.setattr(atomic, "exchange_paths", spy)
    renames = []
    real_replace = os.replace
    monkeypatch.setattr(atomic.os, "replace", lambda *a: renames.append(a) or real_replace(*a))
    with torch.no_grad():
        next(p for n, p in model.named_parameters() if n.startswith("region_projector")).add_(1.0)
    before = _digest(out)
    save_checkpoint(model, out, tokenizer=processor.tokenizer)
    if exchanges == [False]:
        pytest.skip("this system or file system has no atomic exchange (renameat2)")
    assert exchanges == [True] and renames == []
    assert _digest(out)["model.safetensors"] != before["model.safetensors"]
    assert _leftovers(out.parent, out.name) == []
    load_checkpoint(out)


def test_a_failure_between_the_two_renames_keeps_a_checkpoint_at_the_path(saved, monkeypatch):
    from regiongpt import atomic

    model, processor, out = saved
    monkeypatch.setattr(atomic, "exchange_paths", lambda a, b: False)  # systems without renameat2
    real_replace = os.replace
    calls = []

    def second_fails(src, dst):
        calls.append((src, dst))
        if len(calls) == 2:
            raise OSError(5, "Input/output error")
        return real_replace(src, dst)

    monkeypatch.setattr(checkpoint_module.os, "replace", second_fails)
    with pytest.raises(OSError):
        save_checkpoint(model, out, tokenizer=processor.tokenizer)
    monkeypatch.setattr(checkpoint_module.os, "replace", real_replace)
    assert (out / "model.safetensors").is_file()
    load_checkpoint(out)


def test_write_jsonl_that_fails_midway_leaves_the_old_file(tmp_path):
    out = tmp_path / "data.jsonl"
    record = {"id": "a", "image": "a.png", "conversations": [{"from": "human", "value": "hi"}]}
    write_jsonl(out, [record] * 3)
    before = out.read_bytes()

    def records(error: BaseException):
        yield record
        yield record
        raise error

    for error in (RuntimeError("source broke"), KeyboardInterrupt()):
        with pytest.raises(type(error)):
            write_jsonl(out, records(error))
        assert out.read_bytes() == before and _leftovers(tmp_path, out.name) == []
    with pytest.raises(ValueError, match="record 2"):
        write_jsonl(out, [record, {"image": "b.png"}])  # an invalid record: nothing is written
    assert out.read_bytes() == before and len(list(read_jsonl(out))) == 3


def test_eval_outputs_are_written_atomically(tmp_path, monkeypatch):
    """A failure while writing (disk full) or at the rename leaves the previous outputs, no temp files."""
    from regiongpt import atomic
    from regiongpt.eval import harness

    harness.write_outputs(tmp_path, "caption", {"cider": 0.5}, {"model": "m"})
    before = _digest(tmp_path)
    real_fsync, real_replace = atomic.os.fsync, atomic.os.replace

    def disk_full(fd):
        raise OSError(28, "No space left on device")

    def rename_fails(src, dst):
        raise OSError(5, "Input/output error")

    for name, failing, real in (("fsync", disk_full, real_fsync), ("replace", rename_fails, real_replace)):
        monkeypatch.setattr(atomic.os, name, failing)
        with pytest.raises(OSError):
            harness.write_outputs(tmp_path, "caption", {"cider": 0.9}, {"model": "m"})
        monkeypatch.setattr(atomic.os, name, real)
        assert _digest(tmp_path) == before
        assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []
