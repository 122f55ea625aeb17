"""Inference backends behind one small interface (:class:`Backend`).

ONNX Runtime (:class:`OrtBackend`) runs everywhere; it uses the TensorRT and CUDA execution
providers when the installed onnxruntime has them, else the CPU.
"""

from __future__ import annotations

from .base import Backend, check_inputs
from .ort import PROVIDER_PREFERENCE, OrtBackend, OrtOptions, available_providers, choose_providers

__all__ = [
    "PROVIDER_PREFERENCE",
    "Backend",
    "OrtBackend",
    "OrtOptions",
    "available_providers",
    "check_inputs",
    "choose_providers",
]
