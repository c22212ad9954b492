"""Bridged brokers: mosquitto's own bridge, configured so that an edge broker forwards s2/v1/ to a central one.

The edge's mosquitto keeps a persistent session (cleansession false) on the central broker and forwards every
s2/v1/ message out with QoS 1, and the central's in/text and in/control back in, so a UI on the central broker
sees and steers the nodes of every edge. While the central broker is away, the edge queues the QoS-1 messages
for it (persistence on, bounded by max_queued_messages / max_queued_bytes) and sends them once it is back.
"""

from __future__ import annotations

import re
import socket
from dataclasses import dataclass

from stream import schema
from stream.errors import BrokerError

# What crosses the bridge: everything the nodes publish goes out; only the steering topics come in, so a
# message never travels back to the broker it came from
BRIDGE_TOPICS = (("s2/v1/#", "out"), ("s2/v1/+/in/text", "in"), ("s2/v1/+/in/control", "in"))
BRIDGE_QOS = 1
RESTART_BASE_S, RESTART_CAP_S = 1, 10  # mosquitto retries a lost bridge with backoff between these
KEEPALIVE_S = 10  # a central broker that went silent is noticed within 1.5x this
MAX_QUEUED_BYTES = 256 * 1024 * 1024  # per client (the bridge is one): memory stays bounded while central is away


@dataclass(frozen=True, repr=False)
class Bridge:
    """One bridge connection from the local broker to a remote one (credentials from the URL or given)."""

    url: schema.BrokerURL
    username: str | None = None
    password: str | None = None
    cafile: str | None = None  # TLS: verify the remote against this CA file (default: the system's CAs)
    client_id: str = ""  # the bridge's client id on the remote broker: stable, so its session survives restarts

    @classmethod
    def parse(cls, url: str, password: str | None = None, cafile: str | None = None,
              client_id: str = "") -> Bridge:
        """A bridge to `url` (mqtt:// or mqtts://); `password` (e.g. from a file) serves a URL without one."""
        try:
            u = schema.BrokerURL.parse(url)
        except schema.BrokerURLError as e:
            raise BrokerError(url, e.why) from e
        pw = u.password or password
        if pw and not u.username:
            raise BrokerError(url, "a bridge password needs a user name in the URL (mqtt://user@host)")
        if cafile is not None and not u.tls:
            raise BrokerError(url, f"CA file {cafile} given for a bridge without TLS (use mqtts://)")
        return cls(u, u.username, pw, cafile, client_id)

    def __repr__(self) -> str:  # never shows the password
        return f"Bridge({str(self.url)!r}, cafile={self.cafile!r}, client_id={self.client_id!r})"

    def conf(self, name: str) -> str:
        """The mosquitto.conf section of this bridge (it holds the password: the file must stay private)."""
        lines = [
            f"connection {name}",
            f"address {self.url.host}:{self.url.port}",
            f"remote_clientid {self.client_id or name}",
            "cleansession false",  # the central broker keeps our session and the messages queued for it
            "try_private true",  # tells a mosquitto at the other end it is a bridge (loop detection)
            f"keepalive_interval {KEEPALIVE_S}",
            f"restart_timeout {RESTART_BASE_S} {RESTART_CAP_S}",
            "start_type automatic",
            "notifications false",  # no $SYS messages retained on someone else's broker
            *(f"topic {t} {direction} {BRIDGE_QOS}" for t, direction in BRIDGE_TOPICS),
        ]
        if self.username:
            lines.append(f"remote_username {_conf_value(self.username, 'user name')}")
        if self.password:
            lines.append(f"remote_password {_conf_value(self.password, 'password')}")
        if self.url.tls:
            lines.append(f"bridge_cafile {_conf_value(self.cafile, 'CA file')}" if self.cafile
                         else "bridge_capath /etc/ssl/certs")
            lines.append("bridge_insecure false")  # the remote's certificate and host name are verified
        return "\n".join(lines) + "\n"


def _conf_value(text: str, what: str) -> str:
    """A value mosquitto.conf reads whole: one line, no leading or trailing blanks (it cannot quote)."""
    if not text or "\n" in text or "\r" in text or text != text.strip():
        raise BrokerError("mqtt://bridge", f"the bridge {what} cannot go into mosquitto.conf "
                          "(empty, a line break, or leading/trailing blanks)")
    return text


def bridge_client_id(port: int, index: int = 0) -> str:
    """A client id for this machine's bridge number `index` from the broker on `port`, the same at every start."""
    host = re.sub(r"[^A-Za-z0-9_.-]", "-", socket.gethostname())[:40] or "host"
    return f"s2-bridge-{host}-{port}" + (f"-{index}" if index else "")


def bridges_conf(bridges: list[Bridge], port: int) -> str:
    """The bridge sections of a mosquitto.conf for the broker on `port`."""
    out = []
    for i, b in enumerate(bridges):
        if not b.client_id:
            b = Bridge(b.url, b.username, b.password, b.cafile, bridge_client_id(port, i))
        out.append(b.conf(f"s2-bridge-{i}"))
    return "".join(out)
