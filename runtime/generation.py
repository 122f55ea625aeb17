"""Token generation in numpy: greedy search and beam search, as Hugging Face ``generate`` does them.

The decode loop is written against :class:`DecoderState`, a two-method view of a decoder that
keeps its own key/value cache (an ONNX decoder-step graph with the ``edgemm-kv-1`` cache, or a
test double), so the same loop serves every family and is testable without ONNX::

    state = captioner.decoder_state(pixel_values)            # any DecoderState
    prompt = decoder_prompt(settings, batch_size=1)          # [[decoder_start_token_id]]
    result = generate(state, prompt, settings)
    text = tokenizer.decode(result.tokens[0], skip_special_tokens=True)

Equality with transformers 5.23 ``model.generate(..., do_sample=False)`` given the same logits:

- The logits processors, their order and their arithmetic follow ``_get_logits_processor``;
  greedy search follows ``_sample`` and beam search follows the vectorized ``_beam_search``
  (top ``max(2, 1 + n_eos) * num_beams`` candidates per input, the same ``-1e9`` masking, the
  same length penalty and early-stopping heuristic), all in float32 as there.
- What comes back is the new tokens only, each sequence cut after the EOS that ended it (the EOS
  is included). Hugging Face returns ``sequences[i] = prompt[i] + tokens[i] + fill...``: the
  prompt (for encoder-decoders, the decoder start token) first, then the rows shorter than the
  longest padded with ``pad_token_id`` (greedy; ``eos_token_ids[0]`` when no pad id is set) or,
  in beam search, with ``pad_token_id or eos_token_ids[0]`` (a pad id of 0 counts as unset there).
- Where equality can only be approximate: beam search ranks sums of ``log_softmax`` values;
  numpy's float32 ``exp``/``log``/summation order can differ from torch's vectorized kernel in
  the last bit, so two candidates closer than about 1e-7 relative may rank differently.
  ``torch.topk`` orders exactly equal scores in an unspecified way; here the lower index wins.
  Exact ties occur in practice only between ``-1e9``-masked placeholders and ``-inf`` (dead)
  candidates, which never reach the output. Greedy search uses ``argmax`` on the processed
  logits, first index on ties, as torch does, so it is exact for equal logits.
- Prompts are unpadded and of equal length (no attention mask): a left-padded batch would need
  the mask, and Hugging Face's repetition penalty would then ignore the padding.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

import numpy as np

from .errors import BackendError, InputError
from .pack import GenerationSettings

__all__ = [
    "DecoderState",
    "ForcedBOSToken",
    "ForcedEOSToken",
    "Generation",
    "LogitsProcessor",
    "MinLength",
    "NoRepeatNGram",
    "RepetitionPenalty",
    "SuppressTokens",
    "SuppressTokensAtBegin",
    "build_processors",
    "decoder_prompt",
    "generate",
    "log_softmax",
]

EarlyStopping = bool | Literal["never"]

_MASKED = np.float32(-1.0e9)
"""The score Hugging Face's beam search adds to rule a candidate out (kept finite on purpose)."""


class DecoderState(Protocol):
    """A decoder with its own key/value cache, fed a few tokens at a time.

    One state serves one ``generate`` call: it holds the cache (and, for encoder-decoders, the
    encoder output or cross-attention keys/values) for each row of the batch.
    """

    def step(self, input_ids: np.ndarray) -> np.ndarray:
        """Appends tokens to every row and returns the next-token logits.

        Args:
            input_ids: np.ndarray, shape (rows, new_tokens), int64. The first call gets the whole
                prompt (prefill), later calls one token per row.

        Returns:
            np.ndarray, shape (rows, vocab), the logits of the last position (float32, or a
            dtype that converts to it exactly, such as float16).
        """

    def reorder(self, rows: np.ndarray) -> None:
        """Rebuilds the batch from the given rows: row ``i`` becomes old row ``rows[i]``.

        Used by beam search to follow the surviving beams, and before the first ``step`` to
        expand a batch of inputs to ``batch * num_beams`` rows (``[0, 0, 1, 1]`` for two beams);
        a state that holds per-row data before the first step (encoder output) selects it too.

        Args:
            rows: np.ndarray, shape (new_rows,), int64, indices into the current rows; repeats
                allowed.
        """


