"""Follow-up latency in a 5-turn chat: cached conversation prefix vs recomputing everything.

    python benchmarks/bench_session.py [--model auto] [--max-new-tokens 16] [--repeat 3]

Each follow-up (turns 2-5) is timed twice: ``Session.ask`` (keys/values of the image, earlier
turns and replies reused; only the new turn runs) and ``RegionGPT.generate`` on the whole
conversation (what a stateless call recomputes). Replies must be identical (asserted in
float32; counted with a 16-bit ``--dtype``). Two settings: full replies of ``--max-new-tokens`` and the first token only (time to first token).
Target: follow-up latency with reuse <= 0.5x recomputing. Writes ``results/bench_session.json``.
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

TURNS = [
    ("Give a brief description of <region1>.", 1),
    ("What is the category of <region2>?", 1),
    ("Is <region1> larger than <region2>?", 0),
    ("Describe <region3> and how it relates to <region1>.", 1),
    ("Which of the regions is closest to the centre of the image?", 0),
]


def run_session(engine, image, features, regions, max_new_tokens: int, exact: bool = True) -> list[dict]:
    """One 5-turn session; per follow-up the reuse and recompute latencies and whether the replies
    agree (asserted when ``exact``: float32; 16-bit rounding depends on the cached layout)."""
    session = engine.session(image)
    session.features = features  # the same encoded image for both sides
    used, out = 0, []
    for turn, (text, added) in enumerate(TURNS):
        new = regions[used : used + added]
        used += added
        conversation = [*session.history, {"role": "user", "content": text}]
        recompute_s, expected = timed(
            lambda c=conversation, r=session.regions + new: engine.generate(
                [c], session.image, [r], features, max_new_tokens
            )[0]
        )
        reuse_s, reply = timed(lambda t=text, r=new: session.ask(t, regions=r, max_new_tokens=max_new_tokens))
        assert reply == expected or not exact, f"turn {turn + 1}: cached {reply!r} != recomputed {expected!r}"
        out.append({"turn": turn + 1, "reuse_s": reuse_s, "recompute_s": recompute_s,
                    "tokens": len(session.history), "same_reply": reply == expected})  # fmt: skip
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    model_argument(parser)
    parser.add_argument("--max-new-tokens", type=int, default=16)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    set_threads(args.threads, args.clock)

    engine, name = load_engine(args.model, args.dtype)
    image = Image.open(DEMO_IMAGE).convert("RGB")
    regions = boxes(image.size, 3, seed=1)
    image, features = engine.encode_image(image)
    exact = args.dtype == "float32"
    run_session(engine, image, features, regions, 2, exact)  # warm-up
    settings, rows = {}, []
    for label, limit in (("reply", args.max_new_tokens), ("first token", 1)):
        runs = [run_session(engine, image, features, regions, limit, exact) for _ in range(args.repeat)]
        per_turn = []
        for turn in range(1, len(TURNS)):
            reuse = median([run[turn]["reuse_s"] for run in runs])
            recompute = median([run[turn]["recompute_s"] for run in runs])
            same = sum(run[turn]["same_reply"] for run in runs)
            per_turn.append({"turn": turn + 1, "reuse_s": reuse, "recompute_s": recompute,
                             "ratio": reuse / recompute, "same_replies": f"{same}/{len(runs)}"})  # fmt: skip
            rows.append([label, turn + 1, reuse, recompute, reuse / recompute])
        reuse_total = sum(t["reuse_s"] for t in per_turn)
        recompute_total = sum(t["recompute_s"] for t in per_turn)
        settings[label] = {
            "max_new_tokens": limit,
            "follow_ups": per_turn,
            "ratio": reuse_total / recompute_total,
        }
        rows.append([label, "2-5", reuse_total, recompute_total, reuse_total / recompute_total])
    print(f"model: {name}")
    print_table(["setting", "turn", "reuse s", "recompute s", "reuse/recompute"], rows)
    targets = {f"{label}_ratio_le_0.5": s["ratio"] <= 0.5 for label, s in settings.items()}
    print("targets:", targets)
    write_results("bench_session", {"model": name, "settings": settings, "targets": targets}, tag=args.tag)


if __name__ == "__main__":
    main()
