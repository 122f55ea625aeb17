"""What every task (captioner, zero-shot scorer, transcriber) shares: which graphs it runs, in which
precision, on which backend, and the decoder's key/value cache kept on that backend.

A task plans its graphs once with :func:`plan_graphs`, then opens each with :func:`open_graph`::

    plan = plan_graphs(component, ("encoder", "decoder_step"), precision="auto", backend="auto")
    encoder = open_graph(pack, component, plan, "encoder")          # a Backend
    step = open_graph(pack, component, plan, "decoder_step")
    state = KVCacheState(step, encoder.run(feeds), component.kv_cache, dtype)   # for generation.generate

The rule (per component): when the pack has TensorRT engines built for this device for every graph
of the component in one precision, the task runs on those engines (``precision="auto"`` takes the
best such precision whose validation passed); otherwise on ONNX Runtime, in the precision
:func:`choose_precision` picks for the execution providers' target. ``backend="tensorrt"`` without
such engines is an error saying why (never a silent fall back to ONNX Runtime);
``backend="onnxruntime"`` never looks at engines.
"""

from __future__ import annotations

import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

from . import graph_io
from .backends.base import Backend
from .backends.choose import open_choice
from .backends.ort import OrtOptions, available_providers, choose_providers
from .engines import (
    BACKENDS,
    BackendChoice,
    describe_device,
    engine_mismatches,
    engine_precisions,
    select_backend,
    tensorrt_graph,
    tensorrt_precisions,
)
from .errors import BackendError, BackendUnavailableError, EngineNotFoundError, PackError
from .pack import PRECISIONS, Component, DeviceKey, Graph, KVCacheLayout, Pack

__all__ = [
    "GraphPlan",
    "KVCacheState",
    "choose_precision",
    "describe_backends",
    "device_target",
    "input_dtype",
    "open_graph",
    "plan_component",
    "plan_graphs",
    "resolve_backend",
    "task_component",
]

_SHORT_NAMES = {"trt": "tensorrt", "ort": "onnxruntime"}


def resolve_backend(backend: str) -> str:
    """``backend`` as one of :data:`edgemm.runtime.engines.BACKENDS` ("trt" and "ort" are short names).

    Raises:
        BackendUnavailableError: an unknown name.
    """
    name = _SHORT_NAMES.get(backend.lower(), backend.lower()) if isinstance(backend, str) else None
    if name not in BACKENDS:
        raise BackendUnavailableError(f"backend: expected one of {list(BACKENDS)} (or 'trt', 'ort'), got {backend!r}")
    return name


def device_target(providers: Sequence[str]) -> str:
    """The graph target a list of ONNX Runtime providers runs best: "tensorrt", "gpu" or "cpu"."""
    first = providers[0] if providers else "CPUExecutionProvider"
    return {"TensorrtExecutionProvider": "tensorrt", "CUDAExecutionProvider": "gpu"}.get(first, "cpu")


def _failed_precisions(component: Component) -> set[str]:
    """Precisions whose compile-time validation failed (subjects such as ``caption[int8/cpu]``)."""
    return {v.subject.split("[")[-1].split("/")[0] for v in component.validation if not v.passed}


def choose_precision(component: Component, target: str, requested: str = "auto") -> str:
    """Picks the precision to run ``component`` in on ``target`` with ONNX Runtime.

    "auto" takes the fastest variant built for the target whose validation passed: int8, then
    fp16 on GPUs, else fp32. An explicit precision the pack lacks for the target is an error,
    never a silent substitute.

    Raises:
        PackError: saying which precisions the component has for the target.
    """
    have = component.precisions(target)
    if requested != "auto":
        if requested not in have:
            raise PackError(
                f"component '{component.name}' has no {requested} graphs for target {target}; it has {list(have)}"
                + (" (fp16 and TensorRT int8 graphs are for GPUs; compile with --precision int8 --target cpu)" if target == "cpu" else "")
            )
        return requested
    failed = _failed_precisions(component)
    order = ("int8", "fp16", "fp32") if target != "cpu" else ("int8", "fp32")
    for precision in order:
        if precision in have and precision not in failed:
            return precision
    raise PackError(f"component '{component.name}' has no graphs usable on target {target}; it has {[g.variant for g in component.graphs]}")


