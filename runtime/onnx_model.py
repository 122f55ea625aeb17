"""Reads an ONNX graph's nodes, attributes and constants without the ``onnx`` package.

:mod:`edgemm.runtime.onnx_graph` reads only what a pack's load check needs (io, opsets, op types).
Checking a graph against TensorRT's ONNX parser (:mod:`edgemm.runtime.tensorrt_lint`) needs more:
every node with its name, domain, inputs and attributes, the nodes inside ``If``/``Loop``/``Scan``
bodies and model-local functions, the element types of every declared tensor, and whether the
quantization zero points are zero. This module decodes that from the protocol buffer directly, so
``edgemm build`` and ``edgemm lint`` run on a device that has only the runtime installed. Weights
are skipped by length; only small integer constants (zero points) are looked into.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .onnx_graph import ELEMENT_TYPES, TensorSpec, _Reader, _value_info, parse_onnx_file

__all__ = ["Constant", "ModelInfo", "Node", "read_model"]

_INTEGER_TYPES = {"int8", "uint8", "int16", "uint16", "int32", "uint32", "int64", "uint64", "int4", "uint4"}


@dataclass(frozen=True)
class Constant:
    """An initializer, or the value of a ``Constant`` node, described without its data.

    Attributes:
        name: the tensor's name.
        dtype: numpy-style element type ("float32", "int8", ...).
        dims: the shape.
        all_zero: for integer tensors stored in the file, whether every element is 0; None when
            unknown (a float tensor, or data stored outside the file).
        external: the data is in an external file.
    """

    name: str
    dtype: str
    dims: tuple[int, ...]
    all_zero: bool | None = None
    external: bool = False


@dataclass(frozen=True)
class Node:
    """One node of the graph (or of a subgraph or a local function).

    Attributes:
        op_type: the operator ("MatMul", "QuantizeLinear", ...).
        domain: "" for the default ONNX domain, else e.g. "com.microsoft".
        name: the node's name in the file ("" when it has none).
        inputs, outputs: tensor names ("" for an omitted optional input).
        ints: integer and integer-list attributes (``axis``, ``to``, ``output_dtype``, ...).
        strings: string attributes (``mode``, ``coordinate_transformation_mode``, ...).
        tensors: tensor attributes (a ``Constant``'s ``value``, a ``ConstantOfShape``'s fill value).
        scope: where the node lives: "" for the main graph, else e.g. ``"If_3.then_branch"`` or
            ``"function my_block"``.
    """

    op_type: str
    domain: str
    name: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    ints: dict[str, int | tuple[int, ...]] = field(default_factory=dict)
    strings: dict[str, str] = field(default_factory=dict)
    tensors: dict[str, Constant] = field(default_factory=dict)
    scope: str = ""

    @property
    def label(self) -> str:
        """How messages name the node: ``'/decoder/If_3' (If)``."""
        where = f" in {self.scope}" if self.scope else ""
        return f"'{self.name or '<unnamed>'}' ({self.op_type}){where}"


@dataclass(frozen=True)
class ModelInfo:
    """What :func:`read_model` finds in an ONNX file.

    Attributes:
        ir_version: the file's IR version.
        opsets: domain ("ai.onnx" for the default one) -> version.
        inputs, outputs: the main graph's io (initializers listed as inputs are left out).
        value_infos: intermediate tensors whose types the file declares.
        nodes: every node, main graph first, then subgraph and local-function bodies.
        constants: initializers and ``Constant`` node values by name (all scopes).
        functions: names of the model-local functions (``domain::name``).
    """

    ir_version: int
    opsets: dict[str, int]
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    value_infos: tuple[TensorSpec, ...]
    nodes: tuple[Node, ...]
    constants: dict[str, Constant]
    functions: frozenset[str]

    def producer(self, tensor: str) -> Node | None:
        """The node that outputs ``tensor`` (None for graph inputs and initializers)."""
        for node in self.nodes:
            if tensor in node.outputs:
                return node
        return None


def _signed(value: int) -> int:
    # int64 attributes are varints of the two's complement: -1 arrives as 2**64 - 1.
    return value - (1 << 64) if value >= 1 << 63 else value


def _packed_varints(reader: _Reader) -> list[int]:
    values = []
    while reader.pos < reader.end:
        values.append(_signed(reader.varint()))
    return values


def _tensor(reader: _Reader) -> Constant:
    name = ""
    dtype_code = 0
    dims: list[int] = []
    raw_zero: bool | None = None
    int_values: list[int] = []
    has_int_values = False
    external = False
    for number, wire, value in reader.fields():
        if number == 1:
            if wire == 0:
                dims.append(_signed(value))
            elif wire == 2:
                dims.extend(_packed_varints(value))
        elif number == 2 and wire == 0:
            dtype_code = value
        elif number == 8 and wire == 2:
            name = value.text()
        elif number == 9 and wire == 2:
            raw_zero = not any(bytes(value.buf[value.pos : value.end]))
        elif number in (5, 7, 11):  # int32_data, int64_data, uint64_data
            has_int_values = True
            if wire == 0:
                int_values.append(_signed(value))
            elif wire == 2:
                int_values.extend(_packed_varints(value))
        elif (number == 14 and wire == 0 and value == 1) or number == 13:  # data_location EXTERNAL, external_data
            external = True
    dtype = ELEMENT_TYPES.get(dtype_code, f"onnx-type-{dtype_code}")
    all_zero: bool | None = None
    if dtype in _INTEGER_TYPES and not external:
        if raw_zero is not None:
            all_zero = raw_zero
        elif has_int_values:
            all_zero = not any(int_values)
        else:
            all_zero = True  # no data at all: an empty tensor, or one of zeros written by an exporter
    return Constant(name=name, dtype=dtype, dims=tuple(dims), all_zero=all_zero, external=external)


def _attribute(
    reader: _Reader,
    ints: dict[str, int | tuple[int, ...]],
    strings: dict[str, str],
    tensors: dict[str, Constant],
    graphs: list[tuple[str, _Reader]],
) -> None:
    name = ""
    int_value: int | None = None
    int_list: list[int] = []
    text: str | None = None
    tensor: Constant | None = None
    subgraphs: list[_Reader] = []
    for number, wire, value in reader.fields():
        if number == 1 and wire == 2:
            name = value.text()
        elif number == 3 and wire == 0:
            int_value = _signed(value)
        elif number == 4 and wire == 2:
            try:
                text = value.text()
            except UnicodeDecodeError:
                text = None
        elif number == 5 and wire == 2:
            tensor = _tensor(value)
        elif number in (6, 11) and wire == 2:
            subgraphs.append(value)
        elif number == 8:
            if wire == 0:
                int_list.append(_signed(value))
            elif wire == 2:
                int_list.extend(_packed_varints(value))
    if int_value is not None:
        ints[name] = int_value
    elif int_list:
        ints[name] = tuple(int_list)
    if text is not None:
        strings[name] = text
    if tensor is not None:
        tensors[name] = tensor
    graphs.extend((name, graph) for graph in subgraphs)


def _constant_value(output: str, node: Node) -> Constant:
    """What a ``Constant`` node outputs, from whichever ``value*`` attribute it has."""
    if "value" in node.tensors:
        tensor = node.tensors["value"]
        return Constant(output, tensor.dtype, tensor.dims, tensor.all_zero, tensor.external)
    if "value_int" in node.ints or "value_ints" in node.ints:
        value = node.ints.get("value_int", node.ints.get("value_ints"))
        values = value if isinstance(value, tuple) else (value,)
        dims = () if "value_int" in node.ints else (len(values),)
        return Constant(output, "int64", dims, all_zero=not any(values))
    return Constant(output, "?", ())  # value_float(s), value_string(s): nothing lint needs


class _Walker:
    """Collects nodes, constants and value infos of a graph and everything nested in it."""

    def __init__(self) -> None:
        self.nodes: list[Node] = []
        self.constants: dict[str, Constant] = {}
        self.value_infos: list[TensorSpec] = []

    def graph(self, reader: _Reader, scope: str) -> tuple[list[TensorSpec], list[TensorSpec]]:
        inputs: list[TensorSpec] = []
        outputs: list[TensorSpec] = []
        pending: list[tuple[_Reader, str]] = []
        for number, wire, value in reader.fields():
            if wire != 2:
                continue
            if number == 1:
                pending.extend(self.node(value, scope))
            elif number == 5:
                constant = _tensor(value)
                self.constants[constant.name] = constant
            elif number == 11:
                inputs.append(_value_info(value))
            elif number == 12:
                outputs.append(_value_info(value))
            elif number == 13:
                self.value_infos.append(_value_info(value))
        for sub, sub_scope in pending:
            sub_in, sub_out = self.graph(sub, sub_scope)
            self.value_infos.extend(sub_in + sub_out)
        inputs = [spec for spec in inputs if spec.name not in self.constants]
        return inputs, outputs

    def node(self, reader: _Reader, scope: str) -> list[tuple[_Reader, str]]:
        """Adds a node; returns its subgraphs (bodies of If/Loop/Scan) to walk after it."""
        op = domain = name = ""
        inputs: list[str] = []
        outputs: list[str] = []
        ints: dict[str, int | tuple[int, ...]] = {}
        strings: dict[str, str] = {}
        tensors: dict[str, Constant] = {}
        graphs: list[tuple[str, _Reader]] = []
        for number, wire, value in reader.fields():
            if wire != 2:
                continue
            if number == 1:
                inputs.append(value.text())
            elif number == 2:
                outputs.append(value.text())
            elif number == 3:
                name = value.text()
            elif number == 4:
                op = value.text()
            elif number == 7:
                domain = value.text()
            elif number == 5:
                _attribute(value, ints, strings, tensors, graphs)
        if domain == "ai.onnx":
            domain = ""
        node = Node(op, domain, name, tuple(inputs), tuple(outputs), ints, strings, tensors, scope)
        self.nodes.append(node)
        if op == "Constant" and not domain and outputs:
            self.constants[outputs[0]] = _constant_value(outputs[0], node)
        prefix = f"{scope}/" if scope else ""
        return [(graph, f"{prefix}{name or op}.{attr}") for attr, graph in graphs]

    def function(self, reader: _Reader) -> str:
        name = domain = ""
        bodies: list[_Reader] = []
        for number, wire, value in reader.fields():
            if wire != 2:
                continue
            if number == 1:
                name = value.text()
            elif number == 10:
                domain = value.text()
            elif number == 7:
                bodies.append(value)
        label = f"{domain}::{name}" if domain else name
        for body in bodies:
            for sub, sub_scope in self.node(body, f"function {label}"):
                self.graph(sub, sub_scope)
        return label


def _read(buf: memoryview) -> ModelInfo:
    walker = _Walker()
    opsets: dict[str, int] = {}
    ir_version = 0
    graph: _Reader | None = None
    functions: list[_Reader] = []
    for number, wire, value in _Reader(buf).fields():
        if number == 1 and wire == 0:
            ir_version = value
        elif number == 8 and wire == 2:
            domain, version = "", 0
            for on, ow, ov in value.fields():
                if on == 1 and ow == 2:
                    domain = ov.text()
                elif on == 2 and ow == 0:
                    version = ov
            opsets[domain or "ai.onnx"] = version
        elif number == 7 and wire == 2:
            graph = value
        elif number == 25 and wire == 2:
            functions.append(value)
    if graph is None:
        raise ValueError("the file has no graph")
    inputs, outputs = walker.graph(graph, "")
    names = frozenset(walker.function(f) for f in functions)
    return ModelInfo(
        ir_version=ir_version,
        opsets=opsets,
        inputs=tuple(inputs),
        outputs=tuple(outputs),
        value_infos=tuple(walker.value_infos),
        nodes=tuple(walker.nodes),
        constants=walker.constants,
        functions=names,
    )


def read_model(path: str | Path) -> ModelInfo:
    """Reads the nodes, attributes, constants and declared types of an ONNX file.

    Raises:
        PackError: the file cannot be read or is not an ONNX model.
    """
    return parse_onnx_file(path, _read)
