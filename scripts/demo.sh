#!/usr/bin/env bash
# The main job: sets edgemm up, then runs the offline reference-world demo (examples/reference_world):
# compiles the committed reference models into one int8 pack, generates a scripted video with a
# soundtrack, and streams both through edgemm (captions, a visual alert, an audio alert) against
# the ground truth. Extra arguments go to the demo, e.g. `bash scripts/demo.sh --fast`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/python -m examples.reference_world.demo "$@"
