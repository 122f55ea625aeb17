"""Audio sources: files from Debian's sound theme, resampling quality, and a real PulseAudio virtual microphone."""

from __future__ import annotations

import importlib.abc
import itertools
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgemm.errors import (
    AudioError,
    DependencyMissingError,
    InvalidSourceError,
    SourceError,
    SourceUnavailableError,
)
from edgemm.runtime.audio_sources import (
    AudioChunk,
    StreamResampler,
    open_audio_source,
    read_audio,
    resample,
)
from tests.media import FREEDESKTOP_SOUNDS, freedesktop_sound, media
from tests.servers.mosquitto import wait_until
from tests.servers.pulse import PulseAudio, portaudio_through, pulseaudio_binary


def sound(name: str) -> Path:
    """An Ogg Vorbis event sound of sound-theme-freedesktop, as shipped."""
    return media(f"{FREEDESKTOP_SOUNDS}/{name}")


def sinc_resample(x: np.ndarray, from_hz: int, to_hz: int, zero_crossings: int = 24, rolloff: float = 0.94) -> np.ndarray:
    """A reference resampler that shares nothing with soxr: Blackman-windowed sinc interpolation
    evaluated directly at every output instant."""
    cutoff = 0.5 * min(1.0, to_hz / from_hz) * rolloff  # cycles per input sample
    half = zero_crossings / (2 * cutoff)
    times = np.arange(int(np.ceil(len(x) * to_hz / from_hz))) * (from_hz / to_hz)
    offsets = np.arange(-int(np.ceil(half)), int(np.ceil(half)) + 1)
    padded = np.pad(x.astype(np.float64), len(offsets))
    taps = np.floor(times).astype(int)[:, None] + offsets[None, :]
    distance = times[:, None] - taps
    u = np.clip(distance / half, -1.0, 1.0)
    window = 0.42 + 0.5 * np.cos(np.pi * u) + 0.08 * np.cos(2 * np.pi * u)
    kernel = 2 * cutoff * np.sinc(2 * cutoff * distance) * window
    return (padded[taps + len(offsets)] * kernel).sum(axis=1).astype(np.float32)


def passband_snr_db(signal: np.ndarray, reference: np.ndarray, rate_hz: int, below_hz: float) -> float:
    """SNR of ``signal`` against ``reference`` counting only frequencies below ``below_hz``
    (the two resamplers' transition bands differ by design above it)."""
    n = min(len(signal), len(reference))
    ours, theirs = np.fft.rfft(signal[:n]), np.fft.rfft(reference[:n])
    band = np.fft.rfftfreq(n, 1 / rate_hz) < below_hz
    return float(10 * np.log10(np.sum(np.abs(theirs[band]) ** 2) / np.sum(np.abs(ours[band] - theirs[band]) ** 2)))


def ncc_peak(recording: np.ndarray, reference: np.ndarray) -> tuple[float, int]:
    """The highest normalised cross-correlation of ``reference`` against every position in
    ``recording`` (1.0: an exact, scaled copy), and that position."""
    n = len(reference)
    size = 1 << int(np.ceil(np.log2(len(recording) + n)))
    spectrum = np.fft.rfft(recording.astype(np.float64), size) * np.conj(np.fft.rfft(reference.astype(np.float64), size))
    correlation = np.fft.irfft(spectrum, size)[: len(recording) - n + 1]
    energy = np.concatenate([[0.0], np.cumsum(recording.astype(np.float64) ** 2)])
    norms = np.sqrt(energy[n:] - energy[:-n])[: len(correlation)] * np.linalg.norm(reference)
    ncc = correlation / np.maximum(norms, 1e-12)
    return float(ncc.max()), int(ncc.argmax())


def all_chunks(uri: str | Path, **options: Any) -> list[AudioChunk]:
    with open_audio_source(uri, realtime=False, **options) as source:
        return list(source)


