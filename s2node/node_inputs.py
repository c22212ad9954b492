"""Inputs for `s2 node run`: text through the model's vocabulary, event files and DVSGesture folders binned.

The corpus, event-file readers and binning live in sources/; each is imported only by the input kind that needs it.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

import numpy as np

from s2node.errors import S2NodeError


def lm_tokens(args: argparse.Namespace, config: dict[str, Any]) -> tuple[np.ndarray, int]:
    from s2node.node_run import tokenize

    if args.text:
        try:
            text = Path(args.text).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise S2NodeError(f"{args.text}: cannot read text: {e}") from e
        return tokenize(text, config)
    # as `s2 eval`: the corpus the model was trained on, else PTB (word) or Shakespeare (char)
    corpus = config.get("corpus") or (config.get("training") or {}).get("corpus")
    corpus = corpus or ("ptb" if config["level"] == "word" else "shakespeare")
    from sources.corpora import corpus_path

    path = corpus_path(corpus, args.split, args.data_dir or os.environ.get("S2_DATA_DIR"))
    if not Path(path).is_file():
        raise S2NodeError(f"{path}: corpus split not found (run `s2 data fetch`)")
    return tokenize(Path(path).read_text(encoding="utf-8"), config)


def _bin(events: np.ndarray, config: dict[str, Any]) -> np.ndarray:
    from sources.binning import InputSpec, bin_events

    x = bin_events(events, InputSpec.from_config(config["input"]))
    if x.shape[1] != config["layers"][0]["input_size"]:
        raise S2NodeError(f"binning gives {x.shape[1]} inputs, the model takes {config['layers'][0]['input_size']}")
    return x


def gesture_samples(args: argparse.Namespace, config: dict[str, Any]) -> list[tuple[np.ndarray, int | None]]:
    if args.events:
        from sources.files import read_events

        events, _sensor = read_events(args.events)
        return [(_bin(events, config), None)]
    from sources.gesture_data import iter_dataset

    return [(_bin(ev, config), label) for ev, label, _ in iter_dataset(Path(args.data), "test")]
