"""Run every GPU benchmark, one fresh process each (real shapes need a 80 GB H100/H200).

    python benchmarks/gpu/run_all.py            # real shapes, bf16, on CUDA
    python benchmarks/gpu/run_all.py --tiny     # tiny shapes: checks the scripts' logic (CPU ok)

Writes ``benchmarks/results/gpu_*.json`` (``gpu_tiny_*.json`` with ``--tiny``) and prints a summary.
Extra arguments are passed to every script (e.g. ``--device cuda:1``).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE.parents[1] / "benchmarks" / "results"
SCRIPTS = ["train_lora", "prefill_decode", "region_share"]


def main() -> int:
    extra = sys.argv[1:]
    tiny = "--tiny" in extra
    failed = []
    for name in SCRIPTS:
        print(f"\n=== {name} ===", flush=True)
        start = time.perf_counter()
        done = subprocess.run([sys.executable, str(HERE / f"{name}.py"), *extra])
        print(f"--- {name}: exit {done.returncode} in {time.perf_counter() - start:.0f} s", flush=True)
        if done.returncode:
            failed.append(name)
    print("\n=== summary ===")
    for name in SCRIPTS:
        path = RESULTS / f"gpu_{'tiny_' if tiny else ''}{name}.json"
        if name in failed or not path.is_file():
            print(f"{name}: FAILED")
            continue
        r = json.loads(path.read_text())
        if name == "train_lora":
            print(
                f"train_lora: {r['tokens_per_s']:.0f} tokens/s, MFU {r['mfu']:.1%} (HFU {r['hfu']:.1%}) "
                f"of a measured {r['matmul_peak_tflops']:.3g} TFLOP/s"
            )
        elif name == "prefill_decode":
            for row in r["results"]:
                print(
                    f"prefill_decode: batch {row['batch']}: prefill {row['prefill_tokens_per_s']:.0f} tok/s, "
                    f"decode {row['decode_tokens_per_s']:.1f} tok/s"
                )
            print(
                f"prefill_decode: batch-1 decode at {r['batch1_decode_fraction_of_bound']:.0%} of the "
                f"{r['batch1_decode_bound_tokens_per_s']:.1f} tok/s bandwidth bound"
            )
        else:
            for row in r["results"]:
                share = (
                    f"{row['region_share']:.1%} of the forward"
                    if "region_share" in row
                    else row["error"][:120]
                )
                print(f"region_share: {row['setting']}: {share}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
