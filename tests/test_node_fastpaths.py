"""The node step's fast paths equal the general computations they stand for: per-PE counters and cost from one
product (`StepCounts`) vs summing each group's count tables and `cost.step_cost`, and the fused gates vs the
separate accumulations plus biases, including the cases that take the general path."""

import dataclasses

import numpy as np
import pytest
from node_models import make_gesture, make_lm, random_counts

from s2node.chip import ChipSpec
from s2node.cost import CostTable, step_cost
from s2node.runtime import Node
from s2node.step_counts import CountTable, StepCounts, integer_cycle_rates


def _reference_counts(node: Node, inp, before: list[np.ndarray]) -> np.ndarray:
    """[2, PEs] synops and packets in of the step just taken, summed group by group from the count tables (the
    straightforward computation): `before` holds each layer's events of the previous step."""
    out = np.zeros((2, node.n_pes))
    cols = node.input_packets(inp)[0]
    if node.embedding_on_pes:
        out[:, node.slices[0]] += node.counts_in[0].sum(np.array([int(inp)]))
    for li, gi in enumerate(node.layer_group):
        sl = node.slices[gi]
        out[:, sl] += node.counts_in[gi].sum(cols) + node.counts_rec[gi].sum(before[li])
        cols = node._y_idx[li]
    if node.decoder_on_pes:
        out[:, node.slices[-1]] += node.counts_in[-1].sum(cols)
    return out


def _run(node: Node, inputs) -> None:
    """Step the node, checking every step's counters and cost against the general computations."""
    for x in inputs:
        before = [c.copy() for c in node._y_idx]
        st = node.step(x).stats
        ref = _reference_counts(node, x, before)
        assert np.array_equal(st.pe_synops, ref[0]) and np.array_equal(st.pe_packets_in, ref[1])
        cost = step_cost(node.chip, node.cost_table, st)
        assert np.array_equal(st.cost.cycles_per_pe, cost.cycles_per_pe)
        assert (st.cost.latency_s, st.cost.energy_j, st.cost.energy_dynamic_j, st.cost.energy_static_j) == (
            cost.latency_s, cost.energy_j, cost.energy_dynamic_j, cost.energy_static_j)


@pytest.mark.parametrize("numerics", ["fp32", "int8"])
@pytest.mark.parametrize("options", [{}, {"prune": 0.9}, {"decoder": "pe", "embedding": "pe"}, {"layout": "csr"},
                                     {"spread": True}])
def test_step_counters_and_cost_equal_the_count_tables_and_step_cost(tmp_path, numerics, options):
    """Per-PE synops, packets and the cost from the one-product plan equal the per-group table sums and
    cost.step_cost exactly, for dense and pruned tables, embedding and decoder on PEs, csr and spread layouts."""
    path = make_lm(tmp_path / "lm", hidden=(64, 48))
    node = Node.load(path, numerics=numerics, **options)
    assert node._counts.rates is not None  # integer cycle rates: the plan computes the cost itself
    _run(node, np.random.default_rng(0).integers(0, 40, 40))
    assert node.stats.synops > 0


def test_fractional_rates_and_dram_leave_the_cost_to_step_cost(tmp_path):
    """A cost table with a fractional cycle rate, or weights spilled to DRAM, take cost.step_cost (the fallback),
    with the same counters; early input (deliver) is counted as in one step."""
    path = make_gesture(tmp_path / "g", n_in=2048, hidden=(128, 64))
    xs = random_counts(np.random.default_rng(1), 20, 2048, 0.03)
    fractional = dataclasses.replace(CostTable(), cycles_per_synop_fp32=7.5)
    small = ChipSpec(n_pes=8, n_qpes=2)  # too small for the input layer's weights: they spill to DRAM
    for node, fallback in ((Node.load(path, cost_table=fractional), True),
                           (Node.load(path, chip=small, dram=True, decoder="pe"), True), (Node.load(path), False)):
        assert (node._counts.rates is None) == fallback
        assert node.compiled.groups[0].spilled == (node.chip is small)
        _run(node, xs)
        node.deliver(xs[0])
        before = [c.copy() for c in node._y_idx]
        st = node.step(xs[1]).stats
        assert np.array_equal(st.pe_synops, _reference_counts(node, xs[0] + xs[1], before)[0])
    node.cost_table = fractional  # a new table rebuilds the plan
    assert node._counts.table is fractional and node._counts.rates is None


