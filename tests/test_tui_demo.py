"""The one-command demo's parts end to end: embedded broker + local pipeline + the UI (needs the pipeline)."""

from __future__ import annotations

import pytest
from tui_helpers import connected, wait_for

from tui.app import S2App
from tui.widgets import TextPane

pytestmark = [pytest.mark.slow, pytest.mark.broker]


async def test_demo_pipeline_feeds_the_ui():
    """The local pipeline announces itself to the UI and answers typed text with the language model."""
    pytest.importorskip("stream.local", reason="the local pipeline lands with the stream branch")
    from stream.tui_cli import local_demo

    async with local_demo() as (url, pipeline):
        app = S2App(url)
        async with app.run_test(size=(100, 30)) as pilot:
            await connected(pilot)
            # the node announces itself (retained status); with no recording given only the text half runs
            await wait_for(pilot, lambda: app.state.status is not None, timeout_s=90)
            await pilot.press(*"the ")
            await wait_for(pilot, lambda: app.query_one(TextPane).prediction is not None, timeout_s=60)
            assert not pipeline.done()
            assert app.state.malformed == 0
