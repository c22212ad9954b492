"""Magnitude pruning to a target weight sparsity, for the compiler and for fine-tuning in training.

Only the recurrent stack's matrices (`rnn.{l}.weight_ih`, `rnn.{l}.weight_hh`) are pruned, each to the same
sparsity by its own magnitudes (layer-wise, as in the pruning papers of the reference file); embedding,
decoder, biases and thresholds are kept. Fine-tuning: `masks = prune_masks(model, P)` once, then
`apply_masks(model, masks)` after every optimiser step keeps pruned weights at zero.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from s2node.errors import CompileError
from s2node.spec import ModelSpec

PRUNABLE = re.compile(r"^rnn\.\d+\.weight_(ih|hh)$")


def check_sparsity(sparsity: float) -> float:
    s = float(sparsity)
    if not 0.0 <= s < 1.0:
        raise CompileError(f"prune sparsity must lie in [0, 1), not {sparsity}")
    return s


def magnitude_mask(weight: np.ndarray, sparsity: float) -> np.ndarray:
    """Boolean keep-mask with exactly round(sparsity·size) of the smallest-magnitude entries dropped."""
    n_drop = round(check_sparsity(sparsity) * weight.size)
    keep = np.ones(weight.size, dtype=bool)
    if n_drop:
        # argpartition gives an exact count even with tied magnitudes (a threshold would not).
        keep[np.argpartition(np.abs(weight).ravel(), n_drop - 1)[:n_drop]] = False
    return keep.reshape(weight.shape)


def prune_tensors(tensors: dict[str, np.ndarray], sparsity: float) -> dict[str, np.ndarray]:
    """A copy of model-file tensors with every rnn weight matrix pruned to `sparsity` by magnitude."""
    out = dict(tensors)
    for name, w in tensors.items():
        if PRUNABLE.match(name):
            out[name] = np.where(magnitude_mask(w, sparsity), w, 0).astype(w.dtype)
    return out


def prune_spec(spec: ModelSpec, sparsity: float) -> ModelSpec:
    """Compiler stage: spec -> spec with its EGRU weight matrices pruned to `sparsity`."""
    from dataclasses import replace

    s = check_sparsity(sparsity)
    layers = tuple(
        replace(
            layer,
            weight_ih=np.where(magnitude_mask(layer.weight_ih, s), layer.weight_ih, 0).astype(np.float32),
            weight_hh=np.where(magnitude_mask(layer.weight_hh, s), layer.weight_hh, 0).astype(np.float32),
        )
        for layer in spec.layers
    )
    return spec.with_layers(layers, sparsity=s)


def weight_sparsity(tensors: dict[str, np.ndarray]) -> float:
    """Fraction of zeros over the prunable matrices."""
    mats = [w for n, w in tensors.items() if PRUNABLE.match(n)]
    total = sum(w.size for w in mats)
    return float(sum(w.size - np.count_nonzero(w) for w in mats) / total) if total else 0.0


def prune_masks(model: Any, sparsity: float) -> dict[str, Any]:
    """PyTorch fine-tuning: prune the model's EGRU matrices in place and return their masks by parameter name."""
    import torch

    masks = {}
    with torch.no_grad():
        for name, p in model.named_parameters():
            short = name.split("rnn.layers.", 1)[-1] if "rnn.layers." in name else None
            if short is None or not re.match(r"^\d+\.weight_(ih|hh)$", short):
                continue
            m = torch.from_numpy(magnitude_mask(p.detach().cpu().numpy(), sparsity)).to(p.device)
            p.mul_(m)
            masks[name] = m
    return masks


def apply_masks(model: Any, masks: dict[str, Any]) -> None:
    """Re-zero pruned weights (call after each optimiser step while fine-tuning)."""
    import torch

    with torch.no_grad():
        params = dict(model.named_parameters())
        for name, m in masks.items():
            params[name].mul_(m)
