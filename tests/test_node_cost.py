"""The calibrated cost model, the decoder's placement, the two weight layouts, the presets and the report."""

import json
import subprocess
import sys

import numpy as np
import pytest
from node_models import make_gesture, make_lm, random_counts

from s2node.chip import OPERATING_POINTS, ChipConfigError, ChipSpec
from s2node.compiler import compile_model
from s2node.cost import (
    A100_KERNEL_S,
    CostTable,
    busy_cycle_energy_j,
    gpu_step_estimate,
    mac_energy_j,
    pe_cycles,
    step_cost,
    table_at_end,
)
from s2node.presets import build_preset
from s2node.report import Activity, expected_step_stats, table_ii
from s2node.runtime import Node, StepStats


def _stats(numerics="fp32", layout="column", pe_nnz=None):
    """Two PEs in two layer groups with small hand-picked counters."""
    return StepStats(numerics, np.array([0, 1]), np.array([10.0, 0.0]), np.array([2.0, 1.0]), np.array([1.0, 0.0]),
                     np.array([3.0, 4.0]), np.zeros(2), layout=layout, pe_nnz=pe_nnz)


def test_calibrated_constants_follow_the_measured_powers():
    """Busy-cycle and MAC energies are (measured power − asleep) over the rate, by hand."""
    op = OPERATING_POINTS["0.5V"]
    assert busy_cycle_energy_j(op) == pytest.approx((0.4246 - 0.2354) / 152 / 150e6)
    assert busy_cycle_energy_j(op) == pytest.approx(8.30e-12, rel=1e-3)
    assert mac_energy_j(op) == pytest.approx((0.825 - 0.2354) / (2.281e12 / 2))
    t = CostTable.calibrated("0.5V")
    assert t.static_power_chip_w == 0.2354 and t.energy_per_cycle_j == busy_cycle_energy_j(op)
    assert CostTable().static_power_chip_w == 0.5647  # the default is the 0.8 V point
    assert pytest.approx(19.9e-3 / 70 / 24) == A100_KERNEL_S
    with pytest.raises(ChipConfigError, match="operating point"):
        CostTable.calibrated("0.6V")


def test_pe_cycles_column_and_csr_by_hand():
    """Column: overhead + packets + synops·c_syn + updates + sends; csr adds every stored entry every step."""
    t = CostTable(cycles_step_overhead=100, cycles_per_packet_in=20, cycles_per_synop_fp32=8, cycles_per_csr_entry=5,
                  cycles_per_csr_synop=5, cycles_per_neuron_update=80, cycles_per_packet_out=10)
    s = _stats()
    col = pe_cycles(ChipSpec(), t, "fp32", s.pe_synops, s.pe_packets_in, s.pe_packets_out, s.pe_neuron_updates,
                    s.pe_dram_bytes)
    assert col.tolist() == [100 + 40 + 80 + 240 + 10, 100 + 20 + 0 + 320 + 0]
    csr = pe_cycles(ChipSpec(), t, "fp32", s.pe_synops, s.pe_packets_in, s.pe_packets_out, s.pe_neuron_updates,
                    s.pe_dram_bytes, "csr", np.array([50.0, 30.0]))
    assert csr.tolist() == [100 + 40 + 250 + 50 + 240 + 10, 100 + 20 + 150 + 0 + 320]


