"""Stage-2 training throughput: LoRA on a 7B LM + region modules, gradient checkpointing, bf16.

    python benchmarks/gpu/train_lora.py [--batch 8] [--length 1024] [--steps 10] [--tiny]

RegionGPT preset (CLIP ViT-L/14-336 frozen, 144 image tokens, RegionGPT encoder, 7B Llama
shape), random init. Trainable: LoRA (default r=8 on q/v, as ``recipes/default.yaml`` stage 2)
+ region encoder + projectors; AdamW. Reports tokens/s and MFU = model FLOPs / measured bf16
matmul peak, where model FLOPs count the LM forward (2N per token + attention), the backward to
its inputs only (2N + 2x attention; base weights are frozen), LoRA/region-module weight gradients
and the frozen vision forward; HFU adds the recomputed forward of gradient checkpointing.
"""

from __future__ import annotations

import time

import torch
from gpu_common import (
    build,
    device_name,
    matmul_peak,
    model_config,
    parameters,
    parser,
    setup,
    sync,
    synthetic_batch,
    write,
)

from regiongpt.modeling.checkpoint import apply_lora


def attention_flops(layers: int, width: int, length: int, batch: int) -> float:
    """Forward QK^T and AV of full (non-causal-discounted) attention."""
    return 4.0 * layers * width * length * length * batch


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--length", type=int, default=1024)
    p.add_argument("--regions", type=int, default=4, help="region placeholders per sample")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--lora-r", type=int, default=8)
    p.add_argument("--lora-targets", nargs="+", default=["q_proj", "v_proj"])
    args = p.parse_args()
    if args.tiny:
        args.batch, args.length, args.steps = 2, 192, 2
    device, dtype = setup(args)
    config = model_config("regiongpt", args.tiny)
    model = build(config, device, dtype)
    model.set_trainable(["region_encoder", "region_projector", "image_projector"])
    model.language_model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.language_model.config.use_cache = False
    apply_lora(model, {"r": args.lora_r, "lora_alpha": 2 * args.lora_r, "target_modules": args.lora_targets})
    model.train()
    trainable = [q for q in model.parameters() if q.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=1e-5, foreach=True)
    batch = synthetic_batch(config, args.batch, args.length, args.regions, device, dtype)

    def step() -> float:
        loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return float(loss)

    for _ in range(2):
        step()  # warm-up (allocator, kernels)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    sync(device)
    start = time.perf_counter()
    losses = [step() for _ in range(args.steps)]
    sync(device)
    seconds = (time.perf_counter() - start) / args.steps

    lm = model.language_model
    t = config.text_config
    n_lm = parameters(lm) - parameters(lm.get_input_embeddings())  # the embedding lookup is no matmul
    n_trainable_lm = parameters(lm, trainable=True)
    n_vision = parameters(model.vision_tower)
    n_regions = sum(
        parameters(m) for m in (model.region_encoder, model.region_projector, model.image_projector) if m
    )
    tokens = args.batch * args.length
    vision_tokens = args.batch * (config.image_size // config.vision_config.patch_size) ** 2
    attn = attention_flops(t.num_hidden_layers, t.hidden_size, args.length, args.batch)
    lm_forward = 2 * n_lm * tokens + attn
    model_flops = (
        lm_forward  # forward
        + 2 * n_lm * tokens + 2 * attn  # backward to the inputs (frozen base weights)
        + 4 * n_trainable_lm * tokens  # LoRA weight gradients (+ their share of the input grads)
        + 2 * n_vision * vision_tokens  # frozen vision tower, forward only
        + 6 * n_regions * vision_tokens  # region modules, trained (upper bound: per vision token)
    )  # fmt: skip
    hardware_flops = model_flops + lm_forward  # gradient checkpointing recomputes the LM forward
    peak = matmul_peak(device, dtype, 1024 if args.tiny else 8192)
    result = {
        "device": device_name(device), "dtype": str(dtype), "batch": args.batch, "length": args.length,
        "regions_per_sample": args.regions, "lora": {"r": args.lora_r, "targets": args.lora_targets},
        "parameters": {"lm": n_lm, "lm_trainable": n_trainable_lm, "vision": n_vision, "region_modules": n_regions},
        "step_s": seconds, "tokens_per_s": tokens / seconds, "loss_first_last": [losses[0], losses[-1]],
        "matmul_peak_tflops": peak / 1e12, "model_tflops_per_step": model_flops / 1e12,
        "mfu": model_flops / seconds / peak, "hfu": hardware_flops / seconds / peak,
        "peak_memory_gib": torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None,
    }  # fmt: skip
    for key in ("step_s", "tokens_per_s", "matmul_peak_tflops", "mfu", "hfu", "peak_memory_gib"):
        print(f"{key:>20}: {result[key]}")
    write("train_lora", args.tiny, result)


if __name__ == "__main__":
    main()
