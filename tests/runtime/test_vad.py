"""Voice activity detection: Silero parity and graph, speech in LibriVox clips, and the segmenter's rules."""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgemm.errors import AudioError, DependencyMissingError, InputError
from edgemm.runtime import vad as vad_module
from edgemm.runtime.audio_sources import read_audio, resample
from edgemm.runtime.onnx_graph import describe_onnx
from edgemm.runtime.tensorrt_lint import lint_graph
from edgemm.runtime.vad import (
    EnergyVad,
    Segmenter,
    SileroVad,
    SpeechSegment,
    VadConfig,
    open_vad,
    silero_model_path,
    speech_segments,
)
from tests.media import librivox_clip

RATE = 16000


@pytest.fixture(scope="module")
def silero() -> SileroVad:
    return SileroVad()


def _speech_and_gaps(background: str) -> tuple[np.ndarray, list[tuple[float, float]]]:
    """1 s of background, clip 0880 (3.0 s), 2 s, clip 0930 (3.3 s), 1.5 s: the waveform and the
    spans where the clips' speech is (each clip speaks from about 0.25 s to its end)."""
    rng = np.random.default_rng(7)
    parts, spans, t = [], [], 0.0
    for seconds, clip in ((1.0, "0880"), (2.0, "0930"), (1.5, None)):
        gap = np.zeros(round(seconds * RATE), np.float32)
        if background == "faint noise":  # -50 dBFS: a quiet room
            gap = (rng.standard_normal(len(gap)) * 0.003).astype(np.float32)
        parts.append(gap)
        t += seconds
        if clip is not None:
            samples, _ = read_audio(librivox_clip(clip).path)
            parts.append(samples)
            spans.append((t + 0.25, t + len(samples) / RATE))
            t += len(samples) / RATE
    return np.concatenate(parts), spans


def times(segments: list[SpeechSegment]) -> list[float]:
    """[start_s, end_s, start_s, end_s, ...], flat, for pytest.approx."""
    return [t for s in segments for t in (s.start_s, s.end_s)]


def flat(spans: list[tuple[float, float]]) -> list[float]:
    return [t for span in spans for t in span]


def _overlap(segment: SpeechSegment, span: tuple[float, float]) -> float:
    return max(0.0, min(segment.end_s, span[1]) - max(segment.start_s, span[0]))


# --- Silero ----------------------------------------------------------------------------------------


def test_the_silero_graph_that_runs_has_no_if_node(silero: SileroVad) -> None:
    ops = describe_onnx(silero.model_path).ops
    assert "If" not in ops and "Loop" not in ops and "Scan" not in ops
    assert silero.control_flow == ()
    assert silero.model_path.name == "silero_vad_openvino_16k.onnx"
    assert lint_graph(str(silero.model_path)) == []  # edgemm's TensorRT lint: nothing to report
    # The check can fail: the package's default graph chooses 8 or 16 kHz with an If.
    assert "If" in describe_onnx(silero.model_path.with_name("silero_vad.onnx")).ops


def _reference_probs(samples: np.ndarray) -> np.ndarray:
    """silero_vad.utils_vad.OnnxWrapper.__call__ at 16 kHz, in numpy, on the package's own silero_vad.onnx.

    utils_vad imports torch at its top, so the test cannot import it without torch; this replays
    its arithmetic: 64 samples of context before each 512-sample frame, the state carried over.
    """
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    session = onnxruntime.InferenceSession(
        str(silero_model_path().with_name("silero_vad.onnx")), sess_options=options, providers=["CPUExecutionProvider"]
    )
    state = np.zeros((2, 1, 128), np.float32)
    context = np.zeros((1, 64), np.float32)
    probs = []
    for start in range(0, len(samples) - 511, 512):
        x = np.concatenate([context, samples[None, start : start + 512]], axis=1)
        out, state = session.run(None, {"input": x, "state": state, "sr": np.array(16000, np.int64)})
        context = x[..., -64:]
        probs.append(float(out.reshape(-1)[0]))
    return np.array(probs)


