"""Zero-shot compile (CLIP, SigLIP, CLAP with and without fusion) on tiny random checkpoints.

Every parity check compares the pack (ONNX Runtime, numpy preprocessing and scoring) with the
source torch model run through its own processor: embeddings, and scores equal to the model's
logits turned into probabilities (CLIP/CLAP: softmax, SigLIP: sigmoid).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from edgemm import errors  # noqa: E402
from edgemm.compile import testing as models  # noqa: E402
from edgemm.compile.config import CompileConfig, ExportConfig, LoadConfig, ValidateConfig, VariantConfig  # noqa: E402
from edgemm.compile.dispatch import compile_model, model_task  # noqa: E402
from edgemm.compile.zero_shot import compile_zero_shot, runtime_crops  # noqa: E402
from edgemm.runtime.audio_features import clap_features, read_wav  # noqa: E402
from edgemm.runtime.image import load_image  # noqa: E402
from edgemm.runtime.onnx_graph import describe_onnx  # noqa: E402
from edgemm.runtime.pack import load, read_manifest  # noqa: E402
from edgemm.runtime.zero_shot import ZeroShotScorer  # noqa: E402
from tests.media import freedesktop_sound, opencv_sample  # noqa: E402
from tests.zero_shot_packs import FAMILIES, MIN_AGREEMENT, Compiled, compiled, model_dir  # noqa: E402

PHOTOS = ["fruits.jpg", "baboon.jpg", "messi5.jpg"]

# New prompts besides the compiled ones: case and punctuation, and one longer than every tiny
# text tower's positions (truncated as the tokenizer truncates).
EXTRA_PROMPTS = ["a dog", "GLASS breaking!!", " ".join(["a dog barking at night"] * 12)]


@pytest.fixture(scope="module", params=list(FAMILIES))
def pack(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Compiled:
    return compiled(request.param, tmp_path_factory.getbasetemp() / "zero-shot")


def _media(c: Compiled) -> list[Any]:
    if c.modality == "image":
        return [load_image(opencv_sample(name)) for name in PHOTOS]
    # The tiny CLAP takes 1 s at 8 kHz: the phone tones are real 8 kHz recordings, longer than that
    # (truncation; fusion for the fused model) and, cut, shorter (repeat-padding).
    busy, rate = read_wav(freedesktop_sound("phone-outgoing-busy.oga"))
    calling, _ = read_wav(freedesktop_sound("phone-outgoing-calling.oga"))
    assert rate == 8000
    return [busy, calling, busy[:3000]]


def _torch_reference(c: Compiled, media: list[Any], prompts: list[str], is_longer: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The source model through its own processor: (media embeds, text embeds, probabilities)."""
    from transformers import AutoFeatureExtractor, AutoImageProcessor, AutoModel, AutoTokenizer

    model = AutoModel.from_pretrained(c.model_dir, local_files_only=True).eval()
    tokenizer = AutoTokenizer.from_pretrained(c.model_dir, local_files_only=True)
    padding: Any = "max_length" if c.name == "siglip" else True
    inputs = dict(tokenizer(prompts, padding=padding, truncation=True, return_tensors="pt"))
    if c.modality == "image":
        inputs.update(AutoImageProcessor.from_pretrained(c.model_dir, local_files_only=True)(images=media, return_tensors="pt"))
    else:
        extractor = AutoFeatureExtractor.from_pretrained(c.model_dir, local_files_only=True)
        with runtime_crops():
            inputs["input_features"] = extractor(media, sampling_rate=8000, return_tensors="pt")["input_features"]
        if is_longer is not None:
            inputs["is_longer"] = torch.from_numpy(is_longer)
    with torch.no_grad():
        out = model(**inputs)
    if c.modality == "image":
        embeds, logits = out.image_embeds, out.logits_per_image
    else:
        embeds, logits = out.audio_embeds, out.logits_per_audio
    probabilities = torch.sigmoid(logits) if c.name == "siglip" else torch.softmax(logits, dim=1)
    return embeds.numpy(), out.text_embeds.numpy(), probabilities.numpy()


