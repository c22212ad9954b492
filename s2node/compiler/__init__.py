"""The compiler: spec -> (prune) -> partition onto PEs -> routing tables -> rule checks -> CompiledModel.

Stages are pure functions of the spec and the ChipSpec: `prune.prune_spec`, `partition.place_group`,
`routing.build_routing`, `rules.check_rules`. int8 quantisation happens where the arithmetic is prepared
(`kernels/int8.py`, with `quantize.quantize_rows`), because placement only needs its byte sizes.
"""

from __future__ import annotations

import numpy as np

from s2node.chip import ChipSpec
from s2node.compiler.compiled import CompiledModel
from s2node.compiler.partition import (
    INDEX_BYTES,
    LAYOUTS,
    SRAM_KINDS,
    GroupPlacement,
    decoder_group,
    egru_group,
    place_group,
)
from s2node.compiler.prune import prune_spec
from s2node.compiler.routing import build_routing
from s2node.compiler.rules import check_rules
from s2node.errors import CompileError
from s2node.spec import ModelSpec

NUMERICS = ("fp32", "int8")
PLACES = ("pe", "host")  # where the embedding and the decoder run

__all__ = ["LAYOUTS", "NUMERICS", "PLACES", "CompiledModel", "compile_model", "stored_weights_walked"]


def stored_weights_walked(m: CompiledModel) -> np.ndarray:
    """Per used PE, the stored weights a csr step walks: all of them, except on embedding PEs, whose look-up
    reads the token's row alone whatever the layout."""
    return np.concatenate([g.pe_nnz * (g.name != "embedding") for g in m.groups]).astype(np.float64)


def _groups(spec: ModelSpec, decoder: str = "host", embedding: str = "host"):
    gs = [egru_group(f"egru{i}", layer.weight_ih, layer.weight_hh) for i, layer in enumerate(spec.layers)]
    if embedding == "pe":
        gs.insert(0, decoder_group(spec.embedding.T, "embedding"))
    return [*gs, decoder_group(spec.decoder_weight)] if decoder == "pe" else gs


def _place_all(
    spec: ModelSpec, chip: ChipSpec, numerics: str, spill: list[bool] | None = None, min_pes: list[int] | None = None,
    decoder: str = "host", embedding: str = "host", layout: str = "column",
) -> list[GroupPlacement]:
    placed, pe = [], 0
    for i, g in enumerate(_groups(spec, decoder, embedding)):
        gp = place_group(g, pe, numerics, chip, bool(spill and spill[i]), min_pes[i] if min_pes else 1, layout)
        placed.append(gp)
        pe += gp.n_pes
    return placed


def _fit_advice(spec: ModelSpec, chip: ChipSpec, placed: list[GroupPlacement], numerics: str) -> str:
    """Bytes over the chip's SRAM and what would make the model fit (a pruning level, int8, DRAM)."""
    need = int(sum(sum(g.sram[k] for k in SRAM_KINDS).sum() for g in placed))
    cap = chip.usable_pes * chip.sram_bytes_per_pe
    weights = sum(layer.n_weights for layer in spec.layers)
    fixed = chip.usable_pes * (chip.code_bytes_per_pe + chip.buffer_bytes_per_pe)
    other = fixed + sum(int((g.sram["column_pointers"] + g.sram["row_pointers"] + g.sram["state"]).sum())
                        for g in placed)
    on_pes = placed[-1].name == "decoder"
    emb = sum(int((g.sram["weight_values"] + g.sram["weight_indices"]).sum()) for g in placed if g.name == "embedding")
    dec_nnz = int(np.count_nonzero(spec.decoder_weight)) if on_pes else 0
    advice = []
    for num, vb in (("fp32", 4), ("int8", 1)):
        scales = 4 * (3 * sum(layer.hidden_size for layer in spec.layers) + spec.n_outputs) if num == "int8" else 0
        room = 0.9 * cap - other - scales - dec_nnz * (vb + INDEX_BYTES)  # 10 % for per-PE fragmentation
        if room > 0:
            level = 1.0 - room / ((vb + INDEX_BYTES) * weights)
            advice.append(f"prune to {level:.3f} with {num}" if level > 0 else f"{num} without pruning")
        elif num == "int8":
            advice.append(f"a smaller decoder (it alone needs {dec_nnz * (vb + INDEX_BYTES)} bytes in int8)")
    if on_pes:
        advice.append("--decoder host")
    if emb:
        advice.append(f"--embedding host (the table takes {emb} bytes)")
    advice.append("--dram to spill weights to LPDDR4")
    over = need - cap
    head = (f"model needs {sum(g.n_pes for g in placed)} PEs and {need} bytes of SRAM; the chip has "
            f"{chip.usable_pes} PEs ({cap} bytes)")
    head += f", {over} bytes over" if over > 0 else " (too fragmented to place)"
    return f"{head}; would fit: {', or '.join(advice)}"


