"""Microphones and audio files by URI: one interface that gives mono float32 chunks at the model's rate.

``open_audio_source(uri)`` picks the backend from the URI and returns an :class:`AudioSource`;
each :meth:`AudioSource.read` gives the next :class:`AudioChunk` (``samples`` (n,) float32 mono in
[-1, 1] at ``sample_rate_hz``, about ``chunk_s`` long), in order, none skipped unless audio was lost::

    with open_audio_source("default", sample_rate_hz=16000) as mic:
        for chunk in mic:                         # AudioChunk(samples (n,) float32, time_s, ...)
            ...

==========================================  ===================================================
URI                                         Source
==========================================  ===================================================
``"default"``, ``"mic://"``                 the default input device (through sounddevice /
                                            PortAudio; on Linux usually ALSA's ``default``,
                                            which is PulseAudio or PipeWire when one runs)
``3``, ``"3"``, ``"mic://3"``               the input device with that PortAudio index
``"mic://USB"``, ``"USB Audio"``            the input device whose name contains the text
                                            (case-insensitive; an exact name wins)
``"file://clip.wav"``, ``"clip.flac"``      an audio file (:data:`AUDIO_EXTENSIONS`), paced in
                                            real time (``realtime=False``: as fast as the
                                            reader reads; ``loop=True``: start again)
==========================================  ===================================================

Files are decoded by soundfile (libsndfile: WAV, FLAC, Ogg Vorbis/Opus, MP3, AIFF, ...); a file
it cannot read is decoded by an ``ffmpeg`` subprocess when ``ffmpeg`` and ``ffprobe`` are on the
PATH. Every source mixes channels down to mono (their mean) and resamples to ``sample_rate_hz``
with soxr's high-quality, anti-aliased resampler (:func:`resample`, :class:`StreamResampler`).

Microphones are captured at the device's own rate (or ``device_sample_rate_hz``). PortAudio calls
edgemm's callback on its audio thread; the callback only copies the block into a ring buffer
allocated at start (``buffer_s`` long) and counts PortAudio's input-overflow flags: it never
blocks, waits, logs or allocates an array. The reader mixes, resamples and cuts chunks. A reader
that falls more than ``buffer_s`` behind loses the oldest audio: it is counted
(:attr:`AudioSourceStats.dropped_s`), logged at most every few seconds, and the next chunk's
``time_s`` jumps by what was lost, so stream time stays true.

Microphones, soundfile and soxr are the ``audio`` extra (``pip install 'edgemm[audio]'``);
sounddevice also needs the PortAudio library (Debian/Ubuntu: ``apt install libportaudio2``).
"""

from __future__ import annotations

import abc
import json
import logging
import math
import os
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import unquote

import numpy as np

from .errors import (
    AudioError,
    DependencyMissingError,
    InvalidSourceError,
    SourceDisconnectedError,
    SourceError,
    SourceUnavailableError,
)

__all__ = [
    "AUDIO_EXTENSIONS",
    "AudioChunk",
    "AudioSource",
    "AudioSourceStats",
    "StreamResampler",
    "list_input_devices",
    "open_audio_source",
    "read_audio",
    "resample",
]

_log = logging.getLogger(__name__)

AUDIO_EXTENSIONS = frozenset(
    {".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff", ".au", ".caf", ".w64", ".m4a", ".aac", ".wma", ".mka", ".webm"}
)
"""File extensions (compared lower-case) that make a plain string a file rather than a device name.
The last six are usually read through ffmpeg, the others through soundfile."""

_AUDIO_EXTRA = "pip install 'edgemm[audio]'"
_RESAMPLE_QUALITY = "HQ"
_OVERFLOW_LOG_EVERY_S = 5.0
_FFMPEG_BLOCK_FRAMES = 4096
_SUPPORTED_HELP = (
    "'default' or mic:// (the default input device), a device index (3, '3', mic://3), mic://NAME or a "
    "device name substring, file://PATH or a plain path to an audio file"
)
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")


# --- results -----------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class AudioChunk:
    """A stretch of audio from a source.

    Attributes:
        samples: np.ndarray, shape (n,), float32, mono, in [-1, 1], at ``sample_rate_hz``;
            read-only (copy it to change it).
        time_s: stream time of the first sample: seconds of audio since the source started,
            counting audio that was lost (a mic's ring overflow) and ``loop`` laps.
        sample_rate_hz: the rate of ``samples``.
        wall_time: ``time.time()`` when the last sample arrived (for files: when it was due, or
            when it was read with ``realtime=False``).
        source: the source's name.
    """

    samples: np.ndarray
    time_s: float
    sample_rate_hz: int
    wall_time: float
    source: str

    @property
    def duration_s(self) -> float:
        """Seconds of audio in the chunk."""
        return len(self.samples) / self.sample_rate_hz

    @property
    def end_s(self) -> float:
        """Stream time just after the last sample (``time_s + duration_s``)."""
        return self.time_s + self.duration_s


