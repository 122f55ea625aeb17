"""The dependency-free ONNX reader agrees with the onnx package on real graphs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgemm import errors
from edgemm.runtime.onnx_graph import describe_onnx

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402


def _reference_specs(value_infos) -> list[tuple[str, str, tuple]]:
    out = []
    for vi in value_infos:
        tt = vi.type.tensor_type
        dtype = helper.tensor_dtype_to_np_dtype(tt.elem_type).name
        dims = tuple(d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in tt.shape.dim)
        out.append((vi.name, dtype, dims))
    return out


def test_matches_onnx_package_on_mixed_graph(tmp_path: Path) -> None:
    inputs = [
        helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "sequence"]),
        helper.make_tensor_value_info("past.0.key", TensorProto.FLOAT16, ["batch", 2, "past_sequence", 8]),
        helper.make_tensor_value_info("mask", TensorProto.BOOL, ["batch", None]),
        helper.make_tensor_value_info("W", TensorProto.FLOAT, [4, 4]),  # also an initializer (IR < 4 style)
    ]
    outputs = [helper.make_tensor_value_info("out", TensorProto.UINT8, [1, 2, 3])]
    nodes = [
        helper.make_node("Identity", ["input_ids"], ["a"]),
        helper.make_node("QuantizeLinear", ["a", "s"], ["out"], domain="com.microsoft"),
    ]
    init = [numpy_helper.from_array(np.eye(4, dtype=np.float32), "W")]
    model = helper.make_model(
        helper.make_graph(nodes, "g", inputs, outputs, init),
        opset_imports=[helper.make_opsetid("", 18), helper.make_opsetid("com.microsoft", 1)],
    )
    path = tmp_path / "g.onnx"
    onnx.save(model, str(path))
    info = describe_onnx(path)
    assert [(s.name, s.dtype, s.shape) for s in info.inputs] == _reference_specs(inputs[:3])
    assert [(s.name, s.dtype, s.shape) for s in info.outputs] == _reference_specs(outputs)
    assert info.opsets == {"ai.onnx": 18, "com.microsoft": 1}
    assert info.ops == ("Identity", "com.microsoft::QuantizeLinear")
    assert info.external_data == ()


def test_reads_big_graph_without_reading_weights(tmp_path: Path) -> None:
    # 64 MB of weights: the reader skips them by length.
    weight = numpy_helper.from_array(np.zeros((4096, 4096), dtype=np.float32), "W")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["y"])],
        "big",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 4096])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 4096])],
        [weight],
    )
    path = tmp_path / "big.onnx"
    onnx.save(helper.make_model(graph), str(path))
    info = describe_onnx(path)
    assert info.inputs[0].shape == ("n", 4096)
    assert info.ops == ("MatMul",)


@pytest.mark.parametrize(
    ("content", "pattern"),
    [(b"", "empty file"), (b"\x0a\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff", "do not parse"), (b"hello world", "do not parse")],
    ids=["empty", "truncated", "text"],
)
def test_rejects_non_onnx(tmp_path: Path, content: bytes, pattern: str) -> None:
    path = tmp_path / "bad.onnx"
    path.write_bytes(content)
    with pytest.raises(errors.PackError, match=pattern):
        describe_onnx(path)
