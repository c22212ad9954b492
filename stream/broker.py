"""Brokers: parsing broker URLs, a managed mosquitto subprocess, and the in-process amqtt fallback.

`s2` without `--broker` starts the embedded default: a local mosquitto when the binary is installed (MQTT 5,
fast), else an in-process amqtt broker (MQTT 3.1.1 only). Both bind to 127.0.0.1 unless told otherwise.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from stream import schema
from stream.bridge import MAX_QUEUED_BYTES, Bridge, bridges_conf
from stream.errors import BrokerError


class BrokerURL(schema.BrokerURL):
    """schema.BrokerURL whose parse errors are BrokerError (one line, exit 1 in the CLI)."""

    @classmethod
    def parse(cls, url: str) -> BrokerURL:
        try:
            return super().parse(url)
        except schema.BrokerURLError as e:
            raise BrokerError(url, e.why) from e


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def wait_port(host: str, port: int, timeout_s: float = 10.0) -> bool:
    """True once something accepts TCP connections on host:port."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.2):
            return True
        time.sleep(0.02)
    return False


def mosquitto_binary() -> str | None:
    return shutil.which("mosquitto") or next(
        (p for p in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto") if os.access(p, os.X_OK)), None
    )


class MosquittoProcess:
    """A mosquitto subprocess on one port, with stop/restart on the same port (for fault tests)."""

    def __init__(self, port: int | None = None, host: str = "127.0.0.1", persistence: bool = False,
                 users: dict[str, str] | None = None, bridges: list[Bridge] | None = None,
                 nodelay: bool = True) -> None:
        """`users` (name -> password): only they may connect (mosquitto_passwd writes the hashed file).
        `bridges`: forward s2/v1/ to these brokers with mosquitto's own bridge (persistence is then on, so what
        is queued for a central broker that is away survives a restart of this one)."""
        binary = mosquitto_binary()
        if binary is None:
            raise BrokerError(f"mqtt://{host}", "mosquitto is not installed (apt-get install mosquitto)")
        self.binary, self.host = binary, host
        self.port = port or free_port(host)
        self._dir = Path(tempfile.mkdtemp(prefix="s2-mosquitto-"))
        self._proc: subprocess.Popen | None = None
        auth = "allow_anonymous true\n"
        if users:
            pw = self._dir / "passwd"
            pw.touch(mode=0o600)
            for name, secret in users.items():
                subprocess.run([shutil.which("mosquitto_passwd") or "mosquitto_passwd", "-b", str(pw), name, secret],
                               check=True, capture_output=True)
            # as root, mosquitto would drop to user "mosquitto", who cannot read our private temp folder
            auth = f"allow_anonymous false\npassword_file {pw}\nuser {getpass.getuser()}\n"
        persistence = persistence or bool(bridges)
        conf = self._dir / "mosquitto.conf"
        conf.touch(mode=0o600)  # a bridge's remote password is written into it
        conf.write_text(
            f"listener {self.port} {self.host}\n{auth}"
            # persistence keeps sessions (subscriptions, queued QoS-1 messages) across stop/restart
            # (as root, mosquitto would drop to user "mosquitto", who cannot write our private temp folder)
            + (f"persistence true\npersistence_location {self._dir}/\n" if persistence else "persistence false\n")
            + (f"user {getpass.getuser()}\n" if persistence and not users else "")
            + "max_queued_messages 100000\nlog_dest stderr\nlog_type error\n"
            # Nagle off towards the subscribers: a message waits for no ACK of the one before (stream/mqtt.py)
            + ("set_tcp_nodelay true\n" if nodelay else "")
            + (f"max_queued_bytes {MAX_QUEUED_BYTES}\n{bridges_conf(bridges, self.port)}" if bridges else "")
        )
        self.bridges = list(bridges or ())
        self._conf = conf

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    @property
    def conf_path(self) -> Path:
        """The generated mosquitto.conf (readable by its owner only: it may hold a bridge password)."""
        return self._conf

    def start(self, timeout_s: float = 10.0) -> MosquittoProcess:
        if self.running:
            return self
        # its log goes to a file: a bridge whose remote is away logs an error at every retry, and a pipe nobody
        # reads would fill up and stall the broker
        log = self._dir / "mosquitto.log"
        with log.open("ab") as err_file:
            self._proc = subprocess.Popen([self.binary, "-c", str(self._conf)], stdout=subprocess.DEVNULL,
                                          stderr=err_file)
        if not wait_port(self.host, self.port, timeout_s):
            exited = self._proc.poll() is not None
            self.stop()
            err = log.read_text(errors="replace").strip().splitlines()[-1:] if exited else []
            why = self._masked(err[0] if err else "")
            raise BrokerError(self.url, f"mosquitto did not start: {why[:200]}")
        return self

    def _masked(self, text: str) -> str:
        for b in self.bridges:
            if b.password:
                text = text.replace(b.password, "***")
        return text

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def stop(self) -> None:
        if self._proc is None:
            return
        if self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(5)
        self._proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def close(self) -> None:
        try:
            self.stop()
        finally:  # a second Ctrl-C or SIGTERM while mosquitto stops still removes the temp dir
            shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> MosquittoProcess:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()


class AmqttBroker:
    """The in-process fallback broker (amqtt; MQTT 3.1.1 only). Use inside a running event loop."""

    def __init__(self, port: int | None = None, host: str = "127.0.0.1") -> None:
        self.host, self.port = host, port or free_port(host)
        self._broker = None

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    async def start(self) -> AmqttBroker:
        from amqtt.broker import Broker

        self._broker = Broker(
            {
                "listeners": {"default": {"type": "tcp", "bind": f"{self.host}:{self.port}"}},
                "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
            }
        )
        try:
            await self._broker.start()
        except Exception as e:  # amqtt raises its own BrokerError or OSError on a taken port
            raise BrokerError(self.url, f"amqtt broker did not start: {e}") from e
        return self

    async def stop(self) -> None:
        if self._broker is not None:
            with contextlib.suppress(Exception):
                await self._broker.shutdown()
            self._broker = None

    async def __aenter__(self) -> AmqttBroker:
        return await self.start()

    async def __aexit__(self, *exc) -> None:
        await self.stop()


def is_loopback(host: str) -> bool:
    """Whether binding to `host` keeps the broker to this machine (127.0.0.0/8, ::1, localhost)."""
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_exposure(host: str, allow_anonymous: bool) -> None:
    """BrokerError unless the embedded (anonymous) broker stays on loopback or the caller accepts the exposure."""
    if not is_loopback(host) and not allow_anonymous:
        raise BrokerError(f"mqtt://{host}", "the embedded broker takes anonymous clients, and on a non-loopback "
                          "address anyone who reaches it could steer the node (in/control, in/text) and read its "
                          "predictions; give --allow-anonymous to accept that, or run a broker with credentials "
                          "(docs/security.md)")


@contextlib.asynccontextmanager
async def embedded_broker(port: int | None = None, host: str = "127.0.0.1", prefer: str = "auto",
                          bridges: list[Bridge] | None = None):
    """Yield the URL of a broker that lives as long as the context: mosquitto if installed, else amqtt.
    `bridges` need mosquitto (amqtt has no bridge): BrokerError without it."""
    if bridges and (prefer == "amqtt" or not mosquitto_binary()):
        why = "the amqtt broker has no bridge" if prefer == "amqtt" else "mosquitto is not installed"
        raise BrokerError(f"mqtt://{host}", f"--bridge needs mosquitto ({why}; apt-get install mosquitto)")
    if prefer in ("auto", "mosquitto") and mosquitto_binary():
        proc = MosquittoProcess(port, host, bridges=bridges)
        try:
            proc.start()
            yield proc.url
        finally:
            proc.close()
    else:
        async with AmqttBroker(port, host) as b:
            yield b.url
