"""``edgemm build`` end to end against a simulated TensorRT builder and CUDA runtime.

No GPU or TensorRT exists in CI. These tests put small stand-ins for ``tensorrt`` and
``cuda.bindings.runtime`` in ``sys.modules`` (the CUDA one is the backend tests' simulator) and
check what ``build_engines`` does with the builder API: the strongly typed network flag, the
optimization profile from the manifest's symbolic shapes, the memory-pool limit, the optimization
level, DLA with GPU fallback, the version-compatible flag, the timing cache loaded before and
saved after, parser errors naming the node, the engine committed to the pack with its manifest
entry, reuse without ``--force``, and that a failure leaves the pack as it was. The stand-in
"engine" is JSON describing the configuration it was built with. None of this says the real
TensorRT accepts these calls: ``mypy`` against ``tensorrt-stubs`` checks the names and signatures,
and a GPU run is still to be done (docs/TENSORRT.md says so).
"""

from __future__ import annotations

import enum
import io
import json
import sys
import types
from pathlib import Path
from typing import Any

import pytest

from edgemm import errors
from edgemm.compile.build import BuildConfig, build_engines
from edgemm.runtime import pack as pk
from tests.runtime.test_tensorrt_backend import FakeCuda

onnx = pytest.importorskip("onnx")


class FakeBuilderTensorRT:
    """The builder half of tensorrt: parse an ONNX file, configure, build a JSON "plan"."""

    def __init__(self, *, dla_cores: int = 0, fail_parse: bool = False, fail_build: bool = False) -> None:
        self.builds: list[dict[str, Any]] = []
        self.timing_cache_inputs: list[bytes] = []
        fake = self
        module = types.ModuleType("tensorrt")

        class ILogger:
            Severity = enum.IntEnum("Severity", {"INTERNAL_ERROR": 0, "ERROR": 1, "WARNING": 2, "INFO": 3, "VERBOSE": 4}, start=0)

            def __init__(self) -> None:
                pass

        class IProgressMonitor:
            def __init__(self) -> None:
                pass

        creation = enum.IntEnum("NetworkDefinitionCreationFlag", {"STRONGLY_TYPED": 1})
        pools = enum.Enum("MemoryPoolType", {"WORKSPACE": 0})
        flags = enum.Enum("BuilderFlag", {"GPU_FALLBACK": 3, "VERSION_COMPATIBLE": 13})
        devices = enum.Enum("DeviceType", {"GPU": 0, "DLA": 1})

        class Tensor:
            def __init__(self, name: str) -> None:
                self.name = name

        class Network:
            def __init__(self, flags: int) -> None:
                self.flags = flags
                self.inputs: list[Tensor] = []

            @property
            def num_inputs(self) -> int:
                return len(self.inputs)

            def get_input(self, i: int) -> Tensor:
                return self.inputs[i]

        class ParserError:
            def node(self) -> int:
                return 0

            def node_name(self) -> str:
                return "encoder/MatMul_0"

            def node_operator(self) -> str:
                return "MatMul"

            def desc(self) -> str:
                return "unsupported operand type"

        class OnnxParser:
            def __init__(self, network: Network, logger: ILogger) -> None:
                self.network = network
                self.num_errors = 0

            def parse_from_file(self, path: str) -> bool:
                if fail_parse:
                    self.num_errors = 1
                    return False
                model = onnx.load(path)
                self.network.inputs = [Tensor(i.name) for i in model.graph.input]
                return True

            def get_error(self, i: int) -> ParserError:
                return ParserError()

        class TimingCache:
            def __init__(self, data: bytes) -> None:
                self.data = data

            def serialize(self) -> bytes:
                return self.data + b"+tuned"

        class Profile:
            def __init__(self) -> None:
                self.shapes: dict[str, list[list[int]]] = {}

            def set_shape(self, name: str, low: Any, opt: Any, high: Any) -> None:
                self.shapes[name] = [list(low), list(opt), list(high)]

        class Config:
            def __init__(self) -> None:
                self.pool: dict[str, int] = {}
                self.builder_optimization_level = 3
                self.profiles: list[Profile] = []
                self.default_device_type = devices.GPU
                self.DLA_core = -1
                self.flags: list[str] = []
                self.timing_cache: TimingCache | None = None
                self.progress_monitor: IProgressMonitor | None = None

            def set_memory_pool_limit(self, pool: Any, size: int) -> None:
                self.pool[pool.name] = size

            def add_optimization_profile(self, profile: Profile) -> int:
                self.profiles.append(profile)
                return len(self.profiles) - 1

            def set_flag(self, flag: Any) -> None:
                self.flags.append(flag.name)

            def create_timing_cache(self, data: bytes) -> TimingCache:
                fake.timing_cache_inputs.append(bytes(data))
                return TimingCache(bytes(data))

            def set_timing_cache(self, cache: TimingCache, ignore_mismatch: bool) -> bool:
                self.timing_cache = cache
                return True

        class Builder:
            def __init__(self, logger: ILogger) -> None:
                self.num_DLA_cores = dla_cores

            def create_network(self, flags: int) -> Network:
                return Network(flags)

            def create_builder_config(self) -> Config:
                return Config()

            def create_optimization_profile(self) -> Profile:
                return Profile()

            def build_serialized_network(self, network: Network, config: Config) -> bytes | None:
                if fail_build:
                    return None
                monitor = config.progress_monitor
                assert monitor is not None
                monitor.phase_start("Building engine", "", 2)  # type: ignore[attr-defined]
                monitor.step_complete("Building engine", 0)  # type: ignore[attr-defined]
                monitor.step_complete("Building engine", 1)  # type: ignore[attr-defined]
                monitor.phase_finish("Building engine")  # type: ignore[attr-defined]
                plan = {
                    "network_flags": network.flags,
                    "workspace": config.pool.get("WORKSPACE"),
                    "optimization_level": config.builder_optimization_level,
                    "profiles": [p.shapes for p in config.profiles],
                    "device": config.default_device_type.name,
                    "dla_core": config.DLA_core,
                    "flags": config.flags,
                    "timing_cache": config.timing_cache.data.decode() if config.timing_cache else None,
                }
                fake.builds.append(plan)
                return json.dumps(plan).encode()

        module.__dict__.update(
            __version__="10.3.0.30",
            ILogger=ILogger,
            IProgressMonitor=IProgressMonitor,
            NetworkDefinitionCreationFlag=creation,
            MemoryPoolType=pools,
            BuilderFlag=flags,
            DeviceType=devices,
            Dims=list,
            Builder=Builder,
            OnnxParser=OnnxParser,
        )
        self.module = module


