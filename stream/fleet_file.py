"""What a multi-stream `s2 run` serves: one `StreamSpec` per stream, from `--source ID=URL` or a TOML fleet file.

A fleet file (read with the standard tomllib) holds an optional [defaults] table and one [[stream]] table per
stream; a stream's keys override [defaults], which override the command line's options:

    [defaults]
    model = "models/gesture-egru"

    [[stream]]
    id = "door"
    source = "udp://0.0.0.0:7777"
    sensor = "346x260"

Relative paths in a fleet file (model, file sources) are relative to the file's folder. Everything is checked
here, so that a bad file is one line naming the stream and the key before anything starts.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from sources.errors import SourceError
from sources.events import SensorSize
from sources.live import IDLE_S
from sources.live.udp import FORMATS
from sources.sensor_map import SensorMap, parse_sensor
from stream.defaults import DEFAULT_GESTURE_MODEL
from stream.errors import PipelineError

ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,31}")  # one topic level, safe in a node id and a shell
LIVE = ("udp", "dv", "synthetic")


class FleetError(PipelineError):
    """A stream list that cannot be served: one line naming where (file, stream) and what."""


@dataclass(frozen=True)
class StreamSpec:
    """One stream: its id, its source (udp://HOST:PORT, dv://HOST:PORT, synthetic, or an event file to replay)
    and how it is served."""

    id: str
    source: str
    model: str = DEFAULT_GESTURE_MODEL
    sensor: SensorSize | None = None  # the source's sensor (None: the file's own, or the model's)
    sensor_map: SensorMap = field(default_factory=SensorMap)
    window_s: float | None = None  # gesture readout window (None: the model file's; 0: since the start)
    speed: float = 1.0  # files: replay speed factor (0: as fast as possible)
    loop: bool = False  # files: start again at the end
    frames: bool = True  # publish event frames for the UI
    buffer: int = 256  # batches queued per stream; live sources drop the oldest beyond
    idle_s: float = IDLE_S  # udp/dv: wall time without events after which bins close with the wall clock
    seed: int | None = None  # synthetic: the gesture sequence (default: the stream's position)

    @property
    def kind(self) -> str:
        """"udp", "dv", "synthetic" or "file"."""
        if "://" in self.source:
            return self.source.split("://", 1)[0]
        return self.source if self.source in ("synthetic", "text") else "file"

    def address(self) -> tuple[str, int, str]:
        """udp/dv: (host, port, udp format)."""
        u = urlsplit(self.source)
        fmt = (parse_qs(u.query).get("format") or ["spif"])[0]
        return u.hostname or "", u.port or 0, fmt


OPTIONS = tuple(f.name for f in fields(StreamSpec) if f.name not in ("id", "source"))


def split_source(text: str) -> tuple[str | None, str]:
    """"door=udp://h:p" -> ("door", "udp://h:p"); "udp://h:p?format=faery" -> (None, ...): the text before the first
    "=" is an id only when it looks like one (a URL or a path has ":" or "/" there)."""
    sid, eq, rest = text.partition("=")
    return (sid, rest) if eq and ID_RE.fullmatch(sid) else (None, text)


def from_sources(texts: list[str], defaults: dict[str, Any]) -> list[StreamSpec]:
    """Specs of repeated --source ID=URL options, each with the command line's `defaults`."""
    out = []
    for n, text in enumerate(texts):
        sid, source = split_source(text)
        if sid is None:
            raise FleetError(f"--source {text!r}: with several sources give each an id, --source ID=URL "
                             "(ID: letters, digits, _ and -, up to 32)")
        out.append(_spec({**defaults, "id": sid, "source": source}, f"--source {text}", n))
    return _check_fleet(out, "--source")


def read_fleet(path: str | Path, defaults: dict[str, Any]) -> list[StreamSpec]:
    """Specs of a TOML fleet file; FleetError (one line) for a file that is missing, not TOML, or not a fleet."""
    p = Path(path)
    try:
        doc = tomllib.loads(p.read_text(encoding="utf-8"))
    except OSError as e:
        raise FleetError(f"{p}: {e.strerror or e}") from e
    except UnicodeDecodeError as e:
        raise FleetError(f"{p}: not UTF-8 text") from e
    except tomllib.TOMLDecodeError as e:
        raise FleetError(f"{p}: not valid TOML ({e})") from e
    extra = sorted(set(doc) - {"defaults", "stream"})
    if extra:
        raise FleetError(f"{p}: unknown top-level key {extra[0]!r} (a fleet file holds [defaults] and [[stream]])")
    base = doc.get("defaults", {})
    if not isinstance(base, dict):
        raise FleetError(f"{p}: defaults must be a table, [defaults]")
    _known(base, OPTIONS, f"{p}: [defaults]")
    streams = doc.get("stream")
    if not isinstance(streams, list) or not streams or not all(isinstance(s, dict) for s in streams):
        raise FleetError(f"{p}: no streams (add one [[stream]] table with id and source per stream)")
    out = []
    for n, table in enumerate(streams):
        where = f"{p}: stream {n + 1}" + (f" ({table['id']!r})" if isinstance(table.get("id"), str) else "")
        _known(table, ("id", "source", *OPTIONS), where)
        for key in ("id", "source"):
            if key not in table:
                raise FleetError(f"{where}: missing {key!r}")
        values = {**defaults, **_relative(base, p.parent), **_relative(table, p.parent)}
        out.append(_spec(values, where, n))
    return _check_fleet(out, str(p))


def _known(table: dict[str, Any], keys: tuple[str, ...], where: str) -> None:
    for k in table:
        if k not in keys:
            raise FleetError(f"{where}: unknown key {k!r} (known: {', '.join(keys)})")


def _relative(table: dict[str, Any], folder: Path) -> dict[str, Any]:
    """The table with its relative model and file-source paths taken from `folder` (the fleet file's)."""
    out = dict(table)
    for key in ("model", "source"):
        v = out.get(key)
        if isinstance(v, str) and v and "://" not in v and v not in ("synthetic", "text") and not Path(v).is_absolute():
            out[key] = str(folder / v)
    return out


def _spec(values: dict[str, Any], where: str, position: int) -> StreamSpec:
    """A StreamSpec from raw values (TOML or the command line), each checked with a one-line error."""
    v = dict(values)
    sid, source = v.pop("id"), v.pop("source")
    if not isinstance(sid, str) or not ID_RE.fullmatch(sid):
        raise FleetError(f"{where}: id {sid!r}: use letters, digits, _ and - (up to 32, starting with a letter "
                         "or digit)")
    if not isinstance(source, str) or not source:
        raise FleetError(f"{where}: source must be udp://HOST:PORT, dv://HOST:PORT, synthetic or a file path")
    kw: dict[str, Any] = {}
    for key, raw in v.items():
        if raw is None:
            continue
        kw[key] = _value(key, raw, f"{where}: {key}")
    spec = StreamSpec(sid, source, **kw)
    _check_source(spec, where)
    if spec.kind == "synthetic" and spec.seed is None:
        spec = replace(spec, seed=position)
    return spec


def _value(key: str, raw: Any, where: str) -> Any:
    """One option's value, checked against its kind."""
    try:
        if key == "model":
            if not isinstance(raw, str) or not raw:
                raise FleetError(f"{where}: must be a path")
            return raw
        if key == "sensor":
            return raw if isinstance(raw, SensorSize) else parse_sensor(_str(raw, where))
        if key == "sensor_map":
            return raw if isinstance(raw, SensorMap) else SensorMap.parse(_str(raw, where))
    except SourceError as e:
        raise FleetError(f"{where}: {e}") from e
    if key in ("window_s", "speed", "idle_s"):
        if isinstance(raw, bool) or not isinstance(raw, int | float) or not raw >= 0 or raw == float("inf"):
            raise FleetError(f"{where}: must be a number, 0 or more")
        return float(raw)
    if key in ("loop", "frames"):
        if not isinstance(raw, bool):
            raise FleetError(f"{where}: must be true or false")
        return raw
    if key in ("buffer", "seed"):
        if isinstance(raw, bool) or not isinstance(raw, int) or raw < (1 if key == "buffer" else 0):
            raise FleetError(f"{where}: must be an integer{' above 0' if key == 'buffer' else ', 0 or more'}")
        return raw
    raise FleetError(f"{where}: unknown key")


def _str(raw: Any, where: str) -> str:
    if not isinstance(raw, str):
        raise FleetError(f"{where}: must be a string")
    return raw


def _check_source(spec: StreamSpec, where: str) -> None:
    kind = spec.kind
    if kind == "text":
        raise FleetError(f"{where}: text is served alone (s2 run --source text)")
    if "://" in spec.source and kind not in LIVE:
        raise FleetError(f"{where}: source {spec.source!r}: use udp://HOST:PORT, dv://HOST:PORT, synthetic or a "
                         "file path")
    if kind in ("udp", "dv"):
        u = urlsplit(spec.source)
        try:
            port = u.port
        except ValueError:
            port = None
        if not u.hostname or port is None:
            raise FleetError(f"{where}: source {spec.source!r}: expected {kind}://HOST:PORT")
        fmt = spec.address()[2]
        if kind == "udp" and fmt not in FORMATS:
            raise FleetError(f"{where}: source {spec.source!r}: udp format {fmt!r} unknown (use one of "
                             f"{', '.join(FORMATS)})")


def _check_fleet(specs: list[StreamSpec], where: str) -> list[StreamSpec]:
    """Ids unique; no two streams listening on one address."""
    seen: dict[str, int] = {}
    for s in specs:
        if s.id in seen:
            raise FleetError(f"{where}: stream id {s.id!r} given twice")
        seen[s.id] = 1
    bound: dict[tuple[str, str, int], str] = {}
    for s in specs:
        if s.kind == "udp":
            host, port, _ = s.address()
            other = bound.setdefault(("udp", host, port), s.id)
            if other != s.id and port != 0:
                raise FleetError(f"{where}: streams {other!r} and {s.id!r} both listen on udp://{host}:{port}")
    return specs
