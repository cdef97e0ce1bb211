"""Our model's forward vs HF transformers' ``LlavaForConditionalGeneration`` at equal shapes.

    python benchmarks/bench_overhead.py [--sizes tiny small] [--repeat 20]

Both models get the same CLIP tower config, the same Llama config and the same sequence length:
LLaVA's image tokens (CLIP layer -2, CLS dropped, 2-layer GELU MLP projector) at the start, text
after. Ours reads the same tower tokens (``image_token_source="tower"``, MLP image projector) and
has one of the text tokens replaced by a region placeholder filled by the RegionGPT encoder (mask
pooling; with and without the feature refinement). Random weights, inference mode, median of
interleaved runs. Target: ours at most 10% slower. Writes ``results/bench_overhead.json``.
Timing options (threads, CPU or wall clock): see ``benchmarks/common.py``.
"""

from __future__ import annotations

import argparse

import torch
from common import median, print_table, set_threads, threads_argument, timed, write_results
from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration

from regiongpt.modeling.configuration import RegionEncoderConfig, RegionGPTConfig
from regiongpt.modeling.modeling import RegionGPTForConditionalGeneration

SIZES = {
    # name: (CLIP width, CLIP layers, image px, LM width, LM layers, vocab, sequence length, batch)
    "tiny": (32, 4, 56, 32, 2, 49152, 64, 1),
    "small": (128, 4, 112, 256, 4, 32000, 256, 2),
}


def configs(size: str) -> tuple[CLIPVisionConfig, LlamaConfig, int]:
    cw, cl, px, lw, ll, vocab, _, _ = SIZES[size]
    vision = CLIPVisionConfig(hidden_size=cw, intermediate_size=4 * cw, num_hidden_layers=cl,
                              num_attention_heads=4, image_size=px, patch_size=14)  # fmt: skip
    text = LlamaConfig(vocab_size=vocab, hidden_size=lw, intermediate_size=int(2.6875 * lw), num_hidden_layers=ll,
                       num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=4096)  # fmt: skip
    return vision, text, (px // 14) ** 2


def build(size: str, refine: bool) -> tuple[torch.nn.Module, dict, torch.nn.Module, dict]:
    vision, text, n_image = configs(size)
    _, _, px, _, _, vocab, length, batch = SIZES[size]
    image_id, region_id = vocab - 2, vocab - 1
    torch.manual_seed(0)
    llava = LlavaForConditionalGeneration(
        LlavaConfig(
            vision_config=vision.to_dict(),
            text_config=text.to_dict(),
            image_token_index=image_id,
            image_seq_length=n_image,
            vision_feature_layer=-2,
        )  # fmt: skip
    ).eval()
    grid = px // 14
    region = RegionEncoderConfig(type="regiongpt", hidden_size=vision.hidden_size, feature_levels=[0],
                                 image_token_grid=grid, image_token_source="tower", connector="separate",
                                 image_projector="mlp", refine=refine)  # fmt: skip
    config = RegionGPTConfig(vision_config=vision.to_dict(), text_config=text.to_dict(), vision_feature_layers=[-2],
                             region_config=region, image_token_id=image_id, region_token_id=region_id)  # fmt: skip
    ours = RegionGPTForConditionalGeneration(config).eval()
    ids = torch.randint(10, vocab - 10, (batch, length))
    ids[:, :n_image] = image_id
    pixels = torch.randn(batch, 3, px, px)
    llava_inputs = {"input_ids": ids, "pixel_values": pixels, "attention_mask": torch.ones_like(ids)}
    ours_ids = ids.clone()
    ours_ids[:, n_image + 5] = region_id
    masks = torch.zeros(batch, px, px)
    masks[:, px // 4 : px // 2, px // 4 : px // 2] = 1
    ours_inputs = {
        "input_ids": ours_ids, "pixel_values": pixels, "attention_mask": torch.ones_like(ids),
        "region_boxes": torch.tensor([[px / 4, px / 4, px / 2, px / 2]] * batch),
        "region_masks": masks, "region_image_index": torch.arange(batch), "region_token_index": torch.arange(batch),
    }  # fmt: skip
    return llava, llava_inputs, ours, ours_inputs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=list(SIZES), choices=list(SIZES))
    parser.add_argument("--repeat", type=int, default=20)
    threads_argument(parser)
    parser.add_argument("--tag", default="")
    args = parser.parse_args()
    set_threads(args.threads, args.clock)
    rows, records = [], []
    for size in args.sizes:
        for refine in (True, False):
            llava, llava_inputs, ours, ours_inputs = build(size, refine)
            runs = {"llava": [], "ours": []}
            with torch.inference_mode():
                for model, inputs in ((llava, llava_inputs), (ours, ours_inputs)):
                    assert model(**inputs).logits.shape[:2] == inputs["input_ids"].shape  # and warm-up
                for _ in range(args.repeat):  # interleaved
                    for key, model, inputs in (("llava", llava, llava_inputs), ("ours", ours, ours_inputs)):
                        runs[key].append(timed(lambda m=model, i=inputs: m(**i))[0])
            ratio = median(runs["ours"]) / median(runs["llava"])
            record = {"size": size, "shapes": SIZES[size], "refine": refine, "llava_s": median(runs["llava"]),
                      "ours_s": median(runs["ours"]), "ratio": ratio}  # fmt: skip
            records.append(record)
            rows.append(
                [size, "on" if refine else "off", record["llava_s"] * 1e3, record["ours_s"] * 1e3, ratio]
            )
    print("shapes: (CLIP width, CLIP layers, px, LM width, LM layers, vocab, sequence, batch)")
    for size in args.sizes:
        print(f"  {size}: {SIZES[size]}")
    print_table(["size", "refine", "llava ms", "ours ms", "ours/llava"], rows)
    targets = {f"{r['size']}_refine_{r['refine']}_le_1.10": r["ratio"] <= 1.10 for r in records}
    print("targets:", targets)
    write_results("bench_overhead", {"results": records, "targets": targets}, tag=args.tag)


if __name__ == "__main__":
    main()