class LogitsProcessor(Protocol):
    """Changes next-token scores given the sequences so far (one Hugging Face logits processor)."""

    def __call__(self, input_ids: np.ndarray, scores: np.ndarray) -> np.ndarray:
        """Returns processed scores; never changes its arguments.

        Args:
            input_ids: np.ndarray, shape (rows, length), int64, every token so far (prompt or
                decoder start included).
            scores: np.ndarray, shape (rows, vocab), float32: logits in greedy search,
                log-probabilities in beam search.

        Returns:
            np.ndarray, shape (rows, vocab), float32.
        """


@dataclass(frozen=True)
class Generation:
    """What :func:`generate` produced for each input.

    Attributes:
        tokens: per input, the new token ids, ending with the EOS that stopped it, if one did.
        stopped_on_eos: per input, whether ``tokens`` ends with one of the EOS ids (False: the
            sequence ran to ``max_new_tokens``).
        scores: beam search only: per input, the score of the returned beam, the sum of its
            processed log-probabilities divided by ``len(tokens) ** length_penalty``
            (Hugging Face's ``sequences_scores``); None for greedy search.
    """

    tokens: tuple[tuple[int, ...], ...]
    stopped_on_eos: tuple[bool, ...]
    scores: tuple[float, ...] | None = None


# --- logits processors (transformers.generation.logits_process) -------------------------------


@dataclass(frozen=True)
class RepetitionPenalty:
    """``RepetitionPenaltyLogitsProcessor``: scores of tokens already in the sequence are divided
    by ``penalty`` where positive and multiplied by it where negative."""

    penalty: float

    def __call__(self, input_ids: np.ndarray, scores: np.ndarray) -> np.ndarray:
        vocab = scores.shape[-1]
        # Ids beyond the logits (a larger embedding than lm_head) land in a spare column.
        ids = np.minimum(input_ids, vocab)
        padded = np.concatenate([scores, np.zeros((scores.shape[0], 1), scores.dtype)], axis=1)
        rows = np.arange(scores.shape[0])[:, None]
        picked = padded[rows, ids]
        penalty = scores.dtype.type(self.penalty)
        padded[rows, ids] = np.where(picked < 0, picked * penalty, picked / penalty)
        return padded[:, :vocab]


@dataclass(frozen=True)
class NoRepeatNGram:
    """``NoRepeatNGramLogitsProcessor``: bans every token that would repeat an n-gram of the
    sequence (prompt included)."""

    ngram_size: int

    def __call__(self, input_ids: np.ndarray, scores: np.ndarray) -> np.ndarray:
        length = input_ids.shape[-1]
        if length < self.ngram_size:
            return scores
        vocab = scores.shape[-1]
        prefix = input_ids[:, length + 1 - self.ngram_size :]
        windows = np.lib.stride_tricks.sliding_window_view(input_ids, self.ngram_size, axis=1)
        matches = (windows[..., :-1] == prefix[:, None, :]).all(axis=-1)
        banned = np.zeros((scores.shape[0], vocab + 1), dtype=bool)
        rows = np.arange(scores.shape[0])[:, None]
        banned[rows, np.where(matches, np.minimum(windows[..., -1], vocab), vocab)] = True
        return np.where(banned[:, :vocab], scores.dtype.type(-np.inf), scores)


@dataclass(frozen=True)
class MinLength:
    """``MinLengthLogitsProcessor`` / ``MinNewTokensLengthLogitsProcessor``: EOS is banned while
    the sequence (prompt included) is shorter than ``min_length``."""

    min_length: int
    eos_token_ids: tuple[int, ...]

    def __call__(self, input_ids: np.ndarray, scores: np.ndarray) -> np.ndarray:
        if input_ids.shape[-1] >= self.min_length:
            return scores
        return _ban(scores, self.eos_token_ids)


