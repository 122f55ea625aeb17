"""``edgemm compile`` of a Whisper checkpoint and ``edgemm transcribe``, run as real subprocesses.

The pack is a tiny random English-only Whisper compiled through the command line; the audio is
real: LibriVox speech (16-kHz WAV), a freedesktop event sound (44.1-kHz stereo Ogg Vorbis, decoded
and resampled on the way in) and a 40-s file, transcribed in 30-s windows.
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
soundfile = pytest.importorskip("soundfile")

from edgemm.compile import testing as models  # noqa: E402
from edgemm.runtime.audio_sources import read_audio  # noqa: E402
from edgemm.runtime.pack import load  # noqa: E402
from tests.media import FREEDESKTOP_SOUNDS, media  # noqa: E402

SPEECH = "pocketsphinx-testdata/usr/share/pocketsphinx/test/data/librivox/sense_and_sensibility_01_austen_64kb-0880.wav"
BELL = f"{FREEDESKTOP_SOUNDS}/bell.oga"


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "edgemm", *args], capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def pack_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cli-whisper")
    model = models.tiny_whisper(root / "model")
    out = root / "pack"
    result = _cli("compile", str(model), "--out", str(out), "--precision", "int8", "--offline", "--validation-images", "2")
    assert result.returncode == 0, result.stderr
    assert "exporting fp32 graphs (encoder, cross-attention keys/values, decoder step with KV cache)" in result.stderr
    assert "PASS asr[fp32/any] vs torch fp32" in result.stderr and "PASS asr[int8/cpu] vs pack fp32" in result.stderr
    assert result.stdout.splitlines() == [
        f"wrote component 'speech' (whisper) to {out.resolve()}: encoder[fp32/any], cross_kv[fp32/any], decoder_step[fp32/any], "
        "encoder[int8/cpu], cross_kv[int8/cpu], decoder_step[int8/cpu]"
    ]
    return out


@pytest.fixture(scope="module")
def long_wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """40 s: the speech clip, silence, the clip again from 31 s (in the second window)."""
    samples, rate = read_audio(media(SPEECH))
    audio = np.zeros(40 * rate, np.float32)
    audio[: samples.size] = samples
    audio[31 * rate : 31 * rate + samples.size] = samples
    path = tmp_path_factory.mktemp("audio") / "long.wav"
    soundfile.write(str(path), audio, rate, subtype="PCM_16")
    return path


def test_transcribe_json_equals_the_api(pack_dir: Path, long_wav: Path, tmp_path: Path) -> None:
    bad = tmp_path / "empty.wav"
    bad.write_bytes(b"")
    files = [str(media(SPEECH)), str(bad), str(media(BELL)), str(long_wav)]
    result = _cli("transcribe", str(pack_dir), *files, "--json", "--max-new-tokens", "6", "--no-speech-threshold", "-1")
    assert result.returncode == 1  # one file failed, the others were transcribed
    assert "empty.wav" in result.stderr and result.stderr.count("edgemm: error:") == 1
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(r["file"], r["start_s"]) for r in records] == [(files[0], 0.0), (files[2], 0.0), (files[3], 0.0), (files[3], 30.0)]
    assert [r["end_s"] for r in records] == pytest.approx([2.99, 6151 / 44100, 30.0, 40.0], abs=1e-3)
    assert all(r["precision"] == "int8" and r["backend"] == "onnxruntime[CPUExecutionProvider]" and r["language"] is None for r in records)
    assert all(0 < len(r["tokens"]) <= 6 and 0.0 <= r["no_speech_prob"] <= 1.0 and r["avg_logprob"] < 0 for r in records)
    transcriber = load(pack_dir).transcriber()
    for record, (path, start_s) in zip(records, [(files[0], 0), (files[2], 0), (files[3], 0), (files[3], 30)]):
        samples, _ = read_audio(path, 16_000)
        expected = transcriber.transcribe(samples[start_s * 16_000 : (start_s + 30) * 16_000], max_new_tokens=6, no_speech_threshold=None)
        assert (record["tokens"], record["text"]) == (list(expected.tokens), expected.text)
        assert record["no_speech_prob"] == pytest.approx(expected.no_speech_prob, abs=1e-6)


def test_transcribe_text_and_silence(pack_dir: Path, long_wav: Path) -> None:
    result = _cli("transcribe", str(pack_dir), str(media(SPEECH)), str(long_wav), "--max-new-tokens", "4", "--no-speech-threshold", "0", "--logprob-threshold", "0")
    assert result.returncode == 0, result.stderr
    assert result.stderr.startswith("# speech: whisper int8/cpu on onnxruntime[CPUExecutionProvider]")
    lines = result.stdout.splitlines()
    # Every window is judged silent: any no-speech probability is above 0, every avg log-probability below 0.
    assert [line.rsplit("  (", 1)[0] for line in lines] == [
        f"{media(SPEECH)}: (no speech)",
        f"{long_wav} [0.0-30.0 s]: (no speech)",
        f"{long_wav} [30.0-40.0 s]: (no speech)",
    ]
    assert all(line.endswith(" ms)") for line in lines)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--task", "translate"], "edgemm: error: component 'speech' is an English-only model: it transcribes, it cannot 'translate'"),
        (["--language", "de"], "edgemm: error: component 'speech' is an English-only model; got language 'de'"),
        (["--precision", "fp16"], "edgemm: error: component 'speech' has no fp16 graphs for target cpu; it has ['fp32', 'int8']"),
    ],
    ids=["translate", "language", "precision"],
)
def test_transcribe_refusals(pack_dir: Path, args: list[str], message: str) -> None:
    result = _cli("transcribe", str(pack_dir), str(media(SPEECH)), *args)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith(message)


def test_compile_refuses_prompts_for_whisper(tmp_path: Path) -> None:
    model = models.tiny_whisper(tmp_path / "model")
    result = _cli("compile", str(model), "--out", str(tmp_path / "pack"), "--prompt", "hello", "--offline")
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "edgemm: error: Whisper takes no --prompt, --prompts, --background or --no-text-tower (the language and task are chosen when transcribing)"
    )
