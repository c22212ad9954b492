"""Evaluation of gesture models: accuracy and NeuroBench-style activity counters on a DVSGesture folder."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from s2node.metrics import ActivityCounter, count_params
from s2node.models import GestureModel, build_torch_model
from sources.binning import InputSpec, bin_events
from sources.gesture_data import iter_dataset


@torch.no_grad()
def evaluate_gesture(config: dict[str, Any], tensors: dict[str, np.ndarray], *, data: str | Path,
                     split: str = "test", max_samples: int | None = None) -> dict[str, Any]:
    """Accuracy of a loaded model file on one split of a DVSGesture folder (per-step logits pooled as the model's
    readout says) plus activity counters over all steps. DVSGesture has no validation split: "valid" reads test."""
    split = "train" if split == "train" else "test"
    model = build_torch_model(config, tensors)
    spec = InputSpec.from_config(config["input"])
    n_layers = len(config["layers"])
    counter = ActivityCounter(tensors, n_layers)
    correct = samples = 0
    for ev, label, _ in iter_dataset(data, split):
        x = torch.from_numpy(bin_events(ev, spec))[None]
        h = x
        for i, layer in enumerate(model.rnn.layers):  # layer by layer, to count each layer's input and output
            inp = h
            if config["arch"] == "egru":
                h = layer(inp).y
            else:
                h, _ = layer(inp)
            y = h[0].numpy()
            y_prev = np.vstack([np.zeros((1, y.shape[1]), y.dtype), y[:-1]])
            counter.add(i, inp[0].numpy(), y_prev, y)
        step_logits = model.decoder(model.readout_sequence(h))
        pred = int(GestureModel.pool(step_logits, config["readout"]["pool"]).argmax(1))
        correct += int(pred == label)
        samples += 1
        if max_samples and samples >= max_samples:
            break
    summary = counter.summary()
    return {
        "metric": "accuracy", "value": correct / max(1, samples), "samples": samples, "split": split,
        "activity_sparsity": summary["activity_sparsity"], "synops_per_step": summary["synops_per_step"],
        "dense_ops_per_step": summary["dense_ops_per_step"],
        "synops_per_sample": counter.synops / max(1, samples), "params": count_params(tensors),
        "steps": summary["steps"], "arch": config["arch"], "data": str(data),
    }
