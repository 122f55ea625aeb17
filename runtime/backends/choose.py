"""Opening the right backend for a graph: a matching TensorRT engine, else ONNX Runtime.

The choice itself is the pure :func:`edgemm.runtime.engines.select_backend`; this module probes the
device (only when the pack has engines of the graph, so packs without engines never import
TensorRT), logs the choice, and builds the backend.
"""

from __future__ import annotations

import logging

from ..engines import BackendChoice, select_backend
from ..errors import BackendError
from ..pack import Component, Graph, Pack
from .base import Backend
from .ort import OrtBackend, OrtOptions

__all__ = ["choose_backend", "open_backend", "open_choice"]

log = logging.getLogger("edgemm")


def choose_backend(component: Component, graph: Graph, backend: str = "auto", *, device_index: int = 0) -> BackendChoice:
    """Which backend runs ``graph`` here (see :func:`edgemm.runtime.engines.select_backend`).

    Raises:
        BackendUnavailableError, EngineMismatchError, EngineNotFoundError: ``backend="tensorrt"``
            and no engine of the graph can run here (the message says why and what to run).
    """
    has_engines = any(e.graph == graph.file.path for e in component.engines)
    if backend.lower() in ("onnxruntime", "ort") or (backend.lower() == "auto" and not has_engines):
        return select_backend(component, graph, None, backend)
    from .tensorrt import tensorrt_device

    device, why = tensorrt_device(device_index)
    return select_backend(component, graph, device, backend, unavailable=why)


def open_backend(
    pack: Pack,
    component: Component,
    graph: Graph,
    *,
    backend: str = "auto",
    ort_options: OrtOptions | None = None,
    device_index: int = 0,
) -> Backend:
    """The backend that runs ``graph``: TensorRT with the engine built for this device, else ONNX
    Runtime with ``ort_options``. ``backend`` ("auto", "tensorrt", "onnxruntime") overrides.

    Raises:
        BackendUnavailableError, EngineMismatchError, EngineNotFoundError: as :func:`choose_backend`.
        DependencyMissingError, BackendError: the chosen backend cannot load the graph or engine.
    """
    choice = choose_backend(component, graph, backend, device_index=device_index)
    return open_choice(pack, component, graph, choice, ort_options=ort_options, device_index=device_index)


def open_choice(
    pack: Pack,
    component: Component,
    graph: Graph,
    choice: BackendChoice,
    *,
    ort_options: OrtOptions | None = None,
    device_index: int = 0,
) -> Backend:
    """Opens the backend ``choice`` names for ``graph`` (a choice made earlier, e.g. by
    :func:`edgemm.runtime.tasks.plan_graphs` for every graph of a task) and logs it.

    Raises:
        BackendError: a TensorRT choice without an engine.
        DependencyMissingError, BackendError: the backend cannot load the graph or engine.
    """
    log.info("%s/%s: %s", component.name, graph.variant, choice.describe())
    if choice.backend == "tensorrt":
        if choice.engine is None:
            raise BackendError(f"component '{component.name}' graph {graph.variant}: a TensorRT choice needs an engine, got none")
        from .tensorrt import TensorrtBackend, tensorrt_device

        device, _ = tensorrt_device(device_index)
        return TensorrtBackend(pack.path_of(choice.engine.file), engine=choice.engine, graph=graph, device=device, device_index=device_index)
    return OrtBackend(pack.path_of(graph.file), ort_options)
