"""``regiongpt datagen``: the typer command (mounted by :mod:`regiongpt.cli`).

User errors print one ``error: ...`` line on stderr and exit 2."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from regiongpt.cli_options import DTYPE_CHOICES

Flag = typer.Option


def _fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(2)


def datagen_command(
    teacher: Annotated[str, Flag(help="openai:URL:MODEL, local:MODEL, offline or py:MODULE:FACTORY.")],
    out: Annotated[
        Path,
        Flag(help="Output JSONL (resumed when it exists); side files OUT.rejected.jsonl, OUT.global.jsonl."),
    ],
    images: Annotated[
        Optional[Path], Flag(help="Image folder (paths in --coco/--regions are relative to it).")
    ] = None,
    coco: Annotated[Optional[Path], Flag(help="COCO/LVIS-style instances json with the regions.")] = None,
    regions: Annotated[Optional[Path], Flag(help="Canonical region JSONL with the regions.")] = None,
    geometry: Annotated[str, Flag(help="COCO regions as 'mask' (polygon/RLE) or 'box'.")] = "mask",
    include_crowd: Annotated[bool, Flag("--include-crowd", help="Caption COCO crowd regions too.")] = False,
    limit: Annotated[Optional[int], Flag(min=1, help="Caption only the first N regions.")] = None,
    context: Annotated[
        float, Flag(min=0.0, help="Crop margin per side, as a fraction of the region's size.")
    ] = 0.25,
    max_new_tokens: Annotated[int, Flag(min=1, help="Token limit of each caption.")] = 96,
    workers: Annotated[int, Flag(min=1, help="Concurrent requests (openai teachers).")] = 4,
    rate_limit: Annotated[float, Flag(min=0.0, help="Requests per second, 0 = unlimited (openai).")] = 0.0,
    retries: Annotated[
        int, Flag(min=0, help="Retries on 429/5xx/timeouts, exponential backoff (openai).")
    ] = 5,
    timeout: Annotated[float, Flag(min=0.1, help="Seconds per request (openai).")] = 120.0,
    api_key: Annotated[Optional[str], Flag(envvar="OPENAI_API_KEY", help="Bearer key (openai).")] = None,
    endpoint: Annotated[
        str, Flag(help="auto, regiongpt (our server: 'regions' field) or vlm (box in text + crop image).")
    ] = "auto",
    send_crop: Annotated[
        bool, Flag("--send-crop/--no-send-crop", help="Send the crop as a second image (vlm endpoints).")
    ] = True,
    top_k: Annotated[int, Flag(min=1, help="ImageNet labels per crop (offline teacher).")] = 3,
    device: Annotated[str, Flag(help="Torch device of local/offline teachers.")] = "cpu",
    dtype: Annotated[str, Flag(help=f"Weights of a local: teacher: {DTYPE_CHOICES}.")] = "auto",
    min_words: Annotated[int, Flag(min=0, help="Drop captions with fewer words.")] = 5,
    max_words: Annotated[int, Flag(min=1, help="Drop captions with more words.")] = 150,
    max_repeat_ratio: Annotated[
        float, Flag(min=0.0, max=1.0, help="Drop captions whose share of repeated 3-grams is higher.")
    ] = 0.3,
    min_class_similarity: Annotated[
        float, Flag(help="Drop captions less similar to the known class name (MiniLM cosine); 0 = off.")
    ] = 0.15,
    dedupe: Annotated[
        bool, Flag("--dedupe/--no-dedupe", help="Drop captions identical to one already kept.")
    ] = True,
    progress: Annotated[bool, Flag("--progress/--no-progress", help="Progress bar on stderr.")] = True,
) -> None:
    """Generate detailed region captions with a teacher model (RegionGPT's data engine).

    Stage 1 captions each image, stage 2 each region from the image, its crop with context, its class name and the global caption. Captions are filtered; the output is canonical JSONL for `regiongpt train` (task 'detailed'). Killed at any point, the same command resumes. See docs/datagen.md.

    Examples:

      regiongpt datagen --coco instances_val2017.json --images val2017 --teacher offline --out gen.jsonl

      regiongpt datagen --regions regions.jsonl --teacher openai:http://127.0.0.1:8000/v1:default --out gen.jsonl
    """
    from regiongpt.datagen.filters import FilterConfig
    from regiongpt.datagen.pipeline import DatagenConfig, run_datagen
    from regiongpt.datagen.sources import coco_items, jsonl_items
    from regiongpt.datagen.teacher import TeacherError, TeacherOptions, make_teacher
    from regiongpt.modeling.pretrained import transformers_progress_bars

    if (coco is None) == (regions is None):
        raise _fail(
            "give the regions with exactly one of --coco FILE or --regions FILE (--images DIR is their image folder)"
        )
    if images is not None and not images.is_dir():
        raise _fail(f"--images {images}: not a folder")
    if geometry not in ("mask", "box"):
        raise _fail(f"--geometry must be 'mask' or 'box', got {geometry!r}")
    try:
        filters = FilterConfig(
            min_words=min_words,
            max_words=max_words,
            max_repeat_ratio=max_repeat_ratio,
            min_class_similarity=min_class_similarity,
            dedupe=dedupe,
        )
        if coco is not None:
            items = coco_items(coco, images, geometry=geometry, include_crowd=include_crowd)  # type: ignore[arg-type]
        else:
            items = jsonl_items(regions, images)  # type: ignore[arg-type]
        options = TeacherOptions(
            max_new_tokens=max_new_tokens,
            workers=workers,
            rate_limit=rate_limit,
            retries=retries,
            timeout=timeout,
            api_key=api_key,
            endpoint=endpoint,
            send_crop=send_crop,
            top_k=top_k,
            device=device,
            dtype=dtype,
        )
        with transformers_progress_bars(progress):  # the teacher's and the filters' model loads
            model = make_teacher(teacher, options)
            summary = run_datagen(
                items,
                model,
                DatagenConfig(out=out, context=context, filters=filters, progress=progress, limit=limit),
            )
    except TeacherError as error:
        raise _fail(f"{error}; rerun the same command to resume") from None
    except (FileNotFoundError, ValueError, OSError) as error:
        raise _fail(str(error)) from None
    typer.echo(summary.format())
