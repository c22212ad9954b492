"""Published model shapes as presets: a ModelSpec of the right shapes and weight sparsity, random but seeded.

So that `s2 node inspect|report --preset NAME` can place and cost the paper's configuration without a trained
file. What a preset cannot know, its activity, is stated with its source (`activity_sparsity`), and the
report sweeps it.

paper-lm: "Language Modeling on a SpiNNaker 2 Neuromorphic Chip" (arXiv 2312.09084, as quoted, and the EvNN
LM benchmark it cites): embedding 750 (on the host), 3 EGRU layers (1350, 1350, 750), 95 % weight pruning,
word level; vocabulary 33,278 (WikiText-2) or 10,000 (PTB). Activity sparsity 79.7 %: the EGRU with 1350
units on PTB (reference file, section 8.1).
paper-gesture: the EvNN DVS-gesture benchmark's recurrent part (reference file, section 2.2): one EGRU layer
512 -> 795, trace readout, 11 classes, 68 frames of 25 ms per 1.7 s sample; the CNN front end producing the 512
features runs on the host and is not placed. Weight sparsity 95 % as the LM (an assumption: the gesture
paper's pruning is not published); activity sparsity 95 % from the benchmark's activity target 0.05.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from s2node.compiler.prune import magnitude_mask
from s2node.errors import S2NodeError
from s2node.spec import EGRULayerSpec, ModelSpec

VOCABS = {"wikitext-2": 33_278, "ptb": 10_000}


@dataclass(frozen=True)
class Preset:
    name: str
    task: str
    input_size: int  # embedding size (lm) or input features (gesture)
    hidden: tuple[int, ...]
    n_outputs: int  # vocabulary or classes
    weight_sparsity: float
    activity_sparsity: float  # of the EGRU units, as published for this shape (see the module docstring)
    input_activity: float  # fraction of inputs non-zero per step (a dense embedding row: 1.0)
    steps_per_inference: int  # what one inference is, in timesteps
    inference: str  # ... in words
    # the paper's placement: CSR weights, decoder on the host, spread over the chip (it used 150 PEs), at 0.5 V
    # (its 0.39 W lies below the chip's 0.8 V asleep baseline of 0.565 W, so it cannot have run at 0.8 V)
    layout: str = "csr"
    decoder: str = "host"
    operating_point: str = "0.5V"


PRESETS: dict[str, Preset] = {
    "paper-lm": Preset("paper-lm", "lm", 750, (1350, 1350, 750), VOCABS["wikitext-2"], 0.95, 0.797, 1.0, 70,
                       "one bptt window of 70 tokens (the paper's sequence length; the paper does not define it)"),
    "paper-gesture": Preset("paper-gesture", "gesture", 512, (795,), 11, 0.95, 0.95, 1.0, 68,
                            "one 1.7 s gesture sample of 68 frames of 25 ms (the EvNN DVS benchmark)"),
}


def get_preset(name: str) -> Preset:
    try:
        return PRESETS[name]
    except KeyError as e:
        raise S2NodeError(f"preset {name!r}: use one of {', '.join(PRESETS)}") from e


def build_preset(name: str, *, vocab: int | None = None, seed: int = 0) -> ModelSpec:
    """The preset's spec: uniform(±1/√H) weights (PyTorch's GRU init), magnitude-pruned to the preset's sparsity,
    thresholds 0.1. `vocab` overrides the language preset's vocabulary (e.g. 10,000 for PTB)."""
    p = get_preset(name)
    rng = np.random.default_rng(seed)
    n_out = int(vocab) if vocab is not None and p.task == "lm" else p.n_outputs
    if n_out < 2:
        raise S2NodeError(f"vocabulary must have at least 2 entries, not {n_out}")
    layers, sizes = [], (p.input_size, *p.hidden)
    for i, h in enumerate(p.hidden):
        k = np.float32(1.0 / np.sqrt(h))

        def uniform(*shape: int, k: np.float32 = k) -> np.ndarray:
            return rng.uniform(-k, k, size=shape).astype(np.float32)

        w_ih, w_hh = uniform(3 * h, sizes[i]), uniform(3 * h, h)
        w_ih *= magnitude_mask(w_ih, p.weight_sparsity)
        w_hh *= magnitude_mask(w_hh, p.weight_sparsity)
        layers.append(EGRULayerSpec(sizes[i], h, w_ih, w_hh, uniform(3 * h), uniform(3 * h),
                                    np.full(h, 0.1, np.float32)))
    h_last = p.hidden[-1]
    k = np.float32(1.0 / np.sqrt(h_last))
    config = {"format": "s2egru-model", "version": 1, "task": p.task, "arch": "egru", "preset": p.name,
              "layers": [{"input_size": sizes[i], "hidden_size": h} for i, h in enumerate(p.hidden)]}
    readout = ({"source": "y", "trace_alpha": 0.9, "pool": "last"} if p.task == "lm"
               else {"source": "trace", "trace_alpha": 0.9, "pool": "mean"})
    config["readout"] = readout
    if p.task == "lm":
        config.update({"level": "word", "vocab": [f"w{i}" for i in range(n_out)], "unk": "w0"})
    else:
        config["classes"] = [f"class {i}" for i in range(n_out)]
    emb = rng.uniform(-0.1, 0.1, size=(n_out, p.input_size)).astype(np.float32) if p.task == "lm" else None
    return ModelSpec(task=p.task, layers=tuple(layers),
                     decoder_weight=rng.uniform(-k, k, size=(n_out, h_last)).astype(np.float32),
                     decoder_bias=np.zeros(n_out, np.float32), readout=readout, config=config, embedding=emb,
                     sparsity=p.weight_sparsity)
