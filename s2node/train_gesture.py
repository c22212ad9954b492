"""Train a gesture model (EGRU, LSTM or GRU) on binned DVS events in tonic's DVSGesture layout.

Binned counts (sources.binning, the same function the node and the pipeline use) -> recurrent layer(s) ->
readout (trace of y, mean over steps) -> decoder. Training takes random windows of each recording (so that
a model started at any moment of a stream recognises the gesture) and puts the loss on every step after a
short warm-up; evaluation pools the per-step logits of the whole recording.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from s2node import modelfile
from s2node.compiler import prune
from s2node.errors import S2NodeError
from s2node.models import EGRUOptions, GestureModel
from sources.binning import InputSpec, bin_events
from sources.gesture_data import iter_dataset
from sources.gesture_motions import GESTURE_CLASSES


@dataclass(frozen=True)
class GestureTrainConfig:
    arch: str = "egru"
    hidden: tuple[int, ...] = (128,)
    epochs: int = 30
    batch_size: int = 32
    lr: float = 3e-3
    window_s: float = 1.5
    warmup_steps: int = 10
    dropout: float = 0.1
    activity_reg: float = 2.0  # λ · max(0, firing rate − target) per EGRU layer: activity sparsity, not silence
    activity_target: float = 0.1
    shift_cells: int = 2  # augmentation: random translation by up to this many downsampled cells
    stretch: float = 1.0  # augmentation: random speed factor in [1/stretch, stretch] (people gesture at own pace)
    threshold_init: float = 0.1
    trace_alpha: float = 0.9
    seed: int = 0
    max_train: int | None = None  # cap on recordings (tests, quick runs)
    init_from: str | None = None  # start from this model file's weights (fine-tuning, e.g. with prune)
    prune: float | None = None  # magnitude-prune the recurrent matrices to this sparsity, keep them pruned

    def __post_init__(self) -> None:
        if self.prune is not None and not 0.0 <= self.prune < 1.0:
            raise S2NodeError(f"prune must lie in [0, 1), not {self.prune}")


def load_binned(data: str | Path, split: str, spec: InputSpec, limit: int | None = None):
    """[(counts int16 [T, I], label)] of a split; counts unscaled (x scale at batch time)."""
    out = []
    for ev, label, _ in iter_dataset(data, split):
        x = bin_events(ev, spec) / spec.scale
        out.append((np.minimum(np.rint(x), 32767).astype(np.int16), label))
        if limit and len(out) >= limit:
            break
    return out


def shift_cells(x: np.ndarray, spec: InputSpec, dx: int, dy: int) -> np.ndarray:
    """Translate binned counts [T, 2·gh·gw] by whole cells, zero-filled: subjects stand anywhere."""
    gw, gh = spec.grid
    g = x.reshape(len(x), 2, gh, gw)
    out = np.zeros_like(g)
    out[:, :, max(dy, 0): gh + min(dy, 0), max(dx, 0): gw + min(dx, 0)] = \
        g[:, :, max(-dy, 0): gh + min(-dy, 0), max(-dx, 0): gw + min(-dx, 0)]
    return out.reshape(len(x), -1)


def zoom_cells(x: np.ndarray, spec: InputSpec, factor: float) -> np.ndarray:
    """Shrink binned counts [T, 2·gh·gw] about the grid's centre by `factor` <= 1 (each cell to its nearest cell,
    counts landing together added, none lost): a smaller or farther subject, whose movements span fewer cells."""
    if factor >= 1.0:
        return x
    gw, gh = spec.grid
    ys, xs = np.mgrid[0:gh, 0:gw]
    ty = np.rint((ys - (gh - 1) / 2) * factor + (gh - 1) / 2).astype(np.int64)
    tx = np.rint((xs - (gw - 1) / 2) * factor + (gw - 1) / 2).astype(np.int64)
    dst = np.tile((ty * gw + tx).ravel(), 2) + np.repeat([0, gh * gw], gh * gw)  # both polarities
    order = np.argsort(dst, kind="stable")
    d = dst[order]
    starts = np.flatnonzero(np.r_[True, d[1:] != d[:-1]])
    out = np.zeros_like(x)
    out[:, d[starts]] = np.add.reduceat(x[:, order], starts, axis=1)
    return out


def thin_counts(x: np.ndarray, keep: float, rng: np.random.Generator) -> np.ndarray:
    """Keep each event of integer counts with probability `keep` (binomial thinning): a dimmer scene or a weaker
    contrast, with fewer events from the same motion."""
    if keep >= 1.0:
        return x
    out = np.zeros_like(x)
    nz = np.flatnonzero(x)
    out.flat[nz] = rng.binomial(x.flat[nz], keep)
    return out


def add_background(x: np.ndarray, per_bin: float, rng: np.random.Generator) -> np.ndarray:
    """Integer counts [T, inputs] plus background activity: Poisson counts spread evenly over every input, `per_bin`
    events per bin in all (what passes the noise filter of a noisier sensor): the same motion at a lower
    signal-to-noise ratio."""
    if per_bin <= 0.0:
        return x
    extra = rng.poisson(per_bin / x.shape[1], x.shape)
    return np.minimum(x + extra, np.iinfo(x.dtype).max).astype(x.dtype)  # no wrap-around of a full count


def stretch_bins(x: np.ndarray, factor: float) -> np.ndarray:
    """Replay binned counts `factor` times faster (nearest bin; counts x factor, as faster motion gives more events)."""
    idx = np.floor(np.arange(int(len(x) / factor)) * factor).astype(np.int64)
    return x[idx[idx < len(x)]] * factor


def batch_windows(items, spec: InputSpec, steps: int | None, rng: np.random.Generator, shift: int = 0,
           stretch: float = 1.0):
    """Stack recordings, random windows of `steps` bins (or whole, zero-padded), -> (x, y, lengths)."""
    if steps is None:
        steps = max(len(x) for x, _ in items)
    xb = np.zeros((len(items), steps, spec.size), np.float32)
    lens = []
    for i, (x, _) in enumerate(items):
        if stretch > 1.0:
            x = stretch_bins(x, float(np.exp(rng.uniform(-np.log(stretch), np.log(stretch)))))
        if steps < len(x):
            s = int(rng.integers(0, len(x) - steps + 1))
            x = x[s: s + steps]
        if shift:
            x = shift_cells(x, spec, *(int(v) for v in rng.integers(-shift, shift + 1, 2)))
        xb[i, : len(x)] = x * spec.scale
        lens.append(len(x))
    return torch.from_numpy(xb), torch.tensor([lab for _, lab in items]), torch.tensor(lens)


def _masked_mean(step_logits: torch.Tensor, lens: torch.Tensor, start: int = 0) -> torch.Tensor:
    t = torch.arange(step_logits.shape[1])[None, :]
    m = ((t < lens[:, None]) & (t >= start)).float()[..., None]
    return (step_logits * m).sum(1) / m.sum(1).clamp(min=1)


def build_model(cfg: GestureTrainConfig, spec: InputSpec) -> GestureModel:
    egru = EGRUOptions(threshold_init=cfg.threshold_init)
    readout = {"source": "trace", "trace_alpha": cfg.trace_alpha, "pool": "mean"}
    return GestureModel(cfg.arch, spec.size, list(cfg.hidden), len(GESTURE_CLASSES), dropout=cfg.dropout,
                        readout=readout, egru=egru)


@torch.no_grad()
def accuracy(model: GestureModel, data, spec: InputSpec, batch_size: int = 16) -> float:
    model.eval()
    correct = 0
    rng = np.random.default_rng(0)
    for i in range(0, len(data), batch_size):
        x, y, lens = batch_windows(data[i: i + batch_size], spec, None, rng)
        logits, _, _ = model(x)
        correct += int((_masked_mean(logits, lens).argmax(1) == y).sum())
    return correct / max(1, len(data))


def train(data: str | Path, out: str | Path, cfg: GestureTrainConfig, spec: InputSpec,
          progress: bool = True, command: str = "") -> dict[str, Any]:
    """Train, write OUT.json/.safetensors after every epoch (a checkpoint), return the history."""
    from tqdm import tqdm

    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    train_set = load_binned(data, "train", spec, cfg.max_train)
    test_set = load_binned(data, "test", spec, cfg.max_train)
    model = build_model(cfg, spec)
    if cfg.init_from:
        load_weights(model, cfg.init_from, spec)
    masks = prune.prune_masks(model, cfg.prune) if cfg.prune else None  # [1] re-zeroed after every step
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=1e-4)
    n_batches = (len(train_set) + cfg.batch_size - 1) // cfg.batch_size
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, cfg.lr, total_steps=cfg.epochs * n_batches, pct_start=0.15)
    steps = max(cfg.warmup_steps + 1, round(cfg.window_s * 1e6 / spec.bin_us))
    lossf = nn.CrossEntropyLoss()
    history: list[dict[str, float]] = []
    t_start = time.time()
    for epoch in range(cfg.epochs):
        model.train()
        order = rng.permutation(len(train_set))
        tot, rate_sum = 0.0, 0.0
        bar = tqdm(range(n_batches), desc=f"{cfg.arch} epoch {epoch + 1}/{cfg.epochs}", disable=not progress)
        for bi in bar:
            items = [train_set[j] for j in order[bi * cfg.batch_size: (bi + 1) * cfg.batch_size]]
            x, y, _ = batch_windows(items, spec, steps, rng, cfg.shift_cells, cfg.stretch)
            logits, _, events = model(x)
            t_idx = torch.arange(cfg.warmup_steps, logits.shape[1])
            loss = lossf(logits[:, t_idx].reshape(-1, logits.shape[-1]), y.repeat_interleave(len(t_idx)))
            rates = torch.stack([o.mean() for o in events]) if events else torch.zeros(1)
            rate = rates.mean()
            total = loss + cfg.activity_reg * torch.relu(rates - cfg.activity_target).sum()
            opt.zero_grad()
            total.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            if masks is not None:
                prune.apply_masks(model, masks)  # [1]
            sched.step()
            tot += float(loss.detach())
            rate_sum += float(rate.detach())
            bar.set_postfix(loss=f"{tot / (bi + 1):.3f}", rate=f"{rate_sum / (bi + 1):.3f}")
        acc = accuracy(model, test_set, spec)
        history.append({"epoch": epoch + 1, "loss": tot / n_batches, "firing_rate": rate_sum / n_batches,
                        "test_accuracy": acc, "minutes": (time.time() - t_start) / 60})
        if progress:
            print(f"epoch {epoch + 1}: loss {tot / n_batches:.4f} rate {rate_sum / n_batches:.3f} test acc {acc:.4f}",
                  flush=True)
        save(model, out, cfg, spec, history, command)
    return {"history": history, "train_recordings": len(train_set), "test_recordings": len(test_set)}


def load_weights(model: GestureModel, path: str, spec: InputSpec | None = None) -> None:
    """Copy a model file's weights into `model` (same arch and input), for fine-tuning. Where the model's
    layers are wider than the file's, the file's units keep their weights and the new ones start from the
    model's own initialisation, wired so that the output is unchanged at the start (`widen_tensors`). Where
    `spec`'s grid is coarser than the file's by a whole factor, the first layer's input weights are pooled
    onto it (`coarsen_input`)."""
    config, tensors = modelfile.load(path)
    mine = model.to_tensors()
    if spec is not None and "rnn.0.weight_ih" in tensors:
        tensors = coarsen_input(tensors, InputSpec.from_config(config["input"]), spec, path)
    if config.get("arch") == model.rnn.arch and mine.keys() == tensors.keys() and any(
            mine[k].shape != v.shape for k, v in tensors.items()):
        tensors = widen_tensors(tensors, mine, model.rnn.arch, path)
    if mine.keys() != tensors.keys() or any(mine[k].shape != v.shape for k, v in tensors.items()):
        raise S2NodeError(f"{path}: its architecture or sizes differ from this run's (--arch/--hidden/--downsample)")
    model.rnn.load_tensors(tensors)
    with torch.no_grad():
        model.decoder.weight.copy_(torch.from_numpy(tensors["decoder.weight"]))
        model.decoder.bias.copy_(torch.from_numpy(tensors["decoder.bias"]))


def coarsen_input(tensors: dict[str, np.ndarray], old: InputSpec, new: InputSpec,
                  where: str = "model") -> dict[str, np.ndarray]:
    """`tensors` with the first layer's input weights moved from `old`'s grid onto `new`'s coarser one: each
    new cell gets the mean of the weights of the k x k old cells it covers (k = the ratio of the downsample
    factors). A coarse cell counts the events of all k x k, so a pattern that is even within it drives each
    unit as before; what changes is the detail finer than a coarse cell. The same grid: unchanged."""
    if new.downsample == old.downsample:
        return tensors
    k, rem = divmod(new.downsample, old.downsample)
    if rem or k < 2 or (old.width, old.height) != (new.width, new.height):
        raise S2NodeError(f"{where}: its input grid (sensor {old.width}x{old.height}, downsample {old.downsample}) "
                          f"can only be pooled onto the same sensor with a downsample that is a multiple of "
                          f"{old.downsample}, not {new.downsample}")
    (ow, oh), (nw, nh) = old.grid, new.grid
    w = tensors["rnn.0.weight_ih"]
    g = w.reshape(len(w), 2, oh, ow)[:, :, : nh * k, : nw * k]  # cells past the last whole block: none in new
    pooled = g.reshape(len(w), 2, nh, k, nw, k).mean(axis=(3, 5)).reshape(len(w), -1)
    return tensors | {"rnn.0.weight_ih": pooled.astype(w.dtype)}


def widen_tensors(old: dict[str, np.ndarray], fresh: dict[str, np.ndarray], arch: str,
                  where: str = "model") -> dict[str, np.ndarray]:
    """`old`'s weights placed into the wider layers of `fresh` (a newly initialised model of the same arch,
    input and depth): each layer's first units are the old ones; the new units keep their fresh input
    weights, biases and thresholds, and everything they send (their columns in the recurrent matrices,
    the next layer's input and the decoder) starts at zero. The wider model computes the old one's logits
    exactly until training gives the new units a say."""
    g = modelfile.gate_rows(arch)
    n = sum(1 for k in old if k.endswith(".weight_hh"))
    sizes = [(old[f"rnn.{i}.weight_hh"].shape[1], fresh[f"rnn.{i}.weight_hh"].shape[1]) for i in range(n)]
    if any(h_old > h_new for h_old, h_new in sizes):
        raise S2NodeError(f"{where}: its layers are wider than this run's --hidden; it can only be widened")
    out = {k: v.copy() for k, v in fresh.items()}

    def rows(h_old: int, h_new: int) -> np.ndarray:  # the old units' rows of each gate block
        return np.concatenate([np.arange(h_old) + j * h_new for j in range(g)])

    for i, (h_old, h_new) in enumerate(sizes):
        r = rows(h_old, h_new)
        ih_old, ih = old[f"rnn.{i}.weight_ih"], out[f"rnn.{i}.weight_ih"]
        if ih_old.shape[1] != ih.shape[1]:  # a layer above a widened one: the new inputs start silent
            ih[:, ih_old.shape[1]:] = 0.0
        ih[r, : ih_old.shape[1]] = ih_old
        hh = out[f"rnn.{i}.weight_hh"]
        hh[:, h_old:] = 0.0
        hh[r, :h_old] = old[f"rnn.{i}.weight_hh"]
        for k in ("bias_ih", "bias_hh"):
            out[f"rnn.{i}.{k}"][r] = old[f"rnn.{i}.{k}"]
        if f"rnn.{i}.threshold" in old:
            out[f"rnn.{i}.threshold"][:h_old] = old[f"rnn.{i}.threshold"]
    h_old = sizes[-1][0]
    out["decoder.weight"][:, h_old:] = 0.0
    out["decoder.weight"][:, :h_old] = old["decoder.weight"]
    out["decoder.bias"][:] = old["decoder.bias"]
    return out


def save(model: GestureModel, out: str | Path, cfg: GestureTrainConfig, spec: InputSpec,
         history: list[dict[str, float]], command: str, extra: dict[str, Any] | None = None) -> Path:
    config = {
        "task": "gesture", "arch": cfg.arch, "layers": model.rnn.layer_configs(), "readout": model.readout,
        "classes": list(GESTURE_CLASSES), "input": spec.to_config(),
        "training": {"config": asdict(cfg), **(extra or {}), "history": history, "command": command},
    }
    return modelfile.save(out, config, model.to_tensors())