def test_silero_probabilities_equal_the_packages_own_wrapper_on_real_speech(silero: SileroVad) -> None:
    samples, rate = read_audio(librivox_clip("0870").path)
    assert rate == RATE
    frames = samples[: len(samples) // 512 * 512].reshape(-1, 512)
    silero.reset()
    ours = np.array([silero.speech_prob(frame) for frame in frames])
    reference = _reference_probs(samples)
    assert len(ours) == len(reference) == 221
    assert np.max(np.abs(ours - reference)) < 1e-4
    assert 0.5 < np.mean(reference > 0.5) < 1.0  # speech with pauses: the comparison covers both
    silero.reset()
    again = np.array([silero.speech_prob(frame) for frame in frames[:20]])
    np.testing.assert_allclose(again, ours[:20], atol=1e-6)  # reset() starts a new stream


@pytest.mark.parametrize("shape_dtype", [((511,), np.float32), ((1, 512), np.float32), ((512,), np.int16)])
def test_a_frame_of_the_wrong_shape_or_type_is_refused(silero: SileroVad, shape_dtype: tuple[tuple[int, ...], Any]) -> None:
    shape, dtype = shape_dtype
    for detector in (silero, EnergyVad()):
        with pytest.raises(AudioError, match=r"a frame is"):
            detector.speech_prob(np.zeros(shape, dtype))


# --- speech, silence, noise ------------------------------------------------------------------------


@pytest.mark.parametrize("background", ["digital silence", "faint noise"])
@pytest.mark.parametrize("kind", ["silero", "energy"])
def test_each_spoken_clip_gives_one_segment_covering_its_speech(silero: SileroVad, kind: str, background: str) -> None:
    waveform, spans = _speech_and_gaps(background)
    detector = silero if kind == "silero" else EnergyVad()
    segments = speech_segments(waveform, RATE, vad=detector)
    assert len(segments) == len(spans) == 2
    for segment, span in zip(segments, spans):
        assert _overlap(segment, span) >= 0.9 * (span[1] - span[0])
        assert span[0] - 0.75 <= segment.start_s and segment.end_s <= span[1] + 0.5
        assert len(segment.samples) == round((segment.end_s - segment.start_s) * RATE)
        start = round(segment.start_s * RATE)
        np.testing.assert_array_equal(segment.samples, waveform[start : start + len(segment.samples)])


@pytest.mark.parametrize(
    ("kind", "what"),
    [
        ("silero", "digital silence"),
        ("silero", "white noise -23 dBFS"),
        ("silero", "white noise -13 dBFS"),
        ("energy", "digital silence"),
        ("energy", "white noise -23 dBFS"),
    ],
)
def test_silence_and_steady_noise_hold_no_speech(silero: SileroVad, kind: str, what: str) -> None:
    rng = np.random.default_rng(3)
    waveform = np.zeros(4 * RATE, np.float32)
    if what.startswith("white noise"):
        waveform = (rng.standard_normal(len(waveform)) * (0.07 if "-23" in what else 0.22)).astype(np.float32)
    assert speech_segments(waveform, RATE, vad=silero if kind == "silero" else EnergyVad()) == []


def test_segments_do_not_depend_on_how_the_stream_is_chunked(silero: SileroVad) -> None:
    waveform, _ = _speech_and_gaps("faint noise")
    whole = speech_segments(waveform, RATE, vad=silero)
    segmenter = Segmenter(silero, sample_rate_hz=RATE, source="mic")
    rng = np.random.default_rng(11)
    pieces: list[SpeechSegment] = []
    start = 0
    while start < len(waveform):
        size = int(rng.integers(1, 4000))
        pieces += segmenter.push(waveform[start : start + size], start / RATE)
        start += size
    pieces += segmenter.flush()
    assert times(pieces) == pytest.approx(times(whole), abs=1e-9)
    for a, b in zip(pieces, whole):
        np.testing.assert_array_equal(a.samples, b.samples)
    assert {s.source for s in pieces} == {"mic"}


def test_audio_at_another_rate_is_resampled_for_the_vad(silero: SileroVad) -> None:
    waveform, _ = _speech_and_gaps("faint noise")
    at_16k = speech_segments(waveform, RATE, vad=silero)
    at_48k = speech_segments(resample(waveform, RATE, 48000), 48000, vad=silero)
    assert len(at_48k) == len(at_16k)
    for a, b in zip(at_48k, at_16k):
        assert a.sample_rate_hz == 16000
        assert abs(a.start_s - b.start_s) <= 0.064 and abs(a.end_s - b.end_s) <= 0.064  # two frames


# --- choosing a VAD ----------------------------------------------------------------------------------


def test_open_vad_prefers_silero_and_falls_back_to_energy_without_it(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    assert isinstance(open_vad(), SileroVad)
    assert isinstance(open_vad("energy"), EnergyVad)
    with pytest.raises(InputError, match="unknown VAD kind 'webrtc'"):
        open_vad("webrtc")
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        vad_module.importlib.util, "find_spec", lambda name, *a: None if name == "silero_vad" else real_find_spec(name, *a)
    )
    with caplog.at_level(logging.INFO, logger="edgemm.runtime.vad"):
        assert isinstance(open_vad(), EnergyVad)
    assert "energy-based" in caplog.text
    with pytest.raises(DependencyMissingError, match="pip install --no-deps silero-vad"):
        open_vad("silero")


def test_silero_vad_is_read_without_importing_the_package() -> None:
    import subprocess
    import sys

    code = (
        "import sys; from edgemm.runtime.vad import SileroVad; SileroVad(); "
        "print(*(name in sys.modules for name in ('silero_vad', 'torch', 'sounddevice', 'soxr')))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert result.stdout.split() == ["False", "False", "False", "False"]


# --- the segmenter's rules, on a detector whose frames say their own probability --------------------


class FrameValueVad:
    """A Vad at 1 kHz with 0.1 s frames whose speech probability is the frame's mean sample value."""

    sample_rate_hz = 1000
    frame_samples = 100

    def __init__(self) -> None:
        self.frames = 0

    def speech_prob(self, frame: np.ndarray) -> float:
        self.frames += 1
        return float(np.mean(frame))

    def reset(self) -> None:
        self.frames = 0


def _stream(probs: list[float]) -> np.ndarray:
    return np.repeat(np.asarray(probs, np.float32), 100)


BASE = {"threshold": 0.5, "neg_threshold": 0.35, "min_speech_s": 0.25, "min_silence_s": 0.3, "pre_pad_s": 0.2, "post_pad_s": 0.1}


@pytest.mark.parametrize(
    ("probs", "changes", "expected"),
    [
        pytest.param([0] * 10 + [1] * 10 + [0] * 10, {}, [(0.8, 2.1)], id="one-burst-padded"),
        pytest.param([0] * 5 + [1] * 2 + [0] * 10, {}, [], id="shorter-than-min-speech-dropped"),
        pytest.param([0] * 5 + [1] * 5 + [0] * 2 + [1] * 5 + [0] * 10, {}, [(0.3, 1.8)], id="pause-shorter-than-min-silence-bridged"),
        pytest.param([0] * 5 + [1] * 3 + [0.4] * 6 + [0] * 10, {}, [(0.3, 1.5)], id="between-thresholds-continues-speech"),
        pytest.param([0] * 5 + [1] * 3 + [0.4] * 6 + [0] * 10, {"neg_threshold": 0.45}, [(0.3, 0.9)], id="below-neg-threshold-is-silence"),
        pytest.param([1] * 5 + [0] * 5, {}, [(0.0, 0.6)], id="pre-padding-stops-at-the-stream-start"),
        pytest.param([0] * 3 + [1] * 5, {}, [(0.1, 0.8)], id="open-at-the-end-closed-by-flush"),
        pytest.param(
            [0] * 2 + [1] * 50 + [0] * 5, {"max_segment_s": 2.0}, [(0.0, 2.0), (2.0, 4.0), (4.0, 5.3)], id="max-segment-cut-and-continued"
        ),
        pytest.param(
            [0] * 5 + [1] * 5 + [0] * 4 + [1] * 5 + [0] * 5,
            {"post_pad_s": 0.5},
            [(0.3, 1.286), (1.286, 2.4)],
            id="a-short-gap-is-shared-without-overlap",
        ),
    ],
)
def test_segmenter_rules(probs: list[float], changes: dict[str, float], expected: list[tuple[float, float]]) -> None:
    stream = _stream(probs)
    segmenter = Segmenter(FrameValueVad(), VadConfig(**{**BASE, **changes}), sample_rate_hz=1000)
    segments = segmenter.push(stream, 0.0) + segmenter.flush()
    assert times(segments) == pytest.approx(flat(expected), abs=1e-9)
    for segment in segments:
        start, end = round(segment.start_s * 1000), round(segment.end_s * 1000)
        np.testing.assert_array_equal(segment.samples, stream[start:end])
        assert segment.sample_rate_hz == 1000 and segment.duration_s <= VadConfig(**{**BASE, **changes}).max_segment_s


def test_segments_are_returned_as_soon_as_they_close() -> None:
    segmenter = Segmenter(FrameValueVad(), VadConfig(**BASE), sample_rate_hz=1000)
    assert segmenter.push(_stream([0] * 10 + [1] * 10 + [0] * 2), 0.0) == []  # 0.2 s of silence: still open
    closed = segmenter.push(_stream([0]), 2.2)  # the third silent frame closes it
    assert times(closed) == pytest.approx([0.8, 2.1])
    assert segmenter.flush() == []


def test_segment_times_follow_the_chunks_clock_across_a_gap() -> None:
    segmenter = Segmenter(FrameValueVad(), VadConfig(**BASE), sample_rate_hz=1000)
    first = segmenter.push(_stream([0] * 10 + [1] * 10 + [0] * 10), 100.0)
    second = segmenter.push(_stream([0] * 10 + [1] * 10 + [0] * 10), 250.0)  # 117 s of audio lost upstream
    assert times(first + second) == pytest.approx([100.8, 102.1, 250.8, 252.1])


def test_flush_starts_a_new_stream() -> None:
    detector = FrameValueVad()
    segmenter = Segmenter(detector, VadConfig(**BASE), sample_rate_hz=1000)
    segmenter.push(_stream([0] * 3 + [1] * 5), 0.0)
    assert times(segmenter.flush()) == pytest.approx([0.1, 0.8])
    assert detector.frames == 0  # reset
    again = segmenter.push(_stream([0] * 10 + [1] * 10 + [0] * 10), 5.0)
    assert times(again) == pytest.approx([5.8, 7.1])


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"threshold": 1.0}, r"threshold must be in \(0, 1\), got 1.0"),
        ({"threshold": 0.5, "neg_threshold": 0.6}, r"neg_threshold must be in \(0, threshold=0.5\], got 0.6"),
        ({"min_silence_s": -0.1}, "min_silence_s must be a finite number >= 0"),
        ({"pre_pad_s": float("nan")}, "pre_pad_s must be a finite number >= 0"),
        ({"max_segment_s": 0}, "max_segment_s must be > 0"),
        ({"max_segment_s": 0.1, "min_speech_s": 0.25}, r"max_segment_s \(0.1\) must be >= min_speech_s \(0.25\)"),
    ],
)
def test_vad_config_refuses_values_out_of_range(fields: dict[str, float], message: str) -> None:
    with pytest.raises(InputError, match=message):
        VadConfig(**fields)


