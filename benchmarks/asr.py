"""Speech recognition speed on the CPU: Hugging Face transformers (eager, fp32) vs a pack's fp32 and
int8 graphs, and vs faster-whisper when it is installed.

Usage::

    python benchmarks/asr.py                            # whisper_tiny_en: released config, random weights
    python benchmarks/asr.py --workdir /tmp/asrbench    # keep the checkpoint, pack and conversion for the next run
    python benchmarks/asr.py --model-size base          # whisper_base (multilingual, 74M parameters)
    python benchmarks/asr.py --pack PACK --model DIR    # an existing Whisper pack and its checkpoint
    python benchmarks/asr.py --threads 2 --json > asr.json

Without ``--pack`` the script builds ``edgemm.compile.testing.whisper_tiny_en`` (``--model-size
base``: ``whisper_base``; released configurations with random weights: the speed of a model does not
depend on its weights) and compiles it with fp32 and int8/cpu graphs (``ort-dynamic-u8s8``, what
``edgemm compile --precision int8 --target cpu`` gives; ``--calibration DIR`` of 16-kHz WAV files:
static ``ort-static-u8s8``), in a child process whose peak RSS is reported. The compile refuses an
int8 variant whose teacher-forced top-1 agreement with fp32 is below ``--min-agreement`` (0.9, the
compile's default); random weights have nearly flat logits and may fall below it (the random
whisper_base configuration agreed on 0.89 in docs/ASR.md): lower it knowingly, the tokens column
then shows how far int8 drifts.

Method:

- One process loads all engines: (a) ``WhisperForConditionalGeneration`` with
  ``attn_implementation="eager"`` in fp32 on the CPU, ``WhisperFeatureExtractor`` then
  ``model.generate()``; (b) the pack's fp32 graphs and (c) its int8/cpu graphs with ONNX Runtime's
  CPU provider, through ``Transcriber`` (``features``, ``encode``, then ``transcribe_encoded``: the
  calls ``Transcriber.transcribe`` makes); (d) when ``import faster_whisper`` works, the same
  checkpoint converted with CTranslate2's ``TransformersConverter`` (float32 weights, in a child
  process) and loaded by ``faster_whisper.WhisperModel`` with ``compute_type`` "float32" and
  "int8", driven by its own parts (``feature_extractor`` + ``pad_or_trim``, ``encode``,
  ``model.generate``): its ``transcribe()`` adds a temperature fallback and cannot be made to
  decode exactly N tokens. torch, ONNX Runtime and CTranslate2 get the same thread count
  (``torch.set_num_threads``, ``OrtOptions(intra_op_threads=...)``, ``cpu_threads``), one
  inter-op thread each.
- Every clip is decoded greedily, batch 1, with exactly ``--new-tokens`` new tokens after the prompt
  (``<|startoftranscript|> <|notimestamps|>``; multilingual models: with ``<|en|> <|transcribe|>``,
  the language given to every engine, so none of them detects it): transformers gets
  ``min_new_tokens = max_new_tokens = N``, the pack the same through ``dataclasses.replace`` of its
  generation settings (EOS is suppressed until N, as in transformers), faster-whisper gets EOS in
  ``suppress_tokens`` and ``max_length = 2N`` (CTranslate2's Whisper decodes at most
  ``max_length / 2`` new tokens: its ``whisper.cc`` halves the option). Random decoders need this:
  they may never stop, or stop at once. A real transcript of these clips is 8 to 23 words (about
  10 to 30 tokens). A random model that emits timestamp tokens makes transformers decode the segment
  again from a later offset (more than N tokens): the script stops and says so (it happens with
  tiny vocabularies, not with the released ones built here).
- Each engine transcribes the first clip ``--warmup`` times before anything is timed. Then, for each
  repeat, every engine transcribes every clip, engines interleaved in a rotating order, so a busy
  neighbour on a shared machine slows all engines alike rather than one of them.
- Times (``time.perf_counter``) run from the float32 waveform to the text; RTF (real-time factor) =
  processing time / audio duration (lower is better; 0.1: ten times faster than real time).

  * features ms: waveform -> log-mel (1, n_mels, 3000): ``WhisperFeatureExtractor``, the runtime's
    numpy features, faster-whisper's ``FeatureExtractor``.
  * encoder ms: transformers: the encoder's forward, timed by forward hooks inside ``generate()``;
    pack: ``encode`` (the encoder graph and the cross-attention keys/values graph, which
    transformers computes in its first decoder step); faster-whisper: ``encode``.
  * per-token ms: ``(total - features - encoder) / N``: everything after the encoder (transformers:
    the cross-attention projections in its first step; the pack: the extra decoder call for the
    no-speech probability and the average log-probability that ``transcribe`` computes; every
    engine: the loop and the detokenizer).
  * step ms: the median decoder forward that reads one token over a non-empty cache (transformers:
    hooks from the decoder's input to the output projection's logits; pack: the step graph's
    ``run``), the steady cost of one token, model only; faster-whisper runs its loop inside
    CTranslate2, so it has none.
  * total ms and RTF: per clip, the median over repeats; total ms is then the mean over clips and
    RTF the sum over clips divided by the audio's duration. Ratios are transformers' time divided by
    the engine's (above 1: faster than transformers eager); the RTF ratio is the total's.
- Memory: the RSS each engine adds when loaded and warmed up (``VmRSS`` before and after), this
  process's peak RSS, and the compile's peak RSS when this run compiled the pack.
- Contention: the share of the machine's CPU time other processes used while timing (from
  ``/proc/stat`` less this process's own CPU time); above 10% the run warns. Interleaving keeps
  engines comparable, but on a busy machine torch's threads suffer more than ONNX Runtime's.
- Tokens: how many clips an engine transcribes with exactly transformers' tokens (the pack's fp32
  should match all; int8 and faster-whisper, whose features are padded differently, may drift on
  random weights, whose logits are nearly flat).

Clips: the LibriVox recordings of Debian's pocketsphinx-testdata (``tests.media.speech_clips``,
16 kHz read speech, 2.9 to 7.1 s; fetched by ``scripts/setup.sh``), else generated sounds
(``edgemm.compile.zero_shot.synthetic_audio``).
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
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
from typing import Any, cast

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))  # run as a script: _common.py is beside it

from _common import child, cpu_seconds, interleaved, log, others_share, peak_rss_mb, report, rss_mb, versions  # noqa: E402

SAMPLE_RATE_HZ = 16000
"""Whisper's rate: the clips are read (and resampled if needed) at it."""

