#!/usr/bin/env bash
# The main job. Until the offline reference-world demo exists (issue "Reference world"), it sets
# edgemm up and reports what this machine offers it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/edgemm doctor
