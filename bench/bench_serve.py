"""Text workers: requests per second and latency with 1 and with 3 `s2 serve` workers of one group, same load.

    python bench/bench_serve.py                         # the shipped character model, 12 x 15 requests
    python bench/bench_serve.py --conversations 30 --requests 20 --model models/ptb-egru

One mosquitto; the workers are `s2 serve` subprocesses of one group; one client (this process) keeps
`--conversations` conversations going at once, each sending its next request when the last one was answered
(a closed loop: the same offered load for both runs). Each request carries the conversation so far (one short
message more each time) and asks for the top 5 tokens and a `--continuation` of 20. Prints one JSON object:
per run the requests per second, the p50 and p99 latency, the share of answers that started from a state the
worker had kept, retries and duplicates; then the 3-worker / 1-worker ratios. The workers share the machine's
cores with each other and with the client and the broker: on fewer than 4 cores, 3 workers cannot run 3 times
as fast.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from stream.broker import MosquittoProcess  # noqa: E402
from stream.defaults import DEFAULT_TEXT_MODEL  # noqa: E402
from stream.lm_ask import TextClient  # noqa: E402
from stream.mqtt import MqttLink  # noqa: E402

MESSAGES = ["the ", "king", " said", " to", " his", " lord", ",\n", "and ", "so", " it", " was", " done", ".\n"]
ENV = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}


def _start_workers(n: int, model: str, group: str, url: str, logdir: Path) -> list[tuple[subprocess.Popen, Path]]:
    out = []
    for i in range(n):
        log = logdir / f"{group}-w{i}.log"
        with open(log, "w") as f:
            p = subprocess.Popen([sys.executable, "-m", "stream.cli", "serve", "--lm", model, "--group", group,
                                  "--worker", f"w{i}", "--broker", url], stdout=subprocess.DEVNULL, stderr=f,
                                 env=ENV, cwd=ROOT)
        out.append((p, log))
    deadline = time.monotonic() + 120
    while not all("answering" in log.read_text() for _, log in out):
        if time.monotonic() > deadline or any(p.poll() is not None for p, _ in out):
            raise SystemExit("workers did not start: " + " | ".join(log.read_text()[-300:] for _, log in out))
        time.sleep(0.1)
    return out


def _stop(workers: list[tuple[subprocess.Popen, Path]]) -> None:
    for p, _ in workers:
        p.terminate()
    for p, _ in workers:
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


async def _load(url: str, group: str, conversations: int, requests: int, continuation: int) -> dict:
    link = MqttLink(url, mqtt5=True)
    client = TextClient(link, group, timeout_s=5.0, retries=5)
    lat: list[float] = []
    reused = 0

    async def conversation(c: int) -> None:
        nonlocal reused
        text: list[str] = []
        for i in range(requests):
            text.append(MESSAGES[(c * 5 + i) % len(MESSAGES)])
            t0 = time.perf_counter()
            ans = await client.ask(f"bench-{c}", text, topk=5, continuation=continuation)
            lat.append(time.perf_counter() - t0)
            reused += ans.reused > 0
            if ans.error is not None:
                raise SystemExit(f"error answer: {ans.error}")

    run = asyncio.create_task(link.run())
    try:
        await link.ensure_connected(10)
        await link.synced(10)
        await client.ask("warm-up", ["a"], continuation=1)  # first answers pay for lazy set-up, not the load
        t0 = time.perf_counter()
        async with asyncio.TaskGroup() as tg:
            for c in range(conversations):
                tg.create_task(conversation(c))
        wall = time.perf_counter() - t0
    finally:
        run.cancel()
        await asyncio.gather(run, return_exceptions=True)
    s = client.requests.stats
    ms = np.array(lat) * 1e3
    return {"requests": len(lat), "wall_s": round(wall, 3), "requests_per_s": round(len(lat) / wall, 2),
            "latency_p50_ms": round(float(np.percentile(ms, 50)), 2),
            "latency_p99_ms": round(float(np.percentile(ms, 99)), 2),
            "answers_from_kept_state": round(reused / len(lat), 3), "retries": s.retries,
            "duplicates": s.duplicates}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=DEFAULT_TEXT_MODEL, help=f"language model (default {DEFAULT_TEXT_MODEL})")
    ap.add_argument("--conversations", type=int, default=12, help="conversations at once (default 12)")
    ap.add_argument("--requests", type=int, default=15, help="requests per conversation (default 15)")
    ap.add_argument("--continuation", type=int, default=20, help="tokens of continuation asked (default 20)")
    a = ap.parse_args()
    runs = {}
    with tempfile.TemporaryDirectory(prefix="s2-bench-serve-") as tmp:
        broker = MosquittoProcess().start()
        try:
            for n in (1, 3):
                group = f"bench{n}"
                workers = _start_workers(n, a.model, group, broker.url, Path(tmp))
                try:
                    runs[f"workers_{n}"] = asyncio.run(_load(broker.url, group, a.conversations, a.requests,
                                                             a.continuation))
                finally:
                    _stop(workers)
        finally:
            broker.close()
    one, three = runs["workers_1"], runs["workers_3"]
    print(json.dumps({
        "bench": "serve", "cpu_count": os.cpu_count(), "python": platform.python_version(),
        "backend": os.environ.get("S2_BACKEND", "node"), "model": a.model, "conversations": a.conversations,
        "requests_per_conversation": a.requests, "continuation": a.continuation, **runs,
        "ratio_3_to_1": {
            "requests_per_s": round(three["requests_per_s"] / one["requests_per_s"], 2),
            "latency_p50": round(three["latency_p50_ms"] / one["latency_p50_ms"], 2),
            "latency_p99": round(three["latency_p99_ms"] / one["latency_p99_ms"], 2),
        },
    }, indent=1))


if __name__ == "__main__":
    main()
