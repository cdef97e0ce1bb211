"""Shared pieces of the dataset converters: progress bars, position-aware errors, field and
geometry checks.

Coordinates: the source formats give boxes as COCO ``[x, y, width, height]`` (top-left corner,
pixels) unless a converter says otherwise; every region written is pixel ``xyxy`` (``box``),
or a COCO polygon / RLE (``polygon`` / ``rle``), see :mod:`regiongpt.data.format`.

Errors: a record that does not follow its published format raises ValueError starting with
its position, e.g. ``instances.json annotations[12] (id 345): 'bbox' must be ...``. Records
that are valid but unusable (crowd, too small, degenerate box) are skipped and counted in
:class:`Stats`.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Literal, TypeVar

from tqdm import tqdm

from regiongpt.data.format import parse_json_line
from regiongpt.regions import polygon_parts as checked_polygon_parts
from regiongpt.regions import rle_runs
from regiongpt.tasks import Task, build_question

Geometry = Literal["mask", "box"]
T = TypeVar("T")


@dataclass
class Stats:
    """Counts of what a conversion skipped (by reason) and noted (by remark)."""

    skipped: Counter[str] = field(default_factory=Counter)
    notes: Counter[str] = field(default_factory=Counter)

    def skip(self, reason: str, count: int = 1) -> None:
        self.skipped[reason] += count

    def note(self, remark: str, count: int = 1) -> None:
        self.notes[remark] += count

    def summary(self, written: int, out: str | Path) -> str:
        """One line, e.g. ``wrote 10 records to out.jsonl; skipped 2 (crowd: 2)``."""
        line = f"wrote {written} records to {out}"
        total = sum(self.skipped.values())
        if total:
            reasons = ", ".join(f"{k}: {v}" for k, v in sorted(self.skipped.items()))
            line += f"; skipped {total} ({reasons})"
        if self.notes:
            line += "; " + ", ".join(f"{k}: {v}" for k, v in sorted(self.notes.items()))
        return line


def progress(items: Iterable[T], desc: str, total: int | None = None, enabled: bool = True) -> Iterator[T]:
    """A tqdm bar on stderr (hidden when disabled or when stderr is not a terminal)."""
    yield from tqdm(items, desc=desc, total=total, disable=None if enabled else True, unit="rec")


def at(source: str | Path, section: str, index: int, record_id: Any = None) -> str:
    """Position of an item in a JSON array, e.g. ``refs.p[3] (id 7)``."""
    name = Path(source).name
    where = f"{name} {section}[{index}]" if section else f"{name}[{index}]"
    return where if record_id is None else f"{where} (id {record_id})"


def at_line(source: str | Path, line: int, record_id: Any = None) -> str:
    """Position of a JSON-lines record, e.g. ``val.jsonl:12 (id val-3)``."""
    where = f"{Path(source).name}:{line}"
    return where if record_id is None else f"{where} (id {record_id})"


def fail(where: str, message: str) -> ValueError:
    return ValueError(f"{where}: {message}")


def _short(value: Any) -> str:
    return f"{value!r:.80}"


def is_number(value: Any) -> bool:
    """A finite int or float (not a bool; an int too large for a float is not finite)."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # math.isfinite(10**400)
        return False


_KINDS: dict[str, tuple[type, ...]] = {
    "str": (str,),
    "int": (int,),
    "number": (int, float),
    "list": (list,),
    "dict": (dict,),
    "id": (int, str),
}


def get(obj: Any, key: str, where: str, kind: str, default: Any = ...) -> Any:
    """``obj[key]`` checked to be of ``kind`` (str, int, number, list, dict, id); a missing key
    returns ``default`` when one is given, else raises."""
    if not isinstance(obj, dict):
        raise fail(where, f"expected a JSON object, got {type(obj).__name__} {_short(obj)}")
    if key not in obj or obj[key] is None:
        if default is not ...:
            return default
        raise fail(where, f"missing key {key!r}" if key not in obj else f"{key!r} is null")
    value = obj[key]
    ok = isinstance(value, _KINDS[kind]) and not isinstance(value, bool)
    if kind == "number":
        ok = is_number(value)
    if not ok:
        raise fail(where, f"{key!r} must be {'a number' if kind == 'number' else kind}, got {_short(value)}")
    return value


def numbers(value: Any, count: int, where: str, what: str, exact: bool = True) -> list[float]:
    """The first ``count`` items of ``value``, checked to be finite numbers (``exact``: and no
    more items), else ValueError naming ``what`` and the value."""
    size_ok = isinstance(value, (list, tuple)) and (len(value) == count or (not exact and len(value) > count))
    if not size_ok or not all(is_number(v) for v in value[:count]):
        raise fail(where, f"{what} must be {count} finite numbers, got {_short(value)}")
    return [float(v) for v in value[:count]]


def xywh_to_xyxy(value: Any, where: str, what: str = "'bbox' [x, y, width, height]") -> list[float] | None:
    """COCO ``[x, y, w, h]`` to pixel ``[x1, y1, x2, y2]``; None for a zero or negative size."""
    x, y, w, h = numbers(value, 4, where, what)
    if w <= 0 or h <= 0:
        return None
    if not (math.isfinite(x + w) and math.isfinite(y + h)):
        raise fail(where, f"{what} overflows: {_short(value)}")
    return [x, y, x + w, y + h]


def clip_xyxy(box: list[float], width: int, height: int) -> list[float] | None:
    """Clip a pixel xyxy box to a ``width x height`` image; None if nothing of it is inside."""
    x1, y1 = max(box[0], 0.0), max(box[1], 0.0)
    x2, y2 = min(box[2], float(width)), min(box[3], float(height))
    return [x1, y1, x2, y2] if x2 > x1 and y2 > y1 else None


