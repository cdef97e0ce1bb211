"""Resume after SIGKILL: every region captioned exactly once, no torn line, side files honoured."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

from regiongpt.datagen.pipeline import side_paths
from regiongpt.datagen.store import AppendLog, read_rows, repair_tail

REPO = Path(__file__).resolve().parents[2]


def test_repair_tail_cuts_only_a_torn_line(tmp_path):
    path = tmp_path / "a.jsonl"
    assert repair_tail(path) == 0
    path.write_bytes(b'{"id": 1}\n{"id": 2}\n{"id": 3, "cap')
    assert repair_tail(path) == len(b'{"id": 3, "cap')
    assert path.read_bytes() == b'{"id": 1}\n{"id": 2}\n'
    assert repair_tail(path) == 0
    path.write_bytes(b'{"no newline at all"')
    repair_tail(path)
    assert path.read_bytes() == b""
    log = AppendLog(path)
    log.append({"id": "x", "text": "caf\u00e9"})
    log.close()
    assert read_rows(path) == [{"id": "x", "text": "caf\u00e9"}]


def make_inputs(folder: Path, n_images: int = 6, per_image: int = 10) -> Path:
    """Random images with ``per_image`` boxes each, as a canonical region JSONL."""
    rng = np.random.default_rng(1)
    (folder / "images").mkdir(parents=True)
    lines = []
    for i in range(n_images):
        Image.fromarray((rng.random((64, 96, 3)) * 255).astype(np.uint8)).save(folder / "images" / f"{i}.png")
        boxes = []
        for _ in range(per_image):
            x, y = rng.integers(0, 60), rng.integers(0, 40)
            boxes.append(
                {"box": [int(x), int(y), int(x + rng.integers(8, 36)), int(y + rng.integers(8, 24))]}
            )
        lines.append(
            {
                "id": f"img{i}",
                "image": f"images/{i}.png",
                "regions": boxes,
                "conversations": [{"from": "human", "value": "-"}, {"from": "gpt", "value": "-"}],
            }
        )
    path = folder / "regions.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


def command(regions: Path, out: Path, workers: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "regiongpt.datagen",
        "--regions",
        str(regions),
        "--out",
        str(out),
        "--teacher",
        "py:tests.datagen.fakes:make_fake",
        "--workers",
        str(workers),
        "--no-progress",
    ]


def line_count(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.exists() else 0


def run_and_kill(args: list[str], out: Path, after: int, delay: str) -> None:
    """Start the command and SIGKILL it once ``out`` has ``after`` more complete lines."""
    start = line_count(out) + line_count(side_paths(out)[0])
    env = {**os.environ, "FAKE_TEACHER_DELAY": delay, "PYTHONPATH": str(REPO)}
    process = subprocess.Popen(args, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    try:
        while line_count(out) + line_count(side_paths(out)[0]) < start + after:
            assert process.poll() is None, process.communicate()[1].decode()[-2000:]
            assert time.monotonic() < deadline, "no progress"
            time.sleep(0.002)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    assert process.returncode == -signal.SIGKILL


def test_sigkill_and_rerun_caption_every_region_once(tmp_path):
    regions = make_inputs(tmp_path)
    out = tmp_path / "out" / "gen.jsonl"
    args = command(regions, out, workers=3)
    run_and_kill(args, out, after=7, delay="0.02")
    run_and_kill(args, out, after=15, delay="0.02")
    with out.open("ab") as handle:  # what a kill in the middle of a write would leave
        handle.write(b'{"id": "img5-r9", "image": "images/5.pn')
    done = subprocess.run(
        args,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "60 regions" in done.stdout and "not done" not in done.stdout and "torn" in done.stdout
    rejected, global_file = side_paths(out)
    for path in (out, rejected, global_file):
        assert path.read_bytes().endswith(b"\n")
    kept, dropped = read_rows(out), read_rows(rejected)
    ids = [row["id"] for row in kept + dropped]
    assert sorted(ids) == sorted(f"img{i}-r{k}" for i in range(6) for k in range(1, 11))  # each exactly once
    assert dropped and {row["meta"]["drop_reason"] for row in dropped} <= {"too short", "duplicate"}
    assert len({row["image"] for row in read_rows(global_file)}) == len(read_rows(global_file))
    captions = [row["conversations"][1]["value"] for row in kept]
    assert len(set(captions)) == len(captions)


def test_cli_errors_are_one_line(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cases = [
        ["--out", str(tmp_path / "o.jsonl"), "--teacher", "offline"],
        [
            "--regions",
            str(tmp_path / "missing.jsonl"),
            "--out",
            str(tmp_path / "o.jsonl"),
            "--teacher",
            "offline",
        ],
        [
            "--regions",
            str(make_inputs(tmp_path, 1, 1)),
            "--out",
            str(tmp_path / "o.jsonl"),
            "--teacher",
            "bogus",
        ],
    ]
    for case in cases:
        result = subprocess.run(
            [sys.executable, "-m", "regiongpt.datagen", *case],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 2, result.stderr
        assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
