"""The root error of sources/: everything a user can get wrong about inputs."""

from __future__ import annotations


class SourceError(Exception):
    """Bad input file, stream or dataset; the message is one line naming the culprit."""


class CorruptFileError(SourceError):
    def __init__(self, path: str, reason: str, offset: int | None = None) -> None:
        self.path, self.reason, self.offset = path, reason, offset
        where = f" at byte {offset}" if offset is not None else ""
        super().__init__(f"{path}: corrupt or truncated{where}: {reason}")


class DataNotFoundError(SourceError):
    """A dataset or corpus is missing from the cache; the message says which command fetches it."""