def test_step_cost_energy_and_latency_by_hand():
    """Latency sums the groups' slowest PE over the clock plus hops; energy adds the baseline over that time."""
    chip = ChipSpec().at_operating_point("0.5V")
    t = CostTable.calibrated("0.5V", hop_latency_s=1e-7, energy_per_packet_j=5e-11)
    s = _stats()
    c = step_cost(chip, t, s)
    cyc = pe_cycles(chip, t, "fp32", s.pe_synops, s.pe_packets_in, s.pe_packets_out, s.pe_neuron_updates,
                    s.pe_dram_bytes)
    latency = cyc[0] / 150e6 + cyc[1] / 150e6 + 2e-7
    assert c.latency_s == pytest.approx(latency)
    assert c.energy_j == pytest.approx(cyc.sum() * t.energy_per_cycle_j + 3 * 5e-11 + 0.2354 * latency)
    s8 = _stats("int8")
    cyc8 = pe_cycles(chip, t, "int8", s8.pe_synops, s8.pe_packets_in, s8.pe_packets_out, s8.pe_neuron_updates,
                     s8.pe_dram_bytes)
    int8 = step_cost(chip, t, s8)  # the 10 int8 synops are charged on the MAC array too
    assert int8.energy_dynamic_j == pytest.approx(cyc8.sum() * t.energy_per_cycle_j + 3 * 5e-11
                                                  + 10 * t.energy_per_mac_j)


def test_gpu_estimate_is_launch_bound_at_the_paper_anchor():
    """At the A100 anchor the paper model's step is 24 kernels = 19.9 ms / 70 tokens, launch-bound."""
    g = gpu_step_estimate(CostTable(), 3, 4 * 49_000_000)
    assert g["gpu_bound"] == "launch" and g["gpu_step_s"] == pytest.approx(19.9e-3 / 70)
    assert g["gpu_energy_per_step_j"] == pytest.approx(60 * 19.9e-3 / 70)
    assert gpu_step_estimate(CostTable(), 1, 4 * 10**10)["gpu_bound"] == "bandwidth"


def test_operating_points_set_clock_and_voltage():
    """The 0.5 V point runs at 150 MHz, the 0.8 V point at 300 MHz; the data budget is 96 KiB of 128."""
    assert (ChipSpec().at_operating_point("0.5V").clock_hz, ChipSpec().at_operating_point("0.5V").voltage_v) == (
        150e6, 0.5)
    assert ChipSpec().at_operating_point("0.8V").clock_hz == 300e6
    assert ChipSpec().data_sram_bytes_per_pe + ChipSpec().code_bytes_per_pe == ChipSpec().sram_bytes_per_pe
    with pytest.raises(ChipConfigError, match="must fit"):
        ChipSpec(data_sram_bytes_per_pe=100 * 1024)


@pytest.mark.parametrize("numerics", ["fp32", "int8"])
def test_decoder_on_host_or_pes_gives_the_same_predictions(tmp_path, numerics):
    """The decoder's placement changes PEs and cost, never the logits; the host's share is counted apart."""
    path = make_lm(tmp_path / "lm", hidden=(64, 48))
    a, b = Node.load(path, numerics=numerics, decoder="pe"), Node.load(path, numerics=numerics)
    assert b.n_pes < a.n_pes and b.compiled.decoder == "host"  # the paper's placement is the default
    for tok in [3, 7, 1, 12, 5, 9, 0, 4]:
        pa, pb = a.step(tok), b.step(tok)
        assert pa.label == pb.label and np.array_equal(pa.logits, pb.logits)
        assert a.last.synops == b.last.synops and a.last.decoder_synops == b.last.decoder_synops
        assert b.last.host_decoder_synops == b.last.decoder_synops and a.last.host_decoder_synops == 0
        assert b.last.host_packets_in == b.last.events_per_layer[-1]


@pytest.mark.parametrize("numerics", ["fp32", "int8"])
def test_embedding_on_pes_gives_the_same_predictions(tmp_path, numerics):
    """With the table on PEs the host sends one packet (the token) instead of the values; logits are unchanged."""
    path = make_lm(tmp_path / "lm", hidden=(64, 48))
    a = Node.load(path, numerics=numerics)
    b = Node.load(path, numerics=numerics, embedding="pe", decoder="host", layout="csr")
    assert b.compiled.groups[0].name == "embedding" and b.compiled.report()["embedding"] == "pe"
    for tok in [3, 7, 1, 12, 5, 9]:
        pa, pb = a.step(tok), b.step(tok)
        assert np.array_equal(pa.logits, pb.logits) and a.last.synops == b.last.synops
        assert b.last.host_packets_out == 1 and a.last.host_packets_out == a.last.events_in
        assert b.last.embedding_synops == np.count_nonzero(a.spec.embedding[tok]) and a.last.embedding_synops == 0
    assert len(b.last.cost.cycles_per_pe) == b.n_pes
    dense = b.dense_step_stats()
    assert dense.synops == a.dense_step_stats().synops
    st = expected_step_stats(b.compiled, Activity((1.0, 1.0), 1.0))
    assert st.synops == dense.synops and st.embedding_synops == dense.embedding_synops


