"""Jumps in event time cost a bounded number of bins: the Binner's gap rule, the replay's, and a whole replay of a
file with an hour-long (and an absurd) jump under a peak-RSS limit."""

from __future__ import annotations

import itertools
import subprocess
import sys

import numpy as np
import pytest
from stream_helpers import gesture_model_file

from sources.binning import Binner, InputSpec
from sources.events import make_events
from stream.replay import ReplayStats, replay_windows

SPEC = InputSpec(32, 32, downsample=4, bin_us=10_000, scale=1.0)


def _ev(t) -> np.ndarray:
    n = len(t)
    return make_events(np.asarray(t, np.int64), np.full(n, 3), np.full(n, 5), np.ones(n, np.int64))


def test_feed_across_a_jump_emits_at_most_the_gap_bound():
    """Events an hour apart in one batch give the first bin, g empty bins, then the bin after the jump opens."""
    b = Binner(SPEC, max_gap_bins=4)
    out = b.feed(_ev([0, 3_600_000_000]))
    assert [k for k, _, _ in out] == [0, 1, 2, 3, 4] and [v.sum() for _, _, v in out] == [1, 0, 0, 0, 0]
    assert [t for _, t, _ in out] == [10_000, 20_000, 30_000, 40_000, 50_000]
    last = b.flush()
    assert last[0][0] == 5 and last[0][1] == 3_600_010_000 and last[0][2].sum() == 1  # true event time kept
    assert b.gaps == 1


def test_advance_to_a_far_watermark_is_bounded_and_re_anchors():
    """A watermark 2**62 µs ahead closes the open bin and g empty ones; later events bin against the new clock."""
    b = Binner(SPEC, max_gap_bins=3)
    b.feed(_ev([0, 15_000]))
    out = b.advance_to(2**62)
    assert len(out) == 4 and out[0][2].sum() == 1
    out2 = b.feed(_ev([2**60 + 5]))  # clipped to the clock's limit, still ahead: no empty bins beyond the bound
    assert len(out2) <= 4 and b.gaps >= 1


def test_hostile_batch_costs_rows_bounded_by_its_events():
    """Random 64-bit timestamps in any order: at most (distinct bins + g) rows, whatever their spread."""
    rng = np.random.default_rng(0)
    t = rng.integers(-(2**63), 2**63 - 1, 2000, dtype=np.int64)
    b = Binner(SPEC, max_gap_bins=5)
    out = b.feed(_ev(t)) + b.flush()
    assert len(out) <= 2000 + 6
    assert sum(v.sum() for _, _, v in out) + b.dropped_late == 2000


def test_without_a_bound_short_gaps_are_kept_as_they_are():
    """A gap within the bound is all its empty bins: the rule only changes what exceeds it."""
    b = Binner(SPEC, max_gap_bins=10)
    out = b.feed(_ev([0, 55_000]))
    assert [k for k, _, _ in out] == [0, 1, 2, 3, 4] and b.gaps == 0


