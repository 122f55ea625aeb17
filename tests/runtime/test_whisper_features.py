"""Whisper log-mel features in numpy against transformers' WhisperFeatureExtractor.

Real speech (LibriVox recordings at 16 kHz from Debian's pocketsphinx test data), silence, a very
quiet signal, a pure tone (the STFT's extremes: floors and a single peak) and audio longer than the
30-s window; the extractor's released settings (80 mel bins) and large-v3's (128).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

from edgemm import errors
from edgemm.compile.testing import WHISPER_EXTRACTOR
from edgemm.runtime.audio_features import read_wav, whisper_features, whisper_frames
from edgemm.runtime.pack import AudioPreprocessing
from tests.media import media

LIBRIVOX = "pocketsphinx-testdata/usr/share/pocketsphinx/test/data/librivox"
CLIPS = ["sense_and_sensibility_01_austen_64kb-0870.wav", "sense_and_sensibility_01_austen_64kb-0880.wav", "sense_and_sensibility_01_austen_64kb-0930.wav"]
RATE = 16_000


def speech(name: str) -> np.ndarray:
    samples, rate = read_wav(media(f"{LIBRIVOX}/{name}"))
    assert rate == RATE
    return samples


def _spec(n_mels: int = 80) -> AudioPreprocessing:
    return AudioPreprocessing(
        sample_rate_hz=RATE,
        feature="log_mel_whisper",
        n_fft=400,
        hop_length=160,
        n_mels=n_mels,
        f_min_hz=0.0,
        f_max_hz=8000.0,
        max_length_s=30.0,
    )


def _reference(clips: list[np.ndarray], **changes: Any) -> np.ndarray:
    from transformers import WhisperFeatureExtractor

    extractor = WhisperFeatureExtractor(**{**WHISPER_EXTRACTOR, **changes})
    return np.asarray(extractor(clips, sampling_rate=RATE, return_tensors="np")["input_features"])


def test_real_speech_equals_the_extractor() -> None:
    clips = [speech(name) for name in CLIPS]
    ours = whisper_features(clips, _spec(), sample_rate_hz=RATE)
    theirs = _reference(clips)
    assert ours.shape == theirs.shape == (3, 80, 3000) and ours.dtype == np.float32
    assert np.abs(ours - theirs).max() <= 1e-4
    # Speech is there: the frames of the 7.1-s clip are not all at the clamp floor, its padding is.
    spoken, padding = ours[0, :, :700], ours[0, :, 720:]
    assert spoken.std() > 0.1 and np.ptp(padding) < 1e-6


def test_128_mel_bins_as_large_v3() -> None:
    clips = [speech(CLIPS[1])]
    ours = whisper_features(clips, _spec(128))
    theirs = _reference(clips, feature_size=128)
    assert ours.shape == (1, 128, 3000)
    assert np.abs(ours - theirs).max() <= 1e-4


@pytest.mark.parametrize(
    ("kind", "make"),
    [
        ("silence", lambda rng: np.zeros(RATE, np.float32)),
        ("quiet-noise", lambda rng: (1e-4 * rng.standard_normal(2 * RATE)).astype(np.float32)),
        ("tone", lambda rng: np.sin(2 * np.pi * 440 * np.arange(3 * RATE) / RATE).astype(np.float32)),
        ("longer-than-30s", lambda rng: (0.3 * rng.standard_normal(31 * RATE)).astype(np.float32)),
    ],
)
def test_edge_signals_equal_the_extractor(kind: str, make: Any) -> None:
    clip = make(np.random.default_rng(0))
    ours = whisper_features([clip], _spec())
    theirs = _reference([clip])
    assert np.abs(ours - theirs).max() <= 1e-4, kind
    if kind == "silence":
        assert np.all(ours == -1.5)  # log10(1e-10) = -10, scaled (x + 4) / 4


def test_int16_pcm_batch_and_frames() -> None:
    clip = speech(CLIPS[1])
    pcm = np.round(clip * 32767).astype(np.int16)
    batch = whisper_features([clip, pcm, clip[: RATE // 2]], _spec())
    assert whisper_frames(_spec()) == 3000
    assert np.abs(batch[0] - batch[1]).max() < 1e-3  # int16 is scaled by 1/32768, within quantization
    assert np.array_equal(batch[2], whisper_features([clip[: RATE // 2]], _spec())[0])  # rows are independent


@pytest.mark.parametrize(
    ("waveform", "rate", "error", "pattern"),
    [
        (np.zeros(RATE, np.float32), 44_100, errors.SampleRateMismatchError, "expected audio at 16000 Hz .* got 44100 Hz"),
        (np.zeros((RATE, 2), np.float32), RATE, errors.AudioError, r"expected a mono waveform of shape \(n,\), got shape \(16000, 2\)"),
        (np.zeros(0, np.float32), RATE, errors.AudioError, "expected at least one sample"),
        (np.array([0.0, np.nan], np.float32), RATE, errors.AudioError, "expected finite samples"),
    ],
    ids=["rate", "stereo", "empty", "nan"],
)
def test_refusals(waveform: np.ndarray, rate: int, error: type[Exception], pattern: str) -> None:
    with pytest.raises(error, match=pattern):
        whisper_features([waveform], _spec(), sample_rate_hz=rate)


def test_not_a_whisper_spec() -> None:
    spec = AudioPreprocessing(sample_rate_hz=RATE, feature="log_mel_clap", n_fft=400, hop_length=160, n_mels=80, max_length_s=30.0)
    with pytest.raises(errors.ManifestError, match="expected feature 'log_mel_whisper'"):
        whisper_features([np.zeros(RATE, np.float32)], spec)
