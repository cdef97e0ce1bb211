"""The OpenAI-compatible server with a tiny model: the official ``openai`` client against a real
uvicorn server, answers checked against the library's own ``Session.ask``."""

from __future__ import annotations

import base64
import concurrent.futures
import functools
import http.server
import io
import threading
import time

import httpx
import numpy as np
import pytest
from PIL import Image

from regiongpt.imaging import load_image
from regiongpt.regions import Mask, Point
from regiongpt.serve.app import create_app
from regiongpt.serve.schemas import ServerSettings
from tests.serve.util import make_image, png_bytes, running_server, user_message

openai = pytest.importorskip("openai")

BOX = [5.0, 6.0, 50.0, 40.0]


@pytest.fixture(scope="module")
def server(tiny_engine):
    with running_server(create_app(tiny_engine, "tiny", ServerSettings(batch_wait_s=0.0))) as url:
        yield url


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=f"{server}/v1", api_key="unused", max_retries=0, timeout=60)


def expected(engine, image, questions, regions_per_turn, max_tokens):
    """Answers of the library's own chat session (the reference)."""
    session = engine.session(image)
    return [session.ask(q, regions=r, max_new_tokens=max_tokens) for q, r in zip(questions, regions_per_turn)]


def test_chat_completion_matches_library(client, tiny_engine):
    image = make_image()
    answer = client.chat.completions.create(
        model="tiny",
        max_tokens=6,
        messages=[user_message("What is <region1>?", image)],
        extra_body={"regions": [{"type": "box", "box": BOX}]},
    )
    assert answer.object == "chat.completion" and answer.model == "tiny"
    choice = answer.choices[0]
    assert choice.message.role == "assistant"
    assert choice.message.content == expected(tiny_engine, image, ["What is <region1>?"], [[BOX]], 6)[0]
    assert choice.message.content.strip()
    assert choice.finish_reason == "length"  # random weights never say end-of-turn
    sample = tiny_engine.processor.encode(
        [{"role": "user", "content": "What is <region1>?"}], image, [BOX], add_generation_prompt=True
    )
    assert answer.usage.prompt_tokens == len(sample.input_ids)
    assert answer.usage.completion_tokens == 6
    assert answer.usage.total_tokens == len(sample.input_ids) + 6


def test_multi_turn_regions_numbered_across_turns(client, tiny_engine):
    image = make_image(seed=3)
    second = [30.0, 10.0, 70.0, 55.0]
    reference = expected(
        tiny_engine, image, ["What is <region1>?", "And <region2> next to <region1>?"], [[BOX], [second]], 5
    )
    answer = client.chat.completions.create(
        model="tiny",
        max_tokens=5,
        messages=[
            {"role": "system", "content": "ignored: the model has its own system prompt"},
            user_message("What is <region1>?", image),
            {"role": "assistant", "content": reference[0]},
            {"role": "user", "content": "And <region2> next to <region1>?"},
        ],
        extra_body={"regions": [{"type": "box", "box": BOX}, {"type": "box", "box": second}]},
    )
    assert answer.choices[0].message.content == reference[1]


def test_streaming_pieces_join_to_the_answer(client, tiny_engine):
    image = make_image(seed=5)
    kwargs = dict(
        model="tiny",
        max_tokens=8,
        messages=[user_message("Describe <region1>.", image)],
        extra_body={"regions": [{"type": "box", "box": BOX}]},
    )
    full = client.chat.completions.create(**kwargs).choices[0].message.content
    chunks = list(
        client.chat.completions.create(stream=True, stream_options={"include_usage": True}, **kwargs)
    )
    assert chunks[0].choices[0].delta.role == "assistant"
    pieces = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(pieces) >= 2, "the answer should arrive in several pieces"
    assert "".join(pieces) == full
    finals = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finals == ["length"]
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 8


def test_stream_ends_with_done(server):
    body = {
        "model": "tiny",
        "max_tokens": 3,
        "stream": True,
        "messages": [user_message("<region1>?", make_image())],
        "regions": [{"type": "box", "box": BOX}],
    }
    with httpx.stream("POST", f"{server}/v1/chat/completions", json=body, timeout=60) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in response.iter_lines() if line]
    assert lines[-1] == "data: [DONE]" and all(line.startswith("data: ") for line in lines)


def test_point_and_mask_regions(client, tiny_engine):
    image = make_image()
    mask = Image.new("L", image.size, 0)
    mask.paste(255, (10, 10, 40, 30))
    regions = [
        {"type": "point", "point": [20, 30]},
        {"type": "mask", "png_base64": base64.b64encode(png_bytes(mask)).decode()},
    ]
    answer = client.chat.completions.create(
        model="tiny",
        max_tokens=4,
        messages=[user_message("Compare <region1> with <region2>.", image)],
        extra_body={"regions": regions},
    )
    reference = expected(
        tiny_engine,
        image,
        ["Compare <region1> with <region2>."],
        [[Point(20, 30), Mask(np.asarray(mask) > 0)]],
        4,
    )
    assert answer.choices[0].message.content == reference[0]


