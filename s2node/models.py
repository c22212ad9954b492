"""PyTorch models built on the EGRU layer (and LSTM/GRU baselines), and their model-file round trip.

`LanguageModel`: embedding -> recurrent stack -> decoder. `GestureModel`: binned event counts -> recurrent
stack -> readout (y or trace, pooled last or mean over steps) -> decoder. Both convert to the tensors of
DESIGN.md with `to_tensors()` and back with `build_torch_model(config, tensors)` / `load_torch_model(path)`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from s2node import modelfile
from s2node.errors import S2NodeError
from s2node.torch_egru import EGRU, EGRUState


@dataclass(frozen=True)
class EGRUOptions:
    """Training hyper-parameters of the EGRU layers (the file keeps only what inference needs)."""

    dropconnect: float = 0.0
    zoneout: float = 0.0
    gamma: float = 0.7
    support: float = 1.0
    threshold_init: float = 0.1
    threshold_spread: float = 0.0
    learn_threshold: bool = True


class RecurrentStack(nn.Module):
    """A stack of EGRU, LSTM or GRU layers, batch-first, with dropout between layers."""

    def __init__(
        self, arch: str, sizes: list[int], *, dropout: float = 0.0, egru: EGRUOptions | None = None
    ) -> None:
        super().__init__()
        if arch not in modelfile.ARCHS:
            raise S2NodeError(f"arch must be one of {modelfile.ARCHS}, not {arch!r}")
        self.arch, self.sizes = arch, list(sizes)
        opts = egru or EGRUOptions()
        layers: list[nn.Module] = []
        for i in range(len(sizes) - 1):
            if arch == "egru":
                layers.append(
                    EGRU(
                        sizes[i], sizes[i + 1], dropconnect=opts.dropconnect, zoneout=opts.zoneout,
                        gamma=opts.gamma, support=opts.support, threshold_init=opts.threshold_init,
                        threshold_spread=opts.threshold_spread, learn_threshold=opts.learn_threshold,
                    )
                )
            else:
                cls = nn.LSTM if arch == "lstm" else nn.GRU
                layers.append(cls(sizes[i], sizes[i + 1], batch_first=True))
        self.layers = nn.ModuleList(layers)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, states: list | None = None) -> tuple[Tensor, list, list[Tensor]]:
        """x [B, T, I] -> (output [B, T, H_last], final states per layer, event masks o per EGRU layer)."""
        states = states or [None] * len(self.layers)
        new_states, events = [], []
        for i, layer in enumerate(self.layers):
            if i:
                x = self.dropout(x)
            if self.arch == "egru":
                out = layer(x, states[i])
                x, st = out.y, out.state
                events.append(out.o)
            else:
                x, st = layer(x, states[i])
            new_states.append(st)
        return x, new_states, events

    @staticmethod
    def detach(states: list) -> list:
        def d(s):
            if isinstance(s, EGRUState):
                return EGRUState(s.y.detach(), s.c.detach())
            if isinstance(s, tuple):
                return tuple(t.detach() for t in s)
            return None if s is None else s.detach()

        return [d(s) for s in states]

    def layer_configs(self) -> list[dict[str, Any]]:
        out = []
        for i, layer in enumerate(self.layers):
            cfg: dict[str, Any] = {"input_size": self.sizes[i], "hidden_size": self.sizes[i + 1]}
            if self.arch == "egru":
                cfg["zoneout"] = layer.zoneout  # inference needs it: eval mixes p·c_prev into ĉ
            out.append(cfg)
        return out

    def to_tensors(self) -> dict[str, np.ndarray]:
        t: dict[str, np.ndarray] = {}
        for i, layer in enumerate(self.layers):
            if self.arch == "egru":
                names = {
                    "weight_ih": layer.weight_ih, "weight_hh": layer.weight_hh,
                    "bias_ih": layer.bias_ih, "bias_hh": layer.bias_hh,
                    "threshold": layer.effective_threshold(),
                }
            else:
                names = {k: getattr(layer, f"{k}_l0") for k in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")}
            for k, v in names.items():
                t[f"rnn.{i}.{k}"] = v.detach().cpu().float().numpy()
        return t

    def load_tensors(self, tensors: dict[str, np.ndarray]) -> None:
        with torch.no_grad():
            for i, layer in enumerate(self.layers):
                for k in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                    dst = getattr(layer, k if self.arch == "egru" else f"{k}_l0")
                    dst.copy_(torch.from_numpy(tensors[f"rnn.{i}.{k}"]))
                if self.arch == "egru":
                    layer.threshold.copy_(torch.from_numpy(tensors[f"rnn.{i}.threshold"]))


class LanguageModel(nn.Module):
    """Embedding -> recurrent stack -> decoder; decoder tying optional (stored untied in the file)."""

    def __init__(
        self, arch: str, vocab_size: int, emb_size: int, hidden: list[int], *,
        dropout: float = 0.0, tie: bool = False, egru: EGRUOptions | None = None,
    ) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, emb_size)
        self.rnn = RecurrentStack(arch, [emb_size, *hidden], dropout=dropout, egru=egru)
        self.drop = nn.Dropout(dropout)
        self.decoder = nn.Linear(hidden[-1], vocab_size)
        nn.init.uniform_(self.embedding.weight, -0.1, 0.1)
        nn.init.uniform_(self.decoder.weight, -0.1, 0.1)
        nn.init.zeros_(self.decoder.bias)
        if tie:
            if emb_size != hidden[-1]:
                raise S2NodeError(f"tying needs the embedding size ({emb_size}) to equal the last hidden size "
                                  f"({hidden[-1]})")
            self.decoder.weight = self.embedding.weight

    def forward(self, tokens: Tensor, states: list | None = None):
        """tokens [B, T] -> (logits [B, T, V], states, event masks)."""
        x = self.drop(self.embedding(tokens))
        h, states, events = self.rnn(x, states)
        return self.decoder(self.drop(h)), states, events

    def to_tensors(self) -> dict[str, np.ndarray]:
        t = self.rnn.to_tensors()
        t["embedding.weight"] = self.embedding.weight.detach().cpu().float().numpy().copy()
        t["decoder.weight"] = self.decoder.weight.detach().cpu().float().numpy().copy()
        t["decoder.bias"] = self.decoder.bias.detach().cpu().float().numpy()
        return t


class GestureModel(nn.Module):
    """Binned event counts [B, T, I] -> recurrent stack -> readout -> class logits per step."""

    def __init__(
        self, arch: str, input_size: int, hidden: list[int], n_classes: int, *,
        dropout: float = 0.0, readout: dict[str, Any] | None = None, egru: EGRUOptions | None = None,
    ) -> None:
        super().__init__()
        self.rnn = RecurrentStack(arch, [input_size, *hidden], dropout=dropout, egru=egru)
        self.drop = nn.Dropout(dropout)
        self.decoder = nn.Linear(hidden[-1], n_classes)
        self.readout = dict(readout or {"source": "trace", "trace_alpha": 0.9, "pool": "mean"})

    def readout_sequence(self, h: Tensor) -> Tensor:
        """Apply the readout's source: y itself or its trace tr_t = α·tr_{t-1} + (1 − α)·y_t."""
        if self.readout["source"] == "y":
            return h
        a = float(self.readout["trace_alpha"])
        tr, out = torch.zeros_like(h[:, 0]), []
        for i in range(h.shape[1]):
            tr = a * tr + (1.0 - a) * h[:, i]
            out.append(tr)
        return torch.stack(out, 1)

    def forward(self, x: Tensor, states: list | None = None):
        """x [B, T, I] -> (per-step logits [B, T, C], states, event masks)."""
        h, states, events = self.rnn(x, states)
        return self.decoder(self.drop(self.readout_sequence(h))), states, events

    @staticmethod
    def pool(step_logits: Tensor, pool: str) -> Tensor:
        """Per-step logits [B, T, C] -> sequence logits [B, C] (mean over steps or the last one)."""
        return step_logits.mean(1) if pool == "mean" else step_logits[:, -1]

    def to_tensors(self) -> dict[str, np.ndarray]:
        t = self.rnn.to_tensors()
        t["decoder.weight"] = self.decoder.weight.detach().cpu().float().numpy()
        t["decoder.bias"] = self.decoder.bias.detach().cpu().float().numpy()
        return t