def _spill(spec: ModelSpec, chip: ChipSpec, numerics: str, placed: list[GroupPlacement], **kw):
    """Move weight matrices to DRAM, the group with the most weight bytes first, until the model fits."""
    spill = [False] * len(placed)
    wbytes = [int((g.sram["weight_values"] + g.sram["weight_indices"]).sum()) for g in placed]
    for gi in np.argsort(wbytes)[::-1]:
        spill[int(gi)] = True
        placed = _place_all(spec, chip, numerics, spill, **kw)
        if sum(g.n_pes for g in placed) <= chip.usable_pes:
            break
    return placed, spill


def _spread(
    spec: ModelSpec, chip: ChipSpec, numerics: str, placed: list[GroupPlacement], spill: list[bool] | None = None,
    **kw,
) -> list[GroupPlacement]:
    free = chip.usable_pes - sum(g.n_pes for g in placed)
    nnz = np.array([layer.nnz for layer in spec.layers], dtype=np.float64)
    extra = np.floor(free * nnz / nnz.sum()).astype(int) if nnz.sum() else np.zeros(len(nnz), int)
    egru = [g for g in placed if g.name.startswith("egru")]
    want = iter(min(layer.hidden_size, g.n_pes + int(e)) for layer, g, e in zip(spec.layers, egru, extra, strict=True))
    return _place_all(spec, chip, numerics, spill, min_pes=[next(want) if g.name.startswith("egru") else g.n_pes
                                                            for g in placed], **kw)


def compile_model(
    spec: ModelSpec, chip: ChipSpec | None = None, numerics: str = "fp32", *,
    prune: float | None = None, dram: bool = False, spread: bool = False, decoder: str = "host",
    embedding: str = "host", layout: str = "column",
) -> CompiledModel:
    """Place a spec on the chip or raise CompileError saying by how much it misses and what would fit.

    `decoder="host"` (the default) leaves the decoder to the host, as the paper: the last layer's events go to the
    host, which computes the logits; "pe" places it on PEs after the last layer. `embedding="pe"` (language
    models) places the table on PEs before the first layer: the host sends the token, they send its values;
    "host" (the default, as the paper) sends the values from the host. `layout` stores the weights
    column-wise ("column", CSC) or row-wise ("csr", as the paper); see `partition`.

    Default: the fewest PEs per layer. `dram=True` moves weight matrices to LPDDR4, largest group first, only
    until the rest fits in SRAM. `spread=True` hands the PEs left over to the EGRU layers in proportion
    to their synaptic weights (at most one unit per PE), which shortens the slowest PE and so the latency.
    """
    chip = chip or ChipSpec()
    if numerics not in NUMERICS:
        raise CompileError(f"numerics must be one of {NUMERICS}, not {numerics!r}")
    if decoder not in PLACES:
        raise CompileError(f"decoder must run on one of {PLACES}, not {decoder!r}")
    if layout not in LAYOUTS:
        raise CompileError(f"layout must be one of {LAYOUTS}, not {layout!r}")
    if embedding not in PLACES:
        raise CompileError(f"embedding must run on one of {PLACES}, not {embedding!r}")
    if embedding == "pe" and spec.embedding is None:
        raise CompileError("this model has no embedding to place (gesture inputs arrive as events)")
    kw = {"decoder": decoder, "embedding": embedding, "layout": layout}
    if prune:
        spec = prune_spec(spec, prune)
    placed, spill = _place_all(spec, chip, numerics, **kw), None
    if sum(g.n_pes for g in placed) > chip.usable_pes:
        if not dram:
            msg = _fit_advice(spec, chip, placed, numerics)
            need = int(sum(sum(g.sram[k] for k in SRAM_KINDS).sum() for g in placed))
            raise CompileError(msg, bytes_over=max(0, need - chip.usable_pes * chip.sram_bytes_per_pe))
        placed, spill = _spill(spec, chip, numerics, placed, **kw)
    if spread and sum(g.n_pes for g in placed) < chip.usable_pes:
        placed = _spread(spec, chip, numerics, placed, spill, **kw)
    routing, recv_in, recv_rec = build_routing(placed)
    model = CompiledModel(spec, chip, numerics, tuple(placed), routing, tuple(recv_in), tuple(recv_rec),
                          decoder=decoder, embedding=embedding, layout=layout)
    passed = check_rules(model)
    return CompiledModel(spec, chip, numerics, tuple(placed), routing, tuple(recv_in), tuple(recv_rec),
                         tuple(passed), decoder=decoder, embedding=embedding, layout=layout)
