"""Speech recognition from a pack's ``asr`` component (Whisper): features, encoder, decode loop.

One call transcribes one segment of up to 30 s (the model's window), as transformers'
``WhisperForConditionalGeneration.generate`` does for short-form audio, with the checkpoint's own
generation settings (stored in the pack):

- the prompt is ``<|startoftranscript|>`` then, for multilingual models, the language token (given,
  the checkpoint's forced one, or detected: the most likely language token after the start token)
  and the task token (``<|transcribe|>`` or ``<|translate|>``), then ``<|notimestamps|>``;
- decoding is greedy (or beam search), with the suppress and begin-suppress tokens, up to the
  decoder's 448 positions; the EOS token ends it;
- ``no_speech_prob`` is the softmax probability of the no-speech token (``<|nocaptions|>`` or
  ``<|nospeech|>``) at the first position, as openai-whisper and transformers compute it;
  ``avg_logprob`` is the mean log-probability of the generated tokens (EOS included) under the
  processed logits. A segment whose ``no_speech_prob`` is above ``no_speech_threshold`` and whose
  ``avg_logprob`` is below ``logprob_threshold`` is silence: its text is empty.

Not done (as in transformers' short-form path without these options): temperature fallback,
compression-ratio checks, timestamps, prompts (``prompt_ids``).

Typical use::

    transcriber = edgemm.load("packs/speech").transcriber()
    result = transcriber.transcribe(samples)        # float32 (n,) mono at 16 kHz, <= 30 s
    print(result.language, result.text)
"""

from __future__ import annotations

import dataclasses
import logging
import re
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import graph_io
from .audio_features import check_waveform, whisper_features
from .backends import OrtOptions
from .errors import AudioError, InputError, PackError
from .generation import DecoderState, build_processors, generate, log_softmax
from .pack import Component, Pack
from .tasks import KVCacheState, describe_backends, input_dtype, open_graph, plan_graphs, task_component
from .tokenizer import TextTokenizer

__all__ = ["CROSS_KV", "ENCODER", "ROLES", "STEP", "Transcriber", "Transcription", "WhisperSettings"]

log = logging.getLogger("edgemm")

ENCODER = "encoder"
"""Graph role: ``input_features`` [batch, n_mels, frames] -> ``encoder_hidden_states``."""
CROSS_KV = "cross_kv"
"""Graph role: ``encoder_hidden_states`` -> ``cross.{i}.key`` / ``cross.{i}.value``."""
STEP = "decoder_step"
"""Graph role: the decoder step with its self-attention cache (``edgemm-kv-1``)."""
ROLES = (ENCODER, CROSS_KV, STEP)

_TIMESTAMP = re.compile(r"<\|(\d+\.\d+)\|>")


@dataclass(frozen=True)
class Transcription:
    """The speech recognised in one segment of audio.

    Attributes:
        text: the recognised text, stripped; empty when the segment was judged silent (see
            ``no_speech_prob``) or the model produced nothing.
        tokens: the generated token ids, EOS excluded (empty for a silent segment).
        language: the language decoded in (ISO 639-1 code, e.g. "en"); None for English-only models.
        no_speech_prob: the model's probability that the segment holds no speech.
        avg_logprob: mean log-probability of the generated tokens, EOS included (beam search: the
            beam's length-normalised score).
        duration_s: the segment's length, in seconds.
        latency_ms: time from the call to the result, in milliseconds (a batch's results share it).
        start_s: where the segment starts in the audio given, in seconds (0 unless it is one window
            of :meth:`Transcriber.transcribe_long`).
    """

    text: str
    tokens: tuple[int, ...]
    language: str | None
    no_speech_prob: float
    avg_logprob: float
    duration_s: float
    latency_ms: float
    start_s: float = 0.0


