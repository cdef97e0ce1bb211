"""Tiny on-disk checkpoints in the real layouts: HF LLaVA, and GPT4RoI's delta + LLaMA + CLIP."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import save_file
from transformers import CLIPConfig, CLIPModel, CLIPVisionConfig, LlamaConfig, LlamaForCausalLM

from regiongpt.convert.gpt4roi_checks import GPT4ROI_TOKENS, LLAMA_VOCAB

VISION_WIDTH = 32  # = GPT4RoI's spi width (embed_dims is the CLIP width)
LM_WIDTH = 48
IMAGE_SIZE = 56  # 4x4 patch grid
ROI = 14
BOX_HIDDEN = 16
GN_GROUPS = 8
SPI = "model.spi_module."


def tiny_vision(layers: int) -> CLIPVisionConfig:
    return CLIPVisionConfig(
        hidden_size=VISION_WIDTH,
        intermediate_size=64,
        num_hidden_layers=layers,
        num_attention_heads=4,
        image_size=IMAGE_SIZE,
        patch_size=14,
    )


def make_llava(path: Path, tokenizer):
    """A random tiny ``LlavaForConditionalGeneration`` saved with ``tokenizer`` (+ ``<image>``)."""
    from transformers import LlavaConfig, LlavaForConditionalGeneration

    tokenizer.add_tokens(["<image>"], special_tokens=True)
    image_id = tokenizer.convert_tokens_to_ids("<image>")
    text = LlamaConfig(
        vocab_size=len(tokenizer) + 63,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=2,
        tie_word_embeddings=False,
        max_position_embeddings=512,
    )
    config = LlavaConfig(
        vision_config=tiny_vision(3),
        text_config=text,
        image_token_index=image_id,
        image_seq_length=16,
        vision_feature_layer=-2,
    )
    torch.manual_seed(0)
    model = LlavaForConditionalGeneration(config).eval()
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return model


def word_tokenizer(special: bool = True):
    """A LLaMA-shaped 32000-token tokenizer (``<unk>``, ``<s>``, ``</s>`` = 0, 1, 2)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2, **{f"w{i}": i for i in range(3, LLAMA_VOCAB)}}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    backend.add_special_tokens(["<unk>", "<s>", "</s>"])
    names = dict(unk_token="<unk>", bos_token="<s>", eos_token="</s>") if special else {}
    return PreTrainedTokenizerFast(tokenizer_object=backend, **names)


def _rand(*shape: int, scale: float | None = None) -> torch.Tensor:
    fan_in = shape[1] * (shape[2] * shape[3] if len(shape) == 4 else 1) if len(shape) > 1 else shape[0]
    return torch.randn(*shape) * (scale if scale is not None else fan_in**-0.5)


def spi_state(levels: int = 4, rounds: int = 5) -> dict[str, torch.Tensor]:
    """GPT4RoI's region module + projector, full (stored as is in the delta), tiny widths."""
    c, state = VISION_WIDTH, {}
    for level in range(levels):
        state[f"{SPI}mlvl_fuse.input_conv.{level}.weight"] = _rand(c, c + 2, 1, 1)
        state[f"{SPI}mlvl_fuse.input_conv.{level}.bias"] = _rand(c, scale=0.1)
        state[f"{SPI}roi_align.pconvs.{level}.weight"] = _rand(c, c, 3, 3)
        state[f"{SPI}roi_align.pconvs.{level}.bias"] = _rand(c, scale=0.1)
    for index in range(rounds):
        state[f"{SPI}mlvl_fuse.fuse_convs.{index}.conv.weight"] = _rand(c, c, 3, 3)
        state[f"{SPI}mlvl_fuse.fuse_convs.{index}.gn.weight"] = 1 + _rand(c, scale=0.1)
        state[f"{SPI}mlvl_fuse.fuse_convs.{index}.gn.bias"] = _rand(c, scale=0.1)
    state[f"{SPI}roi_align.flatten_linear.weight"] = _rand(c, c * ROI * ROI)
    state[f"{SPI}roi_align.flatten_linear.bias"] = _rand(c, scale=0.1)
    for index, (rows, cols) in {0: (BOX_HIDDEN, 4), 3: (c, BOX_HIDDEN)}.items():
        state[f"{SPI}roi_align.pos_embedd.{index}.weight"] = _rand(rows, cols)
        state[f"{SPI}roi_align.pos_embedd.{index}.bias"] = _rand(rows, scale=0.1)
    for index, width in ((2, BOX_HIDDEN), (5, c)):
        state[f"{SPI}roi_align.pos_embedd.{index}.weight"] = 1 + _rand(width, scale=0.1)
        state[f"{SPI}roi_align.pos_embedd.{index}.bias"] = _rand(width, scale=0.1)
    state[f"{SPI}roi_align.updims.weight"] = _rand(LM_WIDTH, c)
    state[f"{SPI}roi_align.updims.bias"] = _rand(LM_WIDTH, scale=0.1)
    state["model.mm_projector.weight"] = _rand(LM_WIDTH, c)
    state["model.mm_projector.bias"] = _rand(LM_WIDTH, scale=0.1)
    return state


