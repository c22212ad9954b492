"""`s2 train`, `s2 eval`, `s2 node`: training, evaluation and the emulated chip.

The only place s2node/ parses options. Each command turns its options into one typed library call and prints;
only argparse and json are imported at registration time, numpy, torch and the node inside the command
functions. Process-wide settings (torch threads) are made here, at the program's edge, never in the libraries.
"""

from __future__ import annotations

import argparse
import json

LM_PRESETS = ("small", "char", "tiny")  # the keys of s2node.train_lm.PRESETS, without importing torch


def register(sub: argparse._SubParsersAction) -> None:
    t = sub.add_parser("train", help="train a language or gesture model", description="Train a model.")
    tsub = t.add_subparsers(dest="task", metavar="TASK", required=True)
    _register_train_lm(tsub)
    _register_train_gesture(tsub)
    _register_eval(sub)
    _register_node(sub)


def _hidden(text: str) -> tuple[int, ...]:
    from s2node.errors import S2NodeError

    try:
        return tuple(int(h) for h in text.split(","))
    except ValueError as e:
        raise S2NodeError(f"--hidden must be comma-separated integers, not {text!r}") from e


def _print(result: dict, as_json: bool, width: int) -> None:
    if as_json:
        print(json.dumps(result))
        return
    for k, v in result.items():
        print(f"{k:>{width}}: {json.dumps(v) if isinstance(v, dict | list) else v}")


# s2 train lm

