"""The TensorRT backend: runs an engine ``edgemm build`` made on this device.

Needs TensorRT's Python bindings (10.x or 11.x) and cuda-python; both are imported only when a
backend is made or the device is probed, and a missing one raises
:class:`~edgemm.errors.DependencyMissingError` saying how to install it on Jetson and on a desktop.

Per call: each input's shape is set on the execution context (``set_input_shape``), inputs go
through pinned host buffers to device buffers on one CUDA stream, every io tensor's device address
is bound (``set_tensor_address``), the engine runs (``execute_async_v3``), and only the outputs asked
for come back. Outputs named in ``keep`` never leave the GPU: their device buffers become the next
call's inputs (the decoder's key/value cache), swapped with the buffers they replace, so steady
decoding copies no cache and allocates nothing. Buffers are reallocated only when a shape outgrows
them, by at least 1.5x.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import threading
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..engines import describe_device, engine_mismatches, gpu_display_name, parse_version
from ..errors import (
    BackendError,
    DependencyMissingError,
    EdgemmError,
    EngineMismatchError,
    InputError,
    PackIntegrityError,
)
from ..onnx_graph import TensorSpec
from ..pack import DeviceKey, Engine, Graph
from .base import Backend, check_call, check_held
from .cuda_memory import (
    CudaStream,
    DeviceBuffer,
    PinnedBuffer,
    check,
    cuda_version,
    device_properties,
    grow_capacity,
    require_cuda,
)

if TYPE_CHECKING:
    import tensorrt as trt

__all__ = [
    "TENSORRT_INSTALL_HINT",
    "TensorrtBackend",
    "numpy_dtype",
    "probe_device",
    "require_tensorrt",
    "tensorrt_device",
]

log = logging.getLogger("edgemm")

TENSORRT_INSTALL_HINT = (
    "on Jetson, TensorRT's Python bindings come with JetPack (sudo apt install python3-libnvinfer) and a virtual "
    "environment sees them only if made with --system-site-packages (python3 -m venv --system-site-packages ENV); "
    "on a desktop, pip install 'edgemm[tensorrt]' (tensorrt comes from NVIDIA's index, pypi.nvidia.com)"
)

_DTYPES = {
    "FLOAT": "float32",
    "HALF": "float16",
    "INT8": "int8",
    "INT32": "int32",
    "INT64": "int64",
    "BOOL": "bool",
    "UINT8": "uint8",
}


def numpy_dtype(trt_type_name: str) -> np.dtype[Any]:
    """The numpy dtype of a TensorRT ``DataType`` name ("FLOAT", "HALF", ...).

    Raises:
        BackendError: a type numpy cannot hold (BF16, FP8, INT4, FP4) at the engine's io.
    """
    name = _DTYPES.get(trt_type_name.upper())
    if name is None:
        raise BackendError(f"engine io of TensorRT type {trt_type_name} has no numpy equivalent; keep graph inputs/outputs in float32, float16, int32, int64 or bool")
    return np.dtype(name)


def require_tensorrt(purpose: str = "TensorRT engines") -> str:
    """Checks that TensorRT's Python bindings can be imported; returns their version.

    Raises:
        DependencyMissingError: not installed, or only type stubs are (``tensorrt-stubs`` puts a
            ``tensorrt`` package of ``.pyi`` files in place, which imports as an empty namespace).
    """
    try:
        import tensorrt
    except ImportError as exc:
        raise DependencyMissingError("tensorrt", purpose, TENSORRT_INSTALL_HINT) from exc
    if not hasattr(tensorrt, "Builder"):
        where = ", ".join(getattr(tensorrt, "__path__", [])) or "?"
        raise DependencyMissingError("tensorrt", purpose, f"only type stubs were found ({where}); {TENSORRT_INSTALL_HINT}")
    return str(tensorrt.__version__)


class _LogCapture:
    """Keeps TensorRT's error messages so an error edgemm raises can quote them."""

    def __init__(self) -> None:
        self.errors: list[str] = []
        self.lock = threading.Lock()

    def take(self) -> str:
        with self.lock:
            text, self.errors = "; ".join(self.errors[-3:]), []
        return text


