"""MQTT topics and payloads (schema v1). Imports nothing else of ours: tui/ and outside clients rely on it.

Topics: s2/v1/<node>/pred/gesture, .../pred/text, .../stats, .../frame, .../status (retained, last will
"offline"), .../in/text, .../in/control. Every payload is a JSON object with "v" (schema version), "seq" (per-topic
sequence number, so a subscriber can detect loss and duplicates), "t_wall" (publisher wall clock, s since
the epoch) and, where it applies, "t_event_us" (event time of the data that caused it).
"""

from __future__ import annotations

import array
import base64
import json
import sys
import types
import typing
import zlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from typing import Any, ClassVar
from urllib.parse import unquote, urlsplit

SCHEMA_VERSION = 1
PREFIX = f"s2/v{SCHEMA_VERSION}"
DEFAULT_NODE_ID = "n0"  # the node id that replay, run and the demo publish as, and the UI shows first
MAX_PAYLOAD_BYTES = 256 * 1024  # larger messages are refused and counted
MAX_TEXT_BYTES = 4096  # in/text: at most this much UTF-8 per message
INT_MAX = 2**63 - 1  # integers on the wire are 64-bit (what other JSON readers keep exactly); larger ones are refused
NUM_MAX = 1e300  # numbers beyond this are refused too: JSON has no infinity, and arithmetic on them overflows
NODE_ID_MAX = 64  # characters of a node id
SPEED_MIN, SPEED_MAX = 1 / 64, 1024.0  # in/control speed: 0 (as fast as possible) or within these bounds


def mask_url(url: str) -> str:
    """A broker URL as it may be printed: the password (if any) replaced by ***."""
    parts = urlsplit(url if "://" in url else "mqtt://" + url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)
    user = netloc[0].split(":", 1)[0]
    return url.replace(parts.netloc, f"{user}:***@{netloc[1]}", 1)


def is_node_id(node: object) -> bool:
    """A node id is one topic level: 1..64 printable characters, none of / + # (MQTT's separators and wildcards)."""
    return (isinstance(node, str) and 0 < len(node) <= NODE_ID_MAX and node.isprintable()
            and not any(c in node for c in "/+#"))


class PayloadError(ValueError):
    """A message that does not follow schema v1 (malformed JSON, wrong types, oversized, bad UTF-8)."""


class BrokerURLError(ValueError):
    def __init__(self, url: str, why: str) -> None:
        self.url, self.why = url, why
        super().__init__(f"bad broker URL {mask_url(url)!r}: {why}")


@dataclass(frozen=True)
class BrokerURL:
    """How a client reaches the broker: mqtt://[user[:password]@]host[:port] or mqtts://... (TLS)."""

    host: str
    port: int
    tls: bool = False
    username: str | None = None
    password: str | None = None

    @classmethod
    def parse(cls, url: str):
        parts = urlsplit(url if "://" in url else "mqtt://" + url)
        if parts.scheme not in ("mqtt", "mqtts", "tcp", "ssl"):
            raise BrokerURLError(url, f"unsupported scheme {parts.scheme!r} (use mqtt:// or mqtts://)")
        tls = parts.scheme in ("mqtts", "ssl")
        try:
            port = parts.port or (8883 if tls else 1883)
        except ValueError as e:
            raise BrokerURLError(url, "bad port") from e
        if not parts.hostname:
            raise BrokerURLError(url, "no host")
        user = unquote(parts.username) if parts.username else None
        pw = unquote(parts.password) if parts.password else None
        return cls(parts.hostname, port, tls, user, pw)

    def __str__(self) -> str:  # never prints the password
        auth = f"{self.username}@" if self.username else ""
        return f"{'mqtts' if self.tls else 'mqtt'}://{auth}{self.host}:{self.port}"


def topic(node: str, kind: str) -> str:
    """topic("n0", "pred/gesture") -> "s2/v1/n0/pred/gesture"."""
    return f"{PREFIX}/{node}/{kind}"


