"""Device memory, pinned host memory, streams and copies through cuda-python (``cuda.bindings``).

Why cuda-python and not pycuda: NVIDIA's own TensorRT Python samples moved from pycuda to
``cuda.bindings`` (TensorRT 10.13/10.14); cuda-python installs as a wheel (also for Jetson's
aarch64) where pycuda is compiled against a local CUDA toolkit; and it is a thin typed layer over
the CUDA runtime API, so what runs here is what the CUDA documentation describes. See
docs/TENSORRT.md.

Every call returns a tuple starting with a ``cudaError_t``; :func:`check` turns a failure into a
:class:`~edgemm.errors.BackendError` naming the call and CUDA's own error name and text.
"""

from __future__ import annotations

import ctypes
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import BackendError, BackendUnavailableError, DependencyMissingError

if TYPE_CHECKING:
    from cuda.bindings import runtime as cudart

__all__ = [
    "CUDA_INSTALL_HINT",
    "CudaStream",
    "DeviceBuffer",
    "PinnedBuffer",
    "check",
    "cuda_version",
    "device_count",
    "device_properties",
    "grow_capacity",
    "require_cuda",
]

CUDA_INSTALL_HINT = (
    "pip install 'cuda-python>=12.6.1,<13' on JetPack 6 / CUDA 12, 'cuda-python>=13,<14' on JetPack 7 / CUDA 13 "
    "(or pip install 'edgemm[tensorrt]' on a desktop)"
)

MIN_ALLOCATION_BYTES = 256
"""Buffers are never smaller than this, so an empty tensor (a prefill's empty cache) still has a
valid, non-null address to give TensorRT."""



def require_cuda(purpose: str = "TensorRT engines") -> None:
    """Checks that cuda-python's ``cuda.bindings`` can be imported.

    Raises:
        DependencyMissingError: naming the package and how to install it for the CUDA version.
    """
    try:
        from cuda.bindings import runtime  # noqa: F401
    except ImportError as exc:
        raise DependencyMissingError("cuda.bindings", purpose, CUDA_INSTALL_HINT) from exc


def check(result: tuple[Any, ...], what: str) -> Any:
    """Returns the value of a cuda-python call (None, one value, or a tuple of values).

    Raises:
        BackendError: the call failed, with CUDA's error name and description.
    """
    from cuda.bindings import runtime as cudart

    error, values = result[0], result[1:]
    if error != cudart.cudaError_t.cudaSuccess:
        _, name = cudart.cudaGetErrorName(error)
        _, text = cudart.cudaGetErrorString(error)
        raise BackendError(f"CUDA {what} failed: {name.decode(errors='replace')} ({text.decode(errors='replace')})")
    if not values:
        return None
    return values[0] if len(values) == 1 else values


