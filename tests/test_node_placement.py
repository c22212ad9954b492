"""Where the gesture node steps (the event loop's thread or the worker) changes nothing but the timing."""

from __future__ import annotations

import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from stream_helpers import gesture_model_file

from s2node.errors import S2NodeError
from s2node.step import load_step_model
from stream.binner import Bin
from stream.pipeline import node_stage
from stream.stagetimes import StageLog, StageTimes


def _items(n_in: int, seed: int = 0) -> list:
    """Batches as bin_stage yields them: early input alone, one closed bin, a backlog of three, early input again."""
    rng = np.random.default_rng(seed)

    def vec() -> np.ndarray:
        return (rng.random(n_in) < 0.2).astype(np.float32)

    return [([], vec(), 0.0), ([Bin(0, 10_000, vec())], None, 0.0), ([], vec(), 0.0),
            ([Bin(1, 20_000, vec()), Bin(2, 30_000, vec()), Bin(3, 40_000, vec())], vec(), 0.0),
            ([Bin(4, 50_000, vec())], None, 0.0)]


async def _run(model, items, executor, inline_max_s: float, timed: bool = False) -> list:
    async def source():
        for it in items:
            yield it

    return [x async for x in node_stage(source(), model, executor, timed=timed, inline_max_s=inline_max_s)]


async def test_loop_thread_and_worker_give_the_same_predictions(tmp_path):
    """On the loop's thread, adaptively, or always in the worker: identical probabilities for identical input."""
    path = gesture_model_file(tmp_path)
    probs = []
    with ThreadPoolExecutor(1) as ex:
        for executor, inline_max_s in ((None, 0.005), (ex, 0.005), (ex, -1.0)):
            model = load_step_model(path)
            out = await _run(model, _items(int(model.config["layers"][0]["input_size"])), executor, inline_max_s)
            assert [b.index for b, *_ in out] == [0, 1, 2, 3, 4]
            probs.append(np.stack([r.probs for _, r, *_ in out]))
    np.testing.assert_array_equal(probs[0], probs[1])
    np.testing.assert_array_equal(probs[0], probs[2])


async def test_stage_stamps_are_in_order_and_bounded(tmp_path):
    """Timed results carry stamps in stage order; a StageLog keeps only its latest rows."""
    model = load_step_model(gesture_model_file(tmp_path))
    with ThreadPoolExecutor(1) as ex:
        out = await _run(model, _items(int(model.config["layers"][0]["input_size"])), ex, -1.0, timed=True)
    log = StageLog(maxlen=3)
    for b, _, t_wall, stamps in out:
        assert stamps is not None
        binned, t0, t1, back = stamps
        assert binned <= t0 <= t1 <= back
        log.add(StageTimes(b.t_end_us, t_wall, *stamps, back))
    assert len(log) == 3 and [r.t_event_us for r in log.rows] == [30_000, 40_000, 50_000]


async def test_early_input_failure_surfaces(tmp_path):
    """Early input queued on the worker without waiting still raises its error at the next step's result."""
    model = load_step_model(gesture_model_file(tmp_path))
    bad = [([], np.zeros(3, np.float32), 0.0), ([Bin(0, 10_000, np.zeros(model.config["layers"][0]["input_size"],
                                                                         np.float32))], None, 0.0)]
    with ThreadPoolExecutor(1) as ex, pytest.raises(S2NodeError):
        await _run(model, bad, ex, -1.0)


def test_streaming_settings_freeze_start_up_objects():
    """tune_for_streaming() leaves start-up's objects out of the garbage collector's later passes."""
    code = ("import gc; from stream.process import tune_for_streaming; tune_for_streaming(); "
            "print(gc.get_freeze_count())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert int(out.stdout.strip()) > 10_000
