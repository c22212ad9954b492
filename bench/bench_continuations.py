"""Continuation decoders side by side on the shipped language models: repetition, diversity and surprise, JSON out.

For each model, --prompts places evenly spread over the test split of the corpus it was trained on (`s2 data
fetch`) are read into the model (--warmup tokens before each place) exactly as the demo's text pipeline reads
a message (stream.text_pipeline.TextLM); then every decoder writes its continuation of the same state, through
the same TextLM.predict the demo calls. Per decoder, over the continuation's words (characters joined for a
character model):

- `repeat_words`: mean share of a continuation's words that repeat an earlier word of it (greedy loops high);
- `repeat_2grams`: the same for word pairs ("of the state of the state": 2 of 4 pairs repeat);
- `loops`: share of continuations with a word trigram twice;
- `distinct_1`, `distinct_2`: distinct words (pairs) over all continuations / all words (pairs): do different
  prompts get different answers;
- `bits_per_token`: how surprising the continuation is to the model itself (log2, under the plain model);
  `reference_bits_per_token` is the same for the real text that followed each prompt: a decoder far below it
  writes the model's most worn paths, one far above it writes noise;
- `ms_per_continuation`: wall time of one predict (decoding only: the prompt is read once).

    python bench/bench_continuations.py [--prompts 200] [--length 20] [--decoders greedy sample:t=0.8,p=0.9 ...]
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

from s2node.decode import DecodeSpec, restored
from s2node.step import StepModel, bits, load_step_model
from sources.corpora import corpus_path
from sources.errors import DataNotFoundError
from sources.text_data import encode, read_text
from stream.text_pipeline import TextLM

MODELS = ("models/shakespeare-egru", "models/ptb-egru")
DECODERS = ("greedy", "beam:w=4", "beam:w=4,ngram=3", "sample:t=0.8,p=0.9", "sample:t=0.7,p=0.9",
            "sample:t=0.8,p=0.9,ngram=3", "sample:t=0.8,p=0.9,rep=1.2", "sample:t=1,p=1")


def words(text: str) -> list[str]:
    return text.split()


def ngrams(ws: list[str], n: int) -> list[tuple[str, ...]]:
    return [tuple(ws[i:i + n]) for i in range(len(ws) - n + 1)]


def repeat_share(ws: list[str], n: int) -> float:
    """Share of the n-grams of one continuation that already occurred earlier in it."""
    grams = ngrams(ws, n)
    return (len(grams) - len(set(grams))) / len(grams) if grams else 0.0


def surprise_bits(model: StepModel, probs: np.ndarray, ids: list[int]) -> float:
    """Mean bits per token of `ids` under the plain model from its current state (which is kept)."""
    total = 0.0
    with restored(model):
        for j, i in enumerate(ids):
            total += bits(float(probs[i]))
            if j + 1 < len(ids):
                probs = model.step(i).probs
    return total / max(len(ids), 1)


def bench_model(path: str, decoders: list[DecodeSpec], n_prompts: int, length: int, warmup: int) -> dict:
    model = load_step_model(path, "node")
    cfg = model.config
    corpus = cfg.get("training", {}).get("corpus", "shakespeare")
    ids, _ = encode(read_text(corpus_path(corpus, "test")), cfg)
    places = np.linspace(warmup, len(ids) - length - 1, n_prompts).astype(int)
    sep = " " if cfg["level"] == "word" else ""
    vocab = cfg["vocab"]
    lm = TextLM(model, continuation=length)
    stats: dict[str, dict[str, list]] = {d.describe(): {"conts": [], "bits": [], "ms": []} for d in decoders}
    reference, examples = [], []
    for n, at in enumerate(places):
        prompt = sep.join(vocab[i] for i in ids[at - warmup:at]) + sep
        lm.reset()
        lm.feed(prompt)  # as the demo reads a message; every decoder continues this one state
        probs = lm.next_probs
        reference.append(surprise_bits(model, probs, ids[at:at + length].tolist()))
        shown = {"prompt": prompt[-60:], "truth": sep.join(vocab[i] for i in ids[at:at + length])}
        for d in decoders:
            key, lm.decoder = d.describe(), d
            t0 = time.perf_counter()
            pred = lm.predict()
            stats[key]["ms"].append(1e3 * (time.perf_counter() - t0))
            stats[key]["conts"].append(pred.continuation)
            toks = encode(pred.continuation, cfg, final_eos=False)[0].tolist()
            stats[key]["bits"].append(surprise_bits(model, probs, toks))
            shown[key] = pred.continuation
        if n < 5:
            examples.append(shown)
    out = {}
    for key, s in stats.items():
        ws = [words(c) for c in s["conts"]]
        all1 = [w for x in ws for w in x]
        all2 = [g for x in ws for g in ngrams(x, 2)]
        out[key] = {
            "repeat_words": round(float(np.mean([repeat_share(x, 1) for x in ws])), 4),
            "repeat_2grams": round(float(np.mean([repeat_share(x, 2) for x in ws])), 4),
            "loops": round(float(np.mean([repeat_share(x, 3) > 0 for x in ws])), 4),
            "distinct_1": round(len(set(all1)) / max(len(all1), 1), 4),
            "distinct_2": round(len(set(all2)) / max(len(all2), 1), 4),
            "bits_per_token": round(float(np.mean(s["bits"])), 3),
            "ms_per_continuation": round(float(np.median(s["ms"])), 2),
        }
    greedy = out.get("greedy")
    if greedy:  # side by side: each decoder against greedy
        for v in out.values():
            v["distinct_2_vs_greedy"] = round(v["distinct_2"] / max(greedy["distinct_2"], 1e-9), 2)
    return {"model": Path(path).name, "level": cfg["level"], "corpus": corpus, "prompts": len(places),
            "length_tokens": length, "reference_bits_per_token": round(float(np.mean(reference)), 3),
            "decoders": out, "examples": examples}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=list(MODELS), help="model files (default: the shipped two)")
    ap.add_argument("--decoders", nargs="+", default=list(DECODERS), help="continuation specs (as --continuation)")
    ap.add_argument("--prompts", type=int, default=200, help="prompts per model (default 200)")
    ap.add_argument("--length", type=int, default=20, help="continuation length in tokens (default 20, as the demo)")
    ap.add_argument("--warmup", type=int, default=100, help="tokens read before each prompt's end (default 100)")
    a = ap.parse_args()
    decoders = [DecodeSpec.parse(d) for d in a.decoders]
    t0 = time.perf_counter()
    runs = []
    for m in a.models:
        try:
            runs.append(bench_model(m, decoders, a.prompts, a.length, a.warmup))
        except DataNotFoundError as e:
            print(f"bench_continuations: {m}: {e}", file=sys.stderr)
    print(json.dumps({"bench": "continuations", "cpu_count": os.cpu_count(), "python": platform.python_version(),
                      "numpy": np.__version__, "machine": platform.machine(),
                      "load_avg": [round(x, 2) for x in os.getloadavg()],
                      "wall_s": round(time.perf_counter() - t0, 1), "runs": runs}, indent=1, ensure_ascii=False))
    for r in runs:
        print(f"\n{r['model']} ({r['prompts']} prompts, {r['length_tokens']} tokens; real text: "
              f"{r['reference_bits_per_token']} bits/token)", file=sys.stderr)
        head = ("rep-w", "rep-2", "loops", "dist-1", "dist-2", "bits", "ms")
        print(f"{'decoder':32} " + " ".join(f"{h:>6}" for h in head), file=sys.stderr)
        for k, v in r["decoders"].items():
            print(f"{k:32} {v['repeat_words']:6.3f} {v['repeat_2grams']:6.3f} {v['loops']:6.3f} {v['distinct_1']:6.3f} "
                  f"{v['distinct_2']:6.3f} {v['bits_per_token']:6.2f} {v['ms_per_continuation']:6.1f}", file=sys.stderr)


if __name__ == "__main__":
    main()
