"""Continuation decoders (s2node.decode) through real models, their wiring into the text pipeline, payload and pane."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from node_models import CHARS, make_lm
from tui_helpers import connected, publish, screen_text, wait_for

from s2node.decode import (
    DecodeError,
    DecodeSpec,
    adjust,
    beam,
    continuation,
    greedy,
    nucleus,
    repeats,
    sample,
)
from s2node.step import StepModel, load_step_model
from stream.local import local_demo
from stream.schema import PayloadError, TextPrediction, decode
from stream.text_pipeline import TextLM
from tui.app import S2App
from tui.widgets import TextPane

ROOT = Path(__file__).resolve().parents[1]
SHAKESPEARE = ROOT / "models" / "shakespeare-egru"
PTB = ROOT / "models" / "ptb-egru"


@pytest.fixture(scope="module", params=["node", "torch"])
def tiny(request, tmp_path_factory) -> StepModel:
    """A small random character LM on both backends."""
    return load_step_model(make_lm(tmp_path_factory.mktemp("lm") / "lm", hidden=(48, 48)), request.param)


def primed(model: StepModel, text: str = "to be or not to b") -> np.ndarray:
    """Reset the model, read `text`, return its next-token distribution."""
    model.reset()
    idx = {c: i for i, c in enumerate(model.config["vocab"])}
    probs = None
    for ch in text:
        probs = model.step(idx[ch]).probs
    assert probs is not None
    return probs


def chain_logp(model: StepModel, probs: np.ndarray, ids: list[int]) -> float:
    """Sum of the model's log-probabilities of `ids` from its current state (stepping it)."""
    total = 0.0
    for j, i in enumerate(ids):
        total += float(np.log(probs[i]))
        if j + 1 < len(ids):
            probs = model.step(i).probs
    return total


def after(model: StepModel, probs: np.ndarray, ids: list[int]) -> list[np.ndarray]:
    """The distributions the model gives stepping through `ids` (to compare states by their behaviour)."""
    out = []
    for i in ids:
        out.append(model.step(i).probs)
    return out


def test_greedy_is_the_argmax_chain(tiny):
    """Greedy writes argmax, then steps with it, then argmax again: the chain computed by hand."""
    p = primed(tiny)
    got = greedy(tiny, p, 15)
    want, q = [], p
    for _ in range(15):
        want.append(int(np.argmax(q)))
        q = tiny.step(want[-1]).probs
    assert got == want


def test_beam_of_width_one_is_greedy(tiny):
    """Beam search with one hypothesis is greedy search, token for token."""
    p = primed(tiny)
    assert beam(tiny, p, 15, spec=DecodeSpec("beam", beam_width=1)) == greedy(tiny, p, 15)


def test_beam_wide_enough_is_exhaustive(tiny):
    """With the width of the vocabulary, two-token beam search finds the likeliest pair of all V^2."""
    p = primed(tiny)
    v = len(CHARS)
    got = beam(tiny, p, 2, spec=DecodeSpec("beam", beam_width=v))
    saved = tiny.get_state()
    best, best_lp = None, -np.inf
    for a in range(v):
        tiny.set_state(saved)
        lp = np.log(p[a]) + np.log(tiny.step(a).probs)
        b = int(np.argmax(lp))
        if lp[b] > best_lp:
            best, best_lp = [a, b], float(lp[b])
    tiny.set_state(saved)
    assert got == best


def test_beam_finds_at_least_greedys_likelihood(tiny):
    """On these models beam search (width 4) writes a continuation at least as likely as greedy's."""
    p = primed(tiny)
    saved = tiny.get_state()
    g, b = greedy(tiny, p, 12), beam(tiny, p, 12, spec=DecodeSpec("beam", beam_width=4))
    lp_g = chain_logp(tiny, p, g)
    tiny.set_state(saved)
    lp_b = chain_logp(tiny, p, b)
    assert lp_b >= lp_g - 1e-9


