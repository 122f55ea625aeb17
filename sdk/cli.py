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


def _cmd_compile(args: argparse.Namespace) -> int:
    try:
        import torch  # noqa: F401
        import transformers  # noqa: F401
    except ImportError as exc:
        from edgemm.runtime.errors import DependencyMissingError

        raise DependencyMissingError(exc.name or "torch", "edgemm compile", "pip install 'edgemm[compile]'") from exc
    from edgemm.compile.caption import compile_captioner
    from edgemm.compile.config import CompileConfig, ExportConfig, LoadConfig, ValidateConfig, VariantConfig
    from edgemm.runtime.errors import CompileError

    precisions = list(dict.fromkeys(args.precision or ["fp32"]))
    targets = list(dict.fromkeys(args.target or ["cpu"]))
    variants = []
    for precision in precisions:
        if precision == "fp32":
            continue
        usable = [t for t in targets if not (precision == "fp16" and t == "cpu")]
        if not usable:
            raise CompileError("--precision fp16 is for GPUs: add --target tensorrt (the CPU backend runs int8 or fp32)")
        variants += [VariantConfig(precision, target) for target in usable]
    config = CompileConfig(
        load=LoadConfig(args.model, revision=args.revision, local_files_only=args.offline),
        out=args.out,
        component=args.name,
        export=ExportConfig(opset=args.opset, prompt=args.prompt, max_new_tokens=args.max_new_tokens),
        variants=tuple(variants),
        calibration=args.calibration,
        num_calibration=args.calibration_images,
        validate=ValidateConfig(num_images=args.validation_images, min_agreement=args.min_agreement),
    )
    pack = compile_captioner(config, show_progress=not args.quiet)
    component = pack.component(config.component or "caption")
    print(f"wrote component '{component.name}' ({component.family}) to {pack.path}: " + ", ".join(g.variant for g in component.graphs))
    return EXIT_OK


def _cmd_caption(args: argparse.Namespace) -> int:
    from edgemm.runtime.backends import OrtOptions
    from edgemm.runtime.pack import load

    options = OrtOptions(providers=tuple(args.provider) if args.provider else None, intra_op_threads=args.threads)
    pack = load(args.pack, precision=args.precision, options=options)
    captioner = pack.captioner(args.component)
    if not args.json:
        print(f"# {captioner.describe()}", file=sys.stderr)
    failures = 0
    for start in range(0, len(args.images), args.batch):
        chunk = args.images[start : start + args.batch]
        try:
            captions = captioner.caption_batch(chunk, prompt=args.prompt, num_beams=args.beams, max_new_tokens=args.max_new_tokens)
        except EdgemmError as exc:
            if len(chunk) > 1:
                raise
            failures += 1
            print(f"edgemm: error: {exc}", file=sys.stderr)
            continue
        for image, caption in zip(chunk, captions):
            if args.json:
                record = {
                    "image": image,
                    "text": caption.text,
                    "latency_ms": round(caption.latency_ms, 3),
                    "tokens": list(caption.tokens),
                    "precision": captioner.precision,
                    "backend": captioner.encoder.name,
                }
                if caption.score is not None:
                    record["score"] = caption.score
                print(json.dumps(record), flush=True)
            else:
                print(f"{image}: {caption.text}  ({caption.latency_ms:.0f} ms)", flush=True)
    return EXIT_ERROR if failures else EXIT_OK


def _format_event(event: object) -> str:
    from edgemm.runtime.alerts import AlertEvent
    from edgemm.runtime.events import Caption, event_to_dict

    if isinstance(event, Caption):
        return f"[{event.time_s or 0.0:8.1f}s] {event.source}: {event.text}  ({event.latency_ms:.0f} ms)"
    if isinstance(event, AlertEvent):
        where = f"  -> {event.snapshot}" if event.snapshot else ""
        return f"[{event.time_s:8.1f}s] {event.source}: ALERT {event.alert.name} ({event.score:.2f}){where}"
    record = event_to_dict(event)
    kind = record.pop("type")
    where = record.pop("source", "")
    when = record.pop("time_s", 0.0) or 0.0
    record.pop("id", None)
    details = ", ".join(f"{k}={v}" for k, v in record.items() if v is not None)
    return f"[{when:8.1f}s] {where}: {kind.upper().replace('_', ' ')} {details}".rstrip()


