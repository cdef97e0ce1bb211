"""cache_argument: the key/value cache goes under the keyword the language model takes."""

from __future__ import annotations

import warnings

import torch
from transformers import DynamicCache

from regiongpt.modeling.cache import cache_argument


class _NewDecoder(torch.nn.Module):
    def forward(self, inputs_embeds=None, cache=None, use_cache=None, **kwargs):
        return cache


class _OldDecoder(torch.nn.Module):
    def forward(self, inputs_embeds=None, past_key_values=None, use_cache=None, **kwargs):
        return past_key_values


class _LM(torch.nn.Module):
    def __init__(self, decoder: torch.nn.Module) -> None:
        super().__init__()
        self.decoder = decoder

    def get_decoder(self) -> torch.nn.Module:
        return self.decoder


def test_the_cache_keyword_follows_the_decoder_signature(tiny_factory):
    marker = object()
    for decoder in (_NewDecoder(), _OldDecoder()):
        lm = _LM(decoder)
        assert decoder(**cache_argument(lm, marker)) is marker
    model, _ = tiny_factory()  # the installed transformers' Llama: the cache must really be used
    lm = model.language_model
    cache = DynamicCache(config=lm.config)
    embeds = torch.zeros(1, 5, lm.config.hidden_size)
    with warnings.catch_warnings():  # the keyword it picks is not a deprecated one
        warnings.filterwarnings("error", ".*past_key_values", FutureWarning)
        lm.get_decoder()(inputs_embeds=embeds, use_cache=True, **cache_argument(lm, cache))
    assert cache.get_seq_length() == 5
