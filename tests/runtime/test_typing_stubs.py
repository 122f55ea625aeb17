"""The type stubs mypy checks the TensorRT/CUDA code against are faithful to what they describe."""

from __future__ import annotations

import ast
import importlib.util
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CUDA_STUB = ROOT / "typings" / "cuda" / "bindings" / "runtime.pyi"


def _stub_declarations() -> tuple[dict[str, list[str]], dict[str, dict[str, int]], list[str]]:
    """(functions -> parameter names, enum classes -> members, other names) declared in the stub."""
    tree = ast.parse(CUDA_STUB.read_text())
    functions: dict[str, list[str]] = {}
    enums: dict[str, dict[str, int]] = {}
    names: list[str] = []
    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            functions[node.name] = [a.arg for a in node.args.args]
        elif isinstance(node, ast.ClassDef):
            if any(isinstance(b, ast.Attribute) and b.attr == "IntEnum" for b in node.bases):
                enums[node.name] = {
                    t.id: v.value.value  # type: ignore[union-attr]
                    for item in node.body
                    if isinstance(item, ast.Assign)
                    for t, v in [(item.targets[0], item)]
                    if isinstance(t, ast.Name)
                }
            else:
                names.append(node.name)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.append(node.target.id)
    return functions, enums, names


def test_cuda_stub_matches_the_installed_cuda_bindings() -> None:
    runtime = pytest.importorskip("cuda.bindings.runtime", reason="cuda-python is not installed (pip install 'edgemm[dev]')")
    functions, enums, names = _stub_declarations()
    assert {"cudaMalloc", "cudaMallocHost", "cudaMemcpyAsync", "cudaStreamSynchronize", "cudaFree", "cudaGetDeviceProperties"} <= set(functions)
    for name, params in functions.items():
        real = getattr(runtime, name, None)
        assert real is not None, f"{name} is declared in the stub but cuda.bindings.runtime has no such function"
        # the bindings' docstrings start with the C-like signature: "cudaMemcpyAsync(dst, src, size_t count, kind: cudaMemcpyKind, stream)"
        signature = (real.__doc__ or "").split("\n", 1)[0]
        match = re.match(rf"{name}\((.*)\)", signature)
        assert match, f"{name}: unexpected docstring {signature!r}"
        documented = [re.split(r"[\s:]+", p.strip().split(":")[0])[-1] for p in match.group(1).split(",") if p.strip()]
        assert documented == params, f"{name}: the stub says {params}, cuda.bindings says {documented}"
    for enum_name, members in enums.items():
        real_enum = getattr(runtime, enum_name)
        for member, value in members.items():
            assert int(getattr(real_enum, member)) == value, f"{enum_name}.{member}"
    for name in names:
        assert hasattr(runtime, name), f"{name} is declared in the stub but missing from cuda.bindings.runtime"
    prop_fields = [n.target.id for c in ast.parse(CUDA_STUB.read_text()).body if isinstance(c, ast.ClassDef) and c.name == "cudaDeviceProp" for n in c.body if isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name)]
    props = runtime.cudaDeviceProp()
    for field in prop_fields:
        assert hasattr(props, field), f"cudaDeviceProp.{field}"


def _typing_stubs_module():
    spec = importlib.util.spec_from_file_location("typing_stubs", ROOT / "scripts" / "typing_stubs.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (
            "    def get_workspace_size(self, in: list[PluginTensorDesc], out: list[PluginTensorDesc]) -> int:",
            "    def get_workspace_size(self, in_: list[PluginTensorDesc], out: list[PluginTensorDesc]) -> int:",
        ),
        (
            "    def add_scale_nd(self, input: ITensor, mode: ScaleMode, shift: Weights = None, scale: Weights = None, power: Weights = None, channel_axis: int) -> IScaleLayer:",
            "    def add_scale_nd(self, input: ITensor, mode: ScaleMode, shift: Weights = None, scale: Weights = None, power: Weights = None, channel_axis: int = ...) -> IScaleLayer:",
        ),
        ("    def set_shape(self, input: str, min: Dims, opt: Dims, max: Dims) -> None:", None),
        ("    def f(self, a: int = 1, *, b: dict[str, int]) -> None:", None),
    ],
)
def test_tensorrt_stub_repair(line: str, expected: str | None) -> None:
    repaired = _typing_stubs_module().repair_signature(line)
    assert repaired == (expected or line)
    ast.parse(repaired.strip() + " ...")
