"""ONNX Runtime backend: the CPU default everywhere, CUDA/TensorRT execution providers when present."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from ..errors import BackendError, BackendUnavailableError, DependencyMissingError, EdgemmError, InputError
from ..onnx_graph import ELEMENT_TYPES, TensorSpec
from .base import Backend, check_call, check_held

if TYPE_CHECKING:
    import onnxruntime

__all__ = [
    "PROVIDER_PREFERENCE",
    "OrtBackend",
    "OrtOptions",
    "available_providers",
    "choose_providers",
]

PROVIDER_PREFERENCE = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")
"""Providers edgemm uses, best first. Others that a build may list (Azure, ...) are ignored."""

_ALIASES = {
    "tensorrt": "TensorrtExecutionProvider",
    "trt": "TensorrtExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "cpu": "CPUExecutionProvider",
}

_GPU_PROVIDERS = {"TensorrtExecutionProvider", "CUDAExecutionProvider"}


@dataclass(frozen=True)
class OrtOptions:
    """How ONNX Runtime sessions are made.

    Attributes:
        providers: execution providers in order of preference ("tensorrt", "cuda", "cpu" or the
            full ONNX Runtime names). None: every available one of :data:`PROVIDER_PREFERENCE`.
            A provider asked for by name that this onnxruntime lacks is an error, never skipped.
        intra_op_threads: threads inside one operator; 0 lets ONNX Runtime choose (one per core).
        inter_op_threads: threads across independent operators; 0 lets ONNX Runtime choose.
        graph_optimization: ONNX Runtime's graph optimization level.
        trt_cache_dir: where the TensorRT execution provider caches engines and timing data
            (None: no cache, engines are rebuilt at every start).
        log_severity: ONNX Runtime's log level (0 verbose ... 4 fatal).
    """

    providers: tuple[str, ...] | None = None
    intra_op_threads: int = 0
    inter_op_threads: int = 0
    graph_optimization: Literal["disabled", "basic", "extended", "all"] = "all"
    trt_cache_dir: str | None = None
    log_severity: int = 3

    def __post_init__(self) -> None:
        if self.intra_op_threads < 0 or self.inter_op_threads < 0:
            raise BackendError(
                f"thread counts must be >= 0 (0 = automatic), got intra={self.intra_op_threads}, inter={self.inter_op_threads}"
            )
        if self.graph_optimization not in ("disabled", "basic", "extended", "all"):
            raise BackendError(
                f"graph_optimization must be one of disabled, basic, extended, all; got {self.graph_optimization!r}"
            )


def _ort() -> Any:
    try:
        import onnxruntime
    except ImportError as exc:
        raise DependencyMissingError(
            "onnxruntime", "running ONNX graphs", "pip install onnxruntime (or onnxruntime-gpu on an NVIDIA GPU machine)"
        ) from exc
    return onnxruntime


def available_providers() -> tuple[str, ...]:
    """The execution providers this onnxruntime build offers that edgemm can use, best first."""
    have = set(_ort().get_available_providers())
    return tuple(p for p in PROVIDER_PREFERENCE if p in have)


def choose_providers(requested: Sequence[str] | None, available: Sequence[str]) -> tuple[str, ...]:
    """Resolves the providers to ask ONNX Runtime for.

    Args:
        requested: provider names or aliases in order of preference, or None for the best available.
        available: what this onnxruntime build offers (see :func:`available_providers`).

    Raises:
        BackendUnavailableError: a requested provider is unknown or not available.
    """
    if requested is None:
        chosen = tuple(p for p in PROVIDER_PREFERENCE if p in available)
        if not chosen:
            raise BackendUnavailableError(f"onnxruntime offers none of {list(PROVIDER_PREFERENCE)}; it has {list(available)}")
        return chosen
    if not requested:
        raise BackendUnavailableError("providers: expected at least one execution provider, got an empty list")
    resolved = []
    for name in requested:
        full = _ALIASES.get(name.lower(), name)
        if full not in PROVIDER_PREFERENCE:
            raise BackendUnavailableError(
                f"unknown execution provider {name!r}; expected one of {sorted(_ALIASES)} or {list(PROVIDER_PREFERENCE)}"
            )
        if full not in available:
            hint = " (install onnxruntime-gpu, or use the tensorrt backend)" if full in _GPU_PROVIDERS else ""
            raise BackendUnavailableError(
                f"execution provider {full} was requested but this onnxruntime offers only {list(available)}{hint}"
            )
        if full not in resolved:
            resolved.append(full)
    return tuple(resolved)


def _dtype_name(ort_type: str) -> str:
    """ONNX Runtime's type text (``tensor(float)``) -> the names the manifest uses (``float32``)."""
    inner = ort_type[len("tensor(") : -1] if ort_type.startswith("tensor(") else ort_type
    dtype = {"float": "float32", "double": "float64"}.get(inner, inner)
    return dtype if dtype in ELEMENT_TYPES.values() else inner


