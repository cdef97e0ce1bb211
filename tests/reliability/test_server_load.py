"""Load test: 16 concurrent clients, a few hundred requests (a fifth malformed) against a tiny-model
server in its own process on loopback, ``max_tokens`` <= 4.

Checked: zero 5xx; every good request answered 200 with a well-formed completion (JSON or SSE);
every malformed one answered its 4xx without disturbing the others; the whole run under a
minute; the server's RSS after the run back within a tolerance of its warmed-up baseline, and a
second run adding no more. Throughput and p50/p99 latencies are printed (and written to
``$RELIABILITY_LOAD_JSON``) for docs/reliability.md."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
CLIENTS = 16
REQUESTS = 320  # per run
MALFORMED_SHARE = 0.2
RSS_TOLERANCE_MB = 40.0  # after a run vs the warmed-up baseline
RSS_GROWTH_MB = 15.0  # second run vs first run

pytestmark = pytest.mark.slow


def _png(width: int, height: int, seed: int) -> str:
    rng = np.random.default_rng(seed)
    buffer = io.BytesIO()
    Image.fromarray((rng.random((height, width, 3)) * 255).astype(np.uint8)).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


IMAGES = [_png(64, 48, seed) for seed in range(4)]


def _good(k: int) -> tuple[dict, bool]:
    rng = random.Random(k)
    regions = [{"type": "box", "box": [2 + k % 5, 3, 30 + k % 7, 40]}]
    text = "What is <region1>?"
    if k % 3 == 0:
        regions.append({"type": "point", "point": [40, 20]})
        text = "Is <region1> left of <region2>?"
    body = {
        "model": "tiny",
        "max_tokens": rng.randint(1, 4),
        "temperature": rng.choice([0.0, 0.0, 0.7]),
        "messages": [
            {"role": "system", "content": "ignored"},
            {
                "role": "user",
                "content": [
                    {"type": "image_url", "image_url": {"url": IMAGES[k % 4]}},
                    {"type": "text", "text": text},
                ],
            },
        ],
        "regions": regions,
        "stream": k % 4 == 1,
    }
    return body, body["stream"]


def _malformed(k: int) -> tuple[bytes | dict, int]:
    """A broken request and the status it must get."""
    good, _ = _good(k)
    cases: list[tuple[bytes | dict, int]] = [
        (b"{not json", 400),
        ({**good, "regions": [{"type": "box", "box": [50, 40, 5, 6]}]}, 400),
        ({**good, "regions": [{"type": "box", "box": [1, 1, 5, 5]}] * 5}, 400),
        ({**good, "model": "gpt-4o"}, 404),
        ({**good, "max_tokens": 5}, 400),
        ({**good, "messages": [{"role": "user", "content": "no image <region1>"}]}, 400),
        ({**good, "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/png;base64,@@"}}, {"type": "text", "text": "<region1>"}]}]}, 400),
        ({**good, "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "file:///etc/passwd"}}, {"type": "text", "text": "<region1>"}]}]}, 400),
        ({**good, "regions": []}, 400),  # <region1> without a region
        (b'{"model": "tiny", "messages": [{"role": "user", "content": "' + b"x" * 250_000 + b'"}]}', 413),
    ]  # fmt: skip
    return cases[k % len(cases)]


def _check_completion(body: dict, max_tokens: int) -> None:
    assert body["object"] == "chat.completion" and body["id"].startswith("chatcmpl-")
    (choice,) = body["choices"]
    assert isinstance(choice["message"]["content"], str) and choice["message"]["role"] == "assistant"
    assert choice["finish_reason"] in ("stop", "length")
    usage = body["usage"]
    assert 1 <= usage["completion_tokens"] <= max_tokens and usage["prompt_tokens"] > 0
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


def _check_stream(text: str) -> None:
    events = [line[6:] for line in text.splitlines() if line.startswith("data: ")]
    assert events and events[-1] == "[DONE]", events[-3:]
    chunks = [json.loads(e) for e in events[:-1]]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert not any("error" in c for c in chunks), chunks
    assert chunks[0]["choices"][0]["delta"].get("role") == "assistant"
    assert chunks[-1]["choices"][0]["finish_reason"] in ("stop", "length")


async def _one(client: httpx.AsyncClient, k: int, stats: dict) -> None:
    malformed = random.Random(1000 + k).random() < MALFORMED_SHARE
    started = time.perf_counter()
    if malformed:
        payload, expected = _malformed(k)
        content = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        response = await client.post(
            "/v1/chat/completions", content=content, headers={"content-type": "application/json"}
        )
        status = response.status_code
        assert status == expected, (k, status, response.text[:300])
        assert response.json()["error"]["message"]
    else:
        body, stream = _good(k)
        response = await client.post("/v1/chat/completions", json=body)
        status = response.status_code
        assert status == 200, (k, status, response.text[:300])
        _check_stream(response.text) if stream else _check_completion(response.json(), body["max_tokens"])
    elapsed = time.perf_counter() - started
    stats["status"].append(status)
    stats["latency_good" if not malformed else "latency_bad"].append(elapsed)


async def _run(base: str, count: int, offset: int) -> dict:
    stats: dict = {"status": [], "latency_good": [], "latency_bad": []}
    queue: asyncio.Queue[int] = asyncio.Queue()
    for k in range(offset, offset + count):
        queue.put_nowait(k)
    limits = httpx.Limits(max_connections=CLIENTS, max_keepalive_connections=CLIENTS)
    async with httpx.AsyncClient(base_url=base, timeout=60, limits=limits) as client:

        async def worker() -> None:
            while not queue.empty():
                await _one(client, queue.get_nowait(), stats)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(CLIENTS)))
        stats["wall_s"] = time.perf_counter() - started
    return stats


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def _settled_rss(pid: int, seconds: float = 5.0) -> float:
    """RSS once it stops changing (sampled every 0.5 s, at most ``seconds``)."""
    last = _rss_mb(pid)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(0.5)
        now = _rss_mb(pid)
        if abs(now - last) < 1.0:
            return now
        last = now
    return last


@pytest.fixture()
def server_process(tmp_path):
    port_file = tmp_path / "port"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.reliability.load_server", str(port_file)],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 180
        while True:
            assert process.poll() is None, process.stderr.read().decode()[-3000:]
            assert time.monotonic() < deadline, "the server did not start"
            if port_file.exists() and port_file.read_text():
                base = f"http://127.0.0.1:{port_file.read_text()}"
                try:
                    if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
            time.sleep(0.2)
        yield base, process.pid
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


def test_sixteen_clients_a_few_hundred_requests(server_process):
    base, pid = server_process
    asyncio.run(_run(base, 48, offset=10_000))  # warm-up: allocator, tokenizer caches, batch shapes
    baseline = _settled_rss(pid)
    first = asyncio.run(_run(base, REQUESTS, offset=0))
    after_first = _settled_rss(pid)
    second = asyncio.run(_run(base, REQUESTS, offset=REQUESTS))
    after_second = _settled_rss(pid)

    report = {"clients": CLIENTS, "rss_baseline_mb": round(baseline, 1), "rss_after_run1_mb": round(after_first, 1),
              "rss_after_run2_mb": round(after_second, 1)}  # fmt: skip
    for name, stats in (("run1", first), ("run2", second)):
        statuses = stats["status"]
        assert len(statuses) == REQUESTS
        assert not [s for s in statuses if s >= 500], "server errors"
        report[name] = {
            "requests": REQUESTS,
            "good": len(stats["latency_good"]),
            "malformed": len(stats["latency_bad"]),
            "wall_s": round(stats["wall_s"], 2),
            "throughput_rps": round(REQUESTS / stats["wall_s"], 1),
            "good_p50_ms": round(1000 * _percentile(stats["latency_good"], 50), 1),
            "good_p99_ms": round(1000 * _percentile(stats["latency_good"], 99), 1),
            "malformed_p50_ms": round(1000 * _percentile(stats["latency_bad"], 50), 1),
            "malformed_p99_ms": round(1000 * _percentile(stats["latency_bad"], 99), 1),
        }
        assert stats["wall_s"] < 60, report
    print("\nload test:", json.dumps(report, indent=2))
    if os.environ.get("RELIABILITY_LOAD_JSON"):
        Path(os.environ["RELIABILITY_LOAD_JSON"]).write_text(json.dumps(report, indent=2))
    assert after_first - baseline < RSS_TOLERANCE_MB, report
    assert after_second - after_first < RSS_GROWTH_MB, report
    assert httpx.get(f"{base}/health", timeout=5).status_code == 200
