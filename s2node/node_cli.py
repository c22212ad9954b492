"""`s2 node inspect` and `s2 node run`: the compiled placement and the emulated chip on real inputs.

Only argparse at import time; numpy, torch and the node are imported inside the commands.
"""

from __future__ import annotations

import argparse
import json


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="model file (NAME, NAME.json or NAME.safetensors)")
    p.add_argument("--numerics", choices=["fp32", "int8"], default="fp32", help="PE arithmetic (default fp32)")
    p.add_argument("--prune", type=float, default=None, metavar="P", help="magnitude-prune EGRU weights to P")
    p.add_argument("--chip-config", metavar="FILE", help="JSON object overriding ChipSpec fields")
    p.add_argument("--cost-table", metavar="FILE", help="JSON object overriding CostTable fields")
    p.add_argument("--dram", action="store_true", help="spill weights to LPDDR4 when SRAM is not enough")
    p.add_argument("--spread", action="store_true", help="use the spare PEs too (lower latency)")
    p.add_argument("--json", action="store_true", help="print one JSON object")


def register(sub: argparse._SubParsersAction) -> None:
    n = sub.add_parser("node", help="the emulated SpiNNaker 2 node: inspect a placement, run inputs",
                       description="Compile a model onto the emulated SpiNNaker 2 chip and inspect or run it.")
    nsub = n.add_subparsers(dest="node_command", metavar="COMMAND", required=True)
    i = nsub.add_parser("inspect", help="PEs used, SRAM per PE by kind, routing entries, DRAM bytes",
                        description="Compile MODEL and report its placement on the chip.")
    _common(i)
    i.add_argument("--per-pe", action="store_true", help="include every PE's SRAM bytes by kind")
    i.set_defaults(func=_inspect)
    r = nsub.add_parser("run", help="run inputs through the node beside the PyTorch model",
                        description="Run MODEL on the emulated chip: quality, agreement with PyTorch, activity, "
                        "synops, latency, energy, dense-equivalent figures, steps/s.")
    _common(r)
    src = r.add_mutually_exclusive_group(required=True)
    src.add_argument("--split", choices=["train", "valid", "test"], help="language models: corpus split")
    src.add_argument("--text", metavar="FILE", help="language models: a text file")
    src.add_argument("--data", metavar="DIR", help="gesture models: recordings in tonic's DVSGesture layout")
    src.add_argument("--events", metavar="FILE", help="gesture models: one event file (any supported format)")
    r.add_argument("--max-steps", type=int, default=None, help="stop after this many timesteps")
    r.add_argument("--data-dir", help="corpus cache (default $S2_DATA_DIR or ~/.cache/s2egru)")
    r.set_defaults(func=_run)


def _chip_and_costs(args: argparse.Namespace):
    from s2node.chip import ChipSpec
    from s2node.cost import CostTable

    chip = ChipSpec.from_json(args.chip_config) if args.chip_config else ChipSpec()
    table = CostTable.from_json(args.cost_table) if args.cost_table else CostTable()
    return chip, table


def _print(result: dict, as_json: bool) -> None:
    if as_json:
        print(json.dumps(result))
        return
    for k, v in result.items():
        print(f"{k:>28}: {json.dumps(v) if isinstance(v, dict | list) else v}")


def _inspect(args: argparse.Namespace) -> int:
    from s2node import modelfile
    from s2node.compiler import compile_model
    from s2node.spec import ModelSpec

    chip, _ = _chip_and_costs(args)
    config, tensors = modelfile.load(args.model)
    compiled = compile_model(ModelSpec.from_model(config, tensors), chip, args.numerics, prune=args.prune,
                             dram=args.dram, spread=args.spread)
    _print(compiled.report(per_pe=args.per_pe), args.json)
    return 0


def _run(args: argparse.Namespace) -> int:
    from s2node import node_inputs, node_run
    from s2node.models import load_torch_model
    from s2node.runtime import Node

    chip, table = _chip_and_costs(args)
    node = Node.load(args.model, chip, args.numerics, args.prune, dram=args.dram, spread=args.spread,
                     cost_table=table)
    torch_model, config = load_torch_model(args.model)
    if args.prune:  # the reference runs the same pruned weights
        _load_pruned(torch_model, node)
    if config["task"] == "lm":
        if args.data or args.events:
            raise _err("this is a language model: --data/--events are for gesture models; use --text or --split")
        ids, dropped = node_inputs.lm_tokens(args, config)
        result = node_run.run_lm(node, torch_model, ids, args.max_steps)
        result["tokens_dropped"] = dropped
    else:
        if args.text or args.split:
            raise _err("this is a gesture model: --text/--split are for language models; use --events or --data")
        samples = node_inputs.gesture_samples(args, config)
        result = node_run.run_gesture(node, torch_model, samples, args.max_steps)
    result["prune"] = args.prune
    _print(result, args.json)
    return 0


def _load_pruned(torch_model, node) -> None:
    import torch

    tensors = node.spec.to_tensors()
    torch_model.rnn.load_tensors({k: v for k, v in tensors.items() if k.startswith("rnn.")})
    torch.set_grad_enabled(False)


def _err(msg: str):
    from s2node.errors import S2NodeError

    return S2NodeError(msg)
