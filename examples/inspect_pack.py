"""Load a model pack, verify it, and print what it holds.

    python examples/inspect_pack.py packs/home-cam
"""

from __future__ import annotations

import sys

import edgemm


def main(path: str) -> int:
    try:
        pack = edgemm.load(path)
    except edgemm.errors.EdgemmError as exc:
        print(f"cannot use {path}: {exc}", file=sys.stderr)
        return 1
    for component in pack.components:
        print(f"{component.name}: {component.task} ({component.family}) from {component.provenance.source}")
        for graph in component.graphs:
            print(f"  {graph.variant:<28} {graph.file.path}")
        for check in component.validation:
            print(f"  {'pass' if check.passed else 'FAIL'} {check.subject} vs {check.reference}: {check.metrics}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    sys.exit(main(sys.argv[1]))
