"""TensorRT engines of a pack, as pure functions: no TensorRT, CUDA or GPU needed.

- which graphs get engines (:func:`tensorrt_graphs`) and how the runtime finds a graph for TensorRT
  (:func:`tensorrt_graph`);
- device keys: describing, comparing and naming the device an engine was built for
  (:func:`device_mismatches`, :func:`gpu_display_name`);
- optimization profiles derived from the manifest's symbolic shapes (:func:`derive_profile`),
  overridable with ``--shapes`` (:func:`parse_shape_overrides`);
- which engine serves a graph on a device, and which backend runs it (:func:`find_engine`,
  :func:`select_backend`).

The parts that need TensorRT live in :mod:`edgemm.runtime.backends.tensorrt` (the backend and the
device probe) and :mod:`edgemm.compile.build` (``edgemm build``).
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from .errors import BackendUnavailableError, EngineMismatchError, EngineNotFoundError, ShapeProfileError
from .pack import Component, DeviceKey, Engine, Graph, OptimizationProfile, ShapeRange

__all__ = [
    "BACKENDS",
    "TENSORRT_TARGETS",
    "BackendChoice",
    "ShapeDefaults",
    "check_overrides",
    "derive_profile",
    "describe_device",
    "device_mismatches",
    "dla_problem",
    "engine_mismatches",
    "engine_path",
    "engine_precisions",
    "find_engine",
    "gpu_display_name",
    "parse_shape_overrides",
    "parse_version",
    "reusable_engine",
    "select_backend",
    "tensorrt_graph",
    "tensorrt_graphs",
    "tensorrt_precisions",
]

TENSORRT_TARGETS = ("tensorrt", "gpu")
"""Graph targets built into engines: symmetric Q/DQ int8 (``tensorrt``) and fp16 (``gpu``) graphs."""

BACKENDS = ("auto", "tensorrt", "onnxruntime")
_BACKEND_ALIASES = {"auto": "auto", "tensorrt": "tensorrt", "trt": "tensorrt", "onnxruntime": "onnxruntime", "ort": "onnxruntime"}

# --- which graphs get engines -----------------------------------------------------------------


def tensorrt_graphs(component: Component, precisions: Sequence[str] | None = None) -> tuple[Graph, ...]:
    """The graphs of ``component`` that ``edgemm build`` turns into engines.

    Every ``tensorrt`` and ``gpu`` graph (int8 Q/DQ, fp16), and, for a role that has neither, its
    fp32 ``any`` graph (so a pack compiled for the CPU alone still gets fp32 engines). ``cpu`` graphs
    (ONNX Runtime's U8S8 int8) never do. With ``precisions``, only graphs of those precisions;
    asking for ``fp32`` explicitly adds the fp32 ``any`` graph of every role.
    """
    roles = list(dict.fromkeys(g.role for g in component.graphs))
    chosen: list[Graph] = []
    for role in roles:
        gpu = [g for g in component.graphs if g.role == role and g.target in TENSORRT_TARGETS]
        fp32 = [g for g in component.graphs if g.role == role and g.target == "any" and g.precision == "fp32"]
        explicit_fp32 = precisions is not None and "fp32" in precisions
        chosen += gpu + ([] if gpu and not explicit_fp32 else fp32)
    if precisions is not None:
        chosen = [g for g in chosen if g.precision in precisions]
    return tuple(chosen)


def tensorrt_graph(component: Component, role: str, precision: str) -> Graph:
    """The graph the TensorRT backend runs for ``role`` in ``precision``: the ``tensorrt``
    variant, else the ``gpu`` one, else the ``any`` one.

    Raises:
        EngineNotFoundError: the component has no such graph (listing the variants it has).
    """
    for target in ("tensorrt", "gpu", "any"):
        for graph in component.graphs:
            if graph.role == role and graph.precision == precision and graph.target == target:
                return graph
    have = ", ".join(g.variant for g in component.graphs) or "none"
    raise EngineNotFoundError(f"component '{component.name}' has no {role} graph in {precision} for TensorRT; it has: {have}")


def tensorrt_precisions(component: Component) -> tuple[str, ...]:
    """Precisions in which every role of ``component`` has a graph TensorRT can run."""
    roles = {g.role for g in component.graphs}
    found = []
    for precision in ("int8", "fp16", "fp32"):
        if all(any(g.role == r and g.precision == precision and g.target in (*TENSORRT_TARGETS, "any") for g in component.graphs) for r in roles):
            found.append(precision)
    return tuple(found)


def engine_path(graph: Graph, device: DeviceKey, dla_core: int | None = None) -> str:
    """Where the engine of ``graph`` for ``device`` goes, relative to the pack:
    ``<component folder>/engines/<device slug>/<graph file stem>[.dla<N>].engine``."""
    folder, _, name = graph.file.path.rpartition("/")
    stem = name[: -len(".onnx")] if name.endswith(".onnx") else name
    suffix = f".dla{dla_core}" if dla_core is not None else ""
    prefix = f"{folder}/" if folder else ""
    return f"{prefix}engines/{device.slug}/{stem}{suffix}.engine"


# --- device keys ------------------------------------------------------------------------------


def parse_version(text: str) -> tuple[int, ...]:
    """``"10.3.0.30"`` -> ``(10, 3, 0, 30)``; ignores a suffix such as ``"10.8.0.43+cuda12"``.

    Raises:
        ValueError: ``text`` does not start with a number.
    """
    numbers = re.findall(r"\d+", text.split("+")[0])
    if not numbers:
        raise ValueError(f"not a version: {text!r}")
    return tuple(int(n) for n in numbers)


def gpu_display_name(cuda_name: str, jetson_model: str | None = None) -> str:
    """The GPU name recorded in device keys.

    CUDA calls every Orin module's GPU "Orin", but an engine tuned on an AGX Orin (2048 cores, 2
    DLAs) should not be taken for an Orin Nano's (1024 cores, no DLA); on Jetson the board model
    from the device tree tells them apart, without its carrier-board suffix:
    ``"NVIDIA Jetson AGX Orin Developer Kit"`` -> ``"NVIDIA Jetson AGX Orin"``.
    """
    if jetson_model and "jetson" in jetson_model.lower():
        model = jetson_model.replace("\x00", "").strip()
        model = re.split(r"\s+(?:Engineering Reference\b|Developer Kit\b|Dev Kit\b|\(|Module\b)", model)[0]
        return model.strip()
    return cuda_name.strip()


def describe_device(key: DeviceKey) -> str:
    """``"NVIDIA Jetson AGX Orin (sm87, TensorRT 10.3.0, CUDA 12.6)"``."""
    cc = key.compute_capability.replace(".", "")
    return f"{key.gpu_name} (sm{cc}, TensorRT {key.tensorrt_version}, CUDA {key.cuda_version})"


_VERSION_COMPATIBLE_MAJORS = {(8, 9), (8, 10), (10, 11)}
"""Major-version steps a version-compatible engine survives (NVIDIA's support matrix: TensorRT 8
engines run on 9 and 10, TensorRT 10 engines on 11; within a major version, any later release)."""


def _runs_version_compatible(built: str, here: str) -> bool:
    try:
        b, h = parse_version(built)[:3], parse_version(here)[:3]
    except ValueError:
        return built == here
    return h >= b and (h[0] == b[0] or (b[0], h[0]) in _VERSION_COMPATIBLE_MAJORS)


def device_mismatches(built: DeviceKey, here: DeviceKey, *, version_compatible: bool = False) -> list[str]:
    """Why an engine built for ``built`` cannot run on ``here`` (empty: it can).

    TensorRT engines are specific to the GPU model (tactics are timed on it), its compute
    capability and the exact TensorRT release (major.minor.patch); the CUDA major version must
    match the one TensorRT was built against, a different minor version is fine. A
    ``version_compatible`` engine also runs with a later TensorRT release (same major version, or
    8 -> 9/10, 10 -> 11), never an earlier one; the GPU must still match.
    """
    reasons = []
    if built.gpu_name.strip().lower() != here.gpu_name.strip().lower():
        reasons.append(f"GPU {built.gpu_name!r} != {here.gpu_name!r}")
    if built.compute_capability != here.compute_capability:
        reasons.append(f"compute capability {built.compute_capability} != {here.compute_capability}")
    try:
        same_trt = parse_version(built.tensorrt_version)[:3] == parse_version(here.tensorrt_version)[:3]
    except ValueError:
        same_trt = built.tensorrt_version == here.tensorrt_version
    if version_compatible and not same_trt:
        if not _runs_version_compatible(built.tensorrt_version, here.tensorrt_version):
            reasons.append(
                f"TensorRT {here.tensorrt_version} cannot run a version-compatible engine of TensorRT {built.tensorrt_version} "
                "(it runs on the same or a later release: same major version, 8 -> 9/10, 10 -> 11)"
            )
    elif not same_trt:
        reasons.append(f"TensorRT {built.tensorrt_version} != {here.tensorrt_version}")
    try:
        same_cuda = parse_version(built.cuda_version)[:1] == parse_version(here.cuda_version)[:1]
    except ValueError:
        same_cuda = built.cuda_version == here.cuda_version
    if not same_cuda:
        reasons.append(f"CUDA {built.cuda_version} != {here.cuda_version} (major version differs)")
    return reasons


def engine_mismatches(engine: Engine, here: DeviceKey) -> list[str]:
    """Why ``engine`` cannot run on ``here`` (empty: it can); see :func:`device_mismatches`."""
    return device_mismatches(engine.device, here, version_compatible=engine.version_compatible)


def dla_problem(device: DeviceKey, dla_core: int, num_dla_cores: int) -> str | None:
    """Why ``dla_core`` cannot be used on ``device`` (None: it can).

    DLA exists on Jetson AGX Orin (2 cores) and Orin NX (1 or 2), not on Orin Nano or desktop GPUs.
    TensorRT 10.7 is the last 10.x release with DLA (JetPack 6 ships 10.3); TensorRT 11 supports
    DLA only on AGX Orin, from 11.4.1 on.
    """
    try:
        version = parse_version(device.tensorrt_version)
    except ValueError:
        version = (0,)
    if num_dla_cores <= 0:
        return f"{device.gpu_name} has no DLA (DLA exists on Jetson AGX Orin and Orin NX, not on Orin Nano or desktop GPUs)"
    if version[0] == 10 and version[:2] > (10, 7):
        return f"TensorRT {device.tensorrt_version} has no DLA support (10.7 was the last 10.x release with DLA; JetPack 6 ships 10.3)"
    if version[0] >= 11 and (version[:3] < (11, 4, 1) or "agx orin" not in device.gpu_name.lower()):
        return f"TensorRT {device.tensorrt_version} supports DLA only on Jetson AGX Orin, from TensorRT 11.4.1 on; this is {device.gpu_name}"
    if not 0 <= dla_core < num_dla_cores:
        return f"DLA core {dla_core} does not exist: {device.gpu_name} has {num_dla_cores} (0..{num_dla_cores - 1})"
    return None


# --- optimization profiles ------------------------------------------------------------------------

_BATCH = {"batch", "batch_size"}
_PAST = re.compile(r"^past(_sequence|_length|_sequence_length|_seq)?$")
_TOKENS = re.compile(r"^(sequence|sequence_length|seq|prompt_sequence|text_sequence|decoder_sequence|tokens)$")
_FRAMES = {"frames", "audio_frames", "num_frames", "n_frames", "feature_frames"}
_SAMPLES = {"samples", "audio_samples", "num_samples"}


@dataclass(frozen=True)
class ShapeDefaults:
    """Ranges given to the symbolic axes the manifest names, unless ``--shapes`` overrides them.

    Attributes:
        max_batch: largest batch (images x beams). Min 1, opt ``opt_batch``.
        opt_batch: the batch TensorRT tunes its kernels for.
        max_sequence: longest token input (prefill prompt, text prompt). Min 1; opt 1 for a
            decoder step (one new token per step), else min(16, max).
        max_past: longest self-attention cache (``past_sequence``, min 0); None: the component's
            ``generation.max_new_tokens`` plus ``max_sequence``, rounded up to a multiple of 32.
    """

    max_batch: int = 4
    opt_batch: int = 1
    max_sequence: int = 64
    max_past: int | None = None

    def __post_init__(self) -> None:
        if not 1 <= self.opt_batch <= self.max_batch:
            raise ShapeProfileError(f"batch: expected 1 <= opt ({self.opt_batch}) <= max ({self.max_batch})")
        if self.max_sequence < 1:
            raise ShapeProfileError(f"max_sequence must be >= 1, got {self.max_sequence}")
        if self.max_past is not None and self.max_past < 1:
            raise ShapeProfileError(f"max_past must be >= 1, got {self.max_past}")


@dataclass(frozen=True)
class _Range:
    min: int
    opt: int
    max: int

    def check(self, what: str) -> _Range:
        if not 0 <= self.min <= self.opt <= self.max:
            raise ShapeProfileError(f"{what}: expected 0 <= min <= opt <= max, got {self.min}:{self.opt}:{self.max}")
        return self


ShapeOverride = _Range | tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]


def _ints(text: str, what: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split("x"))
    except ValueError:
        raise ShapeProfileError(f"{what}: expected integers separated by 'x' (e.g. 1x3x384x384), got {text!r}") from None
    if any(v < 0 for v in values):
        raise ShapeProfileError(f"{what}: sizes must be >= 0, got {text!r}")
    return values


def parse_shape_overrides(specs: Iterable[str], input_names: Iterable[str] = ()) -> dict[str, ShapeOverride]:
    """Parses ``--shapes`` arguments.

    ``AXIS=MIN:OPT:MAX`` (or ``AXIS=N`` for a fixed size) sets a symbolic axis, e.g.
    ``past_sequence=0:64:256``; ``INPUT=MINxDIMS:OPTxDIMS:MAXxDIMS`` (or one shape) sets a whole
    input, as trtexec does, e.g. ``pixel_values=1x3x384x384:2x3x384x384:4x3x384x384``. A name in
    ``input_names``, or a value with an ``x``, is an input; anything else is an axis.

    Raises:
        ShapeProfileError: a malformed spec, or min > opt > max.
    """
    inputs = set(input_names)
    result: dict[str, ShapeOverride] = {}
    for spec in specs:
        for item in spec.replace(",", " ").split():
            name, sep, value = item.partition("=")
            if not sep or not name or not value:
                raise ShapeProfileError(f"--shapes {item!r}: expected AXIS=MIN:OPT:MAX, AXIS=N or INPUT=SHAPE[:SHAPE:SHAPE]")
            parts = value.split(":")
            if len(parts) not in (1, 3):
                raise ShapeProfileError(f"--shapes {item!r}: expected one value or three (MIN:OPT:MAX), got {len(parts)}")
            if len(parts) == 1:
                parts = parts * 3
            if name in inputs or "x" in value:
                shapes = tuple(_ints(p, f"--shapes {item!r}") for p in parts)
                if len({len(s) for s in shapes}) != 1:
                    raise ShapeProfileError(f"--shapes {item!r}: min, opt and max must have the same rank")
                low, opt, high = shapes
                if not all(a <= b <= c for a, b, c in zip(low, opt, high)):
                    raise ShapeProfileError(f"--shapes {item!r}: expected min <= opt <= max on every axis")
                result[name] = (low, opt, high)
            else:
                low_v, opt_v, high_v = (_ints(p, f"--shapes {item!r}")[0] for p in parts)
                result[name] = _Range(low_v, opt_v, high_v).check(f"--shapes {item!r}")
    return result


def check_overrides(overrides: Mapping[str, ShapeOverride], graphs: Iterable[Graph]) -> None:
    """Refuses overrides that name neither an axis nor an input of any of ``graphs`` (a typo would
    otherwise be ignored silently).

    Raises:
        ShapeProfileError: listing the axes and inputs the graphs have.
    """
    axes: set[str] = set()
    inputs: set[str] = set()
    for graph in graphs:
        for spec in graph.inputs:
            inputs.add(spec.name)
            axes.update(d for d in spec.shape if isinstance(d, str) and d != "?")
    unknown = sorted(n for n, v in overrides.items() if (n not in inputs if isinstance(v, tuple) else n not in axes | inputs))
    if unknown:
        raise ShapeProfileError(
            f"--shapes names {unknown}, which no graph being built has; axes: {sorted(axes)}, inputs: {sorted(inputs)}"
        )


def _round_up(value: int, step: int) -> int:
    return -(-value // step) * step


def _axis_range(
    name: str, component: Component, graph: Graph, defaults: ShapeDefaults, overrides: Mapping[str, ShapeOverride]
) -> _Range | None:
    override = overrides.get(name)
    if isinstance(override, _Range):
        return override
    if name in _BATCH:
        return _Range(1, defaults.opt_batch, defaults.max_batch)
    if _PAST.match(name):
        if defaults.max_past is not None:
            high = defaults.max_past
        else:
            new_tokens = component.generation.max_new_tokens if component.generation else 64
            high = _round_up(new_tokens + defaults.max_sequence, 32)
        return _Range(0, high // 2, high)
    if _TOKENS.match(name):
        opt = 1 if "decoder" in graph.role and name in ("sequence", "decoder_sequence", "tokens") else min(16, defaults.max_sequence)
        return _Range(1, opt, defaults.max_sequence)
    audio = component.audio
    if audio is not None and audio.max_length_s > 0 and (name in _FRAMES or name in _SAMPLES):
        samples = round(audio.max_length_s * audio.sample_rate_hz)
        if name in _SAMPLES:
            return _Range(samples, samples, samples)
        if audio.hop_length > 0:
            frames = samples // audio.hop_length
            return _Range(frames, frames, frames)
    return None


def _evaluate(expression: str, ranges: Mapping[str, _Range]) -> _Range | None:
    """Range of a shape expression such as ``"prompt_sequence + 577"`` (None if not computable)."""
    try:
        tree = ast.parse(expression, mode="eval")
    except SyntaxError:
        return None

    def walk(node: ast.AST) -> _Range | None:
        if isinstance(node, ast.Constant) and isinstance(node.value, int):
            return _Range(node.value, node.value, node.value)
        if isinstance(node, ast.Name):
            return ranges.get(node.id)
        if isinstance(node, ast.BinOp):
            left, right = walk(node.left), walk(node.right)
            if left is None or right is None:
                return None
            if isinstance(node.op, ast.Add):
                return _Range(left.min + right.min, left.opt + right.opt, left.max + right.max)
            if isinstance(node.op, ast.Sub):
                return _Range(max(0, left.min - right.max), max(0, left.opt - right.opt), max(0, left.max - right.min))
            if isinstance(node.op, ast.Mult):
                return _Range(left.min * right.min, left.opt * right.opt, left.max * right.max)
            if isinstance(node.op, ast.FloorDiv) and right.min == right.max > 0:
                return _Range(left.min // right.min, left.opt // right.min, left.max // right.min)
        return None

    return walk(tree.body)


def _from_producer(
    name: str, component: Component, graph: Graph, defaults: ShapeDefaults, overrides: Mapping[str, ShapeOverride], depth: int
) -> _Range | None:
    """Range of an axis that another graph of the component produces, e.g. the decoder step's
    ``encoder_sequence``, read from the encoder's ``cross.*`` outputs (fixed, or an expression of
    the encoder's own input axes)."""
    if depth > 2:
        return None
    for spec in graph.inputs:
        for axis, dim in enumerate(spec.shape):
            if dim != name:
                continue
            producers = [g for g in component.graphs if g is not graph and any(o.name == spec.name for o in g.outputs)]
            producers.sort(key=lambda g: (g.precision != graph.precision, g.target != graph.target))
            for producer in producers:
                out = next(o for o in producer.outputs if o.name == spec.name)
                if axis >= len(out.shape):
                    continue
                produced = out.shape[axis]
                if isinstance(produced, int):
                    return _Range(produced, produced, produced)
                ranges = _graph_axis_ranges(component, producer, defaults, overrides, depth + 1, strict=False)
                found = _evaluate(produced, ranges)
                if found is not None:
                    return found
    return None


