"""The node compiler: chip facts, pruning, partition within SRAM, routing, DRAM spill, fit errors."""

import json
import re

import numpy as np
import pytest
from node_models import make_gesture, make_lm

from s2node import modelfile
from s2node.chip import ChipConfigError, ChipSpec
from s2node.compiler import compile_model
from s2node.compiler.prune import magnitude_mask, prune_tensors, weight_sparsity
from s2node.compiler.quantize import dequantize_rows, quantize_rows
from s2node.errors import CompileError
from s2node.spec import ModelSpec


def spec_of(path):
    return ModelSpec.from_model(*modelfile.load(path))


def test_chip_defaults_are_the_published_facts():
    """ChipSpec's defaults are the datasheet's 152 PEs, 38 QPEs, 128 KB SRAM, 16,384 router entries, 16x4 MACs."""
    c = ChipSpec()
    assert (c.n_pes, c.n_qpes, c.pes_per_qpe) == (152, 38, 4)
    assert c.sram_bytes_per_pe == 131072 and c.router_entries == 16384 and c.macs_per_cycle == 64
    assert 150e6 <= c.clock_hz <= 300e6


def test_chip_config_override_from_file(tmp_path):
    """A JSON chip config overrides the named fields and keeps the rest."""
    p = tmp_path / "chip.json"
    p.write_text(json.dumps({"n_pes": 76, "clock_hz": 150e6}))
    c = ChipSpec.from_json(p)
    assert (c.n_pes, c.clock_hz, c.sram_bytes_per_pe) == (76, 150e6, 131072)


def test_chip_config_unknown_field_is_an_error(tmp_path):
    """An unknown field in a chip config is a one-line error naming it."""
    p = tmp_path / "chip.json"
    p.write_text(json.dumps({"n_pe": 76}))
    with pytest.raises(ChipConfigError, match="n_pe"):
        ChipSpec.from_json(p)


def test_magnitude_prune_hits_the_target_and_keeps_the_largest():
    """Pruning drops exactly the requested fraction, the smallest magnitudes, only in rnn weight matrices."""
    rng = np.random.default_rng(0)
    w = rng.normal(size=(30, 20)).astype(np.float32)
    keep = magnitude_mask(w, 0.9)
    assert keep.sum() == 60 and np.abs(w[keep]).min() >= np.abs(w[~keep]).max()
    t = prune_tensors({"rnn.0.weight_ih": w, "rnn.0.weight_hh": w, "decoder.weight": w}, 0.75)
    assert weight_sparsity(t) == pytest.approx(0.75) and np.array_equal(t["decoder.weight"], w)


def test_int8_rows_round_trip_within_half_a_step():
    """Per-row int8 quantisation reconstructs each weight within half of its row's step."""
    w = np.random.default_rng(1).normal(size=(12, 40)).astype(np.float32)
    q, s = quantize_rows(w)
    assert q.dtype == np.int8 and np.abs(q).max() == 127
    assert np.all(np.abs(dequantize_rows(q, s) - w) <= s[:, None] / 2 + 1e-7)


@pytest.mark.parametrize("numerics", ["fp32", "int8"])
def test_placement_fits_sram_and_router(tmp_path, numerics):
    """Every PE stays within 128 KB, routing within 16,384 entries, and every unit is placed once."""
    m = compile_model(spec_of(make_gesture(tmp_path / "g", hidden=(256,))), numerics=numerics)
    assert m.sram_total_per_pe.max() <= 128 * 1024
    assert m.routing.entries <= 16384 and m.report()["rules_passed"]
    g = m.groups[0]
    assert g.bounds[0] == 0 and g.bounds[-1] == 256 and np.all(np.diff(g.bounds) > 0)
    assert g.nnz_in.sum() == np.count_nonzero(m.spec.layers[0].weight_ih)


def test_int8_and_pruning_use_fewer_pes(tmp_path):
    """int8 weights and pruning shrink the placement."""
    spec = spec_of(make_lm(tmp_path / "lm", hidden=(256, 256), emb=64))
    fp32 = compile_model(spec).n_pes_used
    assert compile_model(spec, numerics="int8").n_pes_used < fp32
    assert compile_model(spec, prune=0.9).n_pes_used < fp32


