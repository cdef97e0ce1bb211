"""Inference throughput of the 7B-shaped LM: prefill and decode tokens/s at batch 1 and 16.

    python benchmarks/gpu/prefill_decode.py [--prompt 512] [--decode 128] [--tiny]

The RegionGPT preset's language model (random bf16, SDPA, DynamicCache). Prefill: one forward of
``--prompt`` tokens per row. Decode: ``--decode`` single-token steps on the cache (greedy argmax
of the last logits, as ``generate`` does). Batch-1 decode is compared with the memory-bandwidth
bound: measured copy bandwidth / bytes read per step (all weights + the KV cache).
"""

from __future__ import annotations

import time

import torch
from gpu_common import (
    build,
    device_name,
    memory_bandwidth,
    model_config,
    parameters,
    parser,
    setup,
    sync,
    write,
)
from transformers import DynamicCache

from regiongpt.modeling.cache import cache_argument


def run(lm, batch: int, prompt: int, decode: int, device: torch.device) -> dict[str, float]:
    vocab = lm.config.vocab_size
    ids = torch.randint(2, vocab, (batch, prompt), device=device)
    with torch.inference_mode():
        for _ in range(2):  # warm-up
            cache = DynamicCache(config=lm.config)
            lm(input_ids=ids, use_cache=True, **cache_argument(lm, cache), logits_to_keep=1)
        sync(device)
        start = time.perf_counter()
        cache = DynamicCache(config=lm.config)
        out = lm(input_ids=ids, use_cache=True, **cache_argument(lm, cache), logits_to_keep=1)
        sync(device)
        prefill_s = time.perf_counter() - start
        token = out.logits[:, -1].argmax(-1, keepdim=True)
        start = time.perf_counter()
        for _ in range(decode):
            out = lm(input_ids=token, use_cache=True, **cache_argument(lm, cache), logits_to_keep=1)
            token = out.logits[:, -1].argmax(-1, keepdim=True)
        sync(device)
        decode_s = time.perf_counter() - start
    return {
        "batch": batch, "prefill_s": prefill_s, "prefill_tokens_per_s": batch * prompt / prefill_s,
        "decode_s": decode_s, "decode_tokens_per_s": batch * decode / decode_s,
        "decode_step_ms": decode_s / decode * 1e3,
    }  # fmt: skip


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--prompt", type=int, default=512)
    p.add_argument("--decode", type=int, default=128)
    p.add_argument("--batches", type=int, nargs="+", default=[1, 16])
    args = p.parse_args()
    if args.tiny:
        args.prompt, args.decode = 64, 8
    device, dtype = setup(args)
    config = model_config("regiongpt", args.tiny)
    model = build(config, device, dtype).eval()
    lm = model.language_model
    del model.vision_tower  # not needed here: frees memory
    results = [run(lm, b, args.prompt, args.decode, device) for b in args.batches]
    t = lm.config
    read = parameters(lm) - (0 if t.tie_word_embeddings else parameters(lm.get_input_embeddings()))
    weight_bytes = read * torch.finfo(dtype).bits // 8  # an embedding lookup reads one row only
    head_dim = getattr(t, "head_dim", None) or t.hidden_size // t.num_attention_heads
    kv_per_token = 2 * t.num_hidden_layers * t.num_key_value_heads * head_dim * torch.finfo(dtype).bits // 8
    kv_bytes = kv_per_token * (args.prompt + args.decode / 2)  # mean cache length during decode
    bandwidth = memory_bandwidth(device, 0.25 if args.tiny else 4.0)
    bound = bandwidth / (weight_bytes + kv_bytes)
    one = next((r for r in results if r["batch"] == 1), None)
    summary = {
        "device": device_name(device), "dtype": str(dtype), "prompt": args.prompt, "decode": args.decode,
        "lm_parameters": parameters(lm), "weight_gib": weight_bytes / 2**30,
        "measured_bandwidth_gbs": bandwidth / 1e9, "batch1_decode_bound_tokens_per_s": bound,
        "batch1_decode_fraction_of_bound": one["decode_tokens_per_s"] / bound if one else None,
        "results": results,
    }  # fmt: skip
    for r in results:
        print(f"batch {r['batch']:>3}: prefill {r['prefill_tokens_per_s']:.0f} tok/s, "
              f"decode {r['decode_tokens_per_s']:.1f} tok/s ({r['decode_step_ms']:.1f} ms/step)")  # fmt: skip
    print(f"batch-1 decode bound {bound:.1f} tok/s at {bandwidth / 1e9:.0f} GB/s; "
          f"achieved {summary['batch1_decode_fraction_of_bound']}")  # fmt: skip
    write("prefill_decode", args.tiny, summary)


if __name__ == "__main__":
    main()
