"""Text workers (`s2 serve`) sharing a group's requests over MQTT 5 shared subscriptions, and their clients
(`stream.lm_ask.TextClient`, `s2 ask`), against a real mosquitto and real worker subprocesses."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from stream_helpers import lm_model_file, running
from tui_helpers import wait_for

from s2node.step import load_step_model
from stream.errors import BrokerError
from stream.lm_ask import Conversation, TextClient, converse
from stream.lm_service import TextWorker, serve_text_worker
from stream.mqtt import MqttLink, NoAnswer, Requests
from stream.schema import LM_TEXT_MAX, LmAnswer, LmRequest, PayloadError, decode, lm_answer_topic, lm_request_topic
from stream.text_pipeline import TextLM

ROOT = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
WORDS = ["the ", "cat", " sat", " on", " a mat", ".\n", "to be", " or not", ",", " and", "so on"]


def _messages(conv: int, n: int) -> list[str]:
    return [WORDS[(conv * 7 + i * 3) % len(WORDS)] for i in range(n)]


def _pred(a: LmAnswer) -> dict:
    return json.loads(a.prediction().to_json()) | {"error": a.error}


def _pipeline_answer(model_path: Path, messages: list[str], topk: int, continuation: int,
                     continues: bool = False) -> dict:
    """What the in-pipeline text model publishes after reading these messages, one in/text message each
    (continues: pieces of one text, as the TUI sends its keystrokes)."""
    lm = TextLM(load_step_model(model_path), topk=topk, continuation=continuation)
    p = None
    for m in messages:
        p = lm.feed(m, continues=continues)
    return json.loads(p.to_json())


def test_a_worker_answers_as_the_pipeline_whatever_it_kept(tmp_path):
    """Interleaved conversations, retries, resets and an LRU of 2: every answer is the text pipeline's own."""
    path = lm_model_file(tmp_path)
    w = TextWorker(load_step_model(path), "w", cache_max=2)
    seen = []
    for conv, n in [(0, 1), (0, 2), (1, 3), (0, 3), (2, 1), (1, 4), (0, 4), (0, 2), (0, 5), (1, 4)]:
        text = _messages(conv, n)
        a = w.answer(LmRequest(conversation=f"c{conv}", text=text, topk=3, continuation=4))
        seen.append(a.reused)
        assert _pred(a) == {**_pipeline_answer(path, text, 3, 4), "error": None}, (conv, n)
    # c0 extends its kept state; c2 pushes c1 out of the LRU of two, then c1 pushes c0; an older c0 text is
    # reread from its start; a repeated c1 text (a retry) reads nothing
    assert seen == [0, 1, 0, 2, 0, 0, 0, 0, 2, 4]
    assert len(w._cache) == 2


def test_requests_are_strictly_decoded_and_bounded():
    """Over LM_TEXT_MAX characters, empty messages, a bad topk or a non-list text are refused with the reason."""
    ok = LmRequest(conversation="c", text=["a" * LM_TEXT_MAX])
    assert decode("lm/request", ok.to_json()) == ok
    bad = [
        (LmRequest(conversation="c", text=["a" * LM_TEXT_MAX, "b"]).to_json(), "exceeds 4096"),
        (LmRequest(conversation="c", text=["a", ""]).to_json(), "non-empty"),
        (LmRequest(conversation="c", text=["a"], topk=0).to_json(), "topk"),
        (LmRequest(conversation="", text=["a"]).to_json(), "conversation"),
        (b'{"v":1,"seq":0,"t_wall":0,"conversation":"c","text":"abc"}', "list of strings"),
        (b'{"v":1,"seq":0,"t_wall":0,"text":["a"]}', "missing field 'conversation'"),
    ]
    for raw, why in bad:
        with pytest.raises(PayloadError, match=why):
            decode("lm/request", raw)