@dataclass(frozen=True)
class ForcedBOSToken:
    """``ForcedBOSTokenLogitsProcessor``: the token after a one-token sequence is ``token_id``."""

    token_id: int

    def __call__(self, input_ids: np.ndarray, scores: np.ndarray) -> np.ndarray:
        if input_ids.shape[-1] != 1:
            return scores
        return _force(scores, (self.token_id,))


@dataclass(frozen=True)
class ForcedEOSToken:
    """``ForcedEOSTokenLogitsProcessor``: the last token before ``max_length`` is an EOS."""

    max_length: int
    eos_token_ids: tuple[int, ...]

    def __call__(self, input_ids: np.ndarray, scores: np.ndarray) -> np.ndarray:
        if input_ids.shape[-1] != self.max_length - 1:
            return scores
        return _force(scores, self.eos_token_ids)


@dataclass(frozen=True)
class SuppressTokens:
    """``SuppressTokensLogitsProcessor``: ``token_ids`` are never generated."""

    token_ids: tuple[int, ...]

    def __call__(self, input_ids: np.ndarray, scores: np.ndarray) -> np.ndarray:
        return _ban(scores, self.token_ids)


@dataclass(frozen=True)
class SuppressTokensAtBegin:
    """``SuppressTokensAtBeginLogitsProcessor``: ``token_ids`` are banned at length ``begin_index``."""

    token_ids: tuple[int, ...]
    begin_index: int

    def __call__(self, input_ids: np.ndarray, scores: np.ndarray) -> np.ndarray:
        if input_ids.shape[-1] != self.begin_index:
            return scores
        return _ban(scores, self.token_ids)


def _ban(scores: np.ndarray, token_ids: Sequence[int]) -> np.ndarray:
    # Ids outside the vocabulary are ignored, as torch.isin over the vocabulary does. Indexing the
    # few banned ids (Whisper bans ~90 of 51865 every step) instead of np.isin over the whole
    # vocabulary, which sorts it: ~3 ms a token less.
    ids = np.asarray(token_ids, dtype=np.int64)
    ids = ids[(ids >= 0) & (ids < scores.shape[-1])]
    banned = scores.copy()
    banned[..., ids] = -np.inf
    return banned


def _force(scores: np.ndarray, token_ids: Sequence[int]) -> np.ndarray:
    vocab = scores.shape[-1]
    outside = [t for t in token_ids if not 0 <= t < vocab]
    if outside:
        raise InputError(f"forced token ids must be in the vocabulary [0, {vocab}), got {outside}")
    forced = np.full_like(scores, -np.inf)
    forced[:, list(token_ids)] = 0
    return forced