# --- files ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make_path", "file_rate_hz"),
    [
        pytest.param(lambda: freedesktop_sound("complete.oga"), 44100, id="wav-44.1kHz-stereo"),
        pytest.param(lambda: sound("message-new-instant.oga"), 48000, id="ogg-48kHz-stereo"),
    ],
)
def test_file_source_gives_16khz_mono_chunks_that_match_an_independent_resample(
    make_path: Callable[[], Path], file_rate_hz: int
) -> None:
    import soundfile

    path = make_path()
    frames, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    assert (rate, frames.shape[1]) == (file_rate_hz, 2)
    reference = sinc_resample(frames.mean(axis=1), rate, 16000)

    chunks = all_chunks(f"file://{path}", sample_rate_hz=16000, chunk_s=0.1)
    samples = np.concatenate([c.samples for c in chunks])

    assert {len(c.samples) for c in chunks[:-1]} == {1600}
    assert 0 < len(chunks[-1].samples) <= 1600
    assert abs(len(samples) - len(frames) * 16000 / rate) <= 1
    assert [c.time_s for c in chunks] == pytest.approx([i * 0.1 for i in range(len(chunks))], abs=1e-9)
    assert all(c.sample_rate_hz == 16000 and c.samples.dtype == np.float32 for c in chunks)
    assert passband_snr_db(samples, reference, 16000, below_hz=7000) > 45


def test_chunked_file_reading_equals_resampling_the_whole_file() -> None:
    path = sound("complete.oga")
    whole, rate = read_audio(path, 16000)
    for chunk_s in (0.013, 0.25):
        samples = np.concatenate([c.samples for c in all_chunks(path, chunk_s=chunk_s)])
        np.testing.assert_array_equal(samples, whole)
    assert rate == 16000


def test_a_realtime_file_never_delivers_a_chunk_before_its_last_sample_is_due() -> None:
    before = time.monotonic()
    received = []
    with open_audio_source(sound("bell.oga"), chunk_s=0.05) as source:
        for chunk in source:
            received.append((time.monotonic(), chunk))
    assert len(received) == 3  # 0.14 s
    for at, chunk in received:
        assert at >= before + chunk.end_s
    # wall_time is when the chunk was due, on the wall clock
    first = received[0][1]
    for _, chunk in received[1:]:
        assert chunk.wall_time - first.wall_time == pytest.approx(chunk.end_s - first.end_s, abs=5e-3)


def test_a_file_with_realtime_false_never_waits() -> None:
    source = open_audio_source(sound("complete.oga"), realtime=False, chunk_s=0.1).start()
    got = []
    while (chunk := source.read(timeout_s=0)) is not None:
        got.append(chunk)
    assert source.ended
    assert len(got) == 11  # 1.09 s
    stats = source.stats()
    assert (stats.chunks, stats.samples, stats.kind, stats.device_sample_rate_hz) == (11, sum(len(c.samples) for c in got), "file", 44100)
    source.close()


def test_a_closed_source_reads_nothing_and_cannot_start_again() -> None:
    source = open_audio_source(sound("bell.oga"))
    source.close()
    assert source.read() is None and source.ended
    with pytest.raises(SourceError, match="the audio source is closed"):
        source.start()


def test_loop_plays_the_file_again_and_again_with_time_going_on() -> None:
    one_pass, _ = read_audio(sound("bell.oga"), 16000)
    with open_audio_source(sound("bell.oga"), realtime=False, loop=True, chunk_s=0.05) as source:
        chunks = []
        while sum(len(c.samples) for c in chunks) < 3 * len(one_pass):
            chunk = source.read()
            assert chunk is not None
            chunks.append(chunk)
        assert not source.ended
        assert source.stats().laps >= 2
    stream = np.concatenate([c.samples for c in chunks])
    np.testing.assert_array_equal(stream[: 3 * len(one_pass)], np.tile(one_pass, 3))
    assert all(b.time_s == pytest.approx(a.end_s) for a, b in itertools.pairwise(chunks))


def _missing(tmp: Path) -> Path:
    return tmp / "nothing.wav"


def _folder(tmp: Path) -> Path:
    (tmp / "clips.wav").mkdir()
    return tmp / "clips.wav"


