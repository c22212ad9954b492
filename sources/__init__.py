"""Event types, event files, live inputs, text input and training datasets. Depends on nothing of ours."""

from sources.errors import CorruptFileError, DataNotFoundError, SourceError
from sources.events import (
    DAVIS346,
    DVS128,
    EVENT_DTYPE,
    EventBatch,
    SensorSize,
    TextEvent,
    empty_events,
    in_sensor,
    make_events,
)

__all__ = [
    "DAVIS346",
    "DVS128",
    "EVENT_DTYPE",
    "CorruptFileError",
    "DataNotFoundError",
    "EventBatch",
    "SensorSize",
    "SourceError",
    "TextEvent",
    "empty_events",
    "in_sensor",
    "make_events",
]
