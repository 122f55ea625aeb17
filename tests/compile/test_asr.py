"""Whisper compile and transcription, on tiny random checkpoints laid out as the released ones.

Two layouts: English-only (``.en``: prompt <|startoftranscript|> <|notimestamps|>) and multilingual
(language detected or given, transcribe/translate). Every check compares the pack (ONNX Runtime,
numpy features and decoding) with the source torch model on real speech (LibriVox): encoder states,
cross-attention keys/values, teacher-forced logits (random tiny decoders repeat one token, so greedy
tokens alone would test little), greedy and beam tokens against ``generate()``, detected languages,
no-speech probabilities and the silence decision, average log-probabilities.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from edgemm import errors  # noqa: E402
from edgemm.compile import testing as models  # noqa: E402
from edgemm.compile.asr import compile_asr, load_whisper, teacher_forced_logits  # noqa: E402
from edgemm.compile.config import CompileConfig, ExportConfig, LoadConfig, ValidateConfig, VariantConfig  # noqa: E402
from edgemm.compile.dispatch import compile_model, component_name, model_task  # noqa: E402
from edgemm.runtime.audio_features import read_wav  # noqa: E402
from edgemm.runtime.onnx_graph import describe_onnx  # noqa: E402
from edgemm.runtime.pack import load  # noqa: E402
from edgemm.runtime.transcriber import Transcriber  # noqa: E402
from tests.media import media  # noqa: E402

LIBRIVOX = "pocketsphinx-testdata/usr/share/pocketsphinx/test/data/librivox"
CLIPS = ["sense_and_sensibility_01_austen_64kb-0870.wav", "sense_and_sensibility_01_austen_64kb-0880.wav", "sense_and_sensibility_01_austen_64kb-0930.wav"]
RATE = 16_000
NEW_TOKENS = 12

MIN_AGREEMENT = 0.75
"""Teacher-forced top-1 agreement floor for the tiny packs' int8 variants: a 32-wide random decoder's
top logits are near-ties (gaps of a few hundredths against int8 errors of tenths), so the default 0.9
would test the seed; fp16 agrees fully (asserted below)."""

# layout -> (multilingual, variants besides fp32)
LAYOUTS: dict[str, tuple[bool, tuple[VariantConfig, ...]]] = {
    "en": (False, (VariantConfig("int8", "cpu"), VariantConfig("fp16", "tensorrt"))),
    "multilingual": (True, (VariantConfig("int8", "tensorrt"),)),
}


@dataclasses.dataclass
class Compiled:
    name: str
    model_dir: Path
    pack_dir: Path
    family: Any

    @property
    def multilingual(self) -> bool:
        return LAYOUTS[self.name][0]

    def transcriber(self, **kwargs: Any) -> Transcriber:
        return Transcriber(load(self.pack_dir), precision=kwargs.pop("precision", "fp32"), **kwargs)


@pytest.fixture(scope="module", params=list(LAYOUTS))
def compiled(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Compiled:
    multilingual, variants = LAYOUTS[request.param]
    root = tmp_path_factory.mktemp(f"whisper-{request.param}")
    model_dir = models.tiny_whisper(root / "model", multilingual=multilingual)
    config = CompileConfig(
        load=LoadConfig(str(model_dir), local_files_only=True),
        out=str(root / "pack"),
        variants=variants,
        num_calibration=3,
        validate=ValidateConfig(num_images=3, min_agreement=MIN_AGREEMENT),
    )
    compile_asr(config, show_progress=False)
    return Compiled(request.param, model_dir, root / "pack", load_whisper(str(model_dir), local_files_only=True))


def speech() -> list[np.ndarray]:
    clips = []
    for name in CLIPS:
        samples, rate = read_wav(media(f"{LIBRIVOX}/{name}"))
        assert rate == RATE
        clips.append(samples)
    return clips


def _features(family: Any, clips: list[np.ndarray]) -> Any:
    return torch.from_numpy(family.reference_features(clips, RATE))


def _generate(family: Any, clips: list[np.ndarray], **kwargs: Any) -> Any:
    """transformers' Whisper generate() on the clips' features, one 30-s segment each."""
    with torch.no_grad():
        return family.model.generate(_features(family, clips), force_unique_generate_call=True, return_dict_in_generate=True, do_sample=False, **kwargs)


def _new_tokens(family: Any, sequences: Any) -> list[tuple[int, ...]]:
    """generate()'s tokens after the prompt, cut at EOS (left out, as Transcription.tokens)."""
    eos = int(family.generation_config.eos_token_id)
    out = []
    for row in sequences[:, family.prompt_length :].tolist():
        out.append(tuple(row[: row.index(eos)] if eos in row else row))
    return out