_BUILDERS = {"tiny.en": ("whisper_tiny_en", "whisper-tiny.en"), "base": ("whisper_base", "whisper-base")}
"""--model-size -> (edgemm.compile.testing builder, checkpoint folder name)."""

_COMPILE = """
import json, resource, sys
from edgemm.compile.asr import compile_asr
from edgemm.compile.config import CompileConfig, LoadConfig, ValidateConfig, VariantConfig
model, out, report, calibration, min_agreement = sys.argv[1:6]
config = CompileConfig(
    load=LoadConfig(model, local_files_only=True),
    out=out,
    variants=(VariantConfig("int8", "cpu"),),
    calibration=calibration or None,
    validate=ValidateConfig(min_agreement=float(min_agreement)),
)
compile_asr(config)
with open(report, "w") as f:
    json.dump({"peak_rss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}, f)
"""

_BUILD = """
import sys
from edgemm.compile import testing
getattr(testing, sys.argv[1])(sys.argv[2])
"""

_CONVERT = """
import json, sys
from pathlib import Path
import ctranslate2
from transformers import WhisperFeatureExtractor
model, out = sys.argv[1:3]
ctranslate2.converters.TransformersConverter(model, copy_files=["tokenizer.json"]).convert(out, quantization=None, force=True)
# faster-whisper reads n_mels and the rest from preprocessor_config.json, which transformers 5 folds into processor_config.json.
WhisperFeatureExtractor.from_pretrained(model, local_files_only=True).to_json_file(str(Path(out) / "preprocessor_config.json"))
(Path(out) / "edgemm-source.json").write_text(json.dumps({"model": model}))
"""