def load_torch_model(path: str | Path) -> tuple[nn.Module, dict[str, Any]]:
    """Model file -> (PyTorch model in eval mode, config). Shapes and names are checked by modelfile.load."""
    config, tensors = modelfile.load(path)
    return build_torch_model(config, tensors), config


def build_torch_model(config: dict[str, Any], tensors: dict[str, np.ndarray]) -> nn.Module:
    """A loaded model file (config, tensors as modelfile.load returns them) -> PyTorch model in eval mode."""
    sizes = [config["layers"][0]["input_size"]] + [layer["hidden_size"] for layer in config["layers"]]
    zoneout = float(config["layers"][0].get("zoneout", 0.0))
    opts = EGRUOptions(zoneout=zoneout)
    model: nn.Module
    if config["task"] == "lm":
        model = LanguageModel(config["arch"], len(config["vocab"]), sizes[0], sizes[1:], egru=opts)
        with torch.no_grad():
            model.embedding.weight.copy_(torch.from_numpy(tensors["embedding.weight"]))
    else:
        model = GestureModel(
            config["arch"], sizes[0], sizes[1:], len(config["classes"]),
            readout=config["readout"], egru=opts,
        )
    if config["arch"] == "egru":
        for layer, cfg in zip(model.rnn.layers, config["layers"], strict=True):
            layer.zoneout = float(cfg.get("zoneout", 0.0))
    model.rnn.load_tensors(tensors)
    with torch.no_grad():
        model.decoder.weight.copy_(torch.from_numpy(tensors["decoder.weight"]))
        model.decoder.bias.copy_(torch.from_numpy(tensors["decoder.bias"]))
    return model.eval()