def _install(monkeypatch: pytest.MonkeyPatch, trt: FakeBuilderTensorRT) -> None:
    cuda = FakeCuda()
    bindings = types.ModuleType("cuda.bindings")
    bindings.runtime = cuda.module  # type: ignore[attr-defined]
    package = types.ModuleType("cuda")
    package.bindings = bindings  # type: ignore[attr-defined]
    for name, module in {"tensorrt": trt.module, "cuda": package, "cuda.bindings": bindings, "cuda.bindings.runtime": cuda.module}.items():
        monkeypatch.setitem(sys.modules, name, module)
    from edgemm.runtime.backends import tensorrt as backend_module

    monkeypatch.setattr(backend_module, "_jetson_model", lambda: "NVIDIA Jetson AGX Orin Developer Kit")


@pytest.fixture
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    return tmp_path / "xdg" / "edgemm" / "tensorrt"


SLUG = "nvidia-jetson-agx-orin-sm87-trt10.3.0"


def test_build_configures_the_builder_and_commits_the_engine(pack_dir: Path, cache_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    trt = FakeBuilderTensorRT()
    _install(monkeypatch, trt)
    out = io.StringIO()
    config = BuildConfig(pack=str(pack_dir), max_batch=8, workspace_gb=1.5, optimization_level=5, version_compatible=True)
    report = build_engines(config, stream=out)

    assert report.device == pk.DeviceKey("NVIDIA Jetson AGX Orin", "8.7", "10.3.0", "12.6")
    (plan,) = trt.builds
    assert plan["network_flags"] == 1 << 1  # STRONGLY_TYPED
    assert plan["workspace"] == int(1.5 * (1 << 30)) and plan["optimization_level"] == 5
    assert plan["profiles"] == [{"x": [[1, 4], [1, 4], [8, 4]]}]  # batch 1..8 from the manifest's symbolic axis
    assert plan["device"] == "GPU" and plan["flags"] == ["VERSION_COMPATIBLE"]
    assert plan["timing_cache"] == ""  # a new cache: none on disk yet
    (built,) = report.engines
    assert not built.reused and built.engine.file.path == f"caption/engines/{SLUG}/encoder.engine"
    assert built.engine.version_compatible and built.engine.precision == "fp32" and built.engine.dla_core is None
    assert "version-compatible" in built.describe()
    # The pack now holds the engine, byte for byte what the builder returned, and still loads.
    pack = pk.load(pack_dir)
    (engine,) = pack.component("caption").engines
    assert engine == built.engine and json.loads((pack_dir / engine.file.path).read_bytes()) == plan
    shape = engine.profiles[0].shapes["x"]
    assert (shape.min, shape.opt, shape.max) == ((1, 4), (1, 4), (8, 4))
    # The device's timing cache was saved, and progress was shown.
    assert (cache_dir / f"{SLUG}.timing-cache").read_bytes() == b"+tuned"
    text = out.getvalue()
    assert "1 engine for NVIDIA Jetson AGX Orin (sm87, TensorRT 10.3.0, CUDA 12.6) (0 already built)" in text
    assert "Building engine" in text

    # Built again: kept (no builder call) ...
    again = build_engines(config, stream=io.StringIO())
    assert again.engines[0].reused and len(trt.builds) == 1
    # ... unless forced, which starts from the saved timing cache.
    forced = build_engines(BuildConfig(pack=str(pack_dir), max_batch=8, force=True), stream=io.StringIO())
    assert not forced.engines[0].reused and trt.builds[-1]["timing_cache"] == "+tuned" and trt.builds[-1]["flags"] == []
    (engine,) = pk.load(pack_dir).component("caption").engines  # replaced, not added
    assert not engine.version_compatible


def test_a_parser_error_names_the_node_and_leaves_the_pack_as_it_was(pack_dir: Path, cache_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    manifest = (pack_dir / pk.MANIFEST_NAME).read_bytes()
    _install(monkeypatch, FakeBuilderTensorRT(fail_parse=True))
    pattern = r"TensorRT 10.3.0.30's ONNX parser rejected caption/encoder.onnx: node 0 'encoder/MatMul_0' \(MatMul\): unsupported operand type"
    with pytest.raises(errors.EngineBuildError, match=pattern):
        build_engines(BuildConfig(pack=str(pack_dir)), stream=io.StringIO())
    assert (pack_dir / pk.MANIFEST_NAME).read_bytes() == manifest
    assert not (pack_dir / "caption" / "engines").exists() or not any((pack_dir / "caption" / "engines").rglob("*.engine"))

    _install(monkeypatch, FakeBuilderTensorRT(fail_build=True))
    with pytest.raises(errors.EngineBuildError, match=r"TensorRT 10.3.0.30 could not build caption/encoder.onnx: no reason given"):
        build_engines(BuildConfig(pack=str(pack_dir)), stream=io.StringIO())
    assert (pack_dir / pk.MANIFEST_NAME).read_bytes() == manifest


def test_dla_needs_a_dla_and_fp16_or_int8_graphs(pack_dir: Path, cache_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _install(monkeypatch, FakeBuilderTensorRT(dla_cores=0))
    # The test pack has only fp32 graphs: refused before anything is built.
    with pytest.raises(errors.EngineBuildError, match=r"--dla: DLA runs fp16 and int8 layers only"):
        build_engines(BuildConfig(pack=str(pack_dir), dla_core=0), stream=io.StringIO())
