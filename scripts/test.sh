#!/usr/bin/env bash
# The test command: set-up, lint (ruff), type check (mypy), then the test suite (pytest).
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -m slow` or `bash scripts/test.sh -k pack`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

echo "== ruff"
.venv/bin/ruff check .

echo "== mypy"
# mypy checks the TensorRT code against tensorrt-stubs, which pip cannot install as a dependency.
.venv/bin/python scripts/typing_stubs.py
# The source folders map onto one namespace (sdk -> edgemm, runtime -> edgemm.runtime, ...);
# mypy cannot follow setuptools' editable mapping, so it checks a copy laid out as installed.
tree=$(mktemp -d)
trap 'rm -rf "$tree"' EXIT
mkdir -p "$tree/edgemm"
cp -r sdk/. "$tree/edgemm/"
cp -r runtime "$tree/edgemm/runtime"
cp -r compile "$tree/edgemm/compile"
(cd "$tree" && "$OLDPWD/.venv/bin/mypy" --config-file "$OLDPWD/pyproject.toml" --cache-dir "$OLDPWD/.mypy_cache" -p edgemm) \
    | sed -e "s#^edgemm/runtime/#runtime/#" -e "s#^edgemm/compile/#compile/#" -e "s#^edgemm/#sdk/#"

echo "== pytest"
.venv/bin/python -m pytest "$@"
