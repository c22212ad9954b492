"""The root error of stream/: pipeline, broker and command-line failures a user can act on."""

from __future__ import annotations


class PipelineError(Exception):
    """One line naming what failed (a broker that cannot be reached, a source that cannot open)."""


class BrokerError(PipelineError):
    def __init__(self, url: str, reason: str) -> None:
        from stream.schema import mask_url  # a password in the URL never reaches a message

        self.url, self.reason = mask_url(url), reason
        super().__init__(f"broker {self.url}: {reason}")