@pytest.mark.broker
async def test_refusals_duplicates_and_foreign_response_topics(mosquitto, tmp_path):
    """A too-long conversation gets an error answer; a request sent twice (same correlation) is answered twice and
    the second answer counted as a duplicate; a Response Topic outside the group's answers gets nothing."""
    path = lm_model_file(tmp_path)
    ready = asyncio.Event()
    worker = serve_text_worker(mosquitto.url, str(path), "dup", worker_id="w0", ready=lambda _: ready.set())
    link = MqttLink(mosquitto.url, mqtt5=True)
    client = TextClient(link, "dup", timeout_s=5, retries=0)
    async with running(worker, link.run()):
        await asyncio.wait_for(ready.wait(), 20)
        assert await link.synced(5)
        refused = await client.ask("c", ["x" * (LM_TEXT_MAX + 1)])
        assert refused.error is not None and "exceeds 4096" in refused.error and refused.worker == "w0"

        corr = b"same-id"
        req = LmRequest(conversation="c", text=["to be"], topk=2, continuation=3)
        first = asyncio.create_task(client.requests.request(lm_request_topic("dup"), req.to_json(), corr))
        link.publish_raw(lm_request_topic("dup"), req.to_json(), qos=1, response_topic=client.requests.response_topic,
                         correlation=corr)
        answer = decode("lm/answer", await first)
        deadline = time.monotonic() + 5
        while client.requests.stats.duplicates < 1 and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        assert client.requests.stats.duplicates == 1
        assert _pred(answer) == {**_pipeline_answer(path, ["to be"], 2, 3), "error": None}

        # a request whose answers would go to a node's in/control is dropped, not answered there
        stray = Requests(link, "s2/v1/n0/in/control", timeout_s=0.5, retries=0)
        with pytest.raises(NoAnswer):
            await stray.request(lm_request_topic("dup"), req.to_json())


@pytest.mark.broker
async def test_the_amqtt_fallback_is_refused_with_a_clear_reason(amqtt_broker, tmp_path):
    """The in-process amqtt broker speaks MQTT 3.1.1 only: a worker says so in one line instead of retrying."""
    with pytest.raises(BaseExceptionGroup) as eg:
        await serve_text_worker(amqtt_broker.url, str(lm_model_file(tmp_path)), "g")
    leaf = eg.value.exceptions[0]
    assert isinstance(leaf, BrokerError) and "refuses MQTT 5" in str(leaf)


def _worker(model: Path, group: str, wid: str, log: Path, url: str) -> tuple[subprocess.Popen, object]:
    f = open(log, "w")  # noqa: SIM115 (closed by _stop)
    p = subprocess.Popen([sys.executable, "-m", "stream.cli", "serve", "--lm", str(model), "--group", group,
                          "--worker", wid, "--broker", url], stdout=subprocess.DEVNULL, stderr=f, env=ENV)
    return p, f


async def _until_ready(logs: list[Path], timeout_s: float = 40) -> None:
    deadline = time.monotonic() + timeout_s
    while not all("answering" in log.read_text() for log in logs):
        assert time.monotonic() < deadline, [log.read_text()[-300:] for log in logs]
        await asyncio.sleep(0.1)


def _stop(workers) -> None:
    for p, f in workers:
        if p.poll() is None:
            p.terminate()
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
        f.close()


@pytest.mark.broker
@pytest.mark.slow
async def test_three_workers_answer_every_request_as_one_does_though_one_is_killed(mosquitto, tmp_path):
    """30 conversations x 20 requests through three `s2 serve` subprocesses of one group, one killed with SIGKILL
    midway: every request is answered (retried after a timeout), each answer equal to one worker's."""
    path = lm_model_file(tmp_path)
    n_conv, n_req, topk, cont = 30, 20, 3, 4
    logs = [tmp_path / f"w{i}.log" for i in range(3)]
    workers = [_worker(path, "trio", f"w{i}", logs[i], mosquitto.url) for i in range(3)]
    link = MqttLink(mosquitto.url, mqtt5=True)
    client = TextClient(link, "trio", timeout_s=1.0, retries=8)
    answers: dict[tuple[int, int], LmAnswer] = {}
    killed = asyncio.Event()

    async def conversation(c: int) -> None:
        msgs = _messages(c, n_req)
        for i in range(n_req):
            answers[c, i] = await client.ask(f"c{c}", msgs[: i + 1], topk=topk, continuation=cont)
            if len(answers) >= n_conv * n_req // 2 and not killed.is_set():
                killed.set()
                workers[1][0].send_signal(signal.SIGKILL)

    try:
        async with running(link.run()):
            await _until_ready(logs)
            assert await link.synced(5)
            t0 = time.monotonic()
            async with asyncio.TaskGroup() as tg:
                for c in range(n_conv):
                    tg.create_task(conversation(c))
            elapsed = time.monotonic() - t0
        assert workers[1][0].wait(5) == -signal.SIGKILL
    finally:
        _stop(workers)
    assert len(answers) == n_conv * n_req and client.requests.stats.failed == 0
    by_worker = {w: sum(a.worker == w for a in answers.values()) for w in ("w0", "w1", "w2")}
    assert all(by_worker.values()), by_worker  # all three took requests, the killed one before its death
    assert by_worker["w0"] + by_worker["w2"] > n_conv * n_req // 2, by_worker  # the survivors took the rest
    one = TextWorker(load_step_model(path), "one")  # the same requests, in each conversation's order, one worker
    for (c, i), a in answers.items():
        want = one.answer(LmRequest(conversation=f"c{c}", text=_messages(c, n_req)[: i + 1], topk=topk,
                                    continuation=cont))
        assert _pred(a) == _pred(want), (c, i, a.worker)
    print(f"\n600 requests in {elapsed:.1f} s, by worker {by_worker}, {client.requests.stats}")