def test_vad_config_round_trips_through_json() -> None:
    import json

    config = VadConfig(threshold=0.6, min_silence_s=0.8, max_segment_s=12.0)
    assert VadConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    assert config.off_threshold == pytest.approx(0.45)
    with pytest.raises(InputError, match="threshold"):
        VadConfig.from_dict({**config.to_dict(), "threshold": "high"})


def test_energy_vad_floor_adapts_to_the_quietest_recent_frame() -> None:
    detector = EnergyVad()
    quiet = np.full(512, 0.0005, np.float32)  # -66 dBFS
    loud = np.full(512, 0.1, np.float32)  # -20 dBFS
    assert detector.speech_prob(quiet) == 0.0  # below min_level_dbfs: never speech
    assert detector.speech_prob(loud) > 0.99  # 46 dB over the floor
    assert detector.noise_floor_dbfs == pytest.approx(-66.02, abs=0.01)
    for _ in range(200):  # 6.4 s of steady loud sound: longer than noise_window_s, the floor rises
        last = detector.speech_prob(loud)
    assert last < 0.01
    assert detector.noise_floor_dbfs == pytest.approx(-20.0, abs=0.01)


def test_samples_that_are_not_mono_float_are_refused() -> None:
    segmenter = Segmenter(FrameValueVad(), sample_rate_hz=1000)
    with pytest.raises(AudioError, match=r"shape \(n,\)"):
        segmenter.push(np.zeros((10, 2), np.float32), 0.0)


def test_model_path_points_inside_the_installed_package() -> None:
    path = silero_model_path()
    assert path.parent.name == "data" and path.parent.parent.name == "silero_vad"
    assert Path(path).is_file()