def plan_component(
    component: Component, precision: str, options: OrtOptions | None, graph_target: str | None
) -> tuple[OrtOptions, str, str]:
    """(ONNX Runtime options, graph target, precision) a task runs ``component`` with on ONNX Runtime.

    The target is the device's (from the providers the options resolve to) unless
    ``graph_target`` overrides it; the precision is :func:`choose_precision`'s.
    """
    options = options or OrtOptions()
    target = graph_target or device_target(choose_providers(options.providers, available_providers()))
    return options, target, choose_precision(component, target, precision)


@dataclass(frozen=True)
class GraphPlan:
    """The graphs a task runs and the backend each one gets, decided before anything is loaded.

    Attributes:
        precision: the precision every graph of the plan has.
        target: the graph target: ``"tensorrt"`` when the graphs run on engines, else the ONNX
            Runtime target ("cpu", "gpu", "tensorrt" for the TensorRT execution provider).
        graphs: role -> the graph of the pack that runs it.
        choices: role -> the backend chosen for it, with the reason.
        options: ONNX Runtime options (used by graphs that run on ONNX Runtime).
        device_index: the CUDA device TensorRT engines run on.
    """

    precision: str
    target: str
    graphs: Mapping[str, Graph]
    choices: Mapping[str, BackendChoice]
    options: OrtOptions = field(default_factory=OrtOptions)
    device_index: int = 0

    @property
    def backend(self) -> str:
        """"tensorrt" or "onnxruntime": what runs the plan's graphs."""
        return "tensorrt" if any(c.backend == "tensorrt" for c in self.choices.values()) else "onnxruntime"

    def describe(self) -> str:
        """E.g. ``fp16 on tensorrt (engine built for this device, fp16 on the GPU)``."""
        reasons = list(dict.fromkeys(c.describe() for c in self.choices.values()))
        return f"{self.precision}/{self.target} on {'; '.join(reasons)}"


def plan_graphs(
    component: Component,
    roles: Sequence[str],
    *,
    precision: str = "auto",
    backend: str = "auto",
    options: OrtOptions | None = None,
    graph_target: str | None = None,
    device_index: int = 0,
) -> GraphPlan:
    """Decides which graph runs each of ``roles`` and on which backend (see the module docstring).

    The device is probed for TensorRT only when the component has engines (or TensorRT is
    requested), so a pack without engines never imports TensorRT.

    Args:
        component: the task's component.
        roles: the graph roles the task runs ("encoder", "decoder_step", "text_encoder", ...).
        precision: "auto", "fp32", "fp16" or "int8".
        backend: "auto", "tensorrt" ("trt") or "onnxruntime" ("ort").
        options: ONNX Runtime options (providers, threads) for graphs run on ONNX Runtime.
        graph_target: run the ONNX graphs built for this target instead of the device's own
            (compile-time validation runs GPU graphs on the CPU this way); ONNX Runtime only.
        device_index: the CUDA device TensorRT runs on.

    Raises:
        BackendUnavailableError: an unknown backend; TensorRT requested where it cannot run, or
            together with ``graph_target``.
        EngineMismatchError, EngineNotFoundError: TensorRT requested, and the pack has no engine
            of a graph for this device (the message says what they were built for and to run
            ``edgemm build PACK``).
        PackError: an unknown precision, or one the component lacks.
    """
    wanted = resolve_backend(backend)
    if precision not in ("auto", *PRECISIONS):
        raise PackError(f"precision: expected auto, {', '.join(PRECISIONS)}; got {precision!r}")
    if graph_target is not None and wanted == "tensorrt":
        raise BackendUnavailableError(
            f"graph_target={graph_target!r} runs ONNX graphs on ONNX Runtime; it cannot be combined with backend='tensorrt'"
        )
    why_not = "requested" if wanted == "onnxruntime" else f"graph_target={graph_target}" if graph_target else None
    if why_not is None and not component.engines and wanted == "auto":
        why_not = "the pack has no TensorRT engines of this component"
    if why_not is None:
        from .backends.tensorrt import tensorrt_device

        device, unavailable = tensorrt_device(device_index)
        have = engine_precisions(component, device)
        usable = [p for p in have if p == precision] if precision != "auto" else [p for p in have if p not in _failed_precisions(component)]
        if usable:
            chosen = usable[0]
            graphs = {role: tensorrt_graph(component, role, chosen) for role in roles}
            choices = {role: select_backend(component, graph, device, "tensorrt") for role, graph in graphs.items()}
            return GraphPlan(chosen, "tensorrt", graphs, choices, options or OrtOptions(), device_index)
        if wanted == "tensorrt":
            _refuse(component, roles, precision, device, unavailable, have)
        if device is None:
            why_not = unavailable or "TensorRT cannot run here"
        elif all(engine_mismatches(e, device) for e in component.engines):
            others = ", ".join(sorted({describe_device(e.device) for e in component.engines}))
            why_not = f"its engines were built for other devices ({others}), this is {describe_device(device)}; run `edgemm build PACK` here"
        elif not have:
            why_not = f"no complete set of engines of this component for this device ({describe_device(device)}); run `edgemm build PACK` here"
        else:
            why_not = f"engines here are {', '.join(have)}" + (f", {precision} was requested" if precision != "auto" else ", all failed validation")
    ort_options, target, chosen = plan_component(component, precision, options, graph_target)
    graphs = {role: component.graph(role, chosen, target) for role in roles}
    choices = {role: BackendChoice("onnxruntime", None, why_not) for role in roles}
    return GraphPlan(chosen, target, graphs, choices, ort_options, device_index)


