"""The compile recipe: one frozen config per stage, versioned, round-tripping through JSON.

The whole recipe is stored in the pack (``provenance.recipe``) so a pack says how it was made.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

from edgemm.runtime._serde import from_json, to_json
from edgemm.runtime.errors import CompileError

__all__ = [
    "CONFIG_VERSION",
    "CompileConfig",
    "ExportConfig",
    "LoadConfig",
    "ValidateConfig",
    "VariantConfig",
]

CONFIG_VERSION = 1


@dataclass(frozen=True)
class LoadConfig:
    """Where the checkpoint comes from.

    Attributes:
        model: a local checkpoint directory or a Hugging Face hub id.
        revision: a hub revision (branch, tag or commit); None for the default branch.
        local_files_only: never touch the network (offline machines, tests).
    """

    model: str
    revision: str | None = None
    local_files_only: bool = False

    def __post_init__(self) -> None:
        if not self.model:
            raise CompileError("model: expected a checkpoint directory or hub id, got an empty string")


@dataclass(frozen=True)
class ExportConfig:
    """How graphs are exported.

    Attributes:
        opset: ONNX opset (17 and 18 are accepted by TensorRT 10 and 11 and ONNX Runtime >= 1.16).
        prompt: text prompt the captioner starts from (BLIP: "a photography of"; Florence-2: a
            task token such as "<CAPTION>"); None uses the family's default.
        max_new_tokens: default caption length limit stored in the pack (None: the model's own).
        prompts: zero-shot models (CLIP, SigLIP, CLAP): alert prompts whose text embeddings are
            computed at compile time and stored in the pack.
        background_prompts: zero-shot softmax families (CLIP, CLAP): the prompts every score is
            measured against besides the asked ones (None: the family's defaults, "a photo" /
            "background noise"); stored in the pack with their embeddings.
        text_tower: zero-shot models: keep the text tower in the pack, so prompts can be added at
            run time. False keeps only the image/audio tower; only ``prompts`` can then be scored.
    """

    opset: int = 18
    prompt: str | None = None
    max_new_tokens: int | None = None
    prompts: tuple[str, ...] = ()
    background_prompts: tuple[str, ...] | None = None
    text_tower: bool = True

    def __post_init__(self) -> None:
        if not 17 <= self.opset <= 21:
            raise CompileError(f"opset: expected 17..21, got {self.opset}")
        if self.max_new_tokens is not None and self.max_new_tokens <= 0:
            raise CompileError(f"max_new_tokens: expected a positive number, got {self.max_new_tokens}")
        for field_name, values in (("prompts", self.prompts), ("background_prompts", self.background_prompts or ())):
            for i, value in enumerate(values):
                if not isinstance(value, str) or not value.strip():
                    raise CompileError(f"{field_name}[{i}]: expected text, got an empty prompt {value!r}")
            dupes = sorted({v for v in values if values.count(v) > 1})
            if dupes:
                raise CompileError(f"{field_name}: expected each prompt once, got {dupes} more than once")
        if not self.text_tower and not self.prompts:
            raise CompileError(
                "text_tower=False (--no-text-tower) keeps only the prompts compiled into the pack: expected at least one prompt "
                "(--prompt TEXT or --prompts FILE), got none"
            )


@dataclass(frozen=True)
class VariantConfig:
    """One reduced-precision variant of every graph, for one kind of backend.

    ``int8``/``cpu`` is ONNX Runtime's fast CPU flavour (U8S8 MatMul; static when calibration
    images are given, else dynamic); ``int8``/``tensorrt`` is symmetric per-channel S8S8 Q/DQ with
    zero points 0, as TensorRT requires; ``fp16`` exists for GPUs only.
    """

    precision: Literal["fp16", "int8"]
    target: Literal["cpu", "tensorrt"]

    def __post_init__(self) -> None:
        if self.precision not in ("fp16", "int8"):
            raise CompileError(f"precision: expected fp16 or int8 for a variant (fp32 is always built), got {self.precision!r}")
        if self.target not in ("cpu", "tensorrt"):
            raise CompileError(f"target: expected cpu or tensorrt, got {self.target!r}")
        if (self.precision, self.target) == ("fp16", "cpu"):
            raise CompileError(
                "precision fp16 for target cpu: ONNX Runtime's CPU kernels run fp16 graphs slower than fp32; "
                "use --precision int8 for the CPU, fp16 for --target tensorrt"
            )

    @property
    def label(self) -> str:
        return f"{self.precision}/{self.target}"


@dataclass(frozen=True)
class ValidateConfig:
    """How compiled graphs are checked against the source model.

    Attributes:
        num_images: images to validate on (the calibration folder's first images, else generated ones).
        max_new_tokens: tokens decoded per image when comparing captions.
        logits_tolerance: the largest teacher-forced logits difference allowed between the fp32
            graphs and the torch model; beyond it the compile fails.
        min_agreement: the smallest teacher-forced top-1 token agreement (captioners) or top-1
            prompt agreement (zero-shot models) allowed between a reduced-precision variant and
            fp32; below it the compile fails.
        min_cosine: zero-shot models: the smallest cosine similarity allowed between an fp32
            graph's embeddings and the torch model's; below it the compile fails.
    """

    num_images: int = 8
    max_new_tokens: int = 20
    logits_tolerance: float = 1e-3
    min_agreement: float = 0.9
    min_cosine: float = 0.9999

    def __post_init__(self) -> None:
        if self.num_images < 1:
            raise CompileError(f"num_images: expected at least 1, got {self.num_images}")
        if not 0.0 <= self.min_agreement <= 1.0:
            raise CompileError(f"min_agreement: expected a fraction in [0, 1], got {self.min_agreement}")
        if self.logits_tolerance <= 0:
            raise CompileError(f"logits_tolerance: expected a positive number, got {self.logits_tolerance}")
        if not -1.0 <= self.min_cosine <= 1.0:
            raise CompileError(f"min_cosine: expected a cosine in [-1, 1], got {self.min_cosine}")


@dataclass(frozen=True)
class CompileConfig:
    """The whole recipe of one ``edgemm compile`` run.

    Attributes:
        out: the pack directory (created if needed; only this component is replaced in it).
        component: the component's name in the pack (default: the task, e.g. "caption").
        variants: reduced-precision variants to build besides fp32 (which is always built: it is
            the reference every variant is validated against, and the fallback).
        calibration: a folder of the user's images for static INT8 calibration and validation.
        num_calibration: images used for calibration.
    """

    load: LoadConfig
    out: str
    component: str | None = None
    export: ExportConfig = field(default_factory=ExportConfig)
    variants: tuple[VariantConfig, ...] = ()
    calibration: str | None = None
    num_calibration: int = 16
    validate: ValidateConfig = field(default_factory=ValidateConfig)
    version: int = CONFIG_VERSION

    def __post_init__(self) -> None:
        if self.version != CONFIG_VERSION:
            raise CompileError(f"compile config version: expected {CONFIG_VERSION}, got {self.version}")
        labels = [v.label for v in self.variants]
        if len(set(labels)) != len(labels):
            raise CompileError(f"variants: each precision/target once, got {labels}")
        if self.num_calibration < 1:
            raise CompileError(f"num_calibration: expected at least 1, got {self.num_calibration}")

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = to_json(self)
        return data

    @classmethod
    def from_json(cls, data: Any) -> CompileConfig:
        return from_json(cls, data, error=CompileError, path="compile config")

    def replace(self, **changes: Any) -> CompileConfig:
        return dataclasses.replace(self, **changes)
