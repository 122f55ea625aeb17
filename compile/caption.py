"""Compiling a captioner: load -> export -> validate -> quantize -> validate -> write the pack component.

Nothing is written into the pack until every graph has passed its checks: the graphs are built in
a staging directory beside the pack and moved in at the end, and only the compiled component is
replaced in an existing pack.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgemm.runtime import graph_io
from edgemm.runtime.captioner import Captioner
from edgemm.runtime.errors import (
    CompileError,
    EdgemmError,
    UnsupportedModelError,
    ValidationFailedError,
)
from edgemm.runtime.image import preprocess
from edgemm.runtime.pack import (
    Component,
    Graph,
    Pack,
    ValidationResult,
    file_ref,
    graph_from_file,
)

from .config import CompileConfig, VariantConfig
from .families import CAPTION_ARCHITECTURES, CaptionFamily, caption_family
from .images import calibration_images, synthetic_images
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

__all__ = ["compile_captioner", "detect_architecture", "load_captioner", "teacher_forced_logits"]

_MAX_CALIBRATION_STEPS = 96


def detect_architecture(model: str, *, revision: str | None, local_files_only: bool) -> str:
    """The checkpoint's architecture name, read from its config.

    Raises:
        CompileError: the checkpoint cannot be found or read.
    """
    config = read_model_config(model, revision=revision, local_files_only=local_files_only)
    architectures = list(getattr(config, "architectures", None) or [])
    for name in architectures:
        if name in CAPTION_ARCHITECTURES:
            return str(name)
    by_type = {"blip": "BlipForConditionalGeneration", "vision-encoder-decoder": "VisionEncoderDecoderModel", "florence2": "Florence2ForConditionalGeneration"}
    if config.model_type in by_type:
        return by_type[config.model_type]
    found = architectures[0] if architectures else config.model_type
    return str(found)


def load_captioner(model: str, *, revision: str | None = None, local_files_only: bool = False) -> CaptionFamily:
    """Loads a captioner checkpoint with its family adapter.

    Raises:
        UnsupportedModelError: the architecture is not a supported captioner (the message lists them).
        CompileError: the checkpoint cannot be loaded.
    """
    from transformers.utils import logging as hf_logging

    architecture = detect_architecture(model, revision=revision, local_files_only=local_files_only)
    family = caption_family(architecture)
    hf_logging.disable_progress_bar()
    try:
        return family.from_pretrained(model, revision=revision, local_files_only=local_files_only)
    except EdgemmError:
        raise
    except Exception as exc:
        raise CompileError(f"could not load {architecture} from {model!r}: {type(exc).__name__}: {exc}") from exc


def _clean_up_spaces(tokenizer: Any) -> bool:
    """Whether transformers cleans up spaces when this tokenizer decodes (never for BPE models)."""
    if not getattr(tokenizer, "clean_up_tokenization_spaces", False):
        return False
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None and type(backend.model).__name__ == "BPE":
        return bool(getattr(tokenizer, "clean_up_tokenization_spaces_for_bpe_even_though_it_will_corrupt_output", False))
    return True


# --- export ----------------------------------------------------------------------------------------


def _export_fp32(family: CaptionFamily, folder: Path, opset: int, prompt: str | None) -> None:
    import torch

    from .export import FORBIDDEN_IN_STEP_GRAPHS, export_module

    layout = family.kv_layout()
    image = family.image_preprocessing()
    height, width = image.size
    batch = 2
    cross = [n for i in range(layout.num_layers) for n in graph_io.cross_names(i)]
    past = [n for i in range(layout.num_layers) for n in graph_io.past_names(i)]
    present = [n for i in range(layout.num_layers) for n in graph_io.present_names(i)]
    generator = torch.Generator().manual_seed(0)
    pixels = torch.randn(batch, 3, height, width, generator=generator)
    encoder_args: list[torch.Tensor] = [pixels]
    encoder_axes: dict[str, dict[int, str]] = {graph_io.PIXEL_VALUES: {0: "batch"}}
    if family.encoder_reads_prompt:
        ids = family.encoder_prompt_ids(prompt)
        # At least 2 tokens so the exporter keeps the prompt axis symbolic.
        encoder_args.append(torch.tensor([ids + ids[-1:] * max(0, 2 - len(ids))] * batch, dtype=torch.long))
        encoder_axes[graph_io.INPUT_IDS] = {0: "batch", 1: "prompt_sequence"}
    encoder = family.encoder()
    export_module(
        encoder,
        encoder_args,
        folder / "encoder.onnx",
        input_names=family.encoder_input_names(),
        output_names=cross,
        dynamic_axes=encoder_axes,
        opset=opset,
    )
    with torch.no_grad():
        cross_values = list(encoder(*encoder_args))
    vocab_floor = 3
    vocab = int(family.model.get_output_embeddings().weight.shape[0]) if hasattr(family.model, "get_output_embeddings") and family.model.get_output_embeddings() is not None else 100
    step_ids = torch.randint(vocab_floor, max(vocab_floor + 1, vocab), (batch, 3), generator=generator)
    past_values = [torch.randn(batch, layout.num_heads, 4, layout.head_dim, generator=generator) for _ in past]
    step_axes: dict[str, dict[int, str]] = {graph_io.INPUT_IDS: {0: "batch", 1: "sequence"}}
    step_axes.update({n: {0: "batch", 2: "past_sequence"} for n in past})
    step_axes.update({n: {0: "batch", 2: "encoder_sequence"} for n in cross})
    export_module(
        family.decoder_step(),
        [step_ids, *past_values, *cross_values],
        folder / "decoder_step.onnx",
        input_names=[graph_io.INPUT_IDS, *past, *cross],
        output_names=[graph_io.LOGITS, *present],
        dynamic_axes=step_axes,
        opset=opset,
        forbid_ops=FORBIDDEN_IN_STEP_GRAPHS,
    )


# --- validation ------------------------------------------------------------------------------------


def teacher_forced_logits(captioner: Captioner, cross: dict[str, np.ndarray], prefix: Sequence[int], tokens: np.ndarray) -> np.ndarray:
    """Logits the pack's decoder predicts for each of ``tokens`` given the ones before it.

    The prefix is fed in one prefill call with an empty cache, then one token per step, as
    decoding does.

    Args:
        tokens: np.ndarray, shape (n, T), int64: the tokens to score (the same for the reference).

    Returns:
        np.ndarray, shape (n, T, vocab), float32.
    """
    state = captioner.state(dict(cross))
    n = tokens.shape[0]
    steps = [state.step(np.tile(np.asarray(prefix, dtype=np.int64), (n, 1)))]
    for t in range(tokens.shape[1] - 1):
        steps.append(state.step(tokens[:, t : t + 1]))
    return np.stack(steps, axis=1).astype(np.float32)


def _trim(row: Sequence[int], eos: Sequence[int]) -> tuple[int, ...]:
    out = []
    for token in row:
        out.append(int(token))
        if token in eos:
            break
    return tuple(out)


@dataclasses.dataclass
class _Run:
    """One captioner's greedy tokens and teacher-forced logits on the validation images."""

    tokens: list[tuple[int, ...]]
    forced: np.ndarray
    encoder_ms: float
    token_ms: float