def _empty(tmp: Path) -> Path:
    (tmp / "empty.wav").write_bytes(b"")
    return tmp / "empty.wav"


def _garbage(tmp: Path) -> Path:
    (tmp / "noise.wav").write_bytes(np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8).tobytes())
    return tmp / "noise.wav"


def _truncated_header(tmp: Path) -> Path:
    (tmp / "cut.flac").write_bytes(freedesktop_sound("bell.oga").read_bytes()[:30])
    return tmp / "cut.flac"


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (_missing, "found nothing"),
        (_folder, "found a directory"),
        (_empty, "found an empty file"),
        (_garbage, "cannot read it"),
        (_truncated_header, "cannot read it"),
    ],
)
def test_missing_or_unreadable_files_raise_typed_errors(tmp_path: Path, make: Callable[[Path], Path], message: str) -> None:
    path = make(tmp_path)
    with pytest.raises(SourceUnavailableError, match=message):
        open_audio_source(f"file://{path}")
    with pytest.raises(AudioError, match=message):
        read_audio(path)


def test_a_file_soundfile_cannot_read_names_ffmpeg_when_it_is_not_installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    with pytest.raises(SourceUnavailableError, match=r"soundfile \(libsndfile .*ffmpeg, which is not installed"):
        open_audio_source(_garbage(tmp_path))


@pytest.mark.skipif(
    shutil.which("ffmpeg") is None or shutil.which("ffprobe") is None, reason="ffmpeg is not installed (apt-get install ffmpeg)"
)
def test_a_format_soundfile_cannot_read_is_decoded_through_ffmpeg(tmp_path: Path) -> None:
    aac = tmp_path / "complete.m4a"  # AAC in MP4: not a format libsndfile reads
    subprocess.run(["ffmpeg", "-loglevel", "error", "-i", str(sound("complete.oga")), "-c:a", "aac", str(aac)], check=True, timeout=60)
    reference, _ = read_audio(sound("complete.oga"), 16000)
    decoded = np.concatenate([c.samples for c in all_chunks(aac, chunk_s=0.1)])
    assert ncc_peak(np.pad(decoded, 2048), reference[256:-256])[0] > 0.9


@pytest.mark.parametrize(
    ("uri", "options", "message"),
    [
        ("rtsp://10.0.0.7/audio", {}, "unknown audio source scheme 'rtsp://'"),
        ("  ", {}, "empty audio source URI"),
        (True, {}, "a URI, a path or a device index"),
        (-1, {}, "a device index is >= 0"),
        ("default", {"loop": True}, "loop=True applies to audio files"),
        ("mic://", {"realtime": False}, "realtime=False applies to audio files"),
        ("default", {"buffer_s": 0.1}, "buffer_s must be at least twice chunk_s"),
        ("bell.oga", {"device_sample_rate_hz": 48000}, "device_sample_rate_hz applies to microphones"),
        ("bell.oga", {"sample_rate_hz": 0}, "sample_rate_hz must be a positive integer"),
        ("bell.oga", {"chunk_s": 0}, "chunk_s must be > 0"),
    ],
)
def test_uris_and_options_that_do_not_apply_are_refused(uri: Any, options: dict[str, Any], message: str) -> None:
    if uri == "bell.oga":
        uri = sound("bell.oga")
    with pytest.raises(InvalidSourceError, match=message):
        open_audio_source(uri, **options)


# --- resampling ----------------------------------------------------------------------------------


def _tone(frequency_hz: float, rate_hz: int, seconds: float = 1.0, amplitude: float = 0.5) -> np.ndarray:
    return (amplitude * np.sin(2 * np.pi * frequency_hz * np.arange(round(seconds * rate_hz)) / rate_hz)).astype(np.float32)


def test_resampling_a_1khz_tone_keeps_its_frequency_and_amplitude() -> None:
    out = resample(_tone(1000, 44100), 44100, 16000)
    assert len(out) == 16000
    spectrum = np.abs(np.fft.rfft(out * np.hanning(len(out))))
    assert np.fft.rfftfreq(len(out), 1 / 16000)[spectrum.argmax()] == 1000.0
    interior = out[800:-800]  # away from the filter's edges
    rms_db = 20 * np.log10(np.sqrt(np.mean(interior.astype(np.float64) ** 2)) / (0.5 / np.sqrt(2)))
    assert abs(rms_db) < 0.01


