"""Describe N regions of one image: one batched call on a shared prefix vs one call per region.

    python benchmarks/bench_describe.py [--model auto] [--sizes 1 4 16 64] [--repeat 3]

Both sides go through the public API: ``describe(image, regions)`` once, against
``[describe(image, [r])[0] for r in regions]`` (each call loads and encodes the image again).
The answers must be identical (asserted in float32; with a 16-bit ``--dtype`` they are counted,
since rounding then depends on the batch shape). Targets: N=16 at least 5x faster than the loop;
time(N=16) / time(N=1) <= 3. Writes ``benchmarks/results/bench_describe.json``.
Timing options (threads, CPU or wall clock): see ``benchmarks/common.py``.
"""

from __future__ import annotations

import argparse

from common import (
    DEMO_IMAGE,
    boxes,
    load_engine,
    median,
    model_argument,
    print_table,
    set_threads,
    timed,
    write_results,
)
from PIL import Image


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    model_argument(parser)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 4, 16, 64])
    parser.add_argument("--repeat", type=int, default=3, help="timed runs of the batched call (median)")
    parser.add_argument("--loop-repeat", type=int, default=1, help="timed runs of the per-region loop")
    parser.add_argument("--task", default="brief")
    args = parser.parse_args()
    set_threads(args.threads, args.clock)

    engine, name = load_engine(args.model, args.dtype)
    image = Image.open(DEMO_IMAGE).convert("RGB")
    regions = boxes(image.size, max(args.sizes), seed=0)
    engine.describe(image, regions[:2], task=args.task)  # warm-up
    rows, records = [], []
    for n in args.sizes:
        subset = regions[:n]
        batched, loop = [], []
        answers = reference = None
        for index in range(max(args.repeat, args.loop_repeat)):  # interleaved: drift hits both sides
            if index < args.repeat:
                seconds, answers = timed(lambda s=subset: engine.describe(image, s, task=args.task))
                batched.append(seconds)
            if index < args.loop_repeat:
                seconds, reference = timed(
                    lambda s=subset: [engine.describe(image, [r], task=args.task)[0] for r in s]
                )
                loop.append(seconds)
        same = sum(a == b for a, b in zip(answers, reference))
        # float32: identical by construction; 16-bit rounding depends on the batch shape, so count
        assert same == n or args.dtype != "float32", f"N={n}: batched answers differ from one-by-one"
        records.append({"regions": n, "batched_s": median(batched), "loop_s": median(loop),
                        "batched_runs": batched, "loop_runs": loop, "answers": answers[:4],
                        "answers_equal_to_loop": same})  # fmt: skip
    base = records[0]["batched_s"] if records[0]["regions"] == 1 else None
    for r in records:
        r["speedup"] = r["loop_s"] / r["batched_s"]
        r["scaling_vs_n1"] = r["batched_s"] / base if base else None
        rows.append([r["regions"], r["batched_s"], r["loop_s"], r["speedup"], r["scaling_vs_n1"] or "-",
                     f"{r['answers_equal_to_loop']}/{r['regions']}"])  # fmt: skip
    print(f"model: {name}; task: {args.task}; image {image.size[0]}x{image.size[1]}")
    print_table(["regions", "batched s", "loop s", "speedup", "t(N)/t(1)", "same answers"], rows)
    by_n = {r["regions"]: r for r in records}
    targets = {}
    if 16 in by_n:
        targets["speedup_n16_ge_5"] = by_n[16]["speedup"] >= 5
        targets["speedup_n16_ge_8 (aim)"] = by_n[16]["speedup"] >= 8
        if base:
            targets["scaling_n16_le_3"] = by_n[16]["scaling_vs_n1"] <= 3
    print("targets:", targets)
    write_results(
        "bench_describe",
        {"model": name, "task": args.task, "results": records, "targets": targets},
        tag=args.tag,
    )


if __name__ == "__main__":
    main()
