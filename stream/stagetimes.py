"""Where a prediction's latency goes: wall-clock stamps of each pipeline stage, kept for the latest predictions.

Off unless a `StageLog` is given to the pipeline (`PipelineCounters.stages`); when on it costs a few clock reads
and one tuple per prediction (50 per second at 20 ms bins), in a bounded ring. Stamps are `time.time()` so that
they compare with a subscriber's arrival stamps in another process on the same machine.
"""

from __future__ import annotations

import collections
from typing import NamedTuple


class StageTimes(NamedTuple):
    """One prediction's way through the pipeline (wall clock, seconds)."""

    t_event_us: int  # the bin's end in event time: the key a subscriber sees as the payload's t_event_us
    release: float  # the replay (or live source) released the batch holding the bin's last event
    binned: float  # the binner closed the bin and it was handed to the node's worker thread
    step_start: float  # the worker thread began this bin's step
    step_end: float  # ... and finished it
    resume: float  # the event loop took the result back
    publish: float  # the payload was stamped and buffered for MQTT


STAGES = StageTimes._fields[1:]


class StageLog:
    """The StageTimes of the latest `maxlen` predictions (older ones fall out: memory stays bounded)."""

    def __init__(self, maxlen: int = 8192) -> None:
        self.rows: collections.deque[StageTimes] = collections.deque(maxlen=maxlen)

    def add(self, row: StageTimes) -> None:
        self.rows.append(row)

    def __len__(self) -> int:
        return len(self.rows)
