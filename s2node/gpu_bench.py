"""`s2 node gpu-bench`: the PyTorch model's batch-1 step measured on this machine, to put one's own hardware
beside the anchored A100 in `s2 node report`.

CUDA when present (timed with synchronisation; power sampled from NVML through `pynvml` or `nvidia-smi` while
the steps run), else the CPU, whose power is not measured: the stated assumption `cpu_power_w` is used.
"""

from __future__ import annotations

import shutil
import subprocess
import threading
import time
from typing import Any

import numpy as np

from s2node.errors import S2NodeError

CPU_POWER_W = 65.0  # a desktop CPU package at load (assumption; pass the real figure for your machine)


def _nvml_power_w() -> float | None:
    """The board power now, in W, or None where neither pynvml nor nvidia-smi answers."""
    try:
        import pynvml

        pynvml.nvmlInit()
        h = pynvml.nvmlDeviceGetHandleByIndex(0)
        return pynvml.nvmlDeviceGetPowerUsage(h) / 1000.0
    except Exception:
        pass
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return None
    try:
        out = subprocess.run([smi, "--query-gpu=power.draw", "--format=csv,noheader,nounits", "-i", "0"],
                             capture_output=True, text=True, timeout=10, check=True).stdout
        return float(out.strip().splitlines()[0])
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return None


class _PowerSampler:
    """Samples the GPU's power every interval_s on a thread while the steps run."""

    def __init__(self, interval_s: float = 0.05) -> None:
        self.interval_s, self.samples = interval_s, []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            w = _nvml_power_w()
            if w is None:
                return
            self.samples.append(w)
            self._stop.wait(self.interval_s)

    def __enter__(self) -> _PowerSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def gpu_bench(config: dict[str, Any], tensors: dict[str, np.ndarray], *, steps: int = 200, warmup: int = 20,
              device: str = "auto", cpu_power_w: float = CPU_POWER_W) -> dict[str, Any]:
    """Time `steps` batch-1 steps of the PyTorch model (one token or one input frame per call, state carried)."""
    import torch

    from s2node.models import build_torch_model

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise S2NodeError("--device cuda: no CUDA device here")
    if steps < 1:
        raise S2NodeError("--steps must be at least 1")
    model = build_torch_model(config, tensors).to(device)
    lm = config["task"] == "lm"
    rng = np.random.default_rng(0)
    if lm:
        xs = torch.from_numpy(rng.integers(0, len(config["vocab"]), size=(steps + warmup, 1, 1))).to(device)
    else:
        n_in = config["layers"][0]["input_size"]
        xs = torch.from_numpy(rng.random((steps + warmup, 1, 1, n_in), dtype=np.float32)).to(device)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    states = None
    with torch.no_grad():
        for i in range(warmup):
            _, states, _ = model(xs[i], states)
        sync()
        with _PowerSampler() as sampler:
            t0 = time.perf_counter()
            for i in range(warmup, warmup + steps):
                _, states, _ = model(xs[i], states)
            sync()
            wall = time.perf_counter() - t0
    step_s = wall / steps
    if device == "cuda" and sampler.samples:
        power, source = float(np.mean(sampler.samples)), "NVML (mean over the timed steps)"
    elif device == "cuda":
        power, source = None, "not measured (no NVML here)"
    else:
        power, source = cpu_power_w, f"assumption: {cpu_power_w} W (--cpu-power-w)"
    name = torch.cuda.get_device_name(0) if device == "cuda" else "cpu"
    return {"device": device, "device_name": name, "steps": steps, "step_s": step_s,
            "power_w": power, "power_source": source,
            "energy_j_per_step": None if power is None else power * step_s,
            "threads": torch.get_num_threads() if device == "cpu" else None}
