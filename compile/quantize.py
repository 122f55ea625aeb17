"""Reduced-precision variants of exported graphs: FP16 casts and INT8 (ONNX Runtime or TensorRT flavour).

Precision lives in the graph (ARCHITECTURE.md): FP16 graphs carry their casts, INT8 graphs
carry explicit quantization, so every backend runs exactly what was validated.

Weights that reach a MatMul through a Transpose (a language-model head tied to the token
embedding: ``MatMul(hidden, Transpose(embedding))``) are folded into transposed copies first:
the quantizers only quantize MatMuls whose weight is an initializer, and the head over the
vocabulary is a decoder step's largest MatMul.

Flavours:

- ``ort-dynamic-u8s8``: ONNX Runtime's fast CPU path; MatMul weights int8, activations quantized
  to uint8 at run time (no calibration needed).
- ``ort-static-u8s8``: as above with activation ranges calibrated on the user's images (Q/DQ
  around MatMul, which ONNX Runtime fuses into integer kernels on the CPU).
- ``qdq-s8s8-symmetric``: TensorRT's flavour; symmetric per-channel int8 weights and symmetric
  int8 activations, zero points 0, explicit Q/DQ around MatMul/Gemm/Conv. The CPU backend never
  gets it (ONNX Runtime runs it there only slowly).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from edgemm.runtime.errors import CompileError

from .config import VariantConfig

__all__ = ["FLAVOURS", "quantize_graph"]

FLAVOURS = ("ort-dynamic-u8s8", "ort-static-u8s8", "qdq-s8s8-symmetric")


class _Reader:
    """ONNX Runtime's CalibrationDataReader over a list of recorded feeds."""

    def __init__(self, feeds: Sequence[dict[str, np.ndarray]]) -> None:
        self._feeds = list(feeds)
        self._iter: Iterator[dict[str, np.ndarray]] = iter(self._feeds)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._iter, None)

    def rewind(self) -> None:
        self._iter = iter(self._feeds)


def _quiet_ort_quantization() -> None:
    # ONNX Runtime's quantizer logs advice ("consider pre-processing") at WARNING on the root logger.
    logging.getLogger().setLevel(max(logging.getLogger().level, logging.ERROR))


def _fold_transposed_weights(source: Path, folder: Path) -> Path:
    """A copy of ``source`` where MatMuls read ``Transpose(initializer)`` as an initializer.

    The original initializer stays for its other readers (the embedding's Gather), so a tied
    head costs one more matrix: int8 after quantization. Returns ``source`` when nothing folds.
    """
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(source))
    graph = model.graph
    initializers = {i.name: i for i in graph.initializer}
    producers = {out: node for node in graph.node for out in node.output}
    folded: dict[str, str] = {}
    for node in graph.node:
        if node.op_type != "MatMul" or len(node.input) < 2:
            continue
        transpose = producers.get(node.input[1])
        if transpose is None or transpose.op_type != "Transpose" or transpose.input[0] not in initializers:
            continue
        if transpose.output[0] not in folded:
            weight = numpy_helper.to_array(initializers[transpose.input[0]])
            perm = next((list(a.ints) for a in transpose.attribute if a.name == "perm"), None)
            name = f"{transpose.output[0]}_folded"
            graph.initializer.append(numpy_helper.from_array(np.ascontiguousarray(np.transpose(weight, perm)), name))
            folded[transpose.output[0]] = name
        node.input[1] = folded[transpose.output[0]]
    if not folded:
        return source
    still_read = {name for node in graph.node for name in node.input} | {o.name for o in graph.output}
    dead = [node for node in graph.node if node.op_type == "Transpose" and not any(o in still_read for o in node.output)]
    for node in dead:
        graph.node.remove(node)
    target = folder / f".{source.stem}.folded.onnx"
    # Protobuf caps a file at 2 GB; bigger graphs keep their weights in a side file.
    external = model.ByteSize() > 1_800_000_000
    onnx.save(model, str(target), save_as_external_data=external, location=f"{target.name}.data" if external else None)
    return target


def quantize_graph(
    source: Path, target: Path, variant: VariantConfig, calibration: Sequence[dict[str, np.ndarray]] | None = None
) -> str | None:
    """Writes the ``variant`` of the fp32 graph ``source`` to ``target``.

    Args:
        calibration: recorded inputs of the graph (static INT8 only; dynamic INT8 ignores it).

    Returns:
        The int8 flavour name (see :data:`FLAVOURS`), or None for fp16.

    Raises:
        CompileError: the quantizer failed, or TensorRT INT8 was asked for without calibration data.
    """
    import onnx

    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        if variant.precision == "fp16":
            from onnxruntime.transformers.float16 import convert_float_to_float16

            # Inputs/outputs stay float32 so the runtime feeds every variant alike; the casts
            # sit inside the graph, where TensorRT's strongly typed networks take them.
            model = convert_float_to_float16(onnx.load(str(source)), keep_io_types=True)
            onnx.save(model, str(target))
            return None
        from onnxruntime.quantization import (
            CalibrationMethod,
            QuantFormat,
            QuantType,
            quantize_dynamic,
            quantize_static,
        )

        _quiet_ort_quantization()
        quantizable = _fold_transposed_weights(source, target.parent)
        try:
            if variant.target == "cpu" and not calibration:
                quantize_dynamic(quantizable, target, op_types_to_quantize=["MatMul"], weight_type=QuantType.QInt8)
                return "ort-dynamic-u8s8"
            if not calibration:
                raise CompileError(f"int8 for {variant.target}: static quantization needs calibration inputs, got none")
            if variant.target == "cpu":
                quantize_static(
                    quantizable,
                    target,
                    _Reader(calibration),
                    quant_format=QuantFormat.QDQ,
                    op_types_to_quantize=["MatMul"],
                    activation_type=QuantType.QUInt8,
                    weight_type=QuantType.QInt8,
                    calibrate_method=CalibrationMethod.MinMax,
                    extra_options={"CalibTensorRangeSymmetric": False},
                )
                return "ort-static-u8s8"
            quantize_static(
                quantizable,
                target,
                _Reader(calibration),
                quant_format=QuantFormat.QDQ,
                op_types_to_quantize=["MatMul", "Gemm", "Conv"],
                per_channel=True,
                activation_type=QuantType.QInt8,
                weight_type=QuantType.QInt8,
                calibrate_method=CalibrationMethod.MinMax,
                extra_options={"ActivationSymmetric": True, "WeightSymmetric": True},
            )
            return "qdq-s8s8-symmetric"
        finally:
            if quantizable != source:
                for leftover in (quantizable, quantizable.with_name(f"{quantizable.name}.data")):
                    leftover.unlink(missing_ok=True)
    except CompileError:
        raise
    except Exception as exc:
        raise CompileError(f"{variant.label} quantization of {source.name} failed: {type(exc).__name__}: {exc}") from exc
