"""Every client mistake answers a 4xx OpenAI-style error whose message names the problem."""

from __future__ import annotations

import base64

import httpx
import pytest

from regiongpt.serve.app import create_app
from regiongpt.serve.schemas import ServerSettings
from tests.serve.util import data_url, make_image, png_bytes, running_server, user_message

SETTINGS = ServerSettings(
    max_regions=3, max_image_pixels=100 * 100, max_body_bytes=200_000, max_tokens_limit=64
)
IMAGE = make_image(80, 60)
BOX = {"type": "box", "box": [5, 6, 50, 40]}


@pytest.fixture(scope="module")
def server(tiny_engine):
    with running_server(create_app(tiny_engine, "tiny", SETTINGS)) as url:
        yield url


def body(text="What is <region1>?", regions=(BOX,), image=IMAGE, **extra):
    return {
        "model": "tiny",
        "max_tokens": 2,
        "messages": [user_message(text, image)],
        "regions": list(regions),
        **extra,
    }


def post(server, payload=None, **kwargs):
    return httpx.post(f"{server}/v1/chat/completions", json=payload, timeout=60, **kwargs)


CASES = {
    "too many regions": (
        body("<region1> <region2> <region3> <region4>", [BOX] * 4),
        400,
        "too many regions: 4 given, at most 3",
    ),
    "image over the pixel cap": (
        body(image=make_image(120, 100)),
        400,
        "120x100 = 12000 pixels, over the limit of 10000",
    ),
    "malformed data URL": (body(image="data:image/png;base64"), 400, "malformed data URL"),
    "data URL not base64": (body(image="data:image/png;base64,@@@@"), 400, "not valid base64"),
    "data URL of text": (body(image="data:text/plain;base64,aGVsbG8="), 400, "'text/plain', not an image"),
    "undecodable image": (body(image=data_url(b"not a png at all")), 400, "cannot decode the image"),
    "tag without a region": (
        body("What is <region2>?"),
        400,
        "<region2> refers to a region that was not given",
    ),
    "region never referenced": (body("Hello", [BOX]), 400, "region 1 given but never referenced"),
    "box with three numbers": (
        body(regions=[{"type": "box", "box": [1, 2, 3]}]),
        400,
        "regions[0].box: List should have at least 4 items",
    ),
    "inverted box": (
        body(regions=[{"type": "box", "box": [50, 40, 5, 6]}]),
        400,
        "region 1: box [50.0, 40.0, 5.0, 6.0] is empty or inverted",
    ),
    "box outside the image": (
        body(regions=[{"type": "box", "box": [500, 500, 600, 600]}]),
        400,
        "lies entirely outside the 80x60 image",
    ),
    "point outside": (body(regions=[{"type": "point", "point": [100, 10]}]), 400, "outside the 80x60 image"),
    "unknown region type": (
        body(regions=[{"type": "polygon", "points": [1, 2]}]),
        400,
        "does not match any of the expected tags: 'box', 'mask', 'point'",
    ),
    "mask of the wrong size": (
        body(
            regions=[{"type": "mask", "png_base64": base64.b64encode(png_bytes(make_image(10, 10))).decode()}]
        ),
        400,
        "region 1: mask is 10x10 but the image is 80x60",
    ),
    "unsupported content part": (
        {
            "model": "tiny",
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "input_audio", "input_audio": {"data": "", "format": "wav"}},
                        {"type": "text", "text": "<region1>"},
                    ],
                }
            ],
            "regions": [BOX],
        },
        400,
        "messages[0].content[0]: unsupported content part type 'input_audio'",
    ),
    "no image": ({"model": "tiny", "messages": [{"role": "user", "content": "Hi"}]}, 400, "no image"),
    "two images": (
        {
            "model": "tiny",
            "messages": [user_message("<region1>", IMAGE), user_message("again", IMAGE)],
            "regions": [BOX],
        },
        400,
        "only one image per conversation",
    ),
    "last message not the user's": (
        {
            "model": "tiny",
            "messages": [user_message("<region1>", IMAGE), {"role": "assistant", "content": "a cat"}],
            "regions": [BOX],
        },
        400,
        "the last message must be a user message",
    ),
    "tool role": ({"model": "tiny", "messages": [{"role": "tool", "content": "x"}]}, 400, "messages[0].role"),
    "remote URL refused": (body(image="https://example.com/cat.png"), 400, "remote image URLs are disabled"),
    "n above 1": (body(n=2), 400, "only n=1 is supported"),
    "max_tokens over the limit": (
        body(max_tokens=65),
        400,
        "max_tokens 65 exceeds this server's limit of 64",
    ),
    "temperature out of range": (
        body(temperature=5),
        400,
        "temperature: Input should be less than or equal to 2",
    ),
    "unknown model": ({**body(), "model": "gpt-4o"}, 404, "model 'gpt-4o' is not served here"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_client_errors(server, case):
    payload, status, message = CASES[case]
    response = post(server, payload)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert message in error["message"], error
    assert error["type"] in ("invalid_request_error", "not_found_error")


def test_body_over_the_byte_cap_is_413(server):
    big = body(image=data_url(b"\x00" * 300_000))
    response = post(server, big)
    assert response.status_code == 413
    assert response.json()["error"]["message"] == "request body exceeds the limit of 200000 bytes"


def test_invalid_json_and_unknown_route(server):
    response = httpx.post(
        f"{server}/v1/chat/completions",
        content=b"{not json",
        timeout=30,
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 400 and "JSON" in response.json()["error"]["message"]
    response = httpx.get(f"{server}/v1/nothing-here", timeout=30)
    assert response.status_code == 404 and response.json()["error"]["message"] == "Not Found"


def test_missing_api_key_is_401(tiny_engine):
    with running_server(create_app(tiny_engine, "tiny", ServerSettings(api_key="k"))) as url:
        response = post(url, body())
        assert response.status_code == 401
        assert "Authorization: Bearer" in response.json()["error"]["message"]
        odd = post(url, body(), headers={"Authorization": "Bearer kö".encode("latin-1")})
        assert odd.status_code == 401  # a non-ASCII key is a wrong key, not a crash
        assert post(url, body(), headers={"Authorization": "Bearer k"}).status_code == 200


def test_server_still_answers_after_errors(server):
    for payload, _, _ in list(CASES.values())[:5]:
        post(server, payload)
    response = post(server, body())
    assert response.status_code == 200 and response.json()["choices"][0]["message"]["content"]


def test_failures_inside_the_model_thread(tiny_engine, monkeypatch):
    def broken(*args, **kwargs):
        raise ValueError("region placeholder count mismatch")

    monkeypatch.setattr(tiny_engine.model, "generate", broken)
    with running_server(create_app(tiny_engine, "tiny", SETTINGS)) as url:
        response = post(url, body())
        assert response.status_code == 400
        assert response.json()["error"]["message"] == "region placeholder count mismatch"
        with httpx.stream(
            "POST", f"{url}/v1/chat/completions", json=body(stream=True), timeout=30
        ) as streamed:
            lines = [line for line in streamed.iter_lines() if line]
        assert "generation failed: region placeholder count mismatch" in lines[-2]
        assert lines[-1] == "data: [DONE]"
