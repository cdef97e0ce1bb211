"""Mix canonical JSONL files into one, the way training recipes mix data sets.

A mix file is YAML, either a list of sources or a mapping with ``datasets`` (plus optional
``seed`` and ``shuffle``)::

    seed: 0
    datasets:
      - {path: coco_category.jsonl, ratio: 0.5, name: coco}   # a random half
      - {path: refcocog_caption.jsonl, count: 20000}           # exactly 20000 records
      - {path: vcr.jsonl, ratio: 2}                            # every record twice
      - {path: world.jsonl, tasks: [yes_no]}                   # only its yes/no records
      - {path: world.jsonl, name: pos, where: {relation: position}}  # records whose meta matches

Paths are relative to the mix file. Records keep their image and mask paths as they are (for
converted data sets trained with ``data.root``), unless a source gives ``root``: the folder its
paths are relative to (e.g. the JSONL's own folder); then they are rewritten relative to the
output file's folder, so sources from different folders mix into one file that trains without
``data.root``. Absolute paths stay absolute. ``ratio`` scales the file's record count (above 1:
whole copies plus a random rest), ``count`` asks for an exact number, neither means every
record once; ``tasks`` keeps only the records of those tasks (records without a task are
dropped too), before the amount applies; ``where`` keeps only the records whose ``meta`` has
every given field equal to the given value (or to one of a list of values), also before the
amount. A missing field reads as null; YAML reads yes/no/on/off as booleans, so quote strings
such as ``'yes'``.
Sampling is deterministic: the same seed gives the same output, and a source's
sample does not change when other sources are added. Output ids are ``name/id`` (``#k`` added
to the k-th extra copy) and ``meta.mix`` holds the source name.
"""

from __future__ import annotations

import dataclasses
import math
import os
import random
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from regiongpt.data.format import Record, read_jsonl, write_jsonl
from regiongpt.tasks import Task
from regiongpt.yaml_files import load_yaml_text

SOURCE_KEYS = ("path", "ratio", "count", "name", "root", "tasks", "where")
MIX_KEYS = ("datasets", "seed", "shuffle")


@dataclass(frozen=True)
class MixSource:
    """One input JSONL of a mix and how much of it to take."""

    path: Path
    name: str
    ratio: float | None = None
    count: int | None = None
    root: Path | None = None  # the folder image/mask paths are relative to; None: leave them as they are
    tasks: frozenset[Task] | None = None  # keep only records of these tasks; None: all records
    where: tuple[tuple[str, tuple[Any, ...]], ...] = ()  # (meta field, the values kept); (): all records

    def records(self) -> Iterator[Record]:
        """The file's records, only those of ``tasks`` and matching ``where`` when set."""
        for record in read_jsonl(self.path):
            if self.tasks is not None and record.task not in self.tasks:
                continue
            if not all(record.meta.get(k) in v for k, v in self.where):
                continue
            yield record

    def filters(self) -> str:
        """The filters in words, for errors."""
        parts = [f"tasks {sorted(t.value for t in self.tasks)}"] if self.tasks is not None else []
        parts += [f"meta {k} in {list(v)}" for k, v in self.where]
        return " and ".join(parts)

    def target(self, size: int) -> int:
        """How many records to draw from a file of ``size`` records."""
        if self.count is not None:
            return self.count
        return size if self.ratio is None else round(self.ratio * size)


@dataclass
class MixSpec:
    sources: list[MixSource]
    seed: int = 0
    shuffle: bool = True


def _source(entry: Any, index: int, base: Path, origin: str) -> MixSource:
    here = f"{origin}: datasets[{index}]"
    if not isinstance(entry, dict):
        raise ValueError(f"{here}: expected a mapping with {list(SOURCE_KEYS)}, got {entry!r:.60}")
    unknown = sorted(set(entry) - set(SOURCE_KEYS))
    if unknown:
        raise ValueError(f"{here}: unknown key(s) {unknown}; allowed: {list(SOURCE_KEYS)}")
    if not isinstance(entry.get("path"), str) or not entry["path"]:
        raise ValueError(f"{here}: 'path' must be a file path, got {entry.get('path')!r:.60}")
    path = base / entry["path"]
    if not path.is_file():
        raise ValueError(f"{here}: {path} does not exist")
    ratio, count = entry.get("ratio"), entry.get("count")
    if ratio is not None and count is not None:
        raise ValueError(f"{here}: give 'ratio' or 'count', not both")
    if ratio is not None and (
        isinstance(ratio, bool)
        or not isinstance(ratio, (int, float))
        or not math.isfinite(ratio)
        or ratio <= 0
    ):
        raise ValueError(f"{here}: 'ratio' must be a positive number, got {ratio!r:.40}")
    if count is not None and (isinstance(count, bool) or not isinstance(count, int) or count < 1):
        raise ValueError(f"{here}: 'count' must be a positive integer, got {count!r:.40}")
    name = entry.get("name", path.stem)
    if not isinstance(name, str) or not name:
        raise ValueError(f"{here}: 'name' must be a non-empty string, got {name!r:.40}")
    root = entry.get("root")
    if root is not None and (not isinstance(root, str) or not (base / root).is_dir()):
        raise ValueError(f"{here}: 'root' must be an existing folder, got {root!r:.60}")
    tasks = entry.get("tasks")
    if tasks is not None:
        if not isinstance(tasks, list) or not tasks or not all(isinstance(t, str) for t in tasks):
            raise ValueError(f"{here}: 'tasks' must be a non-empty list of task names, got {tasks!r:.60}")
        try:
            tasks = frozenset(Task.parse(t) for t in tasks)
        except ValueError as error:
            raise ValueError(f"{here}: {error}") from None
    return MixSource(
        path,
        name,
        None if ratio is None else float(ratio),
        count,
        None if root is None else base / root,
        tasks,
        _where(entry.get("where"), here),
    )


