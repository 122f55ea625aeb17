"""`edgemm lint`'s rules, on small graphs built with onnx.helper that TensorRT's parser would reject."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgemm.runtime import pack as pk
from edgemm.runtime.onnx_model import read_model
from edgemm.runtime.tensorrt_lint import OPERATORS, graph_precision, lint_model, lint_pack, opset_range

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

F = TensorProto.FLOAT


def _save(tmp_path: Path, nodes, inputs, outputs, initializers=(), *, opset: int = 18, functions=(), name: str = "g.onnx") -> Path:
    graph = helper.make_graph(list(nodes), "g", list(inputs), list(outputs), list(initializers))
    imports = [helper.make_opsetid("", opset)] + ([helper.make_opsetid("local", 1)] if functions else [])
    model = helper.make_model(graph, opset_imports=imports, functions=list(functions))
    model.ir_version = 8
    path = tmp_path / name
    onnx.save(model, str(path))
    return path


def _io(name: str, dtype: int = F, shape=("batch", 4)):
    return helper.make_tensor_value_info(name, dtype, list(shape))


def _lint(path: Path, **kwargs):
    kwargs.setdefault("versions", ("10.3", "11.0"))
    return lint_model(read_model(path), graph=path.name, **kwargs)


def _rules(findings, severity: str = "error") -> list[str]:
    return [f.rule for f in findings if f.severity == severity]


def _linear(tmp_path: Path, *, opset: int = 18) -> Path:
    weight = numpy_helper.from_array(np.ones((4, 4), np.float32), "W")
    return _save(tmp_path, [helper.make_node("MatMul", ["x", "W"], ["y"], name="mm")], [_io("x")], [_io("y")], [weight], opset=opset)


def test_clean_graph_has_no_findings(tmp_path: Path) -> None:
    assert _lint(_linear(tmp_path), role="encoder", precision="fp32", target="any") == []


def test_operator_table_matches_the_matrix_where_it_matters() -> None:
    # ops the edgemm exporters emit must be known; a few later additions carry their release
    for op in ("MatMul", "LayerNormalization", "Softmax", "Gather", "QuantizeLinear", "DequantizeLinear", "Erf", "Where", "Range"):
        assert OPERATORS[op] == (10, 0), op
    assert OPERATORS["STFT"] == (10, 5)
    assert OPERATORS["Attention"] == (10, 14)
    assert OPERATORS["Swish"] == (11, 0)
    assert "NonZero" in OPERATORS and "Unique" not in OPERATORS


@pytest.mark.parametrize(
    ("version", "expected"),
    [((10, 0), (9, 20, True)), ((10, 3), (9, 20, False)), ((10, 15), (9, 24, True)), ((11, 0), (9, 24, True)), ((11, 5), (9, 25, True))],
)
def test_opset_range(version, expected) -> None:
    assert opset_range(version) == expected


@pytest.mark.parametrize(
    ("opset", "versions", "severity", "applies_to"),
    [
        (8, ("10.3",), "error", ("10.3",)),
        (21, ("10.0",), "error", ("10.0",)),
        (21, ("10.3",), "warning", ("10.3",)),  # undocumented between 10.1 and 10.14
        (21, ("11.0",), None, ()),
        (25, ("11.0", "11.5"), "error", ("11.0",)),
    ],
)
def test_opset_range_per_tensorrt_version(tmp_path: Path, opset, versions, severity, applies_to) -> None:
    findings = [f for f in _lint(_linear(tmp_path, opset=opset), versions=versions) if f.rule == "opset"]
    if severity is None:
        assert findings == []
    else:
        assert [(f.severity, f.versions) for f in findings] == [(severity, applies_to)]


@pytest.mark.parametrize(
    ("node", "domain_opset", "pattern"),
    [
        (helper.make_node("Unique", ["x"], ["y"], name="uniq"), None, r"Unique, listed as unsupported .*'uniq' \(Unique\)"),
        (helper.make_node("MatMulInteger", ["x", "x"], ["y"], name="mmi"), None, r"MatMulInteger, ONNX Runtime's integer quantization.*--target tensorrt.*'mmi'"),
        (helper.make_node("FusedMatMul", ["x", "x"], ["y"], name="fm", domain="com.microsoft"), ("com.microsoft", 1), r"com.microsoft::FusedMatMul, an op outside the ONNX standard"),
        (helper.make_node("NotAnOnnxOp", ["x"], ["y"], name="z"), None, r"NotAnOnnxOp, not in TensorRT's ONNX operator matrix"),
    ],
    ids=["listed-unsupported", "ort-integer-op", "contrib-domain", "unknown"],
)
def test_unsupported_operators_are_errors_naming_the_node(tmp_path: Path, node, domain_opset, pattern) -> None:
    graph = helper.make_graph([node], "g", [_io("x")], [_io("y")])
    imports = [helper.make_opsetid("", 18)] + ([helper.make_opsetid(*domain_opset)] if domain_opset else [])
    model = helper.make_model(graph, opset_imports=imports)
    model.ir_version = 8
    path = tmp_path / "g.onnx"
    onnx.save(model, str(path))
    errors = [f for f in _lint(path) if f.severity == "error"]
    assert [f.rule for f in errors] == ["operator"]
    import re

    assert re.search(pattern, errors[0].message), errors[0].message


def test_operator_added_in_a_later_release_fails_only_there(tmp_path: Path) -> None:
    signal = _io("signal", F, (1, 128, 1))
    step = numpy_helper.from_array(np.array(16, np.int64), "step")
    path = _save(tmp_path, [helper.make_node("STFT", ["signal", "step"], ["y"], name="stft")], [signal], [_io("y", F, (1, "f", "b", 2))], [step], opset=17)
    findings = _lint(path, versions=("10.3", "10.5", "11.0"))
    assert [(f.rule, f.versions) for f in findings if f.severity == "error"] == [("operator", ("10.3",))]
    assert "imports from 10.5 on" in findings[0].message


def test_model_local_functions_are_checked_through(tmp_path: Path) -> None:
    body = helper.make_function("local", "Block", ["a"], ["b"], [helper.make_node("Unique", ["a"], ["b"], name="inner_unique")], [helper.make_opsetid("", 18)])
    path = _save(tmp_path, [helper.make_node("Block", ["x"], ["y"], domain="local", name="call")], [_io("x")], [_io("y")], functions=[body])
    errors = [f for f in _lint(path) if f.severity == "error"]
    assert len(errors) == 1 and "'inner_unique' (Unique) in function local::Block" in errors[0].message


@pytest.mark.parametrize(
    ("build", "pattern"),
    [
        (lambda: ([], [_io("x", TensorProto.DOUBLE)], [_io("x", TensorProto.DOUBLE)], []), r"use float64 .*input 'x'"),
        (lambda: ([helper.make_node("Cast", ["x"], ["y"], to=TensorProto.DOUBLE, name="to64")], [_io("x")], [_io("y", TensorProto.DOUBLE)], []), r"float64.*'to64' \(Cast\) to="),
        (lambda: ([helper.make_node("Add", ["x", "c"], ["y"])], [_io("x", TensorProto.INT16)], [_io("y", TensorProto.INT16)], [numpy_helper.from_array(np.ones(4, np.int16), "c")]), r"int16 \(TensorRT has no int16 type\).*constant 'c'"),
        (lambda: ([helper.make_node("Identity", ["x"], ["y"])], [_io("x", TensorProto.INT8)], [_io("y", TensorProto.INT8)], []), r"int8 graph inputs/outputs \['x', 'y'\]"),
    ],
    ids=["float64-io", "cast-to-float64", "int16-constant", "int8-io"],
)
def test_types_tensorrt_lacks_are_errors(tmp_path: Path, build, pattern) -> None:
    nodes, inputs, outputs, inits = build()
    if not nodes:
        nodes = [helper.make_node("Identity", ["x"], ["x_out"])]
        outputs = [helper.make_tensor_value_info("x_out", TensorProto.DOUBLE, ["batch", 4])]
    findings = _lint(_save(tmp_path, nodes, inputs, outputs, inits))
    import re

    dtype_errors = [f.message for f in findings if f.rule == "dtype" and f.severity == "error"]
    assert any(re.search(pattern, m) for m in dtype_errors), dtype_errors


def _if_node(name: str, inner_op: str = "Identity") -> onnx.NodeProto:
    def branch(tag: str) -> onnx.GraphProto:
        return helper.make_graph([helper.make_node(inner_op, ["x"], [f"out_{tag}"], name=f"{name}_{tag}")], tag, [], [_io(f"out_{tag}")])

    return helper.make_node("If", ["cond"], ["y"], then_branch=branch("then"), else_branch=branch("else"), name=name)


def test_control_flow_is_an_error_in_a_decoder_step_and_a_warning_elsewhere(tmp_path: Path) -> None:
    cond = helper.make_tensor_value_info("cond", TensorProto.BOOL, [])
    path = _save(tmp_path, [_if_node("cache_branch")], [_io("x"), cond], [_io("y")])
    step = _lint(path, role="decoder_step")
    assert _rules(step) == ["control-flow"]
    assert "'cache_branch' (If)" in step[0].message
    assert _rules(_lint(path, role="encoder")) == []
    assert _rules(_lint(path, role="encoder"), "warning") == ["control-flow"]


def test_nodes_inside_subgraphs_are_checked(tmp_path: Path) -> None:
    cond = helper.make_tensor_value_info("cond", TensorProto.BOOL, [])
    path = _save(tmp_path, [_if_node("outer", inner_op="Unique")], [_io("x"), cond], [_io("y")])
    errors = [f for f in _lint(path, role="encoder") if f.rule == "operator"]
    assert len(errors) == 1 and "in outer.then_branch" in errors[0].message


def _qdq(tmp_path: Path, zero_point: np.ndarray | None, *, constant_node: bool = False, computed: bool = False) -> Path:
    scale = numpy_helper.from_array(np.array(0.1, np.float32), "scale")
    inits = [scale]
    nodes = []
    q_inputs = ["x", "scale"]
    if zero_point is not None:
        if constant_node:
            nodes.append(helper.make_node("Constant", [], ["zp"], value=numpy_helper.from_array(zero_point, "zp_value")))
        elif computed:
            inits.append(numpy_helper.from_array(zero_point, "zp_source"))
            nodes.append(helper.make_node("Identity", ["zp_source"], ["zp"]))
        else:
            inits.append(numpy_helper.from_array(zero_point, "zp"))
        q_inputs.append("zp")
    nodes += [
        helper.make_node("QuantizeLinear", q_inputs, ["q"], name="quant"),
        helper.make_node("DequantizeLinear", ["q", *q_inputs[1:]], ["y"], name="dequant"),
    ]
    return _save(tmp_path, nodes, [_io("x")], [_io("y")], inits)


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"zero_point": np.array(0, np.int8)}, None),
        ({"zero_point": np.array(0, np.int8), "constant_node": True}, None),
        ({"zero_point": np.array(3, np.int8)}, "non-zero zero point"),
        ({"zero_point": np.array(0, np.uint8)}, "uint8 zero point"),
        ({"zero_point": np.array(128, np.uint8)}, "uint8 zero point"),
        ({"zero_point": None}, "no zero point, so quantizing to uint8"),
        ({"zero_point": np.array(0, np.int8), "computed": True}, "computed at run time"),
    ],
    ids=["int8-zero", "constant-node", "asymmetric", "uint8-zero", "uint8-128", "missing", "computed"],
)
def test_qdq_must_be_symmetric_int8(tmp_path: Path, kwargs, expected) -> None:
    errors = [f for f in _lint(_qdq(tmp_path, **kwargs), precision="int8", quantization="qdq-s8s8-symmetric", target="tensorrt") if f.severity == "error"]
    if expected is None:
        assert errors == []
    else:
        assert [f.rule for f in errors] == ["qdq"] * len(errors) and errors, errors
        assert any(expected in f.message and "'quant' (QuantizeLinear)" in f.message for f in errors), errors


def test_per_channel_zero_points_are_read(tmp_path: Path) -> None:
    weight = numpy_helper.from_array(np.ones((4, 3), np.int8), "w_q")
    scale = numpy_helper.from_array(np.full(3, 0.1, np.float32), "w_scale")
    zeros = numpy_helper.from_array(np.array([0, 0, 1], np.int8), "w_zp")
    node = helper.make_node("DequantizeLinear", ["w_q", "w_scale", "w_zp"], ["w"], axis=1, name="w_dq")
    mm = helper.make_node("MatMul", ["x", "w"], ["y"])
    path = _save(tmp_path, [node, mm], [_io("x")], [_io("y", F, ("batch", 3))], [weight, scale, zeros])
    errors = [f.message for f in _lint(path) if f.rule == "qdq"]
    assert len(errors) == 1 and "'w_dq' (DequantizeLinear)" in errors[0]


@pytest.mark.parametrize(
    ("precision", "quantization", "target", "qdq", "pattern"),
    [
        ("fp16", None, "gpu", False, "says fp16, but the graph has no float16 tensors"),
        ("int8", "qdq-s8s8-symmetric", "tensorrt", False, "says int8, but the graph has no QuantizeLinear"),
        ("int8", "ort-static-u8s8", "tensorrt", True, "must be of the qdq-s8s8-symmetric flavour"),
    ],
)
def test_precision_must_be_what_the_manifest_says(tmp_path: Path, precision, quantization, target, qdq, pattern) -> None:
    path = _qdq(tmp_path, np.array(0, np.int8)) if qdq else _linear(tmp_path)
    errors = [f for f in _lint(path, precision=precision, quantization=quantization, target=target) if f.rule == "precision"]
    assert len(errors) == 1 and pattern in errors[0].message


def test_graph_precision(tmp_path: Path) -> None:
    assert graph_precision(read_model(_linear(tmp_path))) == "fp32"
    assert graph_precision(read_model(_qdq(tmp_path, np.array(0, np.int8)))) == "int8"
    cast = _save(tmp_path, [helper.make_node("Cast", ["x"], ["h"], to=TensorProto.FLOAT16), helper.make_node("Cast", ["h"], ["y"], to=F)], [_io("x")], [_io("y")], name="h.onnx")
    assert graph_precision(read_model(cast)) == "fp16"


def test_attribute_restrictions(tmp_path: Path) -> None:
    scales = numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales")
    resize = helper.make_node("Resize", ["x", "", "scales"], ["r"], mode="cubic", name="upsample")
    norm = helper.make_node("LayerNormalization", ["r", "gamma"], ["y", "mean", "inv"], name="ln")
    gamma = numpy_helper.from_array(np.ones(8, np.float32), "gamma")
    path = _save(tmp_path, [resize, norm], [_io("x", F, (1, 3, 4, 4))], [_io("y", F, (1, 3, 8, 8))], [scales, gamma])
    messages = [f.message for f in _lint(path) if f.rule == "attribute" and f.severity == "error"]
    assert any("Resize mode 'cubic'" in m and "'upsample'" in m for m in messages), messages
    assert any("LayerNormalization with Mean/InvStdDev outputs" in m and "'ln'" in m for m in messages), messages


def test_lint_pack_checks_the_tensorrt_graphs(pack_dir: Path) -> None:
    pack = pk.load(pack_dir)
    report = lint_pack(pack)
    assert report.ok and report.graphs == ("caption/encoder.onnx",)
    assert report.summary() == "checked 1 graph against TensorRT 10.3, 11.0: 0 errors, 0 warnings"
