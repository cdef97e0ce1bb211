"""``regiongpt eval ...``: one command per benchmark (mounted by :mod:`regiongpt.cli`).

Every command writes ``predictions.jsonl``, ``metrics.json`` and ``report.md`` under ``--out``,
resumes from predictions already there, and prints the report. User errors exit 2 with one
``error: ...`` line on stderr.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from regiongpt.cli_options import DtypeOption

eval_app = typer.Typer(
    help=(
        "Evaluate a model on a benchmark; see docs/evaluation.md.\n\n"
        "Examples:\n\n"
        "  regiongpt eval regionworld --data data/regionworld --out runs/rw-test\n\n"
        "  regiongpt eval caption --model ckpt --data data/refcocog_val.jsonl --image-root data --out runs/cap\n\n"
        "  regiongpt eval rec --data data/refcocog_val.jsonl --mode likelihood --out runs/rec"
    ),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

Model = Annotated[str, typer.Option(help="'default', a checkpoint directory or a hub id.")]
Data = Annotated[Path, typer.Option(help="Canonical JSONL file of the benchmark.")]
Out = Annotated[Path, typer.Option(help="Output directory (resumed if it holds predictions).")]
Limit = Annotated[Optional[int], typer.Option(help="Evaluate only the first N questions.")]
BatchSize = Annotated[int, typer.Option(help="Questions answered per batch.")]
ImageRoot = Annotated[
    Optional[Path], typer.Option(help="Folder image paths are relative to (default: the data file's folder).")
]
Device = Annotated[str, typer.Option(help="'auto' (CUDA when available), 'cpu', 'cuda', 'cuda:1'...")]
Progress = Annotated[bool, typer.Option("--progress/--no-progress", help="Progress bar on stderr.")]


def _fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(2)


#: The options that change what a benchmark predicts (not only how many questions it asks).
PREDICTION_INPUTS = ("data", "split", "mode", "proposals", "max_proposals", "proposal_score")


def _run(
    evaluate: Callable[..., dict[str, Any]],
    model: str,
    device: str,
    dtype: str,
    out: Path,
    progress: bool,
    **kwargs: Any,
) -> None:
    """Call a benchmark with a lazily loaded model; print the report or one error line. The model,
    dtype, device, benchmark and :data:`PREDICTION_INPUTS` go to ``out/run.json`` when predicting
    starts; resuming predictions made with another of them (the device aside) is refused."""
    from regiongpt.api import dtype_name, resolve_dtype
    from regiongpt.eval.engine import ModelEngine, resolve_device
    from regiongpt.eval.harness import REPORT, check_run_settings, write_run_settings
    from regiongpt.modeling.pretrained import transformers_progress_bars

    try:
        device = resolve_device(device)
        precision = dtype_name(resolve_dtype(dtype, device))
        settings = {"model": model, "dtype": precision, "device": device}
        settings["benchmark"] = evaluate.__name__.removeprefix("evaluate_")
        for key in PREDICTION_INPUTS:  # resuming under other inputs would mix two runs
            value = kwargs.get(key)
            if value is not None:
                settings[key] = str(value.resolve()) if isinstance(value, Path) else str(value)
        check_run_settings(out, settings)
    except ValueError as error:
        raise _fail(str(error)) from None

    def load() -> ModelEngine:
        write_run_settings(out, settings)
        return ModelEngine.from_pretrained(model, device, dtype=precision)

    try:
        with transformers_progress_bars(progress):  # the model's load and the scorers' (MiniLM)
            evaluate(
                load,
                out=out,
                model_name=model,
                progress=progress,
                **kwargs,
            )
    except (FileNotFoundError, ValueError) as error:
        raise _fail(str(error)) from None
    typer.echo((out / REPORT).read_text(encoding="utf-8"), nl=False)
    typer.echo(f"predictions, metrics.json and report.md are in {out}", err=True)


@eval_app.command(help="RegionWorld: every task of a split, scored per task, size and POPE split.")
def regionworld(
    data: Annotated[Path, typer.Option(help="RegionWorld folder (from `regiongpt data regionworld`).")],
    out: Out,
    model: Model = "default",
    split: Annotated[str, typer.Option(help="test | test_comp | val")] = "test",
    task: Annotated[
        Optional[list[str]],
        typer.Option(
            help="Only this task (category, brief, detailed, relation, yes_no, choose_region, "
            "multiple_choice); repeatable (default: all)."
        ),
    ] = None,
    limit: Limit = None,
    batch_size: BatchSize = 16,
    device: Device = "auto",
    dtype: DtypeOption = "auto",
    progress: Progress = True,
) -> None:
    from regiongpt.eval.regionworld import SPLITS, evaluate_regionworld

    if split not in SPLITS:
        raise _fail(f"unknown RegionWorld split {split!r}; choose one of {list(SPLITS)}")
    if not (data / f"{split}.jsonl").is_file():
        raise _fail(f"no {split}.jsonl in {data}: generate it with `regiongpt data regionworld`")
    _run(
        evaluate_regionworld,
        model,
        device,
        dtype,
        out,
        data=data,
        split=split,
        tasks=task,
        limit=limit,
        batch_size=batch_size,
        progress=progress,
    )


@eval_app.command(help="Region captioning: BLEU-1..4, METEOR, ROUGE-L, CIDEr (SPICE if installed).")
def caption(
    data: Data,
    out: Out,
    model: Model = "default",
    image_root: ImageRoot = None,
    metric: Annotated[
        Optional[list[str]],
        typer.Option(help="bleu | meteor | rouge | cider | spice; repeatable (default: all)."),
    ] = None,
    limit: Limit = None,
    batch_size: BatchSize = 16,
    device: Device = "auto",
    dtype: DtypeOption = "auto",
    progress: Progress = True,
) -> None:
    from regiongpt.eval.caption import evaluate_caption
    from regiongpt.eval.scorers import CAPTION_METRICS

    _run(
        evaluate_caption,
        model,
        device,
        dtype,
        out,
        data=data,
        image_root=image_root,
        limit=limit,
        batch_size=batch_size,
        progress=progress,
        metrics=tuple(metric or CAPTION_METRICS),
    )


@eval_app.command(help="Region classification (COCO/LVIS): accuracy, GT-box mAP, semantic similarity/IoU.")
def classify(
    data: Data,
    out: Out,
    model: Model = "default",
    image_root: ImageRoot = None,
    instances: Annotated[Optional[Path], typer.Option(help="COCO/LVIS instances json: enables mAP.")] = None,
    semantic: Annotated[
        bool, typer.Option("--semantic/--no-semantic", help="Sentence-embedding metrics.")
    ] = True,
    limit: Limit = None,
    batch_size: BatchSize = 16,
    device: Device = "auto",
    dtype: DtypeOption = "auto",
    progress: Progress = True,
) -> None:
    from regiongpt.eval.classify import evaluate_classify

    _run(
        evaluate_classify,
        model,
        device,
        dtype,
        out,
        data=data,
        image_root=image_root,
        instances=instances,
        semantic=semantic,
        limit=limit,
        batch_size=batch_size,
        progress=progress,
    )


@eval_app.command(help="Referring expression comprehension: choose among candidate regions, acc@IoU 0.5.")
def rec(
    data: Data,
    out: Out,
    model: Model = "default",
    mode: Annotated[
        str,
        typer.Option(help="choose (ask for 'region K') | likelihood (rank by log p(expression | region))"),
    ] = "choose",
    image_root: ImageRoot = None,
    proposals: Annotated[
        Optional[Path], typer.Option(help="Detector boxes (COCO results json) as candidates.")
    ] = None,
    max_proposals: Annotated[
        Optional[int], typer.Option(help="Keep the N best-scoring proposals per image.")
    ] = None,
    proposal_score: Annotated[float, typer.Option(help="Drop proposals scoring below this.")] = 0.0,
    limit: Limit = None,
    batch_size: BatchSize = 16,
    device: Device = "auto",
    dtype: DtypeOption = "auto",
    progress: Progress = True,
) -> None:
    from regiongpt.eval.rec import evaluate_rec

    _run(
        evaluate_rec,
        model,
        device,
        dtype,
        out,
        data=data,
        mode=mode,
        image_root=image_root,
        proposals=proposals,
        max_proposals=max_proposals,
        proposal_score=proposal_score,
        limit=limit,
        batch_size=batch_size,
        progress=progress,
    )


@eval_app.command(help="POPE: accuracy, precision, recall, F1 and yes-ratio per split.")
def pope(
    data: Data,
    out: Out,
    model: Model = "default",
    image_root: ImageRoot = None,
    limit: Limit = None,
    batch_size: BatchSize = 16,
    device: Device = "auto",
    dtype: DtypeOption = "auto",
    progress: Progress = True,
) -> None:
    from regiongpt.eval.pope import evaluate_pope

    _run(
        evaluate_pope,
        model,
        device,
        dtype,
        out,
        data=data,
        image_root=image_root,
        limit=limit,
        batch_size=batch_size,
        progress=progress,
    )


@eval_app.command(help="VCR: Q->A, QA->R and Q->AR accuracy.")
def vcr(
    data: Data,
    out: Out,
    model: Model = "default",
    image_root: ImageRoot = None,
    limit: Limit = None,
    batch_size: BatchSize = 8,
    device: Device = "auto",
    dtype: DtypeOption = "auto",
    progress: Progress = True,
) -> None:
    from regiongpt.eval.vcr import evaluate_vcr

    _run(
        evaluate_vcr,
        model,
        device,
        dtype,
        out,
        data=data,
        image_root=image_root,
        limit=limit,
        batch_size=batch_size,
        progress=progress,
    )
