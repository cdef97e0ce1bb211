"""The server under hostile or unlucky clients (loopback only, tiny model, max_tokens <= 4).

What tests/serve already covers (API key 401, 413 body cap, pixel and region caps, remote URLs
refused by default) is not repeated; this adds: the loopback default and the 0.0.0.0 warning,
key edge cases, chunked bodies over the cap, bombs in images and masks, local paths and file://
URLs never read, text that would crash the tokenizer, clients that vanish mid-stream or mid-
request, timeouts, and the server answering normally after each."""

from __future__ import annotations

import base64
import inspect
import json
import socket
import struct
import time
import zlib

import httpx
import pytest
from transformers import StoppingCriteria, StoppingCriteriaList

from regiongpt.serve import commands
from regiongpt.serve.app import create_app
from regiongpt.serve.schemas import ServerSettings
from tests.serve.util import data_url, make_image, png_bytes, running_server, user_message

BOX = {"type": "box", "box": [5, 6, 50, 40]}
IMAGE = make_image(80, 60)


def body(text: str = "What is <region1>?", image=IMAGE, regions=(BOX,), **extra) -> dict:
    return {
        "model": "tiny",
        "max_tokens": 2,
        "messages": [user_message(text, image)],
        "regions": list(regions),
        **extra,
    }


def post(url: str, payload=None, **kwargs) -> httpx.Response:
    return httpx.post(f"{url}/v1/chat/completions", json=payload, timeout=60, **kwargs)


def healthy(url: str, **kwargs) -> None:
    """A normal request still gets a normal answer."""
    response = post(url, body(), **kwargs)
    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["message"]["content"] is not None


def png_claiming(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width x height`` pixels, with almost no pixel data."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return (
            struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 32))
        + chunk(b"IEND", b"")
    )


@pytest.fixture(scope="module")
def server(tiny_engine):
    settings = ServerSettings(max_body_bytes=300_000, max_image_pixels=100 * 100, max_tokens_limit=64)
    with running_server(create_app(tiny_engine, "tiny", settings)) as url:
        yield url


# ------------------------------------------------------------------------------------ binding
def test_loopback_is_the_default_everywhere():
    assert ServerSettings().host == "127.0.0.1"
    for command in (commands.serve_command, commands.ui_command):
        assert inspect.signature(command).parameters["host"].default == "127.0.0.1"


def test_serve_binds_loopback_and_warns_when_exposed(monkeypatch, tiny_engine):
    import typer
    import uvicorn
    from typer.testing import CliRunner

    bound: list[tuple[str, int]] = []
    monkeypatch.setattr(commands, "load_engine", lambda model, device="cpu", dtype="auto": tiny_engine)
    monkeypatch.setattr(
        uvicorn.Server, "run", lambda self, sockets=None: bound.extend(s.getsockname()[:2] for s in sockets)
    )
    app = typer.Typer()
    app.command("serve")(commands.serve_command)
    app.command("other")(lambda: None)
    result = CliRunner().invoke(app, ["serve", "--port", "0"])
    assert result.exit_code == 0, result.output
    assert bound[-1][0] == "127.0.0.1" and "warning" not in result.stderr
    result = CliRunner().invoke(app, ["serve", "--host", "0.0.0.0", "--port", "0"])
    assert bound[-1][0] == "0.0.0.0" and "warning: serving on 0.0.0.0 without --api-key" in result.stderr


# ------------------------------------------------------------------------------------ API key
def test_api_key_edge_cases(tiny_engine):
    with running_server(create_app(tiny_engine, "tiny", ServerSettings(api_key="s3cret"))) as url:
        for header in ("", "Bearer", "Basic s3cret", "Bearer s3cre", "Bearer s3cret2", "s3cret"):
            response = post(url, body(), headers={"Authorization": header} if header else {})
            assert response.status_code == 401, header
            assert response.json()["error"]["code"] == "invalid_api_key"
        assert httpx.get(f"{url}/v1/models", timeout=30).status_code == 401
        streamed = post(url, body(stream=True))
        assert streamed.status_code == 401  # streaming is no way around the key
        healthy(url, headers={"Authorization": "bearer s3cret"})  # the scheme is case-insensitive


# ------------------------------------------------------------------------------------ size caps
def test_chunked_body_over_the_cap_is_413(server):
    """No Content-Length: the cap counts the bytes actually received."""

    def chunks():
        yield b'{"model": "tiny", "messages": [{"role": "user", "content": "'
        for _ in range(40):
            yield b"x" * 10_000
        yield b'"}]}'

    response = httpx.post(
        f"{server}/v1/chat/completions",
        content=chunks(),
        headers={"content-type": "application/json"},
        timeout=60,
    )
    assert (
        response.status_code == 413
        and "exceeds the limit of 300000 bytes" in response.json()["error"]["message"]
    )
    healthy(server)


