"""What every captioner family adapter provides, and the KV-cache plumbing they share.

A family adapter turns one Hugging Face architecture into two torch modules that follow the
``edgemm-kv-1`` convention (:mod:`edgemm.runtime.graph_io`):

- ``encoder``: ``pixel_values`` (plus the prompt's ``input_ids`` for families whose text encoder
  reads the prompt) -> ``cross.{i}.key``, ``cross.{i}.value`` for every decoder layer: the
  cross-attention keys/values are computed once per image, never per token;
- ``decoder_step``: ``input_ids``, ``past.{i}.*``, ``cross.{i}.*`` -> ``logits``, ``present.{i}.*``.

Everything else (export, quantization, validation, the pack) is shared, so a new family is one
small adapter.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from edgemm.runtime import graph_io
from edgemm.runtime.pack import GenerationSettings, ImagePreprocessing, KVCacheLayout

if TYPE_CHECKING:
    import torch

__all__ = ["CaptionFamily", "PromptSpec", "cache_from_flat", "flatten_self_cache"]


@dataclass(frozen=True)
class PromptSpec:
    """How a family turns a text prompt into model inputs (stored in the pack's settings).

    Attributes:
        mode: "decoder": the prompt's tokens follow ``decoder_start_ids`` in the decoder (BLIP);
            "encoder": the prompt goes through the text encoder (Florence-2); "none": no prompts.
        decoder_start_ids: the ids decoding starts from.
        default_prompt: the prompt used when the caller gives none (None: no prompt).
        encoder_template: for "encoder" mode, the text the tokenizer sees, with ``{prompt}``.
        task_prompts: task tokens the family expands ("<CAPTION>" -> its text).
    """

    mode: str
    decoder_start_ids: tuple[int, ...]
    default_prompt: str | None = None
    encoder_template: str = "{prompt}"
    task_prompts: tuple[tuple[str, str], ...] = ()

    def to_settings(self) -> dict[str, Any]:
        return {
            "prompt_mode": self.mode,
            "decoder_start_ids": list(self.decoder_start_ids),
            "default_prompt": self.default_prompt,
            "encoder_template": self.encoder_template,
            "task_prompts": dict(self.task_prompts),
        }


def cache_from_flat(flat: Sequence[torch.Tensor]) -> Any:
    """``[k0, v0, k1, v1, ...]`` -> a transformers ``DynamicCache`` holding exactly these tensors.

    ``DynamicCache(ddp_cache_data=...)`` would concatenate onto an empty placeholder tensor and
    leave junk nodes in the exported graph; filling the layers directly keeps it clean.
    """
    from transformers.cache_utils import DynamicCache, DynamicLayer

    cache: Any = DynamicCache()
    layers: list[Any] = []
    for i in range(0, len(flat), 2):
        layer = DynamicLayer()
        layer.dtype, layer.device = flat[i].dtype, flat[i].device
        layer.keys, layer.values = flat[i], flat[i + 1]
        layer.is_initialized = True
        layers.append(layer)
    cache.layers = layers
    return cache


def encoder_decoder_cache(past: Sequence[torch.Tensor], cross: Sequence[torch.Tensor]) -> Any:
    """Self-attention cache from ``past`` and cross-attention cache from ``cross``, marked as
    already computed so the attention layers reuse it and never project encoder states."""
    from transformers.cache_utils import EncoderDecoderCache

    cache = EncoderDecoderCache(cache_from_flat(past), cache_from_flat(cross))
    cache.is_updated = dict.fromkeys(range(len(cross) // 2), True)
    return cache


def flatten_self_cache(cache: Any) -> list[torch.Tensor]:
    from transformers.cache_utils import EncoderDecoderCache

    self_cache: Any = cache.self_attention_cache if isinstance(cache, EncoderDecoderCache) else cache
    out: list[torch.Tensor] = []
    for layer in self_cache.layers:
        out += [layer.keys, layer.values]
    return out


def split_heads(x: torch.Tensor, heads: int, head_dim: int) -> torch.Tensor:
    """``[batch, seq, heads * head_dim]`` -> ``[batch, heads, seq, head_dim]``."""
    return x.view(x.shape[0], x.shape[1], heads, head_dim).transpose(1, 2)


class CaptionFamily(abc.ABC):
    """One captioner architecture, adapted to edgemm's graphs.

    Attributes:
        name: the family's name in the pack ("blip", "vision_encoder_decoder", "florence2").
        architectures: the ``config.architectures`` / model class names it handles.
        encoder_reads_prompt: whether the encoder graph takes the prompt's ``input_ids``.
    """

    name: ClassVar[str]
    architectures: ClassVar[tuple[str, ...]]
    encoder_reads_prompt: ClassVar[bool] = False

    def __init__(self, model: Any, image_processor: Any, tokenizer: Any, generation_config: Any) -> None:
        self.model = model
        self.image_processor = image_processor
        self.tokenizer = tokenizer
        self.generation_config = generation_config

    @classmethod
    @abc.abstractmethod
    def from_pretrained(cls, path: str, *, revision: str | None, local_files_only: bool) -> CaptionFamily:
        """Loads the checkpoint (model in fp32 with eager attention, processor, tokenizer)."""

    # -- graphs ----------------------------------------------------------------------------

    @abc.abstractmethod
    def geometry(self) -> tuple[int, int, int]:
        """(decoder layers, attention heads, head size) of the decoder's cache."""

    encoder_module: ClassVar[Any]
    """The encoder module's class, built as ``encoder_module(model, heads, head_dim)``."""
    step_module: ClassVar[Any]
    """The decoder step module's class, built as ``step_module(model, num_layers)``."""

    def kv_layout(self) -> KVCacheLayout:
        layers, heads, head_dim = self.geometry()
        return KVCacheLayout(graph_io.KV_CONVENTION, layers, heads, head_dim, cross_attention=True)

    def encoder(self) -> torch.nn.Module:
        """``forward(pixel_values[, input_ids]) -> (cross.0.key, cross.0.value, ...)``."""
        _, heads, head_dim = self.geometry()
        module: torch.nn.Module = type(self).encoder_module(self.model, heads, head_dim)
        return module.eval()

    def decoder_step(self) -> torch.nn.Module:
        """``forward(input_ids, *past, *cross) -> (logits, present.0.key, present.0.value, ...)``."""
        module: torch.nn.Module = type(self).step_module(self.model, self.geometry()[0])
        return module.eval()

    def encoder_input_names(self) -> tuple[str, ...]:
        if self.encoder_reads_prompt:
            return (graph_io.PIXEL_VALUES, graph_io.INPUT_IDS)
        return (graph_io.PIXEL_VALUES,)

    # -- what the runtime needs -------------------------------------------------------------

    def image_preprocessing(self) -> ImagePreprocessing:
        from edgemm.compile.preprocessing import image_preprocessing_from_processor

        return image_preprocessing_from_processor(self.image_processor)

    @abc.abstractmethod
    def prompt_spec(self, prompt: str | None) -> PromptSpec:
        """How prompts become inputs; ``prompt`` is the compile-time default (None: family default)."""

    def generation_settings(self, max_new_tokens: int | None, prompt: PromptSpec) -> GenerationSettings:
        """The decoding settings of the model's own generation config, in edgemm's terms."""
        gc = self.generation_config
        eos = self.eos_token_ids()
        if max_new_tokens is None:
            max_new_tokens = gc.max_new_tokens or max(1, (gc.max_length or 20) - len(prompt.decoder_start_ids))
        return GenerationSettings(
            eos_token_ids=eos,
            max_new_tokens=int(max_new_tokens),
            decoder_start_token_id=prompt.decoder_start_ids[0],
            bos_token_id=_opt_int(gc.bos_token_id),
            pad_token_id=self.pad_token_id(),
            min_new_tokens=self._min_new_tokens(prompt),
            num_beams=int(gc.num_beams or 1),
            length_penalty=float(gc.length_penalty if gc.length_penalty is not None else 1.0),
            early_stopping="never" if gc.early_stopping == "never" else bool(gc.early_stopping),
            repetition_penalty=float(gc.repetition_penalty or 1.0),
            no_repeat_ngram_size=int(gc.no_repeat_ngram_size or 0),
            forced_bos_token_id=_opt_int(gc.forced_bos_token_id),
            forced_eos_token_id=_opt_int(gc.forced_eos_token_id),
            suppress_tokens=tuple(int(t) for t in (gc.suppress_tokens or ())),
            begin_suppress_tokens=tuple(int(t) for t in (gc.begin_suppress_tokens or ())),
            prompt=prompt.default_prompt,
        )

    def _min_new_tokens(self, prompt: PromptSpec) -> int:
        gc = self.generation_config
        if gc.min_new_tokens:
            return int(gc.min_new_tokens)
        # transformers' min_length counts the decoder prompt too (BLIP ships min_length=5).
        return max(0, int(gc.min_length or 0) - len(prompt.decoder_start_ids) - len(self.decoder_prompt_ids(prompt.default_prompt)))

    def eos_token_ids(self) -> tuple[int, ...]:
        eos = self.generation_config.eos_token_id
        if eos is None:
            from edgemm.runtime.errors import UnsupportedModelError

            raise UnsupportedModelError(f"{self.name}: the generation config has no eos_token_id; captions would never end")
        return tuple(int(e) for e in (eos if isinstance(eos, (list, tuple)) else [eos]))

    def pad_token_id(self) -> int | None:
        return _opt_int(self.generation_config.pad_token_id)

    # -- the torch reference, for validation ------------------------------------------------

    @abc.abstractmethod
    def reference_generate(
        self, pixel_values: torch.Tensor, prompt: str | None, generate_kwargs: dict[str, Any]
    ) -> torch.Tensor:
        """The source model's own ``generate()``; returns its sequences as transformers does."""

    @abc.abstractmethod
    def reference_logits(self, pixel_values: torch.Tensor, prompt: str | None, decoder_ids: torch.Tensor) -> torch.Tensor:
        """Teacher-forced logits ``[batch, seq, vocab]`` of the full model on ``decoder_ids``."""

    def generated_offset(self, prompt: str | None) -> int:
        """How many leading ids of ``reference_generate``'s sequences are not generated tokens."""
        return len(self.prompt_spec(prompt).decoder_start_ids) + len(self.decoder_prompt_ids(prompt))

    def decoder_prompt_ids(self, prompt: str | None) -> list[int]:
        """Prompt tokens that follow the decoder start ids (only in "decoder" prompt mode)."""
        return []

    def encoder_prompt_ids(self, prompt: str | None) -> list[int]:
        """Prompt tokens the encoder reads (only in "encoder" prompt mode)."""
        return []


def _opt_int(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        return int(value[0]) if value else None
    return int(value)
