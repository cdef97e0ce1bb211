"""Region-encoder ablation on RegionWorld: GPT4RoI vs RegionGPT vs RegionGPT without refinement.

Each variant is the default model's first stage (EfficientNet-Lite0 + SmolLM2-135M frozen, region
encoder and projectors trained, no LoRA) with the same data, seed, batch and step budget; then
category and choose_region accuracy by object size on the first questions of the test split.

    python benchmarks/ablation_encoders.py --data data/regionworld --steps 450 --questions 300 [--seed 1]

Prints a table and writes ``benchmarks/results/ablation_encoders.json`` (docs/ablation.md).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from regiongpt.data.format import read_jsonl, write_jsonl
from regiongpt.eval.engine import ModelEngine
from regiongpt.eval.regionworld import evaluate_regionworld
from regiongpt.train.recipe import load_recipe
from regiongpt.train.trainer import run_recipe

# The encoders as the papers have them: the default's own box embedding (tiny-default) is off.
VARIANTS: dict[str, dict] = {
    "regiongpt": {"refine": True, "box_embedding": False},  # refinement (4x up) + mask pooling
    "regiongpt-no-refine": {"refine": False, "box_embedding": False},  # mask pooling on the stride-8 map
    "gpt4roi": {  # pyramid (strides 8, 16, 32) + scale shuffle + RoIAlign + its box embedding
        "type": "gpt4roi", "feature_levels": [0, 1, 2], "group_norm_groups": 32, "roi_output_size": 7,
        "fuse_rounds": 2, "image_token_source": "tower", "box_embedding": False,
    },
}  # fmt: skip
TASKS = ("category", "choose_region")


def eval_folder(data: Path, out: Path) -> Path:
    """A RegionWorld-shaped folder whose test split holds only the ablation's tasks."""
    out.mkdir(parents=True, exist_ok=True)
    if not (out / "images").exists():
        (out / "images").symlink_to((data / "images").resolve())
    records = [r for r in read_jsonl(data / "test.jsonl") if r.task is not None and r.task.value in TASKS]
    write_jsonl(out / "test.jsonl", records)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=Path("data/regionworld"))
    parser.add_argument("--recipe", type=Path, default=Path("recipes/default.yaml"))
    parser.add_argument("--steps", type=int, default=450)
    parser.add_argument("--questions", type=int, default=300)
    parser.add_argument("--out", type=Path, default=Path("runs/ablation"))
    parser.add_argument("--variants", nargs="*", default=list(VARIANTS))
    parser.add_argument(
        "--seed", type=int, default=0, help="training seed (results key: 'NAME seed=K steps=S')"
    )
    parser.add_argument("--json", type=Path, default=Path("benchmarks/results/ablation_encoders.json"))
    args = parser.parse_args()

    questions = eval_folder(args.data, args.out / "data")
    results = json.loads(args.json.read_text()) if args.json.is_file() else {}
    for name in args.variants:
        run_name = f"{name}-seed{args.seed}-steps{args.steps}"
        region_config = json.dumps(VARIANTS[name])
        overrides = [
            f"output_dir={args.out / run_name}",
            f"seed={args.seed}",
            f"model.region_config={region_config}",
            f"stages=[{{name: regions, trainable: [region_encoder, region_projector, image_projector], "
            f"max_steps: {args.steps}}}]",
            "training.bf16=true",
            "data.eval=null",
        ]
        recipe = load_recipe(args.recipe, overrides)
        start = time.perf_counter()
        final = run_recipe(recipe)
        train_s = time.perf_counter() - start
        metrics = evaluate_regionworld(
            ModelEngine.from_pretrained(str(final), dtype="float32"), questions, args.out / f"{run_name}-eval",
            limit=args.questions, model_name=name, progress=True,
        )  # fmt: skip
        results[f"{name} seed={args.seed} steps={args.steps}"] = {
            "region_config": VARIANTS[name],
            "seed": args.seed,
            "steps": args.steps,
            "train_seconds": round(train_s, 1),
            **{task: metrics[task] for task in TASKS if task in metrics},
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    print(
        f"{'variant':40s} {'train s':>8s}  "
        + "  ".join(f"{t + ' ' + s:>22s}" for t in TASKS for s in ("all", "small", "medium", "large"))
    )
    for name, row in results.items():
        cells = []
        for task in TASKS:
            m = row.get(task, {})
            sizes = m.get("by_size", {})
            cells += [m.get("accuracy"), *(sizes.get(s) for s in ("small", "medium", "large"))]
        print(
            f"{name:40s} {row['train_seconds']:8.0f}  "
            + "  ".join(f"{'-' if c is None else f'{100 * c:.1f}':>22s}" for c in cells)
        )
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
