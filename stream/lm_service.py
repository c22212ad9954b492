"""`s2 serve`: a text worker. Several share one group's requests through an MQTT 5 shared subscription.

Each request (stream.schema.LmRequest) carries a conversation id and the conversation's whole text since its
last reset, so any worker can answer any request: the broker hands each one to one worker of the group
(`$share/<group>/s2/v1/lm/<group>/request`), the worker answers on the request's Response Topic with its
Correlation Data. A worker keeps the latest reading state of recent conversations (LRU, bounded) with the
messages it has read; a request that extends them reads only the new messages, anything else (another
worker's conversation, an older request retried) is read from the start. Either way the answer is what the
in-pipeline TextLM gives after reading the same messages, because the state is a function of the text alone.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import os
import socket
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from s2node.step import Backend, StepModel, load_step_model
from stream.errors import BrokerError, PipelineError
from stream.mqtt import MessageProps, MqttLink
from stream.schema import (
    LM_PREFIX,
    LmAnswer,
    LmRequest,
    PayloadError,
    decode,
    is_node_id,
    lm_shared_filter,
)
from stream.text_pipeline import TextCounters, TextLM

CACHE_MAX = 256  # conversations whose reading state a worker keeps
QUEUE_MAX = 256  # requests waiting for the model; more are dropped (counted; the client's retry goes elsewhere)


@dataclass(frozen=True)
class Snapshot:
    """Everything a TextLM has read: the model's state, the next-token prediction, the context, the scores."""

    model: Any
    probs: np.ndarray | None
    context: str
    counters: TextCounters


class ConversationLM(TextLM):
    """A TextLM that can set one conversation's reading aside and take up another's."""

    def snapshot(self) -> Snapshot:
        return Snapshot(self.model.get_state(), self._probs, self.context, replace(self.c))

    def restore(self, s: Snapshot) -> None:
        self.model.set_state(s.model)
        self._probs, self.context, self.c = s.probs, s.context, replace(s.counters)

    def start(self) -> None:
        """A conversation from its start: the model reset and its scores at zero."""
        self.reset()
        self.c = TextCounters()


@dataclass
class WorkerStats:
    requests: int = 0
    answered: int = 0
    refused: int = 0  # answered with an error (malformed, over the bound)
    dropped: int = 0  # no usable Response Topic, or the queue was full: no answer (the client retries)
    reused: int = 0  # answers that started from a kept state
    read_messages: int = 0  # messages read by the model (a kept state spares rereading)


class TextWorker:
    """Answers LmRequests with one model, keeping recent conversations' states (synchronous: one thread)."""

    def __init__(self, model: StepModel, worker_id: str, cache_max: int = CACHE_MAX) -> None:
        self.lm = ConversationLM(model)
        self.worker_id, self.cache_max = worker_id, cache_max
        self.stats = WorkerStats()
        self._cache: collections.OrderedDict[str, tuple[tuple[str, ...], Snapshot, bool]] = collections.OrderedDict()

    def answer(self, req: LmRequest) -> LmAnswer:
        lm, text = self.lm, tuple(req.text)
        kept = self._cache.get(req.conversation)
        if kept is not None and kept[2] == req.continues and text[: len(kept[0])] == kept[0]:
            start = len(kept[0])
            lm.restore(kept[1])
            self.stats.reused += 1
        else:
            start = 0
            lm.start()
        lm.k, lm.n_cont = 1, 0  # reading only: the prediction after each message is not wanted
        for m in text[start:]:
            lm.feed(m, continues=req.continues)
        self.stats.read_messages += len(text) - start
        self._keep(req.conversation, text, lm.snapshot(), req.continues)
        lm.k, lm.n_cont = req.topk, req.continuation
        p = lm.predict()
        return LmAnswer(context=p.context, topk=p.topk, continuation=p.continuation, bpc=p.bpc, decoder=p.decoder,
                        conversation=req.conversation, worker=self.worker_id, reused=start)

    def _keep(self, conversation: str, text: tuple[str, ...], snap: Snapshot, continues: bool) -> None:
        self._cache[conversation] = (text, snap, continues)
        self._cache.move_to_end(conversation)
        while len(self._cache) > self.cache_max:
            self._cache.popitem(last=False)


