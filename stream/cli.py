"""The `s2` command line: a thin shell over the packages' command modules.

Each package contributes its sub-commands through the `s2egru.commands` entry-point group in pyproject.toml
(`<package>.commands:register`), so no package imports another to reach its commands. Command modules import
only argparse at registration time; heavy imports (torch, textual, aiomqtt) happen inside the command functions
so that `s2 --help` is instant. Process-wide settings (BLAS and torch threads, the GIL switch interval) are made
by the command functions, the program's edge, never by a library (stream.process).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version

COMMAND_GROUP = "s2egru.commands"  # entry points: name = "<package>.commands:register"
_ORDER = ("sources", "s2node", "stream", "tui")  # help lists the packages floor by floor


class _Parser(argparse.ArgumentParser):
    """argparse with a one-line error (no usage dump) and exit status 2."""

    def error(self, message: str):  # type: ignore[override]
        sys.stderr.write(f"{self.prog}: error: {message} (see {self.prog} --help)\n")
        raise SystemExit(2)


def _version() -> str:
    try:
        return version("s2egru")
    except PackageNotFoundError:
        return "0+unknown"


def _contributors() -> list:
    """The register(subparsers) functions of the installed packages' command modules, floor by floor."""
    from importlib.metadata import entry_points

    eps = sorted(entry_points(group=COMMAND_GROUP), key=lambda e: (*_ORDER, e.name).index(e.name))
    if not eps:
        raise SystemExit(f"s2: no commands found (entry-point group {COMMAND_GROUP}); install the package with "
                         "`pip install -e .` or run `make setup`")
    return [e.load() for e in eps]


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="s2",
        description="s2egru: DVS gestures and text through an emulated SpiNNaker 2 node running EGRU, "
        "with MQTT out and a Textual UI.",
    )
    parser.add_argument("--version", action="version", version=f"s2egru {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for register in _contributors():
        register(sub)
    return parser


def user_errors() -> tuple[type[BaseException], ...]:
    """The root errors of our packages: shown as one line, exit status 1, no traceback."""
    from s2node.errors import S2NodeError
    from sources.errors import SourceError
    from stream.errors import PipelineError

    return (SourceError, S2NodeError, PipelineError)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2 if args.command is None and argv is None and len(sys.argv) <= 1 else 0
    from stream.signals import stop_on_signals

    stop_on_signals()  # SIGTERM and SIGHUP end every command as Ctrl-C does (docs/architecture.md, "Stopping")
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        sys.stderr.write("s2: interrupted\n")
        return 130
    except user_errors() as e:
        sys.stderr.write(f"s2 {args.command}: error: {e}\n")
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
