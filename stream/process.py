"""Process-wide settings for a streaming node, made once by a command (the program's edge), never by a library.

The node runs in one worker thread beside the event loop: they share the GIL, and a 5 ms default switch
interval would add up to 5 ms per hop; the node's mat-vecs are small, and extra BLAS or torch threads only
contend for the cores (measured: a 2048 x 768 float32 mat-vec takes 0.17 ms on one thread, 14 ms on a shared
2-core machine with OpenBLAS's default threads).

The garbage collector's full pass walks every container object in the process, and start-up (torch, numpy,
the MQTT client) leaves ~170 k of them that live until the end: one full pass stops both the loop and the node
for 40-250 ms (measured on 2 shared cores, idle to busy), a prediction delayed by that much. What start-up made
is collected once and frozen (gc.freeze: left out of every later pass), so that a full pass only walks what
the streaming made since, a few thousand objects (under 1 ms).
"""

from __future__ import annotations

import gc
import os
import sys

from s2node.step import BACKENDS, Backend
from stream.errors import PipelineError

SWITCH_INTERVAL_S = 0.0005
BACKEND_ENV = "S2_BACKEND"  # node (the emulated chip, default) | torch (the PyTorch reference)


def tune_for_streaming() -> None:
    """GIL switch interval 0.5 ms, one torch thread, one BLAS thread, and the start-up's objects frozen out of
    the garbage collector's passes, for the rest of the process."""
    import torch

    from s2node.runtime import limit_blas_threads

    # imported here so that their module objects are made before the freeze below
    from stream import mqtt, pipeline  # noqa: F401

    sys.setswitchinterval(min(sys.getswitchinterval(), SWITCH_INTERVAL_S))
    torch.set_num_threads(1)
    limit_blas_threads(1)
    freeze_startup()


def freeze_startup() -> None:
    """Collect once, then keep every object alive now out of later collections (they are not freed, only no
    longer walked: start-up's modules, classes and caches live as long as the process anyway)."""
    gc.collect()
    gc.freeze()


def backend_from_env() -> Backend:
    """The backend named by $S2_BACKEND (default node); a one-line error for anything else."""
    value = os.environ.get(BACKEND_ENV, "node")
    if value not in BACKENDS:
        raise PipelineError(f"{BACKEND_ENV}={value!r}: use one of {', '.join(BACKENDS)}")
    return value  # type: ignore[return-value]
