"""Compiling a zero-shot model (CLIP, SigLIP, CLAP) into a ``zero_shot_image``/``zero_shot_audio`` component.

load -> export the image/audio tower and the text tower -> validate them against the torch model
-> embed the alert prompts -> build and validate each reduced-precision variant -> install.

The graphs (names from :mod:`edgemm.runtime.graph_io` and :mod:`edgemm.runtime.zero_shot`):

- ``image_encoder``: ``pixel_values`` float32 [batch, 3, H, W] -> ``image_embeds`` [batch, d];
- ``audio_encoder``: ``input_features`` float32 [batch, channels, frames, n_mels] (and, for fused
  CLAP, ``is_longer`` bool [batch, 1]) -> ``audio_embeds`` [batch, d];
- ``text_encoder``: ``input_ids`` int64 [batch, sequence] (and ``attention_mask`` when the
  tokenizer gives one) -> ``text_embeds`` [batch, d].

Every output is L2-normalised, so a score is a dot product away. The settings the runtime scores
with (logit scale and bias, softmax or sigmoid, the text padding the model was trained with) are
read from the model and stored in the component's settings.

Staging, variants, validation reports and the install are shared with the captioner compile
(:mod:`edgemm.compile.staging`); nothing is written to the pack unless every graph passes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from edgemm.runtime import graph_io
from edgemm.runtime.audio_features import CLAP_PADDINGS, CLAP_TRUNCATIONS, clap_features, read_wav
from edgemm.runtime.errors import (
    AudioError,
    CompileError,
    EdgemmError,
    UnsupportedModelError,
    ValidationFailedError,
)
from edgemm.runtime.image import preprocess
from edgemm.runtime.pack import (
    AudioPreprocessing,
    Component,
    Graph,
    Pack,
    ValidationResult,
    file_ref,
    graph_from_file,
)
from edgemm.runtime.zero_shot import (
    DEFAULT_BACKGROUND_PROMPTS,
    IS_LONGER,
    TEXT_ENCODER,
    ZeroShotScorer,
    encoder_role,
)

from .config import CompileConfig, VariantConfig
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

__all__ = [
    "AUDIO_VALIDATION_PROMPTS",
    "IMAGE_VALIDATION_PROMPTS",
    "UNSUPPORTED_ZERO_SHOT",
    "ZERO_SHOT_ARCHITECTURES",
    "ClapFamily",
    "ClipFamily",
    "SiglipFamily",
    "ZeroShotFamily",
    "audio_preprocessing_from_extractor",
    "calibration_audio",
    "compile_zero_shot",
    "default_component_name",
    "detect_zero_shot_architecture",
    "load_zero_shot",
    "runtime_crops",
    "synthetic_audio",
    "zero_shot_task",
]

ZERO_SHOT_ARCHITECTURES = {"CLIPModel": "clip", "SiglipModel": "siglip", "ClapModel": "clap"}
"""Architectures compiled into zero-shot components -> family name."""

UNSUPPORTED_ZERO_SHOT = {
    "Siglip2Model": (
        "Siglip2Model is SigLIP 2's NaFlex variant: it resizes every image to its own patch grid "
        "(aspect-preserving, up to max_num_patches) and resizes its position embeddings per image, "
        "which one exported graph with a fixed input cannot reproduce; the fixed-resolution SigLIP 2 "
        "checkpoints (e.g. google/siglip2-base-patch16-224) are SiglipModel and are supported"
    ),
}
"""Zero-shot architectures refused on purpose, with the reason given to the user."""

_TIE_LOGITS = math.log(1.1)
"""fp32 logits this close to the best prompt's count as a tie in ``top1_prompt_agreement``."""

_BY_MODEL_TYPE = {"clip": "CLIPModel", "siglip": "SiglipModel", "clap": "ClapModel", "siglip2": "Siglip2Model"}

IMAGE_VALIDATION_PROMPTS = (
    "a photo of a person",
    "a photo of a dog",
    "a photo of a car",
    "a photo of fire",
    "an empty room",
    "a red square",
    "a blue circle",
    "a street at night",
)
"""Prompts the image and text towers are validated on, besides the compile's own."""

AUDIO_VALIDATION_PROMPTS = (
    "a dog barking",
    "glass breaking",
    "a bell ringing",
    "a person speaking",
    "music",
    "an alarm",
    "silence",
    "a siren",
)
"""Prompts the audio and text towers are validated on, besides the compile's own."""



@contextlib.contextmanager
def runtime_crops() -> Iterator[None]:
    """Makes ``ClapFeatureExtractor`` crop long clips where the runtime does (the first window for
    "rand_trunc", the first start of each third for "fusion") instead of at random.

    The extractor draws its crops with ``np.random.randint`` and ``np.random.choice``; inside this
    context they return the first candidate. For reference features at compile time and in tests
    only: it patches numpy's global functions for the duration.
    """
    from unittest import mock

    with mock.patch.object(np.random, "choice", side_effect=lambda a: a[0]), mock.patch.object(np.random, "randint", side_effect=lambda low, high=None: 0):
        yield


# --- audio for validation and calibration --------------------------------------------------------


