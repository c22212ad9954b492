"""The emulated node against the PyTorch EGRU: fp32 agreement, int8 bounds, synops, zero-input cost."""

import numpy as np
import pytest
import torch
from node_models import make_gesture, make_lm, random_counts

from s2node.metrics import ActivityCounter
from s2node.models import load_torch_model
from s2node.runtime import Node

torch.set_num_threads(1)


def _node_run(node, inputs):
    """Step the node; return per-step outputs and per-layer dense y ([T, H] each)."""
    outs, ys = [], [[] for _ in node.kernel.hidden]
    for v in inputs:
        outs.append(node.step(v).logits)
        for li, h in enumerate(node.kernel.hidden):
            y = np.zeros(h, np.float32)
            y[node._y_idx[li]] = node._y_val[li]
            ys[li].append(y)
    return np.array(outs), [np.array(y) for y in ys]


def _torch_layers(model, x):
    """Per-layer (input, y, c_hat) of the PyTorch stack for one sequence x [T, I]."""
    out, inp = [], x[None]
    with torch.no_grad():
        for layer in model.rnn.layers:
            r = layer(inp)
            out.append((inp[0].numpy(), r.y[0].numpy(), r.c_hat[0].numpy(), layer.effective_threshold().numpy()))
            inp = r.y
    return out