@pytest.mark.parametrize("frequency_hz", [9000, 12000, 15500])
def test_resampling_removes_tones_above_the_new_nyquist_frequency(frequency_hz: int) -> None:
    # Without an anti-aliasing filter a 15.5 kHz tone would fold down to 500 Hz at 16 kHz.
    out = resample(_tone(frequency_hz, 44100), 44100, 16000)[800:-800]
    attenuation_db = 20 * np.log10(np.sqrt(np.mean(out.astype(np.float64) ** 2)) / (0.5 / np.sqrt(2)))
    assert attenuation_db < -60


def test_stream_resampler_in_pieces_equals_resampling_at_once() -> None:
    signal = np.random.default_rng(1).standard_normal(44100).astype(np.float32) * 0.1
    resampler = StreamResampler(44100, 16000)
    bounds = [0, 1, 17, 4410, 9000, 30000, 44100]
    pieces = [resampler.push(signal[a:b]) for a, b in itertools.pairwise(bounds)] + [resampler.flush()]
    np.testing.assert_array_equal(np.concatenate(pieces), resample(signal, 44100, 16000))
    same = StreamResampler(16000, 16000)
    np.testing.assert_array_equal(same.push(signal[:100]), signal[:100])


@pytest.mark.parametrize(
    ("waveform", "from_hz", "message"),
    [
        (np.zeros((100, 2), np.float32), 44100, r"must be mono, shape \(n,\), got shape \(100, 2\)"),
        (np.zeros(100, np.int16), 44100, "must be float samples"),
        (np.zeros(100, np.float32), 0, "from_hz must be a positive integer"),
        (np.zeros(100, np.float32), 44100.5, "from_hz must be a positive integer"),
    ],
)
def test_resample_refuses_what_is_not_mono_float_audio(waveform: np.ndarray, from_hz: Any, message: str) -> None:
    with pytest.raises(AudioError, match=message):
        resample(waveform, from_hz, 16000)


# --- missing pieces ----------------------------------------------------------------------------------


def test_without_sounddevice_a_mic_names_the_extra_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "sounddevice", None)
    with pytest.raises(DependencyMissingError, match=r"pip install 'edgemm\[audio\]'"):
        open_audio_source("default")


def test_without_the_portaudio_library_a_mic_names_the_debian_package(monkeypatch: pytest.MonkeyPatch) -> None:
    class NoPortAudio(importlib.abc.MetaPathFinder):
        def find_spec(self, name: str, path: Any = None, target: Any = None) -> None:
            if name == "sounddevice":
                raise OSError("PortAudio library not found")  # what sounddevice raises without libportaudio2

    monkeypatch.delitem(sys.modules, "sounddevice", raising=False)
    monkeypatch.setattr(sys, "meta_path", [NoPortAudio(), *sys.meta_path])
    with pytest.raises(SourceUnavailableError, match="apt install libportaudio2"):
        open_audio_source("mic://USB")


# --- a real microphone: PulseAudio's virtual one -----------------------------------------------------


@pytest.fixture(scope="module")
def pulse() -> Iterator[PulseAudio]:
    if pulseaudio_binary() is None:
        pytest.skip("pulseaudio is not installed (apt-get install pulseaudio)")
    with PulseAudio() as server, portaudio_through(server):
        yield server


@pytest.fixture(scope="module")
def recording(pulse: PulseAudio) -> tuple[np.ndarray, np.ndarray, Any]:
    """A spoken WAV ("front left", 48 kHz) played into the sink, recorded from the default mic at
    16 kHz: (recording, the WAV resampled to 16 kHz, the source's stats)."""
    wav = freedesktop_sound("audio-channel-front-left.oga")
    reference, _ = read_audio(wav, 16000)
    chunks = []
    with open_audio_source("default", sample_rate_hz=16000, chunk_s=0.05) as mic:
        chunks.append(mic.read(timeout_s=30))  # the stream runs before playback starts
        player = pulse.play(wav)
        while player.poll() is None:
            chunks.append(mic.read(timeout_s=30))
        chunks += [mic.read(timeout_s=30) for _ in range(10)]  # 0.5 s more: the sink's latency
        stats = mic.stats()
    assert player.returncode == 0, player.stderr.read() if player.stderr else ""
    assert all(c is not None for c in chunks)
    return np.concatenate([c.samples for c in chunks]), reference, stats


