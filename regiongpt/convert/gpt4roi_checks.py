"""Checks and shape inspection for GPT4RoI checkpoints: is this a GPT4RoI delta, is the base
LLaMA-1-7B, does the tokenizer match the embedding rows."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import AutoTokenizer

from regiongpt.convert.templates import GPT4ROI_V0_TEMPLATE
from regiongpt.convert.weights import ConversionError, WeightFiles, check_shape, note

LLAMA_VOCAB = 32000
#: Tokens GPT4RoI added after LLaMA's 32000, in id order.
GPT4ROI_TOKENS = ("[PAD]", "<im_patch>", "<bbox>", "<point>", "<im_start>", "<im_end>")
SPI = "model.spi_module."


@dataclass
class Layout:
    """What the checkpoint's shapes say about the region module and the LM."""

    levels: int
    fuse_rounds: int
    width: int
    vision_width: int
    roi_size: int
    box_hidden: int
    lm_width: int
    vocab: int


def need(files: WeightFiles, key: str) -> torch.Tensor:
    if key not in files:
        raise ConversionError(f"{files.directory} lacks {key}: not a GPT4RoI checkpoint")
    return files.get(key)


def _count(keys: list[str], pattern: str) -> int:
    found = sorted({int(m.group(1)) for k in keys if (m := re.fullmatch(pattern, k))})
    if found != list(range(len(found))):
        raise ConversionError(
            f"tensors matching {pattern} are numbered {found}, expected 0..{len(found) - 1}"
        )
    return len(found)


def inspect_layout(files: WeightFiles) -> Layout:
    keys = files.keys()
    levels = _count(keys, re.escape(SPI) + r"mlvl_fuse\.input_conv\.(\d+)\.weight")
    rounds = _count(keys, re.escape(SPI) + r"mlvl_fuse\.fuse_convs\.(\d+)\.conv\.weight")
    if levels == 0:
        raise ConversionError(
            f"{files.directory} has no {SPI}mlvl_fuse.input_conv.*: not a GPT4RoI checkpoint"
        )
    conv_in = need(files, SPI + "mlvl_fuse.input_conv.0.weight")
    width, vision_width = int(conv_in.shape[0]), int(conv_in.shape[1]) - 2
    flat = need(files, SPI + "roi_align.flatten_linear.weight")
    roi_size = int(round((flat.shape[1] / width) ** 0.5))
    check_shape(SPI + "roi_align.flatten_linear.weight", flat, (width, width * roi_size * roi_size))
    box_hidden = int(need(files, SPI + "roi_align.pos_embedd.0.weight").shape[0])
    lm_width = int(need(files, SPI + "roi_align.updims.weight").shape[0])
    check_shape(
        "model.mm_projector.weight", need(files, "model.mm_projector.weight"), (lm_width, vision_width)
    )
    vocab = int(need(files, "model.embed_tokens.weight").shape[0])
    if vocab < LLAMA_VOCAB + len(GPT4ROI_TOKENS):
        raise ConversionError(f"model.embed_tokens.weight has {vocab} rows; GPT4RoI's has {LLAMA_VOCAB + 6}")
    return Layout(levels, rounds, width, vision_width, roi_size, box_hidden, lm_width, vocab)


def check_base_config(config, src_config: dict, base: Path) -> None:
    if config.vocab_size != LLAMA_VOCAB:
        raise ConversionError(
            f"the base {base} has a {config.vocab_size}-token vocabulary; GPT4RoI's delta is over the "
            f"{LLAMA_VOCAB}-token LLaMA-1-7B (not Vicuna or LLaVA, which add tokens)"
        )
    positions = getattr(config, "max_position_embeddings", 2048)
    if positions > 2048:
        raise ConversionError(
            f"the base {base} has {positions} positions, which looks like LLaMA-2; GPT4RoI's delta is over "
            "LLaMA-1-7B (2048): merged onto another base it loads but talks nonsense "
            "(--skip-base-check merges anyway)"
        )
    for name in ("hidden_size", "num_hidden_layers", "intermediate_size", "rms_norm_eps"):
        if name in src_config and getattr(config, name, None) != src_config[name]:
            raise ConversionError(
                f"the base {base} has {name}={getattr(config, name, None)}, the checkpoint's config.json "
                f"{src_config[name]} (--skip-base-check merges anyway)"
            )


def check_delta_kind(delta: WeightFiles, base: WeightFiles | None) -> None:
    """A delta's final-norm weights are near zero; merged weights are near the base's."""
    norm = need(delta, "model.norm.weight").float()
    if base is None:
        if norm.abs().mean() < 0.1:
            raise ConversionError(
                f"{delta.directory} looks like a delta (model.norm.weight is near zero): pass --base"
            )
        return
    ratio = float(norm.norm() / base.get("model.norm.weight").float().norm().clamp(min=1e-12))
    if ratio > 0.5:
        raise ConversionError(
            f"{delta.directory} looks like merged weights, not a delta (model.norm.weight is {ratio:.2f}x the "
            "base's): drop --base"
        )


def load_tokenizer(src: Path, base: Path | None, vocab: int):
    names = ("tokenizer.json", "tokenizer.model", "tokenizer_config.json")
    dirs = [d for d in (src, base) if d is not None and any((d / n).is_file() for n in names)]
    if not dirs:
        raise ConversionError(
            f"no tokenizer (tokenizer.model or tokenizer.json) in {src}" + (f" or {base}" if base else "")
        )
    try:
        tokenizer = AutoTokenizer.from_pretrained(dirs[0])
    except (OSError, ValueError, ImportError) as error:
        raise ConversionError(
            f"cannot load the tokenizer in {dirs[0]}: {error} (early LLaMA conversions name the class "
            "'LLaMATokenizer' in tokenizer_config.json: it is 'LlamaTokenizer')"
        ) from None
    for attr, token, index in (("unk_token", "<unk>", 0), ("bos_token", "<s>", 1), ("eos_token", "</s>", 2)):
        if getattr(tokenizer, attr) != token:
            if tokenizer.convert_tokens_to_ids(token) != index:
                raise ConversionError(
                    f"the tokenizer in {dirs[0]} is not LLaMA's: {token!r} is not id {index}"
                )
            note(f"the tokenizer in {dirs[0]} had {attr}={getattr(tokenizer, attr)!r}; set to {token!r}")
            setattr(tokenizer, attr, token)
    for token in GPT4ROI_TOKENS:
        if token not in tokenizer.get_vocab():
            tokenizer.add_tokens([token], special_tokens=True)
    for offset, token in enumerate(GPT4ROI_TOKENS):
        if tokenizer.convert_tokens_to_ids(token) != LLAMA_VOCAB + offset:
            raise ConversionError(
                f"{token!r} is id {tokenizer.convert_tokens_to_ids(token)} in the tokenizer from {dirs[0]}, but "
                f"GPT4RoI's embedding row for it is {LLAMA_VOCAB + offset}: wrong tokenizer for this checkpoint"
            )
    if len(tokenizer) != vocab:
        raise ConversionError(
            f"the tokenizer from {dirs[0]} has {len(tokenizer)} tokens, the checkpoint {vocab} rows"
        )
    tokenizer.pad_token = "[PAD]"
    tokenizer.chat_template = GPT4ROI_V0_TEMPLATE
    return tokenizer