# --- the samples -----------------------------------------------------------------------------------


@dataclass
class Sample:
    """One timed transcription.

    Attributes:
        features_ms: waveform -> log-mel features.
        encoder_ms: the encoder (pack: plus the cross-attention keys/values).
        total_ms: waveform -> text (features, encoder and decoding).
        step_ms: each steady decoder forward (one token over a non-empty cache), in order; empty
            where the engine cannot time them.
        tokens: the new tokens.
    """

    features_ms: float
    encoder_ms: float
    total_ms: float
    step_ms: list[float]
    tokens: tuple[int, ...]


@dataclass
class EngineResult:
    """What one engine measured, aggregated over clips (median over repeats, then mean over clips;
    ``rtf``: the per-clip median totals summed, over the clips' summed duration)."""

    name: str
    features_ms: float
    encoder_ms: float
    per_token_ms: float
    step_ms: float | None
    total_ms: float
    rtf: float
    rss_added_mb: float | None
    same_tokens_as_reference: int
    clips: int
    ratios: dict[str, float | None] = field(default_factory=dict)


class Engine:
    """A speech recogniser under test: ``run`` transcribes one waveform with exactly N new tokens."""

    name: str

    def run(self, waveform: np.ndarray, new_tokens: int) -> Sample:
        """Transcribes ``waveform`` (n,) float32 at 16 kHz, timing its parts."""
        raise NotImplementedError


