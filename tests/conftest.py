"""Shared fixtures: a real mosquitto on a free loopback port (stoppable/restartable), the amqtt broker."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from stream.broker import AmqttBroker, MosquittoProcess, mosquitto_binary

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = ROOT.parent / "shared" / "data"
# Test helpers (tests/node_models.py, tests/stream_helpers.py, ...) import as plain modules.
sys.path.insert(0, str(Path(__file__).parent))
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


@pytest.fixture(autouse=True, scope="session")
def _one_blas_thread():
    """The suite is a program's edge too: the node's small mat-vecs run on one BLAS thread, as under `s2`."""
    from s2node.runtime import limit_blas_threads

    limit_blas_threads(1)


def _need_mosquitto() -> None:
    if mosquitto_binary() is None:
        if IN_CI:
            pytest.fail("mosquitto is required under CI=true (scripts/setup.sh installs it)")
        pytest.skip("mosquitto binary not installed (apt-get install mosquitto)")


@pytest.fixture(scope="session")
def mosquitto_session():
    """One mosquitto for the whole test session, shared by tests that do not stop it."""
    _need_mosquitto()
    proc = MosquittoProcess().start()
    yield proc
    proc.close()


@pytest.fixture
def mosquitto(mosquitto_session):
    """The session's mosquitto, guaranteed running at the start of each test."""
    if not mosquitto_session.running:
        mosquitto_session.start()
    return mosquitto_session


@pytest.fixture
def mosquitto_private():
    """A mosquitto of this test's own, for fault tests that stop and restart it."""
    _need_mosquitto()
    proc = MosquittoProcess().start()
    yield proc
    proc.close()


@pytest.fixture
async def amqtt_broker():
    """The in-process amqtt fallback broker on a free port."""
    async with AmqttBroker() as b:
        yield b


@pytest.fixture
def shared_aedat4() -> Path:
    """The real DAVIS346 AEDAT4 recording of ../shared/data (skips where it is absent)."""
    p = SHARED_DATA / "davis346-traffic.aedat4"
    if not p.is_file():
        pytest.skip(f"{p} not present (shared data sits beside the project checkout)")
    return p