def _register_train_lm(tsub: argparse._SubParsersAction) -> None:
    p = tsub.add_parser(
        "lm",
        help="language model on PTB (word) or Shakespeare / PTB characters",
        description="Train a language model and write OUT.json + OUT.safetensors (the best model on the "
        "validation split). Checkpoints go to --ckpt-dir; --resume continues from there.",
    )
    p.add_argument("--corpus", required=True, choices=["ptb", "ptb-char", "shakespeare"])
    p.add_argument("--arch", required=True, choices=["egru", "lstm", "gru"])
    p.add_argument("--preset", default=None, choices=LM_PRESETS,
                   help="recipe (default: small for ptb, char for character corpora)")
    p.add_argument("--out", required=True, help="model file to write, e.g. models/ptb-egru")
    p.add_argument("--epochs", type=int, help="override the preset's epochs")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resume", action="store_true", help="continue from the checkpoint in --ckpt-dir")
    p.add_argument("--ckpt-dir", default="runs", help="checkpoint folder (default runs/)")
    p.add_argument("--max-minutes", type=float, help="stop after this much training time (budget)")
    p.add_argument("--max-batches", type=int, help="stop after this many training batches (equal-data budget)")
    p.add_argument("--max-eval-tokens", type=int, help="cap each validation pass to this many tokens")
    p.add_argument("--hidden", help="layer sizes, e.g. 256,256 (default: the preset's, parameter-matched)")
    p.add_argument("--no-match", action="store_true", help="use the preset's sizes as they are for gru/egru")
    p.add_argument("--data-dir", help="corpus cache (default $S2_DATA_DIR or ~/.cache/s2egru)")
    o = p.add_argument_group("optimiser (override the preset)")
    o.add_argument("--optimizer", choices=["sgd", "adam"], help="optimiser (preset: sgd for ptb, adam for chars)")
    o.add_argument("--lr", type=float, help="learning rate")
    o.add_argument("--clip", type=float, help="gradient-norm clip")
    o.add_argument("--decay-from", type=int,
                   help="first epoch whose lr is divided by --decay (0: divide on a validation plateau)")
    o.add_argument("--decay", type=float, help="lr divisor")
    o.add_argument("--dropout", type=float, help="dropout on the embedding and between layers")
    o.add_argument("--weight-decay", type=float,
                   help="weight decay (AdamW's decoupled form with adam, L2 with sgd; not on thresholds)")
    o.add_argument("--embedding-sgd-lr", type=float,
                   help="with adam: train the embedding and decoder with plain SGD at this lr (e.g. 20) and "
                        "only the recurrent layers with Adam; the lr schedule scales both")
    g = p.add_argument_group("EGRU")
    g.add_argument("--threshold-init", type=float, default=0.1, help="initial threshold of every unit")
    g.add_argument("--threshold-spread", type=float, default=0.0, help="log-normal spread of the initial thresholds")
    g.add_argument("--lr-threshold", type=float, default=1.0, help="threshold lr factor (0 freezes them)")
    g.add_argument("--gamma", type=float, default=0.7, help="pseudo-derivative height")
    g.add_argument("--support", type=float, default=1.0, help="pseudo-derivative 1/half-width")
    g.add_argument("--dropconnect", type=float, default=0.0)
    g.add_argument("--zoneout", type=float, default=0.0)
    g.add_argument("--activity-reg", type=float, default=0.0, help="λ of (firing rate − target)² per layer")
    g.add_argument("--activity-target", type=float, default=0.1, help="target firing rate of the regulariser")
    g.add_argument("--activity-per-unit", action="store_true",
                   help="regularise each unit's firing rate instead of the layer mean (revives silent units)")
    p.add_argument("--init", help="start from this model file's weights (fine-tuning)")
    p.add_argument("--prune", type=float, metavar="P",
                   help="magnitude-prune the recurrent matrices to weight sparsity P (e.g. 0.95) and fine-tune "
                        "with the mask kept; use with --init to prune a trained model")
    p.add_argument("--float16", action="store_true",
                   help="store the finished model's large matrices as float16: half the file (e.g. to ship it)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_train_lm)


def _train_lm(args: argparse.Namespace) -> int:
    import torch

    from s2node.models import EGRUOptions
    from s2node.train_lm import TrainConfig, train

    torch.set_num_threads(args.threads)
    keys = ("optimizer", "lr", "clip", "decay_from", "decay", "dropout", "weight_decay", "embedding_sgd_lr")
    cfg = TrainConfig(
        corpus=args.corpus, arch=args.arch, preset=args.preset or ("small" if args.corpus == "ptb" else "char"),
        epochs=args.epochs, seed=args.seed, max_minutes=args.max_minutes, max_batches=args.max_batches,
        max_eval_tokens=args.max_eval_tokens, hidden=_hidden(args.hidden) if args.hidden else None,
        match_params=not args.no_match, data_dir=args.data_dir,
        egru=EGRUOptions(dropconnect=args.dropconnect, zoneout=args.zoneout, gamma=args.gamma, support=args.support,
                         threshold_init=args.threshold_init, threshold_spread=args.threshold_spread,
                         learn_threshold=args.lr_threshold > 0),
        activity_reg=args.activity_reg, activity_target=args.activity_target,
        activity_per_unit=args.activity_per_unit, lr_threshold=args.lr_threshold,
        init_from=args.init, prune=args.prune, float16=args.float16,
        overrides={k: getattr(args, k) for k in keys if getattr(args, k) is not None},
    )
    summary = train(cfg, args.out, resume=args.resume, ckpt_dir=args.ckpt_dir, progress=not args.quiet)
    print(json.dumps({k: v for k, v in summary.items() if k != "history"}))
    return 0


# s2 train gesture

def _register_train_gesture(tsub: argparse._SubParsersAction) -> None:
    p = tsub.add_parser(
        "gesture",
        help="gesture model on DVS128 Gesture (synthetic or real, tonic layout)",
        description="Bin events (sensor 128x128, --downsample, --bin-us), train a recurrent model with a "
        "trace readout, write OUT.json + OUT.safetensors after every epoch.",
    )
    p.add_argument("--data", help="folder in tonic's DVSGesture layout (default $S2_DATA_DIR/gestures)")
    p.add_argument("--arch", required=True, choices=["egru", "lstm", "gru"])
    p.add_argument("--out", required=True, help="model file to write, e.g. models/gesture-egru")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--hidden", default="128", help="layer sizes, e.g. 128 or 128,128 (default 128)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--window-s", type=float, default=1.5, help="training window per recording (s)")
    p.add_argument("--downsample", type=int, default=4, help="128 -> 128/d pixels per side (default 4)")
    p.add_argument("--bin-us", type=int, default=20_000, help="time bin (default 20000 µs)")
    p.add_argument("--scale", type=float, default=0.25, help="input = counts x scale (default 0.25)")
    p.add_argument("--denoise-us", type=int, default=0, metavar="N",
                   help="background-activity filter before binning: an event passes when one of its 8 neighbour "
                   "pixels had an event in the N µs before it; stored in the model, so eval, node run, replay and "
                   "run apply it too (default 0: off)")
    p.add_argument("--activity-reg", type=float, default=2.0, help="λ x max(0, firing rate - target) (EGRU)")
    p.add_argument("--activity-target", type=float, default=0.1, help="firing rate above which λ applies")
    p.add_argument("--threshold-init", type=float, default=0.1)
    p.add_argument("--stretch", type=float, default=1.0, help="augmentation: random speed in [1/s, s] (default 1)")
    p.add_argument("--shift-cells", type=int, default=2, help="augmentation: random shift in downsampled cells")
    p.add_argument("--max-train", type=int, help="use at most this many recordings per split")
    p.add_argument("--init", help="start from this model file's weights (fine-tuning); with a larger --hidden than "
                   "the file's, its units are kept and new ones added, the output unchanged at the start; with a "
                   "--downsample that is a multiple of the file's, its input weights are pooled onto the coarser grid")
    p.add_argument("--prune", type=float, metavar="P",
                   help="magnitude-prune the recurrent matrices to weight sparsity P and fine-tune with the mask kept")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    p.add_argument("--quiet", action="store_true")
    c = p.add_argument_group("continuous streams (--continuous)")
    c.add_argument("--continuous", action="store_true",
                   help="train on DATA/streams/train (from `s2 data gestures --continuous`): whole streams in chunks "
                   "with the state carried over (truncated BPTT), loss on each step and on the streaming readout")
    c.add_argument("--chunk-s", type=float, default=2.0, help="truncated BPTT length (default 2 s)")
    c.add_argument("--readout-window-s", type=float, default=2.0,
                   help="the streaming readout's window the loss scores (default 2 s); the model file keeps it as "
                   "readout.window_s, the window `s2 replay`, `s2 run`, the UI and `s2 eval --stream` serve by default")
    c.add_argument("--pooled-weight", type=float, default=1.0, help="weight of the streaming-readout loss (default 1)")
    c.add_argument("--onset-weight", type=float, default=0.0, metavar="W",
                   help="with --continuous: W times the streaming readout's loss once more over the first second of "
                        "each gesture, where a new gesture replaces the last one on screen (default 0)")
    c.add_argument("--zoom-min", type=float, default=1.0, metavar="F",
                   help="with --continuous: shrink each training stream about the grid's centre by a factor drawn "
                        "from [F, 1] (smaller or farther subjects; default 1: off)")
    c.add_argument("--thin-min", type=float, default=1.0, metavar="F",
                   help="with --continuous: keep each training event with a probability drawn per stream from "
                        "[F, 1] (dimmer scenes, weaker contrast; default 1: off)")
    c.add_argument("--noise-max", type=float, default=0.0, metavar="N",
                   help="with --continuous: add background activity to each training stream, Poisson counts "
                        "spread evenly over the grid, N' events per bin with N' drawn from [0, N] (a noisier "
                        "sensor: lower signal-to-noise; default 0: off)")
    c.add_argument("--sparse-below", type=float, default=0.0, metavar="N",
                   help="with --continuous: a training stream with fewer than N input events per bin on average "
                        "(after the noise filter) is sparse (default 0: none)")
    c.add_argument("--sparse-repeat", type=int, default=1, metavar="K",
                   help="with --continuous: train on each sparse stream K times per epoch (default 1)")
    c.add_argument("--clips", metavar="DIR",
                   help="also score each epoch on the isolated test clips of this DVSGesture folder")
    c.add_argument("--clip-weight", type=float, default=0.0, metavar="W",
                   help="also train on the isolated training clips of --clips: each chunk's loss adds W times the "
                   "loss of one batch of clip windows (--window-s, --stretch, --shift-cells) (default 0: off)")
    p.set_defaults(func=_train_gesture)


def _train_gesture(args: argparse.Namespace) -> int:
    import sys

    import torch

    from s2node.train_gesture import GestureTrainConfig, train
    from sources.binning import InputSpec
    from sources.gesture_data import default_gesture_dir

    torch.set_num_threads(args.threads)
    cfg = GestureTrainConfig(
        arch=args.arch, hidden=_hidden(args.hidden), epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
        window_s=args.window_s, activity_reg=args.activity_reg if args.arch == "egru" else 0.0,
        activity_target=args.activity_target, threshold_init=args.threshold_init, shift_cells=args.shift_cells,
        stretch=args.stretch, seed=args.seed, max_train=args.max_train, init_from=args.init, prune=args.prune,
    )
    spec = InputSpec(128, 128, args.downsample, args.bin_us, args.scale, denoise_us=args.denoise_us)
    if args.continuous:
        from s2node.train_gesture_stream import StreamTrainConfig, train_streams

        scfg = StreamTrainConfig(chunk_s=args.chunk_s, window_s=args.readout_window_s,
                                 pooled_weight=args.pooled_weight, clip_weight=args.clip_weight,
                                 onset_weight=args.onset_weight, zoom_min=args.zoom_min, thin_min=args.thin_min,
                                 noise_max=args.noise_max,
                                 sparse_below=args.sparse_below, sparse_repeat=args.sparse_repeat)
        result = train_streams(args.data or default_gesture_dir(), args.out, cfg, scfg, spec,
                               progress=not args.quiet, command="s2 " + " ".join(sys.argv[1:]), clips=args.clips)
        print(json.dumps(result["history"][-1]))
        return 0
    result = train(args.data or default_gesture_dir(), args.out, cfg, spec, progress=not args.quiet,
                   command="s2 " + " ".join(sys.argv[1:]))
    print(json.dumps(result["history"][-1]))
    return 0


# s2 eval

def _register_eval(sub: argparse._SubParsersAction) -> None:
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
    e.add_argument("--baseline", metavar="ngram[:N[:kn|wb]]",
                   help="language models: also score a count-based N-gram (default 5, Kneser-Ney) built from the "
                        "model's training split in its vocabulary, on the same tokens")
    e.add_argument("--stream", action="store_true",
                   help="gesture models: score continuous streams (DATA/streams/<split>) per step with the streaming "
                   "readout: accuracy over the last two thirds of each segment, per class, latency to the first "
                   "correct prediction")
    e.add_argument("--window-s", type=float, default=None,
                   help="with --stream: the streaming readout's window (default: the model file's readout.window_s, "
                   "else 2 s, as `s2 replay`/`s2 run` serve it)")
    e.add_argument("--generate", type=int, metavar="N",
                   help="with --stream: score N held-out streams generated for the run (temporary, seed --seed)")
    e.add_argument("--seed", type=int, default=1, help="with --generate: the streams' seed (default 1)")
    e.add_argument("--stream-s", type=float, default=40.0, help="with --generate: seconds per stream (default 40)")
    e.add_argument("--jobs", type=int, default=1, metavar="N",
                   help="with --generate: render N streams at once, in N processes (the same streams; default 1)")
    e.set_defaults(func=_eval)


def _eval(args: argparse.Namespace) -> int:
    import torch

    from s2node import modelfile

    torch.set_num_threads(1)
    config, tensors = modelfile.load(args.model)
    if config["task"] == "lm":
        from s2node.eval_lm import evaluate_lm

        baseline = None
        if args.baseline:
            from s2node.eval_lm import Baseline

            baseline = Baseline.parse(args.baseline)  # a bad spec fails before the model runs
        result = {"model": str(args.model), **evaluate_lm(config, tensors, text_path=args.text, split=args.split,
                                                          max_steps=args.max_steps, data_dir=args.data_dir)}
        if baseline is not None:
            from s2node.eval_lm import ngram_baseline

            b = ngram_baseline(config, baseline, text_path=args.text, split=args.split, max_steps=args.max_steps,
                               data_dir=args.data_dir)
            result.update({"baseline": b["baseline"], "baseline_value": b["value"],
                           "value_over_baseline": result["value"] / b["value"] if b["value"] else None})
    elif args.baseline:
        from s2node.errors import S2NodeError

        raise S2NodeError("--baseline is for language models")
    elif args.stream and args.generate:
        from s2node.eval_gesture import evaluate_generated_streams

        result = {"model": str(args.model), **evaluate_generated_streams(
            config, tensors, streams=args.generate, seed=args.seed, stream_s=args.stream_s, window_s=args.window_s,
            jobs=args.jobs)}
    elif args.stream:
        from s2node.eval_gesture import evaluate_gesture_stream
        from sources.gesture_data import default_gesture_dir

        split = "train" if args.split == "train" else "test"
        result = {"model": str(args.model), **evaluate_gesture_stream(
            config, tensors, data=args.data or default_gesture_dir(), split=split, window_s=args.window_s,
            max_samples=args.max_steps)}
    else:
        from s2node.eval_gesture import evaluate_gesture
        from sources.gesture_data import default_gesture_dir

        result = evaluate_gesture(config, tensors, data=args.data or default_gesture_dir(), split=args.split,
                                  max_samples=args.max_steps)
    _print(result, args.json, width=22)
    return 0


# s2 node inspect | run | report | gpu-bench

PRESETS = ("paper-lm", "paper-gesture")  # the keys of s2node.presets.PRESETS
OPERATING_POINTS = ("0.5V", "0.8V")  # the keys of s2node.chip.OPERATING_POINTS


def _node_options(p: argparse.ArgumentParser, preset: bool = False) -> None:
    if preset:
        p.add_argument("model", nargs="?", help="model file (NAME, NAME.json or NAME.safetensors), or --preset")
        p.add_argument("--preset", choices=PRESETS, help="a published shape, random weights (seeded), no file")
        p.add_argument("--vocab", type=int, help="--preset paper-lm: vocabulary (33278 WikiText-2, 10000 PTB)")
        p.add_argument("--seed", type=int, default=0, help="--preset: seed of the random weights")
    else:
        p.add_argument("model", help="model file (NAME, NAME.json or NAME.safetensors)")
    p.add_argument("--numerics", choices=["fp32", "int8"], default="fp32", help="PE arithmetic (default fp32)")
    p.add_argument("--prune", type=float, default=None, metavar="P", help="magnitude-prune EGRU weights to P")
    p.add_argument("--chip-config", metavar="FILE", help="JSON object overriding ChipSpec fields")
    p.add_argument("--cost-table", metavar="FILE", help="JSON object overriding CostTable fields")
    p.add_argument("--operating-point", choices=OPERATING_POINTS,
                   help="measured DVFS point: clock, voltage and calibrated costs (default 0.8V; presets 0.5V)")
    p.add_argument("--decoder", choices=["pe", "host"],
                   help="where the decoder runs (default host, as the paper)")
    p.add_argument("--embedding", choices=["host", "pe"], default="host",
                   help="language models: where the embedding table is looked up (default host, as the paper)")
    p.add_argument("--layout", choices=["column", "csr"],
                   help="weight storage: column (CSC, work follows events; default) or csr (as the paper; presets)")
    p.add_argument("--dram", action="store_true", help="spill weights to LPDDR4 when SRAM is not enough")
    p.add_argument("--spread", action="store_true", help="use the spare PEs too (lower latency; presets always)")
    p.add_argument("--json", action="store_true", help="print one JSON object")


def _inputs(r: argparse.ArgumentParser, required: bool) -> None:
    src = r.add_mutually_exclusive_group(required=required)
    src.add_argument("--split", choices=["train", "valid", "test"], help="language models: corpus split")
    src.add_argument("--text", metavar="FILE", help="language models: a text file")
    src.add_argument("--data", metavar="DIR", help="gesture models: recordings in tonic's DVSGesture layout")
    src.add_argument("--events", metavar="FILE", help="gesture models: one event file (any supported format)")
    r.add_argument("--data-dir", help="corpus cache (default $S2_DATA_DIR or ~/.cache/s2egru)")


def _register_node(sub: argparse._SubParsersAction) -> None:
    n = sub.add_parser("node", help="the emulated SpiNNaker 2 node: inspect a placement, run inputs, report costs",
                       description="Compile a model onto the emulated SpiNNaker 2 chip and inspect, run or cost it.")
    nsub = n.add_subparsers(dest="node_command", metavar="COMMAND", required=True)
    i = nsub.add_parser("inspect", help="PEs used, SRAM per PE by kind, routing entries, DRAM bytes",
                        description="Compile MODEL (or a --preset) and report its placement on the chip.")
    _node_options(i, preset=True)
    i.add_argument("--per-pe", action="store_true", help="include every PE's SRAM bytes by kind")
    i.set_defaults(func=_node_inspect)
    r = nsub.add_parser("run", help="run inputs through the node beside the PyTorch model",
                        description="Run MODEL on the emulated chip: quality, agreement with PyTorch, activity, "
                        "synops, latency, energy, dense-equivalent figures, steps/s.")
    _node_options(r)
    _inputs(r, required=True)
    r.add_argument("--max-steps", type=int, default=None, help="stop after this many timesteps")
    r.add_argument("--sensor-map", default="scale", metavar="scale|crop|roi=x,y,w,h",
                   help="with --events: how another sensor size reaches the model's input (default scale)")
    r.set_defaults(func=_node_run)
    rep = nsub.add_parser("report", help="the paper's Table II for a model or a preset: chip, dense chip, GPU",
                          description="Power, time and energy per inference on the chip, the dense chip and a "
                          "batch-1 GPU (anchored on the paper's A100), with ratios and their range over the "
                          "assumed constants. A model file runs on its inputs (default: the test split for "
                          "language models; gestures need --events or --data).")
    _node_options(rep, preset=True)
    _inputs(rep, required=False)
    rep.add_argument("--max-steps", type=int, default=280, help="model files: timesteps to measure (default 280)")
    rep.add_argument("--gpu-bench", metavar="FILE", help="a JSON file of `s2 node gpu-bench --json`: its measured "
                     "step and power replace the anchored GPU row")
    rep.add_argument("--plot", metavar="FILE", help="energy per inference against activity and weight sparsity "
                     "(.png or .svg; needs matplotlib)")
    rep.set_defaults(func=_node_report)
    g = nsub.add_parser("gpu-bench", help="measure the PyTorch model's batch-1 step on this machine",
                        description="Time batch-1 steps of MODEL (or a --preset) in PyTorch: CUDA with NVML power "
                        "where present, else the CPU at a stated power.")
    g.add_argument("model", nargs="?", help="model file, or --preset")
    g.add_argument("--preset", choices=PRESETS)
    g.add_argument("--vocab", type=int, help="--preset paper-lm: vocabulary")
    g.add_argument("--steps", type=int, default=200, help="timed steps (default 200)")
    g.add_argument("--device", choices=["auto", "cuda", "cpu"], default="auto")
    g.add_argument("--cpu-power-w", type=float, default=None, help="CPU power to assume (default 65 W)")
    g.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1: batch 1)")
    g.add_argument("--json", action="store_true", help="print one JSON object")
    g.set_defaults(func=_node_gpu_bench)


