"""Where a broker password comes from: the command line, a file (its first line) or an environment variable."""

from __future__ import annotations

import os
from pathlib import Path

from stream.errors import PipelineError

MAX_PASSWORD_FILE_BYTES = 4096  # a password file is a line, not a disk image
PASSWORD_ENV = "S2_MQTT_PASSWORD"


def resolve_password(password: str | None, password_file: str | None) -> str | None:
    """The password given, else the first line of password_file, else $S2_MQTT_PASSWORD; None if none."""
    if password:
        return password
    if password_file:
        return read_password_file(password_file)
    return os.environ.get(PASSWORD_ENV) or None


def read_password_file(path: str) -> str:
    """The password in `path` (first line); PipelineError naming the file (never its content) if unusable."""
    p = Path(path)
    try:
        with p.open("rb") as f:
            data = f.read(MAX_PASSWORD_FILE_BYTES + 1)
    except OSError as e:
        raise PipelineError(f"--password-file {path!r}: {e.strerror or e}") from e
    if len(data) > MAX_PASSWORD_FILE_BYTES:
        raise PipelineError(f"--password-file {path!r}: longer than {MAX_PASSWORD_FILE_BYTES} bytes")
    try:
        line = data.decode().splitlines()[0] if data else ""
    except UnicodeDecodeError as e:
        raise PipelineError(f"--password-file {path!r}: not UTF-8 text") from e
    if not line:
        raise PipelineError(f"--password-file {path!r}: empty")
    return line
