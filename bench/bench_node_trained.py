"""The node on a small *trained* character EGRU: fp32 agreement, int8 and pruning quality loss, measured.

Trains (time-budgeted, seeded, one thread) a 2 x 128 EGRU on the Shakespeare corpus cache (`s2 data fetch`),
then fine-tunes a copy pruned to --prune with `prune_masks`/`apply_masks` (the recipe `s2 train --prune`
uses), and runs the emulated node over the test split beside PyTorch. Prints one JSON object.
Model files go to $S2_DATA_DIR/node-bench/ (not committed).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from s2node import modelfile
from s2node.compiler.prune import apply_masks, prune_masks
from s2node.models import EGRUOptions, LanguageModel, load_torch_model
from s2node.node_run import run_lm
from s2node.runtime import Node, limit_blas_threads
from sources.text_data import encode


def train(model, data: torch.Tensor, seconds: float, masks=None, seed: int = 0) -> int:
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    batch, bptt, steps, t0 = 32, 64, 0, time.time()
    while time.time() - t0 < seconds:
        starts = torch.randint(0, len(data) - bptt - 1, (batch,), generator=g)
        x = torch.stack([data[s:s + bptt] for s in starts])
        y = torch.stack([data[s + 1:s + bptt + 1] for s in starts])
        logits, _, _ = model(x)
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if masks:
            apply_masks(model, masks)
        steps += 1
    model.eval()
    return steps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--train-s", type=float, default=240.0, help="training budget (dense), seconds")
    ap.add_argument("--finetune-s", type=float, default=90.0, help="pruned fine-tuning budget, seconds")
    ap.add_argument("--prune", type=float, default=0.9)
    ap.add_argument("--eval-chars", type=int, default=5000)
    args = ap.parse_args()
    torch.set_num_threads(1)
    limit_blas_threads(1)
    torch.manual_seed(0)
    root = Path(os.environ.get("S2_DATA_DIR", Path.home() / ".cache" / "s2egru"))
    train_txt = (root / "shakespeare" / "shakespeare.train.txt").read_text(encoding="utf-8")
    test_txt = (root / "shakespeare" / "shakespeare.test.txt").read_text(encoding="utf-8")
    vocab = sorted(set(train_txt))
    cfg = {"task": "lm", "arch": "egru", "level": "char", "vocab": vocab, "corpus": "shakespeare",
           "readout": {"source": "y", "trace_alpha": 0.9, "pool": "last"}}
    data = torch.from_numpy(encode(train_txt, cfg)[0])
    out_dir = root / "node-bench"
    opts = EGRUOptions(threshold_init=0.01, gamma=3.6, support=3.6, learn_threshold=False)
    model = LanguageModel("egru", len(vocab), 32, [128, 128], egru=opts)
    n_dense = train(model, data, args.train_s)
    dense_path = modelfile.save(out_dir / "char2x128", {**cfg, "layers": model.rnn.layer_configs()},
                                model.to_tensors())
    masks = prune_masks(model, args.prune)
    n_ft = train(model, data, args.finetune_s, masks=masks, seed=1)
    pruned_path = modelfile.save(out_dir / f"char2x128-p{args.prune}", {**cfg, "layers": model.rnn.layer_configs()},
                                 model.to_tensors())
    ids, _ = encode(test_txt[: args.eval_chars], cfg)
    keys = ("bpc", "bpc_pytorch", "agreement", "activity_sparsity", "synops_per_step", "energy_j_per_token",
            "latency_s_p50", "pes_used", "steps_per_s")
    result: dict = {"train_updates": n_dense, "finetune_updates": n_ft, "eval_tokens": len(ids) - 1}
    runs = [("dense_fp32", dense_path, "fp32", None), ("dense_int8", dense_path, "int8", None),
            ("dense_pruned_no_finetune_fp32", dense_path, "fp32", args.prune),
            (f"finetuned_p{args.prune}_fp32", pruned_path, "fp32", None),
            (f"finetuned_p{args.prune}_int8", pruned_path, "int8", None)]
    for name, path, num, prune in runs:
        tm, _ = load_torch_model(path)
        node = Node.load(path, numerics=num, prune=prune)
        if prune:  # the PyTorch reference runs the same pruned weights
            tm.rnn.load_tensors({k: v for k, v in node.spec.to_tensors().items() if k.startswith("rnn.")})
        r = run_lm(node, tm, ids)
        result[name] = {k: r[k] for k in keys if k in r}
    base = result["dense_fp32"]["bpc"]
    result["int8_bpc_loss_pct"] = 100 * (result["dense_int8"]["bpc"] / base - 1)
    fp = result[f"finetuned_p{args.prune}_fp32"]["bpc"]
    result["pruned_int8_bpc_loss_pct"] = 100 * (result[f"finetuned_p{args.prune}_int8"]["bpc"] / fp - 1)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
