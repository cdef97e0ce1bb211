"""Peak resident memory of the demo's describe run (the ``regiongpt demo`` flow).

    python benchmarks/bench_memory.py [--model auto]

Runs ``regiongpt.demo.run_demo`` (load the model, describe the bundled scenes and the real photo,
draw the contact sheet) in a fresh child process and reads its peak RSS with
``resource.getrusage(RUSAGE_SELF)`` at its end; for scale also a child that only imports torch +
transformers + regiongpt, and one that only loads the model. Models other than a checkpoint
directory or ``default`` are saved to a temporary checkpoint first (see ``benchmarks/common.py``).
Writes ``benchmarks/results/bench_memory.json``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import ROOT, load_engine, model_argument, print_table, resolve_model_name, write_results

STEPS = {
    "import torch + transformers + regiongpt.api": "import torch, transformers, regiongpt.api",
    "load model": "from regiongpt.api import RegionGPT; RegionGPT.from_pretrained({path!r})",
    "demo (load + describe + draw)": "from pathlib import Path; from regiongpt.demo import run_demo; "
    "run_demo({path!r}, Path({out!r}))",
}


def child_peak_mib(code: str, threads: int) -> tuple[float, float]:
    """Peak RSS (MiB, the child's own ``getrusage(RUSAGE_SELF)``) and wall time of ``python -c code``."""
    report = "; import resource as _r; print('PEAK_KIB', _r.getrusage(_r.RUSAGE_SELF).ru_maxrss)"
    start = time.perf_counter()
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    done = subprocess.run(
        [sys.executable, "-c", code + report], check=True, cwd=ROOT, capture_output=True, text=True, env=env
    )
    seconds = time.perf_counter() - start
    peak = [line for line in done.stdout.splitlines() if line.startswith("PEAK_KIB ")][-1]
    return int(peak.split()[1]) / 1024, seconds  # ru_maxrss is in KiB on Linux


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    model_argument(parser)
    args = parser.parse_args()
    if args.dtype != "float32":
        parser.error("--dtype: the demo this measures runs in float32")
    name = resolve_model_name(args.model)
    with tempfile.TemporaryDirectory() as tmp:
        path = name
        if name in ("tiny", "untrained-default"):
            engine, _ = load_engine(name)
            path = str(Path(tmp) / "model")
            engine.save_pretrained(path)
            del engine
        rows, records = [], []
        for label, template in STEPS.items():
            mib, seconds = child_peak_mib(
                template.format(path=path, out=str(Path(tmp) / "demo.png")), args.threads
            )
            records.append({"step": label, "peak_rss_mib": mib, "seconds": seconds})
            rows.append([label, mib, seconds])
    print(f"model: {name}")
    print_table(["process", "peak RSS MiB", "seconds"], rows)
    write_results("bench_memory", {"model": name, "results": records}, tag=args.tag)


if __name__ == "__main__":
    main()
