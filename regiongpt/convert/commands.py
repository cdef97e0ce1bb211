"""``regiongpt convert ...``: bring public checkpoints into our format (see docs/weights.md).

User errors print one ``error: ...`` line to stderr and exit 2.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

convert_app = typer.Typer(
    help=(
        "Convert public checkpoints into regiongpt checkpoints (see docs/weights.md).\n\n"
        "Examples:\n\n"
        "  regiongpt convert llava-hf ./llava-1.5-7b-hf ./rg-llava --encoder regiongpt\n\n"
        "  regiongpt convert gpt4roi ./GPT4RoI-7B-delta ./rg-gpt4roi --base ./llama-7b "
        "--vision ./clip-vit-large-patch14"
    ),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(2)


def _run(convert, *args, **kwargs) -> None:
    from regiongpt.convert.weights import ConversionError

    try:
        out = convert(*args, **kwargs)
    except (ConversionError, FileNotFoundError) as error:
        raise _fail(str(error)) from None
    typer.echo(f"wrote {out}; load it with RegionGPT.from_pretrained({str(out)!r})", err=True)
    typer.echo(str(out))


DTYPE_HELP = "Weights' dtype: auto (the source's), float32, float16 or bfloat16."


@convert_app.command(
    "llava-hf",
    help=(
        "An HF-format LLaVA-1.5 checkpoint (e.g. llava-hf/llava-1.5-7b-hf) -> regiongpt: CLIP tower, "
        "projector and LM taken over unchanged, region encoder freshly initialised (train it before use).\n\n"
        "Example:\n\n  regiongpt convert llava-hf ./llava-1.5-7b-hf ./rg-llava --encoder gpt4roi"
    ),
)
def llava_hf(
    src: Annotated[
        Path, typer.Argument(help="Directory of the LLaVA checkpoint (config.json, weights, tokenizer).")
    ],
    out: Annotated[Path, typer.Argument(help="Output checkpoint directory (written atomically).")],
    encoder: Annotated[str, typer.Option(help="Region encoder to add: regiongpt | gpt4roi.")] = "regiongpt",
    dtype: Annotated[str, typer.Option(help=DTYPE_HELP)] = "auto",
    seed: Annotated[int, typer.Option(help="Seed for the new region encoder's initialisation.")] = 0,
) -> None:
    from regiongpt.convert.llava_hf import convert_llava_hf
    from regiongpt.convert.weights import ConversionError, parse_dtype

    if encoder not in ("regiongpt", "gpt4roi"):
        raise _fail(f"--encoder must be regiongpt or gpt4roi, got {encoder!r}")
    try:
        parsed = parse_dtype(dtype)
    except ConversionError as error:
        raise _fail(str(error)) from None
    _run(convert_llava_hf, src, out, encoder=encoder, dtype=parsed, seed=seed)


@convert_app.command(
    "gpt4roi",
    help=(
        "GPT4RoI's released checkpoint -> regiongpt (gpt4roi encoder). SRC is the delta "
        "(shilongz/GPT4RoI-7B-delta-V0) with --base LLaMA-1-7B, or already merged weights without --base.\n\n"
        "Example:\n\n  regiongpt convert gpt4roi ./GPT4RoI-7B-delta ./rg-gpt4roi --base ./llama-7b "
        "--vision ./clip-vit-large-patch14"
    ),
)
def gpt4roi(
    src: Annotated[Path, typer.Argument(help="GPT4RoI checkpoint directory (delta or merged).")],
    out: Annotated[Path, typer.Argument(help="Output checkpoint directory (written atomically).")],
    base: Annotated[
        Optional[Path], typer.Option(help="HF-format LLaMA-1-7B (32000 tokens) to add the delta to.")
    ] = None,
    vision: Annotated[
        Optional[Path],
        typer.Option(
            help="Local openai/clip-vit-large-patch14 (stored in the output); default: loaded by hub id."
        ),
    ] = None,
    dtype: Annotated[str, typer.Option(help=DTYPE_HELP)] = "auto",
    skip_base_check: Annotated[
        bool, typer.Option(help="Merge even if the base does not look like LLaMA-1-7B (e.g. LLaMA-2).")
    ] = False,
    group_norm_groups: Annotated[
        int, typer.Option(help="GroupNorm groups of the fuse convs (GPT4RoI: 64).")
    ] = 64,
) -> None:
    from regiongpt.convert.gpt4roi import convert_gpt4roi
    from regiongpt.convert.weights import ConversionError, parse_dtype

    try:
        parsed = parse_dtype(dtype)
    except ConversionError as error:
        raise _fail(str(error)) from None
    _run(
        convert_gpt4roi,
        src,
        out,
        base=base,
        vision=vision,
        dtype=parsed,
        group_norm_groups=group_norm_groups,
        skip_base_check=skip_base_check,
    )
