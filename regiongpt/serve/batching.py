"""Dynamic batching: an asyncio queue feeds ONE worker thread that runs the model.

The dispatcher takes every request waiting (up to ``max_batch_size``, after a short
``batch_wait_s`` for stragglers) and runs them together: requests with the same sampling settings
share one ``generate`` call even when their images differ (each distinct image is encoded once,
``image_index`` maps rows to images); per-row ``max_tokens`` limits are exact, enforced by a
stopping criterion. Streamed requests run alone (a text streamer follows one row).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Optional

import torch
from transformers import StoppingCriteria, StoppingCriteriaList, TextStreamer

from regiongpt.api import RegionGPT
from regiongpt.processing import EncodedSample
from regiongpt.serve.schemas import ServerSettings


@dataclass(frozen=True)
class Sampling:
    max_tokens: int
    temperature: float = 0.0
    top_p: Optional[float] = None

    def kwargs(self) -> dict[str, Any]:
        if self.temperature <= 0:
            return {"do_sample": False}
        extra = {"top_p": self.top_p} if self.top_p is not None else {}
        return {"do_sample": True, "temperature": self.temperature, **extra}


@dataclass
class Result:
    text: str
    finish_reason: str  # "stop" | "length"
    prompt_tokens: int
    completion_tokens: int


@dataclass
class Job:
    """One request: its encoded sample, the key of its image, how to sample, where answers go."""

    sample: EncodedSample
    image_key: str
    sampling: Sampling
    future: asyncio.Future
    stream: Optional[asyncio.Queue] = None  # ("start"|"text"|"done"|"error", payload) events
    cancelled: threading.Event = field(default_factory=threading.Event)


class _RowLimits(StoppingCriteria):
    """Stops row ``i`` after ``limits[i]`` new tokens, or at once when its job is cancelled."""

    def __init__(self, limits: list[int], cancelled: list[threading.Event]) -> None:
        self.limits, self.cancelled = limits, cancelled

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **kwargs) -> torch.Tensor:
        # Generation from inputs_embeds: input_ids hold only the new tokens.
        done = [
            input_ids.shape[1] >= limit or flag.is_set() for limit, flag in zip(self.limits, self.cancelled)
        ]
        return torch.tensor(done, dtype=torch.bool, device=input_ids.device)


class _CallbackStreamer(TextStreamer):
    """Hands finalized text pieces to ``emit``, stripped like the final answer (no leading or
    trailing whitespace) and cut at the first of ``stops``, so the pieces join to exactly the
    non-streamed text. Text that may be the start of a stop string is held back until it is not."""

    def __init__(self, tokenizer, emit: Callable[[str], None], stops: Sequence[str] = ()) -> None:
        super().__init__(tokenizer, skip_prompt=True, skip_special_tokens=True)
        self.emit, self.started, self.held = emit, False, ""
        self.stops, self.stopped = [s for s in stops if s], False

    def on_finalized_text(self, text: str, stream_end: bool = False) -> None:
        if self.stopped:
            return
        text = self.held + text
        if not self.started:
            text = text.lstrip()
        cuts = [text.find(stop) for stop in self.stops if stop in text]
        if cuts:
            text, self.stopped = text[: min(cuts)], True
        body = text.rstrip()
        if not self.stopped and not stream_end:  # hold back a possible start of a stop string
            partial = max(
                (k for stop in self.stops for k in range(1, len(stop)) if body.endswith(stop[:k])), default=0
            )
            body = body[: len(body) - partial].rstrip()
        self.held = text[len(body) :]
        if body:
            self.started = True
            self.emit(body)


def run_group(engine: RegionGPT, jobs: list[Job], streamer: Optional[TextStreamer] = None) -> list[Result]:
    """Generate for jobs that share sampling settings in one batched call (images may differ)."""
    processor = engine.processor
    tokenizer = processor.tokenizer
    keys = list(dict.fromkeys(job.image_key for job in jobs))
    image_of = torch.tensor([keys.index(job.image_key) for job in jobs], dtype=torch.long)
    first_row = [next(i for i, job in enumerate(jobs) if job.image_key == key) for key in keys]
    batch = processor.collate([job.sample for job in jobs], padding_side="left")
    batch.pop("labels")
    batch["pixel_values"] = batch["pixel_values"][first_row]
    batch["region_image_index"] = image_of[batch["region_image_index"]]
    batch["image_index"] = image_of
    batch = {name: value.to(engine.device) for name, value in batch.items()}
    limits = [job.sampling.max_tokens for job in jobs]
    end_ids = processor.end_token_ids  # end of sequence + stop-string tokens (e.g. GPT4RoI's "###")
    eos_ids = set(end_ids if isinstance(end_ids, list) else [end_ids])
    with torch.inference_mode():
        out = engine.model.generate(
            **batch,
            max_new_tokens=max(limits),
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=end_ids,
            streamer=streamer,
            stopping_criteria=StoppingCriteriaList([_RowLimits(limits, [job.cancelled for job in jobs])]),
            **jobs[0].sampling.kwargs(),
        )
    results = []
    for row, job, limit in zip(out.tolist(), jobs, limits):
        row = row[:limit]
        stop = next((i for i, token in enumerate(row) if token in eos_ids), None)
        used = row if stop is None else row[: stop + 1]
        results.append(
            Result(
                processor.decode(used),
                "length" if stop is None else "stop",
                len(job.sample.input_ids),
                len(used),
            )
        )
    return results


class Batcher:
    """Owns the queue, the dispatcher task and the single model thread."""

    def __init__(self, engine: RegionGPT, settings: ServerSettings) -> None:
        self.engine, self.settings = engine, settings
        self.batch_sizes: deque[int] = deque(maxlen=1000)  # recent batch sizes, for tests and metrics
        self._queue: Optional[asyncio.Queue[Job]] = None
        self._task: Optional[asyncio.Task] = None
        self._executor: Optional[ThreadPoolExecutor] = None
        self._loop: Optional[asyncio.AbstractEventLoop] = None

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._queue = asyncio.Queue()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="regiongpt-model")
        self._task = asyncio.create_task(self._dispatch())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)

    async def submit(self, job: Job) -> None:
        if self._queue is None:
            raise RuntimeError("the batcher is not running (start() it inside the event loop)")
        await self._queue.put(job)

    async def _dispatch(self) -> None:
        assert self._queue is not None and self._loop is not None
        while True:
            batch = [await self._queue.get()]
            if self.settings.batch_wait_s > 0:
                await asyncio.sleep(self.settings.batch_wait_s)
            while len(batch) < self.settings.max_batch_size and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            batch = [job for job in batch if not job.cancelled.is_set() and not job.future.done()]
            if batch:
                self.batch_sizes.append(len(batch))
                await self._loop.run_in_executor(self._executor, self._run, batch)

    # ------------------------------------------------------------------ in the model thread
    def _post(self, callback: Callable, *args: Any) -> None:
        assert self._loop is not None
        self._loop.call_soon_threadsafe(callback, *args)

    def _event(self, job: Job, kind: str, payload: Any = None) -> None:
        if job.stream is not None:
            self._post(job.stream.put_nowait, (kind, payload))

    def _settle(self, job: Job, result: Optional[Result], error: Optional[BaseException]) -> None:
        def settle() -> None:
            if job.future.done():
                return
            if error is not None:
                job.future.set_exception(error)
            else:
                job.future.set_result(result)

        self._post(settle)
        self._event(job, "error" if error is not None else "done", error if error is not None else result)

    def _run(self, batch: list[Job]) -> None:
        groups: dict[tuple, list[Job]] = {}
        for job in batch:
            key = (
                ("stream", id(job))
                if job.stream is not None
                else (job.sampling.temperature, job.sampling.top_p)
            )
            groups.setdefault(key, []).append(job)
        for jobs in groups.values():
            streamer = None
            if jobs[0].stream is not None:
                job = jobs[0]
                streamer = _CallbackStreamer(
                    self.engine.processor.tokenizer,
                    lambda text, job=job: self._event(job, "text", text),
                    self.engine.processor.stop_strings,
                )
            for job in jobs:
                self._event(job, "start")
            try:
                results = run_group(self.engine, jobs, streamer)
            except Exception as error:  # reported to each waiting request
                for job in jobs:
                    self._settle(job, None, error)
                continue
            for job, result in zip(jobs, results):
                self._settle(job, result, None)
