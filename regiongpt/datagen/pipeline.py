"""The two-stage caption pipeline: a global caption per image, then a detailed caption per region,
filtered, written as canonical JSONL with provenance; resumable after SIGKILL.

Files beside ``OUT.jsonl``: ``OUT.rejected.jsonl`` (dropped regions, with ``meta.drop_reason``)
and ``OUT.global.jsonl`` (the stage-1 captions). All three are append-only with an fsync per row;
a rerun cuts a torn last line, reuses the global captions and skips every region id already in
``OUT.jsonl`` or ``OUT.rejected.jsonl``."""

from __future__ import annotations

import os
import sys
import threading
from collections import OrderedDict
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from regiongpt.data.format import GPT, HUMAN, Record, region_from_json
from regiongpt.datagen.filters import (
    INVALID_REGION,
    TEACHER_ERROR,
    CaptionFilter,
    FilterConfig,
    clean_caption,
)
from regiongpt.datagen.prompts import describe_position, prompt_version
from regiongpt.datagen.sources import RegionItem
from regiongpt.datagen.store import AppendLog, read_rows
from regiongpt.datagen.summary import Summary, caption_of, summarize
from regiongpt.datagen.teacher import Caption, RegionRequest, Teacher, TeacherError
from regiongpt.imaging import load_image
from regiongpt.regions import Box
from regiongpt.tasks import Task, build_question

IMAGE_ERROR = "unreadable image"


def side_paths(out: Path) -> tuple[Path, Path]:
    """``(rejected, global)`` files that belong to ``out``."""
    stem = out.name[: -len(".jsonl")] if out.name.endswith(".jsonl") else out.name
    return out.with_name(f"{stem}.rejected.jsonl"), out.with_name(f"{stem}.global.jsonl")


@dataclass
class DatagenConfig:
    out: Path
    context: float = 0.25  # crop margin on each side, as a fraction of the region's size
    filters: FilterConfig = field(default_factory=FilterConfig)
    progress: bool = True
    limit: int | None = None  # caption only the first N regions of the input


def crop_with_context(image: Image.Image, box: Box, context: float) -> Image.Image:
    """The box enlarged by ``context`` x its width/height on each side, clipped to the image."""
    dx, dy = (box.x2 - box.x1) * context, (box.y2 - box.y1) * context
    x1, y1 = max(0, int(box.x1 - dx)), max(0, int(box.y1 - dy))
    x2, y2 = min(image.width, int(box.x2 + dx + 0.999)), min(image.height, int(box.y2 + dy + 0.999))
    return image.crop((x1, y1, max(x2, x1 + 1), max(y2, y1 + 1)))


@dataclass
class _Outcome:
    item: RegionItem
    caption: Caption | None = None
    reason: str | None = None  # set when no caption could be made
    error: str | None = None
    size: tuple[int, int] | None = None
    global_caption: Caption | None = None