def test_replayreplay_windows_cut_jumps(tmp_path):
    """A file jumping an hour ahead, twice, replays as windows at most the gap bound apart in event time, counted."""
    t = [0, 1_000, 3_600_000_000, 3_600_001_000, 7_200_000_000, 7_200_000_500]
    np.save(tmp_path / "jump.npy", _ev(t))
    st = ReplayStats()
    wins = list(replay_windows(tmp_path / "jump.npy", 1000, 0, None, gap_max_us=50_000, stats=st))
    ks = [k for _, k, _ in wins]  # the replay's output clock: window k ends at (k + 1) ms
    assert sum(len(e) for _, _, e in wins) == len(t)
    assert all(0 < b - a <= 50 for a, b in itertools.pairwise(ks))
    assert all(((e["t"] - base) // 1000 == k).all() for base, k, e in wins)  # each event in its window
    assert st.gaps_cut == 2


@pytest.mark.broker
def test_replay_of_an_hour_gap_file_stays_small(mosquitto, tmp_path):
    """`s2 replay --speed 0` of events an hour (then 2**61 µs) apart: a few predictions, peak RSS under 700 MB."""
    model = gesture_model_file(tmp_path, sensor=(32, 24))
    rec = tmp_path / "gap.npy"
    np.save(rec, _ev([1_000, 2_000, 3_600_000_000, 3_600_001_000, 2**61]))
    # the replay's own peak: VmHWM belongs to the process image since exec (getrusage's maxrss would carry the
    # forking pytest's own, and RUSAGE_CHILDREN the largest of every child this session started)
    peak = ("import re, runpy, sys\nsys.argv = ['s2', *sys.argv[1:]]\ntry:\n"
            "    runpy.run_module('stream.cli', run_name='__main__')\nfinally:\n"
            "    hwm = re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read()).group(1)\n"
            "    print('peak_kib', hwm, file=sys.stderr)")
    r = subprocess.run([sys.executable, "-c", peak, "replay", str(rec), "--model", str(model), "--speed", "0",
                        "--broker", mosquitto.url, "--no-frames"], capture_output=True, text=True, timeout=120)
    peak_kib = int(r.stderr.split("peak_kib ")[1].split()[0])
    assert r.returncode == 0, r.stderr
    n = int(r.stderr.split("s2 replay: ")[1].split(" predictions")[0])
    assert n <= 2 * (10_000_000 // 10_000 + 2)  # two jumps, each cut to 10 s of 10 ms bins
    assert peak_kib < 700 * 1024, f"peak RSS {peak_kib / 1024:.0f} MiB"


@pytest.mark.broker
async def test_udp_clock_jumps_cost_a_few_bins_and_kernel_drops_are_counted(mosquitto, tmp_path):
    """faery datagrams at now, now + 1 h and 2**62 µs give a bounded number of predictions through the live binner;
    datagrams the kernel dropped while the loop was busy are counted, so every datagram sent is accounted for."""
    import asyncio
    import socket
    import time
    from concurrent.futures import ThreadPoolExecutor

    from s2node.step import load_step_model
    from sources.live import udp_batches
    from sources.live.udp import FAERY_DTYPE, UdpEventSource
    from stream.binner import make_binner
    from stream.mqtt import MqttLink
    from stream.pipeline import run_gesture_pipeline

    model = load_step_model(gesture_model_file(tmp_path, sensor=(32, 24)))
    link = MqttLink(mosquitto.url, "udpgap")
    run = asyncio.create_task(link.run())
    now = time.time_ns() // 1000

    def datagram(t_us: int, n: int = 8) -> bytes:
        r = np.zeros(n, FAERY_DTYPE)
        r["t"], r["x"], r["y"], r["on"] = t_us, np.arange(n) % 32, np.arange(n) % 24, 1
        return r.tobytes()

    async with UdpEventSource("127.0.0.1", 0, "faery", max_batches=100_000) as src:
        with ThreadPoolExecutor(1) as ex:
            pipe = asyncio.create_task(run_gesture_pipeline(
                udp_batches(src, idle_s=0), model, make_binner(model.config, live=True), link, executor=ex,
                frames=False))
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                for t in (now, now + 3_600_000_000, 2**62):
                    s.sendto(datagram(t), ("127.0.0.1", src.port))
                    await asyncio.sleep(0.05)
                flood = 20_000  # sent while this loop does not read: the kernel's buffer overflows
                for _ in range(flood):
                    s.sendto(datagram(2**62, 64), ("127.0.0.1", src.port))
            await asyncio.sleep(0.5)
            drops = src.kernel_drops()
            src.close()
            c = await asyncio.wait_for(pipe, 60)
    await link.close()  # the retained status says offline: the shared broker's later users see no stale node
    run.cancel()
    await asyncio.gather(run, return_exceptions=True)
    assert c.predictions <= 3 * (1 + 10) + 2
    assert drops > 0 and src.stats.datagrams + drops == 3 + flood
