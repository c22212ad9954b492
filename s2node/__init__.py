"""The EGRU model (PyTorch), its training, the compiler and the emulated SpiNNaker 2 node."""

from s2node.errors import CompileError, ModelFileError, S2NodeError

__all__ = ["CompileError", "ModelFileError", "S2NodeError"]
