"""Share of the region encoder in a full forward, at paper settings and a cheaper setting.

    python benchmarks/gpu/region_share.py [--regions 8] [--length 512] [--tiny]

Settings (7B-shaped LM, random bf16, SDPA; one image, ``--regions`` regions, ``--length`` tokens):

* ``regiongpt-paper``: CLIP-L/14-336, feature refinement (2 transposed convs, 4x) + mask pooling;
* ``regiongpt-norefine``: the same without the refinement (mask pooling on the 24x24 map);
* ``gpt4roi-paper``: CLIP-L/14-224, 4 levels resized to 128/64/32/16, 5 scale-shuffle rounds,
  RoIAlign 14x14, flatten reduction (the 205M-parameter linear);
* ``gpt4roi-pool``: the same with mean-pool reduction and 2 fuse rounds (the cheaper setting).

Times (median): vision tower, region encoder + projectors, the LM on the embedded sequence, and
the whole forward; share = region encoder / whole forward.
"""

from __future__ import annotations

import gc

import torch
from gpu_common import (
    build,
    device_name,
    model_config,
    parameters,
    parser,
    setup,
    synthetic_batch,
    time_fn,
    write,
)

from regiongpt.modeling.region_inputs import RegionInputs

SETTINGS = {
    "regiongpt-paper": ("regiongpt", {}),
    "regiongpt-norefine": ("regiongpt", {"refine": False}),
    "gpt4roi-paper": ("gpt4roi", {}),
    "gpt4roi-pool": ("gpt4roi", {"reduction": "pool", "fuse_rounds": 2}),
}


def measure(name: str, args, device: torch.device, dtype: torch.dtype) -> dict:
    preset, region = SETTINGS[name]
    config = model_config(preset, args.tiny, **region)
    model = build(config, device, dtype).eval()
    batch = synthetic_batch(config, 1, args.length, args.regions, device, dtype)
    for key in ("labels",):
        batch.pop(key)
    regions = RegionInputs(batch["region_boxes"], batch["region_masks"], batch["region_image_index"])
    with torch.inference_mode():
        features = model.encode_images(batch["pixel_values"])
        embeds = model.embed_inputs(**{k: v for k, v in batch.items() if k != "attention_mask"})

        def encoder() -> None:
            region_features, tokens = model.encode_regions(features, regions)
            model.region_projector(region_features)
            if tokens is not None:
                model.project_image(tokens)

        times = {
            "vision_s": time_fn(lambda: model.encode_images(batch["pixel_values"]), device),
            "region_encoder_s": time_fn(encoder, device),
            "lm_s": time_fn(lambda: model.language_model(inputs_embeds=embeds, logits_to_keep=1), device),
            "full_forward_s": time_fn(lambda: model(**batch, logits_to_keep=1), device),
        }
    result = {
        "setting": name, "preset": preset, "region_overrides": region, "image_size": config.image_size,
        "image_tokens": config.num_image_tokens, "region_parameters": parameters(model.region_encoder),
        **times, "region_share": times["region_encoder_s"] / times["full_forward_s"],
    }  # fmt: skip
    return result


def release(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--regions", type=int, default=8)
    p.add_argument("--length", type=int, default=512)
    p.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    args = p.parse_args()
    if args.tiny:
        args.length = 288  # longer than the 144 / 256 image tokens + regions
    device, dtype = setup(args)
    results = []
    for name in args.settings:
        try:
            results.append(measure(name, args, device, dtype))
        except (RuntimeError, NotImplementedError) as error:  # e.g. out of memory, a missing bf16 kernel
            results.append({"setting": name, "error": f"{type(error).__name__}: {error}"})
        release(device)  # the previous 7B model goes before the next is built
    for r in results:
        if "error" in r:
            print(f"{r['setting']:>20}: failed: {r['error'][:200]}")
            continue
        print(f"{r['setting']:>20}: vision {r['vision_s'] * 1e3:.1f} ms, regions {r['region_encoder_s'] * 1e3:.1f} ms, "
              f"LM {r['lm_s'] * 1e3:.1f} ms, full {r['full_forward_s'] * 1e3:.1f} ms, share {r['region_share']:.1%}")  # fmt: skip
    write("region_share", args.tiny, {"device": device_name(device), "dtype": str(dtype), "regions": args.regions,
                                      "length": args.length, "results": results})  # fmt: skip


if __name__ == "__main__":
    main()