def _graph_axis_ranges(
    component: Component,
    graph: Graph,
    defaults: ShapeDefaults,
    overrides: Mapping[str, ShapeOverride],
    depth: int = 0,
    *,
    strict: bool = True,
) -> dict[str, _Range]:
    ranges: dict[str, _Range] = {}
    for spec in graph.inputs:
        if spec.name in overrides and isinstance(overrides[spec.name], tuple):
            continue
        for axis, dim in enumerate(spec.shape):
            if isinstance(dim, int) or dim in ranges:
                continue
            found = None if dim == "?" else _axis_range(dim, component, graph, defaults, overrides)
            if found is None and dim != "?":
                found = _from_producer(dim, component, graph, defaults, overrides, depth)
            if found is None:
                if not strict:
                    continue
                label = "has no name" if dim == "?" else f"('{dim}') has no known range"
                raise ShapeProfileError(
                    f"graph {graph.variant} ({graph.file.path}): input '{spec.name}' axis {axis} {label}; "
                    f"pass --shapes {dim if dim != '?' else spec.name}="
                    + ("MIN:OPT:MAX" if dim != "?" else "MINSHAPE:OPTSHAPE:MAXSHAPE (e.g. 1x3x224x224:...)")
                )
            ranges[dim] = found.check(f"graph {graph.variant}: axis '{dim}'")
    return ranges


