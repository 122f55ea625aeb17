"""The interface every inference backend implements, and the input checks they share."""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..errors import BackendError, InputError
from ..onnx_graph import TensorSpec

__all__ = ["Backend", "check_call", "check_held", "check_inputs"]

_NUMPY_DTYPES = {
    "float32",
    "float16",
    "float64",
    "int8",
    "uint8",
    "int16",
    "uint16",
    "int32",
    "uint32",
    "int64",
    "uint64",
    "bool",
}


class Backend(abc.ABC):
    """One loaded graph, run with named numpy inputs.

    A backend can keep some outputs for the next call (``keep``): the decoder's ``present.*``
    cache becomes the next step's ``past.*`` without leaving the device the backend runs on.

    Attributes:
        name: what runs the graph, e.g. ``onnxruntime[CPUExecutionProvider]``.
        device: "cpu" or "cuda": where kept outputs live.
    """

    name: str
    device: str

    @property
    @abc.abstractmethod
    def inputs(self) -> tuple[TensorSpec, ...]:
        """The graph's inputs (names, dtypes, shapes with symbolic axes)."""

    @property
    @abc.abstractmethod
    def outputs(self) -> tuple[TensorSpec, ...]:
        """The graph's outputs."""

    @abc.abstractmethod
    def run(
        self,
        inputs: Mapping[str, np.ndarray],
        *,
        outputs: Sequence[str] | None = None,
        keep: Mapping[str, str] | None = None,
    ) -> dict[str, np.ndarray]:
        """Runs the graph.

        Args:
            inputs: input name -> array. Inputs kept from the previous call may be left out.
            outputs: names of the outputs to return (default: every output not kept).
            keep: output name -> input name: keep that output on the backend's device and feed it
                as that input on the next call (unless the next call gives the input itself).

        Returns:
            output name -> numpy array, for the outputs asked for.

        Raises:
            InputError: an input is missing or unknown, or has the wrong dtype, rank or size.
            BackendError: the graph failed to run.
        """

    @abc.abstractmethod
    def kept(self) -> tuple[str, ...]:
        """Names of the inputs currently kept from the previous call."""

    @abc.abstractmethod
    def clear(self) -> None:
        """Drops every kept output (start of a new sequence)."""

    def close(self) -> None:  # noqa: B027 - optional hook, most backends need nothing
        """Releases the graph's resources."""

    def __enter__(self) -> Backend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _shape_text(spec: TensorSpec) -> str:
    return "[" + ", ".join(str(d) for d in spec.shape) + "]"


def check_inputs(
    graph: str, specs: Sequence[TensorSpec], inputs: Mapping[str, Any], kept: Sequence[str] = ()
) -> dict[str, np.ndarray]:
    """Checks inputs against a graph's input specs and returns them as contiguous arrays.

    Checks names (missing, unknown), dtypes, ranks, fixed axis sizes, and that one symbolic axis
    (``batch``) has one size across all inputs.

    Raises:
        InputError: saying what the graph expects and what was given.
    """
    by_name = {s.name: s for s in specs}
    unknown = sorted(set(inputs) - set(by_name))
    if unknown:
        raise InputError(f"{graph}: unknown input(s) {unknown}; the graph's inputs are {sorted(by_name)}")
    missing = sorted(set(by_name) - set(inputs) - set(kept))
    if missing:
        raise InputError(f"{graph}: missing input(s) {missing}; the graph's inputs are {sorted(by_name)}, got {sorted(inputs)}")
    arrays: dict[str, np.ndarray] = {}
    symbols: dict[str, tuple[int, str]] = {}
    for name, value in inputs.items():
        spec = by_name[name]
        array = np.asarray(value)
        if spec.dtype in _NUMPY_DTYPES and array.dtype != np.dtype(spec.dtype):
            raise InputError(f"{graph}: input '{name}' expects dtype {spec.dtype}, got {array.dtype}")
        if array.ndim != len(spec.shape):
            raise InputError(
                f"{graph}: input '{name}' expects rank {len(spec.shape)} {_shape_text(spec)}, got shape {tuple(array.shape)}"
            )
        for axis, (dim, size) in enumerate(zip(spec.shape, array.shape, strict=False)):
            if isinstance(dim, int):
                if dim != size:
                    raise InputError(
                        f"{graph}: input '{name}' axis {axis} expects size {dim} {_shape_text(spec)}, got shape {tuple(array.shape)}"
                    )
            elif dim != "?":
                seen = symbols.setdefault(dim, (size, name))
                if seen[0] != size:
                    raise InputError(
                        f"{graph}: inputs disagree on axis '{dim}': '{seen[1]}' has {seen[0]}, '{name}' has {size}"
                    )
        arrays[name] = np.ascontiguousarray(array)
    return arrays


def check_call(
    label: str,
    what: str,
    input_specs: Sequence[TensorSpec],
    output_specs: Sequence[TensorSpec],
    inputs: Mapping[str, Any],
    outputs: Sequence[str] | None,
    keep: Mapping[str, str] | None,
    kept: Sequence[str],
) -> tuple[dict[str, np.ndarray], list[str], list[str], dict[str, str]]:
    """The checks every backend's :meth:`Backend.run` makes before running.

    Args:
        label: names the graph or engine in messages; ``what``: "graph" or "engine".
        kept: the inputs the backend holds from earlier calls.

    Returns:
        (the inputs as contiguous arrays, the kept inputs this call uses, the outputs to return,
        ``keep`` as a dict).

    Raises:
        InputError: see :func:`check_inputs`.
        BackendError: ``keep`` names an unknown output or input, or ``outputs`` an unknown output.
    """
    kept_used = [name for name in kept if name not in inputs]
    arrays = check_inputs(label, input_specs, inputs, kept_used)
    output_names = [o.name for o in output_specs]
    keep = dict(keep or {})
    unknown = sorted(set(keep) - set(output_names))
    if unknown:
        raise BackendError(f"{label}: cannot keep {unknown}: the {what}'s outputs are {output_names}")
    input_names = {i.name for i in input_specs}
    bad_targets = sorted(set(keep.values()) - input_names)
    if bad_targets:
        raise BackendError(f"{label}: cannot feed kept outputs into {bad_targets}: the {what}'s inputs are {sorted(input_names)}")
    wanted = list(outputs) if outputs is not None else [n for n in output_names if n not in keep]
    missing = sorted(set(wanted) - set(output_names))
    if missing:
        raise BackendError(f"{label}: no output(s) {missing}; the {what}'s outputs are {output_names}")
    return arrays, kept_used, wanted, keep


def check_held(label: str, what: str, input_specs: Sequence[TensorSpec], inputs: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """The checks of a backend's ``hold``: known input names, then :func:`check_inputs` on them.

    Raises:
        InputError: an unknown input, or a wrong dtype, rank or fixed size.
    """
    specs = [s for s in input_specs if s.name in inputs]
    unknown = sorted(set(inputs) - {s.name for s in specs})
    if unknown:
        raise InputError(f"{label}: cannot hold {unknown}: the {what}'s inputs are {sorted(s.name for s in input_specs)}")
    return check_inputs(label, specs, inputs)