def synthetic_audio(count: int, sample_rate_hz: int, max_length_s: float, *, seed: int = 0) -> list[np.ndarray]:
    """Deterministic clips: harmonic tones with envelopes, chirps, noise bursts, clicks.

    Lengths cycle through 1.6, 0.3, 2.5 and 1.0 times ``max_length_s``, so padding, exact length
    and truncation (fusion for fused CLAP) are all exercised, by any two clips already.

    Returns:
        ``count`` arrays, each shape (n_i,), float32 in [-1, 1].
    """
    rng = np.random.default_rng(seed)
    factors = (1.6, 0.3, 2.5, 1.0)
    clips = []
    for i in range(count):
        n = max(1, int(factors[i % len(factors)] * max_length_s * sample_rate_hz))
        t = np.arange(n) / sample_rate_hz
        kind = i % 4
        if kind == 0:
            f0 = rng.uniform(150, 900)
            clip = sum(np.sin(2 * np.pi * f0 * h * t) / h for h in range(1, 5)) * np.exp(-t * rng.uniform(0.5, 3))
        elif kind == 1:
            f1, f2 = rng.uniform(100, 400), rng.uniform(1000, min(6000, sample_rate_hz / 2.5))
            clip = np.sin(2 * np.pi * (f1 * t + (f2 - f1) * t**2 / (2 * max(t[-1], 1e-3))))
        elif kind == 2:
            clip = rng.standard_normal(n) * (rng.random(n // 400 + 1).repeat(400)[:n] > 0.5)
        else:
            clip = np.zeros(n)
            clip[:: max(1, sample_rate_hz // 5)] = 1.0
            clip += 0.05 * rng.standard_normal(n)
        clips.append((0.5 * clip / max(float(np.abs(clip).max()), 1e-6)).astype(np.float32))
    return clips


def calibration_audio(folder: str | Path, limit: int, sample_rate_hz: int) -> list[np.ndarray]:
    """The first ``limit`` WAV files of ``folder`` (sorted by name), mono, at the model's rate.

    Raises:
        CompileError: the folder is missing or has no WAV files, or a file cannot be read or is at
            another rate (calibration audio is the user's and should be clean; edgemm does not resample).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise CompileError(f"calibration folder {folder}: expected a directory of WAV files, found {'a file' if folder.exists() else 'nothing'}")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() == ".wav" and p.is_file())
    if not files:
        raise CompileError(f"calibration folder {folder}: expected WAV files (.wav), found none")
    clips = []
    for path in files[:limit]:
        try:
            samples, rate = read_wav(path)
        except AudioError as exc:
            raise CompileError(f"calibration audio unusable: {exc}") from exc
        if rate != sample_rate_hz:
            raise CompileError(f"calibration audio {path}: expected {sample_rate_hz} Hz (the model's rate), found {rate} Hz; resample it first")
        clips.append(samples)
    return clips


# --- preprocessing -------------------------------------------------------------------------------


def audio_preprocessing_from_extractor(extractor: Any) -> AudioPreprocessing:
    """Describes what a ``ClapFeatureExtractor`` does, for the model pack.

    Raises:
        UnsupportedModelError: another feature extractor, or a truncation/padding mode the runtime lacks.
    """
    name = type(extractor).__name__
    if name != "ClapFeatureExtractor":
        raise UnsupportedModelError(f"{name}: expected a ClapFeatureExtractor (the only audio preprocessing edgemm reproduces for zero-shot audio)")
    if extractor.truncation not in CLAP_TRUNCATIONS:
        raise UnsupportedModelError(f"{name}: truncation={extractor.truncation!r} is not supported; expected one of {list(CLAP_TRUNCATIONS)}")
    if extractor.padding not in CLAP_PADDINGS:
        raise UnsupportedModelError(f"{name}: padding={extractor.padding!r} is not supported; expected one of {list(CLAP_PADDINGS)}")
    fusion = extractor.truncation == "fusion"
    return AudioPreprocessing(
        sample_rate_hz=int(extractor.sampling_rate),
        feature="log_mel_clap",
        n_fft=int(extractor.fft_window_size),
        hop_length=int(extractor.hop_length),
        n_mels=int(extractor.feature_size),
        f_min_hz=float(extractor.frequency_min),
        f_max_hz=float(extractor.frequency_max),
        # The extractor's filters: torchaudio's (HTK, unnormalised) with fusion, librosa's otherwise.
        mel_scale="htk" if fusion else "slaney",
        mel_norm="none" if fusion else "slaney",
        max_length_s=float(extractor.max_length_s),
        padding=str(extractor.padding),
        truncation=str(extractor.truncation),
    )


# --- family adapters -----------------------------------------------------------------------------


def _normalise(x: Any) -> Any:
    return x / x.norm(p=2, dim=-1, keepdim=True)


def _text_tower(model: Any, with_mask: bool) -> Any:
    import torch

    class TextTower(torch.nn.Module):
        """input_ids (, attention_mask) -> L2-normalised text embeddings."""

        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
            out = self.model.get_text_features(input_ids=input_ids, attention_mask=attention_mask if with_mask else None)
            return _normalise(out.pooler_output)

    if with_mask:
        return TextTower()

    class TextTowerNoMask(TextTower):
        def forward(self, input_ids: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
            return super().forward(input_ids)

    return TextTowerNoMask()


def _image_tower(model: Any) -> Any:
    import torch

    class ImageTower(torch.nn.Module):
        """pixel_values -> L2-normalised image embeddings."""

        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
            return _normalise(self.model.get_image_features(pixel_values=pixel_values).pooler_output)

    return ImageTower()


def _clap_audio_tower(model: Any) -> Any:
    """CLAP's audio tower with the feature fusion computed for every clip and selected by ``is_longer``.

    transformers runs fusion only on the rows where ``is_longer`` is set (``torch.where`` + indexed
    assignment: data-dependent shapes no exported graph can hold). The fusion block works on each
    clip alone, so computing it everywhere and keeping it where ``is_longer`` is set gives the same
    embeddings; the rest of the encoder is transformers' ``ClapAudioEncoder.forward`` step by step.
    """
    import torch
    import torch.nn.functional as F

    encoder = model.audio_model.audio_encoder
    fused = bool(encoder.enable_fusion)

    def patch_embed(hidden: torch.Tensor, is_longer: torch.Tensor | None) -> torch.Tensor:
        embed = encoder.patch_embed
        if not fused:
            return embed(hidden, None)
        assert is_longer is not None
        global_states = embed.proj(hidden[:, 0:1, :, :])
        width = global_states.size(-1)
        local = hidden[:, 1:, :, :].contiguous()
        batch, channels, height, local_width = local.shape
        local = embed.mel_conv2d(local.view(batch * channels, 1, height, local_width))
        _, features, height, local_width = local.shape
        local = local.view(batch, channels, features, height, local_width).permute((0, 2, 3, 1, 4)).contiguous().flatten(3)
        local = F.pad(local, (0, width - local.size(-1)), "constant", 0)
        mixed = embed.fusion_model(global_states, local)
        states = torch.where(is_longer.reshape(-1, 1, 1, 1), mixed, global_states)
        if embed.flatten:
            states = states.flatten(2).transpose(1, 2)
        return embed.norm(states)

    class AudioTower(torch.nn.Module):
        """input_features (, is_longer) -> L2-normalised audio embeddings."""

        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def embed(self, input_features: torch.Tensor, is_longer: torch.Tensor | None) -> torch.Tensor:
            hidden = encoder.batch_norm(input_features.transpose(1, 3)).transpose(1, 3)
            hidden = encoder.reshape_mel2img(hidden)
            frames = hidden.shape[2]
            hidden = patch_embed(hidden, is_longer)
            for i, stage in enumerate(encoder.layers):
                hidden = stage(hidden, encoder.input_resolutions[i], False, False)[0]
            hidden = encoder.norm(hidden)
            batch, _, channels = hidden.shape
            scale = 2 ** (len(encoder.depths) - 1)
            freq = frames // scale // encoder.patch_stride[0]
            temporal = frames // scale // encoder.patch_stride[1]
            hidden = hidden.permute(0, 2, 1).contiguous().reshape(batch, channels, freq, temporal)
            bins = freq // encoder.freq_ratio
            hidden = hidden.reshape(batch, channels, freq // bins, bins, temporal).permute(0, 1, 3, 2, 4).contiguous().reshape(batch, channels, bins, -1)
            pooled = torch.flatten(encoder.avgpool(torch.flatten(hidden, 2)), 1)
            return _normalise(self.model.audio_projection(pooled))

    if fused:

        class FusedAudioTower(AudioTower):
            def forward(self, input_features: torch.Tensor, is_longer: torch.Tensor) -> torch.Tensor:
                return self.embed(input_features, is_longer)

        return FusedAudioTower()

    class UnfusedAudioTower(AudioTower):
        def forward(self, input_features: torch.Tensor) -> torch.Tensor:
            return self.embed(input_features, None)

    return UnfusedAudioTower()


class ZeroShotFamily:
    """One zero-shot architecture adapted to edgemm's two graphs and score settings.

    Attributes:
        name: the family's name in the pack ("clip", "siglip", "clap").
        task: "zero_shot_image" or "zero_shot_audio".
        score: "softmax" (CLIP, CLAP) or "sigmoid" (SigLIP).
        pad_to_max_length: whether the text tower was trained on text padded to its full length
            (SigLIP: its text tower pools the last position, padding included).
    """

    name: ClassVar[str]
    task: ClassVar[str]
    score: ClassVar[str]
    pad_to_max_length: ClassVar[bool] = False

    def __init__(self, model: Any, preprocessor: Any, tokenizer: Any, architecture: str) -> None:
        self.model = model
        self.preprocessor = preprocessor
        self.tokenizer = tokenizer
        self.architecture = architecture
        if getattr(tokenizer, "backend_tokenizer", None) is None:
            raise UnsupportedModelError(
                f"{architecture}: the tokenizer {type(tokenizer).__name__} has no fast (tokenizers) backend, which the pack needs; "
                "install sentencepiece and protobuf so transformers can convert it"
            )

    @property
    def modality(self) -> str:
        return "image" if self.task == "zero_shot_image" else "audio"

    @property
    def media_role(self) -> str:
        return encoder_role(self.task)

    @property
    def text_config(self) -> Any:
        return self.model.config.text_config

    def text_settings(self) -> dict[str, Any]:
        """How prompts become text tower inputs, as the tokenizer and the model were trained."""
        positions = int(self.text_config.max_position_embeddings)
        if self.name == "clap":
            positions -= 2  # RoBERTa's positions start after the padding index
        limit = int(getattr(self.tokenizer, "model_max_length", positions) or positions)
        max_length = min(positions, limit) if limit < 1_000_000 else positions
        pad = self.tokenizer.pad_token_id
        if pad is None:
            raise UnsupportedModelError(f"{self.architecture}: the tokenizer has no pad token; expected one to batch prompts")
        return {
            "max_length": max_length,
            "padding": "max_length" if self.pad_to_max_length else "longest",
            "padding_side": str(getattr(self.tokenizer, "padding_side", "right")),
            "pad_token_id": int(pad),
            "attention_mask": "attention_mask" in list(self.tokenizer.model_input_names),
        }

    def reference_text_inputs(self, prompts: Sequence[str]) -> dict[str, np.ndarray]:
        """The source tokenizer's inputs for ``prompts``, padded as the model was trained."""
        settings = self.text_settings()
        padding: Any = "max_length" if self.pad_to_max_length else True
        encoded = self.tokenizer(list(prompts), padding=padding, max_length=settings["max_length"], truncation=True, return_tensors="np")
        feeds = {graph_io.INPUT_IDS: np.asarray(encoded["input_ids"], np.int64)}
        if settings["attention_mask"]:
            feeds[graph_io.ATTENTION_MASK] = np.asarray(encoded["attention_mask"], np.int64)
        return feeds

    def text_tower(self) -> Any:
        return _text_tower(self.model, self.text_settings()["attention_mask"])

    def logit_scale(self) -> float:
        return float(self.model.logit_scale.detach().exp().reshape(-1)[0])

    def logit_bias(self) -> float:
        return 0.0

    def score_settings(self) -> dict[str, Any]:
        return {"score": self.score, "logit_scale": self.logit_scale(), "logit_bias": self.logit_bias()}

    # -- media: implemented per modality ------------------------------------------------------

    def media_tower(self) -> Any:
        raise NotImplementedError

    def media_input_names(self) -> tuple[str, ...]:
        raise NotImplementedError

    def media_example(self, samples: Sequence[Any]) -> dict[str, np.ndarray]:
        """The source preprocessor's inputs for ``samples`` (images or clips), as numpy."""
        raise NotImplementedError

    def preprocessing(self) -> dict[str, Any]:
        """``{"image": ImagePreprocessing}`` or ``{"audio": AudioPreprocessing}`` for the component."""
        raise NotImplementedError

    def reference(self, media: dict[str, np.ndarray], text: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The torch model's forward: (media embeddings (n, d), text embeddings (k, d), logits (n, k))."""
        import torch

        feeds = {k: torch.from_numpy(v) for k, v in {**media, **text}.items()}
        with torch.no_grad():
            out = self.model(**feeds)
        media_embeds = out.image_embeds if self.modality == "image" else out.audio_embeds
        logits = out.logits_per_image if self.modality == "image" else out.logits_per_audio
        return media_embeds.numpy(), out.text_embeds.numpy(), logits.numpy()


class _ImageFamily(ZeroShotFamily):
    task = "zero_shot_image"

    def media_tower(self) -> Any:
        return _image_tower(self.model)

    def media_input_names(self) -> tuple[str, ...]:
        return (graph_io.PIXEL_VALUES,)

    def media_example(self, samples: Sequence[Any]) -> dict[str, np.ndarray]:
        pixels = self.preprocessor(images=list(samples), return_tensors="np")["pixel_values"]
        return {graph_io.PIXEL_VALUES: np.asarray(pixels, dtype=np.float32)}

    def preprocessing(self) -> dict[str, Any]:
        from .preprocessing import image_preprocessing_from_processor

        return {"image": image_preprocessing_from_processor(self.preprocessor)}


class ClipFamily(_ImageFamily):
    name = "clip"
    score = "softmax"


class SiglipFamily(_ImageFamily):
    name = "siglip"
    score = "sigmoid"
    pad_to_max_length = True

    def logit_bias(self) -> float:
        return float(self.model.logit_bias.detach().reshape(-1)[0])


class ClapFamily(ZeroShotFamily):
    name = "clap"
    task = "zero_shot_audio"
    score = "softmax"

    def __init__(self, model: Any, preprocessor: Any, tokenizer: Any, architecture: str) -> None:
        super().__init__(model, preprocessor, tokenizer, architecture)
        audio = audio_preprocessing_from_extractor(preprocessor)
        config = model.config.audio_config
        if bool(config.enable_fusion) != (audio.truncation == "fusion"):
            raise UnsupportedModelError(
                f"{architecture}: enable_fusion={config.enable_fusion} but the feature extractor's truncation is "
                f"{audio.truncation!r}; expected 'fusion' exactly when the model fuses"
            )
        if audio.n_mels != int(config.num_mel_bins):
            raise UnsupportedModelError(f"{architecture}: the feature extractor makes {audio.n_mels} mel bins, the model takes {config.num_mel_bins}")

    @property
    def fused(self) -> bool:
        return bool(self.model.config.audio_config.enable_fusion)

    def logit_scale(self) -> float:
        # logits_per_audio = logit_scale_a.exp() * cos (logit_scale_t scales logits_per_text).
        return float(self.model.logit_scale_a.detach().exp().reshape(-1)[0])

    def media_tower(self) -> Any:
        return _clap_audio_tower(self.model)

    def media_input_names(self) -> tuple[str, ...]:
        return (graph_io.INPUT_FEATURES, IS_LONGER) if self.fused else (graph_io.INPUT_FEATURES,)

    def media_example(self, samples: Sequence[Any]) -> dict[str, np.ndarray]:
        """The extractor's features, its random crops made deterministic as the runtime's
        (:mod:`edgemm.runtime.audio_features`); ``is_longer`` as measured (the extractor marks a
        random short clip as longer when none is), so both sides see the same input."""
        spec = self.preprocessing()["audio"]
        with runtime_crops():
            out = self.preprocessor(list(samples), sampling_rate=spec.sample_rate_hz, return_tensors="np")
        feeds = {graph_io.INPUT_FEATURES: np.asarray(out["input_features"], dtype=np.float32)}
        if self.fused:
            feeds[IS_LONGER] = clap_features(list(samples), spec)[1]
        return feeds

    def preprocessing(self) -> dict[str, Any]:
        return {"audio": audio_preprocessing_from_extractor(self.preprocessor)}


_FAMILIES: dict[str, type[ZeroShotFamily]] = {"CLIPModel": ClipFamily, "SiglipModel": SiglipFamily, "ClapModel": ClapFamily}


def zero_shot_task(architecture: str) -> str:
    """The task a supported zero-shot architecture compiles to ("zero_shot_image" or "zero_shot_audio")."""
    return _FAMILIES[architecture].task


def detect_zero_shot_architecture(model: str, *, revision: str | None, local_files_only: bool) -> str | None:
    """The checkpoint's zero-shot architecture (also the refused ones, e.g. Siglip2Model), or None.

    Raises:
        CompileError: the checkpoint cannot be found or read.
    """
    config = read_model_config(model, revision=revision, local_files_only=local_files_only)
    for name in list(getattr(config, "architectures", None) or []):
        if name in ZERO_SHOT_ARCHITECTURES or name in UNSUPPORTED_ZERO_SHOT:
            return str(name)
    return _BY_MODEL_TYPE.get(str(getattr(config, "model_type", "")))


def load_zero_shot(model: str, *, revision: str | None = None, local_files_only: bool = False) -> ZeroShotFamily:
    """Loads a CLIP, SigLIP or CLAP checkpoint with its family adapter.

    Raises:
        UnsupportedModelError: not a zero-shot architecture edgemm compiles (the message says why).
        CompileError: the checkpoint cannot be loaded.
    """
    import torch
    from transformers import (
        AutoFeatureExtractor,
        AutoImageProcessor,
        AutoTokenizer,
        ClapModel,
        CLIPModel,
        SiglipModel,
    )
    from transformers.utils import logging as hf_logging

    architecture = detect_zero_shot_architecture(model, revision=revision, local_files_only=local_files_only)
    if architecture in UNSUPPORTED_ZERO_SHOT:
        raise UnsupportedModelError(UNSUPPORTED_ZERO_SHOT[architecture])
    if architecture not in _FAMILIES:
        raise UnsupportedModelError(
            f"architecture {architecture!r} is not a zero-shot model edgemm can compile; supported: {', '.join(ZERO_SHOT_ARCHITECTURES)}"
        )
    hf_logging.disable_progress_bar()
    kwargs: dict[str, Any] = {"revision": revision, "local_files_only": local_files_only}
    classes: dict[str, Any] = {"CLIPModel": CLIPModel, "SiglipModel": SiglipModel, "ClapModel": ClapModel}
    try:
        loaded = classes[architecture].from_pretrained(model, attn_implementation="eager", dtype=torch.float32, **kwargs).eval()
        tokenizer = AutoTokenizer.from_pretrained(model, **kwargs)
        if architecture == "ClapModel":
            preprocessor = AutoFeatureExtractor.from_pretrained(model, **kwargs)
        else:
            preprocessor = AutoImageProcessor.from_pretrained(model, **kwargs)
        return _FAMILIES[architecture](loaded, preprocessor, tokenizer, architecture)
    except EdgemmError:
        raise
    except Exception as exc:
        raise CompileError(f"could not load {architecture} from {model!r}: {type(exc).__name__}: {exc}") from exc


# --- export --------------------------------------------------------------------------------------


def _export_fp32(family: ZeroShotFamily, folder: Path, opset: int, media_example: dict[str, np.ndarray], prompts: Sequence[str]) -> None:
    import torch

    from .export import export_module

    media_names = family.media_input_names()
    export_module(
        family.media_tower(),
        [torch.from_numpy(media_example[n]) for n in media_names],
        folder / f"{family.media_role}.onnx",
        input_names=media_names,
        output_names=[graph_io.IMAGE_EMBEDS if family.modality == "image" else graph_io.AUDIO_EMBEDS],
        dynamic_axes={n: {0: "batch"} for n in media_names},
        opset=opset,
    )
    text = family.reference_text_inputs(prompts)
    # SigLIP's text is always padded to its full length: only the batch varies.
    axes = {0: "batch"} if family.pad_to_max_length else {0: "batch", 1: "sequence"}
    export_module(
        family.text_tower(),
        [torch.from_numpy(v) for v in text.values()],
        folder / f"{TEXT_ENCODER}.onnx",
        input_names=list(text),
        output_names=[graph_io.TEXT_EMBEDS],
        dynamic_axes=dict.fromkeys(text, axes),
        opset=opset,
    )


# --- validation ----------------------------------------------------------------------------------


@dataclasses.dataclass
class _Run:
    """One scorer's embeddings of the validation samples and prompts."""

    media: np.ndarray
    text: np.ndarray
    media_ms: float

    def logits(self, scale: float, bias: float) -> np.ndarray:
        return scale * (self.media.astype(np.float64) @ self.text.astype(np.float64).T) + bias


def _embed(scorer: ZeroShotScorer, samples: Sequence[Any], sample_rate_hz: int) -> np.ndarray:
    if scorer.modality == "image":
        return scorer.embed_images(list(samples))
    return scorer.embed_audio(list(samples), sample_rate_hz)


def _pack_run(scorer: ZeroShotScorer, samples: Sequence[Any], prompts: Sequence[str], sample_rate_hz: int, text: np.ndarray | None = None) -> _Run:
    start = time.perf_counter()
    media = _embed(scorer, samples, sample_rate_hz)
    media_ms = (time.perf_counter() - start) * 1000 / max(1, len(samples))
    return _Run(media, scorer.embed_texts(prompts) if text is None else text, media_ms)


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    return np.asarray((a64 * b64).sum(-1) / (np.linalg.norm(a64, axis=-1) * np.linalg.norm(b64, axis=-1)))


def _probabilities(logits: np.ndarray, score: str) -> np.ndarray:
    if score == "sigmoid":
        return np.asarray(1.0 / (1.0 + np.exp(-logits)))
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return np.asarray(shifted / shifted.sum(axis=1, keepdims=True))


def _validate_fp32(
    family: ZeroShotFamily, scorer: ZeroShotScorer, samples: Sequence[Any], prompts: Sequence[str], config: CompileConfig, progress: Progress
) -> tuple[ValidationResult, _Run]:
    modality = family.modality
    rate = scorer.component.audio.sample_rate_hz if scorer.component.audio is not None else 0
    reference_media = family.media_example(samples)
    reference_text = family.reference_text_inputs(prompts)
    progress.count(1, 3, "reference preprocessing, torch model, pack")
    ref_media, ref_text, ref_logits = family.reference(reference_media, reference_text)
    progress.count(2, 3, "reference preprocessing, torch model, pack")
    run = _pack_run(scorer, samples, prompts, rate)
    progress.count(3, 3, "reference preprocessing, torch model, pack")
    if modality == "image":
        assert scorer.component.image is not None
        input_name, ours = "pixel_values", preprocess(list(samples), scorer.component.image)
    else:
        assert scorer.component.audio is not None
        input_name, ours = "input_features", clap_features(list(samples), scorer.component.audio)[0]
    input_diff = float(np.abs(ours - reference_media[graph_io.PIXEL_VALUES if modality == "image" else graph_io.INPUT_FEATURES]).max())
    ours_text = scorer.tokenize(prompts)
    token_match = float(np.mean([_unpadded(ours_text, i) == _unpadded(reference_text, i) for i in range(len(prompts))]))
    logits = run.logits(scorer.logit_scale, scorer.logit_bias)
    media_cos, text_cos = _cosines(run.media, ref_media), _cosines(run.text, ref_text)
    metrics = {
        f"{modality}_embeds_min_cosine": float(media_cos.min()),
        f"{modality}_embeds_max_abs_diff": float(np.abs(run.media - ref_media).max()),
        "text_embeds_min_cosine": float(text_cos.min()),
        "text_embeds_max_abs_diff": float(np.abs(run.text - ref_text).max()),
        "logits_max_abs_diff": float(np.abs(logits - ref_logits).max()),
        "scores_max_abs_diff": float(np.abs(_probabilities(logits, family.score) - _probabilities(ref_logits.astype(np.float64), family.score)).max()),
        f"{input_name}_max_abs_diff": input_diff,
        "token_ids_match": token_match,
        f"encoder_ms_per_{'image' if modality == 'image' else 'clip'}": run.media_ms,
    }
    thresholds = {
        f"{modality}_embeds_min_cosine": config.validate.min_cosine,
        "text_embeds_min_cosine": config.validate.min_cosine,
        "logits_max_abs_diff": config.validate.logits_tolerance,
        f"{input_name}_max_abs_diff": 1e-4,
        "token_ids_match": 1.0,
    }
    passed = all(
        metrics[k] <= bound if any(word in k for word in ("diff", "error")) else metrics[k] >= bound for k, bound in thresholds.items()
    )
    result = ValidationResult(
        subject=f"{family.task}[fp32/any]", reference="torch fp32", metrics=metrics, thresholds=thresholds, passed=passed, num_samples=len(samples)
    )
    return result, run


def _unpadded(feeds: dict[str, np.ndarray], row: int) -> tuple[int, ...]:
    ids = feeds[graph_io.INPUT_IDS][row]
    if graph_io.ATTENTION_MASK in feeds:
        ids = ids[feeds[graph_io.ATTENTION_MASK][row].astype(bool)]
    return tuple(int(t) for t in ids)


def _validate_variant(
    variant: VariantConfig, family: ZeroShotFamily, scorer: ZeroShotScorer, fp32: _Run, samples: Sequence[Any], prompts: Sequence[str], config: CompileConfig
) -> ValidationResult:
    rate = scorer.component.audio.sample_rate_hz if scorer.component.audio is not None else 0
    run = _pack_run(scorer, samples, prompts, rate, None if scorer.has_text_tower else fp32.text)
    scale, bias = scorer.logit_scale, scorer.logit_bias
    ours, theirs = run.logits(scale, bias), fp32.logits(scale, bias)
    media_cos = _cosines(run.media, fp32.media)
    rows = np.arange(len(ours))
    best, pick = theirs.argmax(-1), ours.argmax(-1)
    # Where fp32 itself cannot tell two prompts apart (odds within 10%: inputs no prompt fits), its
    # order is noise; the variant picking the other one is agreement, not a quality loss.
    agreement = float(np.mean(theirs[rows, pick] >= theirs[rows, best] - _TIE_LOGITS))
    modality = family.modality
    metrics = {
        "top1_prompt_agreement": agreement,
        "top1_prompt_exact_agreement": float(np.mean(pick == best)),
        f"{modality}_embeds_min_cosine": float(media_cos.min()),
        f"{modality}_embeds_mean_cosine": float(media_cos.mean()),
    }
    if scorer.has_text_tower:
        metrics["text_embeds_min_cosine"] = float(_cosines(run.text, fp32.text).min())
    metrics["scores_max_abs_diff"] = float(np.abs(_probabilities(ours, family.score) - _probabilities(theirs, family.score)).max())
    if variant.target == "cpu":
        # This machine's CPU; GPU variants are timed on the device.
        metrics["encoder_speedup_vs_fp32"] = fp32.media_ms / max(run.media_ms, 1e-9)
    thresholds = {"top1_prompt_agreement": config.validate.min_agreement}
    return ValidationResult(
        subject=f"{family.task}[{variant.precision}/{'gpu' if variant.precision == 'fp16' else variant.target}]",
        reference="pack fp32",
        metrics=metrics,
        thresholds=thresholds,
        passed=agreement >= config.validate.min_agreement,
        num_samples=len(samples),
    )


# --- the pack ------------------------------------------------------------------------------------


def _settings(family: ZeroShotFamily, config: CompileConfig, background: Sequence[str], embedded: Sequence[str], dim: int) -> dict[str, Any]:
    return {
        **family.score_settings(),
        "prompts": list(config.export.prompts),
        "background_prompts": list(background),
        "embedding_texts": list(embedded),
        "embedding_dim": dim,
        "text": family.text_settings(),
        "text_tower": config.export.text_tower,
    }


def _component(
    family: ZeroShotFamily,
    root: Path,
    name: str,
    graphs: Sequence[Graph],
    config: CompileConfig,
    validation: Sequence[ValidationResult],
    settings: dict[str, Any],
    files: Sequence[str],
) -> Component:
    return Component(
        name=name,
        task=family.task,
        family=family.name,
        graphs=tuple(graphs),
        provenance=provenance(config, family.architecture),
        files={role: file_ref(root, f"{name}/{filename}") for role, filename in (("tokenizer", "tokenizer.json"), ("prompt_embeddings", "prompt_embeddings.npy")) if role in files},
        settings=settings,
        validation=tuple(validation),
        **family.preprocessing(),
    )


def default_component_name(task: str) -> str:
    """The component name a compile uses when none is given: "alerts" (images), "audio_alerts"."""
    return "alerts" if task == "zero_shot_image" else "audio_alerts"


def compile_zero_shot(config: CompileConfig, *, show_progress: bool = True) -> Pack:
    """Compiles a CLIP, SigLIP or CLAP checkpoint into a zero-shot component of ``config.out``.

    Stages: load; export the image/audio tower and the text tower (fp32); validate them against
    the torch model (embeddings, logits, preprocessing, tokenization); embed the prompts into the
    pack; build each reduced-precision variant and validate it against fp32 (embedding cosine,
    top-1 prompt agreement).

    Returns:
        The pack, loaded and verified.

    Raises:
        UnsupportedModelError: the checkpoint is not a supported zero-shot model.
        ExportError: torch.onnx failed.
        ValidationFailedError: a graph is outside its tolerance (nothing is written to the pack).
        CompileError: anything else that stops the compile (bad prompts, calibration data, ...).
    """
    out = Path(config.out)
    check_out(out)
    architecture = detect_zero_shot_architecture(config.load.model, revision=config.load.revision, local_files_only=config.load.local_files_only)
    family_class = _FAMILIES.get(architecture or "")
    task = family_class.task if family_class is not None else "zero_shot_image"
    name = config.component or default_component_name(task)
    text_tower = config.export.text_tower
    progress = Progress(4 + len(config.variants), enabled=show_progress)
    count = max(config.validate.num_images, config.num_calibration)
    with staging(out, name) as root:
        samples: list[Any] = []
        if task == "zero_shot_image":
            # The user's images are read first: a bad calibration folder fails before minutes of export.
            samples = list(calibration_images(config.calibration, count) if config.calibration else synthetic_images(count))
        with progress.stage(f"loading {config.load.model}"):
            family = load_zero_shot(config.load.model, revision=config.load.revision, local_files_only=config.load.local_files_only)
            progress.note(f"{family.architecture} -> family {family.name} ({family.task}, {family.score} scores)")
        rate = 0
        if family.modality == "audio":
            # Audio files are checked against the model's rate, which its feature extractor gives.
            audio = family.preprocessing()["audio"]
            rate = audio.sample_rate_hz
            samples = calibration_audio(config.calibration, count, rate) if config.calibration else synthetic_audio(count, rate, audio.max_length_s)
        validation_samples = samples[: config.validate.num_images]
        background = config.export.background_prompts
        if background is None:
            background = DEFAULT_BACKGROUND_PROMPTS[family.task] if family.score == "softmax" else ()
        embedded = list(dict.fromkeys([*config.export.prompts, *background]))
        base = IMAGE_VALIDATION_PROMPTS if family.modality == "image" else AUDIO_VALIDATION_PROMPTS
        prompts = list(dict.fromkeys([*base, *embedded]))
        roles = (family.media_role, TEXT_ENCODER)
        with progress.stage(f"exporting fp32 graphs ({family.modality} tower, text tower)"):
            # Two examples at least: the exporter keeps an axis symbolic only when its example size is >= 2.
            _export_fp32(family, root / name, config.export.opset, family.media_example((validation_samples * 2)[:2]), prompts[:2])
            family.tokenizer.backend_tokenizer.save(str(root / name / "tokenizer.json"))
            graphs = [graph_from_file(root, f"{name}/{role}.onnx", role=role, precision="fp32", target="any") for role in roles]
            progress.note(", ".join(f"{g.role} {g.file.size_bytes / 1e6:.1f} MB" for g in graphs))
        dim = int(graphs[0].outputs[0].shape[-1]) if isinstance(graphs[0].outputs[0].shape[-1], int) else 0
        staged_settings = _settings(family, config, (), (), dim)

        def staged_scorer(graph_list: Sequence[Graph], precision: str, target: str) -> ZeroShotScorer:
            component = _component(family, root, name, graph_list, config, (), staged_settings, ("tokenizer",))
            return ZeroShotScorer(load_staged(root, component), name, precision=precision, options=CPU, graph_target=target, background_prompts=())

        what = "images" if family.modality == "image" else "clips"
        with progress.stage(f"validating fp32 graphs against torch on {len(validation_samples)} {what} and {len(prompts)} prompts"):
            fp32 = staged_scorer(graphs, "fp32", "cpu")
            fp32_result, fp32_run = _validate_fp32(family, fp32, validation_samples, prompts, config, progress)
            report(progress, fp32_result)
            if not fp32_result.passed:
                raise ValidationFailedError(f"fp32 export is outside tolerance: {summary(fp32_result)}")
        with progress.stage(f"embedding {len(embedded)} prompts ({len(config.export.prompts)} alert, {len(background)} background)"):
            table = fp32.embed_texts(embedded) if embedded else np.zeros((0, dim), np.float32)
            np.save(root / name / "prompt_embeddings.npy", table.astype(np.float32), allow_pickle=False)
        results = [fp32_result]
        calibration: dict[str, list[dict[str, np.ndarray]]] | None = None
        for variant in config.variants:
            with progress.stage(f"building {variant.label} variant"):
                static = variant.precision == "int8" and (variant.target == "tensorrt" or config.calibration is not None)
                if static and calibration is None:
                    calibration = _record_calibration(family, fp32, samples[: config.num_calibration], prompts, rate)
                    progress.note(f"calibration: {len(calibration[family.media_role])} {what}, {len(calibration[TEXT_ENCODER])} prompts")
                # Without a text tower in the pack, a variant is its image/audio tower alone, scored
                # against the fp32 prompt embeddings the pack stores.
                new_graphs = quantize_variant(root, name, roles if text_tower else roles[:1], variant, calibration if static else None)
                staged = staged_scorer(new_graphs, variant.precision, new_graphs[0].target)
                result = _validate_variant(variant, family, staged, fp32_run, validation_samples, prompts, config)
                report(progress, result)
                if not result.passed:
                    raise ValidationFailedError(
                        f"{variant.label} variant agrees with fp32 below the floor (--min-agreement {config.validate.min_agreement}): {summary(result)}"
                    )
                graphs += new_graphs
                results.append(result)
        files = ["prompt_embeddings"]
        if text_tower:
            files.append("tokenizer")
        else:
            graphs = [g for g in graphs if g.role != TEXT_ENCODER]
            for leftover in (root / name).glob(f"{TEXT_ENCODER}*"):
                leftover.unlink()
            (root / name / "tokenizer.json").unlink()
        final = _component(family, root, name, graphs, config, results, _settings(family, config, background, embedded, dim), files)
        return install(root, out, final)


def _record_calibration(
    family: ZeroShotFamily, scorer: ZeroShotScorer, samples: Sequence[Any], prompts: Sequence[str], rate: int
) -> dict[str, list[dict[str, np.ndarray]]]:
    """Inputs the fp32 towers see on the calibration samples and prompts, one per feed (for static INT8)."""
    media: list[dict[str, np.ndarray]] = []
    for sample in samples:
        if family.modality == "image":
            assert scorer.component.image is not None
            media.append({graph_io.PIXEL_VALUES: preprocess([sample], scorer.component.image)})
        else:
            assert scorer.component.audio is not None
            features, is_longer = clap_features([sample], scorer.component.audio, sample_rate_hz=rate)
            feed = {graph_io.INPUT_FEATURES: features}
            if IS_LONGER in family.media_input_names():
                feed[IS_LONGER] = is_longer
            media.append(feed)
    text = [scorer.tokenize([prompt]) for prompt in prompts]
    return {family.media_role: media, TEXT_ENCODER: text}

