"""Installs the TensorRT type stubs that mypy checks edgemm's TensorRT code against.

`tensorrt-stubs` cannot be a plain dev dependency: it pins the real `tensorrt` wheel, which only
NVIDIA's index (pypi.nvidia.com) serves, so `pip install tensorrt-stubs` fails wherever that index
is unreachable (CI). It also puts a stub-only `tensorrt/` directory into site-packages, which would
make `import tensorrt` succeed as an empty namespace package. So this script installs it without
dependencies into `.venv/typing-stubs` (on mypy's path through pyproject.toml, never on Python's),
and repairs the two kinds of syntax error its generator (pybind11-stubgen) leaves in
`tensorrt_bindings/tensorrt.pyi`: parameters named after a keyword (`in`), and a parameter without
a default after parameters with one. Anything else unparsable fails loudly.

Usage: python scripts/typing_stubs.py   (idempotent; re-installs when the pinned version changes)
"""

from __future__ import annotations

import ast
import keyword
import re
import subprocess
import sys
from pathlib import Path

VERSION = "10.13.0.35.1"
ROOT = Path(__file__).resolve().parent.parent
TARGET = ROOT / ".venv" / "typing-stubs"
STAMP = TARGET / ".edgemm-stubs"

_DEF = re.compile(r"^(?P<head>\s*def \w+\()(?P<params>.*)(?P<tail>\)\s*(->.*)?:\s*)$")


def _split_params(text: str) -> list[str]:
    """Splits a parameter list at top-level commas (not inside brackets)."""
    parts, depth, current = [], 0, []
    for char in text:
        if char in "([{":
            depth += 1
        elif char in ")]}":
            depth -= 1
        if char == "," and depth == 0:
            parts.append("".join(current).strip())
            current = []
        else:
            current.append(char)
    if "".join(current).strip():
        parts.append("".join(current).strip())
    return parts


def repair_signature(line: str) -> str:
    """Fixes one `def` line: keyword parameter names get a trailing `_`, and a parameter without
    a default that follows one with a default gets `= ...` (what a stub may write for any default)."""
    match = _DEF.match(line)
    if not match:
        return line
    params = _split_params(match["params"])
    fixed, seen_default = [], False
    for param in params:
        name = re.split(r"[:=]", param, maxsplit=1)[0].strip()
        if keyword.iskeyword(name):
            param = name + "_" + param[len(name) :]
        if param.startswith("*"):
            seen_default = False  # keyword-only parameters may go without defaults
        elif "=" in param:
            seen_default = True
        elif seen_default:
            param += " = ..."
        fixed.append(param)
    return f"{match['head']}{', '.join(fixed)}{match['tail']}"


def repair(path: Path) -> int:
    """Repairs a stub file in place; returns the number of lines changed."""
    lines = path.read_text(encoding="utf-8").split("\n")
    changed = 0
    for i, line in enumerate(lines):
        new = repair_signature(line)
        if new != line:
            lines[i] = new
            changed += 1
    text = "\n".join(lines)
    ast.parse(text, filename=str(path))  # anything still broken is a new kind of error: stop here
    path.write_text(text, encoding="utf-8")
    return changed


def main() -> int:
    if STAMP.is_file() and STAMP.read_text().strip() == VERSION:
        return 0
    print(f"typing stubs: pip install --no-deps --target {TARGET} tensorrt-stubs=={VERSION}")
    command = [sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check", "--no-deps", "--upgrade",
               "--target", str(TARGET), f"tensorrt-stubs=={VERSION}"]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        sys.stderr.write(result.stdout + result.stderr)
        print("typing stubs: pip install failed (output above)", file=sys.stderr)
        return 1
    total = 0
    for stub in sorted(TARGET.glob("tensorrt*/**/*.pyi")):
        total += repair(stub)
    print(f"typing stubs: repaired {total} generated signatures")
    STAMP.write_text(VERSION + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