def polygon_parts(value: Any, where: str) -> list[list[float]]:
    """COCO polygons (flat ``[x0, y0, x1, y1, ...]`` lists); parts with fewer than 3 points are
    dropped (real COCO/LVIS files contain a few)."""
    if not isinstance(value, list):
        raise fail(where, f"'segmentation' must be a list of polygons or an RLE dict, got {_short(value)}")
    parts = []
    for part in value:
        if not isinstance(part, list) or not all(is_number(v) for v in part):
            raise fail(where, f"polygon part must be a flat list of numbers, got {_short(part)}")
        if len(part) >= 6 and len(part) % 2 == 0:
            parts.append([float(v) for v in part])
    return parts


def usable_segmentation(entry: dict[str, Any], size: tuple[int, int] | None) -> bool:
    """Whether a ``polygon`` / ``rle`` region gives a non-empty mask on a ``size=(w, h)`` image
    (checked without decoding the mask; polygons need the size)."""
    from pycocotools import mask as mask_utils

    ((key, value),) = entry.items()
    try:
        if key == "rle":
            height, width, runs = rle_runs(value)
            return sum(runs[1::2]) > 0 and (size is None or (width, height) == tuple(size))
        if size is None:
            return True
        parts = checked_polygon_parts(value, size)
    except ValueError:
        return False
    width, height = size
    return int(mask_utils.area(mask_utils.merge(mask_utils.frPyObjects(parts, height, width)))) > 0


def coco_region(
    ann: dict[str, Any],
    box: list[float],
    where: str,
    geometry: Geometry,
    stats: Stats,
    size: tuple[int, int] | None = None,
) -> dict[str, Any]:
    """The region entry of a COCO-style annotation: its mask (``polygon`` or ``rle``) when
    ``geometry == "mask"`` and a usable segmentation exists, else its pixel xyxy ``box``. A mask
    that would be empty or unreadable on the ``size=(w, h)`` image is replaced by the box."""
    segmentation = ann.get("segmentation")
    if geometry == "box" or segmentation in (None, [], {}):
        return {"box": box}
    if isinstance(segmentation, dict):
        if "counts" not in segmentation or "size" not in segmentation:
            raise fail(where, f"RLE 'segmentation' needs 'counts' and 'size', got {_short(segmentation)}")
        region = {"rle": segmentation}
    else:
        parts = polygon_parts(segmentation, where)
        if not parts:
            stats.note("polygon too small, box used")
            return {"box": box}
        region = {"polygon": parts}
    if not usable_segmentation(region, size):
        stats.note("unusable segmentation, box used")
        return {"box": box}
    return region


def image_path(root: str, name: str) -> str:
    """``name`` under ``root`` as a POSIX path (how images are referenced in the records)."""
    return str(PurePosixPath(root) / name) if root else str(PurePosixPath(name))


def load_json(path: str | Path) -> Any:
    """Parse a JSON file; ValueError names the file, line and column of a syntax error."""
    path = Path(path)
    with path.open("r", encoding="utf-8") as handle:
        try:
            return json.load(handle)
        except json.JSONDecodeError as error:
            raise ValueError(
                f"{path}: not valid JSON ({error.msg} at line {error.lineno} column {error.colno})"
            ) from None
        except UnicodeDecodeError as error:
            raise ValueError(f"{path}: not UTF-8 text ({error.reason} at byte {error.start})") from None
        except RecursionError:
            raise ValueError(f"{path}: JSON nested too deeply") from None


def iter_json_records(path: str | Path) -> Iterator[tuple[str, Any]]:
    """Items of a JSON-lines file as ``(position, object)`` (position = ``file:line``); a file
    holding one JSON array is accepted too (position = ``file[index]``)."""
    path = Path(path)
    with path.open("rb") as handle:
        head = handle.read(4096).lstrip()
    if head.startswith(b"["):
        data = load_json(path)
        for index, item in enumerate(data):
            yield at(path, "", index), item
        return
    with path.open("rb") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                yield at_line(path, number), parse_json_line(line)
            except ValueError as error:
                raise fail(at_line(path, number), str(error)) from None


def article(noun: str) -> str:
    """``a`` or ``an`` for ``noun`` (by its first letter)."""
    return "an" if noun[:1].lower() in "aeiou" else "a"


def join_tags(indices: Iterable[int]) -> str:
    """``<region1>``, ``<region1> and <region2>``, ``<region1>, <region2> and <region3>``."""
    tags = [f"<region{k}>" for k in indices]
    if len(tags) <= 1:
        return "".join(tags)
    return ", ".join(tags[:-1]) + " and " + tags[-1]


def region_turns(task: Task, answers: Sequence[str], first: int = 1) -> list[dict[str, str]]:
    """Alternating turns: the standard question of ``task`` about ``<region{first + i}>``
    (:func:`regiongpt.tasks.build_question`), answered by ``answers[i]``."""
    turns = []
    for offset, answer in enumerate(answers):
        turns.append({"from": "human", "value": build_question(task, first + offset)})
        turns.append({"from": "gpt", "value": answer})
    return turns


def chunks(items: Sequence[T], size: int | None) -> Iterator[tuple[int, Sequence[T]]]:
    """``(chunk_index, items)`` of at most ``size`` items (all in one chunk when ``size`` is None)."""
    if size is not None and size < 1:
        raise ValueError(f"regions per sample must be at least 1, got {size}")
    step = size or max(len(items), 1)
    for index, start in enumerate(range(0, len(items), step)):
        yield index, items[start : start + step]
