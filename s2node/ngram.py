"""A count-based baseline for the language models: an interpolated n-gram over the model's own vocabulary.

Two smoothings, both interpolating every order with the one below it (h_k: the last k tokens, V: vocabulary):

    Kneser-Ney   P_k(w|h_k) = max(a(h_k w) - D_k, 0) / a(h_k) + D_k·T(h_k) / a(h_k) · P_{k-1}(w|h_{k-1})
    Witten-Bell  P_k(w|h_k) = (a(h_k w) + T(h_k) · P_{k-1}(w|h_{k-1})) / (a(h_k) + T(h_k))
    P_{-1}(w) = 1/V;  P_k = P_{k-1} where a(h_k) = 0

a(·) counts in the training text: raw counts at the highest order, and for Kneser-Ney the continuation counts
(distinct tokens seen before) at the lower ones; T(h) is the number of distinct tokens seen after h and
D_k = n1 / (n1 + 2·n2) from the numbers of n-grams seen once and twice (Chen & Goodman 1998). Counts are
rebuilt from the training split on every call (seconds), so nothing is stored: no file format, no pickle.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from s2node.errors import S2NodeError

SMOOTHINGS = ("kn", "wb")


@dataclass(frozen=True)
class NgramResult:
    order: int
    smoothing: str
    bits_per_token: float
    tokens: int  # scored tokens of the evaluation text
    train_tokens: int


def _gram_ids(texts: list[np.ndarray], order: int, vocab_size: int) -> list[list[np.ndarray]]:
    """ids[i][n][t]: one id shared by all texts for the n-gram of text i ending at t (n = 1..order; -1 where
    t < n-1). An n-gram's id is its (n-1)-gram prefix's id combined with its last token, so ids stay small."""
    out = [[np.zeros(0, np.int64), x.copy()] for x in texts]
    for n in range(2, order + 1):
        keys = [np.concatenate([np.full(n - 1, -1), g[n - 1][n - 2:-1] * vocab_size + x[n - 1:]]) if len(x) >= n
                else np.full(len(x), -1) for g, x in zip(out, texts, strict=True)]
        valid = np.concatenate([k[k >= 0] for k in keys])
        uniq = np.unique(valid)
        for g, k in zip(out, keys, strict=True):
            g.append(np.where(k >= 0, np.searchsorted(uniq, k), -1))
    return out


def _discount(counts: np.ndarray) -> float:
    n1, n2 = int((counts == 1).sum()), int((counts == 2).sum())
    return n1 / (n1 + 2 * n2) if n1 else 0.5


def ngram_probs(train: np.ndarray, test: np.ndarray, vocab_size: int, order: int, smoothing: str = "kn"
                ) -> np.ndarray:
    """P(test[t] | up to order-1 tokens before it) for every t; the first positions use the shorter contexts
    they have."""
    if order < 1:
        raise S2NodeError(f"n-gram order must be 1 or more, not {order}")
    if smoothing not in SMOOTHINGS:
        raise S2NodeError(f"n-gram smoothing {smoothing!r}: use one of {', '.join(SMOOTHINGS)}")
    train, test = np.asarray(train, np.int64), np.asarray(test, np.int64)
    (gtr, gte) = _gram_ids([train, test], order, vocab_size)
    p = np.full(len(test), 1.0 / vocab_size)
    for k in range(order):  # context length k: (h, w) is the (k+1)-gram ending at t, h the k-gram before it
        if len(train) <= k:
            break
        hw_tr = gtr[k + 1][k:]
        h_tr = gtr[k][k - 1:-1] if k else np.zeros(len(hw_tr), np.int64)
        n_hw = int(max(hw_tr.max(initial=-1), gte[k + 1].max(initial=-1))) + 1
        n_h = int(max(h_tr.max(initial=-1), gte[k].max(initial=-1) if k else 0)) + 1
        if smoothing == "kn" and k < order - 1 and len(train) > k + 1:
            # continuation count: distinct tokens u seen before the (k+1)-gram
            pairs = np.unique(gtr[k + 1][k + 1:] * vocab_size + train[: len(train) - k - 1])
            a_hw = np.bincount(pairs // vocab_size, minlength=n_hw)
        else:
            a_hw = np.bincount(hw_tr, minlength=n_hw)
        hw_to_h = np.full(n_hw, -1, np.int64)
        hw_to_h[hw_tr] = h_tr
        seen = a_hw > 0
        a_h = np.bincount(hw_to_h[seen], weights=a_hw[seen], minlength=n_h)
        t_h = np.bincount(hw_to_h[seen], minlength=n_h)
        hw_te = gte[k + 1][k:]
        h_te = gte[k][k - 1:-1] if k else np.zeros(len(hw_te), np.int64)
        a, ah, th, lower = a_hw[hw_te], a_h[h_te], t_h[h_te], p[k:]
        if smoothing == "kn":
            d = _discount(a_hw[seen])
            mix = (np.maximum(a - d, 0) + d * th * lower) / np.maximum(ah, 1)
        else:
            mix = (a + th * lower) / np.maximum(ah + th, 1)
        p[k:] = np.where(ah > 0, mix, lower)
    return p


def evaluate_ngram(train: np.ndarray, test: np.ndarray, vocab_size: int, order: int, smoothing: str = "kn"
                   ) -> NgramResult:
    """Bits per token of `test` (its first token is context only, as the models score it)."""
    if len(test) < 2:
        raise S2NodeError("the text has fewer than 2 tokens: nothing to predict")
    p = ngram_probs(train, test, vocab_size, order, smoothing)[1:]
    bits = float(-np.log2(np.maximum(p, 1e-300)).mean())
    return NgramResult(order, smoothing, bits, len(p), len(train))


def bits_to_metric(bits_per_token: float, level: str) -> float:
    """Bits per character for character models, perplexity for word models (as `s2 eval` reports them)."""
    return bits_per_token if level == "char" else math.pow(2.0, min(bits_per_token, 1000.0))
