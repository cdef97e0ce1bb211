"""The end-of-run summary, computed from the files (so it covers resumed runs too)."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from regiongpt.datagen.store import read_rows


@dataclass
class Summary:
    """Counts of kept and dropped regions (by reason), and example captions."""

    out: Path
    regions: int
    kept: int
    dropped: Counter[str] = field(default_factory=Counter)
    missing: int = 0  # input regions in neither file (0 after a complete run)
    samples: list[tuple[str, str]] = field(default_factory=list)  # (id, caption) kept
    drop_samples: dict[str, tuple[str, str]] = field(default_factory=dict)  # reason -> (id, caption)
    repaired_bytes: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "out": str(self.out),
            "regions": self.regions,
            "kept": self.kept,
            "dropped": dict(self.dropped),
            "missing": self.missing,
            "samples": [{"id": i, "caption": c} for i, c in self.samples],
            "drop_samples": {r: {"id": i, "caption": c} for r, (i, c) in self.drop_samples.items()},
        }

    def format(self) -> str:
        lines = [
            f"{self.regions} regions: {self.kept} kept, {sum(self.dropped.values())} dropped"
            + (f", {self.missing} not done" if self.missing else "")
            + f" -> {self.out}"
        ]
        if self.repaired_bytes:
            lines.append(f"cut a torn last line ({self.repaired_bytes} bytes) left by an interrupted run")
        if self.dropped:
            reasons = ", ".join(f"{reason}: {count}" for reason, count in self.dropped.most_common())
            lines.append(f"dropped by reason: {reasons}")
        if self.samples:
            lines.append("sample captions:")
            lines += [f"  {i}: {_short(c)}" for i, c in self.samples]
        if self.drop_samples:
            lines.append("sample drops:")
            lines += [f"  [{r}] {i}: {_short(c) or '(empty)'}" for r, (i, c) in self.drop_samples.items()]
        return "\n".join(lines)


def summarize(out: Path, rejected: Path, ids: set[str], repaired: int = 0, n_samples: int = 3) -> Summary:
    """Read ``out`` and ``rejected`` back and count what they hold for the input ``ids``."""
    kept = [row for row in read_rows(out) if row.get("id") in ids]
    dropped = [row for row in read_rows(rejected) if row.get("id") in ids]
    summary = Summary(out, len(ids), len(kept), repaired_bytes=repaired)
    summary.missing = len(ids - {row.get("id") for row in kept + dropped})
    step = max(1, len(kept) // max(1, n_samples))
    summary.samples = [(str(row["id"]), caption_of(row)) for row in kept[::step][:n_samples]]
    for row in dropped:
        meta = row.get("meta") or {}
        reason = str(meta.get("drop_reason", "unknown"))
        summary.dropped[reason] += 1
        if reason not in summary.drop_samples:
            summary.drop_samples[reason] = (str(row.get("id")), caption_of(row) or meta.get("error", ""))
    return summary


def caption_of(row: dict[str, Any]) -> str:
    """The answer (last turn) of a record row."""
    turns = row.get("conversations") or []
    return str(turns[-1].get("value", "")) if turns and isinstance(turns[-1], dict) else ""


def _short(text: str, limit: int = 160) -> str:
    text = json.dumps(text, ensure_ascii=False)[1:-1]
    return text if len(text) <= limit else text[: limit - 3] + "..."