def parse_topic(t: str) -> tuple[str, str]:
    """"s2/v1/n0/pred/text" -> ("n0", "pred/text"); PayloadError for foreign topics."""
    parts = t.split("/")
    if len(parts) < 4 or "/".join(parts[:2]) != PREFIX:
        raise PayloadError(f"not an s2/v1 topic: {t!r}")
    return parts[2], "/".join(parts[3:])


@dataclass
class Payload:
    KIND: ClassVar[str] = ""
    REQUIRED: ClassVar[tuple[str, ...]] = ()
    seq: int = 0
    t_wall: float = 0.0

    def to_json(self) -> bytes:
        # a shallow dict, nested dataclasses (Status.control) turned into dicts by json's default hook: asdict over
        # the whole payload deep-copies every list, 17 ms per 64 x 64 event frame against 2 ms this way, a core's
        # worth of frames with a dozen streams
        d = {"v": SCHEMA_VERSION, **{f.name: getattr(self, f.name) for f in fields(self)}}
        return json.dumps(d, separators=(",", ":"), allow_nan=False, default=_nested).encode()

    @classmethod
    def from_dict(cls, d: dict[str, Any]):
        known = {f.name: f for f in fields(cls)}
        missing = [n for n in ("seq", "t_wall", *cls.REQUIRED) if n not in d]
        if missing:
            raise PayloadError(f"{cls.KIND}: missing field {missing[0]!r}")
        kwargs = {k: v for k, v in d.items() if k in known}
        obj = cls(**kwargs)
        obj.check()
        return obj

    def check(self) -> None:
        """Every field has its declared type (ints 64-bit, numbers finite, strings valid Unicode), seq >= 0."""
        for name, tp in _field_types(type(self)).items():
            if not _is(getattr(self, name), tp):
                raise PayloadError(f"{self.KIND or 'payload'}: {name} must be {_describe(tp)}")
        if self.seq < 0:
            raise PayloadError(f"{self.KIND}: seq must be a non-negative integer")


def _nested(v: Any) -> Any:
    if is_dataclass(v) and not isinstance(v, type):
        return asdict(v)
    raise TypeError(f"{type(v).__name__} is not JSON serialisable")


def _field_types(cls: type) -> dict[str, Any]:
    hints = _HINTS.get(cls)
    if hints is None:
        hints = _HINTS[cls] = {f.name: typing.get_type_hints(cls)[f.name] for f in fields(cls)}
    return hints


_HINTS: dict[type, dict[str, Any]] = {}


def _int(v: Any) -> bool:
    return type(v) is int and -INT_MAX - 1 <= v <= INT_MAX


def _num(v: Any) -> bool:
    # type() rather than isinstance(): bool is an int; comparisons rather than math.isfinite: a huge int overflows it
    return _int(v) or (type(v) is float and -NUM_MAX <= v <= NUM_MAX)


def _str(v: Any) -> bool:
    if type(v) is not str:
        return False
    try:
        v.encode()  # a lone surrogate ("\ud800" in JSON) is not Unicode text
    except UnicodeEncodeError:
        return False
    return True


def _is(v: Any, tp: Any) -> bool:
    """Whether a decoded JSON value has the declared type (the few forms the payloads use)."""
    if tp is Any:
        return _json_value(v)
    if tp is bool:
        return type(v) is bool
    if tp is int:
        return _int(v)
    if tp is float:
        return _num(v)
    if tp is str:
        return _str(v)
    if isinstance(tp, type) and hasattr(tp, "__dataclass_fields__"):  # a nested object, checked by its own check()
        return isinstance(v, tp)
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is list:
        if type(v) is not list:
            return False
        if args[0] in (int, float) and v:  # frames carry thousands of numbers: check them in bulk
            kinds = {type(x) for x in v}
            if not kinds <= ({int} if args[0] is int else {int, float}):
                return False
            return min(v) >= -NUM_MAX and max(v) <= (INT_MAX if args[0] is int else NUM_MAX) and (
                args[0] is float or min(v) >= -INT_MAX - 1)
        return all(_is(x, args[0]) for x in v)
    if origin in (typing.Union, types.UnionType):
        return any(v is None if a is type(None) else _is(v, a) for a in args)
    raise TypeError(f"no check for {tp!r}")


