"""The `s2` command line. Each package contributes its sub-commands through a `register(subparsers)`.

Sub-command modules import only argparse at registration time; heavy imports (torch, textual, aiomqtt)
happen inside the command functions so that `s2 --help` is instant.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version

# (module, attribute): each provides register(subparsers) adding parsers with set_defaults(func=...).
_CONTRIBUTORS = [
    "sources.cli",
    "s2node.cli",
    "stream.commands",
]


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


def build_parser() -> argparse.ArgumentParser:
    import importlib

    parser = _Parser(
        prog="s2",
        description="s2egru: DVS gestures and text through an emulated SpiNNaker 2 node running EGRU, "
        "with MQTT out and a Textual UI.",
    )
    parser.add_argument("--version", action="version", version=f"s2egru {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in _CONTRIBUTORS:
        importlib.import_module(name).register(sub)
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