@pytest.mark.broker
async def test_s2_ask_one_shot_and_lines(mosquitto, tmp_path):
    """`s2 ask` answers one message, then a conversation of stdin lines with /reset, as the pipeline would."""
    path = lm_model_file(tmp_path)
    ready = asyncio.Event()
    async with running(serve_text_worker(mosquitto.url, str(path), "cli", ready=lambda _: ready.set())):
        await asyncio.wait_for(ready.wait(), 20)
        base = [sys.executable, "-m", "stream.cli", "ask", "--group", "cli", "--broker", mosquitto.url, "--json",
                "--topk", "2", "--continuation", "3"]
        one = await asyncio.to_thread(subprocess.run, [*base, "to", "be"], capture_output=True, text=True, env=ENV,
                                      timeout=60)
        assert one.returncode == 0, one.stderr
        assert _pred(decode("lm/answer", one.stdout.strip().encode())) == {
            **_pipeline_answer(path, ["to be"], 2, 3), "error": None}
        lines = await asyncio.to_thread(subprocess.run, base, input="the cat\nsat\n/reset\nso on\n",
                                        capture_output=True, text=True, env=ENV, timeout=60)
        assert lines.returncode == 0, lines.stderr
        got = [_pred(decode("lm/answer", x.encode())) for x in lines.stdout.splitlines()]
        want = [_pipeline_answer(path, m, 2, 3) for m in (["the cat\n"], ["the cat\n", "sat\n"], ["so on\n"])]
        assert got == [{**w, "error": None} for w in want]


async def test_converse_refuses_a_message_past_the_bound_and_keeps_the_conversation():
    """A line that would take the conversation past LM_TEXT_MAX is refused before any request, and not kept."""
    shown: list[LmAnswer] = []

    async def lines():
        yield "x" * (LM_TEXT_MAX + 1)

    conv = Conversation("c", ["abc"])
    never_run = TextClient(MqttLink("mqtt://127.0.0.1:9", mqtt5=True), "g", timeout_s=0.05, retries=0)
    errors = await converse(never_run, lines(), shown.append, conversation=conv)  # a request would be NoAnswer
    assert errors == 1 and conv.messages == ["abc"] and "exceed 4096" in (shown[0].error or "")


def test_answer_topics_are_per_client():
    """Each client's answers come on its own topic under the group's."""
    assert lm_answer_topic("g", "abc") == "s2/v1/lm/g/answer/abc"
    assert lm_request_topic("g") == "s2/v1/lm/g/request"


@pytest.mark.broker
async def test_the_tui_text_pane_asks_the_group(mosquitto, tmp_path):
    """With a group the typed keys go to its workers (not in/text): the pane shows the pipeline's answer for
    them, and ctrl+l starts the conversation afresh."""
    from tui.app import S2App
    from tui.widgets import TextPane

    path = lm_model_file(tmp_path)
    ready = asyncio.Event()
    app = S2App(mosquitto.url, "nobody", group="pane")
    pane = lambda: app.query_one(TextPane).prediction  # noqa: E731
    async with running(serve_text_worker(mosquitto.url, str(path), "pane", ready=lambda _: ready.set())):
        await asyncio.wait_for(ready.wait(), 20)
        async with app.run_test(size=(80, 24)) as pilot:
            await wait_for(pilot, lambda: app.link.stats.connected)
            await pilot.press(*"to be")
            await wait_for(pilot, lambda: pane() is not None and pane().context == "to be")
            got = json.loads(pane().to_json()) | {"seq": 0, "t_wall": 0.0}
            assert got == _pipeline_answer(path, list("to be"), 5, 20, continues=True)  # one message per key
            await pilot.press("ctrl+l", *"so")
            await wait_for(pilot, lambda: pane() is not None and pane().context == "so")
            assert pane().topk == _pipeline_answer(path, list("so"), 5, 20, continues=True)["topk"]


def test_tui_group_needs_a_broker():
    """`s2 tui --group G` without --broker is a one-line error (the workers' broker cannot be guessed)."""
    r = subprocess.run([sys.executable, "-m", "stream.cli", "tui", "--group", "g"], capture_output=True, text=True,
                       env=ENV, timeout=60)
    assert r.returncode == 1 and "--group needs --broker" in r.stderr and "Traceback" not in r.stderr
