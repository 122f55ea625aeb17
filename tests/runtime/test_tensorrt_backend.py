"""The TensorRT backend's own logic, run against a simulated TensorRT and CUDA.

No GPU or TensorRT exists in CI, so these tests put small stand-ins for the ``tensorrt`` and
``cuda.bindings.runtime`` modules in ``sys.modules``: "device" memory is host memory from ctypes
(every copy is bounds-checked against the live allocations), and the "engine" computes a toy
decoder step (``present = concat(past, x)``, ``y = present.sum(axis=2)``) with numpy. They check
what the backend does with the API: shapes set per call, addresses bound, the kept cache handed
from one step's output buffer to the next step's input without a copy, buffers grown only when
too small, beam reordering on the "device", profile and device-key refusals, and that everything
allocated is freed. They say nothing about real TensorRT; ``test_tensorrt_gpu.py`` does, on a GPU.
"""

from __future__ import annotations

import ctypes
import dataclasses
import enum
import itertools
import json
import sys
import types
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgemm import errors
from edgemm.runtime import pack as pk
from edgemm.runtime.backends.cuda_memory import MIN_ALLOCATION_BYTES, grow_capacity
from edgemm.runtime.backends.tensorrt import TensorrtBackend, numpy_dtype, require_tensorrt
from edgemm.runtime.onnx_graph import TensorSpec

ORIN = pk.DeviceKey("NVIDIA Jetson AGX Orin", "8.7", "10.3.0", "12.6")
RTX = pk.DeviceKey("NVIDIA GeForce RTX 4090", "8.9", "10.13.0", "12.9")


class FakeCuda:
    """cuda.bindings.runtime over host memory, counting and bounds-checking everything."""

    def __init__(self) -> None:
        self.device: dict[int, ctypes.Array] = {}
        self.pinned: dict[int, ctypes.Array] = {}
        self.mallocs = 0
        self.copies: list[tuple[int, int, int, int]] = []
        ok = enum.IntEnum("cudaError_t", {"cudaSuccess": 0, "cudaErrorInvalidValue": 1})
        kinds = enum.IntEnum("cudaMemcpyKind", {"cudaMemcpyHostToHost": 0, "cudaMemcpyHostToDevice": 1, "cudaMemcpyDeviceToHost": 2, "cudaMemcpyDeviceToDevice": 3})
        success = ok.cudaSuccess

        class Stream:
            def __int__(self) -> int:
                return 7

        def malloc(pool: dict[int, ctypes.Array], size: int) -> tuple:
            buffer = ctypes.create_string_buffer(size)
            pool[ctypes.addressof(buffer)] = buffer
            return success, ctypes.addressof(buffer)

        def device_malloc(size: int) -> tuple:
            self.mallocs += 1
            return malloc(self.device, size)

        def free(pool: dict[int, ctypes.Array], ptr: int) -> tuple:
            assert ptr in pool, f"free of unknown pointer {ptr:#x}"
            del pool[ptr]
            return (success,)

        def memcpy(dst: int, src: int, count: int, kind: int, stream: object) -> tuple:
            self.check(dst, count)
            self.check(src, count)
            ctypes.memmove(dst, src, count)
            self.copies.append((dst, src, count, int(kind)))
            return (success,)

        props = types.SimpleNamespace(name=b"Orin\x00", major=8, minor=7, totalGlobalMem=1 << 34, integrated=1, multiProcessorCount=16)
        self.module = types.ModuleType("cuda.bindings.runtime")
        self.module.__dict__.update(
            cudaError_t=ok,
            cudaMemcpyKind=kinds,
            cudaStreamNonBlocking=1,
            cudaGetErrorName=lambda e: (success, f"cudaError{int(e)}".encode()),
            cudaGetErrorString=lambda e: (success, b"simulated"),
            cudaGetDeviceCount=lambda: (success, 1),
            cudaSetDevice=lambda i: (success,),
            cudaGetDeviceProperties=lambda i: (success, props),
            cudaRuntimeGetVersion=lambda: (success, 12060),
            cudaMalloc=device_malloc,
            cudaFree=lambda p: free(self.device, p),
            cudaMallocHost=lambda n: malloc(self.pinned, n),
            cudaFreeHost=lambda p: free(self.pinned, p),
            cudaMemcpyAsync=memcpy,
            cudaStreamCreateWithFlags=lambda flags: (success, Stream()),
            cudaStreamSynchronize=lambda s: (success,),
            cudaStreamDestroy=lambda s: (success,),
        )

    def check(self, ptr: int, count: int) -> None:
        for pool in (self.device, self.pinned):
            for start, buffer in pool.items():
                if start <= ptr and ptr + count <= start + ctypes.sizeof(buffer):
                    return
        raise AssertionError(f"access of {count} bytes at {ptr:#x} is outside every live allocation")