def _json_value(v: Any) -> bool:
    """Any JSON value whose numbers and strings pass the checks above (bounded depth comes from the parser)."""
    if v is None or type(v) is bool:
        return True
    if type(v) is list:
        return all(_json_value(x) for x in v)
    if type(v) is dict:
        return all(_str(k) and _json_value(x) for k, x in v.items())
    return _num(v) or _str(v)


def _describe(tp: Any) -> str:
    names = {int: "a 64-bit integer", float: "a finite number", str: "a string", bool: "true or false",
             Any: "a JSON value"}
    if isinstance(tp, type) and hasattr(tp, "__dataclass_fields__"):
        return "an object"
    if tp in names:
        return names[tp]
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is list:
        return f"a list of {_describe(args[0]).removeprefix('a ').removeprefix('an ')}s"
    return " or ".join("null" if a is type(None) else _describe(a) for a in args)


def _probs(v: Any, what: str) -> None:
    if not isinstance(v, list) or not all(_num(p) and 0.0 <= p <= 1.0 + 1e-6 for p in v):
        raise PayloadError(f"{what} must be a list of probabilities")


@dataclass
class GesturePrediction(Payload):
    KIND: ClassVar[str] = "pred/gesture"
    t_event_us: int = 0
    label: str = ""
    index: int = 0
    probs: list[float] = field(default_factory=list)  # one per class, in the model's class order
    classes: list[str] = field(default_factory=list)
    step: int = 0  # timestep (bin) index since the recording started

    def check(self) -> None:
        super().check()
        _probs(self.probs, "probs")
        if not isinstance(self.label, str) or not isinstance(self.classes, list):
            raise PayloadError("pred/gesture: label must be a string and classes a list")


@dataclass
class TextPrediction(Payload):
    KIND: ClassVar[str] = "pred/text"
    t_event_us: int = 0
    context: str = ""  # the last characters the model has consumed
    topk: list[list[Any]] = field(default_factory=list)  # [[token, probability], ...] best first
    continuation: str = ""  # the continuation the model writes
    bpc: float | None = None  # running bits per character (or per token for word models)
    decoder: str | None = None  # how the continuation was written, e.g. "nucleus p=0.9 T=0.8" (absent: unknown)

    def check(self) -> None:
        super().check()
        if not isinstance(self.context, str) or not isinstance(self.continuation, str):
            raise PayloadError("pred/text: context and continuation must be strings")
        if not isinstance(self.topk, list) or not all(
            isinstance(p, list) and len(p) == 2 and isinstance(p[0], str) and _num(p[1])
            for p in self.topk
        ):
            raise PayloadError("pred/text: topk must be [[token, probability], ...]")
        if self.bpc is not None and not _num(self.bpc):
            raise PayloadError("pred/text: bpc must be a number or null")


@dataclass
class NodeStats(Payload):
    KIND: ClassVar[str] = "stats"
    model: str = ""
    steps: int = 0
    pe_activity: list[float] = field(default_factory=list)  # per PE (152), fraction of its peak load
    sram_bytes_used: int = 0
    sram_bytes_total: int = 0
    synops_per_s: float = 0.0
    activity_sparsity: float = 0.0
    energy_per_inference_j: float = 0.0
    latency_p50_s: float = 0.0
    latency_p99_s: float = 0.0
    events_in: int = 0
    events_dropped: int = 0
    events_denoised: int = 0  # removed by the model's background-activity filter (not an error: noise)
    malformed_in: int = 0
    reconnects: int = 0  # the publisher's connections to the broker re-established after one was lost


MAX_FRAME_SIDE = 256  # frame: at most this many pixels a side (the node sends at most 64)
FRAME_DTYPES = {"u1": "B", "u2": "H"}  # frame counts: unsigned 8 or 16 bits, little-endian (array typecodes)


