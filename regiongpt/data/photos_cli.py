"""``regiongpt data photos``: region samples on bundled real photos, labelled by EfficientNet-Lite0."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated

import typer

from regiongpt.data.photos import PHOTO_SOURCES, PhotoRegionConfig, build_photo_regions


def photos_command(
    out: Annotated[
        Path,
        typer.Option(
            "--out",
            help="Output folder, e.g. --out data/photos. Gets images/, train.jsonl, "
            "test.jsonl and info.json.",
        ),
    ],
    seed: Annotated[int, typer.Option("--seed", help="Seed of the random boxes, e.g. --seed 0.")] = 0,
    boxes_per_photo: Annotated[
        int, typer.Option("--boxes-per-photo", min=1, help="Random boxes drawn on each photo.")
    ] = PhotoRegionConfig.boxes_per_photo,
    min_confidence: Annotated[
        float,
        typer.Option(
            "--min-confidence",
            min=0.0,
            max=1.0,
            help="Keep a box when the teacher's top-1 probability is at least this.",
        ),
    ] = PhotoRegionConfig.min_confidence,
    min_label_count: Annotated[
        int, typer.Option("--min-label-count", min=1, help="Drop labels with fewer training boxes (noise).")
    ] = PhotoRegionConfig.min_label_count,
    test_fraction: Annotated[
        float, typer.Option("--test-fraction", min=0.0, max=0.99, help="Share of boxes held out for test.")
    ] = PhotoRegionConfig.test_fraction,
    photos: Annotated[
        str,
        typer.Option(
            "--photos", help=f"Comma-separated photo names (default all): {', '.join(PHOTO_SOURCES)}."
        ),
    ] = "",
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the info as JSON instead of one line.")
    ] = False,
    quiet: Annotated[
        bool, typer.Option("--quiet", "--no-progress", help="No progress bar on stderr.")
    ] = False,
) -> None:
    """Distil EfficientNet-Lite0's ImageNet labels of random crops of real photos into category samples."""
    from regiongpt.datagen.offline_teacher import ImageNetLabeler

    try:
        config = PhotoRegionConfig(
            boxes_per_photo, min_confidence, min_label_count=min_label_count, test_fraction=test_fraction
        )
        names = [p.strip() for p in photos.split(",") if p.strip()] or None
        start = time.perf_counter()
        info = build_photo_regions(
            out, ImageNetLabeler(), seed=seed, config=config, photos=names, progress=not quiet
        )
    except ValueError as error:
        raise typer.BadParameter(str(error)) from None
    if as_json:
        typer.echo(json.dumps(info))
        return
    splits = ", ".join(f"{split} {n}" for split, n in info["splits"].items())
    typer.echo(
        f"{len(info['photos'])} photos, {info['boxes_drawn']} boxes -> {out}: {splits} samples, "
        f"{len(info['labels'])} labels ({time.perf_counter() - start:.1f} s)"
    )
