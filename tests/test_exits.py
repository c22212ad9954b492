"""Every long-running `s2` command ends on SIGTERM and SIGHUP as on Ctrl-C: its summary, its exit status, no child
process and no temp dir left behind (real subprocesses, each with a TMPDIR of its own)."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest
from stream_helpers import gesture_model_file, lm_model_file, recording

pytestmark = [pytest.mark.slow, pytest.mark.broker]
ROOT = Path(__file__).resolve().parent.parent
URL = re.compile(r"mqtt://([\d.]+):(\d+)")


class Command:
    """`python -m stream.cli ARGS` with its own TMPDIR; stdout and stderr read in the background."""

    def __init__(self, tmp_path: Path, *args: str, stdin=subprocess.DEVNULL) -> None:
        self.tmp = tmp_path / "tmp"
        self.tmp.mkdir()
        env = {**os.environ, "TMPDIR": str(self.tmp),
               "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
        self.proc = subprocess.Popen([sys.executable, "-m", "stream.cli", *args], stdin=stdin,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
        self.out: list[str] = []
        self.err: list[str] = []
        self._readers = [threading.Thread(target=self._read, args=(s, buf), daemon=True)
                         for s, buf in ((self.proc.stdout, self.out), (self.proc.stderr, self.err))]
        for r in self._readers:
            r.start()

    @staticmethod
    def _read(stream, buf: list[str]) -> None:
        for line in stream:
            buf.append(line)

    def wait_for(self, buf: list[str], pattern: str, timeout_s: float = 60) -> re.Match:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for line in list(buf):
                if m := re.search(pattern, line):
                    return m
            assert self.proc.poll() is None, f"exited early ({self.proc.returncode}): {''.join(self.err)}"
            time.sleep(0.05)
        raise AssertionError(f"no {pattern!r} within {timeout_s} s: {''.join(self.err)}")

    def stop(self, sig: signal.Signals, timeout_s: float = 60) -> tuple[int, str, str]:
        """Send `sig`; the exit status and output once it has ended; its children must be gone and TMPDIR empty."""
        children = psutil.Process(self.proc.pid).children(recursive=True)
        self.proc.send_signal(sig)
        try:
            rc = self.proc.wait(timeout_s)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
        for r in self._readers:
            r.join(5)
        alive = [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]
        for c in alive:
            c.kill()
        assert not alive, f"left running: {[c.name() for c in alive]}"
        assert not list(self.tmp.iterdir()), f"left in TMPDIR: {list(self.tmp.iterdir())}"
        err = "".join(self.err)
        assert "Traceback" not in err, err
        return rc, "".join(self.out), err

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        for r in self._readers:
            r.join(5)
        for s in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if s is not None:
                s.close()


@pytest.fixture
def command(tmp_path):
    made: list[Command] = []

    def start(*args: str, **kw) -> Command:
        made.append(Command(tmp_path, *args, **kw))
        return made[-1]

    yield start
    for c in made:
        c.close()


def wait_online(url: re.Match, node: str, timeout_s: float = 60) -> None:
    """The node's retained status says online (it is serving)."""
    host, port = url.groups()
    r = subprocess.run(["mosquitto_sub", "-h", host, "-p", port, "-t", f"s2/v1/{node}/status", "-C", "1",
                        "-W", str(int(timeout_s))], capture_output=True, text=True, timeout=timeout_s + 10)
    assert '"online"' in r.stdout, r.stderr


def need_mosquitto() -> None:
    from conftest import _need_mosquitto

    _need_mosquitto()


@pytest.mark.parametrize(("kind", "sig"), [("mosquitto", signal.SIGTERM), ("amqtt", signal.SIGHUP)])
def test_broker(command, kind, sig):
    """`s2 broker` stops its broker (mosquitto child and its temp dir, or amqtt) and exits 0, as on Ctrl-C."""
    from stream.broker import wait_port

    if kind == "mosquitto":
        need_mosquitto()
    c = command("broker", "--port", "0", *(["--amqtt"] if kind == "amqtt" else []))
    host, port = c.wait_for(c.out, "listening at " + URL.pattern).groups()
    assert wait_port(host, int(port), 10)
    if kind == "mosquitto":
        assert list(c.tmp.iterdir()), "mosquitto's config dir is expected in TMPDIR"
    rc, _, err = c.stop(sig)
    assert rc == 0 and "s2 broker: stopped" in err and not wait_port(host, int(port), 0.5)


