"""The runtime stays light: importing edgemm never pulls in torch or transformers."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ("torch", "transformers", "onnx", "tensorrt", "sounddevice", "paho")


@pytest.mark.parametrize("module", ["edgemm", "edgemm.runtime", "edgemm.runtime.backends", "edgemm.cli", "edgemm.errors"])
def test_import_leaves_heavy_modules_unloaded(module: str) -> None:
    code = (
        f"import json, sys, {module}\n"
        f"print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r})))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []


def test_runtime_source_never_imports_torch_or_transformers() -> None:
    # Also lazily: the runtime folder must not mention them in any import statement.
    import ast
    from pathlib import Path

    import edgemm.runtime

    root = Path(edgemm.runtime.__file__).parent
    offenders = []
    for path in root.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            offenders += [f"{path.name}: {n}" for n in names if n.split(".")[0] in ("torch", "transformers", "edgemm")]
    assert offenders == []  # 'edgemm' too: the runtime imports neither the SDK nor compile


def test_compile_is_lazy_attribute() -> None:
    code = "import sys, edgemm; assert 'edgemm.compile' not in sys.modules; edgemm.compile; print('edgemm.compile' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "True"