def _embed(scorer: ZeroShotScorer, media: list[Any]) -> np.ndarray:
    return scorer.embed_images(media) if scorer.modality == "image" else scorer.embed_audio(media, 8000)


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.asarray((a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1)))


def test_fp32_validation_recorded_and_passed(pack: Compiled) -> None:
    component = load(pack.pack_dir).components[0]
    fp32 = component.validation[0]
    assert fp32.subject == f"{component.task}[fp32/any]" and fp32.reference == "torch fp32" and fp32.passed
    assert fp32.metrics[f"{pack.modality}_embeds_min_cosine"] >= 0.9999
    assert fp32.metrics["text_embeds_min_cosine"] >= 0.9999
    assert fp32.metrics["logits_max_abs_diff"] < 1e-4
    assert fp32.metrics["token_ids_match"] == 1.0
    preprocessing = "pixel_values_max_abs_diff" if pack.modality == "image" else "input_features_max_abs_diff"
    assert fp32.metrics[preprocessing] <= 1e-4
    assert component.family == pack.name.split("-")[0]


def test_graphs_and_io(pack: Compiled) -> None:
    component = load(pack.pack_dir).components[0]
    media_role = "image_encoder" if pack.modality == "image" else "audio_encoder"
    encoder = component.graph(media_role)
    text = component.graph("text_encoder")
    expected_inputs = {"clip": ["pixel_values"], "siglip": ["pixel_values"], "clap": ["input_features"], "clap-fused": ["input_features", "is_longer"]}
    assert [s.name for s in encoder.inputs] == expected_inputs[pack.name]
    assert [s.name for s in encoder.outputs] == [f"{pack.modality}_embeds"]
    assert isinstance(encoder.inputs[0].shape[0], str)  # symbolic batch
    if pack.name == "clap-fused":
        assert encoder.inputs[0].shape[1] == 4 and encoder.input("is_longer").dtype == "bool"
    # SigLIP's text tower takes no attention mask (it is trained on text padded to its full length).
    assert [s.name for s in text.inputs] == (["input_ids"] if pack.name == "siglip" else ["input_ids", "attention_mask"])
    assert [s.name for s in text.outputs] == ["text_embeds"]
    for graph in component.graphs:
        assert not {"If", "Loop", "Scan", "NonZero"} & set(describe_onnx(pack.pack_dir / graph.file.path).ops), graph.variant


def test_parity_with_torch_on_real_media(pack: Compiled) -> None:
    scorer = load(pack.pack_dir, precision="fp32").scorer()
    scorer.set_background([])
    media = _media(pack)
    prompts = [*pack.prompts, *EXTRA_PROMPTS]
    embeddings = _embed(scorer, media)
    is_longer = None
    if pack.name == "clap-fused":
        assert scorer.component.audio is not None
        is_longer = clap_features(media, scorer.component.audio)[1]
        assert is_longer.ravel().tolist() == [True, True, False]
    ref_media, ref_text, ref_probabilities = _torch_reference(pack, media, prompts, is_longer)
    assert _cosines(embeddings, ref_media).min() >= 0.9999
    assert _cosines(scorer.embed_texts(prompts), ref_text).min() >= 0.9999
    scores = scorer.scores(embeddings, prompts)
    assert scores.shape == (len(media), len(prompts))
    np.testing.assert_allclose(scores, ref_probabilities, atol=2e-5)


def test_background_prompts_join_the_softmax(pack: Compiled) -> None:
    scorer = ZeroShotScorer(load(pack.pack_dir), precision="fp32", background_prompts=["an empty scene", "nothing"])
    media = _media(pack)
    prompts = list(pack.prompts)
    if pack.name == "siglip":
        # Sigmoid scores: each prompt on its own, background prompts change nothing.
        alone = ZeroShotScorer(load(pack.pack_dir), precision="fp32", background_prompts=[])
        np.testing.assert_array_equal(scorer.score_images(media, prompts), alone.score_images(media, prompts))
        return
    is_longer = clap_features(media, scorer.component.audio)[1] if pack.name == "clap-fused" else None
    _, _, ref = _torch_reference(pack, media, [*prompts, "an empty scene", "nothing"], is_longer)
    np.testing.assert_allclose(scorer.scores(_embed(scorer, media), prompts), ref[:, : len(prompts)], atol=2e-5)