def derive_profile(
    component: Component,
    graph: Graph,
    defaults: ShapeDefaults | None = None,
    overrides: Mapping[str, ShapeOverride] | None = None,
) -> OptimizationProfile:
    """The optimization profile of ``graph``'s engine: min/opt/max of every input.

    Symbolic axes get their range from their name: ``batch`` 1..max_batch; token axes
    (``sequence``, ``prompt_sequence``) 1..max_sequence; the cache ``past_sequence`` from 0
    (prefill has an empty cache); audio ``frames``/``samples`` fixed by the component's audio
    settings; an axis another graph produces (the decoder's ``encoder_sequence`` from the encoder's
    outputs) from that graph's output shape. ``overrides`` (from :func:`parse_shape_overrides`)
    replace an axis everywhere or one input's shapes outright.

    Raises:
        ShapeProfileError: an axis has no name or no known range (the message says which
            ``--shapes`` to pass), or an override is inconsistent with the graph.
    """
    defaults = defaults or ShapeDefaults()
    overrides = overrides or {}
    ranges = _graph_axis_ranges(component, graph, defaults, overrides)
    shapes: dict[str, ShapeRange] = {}
    for spec in graph.inputs:
        override = overrides.get(spec.name)
        if isinstance(override, tuple):
            low, opt, high = override
            if len(low) != len(spec.shape):
                raise ShapeProfileError(
                    f"--shapes {spec.name}: graph {graph.variant} input '{spec.name}' has rank {len(spec.shape)} "
                    f"{list(spec.shape)}, the override has rank {len(low)}"
                )
            for axis, dim in enumerate(spec.shape):
                if isinstance(dim, int) and not low[axis] == opt[axis] == high[axis] == dim:
                    raise ShapeProfileError(
                        f"--shapes {spec.name}: axis {axis} of input '{spec.name}' is fixed at {dim} in graph {graph.variant}"
                    )
            shapes[spec.name] = ShapeRange(min=low, opt=opt, max=high)
            continue
        dims = [(d, d, d) if isinstance(d, int) else (ranges[d].min, ranges[d].opt, ranges[d].max) for d in spec.shape]
        shapes[spec.name] = ShapeRange(
            min=tuple(d[0] for d in dims), opt=tuple(d[1] for d in dims), max=tuple(d[2] for d in dims)
        )
    for name, shape in shapes.items():
        spec = graph.input(name)
        for axis, dim in enumerate(spec.shape):
            if dim in _BATCH and shape.min[axis] < 1:
                raise ShapeProfileError(f"graph {graph.variant}: input '{name}' batch axis must be >= 1, got min {shape.min[axis]}")
    return OptimizationProfile(shapes=shapes)


