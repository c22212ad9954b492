"""`s2 train`, `s2 eval`, `s2 node`: training, evaluation and the emulated chip."""

from __future__ import annotations

import argparse

from s2node import node_cli, train_gesture_cli, train_lm_cli


def register(sub: argparse._SubParsersAction) -> None:
    t = sub.add_parser("train", help="train a language or gesture model", description="Train a model.")
    tsub = t.add_subparsers(dest="task", metavar="TASK", required=True)
    for m in (train_lm_cli, train_gesture_cli):
        m.register(tsub)
    e = sub.add_parser(
        "eval",
        help="evaluate a model file (PyTorch reference) and print metrics",
        description="Evaluate MODEL (NAME.json + NAME.safetensors). Language models: perplexity "
        "(word) or bits per character (char); gesture models: accuracy.",
    )
    e.add_argument("model", help="model file (NAME, NAME.json or NAME.safetensors)")
    e.add_argument("--split", default="test", choices=["train", "valid", "test"])
    e.add_argument("--text", help="language models: evaluate on this text file instead")
    e.add_argument("--data", help="gesture models: a folder in tonic's DVSGesture layout")
    e.add_argument("--json", action="store_true", help="print one JSON object")
    e.add_argument("--max-steps", type=int, default=None, help="stop after this many steps/samples")
    e.add_argument("--data-dir", help="corpus cache (default $S2_DATA_DIR or ~/.cache/s2egru)")
    e.set_defaults(func=_eval)
    node_cli.register(sub)


def _eval(args: argparse.Namespace) -> int:
    import json

    from s2node import modelfile

    config, _ = modelfile.load(args.model)
    if config["task"] == "lm":
        from s2node.eval_lm import evaluate_cli
    else:
        from s2node.eval_gesture import evaluate_cli
    result = evaluate_cli(args, config)
    if args.json:
        print(json.dumps(result))
    else:
        for k, v in result.items():
            print(f"{k:>22}: {v}")
    return 0