def test_embedding_on_pes_refused_where_it_cannot_be(tmp_path):
    """A gesture model has no table to place; the paper's 33,278 x 750 table does not fit and says so."""
    from s2node.errors import CompileError

    g = make_gesture(tmp_path / "g", n_in=256, hidden=(32,))
    with pytest.raises(CompileError, match="no embedding"):
        Node.load(g, embedding="pe")
    with pytest.raises(CompileError, match="--embedding host"):
        compile_model(build_preset("paper-lm"), ChipSpec(), embedding="pe", decoder="host", layout="csr")


def test_decoder_on_host_for_gestures(tmp_path):
    """A gesture model's pooled predictions are the same with its decoder on the host."""
    path = make_gesture(tmp_path / "g", n_in=256, hidden=(64,))
    a, b = Node.load(path, decoder="pe"), Node.load(path, decoder="host")
    for v in random_counts(np.random.default_rng(0), 10, 256, 0.1):
        assert np.array_equal(a.step(v).logits, b.step(v).logits)
    assert a.stats.synops == b.stats.synops


def test_csr_and_column_layouts_same_synops_and_outputs(tmp_path):
    """CSR and column storage give the same synops and logits; csr walks every stored weight, column only events."""
    path = make_lm(tmp_path / "lm", hidden=(64, 64))
    col, csr = Node.load(path, prune=0.8), Node.load(path, prune=0.8, layout="csr")
    for tok in [3, 7, 1, 12, 5]:
        pa, pb = col.step(tok), csr.step(tok)
        assert np.array_equal(pa.logits, pb.logits) and col.last.synops == csr.last.synops
    g_col, g_csr = col.compiled.groups[0], csr.compiled.groups[0]
    assert g_csr.sram["column_pointers"].sum() == 0 and g_col.sram["row_pointers"].sum() == 0
    rows = 3 * np.diff(g_csr.bounds)
    assert np.array_equal(g_csr.sram["row_pointers"], (rows + 1) * 2)
    assert np.array_equal(g_col.sram["weight_values"], g_csr.sram["weight_values"])
    # no events at all: the column layout does no synaptic work, csr still walks its rows
    zero = StepStats("fp32", col.group_starts, np.zeros(col.n_pes), np.zeros(col.n_pes), np.zeros(col.n_pes),
                     np.zeros(col.n_pes), np.zeros(col.n_pes), layout="csr", pe_nnz=csr._pe_nnz)
    assert step_cost(col.chip, col.cost_table, zero).cycles_per_pe.sum() > step_cost(
        col.chip, col.cost_table, StepStats(**{**zero.__dict__, "layout": "column"})).cycles_per_pe.sum()


def test_expected_counts_at_full_activity_match_the_nodes_dense_step(tmp_path):
    """Rates of 1 in the report's expected counters reproduce the node's own dense-equivalent cost."""
    path = make_lm(tmp_path / "lm", hidden=(64, 48))
    for decoder in ("pe", "host"):
        node = Node.load(path, prune=0.5, decoder=decoder)
        st = expected_step_stats(node.compiled, Activity((1.0, 1.0), 1.0))
        dense = node.dense_step_stats()
        assert np.allclose(st.pe_synops, dense.pe_synops) and st.synops == dense.synops
        assert step_cost(node.chip, node.cost_table, st).energy_j == pytest.approx(dense.cost.energy_j)


