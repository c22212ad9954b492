"""Work items run in several processes, for the data generators (`--jobs`): stopped at once on Ctrl-C or SIGTERM.

`multiprocessing.Pool` rather than `concurrent.futures.ProcessPoolExecutor`: on an interrupt the pool's workers
are terminated now (the executor would wait for the items already running, seconds each). Workers are spawned,
not forked: a fork of a process that has started BLAS or torch threads can hang in the child.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Iterable, Iterator
from typing import Any


def _call(item: tuple[Callable[..., Any], tuple]) -> Any:
    fn, args = item
    return fn(*args)


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
    pool = multiprocessing.get_context("spawn").Pool(min(jobs, len(tasks)))
    try:
        yield from pool.imap_unordered(_call, [(fn, t) for t in tasks])
        pool.close()
    except BaseException:
        pool.terminate()
        if cleanup is not None:
            cleanup()
        raise
    finally:
        pool.join()
