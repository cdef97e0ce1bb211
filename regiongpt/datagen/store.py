"""Crash-safe append-only JSONL: one ``write`` + ``flush`` + ``fsync`` per row; on open a torn
last line (a write cut by SIGKILL or a power loss) is cut off, so every line left is whole."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

from regiongpt.atomic import fsync_path


def repair_tail(path: Path) -> int:
    """Truncate ``path`` after its last newline; returns the bytes removed (0 if none/absent)."""
    if not path.is_file():
        return 0
    size = path.stat().st_size
    if size == 0:
        return 0
    with path.open("rb+") as handle:
        handle.seek(-1, os.SEEK_END)
        if handle.read(1) == b"\n":
            return 0
        position, chunk = size, 1 << 16
        keep = 0
        while position > 0:
            start = max(0, position - chunk)
            handle.seek(start)
            index = handle.read(position - start).rfind(b"\n")
            if index >= 0:
                keep = start + index + 1
                break
            position = start
        handle.truncate(keep)
        handle.flush()
        os.fsync(handle.fileno())
    return size - keep


def read_rows(path: Path) -> list[dict[str, Any]]:
    """The JSON objects of a (repaired) JSONL file; ValueError names ``file:line`` of a bad row."""
    if not path.is_file():
        return []
    rows = []
    with path.open("r", encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                raise ValueError(
                    f"{path}:{number}: not valid JSON ({error.msg}); fix or remove the line"
                ) from None
            if not isinstance(row, dict):
                raise ValueError(f"{path}:{number}: expected a JSON object")
            rows.append(row)
    return rows


class AppendLog:
    """A JSONL file opened for durable appends (thread-safe)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self.repaired = repair_tail(path)
        created = not path.exists()
        self._handle = path.open("a", encoding="utf-8")
        self._lock = threading.Lock()
        if created:  # make the new directory entry durable too
            fsync_path(path.parent)

    def append(self, row: dict[str, Any]) -> None:
        line = json.dumps(row, ensure_ascii=False) + "\n"
        with self._lock:
            self._handle.write(line)
            self._handle.flush()
            os.fsync(self._handle.fileno())

    def close(self) -> None:
        with self._lock:
            self._handle.close()