def llama_config(vocab: int = LLAMA_VOCAB, positions: int = 2048) -> LlamaConfig:
    return LlamaConfig(
        vocab_size=vocab,
        hidden_size=LM_WIDTH,
        intermediate_size=96,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=positions,
        rms_norm_eps=1e-6,
        tie_word_embeddings=False,
        bos_token_id=1,
        eos_token_id=2,
    )


@dataclass
class GPT4RoIFiles:
    delta: Path
    base: Path
    clip: Path
    finetuned: dict[str, torch.Tensor]  # GPT4RoI's merged weights (the reference)
    clip_model: CLIPModel


def _save_bins(state: dict[str, torch.Tensor], directory: Path) -> None:
    keys = sorted(state)
    halves = [keys[: len(keys) // 2], keys[len(keys) // 2 :]]
    weight_map = {}
    for index, part in enumerate(halves, start=1):
        name = f"pytorch_model-0000{index}-of-00002.bin"
        torch.save({k: state[k].contiguous() for k in part}, directory / name)
        weight_map.update(dict.fromkeys(part, name))
    (directory / "pytorch_model.bin.index.json").write_text(json.dumps({"weight_map": weight_map}))


def make_gpt4roi(
    root: Path,
    bins: bool = False,
    tokenizer_in_delta: bool = True,
    base_vocab: int = LLAMA_VOCAB,
    base_positions: int = 2048,
    base_special_tokens: bool = True,
) -> GPT4RoIFiles:
    """LLaMA base + GPT4RoI delta (+ its config/tokenizer) + a CLIP checkpoint, under ``root``."""
    torch.manual_seed(0)
    paths = {name: root / name for name in ("delta", "base", "clip")}
    for path in paths.values():
        path.mkdir(parents=True, exist_ok=True)
    base = LlamaForCausalLM(llama_config(base_vocab, base_positions))
    base.save_pretrained(paths["base"])
    word_tokenizer(special=base_special_tokens).save_pretrained(paths["base"])

    base_state = {k: v.detach().clone() for k, v in base.state_dict().items()}
    finetuned, delta = {}, {}
    for key, tensor in base_state.items():
        tuned = tensor + 0.02 * torch.randn_like(tensor)
        if key in ("model.embed_tokens.weight", "lm_head.weight"):
            tuned = torch.cat([tuned[:LLAMA_VOCAB], 0.02 * torch.randn(len(GPT4ROI_TOKENS), LM_WIDTH)])
            change = tuned.clone()
            change[:LLAMA_VOCAB] -= tensor[:LLAMA_VOCAB]
        else:
            change = tuned - tensor
        finetuned[key], delta[key] = tuned, change
    for key, tensor in spi_state().items():
        finetuned[key] = delta[key] = tensor
    if bins:
        _save_bins(delta, paths["delta"])
    else:
        save_file({k: v.contiguous() for k, v in delta.items()}, str(paths["delta"] / "model.safetensors"))
    config = {
        "model_type": "llava",
        "architectures": ["SPILlavaMPTForCausalLM"],
        "hidden_size": LM_WIDTH,
        "intermediate_size": 96,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "rms_norm_eps": 1e-6,
        "max_sequence_length": 2048,
        "vocab_size": LLAMA_VOCAB + 6,
        "mm_vision_select_layer": -2,
        "mm_vision_tower": "openai/clip-vit-large-patch14",
        "mm_use_im_start_end": True,
    }
    (paths["delta"] / "config.json").write_text(json.dumps(config))
    if tokenizer_in_delta:
        tokenizer = word_tokenizer()
        for token in GPT4ROI_TOKENS:
            tokenizer.add_tokens([token], special_tokens=True)
        tokenizer.save_pretrained(paths["delta"])

    text = dict(
        vocab_size=99, hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2
    )
    clip = CLIPModel(
        CLIPConfig(text_config=text, vision_config=tiny_vision(10).to_dict(), projection_dim=8)
    ).eval()
    clip.save_pretrained(paths["clip"])
    return GPT4RoIFiles(paths["delta"], paths["base"], paths["clip"], finetuned, clip)
