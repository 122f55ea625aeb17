"""Reads what a pack needs to know about an ONNX graph without the ``onnx`` package.

ONNX files are protocol buffers. This module decodes only the few messages the runtime checks —
the graph's inputs and outputs (names, element types, symbolic shapes), the opset imports, the
operator types and the external-data files the initializers point to — and skips everything else
(weights included) by length, so describing a 1 GB graph reads a few kilobytes. Nothing in the file
is executed.
"""

from __future__ import annotations

import mmap
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from .errors import PackError

__all__ = ["ELEMENT_TYPES", "GraphInfo", "TensorSpec", "describe_onnx", "parse_onnx_file"]

T = TypeVar("T")

# TensorProto.DataType -> numpy-style dtype names (onnx.proto3).
ELEMENT_TYPES: dict[int, str] = {
    1: "float32",
    2: "uint8",
    3: "int8",
    4: "uint16",
    5: "int16",
    6: "int32",
    7: "int64",
    8: "string",
    9: "bool",
    10: "float16",
    11: "float64",
    12: "uint32",
    13: "uint64",
    14: "complex64",
    15: "complex128",
    16: "bfloat16",
    17: "float8e4m3fn",
    18: "float8e4m3fnuz",
    19: "float8e5m2",
    20: "float8e5m2fnuz",
    21: "uint4",
    22: "int4",
    23: "float4e2m1",
}

Dim = int | str
"""One dimension of a shape: a fixed size, a symbolic name such as ``"batch"``, or ``"?"`` (unknown)."""


@dataclass(frozen=True)
class TensorSpec:
    """Name, element type and shape of one graph input or output.

    Attributes:
        name: the tensor's name in the graph.
        dtype: numpy-style element type name ("float32", "int64", "float16", ...).
        shape: one entry per axis: an int for a fixed size, a str for a symbolic axis
            (``"batch"``, ``"past_sequence"``), ``"?"`` where the graph leaves it unnamed.
    """

    name: str
    dtype: str
    shape: tuple[int | str, ...]


@dataclass(frozen=True)
class GraphInfo:
    """What :func:`describe_onnx` reads from an ONNX file."""

    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    opsets: dict[str, int]
    ops: tuple[str, ...]
    """Operator types of the top-level graph's nodes in order (``domain::op`` outside the default domain)."""
    external_data: tuple[str, ...]
    """Files, relative to the graph, that hold initializers stored outside it."""


class _Reader:
    __slots__ = ("buf", "end", "pos")

    def __init__(self, buf: memoryview, pos: int = 0, end: int | None = None) -> None:
        self.buf = buf
        self.pos = pos
        self.end = len(buf) if end is None else end

    def varint(self) -> int:
        result = 0
        shift = 0
        while True:
            if self.pos >= self.end:
                raise ValueError("truncated varint")
            byte = self.buf[self.pos]
            self.pos += 1
            result |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return result
            shift += 7
            if shift > 63:
                raise ValueError("varint too long")

    def fields(self):  # type: ignore[no-untyped-def]
        """Yields (field_number, wire_type, value): an int for varints, a sub-reader for bytes."""
        while self.pos < self.end:
            key = self.varint()
            number, wire = key >> 3, key & 7
            if wire == 0:
                yield number, wire, self.varint()
            elif wire == 1:
                self._skip(8)
                yield number, wire, None
            elif wire == 5:
                self._skip(4)
                yield number, wire, None
            elif wire == 2:
                length = self.varint()
                start = self.pos
                self._skip(length)
                yield number, wire, _Reader(self.buf, start, start + length)
            else:
                raise ValueError(f"unsupported wire type {wire}")

    def _skip(self, n: int) -> None:
        if self.pos + n > self.end:
            raise ValueError("truncated field")
        self.pos += n

    def text(self) -> str:
        return bytes(self.buf[self.pos : self.end]).decode("utf-8")


