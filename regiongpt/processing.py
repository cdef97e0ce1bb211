"""The processor: images, regions and conversations -> model inputs.

* Images are padded to a square (``image_resize="pad"``, centred, filled with the normalisation
  mean, as LLaVA-1.5 does) or stretched (``"resize"``), then resized to ``S x S``; regions are
  transformed with exactly the same map, so boxes stay pixel xyxy in the ``S x S`` frame.
* ``<regionK>`` tags expand to the words ``region K`` followed by one region placeholder token;
  GPT4RoI's ``region1 <bbox>`` syntax is accepted too (the i-th ``<bbox>`` takes region i).
* The image becomes ``config.num_image_tokens`` image placeholders at the start of the first
  user turn.
* The tokenizer's chat template renders the conversation with the config's short system prompt;
  labels are -100 everywhere except assistant replies (including their end-of-turn token), found
  from turn spans, never from the pad id.
"""

from __future__ import annotations

import functools
import itertools
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image

from regiongpt.imaging import ImageLike, load_image
from regiongpt.regions import Box, Mask, Point, Region, RegionLike, validate_regions

TAG_PATTERN = re.compile(r"<region(\d+)>")
GPT4ROI_PATTERN = re.compile(r"(?:region\d+\s*)?<bbox>")
ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant"}
IGNORE_INDEX = -100


@dataclass
class ImageTransform:
    """Maps original pixel coordinates to the ``size x size`` model frame: ``x' = (x + pad_x) * scale``."""

    scale_x: float
    scale_y: float
    pad_x: int
    pad_y: int
    size: int

    def box(self, box: Box) -> Box:
        return Box(
            (box.x1 + self.pad_x) * self.scale_x,
            (box.y1 + self.pad_y) * self.scale_y,
            (box.x2 + self.pad_x) * self.scale_x,
            (box.y2 + self.pad_y) * self.scale_y,
        )


@dataclass
class EncodedSample:
    """One processed sample (unpadded). Masks are ``(R, S, S)`` float in ``[0, 1]``."""

    input_ids: list[int]
    labels: list[int]
    pixel_values: torch.Tensor
    region_boxes: torch.Tensor
    region_masks: torch.Tensor
    region_token_index: list[int]


def normalize_turns(conversation: Sequence[dict[str, str]]) -> list[dict[str, str]]:
    """Accept LLaVA ``{"from", "value"}`` or chat ``{"role", "content"}`` turns."""
    turns = []
    for index, turn in enumerate(conversation):
        role = turn.get("role", turn.get("from"))
        content = turn.get("content", turn.get("value"))
        if role not in ROLES or not isinstance(content, str):
            raise ValueError(f"turn {index}: expected a user/assistant turn with text, got {turn!r:.80}")
        try:
            content.encode("utf-8")
        except UnicodeEncodeError as error:
            bad = content[error.start : error.end]
            raise ValueError(
                f"turn {index}: text is not valid Unicode ({bad!a} at character {error.start})"
            ) from None
        turns.append({"role": ROLES[role], "content": content})
    if not turns or turns[0]["role"] != "user":
        raise ValueError("a conversation must start with a user turn")
    return turns


def expand_region_tags(text: str, num_regions: int, region_token: str) -> tuple[str, list[int]]:
    """Expand ``<regionK>`` tags to ``region K`` + ``region_token``; returns the text and the
    0-based region of each placeholder. An empty ``region_token`` writes plain ``region K`` (what an
    assistant turn says: replies name regions, they never carry region features)."""
    counter = itertools.count(1)
    text = GPT4ROI_PATTERN.sub(lambda _: f"<region{next(counter)}>", text)
    order: list[int] = []

    def replace(match: re.Match[str]) -> str:
        k = int(match.group(1))
        if not 1 <= k <= num_regions:
            raise ValueError(
                f"tag <region{k}> refers to a region that was not given ({num_regions} region(s) given)"
            )
        if region_token:
            order.append(k - 1)
        return f"region {k}{region_token}"

    return TAG_PATTERN.sub(replace, text), order


