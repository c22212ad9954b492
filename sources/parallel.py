"""Work items run in several processes, for the data generators (`--jobs`): stopped at once on Ctrl-C or SIGTERM.

`multiprocessing.Pool` rather than `concurrent.futures.ProcessPoolExecutor`: on an interrupt the pool's workers
are terminated now (the executor would wait for the items already running, seconds each). Workers are spawned,
not forked: a fork of a process that has started BLAS or torch threads can hang in the child.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import signal
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any

_STOP_SIGNALS = tuple(getattr(signal, n) for n in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, n))


def _call(item: tuple[Callable[..., Any], tuple]) -> Any:
    fn, args = item
    return fn(*args)


@contextlib.contextmanager
def signals_deferred() -> Iterator[None]:
    """Hold Ctrl-C, SIGTERM and SIGHUP until the block has run, then deliver the first one that came. A pool
    stopped while it starts its workers is never assigned, so nothing terminates them, and a worker whose start-up
    message was cut off prints multiprocessing's traceback on the user's terminal. A signal ignored (nohup) stays
    ignored; outside the main thread, where no handler can be set, nothing is held."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    came: list[int] = []
    held = {s: signal.signal(s, lambda n, _frame: came.append(n))
            for s in _STOP_SIGNALS if signal.getsignal(s) not in (signal.SIG_IGN, None)}
    try:
        yield
    finally:
        for s, handler in held.items():
            signal.signal(s, handler)
        if came:
            signal.raise_signal(came[0])


def run_jobs(fn: Callable[..., Any], tasks: Iterable[tuple], jobs: int,
             cleanup: Callable[[], object] | None = None) -> Iterator[Any]:
    """fn(*task) for each task, yielded as each finishes: in this process when jobs is 1 or there is one task,
    else in `jobs` worker processes (fn must be a module-level function). On any exception, Ctrl-C included, the
    workers are terminated and `cleanup()` runs (to remove what a worker stopped halfway through left behind)."""
    tasks = list(tasks)
    if jobs <= 1 or len(tasks) < 2:
        for t in tasks:
            yield fn(*t)
        return
    pool = None
    try:
        with signals_deferred():  # the pool exists, its workers started, before an interrupt can stop it
            pool = multiprocessing.get_context("spawn").Pool(min(jobs, len(tasks)))
        yield from pool.imap_unordered(_call, [(fn, t) for t in tasks])
        pool.close()
    except BaseException:
        if pool is not None:
            pool.terminate()
        if cleanup is not None:
            cleanup()
        raise
    finally:
        if pool is not None:
            pool.join()