def test_exif_orientation_defines_the_pixel_frame(client, tiny_engine):
    stored = make_image(80, 40, seed=7)  # shown upright as 40x80 (orientation 6 = rotate 90)
    exif = Image.Exif()
    exif[0x0112] = 6
    data = png_bytes(stored, exif=exif)
    box = [0.0, 50.0, 40.0, 80.0]  # only inside the transposed 40x80 frame
    answer = client.chat.completions.create(
        model="tiny",
        max_tokens=4,
        messages=[user_message("What is <region1>?", data)],
        extra_body={"regions": [{"type": "box", "box": box}]},
    )
    upright = load_image(Image.open(io.BytesIO(data)))
    assert upright.size == (40, 80)
    assert (
        answer.choices[0].message.content
        == expected(tiny_engine, upright, ["What is <region1>?"], [[box]], 4)[0]
    )


def test_models_health_openapi(client, server):
    assert [m.id for m in client.models.list().data] == ["tiny"]
    assert httpx.get(f"{server}/health").json() == {"status": "ok", "model": "tiny"}
    schema = httpx.get(f"{server}/openapi.json").json()
    assert "/v1/chat/completions" in schema["paths"] and "/v1/models" in schema["paths"]
    assert "regions" in schema["components"]["schemas"]["ChatCompletionRequest"]["properties"]


def test_concurrent_requests_are_batched_and_match_sequential(tiny_engine):
    images = [make_image(seed=11), make_image(seed=12)]
    jobs = [(images[k % 2], f"What is <region1>? ({k})", 3 + k) for k in range(4)]
    app = create_app(tiny_engine, "tiny", ServerSettings(batch_wait_s=0.5, max_batch_size=8))
    with running_server(app) as url:
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0, timeout=60)

        def ask(job):
            image, question, max_tokens = job
            return client.chat.completions.create(
                model="tiny",
                max_tokens=max_tokens,
                messages=[user_message(question, image)],
                extra_body={"regions": [{"type": "box", "box": BOX}]},
            )

        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            answers = list(pool.map(ask, jobs))
    assert max(app.state.batcher.batch_sizes) >= 2, list(app.state.batcher.batch_sizes)
    for (image, question, max_tokens), answer in zip(jobs, answers):
        assert (
            answer.choices[0].message.content
            == expected(tiny_engine, image, [question], [[BOX]], max_tokens)[0]
        )
        assert answer.usage.completion_tokens == max_tokens  # per-row limits are exact inside a batch


def test_timeout_answers_504(tiny_engine, monkeypatch):
    original = tiny_engine.model.generate

    def slow_generate(*args, **kwargs):
        time.sleep(1.0)
        return original(*args, **kwargs)

    monkeypatch.setattr(tiny_engine.model, "generate", slow_generate)
    app = create_app(tiny_engine, "tiny", ServerSettings(request_timeout_s=0.3))
    body = {
        "model": "tiny",
        "max_tokens": 2,
        "messages": [user_message("<region1>?", make_image())],
        "regions": [{"type": "box", "box": BOX}],
    }
    with running_server(app) as url:
        for stream in (False, True):
            response = httpx.post(f"{url}/v1/chat/completions", json={**body, "stream": stream}, timeout=30)
            assert response.status_code == 504
            assert "did not answer within 0.3 s" in response.json()["error"]["message"]


def test_api_key_and_remote_urls(tiny_engine):
    image_data = png_bytes(make_image())

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.end_headers()
            self.wfile.write(image_data)

        def log_message(self, *args):
            pass

    files = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=files.serve_forever, daemon=True).start()
    settings = ServerSettings(api_key="sesame", allow_remote_urls=True, remote_url_hosts=("127.0.0.1",))
    try:
        with running_server(create_app(tiny_engine, "tiny", settings)) as url:
            make = functools.partial(openai.OpenAI, base_url=f"{url}/v1", max_retries=0, timeout=60)
            with pytest.raises(openai.AuthenticationError, match="Bearer"):
                make(api_key="wrong").models.list()
            answer = make(api_key="sesame").chat.completions.create(
                model="tiny",
                max_tokens=3,
                messages=[
                    user_message("What is <region1>?", f"http://127.0.0.1:{files.server_port}/cat.png")
                ],
                extra_body={"regions": [{"type": "box", "box": BOX}]},
            )
            assert answer.choices[0].message.content
            assert httpx.get(f"{url}/health").status_code == 200  # health needs no key
    finally:
        files.shutdown()
