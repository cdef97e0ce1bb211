"""The benchmark harness: records -> questions, batched answers grouped by image, resumable
predictions, metrics JSON and a markdown report.

Files written under ``out``: :data:`PREDICTIONS` (one JSON object per question, appended and
flushed as each batch finishes), :data:`METRICS` and :data:`REPORT`. A run resumes from the
predictions already written: their ids are skipped, a torn last line (a run killed mid-write)
is dropped and redone.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

import torch
from PIL import Image
from tqdm import tqdm

from regiongpt.api import dtype_name
from regiongpt.atomic import write_text_atomic
from regiongpt.data.format import Record, read_jsonl, region_from_json
from regiongpt.eval.engine import Engine
from regiongpt.processing import GPT4ROI_PATTERN, TAG_PATTERN
from regiongpt.regions import Region
from regiongpt.tasks import Task

PREDICTIONS, METRICS, REPORT = "predictions.jsonl", "metrics.json", "report.md"
RUN_SETTINGS = "run.json"  # what made the predictions: model, dtype, device, benchmark, inputs
#: Settings a resumed run must share with the predictions already in its folder (the device may
#: change); the CLI records the benchmark and the inputs that shape its predictions too.
RESUME_MUST_MATCH = (
    "model",
    "dtype",
    "benchmark",
    "data",
    "split",
    "mode",
    "proposals",
    "max_proposals",
    "proposal_score",
)


def check_run_settings(out: Path, settings: Mapping[str, str]) -> None:
    """Refuse (``ValueError``) to add predictions to ``out`` if its earlier ones were made with
    another of the :data:`RESUME_MUST_MATCH` settings (``run.json``: model, dtype, benchmark, data
    file, split, REC mode and proposals); a device change is allowed, and a setting missing on
    either side is not compared."""
    if not (Path(out) / PREDICTIONS).is_file():
        return
    previous = read_run_settings(out)
    changed = [
        key
        for key in RESUME_MUST_MATCH
        if key in previous and key in settings and previous[key] != settings[key]
    ]
    if changed:
        was = ", ".join(f"{key} {previous[key]!r}" for key in changed)
        now = ", ".join(f"{key} {settings[key]!r}" for key in changed)
        raise ValueError(
            f"{out} holds predictions made with {was}, not {now}: use another output directory, "
            "or the same settings to resume"
        )


def read_run_settings(out: Path) -> dict[str, str]:
    """``out/run.json`` (empty when missing or unreadable)."""
    try:
        settings = json.loads((Path(out) / RUN_SETTINGS).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {}
    return settings if isinstance(settings, dict) else {}


def write_run_settings(out: Path, settings: Mapping[str, str]) -> None:
    """Record ``settings`` in ``out/run.json`` (called when predicting starts)."""
    Path(out).mkdir(parents=True, exist_ok=True)
    write_text_atomic(Path(out) / RUN_SETTINGS, json.dumps(dict(settings), indent=2) + "\n")


EngineSource = Union[Engine, Callable[[], Engine]]


def engine_run_settings(engine: EngineSource, model_name: str | None) -> dict[str, str] | None:
    """``run.json`` settings of an engine passed in whose ``model`` has a torch dtype (a
    :class:`~regiongpt.eval.engine.ModelEngine`): its dtype, plus ``model_name`` and the model's
    device when known. None for a factory, whose caller records its own (the CLI), and for an
    engine whose ``model`` has no torch dtype."""
    model = getattr(engine, "model", None)
    dtype = getattr(model, "dtype", None)
    if not isinstance(dtype, torch.dtype):
        return None
    settings = {"model": model_name, "dtype": dtype_name(dtype), "device": getattr(model, "device", None)}
    return {key: str(value) for key, value in settings.items() if value is not None}


@dataclass
class EvalItem:
    """One question: the conversation up to and including it (earlier turns carry their
    reference answers), the regions it may refer to, and its reference answer(s)."""

    id: str
    image: str
    regions: list[dict[str, Any]]
    conversation: list[dict[str, str]]
    references: list[str]
    task: Task | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    turn: int = 0
    max_new_tokens: int = 48

    @property
    def question(self) -> str:
        return self.conversation[-1]["value"]

    @property
    def reference(self) -> str:
        return self.references[0]


def items_from_records(
    records: Iterable[Record],
    tasks: Collection[Task] | None = None,
    max_new_tokens: Mapping[Task | None, int] | int = 48,
) -> list[EvalItem]:
    """One item per human turn of each record whose task is in ``tasks`` (all when None). A
    record of several turns gives ids ``<id>#1``, ``<id>#2``...; turn k sees turns before it with
    their reference answers and the regions up to the highest ``<regionK>`` used so far."""
    items: list[EvalItem] = []
    seen: set[str] = set()
    for record in records:
        if tasks is not None and record.task not in tasks:
            continue
        if record.id in seen:
            raise ValueError(f"duplicate record id {record.id!r}: predictions are keyed by id")
        seen.add(record.id)
        turns = record.conversations
        pairs = len(turns) // 2
        for t in range(pairs):
            conversation = [dict(turn) for turn in turns[: 2 * t + 1]]
            text = " ".join(turn["value"] for turn in conversation)
            used = [int(k) for k in TAG_PATTERN.findall(text)] + [len(GPT4ROI_PATTERN.findall(text))]
            limit = max_new_tokens if isinstance(max_new_tokens, int) else max_new_tokens.get(record.task, 48)
            items.append(
                EvalItem(
                    id=record.id if pairs == 1 else f"{record.id}#{t + 1}",
                    image=record.image,
                    regions=record.regions[: max(used, default=0)],
                    conversation=conversation,
                    references=[turns[2 * t + 1]["value"]],
                    task=record.task,
                    meta=record.meta,
                    turn=t,
                    max_new_tokens=limit,
                )
            )
    return items


def load_items(
    path: str | Path,
    tasks: Collection[Task] | None = None,
    max_new_tokens: Mapping[Task | None, int] | int = 48,
) -> list[EvalItem]:
    """:func:`items_from_records` over a canonical JSONL file (FileNotFoundError if missing)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no data file at {path}")
    return items_from_records(read_jsonl(path), tasks, max_new_tokens)