# --- engine and backend selection ---------------------------------------------------------------


def find_engine(component: Component, graph: Graph, device: DeviceKey, *, dla_core: int | None = None) -> Engine | None:
    """The engine of ``graph`` that runs on ``device`` (on the GPU, or on ``dla_core``), if any;
    one built by this very TensorRT release before a version-compatible one from an earlier release."""
    runs = [e for e in component.engines if e.graph == graph.file.path and e.dla_core == dla_core and not engine_mismatches(e, device)]
    runs.sort(key=lambda e: bool(device_mismatches(e.device, device)))  # stable: manifest order otherwise
    return runs[0] if runs else None


def engine_precisions(component: Component, device: DeviceKey | None) -> tuple[str, ...]:
    """Precisions in which every role of ``component`` has a GPU engine built for ``device``, best
    first (int8, fp16, fp32); empty without a device. A task runs on TensorRT in one of these."""
    if device is None:
        return ()
    roles = list(dict.fromkeys(g.role for g in component.graphs))
    found = []
    for precision in ("int8", "fp16", "fp32"):
        graphs = []
        for role in roles:
            try:
                graphs.append(tensorrt_graph(component, role, precision))
            except EngineNotFoundError:
                break
        if len(graphs) == len(roles) and all(find_engine(component, g, device) is not None for g in graphs):
            found.append(precision)
    return tuple(found)


