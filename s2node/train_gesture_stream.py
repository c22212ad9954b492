"""Train a gesture model on continuous streams, as it is used: state carried from gesture to gesture.

Truncated backpropagation through time: each batch holds whole streams, run from a random offset in chunks
of `chunk_s`; the recurrent state, the readout trace and the last window of logits carry over from chunk to
chunk (detached), so the model learns from states that minutes of earlier gestures left behind, never from a
reset it will not get in use. Windows cut from streams with a fresh state each would teach it the one
moment (zero state) that never comes back after the first second.

The loss has two parts on every labelled step (idle spells and the first `onset_s` of a segment are not
scored): cross-entropy of the per-step logits, and cross-entropy of the streaming readout, the mean of the
logits over the last `window_s` (what `s2 replay`, `s2 run` and the UI show), so that the model learns to
outvote the gesture before within the window. With `clip_weight` > 0, each chunk's loss also holds the
isolated training clips' loss (random windows, as `s2 train gesture`), so that the model keeps the clips.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from s2node.compiler import prune
from s2node.errors import S2NodeError
from s2node.models import GestureModel
from s2node.train_gesture import (
    GestureTrainConfig,
    add_background,
    build_model,
    load_weights,
    save,
    shift_cells,
    thin_counts,
    zoom_cells,
)
from sources.binning import InputSpec
from sources.gesture_stream import IDLE, iter_streams

IGNORE = -100  # nn.CrossEntropyLoss's ignore_index


@dataclass(frozen=True)
class StreamTrainConfig:
    """What continuous training adds to GestureTrainConfig."""

    chunk_s: float = 2.0  # truncated BPTT length
    window_s: float = 2.0  # the streaming readout's window, as served
    onset_s: float = 0.1  # not scored after a segment starts (hands still at rest)
    pooled_weight: float = 1.0  # weight of the streaming-readout loss
    pooled_from_s: float = 0.25  # the streaming readout is scored from this far into a segment
    clip_weight: float = 0.0  # weight of the isolated training clips' loss, one batch of windows per chunk
    onset_weight: float = 0.0  # extra weight of the streaming readout's loss over its first second in a segment
    onset_until_s: float = 1.0  # (the steps that set how soon a new gesture is shown)
    zoom_min: float = 1.0  # each stream of a batch shrunk by a factor drawn from [zoom_min, 1] (`zoom_cells`)
    thin_min: float = 1.0  # and its events kept with a probability drawn from [thin_min, 1] (`thin_counts`)
    noise_max: float = 0.0  # and background activity added, events per bin drawn from [0, noise_max]
    sparse_below: float = 0.0  # streams with fewer input events per bin than this (after the filter) are sparse
    sparse_repeat: int = 1  # and each is trained on this many times per epoch (`epoch_order`)

    def __post_init__(self) -> None:
        if not 0.0 < self.zoom_min <= 1.0:
            raise S2NodeError(f"--zoom-min must be in (0, 1], not {self.zoom_min:g}")
        if not 0.0 <= self.noise_max < 1e6:
            raise S2NodeError(f"--noise-max must be in [0, 1e6) events per bin, not {self.noise_max:g}")
        if not 0.0 <= self.thin_min <= 1.0:
            raise S2NodeError(f"--thin-min must be in [0, 1], not {self.thin_min:g}")
        if not self.sparse_below >= 0.0 or self.sparse_repeat < 1:
            raise S2NodeError(f"--sparse-below must be >= 0 and --sparse-repeat >= 1, not {self.sparse_below:g} "
                              f"and {self.sparse_repeat}")


def stream_repeats(rates: np.ndarray, below: float, repeat: int) -> np.ndarray:
    """How often each stream comes in an epoch: once, or `repeat` times when its mean input rate (events per bin) is
    below `below`. The subjects a camera barely sees (low contrast, dim light: tens of events per bin where most
    give hundreds) are the ones the model misses; repeating them weighs them more without changing any stream."""
    return np.where(np.asarray(rates) < below, repeat, 1)


def epoch_order(rates: np.ndarray, below: float, repeat: int, rng: np.random.Generator) -> np.ndarray:
    """The streams of one epoch in random order, each as often as `stream_repeats` says."""
    counts = stream_repeats(rates, below, repeat)
    return rng.permutation(np.repeat(np.arange(len(counts)), counts))


def load_streams(data: str | Path, split: str, spec: InputSpec, onset_s: float, limit: int | None = None):
    """[(counts int16 [T, I], step labels int64 [T] with IGNORE where not scored, time into segment [T] s)]."""
    out = []
    for st in iter_streams(data, split):
        x, label, index = st.binned(spec)
        starts = np.array([sp["t_start_us"] for sp in st.spans] + [0])[index]
        t_in = ((np.arange(len(x)) + 1) * spec.bin_us - starts) / 1e6
        lab = np.where((label == IDLE) | (t_in < onset_s), IGNORE, label)
        out.append((np.minimum(np.rint(x / spec.scale), 32767).astype(np.int16), lab, t_in.astype(np.float32)))
        if limit and len(out) >= limit:
            break
    if not out:
        raise S2NodeError(f"no {split} streams under {data}")
    return out


def window_mean(prev: torch.Tensor, logits: torch.Tensor, n: int, seen: int) -> torch.Tensor:
    """Streaming readout of every step of a chunk: mean of the last n per-step logits, the earlier ones (`prev`,
    detached, up to n - 1 steps) included; `seen` steps came before this chunk."""
    full = torch.cat([prev, logits], 1)
    c = torch.cat([torch.zeros_like(full[:, :1]), full.cumsum(1)], 1)
    k = prev.shape[1]
    idx = torch.arange(k, full.shape[1])
    lo = (idx + 1 - n).clamp(min=0)
    count = torch.minimum(torch.full_like(idx, n), idx + 1 + (seen - k)).clamp(min=1)
    return (c[:, idx + 1] - c[:, lo]) / count[None, :, None]


@torch.no_grad()
def stream_accuracy(model: GestureModel, streams, spec: InputSpec, window_s: float) -> float:
    """The streaming readout's accuracy over the last two thirds of every segment (as `s2 eval --stream`)."""
    from s2node.eval_gesture import score_segments

    model.eval()
    win = max(1, round(window_s * 1e6 / spec.bin_us))
    n_classes = model.decoder.out_features
    hits = scored = 0
    for st in streams:
        x, _, index = st.binned(spec)
        logits, _, _ = model(torch.from_numpy(x)[None])
        pred = window_mean(logits[:, :0], logits, win, 0)[0].argmax(-1).numpy()
        h, s, _ = score_segments(pred, (np.arange(len(x)) + 1) * spec.bin_us, index, st.spans, n_classes)
        hits, scored = hits + int(h.sum()), scored + int(s.sum())
    return hits / max(1, scored)