def test_prompt_embeddings_stored_in_the_pack(pack: Compiled) -> None:
    component = load(pack.pack_dir).components[0]
    settings = component.settings
    background = [] if pack.name == "siglip" else (["a photo"] if pack.modality == "image" else ["background noise"])
    assert settings["prompts"] == list(pack.prompts)
    assert settings["background_prompts"] == background
    assert settings["embedding_texts"] == [*pack.prompts, *background]
    assert settings["score"] == ("sigmoid" if pack.name == "siglip" else "softmax")
    table = np.load(pack.pack_dir / component.files["prompt_embeddings"].path, allow_pickle=False)
    assert table.dtype == np.float32 and table.shape == (len(settings["embedding_texts"]), settings["embedding_dim"])
    scorer = ZeroShotScorer(load(pack.pack_dir), precision="fp32")
    np.testing.assert_allclose(table, scorer.embed_texts(settings["embedding_texts"]), atol=1e-6)


def test_variants_load_score_and_are_validated(pack: Compiled) -> None:
    component = load(pack.pack_dir).components[0]
    results = {v.subject: v for v in component.validation}
    media = _media(pack)
    fp32 = ZeroShotScorer(load(pack.pack_dir), precision="fp32")
    reference = _embed(fp32, media)
    for variant in pack.variants:
        target = "gpu" if variant.precision == "fp16" else variant.target
        result = results[f"{component.task}[{variant.precision}/{target}]"]
        assert result.passed and result.reference == "pack fp32"
        assert result.metrics["top1_prompt_agreement"] >= MIN_AGREEMENT
        assert result.metrics[f"{pack.modality}_embeds_min_cosine"] >= 0.99
        scorer = ZeroShotScorer(load(pack.pack_dir), precision=variant.precision, graph_target=target)
        embeddings = _embed(scorer, media)
        assert _cosines(embeddings, reference).min() >= 0.99
        scores = scorer.scores(embeddings, [*pack.prompts, "a dog"])
        assert scores.shape == (len(media), 3) and ((scores >= 0) & (scores <= 1)).all()
        graph = scorer.encoder_graph
        expected = {("int8", "cpu"): "ort-dynamic-u8s8", ("int8", "tensorrt"): "qdq-s8s8-symmetric"}.get((variant.precision, variant.target))
        assert graph.quantization == expected
    auto = load(pack.pack_dir).scorer()
    assert auto.precision == ("int8" if VariantConfig("int8", "cpu") in pack.variants else "fp32")


# --- prompts, text tower, refusals -----------------------------------------------------------------


def test_no_text_tower_keeps_compiled_prompts_only(tmp_path_factory: pytest.TempPathFactory, tmp_path: Path) -> None:
    full = compiled("clip", tmp_path_factory.getbasetemp() / "zero-shot")
    config = CompileConfig(
        load=LoadConfig(str(full.model_dir), local_files_only=True),
        out=str(tmp_path / "pack"),
        variants=(VariantConfig("int8", "cpu"),),
        export=ExportConfig(prompts=full.prompts, text_tower=False),
        validate=ValidateConfig(num_images=4, min_agreement=MIN_AGREEMENT),
    )
    pack = compile_zero_shot(config, show_progress=False)
    component = pack.component("alerts")
    assert sorted(g.variant for g in component.graphs) == ["image_encoder[fp32/any]", "image_encoder[int8/cpu]"]
    assert set(component.files) == {"prompt_embeddings"}
    assert sorted(p.name for p in (tmp_path / "pack" / "alerts").iterdir()) == ["image_encoder.int8-cpu.onnx", "image_encoder.onnx", "prompt_embeddings.npy"]
    assert component.settings["text_tower"] is False
    photos = [load_image(opencv_sample(name)) for name in PHOTOS]
    lean = ZeroShotScorer(pack, precision="fp32")
    assert not lean.has_text_tower
    reference = ZeroShotScorer(load(full.pack_dir), precision="fp32")
    np.testing.assert_allclose(lean.score_images(photos, list(full.prompts)), reference.score_images(photos, list(full.prompts)), atol=1e-6)
    with pytest.raises(errors.TextTowerMissingError, match=r"compiled without its text tower .* new prompt\(s\) \['a dog'\]"):
        lean.score_images(photos, [full.prompts[0], "a dog"])
    with pytest.raises(errors.TextTowerMissingError):
        lean.embed_texts([full.prompts[0]])
    with pytest.raises(errors.TextTowerMissingError):
        lean.set_background(["an empty room"])
    assert isinstance(errors.TextTowerMissingError("x"), errors.PromptError)


