"""The root errors of s2node/: bad model files and models that cannot be compiled onto the chip."""

from __future__ import annotations


class S2NodeError(Exception):
    """Root of every error s2node raises on user input."""


class ModelFileError(S2NodeError):
    """A model file is missing, malformed, or does not match the format (one line, naming the culprit)."""

    def __init__(self, path: str, reason: str) -> None:
        self.path, self.reason = path, reason
        super().__init__(f"{path}: {reason}")


class CompileError(S2NodeError):
    """The model cannot be placed on the chip; carries the PE and the bytes over where that applies."""

    def __init__(self, message: str, *, pe: int | None = None, bytes_over: int | None = None) -> None:
        self.pe, self.bytes_over = pe, bytes_over
        super().__init__(message)
