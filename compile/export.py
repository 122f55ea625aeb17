"""Exporting torch modules to ONNX graphs with symbolic axes (torch.onnx, dynamo exporter)."""

from __future__ import annotations

import inspect
import logging
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from edgemm.runtime.errors import ExportError
from edgemm.runtime.onnx_graph import describe_onnx

__all__ = ["EXTERNAL_DATA_THRESHOLD_BYTES", "FORBIDDEN_IN_STEP_GRAPHS", "export_module"]

FORBIDDEN_IN_STEP_GRAPHS = ("If", "Loop", "Scan")
"""Control flow TensorRT cannot take in a decoder step; an export that produces it fails."""

EXTERNAL_DATA_THRESHOLD_BYTES = 1_500_000_000
"""Graphs with more weights than this keep them in a side file (protobuf caps a file at 2 GB)."""


def _dim(name: str, dims: dict[str, Any]) -> Any:
    if name not in dims:
        # Past lengths start at 0: prefill runs the step graph with an empty cache.
        minimum = 0 if name.startswith("past") else 1
        dims[name] = torch.export.Dim(name, min=minimum, max=1 << 16)
    return dims[name]


def export_module(
    module: torch.nn.Module,
    example: Sequence[torch.Tensor],
    path: str | Path,
    *,
    input_names: Sequence[str],
    output_names: Sequence[str],
    dynamic_axes: Mapping[str, Mapping[int, str]],
    opset: int,
    forbid_ops: Sequence[str] = (),
) -> None:
    """Exports ``module`` to ``path`` with torch.onnx's dynamo exporter.

    Args:
        module: takes the inputs positionally (a trailing ``*args`` collects the rest).
        example: example inputs. Use sizes >= 2 on every dynamic axis: the exporter specialises
            axes whose example size is 0 or 1.
        input_names, output_names: graph io names, in order.
        dynamic_axes: input name -> {axis: symbolic name}; equal names mean equal sizes.
        opset: ONNX opset.
        forbid_ops: operator types that must not appear (e.g. If/Loop in decoder steps).

    Raises:
        ExportError: the exporter failed or produced a forbidden operator.
    """
    path = Path(path)
    dims: dict[str, Any] = {}
    specs = [{axis: _dim(name, dims) for axis, name in dynamic_axes.get(n, {}).items()} or None for n in input_names]
    params = list(inspect.signature(module.forward).parameters.values())
    fixed = sum(p.kind == p.POSITIONAL_OR_KEYWORD for p in params)
    if any(p.kind == p.VAR_POSITIONAL for p in params):
        # torch.export sees forward(a, *rest) as two inputs: a and the tuple rest.
        dynamic_shapes: tuple[Any, ...] = (*specs[:fixed], tuple(specs[fixed:]))
    else:
        dynamic_shapes = tuple(specs)
    weights = sum(p.numel() * p.element_size() for p in module.parameters())
    # torch.onnx logs through the "torch.onnx" logger (e.g. skipped torchvision ops): not for users.
    onnx_logger = logging.getLogger("torch.onnx")
    level = onnx_logger.level
    onnx_logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            program = torch.onnx.export(
                module,
                tuple(example),
                None,
                input_names=list(input_names),
                output_names=list(output_names),
                dynamic_shapes=dynamic_shapes,
                opset_version=opset,
                dynamo=True,
                optimize=True,
                verbose=False,
            )
    except Exception as exc:
        onnx_logger.setLevel(level)
        raise ExportError(f"torch.onnx could not export {path.name}: {type(exc).__name__}: {str(exc)[:2000]}") from exc
    onnx_logger.setLevel(level)
    if program is None:
        raise ExportError(f"torch.onnx returned no program for {path.name}")
    path.parent.mkdir(parents=True, exist_ok=True)
    program.save(str(path), external_data=weights > EXTERNAL_DATA_THRESHOLD_BYTES)
    info = describe_onnx(path)
    found = sorted({op for op in info.ops if op in forbid_ops})
    if found:
        raise ExportError(f"{path.name}: the exported graph contains {found}, which TensorRT cannot take in a decoder step")
    names = [s.name for s in info.inputs]
    if names != list(input_names):
        raise ExportError(f"{path.name}: expected inputs {list(input_names)}, the exporter produced {names}")