class Pipeline:
    """Runs ``teacher`` over ``items`` into ``config.out`` (see the module docstring)."""

    def __init__(
        self, teacher: Teacher, config: DatagenConfig, caption_filter: CaptionFilter | None = None
    ) -> None:
        self.teacher, self.config = teacher, config
        self.filter = caption_filter or CaptionFilter(config.filters)
        self.prompts = prompt_version()
        self.out_dir = config.out.resolve().parent
        self._images: OrderedDict[Path, Image.Image] = OrderedDict()
        self._globals: dict[str, Caption] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()

    def run(self, items: list[RegionItem]) -> Summary:
        out = self.config.out
        rejected_path, global_path = side_paths(out)
        if self.config.limit is not None:
            items = items[: self.config.limit]
        logs = [AppendLog(out), AppendLog(rejected_path), AppendLog(global_path)]
        self.out_log, self.rejected_log, self.global_log = logs
        try:
            kept_rows, dropped_rows = read_rows(out), read_rows(rejected_path)
            self._check_teacher(kept_rows + dropped_rows)
            for row in read_rows(global_path):
                if isinstance(row.get("image"), str) and isinstance(row.get("caption"), str):
                    self._globals[row["image"]] = Caption(row["caption"], row.get("meta") or {})
            self.filter.remember(caption_of(row) for row in kept_rows)
            done = {row.get("id") for row in kept_rows + dropped_rows}
            pending = [item for item in items if item.id not in done]
            self._caption_all(pending, initial=len(items) - len(pending), total=len(items))
        finally:
            for log in logs:
                log.close()
        return summarize(
            out, rejected_path, {item.id for item in items}, repaired=sum(log.repaired for log in logs)
        )

    # ------------------------------------------------------------------ scheduling
    def _caption_all(self, pending: list[RegionItem], initial: int, total: int) -> None:
        from tqdm import tqdm

        workers = max(1, int(self.teacher.max_workers))
        bar = tqdm(
            total=total,
            initial=initial,
            unit="region",
            desc="datagen",
            file=sys.stderr,
            disable=not self.config.progress,
            dynamic_ncols=True,
            smoothing=0.1,
        )
        queue = iter(pending)
        inflight: set[Future[_Outcome]] = set()
        pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="datagen")
        try:
            while True:
                while len(inflight) < 2 * workers and (item := next(queue, None)) is not None:
                    inflight.add(pool.submit(self._caption, item))
                if not inflight:
                    break
                finished, inflight = wait(inflight, return_when=FIRST_COMPLETED)
                for future in finished:
                    self._write(future.result())
                    bar.update(1)
        finally:
            pool.shutdown(wait=False, cancel_futures=True)
            bar.close()

    # ------------------------------------------------------------------ worker side
    def _caption(self, item: RegionItem) -> _Outcome:
        try:
            image = self._image(item.image)
        except ValueError as error:
            return _Outcome(item, reason=IMAGE_ERROR, error=str(error))
        outcome = _Outcome(item, size=image.size)
        try:
            region = region_from_json(item.geometry, item.root, image.size)
            box = region.to_box(image.size)
        except (ValueError, OSError) as error:
            outcome.reason, outcome.error = INVALID_REGION, str(error)
            return outcome
        try:
            outcome.global_caption = self._global_caption(item.image, image)
            request = RegionRequest(
                image=image,
                region=region,
                box=box,
                crop=crop_with_context(image, box, self.config.context),
                class_name=item.class_name,
                position=describe_position(box, image.size),
                global_caption=outcome.global_caption.text,
            )
            outcome.caption = self.teacher.region_caption(request)
        except TeacherError as error:
            if not error.permanent:
                raise
            outcome.reason, outcome.error = TEACHER_ERROR, str(error)
        return outcome

    def _image(self, path: Path) -> Image.Image:
        with self._lock:
            if path in self._images:
                self._images.move_to_end(path)
                return self._images[path]
        image = load_image(path)
        with self._lock:
            self._images[path] = image
            while len(self._images) > 2 * max(1, self.teacher.max_workers) + 2:
                self._images.popitem(last=False)
        return image

    def _global_caption(self, path: Path, image: Image.Image) -> Caption:
        """Stage 1, once per image (threads asking for the same image wait for the first)."""
        key = self._relative(path)
        with self._lock:
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            if key not in self._globals:
                raw = self.teacher.global_caption(image)
                text, _ = clean_caption(raw.text)
                self.global_log.append(
                    {"image": key, "caption": text, "teacher": self.teacher.name, "meta": raw.meta}
                )
                self._globals[key] = Caption(text, raw.meta)
            return self._globals[key]

    # ------------------------------------------------------------------ main thread
    def _write(self, outcome: _Outcome) -> None:
        item = outcome.item
        meta: dict[str, Any] = {
            "source": "datagen",
            "teacher": self.teacher.name,
            "prompt_version": self.prompts,
            "class_name": item.class_name,
            "input": item.source or {},
        }
        text, reason = "", outcome.reason
        if outcome.global_caption is not None:
            meta["global_caption"] = outcome.global_caption.text
            if outcome.global_caption.meta:
                meta["global_meta"] = outcome.global_caption.meta
        if outcome.caption is not None:
            text, truncated = clean_caption(outcome.caption.text)
            meta["teacher_meta"] = outcome.caption.meta
            meta["truncated"] = truncated
            global_text = outcome.global_caption.text if outcome.global_caption else None
            reason, meta["scores"] = self.filter.check(text, item.class_name, global_text)
        if outcome.error:
            meta["error"] = outcome.error
        if reason:
            meta["drop_reason"] = reason
        record = self._record(item, text, outcome.size, meta)
        (self.rejected_log if reason else self.out_log).append(record.to_json())

    def _record(
        self, item: RegionItem, text: str, size: tuple[int, int] | None, meta: dict[str, Any]
    ) -> Record:
        geometry = dict(item.geometry)
        if "mask" in geometry:
            geometry["mask"] = self._relative(item.root / str(geometry["mask"]))
        if item.class_name:
            geometry["label"] = item.class_name
        width, height = size or item.size or (None, None)
        return Record(
            id=item.id,
            image=self._relative(item.image),
            regions=[geometry],
            conversations=[
                {"from": HUMAN, "value": build_question(Task.DETAILED, 1)},
                {"from": GPT, "value": text},
            ],
            task=Task.DETAILED,
            width=width,
            height=height,
            meta=meta,
        )

    def _relative(self, path: Path) -> str:
        """``path`` relative to the output's folder (where ``regiongpt train`` looks by default)."""
        return Path(os.path.relpath(Path(path).resolve(), self.out_dir)).as_posix()

    def _check_teacher(self, rows: list[dict[str, Any]]) -> None:
        for row in rows[:1]:
            previous = (row.get("meta") or {}).get("teacher")
            if previous is not None and previous != self.teacher.name:
                undated = previous.startswith("local:") and "@" not in previous
                why = (  # names before 2026-12-02 lacked the dtype: which one made them is unknown
                    " (written before local teacher names recorded the dtype, so it cannot be "
                    "matched; start a new --out)"
                    if undated
                    else ""
                )
                raise ValueError(
                    f"{self.config.out} was made with teacher {previous!r}, not {self.teacher.name!r}{why}: "
                    "rerun with the same teacher to resume, or choose another --out"
                )


def run_datagen(items: list[RegionItem], teacher: Teacher, config: DatagenConfig) -> Summary:
    """Caption ``items`` with ``teacher`` into ``config.out``; returns the summary of the files."""
    return Pipeline(teacher, config).run(items)
