"""Typer commands ``serve``, ``ui`` and ``chat`` (mounted on the ``regiongpt`` CLI).

User errors exit 2 with one ``error: ...`` line on stderr. ``load_engine`` is looked up at call
time, so tests replace it with a tiny model."""

from __future__ import annotations

import socket
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from regiongpt.cli_options import DtypeOption

if TYPE_CHECKING:  # the model (torch, transformers) loads when a command runs, not for --help
    from regiongpt.api import RegionGPT

ModelOption = Annotated[str, typer.Option(help="'default', a checkpoint directory or a hub id.")]
DeviceOption = Annotated[str, typer.Option(help="Torch device, e.g. cpu or cuda.")]


def _fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(2)


def load_engine(model: str, device: str = "cpu", dtype: str = "auto") -> RegionGPT:
    """Load a model for serving (replaced in tests)."""
    from regiongpt.api import RegionGPT

    return RegionGPT.from_pretrained(model, dtype=dtype, device=device)


def _engine(model: str, device: str, dtype: str) -> RegionGPT:
    try:
        return load_engine(model, device, dtype)
    except (FileNotFoundError, ValueError, OSError) as error:
        raise _fail(str(error)) from None


def _listen(host: str, port: int) -> socket.socket:
    """Bind now so a busy port is a clear error, not a traceback from the server."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as error:
        sock.close()
        raise _fail(f"cannot listen on {host}:{port}: {error.strerror or error}") from None
    return sock


def serve_command(
    model: ModelOption = "default",
    host: Annotated[
        str, typer.Option(help="Address to bind; 0.0.0.0 exposes the server to your network.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    api_key: Annotated[
        Optional[str],
        typer.Option(envvar="REGIONGPT_API_KEY", help="Require 'Authorization: Bearer KEY' on /v1 routes."),
    ] = None,
    allow_remote_urls: Annotated[
        bool,
        typer.Option(
            "--allow-remote-urls",
            help="Let image_url parts be http(s) URLs the server downloads (public addresses only, "
            "unless --remote-url-host names the hosts).",
        ),
    ] = False,
    remote_url_host: Annotated[
        Optional[list[str]],
        typer.Option(
            help="With --allow-remote-urls: download only from this host, any port, or HOST:PORT "
            "(repeatable; may be a private or loopback one)."
        ),
    ] = None,
    max_regions: Annotated[int, typer.Option(help="Most regions per request.")] = 32,
    max_batch_size: Annotated[int, typer.Option(help="Most requests answered in one batched pass.")] = 8,
    timeout: Annotated[float, typer.Option(help="Seconds before a request is answered 504.")] = 120.0,
    device: DeviceOption = "cpu",
    dtype: DtypeOption = "auto",
) -> None:
    """Serve a model over an OpenAI-compatible HTTP API: POST /v1/chat/completions, GET /v1/models, GET /health.

    Send the image as a data URL in an image_url part; regions go in a top-level "regions" list, and <regionK> in the text is regions[K-1]. Copy-paste curl and openai examples: docs/serving.md.

    Examples:

      regiongpt serve

      regiongpt serve --model runs/my-model --port 9000 --api-key s3cret

      curl -s localhost:8000/v1/models
    """
    import uvicorn

    from regiongpt.serve.app import create_app
    from regiongpt.serve.schemas import ServerSettings

    try:
        settings = ServerSettings(
            host=host,
            port=port,
            api_key=api_key,
            allow_remote_urls=allow_remote_urls,
            remote_url_hosts=tuple(remote_url_host or ()),
            max_regions=max_regions,
            max_batch_size=max_batch_size,
            request_timeout_s=timeout,
        )
    except ValueError as error:
        raise _fail(str(error)) from None
    sock = _listen(host, port)
    engine = _engine(model, device, dtype)
    if host not in ("127.0.0.1", "localhost", "::1") and api_key is None:
        typer.echo(
            f"warning: serving on {host} without --api-key: anyone who can reach it may use it", err=True
        )
    typer.echo(f"serving {model!r} on http://{host}:{port}/v1 (schema at /openapi.json)", err=True)
    server = uvicorn.Server(uvicorn.Config(create_app(engine, model, settings), log_level="info"))
    server.run(sockets=[sock])


def ui_command(
    model: ModelOption = "default",
    host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 7860,
    device: DeviceOption = "cpu",
    dtype: DtypeOption = "auto",
) -> None:
    """Open a local web page to draw boxes on an image and chat about them.

    Examples:

      regiongpt ui            (then open http://127.0.0.1:7860)

      regiongpt ui --model runs/my-model --port 8080
    """
    from regiongpt.serve.ui import launch_ui

    _listen(host, port).close()
    engine = _engine(model, device, dtype)
    typer.echo(f"web UI on http://{host}:{port}", err=True)
    launch_ui(engine, host=host, port=port)


def chat_command(
    image: Annotated[Path, typer.Argument(help="Image file (EXIF orientation is applied).")],
    box: Annotated[
        Optional[list[str]],
        typer.Option(
            help="Region X1,Y1,X2,Y2 in pixels (becomes <region1>, <region2>... in order); repeatable."
        ),
    ] = None,
    model: ModelOption = "default",
    max_new_tokens: Annotated[int, typer.Option(min=1, help="Answer length limit (tokens).")] = 128,
    device: DeviceOption = "cpu",
    dtype: DtypeOption = "auto",
) -> None:
    """Chat about an image in the terminal over several rounds (the image is encoded once).

    In the chat: /box X1,Y1,X2,Y2 adds a region and prints its tag, /regions lists them, /reset forgets history and regions, /quit leaves.

    Examples:

      regiongpt chat cat.jpg --box 10,20,120,200
      > What is <region1>?
      > /box 150,30,260,190
      > Is <region1> bigger than <region2>?

      printf 'What is <region1>?\\n' | regiongpt chat scene.png --box 0,0,50,50
    """
    from regiongpt.imaging import load_image
    from regiongpt.serve.chat import TerminalChat, parse_box, run_chat

    try:
        loaded = load_image(image)
        boxes = tuple(parse_box(b) for b in box or [])
    except ValueError as error:
        raise _fail(str(error)) from None
    engine = _engine(model, device, dtype)
    try:
        chat = TerminalChat(engine, loaded, boxes, max_new_tokens=max_new_tokens)
    except ValueError as error:
        raise _fail(str(error)) from None
    stdin = typer.get_text_stream("stdin")
    interactive = stdin.isatty()

    def read_line() -> str:
        if interactive:
            typer.echo("> ", nl=False)
        return stdin.readline()

    try:
        run_chat(chat, read_line, typer.echo)
    except KeyboardInterrupt:
        sys.exit(130)
