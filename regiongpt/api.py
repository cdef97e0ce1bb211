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

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from regiongpt.imaging import ImageLike, load_image
from regiongpt.inference.batching import encode_samples, generate_rows, plan_prefix
from regiongpt.inference.prefix import PrefixState, common_prefix_length, new_cache, placeholder_end
from regiongpt.modeling.modeling import RegionGPTForConditionalGeneration
from regiongpt.modeling.vision import VisionFeatures
from regiongpt.processing import EncodedSample, RegionGPTProcessor
from regiongpt.regions import Region, RegionLike, validate_regions
from regiongpt.tasks import Task, build_question

DEFAULT_NAME = "default"
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def resolve_dtype(dtype: str | torch.dtype, device: str | torch.device = "cpu") -> torch.dtype:
    """A weight dtype from ``"auto"``, a name in :data:`DTYPES` or a ``torch.dtype``.

    ``"auto"``: bfloat16 on a CUDA device that supports it (else float16), float32 elsewhere.
    On CPUs with AVX512-BF16 or AMX, ``"bfloat16"`` is faster too (see docs/performance.md)."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype == "auto":
        if torch.device(device).type != "cuda":
            return torch.float32
        with torch.cuda.device(torch.device(device)):  # the asked GPU, not the current one
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if dtype not in DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}: use auto, {', '.join(DTYPES)}")
    return DTYPES[dtype]


def dtype_name(dtype: torch.dtype) -> str:
    """``torch.bfloat16`` -> ``"bfloat16"``: the name :func:`resolve_dtype` accepts back."""
    return str(dtype).removeprefix("torch.")


def default_model_dir() -> Path:
    """The embedded default model shipped as package data."""
    return Path(__file__).resolve().parent / "assets" / "default"


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
    raise FileNotFoundError(
        f"no model at {name_or_path!s}: give 'default', a checkpoint directory or a hub id"
    )


class RegionGPT:
    """A model and its processor, with inference helpers (greedy by default)."""

    def __init__(
        self, model: RegionGPTForConditionalGeneration, processor: RegionGPTProcessor, name: str = "custom"
    ) -> None:
        self.model = model.eval()
        self.processor = processor
        self.name = name

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | Path = DEFAULT_NAME,
        dtype: str | torch.dtype = "auto",
        device: str | torch.device = "cpu",
        progress: bool = True,
    ) -> RegionGPT:
        """Load ``"default"`` or a checkpoint directory; ``progress=False``: no loading bars.

        ``dtype``: see :func:`resolve_dtype` (``"auto"``: bfloat16 on CUDA, float32 on CPU)."""
        from transformers import AutoTokenizer

        path = resolve_model_path(name_or_path)
        dtype = resolve_dtype(dtype, device)
        model = RegionGPTForConditionalGeneration.from_pretrained(path, dtype=dtype, progress=progress)
        model = model.to(device)
        if model.config.lora:  # fold LoRA into the base weights; the adapter branch is skipped from then on
            model.language_model.merge_adapter()  # (the adapters stay, so saving still works)
        processor = RegionGPTProcessor.from_config(model.config, AutoTokenizer.from_pretrained(path))
        return cls(model, processor, name=str(name_or_path))

    def save_pretrained(self, out_dir: str | Path) -> None:
        from regiongpt.modeling.checkpoint import save_checkpoint

        save_checkpoint(self.model, out_dir, tokenizer=self.processor.tokenizer)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        """The weights' dtype (all parameters share it: see ``from_pretrained(dtype=...)``)."""
        return self.model.dtype

    # ------------------------------------------------------------------------------ core
    @torch.inference_mode()
    def encode_image(self, image: ImageLike) -> tuple[Image.Image, VisionFeatures]:
        """Load an image and run the vision tower once; the features serve many questions."""
        image = load_image(image)
        pixels, _ = self.processor.image_processor(image)
        return image, self.model.encode_images(pixels[None].to(self.device))

    def _generate_kwargs(self, max_new_tokens: int, temperature: float) -> dict[str, Any]:
        if not math.isfinite(temperature) or temperature < 0:
            raise ValueError(f"temperature must be a finite number >= 0 (0 = greedy), got {temperature}")
        sampling = (
            {"do_sample": True, "temperature": temperature} if temperature > 0 else {"do_sample": False}
        )
        return {
            "max_new_tokens": max_new_tokens,
            "pad_token_id": self.processor.tokenizer.pad_token_id,
            "eos_token_id": self.processor.end_token_ids,
            **sampling,
        }

    @torch.inference_mode()
    def generate(
        self,
        conversations: Sequence[Sequence[dict[str, str]]],
        image: Image.Image,
        regions: Sequence[Sequence[Region]],
        features: VisionFeatures | None = None,
        max_new_tokens: int = 48,
        temperature: float = 0.0,
    ) -> list[str]:
        """Answer several conversations about ONE image in a single batched generation.

        The tokens all conversations share at their start (system prompt, image, question up to
        the first region) run once; each row then runs only its own suffix (see
        :mod:`regiongpt.inference`)."""
        samples = encode_samples(self.processor, conversations, image, regions, add_generation_prompt=True)
        if not samples:
            return []
        return self._answer(samples, features, max_new_tokens, temperature)

    def _answer(
        self,
        samples: Sequence[EncodedSample],
        features: VisionFeatures | None,
        max_new_tokens: int,
        temperature: float,
        batch_size: int | None = None,
    ) -> list[str]:
        """Generate for encoded samples of one image, the shared prefix computed once for all chunks."""
        if features is None:
            features = self.model.encode_images(samples[0].pixel_values[None].to(self.device))
        kwargs = self._generate_kwargs(max_new_tokens, temperature)
        prefix = plan_prefix(self.model, samples, features)
        step = batch_size or len(samples)
        answers: list[str] = []
        for start in range(0, len(samples), step):
            out = generate_rows(self.model, samples[start : start + step], features, prefix, **kwargs)
            answers += [self.processor.decode(row) for row in out]
        return answers

    # ------------------------------------------------------------------------------ helpers
    @torch.inference_mode()
    def describe(
        self,
        image: ImageLike,
        regions: Sequence[RegionLike],
        task: Task | str = Task.BRIEF,
        max_new_tokens: int | None = None,
        batch_size: int = 64,
    ) -> list[str]:
        """One answer per region, in input order; the image is encoded once, the shared prompt
        prefix runs once, and all regions are answered in batched passes of ``batch_size``."""
        task = Task.parse(task)
        question = build_question(task)  # validates that the task is a single-region task
        image = load_image(image)
        checked = validate_regions(regions, image.size)
        if not checked:
            return []
        limit = max_new_tokens or (128 if task == Task.DETAILED else 24)
        _, features = self.encode_image(image)
        conversation = [{"role": "user", "content": question}]
        samples = encode_samples(
            self.processor,
            [conversation] * len(checked),
            image,
            [[r] for r in checked],
            add_generation_prompt=True,
        )
        return self._answer(samples, features, limit, 0.0, batch_size)

    def session(self, image: ImageLike) -> Session:
        """A multi-round chat about one image (encoded once)."""
        loaded, features = self.encode_image(image)
        return Session(self, loaded, features)


