"""``edgemm build``: TensorRT engines for a pack, built on the device that will run them.

The last compile stage, and the only one that runs on the device: it needs TensorRT's Python
bindings and cuda-python, never torch or transformers (it imports nothing from the rest of
``edgemm.compile``), so a Jetson with only the runtime installed can run it.

For every TensorRT-flavour graph (:func:`edgemm.runtime.engines.tensorrt_graphs`):

1. lint it against the installed TensorRT (:mod:`edgemm.runtime.tensorrt_lint`); errors stop here;
2. derive its optimization profile from the manifest's symbolic shapes (overridable);
3. keep an existing engine built for this device with the same profile, unless ``force``;
4. parse it into a strongly typed network (TensorRT 10: ``STRONGLY_TYPED``; 11: always), so the
   engine has exactly the graph's precision (fp16 casts, int8 Q/DQ); parser errors name the node;
5. build it with the memory-pool limit, optimization level, DLA core (with GPU fallback) and the
   device's timing cache (loaded before, saved after, shared by every build on this device);
6. write it to a temporary file, move it to ``<component>/engines/<device-key>/`` and record it in
   the manifest (:func:`edgemm.runtime.pack.write_manifest`): each engine is committed on its own,
   so a failure leaves the pack as it was before that engine (with the engines built before it).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from edgemm.runtime._serde import from_json, to_json
from edgemm.runtime.backends.cuda_memory import check, require_cuda
from edgemm.runtime.backends.tensorrt import _LogCapture, make_logger, probe_device, require_tensorrt
from edgemm.runtime.engines import (
    ShapeDefaults,
    ShapeOverride,
    check_overrides,
    derive_profile,
    describe_device,
    dla_problem,
    engine_path,
    parse_shape_overrides,
    reusable_engine,
    tensorrt_graphs,
)
from edgemm.runtime.errors import BackendUnavailableError, CompileError, EngineBuildError, GraphLintError
from edgemm.runtime.onnx_model import read_model
from edgemm.runtime.pack import (
    PRECISIONS,
    Component,
    DeviceKey,
    Engine,
    FileRef,
    Graph,
    OptimizationProfile,
    Pack,
    load,
    resolve_inside,
    write_manifest,
)
from edgemm.runtime.tensorrt_lint import LintReport, graph_precision, lint_pack

from .progress import Progress

if TYPE_CHECKING:
    import tensorrt as trt

__all__ = [
    "BUILD_CONFIG_VERSION",
    "BuildConfig",
    "BuildReport",
    "BuiltEngine",
    "PlannedEngine",
    "build_engines",
    "default_timing_cache",
    "network_flags",
    "plan_builds",
]

BUILD_CONFIG_VERSION = 1


@dataclass(frozen=True)
class BuildConfig:
    """One ``edgemm build`` run.

    Attributes:
        pack: the pack directory.
        components: the components to build (empty: all).
        precisions: only graphs of these precisions (None: every TensorRT-flavour graph).
        shapes: ``--shapes`` overrides (``AXIS=MIN:OPT:MAX`` or ``INPUT=SHAPE:SHAPE:SHAPE``).
        max_batch, max_sequence, max_past: ranges of the symbolic axes (see
            :class:`edgemm.runtime.engines.ShapeDefaults`).
        workspace_gb: TensorRT's workspace memory-pool limit in GiB (None: TensorRT's default, the
            device's memory; set it on a Jetson shared with other work).
        optimization_level: TensorRT's builder optimization level, 0 (fast builds) to 5 (slowest
            build, fastest engine); TensorRT's default is 3.
        dla_core: build for this DLA core with GPU fallback (None: the GPU).
        timing_cache: the timing cache file (None: one per device under the user's cache folder).
        force: rebuild engines that already exist for this device.
        device_index: the CUDA device to build on.
        version_compatible: build with TensorRT's version-compatible flag: the engine carries
            TensorRT's lean runtime and also runs with later TensorRT releases (same major version,
            or 10 -> 11) on the same GPU; it may be slower, and loading it runs code from the plan
            (only load packs you trust).
    """

    pack: str
    components: tuple[str, ...] = ()
    precisions: tuple[str, ...] | None = None
    shapes: tuple[str, ...] = ()
    max_batch: int = 4
    max_sequence: int = 64
    max_past: int | None = None
    workspace_gb: float | None = None
    optimization_level: int = 3
    dla_core: int | None = None
    timing_cache: str | None = None
    force: bool = False
    device_index: int = 0
    version_compatible: bool = False
    version: int = BUILD_CONFIG_VERSION

    def __post_init__(self) -> None:
        if self.version != BUILD_CONFIG_VERSION:
            raise CompileError(f"build config version: expected {BUILD_CONFIG_VERSION}, got {self.version}")
        if self.precisions is not None and (not self.precisions or set(self.precisions) - set(PRECISIONS)):
            raise CompileError(f"precisions: expected some of {list(PRECISIONS)}, got {list(self.precisions)}")
        if self.workspace_gb is not None and self.workspace_gb <= 0:
            raise CompileError(f"workspace_gb: expected a positive size, got {self.workspace_gb}")
        if not 0 <= self.optimization_level <= 5:
            raise CompileError(f"optimization_level: expected 0..5, got {self.optimization_level}")
        if self.dla_core is not None and self.dla_core < 0:
            raise CompileError(f"dla_core: expected 0 or more, got {self.dla_core}")
        self.defaults()  # validates the ranges
        parse_shape_overrides(self.shapes)  # syntax only here; names are checked against the graphs

    def defaults(self) -> ShapeDefaults:
        return ShapeDefaults(max_batch=self.max_batch, max_sequence=self.max_sequence, max_past=self.max_past)

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = to_json(self)
        return data

    @classmethod
    def from_json(cls, data: Any) -> BuildConfig:
        return from_json(cls, data, error=CompileError, path="build config")


@dataclass(frozen=True)
class BuiltEngine:
    """One engine of the run: built now, or kept from an earlier build."""

    component: str
    graph: str
    engine: Engine
    reused: bool

    def describe(self) -> str:
        what = "kept" if self.reused else "built"
        where = f", DLA core {self.engine.dla_core}" if self.engine.dla_core is not None else ""
        where += ", version-compatible" if self.engine.version_compatible else ""
        took = " (already built for this device; --force rebuilds)" if self.reused else f" in {self.engine.build_time_s:.1f} s"
        return f"{what} {self.engine.file.path}  {self.engine.precision}{where}, {_size(self.engine.file.size_bytes)}{took}"


@dataclass(frozen=True)
class BuildReport:
    device: DeviceKey
    engines: tuple[BuiltEngine, ...]
    lint: LintReport
    timing_cache: str


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"


def default_timing_cache(device: DeviceKey) -> Path:
    """``$XDG_CACHE_HOME/edgemm/tensorrt/<device slug>.timing-cache`` (``~/.cache`` by default):
    one per device and TensorRT version, shared by every pack built on it."""
    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return root / "edgemm" / "tensorrt" / f"{device.slug}.timing-cache"


def network_flags(strongly_typed_bit: int | None) -> int:
    """Network creation flags: the ``STRONGLY_TYPED`` bit where the enum has it. In TensorRT 10 it
    makes the network take its precision from the graph; in 11 every network is strongly typed
    and the flag is accepted but ignored (deprecated), so a later release may drop it."""
    return 0 if strongly_typed_bit is None else 1 << strongly_typed_bit


def _atomic_write(path: Path, data: bytes | memoryview) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@dataclass(frozen=True)
class PlannedEngine:
    """One graph to build (or keep): where its engine goes and the profile it is built with.

    Attributes:
        reuse: the existing engine that will be kept (None: it will be built).
    """

    component: Component
    graph: Graph
    profile: OptimizationProfile
    path: str
    reuse: Engine | None


def plan_builds(pack: Pack, config: BuildConfig, device: DeviceKey, overrides: dict[str, ShapeOverride] | None = None) -> list[PlannedEngine]:
    """What the run will do, graph by graph (pure: no TensorRT).

    Raises:
        EngineBuildError: a component is unknown or has nothing to build.
        ShapeProfileError: a profile cannot be derived.
    """
    names = list(config.components) or [c.name for c in pack.components]
    plans = []
    for name in names:
        component = pack.component(name)
        graphs = tensorrt_graphs(component, config.precisions)
        if not graphs:
            have = ", ".join(g.variant for g in component.graphs)
            raise EngineBuildError(f"component '{name}' has no graph to build for TensorRT in {list(config.precisions or PRECISIONS)}; it has: {have}")
        for graph in graphs:
            profile = derive_profile(component, graph, config.defaults(), overrides)
            existing = (
                None
                if config.force
                else reusable_engine(component, graph, device, (profile,), config.dla_core, version_compatible=config.version_compatible)
            )
            plans.append(PlannedEngine(component, graph, profile, engine_path(graph, device, config.dla_core), existing))
    return plans


class _Builder:
    """Holds the TensorRT builder and the timing cache across the engines of one run."""

    def __init__(self, config: BuildConfig, device: DeviceKey, progress: Progress, timing_cache: Path) -> None:
        import tensorrt as trt

        self.config = config
        self.device = device
        self.progress = progress
        self.capture = _LogCapture()
        self.logger = make_logger(self.capture)
        self.builder = trt.Builder(self.logger)
        self.timing_cache_path = timing_cache
        self.timing_cache: trt.ITimingCache | None = None
        if config.dla_core is not None:
            problem = dla_problem(device, config.dla_core, self.builder.num_DLA_cores)
            if problem:
                raise BackendUnavailableError(f"--dla {config.dla_core}: {problem}")

    def _load_timing_cache(self, builder_config: trt.IBuilderConfig) -> None:
        """Gives the builder the device's timing cache: the one of the previous engine of this run,
        else the file's, else a new one (the file is unreadable, or from another device/TensorRT)."""
        cache = self.timing_cache
        if cache is None and self.timing_cache_path.is_file():
            data = self.timing_cache_path.read_bytes()
            try:
                cache = builder_config.create_timing_cache(data)
            except Exception:  # a truncated or foreign file: TensorRT raises rather than returning None
                cache = None
            if cache is not None and builder_config.set_timing_cache(cache, ignore_mismatch=False):
                self.progress.note(f"timing cache: {self.timing_cache_path} ({_size(len(data))})")
                self.timing_cache = cache
                return
            self.progress.note(f"timing cache {self.timing_cache_path} is unreadable or from another device or TensorRT; starting a new one")
            cache = None
        if cache is None:
            cache = builder_config.create_timing_cache(b"")
        builder_config.set_timing_cache(cache, ignore_mismatch=False)
        self.timing_cache = cache

    def save_timing_cache(self) -> None:
        if self.timing_cache is not None:
            _atomic_write(self.timing_cache_path, memoryview(self.timing_cache.serialize()))

    def build(self, graph: Graph, path: Path, profile: OptimizationProfile) -> bytes:
        import tensorrt as trt

        flag = getattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)
        network = self.builder.create_network(network_flags(None if flag is None else int(flag)))
        parser = trt.OnnxParser(network, self.logger)
        self.progress.note("parsing the ONNX graph into a strongly typed network")
        if not parser.parse_from_file(str(path)):
            errors = []
            for i in range(parser.num_errors):
                error = parser.get_error(i)
                errors.append(f"node {error.node()} '{error.node_name()}' ({error.node_operator()}): {error.desc()}")
            raise EngineBuildError(
                f"TensorRT {trt.__version__}'s ONNX parser rejected {graph.file.path}: " + "; ".join(errors or [self.capture.take()])
            )
        names = {network.get_input(i).name for i in range(network.num_inputs)}
        if names != set(profile.shapes):
            raise EngineBuildError(f"{graph.file.path}: the parsed network's inputs {sorted(names)} differ from the manifest's {sorted(profile.shapes)}")
        builder_config = self.builder.create_builder_config()
        if self.config.workspace_gb is not None:
            builder_config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(self.config.workspace_gb * (1 << 30)))
        builder_config.builder_optimization_level = self.config.optimization_level
        optimization_profile = self.builder.create_optimization_profile()
        for name, shape in profile.shapes.items():
            optimization_profile.set_shape(name, trt.Dims(list(shape.min)), trt.Dims(list(shape.opt)), trt.Dims(list(shape.max)))
        builder_config.add_optimization_profile(optimization_profile)
        if self.config.dla_core is not None:
            builder_config.default_device_type = trt.DeviceType.DLA
            builder_config.DLA_core = self.config.dla_core
            builder_config.set_flag(trt.BuilderFlag.GPU_FALLBACK)
        if self.config.version_compatible:
            builder_config.set_flag(trt.BuilderFlag.VERSION_COMPATIBLE)  # the plan carries the lean runtime
        self._load_timing_cache(builder_config)
        monitor = _monitor(self.progress)  # held here: TensorRT keeps no Python reference to it
        builder_config.progress_monitor = monitor
        serialized = self.builder.build_serialized_network(network, builder_config)
        if serialized is None:
            raise EngineBuildError(f"TensorRT {trt.__version__} could not build {graph.file.path}: {self.capture.take() or 'no reason given'}")
        return bytes(memoryview(serialized))


