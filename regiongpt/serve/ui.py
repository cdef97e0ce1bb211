"""The web UI behind ``regiongpt ui``: Gradio 6 + ``gradio_image_annotation``.

Draw boxes on the image (numbered region1, region2... in drawing order), then chat about them
with ``<region1>``-style tags. Everything is served locally: analytics off, no external fonts or
scripts, the examples are files on disk. The logic lives in :mod:`regiongpt.serve.regionchat`."""

from __future__ import annotations

import html
import tempfile
from pathlib import Path
from typing import Any, Optional

from regiongpt.api import RegionGPT
from regiongpt.serve.regionchat import (
    ChatState,
    RegionChat,
    annotation_boxes,
    annotation_image,
    box_number,
    example_images,
    lossless_copy,
    relabel,
)

HEADER = (
    "### regiongpt: ask about image regions\n"
    "1. Upload an image, or pick an example below.\n"
    "2. Drag on the image to draw boxes; they are numbered **region1, region2, ...** in drawing order "
    "(the hand tool moves and resizes them; select one and press Delete to remove it).\n"
    "3. Ask, e.g. `What is <region1>?` or `Is <region1> left of <region2>?`, and keep chatting."
)


def _shown(text: str) -> str:
    """Chat text shown literally (``<region1>`` is not an HTML tag)."""
    return html.escape(text, quote=False)


def build_ui(engine: RegionGPT, examples: Optional[list[list[Any]]] = None, max_new_tokens: int = 128):
    """The Gradio Blocks app (launch it with ``.launch(server_name=..., server_port=...)``)."""
    import gradio as gr
    from gradio_image_annotation import image_annotator

    chat = RegionChat(engine, max_new_tokens)
    workdir = Path(tempfile.mkdtemp(prefix="regiongpt-ui-"))
    if examples is None:
        examples = example_images(workdir)

    with gr.Blocks(title="regiongpt", analytics_enabled=False) as demo:
        gr.Markdown(HEADER)
        state = gr.State(ChatState())
        with gr.Row():
            with gr.Column(scale=1):
                annotator = image_annotator(
                    label="Image: drag to draw boxes",
                    image_type="numpy",
                    sources=["upload", "clipboard"],
                    disable_edit_boxes=True,
                    box_min_size=4,
                    show_share_button=False,
                    elem_id="annotator",
                )
                regions_list = gr.Markdown("No boxes yet.", elem_id="regions")
            with gr.Column(scale=1):
                chatbot = gr.Chatbot(
                    label="Chat",
                    height=420,
                    elem_id="chat",
                    feedback_options=None,
                    buttons=["copy", "copy_all"],
                )
                question = gr.Textbox(label="Question", placeholder="What is <region1>?", elem_id="question")
                with gr.Row():
                    send = gr.Button("Send", variant="primary", elem_id="send")
                    reset = gr.Button("Reset chat", elem_id="reset")
        if examples:
            gr.Examples(examples=examples, inputs=[annotator, question], label="Examples", elem_id="examples")

        def on_boxes(value: Optional[dict]) -> tuple[Any, str]:
            if not value or value.get("image") is None:
                return gr.skip(), "No image yet."
            boxes = value.get("boxes") or []
            if any(b["xmax"] <= b["xmin"] or b["ymax"] <= b["ymin"] for b in boxes):
                return gr.skip(), gr.skip()  # a box is being drawn: leave the canvas alone
            labelled = sorted(relabel(boxes), key=lambda b: box_number(b["label"]) or 0)
            listing = (
                "\n".join(
                    f"- **{b['label']}**: [{b['xmin']}, {b['ymin']}, {b['xmax']}, {b['ymax']}] px"
                    for b in labelled
                )
                or "No boxes yet: drag on the image."
            )
            if [b.get("label") for b in boxes] == [b["label"] for b in relabel(boxes)]:
                return gr.skip(), listing
            # Send the image back as a lossless PNG: Gradio would re-encode an array as lossy WebP.
            return {
                **value,
                "image": lossless_copy(value["image"], workdir),
                "boxes": relabel(boxes),
            }, listing

        def on_send(value: Optional[dict], text: str, messages: list, current: ChatState):
            if not value or value.get("image") is None:
                raise gr.Error("Upload an image first (or pick an example).")
            try:
                image = annotation_image(value)
                answer, updated = chat.ask(image, annotation_boxes(value), text, current)
            except ValueError as error:
                raise gr.Error(str(error)) from None
            if updated.image_key != current.image_key:
                messages = []
            messages = [
                *messages,
                {"role": "user", "content": _shown(text.strip())},
                {"role": "assistant", "content": _shown(answer)},
            ]
            return messages, updated, ""

        def on_reset() -> tuple[list, ChatState, str]:
            return [], ChatState(), ""

        annotator.change(on_boxes, annotator, [annotator, regions_list], queue=False)
        for trigger in (send.click, question.submit):
            trigger(on_send, [annotator, question, chatbot, state], [chatbot, state, question])
        reset.click(on_reset, None, [chatbot, state, question])
        annotator.upload(on_reset, None, [chatbot, state, question])
    return demo


def launch_ui(engine: RegionGPT, host: str = "127.0.0.1", port: int = 7860, **launch_kwargs: Any):
    """Build and serve the UI locally (no share link, no API page, no run history)."""
    demo = build_ui(engine)
    return demo.launch(
        server_name=host,
        server_port=port,
        share=False,
        inbrowser=False,
        footer_links=[],
        run_history=False,
        pwa=False,
        mcp_server=False,
        ssr_mode=False,
        enable_monitoring=False,
        **launch_kwargs,
    )
