"""Captioning speed on the CPU: Hugging Face transformers (eager, fp32) vs a pack's fp32 and int8 graphs.

Usage::

    python benchmarks/caption.py                          # blip_base: released config, random weights
    python benchmarks/caption.py --workdir /tmp/bench     # keep the checkpoint and pack for the next run
    python benchmarks/caption.py --pack PACK --model DIR  # an existing BLIP pack and its checkpoint
    python benchmarks/caption.py --threads 2 --json > caption.json

Without ``--pack`` the script builds ``edgemm.compile.testing.blip_base`` (BLIP-base's released
configuration with random weights: the speed of a model does not depend on its weights) and
compiles it with fp32 and int8/cpu graphs, in a child process whose peak RSS is reported.

Method:

- One process loads all engines: (a) ``BlipForConditionalGeneration`` with
  ``attn_implementation="eager"`` in fp32 on the CPU, calling ``model.generate()``; (b) the pack's
  fp32 graphs and (c) its int8/cpu graphs with ONNX Runtime's CPU provider, driven by
  ``edgemm.runtime.generation.generate`` over ``Captioner.encode`` and ``Captioner.state``.
  torch and ONNX Runtime get the same thread count (``torch.set_num_threads``,
  ``OrtOptions(intra_op_threads=...)``).
- Every caption is greedy, batch 1, with exactly ``--new-tokens`` new tokens: transformers gets
  ``min_new_tokens = max_new_tokens = N``, the pack the same through ``dataclasses.replace`` of its
  generation settings (EOS is suppressed until N, as in transformers).
- Each engine captions the first image ``--warmup`` times before anything is timed. Then, for each
  repeat, every engine captions every image, engines interleaved in a rotating order, so a busy
  neighbour on a shared machine slows all engines alike rather than one of them.
- Times (``time.perf_counter``) start from ``pixel_values``; image preprocessing is timed apart
  ("prep": the transformers processor, or the runtime's numpy preprocessing) and is not in the totals.

  * encoder ms: transformers: the vision model's forward, timed by forward hooks inside
    ``generate()``; pack: the encoder graph, which also projects every decoder layer's
    cross-attention keys/values (transformers does that in its first decoder step instead).
  * per-token ms: ``(total - encoder) / N``: everything after the encoder (decoder steps,
    cross-attention projections in transformers' first step, logits processing, the loop itself).
  * step ms: the median decoder forward after the first (transformers: hooks on the text decoder;
    pack: the step graph's ``run``): the steady cost of one token, model only.
  * total ms: ``generate()`` (transformers), ``encode`` + ``generate`` (pack).

  Each number is the median over repeats for each image, then the mean over images. Ratios are
  transformers' time divided by the engine's (above 1: faster than transformers eager).
- Memory: the RSS each engine adds when loaded and warmed up (``VmRSS`` before and after), this
  process's peak RSS, and the compile's peak RSS when this run compiled the pack.
- Contention: the share of the machine's CPU time other processes used while timing (from
  ``/proc/stat`` less this process's own CPU time); above 10% the run warns. Interleaving keeps
  engines comparable, but on a busy machine torch's threads suffer more than ONNX Runtime's.
- Tokens: how many images an engine captions with exactly transformers' tokens (fp32 should match;
  int8 is expected to drift on random weights, whose logits are nearly flat).

Images: real photos from Debian's opencv-doc (``tests.media.opencv_sample``; fetched by
``scripts/setup.sh``), else generated scenes (``edgemm.compile.images.synthetic_images``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))  # run as a script: _common.py is beside it

from _common import child, cpu_seconds, interleaved, log, others_share, peak_rss_mb, report, rss_mb, versions  # noqa: E402

PHOTOS = ("fruits.jpg", "baboon.jpg", "messi5.jpg", "HappyFish.jpg", "building.jpg", "home.jpg", "apple.jpg", "butterfly.jpg")
"""opencv-doc photos, in the order they are used."""

_COMPILE = """
import json, resource, sys
from edgemm.compile.caption import compile_captioner
from edgemm.compile.config import CompileConfig, LoadConfig, VariantConfig
model, out, report = sys.argv[1:4]
compile_captioner(CompileConfig(load=LoadConfig(model, local_files_only=True), out=out, variants=(VariantConfig("int8", "cpu"),)))
with open(report, "w") as f:
    json.dump({"peak_rss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}, f)
"""

_BUILD = """
import sys
from edgemm.compile.testing import blip_base
blip_base(sys.argv[1])
"""


# --- the samples -----------------------------------------------------------------------------------


@dataclass
class Sample:
    """One timed caption.

    Attributes:
        prep_ms: image -> pixel_values (not part of total_ms).
        encoder_ms: the vision encoder (pack: plus the cross-attention keys/values).
        total_ms: pixel_values -> tokens.
        step_ms: each decoder forward, in order (the first one reads the start token).
        tokens: the new tokens.
    """

    prep_ms: float
    encoder_ms: float
    total_ms: float
    step_ms: list[float]
    tokens: tuple[int, ...]


@dataclass
class EngineResult:
    """What one engine measured, aggregated over images (median over repeats, mean over images)."""

    name: str
    prep_ms: float
    encoder_ms: float
    per_token_ms: float
    step_ms: float
    total_ms: float
    rss_added_mb: float | None
    same_tokens_as_reference: int
    images: int
    ratios: dict[str, float] = field(default_factory=dict)


class Engine:
    """A captioner under test: ``prepare`` an image once, then ``run`` it many times."""

    name: str

    def prepare(self, image: np.ndarray) -> tuple[Any, float]:
        """Returns (the engine's input for ``image``, preprocessing ms)."""
        raise NotImplementedError

    def run(self, prepared: Any, new_tokens: int) -> Sample:
        raise NotImplementedError


class HfEngine(Engine):
    """``BlipForConditionalGeneration.generate()`` in fp32 with eager attention."""

    name = "transformers eager fp32"

    def __init__(self, model_dir: str) -> None:
        import torch
        from transformers import BlipForConditionalGeneration, BlipProcessor
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        self.torch = torch
        self.model = BlipForConditionalGeneration.from_pretrained(
            model_dir, attn_implementation="eager", dtype=torch.float32, local_files_only=True
        ).eval()
        self.processor = BlipProcessor.from_pretrained(model_dir, local_files_only=True)
        self._marks: list[tuple[str, float]] = []
        self.model.vision_model.register_forward_pre_hook(self._marker("encoder>"))
        self.model.vision_model.register_forward_hook(self._marker("encoder<"))
        self.model.text_decoder.register_forward_pre_hook(self._marker("step>"))
        self.model.text_decoder.register_forward_hook(self._marker("step<"))

    def _marker(self, label: str) -> Callable[..., None]:
        def mark(*_: Any) -> None:
            self._marks.append((label, time.perf_counter()))

        return mark

    def prepare(self, image: np.ndarray) -> tuple[Any, float]:
        start = time.perf_counter()
        pixels = self.processor(images=image, return_tensors="pt")["pixel_values"]
        return pixels, (time.perf_counter() - start) * 1000

    def run(self, prepared: Any, new_tokens: int) -> Sample:
        self._marks.clear()
        with self.torch.inference_mode():
            start = time.perf_counter()
            sequences = self.model.generate(
                pixel_values=prepared, do_sample=False, num_beams=1, min_new_tokens=new_tokens, max_new_tokens=new_tokens
            )
            end = time.perf_counter()
        marks = dict(self._marks[:2])
        steps = [b[1] - a[1] for a, b in zip(self._marks[2::2], self._marks[3::2])]
        tokens = tuple(int(t) for t in sequences[0, 1:].tolist())  # sequences start with [DEC]
        return Sample(0.0, (marks["encoder<"] - marks["encoder>"]) * 1000, (end - start) * 1000, [s * 1000 for s in steps], tokens)


class _TimedState:
    """A decoder state that times each step (the loop sees the same two methods)."""

    def __init__(self, state: Any) -> None:
        self.state = state
        self.step_ms: list[float] = []

    def step(self, input_ids: np.ndarray) -> np.ndarray:
        start = time.perf_counter()
        logits = self.state.step(input_ids)
        self.step_ms.append((time.perf_counter() - start) * 1000)
        return np.asarray(logits)

    def reorder(self, rows: np.ndarray) -> None:
        self.state.reorder(rows)


class PackEngine(Engine):
    """A pack's caption graphs in one precision, on ONNX Runtime's CPU provider."""

    def __init__(self, pack: Any, precision: str, threads: int) -> None:
        from edgemm.runtime.backends import OrtOptions
        from edgemm.runtime.captioner import Captioner

        options = OrtOptions(providers=("cpu",), intra_op_threads=threads, inter_op_threads=1)
        self.captioner = Captioner(pack, precision=precision, options=options)
        generation = self.captioner.component.generation
        assert generation is not None
        if generation.prompt:
            raise SystemExit(f"the pack's caption component has a default prompt ({generation.prompt!r}); benchmark a pack without one")
        self.settings = generation
        self.prefix = np.asarray([self.captioner.decoder_start_ids], dtype=np.int64)
        self.name = f"pack {precision}" + (f" ({self.captioner.encoder_graph.quantization})" if self.captioner.encoder_graph.quantization else "")

    def prepare(self, image: np.ndarray) -> tuple[Any, float]:
        from edgemm.runtime.image import preprocess

        assert self.captioner.component.image is not None
        start = time.perf_counter()
        pixels = preprocess([image], self.captioner.component.image)
        return pixels, (time.perf_counter() - start) * 1000

    def run(self, prepared: Any, new_tokens: int) -> Sample:
        from edgemm.runtime.generation import generate

        settings = dataclasses.replace(self.settings, min_new_tokens=new_tokens, max_new_tokens=new_tokens)
        start = time.perf_counter()
        cross = self.captioner.encode(prepared)
        encoded = time.perf_counter()
        state = _TimedState(self.captioner.state(cross))
        result = generate(state, self.prefix, settings, num_beams=1)
        end = time.perf_counter()
        return Sample(0.0, (encoded - start) * 1000, (end - start) * 1000, state.step_ms, result.tokens[0])


# --- setting up --------------------------------------------------------------------------------


def _images(count: int) -> tuple[list[np.ndarray], list[str]]:
    """``count`` RGB uint8 images (H, W, 3) and their names: opencv-doc photos, else generated ones."""
    from edgemm.runtime.image import load_image

    sys.path.insert(0, str(REPO))
    try:
        from tests.media import opencv_sample

        names = [PHOTOS[i % len(PHOTOS)] for i in range(count)]
        return [load_image(opencv_sample(name)) for name in names], names
    except (ImportError, FileNotFoundError) as exc:
        from edgemm.compile.images import synthetic_images

        log(f"no test photos ({exc}); using generated images")
        return synthetic_images(count), [f"synthetic-{i}" for i in range(count)]
    finally:
        sys.path.remove(str(REPO))


def _prepare_pack(args: argparse.Namespace, workdir: Path) -> tuple[str, Path, dict[str, float]]:
    """(checkpoint directory, pack directory, set-up facts), building and compiling what is missing."""
    facts: dict[str, float] = {}
    pack_dir = Path(args.pack) if args.pack else workdir / "pack"
    model = args.model
    if (pack_dir / "manifest.json").exists():
        if model is None:
            from edgemm.runtime.pack import load

            source = load(pack_dir, check_hashes=False).components_for("caption")[0].provenance.source
            if not Path(source).is_dir():
                raise SystemExit(f"--pack {pack_dir} was compiled from {source!r}, which is not a local directory; pass --model")
            model = source
        log(f"reusing pack {pack_dir} (checkpoint {model})")
        return str(model), pack_dir, facts
    if model is None:
        model = str(workdir / "blip-base")
        if not (Path(model) / "config.json").exists():
            log(f"building blip_base (released config, random weights) in {model}")
            start = time.perf_counter()
            child(_BUILD, model)
            facts["build_s"] = time.perf_counter() - start
    log(f"compiling {model} -> {pack_dir} (fp32 + int8/cpu) in a child process")
    report = workdir / "compile-rss.json"
    start = time.perf_counter()
    child(_COMPILE, str(model), str(pack_dir), str(report))
    facts["compile_s"] = time.perf_counter() - start
    facts["compile_peak_rss_mb"] = json.loads(report.read_text())["peak_rss_kb"] / 1024
    return str(model), pack_dir, facts


def _check_blip(model: str, pack: Any) -> None:
    """Refuses a checkpoint or pack that is not a BLIP captioner (the transformers side is BLIP's)."""
    config = Path(model) / "config.json"
    architectures = (json.loads(config.read_text()).get("architectures") or []) if config.is_file() else []
    if "BlipForConditionalGeneration" not in architectures:
        raise SystemExit(f"--model {model}: expected a BlipForConditionalGeneration checkpoint directory, found architectures {architectures}")
    found = pack.components_for("caption")
    if not found or found[0].family != "blip":
        raise SystemExit(f"--pack {pack.path}: expected a BLIP caption component, found {[(c.name, c.family) for c in found]}")


# --- measuring ---------------------------------------------------------------------------------


def _aggregate(per_image: Sequence[Sequence[Sample]], new_tokens: int) -> dict[str, float]:
    """Median over repeats for each image, then mean over images."""

    def metric(value: Callable[[Sample], float]) -> float:
        return float(np.mean([statistics.median(value(s) for s in samples) for samples in per_image]))

    return {
        "prep_ms": metric(lambda s: s.prep_ms),
        "encoder_ms": metric(lambda s: s.encoder_ms),
        "per_token_ms": metric(lambda s: (s.total_ms - s.encoder_ms) / new_tokens),
        "step_ms": metric(lambda s: statistics.median(s.step_ms[1:]) if len(s.step_ms) > 1 else s.step_ms[0]),
        "total_ms": metric(lambda s: s.total_ms),
    }


def measure(
    engines: Sequence[Engine], images: Sequence[np.ndarray], names: Sequence[str], new_tokens: int, repeats: int
) -> dict[str, list[list[Sample]]]:
    """Times every engine on every image ``repeats`` times, interleaved. Returns name -> [image][repeat]."""
    prepared: dict[str, list[Any]] = {}
    prep_ms: dict[str, list[float]] = {}
    for engine in engines:
        pairs = [engine.prepare(image) for image in images]
        prepared[engine.name] = [p for p, _ in pairs]
        prep_ms[engine.name] = [engine.prepare(image)[1] for image in images]  # the second call: warm

    def run(engine: Engine, i: int) -> Sample:
        sample = engine.run(prepared[engine.name][i], new_tokens)
        sample.prep_ms = prep_ms[engine.name][i]
        return sample

    return interleaved(engines, names, repeats, new_tokens, run)


def _summarise(
    engines: Sequence[Engine], samples: dict[str, list[list[Sample]]], rss_added: dict[str, float | None], new_tokens: int
) -> list[EngineResult]:
    reference = engines[0].name
    reference_tokens = [s[0].tokens for s in samples[reference]]
    results = []
    for engine in engines:
        numbers = _aggregate(samples[engine.name], new_tokens)
        same = sum(s[0].tokens == t for s, t in zip(samples[engine.name], reference_tokens))
        results.append(
            EngineResult(
                engine.name,
                prep_ms=numbers["prep_ms"],
                encoder_ms=numbers["encoder_ms"],
                per_token_ms=numbers["per_token_ms"],
                step_ms=numbers["step_ms"],
                total_ms=numbers["total_ms"],
                rss_added_mb=rss_added[engine.name],
                same_tokens_as_reference=same,
                images=len(reference_tokens),
            )
        )
    base = results[0]
    for result in results:
        result.ratios = {
            "total": base.total_ms / result.total_ms,
            "per_token": base.per_token_ms / result.per_token_ms,
            "step": base.step_ms / result.step_ms,
            "encoder": base.encoder_ms / result.encoder_ms,
        }
    return results


def _table(results: Sequence[EngineResult]) -> str:
    header = ("engine", "prep ms", "encoder ms", "per-token ms", "step ms", "total ms", "x total", "x token", "x step", "x encoder", "tokens=HF", "RSS +MB")
    rows = [header]
    for r in results:
        rows.append(
            (
                r.name,
                f"{r.prep_ms:.1f}",
                f"{r.encoder_ms:.1f}",
                f"{r.per_token_ms:.2f}",
                f"{r.step_ms:.2f}",
                f"{r.total_ms:.1f}",
                f"{r.ratios['total']:.2f}",
                f"{r.ratios['per_token']:.2f}",
                f"{r.ratios['step']:.2f}",
                f"{r.ratios['encoder']:.2f}",
                f"{r.same_tokens_as_reference}/{r.images}",
                "-" if r.rss_added_mb is None else f"{r.rss_added_mb:.0f}",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths))) for row in rows]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--model", help="a BLIP checkpoint directory (default: build blip_base)")
    parser.add_argument("--pack", help="a compiled pack with fp32 and int8/cpu caption graphs (default: compile one)")
    parser.add_argument("--workdir", help="where blip_base and the pack are built and kept (default: a temporary directory, removed)")
    parser.add_argument("--new-tokens", type=int, default=20, help="tokens generated per caption, exactly (default 20)")
    parser.add_argument("--images", type=int, default=4, help="images captioned per repeat (default 4)")
    parser.add_argument("--repeats", type=int, default=3, help="timed captions per image and engine (default 3; medians are reported)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed captions per engine first (default 1)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="threads for torch and ONNX Runtime (default: all cores)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON on stdout (the table goes to stderr)")
    args = parser.parse_args(argv)
    if args.new_tokens < 2 or args.images < 1 or args.repeats < 1 or args.threads < 1 or args.warmup < 0:
        parser.error("expected --new-tokens >= 2, --images >= 1, --repeats >= 1, --threads >= 1, --warmup >= 0")

    with tempfile.TemporaryDirectory(prefix="edgemm-bench-") as temporary:
        workdir = Path(args.workdir or temporary)
        workdir.mkdir(parents=True, exist_ok=True)
        model, pack_dir, facts = _prepare_pack(args, workdir)

        import torch

        from edgemm.runtime.pack import load

        torch.set_num_threads(args.threads)
        torch.set_num_interop_threads(1)
        images, names = _images(args.images)
        rss_added: dict[str, float | None] = {}
        engines: list[Engine] = []
        pack = load(pack_dir)
        _check_blip(model, pack)
        factories: list[tuple[str, Callable[[], Engine]]] = [
            ("transformers eager fp32", lambda: HfEngine(model)),
            ("pack fp32", lambda: PackEngine(pack, "fp32", args.threads)),
        ]
        if "int8" in pack.components_for("caption")[0].precisions("cpu"):
            factories.append(("pack int8", lambda: PackEngine(pack, "int8", args.threads)))
        else:
            log(f"{pack_dir} has no int8/cpu caption graphs: measuring fp32 only")
        for label, factory in factories:
            log(f"loading and warming up {label}")
            before = rss_mb()
            engine = factory()
            for _ in range(args.warmup):
                engine.run(engine.prepare(images[0])[0], args.new_tokens)
            after = rss_mb()
            rss_added[engine.name] = None if before is None or after is None else after - before
            engines.append(engine)
        log(f"timing {len(engines)} engines x {len(images)} images x {args.repeats} repeats, {args.new_tokens} new tokens each")
        cpu_start, times = cpu_seconds(), os.times()
        samples = measure(engines, images, names, args.new_tokens, args.repeats)
        others = others_share(cpu_start, times.user + times.system)
        results = _summarise(engines, samples, rss_added, args.new_tokens)

    setup = {
        "model": model if args.model else "blip_base (released BLIP-base config, random weights)",
        "pack": str(pack_dir) if args.pack else "compiled by this run",
        "images": names,
        "new_tokens": args.new_tokens,
        "repeats": args.repeats,
        "threads": args.threads,
        "cpu_count": os.cpu_count(),
        "machine": f"{platform.machine()} {platform.processor() or platform.platform()}",
        "other_processes_cpu_share": others,
        "versions": versions(("torch", "transformers", "onnxruntime", "numpy")),
        "peak_rss_mb": peak_rss_mb(),
        **facts,
    }
    text = [
        f"BLIP captioning, batch 1, greedy, exactly {args.new_tokens} new tokens, {args.threads} threads, "
        f"{len(names)} images x {args.repeats} repeats (median per image, mean over images)",
        _table(results),
        "x: transformers' time / the engine's. tokens=HF: captions identical to transformers' (fp32 should match all;"
        " int8 drifts on random weights, whose logits are nearly flat).",
        f"peak RSS of this process (all engines loaded together): {setup['peak_rss_mb']:.0f} MB",
    ]
    if "compile_peak_rss_mb" in facts:
        text.append(f"compile (fp32 + int8/cpu): {facts['compile_s']:.0f} s, peak RSS {facts['compile_peak_rss_mb']:.0f} MB")
    return report(text, others, setup, results, args.json)


if __name__ == "__main__":
    sys.exit(main())