# --- the pack ----------------------------------------------------------------------------------------


def test_fp32_validation_recorded_and_passed(compiled: Compiled) -> None:
    component = load(compiled.pack_dir).component("speech")
    assert (component.task, component.family) == ("asr", "whisper")
    fp32 = component.validation[0]
    assert fp32.subject == "asr[fp32/any]" and fp32.reference == "torch fp32" and fp32.passed and fp32.num_samples == 3
    metrics = fp32.metrics
    assert metrics["input_features_max_abs_diff"] <= 1e-4
    assert metrics["encoder_hidden_states_max_abs_diff"] < 1e-4 and metrics["cross_kv_max_abs_diff"] < 1e-4
    assert metrics["logits_max_abs_diff"] < 1e-4 and metrics["logits_max_abs"] > 1.0
    assert metrics["greedy_exact_match"] == 1.0 and metrics["token_agreement"] == 1.0
    assert metrics["no_speech_prob_max_abs_diff"] < 1e-6
    assert (metrics.get("language_agreement") == 1.0) == compiled.multilingual
    assert fp32.thresholds == {"logits_max_abs_diff": 1e-3, "input_features_max_abs_diff": 1e-4}


def test_settings_follow_the_generation_config(compiled: Compiled) -> None:
    component = load(compiled.pack_dir).component("speech")
    gc = compiled.family.generation_config
    tokenizer = compiled.family.tokenizer
    settings, generation = component.settings, component.generation
    assert generation.decoder_start_token_id == tokenizer.convert_tokens_to_ids("<|startoftranscript|>") == gc.decoder_start_token_id
    assert generation.eos_token_ids == (tokenizer.convert_tokens_to_ids("<|endoftext|>"),)
    assert list(generation.suppress_tokens) == list(gc.suppress_tokens) and list(generation.begin_suppress_tokens) == [220, gc.eos_token_id]
    assert generation.max_new_tokens == 448 and settings["max_target_positions"] == 448
    assert settings["no_timestamps_token_id"] == tokenizer.convert_tokens_to_ids("<|notimestamps|>")
    assert settings["no_speech_token_id"] == tokenizer.convert_tokens_to_ids("<|nocaptions|>")
    assert settings["is_multilingual"] is compiled.multilingual
    if compiled.multilingual:
        assert len(settings["languages"]) == 99 and settings["languages"]["en"] == tokenizer.convert_tokens_to_ids("<|en|>")
        assert settings["language_names"]["german"] == "de"
        assert settings["tasks"] == {"transcribe": tokenizer.convert_tokens_to_ids("<|transcribe|>"), "translate": tokenizer.convert_tokens_to_ids("<|translate|>")}
        assert (settings["default_language"], settings["default_task"]) == (None, "transcribe")
    else:
        assert settings["languages"] == {} and settings["tasks"] == {}
    audio = component.audio
    assert (audio.feature, audio.sample_rate_hz, audio.n_fft, audio.hop_length, audio.n_mels, audio.max_length_s) == ("log_mel_whisper", 16000, 400, 160, 80, 30.0)


