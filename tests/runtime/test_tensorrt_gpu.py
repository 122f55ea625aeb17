"""TensorRT on a real GPU: build engines with `edgemm build` and run them against ONNX Runtime.

Marked ``tensorrt`` and ``gpu``; skipped (with the reason) where TensorRT or a CUDA GPU is missing,
which includes CI. Not yet run on any hardware: see docs/TENSORRT.md.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from edgemm.runtime import pack as pk
from edgemm.runtime.backends import OrtBackend, OrtOptions, TensorrtBackend, open_backend
from edgemm.runtime.errors import EdgemmError
from tests.conftest import build_pack

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper  # noqa: E402

pytestmark = [pytest.mark.tensorrt, pytest.mark.gpu]


@pytest.fixture(scope="module")
def device() -> pk.DeviceKey:
    from edgemm.runtime.backends.tensorrt import probe_device

    try:
        return probe_device()
    except EdgemmError as exc:
        pytest.skip(f"needs TensorRT and a CUDA GPU: {exc}")


def _build(pack_dir: Path, **changes: object) -> pk.Pack:
    from edgemm.compile.build import BuildConfig, build_engines

    build_engines(BuildConfig(pack=str(pack_dir), timing_cache=str(pack_dir.parent / "timing.cache"), **changes), show_progress=False)
    return pk.load(pack_dir)


@pytest.mark.parametrize("compatible", [False, True], ids=["plain", "version-compatible"])
def test_linear_engine_matches_onnxruntime(tmp_path: Path, device: pk.DeviceKey, compatible: bool) -> None:
    # version-compatible: the plan carries the lean runtime and loads with host code allowed
    pack = _build(build_pack(tmp_path / "pack"), version_compatible=compatible)
    component = pack.component("caption")
    (engine,) = component.engines
    assert engine.device == device and engine.precision == "fp32" and engine.version_compatible == compatible
    graph = component.graph("encoder")
    backend = open_backend(pack, component, graph)
    assert isinstance(backend, TensorrtBackend)
    x = np.random.default_rng(0).standard_normal((3, 4)).astype(np.float32)
    expected = OrtBackend(pack.path_of(graph.file), OrtOptions(providers=("cpu",))).run({"x": x})["y"]
    np.testing.assert_allclose(backend.run({"x": x})["y"], expected, rtol=1e-3, atol=1e-4)
    # a second build keeps the engine; --force rebuilds it
    assert _build(pack.path, version_compatible=compatible).component("caption").engines == component.engines
    assert _build(pack.path, version_compatible=compatible, force=True).component("caption").engines[0].built_at >= engine.built_at


def _cache_pack(root: Path) -> pk.Pack:
    base = build_pack(root)
    graph = helper.make_graph(
        [helper.make_node("Concat", ["past", "x"], ["present"], axis=2), helper.make_node("ReduceSum", ["present", "axes"], ["y"], keepdims=0)],
        "step",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 2, "sequence", 4]), helper.make_tensor_value_info("past", TensorProto.FLOAT, ["batch", 2, "past_sequence", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 2, 4]), helper.make_tensor_value_info("present", TensorProto.FLOAT, ["batch", 2, "total", 4])],
        [helper.make_tensor("axes", TensorProto.INT64, [1], [2])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    onnx.save(model, str(base / "caption" / "decoder_step.onnx"))
    pack = pk.load(base)
    step = pk.graph_from_file(base, "caption/decoder_step.onnx", role="decoder_step", precision="fp32", target="any")
    component = pack.component("caption")
    pk.write_manifest(base, pack.manifest.with_component(dataclasses.replace(component, graphs=(*component.graphs, step))))
    return pk.load(base)


def test_decoder_cache_stays_on_the_gpu(tmp_path: Path, device: pk.DeviceKey) -> None:
    pack = _build(_cache_pack(tmp_path / "pack").path, shapes=("past_sequence=0:8:32",))
    component = pack.component("caption")
    graph = component.graph("decoder_step")
    backend = open_backend(pack, component, graph, backend="tensorrt")
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 2, 3, 4)).astype(np.float32)
    out = backend.run({"x": x, "past": np.zeros((2, 2, 0, 4), np.float32)}, keep={"present": "past"})
    cache = x
    for _ in range(5):
        step = rng.standard_normal((2, 2, 1, 4)).astype(np.float32)
        out = backend.run({"x": step}, keep={"present": "past"})
        cache = np.concatenate([cache, step], axis=2)
        np.testing.assert_allclose(out["y"], cache.sum(axis=2), rtol=1e-4, atol=1e-5)
    assert isinstance(backend, TensorrtBackend)
    backend.reorder_kept([1, 0])
    np.testing.assert_allclose(backend.fetch_kept("past"), cache[[1, 0]])
    backend.close()

