"""`s2 train lm`: train a word- or character-level language model (EGRU, LSTM or GRU)."""

from __future__ import annotations

import argparse

PRESET_NAMES = ("small", "char", "tiny")


def register(tsub: argparse._SubParsersAction) -> None:
    p = tsub.add_parser(
        "lm",
        help="language model on PTB (word) or Shakespeare / PTB characters",
        description="Train a language model and write OUT.json + OUT.safetensors (the best model on the "
        "validation split). Checkpoints go to --ckpt-dir; --resume continues from there.",
    )
    p.add_argument("--corpus", required=True, choices=["ptb", "ptb-char", "shakespeare"])
    p.add_argument("--arch", required=True, choices=["egru", "lstm", "gru"])
    p.add_argument("--preset", default=None, choices=PRESET_NAMES,
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
    p.set_defaults(func=_train)


def _train(args: argparse.Namespace) -> int:
    import json

    import torch

    from s2node.errors import S2NodeError
    from s2node.models import EGRUOptions
    from s2node.train_lm import TrainConfig, train

    torch.set_num_threads(args.threads)
    preset = args.preset or ("small" if args.corpus == "ptb" else "char")
    try:
        hidden = tuple(int(h) for h in args.hidden.split(",")) if args.hidden else None
    except ValueError as e:
        raise S2NodeError(f"--hidden must be comma-separated integers, not {args.hidden!r}") from e
    keys = ("optimizer", "lr", "clip", "decay_from", "decay", "dropout", "weight_decay", "embedding_sgd_lr")
    overrides = {k: getattr(args, k) for k in keys if getattr(args, k) is not None}
    cfg = TrainConfig(
        corpus=args.corpus, arch=args.arch, preset=preset, epochs=args.epochs, seed=args.seed,
        max_minutes=args.max_minutes, max_batches=args.max_batches, max_eval_tokens=args.max_eval_tokens,
        hidden=hidden, match_params=not args.no_match, data_dir=args.data_dir,
        egru=EGRUOptions(dropconnect=args.dropconnect, zoneout=args.zoneout, gamma=args.gamma, support=args.support,
                         threshold_init=args.threshold_init, threshold_spread=args.threshold_spread,
                         learn_threshold=args.lr_threshold > 0),
        activity_reg=args.activity_reg, activity_target=args.activity_target,
        activity_per_unit=args.activity_per_unit, lr_threshold=args.lr_threshold,
        init_from=args.init, prune=args.prune, overrides=overrides, float16=args.float16,
    )
    if args.prune is not None and not 0.0 <= args.prune < 1.0:
        raise S2NodeError(f"--prune must lie in [0, 1), not {args.prune}")
    summary = train(cfg, args.out, resume=args.resume, ckpt_dir=args.ckpt_dir, progress=not args.quiet)
    print(json.dumps({k: v for k, v in summary.items() if k != "history"}))
    return 0