def _check_fp32(node_y, layers):
    for y_node, (_, y_ref, c_hat, thr) in zip(node_y, layers, strict=True):
        near = np.abs(c_hat - thr) < 1e-5  # a unit this close to its threshold may go either way
        assert np.allclose(y_node[~near], y_ref[~near], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("zoneout", [0.0, 0.3])
def test_fp32_lm_matches_pytorch(tmp_path, zoneout):
    """fp32: the same next-token prediction as PyTorch on >= 99.9 % of steps and outputs equal to rounding."""
    path = make_lm(tmp_path / "lm", zoneout=zoneout)
    model, cfg = load_torch_model(path)
    ids = np.random.default_rng(0).integers(0, len(cfg["vocab"]), 600)
    node = Node.load(path)
    logits, ys = _node_run(node, ids)
    with torch.no_grad():
        ref, _, _ = model(torch.from_numpy(ids)[None])
    ref = ref[0].numpy()
    assert (logits.argmax(1) == ref.argmax(1)).mean() >= 0.999
    assert np.allclose(logits, ref, atol=1e-4)
    _check_fp32(ys, _torch_layers(model, model.embedding(torch.from_numpy(ids))))
    assert 0.05 < node.stats.activity_sparsity < 0.95  # the test model does fire, and sparsely


@pytest.mark.parametrize("readout", [{"source": "trace", "trace_alpha": 0.8, "pool": "mean"},
                                     {"source": "y", "trace_alpha": 0.9, "pool": "last"}])
def test_fp32_gesture_matches_pytorch(tmp_path, readout):
    """fp32 gesture model (2 layers): pooled predictions agree with PyTorch on >= 99.9 % of steps."""
    path = make_gesture(tmp_path / "g", n_in=512, hidden=(96, 64), readout=readout)
    model, _ = load_torch_model(path)
    x = random_counts(np.random.default_rng(2), 120, 512, 0.05)
    node = Node.load(path)
    out, ys = _node_run(node, x)
    with torch.no_grad():
        ref, _, _ = model(torch.from_numpy(x)[None])
    ref = ref[0].numpy()
    if readout["pool"] == "mean":
        ref = np.cumsum(ref, 0) / np.arange(1, len(ref) + 1)[:, None]
    assert (out.argmax(1) == ref.argmax(1)).mean() >= 0.999 and np.allclose(out, ref, atol=1e-4)
    _check_fp32(ys, _torch_layers(model, torch.from_numpy(x)))


def test_int8_agreement_is_bounded(tmp_path):
    """int8: per-row int8 weights and payloads keep >= 90 % prediction agreement and close logits."""
    path = make_lm(tmp_path / "lm", hidden=(128,))
    model, cfg = load_torch_model(path)
    ids = np.random.default_rng(3).integers(0, len(cfg["vocab"]), 400)
    node = Node.load(path, numerics="int8")
    logits, _ = _node_run(node, ids)
    with torch.no_grad():
        ref = model(torch.from_numpy(ids)[None])[0][0].numpy()
    agree = (logits.argmax(1) == ref.argmax(1)).mean()
    assert agree >= 0.9 and np.abs(logits - ref).mean() < 0.05
    assert not np.array_equal(logits, ref)  # it is really quantised


def test_synops_equal_neurobench_count(tmp_path):
    """Counted synops equal s2node.metrics' NeuroBench count on the PyTorch model, step for step in total."""
    path = make_gesture(tmp_path / "g", n_in=512, hidden=(96, 64))
    model, cfg = load_torch_model(path)
    x = random_counts(np.random.default_rng(4), 80, 512, 0.05)
    node = Node.load(path)
    for v in x:
        node.step(v)
    counter = ActivityCounter(node.spec.to_tensors(), len(cfg["layers"]))
    for li, (inp, y, _, _) in enumerate(_torch_layers(model, torch.from_numpy(x))):
        counter.add(li, inp, np.vstack([np.zeros_like(y[:1]), y[:-1]]), y)
    assert node.stats.synops == counter.synops > 0
    assert node.stats.activity_sparsity == pytest.approx(counter.activity_sparsity)


def test_zero_input_events_cost_zero_synops(tmp_path):
    """A timestep with no input events and no pending unit events does no synaptic work on any PE."""
    path = make_gesture(tmp_path / "g", n_in=512, hidden=(64,), threshold=5.0)  # nothing can fire
    node = Node.load(path)
    for _ in range(3):
        node.step(np.zeros(512, np.float32))
        assert node.last.synops == 0 and node.last.decoder_synops == 0 and node.last.events_in == 0
        assert node.last.pe_synops.sum() == 0 and node.last.pe_packets_in.sum() == 0
    node.step(random_counts(np.random.default_rng(5), 1, 512, 0.05)[0])
    assert node.last.synops > 0


def test_cost_grows_with_activity_and_dense_costs_most(tmp_path):
    """More input events cost more cycles and energy; the dense equivalent costs more than the sparse run."""
    path = make_gesture(tmp_path / "g", n_in=512, hidden=(64,))
    node = Node.load(path)
    rng = np.random.default_rng(6)
    costs = []
    for rate in (0.01, 0.2):
        node.reset()
        node.step(random_counts(rng, 1, 512, rate)[0])
        costs.append(node.last.cost)
    assert costs[1].energy_j > costs[0].energy_j and costs[1].latency_s > costs[0].latency_s
    dense = node.dense_step_stats()
    assert dense.cost.energy_j > costs[1].energy_j and dense.synops == sum(
        int(np.count_nonzero(w)) for w in (node.spec.layers[0].weight_ih, node.spec.layers[0].weight_hh))


def test_packet_input_sums_duplicate_keys(tmp_path):
    """(keys, payloads) packets with repeated keys equal the dense vector of summed payloads."""
    path = make_gesture(tmp_path / "g", n_in=512, hidden=(64,))
    a, b = Node.load(path), Node.load(path)
    keys = np.array([3, 7, 3, 100])
    dense = np.zeros(512, np.float32)
    np.add.at(dense, keys, 1.0)
    pa, pb = a.step((keys, np.ones(4))), b.step(dense)
    assert np.array_equal(pa.logits, pb.logits) and a.last.events_in == 3


def test_prune_reduces_synops(tmp_path):
    """Loading with prune=0.8 runs the pruned weights: fewer synops per event than unpruned."""
    path = make_gesture(tmp_path / "g", n_in=512, hidden=(64,))
    x = random_counts(np.random.default_rng(7), 1, 512, 0.05)[0]
    full, pruned = Node.load(path), Node.load(path, prune=0.8)
    full.step(x)
    pruned.step(x)
    assert pruned.last.synops < 0.3 * full.last.synops


def test_node_stats_fit_the_mqtt_payload(tmp_path):
    """node_stats() gives NodeStats fields: one activity per chip PE in [0, 1], SRAM used within the total."""
    from stream.schema import NodeStats

    path = make_gesture(tmp_path / "g", n_in=512, hidden=(64,))
    node = Node.load(path)
    for v in random_counts(np.random.default_rng(8), 5, 512, 0.05):
        node.step(v)
    st = node.node_stats()
    payload = NodeStats(model="g", **st)
    assert len(payload.pe_activity) == 152 and 0 < max(payload.pe_activity) <= 1.0
    assert payload.pe_activity[node.n_pes:] == [0.0] * (152 - node.n_pes)
    assert 0 < payload.sram_bytes_used <= payload.sram_bytes_total and payload.steps == 5
    assert payload.energy_per_inference_j == pytest.approx(node.stats.energy_j / 5)  # one prediction a step


def test_spread_uses_spare_pes_for_lower_latency_same_outputs(tmp_path):
    """spread=True places layers on more PEs: identical outputs and counts, shorter latency."""
    path = make_lm(tmp_path / "lm", hidden=(128, 128))
    ids = np.random.default_rng(9).integers(0, 40, 50)
    packed, spread = Node.load(path), Node.load(path, spread=True)
    assert spread.n_pes > packed.n_pes and spread.n_pes <= 152
    assert spread.compiled.sram_total_per_pe.max() <= 131072
    for t in ids:
        a, b = packed.step(t), spread.step(t)
        assert np.array_equal(a.logits, b.logits)
    assert packed.stats.synops == spread.stats.synops
    assert spread.stats.summary()["latency_s_p50"] < packed.stats.summary()["latency_s_p50"]


@pytest.mark.parametrize("numerics", ["fp32", "int8"])
def test_sparse_columns_match_dense_columns(tmp_path, numerics):
    """A 98 %-pruned model through the CSC path equals the dense-column path (int8: exactly; fp32: to rounding)."""
    from s2node.kernels.base import SparseColumns

    path = make_lm(tmp_path / "lm", hidden=(256,))
    node, dense = Node.load(path, numerics=numerics, prune=0.98), Node.load(path, numerics=numerics, prune=0.98)
    csc = node.kernel.csc[0]["hh"]
    assert csc is not None and csc.worth_it(np.arange(64))  # the pruned matrices take the sparse path
    dense.kernel.csc = [dict.fromkeys(c) for c in dense.kernel.csc]  # force dense columns
    rng = np.random.default_rng(10)
    wt = node.kernel.w[0]["hh"]
    cols = np.sort(rng.choice(wt.shape[0], 20, replace=False))
    vals = rng.integers(-127, 128, 20).astype(np.float64)
    assert np.allclose(SparseColumns(wt).matvec(cols, vals), vals @ wt[cols].astype(np.float64), rtol=1e-6)
    ids = rng.integers(0, 40, 200)
    a, _ = _node_run(node, ids)
    b, _ = _node_run(dense, ids)
    if numerics == "int8":
        assert np.array_equal(a, b)  # exact integer sums either way
    else:
        assert np.allclose(a, b, atol=1e-5) and (a.argmax(1) == b.argmax(1)).mean() >= 0.999
        model, _ = load_torch_model(path)
        model.rnn.load_tensors({k: v for k, v in node.spec.to_tensors().items() if k.startswith("rnn.")})
        with torch.no_grad():
            ref = model(torch.from_numpy(ids)[None])[0][0].numpy()
        assert (a.argmax(1) == ref.argmax(1)).mean() >= 0.999


def test_state_snapshot_restores_the_sequence(tmp_path):
    """get_state/set_state: stepping on after a restore repeats the predictions exactly (text continuations)."""
    path = make_lm(tmp_path / "lm", hidden=(64,))
    node = Node.load(path)
    for t in (1, 2, 3):
        node.step(t)
    saved = node.get_state()
    first = [node.step(t).logits for t in (4, 5, 6)]
    node.set_state(saved)
    again = [node.step(t).logits for t in (4, 5, 6)]
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    p = node.step(7)
    assert p.stats is node.last and p.stats.units == 64 and node.config["task"] == "lm"


@pytest.mark.parametrize("task", ["lm", "gesture"])
def test_int8_fused_events_equal_the_separate_accumulations(tmp_path, task):
    """int8's fast path (one product for a layer's recurrent and next-layer weights) changes no bit of any step,
    across a state restore too (the restored events are copies: the stored half is not reused)."""
    if task == "lm":
        path, xs = make_lm(tmp_path / "lm", hidden=(96, 64)), np.random.default_rng(5).integers(0, 40, 60)
    else:
        path, xs = make_gesture(tmp_path / "g", n_in=512, hidden=(64,)), random_counts(np.random.default_rng(5), 60,
                                                                                      512, 0.05)
    fast, separate = Node.load(path, numerics="int8"), Node.load(path, numerics="int8")
    assert all(f is not None for f in fast.kernel.fused)
    separate.kernel.fused = [None] * separate.n_layers
    for t, x in enumerate(xs):
        if t == 30:
            fast.set_state(fast.get_state())
        a, b = fast.step(x), separate.step(x)
        assert np.array_equal(a.logits, b.logits) and a.stats.synops == b.stats.synops
        assert all(np.array_equal(c, d) for c, d in zip(fast._c, separate._c, strict=True))
    assert fast.stats.events_out > 0


def test_int8_unit_payload_bounds_equal_the_division():
    """The searchsorted levels of unit payloads equal rint(y / s_y) clipped at 127, at every bound and near it."""
    from s2node.compiler.quantize import Y_PAYLOAD_SCALE, quantize_payload
    from s2node.kernels.int8 import unit_payload_bounds

    bounds = unit_payload_bounds(Y_PAYLOAD_SCALE)
    near = np.concatenate([bounds.view(np.int32) + d for d in range(-2, 3)]).view(np.float32)
    y = np.concatenate([near, np.random.default_rng(6).uniform(1e-4, 1.1, 10_000).astype(np.float32), [0.5, 2.0]])
    y = y.astype(np.float32)
    assert np.array_equal(np.searchsorted(bounds, y, side="right"), quantize_payload(y, Y_PAYLOAD_SCALE))


@pytest.mark.parametrize("numerics", ["fp32", "int8"])
def test_input_delivered_before_the_tick_equals_one_step(tmp_path, numerics):
    """deliver(a); deliver(b); step(c) == step(a + b + c): same outputs (fp32 to rounding, int8 exactly), and the
    same packets, synops and cost, since the chip sees one packet per active source and timestep either way."""
    path = make_gesture(tmp_path / "g", hidden=(64, 48))
    whole, early = Node.load(path, numerics=numerics), Node.load(path, numerics=numerics)
    rng = np.random.default_rng(3)
    for x in random_counts(rng, 12, 2048, 0.1):
        parts = [np.where(rng.random(x.size) < 1 / 3, x, 0).astype(np.float32) for _ in range(2)]
        rest = x - parts[0] - parts[1]
        rest = np.where(rest >= 0, rest, 0).astype(np.float32)
        full = parts[0] + parts[1] + rest
        a = whole.step(full)
        for p in parts:
            early.deliver(p)
        b = early.step(rest)
        tol = 1e-5 if numerics == "fp32" else 0.0
        np.testing.assert_allclose(b.logits, a.logits, atol=tol, rtol=tol)
        assert b.stats.synops == a.stats.synops and b.stats.events_in == a.stats.events_in
        assert b.stats.cost.energy_j == pytest.approx(a.stats.cost.energy_j)
    with pytest.raises(Exception, match="deliver"):
        Node.load(make_lm(tmp_path / "lm")).deliver(np.zeros(3))


@pytest.mark.parametrize("numerics", ["fp32", "int8"])
def test_bookkeeping_left_for_later_is_the_same(tmp_path, numerics):
    """step(x, settle=False) gives the same prediction at once and, once settled (by settle() or by the node's next
    step, deliver or reset), the same counters, cost and run totals as step(x); so does the streaming model's
    step_first.
    The early input's counts, taken on delivery, still go to the step they belong to."""
    from s2node.step import NodeStepModel

    path = make_gesture(tmp_path / "g", hidden=(64, 48))
    now, later = Node.load(path, numerics=numerics), Node.load(path, numerics=numerics)
    rng = np.random.default_rng(5)
    xs = random_counts(rng, 16, 2048, 0.1)
    for i, x in enumerate(xs):
        if i % 4 == 1:  # early input, delivered while the last step's bookkeeping is still pending
            half = np.where(rng.random(x.size) < 0.5, x, 0).astype(np.float32)
            now.deliver(half)
            later.deliver(half)
            x = x - half
        a, b = now.step(x), later.step(x, settle=False)
        assert b.stats is None and b.events_out == a.events_out == a.stats.events_out
        assert b.label == a.label and np.array_equal(b.logits, a.logits)
        if i % 2:
            st = later.settle()
            assert (st.synops, st.events_in, st.cost.energy_j) == (a.stats.synops, a.stats.events_in,
                                                                   a.stats.cost.energy_j)
            assert later.settle() is None  # nothing twice
    later.step(xs[0], settle=False)  # pending: read-only node_stats leaves it, the next call settles it
    assert later.node_stats()["steps"] == now.node_stats()["steps"] == len(xs)
    later.reset()
    now.step(xs[0])
    assert later.node_stats()["steps"] == now.node_stats()["steps"] == len(xs) + 1
    assert (later.stats.synops, later.stats.energy_j) == (now.stats.synops, now.stats.energy_j)

    plain, first = NodeStepModel(path, numerics), NodeStepModel(path, numerics)
    for x in xs:
        r, f = plain.step(x), first.step_first(x)
        assert f.synops == 0 and (f.events_out, f.units) == (r.events_out, r.units)
        assert np.array_equal(f.probs, r.probs)
    assert first.counters.synops < plain.counters.synops  # the last step's synops: not yet counted
    first.settle()
    assert (first.counters.steps, first.counters.events_out, first.counters.synops) == \
        (plain.counters.steps, plain.counters.events_out, plain.counters.synops)
