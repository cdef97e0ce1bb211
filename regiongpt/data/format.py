"""The canonical training/evaluation record: one JSON object per line (JSONL).

```json
{"id": "rw-000001-category-0",
 "image": "images/000001.png",              # relative to the data root
 "width": 224, "height": 224,               # optional; needed only for polygons
 "regions": [{"box": [x1, y1, x2, y2]},     # pixel xyxy
             {"mask": "masks/000001_2.png"},
             {"rle": {"size": [h, w], "counts": "..."}},
             {"polygon": [[x0, y0, x1, y1, ...]]},
             {"point": [x, y]}],            # each may also carry "label": "red circle"
 "conversations": [{"from": "human", "value": "What is ... <region1>? Answer ..."},
                   {"from": "gpt", "value": "red circle"}],
 "task": "category",                        # optional, the Task enum
 "meta": {...}}                             # optional, anything
```
``<regionK>`` in a turn refers to ``regions[K-1]``. Turns alternate human / gpt, starting with
human. Questions already contain their task instruction (:func:`regiongpt.tasks.with_instruction`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from regiongpt.atomic import writing_file
from regiongpt.regions import Box, Mask, Point, Region, check_image_size
from regiongpt.tasks import Task

GEOMETRY_KEYS = ("box", "mask", "rle", "polygon", "point")
HUMAN, GPT = "human", "gpt"


@dataclass
class Record:
    """One sample: an image, its regions and a conversation about them."""

    id: str
    image: str
    regions: list[dict[str, Any]]
    conversations: list[dict[str, str]]
    task: Task | None = None
    width: int | None = None
    height: int | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "image": self.image,
            "regions": self.regions,
            "conversations": self.conversations,
        }
        if self.task is not None:
            out["task"] = self.task.value
        if self.width is not None:
            out["width"], out["height"] = self.width, self.height
        if self.meta:
            out["meta"] = self.meta
        return out

    def load_regions(self, root: str | Path, size: tuple[int, int]) -> list[Region]:
        """Region objects for an image of ``size=(w, h)``; mask files are relative to ``root``."""
        return [region_from_json(r, root, size) for r in self.regions]


def region_from_json(entry: dict[str, Any], root: str | Path, size: tuple[int, int]) -> Region:
    """Build a region from its canonical JSON form (see the module docstring)."""
    keys = [k for k in GEOMETRY_KEYS if k in entry]
    if len(keys) != 1:
        raise ValueError(f"a region needs exactly one of {GEOMETRY_KEYS}, got keys {sorted(entry)}")
    key, value = keys[0], entry[keys[0]]
    if key == "box":
        return Box(*[float(v) for v in _numbers(value, 4, "box")])
    if key == "point":
        return Point(*[float(v) for v in _numbers(value, 2, "point")])
    if key == "mask":
        return Mask.from_png(Path(root) / str(value))
    if key == "rle":
        return Mask.from_rle(value)
    return Mask.from_polygon(value, size)


def _numbers(value: Any, count: int, what: str) -> list[float]:
    if not isinstance(value, (list, tuple)) or len(value) != count:
        raise ValueError(f"{what} must be a list of {count} numbers, got {value!r:.80}")
    if not all(_finite(v) for v in value):
        raise ValueError(f"{what} must be a list of {count} finite numbers, got {value!r:.80}")
    return list(value)


def _finite(value: Any) -> bool:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an int too large for a float
        return False


def _check_geometry(key: str, value: Any) -> None:
    """The shape of a region's value (its fit to the image is checked when the image is known)."""
    if key in ("box", "point"):
        _numbers(value, 4 if key == "box" else 2, key)
    elif key == "mask" and (not isinstance(value, str) or not value):
        raise ValueError(f"mask must be a file path (relative to the data root), got {value!r:.80}")
    elif key == "rle" and not isinstance(value, dict):
        raise ValueError(f"rle must be an object {{'size': [h, w], 'counts': ...}}, got {value!r:.80}")
    elif key == "polygon" and (not isinstance(value, list) or not all(isinstance(p, list) for p in value)):
        raise ValueError(f"polygon must be a list of flat [x0, y0, x1, y1, ...] lists, got {value!r:.80}")


def _size(obj: dict[str, Any]) -> tuple[int | None, int | None]:
    width, height = obj.get("width"), obj.get("height")
    if width is None and height is None:
        return None, None
    if not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in (width, height)):
        raise ValueError(
            f"'width' and 'height' must be positive integers (or both absent), got {width!r:.20}, {height!r:.20}"
        )
    check_image_size((width, height))
    return width, height