def _pack_run(captioner: Captioner, pixels: np.ndarray, prompt: str | None, max_new: int, forced_on: np.ndarray) -> _Run:
    from edgemm.runtime.generation import generate

    assert captioner.component.generation is not None
    prefix, encoder_prompt = captioner._prompts(prompt)
    start = time.perf_counter()
    cross = captioner.encode(pixels, encoder_prompt)
    encoder_ms = (time.perf_counter() - start) * 1000 / len(pixels)
    start = time.perf_counter()
    result = generate(
        captioner.state(cross), np.tile(np.asarray(prefix, np.int64), (len(pixels), 1)), captioner.component.generation, max_new_tokens=max_new, num_beams=1
    )
    steps = max(1, max(len(t) for t in result.tokens))
    token_ms = (time.perf_counter() - start) * 1000 / steps
    forced = teacher_forced_logits(captioner, cross, prefix, forced_on)
    return _Run([tuple(t) for t in result.tokens], forced, encoder_ms, token_ms)


def _validate_fp32(
    family: CaptionFamily, captioner: Captioner, images: list[np.ndarray], config: CompileConfig, progress: Progress
) -> tuple[ValidationResult, np.ndarray]:
    """fp32 graphs vs the torch model. Returns the result and the reference greedy tokens (n, T)."""
    import torch

    component = captioner.component
    assert component.generation is not None
    assert component.image is not None
    prompt = component.generation.prompt
    max_new = config.validate.max_new_tokens
    pixels = preprocess(images, component.image)
    reference_pixels = np.asarray(family.image_processor(images=images, return_tensors="np")["pixel_values"], dtype=np.float32)
    pixel_diff = float(np.abs(pixels - reference_pixels).max())
    settings = component.generation
    kwargs = {
        "do_sample": False,
        "num_beams": 1,
        "max_new_tokens": max_new,
        "min_new_tokens": settings.min_new_tokens or None,
        "repetition_penalty": settings.repetition_penalty,
        "no_repeat_ngram_size": settings.no_repeat_ngram_size,
        "forced_bos_token_id": settings.forced_bos_token_id,
        "forced_eos_token_id": settings.forced_eos_token_id,
        "eos_token_id": list(settings.eos_token_ids),
        "pad_token_id": settings.pad_token_id,
    }
    pixel_tensor = torch.from_numpy(reference_pixels)
    sequences = family.reference_generate(pixel_tensor, prompt, kwargs).numpy()
    offset = family.generated_offset(prompt)
    generated = sequences[:, offset:]
    if generated.shape[1] == 0:
        raise ValidationFailedError("the torch model generated no tokens on the validation images; cannot validate")
    progress.count(1, 3, "reference generate, logits, pack")
    decoder_ids = torch.from_numpy(sequences[:, : offset + generated.shape[1] - 1])
    ref_logits = family.reference_logits(pixel_tensor, prompt, decoder_ids).numpy()[:, offset - 1 :, :]
    progress.count(2, 3, "reference generate, logits, pack")
    run = _pack_run(captioner, pixels, prompt, max_new, generated.astype(np.int64))
    progress.count(3, 3, "reference generate, logits, pack")
    logits_diff = float(np.abs(run.forced - ref_logits).max())
    scale = float(np.abs(ref_logits).max())
    eos = settings.eos_token_ids
    reference_tokens = [_trim(row, eos) for row in generated.tolist()]
    greedy_match = float(np.mean([a == b for a, b in zip(run.tokens, reference_tokens)]))
    token_agreement = float(np.mean(run.forced.argmax(-1) == ref_logits.argmax(-1)))
    metrics = {
        "logits_max_abs_diff": logits_diff,
        "logits_max_abs": scale,
        "pixel_values_max_abs_diff": pixel_diff,
        "token_agreement": token_agreement,
        "greedy_exact_match": greedy_match,
        "encoder_ms_per_image": run.encoder_ms,
        "decode_ms_per_token": run.token_ms,
    }
    thresholds = {"logits_max_abs_diff": config.validate.logits_tolerance, "pixel_values_max_abs_diff": 1e-4}
    passed = logits_diff <= thresholds["logits_max_abs_diff"] and pixel_diff <= thresholds["pixel_values_max_abs_diff"]
    result = ValidationResult(
        subject="caption[fp32/any]", reference="torch fp32", metrics=metrics, thresholds=thresholds, passed=passed, num_samples=len(images)
    )
    return result, generated.astype(np.int64)