def reusable_engine(
    component: Component,
    graph: Graph,
    device: DeviceKey,
    profiles: tuple[OptimizationProfile, ...],
    dla_core: int | None,
    *,
    version_compatible: bool = False,
) -> Engine | None:
    """An existing engine ``edgemm build`` can keep instead of rebuilding: same graph, built on
    this very device and TensorRT release, the same DLA core, optimization profiles and
    version-compatible flag. (A version-compatible engine of an earlier release still runs here,
    but a build on this release makes this release's own engine.)"""
    for engine in component.engines:
        if (
            engine.graph == graph.file.path
            and engine.dla_core == dla_core
            and engine.profiles == profiles
            and engine.version_compatible == version_compatible
            and not device_mismatches(engine.device, device)
        ):
            return engine
    return None


@dataclass(frozen=True)
class BackendChoice:
    """Which backend runs one graph, and why.

    Attributes:
        backend: "tensorrt" or "onnxruntime".
        engine: the engine the TensorRT backend loads (None for ONNX Runtime).
        reason: why, for logs and ``edgemm info`` ("engine built for this device",
            "no engine for this device: ...", "requested").
    """

    backend: Literal["tensorrt", "onnxruntime"]
    engine: Engine | None
    reason: str

    def describe(self) -> str:
        return f"{self.backend} ({self.reason})"


