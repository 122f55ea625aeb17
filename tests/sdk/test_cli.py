"""The edgemm command line, run as a real subprocess (exit codes, stdout, stderr)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import edgemm


def edgemm_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "edgemm", *args], capture_output=True, text=True, timeout=120)


def test_version() -> None:
    out = edgemm_cli("--version")
    assert out.returncode == 0
    assert out.stdout.strip() == f"edgemm {edgemm.__version__}"


def test_info_on_valid_pack(pack_dir: Path) -> None:
    out = edgemm_cli("info", str(pack_dir))
    assert out.returncode == 0, out.stderr
    assert "component caption  task=caption  family=test-linear" in out.stdout
    assert "encoder[fp32/any]  caption/encoder.onnx" in out.stdout
    assert "PASS  encoder[fp32/any] vs torch fp32: max_abs_diff=1e-06 (<= 0.0001)  (n=4)" in out.stdout
    assert "verified 2 files: paths, sizes and sha256, graph inputs/outputs" in out.stdout


def test_info_json(pack_dir: Path) -> None:
    out = edgemm_cli("info", str(pack_dir), "--json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["components"][0]["graphs"][0]["variant"] == "encoder[fp32/any]"
    assert data["verified"] == {"files": 2, "sha256": True}


def test_info_on_corrupt_pack_prints_one_line(pack_dir: Path) -> None:
    graph = pack_dir / "caption" / "encoder.onnx"
    data = bytearray(graph.read_bytes())
    data[-1] ^= 0xFF
    graph.write_bytes(bytes(data))
    out = edgemm_cli("info", str(pack_dir))
    assert out.returncode == 1
    assert out.stdout == ""
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert lines[0].startswith("edgemm: error: pack ")
    assert "caption/encoder.onnx sha256 should be" in lines[0]


def test_debug_shows_traceback(tmp_path: Path) -> None:
    out = edgemm_cli("--debug", "info", str(tmp_path / "missing"))
    assert out.returncode == 1
    assert "Traceback (most recent call last)" in out.stderr
    assert "PackNotFoundError" in out.stderr


def test_usage_errors_exit_2() -> None:
    assert edgemm_cli().returncode == 2
    out = edgemm_cli("info")
    assert out.returncode == 2
    assert "PACK" in out.stderr
    assert edgemm_cli("frobnicate").returncode == 2


def test_doctor_json_parses() -> None:
    out = edgemm_cli("doctor", "--json")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["edgemm"] == edgemm.__version__
    assert "CPUExecutionProvider" in report["onnxruntime"]["providers"]
    assert set(report["optional"]) >= {"torch", "transformers", "tensorrt", "cuda-python", "sounddevice", "paho-mqtt"}
    import onnx  # installed for the tests: doctor must see it with its real version

    assert report["optional"]["onnx"] == {**report["optional"]["onnx"], "installed": True, "version": onnx.__version__}
    assert isinstance(report["gpus"]["devices"], list)
    assert {"ffmpeg", "gstreamer"} <= set(report["opencv"]) or report["opencv"]["installed"] is False


def test_doctor_text() -> None:
    out = edgemm_cli("doctor")
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith(f"edgemm {edgemm.__version__}\n")
    for heading in ("optional modules:", "gpus:", "audio inputs:", "opencv:"):
        assert heading in out.stdout
