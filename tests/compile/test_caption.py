"""Captioner compile and run, per family, on tiny random checkpoints built in the test.

Every check compares the pack (ONNX Runtime, numpy decoding) with the source torch model:
teacher-forced logits, greedy and beam tokens against ``generate()``, prompts, variants.
"""

from __future__ import annotations

import dataclasses
import json
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
from edgemm.compile.caption import compile_captioner, load_captioner, teacher_forced_logits  # noqa: E402
from edgemm.compile.config import CompileConfig, LoadConfig, ValidateConfig, VariantConfig  # noqa: E402
from edgemm.runtime.captioner import Captioner  # noqa: E402
from edgemm.runtime.image import load_image, preprocess  # noqa: E402
from edgemm.runtime.onnx_graph import describe_onnx  # noqa: E402
from edgemm.runtime.pack import load, read_manifest  # noqa: E402
from tests.media import opencv_sample  # noqa: E402

PHOTOS = ["fruits.jpg", "baboon.jpg"]

# family id -> (builder, variants compiled, a prompt the family takes or None)
FAMILIES: dict[str, tuple[Any, tuple[VariantConfig, ...], str | None]] = {
    "blip": (models.tiny_blip, (VariantConfig("int8", "cpu"), VariantConfig("fp16", "tensorrt"), VariantConfig("int8", "tensorrt")), "a picture of"),
    "vit-gpt2": (models.tiny_vit_gpt2, (VariantConfig("int8", "cpu"), VariantConfig("fp16", "tensorrt")), None),
    "vit-bert": (models.tiny_vit_bert, (VariantConfig("int8", "cpu"), VariantConfig("fp16", "tensorrt")), None),
    "florence2": (models.tiny_florence2, (VariantConfig("int8", "cpu"), VariantConfig("fp16", "tensorrt")), "<DETAILED_CAPTION>"),
}


@dataclasses.dataclass
class Compiled:
    name: str
    model_dir: Path
    pack_dir: Path
    family: Any


