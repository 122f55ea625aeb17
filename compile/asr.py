"""Compiling a speech recogniser (Whisper) into an ``asr`` component: load -> export -> validate ->
quantize -> validate -> install.

Graphs (see :mod:`edgemm.compile.families.whisper`): ``encoder`` (log-mel features -> encoder states),
``cross_kv`` (encoder states -> every decoder layer's cross-attention keys/values, once per 30-s
segment) and ``decoder_step`` (self-attention cache in/out, the same graph for prefill and steps).
The encoder and the cross-attention projections are two graphs, as the issue asks, rather than one
as in the captioners: the extra call costs one (batch, 1500, d_model) hand-over per segment, nothing
per token.

Validation against the torch model (stored in the manifest): the numpy log-mel features against
``WhisperFeatureExtractor`` (<= 1e-4), encoder states and cross keys/values (max abs diff), teacher-
forced logits (<= ``logits_tolerance``), greedy tokens against ``generate()`` with the checkpoint's
own settings (language detected per clip for multilingual models), detected languages and no-speech
probabilities. Reduced-precision variants are validated against fp32 by teacher-forced top-1 agreement,
as the captioners' are. Nothing is written into the pack unless every check passes.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgemm.runtime import graph_io
from edgemm.runtime.errors import CompileError, EdgemmError, ValidationFailedError
from edgemm.runtime.pack import Component, Graph, Pack, ValidationResult, file_ref, graph_from_file
from edgemm.runtime.transcriber import CROSS_KV, ENCODER, ROLES, STEP, Transcriber

from .config import CompileConfig, VariantConfig
from .progress import Progress
from .staging import (
    CPU,
    check_out,
    install,
    load_staged,
    provenance,
    quantize_variant,
    read_model_config,
    report,
    staging,
    summary,
)

if TYPE_CHECKING:
    from .families.whisper import WhisperFamily

__all__ = [
    "ASR_ARCHITECTURES",
    "DEFAULT_COMPONENT",
    "compile_asr",
    "detect_asr_architecture",
    "load_whisper",
    "teacher_forced_logits",
    "validation_audio",
]

ASR_ARCHITECTURES = {"WhisperForConditionalGeneration": "whisper"}
"""Architectures compiled into ``asr`` components -> family name."""

DEFAULT_COMPONENT = "speech"
"""The component name an asr compile uses when none is given."""

_MAX_CALIBRATION_STEPS = 96
_CHUNK = 2
"""Validation clips run together (see :func:`_chunks`)."""
_SYNTHETIC_CLIP_S = 5.0
"""Synthetic validation clips last 1.5 to 12.5 s (see :func:`edgemm.compile.zero_shot.synthetic_audio`)."""


def detect_asr_architecture(model: str, *, revision: str | None, local_files_only: bool) -> str | None:
    """The checkpoint's speech-recognition architecture, or None when it is not one.

    Raises:
        CompileError: the checkpoint's config cannot be read.
    """
    config = read_model_config(model, revision=revision, local_files_only=local_files_only)
    for name in getattr(config, "architectures", None) or []:
        if name in ASR_ARCHITECTURES:
            return str(name)
    return "WhisperForConditionalGeneration" if getattr(config, "model_type", None) == "whisper" else None


def load_whisper(model: str, *, revision: str | None = None, local_files_only: bool = False) -> WhisperFamily:
    """Loads a Whisper checkpoint (model, feature extractor, tokenizer, generation config).

    Raises:
        UnsupportedModelError: the checkpoint is not laid out as edgemm expects (the message says how).
        CompileError: the checkpoint cannot be loaded.
    """
    from transformers.utils import logging as hf_logging

    from .families.whisper import WhisperFamily

    hf_logging.disable_progress_bar()
    try:
        return WhisperFamily.from_pretrained(model, revision=revision, local_files_only=local_files_only)
    except EdgemmError:
        raise
    except Exception as exc:
        raise CompileError(f"could not load WhisperForConditionalGeneration from {model!r}: {type(exc).__name__}: {exc}") from exc


def validation_audio(config: CompileConfig, count: int, sample_rate_hz: int) -> list[np.ndarray]:
    """The clips a compile validates and calibrates on: the first WAV files of ``config.calibration``
    (16-kHz speech, ideally the deployment's), else deterministic synthetic clips.

    Raises:
        CompileError: the calibration folder is missing, empty, or holds unreadable or other-rate files.
    """
    from .zero_shot import calibration_audio, synthetic_audio

    if config.calibration:
        return calibration_audio(config.calibration, count, sample_rate_hz)
    return synthetic_audio(count, sample_rate_hz, _SYNTHETIC_CLIP_S)


# --- export ----------------------------------------------------------------------------------------


def _export_fp32(family: WhisperFamily, folder: Path, opset: int) -> None:
    import torch

    from .export import FORBIDDEN_IN_STEP_GRAPHS, export_module

    layers, heads, head_dim = family.geometry()
    batch = 2  # >= 2: the exporter keeps an axis symbolic only when its example size is >= 2
    cross = [n for i in range(layers) for n in graph_io.cross_names(i)]
    past = [n for i in range(layers) for n in graph_io.past_names(i)]
    present = [n for i in range(layers) for n in graph_io.present_names(i)]
    generator = torch.Generator().manual_seed(0)
    features = torch.randn(batch, family.num_mels, family.num_frames, generator=generator)
    encoder = family.encoder()
    export_module(
        encoder,
        [features],
        folder / f"{ENCODER}.onnx",
        input_names=[graph_io.INPUT_FEATURES],
        output_names=[graph_io.ENCODER_HIDDEN_STATES],
        dynamic_axes={graph_io.INPUT_FEATURES: {0: "batch"}},
        opset=opset,
    )
    cross_kv = family.cross_kv()
    with torch.no_grad():
        hidden = encoder(features)
        cross_values = list(cross_kv(hidden))
    export_module(
        cross_kv,
        [hidden],
        folder / f"{CROSS_KV}.onnx",
        input_names=[graph_io.ENCODER_HIDDEN_STATES],
        output_names=cross,
        dynamic_axes={graph_io.ENCODER_HIDDEN_STATES: {0: "batch"}},
        opset=opset,
    )
    vocab = int(family.model.config.vocab_size)
    step_ids = torch.randint(0, vocab, (batch, 3), generator=generator)
    past_values = [torch.randn(batch, heads, 4, head_dim, generator=generator) for _ in past]
    # The encoder length stays fixed (1500): Whisper's encoder only takes 30-s segments.
    step_axes: dict[str, dict[int, str]] = {graph_io.INPUT_IDS: {0: "batch", 1: "sequence"}}
    step_axes.update({n: {0: "batch", 2: "past_sequence"} for n in past})
    step_axes.update({n: {0: "batch"} for n in cross})
    export_module(
        family.decoder_step(),
        [step_ids, *past_values, *cross_values],
        folder / f"{STEP}.onnx",
        input_names=[graph_io.INPUT_IDS, *past, *cross],
        output_names=[graph_io.LOGITS, *present],
        dynamic_axes=step_axes,
        opset=opset,
        forbid_ops=FORBIDDEN_IN_STEP_GRAPHS,
    )


# --- validation ------------------------------------------------------------------------------------


def teacher_forced_logits(transcriber: Transcriber, cross: dict[str, np.ndarray], sequences: np.ndarray, prompt_length: int) -> np.ndarray:
    """Logits the pack's decoder predicts for each token after the prompt, given the ones before it.

    The prompt is fed in one prefill call with an empty cache, then one token per step, as decoding does.

    Args:
        sequences: np.ndarray, shape (n, prompt_length + T), int64: prompts and the tokens to score.

    Returns:
        np.ndarray, shape (n, T, vocab), float32: position t predicts ``sequences[:, prompt_length + t]``.
    """
    state = transcriber.state(dict(cross))
    steps = [state.step(sequences[:, :prompt_length])]
    for t in range(prompt_length, sequences.shape[1] - 1):
        steps.append(state.step(sequences[:, t : t + 1]))
    return np.stack(steps, axis=1).astype(np.float32)


def _trim(row: Sequence[int], eos: Sequence[int]) -> tuple[int, ...]:
    out = []
    for token in row:
        out.append(int(token))
        if token in eos:
            break
    return tuple(out)


@dataclasses.dataclass
class _Reference:
    """What the torch model gives on a few validation clips (one chunk)."""

    features: np.ndarray
    sequences: np.ndarray  # (n, prompt + T): generate()'s prompts and greedy tokens
    prompt_length: int
    tokens: list[tuple[int, ...]]  # per clip, cut at EOS (which is left out, as in Transcription)
    languages: list[str | None]
    hidden: np.ndarray
    cross: list[np.ndarray]  # dropped once compared: they are the largest arrays (491 MB a clip for large-v3)
    logits: np.ndarray  # (n, T, vocab) teacher-forced on sequences
    no_speech: np.ndarray


@dataclasses.dataclass
class _Run:
    """One pack variant on a few validation clips (one chunk)."""

    tokens: list[tuple[int, ...]]
    languages: list[str | None]
    forced: np.ndarray
    no_speech: np.ndarray
    encoder_s: float
    decode_s: float
    steps: int


def _chunks(clips: list[np.ndarray]) -> list[list[np.ndarray]]:
    """Validation runs :data:`_CHUNK` clips at a time: the encoder's attention takes batch x heads x
    1500 x 1500 floats per layer, and the cross keys/values 491 MB a clip for large-v3."""
    return [clips[i : i + _CHUNK] for i in range(0, len(clips), _CHUNK)]


def _reference(family: WhisperFamily, clips: list[np.ndarray], rate: int, max_new: int) -> _Reference:
    import torch

    features = family.reference_features(clips, rate)
    hidden, cross = family.reference_encoder(torch.from_numpy(features))
    sequences = family.reference_generate(hidden, None, "transcribe" if family.is_multilingual else None, max_new).numpy()
    prompt_length = family.prompt_length
    starts = {int(t) for t in sequences[:, 0]} | {int(t) for t in sequences[:, prompt_length - 1]}
    if starts != {int(family.generation_config.decoder_start_token_id), family.no_timestamps_token_id}:
        raise ValidationFailedError(
            f"generate() started its sequences with {sequences[:, :prompt_length].tolist()}; expected "
            f"{prompt_length}-token prompts from <|startoftranscript|> to <|notimestamps|>"
        )
    by_id = {v: k for k, v in family.languages().items()}
    languages: list[str | None] = [by_id.get(int(row[1])) for row in sequences] if family.is_multilingual else [None] * len(clips)
    generated = sequences[:, prompt_length:]
    if generated.shape[1] == 0:
        raise ValidationFailedError("the torch model generated no tokens on the validation clips; cannot validate")
    eos = tuple(int(e) for e in family.generation_settings(None).eos_token_ids)
    tokens = [tuple(t for t in _trim(row, eos) if t not in eos) for row in generated.tolist()]
    logits = family.reference_logits(hidden, torch.from_numpy(sequences[:, :-1])).numpy()[:, prompt_length - 1 :, :]
    start = torch.full((len(clips), 1), int(family.generation_config.decoder_start_token_id), dtype=torch.long)
    no_speech = _softmax(family.reference_logits(hidden, start).numpy()[:, 0, :])[:, family.no_speech_token_id]
    return _Reference(features, sequences, prompt_length, tokens, languages, hidden.numpy(), [c.numpy() for c in cross], logits, no_speech)


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits.astype(np.float64) - logits.max(axis=-1, keepdims=True))
    return np.asarray(shifted / shifted.sum(axis=-1, keepdims=True))


def _pack_run(transcriber: Transcriber, clips: list[np.ndarray], reference: _Reference, max_new: int) -> tuple[_Run, dict[str, np.ndarray]]:
    """The pack on one chunk: greedy transcription, teacher-forced logits on the reference's
    sequences, no-speech probabilities; also returns the cross keys/values it computed."""
    start = time.perf_counter()
    cross = transcriber.encode(transcriber.features(clips))
    encoder_s = time.perf_counter() - start
    start = time.perf_counter()
    durations = [clip.size / transcriber.sample_rate_hz for clip in clips]
    results = transcriber.transcribe_encoded(cross, durations, no_speech_threshold=None, max_new_tokens=max_new)
    decode_s = time.perf_counter() - start
    steps = max(len(r.tokens) + 1 for r in results)
    forced = teacher_forced_logits(transcriber, cross, reference.sequences, reference.prompt_length)
    no_speech = _softmax(transcriber.start_logits(cross))[:, transcriber.whisper.no_speech_token_id]
    run = _Run([r.tokens for r in results], [r.language for r in results], forced, no_speech, encoder_s, decode_s, steps)
    return run, cross


def _agreement(a: Sequence[np.ndarray], b: Sequence[np.ndarray]) -> float:
    """Top-1 agreement of teacher-forced logits, over every position of every chunk."""
    same = sum(int((x.argmax(-1) == y.argmax(-1)).sum()) for x, y in zip(a, b))
    return same / max(1, sum(x.shape[0] * x.shape[1] for x in a))


def _speeds(runs: Sequence[_Run], clips: int) -> tuple[float, float]:
    """(encoder ms per clip, decode ms per token)."""
    return 1000 * sum(r.encoder_s for r in runs) / clips, 1000 * sum(r.decode_s for r in runs) / max(1, sum(r.steps for r in runs))


def _validate_fp32(
    family: WhisperFamily, transcriber: Transcriber, clips: list[np.ndarray], config: CompileConfig, progress: Progress
) -> tuple[ValidationResult, list[_Reference], list[_Run]]:
    """fp32 graphs vs the torch model, chunk by chunk. Returns the result, the references and the
    fp32 runs (what the variants are compared with)."""
    rate = transcriber.sample_rate_hz
    references: list[_Reference] = []
    runs: list[_Run] = []
    diffs = dict.fromkeys(("input_features", "encoder_hidden_states", "cross_kv", "logits", "no_speech_prob"), 0.0)
    chunks = _chunks(clips)
    for i, chunk in enumerate(chunks):
        reference = _reference(family, chunk, rate, config.validate.max_new_tokens)
        features = transcriber.features(chunk)
        run, cross = _pack_run(transcriber, chunk, reference, config.validate.max_new_tokens)
        found = {
            "input_features": np.abs(features - reference.features).max(),
            "encoder_hidden_states": np.abs(transcriber.encoder_hidden_states(features) - reference.hidden).max(),
            "cross_kv": max(float(np.abs(cross[name] - ref).max()) for name, ref in zip(_cross_names(transcriber), reference.cross)),
            "logits": np.abs(run.forced - reference.logits).max(),
            "no_speech_prob": np.abs(run.no_speech - reference.no_speech).max(),
        }
        diffs = {k: max(v, float(found[k])) for k, v in diffs.items()}
        reference.cross = []
        references.append(reference)
        runs.append(run)
        progress.count(i + 1, len(chunks), "clips (torch reference, pack) in chunks")
    encoder_ms, token_ms = _speeds(runs, len(clips))
    metrics = {f"{k}_max_abs_diff": v for k, v in diffs.items()}
    metrics.update(
        logits_max_abs=max(float(np.abs(r.logits).max()) for r in references),
        token_agreement=_agreement([r.forced for r in runs], [r.logits for r in references]),
        greedy_exact_match=float(np.mean([a == b for run, ref in zip(runs, references) for a, b in zip(run.tokens, ref.tokens)])),
        encoder_ms_per_clip=encoder_ms,
        decode_ms_per_token=token_ms,
    )
    if family.is_multilingual:
        metrics["language_agreement"] = float(np.mean([a == b for run, ref in zip(runs, references) for a, b in zip(run.languages, ref.languages)]))
    thresholds = {"logits_max_abs_diff": config.validate.logits_tolerance, "input_features_max_abs_diff": 1e-4}
    passed = all(metrics[k] <= v for k, v in thresholds.items())
    result = ValidationResult(
        subject="asr[fp32/any]", reference="torch fp32", metrics=metrics, thresholds=thresholds, passed=passed, num_samples=len(clips)
    )
    return result, references, runs


def _cross_names(transcriber: Transcriber) -> list[str]:
    assert transcriber.component.kv_cache is not None
    return [n for i in range(transcriber.component.kv_cache.num_layers) for n in graph_io.cross_names(i)]


def _validate_variant(
    variant: VariantConfig, transcriber: Transcriber, fp32: list[_Run], clips: list[np.ndarray], references: list[_Reference], config: CompileConfig
) -> ValidationResult:
    runs = [_pack_run(transcriber, chunk, ref, config.validate.max_new_tokens)[0] for chunk, ref in zip(_chunks(clips), references)]
    agreement = _agreement([r.forced for r in runs], [r.forced for r in fp32])
    metrics = {
        "token_agreement": agreement,
        "greedy_exact_match": float(np.mean([a == b for run, base in zip(runs, fp32) for a, b in zip(run.tokens, base.tokens)])),
        "logits_max_abs_diff": max(float(np.abs(r.forced - b.forced).max()) for r, b in zip(runs, fp32)),
        "no_speech_prob_max_abs_diff": max(float(np.abs(r.no_speech - b.no_speech).max()) for r, b in zip(runs, fp32)),
    }
    if transcriber.is_multilingual:
        metrics["language_agreement"] = float(np.mean([a == b for run, base in zip(runs, fp32) for a, b in zip(run.languages, base.languages)]))
    if variant.target == "cpu":
        # Speeds measured here are this machine's CPU; GPU variants are timed on the device.
        (encoder_ms, token_ms), (fp32_encoder_ms, fp32_token_ms) = _speeds(runs, len(clips)), _speeds(fp32, len(clips))
        metrics["encoder_speedup_vs_fp32"] = fp32_encoder_ms / max(encoder_ms, 1e-9)
        metrics["decode_speedup_vs_fp32"] = fp32_token_ms / max(token_ms, 1e-9)
    return ValidationResult(
        subject=f"asr[{variant.precision}/{'gpu' if variant.precision == 'fp16' else variant.target}]",
        reference="pack fp32",
        metrics=metrics,
        thresholds={"token_agreement": config.validate.min_agreement},
        passed=agreement >= config.validate.min_agreement,
        num_samples=len(clips),
    )


class _Recording:
    """A decoder state that records the step graph's inputs (up to a bound) as it decodes."""

    def __init__(self, state: Any, feeds: list[dict[str, np.ndarray]]) -> None:
        self.state = state
        self.feeds = feeds

    def step(self, input_ids: np.ndarray) -> np.ndarray:
        if len(self.feeds) < _MAX_CALIBRATION_STEPS:
            self.feeds.append({graph_io.INPUT_IDS: input_ids, **self.state.past, **self.state.cross})
        return np.asarray(self.state.step(input_ids))

    def reorder(self, rows: np.ndarray) -> None:
        self.state.reorder(rows)


def _record_calibration(transcriber: Transcriber, clips: list[np.ndarray], max_new: int) -> dict[str, list[dict[str, np.ndarray]]]:
    """Inputs the fp32 graphs see while transcribing ``clips`` (for static INT8)."""
    from edgemm.runtime.generation import generate

    assert transcriber.component.generation is not None
    feeds: dict[str, list[dict[str, np.ndarray]]] = {role: [] for role in ROLES}
    for clip in clips:
        features = transcriber.features([clip])
        feeds[ENCODER].append({graph_io.INPUT_FEATURES: features})
        hidden = transcriber.encoder_hidden_states(features)
        feeds[CROSS_KV].append({graph_io.ENCODER_HIDDEN_STATES: hidden})
        cross = transcriber.encode(features)
        language = transcriber.pick_languages(transcriber.start_logits(cross))[0][0] if transcriber.is_multilingual else None
        prompt = np.asarray([transcriber.prompt_ids(language, "transcribe")], np.int64)
        state = _Recording(transcriber.state(cross), feeds[STEP])
        generate(state, prompt, transcriber.component.generation, max_new_tokens=max_new, num_beams=1)
    return feeds


# --- the pack --------------------------------------------------------------------------------------


def _component(family: WhisperFamily, root: Path, name: str, graphs: Sequence[Graph], config: CompileConfig, validation: Sequence[ValidationResult]) -> Component:
    return Component(
        name=name,
        task="asr",
        family=family.name,
        graphs=tuple(graphs),
        provenance=provenance(config, family.architectures[0]),
        files={"tokenizer": file_ref(root, f"{name}/tokenizer.json")},
        audio=family.audio_preprocessing(),
        generation=family.generation_settings(config.export.max_new_tokens),
        kv_cache=family.kv_layout(),
        settings=family.settings(),
        validation=tuple(validation),
    )


def compile_asr(config: CompileConfig, *, show_progress: bool = True) -> Pack:
    """Compiles a Whisper checkpoint into an ``asr`` component of ``config.out`` (default name "speech").

    Stages: load; export fp32 graphs (encoder, cross-attention keys/values, decoder step with a KV
    cache); validate them against the torch model; build each reduced-precision variant and validate
    it against fp32. ``config.validate.num_images`` is the number of validation clips;
    ``config.calibration`` a folder of 16-kHz WAV files (speech) to validate and calibrate on.

    Returns:
        The pack, loaded and verified.

    Raises:
        UnsupportedModelError: the checkpoint is not a Whisper model edgemm can compile.
        ExportError: torch.onnx failed, or produced control flow in the decoder step.
        ValidationFailedError: a graph is outside its tolerance (nothing is written to the pack).
        CompileError: anything else that stops the compile.
    """
    out = Path(config.out)
    check_out(out)
    name = config.component or DEFAULT_COMPONENT
    progress = Progress(3 + len(config.variants), enabled=show_progress)
    with staging(out, name) as root:
        with progress.stage(f"loading {config.load.model}"):
            family = load_whisper(config.load.model, revision=config.load.revision, local_files_only=config.load.local_files_only)
            kind = "multilingual" if family.is_multilingual else "English-only"
            layers, heads, head_dim = family.geometry()
            progress.note(f"{family.architectures[0]} -> family {family.name} ({kind}, {layers} decoder layers, {heads} heads of {head_dim})")
        rate = family.audio_preprocessing().sample_rate_hz
        count = max(config.validate.num_images, config.num_calibration)
        clips = validation_audio(config, count, rate)
        validation_clips = clips[: config.validate.num_images]
        with progress.stage("exporting fp32 graphs (encoder, cross-attention keys/values, decoder step with KV cache)"):
            _export_fp32(family, root / name, config.export.opset)
            family.tokenizer.backend_tokenizer.save(str(root / name / "tokenizer.json"))
            graphs = [graph_from_file(root, f"{name}/{role}.onnx", role=role, precision="fp32", target="any") for role in ROLES]
            progress.note(", ".join(f"{g.role} {g.file.size_bytes / 1e6:.1f} MB" for g in graphs))

        def staged(graph_list: Sequence[Graph], precision: str, target: str) -> Transcriber:
            pack = load_staged(root, _component(family, root, name, graph_list, config, ()))
            return Transcriber(pack, name, precision=precision, options=CPU, graph_target=target, backend="onnxruntime")

        with progress.stage(f"validating fp32 graphs against torch on {len(validation_clips)} clips"):
            fp32 = staged(graphs, "fp32", "cpu")
            fp32_result, references, fp32_runs = _validate_fp32(family, fp32, validation_clips, config, progress)
            report(progress, fp32_result)
            if not fp32_result.passed:
                raise ValidationFailedError(f"fp32 export is outside tolerance: {summary(fp32_result)}")
        results = [fp32_result]
        calibration: dict[str, list[dict[str, np.ndarray]]] | None = None
        for variant in config.variants:
            with progress.stage(f"building {variant.label} variant"):
                static = variant.precision == "int8" and (variant.target == "tensorrt" or config.calibration is not None)
                if static and calibration is None:
                    calibration = _record_calibration(fp32, clips[: config.num_calibration], config.validate.max_new_tokens)
                    progress.note(f"calibration: {len(calibration[ENCODER])} clips, {len(calibration[STEP])} decoder steps")
                new_graphs = quantize_variant(root, name, ROLES, variant, calibration if static else None)
                variant_transcriber = staged(new_graphs, variant.precision, new_graphs[0].target)
                result = _validate_variant(variant, variant_transcriber, fp32_runs, validation_clips, references, config)
                report(progress, result)
                if not result.passed:
                    raise ValidationFailedError(
                        f"{variant.label} variant agrees with fp32 below the floor (--min-agreement {config.validate.min_agreement}): {summary(result)}"
                    )
                graphs += new_graphs
                results.append(result)
        final = _component(family, root, name, graphs, config, results)
        return install(root, out, final)