def _print_stats(stats: object) -> None:
    from edgemm.runtime.session import SessionStats

    assert isinstance(stats, SessionStats)
    lines = [f"ran {stats.running_s:.1f} s: {stats.captions} captions ({stats.suppressed} identical suppressed)"]
    for name, source in stats.sources.items():
        parts = ", ".join(f"{k} {v:.1f}" if isinstance(v, float) else f"{k} {v}" for k, v in source.items())
        lines.append(f"  source {name}: {parts}")
    for component, latency in stats.latency_ms.items():
        lines.append(f"  {component} latency: p50 {latency['p50']:.0f} ms, p95 {latency['p95']:.0f} ms")
    for name, sink in stats.sinks.items():
        parts = ", ".join(f"{k} {v}" for k, v in sink.items() if v not in (None, ""))
        lines.append(f"  sink {name}: {parts}")
    print("\n".join(lines), file=sys.stderr)


def _parse_alert(text: str, modality: str) -> object:
    """``"a person lying on the floor:0.3"`` -> Alert(text, threshold=0.3); the threshold is optional."""
    from edgemm.runtime.alerts import Alert

    prompt, colon, tail = text.rpartition(":")
    try:
        threshold = float(tail) if colon else None
    except ValueError:
        threshold = None  # the colon belongs to the text
    if threshold is None:
        return Alert(text, modality=modality)  # type: ignore[arg-type]
    return Alert(prompt, threshold=threshold, modality=modality)  # type: ignore[arg-type]


