"""The stream package's sub-commands: broker, replay, run, subscribe."""

from __future__ import annotations

import argparse

from stream import broker_cli, pipeline_cli


def register(sub: argparse._SubParsersAction) -> None:
    for m in (broker_cli, pipeline_cli):
        m.register(sub)
