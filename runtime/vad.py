"""Voice activity detection: speech probabilities per frame, and speech segments from a stream.

A :class:`Vad` gives the probability that one frame holds speech; a :class:`Segmenter` turns a
stream of chunks into :class:`SpeechSegment` (start, end, samples with padding) with the
settings of :class:`VadConfig`::

    vad = open_vad()                                   # Silero when installed, else energy
    segmenter = Segmenter(vad, VadConfig(min_silence_s=0.5), sample_rate_hz=16000, source="mic")
    for chunk in mic:                                  # AudioChunk
        for segment in segmenter.push(chunk.samples, chunk.time_s):
            print(f"{segment.start_s:.2f}-{segment.end_s:.2f} s")
    segments = segmenter.flush()                       # the end of the stream closes an open segment

Two detectors:

- :class:`SileroVad` (default): Silero VAD v5/v6, the ONNX model shipped inside the ``silero-vad``
  package (``pip install --no-deps silero-vad``: its ONNX model needs no torch, though the
  package declares it). edgemm reads the file from the package's folder without importing the
  package (whose ``__init__`` imports torch) and runs it through edgemm's ONNX Runtime backend.
  Of the package's graphs it takes ``silero_vad_openvino_16k.onnx``: the 16 kHz model with
  static shapes and **no If node** (the other graphs choose between the 8 kHz and 16 kHz
  networks with an ``If`` on their ``sr`` input, a runtime condition TensorRT would have to
  evaluate as a conditional layer on every frame, with no fusion across it; even
  ``silero_vad_op18_ifless.onnx`` has one at its top). Its probabilities equal those of the
  package's own ``OnnxWrapper`` on ``silero_vad.onnx`` (the tests check it on LibriVox speech).
  Frames are 512 samples at 16 kHz (32 ms); each run also sees the 64 samples before the frame,
  as the package's wrapper feeds them, and carries the LSTM state to the next frame.
- :class:`EnergyVad` (fallback when silero-vad is not installed): the frame's level in dBFS over
  an adaptive noise floor (the quietest frame of the last few seconds). It finds speech in quiet
  rooms; steady noise does not trigger it once the floor has adapted, but loud changing noise
  (music, traffic, a TV) does.

The segmenter follows Silero's own ``VADIterator``: speech starts at a frame whose probability
reaches ``threshold``; it ends after ``min_silence_s`` of frames below ``neg_threshold``
(hysteresis: frames between the two thresholds continue the current state). Segments shorter
than ``min_speech_s`` are dropped; kept ones get ``pre_pad_s`` of audio before and ``post_pad_s``
after (split between neighbours when the gap is shorter than both); a segment reaching
``max_segment_s`` is cut there and the speech goes on in a new one.
"""

from __future__ import annotations

import importlib.util
import logging
import math
import os
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ._serde import from_json, to_json
from .audio_sources import StreamResampler, resample
from .backends.ort import OrtBackend, OrtOptions
from .errors import AudioError, BackendError, DependencyMissingError, InputError, PackError
from .onnx_graph import describe_onnx

__all__ = [
    "SILERO_MODEL_FILES",
    "EnergyVad",
    "Segmenter",
    "SileroVad",
    "SpeechSegment",
    "Vad",
    "VadConfig",
    "open_vad",
    "silero_model_path",
    "speech_segments",
]

_log = logging.getLogger(__name__)

SILERO_MODEL_FILES = ("silero_vad_openvino_16k.onnx", "silero_vad.onnx")
"""Graphs of the silero-vad package :class:`SileroVad` looks for, in order: the If-free 16 kHz
graph (silero-vad 6.x), else the original one (its ``If`` on ``sr`` runs in ONNX Runtime, not TensorRT)."""

_SILERO_INSTALL = "pip install --no-deps silero-vad (its ONNX model needs no torch)"
_CONTROL_FLOW = ("If", "Loop", "Scan")