def test_three_graphs_with_kv_cache_io_and_no_control_flow(compiled: Compiled) -> None:
    component = load(compiled.pack_dir).component("speech")
    assert {g.role for g in component.graphs} == {"encoder", "cross_kv", "decoder_step"}
    for graph in component.graphs:
        info = describe_onnx(compiled.pack_dir / graph.file.path)
        assert not {"If", "Loop", "Scan"} & set(info.ops), graph.variant
    encoder, cross_kv, step = (component.graph(role) for role in ("encoder", "cross_kv", "decoder_step"))
    assert encoder.input("input_features").shape == ("batch", 80, 3000)
    assert [o.name for o in encoder.outputs] == ["encoder_hidden_states"]
    assert [o.name for o in cross_kv.outputs] == ["cross.0.key", "cross.0.value", "cross.1.key", "cross.1.value"]
    names = [s.name for s in step.inputs]
    assert names[:3] == ["input_ids", "past.0.key", "past.0.value"] and names[-1] == "cross.1.value"
    assert step.input("past.0.key").shape == ("batch", 4, "past_sequence", 8)
    assert step.input("cross.0.key").shape == ("batch", 4, 1500, 8)
    assert [s.name for s in step.outputs][:2] == ["logits", "present.0.key"]
    assert component.kv_cache is not None and component.kv_cache.convention == "edgemm-kv-1"


# --- parity with the torch model on real speech -----------------------------------------------------


def test_encoder_and_cross_kv_match_torch(compiled: Compiled) -> None:
    transcriber = compiled.transcriber()
    clips = speech()
    features = transcriber.features(clips)
    hidden, cross = compiled.family.reference_encoder(_features(compiled.family, clips))
    assert np.abs(transcriber.encoder_hidden_states(features) - hidden.numpy()).max() < 1e-4
    ours = transcriber.encode(features)
    names = [f"cross.{i}.{kind}" for i in range(2) for kind in ("key", "value")]
    assert max(float(np.abs(ours[name] - ref.numpy()).max()) for name, ref in zip(names, cross)) < 1e-4


def test_teacher_forced_logits_match_torch(compiled: Compiled) -> None:
    transcriber = compiled.transcriber()
    family = compiled.family
    clips = speech()
    language = "fr" if compiled.multilingual else None
    prompt = transcriber.prompt_ids(language, "transcribe")
    rng = np.random.default_rng(0)
    tokens = rng.integers(0, 400, size=(len(clips), 6))
    sequences = np.concatenate([np.tile(prompt, (len(clips), 1)), tokens], axis=1).astype(np.int64)
    ours = teacher_forced_logits(transcriber, transcriber.encode(transcriber.features(clips)), sequences, len(prompt))
    hidden, _ = family.reference_encoder(_features(family, clips))
    theirs = family.reference_logits(hidden, torch.from_numpy(sequences[:, :-1])).numpy()[:, len(prompt) - 1 :]
    assert ours.shape == theirs.shape == (3, 6, family.model.config.vocab_size)
    assert np.abs(ours - theirs).max() < 1e-4
    assert (ours.argmax(-1) != ours[:, :1].argmax(-1)).any()  # the positions predict different tokens