@dataclass(frozen=True)
class AudioSourceStats:
    """Counters of an audio source, from :meth:`AudioSource.stats`.

    Attributes:
        source: the source's name.
        kind: "mic" or "file".
        chunks: chunks :meth:`AudioSource.read` returned.
        samples: samples in those chunks (at ``sample_rate_hz``).
        delivered_s: seconds of audio in those chunks.
        captured_s: seconds of audio that arrived from the device or file so far.
        buffered_s: seconds of audio waiting in the ring buffer now (mics; 0 for files).
        dropped_s: seconds of audio lost because the reader fell more than ``buffer_s`` behind.
        overflows: callbacks in which PortAudio flagged an input overflow (audio the device
            delivered that the system could not take in time, lost before edgemm saw it).
        laps: times a looping file started again.
        sample_rate_hz: the rate chunks have.
        device_sample_rate_hz: the rate of the device or file before resampling.
        uptime_s: seconds since :meth:`AudioSource.start`.
        ended: whether no more audio will come.
    """

    source: str
    kind: str
    chunks: int
    samples: int
    delivered_s: float
    captured_s: float
    buffered_s: float
    dropped_s: float
    overflows: int
    laps: int
    sample_rate_hz: int
    device_sample_rate_hz: int
    uptime_s: float
    ended: bool


# --- optional modules --------------------------------------------------------------------------


def _soxr() -> Any:
    try:
        import soxr
    except ImportError as exc:
        raise DependencyMissingError("soxr", "Resampling audio", _AUDIO_EXTRA) from exc
    return soxr


def _soundfile() -> Any:
    try:
        import soundfile
    except ImportError as exc:
        raise DependencyMissingError("soundfile", "Reading audio files", _AUDIO_EXTRA) from exc
    except OSError as exc:  # soundfile raises OSError when no libsndfile can be loaded
        raise DependencyMissingError(
            "soundfile", "Reading audio files", f"{_AUDIO_EXTRA} (the wheel bundles libsndfile; here it failed: {exc})"
        ) from exc
    return soundfile


def _sounddevice() -> Any:
    try:
        import sounddevice
    except ImportError as exc:
        raise DependencyMissingError("sounddevice", "Microphone input", _AUDIO_EXTRA) from exc
    except OSError as exc:  # sounddevice raises OSError("PortAudio library not found") at import
        raise SourceUnavailableError(
            f"microphone input needs the PortAudio library, which sounddevice could not load ({exc}); "
            "install it: Debian/Ubuntu `apt install libportaudio2`, Fedora `dnf install portaudio`"
        ) from exc
    return sounddevice


# --- resampling --------------------------------------------------------------------------------