@pytest.mark.parametrize(
    ("export", "pattern"),
    [
        ({"prompts": ("fire", "")}, r"prompts\[1\]: expected text, got an empty prompt ''"),
        ({"prompts": ("   ",)}, r"prompts\[0\]: expected text, got an empty prompt '   '"),
        ({"background_prompts": ("",)}, r"background_prompts\[0\]: expected text"),
        ({"prompts": ("fire", "fire")}, r"prompts: expected each prompt once, got \['fire'\] more than once"),
        ({"text_tower": False}, r"--no-text-tower\) keeps only the prompts compiled into the pack: expected at least one prompt"),
    ],
    ids=["empty", "blank", "empty-background", "duplicate", "no-tower-no-prompts"],
)
def test_bad_prompt_settings_are_refused(export: dict[str, Any], pattern: str) -> None:
    with pytest.raises(errors.CompileError, match=pattern):
        ExportConfig(**export)


def test_empty_prompt_at_run_time(pack: Compiled) -> None:
    scorer = load(pack.pack_dir).scorer()
    embeddings = _embed(scorer, _media(pack)[:1])
    with pytest.raises(errors.PromptError, match="expected text, got an empty prompt ''"):
        scorer.scores(embeddings, [pack.prompts[0], ""])
    with pytest.raises(errors.PromptError, match="expected a list of strings, got one string"):
        scorer.scores(embeddings, pack.prompts[0])  # type: ignore[arg-type]


def test_calibration_audio_gives_static_int8(tmp_path_factory: pytest.TempPathFactory, tmp_path: Path) -> None:
    clap = model_dir("clap", tmp_path_factory.getbasetemp() / "zero-shot")
    folder = tmp_path / "sounds"
    folder.mkdir()
    for name in ("phone-outgoing-busy.oga", "phone-outgoing-calling.oga"):
        shutil.copy(freedesktop_sound(name), folder / f"{Path(name).stem}.wav")
    (folder / "notes.txt").write_text("not audio: skipped by suffix")
    config = CompileConfig(
        load=LoadConfig(str(clap), local_files_only=True),
        out=str(tmp_path / "pack"),
        variants=(VariantConfig("int8", "cpu"),),
        calibration=str(folder),
        num_calibration=2,
        export=ExportConfig(prompts=("a phone ringing",)),
        validate=ValidateConfig(num_images=2, min_agreement=MIN_AGREEMENT),
    )
    component = compile_zero_shot(config, show_progress=False).component("audio_alerts")
    assert {g.quantization for g in component.graphs if g.precision == "int8"} == {"ort-static-u8s8"}
    assert component.validation[1].num_samples == 2 and component.validation[1].passed
    shutil.copy(freedesktop_sound("bell.oga"), folder / "bell.wav")  # 44.1 kHz
    with pytest.raises(errors.CompileError, match=r"calibration audio .*bell\.wav: expected 8000 Hz \(the model's rate\), found 44100 Hz"):
        compile_zero_shot(config.replace(num_calibration=3, out=str(tmp_path / "other")), show_progress=False)


