"""Typer options shared by several commands (no torch import: the CLI starts fast)."""

from __future__ import annotations

from typing import Annotated

import typer

DTYPE_CHOICES = (
    "'auto' (bfloat16 on CUDA, float16 on GPUs without it, float32 on CPU), float32, bfloat16, float16"
)

DtypeOption = Annotated[str, typer.Option(help=f"Weights: {DTYPE_CHOICES}.")]
