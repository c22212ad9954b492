"""Small random EGRU model files for the node tests and benchmarks (weights scaled so that units fire)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from s2node import modelfile
from s2node.models import EGRUOptions, GestureModel, LanguageModel

CHARS = list(" abcdefghijklmnopqrstuvwxyz.,;'\n!?ABCDEFGHIJKLMNOPQRSTUVWXYZ")


def _scale(model: torch.nn.Module, gain: float, threshold: float, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for layer in model.rnn.layers:
            layer.weight_ih.mul_(gain)
            layer.weight_hh.mul_(gain)
            h = layer.hidden_size
            layer.threshold.copy_(threshold * torch.exp(0.5 * torch.randn(h, generator=g)))


def make_lm(path: Path, hidden=(128, 128), emb: int = 32, seed: int = 0, gain: float = 3.0,
            threshold: float = 0.05, zoneout: float = 0.0, vocab: list[str] | None = None) -> Path:
    """A character LM over `vocab` (default CHARS) saved as a model file; returns the JSON path."""
    torch.manual_seed(seed)
    vocab = vocab or CHARS
    m = LanguageModel("egru", len(vocab), emb, list(hidden), egru=EGRUOptions(zoneout=zoneout))
    _scale(m, gain, threshold, seed)
    with torch.no_grad():
        m.embedding.weight.uniform_(-1.0, 1.0)
    cfg = {"task": "lm", "arch": "egru", "layers": m.rnn.layer_configs(), "level": "char", "vocab": vocab,
           "readout": {"source": "y", "trace_alpha": 0.9, "pool": "last"}}
    return modelfile.save(path, cfg, m.to_tensors())


def make_gesture(path: Path, n_in: int = 2 * 32 * 32, hidden=(128,), n_classes: int = 11, seed: int = 0,
                 gain: float = 3.0, threshold: float = 0.05, readout: dict | None = None) -> Path:
    """A gesture model taking binned counts of a 32 x 32 x 2 input; returns the JSON path."""
    torch.manual_seed(seed)
    ro = readout or {"source": "trace", "trace_alpha": 0.9, "pool": "mean"}
    m = GestureModel("egru", n_in, list(hidden), n_classes, readout=ro)
    _scale(m, gain, threshold, seed)
    cfg = {"task": "gesture", "arch": "egru", "layers": m.rnn.layer_configs(),
           "classes": [f"class{i}" for i in range(n_classes)], "readout": ro,
           "input": {"sensor": [128, 128], "downsample": 4, "bin_us": 10_000, "layout": "p,y,x", "scale": 1.0}}
    return modelfile.save(path, cfg, m.to_tensors())


def random_counts(rng: np.random.Generator, steps: int, n_in: int, rate: float) -> np.ndarray:
    """[steps, n_in] sparse event counts: each input active with probability `rate`, 1-3 events."""
    active = rng.random((steps, n_in)) < rate
    return (active * rng.integers(1, 4, (steps, n_in))).astype(np.float32)
