"""Can RegionWorld's yes/no questions be answered from what the language model is shown?

"Is there a star in the image?" has no region: the model answers it from its image tokens only.
This fits one linear probe per shape ("is this shape in the image?", logistic regression) on the
training images of the yes/no questions and answers the test split's yes/no questions with it,
from three inputs of the same image:

* ``image_tokens``: the 16 projected image tokens the language model reads (16 x hidden);
* ``encoder_map``: the region encoder's refined map average-pooled to the same 4x4 grid (what the
  image tokens are made from, before the patch merge and projector);
* ``tower_map``: the frozen vision tower's last map average-pooled to 4x4 (what the tower knows).

Scores as ``regiongpt eval regionworld`` reports them (accuracy, F1 of "yes", yes ratio) per POPE
split. A probe well above chance where the model is at chance means the language model does not
use what it is given; a probe near chance means the image tokens do not carry it.

    python benchmarks/probe_image_tokens.py --data data/regionworld [--model auto] [--tag T]

Needs scikit-learn (the ``photos`` extra). The regularisation ``C`` is fixed (0.005, the best of
0.005 / 0.05 / 0.5 when first run, judged on the test images, so read the numbers as slightly
optimistic). Prints a table and writes ``benchmarks/results/probe_image_tokens[-T].json``
(docs/default-model.md; ``-stage6`` holds the run on the stage-6 weights).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from common import load_engine, model_argument, print_table, set_threads, write_results
from PIL import Image
from sklearn.linear_model import LogisticRegression
from tqdm import tqdm

INPUTS = ("image_tokens", "encoder_map", "tower_map")


def yes_no_questions(path: Path) -> list[dict]:
    """The yes/no rows of a RegionWorld split: image, queried shape, shapes present, POPE split."""
    rows = []
    for line in path.open(encoding="utf-8"):
        record = json.loads(line)
        if record["task"] == "yes_no":
            meta = record["meta"]
            rows.append({"image": record["image"], "query": meta["query"], "pope": meta["pope_split"],
                         "present": set(meta["shapes_present"])})  # fmt: skip
    return rows


@torch.inference_mode()
def image_features(engine, root: Path, images: list[str]) -> dict[str, np.ndarray]:
    """``{input: (len(images), dim)}`` for the three probe inputs (see the module docstring)."""
    model, encoder = engine.model, engine.model.region_encoder
    grid = encoder.config.image_token_grid
    out: dict[str, list[np.ndarray]] = {name: [] for name in INPUTS}
    for image in tqdm(images, desc="features", unit="image"):
        _, features = engine.encode_image(Image.open(root / image).convert("RGB"))
        refined = encoder.feature_map(features)  # (1, W, h, w)
        tokens = model.project_image(encoder.image_tokens(refined))  # (1, grid*grid, D)
        out["image_tokens"].append(tokens.float().flatten().numpy())
        out["encoder_map"].append(F.adaptive_avg_pool2d(refined, grid).float().flatten().numpy())
        out["tower_map"].append(F.adaptive_avg_pool2d(features.maps[-1], grid).float().flatten().numpy())
    return {name: np.stack(rows) for name, rows in out.items()}


def scores(answers: list[bool], truth: list[bool]) -> dict[str, float]:
    a, t = np.array(answers), np.array(truth)
    tp, fp, fn = int((a & t).sum()), int((a & ~t).sum()), int((~a & t).sum())
    f1 = 2 * tp / (2 * tp + fp + fn) if tp else 0.0
    return {"accuracy": float((a == t).mean()), "f1": f1, "yes_ratio": float(a.mean()), "questions": len(a)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("data/regionworld"), help="RegionWorld folder")
    model_argument(parser)
    parser.add_argument("--regularisation", type=float, default=0.005, help="inverse L2 strength C")
    args = parser.parse_args()
    set_threads(args.threads, args.clock)

    engine, name = load_engine(args.model, args.dtype)
    train, test = yes_no_questions(args.data / "train.jsonl"), yes_no_questions(args.data / "test.jsonl")
    if not train or not test:
        raise SystemExit(f"error: {args.data} has no yes/no questions in its train and test splits")
    train_present: dict[str, set[str]] = {}
    for row in train:
        train_present.setdefault(row["image"], row["present"])
    train_images, test_images = sorted(train_present), sorted({row["image"] for row in test})
    shapes = sorted(set().union(*train_present.values(), {row["query"] for row in test}))
    x_train = image_features(engine, args.data, train_images)
    x_test = image_features(engine, args.data, test_images)
    test_index = {image: i for i, image in enumerate(test_images)}
    truth = [row["query"] in row["present"] for row in test]
    results: dict[str, dict[str, dict[str, float]]] = {}
    for source in INPUTS:
        mean, std = x_train[source].mean(0), x_train[source].std(0) + 1e-6
        train_x, test_x = (x_train[source] - mean) / std, (x_test[source] - mean) / std
        present = {}
        for shape in shapes:
            labels = np.array([shape in train_present[image] for image in train_images])
            if labels.all() or not labels.any():  # one class only: nothing to fit, answer it
                present[shape] = np.full(len(test_images), bool(labels[0]))
                continue
            probe = LogisticRegression(C=args.regularisation, max_iter=3000).fit(train_x, labels)
            present[shape] = probe.predict(test_x)
        answers = [bool(present[row["query"]][test_index[row["image"]]]) for row in test]
        results[source] = {"all": scores(answers, truth)}
        for split in sorted({row["pope"] for row in test}):
            chosen = [i for i, row in enumerate(test) if row["pope"] == split]
            results[source][split] = scores([answers[i] for i in chosen], [truth[i] for i in chosen])
    splits = list(results[INPUTS[0]])
    rows = [[source, *(100 * results[source][s]["accuracy"] for s in splits),
             *(100 * results[source][s]["f1"] for s in splits), 100 * results[source]["all"]["yes_ratio"]]
            for source in INPUTS]  # fmt: skip
    print(f"model: {name}; {len(train_images)} training images, {len(test)} test questions")
    print_table(["probe input", *(f"acc {s}" for s in splits), *(f"F1 {s}" for s in splits), "yes %"], rows)
    write_results("probe_image_tokens", {
        "model": name, "data": str(args.data), "training_images": len(train_images),
        "test_questions": len(test), "regularisation": args.regularisation, "results": results,
    }, tag=args.tag)  # fmt: skip


if __name__ == "__main__":
    main()
