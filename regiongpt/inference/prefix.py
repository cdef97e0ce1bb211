"""Shared-prefix key/value caching.

Questions about one image share a long start: the system prompt, the image placeholders and the
question up to the first region placeholder. :func:`prefill` runs the language model once on that
prefix (batch 1) and keeps its keys/values (a transformers ``DynamicCache``); :func:`expand_cache`
repeats them for ``N`` rows, and :func:`suffix_batch` lays out what each row adds after the prefix:

    row i:  [prefix, P tokens (in the cache)] [pads] [suffix_i]      (left, for generation)
    row i:  [prefix, P tokens (in the cache)] [suffix_i] [pads]      (right, for scoring)

The attention mask spans prefix + suffix block and masks the pads, and position ids continue at
``P`` without counting pads, so every row computes what it would compute alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from transformers import DynamicCache

from regiongpt.modeling.cache import cache_argument
from regiongpt.processing import IGNORE_INDEX, EncodedSample


@dataclass
class PrefixState:
    """Keys/values of the tokens ``ids`` for one row: ``cache`` layers hold ``(1, H, len(ids), d)``.

    ``regions``/``features`` record what the cached region/image placeholders were filled with
    (a chat session reuses the cache only while they are the same objects)."""

    ids: list[int]
    cache: DynamicCache
    regions: tuple[Any, ...] = ()
    features: Any = field(default=None, repr=False)

    def __len__(self) -> int:
        return len(self.ids)

    def crop(self, length: int) -> None:
        """Keep the first ``length`` tokens (in place; also drops entries an interrupted
        generation appended to the cache beyond ``ids``)."""
        cached = self.cache.get_seq_length()
        if length < cached:
            self.cache.crop(length - cached)
        self.ids = self.ids[:length]


def common_prefix_length(a: Sequence[int], b: Sequence[int]) -> int:
    """Number of leading tokens ``a`` and ``b`` share."""
    n = min(len(a), len(b))
    for index in range(n):
        if a[index] != b[index]:
            return index
    return n


def placeholder_end(ids: Sequence[int], token_id: int | None) -> int:
    """Index just after the last ``token_id`` in ``ids`` (0 when there is none)."""
    if token_id is None:
        return 0
    for index in range(len(ids) - 1, -1, -1):
        if ids[index] == token_id:
            return index + 1
    return 0


def shared_prefix_length(
    rows: Sequence[Sequence[int]],
    image_token_id: int | None,
    region_token_id: int | None,
    limit: int | None = None,
) -> int:
    """Length of the prefix all ``rows`` share and may take from one cache.

    The prefix stops before the first region placeholder (region features differ per row), leaves
    each row at least one token, holds all image placeholders or none (then it is 0), and is at
    most ``limit`` tokens."""
    if not rows:
        return 0
    n = min(len(r) for r in rows) - 1
    if limit is not None:
        n = min(n, limit)
    first = rows[0]
    length = 0
    for row in rows[1:]:
        n = min(n, common_prefix_length(first, row))
    while length < n and first[length] != region_token_id:
        length += 1
    if length and any(placeholder_end(row, image_token_id) > length for row in rows):
        return 0
    return length


def first_supervised(labels: Sequence[int]) -> int:
    """Index of the first label that is not ignored (``len(labels)`` if none)."""
    for index, label in enumerate(labels):
        if label != IGNORE_INDEX:
            return index
    return len(labels)


def new_cache(language_model: torch.nn.Module) -> DynamicCache:
    return DynamicCache(config=language_model.config)


def prefill(model, ids: Sequence[int], features) -> PrefixState:
    """Run the language model once on ``ids`` (image placeholders allowed, no region
    placeholders) and keep the keys/values: a :class:`PrefixState` of batch 1."""
    device = model.get_input_embeddings().weight.device
    input_ids = torch.tensor([list(ids)], dtype=torch.long, device=device)
    embeds = model.embed_inputs(
        input_ids, image_index=torch.zeros(1, dtype=torch.long, device=device), features=features
    )
    cache = new_cache(model.language_model)
    lm = model.language_model
    lm.get_decoder()(inputs_embeds=embeds, use_cache=True, **cache_argument(lm, cache))
    return PrefixState(list(ids), cache, features=features)


def expand_cache(cache: DynamicCache, rows: int, language_model: torch.nn.Module) -> DynamicCache:
    """A new cache holding ``rows`` copies of a batch-1 cache (views until the first append, which
    concatenates into fresh tensors: the source cache is never modified)."""
    data = []
    for layer in cache.layers:
        keys, values = getattr(layer, "keys", None), getattr(layer, "values", None)
        if keys is None or keys.numel() == 0:
            data.append((None, None))
        else:
            data.append((keys.expand(rows, *keys.shape[1:]), values.expand(rows, *values.shape[1:])))
    return DynamicCache(data, config=language_model.config)


@dataclass
class SuffixBatch:
    """What each row adds after a ``P``-token prefix; ``S`` = the longest suffix.

    ``input_ids``: ``(N, S)``; ``attention_mask``: ``(N, P + S)`` (prefix included);
    ``position_ids``: ``(N, S)``; ``labels``: ``(N, S)``; ``region_token_index``: ``(Q,)`` region
    of each placeholder in the suffixes (row-major) into the concatenated regions of the rows."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    position_ids: torch.Tensor
    labels: torch.Tensor
    region_token_index: torch.Tensor


