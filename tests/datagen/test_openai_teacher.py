"""The openai teacher: retries, rate limit, request shape, and our own server on loopback."""

from __future__ import annotations

import json

import httpx
import pytest
from PIL import Image
from typer.testing import CliRunner

from regiongpt.datagen.filters import FilterConfig
from regiongpt.datagen.openai_teacher import OpenAITeacher, RateLimiter, backoff_delay
from regiongpt.datagen.pipeline import DatagenConfig, run_datagen, side_paths
from regiongpt.datagen.prompts import GLOBAL_PROMPT
from regiongpt.datagen.sources import coco_items
from regiongpt.datagen.teacher import RegionRequest, TeacherError, TeacherOptions
from regiongpt.regions import Box

MODELS = {"object": "list", "data": [{"id": "m", "object": "model", "created": 0, "owned_by": "someone"}]}


def completion(text: str) -> dict:
    return {
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
    }


def scripted(responses: list, seen: list):
    """A transport answering POSTs from ``responses`` (status, body) or raising exceptions."""

    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "GET":
            return httpx.Response(200, json=MODELS)
        seen.append(json.loads(request.content))
        step = responses.pop(0)
        if isinstance(step, Exception):
            raise step
        status, body = step
        return httpx.Response(status, json=body, headers={"retry-after": "0"} if status == 429 else {})

    return httpx.MockTransport(handler)


def request(image: Image.Image) -> RegionRequest:
    box = Box(10, 10, 40, 30)
    return RegionRequest(
        image=image,
        region=box,
        box=box,
        crop=image.crop((5, 5, 45, 35)),
        class_name="cat",
        position="in the center",
        global_caption="A room.",
    )


def test_retries_on_429_5xx_and_timeouts_then_succeeds():
    seen, sleeps = [], []
    responses = [
        (429, {"error": {"message": "slow down"}}),
        (503, {}),
        httpx.ReadTimeout("too slow"),
        (200, completion("A cat sits.")),
    ]
    teacher = OpenAITeacher(
        "http://x/v1", "m", TeacherOptions(retries=3), scripted(responses, seen), sleeps.append
    )
    caption = teacher.global_caption(Image.new("RGB", (64, 48)))
    assert (
        caption.text == "A cat sits." and caption.meta["attempts"] == 4 and caption.meta["endpoint"] == "vlm"
    )
    assert sleeps[0] == 0.0 and len(sleeps) == 3  # Retry-After honoured, then backoff
    assert seen[0]["messages"][0]["content"][-1] == {"type": "text", "text": GLOBAL_PROMPT}
    assert seen[0]["messages"][0]["content"][0]["image_url"]["url"].startswith("data:image/jpeg;base64,")


def test_gives_up_after_retries_and_client_errors_are_permanent():
    teacher = OpenAITeacher(
        "http://x/v1", "m", TeacherOptions(retries=1), scripted([(500, {}), (502, {})], []), lambda s: None
    )
    with pytest.raises(TeacherError, match="gave up after 2 attempts") as error:
        teacher.global_caption(Image.new("RGB", (8, 8)))
    assert not error.value.permanent
    teacher = OpenAITeacher(
        "http://x/v1", "m", TeacherOptions(), scripted([(400, {"error": {"message": "bad box"}})], [])
    )
    with pytest.raises(TeacherError, match="bad box") as error:
        teacher.global_caption(Image.new("RGB", (8, 8)))
    assert error.value.permanent


def test_vlm_endpoint_gets_box_text_and_crop_but_no_regions_field():
    seen = []
    teacher = OpenAITeacher("http://x/v1", "m", TeacherOptions(), scripted([(200, completion("ok"))], seen))
    teacher.region_caption(request(Image.new("RGB", (64, 48))))
    content = seen[0]["messages"][0]["content"]
    assert "regions" not in seen[0] and [p["type"] for p in content] == ["image_url", "image_url", "text"]
    assert "[10, 10, 40, 30]" in content[-1]["text"] and "which is a cat" in content[-1]["text"]
    seen.clear()
    options = TeacherOptions(endpoint="regiongpt", send_crop=False)
    teacher = OpenAITeacher("http://x/v1", "m", options, scripted([(200, completion("ok"))], seen))
    teacher.region_caption(request(Image.new("RGB", (64, 48))))
    assert seen[0]["regions"] == [{"type": "box", "box": [10.0, 10.0, 40.0, 30.0]}]
    assert "<region1>" in seen[0]["messages"][0]["content"][-1]["text"]


