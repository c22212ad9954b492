"""Continuation decoders over a language StepModel: greedy, sampling (temperature, top-k, nucleus) and beam search.

Every decoder starts from the model's current state, whose next-token distribution the caller passes in
(`probs`, what the last step returned), writes `n` tokens and restores the state it found (get_state/set_state),
so decoding never changes the conversation. Sampling draws from an explicit `np.random.Generator`: the same
generator state gives the same continuation. Two rules against loops act on every decoder through `adjust`:
a repetition penalty (a token already in the history has its log-probability multiplied by the penalty, as
CTRL does with logits) and a no-repeat n-gram rule (a token that would complete an n-gram already in the
history is never chosen). The history is the context the caller passes plus the tokens written so far.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, fields
from typing import Literal

import numpy as np

from s2node.errors import S2NodeError
from s2node.step import StepModel

Method = Literal["greedy", "sample", "beam"]
METHODS: tuple[Method, ...] = ("greedy", "sample", "beam")
# the short keys of DecodeSpec.parse ("sample:t=0.8,p=0.9"), field by field
KEYS = {"t": "temperature", "p": "top_p", "k": "top_k", "rep": "repetition_penalty", "ngram": "no_repeat_ngram",
        "w": "beam_width", "lp": "length_alpha", "seed": "seed"}


class DecodeError(S2NodeError):
    """A decoder setting out of range or a continuation spec that does not parse (one line)."""


@dataclass(frozen=True)
class DecodeSpec:
    """How a continuation is written; `describe()` is the one-line form shown to users."""

    method: Method = "sample"
    temperature: float = 0.8  # sample: divides the log-probabilities; < 1 sharpens, > 1 flattens
    top_p: float = 0.9  # sample: keep the smallest set of likeliest tokens whose mass reaches p (1 = all)
    top_k: int = 0  # sample: keep only the k likeliest tokens (0 = no cut)
    repetition_penalty: float = 1.0  # > 1: tokens already in the history are made less likely (1 = off)
    no_repeat_ngram: int = 0  # n > 0: never complete an n-gram that is already in the history (0 = off)
    beam_width: int = 4  # beam: hypotheses kept per step
    length_alpha: float = 0.0  # beam: a hypothesis ended by a stop token scores log p / len**alpha
    seed: int = 0  # the base of the generators a caller derives (e.g. one per conversation)

    def __post_init__(self) -> None:
        checks = [
            (self.method in METHODS, f"method {self.method!r}: use one of {', '.join(METHODS)}"),
            (self.temperature > 0, f"temperature must be > 0, not {self.temperature}"),
            (0 < self.top_p <= 1, f"top-p must be in (0, 1], not {self.top_p}"),
            (self.top_k >= 0, f"top-k must be 0 (off) or more, not {self.top_k}"),
            (self.repetition_penalty >= 1, f"repetition penalty must be >= 1, not {self.repetition_penalty}"),
            (self.no_repeat_ngram >= 0, f"no-repeat n-gram must be 0 (off) or more, not {self.no_repeat_ngram}"),
            (self.beam_width >= 1, f"beam width must be 1 or more, not {self.beam_width}"),
            (self.length_alpha >= 0, f"length alpha must be 0 or more, not {self.length_alpha}"),
        ]
        for ok, why in checks:
            if not ok:  # also catches nan, which fails every comparison
                raise DecodeError(f"continuation: {why}")

    @classmethod
    def parse(cls, text: str) -> DecodeSpec:
        """"greedy" | "sample[:t=0.8,p=0.9,k=0,rep=1,ngram=0,seed=0]" | "beam[:w=4,ngram=3,lp=0,rep=1]"."""
        method, _, rest = text.strip().partition(":")
        if method not in METHODS:
            raise DecodeError(f"continuation {text!r}: the method is one of {', '.join(METHODS)}")
        types = {f.name: f.type for f in fields(cls)}
        values: dict[str, object] = {}
        for item in filter(None, (s.strip() for s in rest.split(","))):
            key, eq, value = item.partition("=")
            if not eq or key.strip() not in KEYS:
                raise DecodeError(f"continuation {text!r}: {item!r} is not KEY=VALUE with a KEY of {', '.join(KEYS)}")
            name = KEYS[key.strip()]
            try:
                values[name] = int(value) if types[name] in (int, "int") else float(value)
            except ValueError as e:
                raise DecodeError(f"continuation {text!r}: {key.strip()}={value!r} is not a number") from e
        return cls(method=method, **values)  # type: ignore[arg-type]

    def describe(self) -> str:
        """"greedy", "nucleus p=0.9 T=0.8", "sample top-k 40 T=1", "beam w=4 no-repeat 3", with the penalties set."""
        if self.method == "greedy":
            parts = ["greedy"]
        elif self.method == "beam":
            parts = [f"beam w={self.beam_width}"] + ([f"lp={self.length_alpha:g}"] if self.length_alpha else [])
        else:
            parts = ["nucleus", f"p={self.top_p:g}"] if self.top_p < 1 else ["sample"]
            parts += [f"top-k {self.top_k}"] if self.top_k else []
            parts.append(f"T={self.temperature:g}")
        if self.repetition_penalty > 1:
            parts.append(f"rep={self.repetition_penalty:g}")
        if self.no_repeat_ngram:
            parts.append(f"no-repeat {self.no_repeat_ngram}")
        return " ".join(parts)


DEFAULT = DecodeSpec()  # what the demo writes (why: docs/language-models.md, bench/bench_continuations.py)
GREEDY = DecodeSpec("greedy")


@contextlib.contextmanager
def restored(model: StepModel) -> Iterator[None]:
    """Whatever happens inside, the model leaves with the state it entered with."""
    saved = model.get_state()
    try:
        yield
    finally:
        model.set_state(saved)


def repeats(history: Sequence[int], n: int) -> set[int]:
    """The tokens that would complete an n-gram already in `history` (n = 1: every token of the history)."""
    if n <= 0 or len(history) < n - 1:
        return set()
    if n == 1:
        return set(history)
    prefix = tuple(history[len(history) - n + 1:])
    return {history[i + n - 1] for i in range(len(history) - n + 1) if tuple(history[i:i + n - 1]) == prefix}


def adjust(probs: np.ndarray, history: Sequence[int], spec: DecodeSpec, banned: Sequence[int] = ()) -> np.ndarray:
    """Log-probabilities after the repetition penalty, the no-repeat rule and the banned tokens (-inf). When the
    rules would rule out every token, they give way: the model's own choice beats no continuation at all."""
    with np.errstate(divide="ignore"):
        logp = np.log(np.asarray(probs, dtype=np.float64))
    out = logp.copy()
    if spec.repetition_penalty > 1 and len(history):
        seen = np.unique(np.asarray(history, dtype=np.int64))
        out[seen] *= spec.repetition_penalty  # log p <= 0, so this makes the token less likely
    out[list(banned)] = -np.inf
    out[list(repeats(history, spec.no_repeat_ngram))] = -np.inf
    return out if np.isfinite(out).any() else logp


