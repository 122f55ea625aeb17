"""The ``edgemm`` command line.

Exit codes: 0 success, 1 a runtime error (one line on stderr; ``--debug`` shows the traceback),
2 a usage error.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from edgemm.runtime._version import __version__
from edgemm.runtime.errors import EdgemmError

if TYPE_CHECKING:
    from edgemm.runtime.alerts import Alert

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
    backends = {comp.name: _backend_choices(comp, args.backend) for comp in pack.components}
    for entry in summary["components"]:
        entry["backends"] = backends[entry["name"]]
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
                extra = "".join(
                    [f", DLA core {e.dla_core}" if e.dla_core is not None else "", ", version-compatible" if e.version_compatible else ""]
                )
                print(f"    {e.device.slug}  {e.precision}  {e.file.path}  (from {e.graph}{extra})")
            print(f"  backends   on this machine (--backend {args.backend})")
            for variant, choice in backends[comp.name].items():
                print(f"    {variant}: {choice}")
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


def _backend_choices(component: object, backend: str) -> dict[str, str]:
    """For each graph that has engines: the backend it would run on here, and why."""
    from edgemm.runtime.backends import choose_backend
    from edgemm.runtime.pack import Component

    assert isinstance(component, Component)
    choices: dict[str, str] = {}
    with_engines = {e.graph for e in component.engines}
    for graph in component.graphs:
        if graph.file.path not in with_engines:
            continue
        try:
            choices[graph.variant] = choose_backend(component, graph, backend).describe()
        except EdgemmError as exc:
            choices[graph.variant] = f"unavailable: {exc}"
    return choices


def _cmd_build(args: argparse.Namespace) -> int:
    from edgemm.compile.build import BuildConfig, build_engines

    config = BuildConfig(
        pack=args.pack,
        components=tuple(args.component or ()),
        precisions=tuple(dict.fromkeys(args.precision)) if args.precision else None,
        shapes=tuple(args.shapes or ()),
        max_batch=args.max_batch,
        max_sequence=args.max_sequence,
        max_past=args.max_past,
        workspace_gb=args.workspace_gb,
        optimization_level=args.optimization_level,
        dla_core=args.dla,
        timing_cache=args.timing_cache,
        force=args.force,
        device_index=args.device,
        version_compatible=args.version_compatible,
    )
    report = build_engines(config, show_progress=not args.quiet)
    if args.json:
        from edgemm.runtime._serde import to_json

        print(json.dumps({
            "device": to_json(report.device),
            "timing_cache": report.timing_cache,
            "engines": [{"component": b.component, "reused": b.reused, **to_json(b.engine)} for b in report.engines],
            "lint": [f.format() for f in report.lint.findings],
        }, indent=2))
        return EXIT_OK
    for built in report.engines:
        print(built.describe())
    print(f"timing cache: {report.timing_cache}")
    return EXIT_OK


def _cmd_lint(args: argparse.Namespace) -> int:
    from edgemm.runtime.pack import load
    from edgemm.runtime.tensorrt_lint import DEFAULT_TENSORRT_VERSIONS, lint_pack

    pack = load(args.pack, check_hashes=False)
    components = [pack.component(name) for name in args.component] if args.component else None
    report = lint_pack(pack, components=components, versions=tuple(args.tensorrt or DEFAULT_TENSORRT_VERSIONS))
    if args.json:
        print(json.dumps({
            "ok": report.ok,
            "versions": list(report.versions),
            "graphs": list(report.graphs),
            "findings": [{"severity": f.severity, "rule": f.rule, "graph": f.graph, "versions": list(f.versions), "message": f.message} for f in report.findings],
        }, indent=2))
    else:
        for finding in report.findings:
            print(finding.format())
        print(report.summary())
    return EXIT_OK if report.ok else EXIT_ERROR


def _cmd_doctor(args: argparse.Namespace) -> int:
    from edgemm import doctor

    report = doctor.collect(args.pack, args.backend)
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
    from edgemm.compile.config import CompileConfig, ExportConfig, LoadConfig, ValidateConfig, VariantConfig
    from edgemm.compile.dispatch import compile_model, component_name, model_task
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
    task = model_task(args.model, revision=args.revision, local_files_only=args.offline)
    prompts = list(args.prompt or [])
    if args.prompts:
        prompts += _read_prompts(args.prompts)
    if task == "caption":
        if len(prompts) > 1 or args.prompts or args.background or args.no_text_tower:
            raise CompileError(
                "captioners take one --prompt (the text the caption starts from); --prompts, --background and "
                "--no-text-tower are for zero-shot models (CLIP, SigLIP, CLAP)"
            )
        export = ExportConfig(opset=args.opset, prompt=prompts[0] if prompts else None, max_new_tokens=args.max_new_tokens)
    elif task == "asr":
        if prompts or args.background or args.no_text_tower:
            raise CompileError("Whisper takes no --prompt, --prompts, --background or --no-text-tower (the language and task are chosen when transcribing)")
        export = ExportConfig(opset=args.opset, max_new_tokens=args.max_new_tokens)
    else:
        if args.max_new_tokens is not None:
            raise CompileError("--max-new-tokens is for captioners; zero-shot models generate no text")
        export = ExportConfig(
            opset=args.opset,
            prompts=tuple(dict.fromkeys(prompts)),
            background_prompts=tuple(args.background) if args.background else None,
            text_tower=not args.no_text_tower,
        )
    config = CompileConfig(
        load=LoadConfig(args.model, revision=args.revision, local_files_only=args.offline),
        out=args.out,
        component=args.name,
        export=export,
        variants=tuple(variants),
        calibration=args.calibration,
        num_calibration=args.calibration_images,
        validate=ValidateConfig(num_images=args.validation_images, min_agreement=args.min_agreement),
    )
    pack = compile_model(config, show_progress=not args.quiet)
    component = pack.component(component_name(config, task))
    print(f"wrote component '{component.name}' ({component.family}) to {pack.path}: " + ", ".join(g.variant for g in component.graphs))
    if task.startswith("zero_shot"):
        print(f"prompts in the pack: {component.settings.get('prompts', [])}; text tower: {'yes' if export.text_tower else 'no'}")
    return EXIT_OK


def _read_prompts(path: str) -> list[str]:
    """Prompts from a UTF-8 file, one per line; blank lines and lines starting with '#' are skipped."""
    from edgemm.runtime.errors import CompileError

    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CompileError(f"--prompts {path}: expected a UTF-8 text file with one prompt per line, could not read it: {exc}") from exc
    prompts = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]
    if not prompts:
        raise CompileError(f"--prompts {path}: expected one prompt per line, found none")
    return prompts


def _cmd_score(args: argparse.Namespace) -> int:
    import numpy as np

    from edgemm.runtime.audio_features import read_wav
    from edgemm.runtime.backends import OrtOptions
    from edgemm.runtime.errors import AudioError
    from edgemm.runtime.pack import load

    options = OrtOptions(providers=tuple(args.provider) if args.provider else None, intra_op_threads=args.threads)
    pack = load(args.pack, precision=args.precision, options=options, backend=args.backend)
    scorer = pack.scorer(args.component)
    if args.background is not None:
        scorer.set_background(args.background)
    prompts = list(dict.fromkeys(args.prompt)) if args.prompt else list(scorer.compiled_prompts)
    if not prompts:
        raise EdgemmError(f"component '{scorer.component.name}' has no compiled prompts; give --prompt TEXT (repeatable)")
    scorer.add_prompts(prompts)
    if not args.json:
        print(f"# {scorer.describe()}", file=sys.stderr)
    failures = 0
    for path in args.files:
        start = time.perf_counter()
        try:
            if scorer.modality == "image":
                embeddings = scorer.embed_images([path])
            else:
                if path.lower().endswith(".npy"):
                    samples = np.load(path, allow_pickle=False)
                    rate = args.sample_rate or scorer.component.audio.sample_rate_hz
                elif path.lower().endswith(".wav"):
                    samples, rate = read_wav(path)
                else:
                    raise AudioError(f"audio file {path}: expected a .wav (integer PCM) or .npy (float samples) file")
                embeddings = scorer.embed_audio([samples], rate)
            scores = scorer.scores(embeddings, prompts)[0]
        except EdgemmError as exc:
            failures += 1
            print(f"edgemm: error: {exc}", file=sys.stderr)
            continue
        latency_ms = (time.perf_counter() - start) * 1000
        if args.json:
            record = {
                "file": path,
                "scores": {p: round(float(v), 6) for p, v in zip(prompts, scores)},
                "score_kind": scorer.score_kind,
                "latency_ms": round(latency_ms, 3),
                "precision": scorer.precision,
                "backend": scorer.encoder.name,
            }
            print(json.dumps(record), flush=True)
        else:
            ranked = sorted(zip(prompts, scores), key=lambda item: -float(item[1]))
            print(f"{path}: " + ", ".join(f"{p!r} {float(v):.3f}" for p, v in ranked) + f"  ({latency_ms:.0f} ms)", flush=True)
    return EXIT_ERROR if failures else EXIT_OK


def _cmd_caption(args: argparse.Namespace) -> int:
    from edgemm.runtime.backends import OrtOptions
    from edgemm.runtime.pack import load

    options = OrtOptions(providers=tuple(args.provider) if args.provider else None, intra_op_threads=args.threads)
    pack = load(args.pack, precision=args.precision, options=options, backend=args.backend)
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


def _cmd_transcribe(args: argparse.Namespace) -> int:
    from edgemm.runtime.audio_sources import read_audio
    from edgemm.runtime.backends import OrtOptions
    from edgemm.runtime.pack import load

    options = OrtOptions(providers=tuple(args.provider) if args.provider else None, intra_op_threads=args.threads)
    pack = load(args.pack, precision=args.precision, options=options, backend=args.backend)
    transcriber = pack.transcriber(args.component)
    if not args.json:
        print(f"# {transcriber.describe()}", file=sys.stderr)
    settings = {
        "language": args.language,
        "task": args.task,
        "no_speech_threshold": None if args.no_speech_threshold < 0 else args.no_speech_threshold,
        "logprob_threshold": args.logprob_threshold,
        "num_beams": args.beams,
        "max_new_tokens": args.max_new_tokens,
    }
    failures = 0
    for path in args.audio:
        try:
            samples, _ = read_audio(path, transcriber.sample_rate_hz)
            windows = samples.size > round(transcriber.max_duration_s * transcriber.sample_rate_hz)
            # Audio longer than the model's 30-s window is cut into consecutive windows.
            for result in transcriber.transcribe_long(samples, **settings):
                end_s = result.start_s + result.duration_s
                if args.json:
                    record = {
                        "file": path,
                        "start_s": round(result.start_s, 3),
                        "end_s": round(end_s, 3),
                        "text": result.text,
                        "language": result.language,
                        "no_speech_prob": round(result.no_speech_prob, 6),
                        "avg_logprob": round(result.avg_logprob, 6),
                        "tokens": list(result.tokens),
                        "latency_ms": round(result.latency_ms, 3),
                        "precision": transcriber.precision,
                        "backend": transcriber.encoder.name,
                    }
                    print(json.dumps(record), flush=True)
                else:
                    where = f"{path} [{result.start_s:.1f}-{end_s:.1f} s]" if windows else path
                    language = f"[{result.language}] " if result.language else ""
                    # Silence has no tokens; tokens without text are timestamps or special tokens only.
                    text = result.text or ("(no text)" if result.tokens else "(no speech)")
                    print(f"{where}: {language}{text}  ({result.latency_ms:.0f} ms)", flush=True)
        except EdgemmError as exc:
            failures += 1
            print(f"edgemm: error: {exc}", file=sys.stderr)
    return EXIT_ERROR if failures else EXIT_OK


def _format_event(event: object) -> str:
    from edgemm.runtime.alerts import AlertEvent
    from edgemm.runtime.events import Caption, Transcript, event_to_dict

    if isinstance(event, Caption):
        return f"[{event.time_s or 0.0:8.1f}s] {event.source}: {event.text}  ({event.latency_ms:.0f} ms)"
    if isinstance(event, Transcript):
        return f"[{event.time_s:8.1f}s] {event.source}: \"{event.text}\"  ({event.time_s:.1f}-{event.end_s:.1f} s, {event.latency_ms:.0f} ms)"
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
    lines = [
        f"ran {stats.running_s:.1f} s: {stats.captions} captions ({stats.suppressed} identical suppressed), "
        f"{stats.alerts} alerts, {stats.transcripts} transcripts ({stats.silent_segments} silent segments)"
    ]
    for name, source in stats.sources.items():
        parts = ", ".join(f"{k} {v:.1f}" if isinstance(v, float) else f"{k} {v}" for k, v in source.items())
        lines.append(f"  source {name}: {parts}")
    for component, latency in stats.latency_ms.items():
        lines.append(f"  {component} latency: p50 {latency['p50']:.0f} ms, p95 {latency['p95']:.0f} ms")
    for name, sink in stats.sinks.items():
        parts = ", ".join(f"{k} {v}" for k, v in sink.items() if v not in (None, ""))
        lines.append(f"  sink {name}: {parts}")
    print("\n".join(lines), file=sys.stderr)


def _parse_alert(text: str, modality: str) -> Alert:
    """``"a person lying on the floor:0.3"`` -> Alert(text, threshold=0.3); the threshold is optional."""
    from edgemm.runtime.alerts import Alert

    prompt, colon, tail = text.rpartition(":")
    try:
        threshold = float(tail) if colon else None
    except ValueError:
        threshold = None  # the colon belongs to the text
    if threshold is None:
        return Alert(text, modality=modality)  # type: ignore[arg-type]  # checked in Alert.__post_init__
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
    pack = load(args.pack, precision=args.precision, options=options, backend=args.backend)
    if not args.camera and args.mic is None:
        from edgemm.runtime.errors import InputError

        raise InputError("edgemm run: expected --camera URI, --mic DEVICE or both")
    session = open_session(
        pack,
        args.camera or None,
        mic=args.mic,
        language=args.language,
        vad=args.vad,
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
    models = [m.describe() for m in (session.captioner, session.scorer, session.transcriber, session.audio_scorer) if m is not None and hasattr(m, "describe")]
    inputs = [f"cameras: {', '.join(str(c) for c in args.camera)}"] if args.camera else []
    inputs += [f"mic: {args.mic}"] if args.mic is not None else []
    print(f"# {'; '.join(models)}; {'; '.join(inputs)}", file=sys.stderr)
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
    info.add_argument("--backend", default="auto", choices=["auto", "tensorrt", "onnxruntime"], help="show which backend each graph with engines would run on (default auto)")
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
    comp.add_argument(
        "--prompt",
        action="append",
        metavar="TEXT",
        help='captioners: the default text prompt (BLIP: "a photography of"; Florence-2: "<DETAILED_CAPTION>"); '
        "zero-shot models (CLIP, SigLIP, CLAP): an alert prompt whose embedding is stored in the pack (repeatable)",
    )
    comp.add_argument("--prompts", metavar="FILE", help="zero-shot models: alert prompts, one per line (blank lines and # comments skipped)")
    comp.add_argument("--background", action="append", metavar="TEXT", help='CLIP/CLAP: a background prompt scores are measured against (repeatable; default "a photo" / "background noise")')
    comp.add_argument("--no-text-tower", action="store_true", help="zero-shot models: leave the text tower out; only the compiled prompts can be scored")
    comp.add_argument("--max-new-tokens", type=int, help="default caption / transcript length limit (default: the model's)")
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
    cap.add_argument("--backend", default="auto", choices=["auto", "tensorrt", "onnxruntime"], help="what runs the graphs: TensorRT engines built for this device, else ONNX Runtime (auto, the default); tensorrt refuses to run without them")
    cap.add_argument("--provider", action="append", help="ONNX Runtime execution provider (cpu, cuda, tensorrt; repeatable)")
    cap.add_argument("--threads", type=int, default=0, help="ONNX Runtime intra-op threads (0: automatic)")
    cap.add_argument("--batch", type=int, default=1, help="images per batch (default 1)")
    cap.add_argument("--component", help="caption component to use, when the pack has several")
    cap.set_defaults(func=_cmd_caption)

    tr = sub.add_parser("transcribe", help="transcribe audio files with a speech (Whisper) pack")
    tr.add_argument("pack", metavar="PACK")
    tr.add_argument("audio", metavar="AUDIO", nargs="+", help="audio files (WAV, FLAC, Ogg, MP3, ...; resampled to the model's rate); longer than 30 s: transcribed in 30-s windows")
    tr.add_argument("--json", action="store_true", help="one JSON object per file (per 30-s window): file, start_s, end_s, text, language, no_speech_prob, avg_logprob, tokens, latency_ms, ...")
    tr.add_argument("--language", metavar="LANG", help="multilingual models: the spoken language (en, german, ...; default: detected per window)")
    tr.add_argument("--task", default="transcribe", choices=["transcribe", "translate"], help="translate: into English (multilingual models)")
    tr.add_argument("--no-speech-threshold", type=float, default=0.6, metavar="P", help="a window is silent (empty text) above this no-speech probability when its avg log-probability is below --logprob-threshold (default 0.6; negative: never)")
    tr.add_argument("--logprob-threshold", type=float, default=-1.0, metavar="L", help="see --no-speech-threshold (default -1.0)")
    tr.add_argument("--beams", type=int, help="beam search width (default: the model's, 1)")
    tr.add_argument("--max-new-tokens", type=int, help="at most this many tokens per window (default: the model's limit)")
    tr.add_argument("--precision", default="auto", choices=["auto", "fp32", "fp16", "int8"])
    tr.add_argument("--backend", default="auto", choices=["auto", "tensorrt", "onnxruntime"], help="what runs the graphs: TensorRT engines built for this device, else ONNX Runtime (auto, the default); tensorrt refuses to run without them")
    tr.add_argument("--provider", action="append", help="ONNX Runtime execution provider (cpu, cuda, tensorrt; repeatable)")
    tr.add_argument("--threads", type=int, default=0, help="ONNX Runtime intra-op threads (0: automatic)")
    tr.add_argument("--component", help="asr component to use, when the pack has several")
    tr.set_defaults(func=_cmd_transcribe)

    run = sub.add_parser("run", help="stream cameras and a microphone through a pack and print events")
    run.add_argument("pack", metavar="PACK")
    run.add_argument("--camera", action="append", metavar="URI", help="rtsp://, http:// (MJPEG), file://, a path, a device index, v4l2://, csi://N, gst:// (repeatable)")
    run.add_argument("--mic", metavar="DEVICE", help='microphone ("default", a device name or index) or an audio file (file://clip.wav): transcripts and audio alerts')
    run.add_argument("--language", metavar="LANG", help="transcription language of multilingual Whisper packs, e.g. en (default: detected)")
    run.add_argument("--vad", default="auto", choices=["auto", "silero", "energy"], help="voice activity detector (auto: Silero VAD if installed, else energy)")
    run.add_argument("--caption-every", type=float, default=5.0, metavar="S", help="at most one caption per camera every S seconds (default 5)")
    run.add_argument("--every-interval", action="store_true", help="caption every interval even when the scene did not change")
    run.add_argument("--change-threshold", type=float, default=0.06, metavar="X", help="scene change (0..1) that triggers a caption (default 0.06)")
    run.add_argument("--repeat-identical", action="store_true", help="emit a caption even when it equals the previous one")
    run.add_argument("--sink", action="append", metavar="SPEC", help="- | FILE.jsonl | mqtt://host:port/topic | http(s)://url (repeatable)")
    run.add_argument("--alert", action="append", metavar="TEXT[:THRESHOLD]", help='zero-shot visual alert, e.g. "a person lying on the floor:0.3" (repeatable)')
    run.add_argument("--audio-alert", action="append", metavar="TEXT[:THRESHOLD]", help='zero-shot audio alert on the --mic input, e.g. "glass breaking:0.5" (repeatable)')
    run.add_argument("--alert-fps", type=float, default=2.0, metavar="F", help="frames per second per camera scored for alerts (default 2)")
    run.add_argument("--events-dir", metavar="DIR", help="write a JPEG snapshot (image alerts) or WAV clip (audio alerts) of each alert here")
    run.add_argument("--json", action="store_true", help="print events as JSON lines")
    run.add_argument("--duration", type=float, metavar="S", help="stop after S seconds")
    run.add_argument("--fast", action="store_true", help="read files as fast as the models go (nothing dropped) instead of at their native rate")
    run.add_argument("--loop", action="store_true", help="replay files from the start")
    run.add_argument("--timeout", type=float, default=10.0, metavar="S", help="seconds a camera may take to open (default 10)")
    run.add_argument("--precision", default="auto", choices=["auto", "fp32", "fp16", "int8"])
    run.add_argument("--backend", default="auto", choices=["auto", "tensorrt", "onnxruntime"], help="what runs the graphs: TensorRT engines built for this device, else ONNX Runtime (auto, the default); tensorrt refuses to run without them")
    run.add_argument("--provider", action="append", help="ONNX Runtime execution provider (cpu, cuda, tensorrt; repeatable)")
    run.add_argument("--threads", type=int, default=0, help="ONNX Runtime intra-op threads (0: automatic)")
    run.set_defaults(func=_cmd_run)

    build = sub.add_parser("build", help="build TensorRT engines for a pack on this device")
    build.add_argument("pack", metavar="PACK", help="pack directory; engines go to <component>/engines/<device-key>/")
    build.add_argument("--component", action="append", metavar="NAME", help="component to build (repeatable; default all)")
    build.add_argument("--precision", action="append", choices=["fp32", "fp16", "int8"], help="only graphs of this precision (repeatable; fp32 adds the fp32 graphs)")
    build.add_argument("--shapes", action="append", metavar="SPEC", help="AXIS=MIN:OPT:MAX (e.g. past_sequence=0:64:256) or INPUT=SHAPE:SHAPE:SHAPE (e.g. pixel_values=1x3x384x384:...); repeatable")
    build.add_argument("--max-batch", type=int, default=4, metavar="N", help="largest batch (images x beams) the engines take (default 4)")
    build.add_argument("--max-sequence", type=int, default=64, metavar="N", help="longest token input, e.g. the prompt (default 64)")
    build.add_argument("--max-past", type=int, metavar="N", help="longest decoder cache (default: max_new_tokens + max-sequence)")
    build.add_argument("--workspace-gb", type=float, metavar="G", help="TensorRT workspace memory limit in GiB (default: TensorRT's)")
    build.add_argument("--optimization-level", type=int, default=3, choices=range(6), metavar="0-5", help="builder optimization level (default 3)")
    build.add_argument("--dla", type=int, metavar="N", help="build for DLA core N with GPU fallback (Jetson AGX Orin / Orin NX)")
    build.add_argument("--timing-cache", metavar="PATH", help="timing cache file (default: one per device under ~/.cache/edgemm/tensorrt)")
    build.add_argument("--force", action="store_true", help="rebuild engines already built for this device")
    build.add_argument(
        "--version-compatible",
        action="store_true",
        help="engines that also run with later TensorRT releases on the same GPU (carry a lean runtime; may be slower)",
    )
    build.add_argument("--device", type=int, default=0, metavar="N", help="CUDA device index (default 0)")
    build.add_argument("--json", action="store_true", help="print the result as JSON")
    build.add_argument("--quiet", action="store_true", help="no progress output")
    build.set_defaults(func=_cmd_build)

    lint = sub.add_parser("lint", help="check a pack's TensorRT graphs against what TensorRT's ONNX parser accepts")
    lint.add_argument("pack", metavar="PACK")
    lint.add_argument("--component", action="append", metavar="NAME", help="component to check (repeatable; default all)")
    lint.add_argument("--tensorrt", action="append", metavar="VERSION", help="TensorRT version to check against (repeatable; default 10.3 and 11.0)")
    lint.add_argument("--json", action="store_true", help="print the findings as JSON")
    lint.set_defaults(func=_cmd_lint)

    score = sub.add_parser("score", help="score image or audio files against text prompts with a zero-shot pack")
    score.add_argument("pack", metavar="PACK")
    score.add_argument("files", metavar="FILE", nargs="+", help="images (CLIP, SigLIP); audio (CLAP): integer PCM .wav, or .npy float samples at --sample-rate")
    score.add_argument("--prompt", action="append", metavar="TEXT", help="prompt to score (repeatable; default: the prompts compiled into the pack)")
    score.add_argument("--background", action="append", metavar="TEXT", help="CLIP/CLAP: background prompts instead of the pack's (repeatable)")
    score.add_argument("--json", action="store_true", help="one JSON object per file: file, scores {prompt: probability}, latency_ms, ...")
    score.add_argument("--sample-rate", type=int, metavar="HZ", help=".npy audio: its sample rate (default: the model's)")
    score.add_argument("--component", help="zero-shot component to use, when the pack has several")
    score.add_argument("--precision", default="auto", choices=["auto", "fp32", "fp16", "int8"])
    score.add_argument("--backend", default="auto", choices=["auto", "tensorrt", "onnxruntime"], help="what runs the graphs: TensorRT engines built for this device, else ONNX Runtime (auto, the default); tensorrt refuses to run without them")
    score.add_argument("--provider", action="append", help="ONNX Runtime execution provider (cpu, cuda, tensorrt; repeatable)")
    score.add_argument("--threads", type=int, default=0, help="ONNX Runtime intra-op threads (0: automatic)")
    score.set_defaults(func=_cmd_score)

    doctor = sub.add_parser("doctor", help="report what this machine offers edgemm (and, given a pack, the backend each graph gets)")
    doctor.add_argument("pack", metavar="PACK", nargs="?", help="a pack: show the precision and backend each component and graph gets here")
    doctor.add_argument("--json", action="store_true", help="print the report as JSON")
    doctor.add_argument("--backend", default="auto", choices=["auto", "tensorrt", "onnxruntime"], help="with PACK: the backend asked for (default auto)")
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