def build_processors(
    settings: GenerationSettings, *, prompt_length: int, max_length: int
) -> tuple[LogitsProcessor, ...]:
    """The logits processors ``settings`` ask for, in the order Hugging Face applies them.

    Args:
        settings: the component's generation settings.
        prompt_length: tokens per row before generation (for encoder-decoders, the decoder
            prompt, usually just the decoder start token).
        max_length: ``prompt_length + max_new_tokens``.
    """
    eos = tuple(settings.eos_token_ids)
    processors: list[LogitsProcessor] = []
    if settings.repetition_penalty != 1.0:
        processors.append(RepetitionPenalty(settings.repetition_penalty))
    if settings.no_repeat_ngram_size > 0:
        processors.append(NoRepeatNGram(settings.no_repeat_ngram_size))
    if eos and settings.min_new_tokens > 0:
        processors.append(MinLength(prompt_length + settings.min_new_tokens, eos))
    if settings.forced_bos_token_id is not None:
        processors.append(ForcedBOSToken(settings.forced_bos_token_id))
    if settings.forced_eos_token_id is not None:
        processors.append(ForcedEOSToken(max_length, (settings.forced_eos_token_id,)))
    if settings.suppress_tokens:
        processors.append(SuppressTokens(tuple(settings.suppress_tokens)))
    if settings.begin_suppress_tokens:
        # A forced BOS after a one-token prompt moves the "beginning" one token later.
        begin = (
            prompt_length if prompt_length > 1 or settings.forced_bos_token_id is None else prompt_length + 1
        )
        processors.append(SuppressTokensAtBegin(tuple(settings.begin_suppress_tokens), begin))
    return tuple(processors)


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """Log-probabilities over the last axis, in float32.

    Args:
        logits: np.ndarray, shape (..., vocab).

    Returns:
        np.ndarray, same shape, float32.
    """
    logits = np.asarray(logits, dtype=np.float32)
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def decoder_prompt(settings: GenerationSettings, batch_size: int) -> np.ndarray:
    """The decoder prompt of an encoder-decoder: one decoder start token per input.

    Falls back to ``bos_token_id`` when the settings have no decoder start token, as Hugging Face
    does.

    Returns:
        np.ndarray, shape (batch_size, 1), int64.

    Raises:
        InputError: when neither id is set or ``batch_size < 1``.
    """
    start = (
        settings.decoder_start_token_id
        if settings.decoder_start_token_id is not None
        else settings.bos_token_id
    )
    if start is None:
        raise InputError(
            "an encoder-decoder needs decoder_start_token_id or bos_token_id in its settings; both are unset"
        )
    if batch_size < 1:
        raise InputError(f"batch_size must be >= 1, got {batch_size}")
    return np.full((batch_size, 1), start, dtype=np.int64)


def generate(
    state: DecoderState,
    prompt_ids: np.ndarray,
    settings: GenerationSettings,
    *,
    max_new_tokens: int | None = None,
    num_beams: int | None = None,
) -> Generation:
    """Generates tokens greedily (``num_beams == 1``) or by beam search, as Hugging Face does.

    Args:
        state: the decoder, with an empty self-attention cache.
        prompt_ids: np.ndarray, shape (batch, prompt_length), integer: the prompt of each input,
            unpadded; for an encoder-decoder the decoder prompt (see :func:`decoder_prompt`).
        settings: the component's generation settings.
        max_new_tokens: overrides ``settings.max_new_tokens``.
        num_beams: overrides ``settings.num_beams``.

    Returns:
        The new tokens per input (EOS included where one ended it); see :class:`Generation`.

    Raises:
        InputError: on a malformed prompt or settings that cannot be used (the message says
            which value and why).
        BackendError: when ``state.step`` returns logits of the wrong shape.
    """
    prompt = _check_prompt(prompt_ids)
    max_new = settings.max_new_tokens if max_new_tokens is None else max_new_tokens
    beams = settings.num_beams if num_beams is None else num_beams
    early_stopping: EarlyStopping = settings.early_stopping
    _check_settings(settings, max_new, beams, early_stopping)
    eos = np.asarray(settings.eos_token_ids, dtype=np.int64)
    max_length = prompt.shape[1] + max_new
    processors = build_processors(settings, prompt_length=prompt.shape[1], max_length=max_length)
    if beams == 1:
        pad = (
            settings.pad_token_id
            if settings.pad_token_id is not None
            else (int(eos[0]) if eos.size else None)
        )
        return _greedy(state, prompt, processors, eos, pad, max_length)
    return _beam_search(
        state, prompt, processors, eos, beams, max_length, float(settings.length_penalty), early_stopping
    )


# --- checks ------------------------------------------------------------------------------------


def _is_int(value: object) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _check_prompt(prompt_ids: np.ndarray) -> np.ndarray:
    prompt = np.asarray(prompt_ids)
    if prompt.ndim != 2 or prompt.shape[0] < 1 or prompt.shape[1] < 1:
        raise InputError(f"prompt_ids must have shape (batch >= 1, length >= 1), got shape {prompt.shape}")
    if not np.issubdtype(prompt.dtype, np.integer):
        raise InputError(f"prompt_ids must be integer token ids, got dtype {prompt.dtype}")
    if (prompt < 0).any():
        raise InputError(f"prompt_ids must be non-negative token ids, got {int(prompt.min())}")
    return prompt.astype(np.int64)


