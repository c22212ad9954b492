"""Inputs for `s2 node run`: text through the model's vocabulary, event files and DVSGesture folders binned.

The corpus, event-file readers and binning live in sources/ (other branches): they are imported here lazily,
and their absence is a one-line error.
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
    corpus = config.get("corpus") or (config.get("data") or {}).get("corpus")
    if not corpus:
        raise S2NodeError("the model config names no 'corpus'; use --text FILE")
    try:
        from sources.corpora import corpus_path
    except ImportError as e:
        raise S2NodeError("--split needs sources.corpora (run `s2 data fetch`), or use --text FILE") from e
    path = corpus_path(corpus, args.split, args.data_dir or os.environ.get("S2_DATA_DIR"))
    if not Path(path).is_file():
        raise S2NodeError(f"{path}: corpus split not found (run `s2 data fetch`)")
    return tokenize(Path(path).read_text(encoding="utf-8"), config)


def _binner():
    try:
        from sources.binning import bin_events
    except ImportError as e:
        raise S2NodeError("gesture inputs need sources.binning (the gestures branch)") from e
    return bin_events


def _bin(events: np.ndarray, config: dict[str, Any]) -> np.ndarray:
    out = _binner()(events, config["input"])
    x = out[0] if isinstance(out, tuple) else out
    x = np.asarray(x, np.float32).reshape(len(x), -1)
    if x.shape[1] != config["layers"][0]["input_size"]:
        raise S2NodeError(f"binning gives {x.shape[1]} inputs, the model takes {config['layers'][0]['input_size']}")
    return x


def gesture_samples(args: argparse.Namespace, config: dict[str, Any]) -> list[tuple[np.ndarray, int | None]]:
    if args.events:
        try:
            from sources.files import read_events
        except ImportError as e:
            raise S2NodeError("--events needs sources.files (the files branch)") from e
        return [(_bin(read_events(args.events), config), None)]
    return [(_bin(ev, config), label) for ev, label in read_dvsgesture_dir(Path(args.data))]


def read_dvsgesture_dir(root: Path):
    """tonic's DVSGesture layout: <user_lighting>/<class index>.npy, rows (x, y, p, t in ms... or µs)."""
    from sources.events import make_events

    files = sorted(p for p in root.rglob("*.npy") if p.stem.isdigit())
    if not files:
        raise S2NodeError(f"{root}: no <class>.npy recordings found (tonic DVSGesture layout)")
    for f in files:
        try:
            a = np.load(f, allow_pickle=False)
        except (OSError, ValueError) as e:
            raise S2NodeError(f"{f}: cannot read: {e}") from e
        if a.dtype.names:  # already structured
            yield a, int(f.stem)
            continue
        t = a[:, 3].astype(np.float64)
        if t.size and t.max() < 1e5:  # tonic stores ms and multiplies by 1000 on load
            t = t * 1000
        yield make_events(t.astype(np.int64), a[:, 0], a[:, 1], a[:, 2]), int(f.stem)
