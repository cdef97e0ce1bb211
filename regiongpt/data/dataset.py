"""A lazy map-style dataset over canonical JSONL files and the collator that pads batches."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from regiongpt.data.augment import Sample, apply_all
from regiongpt.data.format import Record, parse_json_line, parse_record
from regiongpt.imaging import load_image
from regiongpt.processing import IGNORE_INDEX, EncodedSample, RegionGPTProcessor

logger = logging.getLogger(__name__)


class DataError(ValueError):
    """A data file is missing or empty, or a record in it is malformed (the message names it)."""


class RegionDataset(Dataset):
    """Indexes line offsets once; each item reads, validates and processes one record.

    ``root``: folder image/mask paths are relative to (default: the JSONL file's folder).
    A malformed record raises ValueError naming ``file:line``; with ``skip_invalid`` it is logged
    (and listed in ``skipped``) and the next record is returned instead."""

    def __init__(
        self,
        path: str | Path,
        processor: RegionGPTProcessor,
        root: str | Path | None = None,
        max_samples: int | None = None,
        augment: Sequence[str] = (),
        seed: int = 0,
        skip_invalid: bool = False,
    ) -> None:
        self.path = Path(path)
        self.skip_invalid = skip_invalid
        self.skipped: list[str] = []  # "file:line: reason" of each record skipped (this process)
        self.augment, self.seed, self.draws = list(augment), seed, 0
        if not self.path.is_file():
            raise DataError(f"data file not found: {self.path}")
        self.root = Path(root) if root is not None else self.path.parent
        self.processor = processor
        self.offsets: list[tuple[int, int]] = []  # (byte offset, line number)
        with self.path.open("rb") as handle:
            offset = 0
            for number, line in enumerate(handle, start=1):
                if line.strip():
                    self.offsets.append((offset, number))
                offset += len(line)
                if max_samples is not None and len(self.offsets) >= max_samples:
                    break
        if not self.offsets:
            raise DataError(f"{self.path}: the file holds no records")

    def __len__(self) -> int:
        return len(self.offsets)

    def record(self, index: int) -> Record:
        offset, number = self.offsets[index]
        with self.path.open("rb") as handle:
            handle.seek(offset)
            line = handle.readline()
        try:
            return parse_record(parse_json_line(line))
        except ValueError as error:
            raise DataError(f"{self.path}:{number}: {error}") from None

    def __getitem__(self, index: int) -> EncodedSample:
        if not self.skip_invalid:
            return self.encode(index)
        for step in range(len(self)):
            try:
                return self.encode((index + step) % len(self))
            except ValueError as error:
                if str(error) not in self.skipped:
                    self.skipped.append(str(error))
                    logger.warning("skipping invalid record %s", error)
        raise DataError(f"{self.path}: no valid record ({len(self.skipped)} skipped, e.g. {self.skipped[0]})")

    def encode(self, index: int) -> EncodedSample:
        """Record ``index`` read, validated, augmented and processed (ValueError naming file:line)."""
        record = self.record(index)
        _, number = self.offsets[index]
        try:
            image = load_image(self.root / record.image)
            regions = record.load_regions(self.root, image.size)
            conversations = record.conversations
            if self.augment:
                self.draws += 1
                rng = np.random.default_rng([self.seed, index, self.draws])
                sample = apply_all(Sample(image, regions, conversations), self.augment, rng)
                image, regions, conversations = sample.image, sample.regions, sample.conversations
            return self.processor.encode(conversations, image, regions)
        except ValueError as error:
            raise DataError(f"{self.path}:{number}: {error}") from None


LOSS_AVERAGES = ("token", "sample")


def check_loss_average(value: str) -> str:
    """``value`` if it is one of :data:`LOSS_AVERAGES`; otherwise a ValueError naming it."""
    if value not in LOSS_AVERAGES:
        raise ValueError(f"loss_average must be one of {'/'.join(LOSS_AVERAGES)}, got {value!r}")
    return value


def sample_loss_weights(labels: torch.Tensor) -> torch.Tensor:
    """``(B, L)`` loss weights that give each sample's answer the same weight, whatever its length.

    A sample with ``n`` target tokens (``labels[:, 1:]`` not ignored: the tokens the next-token
    loss predicts) gets ``mean_n / n`` on each of them, ``mean_n`` the mean over the samples that
    have any; so the weights sum to the batch's target-token count, and the token-normalised loss
    becomes the mean over samples of each sample's mean token loss. Under gradient accumulation
    (or several processes) the loss is divided by the accumulated token count, so each
    micro-batch still weighs by its token count: the balance is struck within a micro-batch. A
    multi-turn sample's answers share one sample's weight. Column 0 is never a target."""
    targets = labels[:, 1:] != IGNORE_INDEX
    per_sample = targets.sum(dim=1, keepdim=True).float()
    answered = per_sample > 0
    mean_count = per_sample.sum() / answered.sum().clamp(min=1)
    weights = torch.zeros(labels.shape, dtype=torch.float32, device=labels.device)
    weights[:, 1:] = targets * (mean_count / per_sample.clamp(min=1))
    return weights


class Collator:
    """Pads :class:`EncodedSample` lists into model batches (right padding for training).

    ``loss_average``: ``"token"`` (every answer token weighs the same, so long captions dominate)
    or ``"sample"`` (every sample's answer weighs the same: adds ``loss_weights``, see
    :func:`sample_loss_weights`)."""

    def __init__(self, processor: RegionGPTProcessor, loss_average: str = "token") -> None:
        self.processor = processor
        self.loss_average = check_loss_average(loss_average)

    def __call__(self, samples: list[EncodedSample]) -> dict[str, Any]:
        batch = self.processor.collate(samples, padding_side="right")
        if self.loss_average == "sample":
            batch["loss_weights"] = sample_loss_weights(batch["labels"])
        return batch
