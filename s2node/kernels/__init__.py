"""PE arithmetic backends selected by `numerics` (like a Lava tag): fp32 (M4F FPU) or int8 (MAC array)."""

from __future__ import annotations

from s2node.kernels.base import Kernel
from s2node.kernels.fp32 import Fp32Kernel
from s2node.kernels.int8 import Int8Kernel
from s2node.spec import ModelSpec

__all__ = ["Fp32Kernel", "Int8Kernel", "Kernel", "make_kernel"]


def make_kernel(spec: ModelSpec, numerics: str) -> Kernel:
    return {"fp32": Fp32Kernel, "int8": Int8Kernel}[numerics](spec)
