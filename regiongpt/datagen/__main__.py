"""``python -m regiongpt.datagen ...``: the ``regiongpt datagen`` command on its own."""

from __future__ import annotations

import sys

import typer

from regiongpt.datagen.commands import datagen_command


def main() -> None:
    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    app.command()(datagen_command)
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
