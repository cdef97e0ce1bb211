"""The ``regiongpt`` command. User errors exit 2 with one ``error: ...`` line on stderr."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from typer.core import TyperGroup

from regiongpt.cli_options import DtypeOption
from regiongpt.tasks import Task


class OneLineErrors(TyperGroup):
    """Reports usage errors (unknown option, missing argument, bad value) as one ``error:`` line."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode: bool = True, **extra):
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except typer.TyperException as error:  # click's ClickException family (typer vendors click)
            if type(error).__name__ == "NoArgsIsHelpError":  # help already printed: not an error
                sys.exit(0)
            exit_code = getattr(error, "exit_code", 1)
            ctx = getattr(error, "ctx", None)
            hint = f" (see '{ctx.command_path} --help')" if ctx is not None and exit_code == 2 else ""
            message = error.format_message() if hasattr(error, "format_message") else str(error)
            typer.echo(f"error: {message}{hint}", err=True)
            sys.exit(exit_code)
        except typer.Abort:
            typer.echo("aborted", err=True)
            sys.exit(130)
        sys.exit(code if isinstance(code, int) else 0)


app = typer.Typer(
    cls=OneLineErrors,
    help=(
        "Region-level vision-language models (RegionGPT, GPT4RoI).\n\n"
        "Examples:\n\n"
        "  regiongpt describe photo.jpg --box 10,20,120,200 --task category\n\n"
        "  regiongpt data regionworld --out data/regionworld --n 2000\n\n"
        "  regiongpt train recipes/default.yaml training.batch_size=8\n\n"
        "  regiongpt demo"
    ),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def fail(message: str) -> typer.Exit:
    """Print one error line and return the exit (raise it)."""
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(2)


def _numbers(text: str, count: int, flag: str) -> list[float]:
    parts = text.replace(" ", "").split(",")
    try:
        values = [float(p) for p in parts]
    except ValueError:
        raise fail(f"{flag} {text!r}: expected {count} comma-separated numbers") from None
    if len(values) != count:
        raise fail(f"{flag} {text!r}: expected {count} comma-separated numbers, got {len(values)}")
    return values


@app.command(
    help=(
        "Describe regions of an image with a model.\n\n"
        "Regions are numbered boxes first, then masks, then points, each in the order given; "
        "coordinates are pixel x1,y1,x2,y2 (floats allowed). For negative numbers write "
        "--box=-5,0,40,40.\n\n"
        "Examples:\n\n"
        "  regiongpt describe cat.jpg --box 10,20,120,200\n\n"
        "  regiongpt describe scene.png --box 0,0,50,50 --point 120,80 --task category --json\n\n"
        "  regiongpt describe scene.png --mask person.png --out annotated.png"
    )
)
def describe(
    image: Annotated[Path, typer.Argument(help="Image file (EXIF orientation is applied).")],
    box: Annotated[Optional[list[str]], typer.Option(help="Box X1,Y1,X2,Y2 in pixels; repeatable.")] = None,
    mask: Annotated[
        Optional[list[Path]], typer.Option(help="Mask PNG of the image's size; repeatable.")
    ] = None,
    point: Annotated[Optional[list[str]], typer.Option(help="Point X,Y in pixels; repeatable.")] = None,
    task: Annotated[str, typer.Option(help="category | brief | detailed")] = "brief",
    model: Annotated[str, typer.Option(help="'default', a checkpoint directory or a hub id.")] = "default",
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object instead of lines.")] = False,
    out: Annotated[
        Optional[Path], typer.Option(help="Write a copy of the image with numbered regions and answers.")
    ] = None,
    max_new_tokens: Annotated[
        Optional[int], typer.Option(min=1, help="Answer length limit (tokens; default: the task's).")
    ] = None,
    device: Annotated[str, typer.Option(help="Torch device, e.g. cpu or cuda.")] = "cpu",
    dtype: DtypeOption = "auto",
) -> None:
    from regiongpt.imaging import image_format_for, load_image, save_image_atomic
    from regiongpt.regions import Box, Mask, Point, region_to_json, validate_regions

    try:
        if out is not None:
            image_format_for(out)  # before the model runs: a bad name fails fast
        parsed_task = Task.parse(task)
        if parsed_task not in (Task.CATEGORY, Task.BRIEF, Task.DETAILED):
            raise ValueError(f"describe supports the tasks category, brief and detailed, not {task!r}")
        loaded = load_image(image)
        makers = [(f"--box {b}", lambda b=b: Box(*_numbers(b, 4, "--box"))) for b in box or []]
        makers += [(f"--mask {m}", lambda m=m: Mask.from_png(m)) for m in mask or []]
        makers += [(f"--point {p}", lambda p=p: Point(*_numbers(p, 2, "--point"))) for p in point or []]
        regions: list = []
        for index, (flag, make) in enumerate(makers, start=1):
            try:
                regions.append(make())
            except ValueError as error:
                raise ValueError(f"region {index} ({flag}): {error}") from None
        if not regions:
            raise ValueError("give at least one region: --box X1,Y1,X2,Y2, --mask FILE.png or --point X,Y")
        regions = validate_regions(regions, loaded.size)
    except ValueError as error:
        raise fail(str(error)) from None
    from regiongpt.api import RegionGPT

    try:
        engine = RegionGPT.from_pretrained(model, dtype=dtype, device=device)
    except (FileNotFoundError, ValueError) as error:
        raise fail(str(error)) from None
    answers = engine.describe(loaded, regions, task=parsed_task, max_new_tokens=max_new_tokens)
    if out is not None:
        from regiongpt.visualize import draw_regions

        save_image_atomic(draw_regions(loaded, regions, answers), out)
        typer.echo(f"annotated image written to {out}", err=True)
    if as_json:
        items = [
            {"index": k + 1, **region_to_json(r), "answer": a}
            for k, (r, a) in enumerate(zip(regions, answers))
        ]
        typer.echo(
            json.dumps({"image": str(image), "task": parsed_task.value, "model": model, "regions": items})
        )
    else:
        for k, answer in enumerate(answers, start=1):
            typer.echo(f"region{k}\t{answer}")


@app.command(
    help=(
        "Train a model from a YAML recipe; KEY=VALUE pairs override recipe entries.\n\n"
        "Examples:\n\n"
        "  regiongpt train recipes/default.yaml\n\n"
        "  regiongpt train recipes/default.yaml training.batch_size=4 stages.0.max_steps=50\n\n"
        "  accelerate launch --num_processes 8 -m regiongpt.cli train recipes/gpt4roi.yaml --resume"
    )
)
def train(
    recipe: Annotated[Path, typer.Argument(help="Recipe YAML file.")],
    overrides: Annotated[Optional[list[str]], typer.Argument(help="dotted key=value overrides")] = None,
    resume: Annotated[bool, typer.Option(help="Continue from the newest checkpoint in output_dir.")] = False,
) -> None:
    from regiongpt.data.dataset import DataError
    from regiongpt.train.recipe import load_recipe
    from regiongpt.train.trainer import build_from_recipe, run_recipe

    try:  # a bad recipe or override, a missing init_from model
        parsed = load_recipe(recipe, overrides or [])
        built = build_from_recipe(parsed)
    except (FileNotFoundError, ValueError) as error:
        raise fail(str(error)) from None
    try:  # missing or malformed data; any other error is a bug and keeps its traceback
        final = run_recipe(parsed, resume=resume, built=built)
    except (FileNotFoundError, DataError) as error:
        raise fail(str(error)) from None
    typer.echo(str(final))


data_app = typer.Typer(help="Make and convert region data sets (canonical JSONL).", no_args_is_help=True)
app.add_typer(data_app, name="data")


def _mount() -> None:
    """Attach the subcommands that live beside their code."""
    from regiongpt.data.converters.cli import app as convert_app
    from regiongpt.data.photos_cli import photos_command
    from regiongpt.data.regionworld_cli import regionworld_command

    data_app.command(
        "regionworld",
        help=(
            "Generate RegionWorld, our procedural region data set (deterministic per seed).\n\n"
            "Example: regiongpt data regionworld --out data/regionworld --n 3000 --seed 0"
        ),
    )(regionworld_command)
    data_app.command(
        "photos",
        help=(
            "Category samples on real photos bundled with scikit-image, scikit-learn and matplotlib, "
            "labelled by EfficientNet-Lite0's ImageNet label of each random crop (distillation).\n\n"
            "Example: regiongpt data photos --out data/photos --seed 0"
        ),
    )(photos_command)
    data_app.add_typer(convert_app, name="convert")
    from regiongpt.convert.commands import convert_app as weights_app
    from regiongpt.eval.commands import eval_app

    app.add_typer(eval_app, name="eval")
    from regiongpt.serve.commands import chat_command, serve_command, ui_command

    app.command("serve")(serve_command)
    app.command("ui")(ui_command)
    app.command("chat")(chat_command)
    from regiongpt.datagen.commands import datagen_command

    app.command("datagen")(datagen_command)
    app.add_typer(weights_app, name="convert")


@app.command(
    help=(
        "Run the embedded default model on bundled RegionWorld scenes and a real photo; prints the "
        "answers and writes an annotated PNG.\n\nExample: regiongpt demo --out demo.png"
    )
)
def demo(
    out: Annotated[Path, typer.Option(help="Where to write the annotated image.")] = Path("demo_output.png"),
    model: Annotated[str, typer.Option(help="'default' or a checkpoint directory.")] = "default",
) -> None:
    from regiongpt.demo import run_demo

    try:
        run_demo(model, out)
    except (FileNotFoundError, ValueError) as error:
        raise fail(str(error)) from None


_mount()


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
