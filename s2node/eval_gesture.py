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
        "steps": summary["steps"], "arch": config["arch"], "data": f"{Path(data).name}:{split}",
    }


def score_segments(pred: np.ndarray, t_end_us: np.ndarray, index: np.ndarray, spans: list[dict],
                   n_classes: int) -> tuple[np.ndarray, np.ndarray, list[float]]:
    """Per-step predictions of one stream against its label spans: (right steps per class, scored steps per
    class, latency per segment in s). A segment's steps are scored over its last two thirds; its latency runs
    from its start to the end of the first step predicted right (infinite if none); idle spans are skipped."""
    hits = np.zeros(n_classes, np.int64)
    scored = np.zeros(n_classes, np.int64)
    latencies: list[float] = []  # one per gesture segment, in order
    for k, sp in enumerate(spans):
        c = sp["class"]
        steps = np.flatnonzero(index == k)
        if c < 0 or steps.size == 0:
            continue
        right = pred[steps] == c
        late = t_end_us[steps] - sp["t_start_us"] >= (sp["t_end_us"] - sp["t_start_us"]) / 3
        hits[c] += int(right[late].sum())
        scored[c] += int(late.sum())
        first = np.flatnonzero(right)
        latencies.append((t_end_us[steps[first[0]]] - sp["t_start_us"]) / 1e6 if first.size else float("inf"))
    return hits, scored, latencies


def evaluate_generated_streams(config: dict[str, Any], tensors: dict[str, np.ndarray], *, streams: int,
                               seed: int = 1, stream_s: float = 40.0,
                               window_s: float | None = None, jobs: int = 1) -> dict[str, Any]:
    """evaluate_gesture_stream on `streams` held-out streams generated for the occasion (in a temporary folder,
    removed after, by `jobs` processes): a fixed, self-contained benchmark (the same seed gives the same streams)."""
    import tempfile

    from sources.gesture_stream import StreamConfig, generate_streams

    with tempfile.TemporaryDirectory(prefix="s2-streams-") as tmp:
        generate_streams(tmp, streams, seed, split="test", cfg=StreamConfig(duration_s=stream_s), progress=False,
                         jobs=jobs)
        result = evaluate_gesture_stream(config, tensors, data=tmp, split="test", window_s=window_s)
    result["data"] = f"{streams} held-out streams of {stream_s:g} s (generated, seed {seed})"
    return result


def _round(v: float | None, digits: int = 1) -> float | None:
    return None if v is None else round(v, digits)


@torch.no_grad()
def evaluate_gesture_stream(config: dict[str, Any], tensors: dict[str, np.ndarray], *, data: str | Path,
                            split: str = "test", window_s: float | None = None,
                            max_samples: int | None = None) -> dict[str, Any]:
    """A gesture model on continuous streams (`s2 data gestures --continuous`), scored per step as it is served:
    state never reset, the streaming readout (mean of the logits over the last `window_s`; None: the model
    file's, s2node.readout.served_window_s). Accuracy over the
    last two thirds of each gesture segment, overall and per class; latency from a segment's start to its first
    correct prediction (p50, p90; a segment never recognised counts as never: infinite); activity counters;
    per stream, its accuracy and its input events per bin (after the noise filter)."""
    from s2node.readout import ReadoutSpec, served_window_s, window_steps
    from sources.gesture_stream import iter_streams

    if window_s is None:
        window_s = served_window_s(config)

    model = build_torch_model(config, tensors)
    spec = InputSpec.from_config(config["input"])
    classes = list(config["classes"])
    counter = ActivityCounter(tensors, len(config["layers"]))
    hits = np.zeros(len(classes), np.int64)
    scored = np.zeros(len(classes), np.int64)
    latencies: list[float] = []
    by_class: dict[str, list[float]] = {}
    per_stream: list[dict[str, Any]] = []
    streams = 0
    for st in iter_streams(data, split):
        x, _, index = st.binned(spec)
        h = torch.from_numpy(x)[None]
        for i, layer in enumerate(model.rnn.layers):
            inp = h
            h = layer(inp).y if config["arch"] == "egru" else layer(inp)[0]
            y = h[0].numpy()
            counter.add(i, inp[0].numpy(), np.vstack([np.zeros((1, y.shape[1]), y.dtype), y[:-1]]), y)
        step_logits = model.decoder(model.readout_sequence(h))[0].numpy()
        pooling = ReadoutSpec.from_config(config).pooling(window_steps(config, window_s))
        pred = np.array([int(np.argmax(pooling(v))) for v in step_logits])
        t_end = (np.arange(len(x)) + 1) * spec.bin_us  # a step's prediction comes out at its bin's end
        h_, s_, lat_ = score_segments(pred, t_end, index, st.spans, len(classes))
        hits += h_
        scored += s_
        latencies += lat_
        # per subject: a few people the camera barely sees (tens of input events per bin) make most misses
        per_stream.append({"stream": st.path.stem,
                           "accuracy": round(float(h_.sum() / s_.sum()), 4) if s_.sum() else None,
                           "input_events_per_bin": round(float(x.sum() / spec.scale / max(1, len(x))), 1),
                           "subject_events_per_bin": _round(st.subject_events_per_bin(spec.bin_us))})
        for c, v in zip((sp["class"] for sp in st.spans if sp["class"] >= 0), lat_, strict=False):
            by_class.setdefault(classes[c], []).append(v)
        streams += 1
        if max_samples and streams >= max_samples:
            break
    lat = np.array(latencies) if latencies else np.array([float("inf")])
    summary = counter.summary()

    def pct(q: float) -> float | None:
        v = float(np.percentile(lat, q, method="lower"))
        return round(v, 3) if np.isfinite(v) else None  # JSON has no infinity: null = not reached

    per_class = {classes[c]: round(float(hits[c] / scored[c]), 4) for c in range(len(classes)) if scored[c]}
    return {
        "metric": "stream_accuracy", "value": float(hits.sum() / max(1, scored.sum())),
        "per_class": per_class, "worst_class": min(per_class.values()) if per_class else None,
        "latency_p50_s": pct(50), "latency_p90_s": pct(90),
        "latency_max_by_class_s": {c: round(max(v), 3) if np.isfinite(max(v)) else None for c, v in by_class.items()},
        "segments": len(latencies), "never_recognised": int(np.isinf(lat).sum()) if latencies else 0,
        "window_s": window_s, "streams": streams, "split": split, "per_stream": per_stream,
        "activity_sparsity": summary["activity_sparsity"], "synops_per_step": summary["synops_per_step"],
        "steps": summary["steps"], "arch": config["arch"], "data": str(data),
    }