def _check_settings(
    settings: GenerationSettings, max_new: int, beams: int, early_stopping: EarlyStopping
) -> None:
    if not _is_int(max_new) or max_new <= 0:
        raise InputError(f"max_new_tokens must be a positive integer, got {max_new!r}")
    if not _is_int(beams) or beams < 1:
        raise InputError(f"num_beams must be an integer >= 1, got {beams!r}")
    if not _is_int(settings.min_new_tokens) or settings.min_new_tokens < 0:
        raise InputError(f"min_new_tokens must be an integer >= 0, got {settings.min_new_tokens!r}")
    if not _is_int(settings.no_repeat_ngram_size) or settings.no_repeat_ngram_size < 0:
        raise InputError(
            f"no_repeat_ngram_size must be an integer >= 0 (0: off), got {settings.no_repeat_ngram_size!r}"
        )
    if not (settings.repetition_penalty > 0 and math.isfinite(settings.repetition_penalty)):
        raise InputError(
            f"repetition_penalty must be a positive number (1.0: off), got {settings.repetition_penalty!r}"
        )
    if not math.isfinite(settings.length_penalty):
        raise InputError(f"length_penalty must be a finite number, got {settings.length_penalty!r}")
    if not (isinstance(early_stopping, bool) or early_stopping == "never"):
        raise InputError(f"early_stopping must be True, False or 'never', got {early_stopping!r}")
    ids = {
        "eos_token_ids": settings.eos_token_ids,
        "suppress_tokens": settings.suppress_tokens,
        "begin_suppress_tokens": settings.begin_suppress_tokens,
        "pad_token_id": () if settings.pad_token_id is None else (settings.pad_token_id,),
        "forced_bos_token_id": ()
        if settings.forced_bos_token_id is None
        else (settings.forced_bos_token_id,),
        "forced_eos_token_id": ()
        if settings.forced_eos_token_id is None
        else (settings.forced_eos_token_id,),
    }
    for name, values in ids.items():
        bad = [v for v in values if not _is_int(v) or v < 0]
        if bad:
            raise InputError(f"{name} must be non-negative token ids, got {list(values)}")


def _step(state: DecoderState, input_ids: np.ndarray, vocab: int | None) -> np.ndarray:
    logits = np.asarray(state.step(np.ascontiguousarray(input_ids, dtype=np.int64)))
    rows = input_ids.shape[0]
    if logits.ndim != 2 or logits.shape[0] != rows or (vocab is not None and logits.shape[1] != vocab):
        expected = f"({rows}, {vocab if vocab is not None else 'vocab'})"
        raise BackendError(
            f"the decoder step must return last-position logits of shape {expected}, got shape {logits.shape}"
        )
    if not np.issubdtype(logits.dtype, np.floating):
        raise BackendError(f"the decoder step must return floating-point logits, got dtype {logits.dtype}")
    return logits.astype(np.float32)


def _apply(processors: Sequence[LogitsProcessor], input_ids: np.ndarray, scores: np.ndarray) -> np.ndarray:
    for processor in processors:
        scores = processor(input_ids, scores)
    return scores


