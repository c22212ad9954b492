"""The shared preprocessing: bin_events, the streaming Binner, and the input spec of the model file."""

import numpy as np
import pytest

from sources.binning import Binner, InputSpec, bin_events, bin_stream
from sources.denoise import Denoiser
from sources.errors import SourceError
from sources.events import make_events

SPEC = InputSpec(128, 128, downsample=4, bin_us=10_000, scale=0.5)


def _random_events(n: int, seed: int, t_span_us: int = 1_000_000) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.sort(rng.integers(1000, 1000 + t_span_us, n))
    return make_events(t, rng.integers(0, 128, n), rng.integers(0, 128, n), rng.integers(0, 2, n))


def test_bin_events_counts_in_p_y_x_layout():
    """Each event adds `scale` at (p, y//d, x//d) of its time bin, OFF channel first."""
    ev = make_events([0, 5, 10_000, 25_000], [0, 3, 127, 8], [0, 2, 127, 4], [1, 1, 0, 1])
    out = bin_events(ev, SPEC)
    assert out.shape == (3, 2 * 32 * 32) and out.dtype == np.float32
    on = 32 * 32
    assert out[0, on + 0] == 1.0  # two ON events in cell (0, 0) of bin 0
    assert out[1, 31 * 32 + 31] == 0.5  # OFF event at (127, 127) in bin 1
    assert out[2, on + 1 * 32 + 2] == 0.5
    assert out.sum() == 2.0


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_binner_is_chunking_invariant_and_equals_bin_events(seed):
    """Feeding a recording in random chunks (some empty) then flushing gives exactly bin_events."""
    ev = _random_events(20_000, seed)
    rng = np.random.default_rng(seed + 10)
    cuts = np.sort(rng.integers(0, ev.size, 40))
    chunks = np.split(ev, cuts)
    binner = Binner(SPEC)
    got = [(k, t, v) for c in chunks for k, t, v in binner.feed(c)] + binner.flush()
    ref = bin_events(ev, SPEC)
    assert [k for k, _, _ in got] == list(range(len(ref)))
    assert got[0][1] == int(ev["t"][0]) + SPEC.bin_us
    np.testing.assert_array_equal(np.stack([v for _, _, v in got]), ref)
    np.testing.assert_array_equal(bin_stream([ev[:7], ev[7:]], SPEC), ref)


@pytest.mark.parametrize("seed", [0, 1])
def test_millisecond_windows_across_bin_ends_equal_bin_events(seed):
    """A replay's or a live source's 1 ms windows, each bin end inside one of them (the window that closes a bin
    also opens the next), with events off the sensor among them, a few out of order within a window, and one off
    the sensor past a bin's end (it closes nothing): the bins of bin_events, and the same drops."""
    rng = np.random.default_rng(seed)
    ev = _random_events(30_000, seed, t_span_us=200_000)
    off = rng.random(ev.size) < 0.05
    ev["x"][off] = rng.integers(128, 400, int(off.sum()))
    ev["t"][1::50] -= rng.integers(0, 300, ev["t"][1::50].size)  # small disorder, as a sensor's packets have
    ev = ev[ev["t"] >= 1000]
    edge = int(ev["t"][0]) + SPEC.bin_us  # bin 0's end
    lone = make_events([edge - 5, edge + 10], [5, 200], [5, 5], [1, 1])  # the second: off the sensor, past the end
    binner = Binner(SPEC)
    assert binner.feed(ev[ev["t"] < edge]) == [] and binner.feed(lone) == []  # bin 0 still open
    ev2 = ev[ev["t"] >= edge]
    windows = np.split(ev2, np.searchsorted(ev2["t"], np.arange(edge + 1000, int(ev2["t"].max()) + 1, 1000)))
    got = [v for w in windows for _, _, v in binner.feed(w)] + [v for _, _, v in binner.flush()]
    both = np.concatenate([ev, lone])
    np.testing.assert_array_equal(np.stack(got), bin_events(both[np.argsort(both["t"], kind="stable")], SPEC))
    assert binner.dropped_out_of_range == int(off.sum()) + 1


