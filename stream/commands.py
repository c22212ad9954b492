"""The stream package's sub-commands: broker (more land with the pipeline: replay, run, subscribe, tui)."""

from __future__ import annotations

import argparse
import importlib


def register(sub: argparse._SubParsersAction) -> None:
    for mod in ("stream.broker_cli", "stream.pipeline_cli", "stream.tui_cli"):
        try:
            m = importlib.import_module(mod)
        except ImportError:
            continue
        m.register(sub)