def _validate_variant(
    variant: VariantConfig, captioner: Captioner, fp32: _Run, pixels: np.ndarray, reference_tokens: np.ndarray, config: CompileConfig
) -> ValidationResult:
    assert captioner.component.generation is not None
    run = _pack_run(captioner, pixels, captioner.component.generation.prompt, config.validate.max_new_tokens, reference_tokens)
    agreement = float(np.mean(run.forced.argmax(-1) == fp32.forced.argmax(-1)))
    metrics = {
        "token_agreement": agreement,
        "caption_exact_match": float(np.mean([a == b for a, b in zip(run.tokens, fp32.tokens)])),
        "logits_max_abs_diff": float(np.abs(run.forced - fp32.forced).max()),
    }
    if variant.target == "cpu":
        # Speeds measured here are this machine's CPU; GPU variants are timed by `edgemm bench` on the device.
        metrics["encoder_speedup_vs_fp32"] = fp32.encoder_ms / max(run.encoder_ms, 1e-9)
        metrics["decode_speedup_vs_fp32"] = fp32.token_ms / max(run.token_ms, 1e-9)
    thresholds = {"token_agreement": config.validate.min_agreement}
    return ValidationResult(
        subject=f"caption[{variant.precision}/{'gpu' if variant.precision == 'fp16' else variant.target}]",
        reference="pack fp32",
        metrics=metrics,
        thresholds=thresholds,
        passed=agreement >= config.validate.min_agreement,
        num_samples=len(pixels),
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


def _record_calibration(captioner: Captioner, images: list[np.ndarray], max_new: int) -> tuple[list[dict[str, np.ndarray]], list[dict[str, np.ndarray]]]:
    """Inputs the fp32 encoder and decoder step see while captioning ``images`` (for static INT8)."""
    from edgemm.runtime.generation import generate

    assert captioner.component.image is not None
    assert captioner.component.generation is not None
    encoder_feeds: list[dict[str, np.ndarray]] = []
    step_feeds: list[dict[str, np.ndarray]] = []
    prefix, encoder_prompt = captioner._prompts(captioner.component.generation.prompt)
    for image in images:
        pixels = preprocess([image], captioner.component.image)
        feed = {graph_io.PIXEL_VALUES: pixels}
        if encoder_prompt is not None:
            feed[graph_io.INPUT_IDS] = np.asarray([encoder_prompt], dtype=np.int64)
        encoder_feeds.append(feed)
        state = _Recording(captioner.state(captioner.encode(pixels, encoder_prompt)), step_feeds)
        generate(state, np.asarray([prefix], np.int64), captioner.component.generation, max_new_tokens=max_new, num_beams=1)
    return encoder_feeds, step_feeds


# --- the pack ----------------------------------------------------------------------------------


def _component(
    family: CaptionFamily, root: Path, name: str, graphs: Sequence[Graph], config: CompileConfig, validation: Sequence[ValidationResult]
) -> Component:
    prompt = family.prompt_spec(config.export.prompt)
    settings = {**prompt.to_settings(), "clean_up_tokenization_spaces": _clean_up_spaces(family.tokenizer)}
    return Component(
        name=name,
        task="caption",
        family=family.name,
        graphs=tuple(graphs),
        provenance=provenance(config, family.architectures[0]),
        files={"tokenizer": file_ref(root, f"{name}/tokenizer.json")},
        image=family.image_preprocessing(),
        generation=family.generation_settings(config.export.max_new_tokens, prompt),
        kv_cache=family.kv_layout(),
        settings=settings,
        validation=tuple(validation),
    )


def compile_captioner(config: CompileConfig, *, show_progress: bool = True) -> Pack:
    """Compiles a captioner checkpoint into a ``caption`` component of ``config.out``.

    Stages: load; export fp32 graphs (encoder with cross-attention keys/values, decoder step
    with a KV cache); validate them against the torch model (teacher-forced logits, greedy
    tokens, preprocessing); build each reduced-precision variant and validate it against fp32.

    Returns:
        The pack, loaded and verified.

    Raises:
        UnsupportedModelError: the checkpoint is not a supported captioner.
        ExportError: torch.onnx failed, or produced control flow in the decoder step.
        ValidationFailedError: a graph is outside its tolerance (nothing is written to the pack).
        CompileError: anything else that stops the compile.
    """
    out = Path(config.out)
    check_out(out)  # refuse to touch a pack this edgemm cannot read, before any work
    name = config.component or "caption"
    progress = Progress(3 + len(config.variants), enabled=show_progress)
    with staging(out, name) as root:
        # The user's images are read first: a bad calibration folder fails before minutes of export.
        if config.calibration:
            images = calibration_images(config.calibration, max(config.validate.num_images, config.num_calibration))
        else:
            images = synthetic_images(max(config.validate.num_images, config.num_calibration))
        validation_images = images[: config.validate.num_images]
        with progress.stage(f"loading {config.load.model}"):
            family = load_captioner(config.load.model, revision=config.load.revision, local_files_only=config.load.local_files_only)
            if config.export.prompt and family.prompt_spec(None).mode == "none":
                raise UnsupportedModelError(f"{family.architectures[0]} captioners take no text prompt; drop --prompt")
            progress.note(f"{family.architectures[0]} -> family {family.name}")
        with progress.stage("exporting fp32 graphs (encoder, decoder step with KV cache)"):
            _export_fp32(family, root / name, config.export.opset, family.prompt_spec(config.export.prompt).default_prompt)
            family.tokenizer.backend_tokenizer.save(str(root / name / "tokenizer.json"))
            graphs = [
                graph_from_file(root, f"{name}/{role}.onnx", role=role, precision="fp32", target="any")
                for role in ("encoder", "decoder_step")
            ]
            progress.note(f"encoder {graphs[0].file.size_bytes / 1e6:.1f} MB, decoder step {graphs[1].file.size_bytes / 1e6:.1f} MB")

        def staged_captioner(graph_list: Sequence[Graph], precision: str, target: str) -> Captioner:
            staged = load_staged(root, _component(family, root, name, graph_list, config, ()))
            return Captioner(staged, name, precision=precision, options=CPU, graph_target=target)

        with progress.stage(f"validating fp32 graphs against torch on {len(validation_images)} images"):
            fp32 = staged_captioner(graphs, "fp32", "cpu")
            fp32_result, reference_tokens = _validate_fp32(family, fp32, validation_images, config, progress)
            report(progress, fp32_result)
            if not fp32_result.passed:
                raise ValidationFailedError(f"fp32 export is outside tolerance: {summary(fp32_result)}")
        assert fp32.component.image is not None
        assert fp32.component.generation is not None
        pixels = preprocess(validation_images, fp32.component.image)
        fp32_run = _pack_run(fp32, pixels, fp32.component.generation.prompt, config.validate.max_new_tokens, reference_tokens)
        results = [fp32_result]
        calibration: tuple[list[dict[str, np.ndarray]], list[dict[str, np.ndarray]]] | None = None
        for variant in config.variants:
            with progress.stage(f"building {variant.label} variant"):
                static = variant.precision == "int8" and (variant.target == "tensorrt" or config.calibration is not None)
                if static and calibration is None:
                    calibration = _record_calibration(fp32, images[: config.num_calibration], config.validate.max_new_tokens)
                    progress.note(f"calibration: {len(calibration[0])} images, {len(calibration[1])} decoder steps")
                feeds = {"encoder": calibration[0], "decoder_step": calibration[1]} if (static and calibration is not None) else None
                new_graphs = quantize_variant(root, name, ("encoder", "decoder_step"), variant, feeds)
                staged = staged_captioner(new_graphs, variant.precision, new_graphs[0].target)
                result = _validate_variant(variant, staged, fp32_run, pixels, reference_tokens, config)
                report(progress, result)
                if not result.passed:
                    raise ValidationFailedError(
                        f"{variant.label} variant agrees with fp32 below the floor (--min-agreement {config.validate.min_agreement}): {summary(result)}"
                    )
                graphs += new_graphs
                results.append(result)
        final = _component(family, root, name, graphs, config, results)
        return install(root, out, final)