def _monitor(progress: Progress) -> trt.IProgressMonitor:
    """A TensorRT progress monitor printing the builder's top phases and their step counts."""
    import tensorrt as trt

    class _Monitor(trt.IProgressMonitor):
        def __init__(self) -> None:
            trt.IProgressMonitor.__init__(self)
            self.totals: dict[str, int] = {}
            self.top: set[str] = set()

        def phase_start(self, phase_name: str, parent_phase: str, num_steps: int) -> None:
            if not parent_phase:
                self.top.add(phase_name)
                progress.note(f"{phase_name} ({num_steps} steps)" if num_steps > 1 else phase_name)
            self.totals[phase_name] = num_steps

        def step_complete(self, phase_name: str, step: int) -> bool:
            total = self.totals.get(phase_name, 0)
            if phase_name in self.top and total > 1:
                progress.count(step + 1, total, f"  {phase_name}")
            return True  # False would cancel the build

        def phase_finish(self, phase_name: str) -> None:
            self.totals.pop(phase_name, None)

    return _Monitor()


def _commit(pack: Pack, plan: PlannedEngine, data: bytes, engine: Engine) -> Pack:
    """Moves the engine into the pack and records it in the manifest; on any failure, puts back
    the file it replaced, so the pack stays as it was."""
    final = resolve_inside(pack.path, plan.path)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent)
    backup: Path | None = None
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        if final.exists():
            backup = final.with_name(f".{final.name}.{os.getpid()}.bak")
            os.replace(final, backup)
        os.replace(tmp, final)
        component = plan.component
        current = pack.component(component.name)
        others = tuple(
            e for e in current.engines if not (e.graph == engine.graph and e.device.slug == engine.device.slug and e.dla_core == engine.dla_core)
        )
        updated = dataclasses.replace(current, engines=(*others, engine))
        manifest = pack.manifest.with_component(updated)
        write_manifest(pack.path, manifest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        if backup is not None:
            os.replace(backup, final)
        else:
            final.unlink(missing_ok=True)
        raise
    if backup is not None:
        backup.unlink(missing_ok=True)
    return Pack(pack.path, manifest, precision=pack.precision, options=pack.options, backend=pack.backend)


def build_engines(config: BuildConfig, *, show_progress: bool = True, stream: TextIO | None = None) -> BuildReport:
    """Builds (or keeps) the TensorRT engines of a pack on this device.

    Raises:
        DependencyMissingError: TensorRT or cuda-python is not installed (the message says how to
            install them on Jetson and on a desktop).
        BackendUnavailableError: no CUDA GPU, or DLA requested where there is none.
        GraphLintError: a graph uses something TensorRT's parser does not accept.
        ShapeProfileError: a profile cannot be derived or an override is malformed.
        EngineBuildError: TensorRT's parser or builder failed (the message names the node).
        PackError: the pack cannot be loaded.
    """
    require_tensorrt("edgemm build")
    require_cuda("edgemm build")
    import tensorrt as trt
    from cuda.bindings import runtime as cudart

    stream = stream if stream is not None else sys.stderr
    device = probe_device(config.device_index)
    check(cudart.cudaSetDevice(config.device_index), f"cudaSetDevice({config.device_index})")
    pack = load(config.pack)
    names = list(config.components) or [c.name for c in pack.components]
    components = [pack.component(n) for n in names]
    graphs = [g for c in components for g in tensorrt_graphs(c, config.precisions)]
    overrides = parse_shape_overrides(config.shapes, {spec.name for g in graphs for spec in g.inputs})
    check_overrides(overrides, graphs)
    if config.dla_core is not None:
        fp32 = [g.file.path for g in graphs if g.precision == "fp32"]
        if fp32:
            raise EngineBuildError(
                f"--dla: DLA runs fp16 and int8 layers only, and {fp32} are fp32 (everything would fall back to the GPU); "
                "build those without --dla, or pick the fp16/int8 graphs with --precision"
            )
    report = lint_pack(pack, graphs=graphs, versions=(device.tensorrt_version,))
    for finding in report.findings:
        print(f"edgemm build: {finding.format()}", file=stream)
    if not report.ok:
        first = report.errors[0]
        raise GraphLintError(f"{report.summary()}; first: {first.graph}: [{first.rule}] {first.message}")
    plans = plan_builds(pack, config, device, overrides)
    to_build = [p for p in plans if p.reuse is None]
    timing_cache = Path(config.timing_cache).expanduser() if config.timing_cache else default_timing_cache(device)
    progress = Progress(len(to_build), stream=stream, enabled=show_progress)
    if show_progress:
        print(
            f"edgemm build: {len(plans)} engine{'s' * (len(plans) != 1)} for {describe_device(device)} "
            f"({len(plans) - len(to_build)} already built); TensorRT {trt.__version__}",
            file=stream,
        )
    results: list[BuiltEngine] = []
    builder = _Builder(config, device, progress, timing_cache) if to_build else None
    for plan in plans:
        if plan.reuse is not None:
            results.append(BuiltEngine(plan.component.name, plan.graph.file.path, plan.reuse, reused=True))
            continue
        assert builder is not None
        graph_path = pack.path_of(plan.graph.file)
        with progress.stage(f"{plan.graph.variant}: {plan.graph.file.path} -> {plan.path}"):
            start = time.perf_counter()
            data = builder.build(plan.graph, graph_path, plan.profile)
            took = time.perf_counter() - start
            builder.save_timing_cache()
            engine = Engine(
                graph=plan.graph.file.path,
                file=FileRef(path=plan.path, sha256=hashlib.sha256(data).hexdigest(), size_bytes=len(data)),
                device=device,
                precision=graph_precision(read_model(graph_path)),
                profiles=(plan.profile,),
                build_time_s=round(took, 2),
                built_at=datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
                dla_core=config.dla_core,
                version_compatible=config.version_compatible,
            )
            pack = _commit(pack, plan, data, engine)
        results.append(BuiltEngine(plan.component.name, plan.graph.file.path, engine, reused=False))
    return BuildReport(device=device, engines=tuple(results), lint=report, timing_cache=str(timing_cache))

