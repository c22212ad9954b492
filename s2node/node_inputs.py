"""Inputs for the node runs: text through the model's vocabulary, event files and DVSGesture folders binned.

The corpus, event-file readers and binning live in sources/; each is imported only by the input kind that needs it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from s2node.errors import S2NodeError
from sources.binning import InputSpec
from sources.events import SensorSize
from sources.sensor_map import SensorMap, SensorMapping, recorded_sensor


def lm_token_ids(config: dict[str, Any], *, text_path: str | Path | None = None, split: str = "test",
                 data_dir: str | Path | None = None) -> tuple[np.ndarray, int]:
    """(ids, tokens dropped) of a text file, else of a split of the model's corpus (as `s2 eval` picks it).
    Tokens outside the vocabulary map to unk; a model without unk drops them."""
    from s2node.eval_lm import lm_text
    from sources.text_data import encode

    _, text = lm_text(config, text_path=text_path, split=split, data_dir=data_dir)
    ids, n_outside = encode(text, config)
    return ids, n_outside if config.get("unk") is None else 0


def _bin(events: np.ndarray, config: dict[str, Any]) -> np.ndarray:
    from sources.binning import bin_events

    x = bin_events(events, InputSpec.from_config(config["input"]))
    if x.shape[1] != config["layers"][0]["input_size"]:
        raise S2NodeError(f"binning gives {x.shape[1]} inputs, the model takes {config['layers'][0]['input_size']}")
    return x


def event_file_mapping(config: dict[str, Any], events_path: str | Path, sensor_map: str = "scale") -> SensorMapping:
    """How an event file's sensor meets the gesture model's input (`--sensor-map`, sources.sensor_map)."""
    spec = InputSpec.from_config(config["input"])
    target = SensorSize(spec.width, spec.height)
    return SensorMap.parse(sensor_map).for_sensors(recorded_sensor(events_path, target), target)


def gesture_samples(config: dict[str, Any], *, events_path: str | Path | None = None,
                    data: str | Path | None = None, sensor_map: str = "scale") -> list[tuple[np.ndarray, int | None]]:
    """Binned inputs [T, I] with their labels: one unlabelled event file (its sensor mapped onto the model's input
    by `sensor_map`), or the test split of a DVSGesture folder."""
    if events_path is not None:
        from sources.files import read_events

        events, _sensor = read_events(events_path)
        mapping = event_file_mapping(config, events_path, sensor_map)
        return [(_bin(events if mapping.identity else mapping(events), config), None)]
    if data is None:
        raise S2NodeError("gesture inputs need an event file or a DVSGesture folder")
    from sources.gesture_data import iter_dataset

    return [(_bin(ev, config), label) for ev, label, _ in iter_dataset(Path(data), "test")]