def encode_counts(on: Sequence[int], off: Sequence[int]) -> tuple[str, str]:
    """ON then OFF counts -> (dtype, base64 of zlib of the little-endian counts): "u1" when every count fits a
    byte, else "u2" with counts above 65,535 clipped."""
    top = max(max(on, default=0), max(off, default=0))
    dtype = "u1" if top <= 0xFF else "u2"
    if top > 0xFFFF:
        on, off = [min(c, 0xFFFF) for c in on], [min(c, 0xFFFF) for c in off]
    a = array.array(FRAME_DTYPES[dtype], on)  # array() converts (and range-checks) the list at C speed
    a.extend(array.array(FRAME_DTYPES[dtype], off))
    if sys.byteorder == "big":
        a.byteswap()
    # run-length matching only (Z_RLE): as small as the default level on sparse counts, six times faster (the
    # encoder runs on the node's event loop); any inflate reads it
    z = zlib.compressobj(6, zlib.DEFLATED, 15, 8, zlib.Z_RLE)
    return dtype, base64.b64encode(z.compress(a.tobytes()) + z.flush()).decode("ascii")


def decode_counts(dtype: Any, counts: Any, n: int) -> tuple[list[int], list[int]]:
    """The inverse of encode_counts for n pixels; PayloadError for anything else. The inflated size is known from
    n before inflating, and inflating stops there: a small message cannot expand into a large one."""
    if dtype not in FRAME_DTYPES or not isinstance(counts, str):
        raise PayloadError(f"frame: dtype must be one of {', '.join(FRAME_DTYPES)} and counts a base64 string")
    size = 2 * n * (1 if dtype == "u1" else 2)
    try:
        z = zlib.decompressobj()
        raw = z.decompress(base64.b64decode(counts, validate=True), size + 1)
    except (ValueError, zlib.error) as e:  # binascii.Error is a ValueError
        raise PayloadError(f"frame: counts are not base64 of zlib data ({str(e)[:60]})") from e
    if len(raw) != size or not z.eof or z.unconsumed_tail or z.unused_data:
        raise PayloadError(f"frame: counts must inflate to exactly {size} bytes (2 x width x height x {dtype})")
    a = array.array(FRAME_DTYPES[dtype], raw)
    if sys.byteorder == "big":
        a.byteswap()
    values = a.tolist()
    return values[:n], values[n:]


@dataclass
class EventFrame(Payload):
    """ON and OFF event counts per (downsampled) pixel. On the wire the two lists travel compressed, as "dtype" and
    "counts" (encode_counts; docs/mqtt-api.md has a decoder): a 64 x 64 frame of the demo takes 1.7 KB, not 16.5."""

    KIND: ClassVar[str] = "frame"
    REQUIRED: ClassVar[tuple[str, ...]] = ("width", "height", "dtype", "counts")
    t_event_us: int = 0
    width: int = 0
    height: int = 0
    on: list[int] = field(default_factory=list)  # row-major counts, width*height
    off: list[int] = field(default_factory=list)
    event_rate_hz: float = 0.0

    def check(self) -> None:
        super().check()
        n = self.width * self.height if 0 < self.width <= MAX_FRAME_SIDE and 0 < self.height <= MAX_FRAME_SIDE else -1
        if n <= 0 or len(self.on) != n or len(self.off) != n:
            raise PayloadError(f"frame: width and height 1 to {MAX_FRAME_SIDE}, on/off width*height counts each")
        if min(self.on) < 0 or min(self.off) < 0:
            raise PayloadError("frame: counts must be non-negative")

    def to_json(self) -> bytes:
        dtype, counts = encode_counts(self.on, self.off)
        d = {"v": SCHEMA_VERSION, "seq": self.seq, "t_wall": self.t_wall, "t_event_us": self.t_event_us,
             "width": self.width, "height": self.height, "event_rate_hz": self.event_rate_hz,
             "dtype": dtype, "counts": counts}
        return json.dumps(d, separators=(",", ":"), allow_nan=False).encode()

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EventFrame:
        missing = [n for n in ("seq", "t_wall", *cls.REQUIRED) if n not in d]
        if missing:
            raise PayloadError(f"frame: missing field {missing[0]!r}")
        w, h = d["width"], d["height"]
        if not (_int(w) and _int(h) and 0 < w <= MAX_FRAME_SIDE and 0 < h <= MAX_FRAME_SIDE):
            raise PayloadError(f"frame: width and height must be integers from 1 to {MAX_FRAME_SIDE}")
        on, off = decode_counts(d["dtype"], d["counts"], w * h)
        obj = cls(seq=d["seq"], t_wall=d["t_wall"], t_event_us=d.get("t_event_us", 0), width=w, height=h,
                  on=on, off=off, event_rate_hz=d.get("event_rate_hz", 0.0))
        obj.check()
        return obj