def suffix_batch(
    samples: Sequence[EncodedSample],
    prefix_length: int,
    pad_token_id: int,
    region_token_id: int | None,
    padding_side: str = "left",
) -> SuffixBatch:
    """Pad the suffixes ``ids[prefix_length:]`` of ``samples`` into one block (see the module doc)."""
    p = prefix_length
    longest = max(len(s.input_ids) - p for s in samples)
    n = len(samples)
    input_ids = torch.full((n, longest), pad_token_id, dtype=torch.long)
    labels = torch.full((n, longest), IGNORE_INDEX, dtype=torch.long)
    attention = torch.zeros((n, p + longest), dtype=torch.long)
    attention[:, :p] = 1
    token_index: list[int] = []
    offset = 0
    for row, sample in enumerate(samples):
        suffix = sample.input_ids[p:]
        start = longest - len(suffix) if padding_side == "left" else 0
        input_ids[row, start : start + len(suffix)] = torch.tensor(suffix, dtype=torch.long)
        labels[row, start : start + len(suffix)] = torch.tensor(sample.labels[p:], dtype=torch.long)
        attention[row, p + start : p + start + len(suffix)] = 1
        skipped = sum(1 for t in sample.input_ids[:p] if t == region_token_id)
        token_index += [offset + k for k in sample.region_token_index[skipped:]]
        offset += len(sample.region_boxes)
    position_ids = (attention.cumsum(-1) - 1).clamp(min=0)[:, p:]
    return SuffixBatch(
        input_ids, attention, position_ids, labels, torch.tensor(token_index, dtype=torch.long)
    )


def embed_suffix(model, samples: Sequence[EncodedSample], batch: SuffixBatch, features) -> torch.Tensor:
    """Input embeddings ``(N, S, D)`` of the suffix block, region (and image) features scattered in."""
    device = model.get_input_embeddings().weight.device
    boxes = torch.cat([s.region_boxes for s in samples])
    return model.embed_inputs(
        batch.input_ids.to(device),
        region_boxes=boxes.to(device),
        region_masks=torch.cat([s.region_masks for s in samples]).to(device),
        region_image_index=torch.zeros(len(boxes), dtype=torch.long, device=device),
        region_token_index=batch.region_token_index.to(device),
        image_index=torch.zeros(len(samples), dtype=torch.long, device=device),
        features=features,
    )
