"""Language-model throughput and latency: EGRU vs LSTM vs GRU at equal parameter count, side by side.

Training: tokens/s of forward + backward + SGD step on random tokens (batch x bptt as the preset).
Inference: single-batch streaming latency per token (one token per call, state carried), the node's use.
Prints one JSON object; ratios are relative to the LSTM. Quick by default (~30-60 s on one core).

    python bench/bench_lm.py [--vocab 10000 --emb 200 --hidden 200,200 --train-batches 5 --tokens 200]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import torch
from torch import nn

from s2node.models import LanguageModel
from s2node.train_lm import matched_hidden

ARCHS = ("lstm", "gru", "egru")


def train_tokens_per_s(model: LanguageModel, vocab: int, batch: int, bptt: int, n: int) -> tuple[float, float]:
    """(tokens per wall second, tokens per CPU second of this process): the second is robust to a shared CPU."""
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    model.train()
    x = torch.randint(0, vocab, (n + 1, batch, bptt + 1))
    states = None
    for i in range(n + 1):
        if i == 1:
            t0, c0 = time.perf_counter(), time.process_time()  # the first batch is warm-up
        logits, states, _ = model(x[i, :, :-1], states)
        states = model.rnn.detach(states)
        loss = nn.functional.cross_entropy(logits.reshape(-1, vocab), x[i, :, 1:].reshape(-1))
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 0.25)
        opt.step()
    tokens = n * batch * bptt
    return tokens / (time.perf_counter() - t0), tokens / (time.process_time() - c0)


@torch.no_grad()
def latency_per_token_s(model: LanguageModel, vocab: int, n: int) -> tuple[float, float, float]:
    """(median wall, p99 wall, median CPU) seconds per token, one token per call, after 10 warm-up tokens."""
    model.eval()
    tokens = torch.randint(0, vocab, (n + 10, 1, 1))
    states, times, cpu = None, [], []
    for i in range(n + 10):
        t0, c0 = time.perf_counter(), time.process_time()
        _, states, _ = model(tokens[i], states)
        if i >= 10:
            times.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
    return float(np.median(times)), float(np.percentile(times, 99)), float(np.median(cpu))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--vocab", type=int, default=10000)
    ap.add_argument("--emb", type=int, default=200)
    ap.add_argument("--hidden", default="200,200", help="the LSTM's sizes; GRU/EGRU are parameter-matched")
    ap.add_argument("--batch", type=int, default=20)
    ap.add_argument("--bptt", type=int, default=20)
    ap.add_argument("--train-batches", type=int, default=5)
    ap.add_argument("--tokens", type=int, default=200)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    ref = [int(h) for h in a.hidden.split(",")]
    results = {}
    for arch in ARCHS:
        hidden = matched_hidden(arch, a.vocab, a.emb, ref)
        model = LanguageModel(arch, a.vocab, a.emb, hidden)
        tps, tps_cpu = train_tokens_per_s(model, a.vocab, a.batch, a.bptt, a.train_batches)
        med, p99, med_cpu = latency_per_token_s(model, a.vocab, a.tokens)
        results[arch] = {"hidden": hidden, "params": sum(p.numel() for p in model.parameters()),
                         "train_tokens_per_s": tps, "train_tokens_per_cpu_s": tps_cpu,
                         "infer_latency_ms_per_token_median": med * 1e3,
                         "infer_latency_ms_per_token_p99": p99 * 1e3,
                         "infer_cpu_ms_per_token_median": med_cpu * 1e3}
    base = results["lstm"]
    ratios = {arch: {"train_throughput_vs_lstm": r["train_tokens_per_s"] / base["train_tokens_per_s"],
                     "train_throughput_cpu_vs_lstm": r["train_tokens_per_cpu_s"] / base["train_tokens_per_cpu_s"],
                     "latency_vs_lstm": r["infer_latency_ms_per_token_median"]
                     / base["infer_latency_ms_per_token_median"],
                     "latency_cpu_vs_lstm": r["infer_cpu_ms_per_token_median"]
                     / base["infer_cpu_ms_per_token_median"]} for arch, r in results.items()}
    print(json.dumps({
        "bench": "lm", "cpu_count": os.cpu_count(), "threads": a.threads, "python": platform.python_version(),
        "torch": torch.__version__, "numpy": np.__version__, "machine": platform.machine(),
        "config": vars(a), "results": results, "ratios": ratios,
        "note": "EGRU is a Python loop over steps (no fused kernel), LSTM/GRU use PyTorch's fused CPU kernels; "
        "*_cpu_* figures use this process's CPU time and are the ones to trust on a shared machine",
    }, indent=1))


if __name__ == "__main__":
    main()