def test_rate_limiter_spaces_requests():
    now, sleeps = [0.0], []
    limiter = RateLimiter(4.0, clock=lambda: now[0], sleep=sleeps.append)
    for _ in range(3):
        limiter.wait()
    assert sleeps == [0.25, 0.5]
    assert 0.25 <= backoff_delay(0) <= 0.75 and backoff_delay(20) <= 45 and backoff_delay(0, "7") == 7.0


# ---------------------------------------------------------------------- our server, end to end
@pytest.fixture(scope="module")
def tiny_engine(tokenizer_source):
    from transformers import AutoTokenizer

    from regiongpt.api import RegionGPT
    from tests.tiny import make_tiny

    model, processor = make_tiny(
        AutoTokenizer.from_pretrained(tokenizer_source), seed=1, text_overrides={"tie_word_embeddings": False}
    )
    return RegionGPT(model, processor, name="tiny")


@pytest.fixture(scope="module")
def server(tiny_engine):
    pytest.importorskip("fastapi")
    from regiongpt.serve.app import create_app
    from regiongpt.serve.schemas import ServerSettings
    from tests.serve.util import running_server

    with running_server(create_app(tiny_engine, "tiny", ServerSettings(batch_wait_s=0.0))) as url:
        yield url


def test_our_server_is_detected_and_reads_the_region(server, tiny_engine):
    teacher = OpenAITeacher(f"{server}/v1", "tiny", TeacherOptions(max_new_tokens=4))
    assert teacher.ours
    image = Image.new("RGB", (80, 60), (200, 30, 30))
    caption = teacher.region_caption(request(image))
    assert caption.meta["endpoint"] == "regiongpt" and caption.meta["usage"]["completion_tokens"] == 4
    assert caption.text.strip()


def test_datagen_cli_against_our_server(server, tiny_engine, coco_file, image_dir, tmp_path):
    import typer

    from regiongpt.data.dataset import RegionDataset
    from regiongpt.datagen.commands import datagen_command

    app = typer.Typer()
    app.command()(datagen_command)
    out = tmp_path / "gen.jsonl"
    args = [
        "--coco",
        str(coco_file),
        "--images",
        str(image_dir),
        "--out",
        str(out),
        "--teacher",
        f"openai:{server}/v1:tiny",
        "--max-new-tokens",
        "12",
        "--workers",
        "3",
        "--min-words",
        "1",
        "--max-repeat-ratio",
        "1",
        "--min-class-similarity",
        "0",
        "--no-progress",
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "7 regions" in result.stdout
    kept = [json.loads(line) for line in out.read_text().splitlines()]
    dropped = [json.loads(line) for line in side_paths(out)[0].read_text().splitlines()]
    assert len(kept) + len(dropped) == 7 and kept
    assert kept[0]["meta"]["teacher"] == f"openai:{server}/v1:tiny"
    assert kept[0]["meta"]["teacher_meta"]["endpoint"] == "regiongpt"
    dataset = RegionDataset(out, tiny_engine.processor)  # what `regiongpt train` reads
    assert len(dataset) == len(kept) and len(dataset[0].input_ids) > 0
    again = run_datagen(
        coco_items(coco_file, image_dir),
        OpenAITeacher(f"{server}/v1", "tiny", TeacherOptions(max_new_tokens=12)),
        DatagenConfig(out=out, filters=FilterConfig(min_class_similarity=0), progress=False),
    )
    assert again.missing == 0 and again.kept == len(kept)
