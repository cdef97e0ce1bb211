"""What the benchmarks need from a model: :class:`Engine` (generation) and :class:`ScoringEngine`
(generation + answer likelihood). :class:`ModelEngine` wraps :class:`regiongpt.api.RegionGPT`;
tests pass small fakes with the same methods.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import torch
import torch.nn.functional as F
from PIL import Image

from regiongpt.api import RegionGPT
from regiongpt.imaging import ImageLike
from regiongpt.processing import IGNORE_INDEX
from regiongpt.regions import Region

Conversation = Sequence[dict[str, str]]


@runtime_checkable
class Engine(Protocol):
    """Greedy generation about one image at a time (see :meth:`RegionGPT.generate`)."""

    def encode_image(self, image: ImageLike) -> tuple[Image.Image, Any]:
        """The loaded RGB image and its features (reused by every question about it)."""
        ...

    def generate(
        self,
        conversations: Sequence[Conversation],
        image: Image.Image,
        regions: Sequence[Sequence[Region]],
        features: Any = None,
        max_new_tokens: int = 48,
    ) -> list[str]:
        """One answer per conversation; ``regions[i]`` are ``<region1>``... of conversation i."""
        ...


@runtime_checkable
class ScoringEngine(Engine, Protocol):
    """An engine that also scores given answers (REC by likelihood)."""

    def score(
        self,
        conversations: Sequence[Conversation],
        image: Image.Image,
        regions: Sequence[Sequence[Region]],
        features: Any = None,
    ) -> list[float]:
        """Summed log-probability of the assistant turns of each conversation."""
        ...


class ModelEngine:
    """:class:`RegionGPT` as an engine, adding :meth:`score` from the model's forward pass."""

    def __init__(self, model: RegionGPT) -> None:
        self.model = model

    @classmethod
    def from_pretrained(cls, name_or_path: str = "default", device: str = "auto") -> ModelEngine:
        """Load a model (float32); ``device="auto"`` picks CUDA when available, else CPU."""
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        return cls(RegionGPT.from_pretrained(name_or_path, device=device))

    @property
    def name(self) -> str:
        return self.model.name

    def encode_image(self, image: ImageLike) -> tuple[Image.Image, Any]:
        return self.model.encode_image(image)

    def generate(
        self,
        conversations: Sequence[Conversation],
        image: Image.Image,
        regions: Sequence[Sequence[Region]],
        features: Any = None,
        max_new_tokens: int = 48,
    ) -> list[str]:
        return self.model.generate(conversations, image, regions, features, max_new_tokens)

    @torch.inference_mode()
    def score(
        self,
        conversations: Sequence[Conversation],
        image: Image.Image,
        regions: Sequence[Sequence[Region]],
        features: Any = None,
    ) -> list[float]:
        """Sum over supervised tokens (assistant replies with their end-of-turn token) of
        ``log p(token | prefix)``, all conversations in one right-padded forward pass."""
        wrapped, processor = self.model.model, self.model.processor
        samples = [processor.encode(conv, image, regs) for conv, regs in zip(conversations, regions)]
        batch = processor.collate(samples, padding_side="right")
        device = self.model.device
        if features is None:
            features = wrapped.encode_images(batch["pixel_values"][:1].to(device))
        labels = batch["labels"].to(device)
        attention = batch["attention_mask"].to(device)
        embeds = wrapped.embed_inputs(
            batch["input_ids"].to(device),
            region_boxes=batch["region_boxes"].to(device),
            region_masks=batch["region_masks"].to(device),
            region_image_index=torch.zeros_like(batch["region_image_index"]).to(device),
            region_token_index=batch["region_token_index"].to(device),
            image_index=torch.zeros(len(samples), dtype=torch.long, device=device),
            features=features,
        )
        position_ids = (attention.cumsum(-1) - 1).clamp(min=0)
        hidden = wrapped.language_model.get_decoder()(
            inputs_embeds=embeds, attention_mask=attention, position_ids=position_ids, use_cache=False
        ).last_hidden_state
        targets = labels[:, 1:]
        keep = targets != IGNORE_INDEX
        logits = wrapped.get_output_embeddings()(hidden[:, :-1][keep]).float()
        token_logp = F.log_softmax(logits, dim=-1).gather(1, targets[keep][:, None]).squeeze(1)
        rows = torch.arange(len(samples), device=device)[:, None].expand_as(targets)[keep]
        totals = torch.zeros(len(samples), device=device, dtype=torch.float32).index_add_(0, rows, token_logp)
        return [float(v) for v in totals.cpu()]
