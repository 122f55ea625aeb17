"""ONNX Runtime backend on small graphs built in the test with onnx.helper."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgemm import errors
from edgemm.runtime.backends import OrtBackend, OrtOptions, choose_providers
from tests.conftest import make_linear_graph

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper  # noqa: E402

CPU = OrtOptions(providers=("cpu",), intra_op_threads=1)


@pytest.fixture
def linear(tmp_path: Path) -> tuple[OrtBackend, np.ndarray]:
    weight = make_linear_graph(tmp_path / "linear.onnx", in_features=4, out_features=3)
    return OrtBackend(tmp_path / "linear.onnx", CPU), weight


def _cache_graph(path: Path) -> None:
    """A toy decoder step: present = concat(past, x) along axis 2, and y = sum over that axis."""
    graph = helper.make_graph(
        [
            helper.make_node("Concat", ["past", "x"], ["present"], axis=2),
            helper.make_node("ReduceSum", ["present", "axes"], ["y"], keepdims=0),
        ],
        "step",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 2, "seq", 4]),
            helper.make_tensor_value_info("past", TensorProto.FLOAT, ["batch", 2, "past_seq", 4]),
        ],
        [
            helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 2, 4]),
            helper.make_tensor_value_info("present", TensorProto.FLOAT, ["batch", 2, "total", 4]),
        ],
        [helper.make_tensor("axes", TensorProto.INT64, [1], [2])],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), str(path))


def test_runs_and_matches_numpy(linear) -> None:
    backend, weight = linear
    x = np.arange(8, dtype=np.float32).reshape(2, 4)
    out = backend.run({"x": x})
    assert set(out) == {"y"}
    bias = out["y"] - x @ weight
    np.testing.assert_allclose(bias[0], bias[1], atol=1e-5)  # same bias added to every row
    assert backend.name == "onnxruntime[CPUExecutionProvider]"
    assert backend.device == "cpu"
    assert [(s.name, s.dtype, s.shape) for s in backend.inputs] == [("x", "float32", ("batch", 4))]


@pytest.mark.parametrize(
    ("inputs", "pattern"),
    [
        ({}, r"missing input\(s\) \['x'\]; the graph's inputs are \['x'\], got \[\]"),
        ({"x": np.zeros((1, 4), np.float32), "z": np.zeros(1)}, r"unknown input\(s\) \['z'\]; the graph's inputs are \['x'\]"),
        ({"x": np.zeros((1, 4), np.int64)}, r"input 'x' expects dtype float32, got int64"),
        ({"x": np.zeros((4,), np.float32)}, r"input 'x' expects rank 2 \[batch, 4\], got shape \(4,\)"),
        ({"x": np.zeros((1, 5), np.float32)}, r"input 'x' axis 1 expects size 4 \[batch, 4\], got shape \(1, 5\)"),
    ],
    ids=["missing", "unknown", "dtype", "rank", "fixed-dim"],
)
def test_bad_inputs_raise_typed_errors(linear, inputs, pattern: str) -> None:
    backend, _ = linear
    with pytest.raises(errors.InputError, match=pattern):
        backend.run(inputs)


def test_symbolic_axis_must_agree_across_inputs(tmp_path: Path) -> None:
    _cache_graph(tmp_path / "step.onnx")
    backend = OrtBackend(tmp_path / "step.onnx", CPU)
    with pytest.raises(errors.InputError, match=r"disagree on axis 'batch': 'x' has 1, 'past' has 2"):
        backend.run({"x": np.zeros((1, 2, 1, 4), np.float32), "past": np.zeros((2, 2, 0, 4), np.float32)})


def test_kept_outputs_feed_the_next_call(tmp_path: Path) -> None:
    _cache_graph(tmp_path / "step.onnx")
    backend = OrtBackend(tmp_path / "step.onnx", CPU)
    rng = np.random.default_rng(0)
    steps = [rng.standard_normal((1, 2, n, 4)).astype(np.float32) for n in (3, 1, 1)]
    out = backend.run({"x": steps[0], "past": np.zeros((1, 2, 0, 4), np.float32)}, keep={"present": "past"})
    assert set(out) == {"y"}
    assert backend.kept() == ("past",)
    for x in steps[1:]:
        out = backend.run({"x": x}, keep={"present": "past"})
    np.testing.assert_allclose(out["y"], np.concatenate(steps, axis=2).sum(axis=2), rtol=1e-5)
    # Asking for a kept output returns it too; clear() starts a new sequence.
    out = backend.run({"x": steps[0]}, outputs=["present"], keep={"present": "past"})
    assert out["present"].shape == (1, 2, 8, 4)  # 3 + 1 + 1 kept, then 3 more
    backend.clear()
    with pytest.raises(errors.InputError, match=r"missing input\(s\) \['past'\]"):
        backend.run({"x": steps[0]})


def _provider(name: str) -> OrtOptions:
    import onnxruntime as ort

    full = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider"}[name]
    if full not in ort.get_available_providers():
        pytest.skip(f"needs onnxruntime with {full} (onnxruntime-gpu and a CUDA GPU)")
    return OrtOptions(providers=(name,), intra_op_threads=1)


# The CUDA case runs where onnxruntime-gpu and a GPU exist (not in CI): there the kept and held
# values are GPU memory and the Gather graph runs on the CUDA provider.
PROVIDERS = ["cpu", pytest.param("cuda", marks=pytest.mark.gpu)]


@pytest.mark.parametrize("provider", PROVIDERS)
def test_reorder_kept_rows_where_they_live(tmp_path: Path, provider: str) -> None:
    _cache_graph(tmp_path / "step.onnx")
    backend = OrtBackend(tmp_path / "step.onnx", _provider(provider))
    assert backend.device == provider
    x = np.arange(2 * 2 * 2 * 4, dtype=np.float32).reshape(2, 2, 2, 4)
    backend.run({"x": x, "past": np.zeros((2, 2, 0, 4), np.float32)}, keep={"present": "past"})
    backend.reorder_kept([1, 1, 0])
    np.testing.assert_array_equal(backend.fetch_kept("past"), x[[1, 1, 0]])
    out = backend.run({"x": np.ones((3, 2, 1, 4), np.float32)}, keep={"present": "past"})
    np.testing.assert_allclose(out["y"], x[[1, 1, 0]].sum(axis=2) + 1)
    backend.reorder_kept(np.asarray([2]))
    np.testing.assert_array_equal(backend.fetch_kept("past")[0, :, :2], x[0])
    with pytest.raises(errors.InputError, match=r"reorder rows \[1\] out of range for kept 'past' with batch 1"):
        backend.reorder_kept([1])
    with pytest.raises(errors.BackendError, match=r"nothing is kept as 'x'; kept: \['past'\]"):
        backend.fetch_kept("x")


@pytest.mark.parametrize("provider", PROVIDERS)
def test_held_inputs_are_given_once(tmp_path: Path, provider: str) -> None:
    _cache_graph(tmp_path / "step.onnx")
    backend = OrtBackend(tmp_path / "step.onnx", _provider(provider))
    x = np.arange(1 * 2 * 2 * 4, dtype=np.float32).reshape(1, 2, 2, 4)
    backend.hold({"x": x})
    x += 100  # the backend holds its own copy
    assert backend.kept() == ("x",)
    past = np.ones((1, 2, 3, 4), np.float32)
    for _ in range(3):
        out = backend.run({"past": past})
        np.testing.assert_allclose(out["y"], (x - 100).sum(axis=2) + 3)
    assert backend.kept() == ("x",)  # a call that keeps nothing leaves held inputs alone
    backend.run({"past": np.zeros((1, 2, 0, 4), np.float32)}, keep={"present": "past"})
    assert backend.kept() == ("past", "x")
    backend.reorder_kept([0, 0])
    np.testing.assert_array_equal(backend.fetch_kept("x"), (x - 100)[[0, 0]])
    assert backend.fetch_kept("past").shape == (2, 2, 2, 4)
    backend.clear()
    assert backend.kept() == ()
    with pytest.raises(errors.InputError, match=r"cannot hold \['z'\]"):
        backend.hold({"z": x})
    with pytest.raises(errors.InputError, match=r"input 'x' expects dtype float32, got int64"):
        backend.hold({"x": x.astype(np.int64)})


@pytest.mark.parametrize("dtype", ["float32", "float16", "int64", "bool"])
def test_the_gather_graph_is_valid_onnx(dtype: str) -> None:
    from edgemm.runtime.backends.ort import gather_model

    model = onnx.load_from_string(gather_model(dtype, 3))
    onnx.checker.check_model(model, full_check=True)
    assert [n.op_type for n in model.graph.node] == ["Gather"] and model.opset_import[0].version == 13
    with pytest.raises(errors.BackendError, match=r"gather: expected a tensor dtype"):
        gather_model("float128", 3)


def test_keep_names_are_checked(tmp_path: Path) -> None:
    _cache_graph(tmp_path / "step.onnx")
    backend = OrtBackend(tmp_path / "step.onnx", CPU)
    feeds = {"x": np.zeros((1, 2, 1, 4), np.float32), "past": np.zeros((1, 2, 0, 4), np.float32)}
    with pytest.raises(errors.BackendError, match=r"cannot keep \['nope'\]"):
        backend.run(feeds, keep={"nope": "past"})
    with pytest.raises(errors.BackendError, match=r"cannot feed kept outputs into \['nowhere'\]"):
        backend.run(feeds, keep={"present": "nowhere"})


def test_provider_choice() -> None:
    both = ("CUDAExecutionProvider", "CPUExecutionProvider")
    assert choose_providers(None, both) == both
    assert choose_providers(None, ("CPUExecutionProvider",)) == ("CPUExecutionProvider",)
    every = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")
    assert choose_providers(None, tuple(reversed(every))) == every  # best first, whatever order ORT lists
    assert choose_providers(("cpu",), both) == ("CPUExecutionProvider",)
    assert choose_providers(("cuda", "cpu"), both) == both
    with pytest.raises(errors.BackendUnavailableError, match=r"CUDAExecutionProvider was requested but this onnxruntime offers only \['CPUExecutionProvider'\] \(install onnxruntime-gpu"):
        choose_providers(("cuda",), ("CPUExecutionProvider",))
    with pytest.raises(errors.BackendUnavailableError, match="unknown execution provider 'npu'"):
        choose_providers(("npu",), both)
    with pytest.raises(errors.BackendUnavailableError, match="at least one"):
        choose_providers((), both)


def test_requesting_absent_gpu_provider_fails_loudly(tmp_path: Path) -> None:
    make_linear_graph(tmp_path / "g.onnx")
    with pytest.raises(errors.BackendUnavailableError, match="CUDAExecutionProvider was requested"):
        OrtBackend(tmp_path / "g.onnx", OrtOptions(providers=("cuda",)))


def test_options_are_applied(tmp_path: Path) -> None:
    make_linear_graph(tmp_path / "g.onnx")
    backend = OrtBackend(tmp_path / "g.onnx", OrtOptions(providers=("cpu",), intra_op_threads=1, graph_optimization="disabled"))
    x = np.ones((3, 4), np.float32)
    np.testing.assert_allclose(backend.run({"x": x})["y"], backend.with_options(graph_optimization="all").run({"x": x})["y"])
    with pytest.raises(errors.BackendError, match="thread counts must be >= 0"):
        OrtOptions(intra_op_threads=-1)
    with pytest.raises(errors.BackendError, match="graph_optimization must be one of"):
        OrtOptions(graph_optimization="max")  # type: ignore[arg-type]


def test_missing_or_invalid_graph(tmp_path: Path) -> None:
    with pytest.raises(errors.BackendError, match="expected a file, found nothing"):
        OrtBackend(tmp_path / "none.onnx", CPU)
    (tmp_path / "bad.onnx").write_bytes(b"not a graph")
    with pytest.raises(errors.BackendError, match="onnxruntime could not load"):
        OrtBackend(tmp_path / "bad.onnx", CPU)
