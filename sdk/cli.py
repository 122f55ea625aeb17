"""The ``edgemm`` command line.

Exit codes: 0 success, 1 a runtime error (one line on stderr; ``--debug`` shows the traceback),
2 a usage error.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import traceback
from collections.abc import Callable, Sequence

from edgemm.runtime._version import __version__
from edgemm.runtime.errors import EdgemmError

__all__ = ["main"]

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def _format_metric(name: str, value: float, threshold: float | None) -> str:
    text = f"{name}={value:.4g}"
    if threshold is not None:
        bound = "<=" if any(k in name for k in ("diff", "error", "distance")) else ">="
        text += f" ({bound} {threshold:.4g})"
    return text


def _cmd_info(args: argparse.Namespace) -> int:
    from edgemm.runtime import pack as pack_module

    pack = pack_module.load(args.pack, check_hashes=not args.no_hash)
    summary = dict(pack_module.describe(pack.manifest))
    files = [ref for c in pack.components for ref in c.referenced_files()]
    summary["path"] = str(pack.path)
    summary["verified"] = {"files": len(files), "sha256": not args.no_hash}
    if args.json:
        print(json.dumps(summary, indent=2))
        return EXIT_OK
    total = sum(ref.size_bytes for ref in files)
    n = len(pack.components)
    print(f"pack {pack.path}  (schema {pack.manifest.schema_version}, {n} component{'s' * (n != 1)}, {_size(total)})")
    for comp in pack.components:
        print(f"\ncomponent {comp.name}  task={comp.task}  family={comp.family}")
        print(f"  source     {comp.provenance.source}  ({comp.provenance.architecture}, edgemm {comp.provenance.edgemm_version})")
        print("  graphs")
        width = max(len(g.variant) for g in comp.graphs)
        for g in comp.graphs:
            quant = f"  {g.quantization}" if g.quantization else ""
            print(f"    {g.variant:<{width}}  {g.file.path}  {_size(g.file.size_bytes)}{quant}")
        if comp.engines:
            print("  engines")
            for e in comp.engines:
                print(f"    {e.device.slug}  {e.precision}  {e.file.path}  (from {e.graph})")
        else:
            print("  engines    none (run `edgemm build` on the target device to add TensorRT engines)")
        if comp.validation:
            print("  validation")
            for v in comp.validation:
                metrics = ", ".join(_format_metric(k, val, v.thresholds.get(k)) for k, val in v.metrics.items())
                print(f"    {'PASS' if v.passed else 'FAIL'}  {v.subject} vs {v.reference}: {metrics}  (n={v.num_samples})")
        else:
            print("  validation none recorded")
    how = "sizes and sha256" if not args.no_hash else "sizes (sha256 skipped)"
    print(f"\nverified {len(files)} files: paths, {how}, graph inputs/outputs")
    return EXIT_OK


def _cmd_doctor(args: argparse.Namespace) -> int:
    from edgemm import doctor

    report = doctor.collect()
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(doctor.format_report(report))
    return EXIT_OK


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edgemm",
        description="Compile multimodal models for NVIDIA edge GPUs and run camera + microphone through them.",
    )
    parser.add_argument("--version", action="version", version=f"edgemm {__version__}")
    parser.add_argument("--debug", action="store_true", help="show the full traceback when a command fails")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    info = sub.add_parser("info", help="summarise and verify a model pack")
    info.add_argument("pack", metavar="PACK", help="pack directory (holding manifest.json)")
    info.add_argument("--json", action="store_true", help="print the summary as JSON")
    info.add_argument("--no-hash", action="store_true", help="skip sha256 checks (sizes, paths and graph io are still checked)")
    info.set_defaults(func=_cmd_info)

    doctor = sub.add_parser("doctor", help="report what this machine offers edgemm")
    doctor.add_argument("--json", action="store_true", help="print the report as JSON")
    doctor.set_defaults(func=_cmd_doctor)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the command line; returns the exit code."""
    parser = _build_parser()
    args = parser.parse_args(argv)
    func: Callable[[argparse.Namespace], int] | None = getattr(args, "func", None)
    if func is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        return func(args)
    except EdgemmError as exc:
        if args.debug:
            traceback.print_exc()
        print(f"edgemm: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except BrokenPipeError:
        # The reader went away (edgemm ... | head): not an error worth a message.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("edgemm: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if args.debug:
            traceback.print_exc()
        print(
            f"edgemm: internal error: {type(exc).__name__}: {exc} (re-run with --debug for the traceback, and please report it)",
            file=sys.stderr,
        )
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
