"""Small stand-ins for the pipeline tests: random (untrained) model files, synthetic recordings, a collector."""

from __future__ import annotations

import asyncio
import contextlib
import json
import string
from pathlib import Path

import numpy as np
import torch

from s2node import modelfile
from s2node.models import GestureModel, LanguageModel
from sources.events import make_events

CLASSES = ["hand_clap", "right_wave", "left_wave", "other"]
CHARS = list(string.ascii_lowercase + " .,\n")


def gesture_model_file(dir: Path, *, sensor=(32, 24), downsample=4, bin_us=10_000, hidden=(24,), seed=0,
                       readout=None) -> Path:
    """A random gesture EGRU saved as a model file (thresholds low enough that units fire)."""
    torch.manual_seed(seed)
    wd, hd = sensor[0] // downsample, sensor[1] // downsample
    n_in = 2 * wd * hd
    ro = readout or {"source": "trace", "trace_alpha": 0.8, "pool": "mean"}
    m = GestureModel("egru", n_in, list(hidden), len(CLASSES), readout=ro)
    cfg = {
        "task": "gesture", "arch": "egru", "layers": m.rnn.layer_configs(), "readout": ro, "classes": CLASSES,
        "input": {"sensor": list(sensor), "downsample": downsample, "bin_us": bin_us, "layout": "p,y,x",
                  "scale": 0.2},
    }
    return modelfile.save(dir / "gesture", cfg, m.to_tensors()).with_suffix("")


def lm_model_file(dir: Path, *, hidden=(32,), seed=0) -> Path:
    torch.manual_seed(seed)
    m = LanguageModel("egru", len(CHARS), 16, list(hidden))
    cfg = {"task": "lm", "arch": "egru", "layers": m.rnn.layer_configs(), "level": "char", "vocab": CHARS,
           "unk": None}
    return modelfile.save(dir / "lm", cfg, m.to_tensors()).with_suffix("")


def recording(path: Path, *, n=20_000, duration_us=500_000, sensor=(32, 24), seed=1, t0=1_000_000,
              outside=0) -> Path:
    """Random events over duration_us, sorted, plus `outside` events beyond the sensor; saved as .npy."""
    rng = np.random.default_rng(seed)
    t = np.sort(rng.integers(t0, t0 + duration_us, n))
    x = rng.integers(0, sensor[0], n)
    y = rng.integers(0, sensor[1], n)
    if outside:
        i = rng.choice(n, outside, replace=False)
        x[i] = sensor[0] + rng.integers(0, 50, outside)
    ev = make_events(t, x, y, rng.integers(0, 2, n))
    np.save(path, ev)
    return path


class Collector:
    """An aiomqtt subscriber that keeps every message (topic, parsed JSON); reconnects with a persistent
    session (clean_session=False) so a broker with persistence queues QoS-1 messages while it is away."""

    def __init__(self, host: str, port: int, topics: list[str], client_id: str = "collector") -> None:
        self.host, self.port, self.topics, self.client_id = host, port, topics, client_id
        self.messages: list[tuple[str, dict]] = []
        self.subscribed = asyncio.Event()
        self.new = asyncio.Event()

    def of(self, kind: str) -> list[dict]:
        return [p for t, p in self.messages if t.endswith("/" + kind)]

    def _keep(self, m) -> None:
        try:
            payload = json.loads(bytes(m.payload))
        except (ValueError, RecursionError):  # plain text on in/text, or deliberately bad input
            payload = {"raw": bytes(m.payload)}
        self.messages.append((str(m.topic), payload))
        self.new.set()

    async def run(self) -> None:
        import aiomqtt

        keep = self._keep

        class KeepingQueue(asyncio.Queue):
            """Keeps each message as paho hands it over (and acknowledges it): aiomqtt discards what is still
            queued when the connection drops, and that would look like loss the publisher did not cause."""

            def put_nowait(self, item) -> None:
                keep(item)
                super().put_nowait(item)

        while True:
            try:
                async with aiomqtt.Client(self.host, self.port, identifier=self.client_id, clean_session=False,
                                          timeout=2, queue_type=KeepingQueue) as c:
                    for t in self.topics:
                        await c.subscribe(t, qos=1)
                    self.subscribed.set()
                    async for _ in c.messages:
                        pass
            except aiomqtt.MqttError:
                await asyncio.sleep(0.05)

    async def wait_for(self, pred, timeout_s: float = 20.0) -> bool:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                while not pred():
                    self.new.clear()
                    await self.new.wait()
                return True
        return False


@contextlib.asynccontextmanager
async def running(*coros):
    """Run background coroutines for the body's duration; all are cancelled and awaited after it."""
    tasks = [asyncio.create_task(c) for c in coros]
    try:
        yield tasks
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
