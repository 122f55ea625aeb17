"""Inference backends behind one small interface (:class:`Backend`).

ONNX Runtime (:class:`OrtBackend`) runs everywhere; it uses the TensorRT and CUDA execution
providers when the installed onnxruntime has them, else the CPU. :class:`TensorrtBackend` runs the
engines ``edgemm build`` made on this device (TensorRT and cuda-python are imported only when one
is made). :func:`open_backend` picks per graph: a matching engine, else ONNX Runtime.
"""

from __future__ import annotations

from ..engines import BackendChoice, select_backend
from .base import Backend, check_inputs
from .choose import choose_backend, open_backend
from .ort import PROVIDER_PREFERENCE, OrtBackend, OrtOptions, available_providers, choose_providers
from .tensorrt import TensorrtBackend, probe_device, tensorrt_device

__all__ = [
    "PROVIDER_PREFERENCE",
    "Backend",
    "BackendChoice",
    "OrtBackend",
    "OrtOptions",
    "TensorrtBackend",
    "available_providers",
    "check_inputs",
    "choose_backend",
    "choose_providers",
    "open_backend",
    "probe_device",
    "select_backend",
    "tensorrt_device",
]