def test_beam_stop_tokens_and_length_normalisation(tiny):
    """A stop token ends a hypothesis; without normalisation the likeliest stop-ended first token wins (no longer
    hypothesis can beat it), with mean-per-token scoring a longer one may, and it scores at least as well."""
    p = primed(tiny)
    first = int(np.argmax(p))
    assert beam(tiny, p, 10, spec=DecodeSpec("beam", beam_width=3), stop=[first]) == [first]
    out = beam(tiny, p, 10, spec=DecodeSpec("beam", beam_width=3, length_alpha=1.0), stop=[first])
    assert 1 <= len(out) <= 10 and (out[-1] == first or len(out) == 10)
    assert first not in out[:-1]  # a stop token always ends its hypothesis
    assert chain_logp(tiny, p, out) / len(out) >= np.log(p[first]) - 1e-9


@pytest.mark.parametrize("method", ["greedy", "sample", "beam"])
def test_decoding_leaves_the_models_state_as_it_was(tiny, method):
    """After any decoder the model behaves as if it had never decoded: the same next distributions, bit for bit."""
    p = primed(tiny)
    saved = tiny.get_state()
    probe = [3, 5, 8, 1]
    want = after(tiny, p, probe)
    tiny.set_state(saved)
    continuation(tiny, p, 12, DecodeSpec(method), np.random.default_rng(1))
    got = after(tiny, p, probe)
    assert all(np.array_equal(a, b) for a, b in zip(got, want, strict=True))


def test_sampling_with_a_seed_is_reproducible(tiny):
    """The same generator seed writes the same continuation; different seeds write different ones."""
    p = primed(tiny)
    spec = DecodeSpec("sample", temperature=1.0, top_p=1.0)
    a = sample(tiny, p, 20, np.random.default_rng(7), spec=spec)
    assert sample(tiny, p, 20, np.random.default_rng(7), spec=spec) == a
    others = {tuple(sample(tiny, p, 20, np.random.default_rng(s), spec=spec)) for s in range(8, 12)}
    assert len(others | {tuple(a)}) > 1


def test_sampling_stays_inside_the_nucleus(tiny):
    """Every sampled token lies in the smallest set of likeliest tokens whose mass reaches top-p (checked step by
    step on the model's own distributions)."""
    spec = DecodeSpec("sample", temperature=1.0, top_p=0.5)
    p = primed(tiny)
    saved = tiny.get_state()
    for seed in range(5):
        tiny.set_state(saved)
        toks = sample(tiny, p, 15, np.random.default_rng(seed), spec=spec)
        q = p
        for t in toks:
            order = np.argsort(-q, kind="stable")
            k = int(np.searchsorted(np.cumsum(q[order]), 0.5)) + 1
            assert t in set(order[:k].tolist())
            q = tiny.step(t).probs


def test_nucleus_cuts_temperature_and_top_k():
    """nucleus(): the top-p cut keeps the smallest prefix reaching p; top-k keeps k; temperature is p^(1/T)."""
    p = np.array([0.05, 0.5, 0.15, 0.3])
    lp = np.log(p)
    assert np.flatnonzero(nucleus(lp, 1.0, 0.7)).tolist() == [1, 3]
    assert np.flatnonzero(nucleus(lp, 1.0, 0.81)).tolist() == [1, 2, 3]
    assert np.flatnonzero(nucleus(lp, 1.0, 1.0, top_k=1)).tolist() == [1]
    q = nucleus(lp, 0.5, 1.0)
    assert np.allclose(q, p**2 / (p**2).sum())


def test_no_repeat_ngram_rule_holds_for_every_decoder(tiny):
    """With no-repeat n, no n-gram of history + continuation that ends in the continuation occurs twice."""
    p = primed(tiny)
    hist = [1, 2, 3, 1, 2]
    for method in ("greedy", "sample", "beam"):
        spec = DecodeSpec(method, no_repeat_ngram=2, temperature=1.0, top_p=1.0)
        out = continuation(tiny, p, 25, spec, np.random.default_rng(0), history=hist)
        seq = hist + out
        grams = [tuple(seq[i:i + 2]) for i in range(len(seq) - 1)]
        new = grams[len(hist) - 1:]  # the n-grams that end in the continuation
        assert len(set(new)) == len(new) and not set(new) & set(grams[:len(hist) - 1]), method


