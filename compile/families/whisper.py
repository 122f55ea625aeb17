"""Whisper (``WhisperForConditionalGeneration``): every size, English-only (``.en``) and multilingual.

Three graphs follow the ``edgemm-kv-1`` convention (:mod:`edgemm.runtime.graph_io`):

- ``encoder``: ``input_features`` float32 [batch, n_mels, 3000] -> ``encoder_hidden_states``
  [batch, 1500, d_model];
- ``cross_kv``: ``encoder_hidden_states`` -> ``cross.{i}.key`` / ``cross.{i}.value``
  [batch, heads, 1500, head_dim] for every decoder layer, once per 30-s segment;
- ``decoder_step``: ``input_ids`` + ``past.{i}.*`` + ``cross.{i}.*`` -> ``logits`` + ``present.{i}.*``.
  The learned position embedding is indexed by the past length (a Shape of ``past.0.key``), so prefill
  (empty past) and every later step are the same graph, without If/Loop.

The decoding settings (start, language and task tokens, <|notimestamps|>, suppress and begin-suppress
tokens, max length, the no-speech token) are read from the checkpoint's own generation config and
stored in the component, so the runtime decodes as ``WhisperForConditionalGeneration.generate`` does
for one 30-s segment.
"""

from __future__ import annotations

from typing import Any

import torch

from edgemm.runtime import graph_io
from edgemm.runtime.errors import UnsupportedModelError
from edgemm.runtime.pack import AudioPreprocessing, GenerationSettings, KVCacheLayout

from ._step import CachedDecoderStep
from .base import split_heads

__all__ = ["NO_SPEECH_TOKENS", "WhisperFamily"]

NO_SPEECH_TOKENS = ("<|nospeech|>", "<|nocaptions|>")
"""The no-speech token's name: <|nocaptions|> in the checkpoints before large-v3, <|nospeech|> after."""


class _Encoder(torch.nn.Module):
    def __init__(self, model: Any) -> None:
        super().__init__()
        self.encoder = model.model.encoder

    def forward(self, input_features: torch.Tensor) -> torch.Tensor:
        return self.encoder(input_features=input_features).last_hidden_state


