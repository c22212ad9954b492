"""Numba's njit as the project compiles its per-event and per-packet loops (the noise filter, the int8 products).

Numba comes with the project (librosa, through tonic, depends on it). Compiled code is cached beside each module
(`cache=True`), so a new process loads it instead of compiling again; where the package folder is not writable and
no other cache location is, it is kept in memory. `nogil`: a loop run in a worker thread lets the event loop go on.
"""

from __future__ import annotations

import warnings

from numba import njit
from numba.core.errors import NumbaWarning


def jit(fn):
    """njit(cache=True, nogil=True, boundscheck=False), without the cache where none can be written."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NumbaWarning)
        try:
            return njit(cache=True, nogil=True, boundscheck=False)(fn)
        except RuntimeError:  # no writable cache location
            return njit(nogil=True, boundscheck=False)(fn)