def test_too_big_model_says_bytes_over_and_what_fits(tmp_path):
    """A model over the chip's SRAM raises CompileError with the bytes over and a pruning level that fits."""
    spec = spec_of(make_gesture(tmp_path / "g", n_in=2048, hidden=(256,)))
    small = ChipSpec(n_pes=16, n_qpes=4)
    with pytest.raises(CompileError) as e:
        compile_model(spec, small)
    msg = str(e.value)
    assert e.value.bytes_over > 0 and "bytes over" in msg
    level = float(re.search(r"prune to ([0-9.]+) with int8", msg).group(1))
    compile_model(spec, small, prune=level, numerics="int8")  # the advice is not empty talk


def test_router_too_small_is_a_rule_failure(tmp_path):
    """A router with fewer entries than source blocks fails the router_entries rule."""
    spec = spec_of(make_lm(tmp_path / "lm"))
    with pytest.raises(CompileError, match="router_entries"):
        compile_model(spec, ChipSpec(router_entries=2))


def test_dram_spill_places_what_sram_cannot(tmp_path):
    """With dram=True a model too big for SRAM is placed with its weights in LPDDR4."""
    spec = spec_of(make_gesture(tmp_path / "g", n_in=2048, hidden=(256,)))
    small = ChipSpec(n_pes=8, n_qpes=2)
    m = compile_model(spec, small, dram=True, decoder="pe")
    assert m.dram_bytes > 0 and m.n_pes_used <= 8 and m.groups[0].spilled and not m.groups[-1].spilled
    from node_models import random_counts

    from s2node.runtime import Node

    node = Node(m)
    node.step(random_counts(np.random.default_rng(0), 1, 2048, 0.02)[0])
    g = m.groups[0]
    fetched = node.last.pe_dram_bytes[g.pe_start:g.pe_start + g.n_pes].sum()
    assert fetched == node.last.synops * g.bytes_per_weight > 0  # every synaptic op fetched its weight


def test_non_egru_model_is_refused(tmp_path):
    """The node runs EGRU only; an LSTM model is a clear CompileError."""
    cfg, t = modelfile.load(make_lm(tmp_path / "lm"))
    with pytest.raises(CompileError, match="EGRU"):
        ModelSpec.from_model(dict(cfg, arch="lstm"), t)


def test_prune_masks_keep_pruned_weights_at_zero_while_finetuning(tmp_path):
    """prune_masks prunes a PyTorch model's EGRU matrices in place; apply_masks re-zeroes them after an update."""
    import torch

    from s2node.compiler.prune import apply_masks, prune_masks
    from s2node.models import load_torch_model

    model, _ = load_torch_model(make_lm(tmp_path / "lm", hidden=(32,)))
    masks = prune_masks(model, 0.8)
    w = model.rnn.layers[0].weight_hh
    assert len(masks) == 2 and (w == 0).float().mean().item() == pytest.approx(0.8, abs=1e-3)
    with torch.no_grad():
        w.add_(1.0)  # an optimiser step would revive pruned weights
    apply_masks(model, masks)
    assert (w == 0).float().mean().item() == pytest.approx(0.8, abs=1e-3)


def test_cost_table_override_changes_energy(tmp_path):
    """A cost-table JSON overrides named constants (doubling energy per cycle raises the energy); typos fail."""
    from s2node.chip import ChipConfigError as CCE
    from s2node.cost import CostTable
    from s2node.runtime import Node

    path = make_lm(tmp_path / "lm", hidden=(32,))
    f = tmp_path / "cost.json"
    f.write_text(json.dumps({"energy_per_cycle_j": 30e-12}))
    a, b = Node.load(path), Node.load(path, cost_table=CostTable.from_json(f))
    a.step(3)
    b.step(3)
    assert b.last.cost.energy_dynamic_j > a.last.cost.energy_dynamic_j
    assert b.last.cost.latency_s == a.last.cost.latency_s
    f.write_text(json.dumps({"energy_per_cycle": 30e-12}))
    with pytest.raises(CCE, match="cost table"):
        CostTable.from_json(f)
