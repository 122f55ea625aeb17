"""CLAP features in numpy against transformers' ClapFeatureExtractor, on real event sounds.

The released checkpoints' extractor settings (48 kHz, 10 s, 64 mel bins; "rand_trunc" for
laion/clap-htsat-unfused, "fusion" for laion/clap-htsat-fused), on Debian's freedesktop sounds
recorded at 48 kHz. Audio shorter than the model's length is compared as is; longer audio against
the extractor with its random crops made the runtime's (first window / first start of each third).
"""

from __future__ import annotations

import wave
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

from edgemm import errors
from edgemm.compile.testing import CLAP_EXTRACTOR_FUSED, CLAP_EXTRACTOR_UNFUSED
from edgemm.compile.zero_shot import audio_preprocessing_from_extractor, runtime_crops
from edgemm.runtime.audio_features import clap_features, mel_filter_bank, read_wav
from tests.media import freedesktop_sound

MODES = {"rand_trunc": CLAP_EXTRACTOR_UNFUSED, "fusion": CLAP_EXTRACTOR_FUSED}

# 48 kHz recordings: 1.0 to 1.5 s, and one of 6.1 s.
SOUNDS_48K = ["audio-channel-front-left.oga", "message-new-instant.oga", "audio-test-signal.oga", "alarm-clock-elapsed.oga"]


def _extractor(settings: dict[str, Any], **changes: Any) -> Any:
    from transformers import ClapFeatureExtractor

    return ClapFeatureExtractor(**{**settings, **changes})


def _reference(extractor: Any, clips: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    with runtime_crops():
        out = extractor(clips, sampling_rate=extractor.sampling_rate, return_tensors="np")
    return np.asarray(out["input_features"]), np.asarray(out["is_longer"])


def _sound(name: str) -> np.ndarray:
    samples, rate = read_wav(freedesktop_sound(name))
    assert rate == 48_000
    return samples


@pytest.mark.parametrize("mode", list(MODES))
def test_released_settings_on_real_sounds_shorter_than_max_length(mode: str) -> None:
    extractor = _extractor(MODES[mode])
    spec = audio_preprocessing_from_extractor(extractor)
    clips = [_sound(name) for name in SOUNDS_48K]
    ours, is_longer = clap_features(clips, spec, sample_rate_hz=48_000)
    theirs, _ = _reference(extractor, clips)
    channels = 4 if mode == "fusion" else 1
    assert ours.shape == theirs.shape == (len(clips), channels, 1001, 64) and ours.dtype == np.float32
    assert np.abs(ours - theirs).max() <= 1e-4
    # No clip is longer than 10 s: edgemm says so (the extractor marks one at random in fusion mode).
    assert not is_longer.any()


@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("max_length_s", [1, 2])
def test_truncation_of_longer_real_audio(mode: str, max_length_s: int) -> None:
    # The 6.1 s alarm and a 1.4 s tone against 1 s and 2 s models: truncation, fusion chunks from
    # every third, the shrunk whole clip; and repeat-padding of the shorter ones.
    extractor = _extractor(MODES[mode], max_length_s=max_length_s)
    spec = audio_preprocessing_from_extractor(extractor)
    clips = [_sound("alarm-clock-elapsed.oga"), _sound("audio-channel-front-left.oga"), _sound("message-new-instant.oga")[:20_000]]
    ours, is_longer = clap_features(clips, spec)
    theirs, their_longer = _reference(extractor, clips)
    assert np.abs(ours - theirs).max() <= 1e-4
    expected = [True, max_length_s == 1, False]
    assert is_longer.ravel().tolist() == expected
    assert their_longer.ravel().tolist()[:2] == expected[:2]


@pytest.mark.parametrize("padding", ["repeatpad", "repeat", "pad"])
@pytest.mark.parametrize("mode", list(MODES))
def test_padding_modes_at_the_recordings_own_rate(padding: str, mode: str) -> None:
    # bell.oga is a 44.1 kHz recording of 0.14 s: an extractor at 44.1 kHz takes it as it is.
    samples, rate = read_wav(freedesktop_sound("bell.oga"))
    extractor = _extractor(MODES[mode], sampling_rate=rate, max_length_s=1, padding=padding)
    spec = audio_preprocessing_from_extractor(extractor)
    ours, _ = clap_features([samples], spec, sample_rate_hz=rate)
    theirs, _ = _reference(extractor, [samples])
    assert np.abs(ours - theirs).max() <= 1e-4


def test_fusion_corner_case_longer_by_less_than_a_hop() -> None:
    # Longer than max_length by less than a hop: one chunk covers it; the extractor stacks the
    # whole spectrogram 4 times and calls it not longer.
    extractor = _extractor(CLAP_EXTRACTOR_FUSED, max_length_s=1)
    spec = audio_preprocessing_from_extractor(extractor)
    tone = (0.3 * np.sin(2 * np.pi * 440 * np.arange(48_000 + 100) / 48_000)).astype(np.float32)
    ours, is_longer = clap_features([tone], spec)
    theirs, their_longer = _reference(extractor, [tone])
    assert np.abs(ours - theirs).max() <= 1e-4
    assert not is_longer[0, 0]
    assert their_longer[0, 0]  # none of the batch is longer: the extractor marks one (here the only one) anyway
    assert np.array_equal(ours[0, 0], ours[0, 3])


def test_batches_mix_lengths_and_int16() -> None:
    extractor = _extractor(CLAP_EXTRACTOR_UNFUSED, max_length_s=1)
    spec = audio_preprocessing_from_extractor(extractor)
    clip = _sound("audio-channel-front-left.oga")
    pcm = np.round(clip * 32767).astype(np.int16)
    ours, _ = clap_features([clip, clip[:5000], pcm], spec)
    theirs, _ = _reference(extractor, [clip, clip[:5000], pcm.astype(np.float64) / 32768.0])
    assert np.abs(ours - theirs).max() <= 1e-4
    assert clap_features([], spec)[0].shape == (0, 1, 101, 64)


@pytest.mark.parametrize(("scale", "norm"), [("htk", "none"), ("slaney", "slaney")])
def test_mel_filters_equal_transformers(scale: str, norm: str) -> None:
    from transformers.audio_utils import mel_filter_bank as reference

    ours = mel_filter_bank(513, 64, 50, 14_000, 48_000, scale=scale, norm=norm)
    theirs = reference(513, 64, 50, 14_000, 48_000, norm=None if norm == "none" else norm, mel_scale=scale)
    np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=1e-15)