def _value_info(reader: _Reader) -> TensorSpec:
    name = ""
    dtype = "?"
    shape: list[int | str] = []
    for number, wire, value in reader.fields():
        if number == 1 and wire == 2:
            name = value.text()
        elif number == 2 and wire == 2:  # TypeProto
            for tn, tw, tv in value.fields():
                if tn == 1 and tw == 2:  # tensor_type
                    for fn, fw, fv in tv.fields():
                        if fn == 1 and fw == 0:
                            dtype = ELEMENT_TYPES.get(fv, f"onnx-type-{fv}")
                        elif fn == 2 and fw == 2:  # TensorShapeProto
                            for dn, dw, dv in fv.fields():
                                if dn == 1 and dw == 2:
                                    shape.append(_dimension(dv))
                elif tn != 1:
                    dtype = "non-tensor"
    return TensorSpec(name=name, dtype=dtype, shape=tuple(shape))


def _dimension(reader: _Reader) -> int | str:
    dim: int | str = "?"
    for number, wire, value in reader.fields():
        if number == 1 and wire == 0:
            dim = value
        elif number == 2 and wire == 2:
            dim = value.text() or "?"
    return dim


def _initializer(reader: _Reader) -> tuple[str, str | None]:
    """Returns (name, external data location or None) of a TensorProto."""
    name = ""
    location = None
    for number, wire, value in reader.fields():
        if number == 8 and wire == 2:
            name = value.text()
        elif number == 13 and wire == 2:  # StringStringEntryProto external_data
            key = val = ""
            for en, ew, ev in value.fields():
                if en == 1 and ew == 2:
                    key = ev.text()
                elif en == 2 and ew == 2:
                    val = ev.text()
            if key == "location":
                location = val
    return name, location


def _node_op(reader: _Reader) -> str:
    op = domain = ""
    for number, wire, value in reader.fields():
        if number == 4 and wire == 2:
            op = value.text()
        elif number == 7 and wire == 2:
            domain = value.text()
    return f"{domain}::{op}" if domain not in ("", "ai.onnx") else op


def _describe(buf: memoryview) -> GraphInfo:
    opsets: dict[str, int] = {}
    graph = None
    for number, wire, value in _Reader(buf).fields():
        if number == 8 and wire == 2:
            domain, version = "", 0
            for on, ow, ov in value.fields():
                if on == 1 and ow == 2:
                    domain = ov.text()
                elif on == 2 and ow == 0:
                    version = ov
            opsets[domain or "ai.onnx"] = version
        elif number == 7 and wire == 2:
            graph = value
    if graph is None:
        raise ValueError("the file has no graph")
    inputs: list[TensorSpec] = []
    outputs: list[TensorSpec] = []
    ops: list[str] = []
    initializers: set[str] = set()
    external: list[str] = []
    for number, wire, value in graph.fields():
        if wire != 2:
            continue
        if number == 1:
            ops.append(_node_op(value))
        elif number == 5:
            name, location = _initializer(value)
            initializers.add(name)
            if location is not None and location not in external:
                external.append(location)
        elif number == 11:
            inputs.append(_value_info(value))
        elif number == 12:
            outputs.append(_value_info(value))
    # Graphs of IR version < 4 list initializers among their inputs; they are not runtime inputs.
    inputs = [spec for spec in inputs if spec.name not in initializers]
    return GraphInfo(tuple(inputs), tuple(outputs), opsets, tuple(ops), tuple(external))


def parse_onnx_file(path: str | Path, parse: Callable[[memoryview], T]) -> T:
    """Maps an ONNX file read-only and runs ``parse`` on its bytes, with edgemm's errors.

    Raises:
        PackError: the file is empty, cannot be read, or does not parse.
    """
    path = Path(path)
    try:
        with path.open("rb") as fh:
            if path.stat().st_size == 0:
                raise PackError(f"{path}: expected an ONNX model, found an empty file")
            with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
                view = memoryview(mapped)
                try:
                    return parse(view)
                finally:
                    view.release()
    except OSError as exc:
        raise PackError(f"{path}: cannot read ONNX file: {exc}") from exc
    except (ValueError, UnicodeDecodeError) as exc:
        raise PackError(f"{path}: expected an ONNX model, found bytes that do not parse as one ({exc})") from exc


def describe_onnx(path: str | Path) -> GraphInfo:
    """Reads the inputs, outputs, opsets, operator types and external-data files of an ONNX file.

    Raises:
        PackError: if the file cannot be read or is not an ONNX model.
    """
    return parse_onnx_file(path, _describe)
