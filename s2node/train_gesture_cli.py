"""`s2 train gesture`: train a DVS gesture model (EGRU, LSTM or GRU) on a DVSGesture-layout folder."""

from __future__ import annotations

import argparse


def register(tsub: argparse._SubParsersAction) -> None:
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
    p.add_argument("--activity-reg", type=float, default=2.0, help="λ x max(0, firing rate - target) (EGRU)")
    p.add_argument("--activity-target", type=float, default=0.1, help="firing rate above which λ applies")
    p.add_argument("--threshold-init", type=float, default=0.1)
    p.add_argument("--stretch", type=float, default=1.0, help="augmentation: random speed in [1/s, s] (default 1)")
    p.add_argument("--shift-cells", type=int, default=2, help="augmentation: random shift in downsampled cells")
    p.add_argument("--max-train", type=int, help="use at most this many recordings per split")
    p.add_argument("--init", help="start from this model file's weights (fine-tuning)")
    p.add_argument("--prune", type=float, metavar="P",
                   help="magnitude-prune the recurrent matrices to weight sparsity P and fine-tune with the mask kept")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_train)


def _train(args: argparse.Namespace) -> int:
    import json
    import sys

    import torch

    from s2node.errors import S2NodeError
    from s2node.train_gesture import GestureTrainConfig, train
    from sources.binning import InputSpec
    from sources.gesture_data import default_gesture_dir

    torch.set_num_threads(args.threads)
    try:
        hidden = tuple(int(h) for h in args.hidden.split(","))
    except ValueError as e:
        raise S2NodeError(f"--hidden must be comma-separated integers, not {args.hidden!r}") from e
    spec = InputSpec(128, 128, args.downsample, args.bin_us, args.scale)
    cfg = GestureTrainConfig(
        arch=args.arch, hidden=hidden, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
        window_s=args.window_s, activity_reg=args.activity_reg if args.arch == "egru" else 0.0,
        activity_target=args.activity_target, threshold_init=args.threshold_init, shift_cells=args.shift_cells,
        stretch=args.stretch, seed=args.seed, max_train=args.max_train, init_from=args.init, prune=args.prune,
    )
    if args.prune is not None and not 0.0 <= args.prune < 1.0:
        raise S2NodeError(f"--prune must lie in [0, 1), not {args.prune}")
    command = "s2 " + " ".join(sys.argv[1:])
    result = train(args.data or default_gesture_dir(), args.out, cfg, spec, progress=not args.quiet, command=command)
    print(json.dumps(result["history"][-1]))
    return 0
