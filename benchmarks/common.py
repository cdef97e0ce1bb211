"""Shared benchmark helpers: model choice, timing, tables and JSON results.

``--model`` picks what runs:

* ``auto`` (default): the embedded default model when ``regiongpt/assets/default/config.json``
  exists, else ``tiny``;
* ``default``: the embedded default model (EfficientNet-Lite0 + SmolLM2-135M, trained);
* ``untrained-default``: the default model's architecture and real pretrained parts with an
  untrained region encoder (same compute as ``default``; answers run to the token limit);
* ``tiny``: a tiny random model (CLIP 32 wide, Llama 2 x 32; SmolLM2 tokenizer), overhead-bound;
* a checkpoint directory.

Timing: ``--threads 1`` and ``--clock cpu`` (process CPU time) by default, so that other jobs on
a shared machine do not distort the ratios; ``--clock wall --threads N`` for elapsed time on an
idle machine. ``--tag T`` writes ``results/NAME-T.json`` instead of ``results/NAME.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
DEMO_IMAGE = ROOT / "regiongpt" / "assets" / "demo" / "regionworld_test_000000.png"
MODEL_CHOICES = "auto | default | untrained-default | tiny | CHECKPOINT_DIR"


def model_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default="auto", help=f"{MODEL_CHOICES} (see benchmarks/common.py)")
    threads_argument(parser)
    parser.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], default="float32",
                        help="weights and activations (bfloat16 is faster on CPUs with AVX512-BF16/AMX)")  # fmt: skip
    parser.add_argument("--tag", default="", help="results go to results/NAME-TAG.json (default NAME.json)")


def threads_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (default 1: stable timings on a shared machine)")  # fmt: skip
    parser.add_argument("--clock", choices=["cpu", "wall"], default="cpu",
                        help="cpu: process CPU time (robust to other jobs with 1 thread); wall: elapsed")  # fmt: skip


def set_threads(count: int, clock: str = "cpu") -> None:
    import torch

    torch.set_num_threads(count)
    CLOCK["name"] = clock


def resolve_model_name(name: str) -> str:
    if name != "auto":
        return name
    return "default" if (ROOT / "regiongpt" / "assets" / "default" / "config.json").is_file() else "tiny"


def tiny_model():
    """A tiny random-weight model (real CLIP/Llama classes) and its processor."""
    import torch
    from transformers import AutoTokenizer, CLIPVisionConfig, LlamaConfig

    from regiongpt.modeling.configuration import RegionEncoderConfig, RegionGPTConfig
    from regiongpt.modeling.modeling import RegionGPTForConditionalGeneration
    from regiongpt.modeling.pretrained import smollm2_dir
    from regiongpt.processing import RegionGPTProcessor

    torch.manual_seed(0)
    vision = CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=4, num_attention_heads=4,
                              image_size=56, patch_size=14)  # fmt: skip
    text = LlamaConfig(vocab_size=49152, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                       num_attention_heads=4, num_key_value_heads=2, pad_token_id=2, eos_token_id=2,
                       bos_token_id=1, max_position_embeddings=2048)  # fmt: skip
    region = RegionEncoderConfig(type="regiongpt", hidden_size=32, feature_levels=[0], image_token_grid=2)
    config = RegionGPTConfig(vision_config=vision, text_config=text, vision_feature_layers=[-2],
                             region_config=region, system_prompt="Be brief.")  # fmt: skip
    processor = RegionGPTProcessor.from_config(config, AutoTokenizer.from_pretrained(smollm2_dir()))
    return RegionGPTForConditionalGeneration(config).eval(), processor


def load_engine(name: str, dtype: str = "float32"):
    """``(RegionGPT, resolved name)`` for a ``--model`` value (see the module docstring), with its
    weights in ``dtype`` (``--dtype``)."""
    from regiongpt.api import RegionGPT, resolve_dtype

    RUN["dtype"] = dtype

    name = resolve_model_name(name)
    if name == "tiny":
        model, processor = tiny_model()
        return RegionGPT(model.to(resolve_dtype(dtype)), processor, name="tiny"), name
    if name == "untrained-default":
        import torch

        from regiongpt.modeling.checkpoint import build_model
        from regiongpt.modeling.configuration import preset_config
        from regiongpt.modeling.pretrained import load_tokenizer
        from regiongpt.processing import RegionGPTProcessor

        torch.manual_seed(0)
        config = preset_config("tiny-default")
        processor = RegionGPTProcessor.from_config(config, load_tokenizer("smollm2-135m-instruct"))
        return RegionGPT(build_model(config, resolve_dtype(dtype)).eval(), processor, name=name), name
    return RegionGPT.from_pretrained(name, dtype=dtype), name


def boxes(size: tuple[int, int], count: int, seed: int = 0) -> list[list[float]]:
    """``count`` random boxes (pixel xyxy, at least 8 px a side) inside an image of ``size=(w, h)``."""
    import random

    rng = random.Random(seed)
    w, h = size
    out = []
    for _ in range(count):
        x1, y1 = rng.uniform(0, w - 9), rng.uniform(0, h - 9)
        out.append([x1, y1, rng.uniform(x1 + 8, w), rng.uniform(y1 + 8, h)])
    return out


CLOCK = {"name": "cpu"}
RUN = {"dtype": "float32"}  # what load_engine loaded, recorded in every results file


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    """Seconds of ``fn()`` on the chosen clock (``--clock``) and its value.

    ``cpu`` (default) is this process's CPU time: with one torch thread it is the work done,
    unaffected by other jobs on a shared machine; ``wall`` is elapsed time."""
    clock = time.process_time if CLOCK["name"] == "cpu" else time.perf_counter
    start = clock()
    value = fn()
    return clock() - start, value


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def hardware() -> dict[str, Any]:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def print_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    def cell(value: Any) -> str:
        return f"{value:.4g}" if isinstance(value, float) else str(value)

    texts = [[cell(v) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in texts)) for i, h in enumerate(headers)]
    print(" | ".join(h.ljust(w) for h, w in zip(headers, widths)))
    print("-|-".join("-" * w for w in widths))
    for row in texts:
        print(" | ".join(v.ljust(w) for v, w in zip(row, widths)))


def model_fingerprint(name: str) -> str | None:
    """First 16 hex digits of the sha256 of the model's weights file (when it is a directory)."""
    import hashlib

    directory = ROOT / "regiongpt" / "assets" / "default" if name == "default" else Path(name)
    weights = directory / "model.safetensors"
    return hashlib.sha256(weights.read_bytes()).hexdigest()[:16] if weights.is_file() else None


def write_results(name: str, payload: dict[str, Any], tag: str = "") -> Path:
    """Write ``benchmarks/results/NAME[-TAG].json`` with the hardware, the date and the command line."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}{'-' + tag if tag else ''}.json"
    model = payload.get("model")
    record = {
        "benchmark": name,
        "model_sha256": model_fingerprint(model) if isinstance(model, str) else None,
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "hardware": hardware(),
        "clock": CLOCK["name"],
        "dtype": RUN["dtype"],
        **payload,
    }
    path.write_text(json.dumps(record, indent=2) + "\n")
    print(f"\nwrote {path.relative_to(ROOT)}")
    return path