def _refuse(
    component: Component, roles: Sequence[str], precision: str, device: DeviceKey | None, unavailable: str | None, have: Sequence[str]
) -> None:
    """Raises the error that says why ``backend="tensorrt"`` cannot run ``component`` here."""
    built = [p for p in ("int8", "fp16", "fp32") if any(e.precision == p for e in component.engines)]
    candidates = [precision] if precision != "auto" else built or list(tensorrt_precisions(component)) or ["fp32"]
    for role in roles:
        # select_backend says what is wrong with the first graph that cannot run: TensorRT missing,
        # engines for another device, or none at all.
        select_backend(component, tensorrt_graph(component, role, candidates[0]), device, "tensorrt", unavailable=unavailable)
    if precision != "auto":
        raise EngineNotFoundError(
            f"component '{component.name}': backend tensorrt, precision {precision} was requested, but not every graph of the "
            f"component has a {precision} engine for this device (engines here: {list(have) or 'none'}); run `edgemm build PACK --precision {precision}` here"
        )
    raise EngineNotFoundError(
        f"component '{component.name}': backend tensorrt was requested, but its engines for this device ({', '.join(have) or 'none'}) "
        f"do not cover every graph in one precision whose validation passed; pass precision=... to use a failed one, or run `edgemm build PACK` here"
    )


def open_graph(pack: Pack, component: Component, plan: GraphPlan, role: str) -> Backend:
    """Opens (and logs) the backend ``plan`` chose for ``role``.

    Raises:
        PackError: ``role`` is not in the plan.
        DependencyMissingError, BackendError: the backend cannot load the graph or engine.
    """
    if role not in plan.graphs:
        raise PackError(f"component '{component.name}': the plan has no {role} graph; it has {sorted(plan.graphs)}")
    return open_choice(pack, component, plan.graphs[role], plan.choices[role], ort_options=plan.options, device_index=plan.device_index)


def describe_backends(backends: Mapping[str, Backend]) -> str:
    """``onnxruntime[CPUExecutionProvider]`` when every graph runs on one backend, else per role."""
    names = {role: b.name for role, b in backends.items()}
    if len(set(names.values())) == 1:
        return next(iter(names.values()))
    return ", ".join(f"{role} {name}" for role, name in names.items())


