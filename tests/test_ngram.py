"""The count-based baseline: interpolated Witten-Bell, checked by hand and as a distribution."""

from __future__ import annotations

import math

import numpy as np
import pytest

from s2node.errors import S2NodeError
from s2node.ngram import evaluate_ngram, ngram_probs


def test_witten_bell_matches_a_hand_computed_case():
    """train 0 1 0 1 0 2: P(1 | 0) = (c(0,1) + T(0)·P(1)) / (c(0) + T(0)) = (2 + 2·(3/9)) / 5 = 8/15."""
    train = np.array([0, 1, 0, 1, 0, 2])
    p = ngram_probs(train, np.array([0, 1]), vocab_size=3, order=2, smoothing="wb")
    assert p[0] == pytest.approx((3 + 3 / 3) / 9)  # first token: unigram only, (c(0) + T·1/V) / (N + T)
    assert p[1] == pytest.approx(8 / 15)
    r = evaluate_ngram(train, np.array([0, 1]), 3, 2, "wb")
    assert r.bits_per_token == pytest.approx(-math.log2(8 / 15)) and r.tokens == 1


def test_kneser_ney_matches_a_hand_computed_case():
    """train 0 1 0 1 0 2, bigram: P(1|0) = (2 - D)/3 + D·2/3 · P_cont(1), with continuation counts below."""
    train = np.array([0, 1, 0, 1, 0, 2])
    # bigram counts (0,1):2 (1,0):2 (0,2):1 -> n1 = 1, n2 = 2, D = 1/5; continuation counts: N1+(•0) = 1,
    # N1+(•1) = 1, N1+(•2) = 1 -> unigram level: n1 = 3, n2 = 0, D0 = 1, P_cont(1) = (1 - 1)/3 + 1·3/3·1/3 = 1/3
    d = 1 / 5
    want = (2 - d) / 3 + d * 2 / 3 * (1 / 3)
    assert ngram_probs(train, np.array([0, 1]), 3, 2, "kn")[1] == pytest.approx(want)


@pytest.mark.parametrize("smoothing", ["kn", "wb"])
@pytest.mark.parametrize("order", [1, 2, 3, 5])
def test_probabilities_over_the_vocabulary_sum_to_one(order, smoothing):
    """For any context, seen or not, the probabilities of all next tokens sum to 1."""
    rng = np.random.default_rng(order)
    v = 7
    train = rng.integers(0, v - 1, 400)  # token v-1 never occurs in training
    for ctx in (train[:4], np.array([6, 6, 6, 6]), rng.integers(0, v, 4)):
        total = sum(ngram_probs(train, np.append(ctx, w), v, order, smoothing)[-1] for w in range(v))
        assert total == pytest.approx(1.0)


def test_more_context_helps_on_text_with_structure():
    """On text with long-range structure a 4-gram beats a unigram, and an unseen token still has probability."""
    words = np.tile(np.array([0, 1, 2, 3, 4, 5, 6, 7]), 200)
    uni, four = evaluate_ngram(words, words[:80], 9, 1), evaluate_ngram(words, words[:80], 9, 4)
    assert four.bits_per_token < 0.1 < uni.bits_per_token
    assert ngram_probs(words, np.array([0, 8]), 9, 4)[1] > 0


def test_order_zero_is_refused():
    """An order below 1 is a one-line S2NodeError."""
    with pytest.raises(S2NodeError, match="order"):
        ngram_probs(np.arange(5), np.arange(3), 5, 0)


def test_s2_eval_prints_the_baseline_beside_the_model(tmp_path):
    """`s2 eval MODEL --baseline ngram:3` scores a 3-gram from the training split on the same tokens, beside
    the model; training on the test text itself makes the baseline near-perfect."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    from sources.corpora import CORPORA

    folder, pattern = CORPORA["shakespeare"]
    text = "to be, or not to be, that is the question.\n" * 40
    for split in ("train", "test"):
        p = tmp_path / folder / pattern.format(split=split)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    model = Path(__file__).resolve().parent.parent / "models" / "shakespeare-egru"
    r = subprocess.run([sys.executable, "-m", "stream.cli", "eval", str(model), "--data-dir", str(tmp_path),
                        "--baseline", "ngram:3", "--json"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["baseline"] == "3-gram Kneser-Ney" and 0 < out["baseline_value"] < 0.5 < out["value"]
    bad = subprocess.run([sys.executable, "-m", "stream.cli", "eval", str(model), "--baseline", "bigram"],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 1 and len(bad.stderr.strip().splitlines()) == 1