def _cmd_run(args: argparse.Namespace) -> int:
    import signal
    import threading

    from edgemm.runtime.backends import OrtOptions
    from edgemm.runtime.events import event_to_dict
    from edgemm.runtime.pack import load
    from edgemm.runtime.session import open_session

    def terminate(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, terminate)
    alerts = [_parse_alert(text, "image") for text in args.alert or ()]
    alerts += [_parse_alert(text, "audio") for text in args.audio_alert or ()]
    options = OrtOptions(providers=tuple(args.provider) if args.provider else None, intra_op_threads=args.threads)
    pack = load(args.pack, precision=args.precision, options=options)
    session = open_session(
        pack,
        args.camera,
        caption_every_s=args.caption_every,
        on_change_only=not args.every_interval,
        change_threshold=args.change_threshold,
        repeat_identical=args.repeat_identical,
        sinks=args.sink or (),
        realtime=not args.fast,
        loop=args.loop,
        source_timeout_s=args.timeout,
        alerts=alerts,
        alerts_max_fps=args.alert_fps,
        events_dir=args.events_dir,
    )
    if args.duration is not None:
        timer = threading.Timer(args.duration, session.close)
        timer.daemon = True
        timer.start()
    models = [m.describe() for m in (session.captioner, session.scorer) if m is not None and hasattr(m, "describe")]
    print(f"# {'; '.join(models)}; cameras: {', '.join(str(c) for c in args.camera)}", file=sys.stderr)
    try:
        for event in session.events():
            if args.json:
                print(json.dumps(event_to_dict(event)), flush=True)
            else:
                print(_format_event(event), flush=True)
    except KeyboardInterrupt:
        print("edgemm: stopping", file=sys.stderr)
    finally:
        session.close()
        _print_stats(session.stats())
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

    comp = sub.add_parser("compile", help="compile a Hugging Face checkpoint into a pack component")
    comp.add_argument("model", metavar="MODEL", help="a local checkpoint directory or a hub id")
    comp.add_argument("--out", required=True, metavar="PACK", help="pack directory (created; other components are kept)")
    comp.add_argument("--precision", action="append", choices=["fp32", "fp16", "int8"], help="variants to build besides fp32 (repeatable)")
    comp.add_argument("--target", action="append", choices=["cpu", "tensorrt"], help="backends the variants are for (repeatable; default cpu)")
    comp.add_argument("--calibration", metavar="DIR", help="folder of your images for int8 calibration and validation")
    comp.add_argument("--calibration-images", type=int, default=16, metavar="N", help="images used for calibration (default 16)")
    comp.add_argument("--validation-images", type=int, default=8, metavar="N", help="images validated on (default 8)")
    comp.add_argument("--min-agreement", type=float, default=0.9, metavar="F", help="smallest token agreement of a variant with fp32 (default 0.9)")
    comp.add_argument("--prompt", help='default text prompt (BLIP: "a photography of"; Florence-2: "<DETAILED_CAPTION>")')
    comp.add_argument("--max-new-tokens", type=int, help="default caption length limit (default: the model's)")
    comp.add_argument("--name", help="component name in the pack (default: caption)")
    comp.add_argument("--revision", help="hub revision (branch, tag or commit)")
    comp.add_argument("--offline", action="store_true", help="never use the network (local files only)")
    comp.add_argument("--opset", type=int, default=18, help="ONNX opset (default 18)")
    comp.add_argument("--quiet", action="store_true", help="no progress output")
    comp.set_defaults(func=_cmd_compile)

    cap = sub.add_parser("caption", help="caption image files with a pack")
    cap.add_argument("pack", metavar="PACK")
    cap.add_argument("images", metavar="IMAGE", nargs="+")
    cap.add_argument("--json", action="store_true", help="one JSON object per line: image, text, latency_ms, tokens, ...")
    cap.add_argument("--beams", type=int, help="beam search width (default: the model's)")
    cap.add_argument("--max-new-tokens", type=int, help="caption length limit")
    cap.add_argument("--prompt", help="text prompt (BLIP) or task (Florence-2)")
    cap.add_argument("--precision", default="auto", choices=["auto", "fp32", "fp16", "int8"])
    cap.add_argument("--provider", action="append", help="ONNX Runtime execution provider (cpu, cuda, tensorrt; repeatable)")
    cap.add_argument("--threads", type=int, default=0, help="ONNX Runtime intra-op threads (0: automatic)")
    cap.add_argument("--batch", type=int, default=1, help="images per batch (default 1)")
    cap.add_argument("--component", help="caption component to use, when the pack has several")
    cap.set_defaults(func=_cmd_caption)

    run = sub.add_parser("run", help="stream cameras through a pack and print events")
    run.add_argument("pack", metavar="PACK")
    run.add_argument("--camera", action="append", required=True, metavar="URI", help="rtsp://, http:// (MJPEG), file://, a path, a device index, v4l2://, csi://N, gst:// (repeatable)")
    run.add_argument("--caption-every", type=float, default=5.0, metavar="S", help="at most one caption per camera every S seconds (default 5)")
    run.add_argument("--every-interval", action="store_true", help="caption every interval even when the scene did not change")
    run.add_argument("--change-threshold", type=float, default=0.06, metavar="X", help="scene change (0..1) that triggers a caption (default 0.06)")
    run.add_argument("--repeat-identical", action="store_true", help="emit a caption even when it equals the previous one")
    run.add_argument("--sink", action="append", metavar="SPEC", help="- | FILE.jsonl | mqtt://host:port/topic | http(s)://url (repeatable)")
    run.add_argument("--alert", action="append", metavar="TEXT[:THRESHOLD]", help='zero-shot visual alert, e.g. "a person lying on the floor:0.3" (repeatable)')
    run.add_argument("--audio-alert", action="append", metavar="TEXT[:THRESHOLD]", help="zero-shot audio alert (needs microphone input: not in this version)")
    run.add_argument("--alert-fps", type=float, default=2.0, metavar="F", help="frames per second per camera scored for alerts (default 2)")
    run.add_argument("--events-dir", metavar="DIR", help="write a JPEG snapshot of each alert here")
    run.add_argument("--json", action="store_true", help="print events as JSON lines")
    run.add_argument("--duration", type=float, metavar="S", help="stop after S seconds")
    run.add_argument("--fast", action="store_true", help="read files as fast as the model goes (no frame dropped) instead of at their native rate")
    run.add_argument("--loop", action="store_true", help="replay files from the start")
    run.add_argument("--timeout", type=float, default=10.0, metavar="S", help="seconds a camera may take to open (default 10)")
    run.add_argument("--precision", default="auto", choices=["auto", "fp32", "fp16", "int8"])
    run.add_argument("--provider", action="append", help="ONNX Runtime execution provider (cpu, cuda, tensorrt; repeatable)")
    run.add_argument("--threads", type=int, default=0, help="ONNX Runtime intra-op threads (0: automatic)")
    run.set_defaults(func=_cmd_run)

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