def test_failed_validation_leaves_pack_untouched(tmp_path_factory: pytest.TempPathFactory, tmp_path: Path) -> None:
    siglip = compiled("siglip", tmp_path_factory.getbasetemp() / "zero-shot")
    out = tmp_path / "pack"
    shutil.copytree(siglip.pack_dir, out)
    before = (out / "manifest.json").read_bytes()
    strict = CompileConfig(
        load=LoadConfig(str(siglip.model_dir), local_files_only=True), out=str(out), component="strict", validate=ValidateConfig(num_images=2, min_cosine=1.0)
    )
    with pytest.raises(errors.ValidationFailedError, match="fp32 export is outside tolerance: image_embeds_min_cosine="):
        compile_zero_shot(strict, show_progress=False)
    assert (out / "manifest.json").read_bytes() == before
    assert sorted(p.name for p in out.iterdir()) == ["alerts", "manifest.json"]
    assert not list(tmp_path.glob(".pack.staging-*"))


def test_config_round_trips_with_zero_shot_fields() -> None:
    config = CompileConfig(
        load=LoadConfig("m"),
        out="packs/x",
        export=ExportConfig(prompts=("fire", "smoke"), background_prompts=("a photo",), text_tower=False),
        validate=ValidateConfig(min_cosine=0.999),
    )
    assert CompileConfig.from_json(json.loads(json.dumps(config.to_json()))) == config
    with pytest.raises(errors.CompileError, match=r"min_cosine: expected a cosine in \[-1, 1\], got 2"):
        ValidateConfig(min_cosine=2)


def test_unsupported_architectures(tmp_path: Path) -> None:
    from transformers import GPT2Config, GPT2LMHeadModel, Siglip2Config, Siglip2Model

    GPT2LMHeadModel(GPT2Config(n_embd=16, n_layer=1, n_head=2, vocab_size=50)).save_pretrained(tmp_path / "gpt2")
    config = CompileConfig(load=LoadConfig(str(tmp_path / "gpt2"), local_files_only=True), out=str(tmp_path / "pack"))
    with pytest.raises(
        errors.UnsupportedModelError,
        match=r"'GPT2LMHeadModel' is not one edgemm can compile; supported: captioners \(BlipForConditionalGeneration, "
        r"VisionEncoderDecoderModel, Florence2ForConditionalGeneration\), zero-shot models \(CLIPModel, SiglipModel, ClapModel\) "
        r"and speech recognisers \(WhisperForConditionalGeneration\)",
    ):
        compile_model(config, show_progress=False)
    tiny = {"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2}
    Siglip2Model(Siglip2Config(text_config={**tiny, "vocab_size": 50}, vision_config=tiny)).save_pretrained(tmp_path / "siglip2")
    with pytest.raises(errors.UnsupportedModelError, match=r"NaFlex .* fixed-resolution SigLIP 2 checkpoints .* are SiglipModel"):
        compile_model(config.replace(load=LoadConfig(str(tmp_path / "siglip2"), local_files_only=True)), show_progress=False)
    assert not (tmp_path / "pack").exists()
    assert not list(tmp_path.glob(".pack.staging-*"))


def test_dispatch_refuses_the_other_kind_of_settings(tmp_path_factory: pytest.TempPathFactory, tmp_path: Path) -> None:
    clip = model_dir("clip", tmp_path_factory.getbasetemp() / "zero-shot")
    assert model_task(str(clip), local_files_only=True) == "zero_shot_image"
    config = CompileConfig(load=LoadConfig(str(clip), local_files_only=True), out=str(tmp_path / "pack"), export=ExportConfig(prompt="a photo of"))
    with pytest.raises(errors.CompileError, match="zero-shot models take alert prompts"):
        compile_model(config, show_progress=False)
    blip = models.tiny_blip(tmp_path / "blip")
    assert model_task(str(blip), local_files_only=True) == "caption"
    config = config.replace(load=LoadConfig(str(blip), local_files_only=True), export=ExportConfig(prompts=("fire",)))
    with pytest.raises(errors.CompileError, match="alert prompts, background prompts and --no-text-tower are for zero-shot models"):
        compile_model(config, show_progress=False)


def test_zero_shot_component_joins_an_existing_pack(tmp_path_factory: pytest.TempPathFactory, tmp_path: Path) -> None:
    root = tmp_path_factory.getbasetemp() / "zero-shot"
    out = tmp_path / "pack"
    shutil.copytree(compiled("siglip", root).pack_dir, out)
    config = CompileConfig(
        load=LoadConfig(str(model_dir("clap", root)), local_files_only=True), out=str(out), export=ExportConfig(prompts=("a siren",)), validate=ValidateConfig(num_images=2)
    )
    compile_model(config, show_progress=False)
    manifest = read_manifest(out)
    assert [(c.name, c.task) for c in manifest.components] == [("alerts", "zero_shot_image"), ("audio_alerts", "zero_shot_audio")]
    pack = load(out)
    with pytest.raises(errors.PackError, match=r"expected one zero-shot component, found 2 \['alerts \(zero_shot_image\)', 'audio_alerts \(zero_shot_audio\)'\]"):
        pack.scorer()
    assert pack.scorer("audio_alerts").modality == "audio" and pack.scorer("alerts").modality == "image"
    assert pack.scorer("alerts") is pack.scorer("alerts")


# --- the command line -----------------------------------------------------------------------------


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "edgemm", *args], capture_output=True, text=True, timeout=600)