class FakeTensorRT:
    """Just enough of tensorrt to deserialize and run the toy cache step described by JSON."""

    def __init__(self, cuda: FakeCuda) -> None:
        self.contexts: list[FakeContext] = []
        self.runtimes: list[Any] = []
        module = types.ModuleType("tensorrt")
        data_type = enum.Enum("DataType", {"FLOAT": 0, "HALF": 1, "INT8": 2, "INT32": 3, "BOOL": 4, "UINT8": 5, "INT64": 8})
        io_mode = enum.Enum("TensorIOMode", {"NONE": 0, "INPUT": 1, "OUTPUT": 2})

        class ILogger:
            Severity = enum.IntEnum("Severity", {"INTERNAL_ERROR": 0, "ERROR": 1, "WARNING": 2, "INFO": 3, "VERBOSE": 4}, start=0)

            def __init__(self) -> None:
                pass

        fake = self

        class Runtime:
            def __init__(self, logger: ILogger) -> None:
                self.logger = logger
                self.DLA_core = -1
                self.engine_host_code_allowed = False
                fake.runtimes.append(self)

            def deserialize_cuda_engine(self, data: bytes) -> FakeEngine | None:
                if not data.startswith(b"{"):
                    self.logger.log(ILogger.Severity.ERROR, "Serialization assertion failed: magic tag")  # type: ignore[attr-defined]
                    return None
                return FakeEngine(json.loads(data), module, cuda, fake)

        module.__dict__.update(__version__="10.3.0.30", Builder=object, DataType=data_type, TensorIOMode=io_mode, ILogger=ILogger, Runtime=Runtime)
        self.module = module


class FakeEngine:
    def __init__(self, spec: dict, trt: types.ModuleType, cuda: FakeCuda, fake: FakeTensorRT) -> None:
        self.profile = {name: [tuple(s) for s in shapes] for name, shapes in spec["profile"].items()}
        self.names = ["x", "past", "y", "present"]
        self.num_io_tensors = 4
        self.trt, self.cuda, self.fake = trt, cuda, fake

    def get_tensor_name(self, i: int) -> str:
        return self.names[i]

    def get_tensor_mode(self, name: str) -> object:
        return self.trt.TensorIOMode.INPUT if name in ("x", "past") else self.trt.TensorIOMode.OUTPUT

    def get_tensor_dtype(self, name: str) -> object:
        return self.trt.DataType.FLOAT

    def get_tensor_shape(self, name: str) -> tuple[int, ...]:
        return (-1, 2, 4) if name == "y" else (-1, 2, -1, 4)

    def get_tensor_profile_shape(self, name: str, index: int) -> list[tuple[int, ...]]:
        return self.profile[name]

    def create_execution_context(self) -> FakeContext:
        context = FakeContext(self)
        self.fake.contexts.append(context)
        return context


class FakeContext:
    def __init__(self, engine: FakeEngine) -> None:
        self.engine = engine
        self.shapes: dict[str, tuple[int, ...]] = {}
        self.addresses: dict[str, int] = {}
        self.history: list[dict[str, int]] = []

    def set_input_shape(self, name: str, shape: tuple[int, ...]) -> bool:
        low, _, high = self.engine.profile[name]
        if any(s < lo or s > hi for s, lo, hi in zip(shape, low, high)):
            return False
        self.shapes[name] = tuple(shape)
        return True

    def set_tensor_address(self, name: str, ptr: int) -> bool:
        self.addresses[name] = ptr
        return True

    def get_tensor_shape(self, name: str) -> tuple[int, ...]:
        x, past = self.shapes["x"], self.shapes["past"]
        return (x[0], 2, 4) if name == "y" else (x[0], 2, past[2] + x[2], 4)

    def _array(self, name: str, shape: tuple[int, ...]) -> np.ndarray:
        count = int(np.prod(shape))
        self.engine.cuda.check(self.addresses[name], count * 4)
        return np.ctypeslib.as_array((ctypes.c_float * max(count, 1)).from_address(self.addresses[name]))[:count].reshape(shape)

    def execute_async_v3(self, stream: int) -> bool:
        assert stream == 7
        x = self._array("x", self.shapes["x"])
        past = self._array("past", self.shapes["past"])
        present = np.concatenate([past, x], axis=2)
        self._array("present", present.shape)[...] = present
        self._array("y", (x.shape[0], 2, 4))[...] = present.sum(axis=2)
        self.history.append(dict(self.addresses))
        return True


