"""Greedy decoding that retires finished rows.

``generate()`` of transformers keeps every row in the batch until the last one stops, so a batch
of short answers pays for its longest. :func:`greedy_decode` is the same greedy search (argmax of
the float32 last-position logits, finished rows padded, stop when all rows ended or at the
limit) but drops a row from the batch and from the key/value cache as soon as it emits an
end-of-sequence token. It is used only when nothing else would shape the logits
(:func:`plain_greedy`); sampling and any logits processing go through ``generate()``.
"""

from __future__ import annotations

from typing import Any

import torch

from regiongpt.modeling.cache import cache_argument

#: Generation-config entries that do not change greedy decoding.
HARMLESS_CONFIG = {
    "bos_token_id", "eos_token_id", "pad_token_id", "use_cache", "output_attentions", "output_hidden_states",
    "_from_model_config", "transformers_version", "max_length", "max_new_tokens", "do_sample", "temperature",
    "top_p", "top_k",
}  # fmt: skip
GREEDY_KWARGS = {"max_new_tokens", "pad_token_id", "eos_token_id", "do_sample"}


def plain_greedy(language_model: torch.nn.Module, generate_kwargs: dict[str, Any]) -> bool:
    """Whether ``generate(**generate_kwargs)`` would be plain greedy search (no logits processing)."""
    if generate_kwargs.get("do_sample", True) or set(generate_kwargs) - GREEDY_KWARGS:
        return False
    if generate_kwargs.get("pad_token_id") is None or not generate_kwargs.get("max_new_tokens"):
        return False
    config = getattr(language_model, "generation_config", None)
    return config is not None and set(config.to_diff_dict()) <= HARMLESS_CONFIG


def greedy_decode(
    language_model: torch.nn.Module,
    inputs_embeds: torch.Tensor,
    attention_mask: torch.Tensor,
    past_key_values,
    max_new_tokens: int,
    pad_token_id: int,
    eos_token_id: int | list[int] | None = None,
    do_sample: bool = False,
) -> torch.Tensor:
    """New tokens ``(N, T)`` after ``inputs_embeds`` ``(N, S, D)``, which continue the
    ``past_key_values`` (``P`` tokens); ``attention_mask`` ``(N, P + S)`` marks real tokens.

    Rows end with their end-of-sequence token and are padded after it (as ``generate()``); the
    cache is consumed (for one row it ends holding every token but the last generated one)."""
    if do_sample:
        raise ValueError("greedy_decode does not sample")
    device = inputs_embeds.device
    n, length = inputs_embeds.shape[:2]
    positions = (attention_mask.long().cumsum(-1) - 1).masked_fill(attention_mask == 0, 0)[:, -length:]
    mask = (
        attention_mask if not bool((attention_mask == 1).all()) else None
    )  # as generate(): none if no padding
    stops = (
        []
        if eos_token_id is None
        else [eos_token_id]
        if isinstance(eos_token_id, int)
        else list(eos_token_id)
    )
    eos = torch.tensor(stops, dtype=torch.long, device=device)
    out = torch.full((n, max_new_tokens), pad_token_id, dtype=torch.long, device=device)
    rows = torch.arange(n, device=device)
    inputs: dict[str, torch.Tensor] = {"inputs_embeds": inputs_embeds}
    for step in range(max_new_tokens):
        logits = language_model(
            **inputs, attention_mask=mask, position_ids=positions, use_cache=True, logits_to_keep=1,
            **cache_argument(language_model, past_key_values),
        ).logits[:, -1].to(dtype=torch.float32)  # fmt: skip
        tokens = logits.argmax(dim=-1)
        out[rows, step] = tokens
        live = ~torch.isin(tokens, eos) if len(stops) else torch.ones_like(tokens, dtype=torch.bool)
        if step + 1 == max_new_tokens or not bool(live.any()):
            return out[:, : step + 1]
        if not bool(live.all()):  # retire finished rows
            keep = live.nonzero().squeeze(1)
            past_key_values.batch_select_indices(keep)
            rows, tokens, positions = rows[keep], tokens[keep], positions[keep]
            mask = mask[keep] if mask is not None else None
        if mask is not None:
            mask = torch.cat([mask, mask.new_ones(len(rows), 1)], dim=1)
        positions = positions[:, -1:] + 1
        inputs = {"input_ids": tokens[:, None]}
    return out