def _check_rate(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise AudioError(f"{what} must be a positive integer (Hz), got {value!r}")
    return int(value)


def _mono_float32(waveform: object, what: str = "waveform") -> np.ndarray:
    array = np.asarray(waveform)
    if array.ndim != 1:
        raise AudioError(f"{what} must be mono, shape (n,), got shape {array.shape}")
    if not np.issubdtype(array.dtype, np.floating):
        raise AudioError(f"{what} must be float samples in [-1, 1], got dtype {array.dtype}")
    return np.ascontiguousarray(array, dtype=np.float32)


def resample(waveform: np.ndarray, from_hz: int, to_hz: int) -> np.ndarray:
    """Resamples mono audio with soxr's high-quality (anti-aliased, linear-phase) filter.

    Everything above the lower rate's Nyquist frequency is removed (more than 100 dB down) before
    the rate changes, so nothing folds back; the output is time-aligned with the input.

    Args:
        waveform: np.ndarray, shape (n,), float.
        from_hz: the rate of ``waveform``.
        to_hz: the rate wanted.

    Returns:
        np.ndarray, shape (about n * to_hz / from_hz,), float32 (a copy when the rates are equal).

    Raises:
        AudioError: not a 1-D float array, or a rate that is not a positive integer.
        DependencyMissingError: soxr is not installed.
    """
    samples = _mono_float32(waveform)
    from_hz, to_hz = _check_rate(from_hz, "from_hz"), _check_rate(to_hz, "to_hz")
    if from_hz == to_hz:
        return samples.copy()
    if samples.size == 0:
        return np.zeros(0, np.float32)
    return np.asarray(_soxr().resample(samples, from_hz, to_hz, quality=_RESAMPLE_QUALITY), dtype=np.float32)


class StreamResampler:
    """Resamples a stream pushed in pieces of any size, as :func:`resample` would the whole of it.

    It keeps the filter's state between pieces (``soxr.ResampleStream``), so chunk boundaries
    leave no trace: the concatenated output equals :func:`resample` of the concatenated input.

    Args:
        from_hz: the input rate.
        to_hz: the output rate.

    Raises:
        AudioError: a rate that is not a positive integer.
        DependencyMissingError: soxr is not installed (only needed when the rates differ).
    """

    def __init__(self, from_hz: int, to_hz: int) -> None:
        self.from_hz = _check_rate(from_hz, "from_hz")
        self.to_hz = _check_rate(to_hz, "to_hz")
        self._stream: Any = None
        if self.from_hz != self.to_hz:
            self._stream = _soxr().ResampleStream(self.from_hz, self.to_hz, 1, dtype="float32", quality=_RESAMPLE_QUALITY)

    def push(self, samples: np.ndarray, *, last: bool = False) -> np.ndarray:
        """Resamples the next piece of the stream.

        Args:
            samples: np.ndarray, shape (n,), float, at ``from_hz``.
            last: the stream ends with this piece: also return what the filter still holds.

        Returns:
            np.ndarray, shape (m,), float32, at ``to_hz``; m varies from piece to piece (the filter
            holds back a few milliseconds until the next piece or ``last``).
        """
        piece = _mono_float32(samples, "samples")
        if self._stream is None:
            return piece.copy()
        return np.asarray(self._stream.resample_chunk(piece, last=last), dtype=np.float32)

    def flush(self) -> np.ndarray:
        """The samples the filter still holds, at the end of the stream (``push(empty, last=True)``)."""
        return self.push(np.zeros(0, np.float32), last=True)


# --- files -------------------------------------------------------------------------------------


class _DecodeError(Exception):
    """A file cannot be decoded; the message says why (mapped to AudioError or SourceUnavailableError)."""


class _Decoder(abc.ABC):
    """Reads an audio file in blocks of frames, (frames, channels) float32 at the file's rate."""

    sample_rate_hz: int
    channels: int
    describe: str

    @abc.abstractmethod
    def read(self, frames: int) -> np.ndarray:
        """Up to ``frames`` frames, shape (k, channels); k == 0 at the end."""

    @abc.abstractmethod
    def rewind(self) -> None:
        """Starts again from the first frame."""

    @abc.abstractmethod
    def close(self) -> None:
        """Releases the file; safe to call twice."""


class _SoundfileDecoder(_Decoder):
    def __init__(self, path: Path) -> None:
        soundfile = _soundfile()
        try:
            self._file = soundfile.SoundFile(str(path))
        except (soundfile.LibsndfileError, RuntimeError, TypeError, ValueError) as exc:
            raise _DecodeError(f"soundfile (libsndfile {soundfile.__libsndfile_version__}) cannot read it: {exc}") from exc
        self.sample_rate_hz = int(self._file.samplerate)
        self.channels = int(self._file.channels)
        self.describe = f"{self._file.format}/{self._file.subtype}"

    def read(self, frames: int) -> np.ndarray:
        try:
            return np.asarray(self._file.read(frames, dtype="float32", always_2d=True))
        except (RuntimeError, ValueError) as exc:
            raise _DecodeError(f"decoding failed after {self._file.tell()} frames: {exc}") from exc

    def rewind(self) -> None:
        self._file.seek(0)

    def close(self) -> None:
        self._file.close()


class _FfmpegDecoder(_Decoder):
    """Decodes what libsndfile cannot (AAC, WMA, video containers) with an ffmpeg subprocess."""

    def __init__(self, path: Path, ffmpeg: str, ffprobe: str) -> None:
        self._path = path
        self._ffmpeg = ffmpeg
        probe = subprocess.run(
            [ffprobe, "-v", "error", "-select_streams", "a:0", "-show_entries", "stream=sample_rate,channels,codec_name", "-of", "json", str(path)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        try:
            stream = json.loads(probe.stdout)["streams"][0]
            self.sample_rate_hz = int(stream["sample_rate"])
            self.channels = int(stream["channels"])
        except (ValueError, KeyError, IndexError, TypeError):
            raise _DecodeError(f"ffprobe finds no audio stream in it ({probe.stderr.strip()[-300:] or 'no output'})") from None
        if self.sample_rate_hz <= 0 or self.channels <= 0:
            raise _DecodeError(f"ffprobe reports {self.sample_rate_hz} Hz, {self.channels} channels")
        self.describe = f"ffmpeg/{stream.get('codec_name', '?')}"
        self._process: subprocess.Popen[bytes] | None = None
        self._frames = 0

    def _open(self) -> subprocess.Popen[bytes]:
        if self._process is None:
            command = [self._ffmpeg, "-nostdin", "-loglevel", "error", "-i", str(self._path), "-map", "0:a:0", "-f", "f32le", "-acodec", "pcm_f32le", "-"]
            self._process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            self._frames = 0
        return self._process

    def read(self, frames: int) -> np.ndarray:
        process = self._open()
        assert process.stdout is not None
        want = frames * self.channels * 4
        data = bytearray()
        while len(data) < want:
            piece = process.stdout.read(want - len(data))
            if not piece:
                break
            data += piece
        if len(data) < want:  # the end: ffmpeg must have exited cleanly
            code = process.wait()
            if code != 0:
                error = process.stderr.read().decode(errors="replace").strip() if process.stderr else ""
                decoded = self._frames + len(data) // (4 * self.channels)
                raise _DecodeError(f"ffmpeg failed after {decoded} frames (exit {code}): {error[-300:]}")
        usable = len(data) // (4 * self.channels) * 4 * self.channels
        block = np.frombuffer(bytes(data[:usable]), "<f4").reshape(-1, self.channels)
        self._frames += len(block)
        return block

    def rewind(self) -> None:
        self.close()

    def close(self) -> None:
        process, self._process = self._process, None
        if process is not None:
            process.kill()
            process.wait()
            for stream in (process.stdout, process.stderr):
                if stream is not None:
                    stream.close()


def _open_decoder(path: Path) -> _Decoder:
    """soundfile, else ffmpeg when it is on the PATH. Raises _DecodeError saying what was tried."""
    if not path.is_file():
        raise _DecodeError(f"expected an audio file, found {'a directory' if path.exists() else 'nothing'}")
    if path.stat().st_size == 0:
        raise _DecodeError("expected an audio file, found an empty file")
    try:
        return _SoundfileDecoder(path)
    except _DecodeError as first:
        ffmpeg, ffprobe = shutil.which("ffmpeg"), shutil.which("ffprobe")
        if ffmpeg is None or ffprobe is None:
            raise _DecodeError(
                f"{first}; other formats are read through ffmpeg, which is not installed (apt install ffmpeg)"
            ) from None
        try:
            return _FfmpegDecoder(path, ffmpeg, ffprobe)
        except _DecodeError as second:
            raise _DecodeError(f"{first}; ffmpeg cannot read it either: {second}") from None


def _mixdown(block: np.ndarray) -> np.ndarray:
    """(frames, channels) -> (frames,) float32, the mean of the channels."""
    if block.shape[1] == 1:
        return np.ascontiguousarray(block[:, 0], dtype=np.float32)
    return block.mean(axis=1, dtype=np.float32)


def read_audio(path: str | os.PathLike[str], sample_rate_hz: int | None = None) -> tuple[np.ndarray, int]:
    """Reads a whole audio file as mono float32, resampled when a rate is given.

    Args:
        path: a file soundfile reads (WAV, FLAC, Ogg Vorbis/Opus, MP3, AIFF, ...), or any format
            ffmpeg reads when ``ffmpeg`` and ``ffprobe`` are on the PATH.
        sample_rate_hz: resample to this rate (:func:`resample`); None keeps the file's rate.

    Returns:
        (samples, sample_rate_hz): samples np.ndarray, shape (n,), float32 in [-1, 1] (the mean of
        the channels), and their rate.

    Raises:
        AudioError: the file is missing, empty, unreadable, or has no samples.
        DependencyMissingError: soundfile (or soxr, to resample) is not installed.
    """
    path = Path(path)
    if sample_rate_hz is not None:
        _check_rate(sample_rate_hz, "sample_rate_hz")
    try:
        decoder = _open_decoder(path)
        try:
            blocks = []
            while len(block := decoder.read(1 << 20)):
                blocks.append(_mixdown(block))
        finally:
            decoder.close()
    except _DecodeError as exc:
        raise AudioError(f"audio file {path}: {exc}") from None
    samples = np.concatenate(blocks) if blocks else np.zeros(0, np.float32)
    if samples.size == 0:
        raise AudioError(f"audio file {path}: expected audio samples, found none")
    if sample_rate_hz is None or sample_rate_hz == decoder.sample_rate_hz:
        return samples, decoder.sample_rate_hz
    return resample(samples, decoder.sample_rate_hz, sample_rate_hz), int(sample_rate_hz)


# --- devices -----------------------------------------------------------------------------------


def list_input_devices() -> list[dict[str, Any]]:
    """The input devices PortAudio sees: ``{"index", "name", "hostapi", "max_input_channels",
    "default_samplerate", "default"}`` each, the default input device marked.

    Raises:
        DependencyMissingError: sounddevice is not installed.
        SourceUnavailableError: the PortAudio library is missing.
    """
    sd = _sounddevice()
    default = _default_input(sd)
    devices = []
    for info in sd.query_devices():
        if info["max_input_channels"] > 0:
            devices.append(
                {
                    "index": int(info["index"]),
                    "name": str(info["name"]),
                    "hostapi": str(sd.query_hostapis(info["hostapi"])["name"]),
                    "max_input_channels": int(info["max_input_channels"]),
                    "default_samplerate": float(info["default_samplerate"]),
                    "default": int(info["index"]) == default,
                }
            )
    return devices


def _default_input(sd: Any) -> int | None:
    try:
        index = sd.default.device[0]
        if index is None or int(index) < 0:
            index = sd.query_devices(kind="input")["index"]
        return int(index)
    except (sd.PortAudioError, ValueError, TypeError, KeyError):
        return None


def _devices_text(devices: list[dict[str, Any]]) -> str:
    if not devices:
        return "none (no microphone, or no sound server reachable)"
    return "; ".join(f"{d['index']}: {d['name']!r} ({d['hostapi']}{', default' if d['default'] else ''})" for d in devices)


def _resolve_device(target: int | str | None, label: str) -> dict[str, Any]:
    """The input device for an index, a name (substring) or None (the default)."""
    devices = list_input_devices()
    if target is None:
        found = [d for d in devices if d["default"]]
        if not found:
            raise SourceUnavailableError(f"mic {label}: there is no default input device; input devices here: {_devices_text(devices)}")
        return found[0]
    if isinstance(target, int):
        found = [d for d in devices if d["index"] == target]
        if not found:
            raise SourceUnavailableError(f"mic {label}: no input device with index {target}; input devices here: {_devices_text(devices)}")
        return found[0]
    exact = [d for d in devices if d["name"].lower() == target.lower()]
    found = exact or [d for d in devices if target.lower() in d["name"].lower()]
    if len(found) == 1:
        return found[0]
    if not found:
        raise SourceUnavailableError(f"mic {label}: no input device named like {target!r}; input devices here: {_devices_text(devices)}")
    raise InvalidSourceError(
        f"mic {label}: {len(found)} input devices match {target!r}: {_devices_text(found)}; give the full name or the index"
    )


# --- URIs --------------------------------------------------------------------------------------


def _parse_uri(uri: str | int | os.PathLike[str]) -> tuple[str, Path | int | str | None]:
    """("file", path) or ("mic", index | name | None for the default)."""
    if isinstance(uri, bool):
        raise InvalidSourceError(f"an audio source is a URI, a path or a device index, got {uri!r}")
    if isinstance(uri, (int, np.integer)):
        if uri < 0:
            raise InvalidSourceError(f"a device index is >= 0, got {uri}")
        return "mic", int(uri)
    if isinstance(uri, os.PathLike):
        return "file", Path(os.fspath(uri))
    if not isinstance(uri, str):
        raise InvalidSourceError(f"an audio source is a URI, a path or a device index, got {type(uri).__name__} {uri!r}")
    text = uri.strip()
    if not text:
        raise InvalidSourceError(f"empty audio source URI; expected {_SUPPORTED_HELP}")
    match = _SCHEME.match(text)
    if match is not None:
        scheme, rest = match.group(1).lower(), unquote(text[match.end() :])
        if scheme == "file":
            return "file", Path(rest).expanduser()
        if scheme == "mic":
            rest = rest.strip()
            if rest in ("", "default"):
                return "mic", None
            return "mic", int(rest) if rest.isdigit() else rest
        raise InvalidSourceError(f"unknown audio source scheme '{scheme}://' in {uri!r}; supported: {_SUPPORTED_HELP}")
    if text.isdigit():
        return "mic", int(text)
    if text == "default":
        return "mic", None
    path = Path(text).expanduser()
    if path.suffix.lower() in AUDIO_EXTENSIONS or os.sep in text or path.exists():
        return "file", path
    return "mic", text


def open_audio_source(
    uri: str | int | os.PathLike[str],
    *,
    name: str = "mic",
    sample_rate_hz: int = 16000,
    realtime: bool = True,
    loop: bool = False,
    chunk_s: float = 0.1,
    device_sample_rate_hz: int | None = None,
    buffer_s: float = 10.0,
) -> AudioSource:
    """Makes the audio source a URI names; :meth:`AudioSource.start` (or ``with``) opens it.

    Checks what can be checked without opening: the scheme and options, that the file exists and
    decodes, that the device exists (the message lists the input devices there are).

    Args:
        uri: ``"default"`` or ``"mic://"`` (the default input device), a device index (``3``,
            ``"3"``, ``"mic://3"``), ``"mic://NAME"`` or a device name substring, ``file://PATH``
            or a plain path to an audio file (:data:`AUDIO_EXTENSIONS`, or any existing file).
        name: the name chunks carry.
        sample_rate_hz: the rate chunks have (the model's rate); audio is resampled to it.
        realtime: files: True releases each chunk when its last sample is due, like a
            microphone; False returns chunks as fast as they are read. A slow reader of a
            real-time file falls behind and catches up; no audio is dropped.
        loop: files: start again at the end (``time_s`` keeps growing).
        chunk_s: length of a chunk in seconds (chunks vary by a few samples with resampling).
        device_sample_rate_hz: mics: the rate to capture at (default: the device's own rate).
        buffer_s: mics: length of the ring buffer; a reader that falls further behind loses
            the oldest audio (counted in :attr:`AudioSourceStats.dropped_s`).

    Returns:
        The source, not started.

    Raises:
        InvalidSourceError: an unknown scheme, a malformed URI, an option that does not apply
            to this kind of source, or a value out of range.
        SourceUnavailableError: a missing or unreadable file; no such device (or no default
            device); the PortAudio library is missing.
        DependencyMissingError: sounddevice, soundfile or soxr is not installed.
    """
    if isinstance(sample_rate_hz, bool) or not isinstance(sample_rate_hz, int) or sample_rate_hz <= 0:
        raise InvalidSourceError(f"sample_rate_hz must be a positive integer, got {sample_rate_hz!r}")
    if not chunk_s > 0:
        raise InvalidSourceError(f"chunk_s must be > 0, got {chunk_s}")
    kind, target = _parse_uri(uri)
    if kind == "file":
        assert isinstance(target, Path)
        if device_sample_rate_hz is not None:
            raise InvalidSourceError(f"{name}: device_sample_rate_hz applies to microphones; a file plays at its own rate")
        try:
            decoder = _open_decoder(target)
        except _DecodeError as exc:
            raise SourceUnavailableError(f"audio file {str(target)!r}: {exc}") from None
        return _FileSource(decoder, path=target, name=name, sample_rate_hz=sample_rate_hz, realtime=realtime, loop=loop, chunk_s=chunk_s)
    if loop or not realtime:
        option = "loop=True" if loop else "realtime=False"
        raise InvalidSourceError(f"{name}: {option} applies to audio files; a microphone runs at its own rate")
    if device_sample_rate_hz is not None and (isinstance(device_sample_rate_hz, bool) or device_sample_rate_hz <= 0):
        raise InvalidSourceError(f"device_sample_rate_hz must be a positive integer, got {device_sample_rate_hz!r}")
    if not buffer_s >= 2 * chunk_s:
        raise InvalidSourceError(f"buffer_s must be at least twice chunk_s ({2 * chunk_s:g} s), got {buffer_s}")
    assert not isinstance(target, Path)
    device = _resolve_device(target, f"{name} ({uri!r})")
    return _MicSource(
        device,
        name=name,
        sample_rate_hz=sample_rate_hz,
        chunk_s=chunk_s,
        device_sample_rate_hz=device_sample_rate_hz or round(device["default_samplerate"]),
        buffer_s=buffer_s,
    )


# --- the sources -------------------------------------------------------------------------------


class _Fifo:
    """Resampled samples waiting to be cut into chunks, with the stream time of the first one."""

    def __init__(self) -> None:
        self._pieces: list[np.ndarray] = []
        self._length = 0
        self.time_s = 0.0

    def __len__(self) -> int:
        return self._length

    def push(self, samples: np.ndarray) -> None:
        if len(samples):
            self._pieces.append(samples)
            self._length += len(samples)

    def pop(self, count: int, sample_rate_hz: int) -> tuple[np.ndarray, float]:
        """The first ``count`` samples (a new array) and the stream time of the first of them."""
        joined = np.concatenate(self._pieces) if len(self._pieces) != 1 else self._pieces[0]
        head, rest = joined[:count].copy(), joined[count:]
        self._pieces = [rest] if len(rest) else []
        self._length = len(rest)
        time_s = self.time_s
        self.time_s += len(head) / sample_rate_hz
        return head, time_s


class AudioSource(abc.ABC):
    """A started or startable source of audio chunks; made by :func:`open_audio_source`.

    Use it as a context manager (``with open_audio_source(uri) as source``), or call
    :meth:`start` and :meth:`close`. :meth:`read` and iteration start it when needed. One thread
    should read it; :meth:`stats` and :meth:`close` may be called from any thread.

    Chunks have ``round(chunk_s * sample_rate_hz)`` samples; only the last chunk of a file, and a
    mic's chunk just before audio was lost, are shorter.

    Attributes:
        name: the name chunks carry.
        kind: "mic" or "file".
        sample_rate_hz: the rate of every chunk's samples.
        chunk_s: the nominal length of a chunk.
    """

    kind: str

    def __init__(self, *, name: str, sample_rate_hz: int, chunk_s: float) -> None:
        self.name = name
        self.sample_rate_hz = sample_rate_hz
        self.chunk_s = chunk_s
        self._chunk_samples = max(1, round(chunk_s * sample_rate_hz))
        self._fifo = _Fifo()
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._started = False
        self._started_at = 0.0
        self._chunks = 0
        self._samples = 0

    @property
    @abc.abstractmethod
    def ended(self) -> bool:
        """Whether no more audio will come: the end of a file (not looping), or :meth:`close`."""

    @abc.abstractmethod
    def _open(self) -> None:
        """Starts capturing or decoding. Raises SourceUnavailableError."""

    @abc.abstractmethod
    def _next(self, deadline: float | None) -> AudioChunk | None:
        """The next chunk, waiting until ``deadline`` (monotonic) at most; None on timeout or end."""

    @abc.abstractmethod
    def _release(self) -> None:
        """Stops capturing or decoding (or closes what open_audio_source() opened); called once, by close()."""

    @abc.abstractmethod
    def stats(self) -> AudioSourceStats:
        """The source's counters now."""

    def __repr__(self) -> str:
        if self._closing.is_set():
            state = "closed"
        else:
            state = "ended" if self.ended else "running" if self._started else "not started"
        return f"{type(self).__name__.lstrip('_')}({self.name!r}, {self.sample_rate_hz} Hz, {state})"

    def start(self) -> AudioSource:
        """Opens the device or file; a device that cannot capture fails here, not later.

        Returns:
            The source itself, so ``source = open_audio_source(uri).start()`` works.

        Raises:
            SourceUnavailableError: the device cannot be opened at this rate (the message says
                which channel counts were tried and why they failed).
            SourceError: the source was closed.
        """
        with self._lock:
            if self._closing.is_set():
                raise SourceError(f"{self.name}: the audio source is closed; open it again with open_audio_source()")
            if self._started:
                return self
            self._open()
            self._started_at = time.monotonic()
            self._started = True
        return self

    def read(self, timeout_s: float | None = None) -> AudioChunk | None:
        """The next chunk of audio, waiting for it if needed.

        Args:
            timeout_s: longest wait in seconds; None waits until a chunk, the end or an error.

        Returns:
            The chunk, or None at the end of a file, after :meth:`close`, or when ``timeout_s``
            passed first (:attr:`ended` tells these apart).

        Raises:
            SourceUnavailableError: the source did not open (when read() started it).
            SourceDisconnectedError: a microphone's stream stopped (the device went away).
            SourceError: decoding a file failed midway.
        """
        if not self._started and not self._closing.is_set():
            self.start()
        if self._closing.is_set():
            return None
        chunk = self._next(None if timeout_s is None else time.monotonic() + max(timeout_s, 0.0))
        if chunk is not None:
            with self._lock:
                self._chunks += 1
                self._samples += len(chunk.samples)
        return chunk

    def __iter__(self) -> Iterator[AudioChunk]:
        """Chunks until the end of a file, :meth:`close`, or an error (raised)."""
        while (chunk := self.read()) is not None:
            yield chunk

    def close(self) -> None:
        """Stops the source and releases the device or file; a waiting read returns None. Safe to call twice."""
        with self._lock:
            if self._closing.is_set():
                return
            self._closing.set()
        self._release()

    def __enter__(self) -> AudioSource:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()

    def _uptime_s(self) -> float:
        return time.monotonic() - self._started_at if self._started else 0.0

    def _pop_chunk(self, count: int, wall_time: float | None = None) -> AudioChunk:
        samples, time_s = self._fifo.pop(count, self.sample_rate_hz)
        samples.setflags(write=False)
        return AudioChunk(
            samples=samples,
            time_s=time_s,
            sample_rate_hz=self.sample_rate_hz,
            wall_time=time.time() if wall_time is None else wall_time,
            source=self.name,
        )


class _FileSource(AudioSource):
    """An audio file, decoded on the reader's thread a chunk at a time (no thread of its own)."""

    kind = "file"

    def __init__(
        self, decoder: _Decoder, *, path: Path, name: str, sample_rate_hz: int, realtime: bool, loop: bool, chunk_s: float
    ) -> None:
        super().__init__(name=name, sample_rate_hz=sample_rate_hz, chunk_s=chunk_s)
        self.path = path
        self.realtime = realtime
        self.loop = loop
        self._decoder = decoder
        self._block_frames = max(1, math.ceil(chunk_s * decoder.sample_rate_hz))
        self._resampler = StreamResampler(decoder.sample_rate_hz, sample_rate_hz)
        self._waiting: AudioChunk | None = None  # cut, not yet due (real time)
        self._captured_frames = 0
        self._laps = 0
        self._lap_had_audio = False
        self._exhausted = False
        self._done = False

    @property
    def ended(self) -> bool:
        return self._closing.is_set() or self._done

    def _open(self) -> None:
        """The decoder was opened by open_audio_source(); nothing is left to do."""

    def _release(self) -> None:
        self._decoder.close()

    def _decode_more(self) -> None:
        try:
            block = self._decoder.read(self._block_frames)
        except _DecodeError as exc:
            self._exhausted = True
            raise SourceError(f"audio file {str(self.path)!r}: {exc}") from None
        if len(block):
            self._captured_frames += len(block)
            self._lap_had_audio = True
            self._fifo.push(self._resampler.push(_mixdown(block)))
            return
        self._fifo.push(self._resampler.flush())
        if self.loop and self._lap_had_audio:
            # A fresh filter per lap: each lap gives exactly the samples one pass gives.
            self._decoder.rewind()
            self._resampler = StreamResampler(self._decoder.sample_rate_hz, self.sample_rate_hz)
            self._laps += 1
            self._lap_had_audio = False
        else:
            self._exhausted = True

    def _next(self, deadline: float | None) -> AudioChunk | None:
        if self._waiting is None:
            while len(self._fifo) < self._chunk_samples and not self._exhausted and not self._closing.is_set():
                self._decode_more()
            if not len(self._fifo) or self._closing.is_set():
                self._done = True
                return None
            count = min(self._chunk_samples, len(self._fifo))
            due = self._started_at + self._fifo.time_s + count / self.sample_rate_hz
            wall = time.time() + (due - time.monotonic()) if self.realtime else None
            self._waiting = self._pop_chunk(count, wall)
        if self.realtime:
            due = self._started_at + self._waiting.end_s
            if deadline is not None and due > deadline:
                self._closing.wait(max(0.0, deadline - time.monotonic()))
                return None
            wait_s = due - time.monotonic()
            if wait_s > 0 and self._closing.wait(wait_s):
                return None
        chunk, self._waiting = self._waiting, None
        if self._exhausted and not len(self._fifo):
            self._done = True
        return chunk

    def stats(self) -> AudioSourceStats:
        with self._lock:
            chunks, samples = self._chunks, self._samples
        return AudioSourceStats(
            source=self.name,
            kind=self.kind,
            chunks=chunks,
            samples=samples,
            delivered_s=samples / self.sample_rate_hz,
            captured_s=self._captured_frames / self._decoder.sample_rate_hz,
            buffered_s=0.0,
            dropped_s=0.0,
            overflows=0,
            laps=self._laps,
            sample_rate_hz=self.sample_rate_hz,
            device_sample_rate_hz=self._decoder.sample_rate_hz,
            uptime_s=self._uptime_s(),
            ended=self.ended,
        )


class _Ring:
    """The buffer PortAudio's callback writes into: allocated once, written without locks.

    One writer (the callback) and one reader (:meth:`_MicSource._take`). The writer copies a block
    and then advances ``written`` (frames written since the start); the reader copies what lies
    between its position and ``written``, then checks, from ``written`` and the largest block seen,
    whether the writer may have overwritten any of it meanwhile, and if so takes it again.
    """

    def __init__(self, frames: int, channels: int) -> None:
        self.data = np.zeros((frames, channels), np.float32)
        self.capacity = frames
        self.written = 0
        self.max_block = 0
        self.overflows = 0
        self.last_wall = 0.0

    def callback(self, indata: np.ndarray, frames: int, time_info: Any, status: Any) -> None:
        # PortAudio's audio thread: copy and count, nothing else (no locks, logging or new arrays).
        if status.input_overflow:
            self.overflows += 1
        if frames > self.max_block:
            self.max_block = frames
        capacity = self.capacity
        start = self.written % capacity
        kept = frames
        if frames > capacity:  # a block larger than the whole ring: keep its newest part
            indata = indata[frames - capacity :]
            start = (start + frames - capacity) % capacity
            kept = capacity
        first = min(kept, capacity - start)
        self.data[start : start + first] = indata[:first]
        if first < kept:
            self.data[: kept - first] = indata[first:kept]
        self.written += frames
        self.last_wall = time.time()


class _MicSource(AudioSource):
    """A microphone through sounddevice; see the module docstring for the ring buffer."""

    kind = "mic"

    def __init__(
        self,
        device: dict[str, Any],
        *,
        name: str,
        sample_rate_hz: int,
        chunk_s: float,
        device_sample_rate_hz: int,
        buffer_s: float,
    ) -> None:
        super().__init__(name=name, sample_rate_hz=sample_rate_hz, chunk_s=chunk_s)
        self.device = device
        self.device_sample_rate_hz = int(device_sample_rate_hz)
        self.buffer_s = buffer_s
        self._block_frames = max(1, round(chunk_s * self.device_sample_rate_hz))
        self._poll_s = min(0.02, max(0.002, chunk_s / 5))
        self._ring: _Ring | None = None
        self._stream: Any = None
        self._resampler = StreamResampler(self.device_sample_rate_hz, sample_rate_hz)
        self._read_pos = 0
        self._dropped_frames = 0
        self._logged = (0, 0)
        self._last_log = 0.0

    @property
    def ended(self) -> bool:
        return self._closing.is_set()

    def _open(self) -> None:
        sd = _sounddevice()
        label = f"mic {self.name} (device {self.device['index']}: {self.device['name']!r})"
        tried = []
        for channels in dict.fromkeys((min(2, self.device["max_input_channels"]), 1)):
            ring = _Ring(max(round(self.buffer_s * self.device_sample_rate_hz), 2 * self._block_frames), channels)
            try:
                stream = sd.InputStream(
                    device=self.device["index"],
                    channels=channels,
                    samplerate=self.device_sample_rate_hz,
                    dtype="float32",
                    callback=ring.callback,
                )
                stream.start()
            except (sd.PortAudioError, ValueError) as exc:
                tried.append(f"{channels} channel(s): {exc}")
                continue
            self._ring, self._stream = ring, stream
            _log.info(
                "%s: capturing %d channel(s) at %d Hz, resampled to %d Hz",
                label,
                channels,
                self.device_sample_rate_hz,
                self.sample_rate_hz,
            )
            return
        raise SourceUnavailableError(f"{label}: cannot capture at {self.device_sample_rate_hz} Hz ({'; '.join(tried)})")

    def _release(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            try:
                stream.abort(ignore_errors=True)
            finally:
                stream.close(ignore_errors=True)

    def _skip_lost(self, ring: _Ring) -> int:
        """Moves the read position past audio the writer has overwritten or may be overwriting."""
        safe = ring.capacity - ring.max_block  # the writer's next block may land just behind us
        lost = ring.written - self._read_pos - safe
        if lost <= 0:
            return 0
        self._read_pos += lost
        self._dropped_frames += lost
        return lost

    def _take(self) -> AudioChunk | None:
        """The next chunk when the ring holds enough audio, else None. Reader side only."""
        ring = self._ring
        assert ring is not None
        while len(self._fifo) < self._chunk_samples:
            lost = self._skip_lost(ring)
            if lost:
                # A gap: finish the audio before it, then count the gap into the stream time.
                self._fifo.push(self._resampler.flush())
                self._resampler = StreamResampler(self.device_sample_rate_hz, self.sample_rate_hz)
                chunk = self._pop_chunk(len(self._fifo), ring.last_wall) if len(self._fifo) else None
                self._fifo.time_s += lost / self.device_sample_rate_hz
                if chunk is not None:
                    return chunk
            available = ring.written - self._read_pos
            if available <= 0:
                return None
            count = min(available, self._block_frames)
            start = self._read_pos % ring.capacity
            first = min(count, ring.capacity - start)
            if first < count:
                block = np.concatenate((ring.data[start:], ring.data[: count - first]))
            else:
                block = ring.data[start : start + count].copy()
            if ring.written + ring.max_block - ring.capacity > self._read_pos:
                continue  # the writer may have reached what was just copied: _skip_lost() next
            self._read_pos += count
            self._fifo.push(self._resampler.push(_mixdown(block)))
        return self._pop_chunk(self._chunk_samples, ring.last_wall)

    def _log_losses(self) -> None:
        ring = self._ring
        if ring is None:
            return
        now = time.monotonic()
        counts = (ring.overflows, self._dropped_frames)
        if counts != self._logged and now - self._last_log >= _OVERFLOW_LOG_EVERY_S:
            _log.warning(
                "%s: audio lost: %d PortAudio input overflow(s), %.2f s dropped by a reader more than "
                "buffer_s=%g s behind (totals)",
                self.name,
                counts[0],
                counts[1] / self.device_sample_rate_hz,
                self.buffer_s,
            )
            self._logged, self._last_log = counts, now

    def _next(self, deadline: float | None) -> AudioChunk | None:
        while not self._closing.is_set():
            chunk = self._take()
            self._log_losses()
            if chunk is not None:
                return chunk
            stream = self._stream
            if stream is not None and not stream.active and not self._closing.is_set():
                raise SourceDisconnectedError(
                    f"mic {self.name}: the audio stream stopped (device {self.device['name']!r} gone?)"
                )
            wait_s = self._poll_s if deadline is None else min(self._poll_s, deadline - time.monotonic())
            if wait_s <= 0:
                return None
            self._closing.wait(wait_s)
        return None

    def stats(self) -> AudioSourceStats:
        with self._lock:
            chunks, samples = self._chunks, self._samples
        ring = self._ring
        rate = self.device_sample_rate_hz
        written = ring.written if ring is not None else 0
        buffered = min(max(written - self._read_pos, 0), ring.capacity) if ring is not None else 0
        return AudioSourceStats(
            source=self.name,
            kind=self.kind,
            chunks=chunks,
            samples=samples,
            delivered_s=samples / self.sample_rate_hz,
            captured_s=written / rate,
            buffered_s=buffered / rate,
            dropped_s=self._dropped_frames / rate,
            overflows=ring.overflows if ring is not None else 0,
            laps=0,
            sample_rate_hz=self.sample_rate_hz,
            device_sample_rate_hz=rate,
            uptime_s=self._uptime_s(),
            ended=self.ended,
        )