def train_streams(data: str | Path, out: str | Path, cfg: GestureTrainConfig, scfg: StreamTrainConfig,
                  spec: InputSpec, progress: bool = True, command: str = "",
                  clips: str | Path | None = None) -> dict[str, Any]:
    """Train on DATA/streams/train and write OUT after every epoch; each epoch is scored on the held-out
    DATA/streams/test (streaming readout) and, given `clips` (a DVSGesture folder), on its isolated test clips
    (pooled over each clip, as `s2 eval`). Returns the history."""
    from s2node.train_gesture import accuracy, batch_windows, load_binned
    from sources.gesture_stream import find_streams, load_stream

    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    train_set = load_streams(data, "train", spec, scfg.onset_s, cfg.max_train)
    test_streams = [load_stream(p) for p in find_streams(data, "test")]
    clip_set = load_binned(clips, "test", spec) if clips else None
    clip_train = load_binned(clips, "train", spec) if clips and scfg.clip_weight > 0 else None
    clip_steps = max(cfg.warmup_steps + 1, round(cfg.window_s * 1e6 / spec.bin_us))
    model = build_model(cfg, spec)
    if cfg.init_from:
        load_weights(model, cfg.init_from, spec)
    masks = prune.prune_masks(model, cfg.prune) if cfg.prune else None  # kept after every step, as train()
    # the window the loss trains is the one to serve: the model file carries it (s2 replay/run/eval's default)
    model.readout["window_s"] = scfg.window_s
    chunk = max(1, round(scfg.chunk_s * 1e6 / spec.bin_us))
    win = max(1, round(scfg.window_s * 1e6 / spec.bin_us))
    pooled_from = scfg.pooled_from_s
    stream_rates = np.array([float(x.mean(0).sum()) for x, _, _ in train_set])  # input events per bin of each stream
    epoch_len = int(stream_repeats(stream_rates, scfg.sparse_below, scfg.sparse_repeat).sum())
    n_batches = (epoch_len + cfg.batch_size - 1) // cfg.batch_size
    chunks_per_batch = max(-(-len(x) // chunk) for x, _, _ in train_set)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, cfg.lr, total_steps=cfg.epochs * n_batches * chunks_per_batch,
                                                pct_start=0.15)
    lossf = nn.CrossEntropyLoss(ignore_index=IGNORE)
    history: list[dict[str, float]] = []
    t_start = time.time()
    from tqdm import tqdm

    for epoch in range(cfg.epochs):
        model.train()
        order = epoch_order(stream_rates, scfg.sparse_below, scfg.sparse_repeat, rng)
        tot = rate_sum = 0.0
        n_chunks = 0
        for bi in range(n_batches):
            items = [train_set[j] for j in order[bi * cfg.batch_size: (bi + 1) * cfg.batch_size]]
            # a random offset per stream (the model meets a stream at any moment), then whole chunks
            xs, ys, ts = [], [], []
            for x, lab, t_in in items:
                s = int(rng.integers(0, max(1, len(x) // 4)))
                x = shift_cells(x[s:], spec, *(int(v) for v in rng.integers(-cfg.shift_cells, cfg.shift_cells + 1, 2)))
                if scfg.zoom_min < 1.0:  # small, far or dim subjects: the ones a fixed set has too few of
                    x = zoom_cells(x, spec, float(rng.uniform(scfg.zoom_min, 1.0)))
                if scfg.thin_min < 1.0:
                    x = thin_counts(x, float(rng.uniform(scfg.thin_min, 1.0)), rng)
                if scfg.noise_max > 0.0:  # a noisier sensor: the same motion at a lower signal-to-noise ratio
                    x = add_background(x, float(rng.uniform(0.0, scfg.noise_max)), rng)
                xs.append(x)
                ys.append(lab[s:])
                ts.append(t_in[s:])
            steps = min(len(x) for x in xs)
            xb = torch.from_numpy(np.stack([x[:steps] for x in xs]).astype(np.float32) * spec.scale)
            yb = torch.from_numpy(np.stack([y[:steps] for y in ys]))
            tb = torch.from_numpy(np.stack([t[:steps] for t in ts]))
            states, tr = None, None
            prev = torch.zeros(len(items), 0, model.decoder.out_features)
            bar = tqdm(range(0, steps, chunk), desc=f"epoch {epoch + 1}/{cfg.epochs} batch {bi + 1}/{n_batches}",
                       disable=not progress, leave=False)
            for c0 in bar:
                x, y, t_in = xb[:, c0: c0 + chunk], yb[:, c0: c0 + chunk], tb[:, c0: c0 + chunk]
                h, states, events = model.rnn(x, states)
                trs = []
                a = float(model.readout["trace_alpha"])
                for i in range(h.shape[1]):  # the trace carries over too
                    tr = (1 - a) * h[:, i] if tr is None else a * tr + (1 - a) * h[:, i]
                    trs.append(tr)
                logits = model.decoder(model.drop(torch.stack(trs, 1)))
                pooled = window_mean(prev, logits, win, c0)
                y_pool = torch.where(t_in >= pooled_from, y, torch.full_like(y, IGNORE))
                c = logits.shape[-1]
                loss = lossf(logits.reshape(-1, c), y.reshape(-1))
                if (y_pool != IGNORE).any():
                    loss = loss + scfg.pooled_weight * lossf(pooled.reshape(-1, c), y_pool.reshape(-1))
                if scfg.onset_weight > 0:  # the switch to a new gesture, scored once more
                    y_onset = torch.where(t_in < scfg.onset_until_s, y_pool, torch.full_like(y, IGNORE))
                    if (y_onset != IGNORE).any():
                        loss = loss + scfg.onset_weight * lossf(pooled.reshape(-1, c), y_onset.reshape(-1))
                if clip_train is not None:  # a fresh state per clip window, every step after the warm-up scored
                    pick = rng.integers(0, len(clip_train), cfg.batch_size)
                    xc, yc, _ = batch_windows([clip_train[j] for j in pick], spec, clip_steps, rng, cfg.shift_cells,
                                       cfg.stretch)
                    lc = model(xc)[0][:, cfg.warmup_steps:]
                    loss = loss + scfg.clip_weight * lossf(lc.reshape(-1, c), yc.repeat_interleave(lc.shape[1]))
                rates = torch.stack([o.mean() for o in events]) if events else torch.zeros(1)
                total = loss + cfg.activity_reg * torch.relu(rates - cfg.activity_target).sum()
                if torch.isfinite(loss) and (y != IGNORE).any():
                    opt.zero_grad()
                    total.backward()
                    nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                    opt.step()
                    if masks is not None:
                        prune.apply_masks(model, masks)
                    tot += float(loss.detach())
                    rate_sum += float(rates.mean().detach())
                    n_chunks += 1
                if sched.last_epoch + 1 < sched.total_steps:
                    sched.step()
                states = model.rnn.detach(states)
                tr = tr.detach()
                prev = torch.cat([prev, logits.detach()], 1)[:, -(win - 1):] if win > 1 else prev
                bar.set_postfix(loss=f"{tot / max(1, n_chunks):.3f}")
        entry = {"epoch": epoch + 1, "loss": tot / max(1, n_chunks), "firing_rate": rate_sum / max(1, n_chunks),
                 "stream_accuracy": stream_accuracy(model, test_streams, spec, scfg.window_s)}
        if clip_set is not None:
            entry["test_accuracy"] = accuracy(model, clip_set, spec)  # isolated clips, as the README reports
        entry["minutes"] = (time.time() - t_start) / 60
        history.append(entry)
        if progress:
            print(f"epoch {epoch + 1}: " + " ".join(f"{k} {v:.4f}" for k, v in entry.items() if k != "epoch"),
                  flush=True)
        save(model, out, cfg, spec, history, command, extra={"continuous": asdict(scfg)})
    return {"history": history, "train_streams": len(train_set)}