@pytest.mark.parametrize("name", ["paper-lm", "paper-gesture"])
def test_presets_fit_the_chip_without_dram(name):
    """The paper's shapes at 95 % sparsity fit ≤ 152 PEs, weights in SRAM, every PE within its data budget."""
    spec = build_preset(name, seed=1)
    assert spec.layers[0].nnz == pytest.approx(0.05 * spec.layers[0].n_weights, abs=2)
    for layout in ("column", "csr"):
        m = compile_model(spec, ChipSpec(), decoder="host", layout=layout, spread=True)
        assert m.n_pes_used <= 152 and m.dram_bytes == 0
        assert m.data_bytes_per_pe.max() <= ChipSpec().data_sram_bytes_per_pe


def test_table_ii_ratios_and_range(tmp_path):
    """Table II rows multiply per-step figures by the steps of one inference; the ratios lie in their range."""
    spec = build_preset("paper-gesture")
    m = compile_model(spec, ChipSpec().at_operating_point("0.5V"), decoder="host", layout="csr", spread=True)
    t = CostTable.calibrated("0.5V")
    r = table_ii(m, t, Activity((0.05,), 1.0), 68, "one sample")
    chip = step_cost(m.chip, t, expected_step_stats(m, Activity((0.05,), 1.0)))
    assert r["rows"]["chip"]["energy_j"] == pytest.approx(68 * chip.energy_j)
    assert r["rows"]["gpu"]["time_s"] == pytest.approx(68 * t.gpu_kernel_s * t.gpu_kernels_per_layer * 2)
    lo, hi = r["range_over_assumptions"]["gpu_over_chip_energy"]
    assert lo < r["ratios"]["gpu_over_chip_energy"] < hi and r["ratios"]["dense_over_chip_energy"] > 1
    lo_t = step_cost(m.chip, table_at_end(t, 0), expected_step_stats(m, Activity((0.05,), 1.0))).latency_s
    assert r["range_over_assumptions"]["chip_time_s"][0] == pytest.approx(68 * lo_t)
    mine = table_ii(m, t, Activity((0.05,), 1.0), 68, "one sample",
                    gpu_bench={"step_s": 1e-3, "power_w": 100.0, "device_name": "test"})
    assert mine["rows"]["gpu"]["energy_j"] == pytest.approx(68 * 0.1) and mine["gpu_bound"] == "measured"
    assert mine["rows"]["chip"] == r["rows"]["chip"]


def test_cli_inspect_and_report_presets(tmp_path):
    """`s2 node inspect|report --preset` print JSON with the placement, the Table II ratios and a plot."""
    run = [sys.executable, "-m", "stream.cli", "node"]
    ins = subprocess.run([*run, "inspect", "--preset", "paper-gesture", "--json"], capture_output=True, text=True,
                         check=True)
    rep = json.loads(ins.stdout)
    assert rep["pes_used"] <= 152 and rep["dram_bytes"] == 0 and rep["decoder"] == "host"
    svg = tmp_path / "e.svg"
    out = subprocess.run([*run, "report", "--preset", "paper-gesture", "--json", "--plot", str(svg)],
                         capture_output=True, text=True, check=True)
    r = json.loads(out.stdout)
    assert r["ratios"]["gpu_over_chip_energy"] > 1 and r["clock_hz"] == 150e6 and svg.read_text().startswith("<?xml")
    bad = subprocess.run([*run, "report", "--json"], capture_output=True, text=True)
    assert bad.returncode != 0 and "MODEL or --preset" in bad.stderr and "Traceback" not in bad.stderr


def test_gpu_bench_on_the_cpu_states_its_power(tmp_path):
    """Without CUDA (or asked for the CPU) the bench times steps and uses the stated CPU power."""
    from s2node import modelfile
    from s2node.gpu_bench import gpu_bench

    cfg, t = modelfile.load(make_lm(tmp_path / "lm", hidden=(32,)))
    r = gpu_bench(cfg, t, steps=20, warmup=2, device="cpu", cpu_power_w=10.0)
    assert r["step_s"] > 0 and r["power_w"] == 10.0 and r["energy_j_per_step"] == pytest.approx(10.0 * r["step_s"])
    assert "assumption" in r["power_source"]
