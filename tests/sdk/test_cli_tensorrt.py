"""`edgemm build`, `edgemm lint` and the backends line of `edgemm info`, run as real subprocesses."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from edgemm.runtime import pack as pk
from edgemm.runtime.engines import derive_profile

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper  # noqa: E402


def edgemm_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "edgemm", *args], capture_output=True, text=True, timeout=120)


def _tensorrt_installed() -> bool:
    spec = importlib.util.find_spec("tensorrt")
    if spec is None:
        return False
    import tensorrt

    return hasattr(tensorrt, "Builder")


@pytest.mark.skipif(_tensorrt_installed(), reason="TensorRT is installed here; this checks the message a machine without it gets")
def test_build_without_tensorrt_is_one_line_saying_how_to_install(pack_dir: Path) -> None:
    out = edgemm_cli("build", str(pack_dir), "--version-compatible")
    assert out.returncode == 1
    assert out.stdout == ""
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert lines[0].startswith("edgemm: error: edgemm build needs the Python module 'tensorrt', which is not installed: on Jetson")
    for hint in ("python3-libnvinfer", "--system-site-packages", "edgemm[tensorrt]", "pypi.nvidia.com"):
        assert hint in lines[0]
    assert "Traceback" not in out.stderr


def test_lint_passes_a_clean_pack(pack_dir: Path) -> None:
    out = edgemm_cli("lint", str(pack_dir))
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "checked 1 graph against TensorRT 10.3, 11.0: 0 errors, 0 warnings"


def _add_bad_gpu_graph(pack_dir: Path) -> None:
    """An fp16/gpu encoder variant that goes through float64: TensorRT would refuse it."""
    nodes = [
        helper.make_node("Cast", ["x"], ["x64"], to=TensorProto.DOUBLE, name="upcast"),
        helper.make_node("Cast", ["x64"], ["h"], to=TensorProto.FLOAT16, name="downcast"),
        helper.make_node("Cast", ["h"], ["y"], to=TensorProto.FLOAT, name="out_cast"),
    ]
    graph = helper.make_graph(
        nodes,
        "bad",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    onnx.save(model, str(pack_dir / "caption" / "encoder.fp16-gpu.onnx"))
    pack = pk.load(pack_dir)
    component = pack.component("caption")
    bad = pk.graph_from_file(pack_dir, "caption/encoder.fp16-gpu.onnx", role="encoder", precision="fp16", target="gpu")
    pk.write_manifest(pack_dir, pack.manifest.with_component(dataclasses.replace(component, graphs=(*component.graphs, bad))))


def test_lint_reports_what_tensorrt_would_reject(pack_dir: Path) -> None:
    _add_bad_gpu_graph(pack_dir)
    out = edgemm_cli("lint", str(pack_dir), "--tensorrt", "10.3")
    assert out.returncode == 1
    assert "error: caption/encoder.fp16-gpu.onnx: [dtype] 1 place uses float64" in out.stdout
    assert "'upcast' (Cast) to=" in out.stdout
    assert out.stdout.strip().endswith("checked 1 graph against TensorRT 10.3: 1 error, 0 warnings")
    data = json.loads(edgemm_cli("lint", str(pack_dir), "--json").stdout)
    assert data["ok"] is False and data["graphs"] == ["caption/encoder.fp16-gpu.onnx"]
    assert [f["rule"] for f in data["findings"]] == ["dtype"]


def test_info_shows_the_backend_each_engine_graph_gets(pack_dir: Path) -> None:
    pack = pk.load(pack_dir)
    component = pack.component("caption")
    graph = component.graph("encoder")
    elsewhere = pk.DeviceKey("NVIDIA GeForce RTX 4090", "8.9", "10.13.0", "12.9")
    engine_file = pack_dir / "caption" / "engines" / elsewhere.slug / "encoder.engine"
    engine_file.parent.mkdir(parents=True)
    engine_file.write_bytes(b"not a real engine")
    engine = pk.Engine(
        graph=graph.file.path,
        file=pk.file_ref(pack_dir, f"caption/engines/{elsewhere.slug}/encoder.engine"),
        device=elsewhere,
        precision="fp32",
        profiles=(derive_profile(component, graph),),
        build_time_s=12.0,
        built_at="2026-01-01T00:00:00Z",
        version_compatible=True,
    )
    pk.write_manifest(pack_dir, pack.manifest.with_component(dataclasses.replace(component, engines=(engine,))))
    out = edgemm_cli("info", str(pack_dir))
    assert out.returncode == 0, out.stderr
    assert f"    {elsewhere.slug}  fp32  caption/engines/{elsewhere.slug}/encoder.engine  (from caption/encoder.onnx, version-compatible)" in out.stdout
    assert "  backends   on this machine (--backend auto)" in out.stdout
    assert "    encoder[fp32/any]: onnxruntime (" in out.stdout
    forced = edgemm_cli("info", str(pack_dir), "--backend", "tensorrt", "--json")
    backends = json.loads(forced.stdout)["components"][0]["backends"]
    assert backends["encoder[fp32/any]"].startswith("unavailable: ")