def select_backend(
    component: Component,
    graph: Graph,
    device: DeviceKey | None,
    requested: str = "auto",
    *,
    unavailable: str | None = None,
) -> BackendChoice:
    """Chooses the backend for one graph.

    ``auto``: TensorRT when the pack has an engine of this graph built for this device, else ONNX
    Runtime. ``tensorrt``: that engine or an error saying what the engines were built for.
    ``onnxruntime`` (``ort``): always ONNX Runtime.

    Args:
        component, graph: the graph to run (pick it with :func:`tensorrt_graph` for TensorRT).
        device: this machine's device key (from
            :func:`edgemm.runtime.backends.tensorrt.probe_device`), None when TensorRT cannot run here.
        requested: "auto", "tensorrt" ("trt") or "onnxruntime" ("ort").
        unavailable: why ``device`` is None ("TensorRT is not installed", "no CUDA GPU").

    Raises:
        BackendUnavailableError: an unknown backend, or tensorrt requested where it cannot run.
        EngineMismatchError: tensorrt requested, and the graph's engines were built for other devices.
        EngineNotFoundError: tensorrt requested, and the pack has no engine of the graph.
    """
    wanted = _BACKEND_ALIASES.get(requested.lower())
    if wanted is None:
        raise BackendUnavailableError(f"backend: expected one of {sorted(_BACKEND_ALIASES)}, got {requested!r}")
    if wanted == "onnxruntime":
        return BackendChoice("onnxruntime", None, "requested")
    label = f"component '{component.name}' graph {graph.variant} ({graph.file.path})"
    engines = [e for e in component.engines if e.graph == graph.file.path]
    if device is None:
        why = unavailable or "TensorRT cannot run here"
        if wanted == "tensorrt":
            raise BackendUnavailableError(f"{label}: backend tensorrt was requested, but {why}")
        return BackendChoice("onnxruntime", None, why if engines else "the pack has no TensorRT engine of this graph")
    gpu_engines = sorted(engines, key=lambda e: e.dla_core is not None)
    gpu_engines.sort(key=lambda e: bool(device_mismatches(e.device, device)))  # this release's own first
    for engine in gpu_engines:
        if not engine_mismatches(engine, device):
            where = f"DLA core {engine.dla_core}" if engine.dla_core is not None else "GPU"
            how = "built for this device" if not device_mismatches(engine.device, device) else f"version-compatible, built with TensorRT {engine.device.tensorrt_version}"
            return BackendChoice("tensorrt", engine, f"engine {how}, {engine.precision} on the {where}")
    if engines:
        built = "; ".join(f"{describe_device(e.device)}: {', '.join(engine_mismatches(e, device))}" for e in engines)
        message = (
            f"{label}: its engines were built for another device ({built}); this device is {describe_device(device)}. "
            f"Run `edgemm build PACK` on this device"
        )
        if wanted == "tensorrt":
            raise EngineMismatchError(message)
        return BackendChoice("onnxruntime", None, f"no engine for this device ({built})")
    if wanted == "tensorrt":
        raise EngineNotFoundError(f"{label}: the pack has no TensorRT engine of this graph; run `edgemm build PACK` on this device")
    return BackendChoice("onnxruntime", None, "the pack has no TensorRT engine of this graph")