CONTROL_RESULT_MAX = 160  # characters of ControlState.last_cmd_result


@dataclass
class ControlState:
    """Status.control: what in/control asked of a node and what is in effect, answered after every command.

    A node that carries this object obeys in/control; one without it (an older node) does not answer."""

    accepts: list[str] = field(default_factory=list)  # the commands this node obeys; others are refused
    paused: bool = False  # in effect: a paused replay releases nothing; a paused live source drops its input
    speed_requested: float | None = None  # replay speed asked for (command line or in/control); 0 = at once
    speed: float | None = None  # achieved: event time advanced per wall second over the last seconds; null
    #                             while nothing was measured (paused, just changed, a live source)
    speed_short: bool = False  # the achieved speed is below 90 % of the request (the machine cannot keep up)
    recording: str | None = None  # the recording playing (a name from Status.recordings)
    dropped_paused: int = 0  # live input dropped while paused (events, or lines of text)
    seq: int = 0  # in/control messages answered so far: a sender sees its command answered when it grows
    last_cmd: str | None = None  # the command last answered (null for a message that named none)
    last_cmd_seq: int | None = None  # that message's own seq, so a sender can match the answer to its request
    last_cmd_result: str | None = None  # "ok" or "refused: <why>"

    @classmethod
    def from_dict(cls, d: Any) -> ControlState:
        if type(d) is not dict:
            raise PayloadError("status: control must be an object or null")
        known = {f.name for f in fields(cls)}
        obj = cls(**{k: v for k, v in d.items() if k in known})
        obj.check()
        return obj

    def check(self) -> None:
        for name, tp in _field_types(type(self)).items():
            if not _is(getattr(self, name), tp):
                raise PayloadError(f"status: control.{name} must be {_describe(tp)}")
        if self.seq < 0:
            raise PayloadError("status: control.seq must be a non-negative integer")


@dataclass
class Status(Payload):
    KIND: ClassVar[str] = "status"
    state: str = "online"  # "online" | "offline"
    node: str = ""
    models: list[str] = field(default_factory=list)
    recordings: list[str] = field(default_factory=list)
    sensor_map: str | None = None  # how the source's sensor meets the gesture model's input, when one is served
    window_s: float | None = None  # the gesture readout's window in seconds (0: since the start), when one is served
    control: ControlState | None = None  # in/control acknowledged (absent from nodes that do not obey it)

    @classmethod
    def from_dict(cls, d: dict[str, Any]):
        if d.get("control") is not None:
            d = {**d, "control": ControlState.from_dict(d["control"])}
        return super().from_dict(d)

    def check(self) -> None:
        super().check()
        if self.control is not None:
            self.control.check()


@dataclass
class TextIn(Payload):
    """A message on in/text. Plain UTF-8 text is accepted too (so `mosquitto_pub -m hello` works)."""

    KIND: ClassVar[str] = "in/text"
    REQUIRED: ClassVar[tuple[str, ...]] = ("text",)
    text: str = ""
    # The utterance rule: a message is an utterance of its own, joined to the context before it by one space
    # unless it starts with whitespace or closing punctuation or the context ends in whitespace. `continues`
    # true (keystroke-wise clients such as the UI) appends the text as it is.
    continues: bool = False

    def check(self) -> None:
        super().check()
        if not isinstance(self.text, str):
            raise PayloadError("in/text: text must be a string")