@dataclass
class Session:
    """Chat history about one image; ``<regionK>`` numbers regions across turns.

    The keys/values of the conversation so far (image tokens, earlier turns and the generated
    replies) stay cached, so a follow-up question runs only its new tokens. The cache is matched
    against the re-tokenised history token by token and used up to the first difference, so
    answers equal those of recomputing the whole conversation."""

    model: RegionGPT
    image: Image.Image
    features: VisionFeatures
    regions: list[Region] = field(default_factory=list)
    history: list[dict[str, str]] = field(default_factory=list)
    _prefix: PrefixState | None = field(default=None, repr=False, compare=False)

    @torch.inference_mode()
    def ask(
        self,
        text: str,
        regions: Sequence[RegionLike] = (),
        max_new_tokens: int = 64,
        temperature: float = 0.0,
    ) -> str:
        """Add ``regions`` (they become the next ``<regionK>`` numbers), ask, and return the reply."""
        added = validate_regions(regions, self.image.size)
        all_regions = self.regions + added
        conversation = [*self.history, {"role": "user", "content": text}]
        engine = self.model
        # Validates tags against regions before anything is stored.
        sample = encode_samples(engine.processor, [conversation], self.image, [all_regions], True)[0]
        prefix = self._reusable_prefix(sample.input_ids, all_regions)
        if prefix is None:  # nothing reusable: start an empty cache
            prefix = PrefixState([], new_cache(engine.model.language_model))
        out = generate_rows(
            engine.model,
            [sample],
            self.features,
            prefix,
            consume_prefix=True,
            **engine._generate_kwargs(max_new_tokens, temperature),
        )
        reply = engine.processor.decode(out[0])
        # The cache now holds the prompt and the reply tokens but the last (never fed back in).
        prefix.ids = (sample.input_ids + out[0].tolist())[: prefix.cache.get_seq_length()]
        prefix.regions, prefix.features = tuple(all_regions), self.features
        self._prefix = prefix
        self.regions = all_regions
        self.history = [*conversation, {"role": "assistant", "content": reply}]
        return reply

    def _reusable_prefix(self, ids: list[int], regions: list[Region]) -> PrefixState | None:
        """The cached conversation cut to the tokens ``ids`` starts with, if it can serve them."""
        prefix = self._prefix
        if prefix is None or prefix.features is not self.features or len(regions) < len(prefix.regions):
            return None
        if any(a is not b for a, b in zip(prefix.regions, regions)):
            return None
        length = min(common_prefix_length(prefix.ids, ids), len(ids) - 1)
        if length <= 0 or length < placeholder_end(ids, self.model.processor.image_token_id):
            return None
        prefix.crop(length)
        return prefix

    def reset(self) -> None:
        """Forget the history and the regions (the image stays encoded)."""
        self.regions, self.history = [], []
        self._prefix = None
