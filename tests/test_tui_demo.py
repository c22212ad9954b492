"""The one-command demo's parts end to end: embedded broker + local pipeline + the UI (needs the pipeline)."""

from __future__ import annotations

from pathlib import Path

import pytest
from tui_helpers import connected, wait_for

from tui.app import S2App
from tui.widgets import GesturePane, TextPane

pytestmark = [pytest.mark.slow, pytest.mark.broker]
ROOT = Path(__file__).resolve().parent.parent


async def test_demo_pipeline_feeds_the_ui():
    """The local pipeline announces itself, obeys pause/resume, and answers typed text with the language model."""
    from stream.local import local_demo

    demo = ROOT / "models" / "demo-gestures.aedat4"  # the shipped demo recording
    recordings = [str(demo)] if demo.is_file() else None
    async with local_demo(recordings=recordings) as (url, pipeline):
        app = S2App(url)
        async with app.run_test(size=(100, 30)) as pilot:
            await connected(pilot)
            # the node announces itself (retained status); without a recording only the text half runs
            await wait_for(pilot, lambda: app.state.status is not None, timeout_s=90)
            if recordings:
                await wait_for(pilot, lambda: app.query_one(GesturePane).prediction is not None, timeout_s=90)
                await pilot.press("ctrl+p")  # pause: the replay stops, so the gesture steps stop
                await pilot.pause(1.0)
                paused_at = app.state.gesture.step
                await pilot.pause(1.5)
                assert app.state.gesture.step == paused_at
                await pilot.press("ctrl+p")  # resume
                await wait_for(pilot, lambda: app.state.gesture.step > paused_at, timeout_s=30)
            await pilot.press(*"the ")
            await wait_for(pilot, lambda: app.query_one(TextPane).prediction is not None, timeout_s=60)
            assert not pipeline.done()
            assert app.state.malformed == 0
            # the node counts what it could not accept from us (controls, keystrokes): nothing
            await wait_for(pilot, lambda: app.state.stats is not None, timeout_s=10)
            assert all(st.malformed_in == 0 for st in app.state.stats_by_model.values())


async def test_the_demo_shows_each_gesture_within_a_second_of_its_start():
    """The demo's recording holds each of the 11 classes once (models/demo-gestures.json: their spans). As it
    plays, the gesture pane lists the class of each segment within 1 s (event time) of the segment's start: the
    model file's served window, every bin published, nothing dropped on the way."""
    import json
    import time

    from s2node import modelfile
    from stream.local import local_demo

    demo = ROOT / "models" / "demo-gestures.aedat4"
    spans = [sp for sp in json.loads(demo.with_suffix(".json").read_text())["gestures"] if sp["class"] >= 0]
    assert len({sp["class"] for sp in spans}) == 11
    bin_us = modelfile.load(ROOT / "models" / "gesture-egru")[0]["input"]["bin_us"]
    end_us = max(sp["t_end_us"] for sp in spans)
    changes: dict[int, str] = {}  # step -> the class the pane lists from that step on
    async with local_demo(recordings=[str(demo)]) as (url, _):
        app = S2App(url)
        async with app.run_test(size=(100, 40)) as pilot:
            await connected(pilot)
            pane = app.query_one(GesturePane)
            deadline, last_step = time.monotonic() + 180, -1
            while time.monotonic() < deadline:
                await pilot.pause(0.1)
                p = pane.prediction
                if p is None:
                    continue
                if p.step < last_step:  # the recording looped
                    break
                last_step = p.step
                changes.update((step, label) for step, label, _ in pane.history if step <= p.step)
                if (p.step + 1) * bin_us >= end_us:
                    break
            assert (last_step + 1) * bin_us >= end_us, f"the demo reached step {last_step} only"
            assert app.state.stats is not None and app.state.stats.events_dropped == 0
    steps = sorted(changes)
    late = {}
    for sp in spans:
        # the class shown at the segment's start, then each change inside the segment: the first right one
        at_start = [s for s in steps if (s + 1) * bin_us <= sp["t_start_us"]]
        inside = [s for s in steps if sp["t_start_us"] < (s + 1) * bin_us < sp["t_end_us"]]
        right = [s for s in at_start[-1:] + inside if changes[s] == sp["name"]]
        latency = max(0, (right[0] + 1) * bin_us - sp["t_start_us"]) / 1e6 if right else float("inf")
        if latency > 1.0:
            late[sp["name"]] = latency
    assert not late, f"shown later than 1 s after the segment's start: {late}"
