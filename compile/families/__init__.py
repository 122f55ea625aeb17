"""Captioner families: one small adapter per Hugging Face architecture."""

from __future__ import annotations

from .base import CaptionFamily, PromptSpec

__all__ = ["CAPTION_ARCHITECTURES", "CaptionFamily", "PromptSpec", "caption_family"]

CAPTION_ARCHITECTURES = {
    "BlipForConditionalGeneration": "blip",
    "VisionEncoderDecoderModel": "vision_encoder_decoder",
    "Florence2ForConditionalGeneration": "florence2",
}


def caption_family(architecture: str) -> type[CaptionFamily]:
    """The adapter class for a checkpoint's architecture.

    Raises:
        UnsupportedModelError: listing the supported architectures.
    """
    if architecture == "BlipForConditionalGeneration":
        from .blip import BlipFamily

        return BlipFamily
    if architecture == "VisionEncoderDecoderModel":
        from .vision_encoder_decoder import VisionEncoderDecoderFamily

        return VisionEncoderDecoderFamily
    if architecture == "Florence2ForConditionalGeneration":
        from .florence2 import Florence2Family

        return Florence2Family
    from edgemm.runtime.errors import UnsupportedModelError

    raise UnsupportedModelError(
        f"architecture {architecture!r} is not a captioner edgemm can compile; supported: {', '.join(CAPTION_ARCHITECTURES)}"
    )