def test_decompression_bombs_in_images_and_masks_are_refused_undecoded(server):
    bomb = png_claiming(100_000, 100_000)
    started = time.monotonic()
    response = post(server, body(image=data_url(bomb)))
    assert response.status_code == 400 and "10000 pixels" in response.json()["error"]["message"]
    mask = {"type": "mask", "png_base64": base64.b64encode(bomb).decode()}
    response = post(server, body(regions=[mask]))
    assert response.status_code == 400 and "region 1's mask" in response.json()["error"]["message"]
    assert time.monotonic() - started < 10
    healthy(server)


def test_many_tags_and_huge_numbers_are_client_errors(server):
    cases = [
        body("<region1>" * 5000),  # one region referenced 5000 times: allowed, but bounded by the body cap
        body("What is <region1>?", regions=[{"type": "box", "box": [1e308, 0, 1.7e308, 5]}]),
        body("What is <region1>?", regions=[{"type": "point", "point": [10, 10], "radius": 1e-300}]),
        body("What is <region99999999999999999999999>?"),
        body("What is <region1>?", max_tokens=10**30),
    ]
    for payload in cases:
        response = post(server, payload)
        assert response.status_code < 500, response.text
    healthy(server)


def test_text_the_tokenizer_cannot_take_is_a_400(server):
    """A lone surrogate (legal in JSON as \\ud800) used to reach the tokenizer and answer 500."""
    raw = (
        b'{"model": "tiny", "max_tokens": 2, "messages": [{"role": "user", "content": ['
        + b'{"type": "image_url", "image_url": {"url": "'
        + data_url(IMAGE).encode()
        + b'"}},'
        + b'{"type": "text", "text": "What is \\ud800 <region1>?"}]}], "regions": [{"type": "box", "box": [5, 6, 50, 40]}]}'
    )
    response = httpx.post(
        f"{server}/v1/chat/completions", content=raw, headers={"content-type": "application/json"}, timeout=60
    )
    assert response.status_code == 400, response.text
    assert "invalid Unicode" in response.json()["error"]["message"]
    healthy(server)


