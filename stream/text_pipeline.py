"""The text pipeline: messages on in/text (or lines of stdin) -> the language model, token by token -> pred/text.

Every character (word, for word-level models) of a message is fed to the LM; after the message a
TextPrediction goes out with the top-k next tokens, a continuation (s2node.decode: nucleus sampling seeded by the
context by default, so the same text gives the same answer) and the running bits per token.
Each message is an utterance (`utterance_sep`): joined to the context before it by one space unless it starts
with whitespace or closing punctuation, the context ends in whitespace, or it says it `continues` (keystrokes).
Bad messages (malformed JSON, oversized, invalid UTF-8) are rejected and counted, never fatal.
Text and resets reach the model through one TextInbox and are applied in order on the one worker thread that
owns the model, so a reset during a stream of text takes effect between two messages, never inside one.
"""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import AsyncIterable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from s2node.decode import DEFAULT, DecodeSpec, continuation
from s2node.step import StepModel, bits
from sources.events import TextEvent
from sources.live.text import TextInbox
from sources.text_data import encode
from stream.mqtt import MqttLink
from stream.pipeline import closing
from stream.schema import PayloadError, TextIn, TextPrediction, decode, topic

NO_SPACE_BEFORE = frozenset(".,;:!?)]}…»”’")  # an utterance starting with one of these follows on directly


def utterance_sep(context: str, text: str, continues: bool = False) -> str:
    """What goes between the context and a new message: one space, or nothing when the message continues the
    text (keystroke-wise clients), starts a context, starts with whitespace or closing punctuation, or the
    context already ends in whitespace."""
    if continues or not context or not text or context[-1].isspace() or text[0].isspace():
        return ""
    return "" if text[0] in NO_SPACE_BEFORE else " "


_SHOWN = {" ": "␣", "\n": "⏎", "\t": "⇥"}  # whitespace made visible in an answer line
_CONTROLS = {c: "\ufffd" for c in (*range(32), 127, *range(0x80, 0xA0))}


def _visible(text: str) -> str:
    return _SHOWN.get(text) or text.replace("\n", "⏎").replace("\t", "⇥").translate(_CONTROLS)


def answer_line(p: TextPrediction, color: bool = False) -> str:
    """One line for a terminal or a pipe: the top-k next tokens with their probabilities, the continuation, the
    running bits per token; whitespace tokens shown as ␣ ⏎ ⇥, control characters replaced. `color`: ANSI
    bold/dim/cyan for a terminal."""
    b, d, c, r = ("\x1b[1m", "\x1b[2m", "\x1b[36m", "\x1b[0m") if color else ("", "", "", "")
    top = "  ".join(f"{b}{_visible(str(tok))}{r} {float(prob):.0%}" for tok, prob in p.topk)
    line = f"{d}next{r} {top}  {d}→{r} {c}{_visible(p.continuation)}{r}"
    if p.bpc is not None:
        line += f"  {d}({p.bpc:.3f} bits/token){r}"
    return line


@dataclass
class TextCounters:
    messages: int = 0
    malformed: int = 0
    oov: int = 0  # characters/words outside the vocabulary (read as unk, or dropped when the model has none)
    tokens: int = 0
    bits: float = 0.0
    scored: int = 0


class TextLM:
    """Tokenisation, state and scoring around a language StepModel (runs in the worker thread)."""

    def __init__(self, model: StepModel, topk: int = 5, continuation: int = 20, context: int = 60,
                 decoder: DecodeSpec = DEFAULT) -> None:
        cfg = model.config
        self.model, self.k, self.n_cont, self.n_ctx = model, topk, continuation, context
        self.decoder = decoder
        # never written into a continuation: an <unk> there says nothing to the reader
        self._banned = [cfg["vocab"].index(cfg["unk"])] if cfg.get("unk") in cfg["vocab"] else []
        self.vocab: list[str] = list(cfg["vocab"])
        self.word = cfg.get("level") == "word"
        self.c = TextCounters()
        self.context = ""
        self._probs: np.ndarray | None = None  # prediction for the next token

    def tokens(self, text: str) -> list[int]:
        """The model's token ids for a piece of streamed text (sources.text_data.encode: the one tokenizer; a
        piece without a final newline ends without <eos>)."""
        ids, outside = encode(text, self.model.config, final_eos=False)
        self.c.oov += outside
        return ids.tolist()

    def feed(self, text: str, continues: bool = True) -> TextPrediction:
        """Consume the text, then predict; synchronous (called in the worker thread). With continues=False the
        text is an utterance of its own, joined to the context as utterance_sep says (in/text's rule)."""
        if not self.word:
            text = utterance_sep(self.context, text, continues) + text
        for i in self.tokens(text):
            if self._probs is not None:
                self.c.bits += bits(float(self._probs[i]))
                self.c.scored += 1
            self._probs = self.model.step(i).probs
            self.c.tokens += 1
        joined = f"{self.context} {text.strip()}" if self.word and self.context else self.context + text
        self.context = joined[-self.n_ctx:]
        return self.predict()

    @property
    def next_probs(self) -> np.ndarray | None:
        """The model's distribution over the next token (None before any text)."""
        return self._probs

    def predict(self) -> TextPrediction:
        p = self._probs
        if p is None:
            return TextPrediction(context=self.context)
        top = np.argsort(-p)[: self.k]
        # the history of the repetition rules is the visible context; the generator is seeded by it, so the same
        # text gets the same continuation whatever came before it
        history = encode(self.context, self.model.config, final_eos=False)[0].tolist()
        rng = np.random.default_rng([self.decoder.seed, zlib.crc32(self.context.encode(errors="surrogatepass"))])
        ids = continuation(self.model, p, self.n_cont, self.decoder, rng, history=history, banned=self._banned)
        cont = [self.vocab[i] for i in ids]
        sep = " " if self.word else ""
        return TextPrediction(
            context=self.context, topk=[[self.vocab[i], round(float(p[i]), 6)] for i in top],
            continuation=sep.join(cont), bpc=(self.c.bits / self.c.scored) if self.c.scored else None,
            decoder=self.decoder.describe(),
        )

    def reset(self) -> None:
        self.model.reset()
        self._probs, self.context = None, ""


def subscribe_text(link: MqttLink, inbox: TextInbox, lm: TextLM) -> None:
    """Route in/text messages into the inbox; anything that fails schema.decode is counted and dropped."""

    def on_message(_topic: str, raw: bytes) -> None:
        try:
            msg = decode("in/text", raw)
        except PayloadError:
            lm.c.malformed += 1
            return
        if isinstance(msg, TextIn) and msg.text:
            inbox.push(msg.text, continues=msg.continues)

    link.subscribe(topic(link.node, "in/text"), on_message)


async def run_text_pipeline(
    texts: AsyncIterable[TextEvent], lm: TextLM, link: MqttLink, executor: ThreadPoolExecutor,
    on_answer: Callable[[TextEvent, TextPrediction], object] | None = None,
) -> None:
    """Each text event -> the LM (worker thread) -> one TextPrediction on pred/text (and to `on_answer`); a reset
    event resets the LM on the same thread, in its place in the stream."""
    loop = asyncio.get_running_loop()
    async with closing(texts) as it:
        async for ev in it:
            if ev.reset:
                await loop.run_in_executor(executor, lm.reset)
                continue
            pred = await loop.run_in_executor(executor, lm.feed, ev.text, ev.continues)
            pred.t_event_us = ev.t_us
            lm.c.messages += 1
            link.publish(pred)
            if on_answer is not None:
                on_answer(ev, pred)