class Vad(Protocol):
    """A voice activity detector: the probability that a frame holds speech.

    Attributes:
        sample_rate_hz: the rate frames must have.
        frame_samples: the length frames must have.
    """

    sample_rate_hz: int
    frame_samples: int

    def speech_prob(self, frame: np.ndarray) -> float:
        """The probability, in [0, 1], that ``frame`` (shape (frame_samples,), float32) holds speech.

        Frames must be consecutive: detectors keep state from one frame to the next.
        """
        ...

    def reset(self) -> None:
        """Forgets the state kept from earlier frames (the start of a new stream)."""
        ...


def _check_frame(frame: object, frame_samples: int, what: str) -> np.ndarray:
    array = np.asarray(frame)
    if array.shape != (frame_samples,):
        raise AudioError(f"{what}: a frame is shape ({frame_samples},), got shape {array.shape}")
    if not np.issubdtype(array.dtype, np.floating):
        raise AudioError(f"{what}: a frame is float samples in [-1, 1], got dtype {array.dtype}")
    return np.ascontiguousarray(array, dtype=np.float32)


# --- Silero ------------------------------------------------------------------------------------


def silero_model_path() -> Path:
    """The Silero VAD graph :class:`SileroVad` loads from the installed silero-vad package.

    Finds the package without importing it (its ``__init__`` imports torch).

    Raises:
        DependencyMissingError: silero-vad is not installed, or ships none of :data:`SILERO_MODEL_FILES`.
    """
    try:
        spec = importlib.util.find_spec("silero_vad")
    except (ImportError, ValueError):
        spec = None
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    if not locations:
        raise DependencyMissingError("silero_vad", "Silero voice activity detection", _SILERO_INSTALL)
    for location in locations:
        for name in SILERO_MODEL_FILES:
            path = Path(location) / "data" / name
            if path.is_file():
                return path
    found = sorted(p.name for location in locations for p in (Path(location) / "data").glob("*.onnx"))
    raise DependencyMissingError(
        "silero_vad",
        f"Silero voice activity detection (expected one of {list(SILERO_MODEL_FILES)} in the package's data folder, found {found})",
        "pip install --no-deps --upgrade silero-vad",
    )


