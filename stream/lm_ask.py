"""`s2 ask`: a client of a group of text workers (`s2 serve`), over MQTT 5 request/response.

A conversation is its messages since the last reset; every request carries all of them (at most LM_TEXT_MAX
characters), so whichever worker the broker picks can answer, and a request retried after a timeout (same
correlation) is answered the same by any worker. A duplicate answer is dropped by `stream.mqtt.Requests`.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterable, Callable
from dataclasses import dataclass, field

from stream.errors import PipelineError
from stream.mqtt import MqttLink, Requests
from stream.schema import (
    LM_TEXT_MAX,
    LmAnswer,
    LmRequest,
    PayloadError,
    decode,
    is_node_id,
    lm_answer_topic,
    lm_request_topic,
)

TIMEOUT_S = 2.0  # a request not answered within this is sent again (same correlation)
RETRIES = 5
RESET_LINE = "/reset"  # typed alone on a line: start the conversation afresh


def new_conversation_id() -> str:
    return f"c-{os.urandom(6).hex()}"


@dataclass
class Conversation:
    """One conversation's messages since its last reset, bounded as the workers bound them."""

    id: str = field(default_factory=new_conversation_id)
    messages: list[str] = field(default_factory=list)

    def fits(self, text: str) -> bool:
        return sum(map(len, self.messages)) + len(text) <= LM_TEXT_MAX

    def reset(self) -> None:
        self.messages.clear()


class TextClient:
    """Requests to one group's workers over an MQTT 5 link (which the caller runs)."""

    def __init__(self, link: MqttLink, group: str, *, timeout_s: float = TIMEOUT_S, retries: int = RETRIES) -> None:
        if not is_node_id(group):
            raise PipelineError(f"group {group!r}: 1 to 64 printable characters without / + #")
        self.group = group
        self.requests = Requests(link, lm_answer_topic(group, os.urandom(6).hex()), timeout_s=timeout_s,
                                 retries=retries)

    async def ask(self, conversation: str, text: list[str], *, topk: int = 5, continuation: int = 20,
                  correlation: bytes | None = None) -> LmAnswer:
        """The answer for a conversation's text (it may carry `error`); NoAnswer when no worker answered."""
        req = LmRequest(conversation=conversation, text=list(text), topk=topk, continuation=continuation)
        raw = await self.requests.request(lm_request_topic(self.group), req.to_json(), correlation)
        try:
            ans = decode(LmAnswer.KIND, raw)
        except PayloadError as e:
            raise PipelineError(f"malformed answer: {e}") from e
        return ans  # type: ignore[return-value]


async def converse(client: TextClient, lines: AsyncIterable[str], show: Callable[[LmAnswer], None], *,
                   conversation: Conversation | None = None, topk: int = 5, continuation: int = 20) -> int:
    """Each line (a message) extends the conversation and is answered; RESET_LINE starts it afresh. A message
    that would take the conversation past LM_TEXT_MAX is refused (shown as an error answer, not kept).
    Returns the number of error answers."""
    conv = conversation or Conversation()
    errors = 0
    async for line in lines:
        if line.strip() == RESET_LINE:
            conv.reset()
            continue
        if not line:
            continue
        if not conv.fits(line):
            show(LmAnswer(conversation=conv.id, error=f"conversation would exceed {LM_TEXT_MAX} characters: "
                          f"type {RESET_LINE} to start a new one"))
            errors += 1
            continue
        ans = await client.ask(conv.id, [*conv.messages, line], topk=topk, continuation=continuation)
        if ans.error is None:
            conv.messages.append(line)
        else:
            errors += 1
        show(ans)
    return errors


def describe(ans: LmAnswer) -> str:
    """One line for a person: the top next tokens and the continuation, or the error."""
    if ans.error is not None:
        return f"error: {ans.error}"
    top = ", ".join(f"{tok!r} {p:.2f}" for tok, p in ans.topk)
    return f"next: {top} | continues: {ans.continuation!r} [worker {ans.worker}]"