def _chip_and_costs(args: argparse.Namespace, op: str | None = None):
    """ChipSpec and CostTable: the JSON files over the defaults, then --operating-point's clock and voltage on the
    chip and its calibrated energies under the cost table's overrides."""
    from s2node.chip import ChipSpec
    from s2node.cost import CostTable

    op = args.operating_point or op
    chip = ChipSpec.from_json(args.chip_config) if args.chip_config else ChipSpec()
    if op:
        chip = chip.at_operating_point(op)
    base = CostTable.calibrated(op) if op else CostTable()
    table = CostTable.from_json(args.cost_table, base) if args.cost_table else base
    return chip, table


def _model_or_preset(args: argparse.Namespace):
    """(spec, preset or None) from MODEL or --preset, exactly one of them."""
    from s2node.errors import S2NodeError

    if (args.model is None) == (args.preset is None):
        raise S2NodeError("give either MODEL or --preset NAME")
    if args.preset:
        from s2node.presets import build_preset, get_preset

        return build_preset(args.preset, vocab=args.vocab, seed=getattr(args, "seed", 0)), get_preset(args.preset)
    from s2node import modelfile
    from s2node.spec import ModelSpec

    return ModelSpec.from_model(*modelfile.load(args.model)), None


def _node_inspect(args: argparse.Namespace) -> int:
    from s2node.compiler import compile_model

    spec, preset = _model_or_preset(args)
    chip, _ = _chip_and_costs(args, preset.operating_point if preset else None)
    compiled = compile_model(spec, chip, args.numerics, prune=args.prune, dram=args.dram,
                             spread=args.spread or preset is not None,
                             decoder=args.decoder or (preset.decoder if preset else "host"), embedding=args.embedding,
                             layout=args.layout or (preset.layout if preset else "column"))
    out = compiled.report(per_pe=args.per_pe)
    if preset:
        out = {"preset": preset.name, "vocab": spec.n_outputs if spec.task == "lm" else None, **out}
    _print(out, args.json, width=28)
    return 0