@pytest.fixture
def sim(monkeypatch: pytest.MonkeyPatch) -> tuple[FakeCuda, FakeTensorRT]:
    cuda = FakeCuda()
    trt = FakeTensorRT(cuda)
    bindings = types.ModuleType("cuda.bindings")
    utils = types.ModuleType("cuda.bindings.utils")
    utils.get_cuda_native_handle = int  # type: ignore[attr-defined]
    bindings.runtime = cuda.module  # type: ignore[attr-defined]
    bindings.utils = utils  # type: ignore[attr-defined]
    package = types.ModuleType("cuda")
    package.bindings = bindings  # type: ignore[attr-defined]
    for name, module in {"tensorrt": trt.module, "cuda": package, "cuda.bindings": bindings, "cuda.bindings.runtime": cuda.module, "cuda.bindings.utils": utils}.items():
        monkeypatch.setitem(sys.modules, name, module)
    return cuda, trt


@pytest.fixture
def engine_file(tmp_path: Path) -> Path:
    path = tmp_path / "step.engine"
    profile = {"x": [[1, 2, 1, 4], [1, 2, 1, 4], [4, 2, 8, 4]], "past": [[1, 2, 0, 4], [1, 2, 8, 4], [4, 2, 16, 4]]}
    path.write_text(json.dumps({"profile": profile}))
    return path


GRAPH = pk.Graph(
    role="decoder_step",
    file=pk.FileRef("caption/step.onnx", "0" * 64, 1),
    precision="fp32",
    target="any",
    inputs=(TensorSpec("x", "float32", ("batch", 2, "sequence", 4)), TensorSpec("past", "float32", ("batch", 2, "past_sequence", 4))),
    outputs=(TensorSpec("y", "float32", ("batch", 2, 4)), TensorSpec("present", "float32", ("batch", 2, "past_sequence + sequence", 4))),
    opset=18,
)


def test_kept_cache_moves_from_output_to_next_input_without_copies(sim, engine_file: Path) -> None:
    cuda, trt = sim
    with TensorrtBackend(engine_file, graph=GRAPH) as backend:
        assert backend.name == "tensorrt[10.3.0.30, GPU 0]" and backend.device == "cuda"
        assert [s.shape for s in backend.inputs] == [("batch", 2, "sequence", 4), ("batch", 2, "past_sequence", 4)]
        rng = np.random.default_rng(0)
        x = rng.standard_normal((1, 2, 3, 4)).astype(np.float32)
        out = backend.run({"x": x, "past": np.zeros((1, 2, 0, 4), np.float32)}, keep={"present": "past"})
        assert set(out) == {"y"}
        np.testing.assert_allclose(out["y"], x.sum(axis=2), rtol=1e-6)
        cache = x
        mallocs = []
        for _ in range(12):
            step = rng.standard_normal((1, 2, 1, 4)).astype(np.float32)
            out = backend.run({"x": step}, keep={"present": "past"})
            cache = np.concatenate([cache, step], axis=2)
            np.testing.assert_allclose(out["y"], cache.sum(axis=2), rtol=1e-5)
            mallocs.append(cuda.mallocs)
        assert backend.kept() == ("past",)
        np.testing.assert_allclose(backend.fetch_kept("past"), cache, rtol=1e-6)
    history = trt.contexts[0].history
    for before, after in itertools.pairwise(history):
        assert after["past"] == before["present"]  # this step reads the buffer the last one wrote
        assert after["present"] != after["past"]
    assert [c for c in cuda.copies if c[3] == 3] == []  # the cache never moved on the device
    # the cache grows 32 bytes a step from 96 to 480: its two buffers start at 256 bytes and each
    # grows once (to 512); every other step allocates nothing
    assert mallocs[-1] - mallocs[0] == 2, mallocs
    assert mallocs[-5:] == [mallocs[-1]] * 5, mallocs


def test_reorder_kept_rows_on_the_device(sim, engine_file: Path) -> None:
    with TensorrtBackend(engine_file, graph=GRAPH) as backend:
        x = np.arange(2 * 2 * 2 * 4, dtype=np.float32).reshape(2, 2, 2, 4)
        backend.run({"x": x, "past": np.zeros((2, 2, 0, 4), np.float32)}, keep={"present": "past"})
        backend.reorder_kept([1, 1, 0])
        np.testing.assert_array_equal(backend.fetch_kept("past"), x[[1, 1, 0]])
        step = np.ones((3, 2, 1, 4), np.float32)
        out = backend.run({"x": step}, keep={"present": "past"})
        np.testing.assert_allclose(out["y"], x[[1, 1, 0]].sum(axis=2) + 1)
        with pytest.raises(errors.InputError, match=r"reorder rows \[3\] out of range for kept 'past' with batch 3"):
            backend.reorder_kept([3])


