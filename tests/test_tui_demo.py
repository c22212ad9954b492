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
