"""Helpers for the serving tests: a real uvicorn server in a thread, data URLs."""

from __future__ import annotations

import base64
import io
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
from PIL import Image


@contextmanager
def running_server(app) -> Iterator[str]:
    """Serve an ASGI app with uvicorn on a free loopback port; yields the base URL."""
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def make_image(width: int = 80, height: int = 60, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray((rng.random((height, width, 3)) * 255).astype(np.uint8))


def png_bytes(image: Image.Image, **save_kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", **save_kwargs)
    return buffer.getvalue()


def data_url(image: Image.Image | bytes, mime: str = "image/png") -> str:
    data = image if isinstance(image, bytes) else png_bytes(image)
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def user_message(text: str, image: Image.Image | bytes | str | None = None) -> dict:
    parts: list[dict] = []
    if image is not None:
        url = image if isinstance(image, str) else data_url(image)
        parts.append({"type": "image_url", "image_url": {"url": url}})
    parts.append({"type": "text", "text": text})
    return {"role": "user", "content": parts}