def parse_record(obj: Any) -> Record:
    """Validate a decoded JSON object and return a Record; ValueError says what is wrong."""
    if not isinstance(obj, dict):
        raise ValueError(f"record must be a JSON object, got {type(obj).__name__}")
    for key in ("image", "conversations"):
        if key not in obj:
            raise ValueError(f"record lacks the required key {key!r}")
    if not isinstance(obj["image"], str) or not obj["image"]:
        raise ValueError(f"'image' must be a non-empty path string, got {obj['image']!r:.80}")
    regions = obj.get("regions", [])
    if not isinstance(regions, list) or not all(isinstance(r, dict) for r in regions):
        raise ValueError("'regions' must be a list of objects")
    for index, region in enumerate(regions):
        keys = [k for k in GEOMETRY_KEYS if k in region]
        if len(keys) != 1:
            raise ValueError(f"region {index + 1} needs exactly one of {GEOMETRY_KEYS}, got {sorted(region)}")
        try:
            _check_geometry(keys[0], region[keys[0]])
        except ValueError as error:
            raise ValueError(f"region {index + 1}: {error}") from None
    turns = obj["conversations"]
    if not isinstance(turns, list) or not turns:
        raise ValueError("'conversations' must be a non-empty list")
    for index, turn in enumerate(turns):
        expected = HUMAN if index % 2 == 0 else GPT
        if (
            not isinstance(turn, dict)
            or turn.get("from") != expected
            or not isinstance(turn.get("value"), str)
        ):
            raise ValueError(f"turn {index} must be {{'from': '{expected}', 'value': str}}, got {turn!r:.80}")
        try:
            turn["value"].encode("utf-8")
        except UnicodeEncodeError as error:  # a lone surrogate: tokenizers raise TypeError on it
            raise ValueError(
                f"turn {index} holds invalid Unicode ({error.reason} at {error.start})"
            ) from None
    task = Task.parse(obj["task"]) if obj.get("task") is not None else None
    width, height = _size(obj)
    meta = obj.get("meta") or {}
    if not isinstance(meta, dict):
        raise ValueError(f"'meta' must be an object, got {type(meta).__name__}")
    return Record(
        id=str(obj.get("id", "")),
        image=obj["image"],
        regions=regions,
        conversations=turns,
        task=task,
        width=width,
        height=height,
        meta=meta,
    )


def read_jsonl(
    path: str | Path, skip_invalid: bool = False, skipped: list[str] | None = None
) -> Iterator[Record]:
    """Stream records from a JSONL file. A malformed line raises ValueError with ``file:line``;
    with ``skip_invalid`` it is skipped and its ``file:line: reason`` appended to ``skipped``.
    Lines end at ``\\n`` only (as in :class:`regiongpt.data.dataset.RegionDataset`)."""
    path = Path(path)
    with path.open("rb") as handle:
        for line_number, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            try:
                yield parse_record(parse_json_line(raw))
            except ValueError as error:
                message = f"{path}:{line_number}: {error}"
                if not skip_invalid:
                    raise ValueError(message) from None
                if skipped is not None:
                    skipped.append(message)


def parse_json_line(raw: bytes) -> Any:
    """Decode one JSON line; every problem (bad UTF-8, bad JSON, absurd nesting) is a ValueError."""
    try:
        return json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as error:
        raise ValueError(f"not UTF-8 text ({error.reason} at byte {error.start})") from None
    except json.JSONDecodeError as error:
        raise ValueError(f"not valid JSON ({error.msg} at column {error.colno})") from None
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None


def write_jsonl(path: str | Path, records: Iterable[Record | dict[str, Any]]) -> int:
    """Write records atomically (temp file + rename); returns the count written. Each record is
    validated first (:func:`parse_record`): a bad one is a ValueError and the file is left as it was."""
    count = 0
    with writing_file(path) as handle:
        for record in records:
            obj = record.to_json() if isinstance(record, Record) else record
            try:  # never write a line read_jsonl would refuse
                parse_record(obj)
            except ValueError as error:
                name = obj.get("id", "") if isinstance(obj, dict) else ""
                raise ValueError(f"record {count + 1} ({name!r:.40}) cannot be written: {error}") from None
            try:
                handle.write(json.dumps(obj, ensure_ascii=False) + "\n")
            except UnicodeEncodeError:  # a lone surrogate: \\uXXXX escapes keep it exactly
                handle.write(json.dumps(obj) + "\n")
            count += 1
    return count
