"""`s2 eval MODEL` for gesture models: accuracy and NeuroBench-style activity counters on a DVSGesture folder."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np
import torch

from s2node import modelfile
from s2node.metrics import ActivityCounter, count_params
from s2node.models import GestureModel, load_torch_model
from sources.binning import InputSpec, bin_events
from sources.gesture_data import default_gesture_dir, iter_dataset


@torch.no_grad()
def evaluate(model_path: str | Path, data: str | Path, split: str = "test",
             max_samples: int | None = None) -> dict[str, Any]:
    """Accuracy (per-step logits pooled as the model's readout says) plus activity counters over all steps."""
    model, config = load_torch_model(model_path)
    assert isinstance(model, GestureModel)
    _, tensors = modelfile.load(model_path)
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


def evaluate_cli(args: argparse.Namespace, config: dict[str, Any]) -> dict[str, Any]:
    """`s2 eval MODEL [--data DIR] [--split test] [--max-steps N]` for gesture models (N caps recordings)."""
    torch.set_num_threads(1)
    split = "train" if args.split == "train" else "test"
    data = args.data or default_gesture_dir()
    return evaluate(args.model, data, split, args.max_steps)