@pytest.fixture(scope="module", params=list(FAMILIES))
def compiled(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Compiled:
    builder, variants, _ = FAMILIES[request.param]
    root = tmp_path_factory.mktemp(request.param)
    model_dir = builder(root / "model")
    config = CompileConfig(load=LoadConfig(str(model_dir), local_files_only=True), out=str(root / "pack"), variants=variants)
    compile_captioner(config, show_progress=False)
    family = load_captioner(str(model_dir), local_files_only=True)
    return Compiled(request.param, model_dir, root / "pack", family)


def _photos() -> list[np.ndarray]:
    return [load_image(opencv_sample(name)) for name in PHOTOS]


def _reference(family: Any, images: list[np.ndarray], prompt: str | None, settings: Any, num_beams: int, max_new: int) -> list[tuple[int, ...]]:
    """The source model's generate() on the same images, trimmed to the new tokens (EOS included)."""
    pixels = torch.from_numpy(np.asarray(family.image_processor(images=images, return_tensors="np")["pixel_values"], dtype=np.float32))
    kwargs = {
        "do_sample": False,
        "num_beams": num_beams,
        "max_new_tokens": max_new,
        "repetition_penalty": settings.repetition_penalty,
        "no_repeat_ngram_size": settings.no_repeat_ngram_size,
        "length_penalty": settings.length_penalty,
        "early_stopping": settings.early_stopping,
        "forced_bos_token_id": settings.forced_bos_token_id,
        "forced_eos_token_id": settings.forced_eos_token_id,
        "eos_token_id": list(settings.eos_token_ids),
        "pad_token_id": settings.pad_token_id,
    }
    sequences = family.reference_generate(pixels, prompt, kwargs).numpy()
    out = []
    for row in sequences[:, family.generated_offset(prompt) :].tolist():
        tokens: list[int] = []
        for token in row:
            tokens.append(int(token))
            if token in settings.eos_token_ids:
                break
        out.append(tuple(tokens))
    return out


def test_fp32_validation_recorded_and_passed(compiled: Compiled) -> None:
    component = load(compiled.pack_dir).component("caption")
    fp32 = component.validation[0]
    assert fp32.subject == "caption[fp32/any]" and fp32.reference == "torch fp32"
    assert fp32.passed
    assert fp32.metrics["logits_max_abs_diff"] < 1e-4
    assert fp32.metrics["pixel_values_max_abs_diff"] <= 1e-6
    assert fp32.metrics["greedy_exact_match"] == 1.0
    assert component.kv_cache is not None and component.kv_cache.convention == "edgemm-kv-1"


def test_step_graph_has_kv_cache_io_and_no_control_flow(compiled: Compiled) -> None:
    component = load(compiled.pack_dir).component("caption")
    for graph in component.graphs:
        info = describe_onnx(compiled.pack_dir / graph.file.path)
        assert not {"If", "Loop", "Scan"} & set(info.ops), graph.variant
    step = component.graph("decoder_step")
    names = [s.name for s in step.inputs]
    assert names[0] == "input_ids" and "past.0.key" in names and "cross.0.value" in names
    assert step.input("past.0.key").shape[0] == step.input("input_ids").shape[0]  # one symbolic batch axis
    assert step.input("past.0.key").shape[2] != step.input("cross.0.key").shape[2]  # past and encoder lengths differ
    assert [s.name for s in step.outputs][:2] == ["logits", "present.0.key"]


def test_teacher_forced_logits_match_torch_on_real_photos(compiled: Compiled) -> None:
    family = compiled.family
    captioner = Captioner(load(compiled.pack_dir), precision="fp32")
    images = _photos()
    prompt = captioner.component.generation.prompt
    prefix, encoder_prompt = captioner._prompts(prompt)
    cross = captioner.encode(preprocess(images, captioner.component.image), encoder_prompt)
    rng = np.random.default_rng(0)
    vocab = captioner.tokenizer.vocab_size
    tokens = rng.integers(3, min(vocab, 100), size=(len(images), 6)).astype(np.int64)
    ours = teacher_forced_logits(captioner, cross, prefix, tokens)
    decoder_ids = torch.from_numpy(np.concatenate([np.tile(np.asarray(prefix), (len(images), 1)), tokens[:, :-1]], axis=1))
    pixels = torch.from_numpy(np.asarray(family.image_processor(images=images, return_tensors="np")["pixel_values"], dtype=np.float32))
    theirs = family.reference_logits(pixels, prompt, decoder_ids).numpy()[:, len(prefix) - 1 :, :]
    assert ours.shape == theirs.shape
    assert np.abs(ours - theirs).max() < 1e-4


@pytest.mark.parametrize("num_beams", [1, 3])
def test_tokens_equal_generate(compiled: Compiled, num_beams: int) -> None:
    pack = load(compiled.pack_dir, precision="fp32")
    captioner = pack.captioner()
    settings = captioner.component.generation
    images = _photos()
    ours = [c.tokens for c in captioner.caption_batch(images, num_beams=num_beams, max_new_tokens=12)]
    theirs = _reference(compiled.family, images, settings.prompt, settings, num_beams, 12)
    assert ours == theirs
    assert all(len(t) > 0 for t in ours)


def test_prompts(compiled: Compiled) -> None:
    _, _, prompt = FAMILIES[compiled.name]
    captioner = load(compiled.pack_dir, precision="fp32").captioner()
    images = _photos()[:1]
    if prompt is None:
        with pytest.raises(errors.InputError, match="takes no text prompt"):
            captioner.caption(images[0], prompt="a photo of")
        return
    caption = captioner.caption(images[0], prompt=prompt, max_new_tokens=10)
    assert caption.tokens == _reference(compiled.family, images, prompt, captioner.component.generation, 1, 10)[0]
    if captioner.prompt_mode == "decoder":
        assert caption.text.startswith(prompt)  # BLIP continues the prompt, as transformers returns it
    else:
        with pytest.raises(errors.InputError, match="unknown task prompt '<OD>'"):
            captioner.caption(images[0], prompt="<OD>")


def test_variants_load_decode_and_are_validated(compiled: Compiled) -> None:
    _, variants, _ = FAMILIES[compiled.name]
    component = load(compiled.pack_dir).component("caption")
    results = {v.subject: v for v in component.validation}
    for variant in variants:
        target = "gpu" if variant.precision == "fp16" else variant.target
        result = results[f"caption[{variant.precision}/{target}]"]
        assert result.passed and result.reference == "pack fp32"
        assert result.metrics["token_agreement"] >= 0.9
        captioner = Captioner(load(compiled.pack_dir), precision=variant.precision, graph_target=target)
        caption = captioner.caption(_photos()[0], max_new_tokens=8)
        assert 0 < len(caption.tokens) <= 8
        graph = component.graph("decoder_step", variant.precision, target)
        ops = set(describe_onnx(compiled.pack_dir / graph.file.path).ops)
        if variant.precision == "fp16":
            assert "Cast" in ops and graph.quantization is None
        elif variant.target == "cpu":
            assert graph.quantization == "ort-dynamic-u8s8" and ops & {"DynamicQuantizeLinear", "MatMulInteger", "com.microsoft::DynamicQuantizeMatMul"}
        else:
            assert graph.quantization == "qdq-s8s8-symmetric"
            _assert_symmetric_qdq(compiled.pack_dir / graph.file.path)


def _assert_symmetric_qdq(path: Path) -> None:
    onnx = pytest.importorskip("onnx")
    from onnx import numpy_helper

    model = onnx.load(str(path))
    initializers = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    zero_points = [n.input[2] for n in model.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear") and len(n.input) > 2]
    assert zero_points, "expected explicit Q/DQ nodes"
    for name in zero_points:
        assert initializers[name].dtype == np.int8 and not initializers[name].any(), name


def test_auto_precision_and_refusals(compiled: Compiled) -> None:
    _, variants, _ = FAMILIES[compiled.name]
    pack = load(compiled.pack_dir)
    expected = "int8" if VariantConfig("int8", "cpu") in variants else "fp32"
    assert pack.captioner().precision == expected
    assert pack.captioner().describe().endswith(f"{expected}/cpu on onnxruntime[CPUExecutionProvider]")
    with pytest.raises(errors.PackError, match="has no fp16 graphs for target cpu"):
        Captioner(pack, precision="fp16")


# --- compile errors and pack handling (BLIP only: one family is enough) ------------------------------


@pytest.fixture(scope="module")
def blip_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return models.tiny_blip(tmp_path_factory.mktemp("blip-model") / "model")


def test_unsupported_architecture_lists_supported(tmp_path: Path) -> None:
    from transformers import GPT2Config, GPT2LMHeadModel

    GPT2LMHeadModel(GPT2Config(n_embd=16, n_layer=1, n_head=2, vocab_size=50)).save_pretrained(tmp_path / "gpt2")
    config = CompileConfig(load=LoadConfig(str(tmp_path / "gpt2"), local_files_only=True), out=str(tmp_path / "pack"))
    with pytest.raises(errors.UnsupportedModelError, match=r"'GPT2LMHeadModel' is not a captioner .* BlipForConditionalGeneration, VisionEncoderDecoderModel, Florence2ForConditionalGeneration"):
        compile_captioner(config, show_progress=False)
    assert not (tmp_path / "pack").exists()


def test_missing_checkpoint(tmp_path: Path) -> None:
    config = CompileConfig(load=LoadConfig(str(tmp_path / "nope"), local_files_only=True), out=str(tmp_path / "pack"))
    with pytest.raises(errors.CompileError, match="could not read the model config of"):
        compile_captioner(config, show_progress=False)


def test_failed_validation_leaves_pack_untouched(blip_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "pack"
    base = CompileConfig(load=LoadConfig(str(blip_dir), local_files_only=True), out=str(out), component="first", validate=ValidateConfig(num_images=2))
    compile_captioner(base, show_progress=False)
    before = (out / "manifest.json").read_bytes()
    strict = base.replace(component="second", validate=ValidateConfig(num_images=2, logits_tolerance=1e-12))
    with pytest.raises(errors.ValidationFailedError, match="fp32 export is outside tolerance: logits_max_abs_diff="):
        compile_captioner(strict, show_progress=False)
    assert (out / "manifest.json").read_bytes() == before
    assert sorted(p.name for p in out.iterdir()) == ["first", "manifest.json"]
    assert not list(tmp_path.glob(".pack.staging-*"))


def test_components_are_added_and_replaced_individually(blip_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "pack"
    config = CompileConfig(load=LoadConfig(str(blip_dir), local_files_only=True), out=str(out), validate=ValidateConfig(num_images=2))
    compile_captioner(config.replace(component="day"), show_progress=False)
    compile_captioner(config.replace(component="night", export=dataclasses.replace(config.export, prompt="a picture of")), show_progress=False)
    manifest = read_manifest(out)
    assert [c.name for c in manifest.components] == ["day", "night"]
    assert manifest.components[1].generation.prompt == "a picture of"
    compile_captioner(config.replace(component="day", variants=(VariantConfig("int8", "cpu"),)), show_progress=False)
    manifest = read_manifest(out)
    assert [c.name for c in manifest.components] == ["night", "day"]
    assert [g.variant for g in manifest.components[1].graphs][-1] == "decoder_step[int8/cpu]"
    assert manifest.components[1].provenance.recipe["variants"] == [{"precision": "int8", "target": "cpu"}]
    load(out)  # every file of both components verifies


def test_config_round_trips_and_rejects_bad_values() -> None:
    config = CompileConfig(load=LoadConfig("some/model"), out="packs/x", variants=(VariantConfig("int8", "tensorrt"),), calibration="frames/")
    assert CompileConfig.from_json(json.loads(json.dumps(config.to_json()))) == config
    with pytest.raises(errors.CompileError, match="fp16 for target cpu"):
        VariantConfig("fp16", "cpu")
    with pytest.raises(errors.CompileError, match=r"min_agreement: expected a fraction in \[0, 1\], got 1.5"):
        ValidateConfig(min_agreement=1.5)
    with pytest.raises(errors.CompileError, match=r"compile config\.load\.model: expected str, got int 3"):
        CompileConfig.from_json({"load": {"model": 3}, "out": "x"})


# --- the command line -----------------------------------------------------------------------------


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "edgemm", *args], capture_output=True, text=True, timeout=600)


def test_cli_compile_and_caption(blip_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "pack"
    result = _cli("compile", str(blip_dir), "--out", str(out), "--precision", "int8", "--offline", "--validation-images", "2")
    assert result.returncode == 0, result.stderr
    assert "[2/4] exporting fp32 graphs" in result.stderr and "PASS caption[int8/cpu] vs pack fp32" in result.stderr
    assert "wrote component 'caption' (blip)" in result.stdout
    bad = tmp_path / "empty.jpg"
    bad.write_bytes(b"")
    images = [str(opencv_sample(name)) for name in PHOTOS]
    result = _cli("caption", str(out), images[0], str(bad), images[1], "--json", "--max-new-tokens", "5")
    assert result.returncode == 1  # one image failed, the others were captioned
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["image"] for r in records] == images
    assert all(r["text"] and r["latency_ms"] > 0 and 0 < len(r["tokens"]) <= 5 and r["precision"] == "int8" for r in records)
    assert "empty.jpg" in result.stderr and "empty" in result.stderr.lower()
    result = _cli("caption", str(out), images[0], "--precision", "fp16")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == ["edgemm: error: component 'caption' has no fp16 graphs for target cpu; it has ['fp32', 'int8'] (fp16 and TensorRT int8 graphs are for GPUs; compile with --precision int8 --target cpu)"]


def test_cli_compile_fp16_needs_gpu_target(blip_dir: Path, tmp_path: Path) -> None:
    result = _cli("compile", str(blip_dir), "--out", str(tmp_path / "p"), "--precision", "fp16", "--offline")
    assert result.returncode == 1
    assert result.stderr.strip() == "edgemm: error: --precision fp16 is for GPUs: add --target tensorrt (the CPU backend runs int8 or fp32)"


@pytest.mark.parametrize(
    ("content", "pattern"),
    [(b"", "empty"), (b"\x89PNG\r\n\x1a\n garbage", "cannot be read as an image|cannot identify")],
    ids=["zero-bytes", "corrupt"],
)
def test_pack_caption_bad_image(compiled: Compiled, tmp_path: Path, content: bytes, pattern: str) -> None:
    path = tmp_path / "bad.png"
    path.write_bytes(content)
    with pytest.raises(errors.ImageError, match=pattern):
        load(compiled.pack_dir).caption(path)


def test_calibration_folder_gives_static_int8(blip_dir: Path, tmp_path: Path) -> None:
    import shutil

    frames = tmp_path / "frames"
    frames.mkdir()
    for name in ("fruits.jpg", "baboon.jpg", "messi5.jpg", "HappyFish.jpg"):
        shutil.copy(opencv_sample(name), frames / name)
    (frames / "notes.txt").write_text("not an image: skipped by suffix")
    config = CompileConfig(
        load=LoadConfig(str(blip_dir), local_files_only=True),
        out=str(tmp_path / "pack"),
        variants=(VariantConfig("int8", "cpu"),),
        calibration=str(frames),
        num_calibration=4,
        validate=ValidateConfig(num_images=3, min_agreement=0.8),
    )
    pack = compile_captioner(config, show_progress=False)
    component = pack.component("caption")
    assert component.graph("decoder_step", "int8", "cpu").quantization == "ort-static-u8s8"
    assert component.graph("encoder", "int8", "cpu").quantization == "ort-static-u8s8"
    int8 = next(v for v in component.validation if v.subject == "caption[int8/cpu]")
    assert int8.num_samples == 3
    assert int8.passed
    assert len(pack.caption(frames / "fruits.jpg").tokens) > 0


def test_calibration_folder_errors(blip_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    config = CompileConfig(load=LoadConfig(str(blip_dir), local_files_only=True), out=str(tmp_path / "pack"), calibration=str(tmp_path / "empty"))
    with pytest.raises(errors.CompileError, match=r"calibration folder .*empty: expected images \(.jpg"):
        compile_captioner(config, show_progress=False)
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "a.jpg").write_bytes(b"nope")
    with pytest.raises(errors.CompileError, match=r"calibration image unusable: .*a\.jpg"):
        compile_captioner(config.replace(calibration=str(tmp_path / "broken")), show_progress=False)


@pytest.mark.parametrize("name", ["blip", "vit-gpt2", "florence2"])
def test_int8_cpu_quantizes_every_constant_weight_matmul(name: str, tmp_path_factory: pytest.TempPathFactory) -> None:
    """The tied LM head reads the embedding through a Transpose; it must be quantized too."""
    onnx = pytest.importorskip("onnx")
    builder, _, _ = FAMILIES[name]
    root = tmp_path_factory.mktemp(f"quant-{name}")
    config = CompileConfig(
        load=LoadConfig(str(builder(root / "model")), local_files_only=True),
        out=str(root / "pack"),
        variants=(VariantConfig("int8", "cpu"),),
        validate=ValidateConfig(num_images=2, min_agreement=0.5),
    )
    pack = compile_captioner(config, show_progress=False)
    for role in ("encoder", "decoder_step"):
        graph = pack.component("caption").graph(role, "int8", "cpu")
        model = onnx.load(str(pack.path_of(graph.file)))
        constants = {i.name for i in model.graph.initializer}
        constants |= {n.output[0] for n in model.graph.node if n.op_type == "Transpose" and n.input[0] in constants}
        float_weights = [n.name for n in model.graph.node if n.op_type in ("MatMul", "Gemm") and n.input[1] in constants]
        assert not float_weights, (role, float_weights)