class SileroVad:
    """Silero VAD through edgemm's ONNX Runtime backend; 512-sample frames at 16 kHz.

    Args:
        model_path: the ONNX graph; default :func:`silero_model_path`. Graphs with inputs
            ``input`` (1, 576) or (batch, samples), ``state`` (2, batch, 128) and optionally
            ``sr``, and outputs ``output`` and ``stateN``, are accepted (the package's 16 kHz ones).
        ort_options: how ONNX Runtime runs it. Default: CPU, one thread: a frame takes about 0.2 ms
            there, less than thread pools or a GPU transfer would cost.

    Attributes:
        model_path: the graph that runs.
        control_flow: the graph's top-level If/Loop/Scan nodes (empty for the default graph).
        backend: the :class:`OrtBackend` running it.

    Raises:
        DependencyMissingError: silero-vad (or onnxruntime) is not installed.
        BackendError: the graph cannot be loaded or is not a Silero VAD graph.
    """

    sample_rate_hz = 16000
    frame_samples = 512
    context_samples = 64

    def __init__(self, model_path: str | os.PathLike[str] | None = None, *, ort_options: OrtOptions | None = None) -> None:
        self.model_path = Path(model_path) if model_path is not None else silero_model_path()
        try:
            ops = describe_onnx(self.model_path).ops
        except PackError as exc:
            raise BackendError(f"Silero VAD: {exc}") from exc
        self.control_flow = tuple(op for op in ops if op in _CONTROL_FLOW)
        if self.control_flow:
            _log.warning(
                "Silero VAD graph %s has %s node(s): fine for ONNX Runtime, not for TensorRT (control flow on "
                "every frame); silero-vad 6.x ships the If-free silero_vad_openvino_16k.onnx",
                self.model_path.name,
                "/".join(sorted(set(self.control_flow))),
            )
        self.backend = OrtBackend(self.model_path, ort_options or OrtOptions(providers=("cpu",), intra_op_threads=1, inter_op_threads=1))
        inputs = {spec.name: spec for spec in self.backend.inputs}
        outputs = {spec.name for spec in self.backend.outputs}
        if not {"input", "state"} <= set(inputs) or not {"output", "stateN"} <= outputs:
            raise BackendError(
                f"{self.model_path}: expected a Silero VAD graph (inputs input, state[, sr]; outputs output, stateN), "
                f"found inputs {sorted(inputs)} and outputs {sorted(outputs)}"
            )
        width = inputs["input"].shape[-1] if len(inputs["input"].shape) == 2 else None
        if isinstance(width, int) and width != self.context_samples + self.frame_samples:
            raise BackendError(
                f"{self.model_path}: expected input frames of {self.context_samples + self.frame_samples} samples "
                f"(16 kHz), the graph takes {width}"
            )
        self._feeds_rate = "sr" in inputs
        self._state = np.zeros((2, 1, 128), np.float32)
        self._context = np.zeros(self.context_samples, np.float32)
        self._window = np.zeros((1, self.context_samples + self.frame_samples), np.float32)

    def __repr__(self) -> str:
        return f"SileroVad({self.model_path.name!r}, {self.backend.name})"

    def speech_prob(self, frame: np.ndarray) -> float:
        """The probability that ``frame`` (shape (512,), float32 at 16 kHz) holds speech.

        Raises:
            AudioError: the frame has another shape or is not float.
        """
        samples = _check_frame(frame, self.frame_samples, "SileroVad")
        window = self._window
        window[0, : self.context_samples] = self._context
        window[0, self.context_samples :] = samples
        feeds: dict[str, np.ndarray] = {"input": window, "state": self._state}
        if self._feeds_rate:
            feeds["sr"] = np.array(self.sample_rate_hz, np.int64)
        out = self.backend.run(feeds, outputs=["output", "stateN"])
        self._state = np.asarray(out["stateN"], np.float32)
        self._context = window[0, -self.context_samples :].copy()
        return float(np.asarray(out["output"]).reshape(-1)[0])

    def reset(self) -> None:
        self._state = np.zeros((2, 1, 128), np.float32)
        self._context = np.zeros(self.context_samples, np.float32)


# --- energy ------------------------------------------------------------------------------------


class EnergyVad:
    """Speech where a frame's level stands out from the noise floor; no model needed.

    A frame's level is its mean power in dBFS (a full-scale sine is -3 dBFS). The noise floor is
    the quietest frame level of the last ``noise_window_s`` (never below ``floor_min_dbfs``);
    the probability is a logistic in the level above the floor, 0.5 at ``margin_db`` and about
    0.05 / 0.95 at ``margin_db`` -/+ 3 ``slope_db``. Frames quieter than ``min_level_dbfs`` are
    never speech.

    Args:
        sample_rate_hz: the rate of the frames.
        frame_samples: the frame length (default 512: 32 ms at 16 kHz, as Silero).
        margin_db: how far above the floor a frame is 50 % speech.
        slope_db: the width of the logistic.
        noise_window_s: how far back the floor looks; longer than the longest stretch of
            speech without a pause, shorter than the time noise should take to be accepted.
        floor_min_dbfs: the floor never drops below this (after digital silence, say).
        min_level_dbfs: frames quieter than this are never speech.

    Raises:
        InputError: a value out of range.
    """

    def __init__(
        self,
        sample_rate_hz: int = 16000,
        frame_samples: int = 512,
        *,
        margin_db: float = 10.0,
        slope_db: float = 2.0,
        noise_window_s: float = 5.0,
        floor_min_dbfs: float = -70.0,
        min_level_dbfs: float = -60.0,
    ) -> None:
        if sample_rate_hz <= 0 or frame_samples <= 0:
            raise InputError(f"EnergyVad needs sample_rate_hz > 0 and frame_samples > 0, got {sample_rate_hz}, {frame_samples}")
        if slope_db <= 0 or noise_window_s <= 0:
            raise InputError(f"EnergyVad needs slope_db > 0 and noise_window_s > 0, got {slope_db}, {noise_window_s}")
        self.sample_rate_hz = int(sample_rate_hz)
        self.frame_samples = int(frame_samples)
        self.margin_db = margin_db
        self.slope_db = slope_db
        self.noise_window_s = noise_window_s
        self.floor_min_dbfs = floor_min_dbfs
        self.min_level_dbfs = min_level_dbfs
        self._window_frames = max(1, round(noise_window_s * sample_rate_hz / frame_samples))
        self._minima: deque[tuple[int, float]] = deque()  # (frame number, level), levels increasing
        self._frame_number = 0

    def __repr__(self) -> str:
        return f"EnergyVad(margin_db={self.margin_db}, noise_window_s={self.noise_window_s})"

    @property
    def noise_floor_dbfs(self) -> float | None:
        """The current noise floor, None before the first frame."""
        return max(self._minima[0][1], self.floor_min_dbfs) if self._minima else None

    def speech_prob(self, frame: np.ndarray) -> float:
        """The probability that ``frame`` (shape (frame_samples,), float32) holds speech.

        Raises:
            AudioError: the frame has another shape or is not float.
        """
        samples = _check_frame(frame, self.frame_samples, "EnergyVad")
        power = float(np.dot(samples, samples)) / len(samples)
        level = 10.0 * math.log10(power + 1e-12)
        number = self._frame_number
        self._frame_number += 1
        # A sliding minimum: drop levels the new one makes irrelevant, and those too old.
        while self._minima and self._minima[-1][1] >= level:
            self._minima.pop()
        self._minima.append((number, level))
        while self._minima[0][0] <= number - self._window_frames:
            self._minima.popleft()
        if level < self.min_level_dbfs:
            return 0.0
        floor = max(self._minima[0][1], self.floor_min_dbfs)
        return 1.0 / (1.0 + math.exp(-(level - floor - self.margin_db) / self.slope_db))

    def reset(self) -> None:
        self._minima.clear()
        self._frame_number = 0


def open_vad(kind: str = "auto", *, ort_options: OrtOptions | None = None) -> Vad:
    """A voice activity detector.

    Args:
        kind: "silero" (:class:`SileroVad`), "energy" (:class:`EnergyVad`), or "auto": Silero
            when silero-vad is installed, else energy (the choice is logged).
        ort_options: ONNX Runtime options for Silero.

    Raises:
        InputError: an unknown kind.
        DependencyMissingError: "silero" without silero-vad installed (the message says how).
    """
    choice = kind.lower()
    if choice == "silero":
        return SileroVad(ort_options=ort_options)
    if choice == "energy":
        return EnergyVad()
    if choice != "auto":
        raise InputError(f"unknown VAD kind {kind!r}; expected 'auto', 'silero' or 'energy'")
    try:
        vad: Vad = SileroVad(ort_options=ort_options)
    except DependencyMissingError as exc:
        _log.info("VAD: energy-based (%s)", exc)
        return EnergyVad()
    _log.info("VAD: Silero (%s)", vad)
    return vad


