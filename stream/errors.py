"""The root error of stream/: pipeline, broker and command-line failures a user can act on."""

from __future__ import annotations


class PipelineError(Exception):
    """One line naming what failed (a broker that cannot be reached, a source that cannot open)."""


class BrokerError(PipelineError):
    def __init__(self, url: str, reason: str) -> None:
        self.url, self.reason = url, reason
        super().__init__(f"broker {url}: {reason}")
