"""``local:MODEL``: a regiongpt model in this process (``RegionGPT.from_pretrained``), greedy.

Its name (``meta.teacher`` of every record) is ``local:MODEL@DTYPE``, e.g. ``local:default@float32``."""

from __future__ import annotations

from PIL import Image

from regiongpt.api import RegionGPT, dtype_name
from regiongpt.datagen.prompts import GLOBAL_PROMPT, REGION_TAG, region_prompt
from regiongpt.datagen.teacher import Caption, RegionRequest


class LocalTeacher:
    """Captions from a local regiongpt checkpoint (the image is encoded once per request)."""

    max_workers = 1

    def __init__(
        self, model: str | RegionGPT, max_new_tokens: int = 96, device: str = "cpu", dtype: str = "auto"
    ) -> None:
        self.engine = (
            model
            if isinstance(model, RegionGPT)
            else RegionGPT.from_pretrained(model, device=device, dtype=dtype)
        )
        # the dtype is part of the name: a resumed run refuses to mix float32 and 16-bit captions
        source = model if isinstance(model, str) else self.engine.name
        self.name = f"local:{source}@{dtype_name(self.engine.dtype)}"
        self.max_new_tokens = max_new_tokens

    def global_caption(self, image: Image.Image) -> Caption:
        conversation = [{"role": "user", "content": GLOBAL_PROMPT}]
        text = self.engine.generate([conversation], image, [[]], max_new_tokens=self.max_new_tokens)[0]
        return Caption(text)

    def region_caption(self, request: RegionRequest) -> Caption:
        prompt = region_prompt(request.global_caption, request.class_name, REGION_TAG)
        conversation = [{"role": "user", "content": prompt}]
        text = self.engine.generate(
            [conversation], request.image, [[request.region]], max_new_tokens=self.max_new_tokens
        )[0]
        return Caption(text)
