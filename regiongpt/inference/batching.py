"""Batched inference on shared prefixes: encode samples, generate, score.

* :func:`encode_samples` equals ``[processor.encode(c, image, r, ...) for ...]`` but preprocesses
  the image once and tokenises each distinct conversation once.
* :func:`generate_rows` continues ``N`` rows after a cached prefix (or from scratch): plain
  greedy search with :func:`~regiongpt.inference.greedy.greedy_decode` (finished rows leave the
  batch), anything else with the language model's own ``generate``.
* :func:`score_rows` sums the log-probabilities of the supervised tokens of ``N`` rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from PIL import Image

from regiongpt.imaging import ImageLike, load_image
from regiongpt.inference.greedy import greedy_decode, plain_greedy
from regiongpt.inference.prefix import (
    PrefixState,
    embed_suffix,
    expand_cache,
    first_supervised,
    new_cache,
    prefill,
    shared_prefix_length,
    suffix_batch,
)
from regiongpt.modeling.cache import cache_argument
from regiongpt.processing import IGNORE_INDEX, EncodedSample, RegionGPTProcessor
from regiongpt.regions import RegionLike, validate_regions


def _key(conversation: Sequence[dict[str, str]], num_regions: int) -> tuple | None:
    """A hashable key of a conversation (``None`` if it holds unhashable values)."""
    try:
        key = (tuple(tuple(sorted(turn.items())) for turn in conversation), num_regions)
        hash(key)
    except (TypeError, AttributeError):
        return None
    return key


def encode_samples(
    processor: RegionGPTProcessor,
    conversations: Sequence[Sequence[dict[str, str]]],
    image: ImageLike | Image.Image,
    regions: Sequence[Sequence[RegionLike]],
    add_generation_prompt: bool = False,
) -> list[EncodedSample]:
    """Samples for one image (same result as :meth:`RegionGPTProcessor.encode` per conversation)."""
    image = load_image(image)
    pixels, transform = processor.image_processor(image)
    texts: dict[tuple, tuple[list[int], list[int], list[int]]] = {}  # one tokenisation per conversation
    samples = []
    for conversation, regs in zip(conversations, regions):
        checked = validate_regions(regs, image.size)
        key = _key(conversation, len(checked))
        text = texts.get(key) if key is not None else None
        if text is None:
            text = processor.encode_text(conversation, len(checked), add_generation_prompt)
            if key is not None:
                texts[key] = text
        ids, labels, order = text
        boxes, masks = processor.image_processor.region_tensors(checked, image.size, transform)
        samples.append(EncodedSample(ids, labels, pixels, boxes, masks, order))
    return samples


def plan_prefix(
    model, samples: Sequence[EncodedSample], features, for_scoring: bool = False
) -> PrefixState | None:
    """The prefix all samples share, computed once (``None`` for one sample or nothing shared)."""
    if len(samples) < 2:
        return None
    cfg = model.config
    limit = min(first_supervised(s.labels) for s in samples) - 1 if for_scoring else None
    length = shared_prefix_length(
        [s.input_ids for s in samples], cfg.image_token_id, cfg.region_token_id, limit
    )
    return prefill(model, samples[0].input_ids[:length], features) if length > 0 else None


def _check_prefix(samples: Sequence[EncodedSample], prefix: PrefixState | None) -> None:
    if prefix is None:
        return
    p = len(prefix)
    if any(len(s.input_ids) <= p or s.input_ids[:p] != prefix.ids for s in samples):
        raise ValueError("every sample must start with the cached prefix and add at least one token")


def generate_rows(
    model,
    samples: Sequence[EncodedSample],
    features,
    prefix: PrefixState | None = None,
    consume_prefix: bool = False,
    **generate_kwargs: Any,
) -> torch.Tensor:
    """New token ids ``(N, T)`` for each sample, continuing after ``prefix`` (whose ids every
    sample starts with). The prefix cache is left untouched unless ``consume_prefix`` (one row:
    the cache then grows by the row's suffix and the generated tokens but the last)."""
    lm = model.language_model
    p = len(prefix) if prefix is not None else 0
    n = len(samples)
    _check_prefix(samples, prefix)
    batch = suffix_batch(samples, p, generate_kwargs["pad_token_id"], model.config.region_token_id, "left")
    embeds = embed_suffix(model, samples, batch, features)
    if prefix is None:
        cache = new_cache(lm)
    elif consume_prefix:
        if n != 1:
            raise ValueError("only a one-row generation can consume its prefix cache")
        cache = prefix.cache
    else:
        cache = expand_cache(prefix.cache, n, lm)
    mask = batch.attention_mask.to(embeds.device)
    if plain_greedy(lm, generate_kwargs):  # the same search, finished rows leave the batch
        return greedy_decode(lm, embeds, mask, cache, **generate_kwargs)
    if p:  # generate() takes the full sequence's embeddings and runs those after the cache
        embeds = torch.cat([embeds.new_zeros(n, p, embeds.shape[-1]), embeds], dim=1)
    return lm.generate(
        inputs_embeds=embeds, attention_mask=mask, **cache_argument(lm, cache), **generate_kwargs
    )


def score_rows(
    model, samples: Sequence[EncodedSample], features, prefix: PrefixState | None = None
) -> list[float]:
    """Sum over supervised tokens of ``log p(token | everything before)`` per sample, all rows in
    one forward pass of their suffixes after ``prefix`` (right padding).

    Only the hidden states that predict a supervised token are needed, so the block is cut after
    the last of them (a row's final token predicts nothing and never runs), and the LM head runs
    on those positions only."""
    device = model.get_input_embeddings().weight.device
    p = len(prefix) if prefix is not None else 0
    _check_prefix(samples, prefix)
    batch = suffix_batch(samples, p, 0, model.config.region_token_id, "right")
    embeds = embed_suffix(model, samples, batch, features)
    targets = batch.labels[:, 1:]
    keep = targets != IGNORE_INDEX
    used = keep.any(dim=0).nonzero()
    width = int(used[-1]) + 1 if len(used) else 0  # causal: later tokens cannot change these
    run = max(width, 1)
    targets, keep = targets[:, :width].to(device), keep[:, :width].to(device)
    lm = model.language_model
    cache = expand_cache(prefix.cache, len(samples), lm) if prefix is not None else None
    hidden = lm.get_decoder()(
        inputs_embeds=embeds[:, :run],
        attention_mask=batch.attention_mask[:, : p + run].to(device),
        position_ids=batch.position_ids[:, :run].to(device),
        use_cache=cache is not None,
        **cache_argument(lm, cache),
    ).last_hidden_state
    logits = model.get_output_embeddings()(hidden[:, :width][keep]).float()
    token_logp = F.log_softmax(logits, dim=-1).gather(1, targets[keep][:, None]).squeeze(1)
    rows = torch.arange(len(samples), device=device)[:, None].expand_as(targets)[keep]
    totals = torch.zeros(len(samples), device=device, dtype=torch.float32).index_add_(0, rows, token_logp)
    return [float(v) for v in totals.cpu()]