def test_out_of_range_events_are_dropped_and_counted():
    """Events outside the sensor are not binned; Binner counts them."""
    ev = make_events([0, 1, 2, 3], [5, 200, 5, 128], [5, 5, 300, 1], [1, 1, 0, 0])
    binner = Binner(SPEC)
    out = binner.feed(ev) + binner.flush()
    assert binner.dropped_out_of_range == 3 and binner.events_in == 4
    assert out[0][2].sum() == 0.5
    np.testing.assert_array_equal(bin_events(ev, SPEC), np.stack([v for _, _, v in out]))


def test_late_events_are_dropped_and_bins_close_by_event_time():
    """A bin closes only when event time passes its end; events for an already closed bin are counted late."""
    binner = Binner(SPEC, t0_us=0)
    assert binner.feed(make_events([100, 9_999], [1, 1], [1, 1], [1, 1])) == []
    done = binner.feed(make_events([30_500], [1], [1], [0]))
    assert [k for k, _, _ in done] == [0, 1, 2] and done[0][2].sum() == 1.0 and done[1][2].sum() == 0
    binner.feed(make_events([5_000], [1], [1], [1]))
    assert binner.dropped_late == 1
    assert [k for k, _, _ in binner.advance_to(60_000)] == [3, 4, 5]


def test_input_spec_round_trip_and_errors():
    """InputSpec survives to_config/from_config; malformed or unsupported specs raise SourceError."""
    assert InputSpec.from_config(SPEC.to_config()) == SPEC
    ev = _random_events(500, 4)
    np.testing.assert_array_equal(bin_events(ev, SPEC.to_config()), bin_events(ev, SPEC))
    assert SPEC.to_config()["sensor"] == [128, 128] and SPEC.size == 2048
    with pytest.raises(SourceError):
        InputSpec.from_config({"sensor": [128]})
    with pytest.raises(SourceError):
        InputSpec.from_config(dict(SPEC.to_config(), layout="x,y,p"))


def test_offline_binning_cuts_a_long_jump_to_the_file_rule():
    """A recording with an hour (or 2**61 µs) of silence bins to at most GAP_MAX_US of empty bins per jump,
    events on both sides kept; small disorder is binned as it is."""
    from sources.binning import GAP_MAX_US, InputSpec, bin_events, cut_gaps
    from sources.events import make_events

    spec = InputSpec(128, 128, 4, 20_000, 1.0)
    for jump in (3_600_000_000, 2**61):
        ev = make_events([0, 1_000, jump, jump + 5], [1, 2, 3, 4], [1, 1, 1, 1], [1, 1, 1, 1])
        x = bin_events(ev, spec)
        assert x.shape[0] == (1_000 + GAP_MAX_US + 5) // 20_000 + 1 and x.sum() == 4
    t = np.array([0, 10, 7, 12_000_000_000, 12_000_000_001])
    assert cut_gaps(t).tolist() == [0, 10, 7, 7 + GAP_MAX_US, 8 + GAP_MAX_US] and t[3] == 12_000_000_000


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_filtered_windows_equal_bin_events_with_the_same_drops(seed):
    """With the background-activity filter in the spec, a stream fed in windows of 0.3-3 ms (most inside the open
    bin or closing it: the compiled one-pass path; some spanning several bins: the general path), with events off
    the sensor and off the downsampled grid, gives bin_events' bins and the same noise and range drops."""
    rng = np.random.default_rng(seed)
    spec = InputSpec(22, 18, downsample=4, bin_us=2_000, scale=0.25, denoise_us=500)  # 22 // 4: column 21 is off
    n = 6_000
    t = np.sort(rng.integers(0, 60_000, n))
    ev = make_events(t, rng.integers(0, 24, n), rng.integers(0, 19, n), rng.integers(0, 2, n))  # some off the sensor
    cuts = np.cumsum(rng.integers(300, 3_000, 80))
    windows = np.split(ev, np.searchsorted(ev["t"], cuts[cuts < 60_000]))
    windows.insert(5, ev[:0])
    binner = Binner(spec)
    got = [v for w in windows for _, _, v in binner.feed(w)] + [v for _, _, v in binner.flush()]
    ref = bin_events(ev, spec)
    np.testing.assert_array_equal(np.stack(got), ref)
    kept = Denoiser(spec.width, spec.height, spec.denoise_us).filter(ev)
    assert binner.dropped_noise == n - kept.size > 0
    off = (kept["x"] // 4 >= 5) | (kept["y"] // 4 >= 4)
    assert binner.dropped_out_of_range == int(off.sum()) > 0
    assert ref.sum() == (kept.size - off.sum()) * 0.25