class HfEngine(Engine):
    """``WhisperFeatureExtractor`` + ``WhisperForConditionalGeneration.generate()`` in fp32 with eager attention."""

    name = "transformers eager fp32"

    def __init__(self, model_dir: str, language: str | None) -> None:
        import torch
        from transformers import WhisperForConditionalGeneration, WhisperProcessor
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        # generate() warns on every call about settings the checkpoint's own generation config holds.
        hf_logging.set_verbosity_error()
        self.torch = torch
        self.model = WhisperForConditionalGeneration.from_pretrained(
            model_dir, attn_implementation="eager", dtype=torch.float32, local_files_only=True
        ).eval()
        self.processor = WhisperProcessor.from_pretrained(model_dir, local_files_only=True)
        self.language = {"language": language, "task": "transcribe"} if language is not None else {}
        self.timestamp_begin = int(self.model.generation_config.no_timestamps_token_id) + 1
        self._marks: list[tuple[str, float]] = []
        self._widths: list[int] = []
        encoder = self.model.model.encoder
        encoder.register_forward_pre_hook(self._marker("encoder>"))
        encoder.register_forward_hook(self._marker("encoder<"))
        # A step: the decoder, then the output projection (outside the decoder module; in the pack's step graph).
        self.model.model.decoder.register_forward_pre_hook(self._decoder_input, with_kwargs=True)
        self.model.proj_out.register_forward_hook(self._marker("step<"))

    def _marker(self, label: str) -> Callable[..., None]:
        def mark(*_: Any) -> None:
            self._marks.append((label, time.perf_counter()))

        return mark

    def _decoder_input(self, _module: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        ids = kwargs.get("input_ids", args[0] if args else None)
        self._widths.append(int(ids.shape[1]) if ids is not None else 0)
        self._marks.append(("step>", time.perf_counter()))

    def run(self, waveform: np.ndarray, new_tokens: int) -> Sample:
        self._marks.clear()
        self._widths.clear()
        with self.torch.inference_mode():
            start = time.perf_counter()
            features = self.processor.feature_extractor(waveform, sampling_rate=SAMPLE_RATE_HZ, return_tensors="pt").input_features
            featured = time.perf_counter()
            sequences = self.model.generate(
                input_features=features, do_sample=False, num_beams=1, min_new_tokens=new_tokens, max_new_tokens=new_tokens, **self.language
            )
            self.processor.tokenizer.decode(sequences[0], skip_special_tokens=True)
            end = time.perf_counter()
        marks = dict(m for m in self._marks if m[0].startswith("encoder"))
        steps = [m for m in self._marks if m[0].startswith("step")]
        # The first decoder call reads the prompt over an empty cache; the later ones one token each.
        step_ms = [(b[1] - a[1]) * 1000 for a, b, width in zip(steps[0::2], steps[1::2], self._widths) if width == 1]
        tokens = tuple(int(t) for t in sequences[0].tolist())  # generate() returns the new tokens only
        if len(tokens) != new_tokens and any(t >= self.timestamp_begin for t in tokens):
            raise SystemExit(
                f"transformers generated {len(tokens)} tokens, not {new_tokens}: the model emitted timestamp tokens (ids >= "
                f"{self.timestamp_begin}), after which generate() decodes the segment again from a later offset; random "
                "weights do this on small vocabularies: benchmark a checkpoint with the released vocabulary"
            )
        return Sample((featured - start) * 1000, (marks["encoder<"] - marks["encoder>"]) * 1000, (end - start) * 1000, step_ms, tokens)


class _TimedGraph:
    """A graph backend whose ``run`` calls are timed; everything else passes through."""

    def __init__(self, backend: Any) -> None:
        from edgemm.runtime import graph_io

        self.backend = backend
        self.step_ms: list[float] = []
        self._ids = graph_io.INPUT_IDS
        self._past = graph_io.past_names(0)[0]

    def run(self, feeds: dict[str, np.ndarray], **kwargs: Any) -> Any:
        start = time.perf_counter()
        out = self.backend.run(feeds, **kwargs)
        elapsed = (time.perf_counter() - start) * 1000
        # Steady steps only: one token over a cache that is either kept on the backend (absent from
        # the feeds) or fed back non-empty (host mode).
        past = feeds.get(self._past)
        if feeds[self._ids].shape[1] == 1 and (past is None or past.shape[2] > 0):
            self.step_ms.append(elapsed)
        return out

    def __getattr__(self, name: str) -> Any:
        return getattr(self.backend, name)


class PackEngine(Engine):
    """A pack's asr graphs in one precision, on ONNX Runtime's CPU provider, through ``Transcriber``."""

    def __init__(self, pack: Any, precision: str, threads: int, language: str | None, new_tokens: int) -> None:
        from edgemm.runtime.backends import OrtOptions
        from edgemm.runtime.transcriber import Transcriber

        options = OrtOptions(providers=("cpu",), intra_op_threads=threads, inter_op_threads=1)
        self.transcriber = Transcriber(pack, precision=precision, options=options)
        component = self.transcriber.component
        assert component.generation is not None
        generation = dataclasses.replace(component.generation, min_new_tokens=new_tokens, max_new_tokens=new_tokens)
        # transcribe_encoded reads its settings from the component: EOS is suppressed until N, as in transformers.
        self.transcriber.component = dataclasses.replace(component, generation=generation)
        self.graph = _TimedGraph(self.transcriber.step)
        self.transcriber.step = cast(Any, self.graph)
        self.language = language
        quantization = self.transcriber.graphs["encoder"].quantization
        self.name = f"pack {precision}" + (f" ({quantization})" if quantization else "")

    def run(self, waveform: np.ndarray, new_tokens: int) -> Sample:
        transcriber = self.transcriber
        self.graph.step_ms = []
        start = time.perf_counter()
        features = transcriber.features([waveform])
        featured = time.perf_counter()
        cross = transcriber.encode(features)
        encoded = time.perf_counter()
        result = transcriber.transcribe_encoded(
            cross, [waveform.size / SAMPLE_RATE_HZ], language=self.language, no_speech_threshold=None, max_new_tokens=new_tokens
        )[0]
        end = time.perf_counter()
        return Sample((featured - start) * 1000, (encoded - featured) * 1000, (end - start) * 1000, self.graph.step_ms, result.tokens)


class FasterWhisperEngine(Engine):
    """faster-whisper's parts on a CTranslate2 conversion of the checkpoint, on the CPU."""

    def __init__(self, model_dir: Path, compute_type: str, threads: int, prompt: Sequence[int], eos_token_id: int) -> None:
        from faster_whisper import WhisperModel

        self.model = WhisperModel(str(model_dir), device="cpu", compute_type=compute_type, cpu_threads=threads, num_workers=1)
        self.prompt = [int(t) for t in prompt]
        # -1: the checkpoint's suppress_tokens (CTranslate2 reads them from its config), as faster-whisper's default.
        self.suppress = [-1, int(eos_token_id)]
        self.name = f"faster-whisper {compute_type} ({self.model.model.compute_type})"

    def run(self, waveform: np.ndarray, new_tokens: int) -> Sample:
        from faster_whisper.audio import pad_or_trim

        start = time.perf_counter()
        features = pad_or_trim(self.model.feature_extractor(waveform))
        featured = time.perf_counter()
        encoded_states = self.model.encode(features)
        encoded = time.perf_counter()
        result = self.model.model.generate(
            encoded_states,
            [self.prompt],
            beam_size=1,
            max_length=2 * new_tokens,
            suppress_blank=True,
            suppress_tokens=self.suppress,
            return_scores=True,
            return_no_speech_prob=True,
        )[0]
        tokens = tuple(int(t) for t in result.sequences_ids[0])
        self.model.hf_tokenizer.decode(list(tokens))
        end = time.perf_counter()
        return Sample((featured - start) * 1000, (encoded - featured) * 1000, (end - start) * 1000, [], tokens)


# --- setting up --------------------------------------------------------------------------------


def _clips(count: int) -> tuple[list[np.ndarray], list[str]]:
    """Up to ``count`` float32 mono waveforms (n,) at 16 kHz and their names: the LibriVox clips,
    else generated sounds."""
    from edgemm.runtime.audio_sources import read_audio

    sys.path.insert(0, str(REPO))
    try:
        from tests.media import speech_clips

        found = speech_clips()[:count]
        return [read_audio(clip.path, SAMPLE_RATE_HZ)[0] for clip in found], [clip.path.stem.rsplit("-", 1)[-1] for clip in found]
    except (ImportError, FileNotFoundError) as exc:
        from edgemm.compile.zero_shot import synthetic_audio

        log(f"no LibriVox clips ({exc}); using generated sounds")
        return synthetic_audio(count, SAMPLE_RATE_HZ, 5.0), [f"synthetic-{i}" for i in range(count)]
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

            found = load(pack_dir, check_hashes=False).components_for("asr")
            if not found:
                raise SystemExit(f"{pack_dir} has no asr component; remove it or pass another --pack")
            source = found[0].provenance.source
            if not Path(source).is_dir():
                raise SystemExit(f"--pack {pack_dir} was compiled from {source!r}, which is not a local directory; pass --model")
            model = source
        log(f"reusing pack {pack_dir} (checkpoint {model})")
        return str(model), pack_dir, facts
    if model is None:
        builder, folder = _BUILDERS[args.model_size]
        model = str(workdir / folder)
        if not (Path(model) / "config.json").exists():
            log(f"building {builder} (released config, random weights) in {model}")
            start = time.perf_counter()
            child(_BUILD, builder, model)
            facts["build_s"] = time.perf_counter() - start
    kind = f"static, calibrated on {args.calibration}" if args.calibration else "dynamic"
    log(f"compiling {model} -> {pack_dir} (fp32 + int8/cpu, {kind}) in a child process")
    report = workdir / "compile-rss.json"
    start = time.perf_counter()
    child(_COMPILE, str(model), str(pack_dir), str(report), args.calibration or "", str(args.min_agreement))
    facts["compile_s"] = time.perf_counter() - start
    facts["compile_peak_rss_mb"] = json.loads(report.read_text())["peak_rss_kb"] / 1024
    return str(model), pack_dir, facts


def _check_whisper(model: str, pack: Any) -> None:
    """Refuses a checkpoint or pack that is not a Whisper recogniser (the transformers side is Whisper's)."""
    config = Path(model) / "config.json"
    architectures = (json.loads(config.read_text()).get("architectures") or []) if config.is_file() else []
    if "WhisperForConditionalGeneration" not in architectures:
        raise SystemExit(f"--model {model}: expected a WhisperForConditionalGeneration checkpoint directory, found architectures {architectures}")
    found = pack.components_for("asr")
    if not found or found[0].family != "whisper":
        raise SystemExit(f"--pack {pack.path}: expected a Whisper asr component, found {[(c.name, c.family) for c in found]}")


def _faster_whisper(model: str, workdir: Path, facts: dict[str, float]) -> tuple[Path | None, str]:
    """(the CTranslate2 conversion of ``model``, converting it when missing, or None; what happened)."""
    try:
        import faster_whisper
    except ImportError as exc:
        return None, f"not installed ({exc})"
    out = workdir / "ctranslate2"
    marker = out / "edgemm-source.json"
    if marker.is_file() and json.loads(marker.read_text()).get("model") == model:
        log(f"reusing the CTranslate2 conversion {out}")
    else:
        log(f"converting {model} -> {out} (CTranslate2, float32 weights) in a child process")
        start = time.perf_counter()
        child(_CONVERT, model, str(out))
        facts["ctranslate2_convert_s"] = time.perf_counter() - start
    return out, f"faster-whisper {faster_whisper.__version__}"


# --- measuring ---------------------------------------------------------------------------------


def measure(
    engines: Sequence[Engine], clips: Sequence[np.ndarray], names: Sequence[str], new_tokens: int, repeats: int
) -> dict[str, list[list[Sample]]]:
    """Times every engine on every clip ``repeats`` times, interleaved. Returns name -> [clip][repeat]."""
    return interleaved(engines, names, repeats, new_tokens, lambda engine, i: engine.run(clips[i], new_tokens), what="clip ")


def _aggregate(per_clip: Sequence[Sequence[Sample]], durations_s: Sequence[float], new_tokens: int) -> dict[str, float | None]:
    """Median over repeats for each clip, then mean over clips (RTF: summed over clips)."""

    def medians(value: Callable[[Sample], float]) -> list[float]:
        return [statistics.median(value(s) for s in samples) for samples in per_clip]

    timed_steps = all(s.step_ms for samples in per_clip for s in samples)
    totals = medians(lambda s: s.total_ms)
    return {
        "features_ms": float(np.mean(medians(lambda s: s.features_ms))),
        "encoder_ms": float(np.mean(medians(lambda s: s.encoder_ms))),
        "per_token_ms": float(np.mean(medians(lambda s: (s.total_ms - s.features_ms - s.encoder_ms) / new_tokens))),
        "step_ms": float(np.mean(medians(lambda s: statistics.median(s.step_ms)))) if timed_steps else None,
        "total_ms": float(np.mean(totals)),
        "rtf": sum(totals) / 1000 / sum(durations_s),
    }


def _ratio(base: float | None, value: float | None) -> float | None:
    return None if base is None or value is None or value <= 0 else base / value


def _summarise(
    engines: Sequence[Engine],
    samples: dict[str, list[list[Sample]]],
    durations_s: Sequence[float],
    rss_added: dict[str, float | None],
    new_tokens: int,
) -> list[EngineResult]:
    reference = engines[0].name
    reference_tokens = [s[0].tokens for s in samples[reference]]
    results = []
    for engine in engines:
        numbers = _aggregate(samples[engine.name], durations_s, new_tokens)
        same = sum(s[0].tokens == t for s, t in zip(samples[engine.name], reference_tokens))
        results.append(
            EngineResult(
                engine.name,
                features_ms=cast(float, numbers["features_ms"]),
                encoder_ms=cast(float, numbers["encoder_ms"]),
                per_token_ms=cast(float, numbers["per_token_ms"]),
                step_ms=numbers["step_ms"],
                total_ms=cast(float, numbers["total_ms"]),
                rtf=cast(float, numbers["rtf"]),
                rss_added_mb=rss_added[engine.name],
                same_tokens_as_reference=same,
                clips=len(reference_tokens),
            )
        )
    base = results[0]
    for result in results:
        result.ratios = {
            "total": _ratio(base.total_ms, result.total_ms),
            "features": _ratio(base.features_ms, result.features_ms),
            "encoder": _ratio(base.encoder_ms, result.encoder_ms),
            "per_token": _ratio(base.per_token_ms, result.per_token_ms),
            "step": _ratio(base.step_ms, result.step_ms),
        }
    return results


def _table(results: Sequence[EngineResult]) -> str:
    def number(value: float | None, digits: int) -> str:
        return "-" if value is None else f"{value:.{digits}f}"

    header = ("engine", "features ms", "encoder ms", "per-token ms", "step ms", "total ms", "RTF", "x total", "x features", "x encoder", "x token", "x step", "tokens=HF", "RSS +MB")
    rows = [header]
    for r in results:
        rows.append(
            (
                r.name,
                f"{r.features_ms:.1f}",
                f"{r.encoder_ms:.1f}",
                f"{r.per_token_ms:.2f}",
                number(r.step_ms, 2),
                f"{r.total_ms:.1f}",
                f"{r.rtf:.3f}",
                number(r.ratios["total"], 2),
                number(r.ratios["features"], 2),
                number(r.ratios["encoder"], 2),
                number(r.ratios["per_token"], 2),
                number(r.ratios["step"], 2),
                f"{r.same_tokens_as_reference}/{r.clips}",
                number(r.rss_added_mb, 0),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths))) for row in rows]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--model", help="a Whisper checkpoint directory (default: build --model-size)")
    parser.add_argument("--model-size", choices=sorted(_BUILDERS), default="tiny.en", help="the released configuration to build (default tiny.en)")
    parser.add_argument("--pack", help="a compiled pack with fp32 and int8/cpu asr graphs (default: compile one)")
    parser.add_argument("--workdir", help="where the checkpoint, pack and conversion are built and kept (default: a temporary directory, removed)")
    parser.add_argument("--calibration", help="a folder of 16-kHz WAV files: the compiled int8 is static, calibrated on them (default: dynamic)")
    parser.add_argument(
        "--min-agreement",
        type=float,
        default=0.9,
        help="the compile's floor for int8's top-1 agreement with fp32 (default 0.9, the compile's own)",
    )
    parser.add_argument("--language", default="en", help="the language every engine is given, for multilingual models (default en)")
    parser.add_argument("--new-tokens", type=int, default=20, help="tokens generated per clip, exactly (default 20)")
    parser.add_argument("--clips", type=int, default=5, help="LibriVox clips transcribed per repeat (default 5: all of them)")
    parser.add_argument("--repeats", type=int, default=3, help="timed transcriptions per clip and engine (default 3; medians are reported)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed transcriptions per engine first (default 1)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="threads for torch, ONNX Runtime and CTranslate2 (default: all cores)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON on stdout (the table goes to stderr)")
    args = parser.parse_args(argv)
    if args.new_tokens < 2 or args.clips < 1 or args.repeats < 1 or args.threads < 1 or args.warmup < 0:
        parser.error("expected --new-tokens >= 2, --clips >= 1, --repeats >= 1, --threads >= 1, --warmup >= 0")

    with tempfile.TemporaryDirectory(prefix="edgemm-asr-bench-") as temporary:
        workdir = Path(args.workdir or temporary)
        workdir.mkdir(parents=True, exist_ok=True)
        model, pack_dir, facts = _prepare_pack(args, workdir)
        converted, faster_whisper_status = _faster_whisper(model, workdir, facts)

        import torch

        from edgemm.runtime.pack import load
        from edgemm.runtime.transcriber import WhisperSettings

        torch.set_num_threads(args.threads)
        torch.set_num_interop_threads(1)
        clips, names = _clips(args.clips)
        durations_s = [clip.size / SAMPLE_RATE_HZ for clip in clips]
        pack = load(pack_dir)
        _check_whisper(model, pack)
        component = pack.components_for("asr")[0]
        assert component.generation is not None and component.generation.decoder_start_token_id is not None
        whisper = WhisperSettings.from_component(component)
        language = args.language if whisper.is_multilingual else None
        prompt = [component.generation.decoder_start_token_id]
        if language is not None:
            if language not in whisper.languages:
                raise SystemExit(f"--language {language!r}: expected one of the model's language codes {list(whisper.languages)[:8]}...")
            prompt += [whisper.languages[language], whisper.tasks["transcribe"]]
        prompt.append(whisper.no_timestamps_token_id)
        eos = component.generation.eos_token_ids[0]
        factories: list[tuple[str, Callable[[], Engine]]] = [
            ("transformers eager fp32", lambda: HfEngine(model, language)),
            ("pack fp32", lambda: PackEngine(pack, "fp32", args.threads, language, args.new_tokens)),
        ]
        if "int8" in component.precisions("cpu"):
            factories.append(("pack int8", lambda: PackEngine(pack, "int8", args.threads, language, args.new_tokens)))
        else:
            log(f"{pack_dir} has no int8/cpu asr graphs: measuring fp32 only")
        if converted is not None:
            for compute_type in ("float32", "int8"):
                load_ct2 = functools.partial(FasterWhisperEngine, converted, compute_type, args.threads, prompt, eos)
                factories.append((f"faster-whisper {compute_type}", load_ct2))
        rss_added: dict[str, float | None] = {}
        engines: list[Engine] = []
        for label, factory in factories:
            log(f"loading and warming up {label}")
            before = rss_mb()
            engine = factory()
            for _ in range(args.warmup):
                engine.run(clips[0], args.new_tokens)
            after = rss_mb()
            rss_added[engine.name] = None if before is None or after is None else after - before
            engines.append(engine)
        log(f"timing {len(engines)} engines x {len(clips)} clips x {args.repeats} repeats, {args.new_tokens} new tokens each")
        cpu_start, times = cpu_seconds(), os.times()
        samples = measure(engines, clips, names, args.new_tokens, args.repeats)
        others = others_share(cpu_start, times.user + times.system)
        results = _summarise(engines, samples, durations_s, rss_added, args.new_tokens)

    setup = {
        "model": model if args.model else f"{_BUILDERS[args.model_size][0]} (released Whisper {args.model_size} config, random weights)",
        "pack": str(pack_dir) if args.pack else "compiled by this run" if "compile_s" in facts else f"{pack_dir} (reused)",
        "clips": names,
        "clip_durations_s": durations_s,
        "prompt": prompt,
        "new_tokens": args.new_tokens,
        "repeats": args.repeats,
        "threads": args.threads,
        "cpu_count": os.cpu_count(),
        "machine": f"{platform.machine()} {platform.processor() or platform.platform()}",
        "faster_whisper": faster_whisper_status,
        "other_processes_cpu_share": others,
        "versions": versions(("torch", "transformers", "onnxruntime", "numpy", "faster-whisper", "ctranslate2")),
        "peak_rss_mb": peak_rss_mb(),
        **facts,
    }
    text = [
        f"Whisper transcription, batch 1, greedy, exactly {args.new_tokens} new tokens, {args.threads} threads, "
        f"{len(names)} clips ({sum(durations_s):.1f} s of audio) x {args.repeats} repeats (median per clip, mean over clips)",
        _table(results),
        "RTF: processing time / audio duration (waveform -> text). x: transformers' time / the engine's. tokens=HF: tokens"
        " identical to transformers' (the pack's fp32 should match all; int8 and faster-whisper may drift on random weights).",
        f"faster-whisper: {faster_whisper_status}",
        f"peak RSS of this process (all engines loaded together): {setup['peak_rss_mb']:.0f} MB",
    ]
    if "compile_peak_rss_mb" in facts:
        text.append(f"compile (fp32 + int8/cpu, validation included): {facts['compile_s']:.0f} s, peak RSS {facts['compile_peak_rss_mb']:.0f} MB")
    return report(text, others, setup, results, args.json)


if __name__ == "__main__":
    sys.exit(main())
