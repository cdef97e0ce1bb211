"""Writing a RegionWorld data set: images, one JSONL of samples per split, and ``info.json``.

The scenes come from :func:`regiongpt.data.regionworld.render_scene`, the samples from
:func:`regiongpt.data.regionworld_tasks.build_samples`; see :mod:`regiongpt.data.regionworld` for
the conventions and the seeding.
"""

from __future__ import annotations

import json
import sys
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from regiongpt.atomic import building_directory, write_text_atomic
from regiongpt.data.format import write_jsonl
from regiongpt.data.regionworld import (
    BRIEF_ORDER,
    GENERATOR_VERSION,
    HELD_OUT_PAIRS,
    IMAGE_SIZE,
    LARGE_MIN,
    SHAPES,
    SMALL_MAX,
    SPLIT_CODES,
    THEME_AFFINITY,
    THEMES,
    VOCAB,
    RegionWorldConfig,
    image_path,
    render_scene,
    shape_statistics,
    theme_probabilities,
    zipf_weights,
)
from regiongpt.data.regionworld_tasks import build_samples, effective_rates
from regiongpt.tasks import Task


def _generate_one(job: tuple[str, str, int, int, RegionWorldConfig]) -> list[dict[str, Any]]:
    out_dir, split, index, seed, config = job
    scene = render_scene(seed, split, index, config)
    scene.image.save(Path(out_dir) / image_path(split, index))
    rng = np.random.default_rng([seed, SPLIT_CODES[split], index, 1])
    return [record.to_json() for record in build_samples(scene, rng, config)]


def generate_regionworld(
    out_dir: str | Path,
    n_train: int,
    n_val: int = 500,
    n_test: int = 1000,
    n_comp: int = 500,
    seed: int = 0,
    config: RegionWorldConfig | None = None,
    workers: int = 1,
    progress: bool = True,
) -> dict[str, Any]:
    """Write ``images/<split>/*.png``, ``<split>.jsonl`` per split and ``info.json`` under
    ``out_dir``; returns the info dict. ``workers > 1`` renders in that many processes (same
    output). Splits with 0 images are skipped.

    The folder is built beside ``out_dir`` and replaces it only when complete, so an error or an
    interrupt leaves the previous data set (if any) whole; a non-empty ``out_dir`` that is not a
    RegionWorld folder is a ValueError."""
    config = config or RegionWorldConfig()
    with building_directory(out_dir, replaceable=_is_regionworld) as out:
        return _generate_into(out, n_train, n_val, n_test, n_comp, seed, config, workers, progress)


def _is_regionworld(folder: Path) -> bool:
    try:
        return json.loads((folder / "info.json").read_text())["generator"] == "regionworld"
    except (OSError, ValueError, KeyError, TypeError):
        return False


def _generate_into(
    out: Path,
    n_train: int,
    n_val: int,
    n_test: int,
    n_comp: int,
    seed: int,
    config: RegionWorldConfig,
    workers: int,
    progress: bool,
) -> dict[str, Any]:
    sizes = {"train": n_train, "val": n_val, "test": n_test, "test_comp": n_comp}
    splits: dict[str, Any] = {}
    executor = ProcessPoolExecutor(workers) if workers > 1 else None
    try:
        for split, count in sizes.items():
            if count <= 0:
                continue
            (out / "images" / split).mkdir(parents=True, exist_ok=True)
            jobs = [(str(out), split, i, seed, config) for i in range(count)]
            results = (
                executor.map(_generate_one, jobs, chunksize=32) if executor else map(_generate_one, jobs)
            )
            bar = tqdm(
                results,
                total=count,
                desc=f"regionworld {split}",
                unit="img",
                file=sys.stderr,
                disable=not progress,
            )
            records = [record for batch in bar for record in batch]
            write_jsonl(out / f"{split}.jsonl", records)
            per_task = {t.value: 0 for t in Task}
            for record in records:
                per_task[record["task"]] += 1
            splits[split] = {"images": count, "samples": len(records), "tasks": per_task}
    finally:
        if executor:
            executor.shutdown(cancel_futures=True)  # on an error or Ctrl-C, queued scenes are dropped
    stats = shape_statistics(config.min_objects, config.max_objects)
    info = {
        "generator": "regionworld",
        "version": GENERATOR_VERSION,
        "seed": seed,
        "image_size": [IMAGE_SIZE, IMAGE_SIZE],
        "splits": splits,
        "held_out_pairs": [list(pair) for pair in HELD_OUT_PAIRS],
        "vocab": {kind: list(words) for kind, words in VOCAB.items()},
        "brief_order": list(BRIEF_ORDER),
        "size_edges_px": {"small_below": SMALL_MAX, "large_from": LARGE_MIN},
        "themes": {
            name: {"shapes": list(THEMES[name]), "probability": round(p, 4)}
            for name, p in theme_probabilities().items()
        },
        "theme_affinity": THEME_AFFINITY,
        "shape_frequency": {s: round(float(p), 4) for s, p in zip(SHAPES, zipf_weights())},
        "shape_presence": {s: round(p, 4) for s, p in stats.presence.items()},
        "config": {**asdict(config), "samples_per_image": effective_rates(config)},
    }
    write_text_atomic(out / "info.json", json.dumps(info, indent=2) + "\n")
    return info