# --- refusals -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("waveform", "rate", "error", "pattern"),
    [
        (np.zeros(100, np.float32), 16_000, errors.SampleRateMismatchError, "expected audio at 48000 Hz .*, got 16000 Hz; resample it first"),
        (np.zeros((100, 2), np.float32), 48_000, errors.AudioError, r"expected a mono waveform of shape \(n,\), got shape \(100, 2\) \(stereo\?"),
        (np.zeros(0, np.float32), 48_000, errors.AudioError, "expected at least one sample, got an empty array"),
        (np.array([0.0, np.nan], np.float32), 48_000, errors.AudioError, "expected finite samples"),
        (np.zeros(10, np.int32), 48_000, errors.AudioError, "expected float samples .*, got dtype int32"),
        ([0.0, 0.1], 48_000, errors.AudioError, "expected a numpy array of samples, shape \\(n,\\), got list"),
    ],
    ids=["rate", "stereo", "empty", "nan", "int32", "list"],
)
def test_unusable_audio_is_refused(waveform: Any, rate: int, error: type[Exception], pattern: str) -> None:
    spec = audio_preprocessing_from_extractor(_extractor(CLAP_EXTRACTOR_UNFUSED))
    with pytest.raises(error, match=pattern):
        clap_features([waveform], spec, sample_rate_hz=rate)


# --- WAV files ------------------------------------------------------------------------------------


def _write_wav(path: Path, frames: bytes, width: int, channels: int = 1, rate: int = 8000) -> Path:
    with wave.open(str(path), "wb") as writer:
        writer.setnchannels(channels)
        writer.setsampwidth(width)
        writer.setframerate(rate)
        writer.writeframes(frames)
    return path


@pytest.mark.parametrize(
    ("width", "frames", "expected"),
    [
        (1, bytes([0, 128, 255]), [-1.0, 0.0, 127 / 128]),
        (2, np.array([-32768, 0, 16384], "<i2").tobytes(), [-1.0, 0.0, 0.5]),
        (3, bytes([0x00, 0x00, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00, 0x40]), [-1.0, 0.0, 0.5]),
        (4, np.array([-(2**31), 0, 2**30], "<i4").tobytes(), [-1.0, 0.0, 0.5]),
    ],
    ids=["8-bit", "16-bit", "24-bit", "32-bit"],
)
def test_read_wav_integer_pcm(tmp_path: Path, width: int, frames: bytes, expected: list[float]) -> None:
    samples, rate = read_wav(_write_wav(tmp_path / "a.wav", frames, width))
    assert rate == 8000 and samples.dtype == np.float32
    np.testing.assert_allclose(samples, expected, atol=1e-7)


def test_read_wav_stereo_and_real_files(tmp_path: Path) -> None:
    pcm = np.array([[1000, 3000], [-2000, 0]], "<i2")
    path = _write_wav(tmp_path / "s.wav", pcm.tobytes(), 2, channels=2)
    mono, _ = read_wav(path)
    np.testing.assert_allclose(mono, [2000 / 32768, -1000 / 32768], atol=1e-7)
    assert read_wav(path, mono=False)[0].shape == (2, 2)
    stereo, rate = read_wav(freedesktop_sound("alarm-clock-elapsed.oga"), mono=False)
    assert rate == 48_000 and stereo.shape[1] == 2 and 6.0 < stereo.shape[0] / rate < 6.2
    assert 0.1 < np.abs(stereo).max() <= 1.0


def test_read_wav_refusals(tmp_path: Path) -> None:
    with pytest.raises(errors.AudioError, match="expected a WAV file, found nothing"):
        read_wav(tmp_path / "missing.wav")
    (tmp_path / "text.wav").write_text("not audio")
    with pytest.raises(errors.AudioError, match="expected an integer PCM WAV file"):
        read_wav(tmp_path / "text.wav")
    # IEEE float WAV (format 3): the wave module reads integer PCM only.
    header = b"RIFF" + (36 + 8).to_bytes(4, "little") + b"WAVEfmt " + (16).to_bytes(4, "little")
    header += (3).to_bytes(2, "little") + (1).to_bytes(2, "little") + (8000).to_bytes(4, "little") + (32000).to_bytes(4, "little")
    header += (4).to_bytes(2, "little") + (32).to_bytes(2, "little") + b"data" + (8).to_bytes(4, "little") + np.zeros(2, "<f4").tobytes()
    (tmp_path / "float.wav").write_bytes(header)
    with pytest.raises(errors.AudioError, match="expected an integer PCM WAV file"):
        read_wav(tmp_path / "float.wav")
    with pytest.raises(errors.AudioError, match="found none"):
        read_wav(_write_wav(tmp_path / "empty.wav", b"", 2))