class PredictionStore:
    """Append-only JSONL of prediction rows keyed by ``id``, safe to resume after a kill."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.rows: dict[str, dict[str, Any]] = {}
        if self.path.exists():
            self._load()

    def _load(self) -> None:
        data = self.path.read_bytes()
        good_end = 0
        lines = data.split(b"\n")
        for number, line in enumerate(lines):
            last = number == len(lines) - 1
            end = good_end + len(line) + (0 if last else 1)
            if line.strip():
                try:
                    row = json.loads(line)
                except (json.JSONDecodeError, UnicodeDecodeError):
                    if last:  # torn by a kill mid-write: redo that record
                        break
                    raise ValueError(
                        f"{self.path}:{number + 1}: not a JSON line; remove the file to start over"
                    ) from None
                if not isinstance(row, dict) or not isinstance(row.get("id"), str):
                    raise ValueError(f"{self.path}:{number + 1}: a prediction row needs a string 'id'")
                self.rows[row["id"]] = row
            good_end = end
        with self.path.open("r+b") as handle:
            handle.truncate(good_end)
            if good_end and not data[:good_end].endswith(b"\n"):
                handle.seek(good_end)
                handle.write(b"\n")

    def append(self, rows: Iterable[dict[str, Any]]) -> None:
        """Write rows, one line each, flushed to the OS before returning."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as handle:
            for row in rows:
                handle.write(json.dumps(row, ensure_ascii=False) + "\n")
                handle.flush()
                self.rows[row["id"]] = row


Answer = Callable[[Engine, Image.Image, Any, list[EvalItem], list[list[Region]]], list[dict[str, Any]]]


def generate_answers(
    engine: Engine, image: Image.Image, features: Any, items: list[EvalItem], regions: list[list[Region]]
) -> list[dict[str, Any]]:
    """Greedy answers of a batch of questions about one image: ``{"prediction": text}`` each."""
    texts = engine.generate(
        [it.conversation for it in items],
        image,
        regions,
        features=features,
        max_new_tokens=max(it.max_new_tokens for it in items),
    )
    return [{"prediction": text} for text in texts]


def run_items(
    engine: EngineSource,
    items: list[EvalItem],
    root: Path,
    store: PredictionStore,
    answer: Answer = generate_answers,
    batch_size: int = 8,
    progress: bool = True,
    desc: str = "eval",
) -> None:
    """Answer every item not yet in ``store``: images in order of first use, each encoded once,
    its questions in batches of ``batch_size`` of equal ``max_new_tokens``."""
    if batch_size < 1:
        raise ValueError(f"batch size must be >= 1, got {batch_size}")
    for item in items:
        done = store.rows.get(item.id)
        if done is not None and done.get("question") != item.question:
            raise ValueError(
                f"{store.path} holds a prediction for {item.id!r} asked with a different question; "
                "it was made for other data: use a fresh output directory"
            )
    todo = [it for it in items if it.id not in store.rows]
    by_image: dict[str, list[EvalItem]] = {}
    for item in todo:
        by_image.setdefault(item.image, []).append(item)
    bar = tqdm(
        total=len(items),
        initial=len(items) - len(todo),
        desc=desc,
        unit="q",
        file=sys.stderr,
        disable=not progress,
        dynamic_ncols=True,
    )
    resolved: Engine | None = None
    try:
        for image_path, group in by_image.items():
            if resolved is None:
                resolved = engine if isinstance(engine, Engine) else engine()
            image, features = resolved.encode_image(root / image_path)
            by_limit: dict[int, list[EvalItem]] = {}
            for item in group:
                by_limit.setdefault(item.max_new_tokens, []).append(item)
            for chunk in (
                sub[i : i + batch_size] for sub in by_limit.values() for i in range(0, len(sub), batch_size)
            ):
                regions = [[region_from_json(r, root, image.size) for r in it.regions] for it in chunk]
                extras = answer(resolved, image, features, chunk, regions)
                if len(extras) != len(chunk):
                    raise RuntimeError(f"the engine answered {len(extras)} of {len(chunk)} questions")
                store.append(
                    {
                        "id": it.id,
                        "task": it.task.value if it.task else None,
                        "image": it.image,
                        "question": it.question,
                        **extra,
                        "references": it.references,
                    }
                    for it, extra in zip(chunk, extras)
                )
                bar.update(len(chunk))
    finally:
        bar.close()