def test_a_wav_played_into_the_virtual_mic_is_recorded_by_the_default_input(recording: tuple[np.ndarray, np.ndarray, Any]) -> None:
    recorded, reference, stats = recording
    peak, _ = ncc_peak(recorded, reference)
    assert peak > 0.9
    assert stats.kind == "mic" and stats.sample_rate_hz == 16000
    assert stats.samples == len(recorded) and stats.delivered_s == pytest.approx(len(recorded) / 16000)
    assert stats.chunks == len(recorded) // 800
    assert stats.dropped_s == 0
    assert stats.captured_s >= len(reference) / 16000
    # and the measure tells a recording from anything else: noise does not match
    noise = np.random.default_rng(0).standard_normal(len(recorded)).astype(np.float32) * 0.1
    assert ncc_peak(noise, reference)[0] < 0.2


@pytest.mark.parametrize(("uri", "expected"), [("default", "default"), ("mic://", "default"), ("mic://pulse", "pulse"), ("PULSE", "pulse")])
def test_input_devices_are_found_by_default_name_and_index(pulse: PulseAudio, uri: str, expected: str) -> None:
    source = open_audio_source(uri)
    assert source.device["name"] == expected
    by_index = open_audio_source(source.device["index"])
    assert by_index.device["name"] == expected


def test_an_unknown_device_raises_a_typed_error_listing_the_input_devices(pulse: PulseAudio) -> None:
    with pytest.raises(SourceUnavailableError, match=r"no input device named like 'no-such-mic'; input devices here: .*'pulse'.*'default'"):
        open_audio_source("mic://no-such-mic")
    with pytest.raises(SourceUnavailableError, match="no input device with index 97"):
        open_audio_source(97)


def test_a_reader_that_falls_behind_loses_the_oldest_audio_and_it_is_counted(pulse: PulseAudio) -> None:
    with open_audio_source("default", chunk_s=0.05, buffer_s=0.2) as mic:
        first = mic.read(timeout_s=30)
        assert first is not None
        assert wait_until(lambda: mic.stats().captured_s > 1.0, timeout_s=30)
        later = [mic.read(timeout_s=30) for _ in range(3)]
        stats = mic.stats()
    assert all(c is not None for c in later)
    assert stats.dropped_s > 0.5  # more than 1 s arrived, the ring holds 0.2 s
    assert stats.buffered_s <= 0.2
    # stream time stays true: after the gap, time_s jumps by what was lost
    assert later[-1].time_s >= stats.dropped_s


def test_close_ends_a_read_waiting_for_audio(pulse: PulseAudio) -> None:
    mic = open_audio_source("default", chunk_s=1.0).start()
    result: list[object] = []
    reader = threading.Thread(target=lambda: result.extend([mic.read(), mic.read()]))
    reader.start()
    mic.close()
    reader.join(10)
    assert not reader.is_alive()
    assert result[-1] is None and mic.ended


def test_the_voice_recorded_from_the_virtual_mic_is_found_by_the_vad(recording: tuple[np.ndarray, np.ndarray, Any]) -> None:
    from edgemm.runtime.vad import speech_segments

    recorded, reference, _ = recording
    _, lag = ncc_peak(recorded, reference)
    played = (lag / 16000, (lag + len(reference)) / 16000)
    segments = speech_segments(recorded, 16000)
    assert segments
    assert all(played[0] - 0.5 <= s.start_s and s.end_s <= played[1] + 0.5 for s in segments)
    assert sum(s.duration_s for s in segments) > 0.5  # "front left" is about 1 s of voice
