"""building_directory: a folder is replaced only when complete, and only where that is safe."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from regiongpt.atomic import building_directory


def _ours(folder: Path) -> bool:
    return (folder / "ours.txt").is_file()


def _build(target: Path, text: str) -> None:
    with building_directory(target, replaceable=_ours) as folder:
        (folder / "ours.txt").write_text(text)


def test_an_error_inside_the_block_keeps_the_previous_folder(tmp_path: Path) -> None:
    _build(tmp_path / "out", "first")
    with (
        pytest.raises(RuntimeError, match="midway"),
        building_directory(tmp_path / "out", replaceable=_ours) as folder,
    ):
        (folder / "ours.txt").write_text("second")
        raise RuntimeError("midway")
    assert (tmp_path / "out" / "ours.txt").read_text() == "first"
    assert [p.name for p in tmp_path.iterdir()] == ["out"]
    _build(tmp_path / "out", "second")
    assert (tmp_path / "out" / "ours.txt").read_text() == "second"
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_builds_left_by_killed_processes_are_removed_by_the_next_build(tmp_path: Path) -> None:
    import os

    from regiongpt.atomic import STALE_AFTER_S, _lock_directory

    def folder(name: str, age_s: float) -> Path:
        path = tmp_path / name
        path.mkdir()
        (path / "part.txt").write_text("half")
        then = path.stat().st_mtime - age_s
        os.utime(path, (then, then))
        return path

    old = STALE_AFTER_S + 10
    stale = folder(".out.building.abcd1234", old)  # nobody holds its lock: a killed run's
    running = folder(".out.building.efgh5678", old)  # locked: still being built
    fresh = folder(".out.building.ijkl9012", 0)  # too young to judge (its builder may not lock yet)
    other = folder(".outer.building.mnop3456", old)  # another target's
    odd = folder(".out.building.abcd1234.x", old)  # not a name building_directory makes
    lock = _lock_directory(running, wait=True)
    assert lock is not None
    try:
        _build(tmp_path / "out", "first")
    finally:
        os.close(lock)
    kept = sorted(p.name for p in tmp_path.iterdir())
    assert kept == sorted(["out", running.name, fresh.name, other.name, odd.name])
    assert not stale.exists()


def test_a_symlink_keeps_pointing_at_the_replaced_folder(tmp_path: Path) -> None:
    (tmp_path / "disk").mkdir()
    _build(tmp_path / "disk" / "data", "first")
    (tmp_path / "link").symlink_to(tmp_path / "disk" / "data")
    _build(tmp_path / "link", "second")
    assert (tmp_path / "link").is_symlink()
    assert (tmp_path / "disk" / "data" / "ours.txt").read_text() == "second"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["disk", "link"]
    assert [p.name for p in (tmp_path / "disk").iterdir()] == ["data"]


def test_unsafe_targets_are_refused_before_anything_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    with pytest.raises(ValueError, match="mine is not empty and not a data set"):
        _build(tmp_path / "mine", "x")
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="file exists and is not a directory"):
        _build(tmp_path / "file", "x")
    _build(tmp_path / "here", "first")
    monkeypatch.chdir(tmp_path / "here")
    with pytest.raises(ValueError, match="is \\(or holds\\) the current directory"):
        _build(Path("."), "second")
    assert (tmp_path / "here" / "ours.txt").read_text() == "first"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "here", "mine"]
    assert [p.name for p in (tmp_path / "mine").iterdir()] == ["notes.txt"]


def test_written_files_follow_the_umask_not_mkstemps_0600(tmp_path: Path) -> None:
    from regiongpt.atomic import write_bytes_atomic
    from regiongpt.data.format import write_jsonl

    old = os.umask(0o022)
    try:
        write_bytes_atomic(tmp_path / "a.bin", b"x")
        write_jsonl(tmp_path / "b.jsonl", [])
    finally:
        os.umask(old)
    assert {(tmp_path / n).stat().st_mode & 0o777 for n in ("a.bin", "b.jsonl")} == {0o644}