class _CrossKV(torch.nn.Module):
    """Encoder states -> each decoder layer's cross-attention keys and values, [batch, heads, seq, head_dim]."""

    def __init__(self, model: Any, heads: int, head_dim: int) -> None:
        super().__init__()
        self.layers = model.model.decoder.layers
        self.heads, self.head_dim = heads, head_dim

    def forward(self, encoder_hidden_states: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out: list[torch.Tensor] = []
        for layer in self.layers:
            attention = layer.encoder_attn
            out += [
                split_heads(attention.k_proj(encoder_hidden_states), self.heads, self.head_dim),
                split_heads(attention.v_proj(encoder_hidden_states), self.heads, self.head_dim),
            ]
        return tuple(out)


class _DecoderStep(CachedDecoderStep):
    def __init__(self, model: Any, num_layers: int) -> None:
        super().__init__()
        self.decoder = model.model.decoder
        self.proj_out = model.proj_out
        self.num_layers = num_layers

    def decode(self, input_ids: torch.Tensor, selector: torch.Tensor, cache: Any) -> tuple[torch.Tensor, Any]:
        out = self.decoder(input_ids=input_ids, encoder_hidden_states=selector, past_key_values=cache, use_cache=True, return_dict=True)
        return self.proj_out(out.last_hidden_state), out.past_key_values


def _token_list(value: Any) -> tuple[int, ...]:
    return tuple(int(t) for t in (value or ()))


class WhisperFamily:
    """One Whisper checkpoint with what edgemm needs of it: graphs, preprocessing, decoding settings,
    and the torch reference the compile validates against.

    Attributes:
        model: ``WhisperForConditionalGeneration`` in fp32 with eager attention.
        feature_extractor: its ``WhisperFeatureExtractor``.
        tokenizer: its ``WhisperTokenizer`` (a tokenizers-backed tokenizer).
        generation_config: the checkpoint's generation config.
    """

    name = "whisper"
    architectures = ("WhisperForConditionalGeneration",)

    def __init__(self, model: Any, feature_extractor: Any, tokenizer: Any, generation_config: Any) -> None:
        self.model = model
        self.feature_extractor = feature_extractor
        self.tokenizer = tokenizer
        self.generation_config = generation_config
        self._check()

    @classmethod
    def from_pretrained(cls, path: str, *, revision: str | None, local_files_only: bool) -> WhisperFamily:
        from transformers import WhisperForConditionalGeneration, WhisperProcessor

        kwargs: dict[str, Any] = {"revision": revision, "local_files_only": local_files_only}
        model = WhisperForConditionalGeneration.from_pretrained(path, attn_implementation="eager", dtype=torch.float32, **kwargs).eval()
        processor = WhisperProcessor.from_pretrained(path, **kwargs)
        return cls(model, processor.feature_extractor, processor.tokenizer, model.generation_config)

    # -- checks -------------------------------------------------------------------------------

    def _check(self) -> None:
        gc = self.generation_config
        where = "generation_config.json"
        for field in ("decoder_start_token_id", "eos_token_id", "no_timestamps_token_id"):
            if getattr(gc, field, None) is None:
                raise UnsupportedModelError(
                    f"Whisper: {where} has no {field}; expected a generation config as the released checkpoints have "
                    "(see https://github.com/huggingface/transformers/issues/25084 for how to update an old one)"
                )
        if self.is_multilingual and not getattr(gc, "lang_to_id", None):
            raise UnsupportedModelError(f"Whisper: a multilingual checkpoint whose {where} has no lang_to_id; expected the language token table")
        token = self.tokenizer.convert_ids_to_tokens(self.no_speech_token_id)
        if token not in NO_SPEECH_TOKENS:
            raise UnsupportedModelError(
                f"Whisper: expected the token before <|notimestamps|> (id {self.no_speech_token_id}) to be one of {list(NO_SPEECH_TOKENS)}, "
                f"found {token!r}; the vocabulary is not laid out as the released checkpoints'"
            )
        extractor = type(self.feature_extractor).__name__
        if extractor != "WhisperFeatureExtractor":
            raise UnsupportedModelError(f"Whisper: expected a WhisperFeatureExtractor, found {extractor}")
        if float(getattr(self.feature_extractor, "dither", 0.0) or 0.0) != 0.0:
            raise UnsupportedModelError("Whisper: the feature extractor dithers (adds random noise); edgemm reproduces only dither=0.0")
        if int(self.feature_extractor.feature_size) != int(self.model.config.num_mel_bins):
            raise UnsupportedModelError(
                f"Whisper: the feature extractor makes {self.feature_extractor.feature_size} mel bins, the model takes {self.model.config.num_mel_bins}"
            )
        frames = int(self.feature_extractor.nb_max_frames)
        expected = 2 * int(self.model.config.max_source_positions)
        if frames != expected:
            raise UnsupportedModelError(f"Whisper: the feature extractor makes {frames} frames, the encoder takes {expected}")

    # -- geometry and graphs ------------------------------------------------------------------

    def geometry(self) -> tuple[int, int, int]:
        """(decoder layers, attention heads, head size) of the decoder's cache."""
        c = self.model.config
        return int(c.decoder_layers), int(c.decoder_attention_heads), int(c.d_model) // int(c.decoder_attention_heads)

    def kv_layout(self) -> KVCacheLayout:
        layers, heads, head_dim = self.geometry()
        return KVCacheLayout(graph_io.KV_CONVENTION, layers, heads, head_dim, cross_attention=True)

    def encoder(self) -> torch.nn.Module:
        """``forward(input_features) -> encoder_hidden_states``."""
        return _Encoder(self.model).eval()

    def cross_kv(self) -> torch.nn.Module:
        """``forward(encoder_hidden_states) -> (cross.0.key, cross.0.value, ...)``."""
        _, heads, head_dim = self.geometry()
        return _CrossKV(self.model, heads, head_dim).eval()

    def decoder_step(self) -> torch.nn.Module:
        """``forward(input_ids, *past, *cross) -> (logits, present.0.key, present.0.value, ...)``."""
        return _DecoderStep(self.model, self.geometry()[0]).eval()

    @property
    def num_frames(self) -> int:
        """Log-mel frames per segment (3000 for the released models: 30 s, hop 160)."""
        return 2 * int(self.model.config.max_source_positions)

    @property
    def num_mels(self) -> int:
        return int(self.model.config.num_mel_bins)

    # -- what the runtime needs ---------------------------------------------------------------

    @property
    def is_multilingual(self) -> bool:
        gc = self.generation_config
        flag = getattr(gc, "is_multilingual", None)
        if flag is not None:
            return bool(flag)
        return bool(getattr(gc, "lang_to_id", None))

    @property
    def no_timestamps_token_id(self) -> int:
        return int(self.generation_config.no_timestamps_token_id)

    @property
    def no_speech_token_id(self) -> int:
        # transformers' WhisperNoSpeechDetection and openai-whisper use the token before <|notimestamps|>.
        return self.no_timestamps_token_id - 1

    def audio_preprocessing(self) -> AudioPreprocessing:
        fe = self.feature_extractor
        return AudioPreprocessing(
            sample_rate_hz=int(fe.sampling_rate),
            feature="log_mel_whisper",
            n_fft=int(fe.n_fft),
            hop_length=int(fe.hop_length),
            n_mels=int(fe.feature_size),
            f_min_hz=0.0,
            f_max_hz=8000.0,  # fixed in WhisperFeatureExtractor, whatever the sampling rate
            mel_scale="slaney",
            mel_norm="slaney",
            max_length_s=float(fe.chunk_length),
        )

    def _forced(self) -> dict[int, int | None]:
        forced = getattr(self.generation_config, "forced_decoder_ids", None) or []
        return {int(position): (None if token is None else int(token)) for position, token in forced}

    def languages(self) -> dict[str, int]:
        """Language code -> token id ("en" -> 50259), in token order; empty for English-only models."""
        table = getattr(self.generation_config, "lang_to_id", None) or {}
        items = sorted(((int(v), str(k)) for k, v in table.items()))
        return {token.strip("<|>"): token_id for token_id, token in items}

    def tasks(self) -> dict[str, int]:
        table = getattr(self.generation_config, "task_to_id", None) or {}
        return {str(k): int(v) for k, v in table.items()}

    def default_language(self) -> str | None:
        """A language the checkpoint forces (fine-tuned single-language models), else None (detect)."""
        token = self._forced().get(1)
        by_id = {v: k for k, v in self.languages().items()}
        return by_id.get(token) if token is not None else None

    def default_task(self) -> str:
        token = self._forced().get(2)
        by_id = {v: k for k, v in self.tasks().items()}
        return by_id.get(token, "transcribe") if token is not None else "transcribe"

    def max_target_positions(self) -> int:
        return int(self.model.config.max_target_positions)

    @property
    def prompt_length(self) -> int:
        """Tokens before the first generated one: 4 (multilingual), 2 (English-only)."""
        return 4 if self.is_multilingual else 2

    def prompt_ids(self, language: str | None, task: str) -> list[int]:
        """The decoder prompt: [SOT] + [language, task] (multilingual) + [<|notimestamps|>]."""
        ids = [int(self.generation_config.decoder_start_token_id)]
        if self.is_multilingual:
            if language is None:
                raise ValueError("multilingual prompts need a language")
            ids += [self.languages()[language], self.tasks()[task]]
        return [*ids, self.no_timestamps_token_id]

    def generation_settings(self, max_new_tokens: int | None) -> GenerationSettings:
        """The decoding settings of the checkpoint's generation config, in edgemm's terms.

        ``max_new_tokens`` is the cap transformers applies: the generation config's ``max_new_tokens``,
        else its ``max_length`` (Whisper's generate counts it after the prompt), never more than the
        decoder positions left after the prompt (the runtime applies that bound per prompt).
        """
        gc = self.generation_config
        eos = gc.eos_token_id
        eos_ids = tuple(int(e) for e in (eos if isinstance(eos, (list, tuple)) else [eos]))
        if max_new_tokens is None:
            max_new_tokens = int(gc.max_new_tokens or gc.max_length or self.max_target_positions())
        return GenerationSettings(
            eos_token_ids=eos_ids,
            max_new_tokens=min(int(max_new_tokens), self.max_target_positions()),
            decoder_start_token_id=int(gc.decoder_start_token_id),
            bos_token_id=None if gc.bos_token_id is None else int(gc.bos_token_id),
            pad_token_id=None if gc.pad_token_id is None else int(gc.pad_token_id),
            num_beams=int(gc.num_beams or 1),
            length_penalty=float(gc.length_penalty if gc.length_penalty is not None else 1.0),
            early_stopping="never" if gc.early_stopping == "never" else bool(gc.early_stopping),
            repetition_penalty=float(gc.repetition_penalty or 1.0),
            no_repeat_ngram_size=int(gc.no_repeat_ngram_size or 0),
            suppress_tokens=_token_list(gc.suppress_tokens),
            begin_suppress_tokens=_token_list(gc.begin_suppress_tokens),
        )

    def settings(self) -> dict[str, Any]:
        """The component settings the runtime's transcriber reads (see :mod:`edgemm.runtime.transcriber`)."""
        from transformers.models.whisper.tokenization_whisper import TO_LANGUAGE_CODE

        languages = self.languages()
        return {
            "is_multilingual": self.is_multilingual,
            "languages": languages,
            "language_names": {name: code for name, code in TO_LANGUAGE_CODE.items() if code in languages},
            "tasks": self.tasks(),
            "default_language": self.default_language(),
            "default_task": self.default_task(),
            "no_timestamps_token_id": self.no_timestamps_token_id,
            "no_speech_token_id": self.no_speech_token_id,
            "max_target_positions": self.max_target_positions(),
        }

    # -- the torch reference, for validation ----------------------------------------------------

    def reference_features(self, clips: list[Any], sample_rate_hz: int) -> Any:
        """``WhisperFeatureExtractor``'s features, np.ndarray (n, n_mels, frames) float32."""
        import numpy as np

        out = self.feature_extractor(clips, sampling_rate=sample_rate_hz, return_tensors="np")
        return np.asarray(out["input_features"], dtype=np.float32)

    def reference_encoder(self, features: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """(encoder hidden states, cross keys/values) of the torch model."""
        with torch.no_grad():
            hidden = self.model.model.encoder(input_features=features).last_hidden_state
            return hidden, list(self.cross_kv()(hidden))

    def reference_generate(self, hidden: torch.Tensor, language: str | None, task: str | None, max_new_tokens: int) -> torch.Tensor:
        """``generate()`` on one 30-s segment, greedy, from the encoder's output (equal to giving it the
        features, without running the encoder again); returns the sequences with their prompts."""
        from transformers.modeling_outputs import BaseModelOutput

        kwargs: dict[str, Any] = {"max_new_tokens": max_new_tokens, "do_sample": False, "num_beams": 1}
        if self.is_multilingual:
            kwargs.update(language=language, task=task)
        with torch.no_grad():
            out = self.model.generate(
                encoder_outputs=BaseModelOutput(last_hidden_state=hidden), force_unique_generate_call=True, return_dict_in_generate=True, **kwargs
            )
        sequences: torch.Tensor = out.sequences
        return sequences

    def reference_logits(self, hidden: torch.Tensor, decoder_ids: torch.Tensor) -> torch.Tensor:
        """Teacher-forced logits ``[batch, seq, vocab]`` of the full model on ``decoder_ids``."""
        with torch.no_grad():
            logits: torch.Tensor = self.model(encoder_outputs=(hidden,), decoder_input_ids=decoder_ids).logits
            return logits
