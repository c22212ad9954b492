"""StreamBatch: each stream of a batch equals a lone StepModel fed the same inputs, on both backends."""

import numpy as np
import pytest
import torch
from node_models import make_gesture, make_lm, random_counts

from s2node.batch import StreamBatch, load_stream_batch
from s2node.errors import S2NodeError
from s2node.step import load_step_model

torch.set_num_threads(1)

N, T = 5, 24
# node stats that depend on the wall clock (synops_per_s) or on the host's timing (torch latency) are not compared
WALL_KEYS = {"synops_per_s", "latency_p50_s", "latency_p99_s"}


def _schedule(rng, task, n_in, vocab):
    """Per tick: {stream: input} for a random subset (streams skip ticks), early deliveries and resets."""
    ticks = []
    for t in range(T):
        # two ticks in five step one stream alone (the batch's single-stream path), the others a random subset
        active = [(t // 5) % N] if t % 5 < 2 else [i for i in range(N) if rng.random() < 0.7]
        if task == "lm":
            xs = {i: int(rng.integers(0, vocab)) for i in active}
            early = {}
        else:
            xs = {i: random_counts(rng, 1, n_in, 0.05)[0] for i in active}
            early = {i: random_counts(rng, 1, n_in, 0.03)[0] for i in active if rng.random() < 0.3}
        resets = [2] if t == 11 else []  # stream 2 steps alone at ticks 10 and 11: a reset between them
        ticks.append((xs, early, resets))
    return ticks


def _compare(batch: StreamBatch, lone: list, ticks, atol: float, exact_stats: bool) -> None:
    for xs, early, resets in ticks:
        for i in resets:
            batch.reset(i)
            lone[i].reset()
        for i, x in early.items():
            batch.deliver(i, x)
            lone[i].deliver(x)
        got = batch.step_many(xs)
        assert sorted(got) == sorted(xs)
        for i, x in xs.items():
            ref = lone[i].step(x)
            np.testing.assert_allclose(got[i].probs, ref.probs, rtol=0, atol=atol)
            assert (got[i].events_out, got[i].units, got[i].synops) == (ref.events_out, ref.units, ref.synops)
    for i in range(N):
        a, b = batch.counters(i), lone[i].counters
        assert (a.steps, a.events_out, a.units, a.synops) == (b.steps, b.events_out, b.units, b.synops)
        sa, sb = batch.node_stats(i), lone[i].node_stats()
        assert sa.keys() == sb.keys()
        keys = set(sa) - (set() if exact_stats else WALL_KEYS) - {"synops_per_s"}
        assert {k: sa[k] for k in keys} == {k: sb[k] for k in keys}


@pytest.mark.parametrize(("backend", "numerics", "atol"), [("node", "fp32", 1e-6), ("node", "int8", 0.0),
                                                           ("torch", "fp32", 1e-5)])
def test_gesture_streams_equal_lone_models(tmp_path, backend, numerics, atol):
    """Gesture streams (trace + mean readout) skipping ticks, with early input and a reset, equal lone models."""
    path = make_gesture(tmp_path / "g", n_in=128, hidden=(32, 24))
    ticks = _schedule(np.random.default_rng(1), "gesture", 128, 0)
    batch = load_stream_batch(path, N, backend, numerics=numerics)
    lone = [load_step_model(path, backend, numerics=numerics) for _ in range(N)]
    _compare(batch, lone, ticks, atol, exact_stats=backend == "node")
    assert batch.n == N and batch.config["task"] == "gesture" and batch.name == path.name


@pytest.mark.parametrize("backend", ["node", "torch"])
def test_gesture_window_and_last_readouts(tmp_path, backend):
    """A stream's sliding window (window_s) and a last-step readout pool as the lone models do."""
    ticks = _schedule(np.random.default_rng(2), "gesture", 64, 0)
    atol = 1e-6 if backend == "node" else 1e-5
    for name, ro, window_s in (("w", None, 0.05), ("l", {"source": "y", "trace_alpha": 0.9, "pool": "last"}, None)):
        path = make_gesture(tmp_path / name, n_in=64, hidden=(32,), readout=ro)
        batch = load_stream_batch(path, N, backend, window_s=window_s)
        lone = [load_step_model(path, backend, window_s=window_s) for _ in range(N)]
        _compare(batch, lone, ticks, atol, exact_stats=backend == "node")


@pytest.mark.parametrize(("backend", "numerics", "options"), [
    ("node", "fp32", {}), ("node", "int8", {}), ("node", "int8", {"decoder": "pe", "embedding": "pe"}),
    ("node", "fp32", {"prune": 0.9}), ("torch", "fp32", {})])
def test_lm_streams_equal_lone_models(tmp_path, backend, numerics, options):
    """Language-model streams (token inputs) equal lone models, also with the decoder and embedding on PEs."""
    path = make_lm(tmp_path / "lm", hidden=(48, 40))
    ticks = _schedule(np.random.default_rng(3), "lm", 0, 60)
    atol = {"fp32": 1e-6, "int8": 0.0}[numerics] if backend == "node" else 1e-5
    batch = load_stream_batch(path, N, backend, numerics=numerics, **options)
    lone = [load_step_model(path, backend, numerics=numerics, **options) for _ in range(N)]
    _compare(batch, lone, ticks, atol, exact_stats=backend == "node")


@pytest.mark.parametrize("backend", ["node", "torch"])
def test_reset_and_idle_streams_keep_the_others(tmp_path, backend):
    """Resetting one stream, or not stepping it, leaves every other stream's sequence as it was."""
    path = make_gesture(tmp_path / "g", n_in=64, hidden=(32,))
    rng = np.random.default_rng(4)
    xs = random_counts(rng, 12, 64, 0.1)
    batch = load_stream_batch(path, 3, backend)
    solo = load_stream_batch(path, 1, backend)
    for t, x in enumerate(xs):
        if t == 6:
            batch.reset(1)
        ticks = {0: x, 1: x} if t % 2 else {0: x, 1: x, 2: x}
        got, ref = batch.step_many(ticks), solo.step_many({0: x})
        np.testing.assert_allclose(got[0].probs, ref[0].probs, atol=1e-5)
    assert batch.counters(2).steps == 6 and batch.counters(0).steps == 12


@pytest.mark.parametrize("backend", ["node", "torch"])
def test_bad_input_is_a_one_line_error(tmp_path, backend):
    """A stream index, input size or token outside the model is an S2NodeError naming it."""
    g = load_stream_batch(make_gesture(tmp_path / "g", n_in=64, hidden=(16,)), 2, backend)
    lm = load_stream_batch(make_lm(tmp_path / "lm", hidden=(16,)), 2, backend)
    with pytest.raises(S2NodeError, match=r"stream 2 outside 0\.\.1"):
        g.step_many({2: np.zeros(64)})
    with pytest.raises(S2NodeError, match="input has 10 values"):
        g.step_many({0: np.zeros(10)})
    with pytest.raises(S2NodeError, match="token id 999"):
        lm.step_many({0: 999})
    with pytest.raises(S2NodeError, match="language model"):
        lm.deliver(0, np.zeros(3))
    with pytest.raises(S2NodeError, match="backend"):
        load_stream_batch(tmp_path / "g", 2, "gpu")  # type: ignore[arg-type]
    assert g.step_many({}) == {}


@pytest.mark.parametrize("numerics", ["fp32", "int8"])
def test_every_batched_product_equals_the_lone_accumulation(tmp_path, numerics):
    """Kernel.accumulate_many picks dense, union, per-stream rows or CSC walks by cost; each equals accumulate."""
    from s2node.kernels.base import ActiveSources, batch_plan
    from s2node.runtime import Node

    path = make_gesture(tmp_path / "g", n_in=2048, hidden=(32,))
    rng = np.random.default_rng(5)

    def streams(k, active):
        x = np.zeros((k, 2048), np.float32)
        for row in x:
            row[rng.choice(2048, active, replace=False)] = rng.integers(1, 4, active)
        x[1] = 0  # a stream with no input
        return x

    cases = {"dense": (None, streams(4, 2048)), "union": (None, streams(4, 10)), "rows": (None, streams(64, 20)),
             "sparse": (0.995, streams(8, 200))}
    for how, (prune, x) in cases.items():
        kern = Node.load(path, numerics=numerics, prune=prune).kernel
        assert batch_plan(ActiveSources.of(x), kern.w[0]["ih"], kern.csc[0]["ih"])[0] == how
        got = kern.accumulate_many(0, "ih", x)
        ref = np.stack([kern.accumulate(0, "ih", np.flatnonzero(r), r[np.flatnonzero(r)]) for r in x])
        if numerics == "int8":
            assert np.array_equal(got, ref)  # integer sums: the same in any order
        else:
            np.testing.assert_allclose(got, ref, rtol=1e-5, atol=2e-6 * np.abs(ref).max())  # float32 sum order


@pytest.mark.parametrize("numerics", ["fp32", "int8"])
@pytest.mark.parametrize("task", ["gesture", "lm"])
def test_every_stream_stepping_tick_after_tick_equals_lone_models(tmp_path, task, numerics):
    """Ticks of every stream in a row (their last events reused as the next recurrent input), broken by a reset, a
    stream stepping alone and a tick of a few, equal lone models."""
    rng = np.random.default_rng(6)
    if task == "lm":
        path = make_lm(tmp_path / "lm", hidden=(48, 40))
        x_of = lambda: int(rng.integers(0, 60))  # noqa: E731
    else:
        path = make_gesture(tmp_path / "g", n_in=128, hidden=(32, 24))
        x_of = lambda: random_counts(rng, 1, 128, 0.05)[0]  # noqa: E731
    ticks = []
    for t in range(20):
        active = [1] if t == 9 else [0, 3] if t == 14 else range(N)
        ticks.append(({i: x_of() for i in active}, {}, [2] if t == 5 else []))
    batch = load_stream_batch(path, N, "node", numerics=numerics)
    lone = [load_step_model(path, "node", numerics=numerics) for _ in range(N)]
    _compare(batch, lone, ticks, {"fp32": 1e-6, "int8": 0.0}[numerics], exact_stats=True)


def test_latency_windows_keep_what_a_lone_node_keeps():
    """Each stream's latencies are bounded as Node's list: past 2·window, the oldest window go (one stream or many)."""
    from s2node.node_batch import LatencyWindows

    rng = np.random.default_rng(7)
    lat, ref = LatencyWindows(3, window=4), [[], [], []]
    for _ in range(60):
        idx = np.flatnonzero(rng.random(3) < 0.7)
        if not len(idx):  # no stream steps: no tick
            continue
        v = rng.random(len(idx))
        if len(idx) == 1:
            lat.add_one(int(idx[0]), float(v[0]))
        else:
            lat.add(idx, v)
        for i, x in zip(idx.tolist(), v.tolist(), strict=True):
            ref[i].append(x)
            if len(ref[i]) > 8:
                del ref[i][:4]
    for i in range(3):
        assert lat.of(i).tolist() == ref[i]


@pytest.mark.parametrize("numerics", ["fp32", "int8"])
def test_fused_events_product_equals_the_two_accumulations(tmp_path, numerics):
    """accumulate_events_many (one product over [W_hh | W_next]) equals the recurrent and next-layer accumulations."""
    from s2node.kernels.base import ActiveSources
    from s2node.runtime import Node

    kern = Node.load(make_lm(tmp_path / "lm", hidden=(48, 40)), numerics=numerics).kernel
    rng = np.random.default_rng(8)
    for li, h in enumerate((48, 40)):
        for density in (0.0, 0.05, 0.6):  # no events, sparse events (the gathered rows), dense (one full product)
            y = np.where(rng.random((64, h)) < density, rng.uniform(0.1, 2.0, (64, h)), 0).astype(np.float32)
            hh, nxt = kern.accumulate_events_many(li, y, ActiveSources.of(y))
            for got, ref in ((hh, kern.accumulate_many(li, "hh", y)), (nxt, kern.accumulate_many(li + 1, "ih", y))):
                if numerics == "int8":
                    assert np.array_equal(got, ref)
                else:
                    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-6)


def test_byte_rows_equal_the_float_rows():
    """int8 levels gathered as bytes give the float32 rows' integer sums; a matrix whose sums could round has none."""
    from s2node.kernels.base import ActiveSources, ByteRows, rows_product

    rng = np.random.default_rng(9)
    wt = rng.integers(-127, 128, (300, 40)).astype(np.float32)
    x = np.where(rng.random((12, 300)) < 0.2, rng.integers(-127, 128, (12, 300)), 0).astype(np.float32)
    x[3] = 0  # a stream with no input
    act = ActiveSources.of(x)
    assert np.array_equal(ByteRows.of(wt).product(act), rows_product(act, wt))
    assert ByteRows.of(wt + 0.5) is None  # not int8 levels
    assert ByteRows.of(np.full((1100, 4), 127, np.float32)) is None  # 127 · 127 · 1100 > 2^24: sums could round


@pytest.mark.parametrize("shape", [(64, 2048), (64, 2047), (3, 40), (5, 7), (1, 1)])
def test_active_sources_are_the_nonzeros_stream_by_stream(shape):
    """ActiveSources.of lists x's non-zeros row by row, sources ascending, whatever x's size (a large sparse x is
    searched word by word)."""
    from s2node.kernels.base import ActiveSources

    rng = np.random.default_rng(10)
    x = np.where(rng.random(shape) < 0.06, rng.random(shape), 0).astype(np.float32)
    act = ActiveSources.of(x)
    streams, cols = np.nonzero(x)
    assert np.array_equal(act.streams, streams) and np.array_equal(act.cols, cols)
    assert np.array_equal(act.vals, x[streams, cols]) and np.array_equal(act.per_stream(), (x != 0).sum(1))


@pytest.mark.parametrize("numerics", ["fp32", "int8"])
def test_streams_on_a_chip_that_spills_to_dram_equal_lone_models(tmp_path, numerics):
    """Weights spilled to DRAM (their bytes counted in each stream's cost) and a CSR layout: streams equal lone
    models, statistics included."""
    from s2node.chip import ChipSpec

    path = make_gesture(tmp_path / "g", n_in=2048, hidden=(256,))
    options = {"chip": ChipSpec(n_pes=8, n_qpes=2), "dram": True, "decoder": "pe", "layout": "csr"}
    ticks = _schedule(np.random.default_rng(11), "gesture", 2048, 0)
    batch = load_stream_batch(path, N, "node", numerics=numerics, **options)
    assert batch.nodes.node.groups[0].spilled
    lone = [load_step_model(path, "node", numerics=numerics, **options) for _ in range(N)]
    _compare(batch, lone, ticks, {"fp32": 1e-6, "int8": 0.0}[numerics], exact_stats=True)