def test_cycle_rates_must_be_integers_and_sums_bounded():
    """The plan folds cycles in only for integer rates and counts whose cycle sums stay exact in float64."""
    assert integer_cycle_rates(CostTable(), "int8", "column") == (1.0, 20.0, 10.0)
    assert integer_cycle_rates(CostTable(cycles_per_packet_out=10.5), "fp32", "column") is None
    assert integer_cycle_rates(CostTable(cycles_per_csr_entry=4.5), "fp32", "column") is not None
    assert integer_cycle_rates(CostTable(cycles_per_csr_entry=4.5), "fp32", "csr") is None
    terms = [(slice(0, 2), CountTable(np.ones((3, 2)), np.ones((3, 2))))]

    def plan(max_count: float) -> StepCounts:
        return StepCounts(2, terms, ChipSpec(), CostTable(), "fp32", "column", np.ones(2), np.zeros(2),
                          np.zeros(1, np.int64), False, max_count)

    assert plan(1e6).rates is not None and plan(2.0**50).rates is None


@pytest.mark.parametrize("numerics", ["fp32", "int8"])
@pytest.mark.parametrize("task", ["lm", "gesture"])
def test_fused_gates_equal_accumulate_plus_bias(tmp_path, task, numerics):
    """A layer's gates from one product for its recurrent and its next weights equal each separate accumulation
    plus its bias, for fresh events, kept events, no events and the decoder: int8 bit for bit (exact integer sums),
    fp32 to float rounding (another grouping of the same sums)."""
    path = make_lm(tmp_path / "lm", hidden=(96, 64)) if task == "lm" else make_gesture(tmp_path / "g", n_in=256,
                                                                                         hidden=(64,))
    k = Node.load(path, numerics=numerics).kernel

    def same(a: np.ndarray, b: np.ndarray) -> bool:
        return np.array_equal(a, b) if numerics == "int8" else np.allclose(a, b, rtol=1e-5, atol=1e-6)

    rng = np.random.default_rng(2)
    for li, h in enumerate(k.hidden):
        assert k.fused[li] is not None
        for n in (0, 5, h // 3, h):  # no events, gathered rows, the dense product, every source
            cols = np.sort(rng.choice(h, n, replace=False))
            vals = rng.uniform(0.05, 1.2, n).astype(np.float32)
            nxt = k.gates_in(li + 1, cols, vals) if li + 1 < len(k.hidden) else k.decode(cols, vals)
            rec = k.gates_rec(li, cols, vals)  # the kept half of the same events
            assert same(rec, k.accumulate(li, "hh", cols, vals) + k.bias_hh[li])
            ref = k.accumulate(li + 1, "ih", cols, vals)
            assert same(nxt, ref if li + 1 == len(k.hidden) else ref + k.bias_ih[li + 1])
            assert np.array_equal(k.gates_rec(li, cols.copy(), vals.copy()), rec)  # copies: computed again


def test_fp32_fused_steps_agree_with_the_separate_products(tmp_path):
    """fp32 steps with the fused products agree with the separate accumulations (the fallback) to rounding, with
    the same events and counters."""
    path = make_lm(tmp_path / "lm", hidden=(96, 64))
    fast, separate = Node.load(path), Node.load(path)
    separate.kernel.fused = [None] * separate.n_layers
    for t in np.random.default_rng(4).integers(0, 40, 60):
        a, b = fast.step(t), separate.step(t)
        np.testing.assert_allclose(a.logits, b.logits, rtol=1e-5, atol=1e-5)
        assert a.stats.synops == b.stats.synops and a.stats.events_out == b.stats.events_out
    assert fast.stats.events_out > 0


@pytest.mark.parametrize("streams", [None, 3])
def test_update_guards_exp_overflow_without_warnings(tmp_path, streams):
    """The unit update's overflow guard (one argmax) takes the silenced path exactly when some -x reaches 88: the
    gates equal the textbook float32 formulas, a saturated gate is exactly 0, and no warning is raised."""
    import warnings

    k = Node.load(make_lm(tmp_path / "lm", hidden=(8,))).kernel
    rng = np.random.default_rng(3)
    shape = (24,) if streams is None else (streams, 24)
    gx, gh = rng.normal(0, 2, shape).astype(np.float32), rng.normal(0, 2, shape).astype(np.float32)
    c_prev = rng.uniform(-1, 1, (*shape[:-1], 8)).astype(np.float32)
    for low in (0.0, -200.0):  # -x at most ~10, then one gate far past exp's float32 range
        gx[..., 3] += low
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            c, c_hat, o = k.update_units(0, gx, gh, c_prev)
        with np.errstate(over="ignore"):
            rz = np.float32(1) / (np.float32(1) + np.exp(-(gx[..., :16] + gh[..., :16])))
        n = np.tanh(rz[..., :8] * gh[..., 16:] + gx[..., 16:])
        ref = (np.float32(1) - rz[..., 8:]) * n + rz[..., 8:] * c_prev
        assert np.array_equal(c_hat, ref) and np.array_equal(o, ref > k.thresholds[0])
        assert np.array_equal(c, ref - o * k.thresholds[0])
    assert (rz[..., 3] == 0).all()


def test_int8_gesture_input_gates_equal_accumulate_plus_bias(tmp_path):
    """int8 gesture input (a payload scale per timestep) through the written-out gathered path equals
    `accumulate` plus the bias bit for bit, signed and unsigned payloads, and where it defers to the general path
    (no packets, a dense share of the sources)."""
    k = Node.load(make_gesture(tmp_path / "g", n_in=256, hidden=(64,)), numerics="int8").kernel
    assert k.input_scale is None and k.csc[0]["ih"] is None
    rng = np.random.default_rng(3)
    for n in (0, 1, 7, 40, 64, 200):  # 64 of 256: the last gathered share; 200: the dense product
        cols = np.sort(rng.choice(256, n, replace=False))
        for vals in (rng.integers(1, 9, n) * 0.25, rng.normal(0, 2, n)):
            vals = vals.astype(np.float32)
            assert np.array_equal(k.gates_in(0, cols, vals), k.accumulate(0, "ih", cols, vals) + k.bias_ih[0])


@pytest.mark.parametrize("task", ["lm", "gesture"])
def test_int8_compiled_products_equal_the_numpy_path(tmp_path, task):
    """The compiled int8 products (int8_jit: int8 levels, int32 sums) are the ones a step takes, and each equals
    the NumPy path bit for bit: gesture input with its per-timestep scale (counts, signed values, one source,
    every source) and each layer's fused events (few, many, every unit)."""
    path = make_lm(tmp_path / "lm", hidden=(96, 64)) if task == "lm" else make_gesture(tmp_path / "g", n_in=256,
                                                                                         hidden=(64,))
    k = Node.load(path, numerics="int8").kernel
    assert all(w is not None for w in k._w8_fused)
    assert (k._w8_in is not None) == (task == "gesture")
    rng = np.random.default_rng(5)
    for li, h in enumerate(k.hidden):
        fused = k.fused[li]
        for n in (1, 9, h // 2, h):
            cols = np.sort(rng.choice(h, n, replace=False))
            vals = rng.uniform(0.03, 1.3, n).astype(np.float32)
            rec, nxt = k._fused(li, cols, vals)
            ref = fused.gates(cols, vals, k.event_payloads(vals))  # the NumPy product of the same events
            assert np.array_equal(rec, ref[0]) and np.array_equal(nxt, ref[1])
    if task == "gesture":
        for n in (1, 7, 40, 256):
            cols = np.sort(rng.choice(256, n, replace=False))
            for vals in (rng.integers(1, 9, n) * 0.25, rng.normal(0, 2, n), np.full(n, 1e-30)):
                vals = vals.astype(np.float32)
                assert np.array_equal(k.gates_in(0, cols, vals), k.accumulate(0, "ih", cols, vals) + k.bias_ih[0])


def test_int8_compiled_input_defers_non_finite_values_and_sums_past_float32(tmp_path):
    """Input with inf or NaN has no integer payloads: the compiled product hands it to NumPy's path (the same
    NaNs). Levels whose sums pass 2^24, which NumPy sums in float64, sum exactly in int32 all the same."""
    from s2node.kernels import int8_jit

    k = Node.load(make_gesture(tmp_path / "g", n_in=256, hidden=(16,)), numerics="int8").kernel
    cols = np.array([3, 70, 200])
    for bad in (np.inf, -np.inf, np.nan):
        vals = np.array([1.0, bad, 2.0], np.float32)
        assert len(int8_jit.input_gates(vals, cols, k._w8_in, k.scale[0]["ih"], k.bias_ih[0])) == 0
        with np.errstate(invalid="ignore"):
            got, ref = k.gates_in(0, cols, vals), k.accumulate(0, "ih", cols, vals) + k.bias_ih[0]
        assert np.array_equal(got, ref, equal_nan=True)
    rng = np.random.default_rng(6)
    w8 = rng.choice(np.array([-127, 127], np.int8), (4096, 8))
    w8[:, 0] = 127  # a column without cancellations: its sum passes 2^24
    assert int8_jit.fits(w8) and not int8_jit.fits(np.full((140_000, 1), 127, np.int8))
    vals = rng.integers(1, 40, 4096).astype(np.float32)
    vals[0] = 40.0  # the per-timestep scale makes it 127
    cols = np.arange(4096)
    got = int8_jit.input_gates(vals, cols, w8, np.ones(8, np.float32), np.zeros(8, np.float32))
    p = np.rint(vals.astype(np.float64) / (40.0 / 127))
    exact = (p.astype(np.int64) @ w8.astype(np.int64)).astype(np.float32) * np.float32(40.0 / 127)
    assert np.abs(p @ w8.astype(np.float64)).max() > 2**24 and np.array_equal(got, exact)