def test_greedy_tokens_languages_and_logprobs_equal_generate(compiled: Compiled) -> None:
    transcriber = compiled.transcriber()
    family = compiled.family
    clips = speech()
    ours = transcriber.transcribe_batch(clips, max_new_tokens=NEW_TOKENS, no_speech_threshold=None)
    kwargs = {"language": None, "task": "transcribe"} if compiled.multilingual else {}
    out = _generate(family, clips, max_new_tokens=NEW_TOKENS, output_scores=True, **kwargs)
    assert [r.tokens for r in ours] == _new_tokens(family, out.sequences)
    tokenizer = family.tokenizer
    assert all(len(r.tokens) > 0 and r.text == tokenizer.decode(list(r.tokens), skip_special_tokens=True).strip() for r in ours)
    if compiled.multilingual:
        by_id = {v: k for k, v in family.languages().items()}
        assert [r.language for r in ours] == [by_id[int(t)] for t in out.sequences[:, 1]]
    else:
        assert all(r.language is None for r in ours)
    # avg_logprob: transformers' _retrieve_avg_logprobs on generate's (processed) scores.
    logprobs = torch.log_softmax(torch.stack(out.scores, dim=1).float(), dim=-1)
    generated = out.sequences[:, family.prompt_length :]
    for i, result in enumerate(ours):
        count = len(result.tokens) + (1 if len(result.tokens) < NEW_TOKENS else 0)  # EOS counts when it ended the row
        expected = float(logprobs[i, torch.arange(count), generated[i, :count]].mean())
        assert result.avg_logprob == pytest.approx(expected, abs=1e-4)
        assert result.duration_s == pytest.approx(clips[i].size / RATE)


def test_text_equals_the_tokenizer_decode(compiled: Compiled) -> None:
    """Text tokens, special tokens and timestamp tokens mixed: the pack's tokenizer.json decodes them as
    transformers' WhisperTokenizer does (special tokens skipped, timestamps removed), stripped."""
    transcriber = compiled.transcriber()
    tokenizer = compiled.family.tokenizer
    text = tokenizer.encode(" a man on the street, next to a red car", add_special_tokens=False)
    specials = tokenizer.convert_tokens_to_ids(["<|notimestamps|>", "<|0.00|>", "<|endoftext|>", "<|12.34|>", "<|startoftranscript|>"])
    ids = [specials[1], *text[:4], specials[3], *text[4:], specials[0], specials[2]]
    expected = tokenizer.decode(ids, skip_special_tokens=True).strip()
    assert transcriber.decode(ids) == expected == "a man on the street, next to a red car"
    assert transcriber.decode([specials[4], specials[0]]) == ""


def test_beam_search_equals_generate(compiled: Compiled) -> None:
    transcriber = compiled.transcriber()
    clips = speech()[:2]
    language = "de" if compiled.multilingual else None
    ours = transcriber.transcribe_batch(clips, language=language, num_beams=3, max_new_tokens=6, no_speech_threshold=None)
    kwargs = {"language": "de", "task": "transcribe"} if compiled.multilingual else {}
    out = _generate(compiled.family, clips, num_beams=3, max_new_tokens=6, output_scores=True, **kwargs)
    assert [r.tokens for r in ours] == _new_tokens(compiled.family, out.sequences)
    assert [r.avg_logprob for r in ours] == pytest.approx(out.sequences_scores.tolist(), abs=1e-4)


def test_forced_language_and_translate_equal_generate(compiled: Compiled) -> None:
    transcriber = compiled.transcriber()
    clips = speech()[:2]
    if not compiled.multilingual:
        with pytest.raises(errors.InputError, match="English-only model: it transcribes, it cannot 'translate'"):
            transcriber.transcribe(clips[0], task="translate")
        with pytest.raises(errors.InputError, match="English-only model; got language 'de'"):
            transcriber.transcribe(clips[0], language="de")
        assert transcriber.transcribe(clips[0], language="English", max_new_tokens=4).language is None
        return
    ours = transcriber.transcribe_batch(clips, language="German", task="translate", max_new_tokens=NEW_TOKENS, no_speech_threshold=None)
    out = _generate(compiled.family, clips, language="de", task="translate", max_new_tokens=NEW_TOKENS)
    assert out.sequences[0, :4].tolist() == transcriber.prompt_ids("de", "translate")
    assert [r.tokens for r in ours] == _new_tokens(compiled.family, out.sequences)
    assert {r.language for r in ours} == {"de"}
    for spelling in ("de", "<|de|>", "GERMAN"):
        assert transcriber.language_code(spelling) == "de"
    with pytest.raises(errors.InputError, match="language 'klingon': expected one of the model's 99 languages"):
        transcriber.transcribe(clips[0], language="klingon")
    with pytest.raises(errors.InputError, match=r"task 'summarize': expected one of \['transcribe', 'translate'\]"):
        transcriber.transcribe(clips[0], task="summarize")


