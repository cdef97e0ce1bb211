"""Crash-safe file and directory writes: build beside the target, fsync, then rename over it.

An error at any point leaves either the previous content or the new one at the path, never a
half-written file. A directory replacement takes two renames; a kill between them (not an
error) leaves the previous directory in ``.NAME.old.*/previous`` beside the path.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path


def fsync_path(path: str | Path) -> None:
    """Flush a file's or a directory's content to disk (a no-op where the platform cannot)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # e.g. directories on platforms that cannot open them
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` through a unique temporary file + fsync + rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)  # mkstemp makes 0600 files; follow the umask like open() does
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_path(path.parent)


def replace_directory(built: Path, target: Path) -> None:
    """Move the finished directory ``built`` to ``target`` (a sibling), replacing what is there.

    Files are fsynced first. Replacing takes two renames (old aside, new in); if the second fails
    the old directory is put back, so ``target`` always holds a complete directory."""
    for written in built.rglob("*"):
        if written.is_file():
            fsync_path(written)
    fsync_path(built)
    if not target.exists():
        os.replace(built, target)
        fsync_path(target.parent)
        return
    aside = Path(tempfile.mkdtemp(prefix=f".{target.name}.old.", dir=target.parent))
    previous = aside / "previous"
    os.replace(target, previous)
    try:
        os.replace(built, target)
    except BaseException:
        os.replace(previous, target)
        shutil.rmtree(aside, ignore_errors=True)
        raise
    fsync_path(target.parent)
    shutil.rmtree(aside, ignore_errors=True)