# --- segments ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class VadConfig:
    """How a :class:`Segmenter` turns speech probabilities into segments.

    Attributes:
        threshold: a frame with at least this probability is speech (starts or continues a segment).
        neg_threshold: while in speech, a frame below this counts as silence; frames between the
            two thresholds continue the current state. None: ``max(threshold - 0.15, 0.01)``,
            as Silero's own segmenter.
        min_speech_s: shorter speech (without padding) is dropped.
        min_silence_s: silence this long ends a segment.
        pre_pad_s: audio kept before the speech starts.
        post_pad_s: audio kept after the speech ends.
        max_segment_s: a segment (padding included) is cut at this length; the speech goes on
            in a new segment.
    """

    threshold: float = 0.5
    neg_threshold: float | None = None
    min_speech_s: float = 0.25
    min_silence_s: float = 0.5
    pre_pad_s: float = 0.2
    post_pad_s: float = 0.3
    max_segment_s: float = 30.0

    def __post_init__(self) -> None:
        if not 0.0 < self.threshold < 1.0:
            raise InputError(f"VadConfig.threshold must be in (0, 1), got {self.threshold}")
        if self.neg_threshold is not None and not 0.0 < self.neg_threshold <= self.threshold:
            raise InputError(
                f"VadConfig.neg_threshold must be in (0, threshold={self.threshold}], got {self.neg_threshold}"
            )
        for name in ("min_speech_s", "min_silence_s", "pre_pad_s", "post_pad_s"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise InputError(f"VadConfig.{name} must be a finite number >= 0, got {value!r}")
        if not (math.isfinite(self.max_segment_s) and self.max_segment_s > 0):
            raise InputError(f"VadConfig.max_segment_s must be > 0, got {self.max_segment_s}")
        if self.max_segment_s < self.min_speech_s:
            raise InputError(
                f"VadConfig.max_segment_s ({self.max_segment_s}) must be >= min_speech_s ({self.min_speech_s})"
            )

    @property
    def off_threshold(self) -> float:
        """The threshold below which a frame counts as silence during speech (``neg_threshold`` resolved)."""
        return self.neg_threshold if self.neg_threshold is not None else max(self.threshold - 0.15, 0.01)

    def to_dict(self) -> dict[str, Any]:
        """The config as JSON values."""
        return dict(to_json(self))

    @classmethod
    def from_dict(cls, data: Any) -> VadConfig:
        """Reads a config written by :meth:`to_dict`.

        Raises:
            InputError: a field is missing, unknown, of the wrong type or out of range.
        """
        return from_json(cls, data, error=InputError)


@dataclass(frozen=True, eq=False)
class SpeechSegment:
    """A stretch of speech, padding included.

    Attributes:
        start_s: stream time of the first sample (the chunks' ``time_s`` clock).
        end_s: stream time just after the last sample.
        samples: np.ndarray, shape (n,), float32 at the VAD's rate (``sample_rate_hz``).
        sample_rate_hz: the rate of ``samples``.
        source: the source's name, when the segmenter was given one.
    """

    start_s: float
    end_s: float
    samples: np.ndarray
    sample_rate_hz: int = 16000
    source: str | None = None

    @property
    def duration_s(self) -> float:
        return len(self.samples) / self.sample_rate_hz


class _SampleBuffer:
    """Samples addressed by their index in the stream; old ones are trimmed, appends are amortised."""

    def __init__(self) -> None:
        self._data = np.zeros(1 << 14, np.float32)
        self.start = 0
        self._length = 0

    @property
    def end(self) -> int:
        return self.start + self._length

    def append(self, samples: np.ndarray) -> None:
        needed = self._length + len(samples)
        if needed > len(self._data):
            grown = np.zeros(max(needed, 2 * len(self._data)), np.float32)
            grown[: self._length] = self._data[: self._length]
            self._data = grown
        self._data[self._length : needed] = samples
        self._length = needed

    def view(self, begin: int, end: int) -> np.ndarray:
        return self._data[begin - self.start : end - self.start]

    def trim(self, before: int) -> None:
        drop = min(max(0, before - self.start), self._length)
        if drop and drop >= self._length // 2:  # move the kept part down only when it halves the buffer
            self._data[: self._length - drop] = self._data[drop : self._length]
            self._length -= drop
            self.start += drop


class Segmenter:
    """Streams audio through a VAD and returns speech segments as they close.

    Args:
        vad: the detector (its rate and frame length are used).
        config: the segment settings (default :class:`VadConfig`).
        sample_rate_hz: the rate of the samples pushed; resampled to the VAD's rate when it differs.
        source: the name segments carry.

    Raises:
        AudioError: a rate that is not a positive integer.
    """

    def __init__(self, vad: Vad, config: VadConfig | None = None, sample_rate_hz: int = 16000, *, source: str | None = None) -> None:
        self.vad = vad
        self.config = config or VadConfig()
        self.sample_rate_hz = int(sample_rate_hz)
        self.source = source
        self._rate = int(vad.sample_rate_hz)
        self._frame = int(vad.frame_samples)
        self._resampler = StreamResampler(self.sample_rate_hz, self._rate)
        c = self.config
        self._min_speech = round(c.min_speech_s * self._rate)
        self._min_silence = round(c.min_silence_s * self._rate)
        self._pre = round(c.pre_pad_s * self._rate)
        self._post = round(c.post_pad_s * self._rate)
        self._max = max(self._frame, round(c.max_segment_s * self._rate))
        self._clear()

    def _clear(self) -> None:
        self._buffer = _SampleBuffer()
        self._anchors: list[tuple[int, float]] = []  # (sample index at the VAD rate, stream time)
        self._pushed = 0  # samples pushed, at the input rate
        self._expected_s: float | None = None
        self._pos = 0  # samples the VAD has seen (a multiple of the frame length)
        self._triggered = False
        self._seg_start = self._speech_start = 0
        self._temp_end: int | None = None
        self._continued = False
        self._last_end = 0
        self._pending: tuple[int, int, int] | None = None  # (start, speech end, end) waiting for post padding
        self.vad.reset()

    def push(self, samples: np.ndarray, time_s: float) -> list[SpeechSegment]:
        """Feeds the next chunk of the stream.

        Args:
            samples: np.ndarray, shape (n,), float, at ``sample_rate_hz``; any length.
            time_s: stream time of its first sample. A jump from the end of the previous chunk
                (audio lost upstream) is honoured in the segments' times.

        Returns:
            The segments that closed with this chunk (often none).

        Raises:
            AudioError: not a 1-D float array.
        """
        array = np.asarray(samples)
        if array.ndim != 1 or not np.issubdtype(array.dtype, np.floating):
            raise AudioError(f"Segmenter.push: samples must be float, shape (n,), got {array.dtype} shape {array.shape}")
        tolerance_s = max(1e-3, 2.0 / self.sample_rate_hz)
        if self._expected_s is None or abs(time_s - self._expected_s) > tolerance_s:
            self._anchors.append((round(self._pushed * self._rate / self.sample_rate_hz), float(time_s)))
        self._pushed += len(array)
        self._expected_s = time_s + len(array) / self.sample_rate_hz
        self._buffer.append(self._resampler.push(array))
        return self._run_frames()

    def flush(self) -> list[SpeechSegment]:
        """Ends the stream: closes an open segment (its post padding limited to the audio there is)
        and starts afresh (the VAD is reset), ready for another stream."""
        self._buffer.append(self._resampler.flush())
        end = self._buffer.end
        out: list[SpeechSegment] = []
        if self._triggered:
            speech_end = self._temp_end if self._temp_end is not None else end
            self._close(speech_end, end, out)
        if self._pending is not None:
            start, _, target = self._pending
            self._emit(start, min(target, end), out)
        self._resampler = StreamResampler(self.sample_rate_hz, self._rate)
        self._clear()
        return out

    # --- the state machine, on sample indices at the VAD's rate ---------------------------------

    def _run_frames(self) -> list[SpeechSegment]:
        out: list[SpeechSegment] = []
        while self._pos + self._frame <= self._buffer.end:
            start = self._pos
            prob = self.vad.speech_prob(self._buffer.view(start, start + self._frame))
            self._pos = start + self._frame
            self._step(start, self._pos, prob, out)
        keep = self._pos - self._pre
        if self._triggered:
            keep = min(keep, self._seg_start)
        if self._pending is not None:
            keep = min(keep, self._pending[0])
        self._buffer.trim(keep)
        while len(self._anchors) > 1 and self._anchors[1][0] <= self._buffer.start:
            self._anchors.pop(0)
        return out

    def _step(self, start: int, end: int, prob: float, out: list[SpeechSegment]) -> None:
        c = self.config
        if not self._triggered:
            if prob >= c.threshold:
                if self._pending is not None:
                    # Speech again before the last segment's post padding is complete: share the gap.
                    pending_start, speech_end, target = self._pending
                    gap = start - speech_end
                    share = round(gap * self._post / (self._pre + self._post)) if self._pre + self._post else 0
                    self._emit(pending_start, min(target, speech_end + share), out)
                self._triggered, self._continued, self._temp_end = True, False, None
                self._speech_start = start
                self._seg_start = max(start - self._pre, self._last_end, self._buffer.start)
        elif prob >= c.threshold:
            self._temp_end = None
        elif prob < c.off_threshold:
            if self._temp_end is None:
                self._temp_end = start
            if end - self._temp_end >= self._min_silence:
                self._close(self._temp_end, end, out)
        if self._triggered and end - self._seg_start >= self._max:
            cut = self._seg_start + self._max
            self._emit(self._seg_start, cut, out)
            self._seg_start = self._speech_start = cut
            self._continued = True
            if self._temp_end is not None:
                self._temp_end = max(self._temp_end, cut)
        if self._pending is not None and end >= self._pending[2]:
            self._emit(self._pending[0], self._pending[2], out)

    def _close(self, speech_end: int, available: int, out: list[SpeechSegment]) -> None:
        """Ends the open segment at ``speech_end``; it is emitted once its post padding is there."""
        self._triggered = False
        self._temp_end = None
        if speech_end <= self._seg_start or (not self._continued and speech_end - self._speech_start < self._min_speech):
            return
        target = min(speech_end + self._post, self._seg_start + self._max)
        self._pending = (self._seg_start, speech_end, target)
        if available >= target:
            self._emit(self._seg_start, target, out)

    def _emit(self, start: int, end: int, out: list[SpeechSegment]) -> None:
        self._pending = None
        if end <= start:
            return
        self._last_end = end
        out.append(
            SpeechSegment(
                start_s=self._time_of(start),
                end_s=self._time_of(end),
                samples=self._buffer.view(start, end).copy(),
                sample_rate_hz=self._rate,
                source=self.source,
            )
        )

    def _time_of(self, index: int) -> float:
        anchor_index, anchor_s = self._anchors[0]
        for candidate in self._anchors:
            if candidate[0] > index:
                break
            anchor_index, anchor_s = candidate
        return anchor_s + (index - anchor_index) / self._rate


def speech_segments(
    waveform: np.ndarray, sample_rate_hz: int, *, vad: Vad | None = None, config: VadConfig | None = None
) -> list[SpeechSegment]:
    """The speech segments of a whole recording (times from its start).

    Args:
        waveform: np.ndarray, shape (n,), float in [-1, 1].
        sample_rate_hz: its rate; it is resampled to the VAD's rate.
        vad: the detector (default :func:`open_vad`; it is reset first).
        config: the segment settings (default :class:`VadConfig`).

    Returns:
        The segments in order; their samples are at the VAD's rate.

    Raises:
        AudioError: not a 1-D float array, or a bad rate.
    """
    detector = vad if vad is not None else open_vad()
    samples = resample(waveform, sample_rate_hz, detector.sample_rate_hz)
    segmenter = Segmenter(detector, config, detector.sample_rate_hz)
    return segmenter.push(samples, 0.0) + segmenter.flush()