CONTROL_CMDS = ("pause", "resume", "speed", "recording", "reset")
RESET_TARGETS = (None, "text", "gesture")  # reset: everything the node serves, or only that model


@dataclass
class ControlIn(Payload):
    """A message on in/control: {"cmd": "pause"|"resume"|"speed"|"recording"|"reset", "value": ...}.

    "speed" takes a number >= 0 (0 = as fast as possible), "recording" a name from Status.recordings, "reset"
    optionally what to reset ("text" or "gesture"; all the node serves when absent); the argument goes in
    "value" (as the TUI sends it) or, equivalently, in "speed" / "recording". The node answers in its retained
    Status.control."""

    KIND: ClassVar[str] = "in/control"
    REQUIRED: ClassVar[tuple[str, ...]] = ("cmd",)
    cmd: str = ""
    value: Any = None
    speed: float | None = None
    recording: str | None = None

    def arg(self) -> Any:
        named = {"speed": self.speed, "recording": self.recording}.get(self.cmd)
        return self.value if named is None else named

    def check(self) -> None:
        super().check()
        if self.cmd not in CONTROL_CMDS:
            raise PayloadError(f"in/control: cmd must be one of {CONTROL_CMDS}, not {self.cmd!r}")
        a = self.arg()
        if self.cmd == "speed" and not (_num(a) and (a == 0 or SPEED_MIN <= a <= SPEED_MAX)):
            raise PayloadError(f"in/control: speed must be 0 or between {SPEED_MIN} and {SPEED_MAX:g}")
        if self.cmd == "recording" and not (_str(a) and 0 < len(a) <= 255):
            raise PayloadError("in/control: recording must be a name of 1 to 255 characters")
        if self.cmd == "reset" and a not in RESET_TARGETS:
            raise PayloadError('in/control: reset takes no value, "text" or "gesture"')


KINDS: dict[str, type[Payload]] = {
    c.KIND: c for c in (GesturePrediction, TextPrediction, NodeStats, EventFrame, Status, TextIn, ControlIn)
}


def offline_status(node: str) -> bytes:
    """The last-will payload: retained, so late subscribers see the node is gone."""
    return Status(state="offline", node=node).to_json()


def decode(kind: str, raw: bytes) -> Payload:
    """Bytes on the wire -> a checked payload of `kind`; PayloadError on anything malformed."""
    if kind not in KINDS:
        raise PayloadError(f"unknown payload kind {kind!r}")
    limit = MAX_TEXT_BYTES + 256 if kind.startswith("in/") else MAX_PAYLOAD_BYTES
    if len(raw) > limit:
        raise PayloadError(f"{kind}: payload of {len(raw)} bytes exceeds {limit}")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise PayloadError(f"{kind}: payload is not valid UTF-8") from e
    if kind == "in/text" and not text.lstrip().startswith("{"):
        msg = TextIn(text=text)  # plain text form
    else:
        try:
            d = json.loads(text)
        except json.JSONDecodeError as e:
            raise PayloadError(f"{kind}: malformed JSON ({e.msg})") from e
        except ValueError as e:  # an integer of more digits than Python converts
            raise PayloadError(f"{kind}: malformed JSON (a number too long)") from e
        except RecursionError as e:
            raise PayloadError(f"{kind}: malformed JSON (nested too deep)") from e
        if not isinstance(d, dict):
            raise PayloadError(f"{kind}: payload must be a JSON object")
        if type(d.get("v")) is not int or d["v"] != SCHEMA_VERSION:
            raise PayloadError(f"{kind}: schema version {str(d.get('v'))[:20]!r}, expected {SCHEMA_VERSION}")
        try:
            msg = KINDS[kind].from_dict(d)
        except TypeError as e:
            raise PayloadError(f"{kind}: {e}") from e
    if isinstance(msg, TextIn) and (not _str(msg.text) or len(msg.text.encode()) > MAX_TEXT_BYTES):
        raise PayloadError(f"in/text: text longer than {MAX_TEXT_BYTES} bytes")
    return msg


