"""The event vocabulary shared by every package: one structured dtype for DVS events, text events."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

# t in microseconds; x, y pixel coordinates; p polarity (1 = ON, 0 = OFF).
EVENT_DTYPE = np.dtype([("t", "<i8"), ("x", "<u2"), ("y", "<u2"), ("p", "i1")])


@dataclass(frozen=True)
class SensorSize:
    """Width and height in pixels, and the number of polarities."""

    width: int
    height: int
    polarities: int = 2

    def as_tuple(self) -> tuple[int, int, int]:
        """tonic's (W, H, P) sensor_size convention."""
        return (self.width, self.height, self.polarities)


DVS128 = SensorSize(128, 128)
DAVIS346 = SensorSize(346, 260)


def make_events(t, x, y, p) -> np.ndarray:
    """Build an EVENT_DTYPE array from four equal-length sequences."""
    t = np.asarray(t)
    ev = np.empty(len(t), dtype=EVENT_DTYPE)
    ev["t"] = t
    ev["x"] = x
    ev["y"] = y
    ev["p"] = np.asarray(p) > 0
    return ev


def empty_events() -> np.ndarray:
    return np.empty(0, dtype=EVENT_DTYPE)


def in_sensor(events: np.ndarray, sensor: SensorSize) -> np.ndarray:
    """Boolean mask of events inside the sensor (out-of-range ones are dropped and counted upstream)."""
    return (events["x"] < sensor.width) & (events["y"] < sensor.height)


class EventBatch(NamedTuple):
    """What every event source yields: a batch of events with a watermark and its release time."""

    events: np.ndarray  # EVENT_DTYPE, times increasing across batches (a looped replay shifts them)
    upto_us: int  # watermark: no later event of this stream has t < upto_us (lets bins close on time)
    t_wall: float  # wall clock (time.time()) at which the batch was released (for end-to-end latency)


@dataclass(frozen=True)
class TextEvent:
    """Typed text arriving at time t_us (µs, wall or event clock of the source). `reset`: the text starts a new
    context (the model forgets what came before), so that a reset is ordered with the text around it.
    `continues`: the text goes on from the text before it (keystrokes), rather than being an utterance of its
    own; `origin` says where it came from (e.g. "stdin"), for whoever answers it."""

    t_us: int
    text: str
    reset: bool = False
    continues: bool = False
    origin: str = ""