def test_detect_language_equals_transformers(compiled: Compiled) -> None:
    transcriber = compiled.transcriber()
    clips = speech()
    if not compiled.multilingual:
        with pytest.raises(errors.InputError, match="English-only Whisper model: it cannot detect languages"):
            transcriber.detect_language(clips[0])
        return
    with torch.no_grad():
        ids = compiled.family.model.detect_language(_features(compiled.family, clips)).tolist()
    by_id = {v: k for k, v in compiled.family.languages().items()}
    detected = [transcriber.detect_language(clip) for clip in clips]
    assert [code for code, _ in detected] == [by_id[i] for i in ids]
    assert all(1 / 99 < p <= 1.0 for _, p in detected)


def test_no_speech_probability_and_silence_decision_equal_generate(compiled: Compiled) -> None:
    """transformers skips a segment when its no-speech probability is above the threshold and its
    average log-probability below the log-probability threshold; so does edgemm, row for row."""
    transcriber = compiled.transcriber()
    family = compiled.family
    clips = [*speech()[1:], np.zeros(RATE, np.float32)]
    free = transcriber.transcribe_batch(clips, max_new_tokens=6, no_speech_threshold=None)
    probs = np.asarray([r.no_speech_prob for r in free])
    hidden, _ = family.reference_encoder(_features(family, clips))
    start = torch.full((len(clips), 1), int(family.generation_config.decoder_start_token_id))
    reference = torch.softmax(family.reference_logits(hidden, start)[:, 0].double(), dim=-1)[:, family.no_speech_token_id].numpy()
    assert np.abs(probs - reference).max() < 1e-6
    ranked = np.sort(probs)
    threshold = float((ranked[0] + ranked[1]) / 2)  # between two rows: two are above it, one below
    ours = transcriber.transcribe_batch(clips, max_new_tokens=6, no_speech_threshold=threshold, logprob_threshold=0.0)
    silent = [r.text == "" and r.tokens == () for r in ours]
    assert silent == list(probs > threshold) and sum(silent) == 2
    kwargs = {"language": None, "task": "transcribe"} if compiled.multilingual else {}
    with torch.no_grad():
        sequences = family.model.generate(
            _features(family, clips), max_new_tokens=6, no_speech_threshold=threshold, logprob_threshold=0.0, temperature=0.0, **kwargs
        )
    eos = int(family.generation_config.eos_token_id)
    assert [bool((row == eos).all()) for row in sequences] == silent  # skipped rows come back as padding only
    # avg_logprob above the log-probability threshold keeps the text, whatever the no-speech probability.
    kept = transcriber.transcribe_batch(clips, max_new_tokens=6, no_speech_threshold=0.0, logprob_threshold=-50.0)
    assert [r.tokens for r in kept] == [r.tokens for r in free]
    assert all(r.text == "" for r in transcriber.transcribe_batch(clips, max_new_tokens=6, no_speech_threshold=0.0, logprob_threshold=None))


# --- variants, precision, errors -----------------------------------------------------------------------


def test_variants_load_decode_and_are_validated(compiled: Compiled) -> None:
    _, variants = LAYOUTS[compiled.name]
    component = load(compiled.pack_dir).component("speech")
    results = {v.subject: v for v in component.validation}
    clip = speech()[1]
    for variant in variants:
        target = "gpu" if variant.precision == "fp16" else variant.target
        result = results[f"asr[{variant.precision}/{target}]"]
        assert result.passed and result.reference == "pack fp32" and result.metrics["token_agreement"] >= MIN_AGREEMENT
        assert result.metrics["token_agreement"] == 1.0 or variant.precision == "int8"
        transcriber = Transcriber(load(compiled.pack_dir), precision=variant.precision, graph_target=target)
        assert 0 < len(transcriber.transcribe(clip, max_new_tokens=5, no_speech_threshold=None).tokens) <= 5
        for role in ("encoder", "cross_kv", "decoder_step"):
            graph = component.graph(role, variant.precision, target)
            if variant.precision == "fp16":
                assert graph.quantization is None and "Cast" in describe_onnx(compiled.pack_dir / graph.file.path).ops
            elif variant.target == "cpu":
                assert graph.quantization == "ort-dynamic-u8s8"
            else:
                assert graph.quantization == "qdq-s8s8-symmetric"