def test_cli_compile_and_score_images(tmp_path_factory: pytest.TempPathFactory, tmp_path: Path) -> None:
    clip = model_dir("clip", tmp_path_factory.getbasetemp() / "zero-shot")
    prompts_file = tmp_path / "alerts.txt"
    prompts_file.write_text("# alerts for the hall camera\na person lying on the floor\n\na photo of fire\n")
    out = tmp_path / "pack"
    result = _cli("compile", str(clip), "--out", str(out), "--offline", "--prompts", str(prompts_file), "--prompt", "a dog", "--no-text-tower", "--validation-images", "2")
    assert result.returncode == 0, result.stderr
    assert "PASS zero_shot_image[fp32/any] vs torch fp32" in result.stderr and "[4/4] embedding 4 prompts (3 alert, 1 background)" in result.stderr
    assert "wrote component 'alerts' (clip)" in result.stdout
    assert "prompts in the pack: ['a dog', 'a person lying on the floor', 'a photo of fire']; text tower: no" in result.stdout
    photos = [str(opencv_sample(name)) for name in PHOTOS[:2]]
    result = _cli("score", str(out), *photos, "--json")
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["file"] for r in records] == photos
    assert all(list(r["scores"]) == ["a dog", "a person lying on the floor", "a photo of fire"] and r["score_kind"] == "softmax" for r in records)
    assert all(0 <= v <= 1 for r in records for v in r["scores"].values())
    result = _cli("score", str(out), photos[0], "--prompt", "a cat")
    assert result.returncode == 1
    assert "compiled without its text tower" in result.stderr and "['a cat']" in result.stderr
    result = _cli("compile", str(clip), "--out", str(tmp_path / "other"), "--offline", "--max-new-tokens", "5")
    assert result.returncode == 1 and "--max-new-tokens is for captioners" in result.stderr


def test_cli_score_audio(tmp_path_factory: pytest.TempPathFactory, tmp_path: Path) -> None:
    pack = compiled("clap-fused", tmp_path_factory.getbasetemp() / "zero-shot")
    wav = str(freedesktop_sound("phone-outgoing-busy.oga"))
    samples, _ = read_wav(wav)
    np.save(tmp_path / "busy.npy", samples)
    result = _cli("score", str(pack.pack_dir), wav, str(tmp_path / "busy.npy"), "--json", "--prompt", "a phone ringing", "--prompt", "glass breaking")
    assert result.returncode == 0, result.stderr
    first, second = (json.loads(line)["scores"] for line in result.stdout.splitlines())
    assert list(first) == ["a phone ringing", "glass breaking"] and first == second
    result = _cli("score", str(pack.pack_dir), str(tmp_path / "busy.npy"), "--sample-rate", "16000")
    assert result.returncode == 1
    assert "expected audio at 8000 Hz (the model's rate), got 16000 Hz" in result.stderr
    (tmp_path / "a.mp3").write_bytes(b"ID3")
    result = _cli("score", str(pack.pack_dir), str(tmp_path / "a.mp3"))
    assert result.returncode == 1 and "expected a .wav (integer PCM) or .npy" in result.stderr
