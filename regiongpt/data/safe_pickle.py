"""A restricted pickle loader for data files such as RefCOCO's ``refs(unc).p``.

A pickle can name any importable callable (``os.system``...) and have the loader call it. Every
such reference goes through :meth:`pickle.Unpickler.find_class` (opcodes GLOBAL, STACK_GLOBAL,
INST, OBJ, EXT*), so refusing it there leaves only what the protocol builds by itself: dicts,
lists, tuples, sets, str, bytes, bytearray, int, float, bool and None. Nothing is executed.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any


class UnsafePickleError(pickle.UnpicklingError, ValueError):
    """The pickle references a global (class or function) or is not a valid pickle."""


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that refuses every global and every persistent id."""

    source = "pickle"

    def find_class(self, module: str, name: str) -> Any:
        raise UnsafePickleError(
            f"{self.source}: refusing to load the global '{module}.{name}': only plain data "
            "(dict, list, tuple, str, bytes, numbers, bool, None) may be unpickled"
        )

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafePickleError(f"{self.source}: refusing persistent id {pid!r:.60}")


def safe_loads(data: bytes, *, encoding: str = "utf-8", source: str = "pickle") -> Any:
    """Unpickle ``data`` allowing plain data only; UnsafePickleError (a ValueError) otherwise.

    ``encoding`` decodes Python 2 ``str`` objects (``"bytes"`` keeps them as bytes)."""
    unpickler = RestrictedUnpickler(io.BytesIO(data), encoding=encoding)
    unpickler.source = source
    try:
        return unpickler.load()
    except UnsafePickleError:
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, IndexError, KeyError) as error:
        raise UnsafePickleError(f"{source}: not a valid pickle ({type(error).__name__}: {error})") from None
    except (OverflowError, MemoryError):  # FRAME / BINBYTES8 lengths beyond the data: C allocates up front
        raise UnsafePickleError(f"{source}: not a valid pickle (declares a length beyond its data)") from None


def safe_load(path: str | Path, *, encoding: str = "utf-8") -> Any:
    """:func:`safe_loads` on the contents of ``path``."""
    path = Path(path)
    return safe_loads(path.read_bytes(), encoding=encoding, source=str(path))


def decode_py2_strings(value: Any) -> Any:
    """Recursively turn bytes (Python 2 ``str`` loaded with ``encoding="bytes"``) into str:
    UTF-8 where valid, else Latin-1.

    Shared and cyclic references stay shared (a pickle of ``[x, x]`` nested 40 deep is a few
    hundred bytes but 2**40 nodes when copied); nesting deeper than Python's recursion limit is a
    ValueError."""
    memo: dict[int, Any] = {}

    def convert(item: Any) -> Any:
        if isinstance(item, bytes):
            try:
                return item.decode("utf-8")
            except UnicodeDecodeError:
                return item.decode("latin-1")
        if not isinstance(item, (dict, list, tuple)):
            return item
        if id(item) in memo:
            return memo[id(item)]
        if isinstance(item, tuple):
            out: Any = tuple(convert(v) for v in item)
            memo[id(item)] = out
            return out
        if isinstance(item, list):
            out = memo[id(item)] = []
            out.extend(convert(v) for v in item)
            return out
        out = memo[id(item)] = {}
        for key, val in item.items():
            out[convert(key)] = convert(val)
        return out

    try:
        return convert(value)
    except RecursionError:
        raise UnsafePickleError("pickle: data nested too deeply to decode") from None