def test_replay(command, tmp_path):
    """`s2 replay --loop` with its embedded broker: SIGTERM prints the summary and exits 130."""
    need_mosquitto()
    m = gesture_model_file(tmp_path)
    rec = recording(tmp_path / "rec.npy", n=2000, duration_us=200_000)
    c = command("replay", str(rec), "--model", str(m), "--loop", "--node", "ex")
    wait_online(c.wait_for(c.err, "embedded broker at " + URL.pattern), "ex")
    rc, _, err = c.stop(signal.SIGTERM)
    assert rc == 130 and re.search(r"s2 replay: \d+ predictions", err), err


@pytest.mark.parametrize(("source", "sig"), [("synthetic", signal.SIGHUP), ("text", signal.SIGTERM),
                                             ("udp", signal.SIGTERM)])
def test_run(command, tmp_path, source, sig):
    """`s2 run` of a live source with its embedded broker: the signal prints the summary and exits as Ctrl-C does."""
    from stream.broker import free_port

    need_mosquitto()
    model = lm_model_file(tmp_path) if source == "text" else gesture_model_file(tmp_path)
    if source == "udp":
        source = f"udp://127.0.0.1:{free_port()}"
    c = command("run", "--source", source, "--model", str(model), "--node", "ex",
                stdin=subprocess.PIPE if source == "text" else subprocess.DEVNULL)
    wait_online(c.wait_for(c.err, "embedded broker at " + URL.pattern), "ex")
    rc, _, err = c.stop(sig)
    # interactive text ends on Ctrl-C as at the end of its input (0); the event sources are interrupted (130)
    assert rc == (0 if source == "text" else 130), err
    assert re.search(r"s2 run: \d+ predictions, \d+ events in", err), err


def test_text_worker(command, tmp_path):
    """`s2 serve` (a text worker) with its embedded mosquitto: SIGTERM prints its counts and exits 130."""
    need_mosquitto()
    c = command("serve", "--group", "ex", "--lm", str(lm_model_file(tmp_path)))
    c.wait_for(c.err, "s2 serve: worker .* answering")
    rc, _, err = c.stop(signal.SIGTERM)
    assert rc == 130 and re.search(r"s2 serve: \d+ answered", err), err


def test_subscribe(command):
    """`s2 subscribe` with its embedded broker: SIGHUP prints how many messages came and exits 130."""
    need_mosquitto()
    c = command("subscribe")
    host, port = c.wait_for(c.err, "embedded broker at " + URL.pattern).groups()
    subprocess.run(["mosquitto_pub", "-h", host, "-p", port, "-t", "s2/v1/ex/status", "-r", "-m", '{"x":1}'],
                   check=True, timeout=10)
    c.wait_for(c.out, '"s2/v1/ex/status"')
    rc, _, err = c.stop(signal.SIGHUP)
    assert rc == 130 and "s2 subscribe: 1 messages" in err, err


def tui_in_a_terminal(tmp_path: Path, *args: str):
    """`s2 tui ARGS` in a pseudo-terminal with its own TMPDIR: (pid, terminal fd, read(until), output, TMPDIR)."""
    import pty
    import select

    tmp = tmp_path / "tmp"
    tmp.mkdir()
    pid, fd = pty.fork()
    if pid == 0:  # the child: the real command line in a terminal
        os.chdir(ROOT)
        os.environ.update(TERM="xterm-256color", TMPDIR=str(tmp))
        os.execv(sys.executable, [sys.executable, "-m", "stream.cli", "tui", *args])
    out = bytearray()

    def read(until: float) -> None:
        while time.monotonic() < until:
            if select.select([fd], [], [], 0.1)[0]:
                try:
                    chunk = os.read(fd, 65536)
                except OSError:  # EIO: the child has closed the terminal
                    return
                if not chunk:
                    return
                out.extend(chunk)

    return pid, fd, read, out, tmp


def wait_exit(pid: int, timeout_s: float = 20) -> int:
    deadline = time.monotonic() + timeout_s
    done, status = os.waitpid(pid, os.WNOHANG)
    while time.monotonic() < deadline and done == 0:
        time.sleep(0.1)
        done, status = os.waitpid(pid, os.WNOHANG)
    if done == 0:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        raise AssertionError("s2 tui did not end")
    return os.waitstatus_to_exitcode(status)