def _node_run(args: argparse.Namespace) -> int:
    import torch

    from s2node import modelfile
    from s2node.node_run import NodeOptions, run_model
    from s2node.runtime import limit_blas_threads

    torch.set_num_threads(1)  # batch 1, small mat-vecs: more threads only contend (s2node.runtime)
    limit_blas_threads(1)

    chip, table = _chip_and_costs(args)
    options = NodeOptions(numerics=args.numerics, prune=args.prune, dram=args.dram, spread=args.spread, chip=chip,
                          cost_table=table, decoder=args.decoder or "host", embedding=args.embedding,
                          layout=args.layout or "column")
    config, tensors = modelfile.load(args.model)
    result = run_model(config, tensors, options, text_path=args.text, split=args.split, data=args.data,
                       events_path=args.events, max_steps=args.max_steps, data_dir=args.data_dir,
                       sensor_map=args.sensor_map)
    _print(result, args.json, width=28)
    return 0


def _node_report(args: argparse.Namespace) -> int:
    from s2node.errors import S2NodeError
    from s2node.node_report import report_model, report_preset
    from s2node.runtime import limit_blas_threads

    limit_blas_threads(1)
    if (args.model is None) == (args.preset is None):
        raise S2NodeError("give either MODEL or --preset NAME")
    sweeps = args.plot is not None
    gpu = _read_json(args.gpu_bench) if args.gpu_bench else None
    if args.preset:
        from s2node.presets import get_preset

        preset = get_preset(args.preset)
        chip, table = _chip_and_costs(args, preset.operating_point)
        out = report_preset(args.preset, chip, table, numerics=args.numerics, decoder=args.decoder,
                            embedding=args.embedding,
                            layout=args.layout, vocab=args.vocab, seed=args.seed, with_sweeps=sweeps, gpu_bench=gpu)
    else:
        from s2node import modelfile

        chip, table = _chip_and_costs(args)
        config, tensors = modelfile.load(args.model)
        out = report_model(config, tensors, chip, table, numerics=args.numerics, decoder=args.decoder or "host",
                           embedding=args.embedding,
                           layout=args.layout or "column", prune=args.prune, dram=args.dram, spread=args.spread,
                           split=args.split, text_path=args.text, events_path=args.events, data=args.data,
                           max_steps=args.max_steps, data_dir=args.data_dir, with_sweeps=sweeps, gpu_bench=gpu)
        out = {"model": str(args.model), **out}
    if sweeps:
        from s2node.report_plot import plot_report

        out["plot"] = str(plot_report(out, args.plot))
        out.pop("sweeps")
    if args.json:
        print(json.dumps(out))
    else:
        print(_table_ii_text(out))
    return 0