def make_logger(capture: _LogCapture | None = None, *, verbose: bool = False) -> trt.ILogger:
    """A TensorRT logger that forwards to the ``edgemm`` logger and keeps errors in ``capture``."""
    import tensorrt as trt

    class _Logger(trt.ILogger):
        def __init__(self) -> None:
            trt.ILogger.__init__(self)

        def log(self, severity: trt.ILogger.Severity, msg: str) -> None:
            if severity <= trt.ILogger.Severity.ERROR:
                if capture is not None:
                    with capture.lock:
                        capture.errors.append(msg)
                log.error("TensorRT: %s", msg)
            elif severity == trt.ILogger.Severity.WARNING:
                log.warning("TensorRT: %s", msg)
            elif verbose:
                log.info("TensorRT: %s", msg)

    return _Logger()


def _jetson_model() -> str | None:
    try:
        return Path("/proc/device-tree/model").read_bytes().rstrip(b"\x00").decode(errors="replace")
    except OSError:
        return None


def probe_device(index: int = 0) -> DeviceKey:
    """This machine's device key: GPU (the Jetson module on Jetson), compute capability, TensorRT
    and CUDA versions.

    Raises:
        DependencyMissingError: TensorRT or cuda-python is not installed.
        BackendUnavailableError: no CUDA GPU (or no driver).
    """
    version = require_tensorrt()
    require_cuda()
    name, capability, _, integrated = device_properties(index)
    return DeviceKey(
        gpu_name=gpu_display_name(name, _jetson_model() if integrated else None),
        compute_capability=capability,
        tensorrt_version=".".join(str(p) for p in parse_version(version)[:3]),
        cuda_version=cuda_version(),
    )


@functools.lru_cache(maxsize=8)
def tensorrt_device(index: int = 0) -> tuple[DeviceKey | None, str | None]:
    """(this device's key, None), or (None, why TensorRT cannot run here). Never raises; cached.

    For :func:`edgemm.runtime.engines.select_backend`'s ``device`` and ``unavailable``.
    """
    try:
        return probe_device(index), None
    except EdgemmError as exc:
        return None, str(exc)


def _dims(dims: trt.Dims) -> tuple[int, ...]:
    return tuple(int(dims[i]) for i in range(len(dims)))


@dataclass
class _Kept:
    buffer: DeviceBuffer
    shape: tuple[int, ...]
    dtype: np.dtype[Any]

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize


class _Resources:
    """Everything the backend allocated, released once (by close() or when the backend is collected),
    in the order TensorRT needs: execution context, then engine, then runtime."""

    def __init__(self) -> None:
        self.buffers: list[DeviceBuffer | PinnedBuffer] = []
        self.stream: CudaStream | None = None
        self.context: Any = None
        self.engine: Any = None
        self.runtime: Any = None
        self.logger: Any = None

    def release(self) -> None:
        try:
            if self.stream is not None:
                self.stream.synchronize()
            for buffer in self.buffers:
                buffer.free()
            if self.stream is not None:
                self.stream.destroy()
        except EdgemmError as exc:  # releasing at exit must not raise; say what leaked
            log.warning("TensorRT backend: releasing CUDA memory failed: %s", exc)
        finally:
            self.buffers.clear()
            self.stream = None
            self.context = None
            self.engine = None
            self.runtime = None
            self.logger = None