def test_repeats_and_the_repetition_penalty():
    """repeats() lists the tokens completing an n-gram seen before; the penalty lowers only tokens already seen."""
    assert repeats([1, 2, 3, 1, 2], 3) == {3}
    assert repeats([1, 2, 3, 1, 2], 1) == {1, 2, 3}
    assert repeats([1, 2], 3) == set() and repeats([1, 2], 0) == set()
    p = np.full(4, 0.25)
    out = adjust(p, [0, 0, 2], DecodeSpec(repetition_penalty=2.0), banned=[3])
    assert np.allclose(out[[0, 2]], 2 * np.log(0.25)) and out[1] == np.log(0.25) and out[3] == -np.inf
    # rules that would leave nothing give way to the model
    assert np.isfinite(adjust(p, [], DecodeSpec(), banned=[0, 1, 2, 3])).all()


def test_banned_tokens_are_never_written(tiny):
    """A banned token (the text pipeline bans <unk>) never appears, whatever the decoder."""
    p = primed(tiny)
    top = int(np.argmax(p))
    for method in ("greedy", "sample", "beam"):
        out = continuation(tiny, p, 20, DecodeSpec(method, top_p=1.0, temperature=2.0), np.random.default_rng(3),
                           banned=[top])
        assert top not in out and len(out) == 20


def test_spec_parse_and_describe():
    """--continuation strings parse into specs, which describe themselves in one line; bad ones are one line."""
    assert DecodeSpec.parse("sample:t=0.8,p=0.9").describe() == "nucleus p=0.9 T=0.8"
    assert DecodeSpec.parse("greedy").describe() == "greedy"
    assert DecodeSpec.parse("beam:w=4,ngram=3").describe() == "beam w=4 no-repeat 3"
    assert DecodeSpec.parse("sample:t=1,p=1,k=40,rep=1.2").describe() == "sample top-k 40 T=1 rep=1.2"
    assert DecodeSpec.parse("beam: w=2 , lp=0.6").beam_width == 2
    for bad, why in [("top", "method"), ("sample:t=0", "temperature"), ("sample:p=1.5", "top-p"),
                     ("beam:w=0", "beam width"), ("sample:x=1", "KEY=VALUE"), ("sample:t=hot", "not a number"),
                     ("beam:w=2.5", "not a number"), ("sample:t=nan", "temperature")]:
        with pytest.raises(DecodeError, match=why) as e:
            DecodeSpec.parse(bad)
        assert "\n" not in str(e.value)


def test_shipped_models_greedy_beam_and_state():
    """On the shipped character and word models: beam width 1 is greedy, decoding keeps the state, and the
    default decoder through TextLM writes a different continuation than greedy's loop."""
    for path in (SHAKESPEARE, PTB):
        if not path.with_suffix(".json").is_file():
            continue
        m = load_step_model(path, "node")
        lm = TextLM(m, decoder=DecodeSpec("greedy"))
        text = "I am the second son of old Sir Rowland, that bring th" if "shakes" in path.name else \
            "the company said it expects to report a loss for the third quarter "
        lm.feed(text)
        p = lm.next_probs
        assert p is not None
        g = greedy(m, p, 20)
        assert beam(m, p, 20, spec=DecodeSpec("beam", beam_width=1)) == g
        before = lm.predict()
        assert lm.predict() == before  # a prediction never changes the conversation
        assert before.decoder == "greedy"
        lm.decoder = DecodeSpec()
        nuc = lm.predict()
        assert nuc.decoder == "nucleus p=0.9 T=0.8" and lm.predict().continuation == nuc.continuation


def test_text_lm_seeds_by_the_text_and_sends_the_decoder(tmp_path):
    """TextLM: the same text gives the same sampled answer in a fresh conversation; the payload names the
    decoder and round-trips through the schema; <unk> is never written."""
    m = load_step_model(make_lm(tmp_path / "lm", hidden=(32,)), "node")
    spec = DecodeSpec("sample", temperature=1.5, top_p=1.0)
    a = TextLM(m, decoder=spec)
    first = a.feed("hello there")
    a.reset()
    again = a.feed("hello there")
    assert again.continuation == first.continuation and first.decoder == "sample T=1.5"
    a.reset()
    others = {a.feed(f"hello there {i}").continuation for i in range(4)}
    assert len(others) > 1
    back = decode("pred/text", first.to_json())
    assert isinstance(back, TextPrediction) and back.decoder == "sample T=1.5"
    with pytest.raises(PayloadError, match="decoder"):
        decode("pred/text", first.to_json().replace(b'"decoder":"sample T=1.5"', b'"decoder":7'))
    old = first.to_json().replace(b',"decoder":"sample T=1.5"', b"")
    assert decode("pred/text", old).decoder is None  # a node that does not say is still understood