# --- Text workers (`s2 serve`, `s2 ask`): MQTT 5 request/response on a shared subscription --------------------
# A request goes to s2/v1/lm/<group>/request with the MQTT 5 properties Response Topic and Correlation Data;
# the workers of the group share `$share/<group>/s2/v1/lm/<group>/request`, so the broker hands each request
# to one of them, and the answer goes to the Response Topic with the same Correlation Data.
LM_PREFIX = f"{PREFIX}/lm"
LM_TEXT_MAX = 4096  # characters of a conversation since its last reset; a longer one gets an error answer
LM_TOPK_MAX = 50
LM_CONTINUATION_MAX = 200  # tokens


def lm_request_topic(group: str) -> str:
    """lm_request_topic("g") -> "s2/v1/lm/g/request" (the topic a client publishes on)."""
    return f"{LM_PREFIX}/{group}/request"


def lm_shared_filter(group: str) -> str:
    """The workers' subscription: MQTT 5 shared subscription `$share/<group>/s2/v1/lm/<group>/request`."""
    return f"$share/{group}/{lm_request_topic(group)}"


def lm_answer_topic(group: str, client: str) -> str:
    """Where a client asks its answers to go (its Response Topic): s2/v1/lm/<group>/answer/<client>."""
    return f"{LM_PREFIX}/{group}/answer/{client}"


@dataclass
class LmRequest(Payload):
    """A text request: the conversation's messages since its last reset, in order, each read as the text pipeline
    reads one in/text message, so that any worker can answer it from the text alone (non-empty messages of at
    most LM_TEXT_MAX characters in all)."""

    KIND: ClassVar[str] = "lm/request"
    REQUIRED: ClassVar[tuple[str, ...]] = ("conversation", "text")
    conversation: str = ""  # 1..64 printable characters
    text: list[str] = field(default_factory=list)
    topk: int = 5  # 1..LM_TOPK_MAX next tokens
    continuation: int = 20  # 0..LM_CONTINUATION_MAX tokens of continuation
    continues: bool = False  # True: the messages are pieces of one text (keystrokes), glued as they are

    def check(self) -> None:
        super().check()
        if not (0 < len(self.conversation) <= NODE_ID_MAX and self.conversation.isprintable()):
            raise PayloadError("lm/request: conversation must be 1 to 64 printable characters")
        if not all(self.text):
            raise PayloadError("lm/request: text must be a list of non-empty messages")
        n = sum(len(t) for t in self.text)
        if n > LM_TEXT_MAX:
            raise PayloadError(f"lm/request: conversation of {n} characters exceeds {LM_TEXT_MAX} "
                               "(start a new one)")
        if not 1 <= self.topk <= LM_TOPK_MAX:
            raise PayloadError(f"lm/request: topk must be 1 to {LM_TOPK_MAX}")
        if not 0 <= self.continuation <= LM_CONTINUATION_MAX:
            raise PayloadError(f"lm/request: continuation must be 0 to {LM_CONTINUATION_MAX}")


@dataclass
class LmAnswer(TextPrediction):
    """A worker's answer: the text prediction for the request's conversation (or `error`), the conversation and
    the worker that answered. Its Correlation Data (an MQTT 5 property) is the request's: a second answer with
    the same correlation is a duplicate (a retried request answered twice) and is dropped by the client."""

    KIND: ClassVar[str] = "lm/answer"
    conversation: str = ""
    worker: str = ""
    error: str | None = None  # why the request was refused (no prediction then)
    reused: int = 0  # messages of the text whose state the worker had kept (0: read from the start)

    def prediction(self) -> TextPrediction:
        """The answer as the in-pipeline text model's payload (seq and time left to the caller)."""
        return TextPrediction(context=self.context, topk=self.topk, continuation=self.continuation, bpc=self.bpc,
                              decoder=self.decoder)


KINDS.update({c.KIND: c for c in (LmRequest, LmAnswer)})