def default_worker_id() -> str:
    return f"{socket.gethostname()[:40]}-{os.getpid()}"


def answers_topic_prefix(group: str) -> str:
    """Workers answer only on topics under this (s2/v1/lm/<group>/answer/): a request cannot make them publish
    anywhere else (say, on a node's in/control)."""
    return f"{LM_PREFIX}/{group}/answer/"


@dataclass(frozen=True)
class WorkerOptions:
    """How a worker connects (the broker URL comes separately)."""

    username: str | None = None
    password: str | None = None
    tls: bool | None = None
    cafile: str | None = None


async def serve_text_worker(url: str, model: str, group: str, *, worker_id: str | None = None,
                            options: WorkerOptions = WorkerOptions(), backend: Backend = "node",
                            node_options: Mapping[str, Any] | None = None, cache_max: int = CACHE_MAX,
                            queue_max: int = QUEUE_MAX, ready: Callable[[str], None] | None = None,
                            report: Callable[[WorkerStats], None] | None = None) -> WorkerStats:
    """Answer the group's requests until cancelled. `ready(worker_id)` once subscribed; `report` on the way out.
    BrokerError (one line) when the broker cannot be reached or refuses MQTT 5."""
    wid = worker_id or default_worker_id()
    for what, v in (("group", group), ("worker id", wid)):
        if not is_node_id(v):
            raise PipelineError(f"{what} {v!r}: 1 to 64 printable characters without / + #")
    step_model = load_step_model(model, backend, **(dict(node_options or {}) if backend == "node" else {}))
    if step_model.config.get("task") != "lm":
        raise PipelineError(f"{model}: not a language model (task {step_model.config.get('task')!r})")
    worker = TextWorker(step_model, wid, cache_max)
    link = MqttLink(url, mqtt5=True, client_id=f"s2-lm-{wid}"[:64], username=options.username,
                    password=options.password, tls=options.tls, cafile=options.cafile)
    queue: asyncio.Queue[tuple[bytes, MessageProps]] = asyncio.Queue(queue_max)
    stats, allowed = worker.stats, answers_topic_prefix(group)

    def on_request(_topic: str, raw: bytes, props: MessageProps) -> None:
        stats.requests += 1
        rt = props.response_topic
        if rt is None or not rt.startswith(allowed) or "+" in rt or "#" in rt or queue.full():
            stats.dropped += 1
            return
        queue.put_nowait((raw, props))

    link.subscribe(lm_shared_filter(group), on_request, qos=1, props=True)
    seq = itertools.count()
    loop = asyncio.get_running_loop()
    try:
        with ThreadPoolExecutor(1, thread_name_prefix="s2-lm") as ex:
            async with asyncio.TaskGroup() as tg:
                run = tg.create_task(link.run())
                try:
                    await link.ensure_connected(10.0)
                    if not await link.synced(10.0):
                        raise BrokerError(str(link.url), "the shared subscription was not acknowledged")
                except BrokerError:
                    run.cancel()
                    raise
                if ready is not None:
                    ready(wid)
                while True:
                    raw, props = await queue.get()
                    try:
                        req = decode(LmRequest.KIND, raw)
                    except PayloadError as e:
                        ans = LmAnswer(worker=wid, error=str(e)[:300])
                        stats.refused += 1
                    else:
                        ans = await loop.run_in_executor(ex, worker.answer, req)  # type: ignore[arg-type]
                        stats.answered += 1
                    ans.seq, ans.t_wall = next(seq), time.time()
                    link.publish_raw(props.response_topic or "", ans.to_json(), qos=1,
                                     correlation=props.correlation)
    finally:
        if report is not None:
            report(stats)
    return stats  # not reached: the loop runs until cancelled
