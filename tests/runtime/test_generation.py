"""Greedy and beam search in numpy, token for token against transformers' ``generate()``.

Two tiny random models (GPT-2, decoder-only; BART, encoder-decoder) are run incrementally with
their own torch cache behind a test-only :class:`DecoderState`; every row of the settings table
must give exactly the tokens ``model.generate(do_sample=False)`` gives, stop after the same number
of decoder calls, and (beam search) the same ``sequences_scores``. The models' weights are scaled
and untied so that greedy outputs vary; EOS ids are taken from a probe run so that EOS really
occurs within ``max_new_tokens``, and tests below assert that the EOS, padding, early-stopping and
processor paths were exercised.
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest

from edgemm import errors
from edgemm.runtime import generation as gen
from edgemm.runtime.pack import GenerationSettings

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
from transformers import (  # noqa: E402
    BartConfig,
    BartForConditionalGeneration,
    GenerationConfig,
    GPT2Config,
    GPT2LMHeadModel,
)
from transformers.generation import logits_process as lp  # noqa: E402
from transformers.modeling_outputs import BaseModelOutput  # noqa: E402

VOCAB = 64
GPT2_PROMPTS = np.array([[5, 9, 13, 17], [20, 3, 8, 30]], dtype=np.int64)
BART_INPUTS = np.array([[4, 5, 6, 7, 8, 9], [10, 11, 12, 13, 14, 15]], dtype=np.int64)
BART_START = 2
MAX_NEW = 12


# --- the torch side -----------------------------------------------------------------------------


class TorchDecoderState:
    """A :class:`gen.DecoderState` over a torch Hugging Face model, fed as ``generate()`` feeds it.

    Decoder-only: ``model(input_ids, past_key_values=cache)``. Encoder-decoder: the encoder runs
    once on the un-expanded batch (as in ``generate()``), and ``reorder`` selects its rows too.
    """

    def __init__(self, model: Any, encoder_input_ids: np.ndarray | None = None) -> None:
        self.model = model
        self.cache: Any = None
        self.encoder_outputs: Any = None
        self.steps = 0
        if encoder_input_ids is not None:
            with torch.no_grad():
                self.encoder_outputs = model.get_encoder()(input_ids=torch.from_numpy(encoder_input_ids))

    def step(self, input_ids: np.ndarray) -> np.ndarray:
        self.steps += 1
        ids = torch.from_numpy(input_ids)
        with torch.no_grad():
            if self.encoder_outputs is None:
                out = self.model(input_ids=ids, past_key_values=self.cache, use_cache=True, logits_to_keep=1)
            else:
                out = self.model(
                    encoder_outputs=self.encoder_outputs,
                    decoder_input_ids=ids,
                    past_key_values=self.cache,
                    use_cache=True,
                    logits_to_keep=1,
                )
        self.cache = out.past_key_values
        return out.logits[:, -1].float().numpy()

    def reorder(self, rows: np.ndarray) -> None:
        index = torch.from_numpy(np.asarray(rows, dtype=np.int64))
        if self.cache is not None:
            self.cache.reorder_cache(index)
        if self.encoder_outputs is not None:
            hidden = self.encoder_outputs.last_hidden_state.index_select(0, index)
            self.encoder_outputs = BaseModelOutput(last_hidden_state=hidden)


def _gpt2() -> Any:
    torch.manual_seed(0)
    config = GPT2Config(
        vocab_size=VOCAB, n_positions=64, n_embd=32, n_layer=2, n_head=2,
        initializer_range=0.1, tie_word_embeddings=False, bos_token_id=0, eos_token_id=0,
    )  # fmt: skip
    model = GPT2LMHeadModel(config).eval()
    model.generation_config = GenerationConfig()
    return model


def _bart() -> Any:
    torch.manual_seed(0)
    config = BartConfig(
        vocab_size=VOCAB, d_model=32, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
        decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64, max_position_embeddings=64,
        pad_token_id=1, bos_token_id=0, eos_token_id=2, decoder_start_token_id=BART_START,
        init_std=0.1, tie_word_embeddings=False,
    )  # fmt: skip
    model = BartForConditionalGeneration(config).eval()
    model.generation_config = GenerationConfig(decoder_start_token_id=BART_START)
    return model


def _hf_kwargs(settings: GenerationSettings) -> dict[str, Any]:
    """The ``generate()`` keyword arguments for ``settings``."""
    return {
        "do_sample": False,
        "max_new_tokens": settings.max_new_tokens,
        "num_beams": settings.num_beams,
        "eos_token_id": list(settings.eos_token_ids) or None,
        "pad_token_id": settings.pad_token_id,
        "bos_token_id": settings.bos_token_id,
        "decoder_start_token_id": settings.decoder_start_token_id,
        "min_new_tokens": settings.min_new_tokens or None,
        "length_penalty": settings.length_penalty,
        "early_stopping": settings.early_stopping,
        "repetition_penalty": settings.repetition_penalty,
        "no_repeat_ngram_size": settings.no_repeat_ngram_size,
        "forced_bos_token_id": settings.forced_bos_token_id,
        "forced_eos_token_id": settings.forced_eos_token_id,
        "suppress_tokens": list(settings.suppress_tokens) or None,
        "begin_suppress_tokens": list(settings.begin_suppress_tokens) or None,
    }


@dataclass(frozen=True)
class HfRun:
    sequences: np.ndarray  # [batch, prompt + generated], as generate() returns it
    scores: np.ndarray | None  # sequences_scores (beam search)
    forward_calls: int


def _hf_generate(model: Any, inputs: np.ndarray, settings: GenerationSettings) -> HfRun:
    calls: list[int] = []
    handle = model.register_forward_hook(lambda *_: calls.append(1))
    try:
        with torch.no_grad():
            out = model.generate(
                torch.from_numpy(inputs), **_hf_kwargs(settings), return_dict_in_generate=True, output_scores=True
            )
    finally:
        handle.remove()
    scores = getattr(out, "sequences_scores", None)
    return HfRun(out.sequences.numpy(), None if scores is None else scores.numpy(), len(calls))


def _hf_fill(settings: GenerationSettings) -> int:
    """The id generate() pads shorter rows with (greedy: pad or eos[0]; beam: ``pad or eos[0]``)."""
    eos, pad = settings.eos_token_ids, settings.pad_token_id
    if settings.num_beams == 1:
        return pad if pad is not None else (eos[0] if eos else -1)
    return (pad or eos[0]) if eos else -1


# --- the settings table --------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """One row of the table.

    ``settings`` are GenerationSettings fields on top of the model's defaults; ``feature`` holds
    the setting under test, which must change generate()'s output compared with ``settings``
    alone. Token ids may be names resolved from probe runs (see ``_resolve``).
    """

    id: str
    model: str
    settings: Mapping[str, Any]
    feature: Mapping[str, Any] = field(default_factory=dict)
    batch: int = 2


CASES = [
    Case("gpt2-greedy-max-length", "gpt2", {}),
    Case("gpt2-greedy-one-prompt", "gpt2", {"eos_token_ids": ("A",)}, batch=1),
    Case("gpt2-greedy-eos", "gpt2", {"eos_token_ids": ("A",)}),
    Case("gpt2-greedy-two-eos", "gpt2", {"eos_token_ids": ("A", "B")}),
    Case("gpt2-greedy-pad-id", "gpt2", {"eos_token_ids": ("A",), "pad_token_id": 63}),
    Case("gpt2-greedy-repetition-1.3", "gpt2", {"eos_token_ids": ("A",)}, {"repetition_penalty": 1.3}),
    Case("gpt2-greedy-repetition-0.5", "gpt2", {}, {"repetition_penalty": 0.5}),
    Case("gpt2-greedy-ngram-2", "gpt2", {"max_new_tokens": 30}, {"no_repeat_ngram_size": 2}),
    Case("gpt2-greedy-ngram-3", "gpt2", {"max_new_tokens": 30}, {"no_repeat_ngram_size": 3}),
    Case("gpt2-greedy-min-new-tokens", "gpt2", {"eos_token_ids": ("A", "B")}, {"min_new_tokens": 8}),
    Case("gpt2-greedy-suppress", "gpt2", {"eos_token_ids": ("A",)}, {"suppress_tokens": ("first0", "C")}),
    Case("gpt2-greedy-begin-suppress", "gpt2", {}, {"begin_suppress_tokens": ("first0", "first1")}),
    Case("gpt2-beam2", "gpt2", {"num_beams": 2, "eos_token_ids": ("A",)}),
    Case("gpt2-beam3", "gpt2", {"num_beams": 3, "eos_token_ids": ("A",)}),
    Case("gpt2-beam4-two-eos", "gpt2", {"num_beams": 4, "eos_token_ids": ("A", "B")}),
    Case("gpt2-beam3-no-eos", "gpt2", {"num_beams": 3}),
    Case("gpt2-beam3-one-prompt", "gpt2", {"num_beams": 3, "eos_token_ids": ("A", "B")}, batch=1),
    Case("gpt2-beam3-repetition-1.3", "gpt2", {"num_beams": 3}, {"repetition_penalty": 1.3}),
    Case("gpt2-beam4-ngram-2", "gpt2", {"num_beams": 4, "eos_token_ids": ("A",)}, {"no_repeat_ngram_size": 2}),
    Case("gpt2-beam3-ngram-3", "gpt2", {"num_beams": 3, "max_new_tokens": 24}, {"no_repeat_ngram_size": 3}),
    Case("gpt2-beam3-min-new-tokens", "gpt2", {"num_beams": 3, "eos_token_ids": ("A", "B")}, {"min_new_tokens": 9}),
    Case("gpt2-beam3-suppress", "gpt2", {"num_beams": 3, "eos_token_ids": ("A",)}, {"suppress_tokens": ("first0", "C")}),
    Case("gpt2-beam3-begin-suppress", "gpt2", {"num_beams": 3}, {"begin_suppress_tokens": ("first0", "first1")}),
    Case("gpt2-beam3-length-penalty-0.5", "gpt2", {"num_beams": 3, "eos_token_ids": ("A", "B")}, {"length_penalty": 0.5}),
    Case("gpt2-beam3-length-penalty-2.0", "gpt2", {"num_beams": 3, "eos_token_ids": ("A", "B")}, {"length_penalty": 2.0}),
    Case("gpt2-beam3-length-penalty-neg", "gpt2", {"num_beams": 3, "eos_token_ids": ("A", "B")}, {"length_penalty": -1.0}),
    Case("gpt2-beam3-early-false", "gpt2", {"num_beams": 3, "eos_token_ids": ("A", "B", "C")}),
    Case("gpt2-beam3-early-true", "gpt2", {"num_beams": 3, "eos_token_ids": ("A", "B", "C"), "early_stopping": True}),
    Case("gpt2-beam3-early-never", "gpt2", {"num_beams": 3, "eos_token_ids": ("A", "B", "C"), "early_stopping": "never"}),
    Case(
        "gpt2-beam2-eos-crowd-never",
        "gpt2",
        {"num_beams": 2, "eos_token_ids": ("top0", "top1", "top2", "top3"), "early_stopping": "never", "length_penalty": 2.0},
    ),
    Case(
        "gpt2-beam3-eos-crowd-never",
        "gpt2",
        {"num_beams": 3, "eos_token_ids": ("top0", "top1", "top2", "top3"), "early_stopping": "never", "length_penalty": 2.0},
    ),
    Case(
        "gpt2-beam2-eos-crowd",
        "gpt2",
        {"num_beams": 2, "eos_token_ids": ("top0", "top1", "top2"), "length_penalty": 2.0},
        batch=1,
    ),
    Case(
        "gpt2-beam4-everything",
        "gpt2",
        {"num_beams": 4, "eos_token_ids": ("A", "B"), "length_penalty": 2.0, "early_stopping": True},
        {"repetition_penalty": 1.3, "no_repeat_ngram_size": 3, "min_new_tokens": 3, "suppress_tokens": ("C",)},
    ),
    Case("bart-greedy", "bart", {}),
    Case("bart-greedy-eos", "bart", {"eos_token_ids": ("A",)}),
    Case("bart-greedy-forced-bos", "bart", {"eos_token_ids": ("A",)}, {"forced_bos_token_id": 0}),
    Case("bart-greedy-forced-eos", "bart", {"eos_token_ids": ("B",), "max_new_tokens": 7}, {"forced_eos_token_id": "B"}),
    Case(
        "bart-greedy-begin-suppress-after-forced-bos",
        "bart",
        {"forced_bos_token_id": 0},
        {"begin_suppress_tokens": ("bos_next0", "bos_next1")},
    ),
    Case("bart-greedy-two-eos", "bart", {"eos_token_ids": ("A", "B"), "pad_token_id": 1}),
    Case("bart-beam3", "bart", {"num_beams": 3, "eos_token_ids": ("A",), "pad_token_id": 1}),
    Case("bart-beam3-forced-bos", "bart", {"num_beams": 3, "eos_token_ids": ("A",)}, {"forced_bos_token_id": 0}),
    Case("bart-beam3-forced-eos", "bart", {"num_beams": 3, "eos_token_ids": ("B",), "max_new_tokens": 7}, {"forced_eos_token_id": "B"}),
    Case("bart-beam2-two-eos-length-2.0", "bart", {"num_beams": 2, "eos_token_ids": ("A", "B"), "length_penalty": 2.0}),
    Case("bart-beam4-early-false", "bart", {"num_beams": 4, "eos_token_ids": ("A",)}),
    Case("bart-beam4-early-true", "bart", {"num_beams": 4, "eos_token_ids": ("A",), "early_stopping": True}),
    Case("bart-beam4-repetition-1.3", "bart", {"num_beams": 4, "eos_token_ids": ("A",)}, {"repetition_penalty": 1.3}),
]


@dataclass(frozen=True)
class Outcome:
    case: Case
    settings: GenerationSettings
    prompt: np.ndarray
    hf: HfRun
    hf_base: HfRun | None
    ours: gen.Generation
    our_steps: int


@dataclass(frozen=True)
class Model:
    model: Any
    inputs: np.ndarray  # what generate() gets: the prompts, or the encoder input ids
    names: dict[str, int]  # token ids chosen from probe runs


def _probe(model: Any, inputs: np.ndarray, **settings: Any) -> list[list[int]]:
    if model.config.is_encoder_decoder:
        settings["decoder_start_token_id"] = BART_START
    base = GenerationSettings(eos_token_ids=(), max_new_tokens=MAX_NEW, **settings)
    run = _hf_generate(model, inputs, base)
    start = 1 if model.config.is_encoder_decoder else inputs.shape[1]
    return run.sequences[:, start:].tolist()


def _names(probe: list[list[int]]) -> dict[str, int]:
    """EOS candidates that greedy search really produces: A ends row 0 within 5 tokens, B ends row 1
    early at another point, C is a frequent token of the probe."""
    row0, row1 = probe
    a = row0[4]
    b = next(t for t in row1[1:8] if t != a and t not in row0[:5])
    counts = np.bincount(np.array(row0 + row1), minlength=VOCAB)
    counts[[a, b]] = 0
    return {"A": a, "B": b, "C": int(counts.argmax()), "first0": row0[0], "first1": row1[0]}


@pytest.fixture(scope="module")
def models() -> dict[str, Model]:
    torch.set_num_threads(1)
    gpt2, bart = _gpt2(), _bart()
    gpt2_names = _names(_probe(gpt2, GPT2_PROMPTS))
    with torch.no_grad():
        first_logits = gpt2(torch.from_numpy(GPT2_PROMPTS[:1])).logits[0, -1]
    # The likeliest first tokens: as EOS ids they crowd the top-k candidates of the first step.
    gpt2_names |= {f"top{i}": int(t) for i, t in enumerate(torch.topk(first_logits, 4).indices)}
    bart_names = _names(_probe(bart, BART_INPUTS))
    after_bos = _probe(bart, BART_INPUTS, forced_bos_token_id=0)
    bart_names |= {"bos_next0": after_bos[0][1], "bos_next1": after_bos[1][1]}
    return {"gpt2": Model(gpt2, GPT2_PROMPTS, gpt2_names), "bart": Model(bart, BART_INPUTS, bart_names)}


def _resolve(value: Any, names: Mapping[str, int]) -> Any:
    if isinstance(value, str) and value in names:
        return names[value]
    if isinstance(value, tuple):
        return tuple(_resolve(v, names) for v in value)
    return value


def _settings(which: Model, overrides: Mapping[str, Any]) -> GenerationSettings:
    values: dict[str, Any] = {"eos_token_ids": (), "max_new_tokens": MAX_NEW}
    if which.model.config.is_encoder_decoder:
        values["decoder_start_token_id"] = BART_START
    values |= {k: _resolve(v, which.names) for k, v in overrides.items()}
    return GenerationSettings(**values)


@pytest.fixture(scope="module")
def outcomes(models: dict[str, Model]) -> dict[str, Outcome]:
    results = {}
    for case in CASES:
        which = models[case.model]
        settings = _settings(which, {**case.settings, **case.feature})
        inputs = which.inputs[: case.batch]
        hf = _hf_generate(which.model, inputs, settings)
        hf_base = _hf_generate(which.model, inputs, _settings(which, case.settings)) if case.feature else None
        if which.model.config.is_encoder_decoder:
            prompt, state = gen.decoder_prompt(settings, case.batch), TorchDecoderState(which.model, inputs)
        else:
            prompt, state = inputs, TorchDecoderState(which.model)
        ours = gen.generate(state, prompt, settings)
        results[case.id] = Outcome(case, settings, prompt, hf, hf_base, ours, state.steps)
    return results


@pytest.mark.parametrize("case_id", [case.id for case in CASES])
def test_tokens_equal_hf_generate(outcomes: dict[str, Outcome], case_id: str) -> None:
    outcome = outcomes[case_id]
    sequences = outcome.hf.sequences
    prompt_length = outcome.prompt.shape[1]
    new = sequences[:, prompt_length:]
    fill = _hf_fill(outcome.settings)
    expected = [list(row) for row in new]
    ours = [list(row) + [fill] * (new.shape[1] - len(row)) for row in outcome.ours.tokens]
    assert ours == expected
    assert max(len(row) for row in outcome.ours.tokens) == new.shape[1]
    # generate() returns the prompt (or decoder start) first.
    assert np.array_equal(sequences[:, :prompt_length], outcome.prompt)
    # Same number of decoder calls: the loops stop at the same step.
    assert outcome.our_steps == outcome.hf.forward_calls
    eos = set(outcome.settings.eos_token_ids)
    assert outcome.ours.stopped_on_eos == tuple(bool(row) and row[-1] in eos for row in outcome.ours.tokens)
    if outcome.settings.num_beams > 1:
        assert outcome.ours.scores is not None
        assert outcome.hf.scores is not None
        np.testing.assert_allclose(outcome.ours.scores, outcome.hf.scores, rtol=1e-5)
    else:
        assert outcome.ours.scores is None


@pytest.mark.parametrize("case_id", [case.id for case in CASES if case.feature])
def test_feature_changes_the_output(outcomes: dict[str, Outcome], case_id: str) -> None:
    """The setting under test really acts on these models (else the equality above proves little)."""
    outcome = outcomes[case_id]
    assert outcome.hf_base is not None
    base, with_feature = outcome.hf_base.sequences, outcome.hf.sequences
    assert base.shape != with_feature.shape or not np.array_equal(base, with_feature)


def test_table_exercises_eos_padding_and_early_stops(outcomes: dict[str, Outcome]) -> None:
    def early(outcome: Outcome) -> bool:
        limit = outcome.settings.max_new_tokens
        return any(stop and len(row) < limit for stop, row in zip(outcome.ours.stopped_on_eos, outcome.ours.tokens, strict=True))

    greedy = [o for o in outcomes.values() if o.settings.num_beams == 1]
    beams = [o for o in outcomes.values() if o.settings.num_beams > 1]
    assert sum(early(o) for o in greedy) >= 5
    assert sum(early(o) for o in beams) >= 5
    # Rows of one batch ending at different lengths (so padding in HF's output is exercised).
    ragged = [o for o in outcomes.values() if len({len(row) for row in o.ours.tokens}) > 1]
    assert len([o for o in ragged if o.settings.num_beams == 1]) >= 3
    assert len([o for o in ragged if o.settings.num_beams > 1]) >= 2
    # Beam search stopped before max length (all beams done early) in some cases.
    stopped_early = [o for o in beams if o.our_steps < o.settings.max_new_tokens]
    assert len(stopped_early) >= 3
    # Forced EOS really ends on the forced token at max length.
    forced = outcomes["bart-greedy-forced-eos"]
    assert all(row[-1] == forced.settings.forced_eos_token_id for row in forced.ours.tokens)


def test_early_stopping_modes_differ(outcomes: dict[str, Outcome]) -> None:
    false, true, never = (outcomes[f"gpt2-beam3-early-{m}"] for m in ("false", "true", "never"))
    assert true.our_steps < false.our_steps <= never.our_steps
    assert false.our_steps < never.our_steps or false.ours.tokens != never.ours.tokens
    # Stopping as soon as num_beams hypotheses are done can miss a better, longer one.
    assert outcomes["bart-beam4-early-true"].ours.tokens != outcomes["bart-beam4-early-false"].ours.tokens


def test_length_penalty_changes_the_winner(outcomes: dict[str, Outcome]) -> None:
    tokens = {outcomes[f"gpt2-beam3-length-penalty-{v}"].ours.tokens for v in ("0.5", "2.0", "neg")}
    assert len(tokens) >= 2


# --- processors in isolation, against transformers' classes -------------------------------------


def _random_case(seed: int, rows: int = 4, length: int = 9, vocab: int = 12) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    # A small id range so that tokens and n-grams repeat.
    input_ids = rng.integers(0, 5, size=(rows, length)).astype(np.int64)
    input_ids[0, length // 2] = vocab + 3  # an id beyond the logits (embedding larger than lm_head)
    scores = (rng.standard_normal((rows, vocab)) * 3).astype(np.float32)
    return input_ids, scores


def _hf_apply(processor: Any, input_ids: np.ndarray, scores: np.ndarray) -> np.ndarray:
    out = processor(torch.from_numpy(input_ids), torch.from_numpy(scores.copy()))
    return out.numpy()


PROCESSOR_PAIRS = [
    ("repetition-1.3", gen.RepetitionPenalty(1.3), lambda: lp.RepetitionPenaltyLogitsProcessor(1.3)),
    ("repetition-0.7", gen.RepetitionPenalty(0.7), lambda: lp.RepetitionPenaltyLogitsProcessor(0.7)),
    ("ngram-1", gen.NoRepeatNGram(1), lambda: lp.NoRepeatNGramLogitsProcessor(1)),
    ("ngram-2", gen.NoRepeatNGram(2), lambda: lp.NoRepeatNGramLogitsProcessor(2)),
    ("ngram-3", gen.NoRepeatNGram(3), lambda: lp.NoRepeatNGramLogitsProcessor(3)),
    ("ngram-longer-than-sequence", gen.NoRepeatNGram(12), lambda: lp.NoRepeatNGramLogitsProcessor(12)),
    ("min-length-active", gen.MinLength(10, (3, 7)), lambda: lp.MinLengthLogitsProcessor(10, [3, 7])),
    ("min-length-done", gen.MinLength(9, (3, 7)), lambda: lp.MinLengthLogitsProcessor(9, [3, 7])),
    ("min-new-tokens", gen.MinLength(4 + 6, (3,)), lambda: lp.MinNewTokensLengthLogitsProcessor(4, 6, [3])),
    ("min-length-eos-outside-vocab", gen.MinLength(10, (3, 40)), lambda: lp.MinLengthLogitsProcessor(10, [3, 40])),
    ("forced-eos-active", gen.ForcedEOSToken(10, (5, 6)), lambda: lp.ForcedEOSTokenLogitsProcessor(10, [5, 6])),
    ("forced-eos-idle", gen.ForcedEOSToken(12, (5,)), lambda: lp.ForcedEOSTokenLogitsProcessor(12, 5)),
    ("suppress", gen.SuppressTokens((0, 4, 11, 50)), lambda: lp.SuppressTokensLogitsProcessor([0, 4, 11, 50])),
    ("begin-suppress-active", gen.SuppressTokensAtBegin((1, 2), 9), lambda: lp.SuppressTokensAtBeginLogitsProcessor([1, 2], 9)),
    ("begin-suppress-idle", gen.SuppressTokensAtBegin((1, 2), 8), lambda: lp.SuppressTokensAtBeginLogitsProcessor([1, 2], 8)),
]


@pytest.mark.parametrize(("name", "ours", "make_hf"), PROCESSOR_PAIRS, ids=[p[0] for p in PROCESSOR_PAIRS])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_processor_equals_transformers(name: str, ours: gen.LogitsProcessor, make_hf: Any, seed: int) -> None:
    input_ids, scores = _random_case(seed)
    before = scores.copy()
    got = ours(input_ids, scores)
    assert np.array_equal(scores, before)  # the input is not changed in place
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, _hf_apply(make_hf(), input_ids, scores))


@pytest.mark.parametrize("length", [1, 2])
def test_forced_bos_equals_transformers(length: int) -> None:
    input_ids, scores = _random_case(3, length=length)
    got = gen.ForcedBOSToken(7)(input_ids, scores)
    np.testing.assert_array_equal(got, _hf_apply(lp.ForcedBOSTokenLogitsProcessor(7), input_ids, scores))


def test_no_repeat_ngram_bans_what_it_should() -> None:
    input_ids = np.array([[1, 2, 3, 1, 2]], dtype=np.int64)
    got = gen.NoRepeatNGram(3)(input_ids, np.zeros((1, 6), np.float32))
    assert np.isneginf(got[0]).tolist() == [False, False, False, True, False, False]  # (1, 2) -> 3 seen


def test_log_softmax_matches_torch() -> None:
    logits = (np.random.default_rng(0).standard_normal((8, 1000)) * 5).astype(np.float32)
    got = gen.log_softmax(logits)
    want = torch.log_softmax(torch.from_numpy(logits), dim=-1).numpy()
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


def test_processors_are_built_in_hf_order() -> None:
    settings = GenerationSettings(
        eos_token_ids=(2,), max_new_tokens=5, repetition_penalty=1.2, no_repeat_ngram_size=2, min_new_tokens=2,
        forced_bos_token_id=0, forced_eos_token_id=2, suppress_tokens=(3,), begin_suppress_tokens=(4,),
    )  # fmt: skip
    built = gen.build_processors(settings, prompt_length=1, max_length=6)
    assert [type(p) for p in built] == [
        gen.RepetitionPenalty, gen.NoRepeatNGram, gen.MinLength, gen.ForcedBOSToken,
        gen.ForcedEOSToken, gen.SuppressTokens, gen.SuppressTokensAtBegin,
    ]  # fmt: skip
    assert built[2] == gen.MinLength(3, (2,))
    assert built[4] == gen.ForcedEOSToken(6, (2,))
    assert built[6] == gen.SuppressTokensAtBegin((4,), 2)  # after the forced BOS
    assert gen.build_processors(GenerationSettings(eos_token_ids=(), max_new_tokens=5, min_new_tokens=3), prompt_length=4, max_length=9) == ()


# --- the loop without torch: a scripted decoder, and typed errors ------------------------------


class ScriptedState:
    """Logits from a fixed table, by the last token of each row; records every call."""

    def __init__(self, table: np.ndarray) -> None:
        self.table = table.astype(np.float32)
        self.last: np.ndarray | None = None
        self.calls: list[tuple[str, list[int]]] = []

    def step(self, input_ids: np.ndarray) -> np.ndarray:
        self.calls.append(("step", input_ids[:, -1].tolist()))
        self.last = input_ids[:, -1]
        return self.table[self.last]

    def reorder(self, rows: np.ndarray) -> None:
        self.calls.append(("reorder", rows.tolist()))


def _chain_table(vocab: int = 6) -> np.ndarray:
    """Token t is followed by t + 1; after 4 comes EOS (5), after 5 comes 0."""
    table = np.full((vocab, vocab), -5.0)
    for t in range(vocab):
        table[t, (t + 1) % vocab] = 5.0
    return table


def test_greedy_stops_on_eos_and_returns_it() -> None:
    state = ScriptedState(_chain_table())
    settings = GenerationSettings(eos_token_ids=(5,), max_new_tokens=10)
    result = gen.generate(state, np.array([[1], [3]]), settings)
    assert result.tokens == ((2, 3, 4, 5), (4, 5))
    assert result.stopped_on_eos == (True, True)
    # The finished second row is fed the pad (= eos) token until the first row ends.
    assert [c for c in state.calls if c[0] == "step"][-1] == ("step", [4, 5])


def test_beam_search_expands_the_batch_then_follows_the_beams() -> None:
    state = ScriptedState(_chain_table())
    settings = GenerationSettings(eos_token_ids=(5,), max_new_tokens=10, num_beams=2)
    result = gen.generate(state, np.array([[2], [3]]), settings)
    assert state.calls[0] == ("reorder", [0, 0, 1, 1])
    assert state.calls[1] == ("step", [2, 2, 3, 3])
    assert result.tokens == ((3, 4, 5), (4, 5))
    assert result.scores is not None
    assert all(s < 0 for s in result.scores)


def test_decoder_prompt() -> None:
    settings = GenerationSettings(eos_token_ids=(2,), max_new_tokens=4, decoder_start_token_id=7, bos_token_id=0)
    assert gen.decoder_prompt(settings, 3).tolist() == [[7], [7], [7]]
    fallback = dataclasses.replace(settings, decoder_start_token_id=None)
    assert gen.decoder_prompt(fallback, 1).tolist() == [[0]]
    with pytest.raises(errors.InputError, match="decoder_start_token_id"):
        gen.decoder_prompt(dataclasses.replace(fallback, bos_token_id=None), 1)


SETTINGS = GenerationSettings(eos_token_ids=(5,), max_new_tokens=4)

BAD_CALLS = [
    ("num-beams-0", np.array([[1]]), SETTINGS, {"num_beams": 0}, errors.InputError, "num_beams must be an integer >= 1, got 0"),
    ("max-new-tokens-0", np.array([[1]]), SETTINGS, {"max_new_tokens": 0}, errors.InputError, "max_new_tokens must be a positive integer, got 0"),
    ("max-new-tokens-float", np.array([[1]]), SETTINGS, {"max_new_tokens": 2.5}, errors.InputError, "max_new_tokens"),
    ("prompt-1d", np.array([1, 2]), SETTINGS, {}, errors.InputError, r"shape \(batch >= 1, length >= 1\), got shape \(2,\)"),
    ("prompt-empty", np.zeros((1, 0), np.int64), SETTINGS, {}, errors.InputError, "got shape"),
    ("prompt-float", np.array([[1.0]]), SETTINGS, {}, errors.InputError, "integer token ids, got dtype float64"),
    ("prompt-negative", np.array([[-1]]), SETTINGS, {}, errors.InputError, "non-negative"),
    ("ngram-negative", np.array([[1]]), dataclasses.replace(SETTINGS, no_repeat_ngram_size=-1), {}, errors.InputError, "no_repeat_ngram_size"),
    ("min-new-negative", np.array([[1]]), dataclasses.replace(SETTINGS, min_new_tokens=-2), {}, errors.InputError, "min_new_tokens"),
    ("early-stopping-str", np.array([[1]]), dataclasses.replace(SETTINGS, early_stopping="soon"), {}, errors.InputError, "early_stopping"),
    ("eos-negative", np.array([[1]]), dataclasses.replace(SETTINGS, eos_token_ids=(-1,)), {}, errors.InputError, "eos_token_ids"),
    ("forced-bos-outside-vocab", np.array([[1]]), dataclasses.replace(SETTINGS, forced_bos_token_id=99), {}, errors.InputError, r"vocabulary \[0, 6\), got \[99\]"),
]


@pytest.mark.parametrize(("prompt", "settings", "overrides", "error", "match"), [c[1:] for c in BAD_CALLS], ids=[c[0] for c in BAD_CALLS])
def test_bad_settings_raise_typed_errors(
    prompt: np.ndarray, settings: GenerationSettings, overrides: dict[str, Any], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match) as info:
        gen.generate(ScriptedState(_chain_table()), prompt, settings, **overrides)
    assert isinstance(info.value, errors.EdgemmError)
    assert isinstance(info.value, ValueError)


def test_wrong_logits_shape_is_a_backend_error() -> None:
    class Broken(ScriptedState):
        def step(self, input_ids: np.ndarray) -> np.ndarray:
            return np.zeros((input_ids.shape[0] + 1, 6), np.float32)

    with pytest.raises(errors.BackendError, match=r"shape \(2, vocab\), got shape \(3, 6\)"):
        gen.generate(Broken(_chain_table()), np.array([[1], [2]]), SETTINGS)


def test_generation_module_does_not_import_torch() -> None:
    code = "import sys, edgemm.runtime.generation; sys.exit(bool({'torch', 'transformers'} & set(sys.modules)))"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