def test_auto_precision_pack_transcriber_and_refusals(compiled: Compiled) -> None:
    _, variants = LAYOUTS[compiled.name]
    expected = "int8" if VariantConfig("int8", "cpu") in variants else "fp32"  # TensorRT int8 never runs on the CPU
    pack = load(compiled.pack_dir)
    transcriber = pack.transcriber()
    assert transcriber is pack.transcriber()  # built once
    assert transcriber.precision == expected and transcriber.sample_rate_hz == 16000 and transcriber.max_duration_s == 30.0
    assert transcriber.describe() == f"speech: whisper {expected}/cpu on onnxruntime[CPUExecutionProvider]"
    with pytest.raises(errors.PackError, match="has no fp16 graphs for target cpu"):
        Transcriber(pack, precision="fp16")
    with pytest.raises(errors.PackError, match="has no component 'caption'"):
        Transcriber(pack, "caption")


def test_audio_refusals_and_long_audio_windows(compiled: Compiled) -> None:
    transcriber = compiled.transcriber()
    clip = speech()[1]  # 3 s
    with pytest.raises(errors.AudioError, match=r"expected at most 30 s of audio .* got 31.0 s; split it"):
        transcriber.transcribe(np.zeros(31 * RATE, np.float32))
    with pytest.raises(errors.SampleRateMismatchError, match="expected audio at 16000 Hz"):
        transcriber.transcribe(clip, sample_rate_hz=48_000)
    with pytest.raises(errors.AudioError, match="expected a mono waveform"):
        transcriber.transcribe(np.stack([clip, clip], axis=1))
    with pytest.raises(errors.InputError, match="max_new_tokens must be a positive integer"):
        transcriber.transcribe(clip, max_new_tokens=0)
    long = np.concatenate([clip, np.zeros(60 * RATE, np.float32), clip])  # 66 s
    windows = list(transcriber.transcribe_long(long, max_new_tokens=4, no_speech_threshold=None))
    assert [w.start_s for w in windows] == [0.0, 30.0, 60.0]
    assert [round(w.duration_s, 2) for w in windows] == [30.0, 30.0, round(long.size / RATE - 60, 2)]
    last = transcriber.transcribe(long[60 * RATE :], max_new_tokens=4, no_speech_threshold=None)
    assert windows[2].tokens == last.tokens and windows[2].no_speech_prob == pytest.approx(last.no_speech_prob)


# --- dispatch and compile errors ------------------------------------------------------------------------


def test_dispatch_routes_whisper_and_refuses_prompts(compiled: Compiled, tmp_path: Path) -> None:
    model = str(compiled.model_dir)
    assert model_task(model, local_files_only=True) == "asr"
    config = CompileConfig(load=LoadConfig(model, local_files_only=True), out=str(tmp_path / "pack"))
    assert component_name(config, "asr") == "speech"
    for export in (ExportConfig(prompt="hello"), ExportConfig(prompts=("a dog barking",))):
        with pytest.raises(errors.CompileError, match="Whisper takes no prompts"):
            compile_model(config.replace(export=export), show_progress=False)
    assert not (tmp_path / "pack").exists()