def grow_capacity(needed: int, current: int) -> int:
    """The size to reallocate a buffer to when ``needed`` bytes no longer fit in ``current``.

    At least 1.5x the old size, so a cache that grows by one token per step reallocates O(log n)
    times rather than every step; never below :data:`MIN_ALLOCATION_BYTES`; rounded to 256 bytes.
    """
    if needed <= current:
        return current
    target = max(needed, current + current // 2, MIN_ALLOCATION_BYTES)
    return -(-target // 256) * 256


def device_count() -> int:
    """Number of CUDA devices (0 when there is no GPU or no usable driver)."""
    from cuda.bindings import runtime as cudart

    error, count = cudart.cudaGetDeviceCount()
    return int(count) if error == cudart.cudaError_t.cudaSuccess else 0


def device_properties(index: int = 0) -> tuple[str, str, int, bool]:
    """(CUDA's device name, compute capability "8.7", total memory in bytes, integrated (Jetson)).

    Raises:
        BackendUnavailableError: no CUDA device with that index (or no driver).
    """
    from cuda.bindings import runtime as cudart

    error, count = cudart.cudaGetDeviceCount()
    if error != cudart.cudaError_t.cudaSuccess:
        _, name = cudart.cudaGetErrorName(error)
        _, text = cudart.cudaGetErrorString(error)
        raise BackendUnavailableError(
            f"no usable CUDA GPU: cudaGetDeviceCount failed with {name.decode(errors='replace')} "
            f"({text.decode(errors='replace')}); TensorRT needs an NVIDIA GPU and its driver (on Jetson: JetPack)"
        )
    if not 0 <= index < count:
        raise BackendUnavailableError(f"CUDA device {index} does not exist; this machine has {count}")
    props: cudart.cudaDeviceProp = check(cudart.cudaGetDeviceProperties(index), "cudaGetDeviceProperties")
    gpu = props.name.split(b"\x00")[0].decode(errors="replace")
    return gpu, f"{props.major}.{props.minor}", int(props.totalGlobalMem), bool(props.integrated)


def cuda_version() -> str:
    """The CUDA runtime version cuda-python uses, e.g. "12.6"."""
    from cuda.bindings import runtime as cudart

    version = int(check(cudart.cudaRuntimeGetVersion(), "cudaRuntimeGetVersion"))
    return f"{version // 1000}.{(version % 1000) // 10}"


def _native(handle: cudart.cudaStream_t) -> int:
    try:
        from cuda.bindings.utils import get_cuda_native_handle
    except ImportError:  # cuda-python < 12.9.1
        return int(handle)
    return get_cuda_native_handle(handle)


class CudaStream:
    """A non-blocking CUDA stream (copies and TensorRT's work are queued on it in order)."""

    def __init__(self) -> None:
        from cuda.bindings import runtime as cudart

        self._stream: cudart.cudaStream_t | None = check(cudart.cudaStreamCreateWithFlags(cudart.cudaStreamNonBlocking), "cudaStreamCreateWithFlags")
        self.handle = _native(self._stream) if self._stream is not None else 0

    @property
    def stream(self) -> cudart.cudaStream_t:
        if self._stream is None:
            raise BackendError("the CUDA stream was destroyed")
        return self._stream

    def synchronize(self) -> None:
        from cuda.bindings import runtime as cudart

        check(cudart.cudaStreamSynchronize(self.stream), "cudaStreamSynchronize")

    def destroy(self) -> None:
        from cuda.bindings import runtime as cudart

        if self._stream is not None:
            stream, self._stream = self._stream, None
            check(cudart.cudaStreamDestroy(stream), "cudaStreamDestroy")


class DeviceBuffer:
    """Device memory of ``capacity`` bytes at address ``ptr`` (freed by :meth:`free`)."""

    def __init__(self, nbytes: int) -> None:
        from cuda.bindings import runtime as cudart

        self.capacity = grow_capacity(nbytes, 0)
        self.ptr: int = int(check(cudart.cudaMalloc(self.capacity), f"cudaMalloc({self.capacity} bytes)"))

    def free(self) -> None:
        from cuda.bindings import runtime as cudart

        if self.ptr:
            ptr, self.ptr = self.ptr, 0
            check(cudart.cudaFree(ptr), "cudaFree")

    def copy_from_host(self, host: PinnedBuffer, nbytes: int, stream: CudaStream) -> None:
        from cuda.bindings import runtime as cudart

        check(cudart.cudaMemcpyAsync(self.ptr, host.ptr, nbytes, cudart.cudaMemcpyKind.cudaMemcpyHostToDevice, stream.stream), "cudaMemcpyAsync (host to device)")

    def copy_to_host(self, host: PinnedBuffer, nbytes: int, stream: CudaStream) -> None:
        from cuda.bindings import runtime as cudart

        check(cudart.cudaMemcpyAsync(host.ptr, self.ptr, nbytes, cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost, stream.stream), "cudaMemcpyAsync (device to host)")

    def copy_from_device(self, src: int, offset: int, nbytes: int, stream: CudaStream) -> None:
        """Copies ``nbytes`` from device address ``src`` to ``offset`` bytes into this buffer."""
        from cuda.bindings import runtime as cudart

        check(cudart.cudaMemcpyAsync(self.ptr + offset, src, nbytes, cudart.cudaMemcpyKind.cudaMemcpyDeviceToDevice, stream.stream), "cudaMemcpyAsync (device to device)")


class PinnedBuffer:
    """Page-locked host memory: copies from it to the GPU run asynchronously at full speed."""

    def __init__(self, nbytes: int) -> None:
        from cuda.bindings import runtime as cudart

        self.capacity = grow_capacity(nbytes, 0)
        self.ptr: int = int(check(cudart.cudaMallocHost(self.capacity), f"cudaMallocHost({self.capacity} bytes)"))

    def array(self, dtype: np.dtype[Any] | type, shape: tuple[int, ...]) -> np.ndarray:
        """A numpy view of the first bytes of the buffer as ``dtype`` with ``shape`` (no copy)."""
        dtype = np.dtype(dtype)
        count = int(np.prod(shape, dtype=np.int64))
        if count * dtype.itemsize > self.capacity:
            raise BackendError(f"pinned buffer of {self.capacity} bytes cannot hold {shape} {dtype}")
        raw: np.ndarray = np.ctypeslib.as_array(ctypes.cast(self.ptr, ctypes.POINTER(ctypes.c_uint8)), shape=(self.capacity,))
        return raw[: count * dtype.itemsize].view(dtype).reshape(shape)

    def free(self) -> None:
        from cuda.bindings import runtime as cudart

        if self.ptr:
            ptr, self.ptr = self.ptr, 0
            check(cudart.cudaFreeHost(ptr), "cudaFreeHost")