def _read_json(path: str) -> dict:
    from s2node.errors import S2NodeError

    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise S2NodeError(f"{path}: not a readable JSON file: {e}") from e
    if not isinstance(data, dict) or "step_s" not in data:
        raise S2NodeError(f"{path}: not the output of `s2 node gpu-bench --json` (no step_s)")
    return data


def _table_ii_text(r: dict) -> str:
    rows = r["rows"]
    lines = [f"one inference: {r['inference']}",
             f"{'':<12}{'power (W)':>12}{'time (s)':>12}{'energy (J)':>12}"]
    for name, label in (("chip", "chip"), ("dense_chip", "dense chip"), ("gpu", "GPU")):
        x = rows[name]
        lines.append(f"{label:<12}{x['power_w']:>12.4g}{x['time_s']:>12.4g}{x['energy_j']:>12.4g}")
    p = r["paper"]
    lines.append(f"{'paper chip':<12}{p['chip']['power_w']:>12.4g}{p['chip']['time_s']:>12.4g}"
                 f"{p['chip']['energy_j']:>12.4g}")
    lines.append(f"{'paper A100':<12}{p['gpu']['power_w']:>12.4g}{p['gpu']['time_s']:>12.4g}"
                 f"{p['gpu']['energy_j']:>12.4g}")
    ra, rg = r["ratios"], r["range_over_assumptions"]
    lines.append(f"GPU/chip energy {ra['gpu_over_chip_energy']:.1f}x (range {rg['gpu_over_chip_energy'][0]:.1f}-"
                 f"{rg['gpu_over_chip_energy'][1]:.1f}; paper {p['gpu_over_chip_energy']}x); chip/GPU time "
                 f"{ra['chip_over_gpu_time']:.2f}x (range {rg['chip_over_gpu_time'][0]:.2f}-"
                 f"{rg['chip_over_gpu_time'][1]:.2f}; paper {p['chip_over_gpu_time']}x); dense/chip energy "
                 f"{ra['dense_over_chip_energy']:.2f}x")
    lines.append(f"{r['pes_used']} PEs, {r['numerics']}, {r['layout']} layout, embedding on {r['host']['embedding']}, "
                 f"decoder on {r['host']['decoder']}, "
                 f"{r['clock_hz'] / 1e6:g} MHz / {r['voltage_v']} V")
    if "plot" in r:
        lines.append(f"plot: {r['plot']}")
    return "\n".join(lines)


def _node_gpu_bench(args: argparse.Namespace) -> int:
    import torch

    from s2node.gpu_bench import CPU_POWER_W, gpu_bench

    torch.set_num_threads(args.threads)
    spec, _ = _model_or_preset(args)
    out = gpu_bench(spec.config, spec.to_tensors(), steps=args.steps, device=args.device,
                    cpu_power_w=args.cpu_power_w if args.cpu_power_w is not None else CPU_POWER_W)
    out = {"model": args.model or args.preset, **out}
    _print(out, args.json, width=20)
    return 0
