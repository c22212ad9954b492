"""Faults seen from the command line, with real subprocesses and real mosquittos: live counts and the summary on
SIGTERM, credentials (masked, from a file or the environment, refused at once), broker exposure, odd paths."""

from __future__ import annotations

import asyncio
import io
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from stream_helpers import lm_model_file, recording

from sources.live.text import LineStats, stdin_text
from stream.broker import MosquittoProcess
from stream.mqtt import MqttLink
from stream.schema import mask_url
from stream.serve import PUBLISH_BACKLOG, paced_by

ROOT = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
SECRET = "s3cr3t-Pw"


def s2_run(*args: str, timeout: float = 60, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "stream.cli", *args], capture_output=True, text=True,
                          env=env or ENV, timeout=timeout, stdin=subprocess.DEVNULL)


@pytest.fixture
def auth_broker():
    """A mosquitto that takes only alice with SECRET."""
    with MosquittoProcess(users={"alice": SECRET}) as b:
        yield b


def test_mask_url_hides_only_the_password():
    """mqtt://user:pw@host prints as mqtt://user:***@host; URLs without a password are unchanged."""
    assert mask_url(f"mqtt://alice:{SECRET}@h:1883") == "mqtt://alice:***@h:1883"
    assert mask_url("mqtt://h:1") == "mqtt://h:1" and mask_url("mqtt://bob@h") == "mqtt://bob@h"


@pytest.mark.broker
def test_bad_password_fails_at_once_and_is_never_printed(auth_broker, tmp_path):
    """A refused password is a one-line error within seconds (no retrying), and the password is not in it."""
    url = f"mqtt://alice:{SECRET}x@{auth_broker.host}:{auth_broker.port}"
    t0 = time.monotonic()
    r = s2_run("subscribe", "--broker", url, "--count", "1")
    assert r.returncode == 1 and time.monotonic() - t0 < 8
    assert SECRET not in r.stderr + r.stdout and "Not authorized" in r.stderr and len(r.stderr.splitlines()) == 1
    r = s2_run("subscribe", "--broker", f"mqtt://alice:{SECRET}@{auth_broker.host}:99999", "--count", "1")
    assert r.returncode == 1 and SECRET not in r.stderr and "***" in r.stderr


@pytest.mark.broker
def test_password_from_a_file_or_the_environment(auth_broker, tmp_path):
    """--password-file and S2_MQTT_PASSWORD both log in; a missing CA file fails at once, naming the file."""
    pw = tmp_path / "pw"
    pw.write_text(SECRET + "\n")
    url = f"mqtt://{auth_broker.host}:{auth_broker.port}"
    r = s2_run("subscribe", "--broker", url, "--username", "alice", "--password-file", str(pw), "--timeout-s", "0.3")
    assert r.returncode == 1 and "nothing for 0.3 s" in r.stderr  # connected, then idle: not refused
    r = s2_run("subscribe", "--broker", url, "--username", "alice", "--timeout-s", "0.3",
               env={**ENV, "S2_MQTT_PASSWORD": SECRET})
    assert "nothing for 0.3 s" in r.stderr
    r = s2_run("subscribe", "--broker", url, "--tls", "--cafile", str(tmp_path / "none.pem"), "--count", "1")
    assert r.returncode == 1 and "none.pem" in r.stderr and len(r.stderr.splitlines()) == 1


def test_broker_on_a_public_address_refuses_anonymous():
    """`s2 broker --host 0.0.0.0` without --allow-anonymous exits 1 and says why."""
    r = s2_run("broker", "--host", "0.0.0.0", "--port", "0")
    assert r.returncode == 1 and "anonymous" in r.stderr and "--allow-anonymous" in r.stderr


@pytest.mark.parametrize("kind", ["dir", "fifo", "device", "control"])
def test_odd_paths_are_named_for_what_they_are(tmp_path, kind):
    """A directory, a FIFO and /dev/zero are named as such (no wait on the FIFO); control characters are escaped."""
    path = {"dir": str(tmp_path), "device": "/dev/zero", "control": str(tmp_path / "a\x1b[2Jb\nc.npy")}.get(kind)
    if kind == "fifo":
        path = str(tmp_path / "pipe")
        os.mkfifo(path)
    r = s2_run("replay", path, "--broker", "mqtt://127.0.0.1:1", timeout=20)
    want = {"dir": "a directory", "fifo": "a FIFO", "device": "a device", "control": "no such file"}[kind]
    assert r.returncode == 1 and want in r.stderr and len(r.stderr.splitlines()) == 1 and "\x1b" not in r.stderr


def test_a_long_stdin_line_is_cut_and_counted():
    """A 3 MB line keeps its first 4,096 characters, the rest is counted, and the next line still arrives."""
    st = LineStats()
    stream = io.StringIO("x" * 3_000_000 + "\nnext\n")

    async def lines() -> list[str]:
        return [ev.text async for ev in stdin_text(4096, st, stream)]

    got = asyncio.run(lines())
    assert [len(x) for x in got] == [4096, 5] and st.lines_cut == 1 and st.chars_cut == 3_000_000 - 4096