def test_held_inputs_are_uploaded_once(sim, engine_file: Path) -> None:
    cuda, _ = sim
    x = np.arange(1 * 2 * 2 * 4, dtype=np.float32).reshape(1, 2, 2, 4)
    with TensorrtBackend(engine_file, graph=GRAPH) as backend:
        backend.hold({"x": x})
        uploads = len([c for c in cuda.copies if c[3] == 1])
        assert backend.kept() == ("x",)
        past = np.ones((1, 2, 3, 4), np.float32)
        for _ in range(3):
            out = backend.run({"past": past})
            np.testing.assert_allclose(out["y"], x.sum(axis=2) + 3)
        assert len([c for c in cuda.copies if c[3] == 1]) == uploads + 3  # only `past`, once a call
        backend.run({"past": np.zeros((1, 2, 0, 4), np.float32)}, keep={"present": "past"})
        assert backend.kept() == ("past", "x")
        backend.reorder_kept([0, 0])
        np.testing.assert_array_equal(backend.fetch_kept("x"), x[[0, 0]])
        backend.clear()
        assert backend.kept() == ()
        with pytest.raises(errors.InputError, match=r"cannot hold \['z'\]: the engine's inputs are \['past', 'x'\]"):
            backend.hold({"z": x})


def test_inputs_outside_the_profile_are_refused_with_the_fix(sim, engine_file: Path) -> None:
    pattern = r"input 'past' has shape \(1, 2, 17, 4\), outside the engine's optimization profile \(min \(1, 2, 0, 4\), max \(4, 2, 16, 4\)\); rebuild .*--shapes"
    with TensorrtBackend(engine_file, graph=GRAPH) as backend, pytest.raises(errors.InputError, match=pattern):
        backend.run({"x": np.zeros((1, 2, 1, 4), np.float32), "past": np.zeros((1, 2, 17, 4), np.float32)})


def test_clear_drops_the_cache_and_close_frees_everything(sim, engine_file: Path) -> None:
    cuda, _ = sim
    backend = TensorrtBackend(engine_file, graph=GRAPH)
    backend.run({"x": np.zeros((1, 2, 1, 4), np.float32), "past": np.zeros((1, 2, 0, 4), np.float32)}, keep={"present": "past"})
    backend.clear()
    assert backend.kept() == ()
    with pytest.raises(errors.InputError, match=r"missing input\(s\) \['past'\]"):
        backend.run({"x": np.zeros((1, 2, 1, 4), np.float32)})
    with pytest.raises(errors.BackendError, match=r"cannot keep \['logits'\]"):
        backend.run({"x": np.zeros((1, 2, 1, 4), np.float32), "past": np.zeros((1, 2, 0, 4), np.float32)}, keep={"logits": "past"})
    assert cuda.device and cuda.pinned
    backend.close()
    assert cuda.device == {} and cuda.pinned == {}
    with pytest.raises(errors.BackendError, match="the backend is closed"):
        backend.run({"x": np.zeros((1, 2, 1, 4), np.float32), "past": np.zeros((1, 2, 0, 4), np.float32)})


def test_engine_built_for_another_device_is_refused(sim, engine_file: Path) -> None:
    engine = pk.Engine(
        graph="caption/step.onnx",
        file=pk.FileRef("caption/engines/x/step.engine", "0" * 64, 1),
        device=RTX,
        precision="fp32",
        profiles=(),
        build_time_s=1.0,
        built_at="2026-01-01T00:00:00Z",
    )
    pattern = (
        r"engine caption/engines/x/step.engine was built for NVIDIA GeForce RTX 4090 \(sm89, TensorRT 10.13.0, CUDA 12.9\); "
        r"this device is NVIDIA Jetson AGX Orin \(sm87, TensorRT 10.3.0, CUDA 12.6\) .*Run `edgemm build PACK` on this device"
    )
    with pytest.raises(errors.EngineMismatchError, match=pattern):
        TensorrtBackend(engine_file, engine=engine, graph=GRAPH, device=ORIN)