def _argmax(logp: np.ndarray) -> int:
    return int(np.argmax(logp))  # the first of equal maxima, as the stable sort in beam() ranks them


def greedy(model: StepModel, probs: np.ndarray, n: int, *, spec: DecodeSpec = GREEDY, history: Sequence[int] = (),
           banned: Sequence[int] = ()) -> list[int]:
    """The likeliest token each step (after the spec's repetition rules)."""
    hist, out = list(history), []
    with restored(model):
        for i in range(n):
            tok = _argmax(adjust(probs, hist, spec, banned))
            out.append(tok)
            hist.append(tok)
            if i + 1 < n:  # the distribution after the last token is never used
                probs = model.step(tok).probs
    return out


def nucleus(logp: np.ndarray, temperature: float, top_p: float, top_k: int = 0) -> np.ndarray:
    """The sampling distribution: log-probabilities / T, cut to the top k and to the top-p mass, renormalised."""
    z = logp / temperature
    p = np.exp(z - z[np.isfinite(z)].max())
    order = np.argsort(-p, kind="stable")
    keep = len(order) if top_k <= 0 else min(top_k, len(order))
    if top_p < 1:
        mass = np.cumsum(p[order[:keep]]) / p.sum()
        keep = min(keep, int(np.searchsorted(mass, top_p)) + 1)  # the smallest prefix whose mass reaches p
    q = np.zeros_like(p)
    q[order[:keep]] = p[order[:keep]]
    return q / q.sum()


