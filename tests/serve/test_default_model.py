"""Smoke test: the real default model behind the server (skipped until its files exist)."""

from __future__ import annotations

import pytest

from regiongpt.api import default_model_dir
from regiongpt.serve.app import create_app
from tests.serve.util import make_image, running_server, user_message

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (default_model_dir() / "config.json").is_file(), reason="the default model is not built yet"
    ),
]


def test_default_model_answers_through_the_openai_client():
    openai = pytest.importorskip("openai")
    from regiongpt.api import RegionGPT

    engine = RegionGPT.from_pretrained("default")
    with running_server(create_app(engine, "default")) as url:
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0, timeout=300)
        assert [m.id for m in client.models.list().data] == ["default"]
        answer = client.chat.completions.create(
            model="default",
            max_tokens=16,
            messages=[
                user_message(
                    "What is the category of <region1>? Answer the question using a single word or phrase.",
                    make_image(224, 224),
                )
            ],
            extra_body={"regions": [{"type": "box", "box": [20, 20, 120, 120]}]},
        )
    assert answer.choices[0].message.content.strip()
    assert answer.usage.completion_tokens <= 16
