"""Evaluation of language models: perplexity or bits per character, plus NeuroBench-style activity counters.

The text is read as ONE stream (batch 1, state carried across windows), as a streaming node would see it;
synops count non-zero inputs x non-zero weights of every recurrent layer (s2node.metrics).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from s2node.errors import S2NodeError
from s2node.metrics import ActivityCounter, count_params
from s2node.models import LanguageModel, build_torch_model
from s2node.ngram import bits_to_metric, evaluate_ngram
from sources import corpora
from sources.text_data import encode, read_text

WINDOW = 100  # steps per forward call; the state is carried, so this only trades memory for speed


def _layer_outputs(model: LanguageModel, x: torch.Tensor, states: list) -> tuple[list[tuple], list]:
    """Run the stack layer by layer: per layer (input [T, I], outputs fed back [T, H], outputs [T, H])."""
    per_layer, new_states = [], []
    for i, layer in enumerate(model.rnn.layers):
        st = states[i]
        if model.rnn.arch == "egru":
            y0 = st.y if st is not None else torch.zeros(1, layer.hidden_size)
            out = layer(x, st)
            y, st = out.y, out.state
        else:
            y0 = st[0][-1] if isinstance(st, tuple) else (st[-1] if st is not None else None)
            if y0 is None:
                y0 = torch.zeros(1, layer.hidden_size)
            y, st = layer(x, st)
        prev = torch.cat([y0[:, None, :], y[:, :-1]], dim=1)
        per_layer.append((x[0].numpy(), prev[0].numpy(), y[0].numpy()))
        new_states.append(st)
        x = y
    return per_layer, new_states


@torch.no_grad()
def evaluate_ids(model: LanguageModel, tensors: dict[str, np.ndarray], ids: np.ndarray,
                 max_steps: int | None = None) -> dict[str, Any]:
    """Mean cross-entropy and activity counters over one token stream (predicting ids[1:] from ids[:-1])."""
    model.eval()
    n_layers = len(model.rnn.layers)
    counter = ActivityCounter(tensors, n_layers)
    limit = len(ids) - 1 if max_steps is None else min(len(ids) - 1, max_steps)
    if limit < 1:
        raise S2NodeError("the text has fewer than 2 tokens: nothing to predict")
    states: list = [None] * n_layers
    total = 0.0
    for i in range(0, limit, WINDOW):
        t = min(WINDOW, limit - i)
        inp = torch.from_numpy(ids[i : i + t])[None]
        tgt = torch.from_numpy(ids[i + 1 : i + 1 + t])
        per_layer, states = _layer_outputs(model, model.embedding(inp), states)
        for li, (x, prev, y) in enumerate(per_layer):
            counter.add(li, x, prev, y)
        logits = model.decoder(torch.from_numpy(per_layer[-1][2]))
        total += nn.functional.cross_entropy(logits, tgt, reduction="sum").item()
    return {"loss": total / limit, "counter": counter, "steps": limit}


def lm_text(config: dict[str, Any], *, text_path: str | Path | None = None, split: str = "test",
            data_dir: str | Path | None = None) -> tuple[str, str]:
    """(name, text) to run a language model on: the text file, else one split of the corpus the model was trained
    on (PTB for word level, Shakespeare for character level when the config does not say)."""
    if text_path is not None:
        return str(text_path), read_text(text_path)
    corpus = config.get("corpus") or (config.get("training") or {}).get("corpus")
    corpus = corpus or ("ptb" if config["level"] == "word" else "shakespeare")
    return f"{corpus}:{split}", read_text(corpora.corpus_path(corpus, split, data_dir))


def evaluate_lm(config: dict[str, Any], tensors: dict[str, np.ndarray], *, text_path: str | Path | None = None,
                split: str = "test", max_steps: int | None = None,
                data_dir: str | Path | None = None) -> dict[str, Any]:
    """Perplexity (word) or bits per character (char) of a loaded model file on a text file or a corpus split,
    plus activity counters. Tokens outside the vocabulary map to unk; without unk they are an S2NodeError."""
    source, text = lm_text(config, text_path=text_path, split=split, data_dir=data_dir)
    ids, n_outside = encode(text, config)
    if n_outside and config.get("unk") is None:
        raise S2NodeError(f"{source}: {n_outside} tokens are outside the vocabulary and the model has no unk")
    r = evaluate_ids(build_torch_model(config, tensors), tensors, ids, max_steps)
    word = config["level"] == "word"
    value = math.exp(min(r["loss"], 700.0)) if word else r["loss"] / math.log(2)
    summary = r["counter"].summary()
    return {
        "arch": config["arch"], "level": config["level"], "data": source,
        "metric": "perplexity" if word else "bpc", "value": value,
        "activity_sparsity": summary["activity_sparsity"], "synops_per_step": summary["synops_per_step"],
        "dense_ops_per_step": summary["dense_ops_per_step"], "params": count_params(tensors),
        "steps": r["steps"], "unk_mapped": n_outside,
    }


@dataclass(frozen=True)
class Baseline:
    """`ngram[:N[:kn|wb]]`: an interpolated N-gram (default 5, Kneser-Ney) from the model's training split."""

    order: int = 5
    smoothing: str = "kn"

    @classmethod
    def parse(cls, spec: str) -> Baseline:
        kind, *rest = spec.split(":")
        if kind != "ngram" or len(rest) > 2:
            raise S2NodeError(f"baseline {spec!r}: use ngram, ngram:N or ngram:N:kn|wb")
        try:
            order = int(rest[0]) if rest else cls.order
        except ValueError as e:
            raise S2NodeError(f"baseline {spec!r}: the order must be a whole number") from e
        return cls(order, rest[1] if len(rest) > 1 else cls.smoothing)

    @property
    def name(self) -> str:
        return f"{self.order}-gram {'Kneser-Ney' if self.smoothing == 'kn' else 'Witten-Bell'}"


def ngram_baseline(config: dict[str, Any], baseline: Baseline, *, text_path: str | Path | None = None,
                   split: str = "test", max_steps: int | None = None,
                   data_dir: str | Path | None = None) -> dict[str, Any]:
    """The baseline's figure on the same text and tokens as evaluate_lm, counted from the model's training split
    in the model's own vocabulary (s2node.ngram)."""
    source, text = lm_text(config, text_path=text_path, split=split, data_dir=data_dir)
    _, train_text = lm_text(config, split="train", data_dir=data_dir)
    ids, _ = encode(text, config)
    if max_steps is not None:
        ids = ids[: max_steps + 1]
    train, _ = encode(train_text, config)
    r = evaluate_ngram(train, ids, len(config["vocab"]), baseline.order, baseline.smoothing)
    return {"baseline": baseline.name, "data": source, "value": bits_to_metric(r.bits_per_token, config["level"]),
            "train_tokens": r.train_tokens, "steps": r.tokens}