def sample(model: StepModel, probs: np.ndarray, n: int, rng: np.random.Generator, *, spec: DecodeSpec = DEFAULT,
           history: Sequence[int] = (), banned: Sequence[int] = ()) -> list[int]:
    """Each token drawn from the nucleus (temperature, top-k, top-p) of the adjusted distribution."""
    hist, out = list(history), []
    with restored(model):
        for i in range(n):
            q = nucleus(adjust(probs, hist, spec, banned), spec.temperature, spec.top_p, spec.top_k)
            tok = int(rng.choice(len(q), p=q))
            out.append(tok)
            hist.append(tok)
            if i + 1 < n:
                probs = model.step(tok).probs
    return out


@dataclass
class _Hypothesis:
    tokens: list[int]
    logp: float  # sum of the adjusted log-probabilities of its tokens
    state: object  # the model's state after its last token
    probs: np.ndarray  # the model's next-token distribution in that state


def beam(model: StepModel, probs: np.ndarray, n: int, *, spec: DecodeSpec = DecodeSpec("beam"),
         history: Sequence[int] = (), banned: Sequence[int] = (), stop: Sequence[int] = ()) -> list[int]:
    """Beam search: the `spec.beam_width` best hypotheses by summed log-probability, extended token by token.
    A token in `stop` ends its hypothesis, which then competes with score log p / len**length_alpha (without
    stop tokens every hypothesis has length n and the normalisation changes nothing). Width 1 is greedy."""
    width, stops, ctx = spec.beam_width, set(stop), list(history)
    with restored(model):
        live = [_Hypothesis([], 0.0, model.get_state(), probs)]
        done: list[tuple[float, list[int]]] = []
        for step in range(n):
            cands: list[tuple[float, int, int]] = []  # (score, hypothesis index, token)
            for h_i, h in enumerate(live):
                logp = adjust(h.probs, ctx + h.tokens, spec, banned)
                for tok in np.argsort(-logp, kind="stable")[:width]:
                    if np.isfinite(logp[tok]):
                        cands.append((h.logp + float(logp[tok]), h_i, int(tok)))
            # best first; among equal scores the earlier hypothesis and the lower token id, as argmax picks
            cands.sort(key=lambda c: (-c[0], c[1], c[2]))
            nxt: list[_Hypothesis] = []
            for score, h_i, tok in cands:
                if len(nxt) == width:
                    break
                tokens = [*live[h_i].tokens, tok]
                if tok in stops:
                    done.append((score / len(tokens) ** spec.length_alpha, tokens))
                    continue
                if step + 1 < n:
                    model.set_state(live[h_i].state)
                    p = model.step(tok).probs
                    nxt.append(_Hypothesis(tokens, score, model.get_state(), p))
                else:
                    nxt.append(_Hypothesis(tokens, score, None, live[h_i].probs))
            live = nxt
            if not live:
                break
        done += [(h.logp / max(len(h.tokens), 1) ** spec.length_alpha, h.tokens) for h in live]
    return max(done, key=lambda d: d[0])[1] if done else []


def continuation(model: StepModel, probs: np.ndarray, n: int, spec: DecodeSpec = DEFAULT,
                 rng: np.random.Generator | None = None, *, history: Sequence[int] = (),
                 banned: Sequence[int] = (), stop: Sequence[int] = ()) -> list[int]:
    """n tokens (fewer when beam search ends at a stop token) by the spec's method; rng: sampling's generator
    (default: one seeded with spec.seed)."""
    if spec.method == "greedy":
        return greedy(model, probs, n, spec=spec, history=history, banned=banned)
    if spec.method == "beam":
        return beam(model, probs, n, spec=spec, history=history, banned=banned, stop=stop)
    return sample(model, probs, n, rng if rng is not None else np.random.default_rng(spec.seed), spec=spec,
                  history=history, banned=banned)


__all__ = ["DEFAULT", "GREEDY", "METHODS", "DecodeError", "DecodeSpec", "adjust", "beam", "continuation", "greedy",
           "nucleus", "repeats", "restored", "sample"]