def test_unsupported_generation_config(tmp_path: Path) -> None:
    model_dir = models.tiny_whisper(tmp_path / "model", multilingual=True)
    path = model_dir / "generation_config.json"
    data = json.loads(path.read_text())
    del data["lang_to_id"]
    path.write_text(json.dumps(data))
    config = CompileConfig(load=LoadConfig(str(model_dir), local_files_only=True), out=str(tmp_path / "pack"))
    with pytest.raises(errors.UnsupportedModelError, match=r"multilingual checkpoint whose generation_config\.json has no lang_to_id"):
        compile_asr(config, show_progress=False)
    assert not (tmp_path / "pack").exists() and not list(tmp_path.glob(".pack.staging-*"))


# --- the released configurations, with random weights (slow: minutes each on two cores) --------------

RELEASED = {
    # builder -> (multilingual, <|startoftranscript|>, <|endoftext|>, <|notimestamps|>, vocabulary, suppress_tokens)
    "whisper_tiny_en": (False, 50257, 50256, 50362, 51864, models.WHISPER_EN_SUPPRESS_TOKENS),
    "whisper_base": (True, 50258, 50257, 50363, 51865, models.WHISPER_MULTILINGUAL_SUPPRESS_TOKENS),
    "whisper_small": (True, 50258, 50257, 50363, 51865, models.WHISPER_MULTILINGUAL_SUPPRESS_TOKENS),
}


@pytest.mark.slow
@pytest.mark.parametrize("builder", list(RELEASED))
def test_released_configuration_compiles_and_matches_generate(builder: str, tmp_path: Path) -> None:
    """Real sizes, vocabularies and generation configs: validated on LibriVox speech (also the
    int8 calibration set for tiny.en), tokens equal to generate(), every special id as released."""
    multilingual, sot, eot, no_timestamps, vocab, suppress = RELEASED[builder]
    model_dir = getattr(models, builder)(tmp_path / "model")
    variants = (VariantConfig("int8", "cpu"),) if builder == "whisper_tiny_en" else ()
    config = CompileConfig(
        load=LoadConfig(str(model_dir), local_files_only=True),
        out=str(tmp_path / "pack"),
        variants=variants,
        calibration=str(media(LIBRIVOX)),
        num_calibration=5,
        validate=ValidateConfig(num_images=2 if builder == "whisper_small" else 4),
    )
    pack = compile_asr(config, show_progress=False)
    component = pack.component("speech")
    generation, settings = component.generation, component.settings
    assert (generation.decoder_start_token_id, generation.eos_token_ids, generation.pad_token_id) == (sot, (eot,), eot)
    assert generation.suppress_tokens == suppress and generation.begin_suppress_tokens == (220, eot)
    assert (settings["no_timestamps_token_id"], settings["no_speech_token_id"], settings["is_multilingual"]) == (no_timestamps, no_timestamps - 1, multilingual)
    assert component.graph("decoder_step").outputs[0].shape == ("batch", "sequence", vocab)
    if multilingual:
        assert (settings["languages"]["en"], settings["languages"]["su"], len(settings["languages"])) == (50259, 50357, 99)
        assert settings["tasks"] == {"transcribe": 50359, "translate": 50358}
    fp32 = component.validation[0]
    assert fp32.passed and fp32.metrics["logits_max_abs_diff"] < 1e-3 and fp32.metrics["greedy_exact_match"] == 1.0
    assert fp32.metrics["input_features_max_abs_diff"] <= 1e-4
    for result in component.validation[1:]:
        assert result.passed and component.graph("decoder_step", "int8", "cpu").quantization == "ort-static-u8s8"
    family = load_whisper(str(model_dir), local_files_only=True)
    clips = speech()[:2]
    transcriber = Transcriber(pack, precision="fp32")
    language = "de" if multilingual else None
    ours = transcriber.transcribe_batch(clips, language=language, max_new_tokens=8, no_speech_threshold=None)
    out = _generate(family, clips, max_new_tokens=8, **({"language": "de", "task": "transcribe"} if multilingual else {}))
    assert [r.tokens for r in ours] == _new_tokens(family, out.sequences)