class ImagePreprocessor:
    """Resize/pad to ``size x size``, scale to ``[0, 1]``, normalise with ``mean``/``std``."""

    def __init__(self, size: int, mean: Sequence[float], std: Sequence[float], mode: str = "pad") -> None:
        self.size, self.mode = size, mode
        self.mean = torch.tensor(mean).view(3, 1, 1)
        self.std = torch.tensor(std).view(3, 1, 1)
        self.fill = tuple(int(round(m * 255)) for m in mean)

    def transform_for(self, width: int, height: int) -> ImageTransform:
        if self.mode == "pad":
            side = max(width, height)
            scale = self.size / side
            return ImageTransform(scale, scale, (side - width) // 2, (side - height) // 2, self.size)
        return ImageTransform(self.size / width, self.size / height, 0, 0, self.size)

    def _place(self, image: Image.Image, fill: Any, transform: ImageTransform) -> Image.Image:
        if self.mode == "pad" and image.width != image.height:
            side = max(image.width, image.height)
            canvas = Image.new(image.mode, (side, side), fill)
            canvas.paste(image, (transform.pad_x, transform.pad_y))
            image = canvas
        return image.resize(
            (self.size, self.size), Image.Resampling.BICUBIC if fill != 0 else Image.Resampling.BOX
        )

    def __call__(self, image: Image.Image) -> tuple[torch.Tensor, ImageTransform]:
        """``(3, S, S)`` normalised pixels and the coordinate transform."""
        transform = self.transform_for(image.width, image.height)
        placed = self._place(image, self.fill, transform)
        pixels = torch.from_numpy(np.asarray(placed, dtype=np.float32).copy()).permute(2, 0, 1) / 255.0
        return (pixels - self.mean) / self.std, transform

    def region_tensors(
        self, regions: Sequence[Region], image_size: tuple[int, int], transform: ImageTransform
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(R, 4)`` boxes (pixel xyxy in the ``S x S`` frame) and ``(R, S, S)`` soft masks."""
        size = self.size
        boxes = torch.zeros(len(regions), 4)
        masks = torch.zeros(len(regions), size, size)
        for index, region in enumerate(regions):
            box = transform.box(region.to_box(image_size))
            boxes[index] = torch.tensor(box.as_list())
            if isinstance(region, Mask):
                placed = self._place(Image.fromarray(region.data.astype(np.uint8) * 255), 0, transform)
                masks[index] = torch.from_numpy(np.asarray(placed, dtype=np.float32) / 255.0)
            elif isinstance(region, Point):
                scaled = Point(
                    (region.x + transform.pad_x) * transform.scale_x,
                    (region.y + transform.pad_y) * transform.scale_y,
                    region.radius * transform.scale_x,
                )
                masks[index] = torch.from_numpy(scaled.to_mask((size, size)))
            else:
                masks[index] = torch.from_numpy(box.to_mask((size, size)))
        return boxes, masks


class RegionGPTProcessor:
    """Tokenizer + image preprocessor + placeholder expansion, configured from a model config."""

    def __init__(
        self,
        tokenizer,
        image_processor: ImagePreprocessor,
        num_image_tokens: int,
        system_prompt: str,
        image_token: str = "<image>",
        region_token: str = "<region>",
        stop_strings: Sequence[str] = (),
    ) -> None:
        self.tokenizer = tokenizer
        self.stop_strings = [s for s in stop_strings if s]
        self.image_processor = image_processor
        self.num_image_tokens = num_image_tokens
        self.system_prompt = system_prompt
        self.image_token, self.region_token = image_token, region_token
        missing = [t for t in (image_token, region_token) if t not in tokenizer.get_vocab()]
        if missing:
            tokenizer.add_tokens(missing, special_tokens=True)
        self.image_token_id = tokenizer.convert_tokens_to_ids(image_token)
        self.region_token_id = tokenizer.convert_tokens_to_ids(region_token)
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        self._rendered: dict[tuple, str] = {}
        reserved = set(tokenizer.all_special_tokens) | {
            added.content
            for added in getattr(tokenizer, "added_tokens_decoder", {}).values()
            if added.special
        }
        # markers of the chat template that text must not forge (the placeholders have their own error)
        self._special_texts = sorted(reserved - {image_token, region_token, "", None}, key=len, reverse=True)

    @classmethod
    def from_config(cls, config, tokenizer) -> RegionGPTProcessor:
        from regiongpt.modeling.vision import image_normalization

        mean, std = image_normalization(config)
        image_processor = ImagePreprocessor(config.image_size, mean, std, config.image_resize)
        processor = cls(
            tokenizer,
            image_processor,
            config.num_image_tokens,
            config.system_prompt,
            config.image_token,
            config.region_token,
            getattr(config, "stop_strings", ()),
        )
        config.image_token_id, config.region_token_id = processor.image_token_id, processor.region_token_id
        return processor

    # ------------------------------------------------------------------------------ text
    def _render(self, messages: list[dict[str, str]], add_generation_prompt: bool) -> str:
        return self.tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=add_generation_prompt
        )

    def _pieces(self, turns: list[dict[str, str]], add_generation_prompt: bool) -> list[tuple[str, bool]]:
        """Split the rendered chat into ``(text, supervised)`` pieces along turn boundaries."""
        messages = [{"role": "system", "content": self.system_prompt}, *turns]
        pieces: list[tuple[str, bool]] = []
        done = ""
        for end in range(2, len(messages) + 1):
            if messages[end - 1]["role"] != "assistant":
                continue
            prompt = self._render(messages[: end - 1], add_generation_prompt=True)
            full = self._render(messages[:end], add_generation_prompt=False)
            if not prompt.startswith(done) or not full.startswith(prompt):
                raise ValueError("the tokenizer's chat template is not prefix-stable across turns")
            pieces += [(prompt[len(done) :], False), (full[len(prompt) :], True)]
            done = full
        if messages[-1]["role"] == "user":
            final = self._render(messages, add_generation_prompt=add_generation_prompt)
            pieces.append((final[len(done) :], False))
        return pieces

    def encode_text(
        self, conversation: Sequence[dict[str, str]], num_regions: int, add_generation_prompt: bool = False
    ) -> tuple[list[int], list[int], list[int]]:
        """Token ids, labels and the region of each region placeholder (0-based)."""
        turns = normalize_turns(conversation)
        order: list[int] = []
        for index, turn in enumerate(turns):
            user_text = GPT4ROI_PATTERN.sub("", turn["content"])  # `<bbox>` is region syntax, not a raw token
            for token in (self.image_token, self.region_token):
                if token in user_text:
                    raise ValueError(
                        f"turn {index} contains the reserved placeholder {token!r}; refer to regions with <regionK>"
                    )
            forged = next((token for token in self._special_texts if token in user_text), None)
            if forged is not None:
                raise ValueError(
                    f"turn {index} contains the tokenizer's special token {forged!r}, which only the chat template may write"
                )
            placeholder = self.region_token if turn["role"] == "user" else ""
            text, used = expand_region_tags(turn["content"], num_regions, placeholder)
            if index == 0 and self.num_image_tokens:
                text = self.image_token * self.num_image_tokens + "\n" + text
            turn["content"] = text
            order += used
        unreferenced = sorted(set(range(num_regions)) - set(order))
        if unreferenced:
            names = ", ".join(f"region {k + 1}" for k in unreferenced)
            raise ValueError(f"{names} given but never referenced by a <regionK> tag in the text")
        ids: list[int] = []
        labels: list[int] = []
        for text, supervised in self._pieces(turns, add_generation_prompt):
            piece = self.tokenizer(text, add_special_tokens=False)["input_ids"]
            ids += piece
            labels += piece if supervised else [IGNORE_INDEX] * len(piece)
        return ids, labels, order

    # ------------------------------------------------------------------------------ samples
    def encode(
        self,
        conversation: Sequence[dict[str, str]],
        image: ImageLike,
        regions: Sequence[RegionLike] = (),
        add_generation_prompt: bool = False,
    ) -> EncodedSample:
        image = load_image(image)
        checked = validate_regions(regions, image.size)
        ids, labels, order = self.encode_text(conversation, len(checked), add_generation_prompt)
        pixels, transform = self.image_processor(image)
        boxes, masks = self.image_processor.region_tensors(checked, image.size, transform)
        return EncodedSample(ids, labels, pixels, boxes, masks, order)

    def collate(
        self, samples: Sequence[EncodedSample], padding_side: str = "right"
    ) -> dict[str, torch.Tensor]:
        """Pad and stack samples into a batch (one image per sample)."""
        longest = max(len(s.input_ids) for s in samples)
        pad = self.tokenizer.pad_token_id
        input_ids = torch.full((len(samples), longest), pad, dtype=torch.long)
        labels = torch.full((len(samples), longest), IGNORE_INDEX, dtype=torch.long)
        attention = torch.zeros((len(samples), longest), dtype=torch.long)
        token_index, offset = [], 0
        for row, sample in enumerate(samples):
            n = len(sample.input_ids)
            cols = slice(longest - n, longest) if padding_side == "left" else slice(0, n)
            input_ids[row, cols] = torch.tensor(sample.input_ids)
            labels[row, cols] = torch.tensor(sample.labels)
            attention[row, cols] = 1
            token_index += [offset + k for k in sample.region_token_index]
            offset += len(sample.region_boxes)
        return {
            "input_ids": input_ids,
            "attention_mask": attention,
            "labels": labels,
            "pixel_values": torch.stack([s.pixel_values for s in samples]),
            "region_boxes": torch.cat([s.region_boxes for s in samples]),
            "region_masks": torch.cat([s.region_masks for s in samples]),
            "region_image_index": torch.cat(
                [torch.full((len(s.region_boxes),), i, dtype=torch.long) for i, s in enumerate(samples)]
            ),
            "region_token_index": torch.tensor(token_index, dtype=torch.long),
        }

    def __call__(
        self,
        conversations: Sequence[Sequence[dict[str, str]]],
        images: Sequence[ImageLike],
        regions: Sequence[Sequence[RegionLike]] | None = None,
        add_generation_prompt: bool = False,
        padding_side: str = "right",
    ) -> dict[str, torch.Tensor]:
        """Process a batch: one conversation, image and region list per sample."""
        regions = regions if regions is not None else [[] for _ in conversations]
        if not (len(conversations) == len(images) == len(regions)):
            raise ValueError(
                f"batch sizes differ: {len(conversations)} conversations, {len(images)} images, "
                f"{len(regions)} region lists"
            )
        samples = [
            self.encode(c, i, r, add_generation_prompt) for c, i, r in zip(conversations, images, regions)
        ]
        return self.collate(samples, padding_side)

    def decode(self, token_ids: torch.Tensor | Sequence[int]) -> str:
        """The answer text, cut at the first stop string (the model's end marker, if it has one)."""
        text = self.tokenizer.decode(token_ids, skip_special_tokens=True)
        for stop in self.stop_strings:
            text = text.split(stop, 1)[0]
        return text.strip()

    @functools.cached_property
    def stop_token_ids(self) -> list[int]:
        """Ids of vocabulary tokens that spell a stop string (surrounding spaces aside): generation
        ends on them like on the end-of-sequence token. Empty without stop strings."""
        if not self.stop_strings:
            return []
        wanted = {stop.strip() for stop in self.stop_strings}
        return sorted(
            token_id
            for token, token_id in self.tokenizer.get_vocab().items()
            if any(stop in token or not stop.isascii() for stop in wanted)  # cheap filter before decoding
            and self.tokenizer.convert_tokens_to_string([token]).strip() in wanted
        )

    @property
    def end_token_ids(self) -> int | list[int]:
        """What generation stops on, as ``generate(eos_token_id=...)`` takes it: the tokenizer's
        end-of-sequence id, plus :attr:`stop_token_ids` when there are any."""
        eos = self.tokenizer.eos_token_id
        ids = list(dict.fromkeys([*(eos if isinstance(eos, list) else [eos]), *self.stop_token_ids]))
        return ids if len(ids) > 1 else ids[0]
