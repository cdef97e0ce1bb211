"""Helpers of the GPU benchmarks: shapes, device, timing, measured peaks, results.

Real shapes are the ``regiongpt`` / ``gpt4roi`` presets (CLIP ViT-L/14 at 336 / 224 px + a
7B Llama-shaped LM), random init in bf16 with SDPA attention. ``--tiny`` swaps in a few-layer,
narrow version of the same architecture (float32 on CPU) to check the scripts' logic anywhere.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from regiongpt.modeling.configuration import RegionGPTConfig, preset_config  # noqa: E402


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--tiny", action="store_true", help="tiny shapes (CPU-friendly) to check the logic")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    return p


QUICK = False  # --tiny: time each thing once (after one warm-up run)


def setup(args: argparse.Namespace) -> tuple[torch.device, torch.dtype]:
    global QUICK
    QUICK = args.tiny
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    return device, dtype


def shrink(config: RegionGPTConfig) -> RegionGPTConfig:
    """The same architecture with few, narrow layers."""
    v, t, r = config.vision_config, config.text_config, config.region_config
    v.hidden_size, v.intermediate_size, v.num_attention_heads, v.num_hidden_layers = 64, 128, 4, 24
    v.image_size = 112
    t.hidden_size, t.intermediate_size, t.num_hidden_layers = 128, 256, 2
    t.num_attention_heads = t.num_key_value_heads = 4
    t.head_dim = 32
    r["hidden_size"] = 64
    r["group_norm_groups"] = 8
    if r.get("level_sizes"):
        r["level_sizes"] = [s // 4 for s in r["level_sizes"]]
    config.region_config = r
    return config


def model_config(preset: str, tiny: bool, **region: Any) -> RegionGPTConfig:
    """A preset's config (optionally shrunk), region settings overridden, SDPA attention."""
    config = preset_config(preset)
    config.region_config = {**config.region_config, **region}
    if tiny:
        config = shrink(config)
    config.image_token_id, config.region_token_id = 0, 1  # placeholders: ids 0/1 are replaced anyway
    for sub in (config.text_config, config.vision_config):
        sub._attn_implementation = "sdpa"
    return config


def build(config: RegionGPTConfig, device: torch.device, dtype: torch.dtype):
    """Random-init model directly on ``device`` in ``dtype``."""
    from regiongpt.modeling.modeling import RegionGPTForConditionalGeneration

    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            model = RegionGPTForConditionalGeneration(config)
    finally:
        torch.set_default_dtype(previous)
    return model.to(device=device, dtype=dtype)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_fn(fn: Callable[[], Any], device: torch.device, repeat: int = 5, warmup: int = 2) -> float:
    """Median seconds of ``fn()`` (device synchronised around each run)."""
    if QUICK:
        repeat, warmup = 1, 1
    for _ in range(warmup):
        fn()
    sync(device)
    runs = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        sync(device)
        runs.append(time.perf_counter() - start)
    return sorted(runs)[len(runs) // 2]


def matmul_peak(device: torch.device, dtype: torch.dtype, size: int = 8192) -> float:
    """Measured dense matmul throughput (FLOP/s) at ``size^3``: the MFU denominator."""
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    seconds = time_fn(lambda: a @ b, device, repeat=10, warmup=3)
    return 2 * size**3 / seconds


def memory_bandwidth(device: torch.device, gib: float = 2.0) -> float:
    """Measured device copy bandwidth (bytes/s, read + write) of a ``gib`` GiB buffer."""
    n = int(gib * 2**30) // 4
    src = torch.empty(n, device=device, dtype=torch.float32)
    dst = torch.empty_like(src)
    seconds = time_fn(lambda: dst.copy_(src), device, repeat=10, warmup=3)
    return 2 * n * 4 / seconds


def parameters(module: torch.nn.Module, trainable: bool | None = None) -> int:
    return sum(p.numel() for p in module.parameters() if trainable is None or p.requires_grad == trainable)


def device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"


def write(name: str, tiny: bool, payload: dict[str, Any]) -> Path:
    """``benchmarks/results/gpu_NAME.json`` (``gpu_tiny_NAME.json`` for ``--tiny`` runs)."""
    out = ROOT / "benchmarks" / "results" / f"gpu_{'tiny_' if tiny else ''}{name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    record = {"benchmark": name, "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "tiny": tiny, "torch": torch.__version__, **payload}  # fmt: skip
    out.write_text(json.dumps(record, indent=2, default=str) + "\n")
    print(f"wrote {out.relative_to(ROOT)}")
    return out


def synthetic_batch(config: RegionGPTConfig, batch: int, length: int, regions_per_sample: int,
                    device: torch.device, dtype: torch.dtype) -> dict[str, torch.Tensor]:  # fmt: skip
    """A training-shaped batch: image placeholders first, ``regions_per_sample`` region
    placeholders, random text, labels on the last quarter."""
    size = config.image_size
    n_image = config.num_image_tokens
    vocab = int(config.text_config.vocab_size)
    ids = torch.randint(2, vocab, (batch, length), device=device)
    ids[:, :n_image] = config.image_token_id
    step = max(1, (length - n_image) // (2 * regions_per_sample + 1))
    for k in range(regions_per_sample):
        ids[:, n_image + (k + 1) * step] = config.region_token_id
    labels = ids.clone()
    labels[:, : length - length // 4] = -100
    r = batch * regions_per_sample
    xy = torch.rand(r, 2, device=device) * size * 0.6
    wh = torch.rand(r, 2, device=device) * size * 0.3 + 8
    boxes = torch.cat([xy, xy + wh], dim=1)
    masks = torch.zeros(r, size, size, device=device, dtype=dtype)
    for i, (x1, y1, x2, y2) in enumerate(boxes.round().long().tolist()):
        masks[i, y1:y2, x1:x2] = 1
    return {
        "input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels,
        "pixel_values": torch.randn(batch, 3, size, size, device=device, dtype=dtype),
        "region_boxes": boxes, "region_masks": masks,
        "region_image_index": torch.arange(batch, device=device).repeat_interleave(regions_per_sample),
        "region_token_index": torch.arange(r, device=device),
    }  # fmt: skip
