"""Which event-file format a path holds: by magic bytes first, by extension when the bytes do not say."""

from __future__ import annotations

import os

from sources.errors import SourceError
from sources.files._common import check_file, show_path

# Format name -> (description, extensions). The names are what read_events/iter_events report.
FORMATS: dict[str, tuple[str, tuple[str, ...]]] = {
    "aedat4": ("iniVation AEDAT 4.0 (DV software; frames, IMU and triggers are skipped)", (".aedat4",)),
    "evt3": ("Prophesee EVT 3.0 raw", (".raw", ".evt3", ".evt")),
    "evt2": ("Prophesee EVT 2.0 raw", (".evt2",)),
    "dat": ("Prophesee DAT (CD events)", (".dat",)),
    "es": ("Event Stream (DVS or ATIS; ATIS exposure events are skipped)", (".es",)),
    "csv": ("CSV t,x,y,p (faery's layout; sensor from a 't,x@W,y@H,on' header)", (".csv",)),
    "npy": ("NumPy .npy: EVENT_DTYPE or any t/x/y/p record array, or tonic's N x 4 (x, y, p, t)", (".npy",)),
}
# Formats the writers produce (write_events picks by extension; .raw means EVT3).
WRITABLE = ("aedat4", "evt3", "evt2", "dat", "es", "csv", "npy")

HEADER_BYTES = 64 * 1024


def supported() -> str:
    """One line naming every supported format and its extensions."""
    return "; ".join(f"{name} ({', '.join(ext)})" for name, (_, ext) in FORMATS.items())


def prophesee_header(head: bytes) -> tuple[dict[str, str], int, bool]:
    """Parse the '% key value' lines that open a Prophesee file: (fields, header length, complete?).

    complete is False when the bytes end inside a header line, i.e. the file was cut in its header.
    """
    fields: dict[str, str] = {}
    pos = 0
    while pos < len(head) and head[pos : pos + 1] == b"%":
        nl = head.find(b"\n", pos)
        if nl < 0:
            return fields, len(head), False
        line = head[pos + 1 : nl].decode("latin-1").strip()
        pos = nl + 1
        if line == "end":
            break
        key, _, value = line.partition(" ")
        fields.setdefault(key.lower(), value.strip())
    return fields, pos, True


def prophesee_kind(fields: dict[str, str]) -> str | None:
    evt = fields.get("evt", "")
    fmt = fields.get("format", "").upper()
    if evt.startswith("3") or fmt.startswith("EVT3"):
        return "evt3"
    if evt.startswith("2.1") or fmt.startswith("EVT21"):
        return "evt2.1"
    if evt.startswith("2") or fmt.startswith("EVT2"):
        return "evt2"
    return None


def _looks_like_csv(head: bytes) -> bool:
    """Printable text whose first line is a t/x/y header or at least four numbers, comma/semicolon/tab separated."""
    sample = head[:512]
    if not sample or not all(32 <= b < 127 or b in b"\r\n\t" for b in sample):
        return False
    first = sample.split(b"\n", 1)[0].decode("ascii").strip().lower()
    sep = next((c for c in ",;\t" if c in first), None)
    if sep is None:
        return False
    cells = [c.strip().partition("@")[0] for c in first.split(sep)]
    if len(cells) >= 4 and all(c.lstrip("-").replace(".", "", 1).isdigit() for c in cells):
        return True
    return bool(set(cells) & {"t", "ts", "time", "timestamp"}) and {"x", "y"} <= set(cells)


def detect_format(path: str | os.PathLike) -> str:
    """The format of a file, from its first bytes where they are distinctive, else from its extension."""
    p = check_file(path)
    ext = p.suffix.lower()
    try:
        with open(p, "rb") as f:
            head = f.read(HEADER_BYTES)
    except OSError as e:
        raise SourceError(f"{show_path(p)}: {e.strerror or e}") from e
    if head.startswith(b"#!AER-DAT4"):
        return "aedat4"
    if head.startswith(b"#!AER-DAT"):
        raise SourceError(f"{p}: AEDAT 2/3 is not supported (convert it to AEDAT4 with DV); supported: {supported()}")
    if head.startswith(b"Event Stream"):
        return "es"
    if head.startswith(b"\x93NUMPY"):
        return "npy"
    if head.startswith(b"%"):
        kind = prophesee_kind(prophesee_header(head)[0])
        if kind == "evt2.1":  # faery 0.7.1 panics "not yet implemented"; expelliarmus has no EVT 2.1 either
            raise SourceError(f"{p}: Prophesee EVT 2.1 is not supported (no decoder for it); supported: {supported()}")
        if kind is not None:
            return kind
        # A '%' header naming no EVT version: DAT, unless the extension says raw (old Metavision raw headers
        # carry only date, plugin and serial lines).
        return next((n for n in ("evt3", "evt2") if ext in FORMATS[n][1]), "dat")
    if _looks_like_csv(head):  # plain text never opens a binary format, so this may overrule the extension
        return "csv"
    for name, (_, exts) in FORMATS.items():
        if ext in exts:
            return name
    raise SourceError(f"{p}: unknown event-file format; supported: {supported()}")
