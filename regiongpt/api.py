"""The Python API: ``RegionGPT.from_pretrained(...)``, ``describe`` and chat ``session``.

```python
from regiongpt import RegionGPT, Box
model = RegionGPT.from_pretrained("default")
model.describe("photo.jpg", [Box(10, 20, 120, 200), [30, 40, 90, 100]], task="brief")
session = model.session("photo.jpg")
session.ask("Is <region1> left of <region2>?", regions=[r1, r2])
```
Regions are ``Box``/``Mask``/``Point``, 4-number sequences (always pixel xyxy) or ``HxW`` boolean
arrays; ``regions[0]`` is ``<region1>``. Images are PIL images, paths or ``HxWx3`` uint8 arrays,
EXIF orientation applied.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import torch
from PIL import Image

from regiongpt.imaging import ImageLike, load_image
from regiongpt.modeling.modeling import RegionGPTForConditionalGeneration
from regiongpt.modeling.vision import VisionFeatures
from regiongpt.processing import RegionGPTProcessor
from regiongpt.regions import Region, RegionLike, validate_regions
from regiongpt.tasks import Task, build_question

DEFAULT_NAME = "default"


def default_model_dir() -> Path:
    """The embedded default model shipped as package data."""
    return Path(str(resources.files("regiongpt") / "assets" / "default"))


def resolve_model_path(name_or_path: str | Path) -> Path:
    """``"default"`` (reserved), a local checkpoint directory, or a hub id (downloaded by huggingface_hub)."""
    if str(name_or_path) == DEFAULT_NAME:
        path = default_model_dir()
        if not (path / "config.json").is_file():
            raise FileNotFoundError(f"the default model's files are missing from {path}; reinstall regiongpt")
        return path
    path = Path(name_or_path)
    if path.exists():
        return path
    if str(name_or_path).count("/") == 1 and not str(name_or_path).startswith((".", "/")):
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(str(name_or_path)))
    raise FileNotFoundError(f"no model at {name_or_path!s}: give 'default', a checkpoint directory or a hub id")


class RegionGPT:
    """A model and its processor, with inference helpers (greedy by default)."""

    def __init__(self, model: RegionGPTForConditionalGeneration, processor: RegionGPTProcessor,
                 name: str = "custom") -> None:
        self.model = model.eval()
        self.processor = processor
        self.name = name

    @classmethod
    def from_pretrained(cls, name_or_path: str | Path = DEFAULT_NAME, dtype: torch.dtype = torch.float32,
                        device: str | torch.device = "cpu") -> RegionGPT:
        from transformers import AutoTokenizer

        path = resolve_model_path(name_or_path)
        model = RegionGPTForConditionalGeneration.from_pretrained(path, dtype=dtype).to(device)
        processor = RegionGPTProcessor.from_config(model.config, AutoTokenizer.from_pretrained(path))
        return cls(model, processor, name=str(name_or_path))

    def save_pretrained(self, out_dir: str | Path) -> None:
        from regiongpt.modeling.checkpoint import save_checkpoint

        save_checkpoint(self.model, out_dir, tokenizer=self.processor.tokenizer)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    # ------------------------------------------------------------------------------ core
    @torch.inference_mode()
    def encode_image(self, image: ImageLike) -> tuple[Image.Image, VisionFeatures]:
        """Load an image and run the vision tower once; the features serve many questions."""
        image = load_image(image)
        pixels, _ = self.processor.image_processor(image)
        return image, self.model.encode_images(pixels[None].to(self.device))

    @torch.inference_mode()
    def generate(self, conversations: Sequence[Sequence[dict[str, str]]], image: Image.Image,
                 regions: Sequence[Sequence[Region]], features: VisionFeatures | None = None,
                 max_new_tokens: int = 48, temperature: float = 0.0) -> list[str]:
        """Answer several conversations about ONE image in a single batched generation."""
        samples = [
            self.processor.encode(conv, image, regs, add_generation_prompt=True)
            for conv, regs in zip(conversations, regions)
        ]
        batch = self.processor.collate(samples, padding_side="left")
        batch.pop("labels")
        if features is None:
            features = self.model.encode_images(batch["pixel_values"][:1].to(self.device))
        batch["region_image_index"] = torch.zeros_like(batch["region_image_index"])
        batch["image_index"] = torch.zeros(len(samples), dtype=torch.long)
        batch = {k: v.to(self.device) for k, v in batch.items()}
        batch.pop("pixel_values")
        sampling = {"do_sample": True, "temperature": temperature} if temperature > 0 else {"do_sample": False}
        tokenizer = self.processor.tokenizer
        out = self.model.generate(
            **batch, features=features, max_new_tokens=max_new_tokens, pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id, **sampling,
        )
        return [self.processor.decode(row) for row in out]

    # ------------------------------------------------------------------------------ helpers
    def describe(self, image: ImageLike, regions: Sequence[RegionLike], task: Task | str = Task.BRIEF,
                 max_new_tokens: int | None = None, batch_size: int = 64) -> list[str]:
        """One answer per region, in input order; the image is encoded once and all regions are
        answered in batched passes."""
        task = Task.parse(task)
        question = build_question(task)  # validates that the task is a single-region task
        image = load_image(image)
        checked = validate_regions(regions, image.size)
        if not checked:
            return []
        limit = max_new_tokens or (128 if task == Task.DETAILED else 24)
        _, features = self.encode_image(image)
        conversation = [{"role": "user", "content": question}]
        answers: list[str] = []
        for start in range(0, len(checked), batch_size):
            chunk = checked[start : start + batch_size]
            answers += self.generate([conversation] * len(chunk), image, [[r] for r in chunk], features, limit)
        return answers

    def session(self, image: ImageLike) -> Session:
        """A multi-round chat about one image (encoded once)."""
        loaded, features = self.encode_image(image)
        return Session(self, loaded, features)


@dataclass
class Session:
    """Chat history about one image; ``<regionK>`` numbers regions across turns."""

    model: RegionGPT
    image: Image.Image
    features: VisionFeatures
    regions: list[Region] = field(default_factory=list)
    history: list[dict[str, str]] = field(default_factory=list)

    def ask(self, text: str, regions: Sequence[RegionLike] = (), max_new_tokens: int = 64,
            temperature: float = 0.0) -> str:
        """Add ``regions`` (they become the next ``<regionK>`` numbers), ask, and return the reply."""
        added = validate_regions(regions, self.image.size)
        all_regions = self.regions + added
        conversation = [*self.history, {"role": "user", "content": text}]
        # Validates tags against regions before anything is stored.
        self.model.processor.encode_text(conversation, len(all_regions), add_generation_prompt=True)
        reply = self.model.generate([conversation], self.image, [all_regions], self.features,
                                    max_new_tokens, temperature)[0]
        self.regions = all_regions
        self.history = [*conversation, {"role": "assistant", "content": reply}]
        return reply

    def reset(self) -> None:
        """Forget the history and the regions (the image stays encoded)."""
        self.regions, self.history = [], []
