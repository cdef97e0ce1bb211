"""RefCOCO / RefCOCO+ / RefCOCOg: ``refs(unc|umd|google).p`` joined with the COCO-style
``instances.json`` of the same release, and MDETR's json variant (``final_refcoco_train.json``).

Two kinds of records per referring expression:

* ``caption``: region captioning, :attr:`Task.BRIEF` ("Give a brief description of <region1>.")
  answered by the expression;
* ``rec``: comprehension as a choice among the image's annotated regions
  (:attr:`Task.CHOOSE_REGION`), "Which region does '<expr>' describe? <region1> ... <regionN>"
  answered "region K". Candidates are the image's non-crowd annotations in file order (the
  target always included); ``meta.target_box`` holds the referred pixel xyxy box.

The pickle is read with :mod:`regiongpt.data.safe_pickle` (plain data only); its Python 2
strings are decoded as UTF-8 (Latin-1 where invalid). The ``file_name`` inside refs carries an
annotation suffix (``..._581857_16.jpg``) and is not a real file: the image comes from
``instances.json``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from regiongpt.data.converters.base import (
    Geometry,
    Stats,
    at,
    clip_xyxy,
    coco_region,
    fail,
    get,
    image_path,
    progress,
    region_turns,
    xywh_to_xyxy,
)
from regiongpt.data.converters.coco import CocoFile, image_file, image_size, load_coco
from regiongpt.data.format import Record
from regiongpt.data.safe_pickle import decode_py2_strings, safe_load
from regiongpt.tasks import Task, with_instruction

REF_TASKS = ("caption", "rec")


def load_refs(path: str | Path) -> list[Any]:
    """The list of ref dicts in a ``refs(*).p`` pickle, loaded safely."""
    data = decode_py2_strings(safe_load(path, encoding="bytes"))
    if not isinstance(data, list):
        raise ValueError(f"{path}: expected a pickled list of refs, got {type(data).__name__}")
    return data


class InstanceIndex:
    """Regions of a COCO-style instances file, by annotation id, for REC candidates."""

    def __init__(self, coco: CocoFile, geometry: Geometry, stats: Stats) -> None:
        self.coco, self.geometry, self.stats = coco, geometry, stats
        self.anns: dict[Any, tuple[str, dict[str, Any]]] = {}
        self.by_image: dict[Any, list[Any]] = {}
        for where, ann in coco.annotations:
            ann_id = get(ann, "id", where, "id")
            self.anns[ann_id] = (where, ann)
            self.by_image.setdefault(get(ann, "image_id", where, "id"), []).append(ann_id)
        self._regions: dict[Any, tuple[list[float], dict[str, Any]] | None] = {}

    def region(self, ann_id: Any) -> tuple[list[float], dict[str, Any]] | None:
        """``(xyxy box, region entry)`` of an annotation; None for a degenerate box."""
        if ann_id not in self._regions:
            where, ann = self.anns[ann_id]
            box = xywh_to_xyxy(ann.get("bbox"), where)
            image = self.coco.images.get(ann.get("image_id"))
            size = image_size(image, where) if isinstance(image, dict) else None
            if box is not None and size is not None:  # None when nothing of it is inside
                box = clip_xyxy(box, *size)
            self._regions[ann_id] = (
                None if box is None else (box, coco_region(ann, box, where, self.geometry, self.stats, size))
            )
        return self._regions[ann_id]

    def candidates(self, image_id: Any, target: Any, limit: int | None) -> list[Any]:
        """Non-crowd annotations of the image with usable boxes, in file order, target included
        (when over ``limit``, the first ``limit - 1`` others plus the target)."""
        others = [
            a
            for a in self.by_image.get(image_id, [])
            if a != target and not self.anns[a][1].get("iscrowd") and self.region(a) is not None
        ]
        if limit is not None:
            others = others[: max(limit - 1, 0)]
        order = {a: i for i, a in enumerate(self.by_image[image_id])}
        return sorted([*others, target], key=order.__getitem__)

    def find_box(self, image_id: Any, box: list[float]) -> Any | None:
        """The annotation of ``image_id`` whose box equals ``box`` (within half a pixel)."""
        for ann_id in self.by_image.get(image_id, []):
            found = self.region(ann_id)
            if found is not None and max(abs(a - b) for a, b in zip(found[0], box, strict=True)) < 0.5:
                return ann_id
        return None


def rec_record(
    record_id: str,
    image: str,
    size: tuple[int, int] | None,
    index: InstanceIndex,
    candidates: Sequence[Any],
    target: Any,
    expression: str,
    meta: dict[str, Any],
) -> Record:
    """A :attr:`Task.CHOOSE_REGION` record: which of ``candidates`` the expression refers to."""
    tags = " ".join(f"<region{k}>" for k in range(1, len(candidates) + 1))
    question = with_instruction(f"Which region does '{expression}' describe? {tags}", Task.CHOOSE_REGION)
    regions = [index.region(a) for a in candidates]
    answer = f"region {list(candidates).index(target) + 1}"
    meta = {**meta, "target_box": index.region(target)[0], "candidate_ann_ids": list(candidates)}
    return Record(
        id=record_id,
        image=image,
        regions=[r[1] for r in regions if r is not None],
        conversations=[{"from": "human", "value": question}, {"from": "gpt", "value": answer}],
        task=Task.CHOOSE_REGION,
        width=size[0] if size else None,
        height=size[1] if size else None,
        meta=meta,
    )


def _check_tasks(tasks: Sequence[str]) -> None:
    unknown = sorted(set(tasks) - set(REF_TASKS))
    if unknown or not tasks:
        raise ValueError(f"unknown refexp tasks {unknown or list(tasks)}; choose from {list(REF_TASKS)}")


def refcoco_records(
    refs_path: str | Path,
    instances_path: str | Path,
    *,
    image_root: str = "",
    splits: Sequence[str] | None = None,
    tasks: Sequence[str] = REF_TASKS,
    geometry: Geometry = "mask",
    max_candidates: int | None = None,
    name: str = "refcoco",
    stats: Stats | None = None,
    show_progress: bool = True,
) -> Iterator[Record]:
    """Caption and/or REC records, one per (ref, sentence), for refs whose split is in
    ``splits`` (all when None), e.g. ``["val"]`` or ``["testA", "testB"]``."""
    _check_tasks(tasks)
    stats = stats if stats is not None else Stats()
    refs = load_refs(refs_path)
    index = InstanceIndex(load_coco(instances_path), geometry, stats)
    coco = index.coco
    for position, ref in enumerate(progress(refs, f"{name} refs", enabled=show_progress)):
        where = at(refs_path, "", position, ref.get("ref_id") if isinstance(ref, dict) else None)
        ref_id = get(ref, "ref_id", where, "id")
        ann_id = get(ref, "ann_id", where, "id")
        image_id = get(ref, "image_id", where, "id")
        split = get(ref, "split", where, "str")
        sentences = get(ref, "sentences", where, "list")
        if splits is not None and split not in splits:
            stats.skip("other split")
            continue
        if ann_id not in index.anns:
            raise fail(where, f"ann_id {ann_id!r} is not in {coco.path.name}")
        if image_id not in coco.images or index.anns[ann_id][1].get("image_id") != image_id:
            raise fail(
                where, f"image_id {image_id!r} does not match annotation {ann_id!r} in {coco.path.name}"
            )
        if index.region(ann_id) is None:
            stats.skip("degenerate box")
            continue
        image = coco.images[image_id]
        path = image_path(image_root, image_file(image, where))
        size = image_size(image, where)
        candidates = index.candidates(image_id, ann_id, max_candidates)
        for number, sentence in enumerate(sentences):
            text = get(sentence, "sent", f"{where} sentences[{number}]", "str").strip()
            sent_id = sentence.get("sent_id", number)
            if not text:
                stats.skip("empty sentence")
                continue
            meta = {"source": name, "ref_id": ref_id, "ann_id": ann_id, "sent_id": sent_id, "split": split}
            if "caption" in tasks:
                yield Record(
                    id=f"{name}-{ref_id}-{sent_id}-caption",
                    image=path,
                    regions=[index.region(ann_id)[1]],
                    conversations=region_turns(Task.BRIEF, [text]),
                    task=Task.BRIEF,
                    width=size[0] if size else None,
                    height=size[1] if size else None,
                    meta=meta,
                )
            if "rec" in tasks:
                if len(candidates) < 2:
                    stats.skip("rec: single region in image")
                    continue
                yield rec_record(
                    f"{name}-{ref_id}-{sent_id}-rec", path, size, index, candidates, ann_id, text, meta
                )


def mdetr_refexp_records(
    path: str | Path,
    *,
    image_root: str = "",
    instances: str | Path | None = None,
    tasks: Sequence[str] = ("caption",),
    geometry: Geometry = "mask",
    max_candidates: int | None = None,
    name: str | None = None,
    stats: Stats | None = None,
    show_progress: bool = True,
) -> Iterator[Record]:
    """Records from MDETR's refexp json: each ``images`` entry is one expression (``caption``)
    with its referred annotation. REC needs ``instances`` (COCO instances json) for the other
    regions; the target is matched by the annotation's ``original_id``, else by its box."""
    _check_tasks(tasks)
    if "rec" in tasks and instances is None:
        raise ValueError("REC records from MDETR refexp need the COCO instances json (instances=...)")
    stats = stats if stats is not None else Stats()
    coco = load_coco(path)
    index = InstanceIndex(load_coco(instances), geometry, stats) if instances is not None else None
    referred: dict[Any, list[tuple[str, dict[str, Any]]]] = {}
    for where, ann in coco.annotations:
        referred.setdefault(coco.image_of(ann, where)[0], []).append((where, ann))
    for position, (entry_id, entry) in enumerate(
        progress(coco.images.items(), "refexp", enabled=show_progress)
    ):
        where = at(coco.path, "images", position, entry_id)
        caption = get(entry, "caption", where, "str").strip()
        source = name or entry.get("dataset_name") or "refexp"
        anns = referred.get(entry_id, [])
        if len(anns) != 1:
            stats.skip("no referred box" if not anns else "several referred boxes")
            continue
        ann_where, ann = anns[0]
        box = xywh_to_xyxy(ann.get("bbox"), ann_where)
        size = image_size(entry, where)
        if box is not None and size is not None:
            box = clip_xyxy(box, *size)
        if box is None or not caption:
            stats.skip("degenerate box" if box is None else "empty caption")
            continue
        image = image_path(image_root, image_file(entry, where))
        meta = {
            "source": source,
            "image_id": entry.get("original_id", entry_id),
            "sentence_id": entry.get("sentence_id"),
        }
        if "caption" in tasks:
            yield Record(
                id=f"{source}-{entry_id}-caption",
                image=image,
                regions=[coco_region(ann, box, ann_where, geometry, stats, size)],
                conversations=region_turns(Task.BRIEF, [caption]),
                task=Task.BRIEF,
                width=size[0] if size else None,
                height=size[1] if size else None,
                meta={**meta, "target_box": box},
            )
        if index is not None and "rec" in tasks:
            original = meta["image_id"]
            target = ann.get("original_id")
            if target not in index.anns or index.anns[target][1].get("image_id") != original:
                target = index.find_box(original, box)
            if target is None:
                stats.skip("rec: target not in instances")
                continue
            candidates = index.candidates(original, target, max_candidates)
            if len(candidates) < 2:
                stats.skip("rec: single region in image")
                continue
            yield rec_record(
                f"{source}-{entry_id}-rec", image, size, index, candidates, target, caption, meta
            )