def _spec_from_node_arg(arg: Any) -> TensorSpec:
    shape = tuple(d if isinstance(d, int) else (d or "?") for d in (arg.shape or ()))
    return TensorSpec(name=arg.name, dtype=_dtype_name(str(arg.type)), shape=shape)


# --- a one-node Gather graph, for reordering kept tensors where they live ---------------------------
# Written as protobuf bytes by hand (the runtime does not depend on the onnx package): ModelProto
# {ir_version 8, opset 13, graph {Gather(data, rows) -> out, axis 0}}, field numbers from onnx.proto3.


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        low = value & 0x7F
        value >>= 7
        out.append(low | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _field(number: int, value: int | bytes | str) -> bytes:
    if isinstance(value, int):
        return _varint(number << 3) + _varint(value)
    data = value.encode() if isinstance(value, str) else value
    return _varint(number << 3 | 2) + _varint(len(data)) + data


def _value_info(name: str, elem_type: int, dims: Sequence[str]) -> bytes:
    shape = b"".join(_field(1, _field(2, d)) for d in dims)  # TensorShapeProto.dim {dim_param}
    tensor = _field(1, elem_type) + _field(2, shape)  # TypeProto.Tensor {elem_type, shape}
    return _field(1, name) + _field(2, _field(1, tensor))  # ValueInfoProto {name, type {tensor_type}}


def gather_model(dtype: str, rank: int) -> bytes:
    """A serialized ONNX model ``out = Gather(data, rows, axis=0)`` for a ``dtype`` tensor of
    ``rank`` dimensions and int64 ``rows``: the batch rows of a kept tensor, reordered on the device
    the tensor is on (beam search's cache reorder)."""
    codes = {name: code for code, name in ELEMENT_TYPES.items()}
    if dtype not in codes or rank < 1:
        raise BackendError(f"gather: expected a tensor dtype of {sorted(codes)} and rank >= 1, got {dtype} rank {rank}")
    dims = [f"d{i}" for i in range(rank)]
    node = _field(1, "data") + _field(1, "rows") + _field(2, "out") + _field(3, "gather") + _field(4, "Gather")
    node += _field(5, _field(1, "axis") + _field(3, 0) + _field(20, 2))  # AttributeProto {name, i, type INT}
    graph = _field(1, node) + _field(2, "edgemm_gather")
    graph += _field(11, _value_info("data", codes[dtype], dims)) + _field(11, _value_info("rows", 7, ["rows"]))
    graph += _field(12, _value_info("out", codes[dtype], ["rows", *dims[1:]]))
    return _field(1, 8) + _field(8, _field(1, "") + _field(2, 13)) + _field(7, graph)


class OrtBackend(Backend):
    """Runs one ONNX graph with ONNX Runtime.

    Example::

        backend = OrtBackend("pack/caption/encoder.onnx", OrtOptions(providers=("cpu",)))
        out = backend.run({"pixel_values": pixels})
    """

    def __init__(self, path: str | os.PathLike[str], options: OrtOptions | None = None) -> None:
        ort = _ort()
        self.options = options or OrtOptions()
        self.path = Path(path)
        if not self.path.is_file():
            raise BackendError(f"ONNX graph {self.path}: expected a file, found nothing")
        providers = choose_providers(self.options.providers, available_providers())
        session_options = ort.SessionOptions()
        session_options.intra_op_num_threads = self.options.intra_op_threads
        session_options.inter_op_num_threads = self.options.inter_op_threads
        session_options.log_severity_level = self.options.log_severity
        session_options.graph_optimization_level = {
            "disabled": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
            "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
            "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
            "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
        }[self.options.graph_optimization]
        provider_args: list[Any] = []
        for provider in providers:
            if provider == "TensorrtExecutionProvider" and self.options.trt_cache_dir:
                cache = str(self.options.trt_cache_dir)
                provider_args.append(
                    (
                        provider,
                        {
                            "trt_engine_cache_enable": "True",
                            "trt_engine_cache_path": cache,
                            "trt_timing_cache_enable": "True",
                            "trt_timing_cache_path": cache,
                        },
                    )
                )
            else:
                provider_args.append(provider)
        try:
            self._session: onnxruntime.InferenceSession = ort.InferenceSession(
                str(self.path), sess_options=session_options, providers=provider_args
            )
        except Exception as exc:
            raise BackendError(f"onnxruntime could not load {self.path}: {exc}") from exc
        active = tuple(self._session.get_providers())
        # ONNX Runtime falls back to CPU when a GPU provider fails to initialise (missing CUDA
        # libraries, say) and only logs it; edgemm refuses that silent downgrade.
        if providers[0] not in active:
            raise BackendUnavailableError(
                f"{self.path}: execution provider {providers[0]} was chosen but onnxruntime could not start it "
                f"(active: {list(active)}); check the CUDA/TensorRT libraries, or pass providers=('cpu',)"
            )
        self.providers = active
        self.name = f"onnxruntime[{active[0]}]"
        self.device = "cuda" if active[0] in _GPU_PROVIDERS else "cpu"
        self._inputs = tuple(_spec_from_node_arg(a) for a in self._session.get_inputs())
        self._outputs = tuple(_spec_from_node_arg(a) for a in self._session.get_outputs())
        self._kept: dict[str, Any] = {}  # input name -> OrtValue (a previous call's output)
        self._held: dict[str, Any] = {}  # input name -> OrtValue (uploaded by hold())
        self._held_arrays: dict[str, np.ndarray] = {}  # CPU OrtValues share these arrays' memory
        self._gathers: dict[tuple[str, int], Any] = {}

    def __repr__(self) -> str:
        return f"OrtBackend({str(self.path)!r}, {self.name})"

    @property
    def inputs(self) -> tuple[TensorSpec, ...]:
        return self._inputs

    @property
    def outputs(self) -> tuple[TensorSpec, ...]:
        return self._outputs

    def kept(self) -> tuple[str, ...]:
        """Inputs a call may leave out: kept outputs, then held inputs."""
        return (*self._kept, *(n for n in self._held if n not in self._kept))

    def clear(self) -> None:
        """Drops the kept outputs and the held inputs (start of a new sequence)."""
        self._kept.clear()
        self._held.clear()
        self._held_arrays.clear()

    def close(self) -> None:
        self.clear()
        self._gathers.clear()

    def hold(self, inputs: Mapping[str, np.ndarray]) -> None:
        """Puts inputs that stay the same for many calls (a decoder's cross-attention keys and
        values, once per image or audio segment) on the provider's device once; calls may then
        leave them out, until :meth:`clear` or the next :meth:`hold` of the same name. With the
        CUDA/TensorRT providers this saves one upload per decoding step.

        Raises:
            InputError: an unknown input, or a wrong dtype, rank or fixed size.
        """
        ort = _ort()
        arrays = check_held(self.path.name, "graph", self._inputs, inputs)
        for name, array in arrays.items():
            owned = np.array(array, copy=True)  # a CPU OrtValue reads this memory: never the caller's
            self._held[name] = ort.OrtValue.ortvalue_from_numpy(owned, self.device, 0)
            self._held_arrays[name] = owned  # a new hold of the name lets the old copy go

    def reorder_kept(self, rows: Sequence[int] | np.ndarray) -> None:
        """Reorders (and may repeat or drop) the batch rows of every kept and held tensor where it
        lives (GPU memory with the CUDA/TensorRT providers), as beam search does with its cache:
        row ``i`` of the result is row ``rows[i]`` of the old one.

        Raises:
            InputError: a row index outside a kept tensor's batch.
        """
        order = np.ascontiguousarray(np.asarray(rows, dtype=np.int64).reshape(-1))
        for store in (self._kept, self._held):
            for name, value in list(store.items()):
                store[name] = self._gather(name, value, order)

    def _gather(self, name: str, value: Any, order: np.ndarray) -> Any:
        shape = tuple(value.shape())
        batch = shape[0] if shape else 0
        if order.size and (order.min() < 0 or order.max() >= batch):
            raise InputError(f"{self.path.name}: reorder rows {order.tolist()} out of range for kept '{name}' with batch {batch}")
        dtype = _dtype_name(str(value.data_type()))
        key = (dtype, len(shape))
        session = self._gathers.get(key)
        if session is None:
            ort = _ort()
            providers = ["CUDAExecutionProvider"] if self.device == "cuda" else ["CPUExecutionProvider"]
            session = self._gathers[key] = ort.InferenceSession(gather_model(dtype, len(shape)), providers=providers)
        binding = session.io_binding()
        binding.bind_ortvalue_input("data", value)
        binding.bind_cpu_input("rows", order)
        binding.bind_output("out", self.device)
        session.run_with_iobinding(binding)
        return binding.get_outputs()[0]

    def fetch_kept(self, name: str) -> np.ndarray:
        """A host copy of a kept or held tensor (for inspection; decoding never needs it)."""
        value = self._kept.get(name)
        if value is None:
            value = self._held.get(name)
        if value is None:
            raise BackendError(f"{self.path.name}: nothing is kept as '{name}'; kept: {sorted(self.kept())}")
        return np.array(value.numpy(), copy=True)

    def with_options(self, **changes: Any) -> OrtBackend:
        """A new backend for the same graph with some options changed."""
        return OrtBackend(self.path, dataclasses.replace(self.options, **changes))

    def run(
        self,
        inputs: Mapping[str, np.ndarray],
        *,
        outputs: Sequence[str] | None = None,
        keep: Mapping[str, str] | None = None,
    ) -> dict[str, np.ndarray]:
        label = str(self.path.name)
        arrays, kept_available, wanted, keep = check_call(label, "graph", self._inputs, self._outputs, inputs, outputs, keep, self.kept())
        try:
            if not keep and not kept_available:
                values = self._session.run(wanted, arrays)
                return dict(zip(wanted, values, strict=False))
            return self._run_bound(arrays, kept_available, wanted, keep)
        except EdgemmError:
            raise
        except Exception as exc:
            raise BackendError(f"{label}: onnxruntime failed to run the graph: {exc}") from exc

    def _run_bound(
        self, arrays: dict[str, np.ndarray], kept_inputs: list[str], wanted: list[str], keep: dict[str, str]
    ) -> dict[str, np.ndarray]:
        # IOBinding lets kept outputs stay where the provider produced them (GPU memory for the
        # CUDA/TensorRT providers), so a decoder's cache never round-trips through the host.
        binding = self._session.io_binding()
        for name, array in arrays.items():
            binding.bind_cpu_input(name, array)
        for name in kept_inputs:
            binding.bind_ortvalue_input(name, self._kept[name] if name in self._kept else self._held[name])
        order = list(dict.fromkeys([*wanted, *keep]))
        for name in order:
            binding.bind_output(name, self.device)
        self._session.run_with_iobinding(binding)
        values = dict(zip(order, binding.get_outputs(), strict=False))
        if keep or any(name in self._kept for name in kept_inputs):
            # Kept outputs replace the previous ones; held inputs stay until clear() or hold().
            self._kept = {target: values[source] for source, target in keep.items()}
        return {name: values[name].numpy() for name in wanted}