def test_run_refuses_a_bad_continuation_in_one_line():
    """`s2 run --continuation` with a bad spec is a usage error naming the setting, no traceback."""
    r = subprocess.run([sys.executable, "-m", "stream.cli", "run", "--source", "text", "--continuation", "beam:w=0"],
                       capture_output=True, text=True, cwd=ROOT, timeout=60, stdin=subprocess.DEVNULL)
    assert r.returncode == 2 and "beam width must be 1 or more" in r.stderr and "Traceback" not in r.stderr


async def test_the_demo_refuses_a_bad_continuation_before_starting_anything():
    """`s2 tui --continuation` reaches local_demo as text; a bad one is a DecodeError (one line, exit 1) raised
    before the broker or the pipeline starts."""
    with pytest.raises(DecodeError, match="top-p must be in"):
        async with local_demo(recordings=[], decoder="sample:p=0"):
            pytest.fail("the demo started")


@pytest.mark.broker
def test_run_continuation_option_reaches_the_payload(mosquitto, tmp_path):
    """`s2 run --source text --continuation beam:w=2,ngram=2` answers a stdin line with a pred/text naming that
    decoder, whose continuation follows the rule."""
    sub_bin = shutil.which("mosquitto_sub")
    if sub_bin is None:
        pytest.skip("mosquitto_sub not installed")
    lm = make_lm(tmp_path / "lm", hidden=(32,))
    sub = subprocess.Popen([sub_bin, "-h", mosquitto.host, "-p", str(mosquitto.port), "-t", "s2/v1/dx/pred/text",
                            "-C", "1", "-W", "40"], stdout=subprocess.PIPE, text=True)
    node = subprocess.Popen([sys.executable, "-m", "stream.cli", "run", "--source", "text", "--model", str(lm),
                             "--broker", mosquitto.url, "--node", "dx", "--duration-s", "40",
                             "--continuation", "beam:w=2,ngram=2"], cwd=ROOT, stdin=subprocess.PIPE,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(0.5)  # mosquitto_sub subscribes long before the node has loaded its model
        node.stdin.write("to be or not\n")
        node.stdin.close()
        out, _ = sub.communicate(timeout=45)
    finally:
        for p in (node, sub):
            if p.poll() is None:
                p.terminate()
            p.wait(timeout=10)
            for f in (p.stdout, p.stderr):
                if f is not None:
                    f.close()
    pred = json.loads(out)
    assert pred["decoder"] == "beam w=2 no-repeat 2" and pred["context"] == "to be or not\n"
    seq = pred["context"] + pred["continuation"]
    pairs = [seq[i:i + 2] for i in range(len(seq) - 1)]
    new = pairs[len(pred["context"]) - 1:]
    assert len(new) == 20 and len(set(new)) == 20 and not set(new) & set(pairs[:len(pred["context"]) - 1])


@pytest.mark.broker
async def test_text_pane_shows_the_decoder_dim_and_literally(mosquitto):
    """The text pane names the node's decoder on a line of its own, as plain text (markup from the network is
    shown, not interpreted)."""
    app = S2App(mosquitto.url, "n0")
    async with app.run_test(size=(100, 30)) as pilot:
        await connected(pilot)
        t = TextPrediction(seq=1, t_wall=1.0, context="to be", topk=[[" ", 0.5]], continuation=" or not",
                           bpc=1.5, decoder="[b]beam w=4[/b] no-repeat 3")
        await publish(mosquitto.url, "n0", t)
        await wait_for(pilot, lambda: app.query_one(TextPane).prediction == t)
        await pilot.pause(0.15)
        assert "continuation: [b]beam w=4[/b] no-repeat 3" in screen_text(app)