def _flatten(metrics: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    rows: list[tuple[str, Any]] = []
    for key, value in metrics.items():
        name = f"{prefix}{key}"
        rows += _flatten(value, f"{name}.") if isinstance(value, Mapping) else [(name, value)]
    return rows


def format_value(value: Any) -> str:
    """Scores (floats) x100 with one decimal, counts (ints) as they are, None as ``n/a``."""
    if value is None:
        return "n/a"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    return str(value) if isinstance(value, int) else f"{100 * value:.1f}"


def markdown_report(benchmark: str, metrics: Mapping[str, Any], config: Mapping[str, Any]) -> str:
    """A markdown page: the run's settings, then a ``metric | value`` table (scores x100)."""
    lines = [f"# {benchmark}", ""]
    lines += [f"- {key}: `{value}`" for key, value in config.items() if value is not None]
    lines += [
        "",
        "Scores are x100 (metrics.json holds the raw values); counts are plain integers.",
        "",
        "| metric | value |",
        "|---|---|",
    ]
    lines += [f"| {name} | {format_value(value)} |" for name, value in _flatten(metrics)]
    return "\n".join(lines) + "\n"


def write_outputs(out: Path, benchmark: str, metrics: Mapping[str, Any], config: Mapping[str, Any]) -> str:
    """Write :data:`METRICS` and :data:`REPORT` atomically; returns the report text. The dtype
    the predictions were made in (``run.json``, written by the CLI or :func:`run_benchmark`) joins
    ``config`` unless it is there already or ``run.json`` names another model than ``config`` (a
    stale file)."""
    out.mkdir(parents=True, exist_ok=True)
    recorded = read_run_settings(out)
    dtype = recorded.get("dtype")
    if dtype is not None and "dtype" not in config and recorded.get("model") == config.get("model"):
        config = {**config, "dtype": dtype}
    payload = {"benchmark": benchmark, "config": dict(config), "metrics": dict(metrics)}
    write_text_atomic(out / METRICS, json.dumps(payload, indent=2) + "\n")
    report = markdown_report(benchmark, metrics, config)
    write_text_atomic(out / REPORT, report)
    return report


Scorer = Callable[[list[EvalItem], list[dict[str, Any]]], dict[str, Any]]


def run_benchmark(
    benchmark: str,
    engine: EngineSource,
    items: list[EvalItem],
    *,
    root: Path,
    out: Path,
    score: Scorer,
    answer: Answer = generate_answers,
    batch_size: int = 8,
    limit: int | None = None,
    progress: bool = True,
    config: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Predict (resuming), score the first ``limit`` items and write the outputs; returns the
    metrics. ``engine`` may be a zero-argument factory: it is called only if something is left
    to predict. An engine passed in with a model (:func:`engine_run_settings`) records
    ``run.json`` before predicting and, like the CLI, refuses (``ValueError``) to add to
    predictions that ``run.json`` says another model or dtype made."""
    if limit is not None:
        if limit < 1:
            raise ValueError(f"--limit must be >= 1, got {limit}")
        items = items[:limit]
    if not items:
        raise ValueError(f"no {benchmark} questions in the data")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    store = PredictionStore(out / PREDICTIONS)
    run = engine_run_settings(engine, (config or {}).get("model"))
    if run is not None:  # an engine passed in: resume only what the same model and dtype made
        check_run_settings(out, run)
        if any(item.id not in store.rows for item in items):  # keep what named earlier predictions
            earlier = read_run_settings(out) if store.rows else {}
            write_run_settings(out, {**earlier, **run})
    run_items(engine, items, Path(root), store, answer, batch_size, progress, desc=benchmark)
    rows = [store.rows[it.id] for it in items]
    metrics = {"questions": len(items), **score(items, rows)}
    settings = {"benchmark": benchmark, **(config or {}), "limit": limit, "batch_size": batch_size}
    if run is not None and "dtype" not in settings:
        settings["dtype"] = run["dtype"]
    write_outputs(out, benchmark, metrics, settings)
    return metrics
