"""Zero-shot scoring from a pack: score semantics per family, prompts, batches and refusals.

The packs are tiny CLIP, SigLIP and CLAP checkpoints compiled once per session
(tests/zero_shot_packs.py); parity with the torch models is in tests/compile/test_zero_shot.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

from edgemm import errors
from edgemm.runtime.audio_features import read_wav
from edgemm.runtime.image import load_image
from edgemm.runtime.pack import load
from edgemm.runtime.zero_shot import ZeroShotScorer
from tests.media import freedesktop_sound, opencv_sample
from tests.zero_shot_packs import Compiled, compiled


def _pack(name: str, factory: pytest.TempPathFactory) -> Compiled:
    return compiled(name, factory.getbasetemp() / "zero-shot")


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Compiled:
    return _pack("clip", tmp_path_factory)


@pytest.fixture(scope="module")
def siglip(tmp_path_factory: pytest.TempPathFactory) -> Compiled:
    return _pack("siglip", tmp_path_factory)


@pytest.fixture(scope="module")
def clap(tmp_path_factory: pytest.TempPathFactory) -> Compiled:
    return _pack("clap-fused", tmp_path_factory)


def _frames() -> list[np.ndarray]:
    return [load_image(opencv_sample(name)) for name in ("fruits.jpg", "baboon.jpg")]


def test_softmax_families_share_probability_with_background(clip: Compiled) -> None:
    scorer = ZeroShotScorer(load(clip.pack_dir), precision="fp32")
    assert scorer.score_kind == "softmax" and scorer.background_prompts == ("a photo",)
    frames = scorer.embed_images(_frames())
    prompts = list(clip.prompts)
    scores = scorer.scores(frames, prompts)
    assert scores.shape == (2, 2) and ((scores > 0) & (scores < 1)).all()
    assert (scores.sum(axis=1) < 1).all()  # the rest went to "a photo"
    table = np.stack([scorer.prompt_embeddings([p])[0] for p in [*prompts, "a photo"]])
    logits = scorer.logit_scale * frames.astype(np.float64) @ table.T.astype(np.float64)
    expected = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(scores, expected[:, :2], atol=1e-6)
    # Prompts compete: a near-synonym takes a share of its neighbour's probability.
    crowded = scorer.scores(frames, [*prompts, "a person lying on a floor"])
    assert (crowded[:, 0] < scores[:, 0]).all()
    # A background prompt asked for is scored as a prompt, not twice.
    np.testing.assert_allclose(scorer.scores(frames, [*prompts, "a photo"]).sum(axis=1), 1.0, atol=1e-6)
    scorer.set_background([])
    np.testing.assert_allclose(scorer.scores(frames, prompts).sum(axis=1), 1.0, atol=1e-6)


def test_sigmoid_family_scores_each_prompt_alone(siglip: Compiled) -> None:
    scorer = ZeroShotScorer(load(siglip.pack_dir), precision="fp32")
    assert scorer.score_kind == "sigmoid" and scorer.background_prompts == ()
    frames = scorer.embed_images(_frames())
    alone = scorer.scores(frames, [siglip.prompts[0]])
    together = scorer.scores(frames, [*siglip.prompts, "a dog", "a person lying on a floor"])
    np.testing.assert_allclose(together[:, :1], alone, atol=1e-7)
    cos = frames.astype(np.float64) @ scorer.prompt_embeddings([siglip.prompts[0]]).T.astype(np.float64)
    np.testing.assert_allclose(alone, 1 / (1 + np.exp(-(scorer.logit_scale * cos + scorer.logit_bias))), atol=1e-7)
    assert (scorer.logit_scale, scorer.logit_bias) == pytest.approx((10.0, -10.0))
    scorer.set_background(["a photo"])  # ignored by sigmoid scores
    np.testing.assert_allclose(scorer.scores(frames, [siglip.prompts[0]]), alone, atol=0)


def test_frame_batches_and_image_inputs(clip: Compiled) -> None:
    scorer = load(clip.pack_dir).scorer()
    frames = _frames()
    batch = np.stack([np.asarray(f[:200, :200]) for f in frames])  # (n, H, W, 3) uint8 RGB, as from a camera
    from_list = scorer.embed_images([f[:200, :200] for f in frames])
    np.testing.assert_array_equal(scorer.embed_images(batch), from_list)
    assert from_list.shape == (2, scorer.dim) and from_list.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(from_list, axis=1), 1.0, atol=1e-5)
    path = opencv_sample("fruits.jpg")
    np.testing.assert_allclose(scorer.embed_images([path]), scorer.embed_images([frames[0]]), atol=1e-6)
    assert scorer.embed_images([]).shape == (0, scorer.dim)


def test_audio_windows(clap: Compiled) -> None:
    scorer = load(clap.pack_dir).scorer()
    assert scorer.modality == "audio" and scorer.component.audio is not None
    rate = scorer.component.audio.sample_rate_hz
    busy, file_rate = read_wav(freedesktop_sound("phone-outgoing-busy.oga"))
    assert file_rate == rate == 8000
    windows = [busy[i : i + rate] for i in range(0, len(busy) - rate, rate // 2)]  # 1 s windows every 0.5 s
    embeddings = scorer.embed_audio(windows, rate)
    assert embeddings.shape == (len(windows), scorer.dim)
    scores = scorer.scores(embeddings, [*clap.prompts, "a phone ringing"])
    assert scores.shape == (len(windows), 3) and ((scores >= 0) & (scores <= 1)).all()
    # In fp32 a window's score does not depend on its batch. (The int8/cpu variant quantizes
    # activations over the whole batch, so there it moves slightly with the batch's other windows.)
    fp32 = ZeroShotScorer(load(clap.pack_dir), precision="fp32")
    batch = fp32.scores(fp32.embed_audio(windows, rate), [*clap.prompts, "a phone ringing"])
    one = fp32.score_audio([windows[1]], rate, [*clap.prompts, "a phone ringing"])
    np.testing.assert_allclose(one[0], batch[1], atol=1e-6)
    with pytest.raises(errors.SampleRateMismatchError, match="expected audio at 8000 Hz"):
        scorer.embed_audio(windows, 16_000)
    with pytest.raises(errors.InputError, match="expected a list of clips, got one 1-D array"):
        scorer.embed_audio(busy, rate)  # type: ignore[arg-type]
    with pytest.raises(errors.InputError, match=r"scores audio .* use embed_audio"):
        scorer.embed_images(_frames())


def test_prompts_are_cached_and_the_text_tower_loads_only_for_new_ones(clip: Compiled) -> None:
    scorer = ZeroShotScorer(load(clip.pack_dir))
    frames = scorer.embed_images(_frames())
    scorer.scores(frames, list(clip.prompts))
    assert not scorer.text_tower_loaded  # compiled prompts and background come from the pack
    assert scorer.prompts == (*clip.prompts, "a photo")
    scorer.add_prompts(["a dog", clip.prompts[0]])
    assert scorer.text_tower_loaded and scorer.prompts[-1] == "a dog"
    np.testing.assert_allclose(scorer.prompt_embeddings(["a dog"]), scorer.embed_texts(["a dog"]), atol=0)
    assert scorer.describe().startswith("alerts: clip int8/cpu on onnxruntime[CPUExecutionProvider], text tower yes")


@pytest.mark.parametrize(
    ("prompts", "pattern"),
    [
        (["fire", ""], "expected text, got an empty prompt ''"),
        (["fire", " \t"], "expected text, got an empty prompt"),
        (["fire", 3], "prompt: expected a string, got int 3"),
        (["fire", "fire"], r"expected each prompt once, got \['fire'\] more than once"),
        ("fire", "expected a list of strings, got one string 'fire'"),
    ],
    ids=["empty", "blank", "not-text", "duplicate", "bare-string"],
)
def test_bad_prompts(clip: Compiled, prompts: object, pattern: str) -> None:
    scorer = load(clip.pack_dir).scorer()
    frames = scorer.embed_images(_frames()[:1])
    with pytest.raises(errors.PromptError, match=pattern):
        scorer.scores(frames, prompts)  # type: ignore[arg-type]
    with pytest.raises(errors.PromptError):
        scorer.add_prompts(prompts)  # type: ignore[arg-type]


def test_bad_embeddings_and_modality(clip: Compiled) -> None:
    scorer = load(clip.pack_dir).scorer()
    with pytest.raises(errors.InputError, match=rf"embeddings: expected shape \(n, {scorer.dim}\) .*, got \(3,\)"):
        scorer.scores(np.zeros(3, np.float32), list(clip.prompts))
    with pytest.raises(errors.InputError, match=r"scores images .* use embed_images"):
        scorer.embed_audio([np.zeros(100, np.float32)], 8000)


def test_component_selection(clip: Compiled, pack_dir: Path) -> None:
    caption_only = load(pack_dir)
    with pytest.raises(errors.PackError, match="has no zero-shot component"):
        caption_only.scorer()
    with pytest.raises(errors.PackError, match="component 'caption' is a caption component, not a zero-shot one"):
        caption_only.scorer("caption")
    pack = load(clip.pack_dir)
    assert pack.scorer() is pack.scorer() and pack.scorer().component.name == "alerts"
    with pytest.raises(errors.PackError, match="has no fp16 graphs for target cpu"):
        ZeroShotScorer(pack, precision="fp16")


def test_prompt_embeddings_file_is_plain_data(clip: Compiled) -> None:
    component = load(clip.pack_dir).scorer().component
    raw = (clip.pack_dir / component.files["prompt_embeddings"].path).read_bytes()
    assert raw.startswith(b"\x93NUMPY") and b"'descr': '<f4'" in raw[:128]


def test_scoring_modules_import_without_torch() -> None:
    code = (
        "import json, sys, edgemm.runtime.zero_shot, edgemm.runtime.audio_features\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'transformers'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []
