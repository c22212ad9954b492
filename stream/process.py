"""Process-wide settings for a streaming node, made once by a command (the program's edge), never by a library.

The node runs in one worker thread beside the event loop: they share the GIL, and a 5 ms default switch
interval would add up to 5 ms per hop; the node's mat-vecs are small, and extra BLAS or torch threads only
contend for the cores (measured: a 2048 x 768 float32 mat-vec takes 0.17 ms on one thread, 14 ms on a shared
2-core machine with OpenBLAS's default threads).
"""

from __future__ import annotations

import os
import sys

from s2node.step import BACKENDS, Backend
from stream.errors import PipelineError

SWITCH_INTERVAL_S = 0.0005
BACKEND_ENV = "S2_BACKEND"  # node (the emulated chip, default) | torch (the PyTorch reference)


def tune_for_streaming() -> None:
    """GIL switch interval 0.5 ms, one torch thread, one BLAS thread, for the rest of the process."""
    import torch

    from s2node.runtime import limit_blas_threads

    sys.setswitchinterval(min(sys.getswitchinterval(), SWITCH_INTERVAL_S))
    torch.set_num_threads(1)
    limit_blas_threads(1)


def backend_from_env() -> Backend:
    """The backend named by $S2_BACKEND (default node); a one-line error for anything else."""
    value = os.environ.get(BACKEND_ENV, "node")
    if value not in BACKENDS:
        raise PipelineError(f"{BACKEND_ENV}={value!r}: use one of {', '.join(BACKENDS)}")
    return value  # type: ignore[return-value]
