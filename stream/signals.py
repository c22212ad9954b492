"""How a command stops: SIGTERM and SIGHUP do what Ctrl-C (SIGINT) does, in every command, through one mechanism.

Python turns SIGINT into KeyboardInterrupt, and `asyncio.run` replaces that with a handler that cancels its main
task, so every `finally` and `async with` on the way out runs: the embedded broker stops and its temp dir goes, the
offline status is sent, the summary is printed. `stop_on_signals` (called once by `s2`'s main) hands SIGTERM and
SIGHUP to whatever handles SIGINT at that moment, so a kill, a closed terminal or a service manager's stop take
the same path as Ctrl-C, with the same exit status; after a hangup, what was to be written to the terminal that
is gone goes to /dev/null. A command whose Ctrl-C means something else (the UI quits as with ctrl+q) says so with
`interrupt_calls`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Callable, Iterator
from types import FrameType

STOP_SIGNALS = ("SIGTERM", "SIGHUP")  # by name: SIGHUP does not exist on Windows
_hangup = False


def hung_up() -> bool:
    """Whether this process has had a SIGHUP (its terminal is gone) since stop_on_signals."""
    return _hangup


def _as_ctrl_c(signum: int, frame: FrameType | None) -> None:
    global _hangup
    if signum == getattr(signal, "SIGHUP", None):
        _hangup = True
        _leave_terminal()
    handler = signal.getsignal(signal.SIGINT)
    if callable(handler):
        handler(signal.SIGINT, frame)
    else:  # SIGINT ignored (a background job of a non-interactive shell) or default: stop all the same
        raise KeyboardInterrupt


def _leave_terminal() -> None:
    """A hangup: the terminal is gone, and writing to it fails (EIO), which would turn the summary, or the UI's
    goodbye to the screen, into an error (or block Textual's writer thread). What was to go there goes to
    /dev/null instead; pipes and files stay as they are."""
    null = os.open(os.devnull, os.O_RDWR)
    try:
        for fd in (0, 1, 2):
            with contextlib.suppress(OSError):
                if os.isatty(fd):
                    os.dup2(null, fd)
    finally:
        os.close(null)


def stop_on_signals() -> None:
    """From now on SIGTERM and SIGHUP act as Ctrl-C. A signal already ignored (SIGHUP under nohup) stays ignored."""
    for name in STOP_SIGNALS:
        sig = getattr(signal, name, None)
        if sig is not None and signal.getsignal(sig) is not signal.SIG_IGN:
            signal.signal(sig, _as_ctrl_c)


@contextlib.contextmanager
def interrupt_calls(callback: Callable[[], object]) -> Iterator[None]:
    """Inside the context, Ctrl-C (and so SIGTERM and SIGHUP) calls `callback` on the running event loop instead
    of cancelling the main task; a second one goes to the handler before (asyncio.run's: cancel, then
    KeyboardInterrupt), so that a stuck shutdown can still be interrupted. The handler before is restored after."""
    loop = asyncio.get_running_loop()
    before = signal.getsignal(signal.SIGINT)
    calls = 0

    def handler(signum: int, frame: FrameType | None) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            # call_soon_threadsafe: a signal handler may run between any two bytecodes of the loop; it also wakes it
            loop.call_soon_threadsafe(callback)
        elif callable(before):
            before(signum, frame)
        else:
            raise KeyboardInterrupt

    signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, before)
