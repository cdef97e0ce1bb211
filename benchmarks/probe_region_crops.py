"""Can the frozen vision tower name a region's shape better from a zoomed crop of it?

One linear probe (logistic regression on standardised inputs) per input names the category of
the boxes of RegionWorld's category questions, fitted on the training split and scored on the
test split by object size, from two inputs of the same frozen tower:

* ``roi_maps``: RoIAlign (7x7, averaged) of every tower map of the whole image over the box (what
  the region encoder's pooling can see);
* ``crop``: the crop the ``region_crop_size`` option cuts (a square around the box, see
  ``regiongpt.modeling.region_encoders.crop_squares``) through the tower, every map averaged;

and both concatenated; and ``region_token``: the model's own region feature after the region
projector, the token the language model reads (with the model's crop branch, if it has one). A
probe far better on ``crop`` means the whole image's maps lose what the crop keeps
(docs/default-model.md, stage 23); one as good on ``region_token`` as on ``crop`` means the
language model, not the region token, loses it (stage 27).

    python benchmarks/probe_region_crops.py --data data/regionworld [--crop-size 112] [--crop-context 1.3] [--tag T]

``--crop-size`` and ``--crop-context`` set the ``crop`` input's crop; ``region_token`` uses the
model's own settings (both are saved with the results).

Needs scikit-learn (the ``photos`` extra). Prints a table and writes
``benchmarks/results/probe_region_crops[-T].json``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from common import load_engine, model_argument, print_table, set_threads, write_results
from sklearn.linear_model import LogisticRegression
from tqdm import tqdm

from regiongpt.imaging import load_image
from regiongpt.modeling.configuration import RegionEncoderConfig
from regiongpt.modeling.region_inputs import RegionInputs, box_rois, region_crops, roi_align_float32
from regiongpt.regions import Box

INPUTS = ("roi_maps", "crop", "both", "region_token")
SIZES = ("small", "medium", "large")


def category_boxes(path: Path, limit: int) -> list[dict]:
    """The first ``limit`` box category questions of a split: image, box, answer, object size."""
    rows = []
    for line in path.open(encoding="utf-8"):
        record = json.loads(line)
        if record["task"] == "category" and "box" in record["regions"][0]:
            rows.append({"image": record["image"], "box": record["regions"][0]["box"],
                         "label": record["conversations"][1]["value"], "size": record["meta"]["size"]})  # fmt: skip
            if len(rows) == limit:
                break
    return rows


@torch.inference_mode()
def box_features(
    engine, root: Path, rows: list[dict], crop_size: int, crop_context: float
) -> dict[str, np.ndarray]:
    """``{input: (len(rows), dim)}`` for ``roi_maps``, ``crop`` and ``region_token`` (see the module
    docstring)."""
    model, processor = engine.model, engine.processor.image_processor
    out: dict[str, list[np.ndarray]] = {"roi_maps": [], "crop": [], "region_token": []}
    for row in tqdm(rows, desc="features", unit="box"):
        image = load_image(root / row["image"])
        pixels, transform = processor(image)
        features = model.encode_images(pixels[None])
        boxes, masks = processor.region_tensors([Box(*row["box"])], image.size, transform)
        regions = RegionInputs(boxes, masks, torch.tensor([0]))
        pooled = [roi_align_float32(m, box_rois(regions), 7, 1 / s, 2, True).mean(dim=(2, 3)) for m, s in
                  zip(features.maps, features.strides)]  # fmt: skip
        crop = model.encode_images(
            region_crops(features.pixels, regions, crop_size, crop_context), with_view=False
        )
        out["roi_maps"].append(torch.cat(pooled, dim=1)[0].float().numpy())
        out["crop"].append(torch.cat([m.mean(dim=(2, 3)) for m in crop.maps], dim=1)[0].float().numpy())
        encoded = model.encode_regions(features, regions)[0]
        out["region_token"].append(model.region_projector(encoded)[0].float().numpy())
    return {name: np.stack(values) for name, values in out.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("data/regionworld"), help="RegionWorld folder")
    model_argument(parser)
    parser.add_argument("--crop-size", type=int, default=112, help="crop side in pixels")
    parser.add_argument("--crop-context", type=float, default=RegionEncoderConfig.region_crop_context,
                        help="crop side / the box's longer side")  # fmt: skip
    parser.add_argument("--train-boxes", type=int, default=2500, help="training questions to fit on")
    parser.add_argument("--test-boxes", type=int, default=600, help="test questions to score")
    parser.add_argument("--regularisation", type=float, default=0.1, help="inverse L2 strength C")
    args = parser.parse_args()
    set_threads(args.threads, args.clock)

    engine, name = load_engine(args.model, args.dtype)
    train = category_boxes(args.data / "train.jsonl", args.train_boxes)
    test = category_boxes(args.data / "test.jsonl", args.test_boxes)
    if not train or not test:
        raise SystemExit(f"error: {args.data} has no box category questions in its train and test splits")
    x_train = box_features(engine, args.data, train, args.crop_size, args.crop_context)
    x_test = box_features(engine, args.data, test, args.crop_size, args.crop_context)
    for split in (x_train, x_test):
        split["both"] = np.hstack([split["roi_maps"], split["crop"]])
    labels, truth = [r["label"] for r in train], np.array([r["label"] for r in test])
    sizes = np.array([r["size"] for r in test])
    results: dict[str, dict[str, float]] = {}
    for source in INPUTS:
        mean, std = x_train[source].mean(0), x_train[source].std(0) + 1e-6
        probe = LogisticRegression(C=args.regularisation, max_iter=3000)
        answers = probe.fit((x_train[source] - mean) / std, labels).predict((x_test[source] - mean) / std)
        results[source] = {"all": float((answers == truth).mean())}
        results[source].update({s: float((answers[sizes == s] == truth[sizes == s]).mean()) for s in SIZES})
    print(
        f"model: {name}; {len(train)} training boxes, {len(test)} test boxes, crops of {args.crop_size} px, context {args.crop_context}"
    )
    print_table(["probe input", "all", *SIZES],
                [[source, *(100 * results[source][k] for k in ("all", *SIZES))] for source in INPUTS])  # fmt: skip
    write_results("probe_region_crops", {
        "model": name, "data": str(args.data), "crop_size": args.crop_size, "crop_context": args.crop_context,
        "model_region_crop": {"size": engine.model.config.region.region_crop_size,
                              "context": engine.model.config.region.region_crop_context},
        "training_boxes": len(train),
        "test_boxes": len(test), "test_sizes": {s: int((sizes == s).sum()) for s in SIZES},
        "regularisation": args.regularisation, "results": results,
    }, tag=args.tag)  # fmt: skip


if __name__ == "__main__":
    main()