# ------------------------------------------------------------------------------------ no local reads
@pytest.mark.parametrize("allow_remote", [False, True])
def test_local_paths_and_file_urls_are_never_read(tiny_engine, tmp_path, monkeypatch, allow_remote):
    secret = tmp_path / "secret.png"
    secret.write_bytes(png_bytes(IMAGE))
    opened: list[str] = []
    import builtins

    real_open = builtins.open

    def spy(file, *args, **kwargs):
        if str(secret) in str(file):
            opened.append(str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", spy)
    settings = ServerSettings(allow_remote_urls=allow_remote)
    with running_server(create_app(tiny_engine, "tiny", settings)) as url:
        for source in (str(secret), f"file://{secret}", f"FILE://{secret}", "../secret.png", "~/secret.png",
                       f"data:image/png;base64,{secret}", "ftp://127.0.0.1/secret.png", "gopher://127.0.0.1:70/"):  # fmt: skip
            response = post(url, body(image=source))
            assert response.status_code == 400, (source, response.text)
        mask = {"type": "mask", "png_base64": str(secret)}
        assert post(url, body(regions=[mask])).status_code == 400
    assert opened == [], opened


def test_remote_urls_make_no_connection_unless_allowed(tiny_engine, monkeypatch):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    listener.settimeout(0.5)
    port = listener.getsockname()[1]
    try:
        with running_server(create_app(tiny_engine, "tiny", ServerSettings())) as url:
            response = post(url, body(image=f"http://127.0.0.1:{port}/internal.png"))
            assert response.status_code == 400 and "remote image URLs are disabled" in response.text
            with pytest.raises(socket.timeout):
                listener.accept()  # nobody knocked
    finally:
        listener.close()


def _listener() -> tuple[socket.socket, int]:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    listener.settimeout(0.5)
    return listener, listener.getsockname()[1]


def test_allowed_remote_urls_never_reach_non_public_addresses(tiny_engine):
    listener, port = _listener()
    try:
        settings = ServerSettings(allow_remote_urls=True)
        with running_server(create_app(tiny_engine, "tiny", settings)) as url:
            for host in ("127.0.0.1", "localhost", "[::1]", "169.254.169.254", "10.0.0.1"):
                response = post(url, body(image=f"http://{host}:{port}/internal.png"))
                assert response.status_code == 400 and "non-public address" in response.text, host
            with pytest.raises(socket.timeout):
                listener.accept()  # nobody knocked
    finally:
        listener.close()


def test_remote_url_hosts_are_an_allow_list_checked_on_every_redirect(tiny_engine):
    import http.server
    import threading

    listener, other_port = _listener()

    class Redirect(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(302)
            self.send_header("Location", f"http://localhost:{other_port}/inside.png")
            self.end_headers()

        def log_message(self, *args):
            pass

    files = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Redirect)
    threading.Thread(target=files.serve_forever, daemon=True).start()
    settings = ServerSettings(allow_remote_urls=True, remote_url_hosts=("127.0.0.1",))
    try:
        with running_server(create_app(tiny_engine, "tiny", settings)) as url:
            response = post(url, body(image=f"http://127.0.0.1:{files.server_port}/cat.png"))
            assert response.status_code == 400, response.text
            assert (
                f"host 'localhost' (port {other_port}) is not one this server fetches from (127.0.0.1)"
                in (response.text)
            )
            response = post(url, body(image=f"http://localhost:{other_port}/cat.png"))
            assert response.status_code == 400 and "'localhost' (port" in response.text
            with pytest.raises(socket.timeout):
                listener.accept()  # the redirect target was never contacted
    finally:
        files.shutdown()
        listener.close()
    with pytest.raises(ValueError, match="needs allow_remote_urls"):
        ServerSettings(remote_url_hosts=("example.com",))


# ------------------------------------------------------------------------------------ vanishing clients, timeouts
def test_client_disconnect_mid_stream_cancels_generation(tiny_engine, monkeypatch):
    """A stream abandoned after its first piece stops generating; the next request is served."""
    steps: list[int] = []
    original = tiny_engine.model.generate

    def counting_generate(*args, **kwargs):
        (limits,) = kwargs["stopping_criteria"]  # the server's per-row limit and cancel flag

        class Count(StoppingCriteria):
            def __call__(self, input_ids, scores, **kw):
                steps.append(input_ids.shape[1])
                time.sleep(0.02)
                return limits(input_ids, scores)

        kwargs["stopping_criteria"] = StoppingCriteriaList([Count()])
        kwargs["min_new_tokens"] = 400  # no early end of sequence: only the cancel can stop it
        return original(*args, **kwargs)

    monkeypatch.setattr(tiny_engine.model, "generate", counting_generate)
    settings = ServerSettings(max_tokens_limit=400, batch_wait_s=0.0)
    app = create_app(tiny_engine, "tiny", settings)
    with running_server(app) as url:
        with (
            httpx.Client(timeout=60) as client,
            client.stream(
                "POST", f"{url}/v1/chat/completions", json=body(stream=True, max_tokens=400, temperature=1.0)
            ) as response,
        ):
            assert response.status_code == 200
            for line in response.iter_lines():
                if line.startswith("data: {") and json.loads(line[6:])["choices"][0]["delta"].get("content"):
                    break  # the first generated piece ... and hang up
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # the generation winds down after the disconnect
            before = len(steps)
            time.sleep(0.5)
            if len(steps) == before:
                break
        assert max(steps) < 400, "the abandoned generation ran to its full length"
        monkeypatch.setattr(tiny_engine.model, "generate", original)
        healthy(url)


def test_client_gone_before_the_answer_and_timeouts_leave_it_healthy(tiny_engine, monkeypatch):
    original = tiny_engine.model.generate

    def slow(*args, **kwargs):
        time.sleep(0.6)
        return original(*args, **kwargs)

    monkeypatch.setattr(tiny_engine.model, "generate", slow)
    with running_server(create_app(tiny_engine, "tiny", ServerSettings(request_timeout_s=0.3))) as url:
        with pytest.raises(httpx.ReadTimeout):  # the client gives up first
            httpx.post(f"{url}/v1/chat/completions", json=body(), timeout=0.1)
        response = post(url, body())  # generation alone takes 0.6 s
        assert response.status_code == 504 and response.json()["error"]["type"] == "timeout_error"
        response = post(url, body(stream=True))
        if response.status_code == 200:  # the model took it in time: the timeout arrives in the stream
            events = [line for line in response.text.splitlines() if line.startswith("data: ")]
            assert '"timeout_error"' in events[-2] and events[-1] == "data: [DONE]", events
        else:
            assert response.status_code == 504 and response.json()["error"]["type"] == "timeout_error"
    monkeypatch.setattr(tiny_engine.model, "generate", original)
    with running_server(create_app(tiny_engine, "tiny", ServerSettings(request_timeout_s=30))) as url:
        healthy(url)


def test_internal_errors_do_not_leak_details(tiny_engine, monkeypatch, caplog):
    def broken(*args, **kwargs):
        raise RuntimeError("cannot open /srv/models/secret-name/weights")

    monkeypatch.setattr(tiny_engine.processor, "encode", broken)
    with running_server(create_app(tiny_engine, "tiny", ServerSettings())) as url:
        response = post(url, body())
    assert response.status_code == 500 and response.json()["error"]["type"] == "server_error"
    assert "secret-name" not in response.text and "RuntimeError" in response.text
    assert "secret-name" in caplog.text  # ... but the operator sees them


def test_half_open_and_garbage_connections(server):
    """Raw sockets that send garbage, half a request, or nothing, then vanish."""
    host, port = server.removeprefix("http://").split(":")
    for payload in (b"", b"GARBAGE\r\n\r\n", b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{\"mo",
                    b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03"):  # fmt: skip
        with socket.create_connection((host, int(port)), timeout=5) as sock:
            sock.sendall(payload)
    healthy(server)
