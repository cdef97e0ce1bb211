"""The web UI in a real browser (Debian's chromium driven by playwright): upload an image, drag a
box with the mouse, ask about <region1> over two rounds, and check that the box that reached the
model is the dragged one in the uploaded image's pixels."""

from __future__ import annotations

import os
import socket
import time

import numpy as np
import pytest
from PIL import Image

from regiongpt.api import RegionGPT
from regiongpt.regions import Box
from tests.serve.util import make_image

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="Debian's chromium is not installed"),
]


class RecordingEngine(RegionGPT):
    """Records what reaches the model."""

    def __init__(self, engine: RegionGPT) -> None:
        super().__init__(engine.model, engine.processor, name=engine.name)
        self.calls: list[dict] = []

    def generate(self, conversations, image, regions, features=None, max_new_tokens=48, temperature=0.0):
        answers = super().generate(conversations, image, regions, features, max_new_tokens, temperature)
        self.calls.append(
            {
                "conversations": conversations,
                "size": image.size,
                "regions": regions,
                "answers": answers,
                "pixels": np.asarray(image),
            }
        )
        return answers


DRAGS = [((60, 50), (220, 190)), ((250, 30), (380, 120))]  # (start, end) in image pixels


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture()
def ui(tiny_engine):
    pytest.importorskip("gradio")
    pytest.importorskip("gradio_image_annotation")
    from regiongpt.serve.ui import build_ui

    engine = RecordingEngine(tiny_engine)
    demo = build_ui(engine, max_new_tokens=6)
    port = free_port()
    demo.launch(
        server_name="127.0.0.1",
        server_port=port,
        prevent_thread_lock=True,
        quiet=True,
        footer_links=[],
        run_history=False,
        ssr_mode=False,
    )
    try:
        yield f"http://127.0.0.1:{port}", engine
    finally:
        demo.close()


def test_draw_a_box_and_chat(ui, tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api")
    url, engine = ui
    image_path = tmp_path / "upload.png"
    make_image(400, 300, seed=4).save(image_path)
    outside: list[str] = []
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        try:
            page.on(
                "request",
                lambda r: None if r.url.startswith((url, "data:", "blob:")) else outside.append(r.url),
            )
            page.goto(url)
            page.set_input_files("#annotator input[type=file]", str(image_path))
            canvas = page.locator("#annotator canvas")
            canvas.wait_for(timeout=30_000)
            time.sleep(0.5)  # let the image settle in the canvas

            # The image is drawn centred and scaled to fit the canvas.
            rect = canvas.bounding_box()
            scale = min(rect["width"] / 400, rect["height"] / 300)
            left = rect["x"] + (rect["width"] - 400 * scale) / 2
            top = rect["y"] + (rect["height"] - 300 * scale) / 2

            def drag(start, end):
                page.mouse.move(left + start[0] * scale, top + start[1] * scale)
                page.mouse.down()
                for step in range(1, 11):
                    page.mouse.move(
                        left + (start[0] + (end[0] - start[0]) * step / 10) * scale,
                        top + (start[1] + (end[1] - start[1]) * step / 10) * scale,
                    )
                page.mouse.up()

            def ask(question, answers):
                page.locator("#question textarea").fill(question)
                page.locator("#send").click()
                page.wait_for_function(
                    "n => document.querySelectorAll('#chat [data-testid=\"bot\"]').length >= n",
                    arg=answers,
                    timeout=30_000,
                )

            drag(*DRAGS[0])
            page.locator("#regions").get_by_text("region1").wait_for(timeout=15_000)
            ask("What is <region1>?", 1)
            drag(*DRAGS[1])
            page.locator("#regions").get_by_text("region2").wait_for(timeout=15_000)
            ask("And <region2>, next to <region1>?", 2)
            bots = page.locator('#chat [data-testid="bot"]')
            users = page.locator('#chat [data-testid="user"]')
            shown_answers = [bots.nth(k).inner_text().strip() for k in range(bots.count())]
            shown_questions = [users.nth(k).inner_text().strip() for k in range(users.count())]
            page.screenshot(path=str(tmp_path / "ui.png"), full_page=True)

            page.locator("#reset").click()
            page.wait_for_function(
                "() => !document.querySelector('#chat [data-testid=\"bot\"]')", timeout=15_000
            )
            page.locator("#examples tbody tr").first.click()  # the cat example, box drawn
            page.locator("#regions").get_by_text("[140, 20, 330, 210]").wait_for(timeout=15_000)
            page.locator("#send").click()
            page.wait_for_function(
                "() => document.querySelectorAll('#chat [data-testid=\"bot\"]').length == 1", timeout=30_000
            )
            page.screenshot(path=str(tmp_path / "example.png"), full_page=True)
        except Exception:
            page.screenshot(path=str(tmp_path / "failure.png"), full_page=True)  # to see what went wrong
            raise
        finally:
            browser.close()

    assert len(engine.calls) == 3
    first, second, example = engine.calls
    assert first["size"] == second["size"] == (400, 300)
    uploaded = np.asarray(Image.open(image_path).convert("RGB"))
    assert np.array_equal(first["pixels"], uploaded) and np.array_equal(second["pixels"], uploaded)

    def close(box, drag):
        assert isinstance(box, Box)
        assert all(abs(got - want) <= 2 for got, want in zip(box.as_list(), [*drag[0], *drag[1]])), (
            box,
            drag,
        )

    (box1,) = first["regions"][0]
    close(box1, DRAGS[0])
    box1_again, box2 = second["regions"][0]
    close(box1_again, DRAGS[0])
    close(box2, DRAGS[1])
    assert [t["role"] for t in second["conversations"][0]] == ["user", "assistant", "user"]  # history kept
    assert shown_answers == [first["answers"][0], second["answers"][0]]
    assert shown_questions == [
        "What is <region1>?",
        "And <region2>, next to <region1>?",
    ]  # tags shown literally
    assert example["size"] == (451, 300) and example["regions"] == [[Box(140, 20, 330, 210)]]
    assert len(example["conversations"][0]) == 1  # reset: a fresh chat
    assert not outside, f"the page fetched outside resources: {outside}"
    assert (tmp_path / "ui.png").stat().st_size > 10_000
