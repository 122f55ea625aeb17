"""One entry point for ``edgemm compile``: the checkpoint's architecture picks the compile.

Captioners (BLIP, VisionEncoderDecoder, Florence-2) become ``caption`` components
(:func:`edgemm.compile.caption.compile_captioner`); CLIP and SigLIP become ``zero_shot_image`` and
CLAP ``zero_shot_audio`` components (:func:`edgemm.compile.zero_shot.compile_zero_shot`); Whisper
becomes an ``asr`` component (:func:`edgemm.compile.asr.compile_asr`).
"""

from __future__ import annotations

from edgemm.runtime.errors import CompileError, UnsupportedModelError
from edgemm.runtime.pack import Pack

from .asr import ASR_ARCHITECTURES, DEFAULT_COMPONENT, compile_asr, detect_asr_architecture
from .caption import compile_captioner, detect_architecture
from .config import CompileConfig
from .families import CAPTION_ARCHITECTURES
from .zero_shot import (
    UNSUPPORTED_ZERO_SHOT,
    ZERO_SHOT_ARCHITECTURES,
    compile_zero_shot,
    default_component_name,
    detect_zero_shot_architecture,
    zero_shot_task,
)

__all__ = ["SUPPORTED_ARCHITECTURES", "compile_model", "component_name", "model_task"]

SUPPORTED_ARCHITECTURES = (*CAPTION_ARCHITECTURES, *ZERO_SHOT_ARCHITECTURES, *ASR_ARCHITECTURES)
"""Every architecture ``edgemm compile`` takes, captioners first."""


def model_task(model: str, *, revision: str | None = None, local_files_only: bool = False) -> str:
    """The task a checkpoint compiles to: "caption", "zero_shot_image", "zero_shot_audio" or "asr".

    Raises:
        UnsupportedModelError: an architecture edgemm does not compile (the message lists those it does,
            or says why a known one is refused).
        CompileError: the checkpoint's config cannot be read.
    """
    zero_shot = detect_zero_shot_architecture(model, revision=revision, local_files_only=local_files_only)
    if zero_shot in UNSUPPORTED_ZERO_SHOT:
        raise UnsupportedModelError(UNSUPPORTED_ZERO_SHOT[zero_shot])
    if zero_shot is not None:
        return zero_shot_task(zero_shot)
    if detect_asr_architecture(model, revision=revision, local_files_only=local_files_only) is not None:
        return "asr"
    architecture = detect_architecture(model, revision=revision, local_files_only=local_files_only)
    if architecture in CAPTION_ARCHITECTURES:
        return "caption"
    raise UnsupportedModelError(
        f"architecture {architecture!r} is not one edgemm can compile; supported: captioners "
        f"({', '.join(CAPTION_ARCHITECTURES)}), zero-shot models ({', '.join(ZERO_SHOT_ARCHITECTURES)}) "
        f"and speech recognisers ({', '.join(ASR_ARCHITECTURES)})"
    )


def component_name(config: CompileConfig, task: str) -> str:
    """The component a compile writes: ``config.component``, else "caption", "alerts", "audio_alerts" or "speech"."""
    if config.component:
        return config.component
    if task == "asr":
        return DEFAULT_COMPONENT
    return "caption" if task == "caption" else default_component_name(task)


def compile_model(config: CompileConfig, *, show_progress: bool = True) -> Pack:
    """Compiles ``config.load.model`` with the compile its architecture needs.

    Raises:
        CompileError: settings of the other kind of model (alert prompts for a captioner, a caption
            prompt for a zero-shot model), and everything the compiles raise.
    """
    task = model_task(config.load.model, revision=config.load.revision, local_files_only=config.load.local_files_only)
    export = config.export
    if task == "caption":
        if export.prompts or export.background_prompts is not None or not export.text_tower:
            raise CompileError(
                "alert prompts, background prompts and --no-text-tower are for zero-shot models (CLIP, SigLIP, CLAP); "
                "a captioner takes one text prompt (ExportConfig.prompt)"
            )
        return compile_captioner(config, show_progress=show_progress)
    if task == "asr":
        if export.prompt is not None or export.prompts or export.background_prompts is not None or not export.text_tower:
            raise CompileError(
                "Whisper takes no prompts: --prompt, --prompts, --background and --no-text-tower are for captioners and "
                "zero-shot models; the language and task are chosen when transcribing"
            )
        return compile_asr(config, show_progress=show_progress)
    if export.prompt is not None or export.max_new_tokens is not None:
        raise CompileError(
            "zero-shot models take alert prompts (ExportConfig.prompts, `--prompt` once per prompt), not a caption prompt or max_new_tokens"
        )
    return compile_zero_shot(config, show_progress=show_progress)
