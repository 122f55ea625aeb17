"""Tiny zero-shot checkpoints and packs, built once per test session and shared by the compile and
runtime tests (each compile takes seconds; the two test modules need the same packs)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from edgemm.compile import testing as models
from edgemm.compile.config import CompileConfig, ExportConfig, LoadConfig, ValidateConfig, VariantConfig

MIN_AGREEMENT = 0.5
"""Top-1 prompt agreement floor for the tiny packs' int8/fp16 variants. A 32-wide random model's
prompts are near-ties: fp32 logit gaps of 0.2 against int8 logit errors up to 0.5 (and ONNX
Runtime's u8s8 kernels differ between CPUs with and without VNNI), so the default 0.9 would test the
seed, not the code. The tests hold the variants' embeddings to cosine >= 0.99 instead."""

PROMPTS = {
    "image": ("a person lying on the floor", "a photo of fire"),
    "audio": ("glass breaking", "a dog barking"),
}
"""Alert prompts compiled into the packs, per modality."""

# name -> (builder, builder kwargs, modality, variants)
FAMILIES: dict[str, tuple[Any, dict[str, Any], str, tuple[VariantConfig, ...]]] = {
    "clip": (models.tiny_clip, {}, "image", (VariantConfig("int8", "cpu"), VariantConfig("fp16", "tensorrt"), VariantConfig("int8", "tensorrt"))),
    "siglip": (models.tiny_siglip, {}, "image", (VariantConfig("int8", "cpu"),)),
    "clap": (models.tiny_clap, {}, "audio", (VariantConfig("int8", "cpu"),)),
    "clap-fused": (models.tiny_clap, {"fused": True}, "audio", (VariantConfig("int8", "cpu"),)),
}


@dataclasses.dataclass(frozen=True)
class Compiled:
    name: str
    modality: str
    model_dir: Path
    pack_dir: Path
    variants: tuple[VariantConfig, ...]

    @property
    def prompts(self) -> tuple[str, ...]:
        return PROMPTS[self.modality]


_MODELS: dict[str, Path] = {}
_PACKS: dict[str, Compiled] = {}


def model_dir(name: str, root: Path) -> Path:
    """The tiny checkpoint of family ``name`` (built on first use under ``root``)."""
    if name not in _MODELS:
        builder, kwargs, _, _ = FAMILIES[name]
        _MODELS[name] = builder(root / "models" / name, **kwargs)
    return _MODELS[name]


def compiled(name: str, root: Path) -> Compiled:
    """The tiny checkpoint of family ``name`` compiled with its variants and :data:`PROMPTS` (once)."""
    from edgemm.compile.zero_shot import compile_zero_shot

    if name not in _PACKS:
        _, _, modality, variants = FAMILIES[name]
        model = model_dir(name, root)
        out = root / "packs" / name
        config = CompileConfig(
            load=LoadConfig(str(model), local_files_only=True),
            out=str(out),
            variants=variants,
            export=ExportConfig(prompts=PROMPTS[modality]),
            validate=ValidateConfig(min_agreement=MIN_AGREEMENT),
        )
        compile_zero_shot(config, show_progress=False)
        _PACKS[name] = Compiled(name, modality, model, out, variants)
    return _PACKS[name]
