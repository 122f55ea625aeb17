"""The distribution: a real wheel, installed into a fresh virtual environment, imports and runs."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest

import edgemm

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(REPO)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (path,) = out.glob("edgemm-*.whl")
    return path


def test_wheel_maps_folders_onto_one_namespace(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    for expected in (
        "edgemm/__init__.py",
        "edgemm/cli.py",
        "edgemm/py.typed",
        "edgemm/runtime/pack.py",
        "edgemm/runtime/backends/ort.py",
        "edgemm/compile/__init__.py",
    ):
        assert expected in names
    assert not any(n.startswith(("sdk/", "runtime/", "compile/", "tests/")) for n in names)
    metadata = next(n for n in names if n.endswith(".dist-info/METADATA"))
    text = zipfile.ZipFile(wheel).read(metadata).decode()
    assert f"Version: {edgemm.__version__}" in text
    requires = [line for line in text.splitlines() if line.startswith("Requires-Dist:") and "extra ==" not in line]
    # The base install is what a device needs (Pillow: images are resized exactly as the Hugging Face
    # processors resize them); OpenCV is left to the system or the `opencv` extra.
    assert sorted(r.split()[1].split(">")[0] for r in requires) == ["numpy", "onnxruntime", "pillow", "tokenizers"]


def test_wheel_installs_and_runs_in_fresh_venv(wheel: Path, tmp_path: Path) -> None:
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    python = env_dir / "bin" / "python"
    subprocess.run([python, "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)], check=True, timeout=300)
    # Dependencies (numpy, onnxruntime) come from the test environment's site-packages; edgemm
    # itself must come from the fresh venv.
    env = {**os.environ, "PYTHONPATH": sysconfig.get_paths()["purelib"]}
    code = "import edgemm, edgemm.runtime, edgemm.runtime.backends; print(edgemm.runtime.__file__)"
    out = subprocess.run([python, "-c", code], capture_output=True, text=True, check=True, env=env, cwd=tmp_path)
    assert Path(out.stdout.strip()).is_relative_to(env_dir)
    cli = subprocess.run([env_dir / "bin" / "edgemm", "--version"], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert cli.returncode == 0
    assert cli.stdout.strip() == f"edgemm {edgemm.__version__}"
