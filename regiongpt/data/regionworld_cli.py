"""``regiongpt data regionworld``: generate the RegionWorld data set from the command line."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated

import typer

from regiongpt.data.regionworld import RegionWorldConfig
from regiongpt.data.regionworld_generate import generate_regionworld
from regiongpt.tasks import Task


def parse_samples(text: str) -> dict[str, float]:
    """``"yes_no=1,detailed=0.25"`` -> ``{"yes_no": 1.0, "detailed": 0.25}``."""
    rates: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, value = part.partition("=")
        try:
            if not sep:
                raise ValueError(f"expected TASK=RATE, got {part!r}")
            rates[Task.parse(name.strip()).value] = float(value)
        except ValueError as error:
            raise typer.BadParameter(str(error), param_hint="--samples") from None
    return rates


def regionworld_command(
    out: Annotated[
        Path,
        typer.Option(
            "--out",
            help="Output folder, e.g. --out data/regionworld. "
            "Gets images/<split>/*.png, <split>.jsonl and info.json.",
        ),
    ],
    n: Annotated[
        int, typer.Option("--n", min=0, help="Training images, e.g. --n 20000 (about 5 samples each).")
    ],
    seed: Annotated[
        int, typer.Option("--seed", help="Seed; the same seed gives the same bytes, e.g. --seed 0.")
    ] = 0,
    n_val: Annotated[int, typer.Option("--n-val", min=0, help="Validation images, e.g. --n-val 500.")] = 500,
    n_test: Annotated[
        int, typer.Option("--n-test", min=0, help="Test images; 1000 gives >= 300 samples per task.")
    ] = 1000,
    n_comp: Annotated[
        int,
        typer.Option(
            "--n-comp",
            min=0,
            help="Images of test_comp, whose objects include held-out colour-shape pairs, e.g. --n-comp 500.",
        ),
    ] = 500,
    samples: Annotated[
        str,
        typer.Option(
            "--samples",
            help="Samples per image by task, overriding the defaults, "
            "e.g. --samples 'yes_no=1,detailed=0.25' (0.25 = one sample on a "
            "quarter of the images).",
        ),
    ] = "",
    mask_fraction: Annotated[
        float,
        typer.Option(
            "--mask-fraction",
            min=0.0,
            max=1.0,
            help="Share of regions given as RLE masks instead of boxes, e.g. --mask-fraction 0.25.",
        ),
    ] = 0.25,
    min_objects: Annotated[
        int, typer.Option("--min-objects", min=1, max=6, help="Fewest objects per image.")
    ] = 2,
    max_objects: Annotated[
        int, typer.Option("--max-objects", min=1, max=6, help="Most objects per image.")
    ] = 4,
    workers: Annotated[
        int,
        typer.Option(
            "--workers",
            min=1,
            help="Processes rendering images, e.g. --workers 2 (the output does not depend on it).",
        ),
    ] = 1,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print a JSON summary instead of one line.")
    ] = False,
    quiet: Annotated[
        bool, typer.Option("--quiet", "--no-progress", help="No progress bar on stderr.")
    ] = False,
) -> None:
    """Generate RegionWorld: procedural shapes with exact boxes and masks, samples for every task."""
    try:
        config = RegionWorldConfig(
            min_objects=min_objects,
            max_objects=max_objects,
            mask_fraction=mask_fraction,
            samples_per_image=parse_samples(samples),
        )
    except ValueError as error:
        raise typer.BadParameter(str(error)) from None
    start = time.perf_counter()
    try:
        info = generate_regionworld(
            out,
            n_train=n,
            n_val=n_val,
            n_test=n_test,
            n_comp=n_comp,
            seed=seed,
            config=config,
            workers=workers,
            progress=not quiet,
        )
    except ValueError as error:  # e.g. --out names a folder that is not a RegionWorld data set
        raise typer.BadParameter(str(error), param_hint="--out") from None
    seconds = time.perf_counter() - start
    if as_json:
        summary = {
            "out": str(out),
            "seconds": round(seconds, 2),
            **{k: info[k] for k in ("version", "seed", "splits")},
        }
        typer.echo(json.dumps(summary))
        return
    parts = ", ".join(
        f"{split} {s['images']} images / {s['samples']} samples" for split, s in info["splits"].items()
    )
    typer.echo(f"RegionWorld {info['version']} seed {seed} -> {out}: {parts} ({seconds:.1f} s)")
