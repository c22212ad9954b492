"""sources.parallel: a signal that comes while the worker pool starts is held until the pool exists."""

from __future__ import annotations

import signal

import pytest

from sources.parallel import signals_deferred


class Stopped(Exception):
    pass


def _raise(signum, _frame):
    raise Stopped(signum)


def test_a_stop_signal_waits_for_the_block_and_then_stops():
    """SIGTERM inside the block: the block runs to its end, the handler then raises; handlers are restored and an
    ignored SIGHUP (nohup) stays ignored throughout."""
    old_term, old_hup = signal.signal(signal.SIGTERM, _raise), signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        done = []
        with pytest.raises(Stopped), signals_deferred():
            assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
            signal.raise_signal(signal.SIGTERM)
            done.append("after the signal")
        assert done == ["after the signal"]
        assert signal.getsignal(signal.SIGTERM) is _raise
        with signals_deferred():  # no signal: nothing raised afterwards
            pass
    finally:
        signal.signal(signal.SIGTERM, old_term)
        signal.signal(signal.SIGHUP, old_hup)