@dataclass(frozen=True)
class WhisperSettings:
    """The ``settings`` of an ``asr`` component, as the compile writes them.

    Attributes:
        is_multilingual: whether prompts carry language and task tokens.
        languages: language code -> token id ("en" -> 50259); empty for English-only models.
        language_names: language name -> code ("english" -> "en").
        tasks: "transcribe"/"translate" -> token id (multilingual models).
        default_language: a language the checkpoint forces, else None (detected per segment).
        default_task: the checkpoint's task ("transcribe").
        no_timestamps_token_id: <|notimestamps|>, the last prompt token.
        no_speech_token_id: <|nocaptions|> / <|nospeech|>.
        max_target_positions: decoder positions (prompt and generated tokens together).
    """

    is_multilingual: bool
    languages: dict[str, int]
    language_names: dict[str, str]
    tasks: dict[str, int]
    default_language: str | None
    default_task: str
    no_timestamps_token_id: int
    no_speech_token_id: int
    max_target_positions: int

    @classmethod
    def from_component(cls, component: Component) -> WhisperSettings:
        s = component.settings
        try:
            return cls(
                is_multilingual=bool(s["is_multilingual"]),
                languages={str(k): int(v) for k, v in dict(s.get("languages") or {}).items()},
                language_names={str(k): str(v) for k, v in dict(s.get("language_names") or {}).items()},
                tasks={str(k): int(v) for k, v in dict(s.get("tasks") or {}).items()},
                default_language=None if s.get("default_language") is None else str(s["default_language"]),
                default_task=str(s.get("default_task") or "transcribe"),
                no_timestamps_token_id=int(s["no_timestamps_token_id"]),
                no_speech_token_id=int(s["no_speech_token_id"]),
                max_target_positions=int(s["max_target_positions"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise PackError(f"component '{component.name}': the asr settings are incomplete or malformed ({type(exc).__name__}: {exc})") from exc


class _Recorder:
    """A decoder state that keeps the last-position logits of every step (greedy search only: the
    rows never change order), for the average log-probability of what was generated."""

    def __init__(self, state: DecoderState) -> None:
        self.state = state
        self.steps: list[np.ndarray] = []

    def step(self, input_ids: np.ndarray) -> np.ndarray:
        logits = np.asarray(self.state.step(input_ids))
        self.steps.append(logits.astype(np.float32))
        return logits

    def reorder(self, rows: np.ndarray) -> None:
        self.state.reorder(rows)


class Transcriber:
    """Transcribes speech with a pack's ``asr`` component.

    Args:
        pack: a loaded pack.
        component: the component's name (default: the pack's only asr component).
        precision: "auto" (the fastest validated variant for this device), "fp32", "fp16" or "int8".
        options: ONNX Runtime options (providers, threads).
        graph_target: run the graphs built for this target instead of the device's own (compile-time
            validation runs GPU graphs on the CPU this way; not for deployment).
        backend: "auto" (TensorRT engines built for this device, else ONNX Runtime), "tensorrt"
            (an error without such engines) or "onnxruntime"; see :func:`edgemm.runtime.tasks.plan_graphs`.

    The decoder's cache stays on its backend between tokens, so one transcriber decodes one batch at
    a time; concurrent calls wait for each other.

    Attributes:
        sample_rate_hz: the rate waveforms must have (16000 for Whisper).
        max_duration_s: the longest segment one call takes (30 s).
        is_multilingual: whether languages can be chosen and detected.
        languages: the language codes the model knows, in token order (empty for English-only models).

    Example::

        transcriber = Transcriber(edgemm.load("packs/speech"))
        print(transcriber.transcribe(samples).text)
    """

    def __init__(
        self,
        pack: Pack,
        component: str | None = None,
        *,
        precision: str = "auto",
        options: OrtOptions | None = None,
        graph_target: str | None = None,
        backend: str = "auto",
    ) -> None:
        self.pack = pack
        self.component = task_component(pack, component, "asr", "an", "a Whisper checkpoint")
        comp = self.component
        if comp.audio is None or comp.generation is None or comp.kv_cache is None or "tokenizer" not in comp.files:
            raise PackError(f"component '{comp.name}': an asr component needs audio, generation, kv_cache and a tokenizer file")
        if comp.audio.feature != "log_mel_whisper":
            raise PackError(f"component '{comp.name}': expected Whisper log-mel features (log_mel_whisper), the pack says {comp.audio.feature!r}")
        self.whisper = WhisperSettings.from_component(comp)
        self.plan = plan_graphs(comp, ROLES, precision=precision, backend=backend, options=options, graph_target=graph_target)
        self.options, self.target, self.precision = self.plan.options, self.plan.target, self.plan.precision
        self.graphs = dict(self.plan.graphs)
        self.encoder = open_graph(pack, comp, self.plan, ENCODER)
        self.cross_kv_backend = open_graph(pack, comp, self.plan, CROSS_KV)
        self.step = open_graph(pack, comp, self.plan, STEP)
        self._lock = threading.RLock()  # the decoder's backend holds one cache at a time
        self.tokenizer = TextTokenizer(pack.path_of(comp.files["tokenizer"]))
        self.sample_rate_hz = int(comp.audio.sample_rate_hz)
        self.max_duration_s = float(comp.audio.max_length_s)
        self.is_multilingual = self.whisper.is_multilingual
        self.languages = tuple(self.whisper.languages)
        self._language_by_id = {v: k for k, v in self.whisper.languages.items()}
        self._past_dtype = np.dtype(input_dtype(self.graphs[STEP], graph_io.past_names(0)[0]))
        log.info("%s", self.describe())

    @property
    def backend(self) -> str:
        """"tensorrt" or "onnxruntime": what runs the transcriber's graphs."""
        return self.plan.backend

    def describe(self) -> str:
        """E.g. ``speech: whisper int8/cpu on onnxruntime[CPUExecutionProvider]``."""
        backends = describe_backends({ENCODER: self.encoder, CROSS_KV: self.cross_kv_backend, STEP: self.step})
        return f"{self.component.name}: {self.component.family} {self.precision}/{self.target} on {backends}"

    # -- the graphs ---------------------------------------------------------------------------------

    def features(self, waveforms: Sequence[np.ndarray], sample_rate_hz: int | None = None) -> np.ndarray:
        """Log-mel features of segments (each at most :attr:`max_duration_s`).

        Returns:
            np.ndarray, shape (n, n_mels, 3000), float32.

        Raises:
            AudioError: a segment is longer than the model's window, empty or malformed.
            SampleRateMismatchError: ``sample_rate_hz`` is not :attr:`sample_rate_hz`.
        """
        assert self.component.audio is not None
        limit = round(self.max_duration_s * self.sample_rate_hz)
        for i, waveform in enumerate(waveforms):
            size = getattr(waveform, "size", 0)
            if isinstance(waveform, np.ndarray) and waveform.ndim == 1 and size > limit:
                rate = sample_rate_hz or self.sample_rate_hz
                raise AudioError(
                    f"waveform {i}: expected at most {self.max_duration_s:g} s of audio (the model's window), got "
                    f"{size / rate:.1f} s; split it (Transcriber.transcribe_long does, in {self.max_duration_s:g}-s windows)"
                )
        return whisper_features(list(waveforms), self.component.audio, sample_rate_hz=sample_rate_hz)

    def encode(self, features: np.ndarray) -> dict[str, np.ndarray]:
        """Runs the encoder and the cross-attention projections once per segment.

        Args:
            features: np.ndarray, shape (n, n_mels, 3000), float32.

        Returns:
            ``cross.{i}.key`` / ``cross.{i}.value`` for every decoder layer, each (n, heads, 1500, head_dim).
        """
        hidden = self.encoder.run({graph_io.INPUT_FEATURES: features.astype(input_dtype(self.graphs[ENCODER], graph_io.INPUT_FEATURES))})
        states = hidden[graph_io.ENCODER_HIDDEN_STATES]
        return self.cross_kv_backend.run({graph_io.ENCODER_HIDDEN_STATES: states.astype(input_dtype(self.graphs[CROSS_KV], graph_io.ENCODER_HIDDEN_STATES))})

    def encoder_hidden_states(self, features: np.ndarray) -> np.ndarray:
        """The encoder graph alone: (n, n_mels, 3000) -> (n, 1500, d_model) float32."""
        out = self.encoder.run({graph_io.INPUT_FEATURES: features.astype(input_dtype(self.graphs[ENCODER], graph_io.INPUT_FEATURES))})
        return np.asarray(out[graph_io.ENCODER_HIDDEN_STATES], dtype=np.float32)

    def state(self, cross: dict[str, np.ndarray]) -> KVCacheState:
        """A fresh decoder state (empty cache, kept on the decoder's backend) over the given
        cross-attention keys/values; it replaces any earlier state of this transcriber."""
        assert self.component.kv_cache is not None
        return KVCacheState(self.step, cross, self.component.kv_cache, self._past_dtype)

    # -- prompts and languages ------------------------------------------------------------------------

    def language_code(self, language: str) -> str:
        """A language as the model's code: "en", "english", "English" or "<|en|>" -> "en".

        Raises:
            InputError: a language the model does not know (the message lists the codes it does).
        """
        text = language.strip().lower()
        text = text[2:-2] if text.startswith("<|") and text.endswith("|>") else text
        text = self.whisper.language_names.get(text, text)
        if text not in self.whisper.languages:
            raise InputError(
                f"language {language!r}: expected one of the model's {len(self.languages)} languages "
                f"(codes such as {', '.join(self.languages[:8])}, ... or names such as 'english')"
            )
        return text

    def _check_request(self, language: str | None, task: str) -> str | None:
        """The language code to force (None: use the default or detect); checks ``task`` too."""
        if not self.is_multilingual:
            if task != "transcribe":
                raise InputError(f"component '{self.component.name}' is an English-only model: it transcribes, it cannot {task!r}")
            if language is not None and language.strip().lower().strip("<|>") not in ("en", "english"):
                raise InputError(f"component '{self.component.name}' is an English-only model; got language {language!r}")
            return None
        if task not in self.whisper.tasks:
            raise InputError(f"task {task!r}: expected one of {sorted(self.whisper.tasks)}")
        if language is not None:
            return self.language_code(language)
        return self.whisper.default_language

    def prompt_ids(self, language: str | None, task: str = "transcribe") -> list[int]:
        """The decoder prompt: <|startoftranscript|>, [language, task,] <|notimestamps|>."""
        assert self.component.generation is not None
        start = self.component.generation.decoder_start_token_id
        assert start is not None
        ids = [int(start)]
        if self.is_multilingual:
            if language is None:
                raise InputError("a multilingual prompt needs a language (give one or detect it first)")
            ids += [self.whisper.languages[language], self.whisper.tasks[task]]
        return [*ids, self.whisper.no_timestamps_token_id]

    def start_logits(self, cross: dict[str, np.ndarray]) -> np.ndarray:
        """The decoder's prediction after <|startoftranscript|> alone: language detection and the
        no-speech probability read it (the prompt's later tokens cannot change it: the decoder is causal).

        Returns:
            np.ndarray, shape (n, vocab), float32.
        """
        assert self.component.generation is not None
        start = self.component.generation.decoder_start_token_id
        rows = next(iter(cross.values())).shape[0]
        return np.asarray(self.state(cross).step(np.full((rows, 1), start, dtype=np.int64)), dtype=np.float32)

    def pick_languages(self, start_logits: np.ndarray) -> list[tuple[str, float]]:
        """The most likely language of each row of :meth:`start_logits`, with its probability among
        the model's language tokens (openai-whisper's and transformers' detection)."""
        ids = np.asarray(list(self.whisper.languages.values()), dtype=np.int64)
        scores = start_logits[:, ids]
        probs = np.exp(log_softmax(scores))
        best = np.argmax(scores, axis=-1)
        return [(self._language_by_id[int(ids[b])], float(probs[i, b])) for i, b in enumerate(best)]

    def detect_language(self, waveform: np.ndarray, *, sample_rate_hz: int | None = None) -> tuple[str, float]:
        """The most likely spoken language of a segment, as transformers' ``detect_language``.

        Args:
            waveform: np.ndarray, shape (n,), float32 mono at :attr:`sample_rate_hz`, at most 30 s.

        Returns:
            (language code, its probability among the model's languages).

        Raises:
            InputError: the model is English-only. AudioError: see :meth:`features`.
        """
        if not self.is_multilingual:
            raise InputError(f"component '{self.component.name}' is an English-only Whisper model: it cannot detect languages")
        features = self.features([waveform], sample_rate_hz)
        with self._lock:
            return self.pick_languages(self.start_logits(self.encode(features)))[0]

    # -- transcription ------------------------------------------------------------------------------

    def transcribe(
        self,
        waveform: np.ndarray,
        *,
        language: str | None = None,
        task: str = "transcribe",
        no_speech_threshold: float | None = 0.6,
        logprob_threshold: float | None = -1.0,
        num_beams: int | None = None,
        max_new_tokens: int | None = None,
        sample_rate_hz: int | None = None,
    ) -> Transcription:
        """Transcribes one segment of speech.

        Args:
            waveform: np.ndarray, shape (n,), float32 mono in [-1, 1] (or int16 PCM) at
                :attr:`sample_rate_hz`, at most :attr:`max_duration_s` (30 s; longer audio:
                :meth:`transcribe_long`).
            language: multilingual models: the spoken language (code "de", name "german" or token
                "<|de|>"); None detects it per segment (or uses the checkpoint's forced language).
                English-only models take None or English.
            task: "transcribe", or "translate" (into English; multilingual models only).
            no_speech_threshold: a segment whose no-speech probability is above this (and whose
                ``avg_logprob`` is below ``logprob_threshold``) is silence: empty text. None: never.
            logprob_threshold: see ``no_speech_threshold``; None: the no-speech probability alone decides.
            num_beams: beam search width (default: the model's own, 1 for the released checkpoints).
            max_new_tokens: at most this many tokens (default: the model's limit).
            sample_rate_hz: the waveform's rate, checked against the model's (None: assumed equal).

        Raises:
            AudioError: the waveform is empty, malformed or longer than 30 s.
            SampleRateMismatchError: ``sample_rate_hz`` is not the model's.
            InputError: an unknown language or task, or one the model does not take.
        """
        return self.transcribe_batch(
            [waveform],
            language=language,
            task=task,
            no_speech_threshold=no_speech_threshold,
            logprob_threshold=logprob_threshold,
            num_beams=num_beams,
            max_new_tokens=max_new_tokens,
            sample_rate_hz=sample_rate_hz,
        )[0]

    def transcribe_batch(
        self,
        waveforms: Sequence[np.ndarray],
        *,
        language: str | None = None,
        task: str = "transcribe",
        no_speech_threshold: float | None = 0.6,
        logprob_threshold: float | None = -1.0,
        num_beams: int | None = None,
        max_new_tokens: int | None = None,
        sample_rate_hz: int | None = None,
    ) -> list[Transcription]:
        """Transcribes several segments in one batch (each detected in its own language);
        arguments as :meth:`transcribe`."""
        if len(waveforms) == 0:
            return []
        start = time.perf_counter()
        self._check_request(language, task)
        rate = sample_rate_hz or self.sample_rate_hz
        assert self.component.audio is not None
        durations = [check_waveform(w, self.component.audio, rate, label=f"waveform {i}").size / rate for i, w in enumerate(waveforms)]
        features = self.features(waveforms, sample_rate_hz)
        with self._lock:
            return self.transcribe_encoded(
                self.encode(features),
                durations,
                language=language,
                task=task,
                no_speech_threshold=no_speech_threshold,
                logprob_threshold=logprob_threshold,
                num_beams=num_beams,
                max_new_tokens=max_new_tokens,
                started=start,
            )

    def transcribe_encoded(
        self,
        cross: dict[str, np.ndarray],
        durations_s: Sequence[float],
        *,
        language: str | None = None,
        task: str = "transcribe",
        no_speech_threshold: float | None = 0.6,
        logprob_threshold: float | None = -1.0,
        num_beams: int | None = None,
        max_new_tokens: int | None = None,
        started: float | None = None,
    ) -> list[Transcription]:
        """The decoding half of :meth:`transcribe_batch`, from :meth:`encode`'s keys/values.

        Args:
            cross: :meth:`encode`'s output for n segments.
            durations_s: the n segments' lengths (reported in the results).
            started: ``time.perf_counter()`` when the work began (default: now), for ``latency_ms``.
            Others: as :meth:`transcribe`.
        """
        start = time.perf_counter() if started is None else started
        settings = self.component.generation
        assert settings is not None
        forced = self._check_request(language, task)
        n = len(durations_s)
        rows = next(iter(cross.values())).shape[0] if cross else 0
        if rows != n:
            raise InputError(f"transcribe_encoded: expected one duration per encoded segment ({rows}), got {n}")
        if max_new_tokens is not None and (not isinstance(max_new_tokens, int) or max_new_tokens <= 0):
            raise InputError(f"max_new_tokens must be a positive integer, got {max_new_tokens!r}")
        beams = settings.num_beams if num_beams is None else num_beams
        with self._lock:
            first = self.start_logits(cross)
        languages: list[str | None] = [None] * n
        if self.is_multilingual:
            languages = [forced] * n if forced is not None else [code for code, _ in self.pick_languages(first)]
        prompts = np.asarray([self.prompt_ids(lang, task) for lang in languages], dtype=np.int64)
        prompt_length = prompts.shape[1]
        limit = min(settings.max_new_tokens, self.whisper.max_target_positions - prompt_length)
        if max_new_tokens is not None:
            limit = min(limit, max_new_tokens)
        with self._lock:
            state: DecoderState = self.state(cross)
            recorder = _Recorder(state) if beams == 1 else None
            result = generate(recorder or state, prompts, settings, max_new_tokens=limit, num_beams=beams)
        no_speech = np.exp(log_softmax(first))[:, self.whisper.no_speech_token_id]
        if result.scores is not None:
            avg = [float(s) for s in result.scores]
        else:
            assert recorder is not None
            avg = self._avg_logprobs(recorder.steps, prompts, result.tokens, prompt_length + limit)
        latency_ms = (time.perf_counter() - start) * 1000.0
        out = []
        eos = set(settings.eos_token_ids)
        for i, row in enumerate(result.tokens):
            tokens = tuple(row[:-1]) if row and row[-1] in eos else tuple(row)
            silent = no_speech_threshold is not None and float(no_speech[i]) > no_speech_threshold
            if silent and logprob_threshold is not None and not avg[i] < logprob_threshold:
                silent = False
            out.append(
                Transcription(
                    text="" if silent else self.decode(tokens),
                    tokens=() if silent else tokens,
                    language=languages[i],
                    no_speech_prob=float(no_speech[i]),
                    avg_logprob=avg[i],
                    duration_s=float(durations_s[i]),
                    latency_ms=latency_ms,
                )
            )
        return out

    def transcribe_long(self, waveform: np.ndarray, **kwargs: Any) -> Iterator[Transcription]:
        """Transcribes audio of any length in consecutive windows of :attr:`max_duration_s` (30 s).

        Words cut by a window's edge may be lost or split; voice-activity segmentation (the
        streaming session) avoids that. Keyword arguments as :meth:`transcribe`.

        Yields:
            One :class:`Transcription` per window, ``start_s`` set to where it starts.
        """
        assert self.component.audio is not None
        rate = int(kwargs.get("sample_rate_hz") or self.sample_rate_hz)
        samples = check_waveform(waveform, self.component.audio, rate)
        window = round(self.max_duration_s * rate)
        for offset in range(0, samples.size, window):
            result = self.transcribe(samples[offset : offset + window].astype(np.float32), **kwargs)
            yield dataclasses.replace(result, start_s=offset / rate)

    def decode(self, tokens: Sequence[int]) -> str:
        """Text of generated tokens: special tokens dropped, timestamp tokens removed, stripped."""
        return _TIMESTAMP.sub("", self.tokenizer.decode(list(tokens), skip_special_tokens=True)).strip()

    def _avg_logprobs(self, steps: list[np.ndarray], prompts: np.ndarray, rows: Sequence[Sequence[int]], max_length: int) -> list[float]:
        """Mean log-probability of each row's tokens (EOS included) under the processed logits,
        as transformers' ``_retrieve_avg_logprobs`` computes it from the generate scores."""
        assert self.component.generation is not None
        processors = build_processors(self.component.generation, prompt_length=prompts.shape[1], max_length=max_length)
        width = max((len(r) for r in rows), default=0)
        sequences = np.concatenate([prompts, np.zeros((prompts.shape[0], width), np.int64)], axis=1)
        for i, row in enumerate(rows):
            sequences[i, prompts.shape[1] : prompts.shape[1] + len(row)] = row
        totals = np.zeros(len(rows), np.float64)
        for j in range(width):
            scores = steps[j]
            length = prompts.shape[1] + j
            for processor in processors:
                scores = processor(sequences[:, :length], scores)
            logprobs = log_softmax(scores)
            for i, row in enumerate(rows):
                if j < len(row):
                    totals[i] += float(logprobs[i, row[j]])
        return [float(totals[i] / max(1, len(row))) for i, row in enumerate(rows)]