def test_tui_with_a_broker(tmp_path, mosquitto):
    """`s2 tui --broker` in a real terminal: SIGTERM quits it like ctrl+q, exit 0, the terminal given back."""
    pid, fd, read, out, tmp = tui_in_a_terminal(tmp_path, "--broker", mosquitto.url)
    try:
        deadline = time.monotonic() + 60
        while b"\x1b[?1049h" not in out and time.monotonic() < deadline:  # the UI has taken the screen
            read(time.monotonic() + 0.2)
        read(time.monotonic() + 2)
        os.kill(pid, signal.SIGTERM)
        read(time.monotonic() + 20)
        rc, pid = wait_exit(pid), 0
        assert rc == 0 and "\x1b[?1049l" in out.decode(errors="replace") and not list(tmp.iterdir())
    finally:
        if pid:
            with contextlib.suppress(ProcessLookupError, ChildProcessError):
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
        os.close(fd)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_tui_demo(tmp_path, sig):
    """`s2 tui` (the demo) in a real terminal: SIGTERM ends it like ctrl+q (exit 0, its line printed, the terminal
    given back); SIGHUP with the terminal closed too; the demo's mosquitto and its temp dir go with it."""
    need_mosquitto()
    pid, fd, read, out, tmp = tui_in_a_terminal(tmp_path)

    broker: list[psutil.Process] = []
    try:
        deadline = time.monotonic() + 60
        while not broker and time.monotonic() < deadline:
            read(time.monotonic() + 0.2)
            broker = [p for p in psutil.Process(pid).children() if "mosquitto" in p.name()]
        assert broker, "s2 tui did not start its mosquitto"
        read(time.monotonic() + 3)  # let the app come up fully
        os.kill(pid, sig)
        if sig == signal.SIGHUP:
            os.close(fd)
        else:
            read(time.monotonic() + 20)
        rc, pid = wait_exit(pid), 0  # reaped
        assert rc == 0
        psutil.wait_procs(broker, timeout=5)
        assert not any(p.is_running() for p in broker), "the demo's mosquitto outlived s2 tui"
        assert not list(tmp.iterdir())
        if sig == signal.SIGTERM:
            text = out.decode(errors="replace")
            assert "s2 tui: stopped" in text and "Traceback" not in text
            assert "\x1b[?1049l" in text  # the alternate screen left: the terminal is given back
    finally:
        for p in broker:
            with contextlib.suppress(psutil.Error):
                p.kill()
        if pid:
            with contextlib.suppress(ProcessLookupError, ChildProcessError):
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
        with contextlib.suppress(OSError):
            os.close(fd)


def test_batch_command_interrupted(command, tmp_path):
    """A batch command (`s2 data gestures`) ended by SIGTERM: "interrupted", exit 130, no partial file."""
    out = tmp_path / "gestures"
    c = command("data", "gestures", "--subjects", "5", "--duration-s", "1", "--lightings", "1", "--out", str(out))
    deadline = time.monotonic() + 60
    while not list(out.rglob("*.npy")) and time.monotonic() < deadline:
        assert c.proc.poll() is None, "".join(c.err)
        time.sleep(0.05)
    rc, _, err = c.stop(signal.SIGTERM)
    assert rc == 130 and "s2: interrupted" in err, err
    assert list(out.rglob("*.npy")) and not list(out.rglob("*.tmp.npy"))


def test_a_signal_ignored_from_the_start_stays_ignored():
    """Under nohup (SIGHUP ignored) SIGHUP stays ignored; SIGTERM and SIGHUP otherwise go where Ctrl-C goes."""
    from stream.signals import stop_on_signals

    before = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        stop_on_signals()
        assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
        assert signal.getsignal(signal.SIGTERM) not in (signal.SIG_DFL, signal.SIG_IGN, before[signal.SIGTERM])
        with pytest.raises(KeyboardInterrupt):  # in plain code: KeyboardInterrupt, as Ctrl-C
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(1)
    finally:
        for s, h in before.items():
            signal.signal(s, h)


def test_stream_generation_in_several_processes_stops_them_at_once(command, tmp_path):
    """`s2 data gestures --continuous --jobs 2`: SIGTERM while two processes render stops them now, not after
    their streams (a 30 s stream is seconds of a core): exit 130 with one line, no process, no partial file."""
    out = tmp_path / "data"
    c = command("data", "gestures", "--continuous", "--streams", "4", "--stream-s", "30", "--jobs", "2",
                "--out", str(out))
    deadline = time.monotonic() + 60
    while sum("spawn_main" in " ".join(p.cmdline()) for p in psutil.Process(c.proc.pid).children()) < 2:
        assert time.monotonic() < deadline and c.proc.poll() is None, "".join(c.err)
        time.sleep(0.05)
    t0 = time.monotonic()
    rc, _, err = c.stop(signal.SIGTERM)
    assert time.monotonic() - t0 < 5
    assert rc == 130 and err.strip().splitlines()[-1] == "s2: interrupted", err
    assert not list(out.rglob("*.tmp.npy"))