# --- the decoder's key/value cache ----------------------------------------------------------------


@runtime_checkable
class _DeviceCache(Protocol):
    """What a backend offers beyond :class:`Backend` to keep a cache on its device (TensorRT and
    ONNX Runtime both do)."""

    def hold(self, inputs: Mapping[str, np.ndarray]) -> None: ...

    def reorder_kept(self, rows: Sequence[int] | np.ndarray) -> None: ...

    def fetch_kept(self, name: str) -> np.ndarray: ...


_OWNERS: weakref.WeakKeyDictionary[Backend, KVCacheState] = weakref.WeakKeyDictionary()


class KVCacheState:
    """A decoder step graph with its self-attention cache, for :func:`edgemm.runtime.generation.generate`.

    The cache stays on the backend between steps: each step's ``present.*`` outputs become the next
    step's ``past.*`` inputs through the backend's ``keep`` (GPU buffers on TensorRT, OrtValues
    bound with IOBinding on ONNX Runtime), and only the last position's logits come back to the
    host. The cross-attention keys/values are put on the backend's device once (``hold``) and beam
    search reorders the cache where it lives (``reorder_kept``: row copies on TensorRT, a one-node
    Gather graph on ONNX Runtime's provider).

    A backend without ``hold``/``reorder_kept``/``fetch_kept`` gets the cross keys/values with
    every step and switches to host mode at the first :meth:`reorder`, which beam search calls
    before its first step: the cache then comes back to the host each step and is reordered in
    numpy. Reading :attr:`past` switches any backend to host mode (calibration records every
    step's inputs).

    One state at a time per backend: a new state takes the backend's kept cache over, and stepping
    an older one raises :class:`~edgemm.errors.BackendError`.

    Args:
        step: the decoder step graph's backend.
        cross: cross-attention keys/values ``cross.{i}.key``/``.value`` from the encoder, each
            np.ndarray, shape (batch, heads, encoder_sequence, head_dim).
        layout: the component's cache layout.
        dtype: the cache's dtype (the step graph's ``past.0.key`` dtype).
    """

    def __init__(self, step: Backend, cross: Mapping[str, np.ndarray], layout: KVCacheLayout, dtype: Any) -> None:
        if not cross:
            raise BackendError("a decoder state needs the encoder's cross-attention keys/values, got none")
        self.backend = step
        self.layout = layout
        self.dtype = np.dtype(dtype)
        self._cross = {name: np.ascontiguousarray(value) for name, value in cross.items()}
        self.rows = int(next(iter(self._cross.values())).shape[0])
        self._cross_rows = np.arange(self.rows)
        self._cross_now: tuple[np.ndarray, dict[str, np.ndarray]] | None = None
        self._keep = {
            present: past
            for i in range(layout.num_layers)
            for present, past in zip(graph_io.present_names(i), graph_io.past_names(i), strict=True)
        }
        self._host_past: dict[str, np.ndarray] | None = None
        self._stepped = False
        step.clear()
        _OWNERS[step] = self
        self.held = isinstance(step, _DeviceCache)
        if self.held:
            assert isinstance(step, _DeviceCache)
            step.hold(self._cross)

    @property
    def on_device(self) -> bool:
        """Whether the cache stays on the backend between steps (False once in host mode)."""
        return self._host_past is None

    def _empty_past(self) -> dict[str, np.ndarray]:
        empty = np.zeros((self.rows, self.layout.num_heads, 0, self.layout.head_dim), dtype=self.dtype)
        return dict.fromkeys(self._keep.values(), empty)

    @property
    def cross(self) -> dict[str, np.ndarray]:
        """Host copies of the cross-attention keys/values in the current row order."""
        if self._cross_now is None or not np.array_equal(self._cross_now[0], self._cross_rows):
            # Beam search reorders rows within each input's beams, whose cross keys/values are equal,
            # so after the first expansion this is almost always the cached copy.
            self._cross_now = (self._cross_rows, {name: value[self._cross_rows] for name, value in self._cross.items()})
        return self._cross_now[1]

    @property
    def past(self) -> dict[str, np.ndarray]:
        """Host copies of the self-attention cache the next step reads. Reading it switches the
        state to host mode (the cache comes back to the host every step from then on).

        Raises:
            BackendError: steps already ran with the cache on a backend that cannot hand it back.
        """
        self._to_host()
        assert self._host_past is not None
        return dict(self._host_past)

    def _to_host(self) -> None:
        if self._host_past is not None:
            return
        if not self._stepped:
            self._host_past = self._empty_past()
        elif isinstance(self.backend, _DeviceCache):
            self._check_owner()
            self._host_past = {past: self.backend.fetch_kept(past) for past in self._keep.values()}
        else:
            raise BackendError(
                f"{self.backend.name} keeps the decoder cache but cannot hand it back or reorder it; "
                "read past or reorder before the first step (beam search does)"
            )
        self.backend.clear()

    def _check_owner(self) -> None:
        if _OWNERS.get(self.backend) is not self:
            raise BackendError("this decoder state is stale: a newer state over the same decoder backend took its cache over")

    def step(self, input_ids: np.ndarray) -> np.ndarray:
        """Runs the decoder on ``input_ids`` int64 (rows, n) -> last-position logits (rows, vocab)."""
        self._check_owner()
        feeds: dict[str, np.ndarray] = {graph_io.INPUT_IDS: input_ids}
        if self._host_past is not None:
            feeds.update(self._host_past)
            feeds.update(self.cross)
            out = self.backend.run(feeds, outputs=[graph_io.LOGITS, *self._keep])
            self._host_past = {past: out[present] for present, past in self._keep.items()}
        else:
            if not self._stepped:
                feeds.update(self._empty_past())
            if not self.held:
                feeds.update(self.cross)
            out = self.backend.run(feeds, outputs=[graph_io.LOGITS], keep=self._keep)
        self._stepped = True
        return out[graph_io.LOGITS][:, -1, :]

    def reorder(self, rows: np.ndarray) -> None:
        """Reorders (repeats, drops) the batch rows of the cache: row ``i`` becomes old row ``rows[i]``."""
        self._check_owner()
        order = np.asarray(rows, dtype=np.int64).reshape(-1)
        if order.size == 0 or order.min() < 0 or order.max() >= self.rows:
            raise BackendError(f"reorder: expected row indices in [0, {self.rows}), got {order.tolist()}")
        if self._host_past is None and not isinstance(self.backend, _DeviceCache):
            self._to_host()
        if self._host_past is not None:
            self._host_past = {name: value[order] for name, value in self._host_past.items()}
        else:
            assert isinstance(self.backend, _DeviceCache)
            self.backend.reorder_kept(order)
        self._cross_rows = self._cross_rows[order]
        self.rows = int(order.size)


def task_component(pack: Pack, name: str | None, task: str, article: str, how: str) -> Component:
    """The component a task runs: ``name``, else the pack's only component of ``task``.

    Args:
        article: "a" or "an", for messages ("not an asr component").
        how: what to compile into the pack when it has none ("a captioner", "a Whisper checkpoint").

    Raises:
        PackError: ``name`` is another task's component, or the pack has none or several of ``task``.
    """
    if name is not None:
        component = pack.component(name)
        if component.task != task:
            raise PackError(f"component '{name}' is a {component.task} component, not {article} {task} component")
        return component
    found = pack.components_for(task)
    if len(found) != 1:
        have = [c.name for c in found]
        raise PackError(
            f"pack {pack.path}: expected one {task} component, found {len(found)} {have}; name the one to use"
            if found
            else f"pack {pack.path} has no {task} component (compile {how} into it with `edgemm compile`)"
        )
    return found[0]


def input_dtype(graph: Graph, name: str) -> str:
    """The declared dtype of ``graph``'s input ``name`` (inputs are cast to it before a run)."""
    for spec in graph.inputs:
        if spec.name == name:
            return spec.dtype
    raise PackError(f"graph {graph.variant} ({graph.file.path}) has no input '{name}'")
