"""What the node runs, with no maths: `EGRULayerSpec` and `ModelSpec` (shapes, thresholds, weights, readout).

A spec is built from a model file's config and tensors and validated here; the compiler stages turn one spec
into another (prune, quantize) and then into a placement on the chip. Behaviours live elsewhere:
`torch_egru.py` (the reference), `kernels/fp32.py` and `kernels/int8.py` (the emulated PEs).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from s2node.errors import CompileError


@dataclass(frozen=True)
class EGRULayerSpec:
    """One EGRU layer in PyTorch GRU layout (gate order r, z, n along 3H); pruned weights are exact zeros."""

    input_size: int
    hidden_size: int
    weight_ih: np.ndarray  # [3H, I] float32
    weight_hh: np.ndarray  # [3H, H] float32
    bias_ih: np.ndarray  # [3H]
    bias_hh: np.ndarray  # [3H]
    threshold: np.ndarray  # [H], already clamped to THRESHOLD_MIN by the trainer
    zoneout: float = 0.0  # eval-mode zoneout mixes p·c_prev into ĉ

    def __post_init__(self) -> None:
        h3 = 3 * self.hidden_size
        want = {
            "weight_ih": (h3, self.input_size), "weight_hh": (h3, self.hidden_size),
            "bias_ih": (h3,), "bias_hh": (h3,), "threshold": (self.hidden_size,),
        }
        for name, shape in want.items():
            a = getattr(self, name)
            if a.shape != shape:
                raise CompileError(f"layer {name} has shape {a.shape}, expected {shape}")
        if not 0.0 <= self.zoneout < 1.0:
            raise CompileError(f"zoneout must lie in [0, 1), not {self.zoneout}")
        if np.any(self.threshold <= 0):
            raise CompileError("EGRU thresholds must be positive")

    @property
    def nnz(self) -> int:
        return int(np.count_nonzero(self.weight_ih) + np.count_nonzero(self.weight_hh))

    @property
    def n_weights(self) -> int:
        return int(self.weight_ih.size + self.weight_hh.size)


@dataclass(frozen=True)
class ModelSpec:
    """A whole model: EGRU layers, the host-side embedding (language) and the decoder, and the readout."""

    task: str  # "lm" | "gesture"
    layers: tuple[EGRULayerSpec, ...]
    decoder_weight: np.ndarray  # [C, H_last]
    decoder_bias: np.ndarray  # [C]
    readout: dict[str, Any]
    config: dict[str, Any] = field(repr=False)
    embedding: np.ndarray | None = None  # [V, E] (language only)
    sparsity: float = 0.0  # weight sparsity the compiler pruned to (0 = as trained)

    @classmethod
    def from_model(cls, config: dict[str, Any], tensors: dict[str, np.ndarray]) -> ModelSpec:
        """Model-file config + tensors (as modelfile.load returns them) -> spec. Only EGRU runs on the node."""
        if config.get("arch") != "egru":
            raise CompileError(f"the node runs EGRU models only; this model is {config.get('arch')!r}")
        layers = []
        for i, lc in enumerate(config["layers"]):
            layers.append(
                EGRULayerSpec(
                    int(lc["input_size"]), int(lc["hidden_size"]),
                    *(np.asarray(tensors[f"rnn.{i}.{k}"], dtype=np.float32)
                      for k in ("weight_ih", "weight_hh", "bias_ih", "bias_hh", "threshold")),
                    zoneout=float(lc.get("zoneout", 0.0)),
                )
            )
        emb = tensors.get("embedding.weight")
        return cls(
            task=config["task"], layers=tuple(layers),
            decoder_weight=np.asarray(tensors["decoder.weight"], dtype=np.float32),
            decoder_bias=np.asarray(tensors["decoder.bias"], dtype=np.float32),
            readout=dict(config.get("readout") or {"source": "y", "trace_alpha": 0.9, "pool": "last"}),
            config=config,
            embedding=None if emb is None else np.asarray(emb, dtype=np.float32),
        )

    def to_tensors(self) -> dict[str, np.ndarray]:
        """Back to model-file tensors (e.g. to run the PyTorch reference on the pruned weights)."""
        t: dict[str, np.ndarray] = {}
        for i, layer in enumerate(self.layers):
            for k in ("weight_ih", "weight_hh", "bias_ih", "bias_hh", "threshold"):
                t[f"rnn.{i}.{k}"] = getattr(layer, k)
        if self.embedding is not None:
            t["embedding.weight"] = self.embedding
        t["decoder.weight"], t["decoder.bias"] = self.decoder_weight, self.decoder_bias
        return t

    def with_layers(self, layers: tuple[EGRULayerSpec, ...], **kw: Any) -> ModelSpec:
        return replace(self, layers=layers, **kw)

    @property
    def n_inputs(self) -> int:
        return self.layers[0].input_size

    @property
    def n_outputs(self) -> int:
        return int(self.decoder_bias.shape[0])