class TensorrtBackend(Backend):
    """Runs one TensorRT engine with named numpy inputs.

    Args:
        path: the engine file.
        engine: its manifest entry; when given, the engine is refused (EngineMismatchError) unless it
            was built for this device.
        graph: the graph it was built from; its io specs (with symbolic axis names) are used to
            check inputs, and must match the engine's io.
        device: this device's key (default: probed).
        device_index: the CUDA device to run on.

    Example::

        backend = TensorrtBackend(pack.path_of(engine.file), engine=engine, graph=graph)
        out = backend.run({"input_ids": ids, **cross}, keep={"present.0.key": "past.0.key", ...})
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        engine: Engine | None = None,
        graph: Graph | None = None,
        device: DeviceKey | None = None,
        device_index: int = 0,
    ) -> None:
        require_tensorrt()
        require_cuda()
        import tensorrt as trt
        from cuda.bindings import runtime as cudart

        self.path = Path(path)
        self.engine_entry = engine
        if not self.path.is_file():
            raise BackendError(f"TensorRT engine {self.path}: expected a file, found nothing (run `edgemm build PACK`)")
        if engine is not None:
            here = device or probe_device(device_index)
            reasons = engine_mismatches(engine, here)
            if reasons:
                raise EngineMismatchError(
                    f"TensorRT engine {engine.file.path} was built for {describe_device(engine.device)}; this device is "
                    f"{describe_device(here)} ({'; '.join(reasons)}). Run `edgemm build PACK` on this device to build engines for it"
                )
        check(cudart.cudaSetDevice(device_index), f"cudaSetDevice({device_index})")
        self._capture = _LogCapture()
        self._resources = _Resources()
        self._finalizer = weakref.finalize(self, self._resources.release)
        logger = make_logger(self._capture)
        runtime = trt.Runtime(logger)
        if engine is not None and engine.dla_core is not None:
            runtime.DLA_core = engine.dla_core
        data = self.path.read_bytes()
        if engine is not None and engine.version_compatible:
            # The plan carries TensorRT's lean runtime: host code that TensorRT runs only when
            # allowed. Allow it for the file the manifest names, byte for byte, and nothing else.
            digest = hashlib.sha256(data).hexdigest()
            if digest != engine.file.sha256:
                raise PackIntegrityError(
                    f"TensorRT engine {self.path}: sha256 should be {engine.file.sha256[:16]}..., found {digest[:16]}...; "
                    "a version-compatible engine runs code from its file, so a changed file is refused (rebuild it: edgemm build PACK --force)"
                )
            runtime.engine_host_code_allowed = True
        cuda_engine = runtime.deserialize_cuda_engine(data)
        if cuda_engine is None:
            raise EngineMismatchError(
                f"TensorRT {trt.__version__} could not load engine {self.path}: {self._capture.take() or 'no reason given'} "
                "(an engine runs only with the TensorRT version and GPU it was built for; run `edgemm build PACK --force` here)"
            )
        context = cuda_engine.create_execution_context()
        if context is None:
            raise BackendError(f"TensorRT could not create an execution context for {self.path}: {self._capture.take() or 'out of GPU memory?'}")
        # Only _resources holds the TensorRT objects, so they are destroyed in order (see release()).
        resources = self._resources
        resources.runtime, resources.engine, resources.context, resources.logger = runtime, cuda_engine, context, logger
        self._stream = CudaStream()
        self._resources.stream = self._stream

        inputs: list[TensorSpec] = []
        outputs: list[TensorSpec] = []
        self._dtypes: dict[str, np.dtype[Any]] = {}
        self._profile: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {}
        for i in range(cuda_engine.num_io_tensors):
            name = cuda_engine.get_tensor_name(i)
            dtype = numpy_dtype(cuda_engine.get_tensor_dtype(name).name)
            self._dtypes[name] = dtype
            shape = tuple(d if d >= 0 else "?" for d in _dims(cuda_engine.get_tensor_shape(name)))
            spec = TensorSpec(name=name, dtype=str(dtype), shape=shape)
            if cuda_engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT:
                inputs.append(spec)
                low, _, high = (_dims(d) for d in cuda_engine.get_tensor_profile_shape(name, 0))
                self._profile[name] = (low, high)
            else:
                outputs.append(spec)
        if graph is not None:
            inputs = _graph_specs(graph.inputs, inputs, f"{self.path.name} (from {graph.file.path})", "input")
            outputs = _graph_specs(graph.outputs, outputs, f"{self.path.name} (from {graph.file.path})", "output")
        self._inputs = tuple(inputs)
        self._outputs = tuple(outputs)
        self._device_in: dict[str, DeviceBuffer] = {}
        self._device_out: dict[str, DeviceBuffer] = {}
        self._pinned: dict[str, PinnedBuffer] = {}
        self._spare: list[DeviceBuffer] = []
        self._kept: dict[str, _Kept] = {}
        self._held: dict[str, _Kept] = {}
        where = f"DLA core {engine.dla_core}" if engine is not None and engine.dla_core is not None else f"GPU {device_index}"
        self.name = f"tensorrt[{trt.__version__}, {where}]"
        self.device = "cuda"

    def __repr__(self) -> str:
        return f"TensorrtBackend({str(self.path)!r}, {self.name})"

    @property
    def inputs(self) -> tuple[TensorSpec, ...]:
        return self._inputs

    @property
    def outputs(self) -> tuple[TensorSpec, ...]:
        return self._outputs

    def kept(self) -> tuple[str, ...]:
        """Inputs on the device that a call may leave out: kept outputs, then held inputs."""
        return (*self._kept, *(n for n in self._held if n not in self._kept))

    def clear(self) -> None:
        """Drops the kept outputs and the held inputs (start of a new sequence)."""
        self._spare += [k.buffer for k in (*self._kept.values(), *self._held.values())]
        self._kept.clear()
        self._held.clear()

    def close(self) -> None:
        self._kept.clear()
        self._held.clear()
        self._finalizer()

    def hold(self, inputs: Mapping[str, np.ndarray]) -> None:
        """Uploads inputs that stay the same for many calls (a decoder's cross-attention keys and
        values, once per image) to the GPU once; calls may then leave them out, until
        :meth:`clear` or the next :meth:`hold` of the same name.

        Raises:
            InputError: an unknown input, or a wrong dtype, rank, fixed size or profile range.
        """
        arrays = check_held(self.path.name, "engine", self._inputs, inputs)
        for name, array in arrays.items():
            self._check_profile(name, tuple(array.shape))
            old = self._held.pop(name, None)
            if old is not None:
                self._spare.append(old.buffer)
            buffer = self._take(array.nbytes)
            host = self._host(name, array.nbytes)
            host.array(array.dtype, array.shape)[...] = array
            buffer.copy_from_host(host, array.nbytes, self._stream)
            self._held[name] = _Kept(buffer, tuple(array.shape), array.dtype)
        self._stream.synchronize()  # the pinned staging buffers may be reused right away

    # -- buffers ------------------------------------------------------------------------------

    def _track(self, buffer: DeviceBuffer | PinnedBuffer) -> None:
        self._resources.buffers.append(buffer)

    def _free(self, buffer: DeviceBuffer | PinnedBuffer) -> None:
        self._stream.synchronize()  # nothing queued may still use it
        buffer.free()
        self._resources.buffers.remove(buffer)

    def _take(self, nbytes: int, current: int = 0) -> DeviceBuffer:
        """A spare device buffer that fits ``nbytes``, else a new one (at least 1.5x ``current``)."""
        fitting = sorted((b for b in self._spare if b.capacity >= nbytes), key=lambda b: b.capacity)
        if fitting:
            self._spare.remove(fitting[0])
            return fitting[0]
        new = DeviceBuffer(grow_capacity(nbytes, current))
        self._track(new)
        return new

    def _device(self, pool: dict[str, DeviceBuffer], name: str, nbytes: int) -> DeviceBuffer:
        """The device buffer of ``name`` in ``pool``, grown (reallocated) only if too small."""
        buffer = pool.get(name)
        if buffer is not None and buffer.capacity >= nbytes:
            return buffer
        new = self._take(nbytes, buffer.capacity if buffer is not None else 0)
        if buffer is not None:
            self._free(buffer)
        pool[name] = new
        return new

    def _host(self, name: str, nbytes: int) -> PinnedBuffer:
        buffer = self._pinned.get(name)
        if buffer is not None and buffer.capacity >= nbytes:
            return buffer
        new = PinnedBuffer(grow_capacity(nbytes, buffer.capacity if buffer is not None else 0))
        self._track(new)
        if buffer is not None:
            self._free(buffer)
        self._pinned[name] = new
        return new

    # -- running ------------------------------------------------------------------------------

    def _check_profile(self, name: str, shape: tuple[int, ...]) -> None:
        low, high = self._profile[name]
        if len(shape) != len(low) or any(s < lo or s > hi for s, lo, hi in zip(shape, low, high)):
            raise InputError(
                f"{self.path.name}: input '{name}' has shape {shape}, outside the engine's optimization profile "
                f"(min {low}, max {high}); rebuild with a wider range, e.g. `edgemm build PACK --force --shapes AXIS=MIN:OPT:MAX`"
            )

    def run(
        self,
        inputs: Mapping[str, np.ndarray],
        *,
        outputs: Sequence[str] | None = None,
        keep: Mapping[str, str] | None = None,
    ) -> dict[str, np.ndarray]:
        label = self.path.name
        arrays, kept_available, wanted, keep = check_call(label, "engine", self._inputs, self._outputs, inputs, outputs, keep, self.kept())
        for source, target in keep.items():
            if self._dtypes[source] != self._dtypes[target]:
                raise BackendError(f"{label}: cannot keep '{source}' ({self._dtypes[source]}) as '{target}' ({self._dtypes[target]})")
        try:
            return self._run(arrays, kept_available, wanted, keep)
        except EdgemmError:
            raise
        except Exception as exc:
            raise BackendError(f"{label}: TensorRT failed to run the engine: {exc}") from exc

    def _run(
        self, arrays: dict[str, np.ndarray], kept_inputs: list[str], wanted: list[str], keep: dict[str, str]
    ) -> dict[str, np.ndarray]:
        context: trt.IExecutionContext | None = self._resources.context
        label = self.path.name
        if context is None:
            raise BackendError(f"{label}: the backend is closed")
        for name, array in arrays.items():
            if array.dtype != self._dtypes[name]:
                raise InputError(f"{label}: input '{name}' expects dtype {self._dtypes[name]}, got {array.dtype}")
            self._check_profile(name, tuple(array.shape))
            if not context.set_input_shape(name, tuple(array.shape)):
                raise InputError(f"{label}: TensorRT refused shape {tuple(array.shape)} for input '{name}': {self._capture.take()}")
            device = self._device(self._device_in, name, array.nbytes)
            host = self._host(name, array.nbytes)
            host.array(array.dtype, array.shape)[...] = array
            device.copy_from_host(host, array.nbytes, self._stream)
            context.set_tensor_address(name, device.ptr)
        for name in kept_inputs:
            kept = self._kept[name] if name in self._kept else self._held[name]
            self._check_profile(name, kept.shape)
            if not context.set_input_shape(name, kept.shape):
                raise InputError(f"{label}: TensorRT refused shape {kept.shape} for kept input '{name}': {self._capture.take()}")
            context.set_tensor_address(name, kept.buffer.ptr)
        shapes: dict[str, tuple[int, ...]] = {}
        for spec in self._outputs:
            shape = _dims(context.get_tensor_shape(spec.name))
            if any(d < 0 for d in shape):
                raise BackendError(f"{label}: output '{spec.name}' has a data-dependent shape {shape}, which this backend does not support")
            shapes[spec.name] = shape
            nbytes = int(np.prod(shape, dtype=np.int64)) * self._dtypes[spec.name].itemsize
            context.set_tensor_address(spec.name, self._device(self._device_out, spec.name, nbytes).ptr)
        if not context.execute_async_v3(self._stream.handle):
            raise BackendError(f"{label}: TensorRT's execute_async_v3 failed: {self._capture.take() or 'no reason given'}")
        results: dict[str, np.ndarray] = {}
        fetch = []
        for name in wanted:
            dtype = self._dtypes[name]
            nbytes = int(np.prod(shapes[name], dtype=np.int64)) * dtype.itemsize
            host = self._host(name, nbytes)
            self._device_out[name].copy_to_host(host, nbytes, self._stream)
            fetch.append((name, host, dtype))
        self._stream.synchronize()
        for name, host, dtype in fetch:
            results[name] = host.array(dtype, shapes[name]).copy()
        if keep or any(name in self._kept for name in kept_inputs):
            self._rotate(keep, shapes)
        return results

    def _rotate(self, keep: dict[str, str], shapes: dict[str, tuple[int, ...]]) -> None:
        """Makes the kept outputs next call's inputs, giving their old buffers back as output buffers."""
        previous = self._kept
        kept: dict[str, _Kept] = {}
        for source, target in keep.items():
            kept[target] = _Kept(self._device_out.pop(source), shapes[source], self._dtypes[source])
            old = previous.pop(target, None)
            if old is not None:
                self._device_out[source] = old.buffer
        self._spare += [k.buffer for k in previous.values()]
        self._kept = kept

    def reorder_kept(self, rows: Sequence[int] | np.ndarray) -> None:
        """Reorders (and may repeat or drop) the batch rows of every kept and held tensor on the
        GPU, as beam search does with its cache: row ``i`` of the result is row ``rows[i]`` of the old one."""
        order = [int(r) for r in np.asarray(rows).reshape(-1)]
        for store in (self._kept, self._held):
            for name, kept in list(store.items()):
                store[name] = self._gather(name, kept, order)

    def _gather(self, name: str, kept: _Kept, order: list[int]) -> _Kept:
        batch = kept.shape[0] if kept.shape else 0
        if any(not 0 <= r < batch for r in order):
            raise InputError(f"{self.path.name}: reorder rows {order} out of range for kept '{name}' with batch {batch}")
        row_bytes = kept.nbytes // batch if batch else 0
        target = self._take(len(order) * row_bytes)
        start = 0
        while start < len(order):  # copy runs of consecutive rows in one call
            end = start + 1
            while end < len(order) and order[end] == order[end - 1] + 1:
                end += 1
            if row_bytes:
                target.copy_from_device(kept.buffer.ptr + order[start] * row_bytes, start * row_bytes, (end - start) * row_bytes, self._stream)
            start = end
        self._spare.append(kept.buffer)
        return _Kept(target, (len(order), *kept.shape[1:]), kept.dtype)

    def fetch_kept(self, name: str) -> np.ndarray:
        """A host copy of a kept tensor (for inspection; decoding never needs it)."""
        kept = self._kept.get(name) or self._held.get(name)
        if kept is None:
            raise BackendError(f"{self.path.name}: nothing is kept as '{name}'; kept: {sorted(self.kept())}")
        host = self._host(f"kept:{name}", kept.nbytes)
        kept.buffer.copy_to_host(host, kept.nbytes, self._stream)
        self._stream.synchronize()
        return host.array(kept.dtype, kept.shape).copy()


def _graph_specs(declared: Sequence[TensorSpec], engine: Sequence[TensorSpec], label: str, kind: str) -> list[TensorSpec]:
    """The graph's io specs (with axis names), checked against the engine's io."""
    have = {s.name: s for s in engine}
    want = {s.name: s for s in declared}
    if set(have) != set(want):
        raise EngineMismatchError(f"{label}: the engine's {kind}s are {sorted(have)}, the graph's are {sorted(want)}; rebuild it (edgemm build PACK --force)")
    for name, spec in want.items():
        if spec.dtype != have[name].dtype or len(spec.shape) != len(have[name].shape):
            raise EngineMismatchError(
                f"{label}: {kind} '{name}' is {have[name].dtype}{list(have[name].shape)} in the engine, "
                f"{spec.dtype}{list(spec.shape)} in the graph; rebuild it (edgemm build PACK --force)"
            )
    return [want[s.name] for s in engine]