def test_version_compatible_engine_runs_on_a_later_release_with_host_code_allowed(sim, engine_file: Path) -> None:
    import hashlib

    _, trt = sim
    older = pk.DeviceKey(ORIN.gpu_name, ORIN.compute_capability, "10.2.0", "12.6")
    digest = hashlib.sha256(engine_file.read_bytes()).hexdigest()
    engine = pk.Engine(
        graph="caption/step.onnx",
        file=pk.FileRef("caption/engines/x/step.engine", digest, engine_file.stat().st_size),
        device=older,
        precision="fp32",
        profiles=(),
        build_time_s=1.0,
        built_at="2026-01-01T00:00:00Z",
        version_compatible=True,
    )
    with TensorrtBackend(engine_file, engine=engine, graph=GRAPH, device=ORIN) as backend:
        out = backend.run({"x": np.ones((1, 2, 1, 4), np.float32), "past": np.zeros((1, 2, 0, 4), np.float32)})
        np.testing.assert_allclose(out["y"], np.ones((1, 2, 4)))
    assert trt.runtimes[-1].engine_host_code_allowed is True
    # Without the flag the same engine is refused (TensorRT 10.2.0 != 10.3.0) and nothing runs.
    with pytest.raises(errors.EngineMismatchError, match=r"TensorRT 10.2.0 != 10.3.0"):
        TensorrtBackend(engine_file, engine=dataclasses.replace(engine, version_compatible=False), graph=GRAPH, device=ORIN)
    # Host code is allowed only for the bytes the manifest names.
    changed = dataclasses.replace(engine, file=dataclasses.replace(engine.file, sha256="f" * 64))
    with pytest.raises(errors.PackIntegrityError, match=r"a version-compatible engine runs code from its file, so a changed file is refused"):
        TensorrtBackend(engine_file, engine=changed, graph=GRAPH, device=ORIN)
    # An ordinary engine never gets host code.
    plain = dataclasses.replace(engine, device=ORIN, version_compatible=False)
    TensorrtBackend(engine_file, engine=plain, graph=GRAPH, device=ORIN).close()
    assert trt.runtimes[-1].engine_host_code_allowed is False
    # A later TensorRT's version-compatible engine does not run on an earlier one.
    newer = dataclasses.replace(engine, device=dataclasses.replace(ORIN, tensorrt_version="10.7.0"))
    with pytest.raises(errors.EngineMismatchError, match=r"TensorRT 10.3.0 cannot run a version-compatible engine of TensorRT 10.7.0"):
        TensorrtBackend(engine_file, engine=newer, graph=GRAPH, device=ORIN)


def test_unloadable_engine_and_io_mismatch(sim, engine_file: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.engine"
    bad.write_bytes(b"\x00garbage")
    with pytest.raises(errors.EngineMismatchError, match=r"could not load engine .*bad.engine: Serialization assertion failed: magic tag"):
        TensorrtBackend(bad)
    renamed = pk.Graph(**{**GRAPH.__dict__, "inputs": (TensorSpec("x", "float32", ("batch", 2, "sequence", 4)), TensorSpec("cache", "float32", ("batch", 2, "p", 4)))})
    with pytest.raises(errors.EngineMismatchError, match=r"the engine's inputs are \['past', 'x'\], the graph's are \['cache', 'x'\]"):
        TensorrtBackend(engine_file, graph=renamed)


@pytest.mark.parametrize(("needed", "current", "expected"), [(10, 0, MIN_ALLOCATION_BYTES), (300, 256, 512), (1000, 256, 1024), (100, 256, 256), (1 << 20, 1 << 20, 1 << 20)])
def test_grow_capacity(needed: int, current: int, expected: int) -> None:
    assert grow_capacity(needed, current) == expected


@pytest.mark.parametrize(("name", "dtype"), [("FLOAT", "float32"), ("HALF", "float16"), ("INT64", "int64"), ("BOOL", "bool"), ("INT8", "int8")])
def test_numpy_dtype(name: str, dtype: str) -> None:
    assert numpy_dtype(name) == np.dtype(dtype)


def test_numpy_dtype_refuses_types_numpy_lacks() -> None:
    with pytest.raises(errors.BackendError, match="TensorRT type BF16 has no numpy equivalent"):
        numpy_dtype("BF16")


def test_missing_or_stub_only_tensorrt_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    with pytest.raises(errors.DependencyMissingError) as missing:
        require_tensorrt("edgemm build")
    message = str(missing.value)
    assert message.startswith("edgemm build needs the Python module 'tensorrt', which is not installed")
    assert "JetPack" in message and "--system-site-packages" in message and "pypi.nvidia.com" in message and "edgemm[tensorrt]" in message
    stubs = types.ModuleType("tensorrt")
    stubs.__path__ = ["/venv/site-packages/tensorrt"]  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "tensorrt", stubs)
    with pytest.raises(errors.DependencyMissingError, match=r"only type stubs were found \(/venv/site-packages/tensorrt\)"):
        require_tensorrt()