def _topk(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` largest scores per row, best first; the lower index wins a tie.

    Args:
        scores: np.ndarray, shape (rows, n), float32.

    Returns:
        np.ndarray, shape (rows, k), int64.
    """
    n = scores.shape[-1]
    if k < n:
        candidates = np.argpartition(-scores, k - 1, axis=-1)[:, :k]
        # argpartition leaves ties at the cut arbitrary; re-rank with every score equal to the
        # k-th best so that the lower index wins, as in a stable sort.
        kth = np.take_along_axis(scores, candidates, axis=-1).min(axis=-1, keepdims=True)
        if (np.sum(scores >= kth, axis=-1) > k).any():
            candidates = np.argsort(-scores, axis=-1, kind="stable")[:, :k]
    else:
        candidates = np.broadcast_to(np.arange(n), scores.shape)
    values = np.take_along_axis(scores, candidates, axis=-1)
    order = np.lexsort((candidates, -values), axis=-1)
    return np.take_along_axis(candidates, order, axis=-1).astype(np.int64)


def _gather(values: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """``values[b, indices[b, j], ...]`` for arrays shaped (batch, beams, ...)."""
    expanded = indices.reshape(indices.shape + (1,) * (values.ndim - 2))
    return np.take_along_axis(values, expanded, axis=1)


# --- greedy search (GenerationMixin._sample with do_sample=False) -----------------------------


def _greedy(
    state: DecoderState,
    prompt: np.ndarray,
    processors: Sequence[LogitsProcessor],
    eos: np.ndarray,
    pad: int | None,
    max_length: int,
) -> Generation:
    batch, prompt_length = prompt.shape
    has_eos = eos.size > 0
    sequences = np.full((batch, max_length), -1, dtype=np.int64)
    sequences[:, :prompt_length] = prompt
    lengths = np.full(batch, max_length, dtype=np.int64)
    unfinished = np.ones(batch, dtype=bool)
    logits = _step(state, prompt, None)
    vocab = logits.shape[1]
    for length in range(prompt_length, max_length):
        scores = _apply(processors, sequences[:, :length], logits)
        tokens = np.argmax(scores, axis=-1).astype(np.int64)
        if has_eos:
            # Finished rows keep running in the batch and are fed the pad token, as in HF.
            tokens = np.where(unfinished, tokens, np.int64(pad if pad is not None else 0))
        sequences[:, length] = tokens
        done = np.isin(tokens, eos) | (length + 1 >= max_length)
        lengths[unfinished & done] = length + 1
        unfinished &= ~done
        if not unfinished.any():
            break
        logits = _step(state, tokens[:, None], vocab)
    rows = tuple(tuple(int(t) for t in sequences[i, prompt_length : lengths[i]]) for i in range(batch))
    return Generation(tokens=rows, stopped_on_eos=_stopped_on_eos(rows, eos))


def _stopped_on_eos(rows: Sequence[Sequence[int]], eos: np.ndarray) -> tuple[bool, ...]:
    eos_set = {int(e) for e in eos}
    return tuple(bool(row) and row[-1] in eos_set for row in rows)


# --- beam search (GenerationMixin._beam_search with do_sample=False) --------------------------


def _beam_search(
    state: DecoderState,
    prompt: np.ndarray,
    processors: Sequence[LogitsProcessor],
    eos: np.ndarray,
    num_beams: int,
    max_length: int,
    length_penalty: float,
    early_stopping: EarlyStopping,
) -> Generation:
    """Hugging Face's vectorized beam search, step for step.

    Per input it keeps ``num_beams`` running beams (``running_*``) and the ``num_beams`` best
    finished hypotheses (``finished_*``, initially placeholders scored ``-1e9``). Each step takes
    the top ``k = max(2, 1 + n_eos) * num_beams`` continuations, so that ``num_beams`` of them are
    still running even if the best ones all end; continuations that hit EOS or ``max_length``
    compete, length-penalized, for the finished slots (only those ranked in the first
    ``num_beams``), the rest continue.
    """
    batch, prompt_length = prompt.shape
    k = max(2, 1 + eos.size) * num_beams
    in_top_beams = np.arange(k) < num_beams
    stop_when_full = early_stopping is True

    running_sequences = np.zeros((batch, num_beams, max_length), dtype=np.int64)
    running_sequences[:, :, :prompt_length] = prompt[:, None, :]
    # Only beam 0 is live at first, so the first step does not pick one token num_beams times.
    running_scores = np.zeros((batch, num_beams), dtype=np.float32)
    running_scores[:, 1:] = _MASKED
    running_lengths = np.zeros((batch, num_beams), dtype=np.int64)
    finished_sequences = running_sequences.copy()
    finished_scores = np.full((batch, num_beams), _MASKED, dtype=np.float32)
    finished_lengths = np.zeros((batch, num_beams), dtype=np.int64)
    is_finished = np.zeros((batch, num_beams), dtype=bool)
    may_improve = np.ones((batch, 1), dtype=bool)
    batch_offset = (np.arange(batch) * num_beams)[:, None]

    state.reorder(np.repeat(np.arange(batch, dtype=np.int64), num_beams))
    logits = _step(state, np.repeat(prompt, num_beams, axis=0), None)
    vocab = logits.shape[1]
    if k > num_beams * vocab:
        raise InputError(
            f"beam search keeps {k} candidates per input but the vocabulary has only {vocab} tokens"
        )

    for length in range(prompt_length, max_length):
        flat_sequences = running_sequences[:, :, :length].reshape(batch * num_beams, length)
        log_probs = _apply(processors, flat_sequences, log_softmax(logits))
        totals = (log_probs.reshape(batch, num_beams, vocab) + running_scores[:, :, None]).reshape(batch, -1)

        # Top-k continuations over all beams of an input.
        top = _topk(totals, k)
        top_scores = np.take_along_axis(totals, top, axis=1)
        parents = top // vocab
        top_tokens = top % vocab
        top_sequences = _gather(running_sequences, parents)
        top_sequences[:, :, length] = top_tokens
        top_lengths = _gather(running_lengths, parents) + 1
        hits_stop = np.isin(top_tokens, eos) | (length + 1 >= max_length)

        # The best num_beams continuations that did not stop keep running.
        continuing_scores = top_scores + hits_stop.astype(np.float32) * _MASKED
        keep = _topk(continuing_scores, num_beams)
        running_sequences = _gather(top_sequences, keep)
        running_scores = np.take_along_axis(continuing_scores, keep, axis=1)
        running_lengths = _gather(top_lengths, keep)
        running_rows = np.take_along_axis(parents, keep, axis=1) + batch_offset

        # Stopped continuations among the first num_beams compete for the finished slots.
        just_finished = hits_stop & in_top_beams[None, :]
        candidate_scores = top_scores / np.float32(float(length + 1 - prompt_length) ** length_penalty)
        full = is_finished.all(axis=-1, keepdims=True) & stop_when_full
        candidate_scores = candidate_scores + full.astype(np.float32) * _MASKED
        candidate_scores = candidate_scores + (~may_improve).astype(np.float32) * _MASKED
        candidate_scores = candidate_scores + (~just_finished).astype(np.float32) * _MASKED
        merged_scores = np.concatenate([finished_scores, candidate_scores], axis=1)
        best = _topk(merged_scores, num_beams)
        finished_sequences = _gather(np.concatenate([finished_sequences, top_sequences], axis=1), best)
        finished_scores = np.take_along_axis(merged_scores, best, axis=1)
        finished_lengths = _gather(np.concatenate([finished_lengths, top_lengths], axis=1), best)
        is_finished = _gather(np.concatenate([is_finished, just_finished], axis=1), best)

        # Can a running beam still beat the worst finished hypothesis? (HF's heuristic.)
        new_length = length + 1
        if early_stopping == "never" and length_penalty > 0.0:
            hypothetical_length = max_length - prompt_length
        else:
            hypothetical_length = new_length - prompt_length
        best_running = running_scores[:, :1] / np.float32(float(hypothetical_length) ** length_penalty)
        worst_finished = np.where(is_finished, finished_scores.min(axis=1, keepdims=True), _MASKED)
        may_improve = may_improve & (best_running > worst_finished).any(axis=-1, keepdims=True)

        all_full = bool(is_finished.all()) and stop_when_full
        if not may_improve.any() or all_full or hits_stop.all():
            break
        state.reorder(running_rows.reshape(-1))
        logits = _step(state, running_sequences[:, :, length].reshape(-1, 1), vocab)

    rows = tuple(
        tuple(
            int(t) for t in finished_sequences[i, 0, prompt_length : prompt_length + finished_lengths[i, 0]]
        )
        for i in range(batch)
    )
    scores = tuple(float(s) for s in finished_scores[:, 0])
    return Generation(tokens=rows, stopped_on_eos=_stopped_on_eos(rows, eos), scores=scores)
