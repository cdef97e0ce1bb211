"""What the benchmarks need from a model: :class:`Engine` (generation) and :class:`ScoringEngine`
(generation + answer likelihood). :class:`ModelEngine` wraps :class:`regiongpt.api.RegionGPT`;
tests pass small fakes with the same methods.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import torch
from PIL import Image

from regiongpt.api import RegionGPT
from regiongpt.imaging import ImageLike
from regiongpt.inference.batching import encode_samples, plan_prefix, score_rows
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


def resolve_device(device: str) -> str:
    """``"auto"``: CUDA when available, else CPU; anything else as given."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


class ModelEngine:
    """:class:`RegionGPT` as an engine, adding :meth:`score` from the model's forward pass."""

    def __init__(self, model: RegionGPT) -> None:
        self.model = model

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str = "default",
        device: str = "auto",
        progress: bool = True,
        dtype: str | torch.dtype = "auto",
    ) -> ModelEngine:
        """Load a model; ``device="auto"`` picks CUDA when available, else CPU; ``dtype``: see
        :func:`regiongpt.api.resolve_dtype` (``"auto"``: bfloat16 on CUDA, float32 on CPU)."""
        device = resolve_device(device)
        return cls(RegionGPT.from_pretrained(name_or_path, dtype=dtype, device=device, progress=progress))

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
        ``log p(token | prefix)``. The tokens all conversations share at their start (system
        prompt, image, question up to the first region) run once; then all conversations' own
        tokens run in one right-padded forward pass on that cached prefix."""
        wrapped = self.model.model
        samples = encode_samples(self.model.processor, conversations, image, regions)
        if not samples:
            return []
        if features is None:
            features = wrapped.encode_images(samples[0].pixel_values[None].to(self.model.device))
        prefix = plan_prefix(wrapped, samples, features, for_scoring=True)
        return score_rows(wrapped, samples, features, prefix)
