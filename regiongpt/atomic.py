"""Crash-safe file and directory writes: build beside the target, fsync, then rename over it.

An error at any point leaves either the previous content or the new one at the path, never a
half-written file. A directory is replaced by one atomic exchange (Linux ``renameat2`` with
``RENAME_EXCHANGE``), so even a kill leaves a complete directory at the path. Where the exchange is
not available (other systems, some file systems) it takes two renames; a kill between them (not
an error) leaves the previous directory in ``.NAME.old.*/previous`` beside the path.
"""

from __future__ import annotations

import ctypes
import errno
import functools
import os
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


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
    write_bytes_atomic(path, text.encode("utf-8"))


def write_bytes_atomic(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a unique temporary file + fsync + rename."""
    with writing_file(path, binary=True) as handle:
        handle.write(data)


@contextmanager
def writing_file(path: str | Path, binary: bool = False) -> Iterator[IO]:
    """A handle (UTF-8 text, or bytes with ``binary``) on a temporary file beside ``path`` that
    replaces ``path`` when the block ends without an error; on an error it is removed and ``path``
    stays as it was. The file gets the permissions ``open()`` would give (umask), not mkstemp's 0600."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)
        with os.fdopen(fd, "wb" if binary else "w", encoding=None if binary else "utf-8") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_path(path.parent)


@functools.cache
def _renameat2():
    """libc's ``renameat2`` (glibc 2.28+), or None."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)
    except OSError:
        return None


_UNSUPPORTED = {errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.EPERM}  # EPERM: a seccomp filter


def exchange_paths(a: Path, b: Path) -> bool:
    """Swap two existing paths atomically (Linux ``renameat2(RENAME_EXCHANGE)``); False where the
    system or file system cannot, and nothing was changed."""
    renameat2 = _renameat2()
    if renameat2 is None:
        return False
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in _UNSUPPORTED:
        return False
    raise OSError(code, os.strerror(code), str(b))


def replace_directory(built: Path, target: Path) -> None:
    """Move the finished directory ``built`` to ``target`` (a sibling), replacing what is there.

    Files are fsynced first. An existing ``target`` is swapped with ``built`` in one atomic step
    where the system allows, else by two renames (old aside, new in; if the second fails the old
    directory is put back), so ``target`` always holds a complete directory."""
    for written in built.rglob("*"):
        if written.is_file():
            fsync_path(written)
    fsync_path(built)
    if not target.exists():
        os.replace(built, target)
        fsync_path(target.parent)
        return
    if exchange_paths(built, target):  # built now holds the previous directory
        fsync_path(target.parent)
        shutil.rmtree(built, ignore_errors=True)
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


#: A build folder younger than this is never removed (its builder may not hold the lock yet).
STALE_AFTER_S = 60.0


def _lock_directory(path: Path, wait: bool) -> int | None:
    """An open descriptor of directory ``path`` holding an exclusive ``flock`` on it (released
    when closed or when the process dies), or None if another process holds it or the platform
    or file system cannot lock."""
    try:
        import fcntl
    except ImportError:  # not POSIX
        return None
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
    except OSError:
        os.close(fd)
        return None
    return fd


def remove_stale_builds(target: Path) -> list[Path]:
    """Remove ``.NAME.building.XXXXXXXX`` siblings of ``target`` that no process is building: a
    builder holds a lock on its folder until it ends (a killed one releases it), so a folder whose
    lock can be taken, and that is older than :data:`STALE_AFTER_S`, was left by a killed run.
    Works across processes on one machine and, where the file system supports ``flock``, across
    machines. Returns what was removed."""
    pattern = re.compile(re.escape(f".{target.name}.building.") + r"[A-Za-z0-9_]{8}")
    removed = []
    for path in target.parent.iterdir():
        if not pattern.fullmatch(path.name) or path.is_symlink() or not path.is_dir():
            continue
        try:
            if time.time() - path.stat().st_mtime < STALE_AFTER_S:
                continue
        except OSError:
            continue
        fd = _lock_directory(path, wait=False)
        if fd is None:  # being built (or locks unsupported): leave it
            continue
        try:
            shutil.rmtree(path)
            removed.append(path)
        except OSError:
            pass
        finally:
            os.close(fd)
    return removed


@contextmanager
def building_directory(target: str | Path, replaceable: Callable[[Path], bool]) -> Iterator[Path]:
    """Build a directory beside ``target`` and put it in place only once the block finishes.

    Yields a temporary sibling to write into; on leaving the block normally it replaces ``target``
    (:func:`replace_directory`, so anything else in ``target`` goes), on an error or interrupt it is
    removed and ``target`` is as it was. A killed process leaves a hidden ``.NAME.building.*``;
    the next build of ``target`` removes it (:func:`remove_stale_builds`).
    A non-empty ``target`` for which ``replaceable(target)`` is false (e.g. not a data set of the
    same kind), the current directory and a mount point are ValueErrors before anything is written."""
    target = Path(target).resolve()  # a symlink: build beside, and replace, the folder it names
    if target.exists() and not target.is_dir():
        raise ValueError(f"{target} exists and is not a directory")
    if Path.cwd().resolve().is_relative_to(target):
        raise ValueError(f"{target} is (or holds) the current directory; choose a folder below it")
    if os.path.ismount(target):
        raise ValueError(f"{target} is a mount point and cannot be replaced; choose a folder inside it")
    if target.is_dir() and any(target.iterdir()) and not replaceable(target):
        raise ValueError(
            f"{target} is not empty and not a data set this command wrote; choose another output folder"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_builds(target)
    built = Path(tempfile.mkdtemp(prefix=f".{target.name}.building.", dir=target.parent))
    lock = _lock_directory(built, wait=True)  # tells remove_stale_builds of others that it is in use
    umask = os.umask(0)
    os.umask(umask)
    built.chmod(0o777 & ~umask)  # mkdtemp makes 0700 directories; follow the umask like mkdir() does
    try:
        yield built
        replace_directory(built, target)
    finally:
        shutil.rmtree(built, ignore_errors=True)
        if lock is not None:
            os.close(lock)
