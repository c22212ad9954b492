"""python -m tui [--broker URL] [--node ID]: the UI against a running broker (no embedded one here)."""

from __future__ import annotations

import argparse
import sys

from tui.app import DEFAULT_NODE, run_app


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tui", description="The s2egru terminal UI (MQTT subscriber).")
    p.add_argument("--broker", default="mqtt://127.0.0.1:1883", help="broker URL (default mqtt://127.0.0.1:1883)")
    p.add_argument("--node", default=DEFAULT_NODE, help=f"node id to show (default {DEFAULT_NODE})")
    args = p.parse_args(argv)
    try:
        run_app(args.broker, args.node)
    except ValueError as e:  # a bad broker URL
        sys.stderr.write(f"python -m tui: error: {e}\n")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