@pytest.mark.broker
async def test_replay_waits_while_publishing_is_behind(mosquitto_private):
    """With the broker away, the replay stops being read once the backlog passes the bound; it resumes after."""
    broker = mosquitto_private
    link = MqttLink(broker.url, "bp")
    run = asyncio.create_task(link.run())
    await link.ensure_connected(5)
    broker.stop()
    taken = 0

    async def batches():
        nonlocal taken
        for i in range(10 * PUBLISH_BACKLOG):
            taken += 1
            yield i

    async def consume():
        async for _ in paced_by(link, batches()):
            link.publish_raw("s2/v1/bp/x", b"1")

    task = asyncio.create_task(consume())
    await asyncio.sleep(0.5)
    assert PUBLISH_BACKLOG <= taken <= PUBLISH_BACKLOG + 2 and not task.done()
    broker.start()
    await asyncio.wait_for(task, 30)
    assert taken == 10 * PUBLISH_BACKLOG and link.stats.dropped == 0
    run.cancel()
    await asyncio.gather(run, return_exceptions=True)


@pytest.mark.broker
def test_text_counts_are_live_and_the_summary_comes_on_sigterm(mosquitto, tmp_path):
    """Malformed in/text shows in the stats while `s2 run --source text` runs; SIGTERM prints its summary."""
    lm = lm_model_file(tmp_path)
    node = subprocess.Popen([sys.executable, "-m", "stream.cli", "run", "--source", "text", "--model", str(lm),
                             "--broker", mosquitto.url, "--node", "cnt"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    h, p = mosquitto.host, str(mosquitto.port)
    try:
        st = subprocess.run(["mosquitto_sub", "-h", h, "-p", p, "-t", "s2/v1/cnt/status", "-C", "1", "-W", "30"],
                            capture_output=True, text=True, timeout=40)
        assert json.loads(st.stdout)["state"] == "online"
        # the status comes on connecting, its in/text subscription just after: probe until a text is answered
        answered = subprocess.Popen(["mosquitto_sub", "-h", h, "-p", p, "-t", "s2/v1/cnt/pred/text", "-C", "1",
                                     "-W", "30"], stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while answered.poll() is None and time.monotonic() < deadline:
            subprocess.run(["mosquitto_pub", "-h", h, "-p", p, "-t", "s2/v1/cnt/in/text", "-q", "1", "-m", "x"],
                           check=True)
            time.sleep(0.5)
        assert answered.wait(timeout=5) == 0
        for bad in (b"{broken", b'{"v":1,"seq":0,"t_wall":1e999,"text":"x"}', b'{"v":1,"seq":0,"t_wall":1,"text":1}'):
            subprocess.run(["mosquitto_pub", "-h", h, "-p", p, "-t", "s2/v1/cnt/in/text", "-q", "1", "-s"],
                           input=bad, check=True)
        seen: list[int] = []  # the stats, once a second, until they count all three (or 20 s)
        stats = subprocess.Popen(["mosquitto_sub", "-h", h, "-p", p, "-t", "s2/v1/cnt/stats", "-W", "20"],
                                 stdout=subprocess.PIPE, text=True)
        try:
            for line in stats.stdout:
                seen.append(json.loads(line)["malformed_in"])
                if seen[-1] >= 3:
                    break
        finally:
            stats.kill()
            stats.communicate()
        assert seen and seen[-1] == 3, seen
        node.send_signal(signal.SIGTERM)
        _, err = node.communicate(timeout=20)
    finally:
        if node.poll() is None:
            node.kill()
        node.communicate()
    assert re.search(r"s2 run: \d+ predictions", err) and "3 malformed" in err and "Traceback" not in err


@pytest.mark.broker
def test_status_names_the_recording_not_its_path(mosquitto, tmp_path):
    """The retained status of `s2 replay` carries the file name only."""
    from stream_helpers import gesture_model_file

    m = gesture_model_file(tmp_path)
    rec = recording(tmp_path / "secret-dir-rec.npy", n=2000, duration_us=100_000)
    sub = subprocess.Popen(["mosquitto_sub", "-h", mosquitto.host, "-p", str(mosquitto.port), "-t",
                            "s2/v1/nm/status", "-C", "1", "-W", "30"], stdout=subprocess.PIPE, text=True)
    try:
        time.sleep(0.3)
        r = s2_run("replay", str(rec), "--model", str(m), "--broker", mosquitto.url, "--node", "nm", "--speed", "0")
        out, _ = sub.communicate(timeout=30)
    finally:
        if sub.poll() is None:
            sub.kill()
            sub.communicate()
    assert r.returncode == 0, r.stderr
    assert json.loads(out)["recordings"] == ["secret-dir-rec.npy"]


@pytest.mark.broker
def test_tui_with_a_refused_password_fails_at_once(auth_broker, tmp_path):
    """`s2 tui --broker` with a wrong password file exits 1 with the broker's reason before taking the screen."""
    pw = tmp_path / "pw"
    pw.write_text("wrong\n")
    r = s2_run("tui", "--broker", f"mqtt://{auth_broker.host}:{auth_broker.port}", "--username", "alice",
               "--password-file", str(pw), timeout=30)
    assert r.returncode == 1 and "Not authorized" in r.stderr and len(r.stderr.splitlines()) == 1


@pytest.mark.broker
def test_sigterm_to_s2_broker_stops_its_mosquitto(tmp_path):
    """`s2 broker` ended by SIGTERM takes its mosquitto child with it (no orphan keeps the port)."""
    from stream.broker import mosquitto_binary, wait_port

    if mosquitto_binary() is None:
        pytest.skip("mosquitto not installed")
    proc = subprocess.Popen([sys.executable, "-m", "stream.cli", "broker", "--port", "0"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=ENV)
    try:
        line = proc.stdout.readline()
        host, port = line.split("mqtt://", 1)[1].split(" ", 1)[0].rsplit(":", 1)
        assert wait_port(host, int(port), 5)
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()
    assert proc.returncode == 0 and not wait_port(host, int(port), 1.0)