def _where(where: Any, here: str) -> tuple[tuple[str, tuple[Any, ...]], ...]:
    """A source's ``where``: {meta field: a value or a non-empty list of values}."""
    if where is None:
        return ()
    if not isinstance(where, dict) or not where or not all(isinstance(k, str) for k in where):
        raise ValueError(f"{here}: 'where' must map meta fields to values, got {where!r:.60}")
    values = {k: tuple(v) if isinstance(v, list) else (v,) for k, v in where.items()}
    empty = [k for k, v in values.items() if not v]
    if empty:
        raise ValueError(f"{here}: 'where' lists no values for {empty}")
    return tuple(values.items())


def load_mix(path: str | Path) -> MixSpec:
    """Parse and validate a mix file (unknown keys, missing files, bad amounts: ValueError)."""
    path = Path(path)
    try:
        data = load_yaml_text(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise ValueError(f"{path}: not valid YAML ({error})") from None
    spec: dict[str, Any] = {"datasets": data} if isinstance(data, list) else data
    if not isinstance(spec, dict):
        raise ValueError(f"{path}: a mix file is a list of datasets or a mapping with 'datasets'")
    unknown = sorted(set(spec) - set(MIX_KEYS))
    if unknown:
        raise ValueError(f"{path}: unknown key(s) {unknown}; allowed: {list(MIX_KEYS)}")
    entries = spec.get("datasets")
    if not isinstance(entries, list) or not entries:
        raise ValueError(f"{path}: 'datasets' must be a non-empty list")
    sources = [_source(entry, i, path.parent, str(path)) for i, entry in enumerate(entries)]
    names = Counter(s.name for s in sources)
    if any(n > 1 for n in names.values()):
        raise ValueError(
            f"{path}: dataset names must be unique, repeated: {[k for k, n in names.items() if n > 1]}"
        )
    seed, shuffle = spec.get("seed", 0), spec.get("shuffle", True)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"{path}: 'seed' must be an integer, got {seed!r:.40}")
    if not isinstance(shuffle, bool):
        raise ValueError(f"{path}: 'shuffle' must be true or false, got {shuffle!r:.40}")
    return MixSpec(sources, seed, shuffle)


def _rebased(record: Record, source_root: Path, out_root: Path) -> Record:
    """``record`` with its relative image and mask paths (relative to the resolved ``source_root``)
    made relative to the resolved ``out_root``."""

    def rebase(path: str) -> str:
        if Path(path).is_absolute():
            return path
        return Path(os.path.relpath(source_root / path, out_root)).as_posix()

    regions = [
        {**r, "mask": rebase(r["mask"])} if isinstance(r.get("mask"), str) else r for r in record.regions
    ]
    return dataclasses.replace(record, image=rebase(record.image), regions=regions)


def _draw(source: MixSource, seed: int, out_root: Path | None = None) -> Iterator[Record]:
    size = sum(1 for _ in source.records())
    if size == 0 and (source.tasks is not None or source.where):
        raise ValueError(f"{source.path}: no records with {source.filters()}")
    target = source.target(size)
    if size == 0:
        if target:
            raise ValueError(f"{source.path}: no records to draw {target} from ({source.name})")
        return
    full, rest = divmod(target, size)
    rng = random.Random(f"{seed}:{source.name}")
    extra = set(rng.sample(range(size), rest))
    rebase = source.root is not None and out_root is not None and source.root.resolve() != out_root.resolve()
    roots = (source.root.resolve(), out_root.resolve()) if rebase else None
    for index, record in enumerate(source.records()):
        if roots is not None:
            record = _rebased(record, *roots)
        for copy in range(full + (index in extra)):
            suffix = f"#{copy}" if copy else ""
            meta = {**record.meta, "mix": source.name}
            yield dataclasses.replace(record, id=f"{source.name}/{record.id}{suffix}", meta=meta)


def mix_records(spec: MixSpec, out_root: Path | None = None) -> tuple[list[Record], dict[str, int]]:
    """The mixed records (shuffled with ``spec.seed`` when ``spec.shuffle``) and the count
    drawn from each source. With ``out_root``, the paths of sources that give a ``root`` are
    rewritten relative to it."""
    records: list[Record] = []
    counts: dict[str, int] = {}
    for source in spec.sources:
        before = len(records)
        records.extend(_draw(source, spec.seed, out_root))
        counts[source.name] = len(records) - before
    if spec.shuffle:
        random.Random(spec.seed).shuffle(records)
    return records, counts


def write_mix(
    mix_path: str | Path, out: str | Path, *, seed: int | None = None, shuffle: bool | None = None
) -> dict[str, int]:
    """Mix per ``mix_path`` into ``out`` (atomic write); ``seed``/``shuffle`` override the
    file's. Returns the count per source."""
    spec = load_mix(mix_path)
    if seed is not None:
        spec.seed = seed
    if shuffle is not None:
        spec.shuffle = shuffle
    records, counts = mix_records(spec, Path(out).parent)
    write_jsonl(out, records)
    return counts
