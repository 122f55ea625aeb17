"""Audio in, model features out, in numpy: WAV reading, CLAP's and Whisper's log-mel features.

:func:`clap_features` equals transformers' ``ClapFeatureExtractor`` (5.x) within 1e-4 dB for
both of its modes, read from the manifest's :class:`AudioPreprocessing`:

- ``truncation="rand_trunc"`` (laion/clap-htsat-unfused): audio shorter than ``max_length_s`` is
  repeated and/or zero-padded (``padding``: "repeatpad", "repeat" or "pad"), then turned into one
  log-mel spectrogram with Slaney-scale, Slaney-normalised filters: ``(1, frames, n_mels)``.
- ``truncation="fusion"`` (laion/clap-htsat-fused): HTK-scale filters without normalisation; short
  audio is padded as above and its spectrogram repeated 4 times; longer audio gives the whole
  clip's spectrogram shrunk to the chunk length (bilinear, as ``torch.nn.functional.interpolate``)
  plus three chunks from the front, middle and back thirds: ``(4, frames, n_mels)`` and
  ``is_longer=True``.

Where the extractor draws at random, edgemm is deterministic, so one clip always scores the same:

- ``rand_trunc`` on audio longer than ``max_length_s``: the extractor crops a random window; edgemm
  takes the first ``max_length_s`` seconds.
- ``fusion`` on longer audio: the extractor picks each of the three chunks at a random start within
  its third; edgemm takes the first start of each third.
- ``fusion`` when no clip of a batch is longer than ``max_length_s``: the extractor marks one clip
  of the batch at random as longer (a training-time trick of the original CLAP, so the fusion layers
  see gradients); edgemm reports ``is_longer`` as it is, False for every such clip. A clip's score
  then does not depend on the other clips of its batch.

Everything else (reflect-padded centred STFT with a periodic Hann window, complex64 spectra as the
extractor stores them, power to dB with a 1e-10 floor) is the extractor's own arithmetic.

:func:`whisper_features` equals transformers' ``WhisperFeatureExtractor`` (5.x, its torch path, which
transformers takes whenever torch is installed) within 1e-4: audio zero-padded (or cut) to
``max_length_s`` (30 s), the same centred STFT (n_fft 400, hop 160), Slaney mel filters up to 8 kHz,
the last frame dropped, ``log10`` with a 1e-10 floor, clamped to 8 below the clip's maximum and
scaled as ``(x + 4) / 4``: ``(batch, n_mels, 3000)``.

Resampling is not done here: audio must already be at the model's rate; another rate is refused
with :class:`SampleRateMismatchError`.

Typical use::

    spec = pack.component("alerts-audio").audio                  # an AudioPreprocessing
    samples, rate = read_wav("clip.wav")                          # float32 (n,), Hz
    features, is_longer = clap_features([samples], spec, sample_rate_hz=rate)
"""

from __future__ import annotations

import functools
import os
import wave
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .errors import AudioError, ManifestError, SampleRateMismatchError
from .pack import AudioPreprocessing

__all__ = [
    "CLAP_PADDINGS",
    "CLAP_TRUNCATIONS",
    "check_waveform",
    "clap_channels",
    "clap_features",
    "log_mel_spectrogram",
    "max_samples",
    "mel_filter_bank",
    "mel_power_spectrogram",
    "read_wav",
    "whisper_features",
    "whisper_frames",
]

CLAP_TRUNCATIONS = ("rand_trunc", "fusion")
CLAP_PADDINGS = ("repeatpad", "repeat", "pad")

_MEL_FLOOR = 1e-10


# --- reading -------------------------------------------------------------------------------------


def read_wav(path: str | os.PathLike[str], *, mono: bool = True) -> tuple[np.ndarray, int]:
    """Reads a PCM WAV file with the standard library's ``wave`` module.

    Supported: integer PCM with 8 (unsigned), 16, 24 or 32 bits per sample, any number of channels.
    Not supported (refused with :class:`AudioError`): IEEE float WAV, compressed WAV (A-law, mu-law,
    ADPCM) and other containers (convert them first, e.g. ``ffmpeg -i in.ogg -c:a pcm_s16le out.wav``).

    Args:
        path: the WAV file.
        mono: average the channels into one.

    Returns:
        (samples, sample_rate_hz): samples float32 in [-1, 1], shape (n,) when ``mono`` else
        (n, channels).

    Raises:
        AudioError: the file is missing, empty, not a PCM WAV file, or has no samples.
    """
    path = Path(path)
    if not path.is_file():
        raise AudioError(f"audio file {path}: expected a WAV file, found {'a directory' if path.exists() else 'nothing'}")
    try:
        with wave.open(str(path), "rb") as reader:
            channels = reader.getnchannels()
            width = reader.getsampwidth()
            rate = reader.getframerate()
            raw = reader.readframes(reader.getnframes())
    except (wave.Error, EOFError) as exc:
        raise AudioError(f"audio file {path}: expected an integer PCM WAV file (8/16/24/32-bit), could not read it: {exc}") from exc
    if width == 1:
        samples = (np.frombuffer(raw, np.uint8).astype(np.float32) - 128.0) / 128.0
    elif width == 2:
        samples = np.frombuffer(raw, "<i2").astype(np.float32) / 32768.0
    elif width == 3:
        bytes3 = np.frombuffer(raw, np.uint8).reshape(-1, 3).astype(np.int32)
        values = bytes3[:, 0] | (bytes3[:, 1] << 8) | (bytes3[:, 2] << 16)
        values = np.where(values >= 1 << 23, values - (1 << 24), values)
        samples = values.astype(np.float32) / float(1 << 23)
    elif width == 4:
        samples = (np.frombuffer(raw, "<i4").astype(np.float64) / float(1 << 31)).astype(np.float32)
    else:
        raise AudioError(f"audio file {path}: expected 8, 16, 24 or 32-bit PCM samples, found {8 * width}-bit")
    if samples.size == 0:
        raise AudioError(f"audio file {path}: expected audio samples, found none (an empty recording)")
    frames = samples.reshape(-1, channels)
    if mono:
        return frames.mean(axis=1, dtype=np.float64).astype(np.float32), rate
    return frames, rate


def check_waveform(waveform: object, spec: AudioPreprocessing, sample_rate_hz: int, *, label: str = "waveform") -> np.ndarray:
    """A mono waveform as float64, after checking its rank, dtype, values and rate.

    Args:
        waveform: np.ndarray, shape (n,), float (any scale the model was trained on; [-1, 1] for
            CLAP) or int16 PCM (scaled by 1/32768).
        spec: the component's audio preprocessing.
        sample_rate_hz: the rate ``waveform`` was recorded or resampled at.

    Raises:
        SampleRateMismatchError: ``sample_rate_hz`` is not the model's rate.
        AudioError: not a 1-D numeric array, empty, or with NaN/inf values.
    """
    if sample_rate_hz != spec.sample_rate_hz:
        raise SampleRateMismatchError(
            f"{label}: expected audio at {spec.sample_rate_hz} Hz (the model's rate), got {sample_rate_hz} Hz; resample it first"
        )
    if not isinstance(waveform, np.ndarray):
        raise AudioError(f"{label}: expected a numpy array of samples, shape (n,), got {type(waveform).__name__}")
    if waveform.ndim != 1:
        hint = " (stereo? average the channels: samples.mean(axis=1))" if waveform.ndim == 2 else ""
        raise AudioError(f"{label}: expected a mono waveform of shape (n,), got shape {waveform.shape}{hint}")
    if waveform.size == 0:
        raise AudioError(f"{label}: expected at least one sample, got an empty array")
    if waveform.dtype == np.int16:
        return waveform.astype(np.float64) / 32768.0
    if not np.issubdtype(waveform.dtype, np.floating):
        raise AudioError(f"{label}: expected float samples (or int16 PCM), got dtype {waveform.dtype}")
    out = waveform.astype(np.float64)
    if not np.isfinite(out).all():
        raise AudioError(f"{label}: expected finite samples, got NaN or infinite values")
    return out


# --- log-mel spectrograms --------------------------------------------------------------------------


def _hertz_to_mel(freq: np.ndarray, scale: str) -> np.ndarray:
    if scale == "htk":
        return np.asarray(2595.0 * np.log10(1.0 + freq / 700.0))
    mels = 3.0 * freq / 200.0
    log_region = freq >= 1000.0
    mels[log_region] = 15.0 + np.log(freq[log_region] / 1000.0) * (27.0 / np.log(6.4))
    return mels


def _mel_to_hertz(mels: np.ndarray, scale: str) -> np.ndarray:
    if scale == "htk":
        return np.asarray(700.0 * (np.power(10, mels / 2595.0) - 1.0))
    freq = 200.0 * mels / 3.0
    log_region = mels >= 15.0
    freq[log_region] = 1000.0 * np.exp((np.log(6.4) / 27.0) * (mels[log_region] - 15.0))
    return freq


def mel_filter_bank(
    num_frequency_bins: int, num_mel_filters: int, min_hz: float, max_hz: float, sample_rate_hz: int, *, scale: str, norm: str
) -> np.ndarray:
    """Triangular mel filters, as ``transformers.audio_utils.mel_filter_bank`` builds them.

    Args:
        scale: "htk" or "slaney" mel scale. norm: "slaney" (area normalisation) or "none".

    Returns:
        np.ndarray, shape (num_frequency_bins, num_mel_filters), float64.
    """
    mel_min = _hertz_to_mel(np.asarray([min_hz], np.float64), scale)[0]
    mel_max = _hertz_to_mel(np.asarray([max_hz], np.float64), scale)[0]
    filter_freqs = _mel_to_hertz(np.linspace(mel_min, mel_max, num_mel_filters + 2), scale)
    fft_freqs = np.linspace(0, sample_rate_hz // 2, num_frequency_bins)
    diff = np.diff(filter_freqs)
    slopes = filter_freqs[None, :] - fft_freqs[:, None]
    down = -slopes[:, :-2] / diff[:-1]
    up = slopes[:, 2:] / diff[1:]
    filters = np.maximum(np.zeros(1), np.minimum(down, up))
    if norm == "slaney":
        filters *= (2.0 / (filter_freqs[2 : num_mel_filters + 2] - filter_freqs[:num_mel_filters]))[None, :]
    return filters


def mel_power_spectrogram(waveform: np.ndarray, n_fft: int, hop_length: int, filters: np.ndarray) -> np.ndarray:
    """Mel-filtered power spectrogram: centred frames (reflect padding), periodic Hann window.

    Args:
        waveform: np.ndarray, shape (n,), float64.
        filters: np.ndarray, shape (n_fft // 2 + 1, n_mels), from :func:`mel_filter_bank`.

    Returns:
        np.ndarray, shape (n_mels, frames), float64, frames = 1 + n // hop_length.
    """
    half = n_fft // 2
    padded = np.pad(waveform, (half, half), mode="reflect")
    num_frames = 1 + (padded.size - n_fft) // hop_length
    frames = np.lib.stride_tricks.as_strided(
        padded, shape=(num_frames, n_fft), strides=(padded.strides[0] * hop_length, padded.strides[0]), writeable=False
    )
    window = np.hanning(n_fft + 1)[:-1]
    # The extractors store each frame's spectrum as complex64 before taking the power; so do we.
    spectrum = np.fft.rfft(frames * window, axis=-1).astype(np.complex64)
    power = np.abs(spectrum, dtype=np.float64) ** 2
    return np.asarray(filters.T @ power.T)


def log_mel_spectrogram(waveform: np.ndarray, n_fft: int, hop_length: int, filters: np.ndarray) -> np.ndarray:
    """Power log-mel spectrogram in dB, centred frames (reflect padding), periodic Hann window.

    Args:
        waveform: np.ndarray, shape (n,), float64.
        filters: np.ndarray, shape (n_fft // 2 + 1, n_mels), from :func:`mel_filter_bank`.

    Returns:
        np.ndarray, shape (frames, n_mels), float32, frames = 1 + n // hop_length.
    """
    mel = np.maximum(_MEL_FLOOR, mel_power_spectrogram(waveform, n_fft, hop_length, filters))
    decibels = 10.0 * (np.log10(np.clip(mel, _MEL_FLOOR, None)) - np.log10(1.0))
    return np.asarray(decibels.T, dtype=np.float32)


def _bilinear_rows(mel: np.ndarray, rows: int) -> np.ndarray:
    """``torch.nn.functional.interpolate(mel[None, None], (rows, mel.shape[1]), mode="bilinear",
    align_corners=False)`` for a (frames, n_mels) float32 array: only the time axis changes size.

    Positions and weights follow torch's CPU kernel: a float32 ratio, the source position computed
    in double and rounded to float32, float32 weights; the result is within 2 float32 ulps of it.
    """
    source = mel.shape[0]
    ratio = np.float32(source) / np.float32(rows)
    position = (np.float64(ratio) * (np.arange(rows, dtype=np.float64) + 0.5) - 0.5).astype(np.float32)
    position = np.maximum(position, np.float32(0.0))
    low = np.minimum(position.astype(np.int64), source - 1)
    high = np.minimum(low + 1, source - 1)
    weight = np.clip(position - low.astype(np.float32), np.float32(0.0), np.float32(1.0))[:, None]
    return np.asarray((np.float32(1.0) - weight) * mel[low] + weight * mel[high], dtype=np.float32)


# --- CLAP ----------------------------------------------------------------------------------------


def _check_clap_spec(spec: AudioPreprocessing) -> None:
    if spec.feature != "log_mel_clap":
        raise ManifestError(f"audio preprocessing: expected feature 'log_mel_clap' for CLAP features, got {spec.feature!r}")
    if spec.truncation not in CLAP_TRUNCATIONS:
        raise ManifestError(f"audio preprocessing: expected truncation one of {list(CLAP_TRUNCATIONS)}, got {spec.truncation!r}")
    if spec.padding not in CLAP_PADDINGS:
        raise ManifestError(f"audio preprocessing: expected padding one of {list(CLAP_PADDINGS)}, got {spec.padding!r}")
    if min(spec.n_fft, spec.hop_length, spec.n_mels) <= 0 or spec.max_length_s <= 0:
        raise ManifestError(f"audio preprocessing: n_fft, hop_length, n_mels and max_length_s must be positive, got {spec}")


def clap_channels(spec: AudioPreprocessing) -> int:
    """Spectrograms per clip: 4 with fusion, else 1."""
    return 4 if spec.truncation == "fusion" else 1


def max_samples(spec: AudioPreprocessing) -> int:
    """The clip length the model takes, in samples."""
    return round(spec.max_length_s * spec.sample_rate_hz)


def _fit_length(waveform: np.ndarray, length: int, padding: str | None) -> np.ndarray:
    if waveform.size < length:
        if padding == "repeat":
            waveform = np.tile(waveform, int(length / waveform.size) + 1)[:length]
        elif padding == "repeatpad":
            waveform = np.tile(waveform, int(length / waveform.size))
        waveform = np.pad(waveform, (0, length - waveform.size), mode="constant", constant_values=0)
    return waveform


def _clap_clip(waveform: np.ndarray, spec: AudioPreprocessing, filters: np.ndarray) -> tuple[np.ndarray, bool]:
    length = max_samples(spec)
    if waveform.size > length and spec.truncation == "fusion":
        mel = log_mel_spectrogram(waveform, spec.n_fft, spec.hop_length, filters)
        chunk = length // spec.hop_length + 1
        total = mel.shape[0]
        if chunk == total:
            # Longer than max_length but by less than a hop: the whole clip fits, as the extractor says.
            return np.stack([mel] * 4), False
        ranges = np.array_split(np.arange(total - chunk + 1), 3)
        starts = [int(r[0]) if len(r) else 0 for r in ranges]
        chunks = [mel[s : s + chunk] for s in starts]
        return np.stack([_bilinear_rows(mel, chunk), *chunks]), True
    if waveform.size > length:
        return log_mel_spectrogram(waveform[:length], spec.n_fft, spec.hop_length, filters)[None], True
    mel = log_mel_spectrogram(_fit_length(waveform, length, spec.padding), spec.n_fft, spec.hop_length, filters)
    if spec.truncation == "fusion":
        return np.stack([mel] * 4), False
    return mel[None], False


def clap_features(
    waveforms: Sequence[np.ndarray], spec: AudioPreprocessing, *, sample_rate_hz: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """CLAP's model inputs for a batch of clips (see the module docstring for the modes).

    Args:
        waveforms: mono clips, each np.ndarray shape (n_i,), float in [-1, 1] (or int16 PCM), at
            ``spec.sample_rate_hz``. Clips may have different lengths.
        spec: the component's audio preprocessing (``feature="log_mel_clap"``).
        sample_rate_hz: the clips' rate (None: assumed to be the model's).

    Returns:
        (input_features, is_longer): input_features np.ndarray shape (batch, channels, frames,
        n_mels) float32, channels 4 with fusion else 1, frames = max_length // hop + 1;
        is_longer np.ndarray shape (batch, 1) bool.

    Raises:
        SampleRateMismatchError: ``sample_rate_hz`` differs from the model's rate.
        AudioError: a clip is empty, not 1-D, or not numeric/finite.
        ManifestError: ``spec`` is not a CLAP preprocessing.
    """
    _check_clap_spec(spec)
    rate = spec.sample_rate_hz if sample_rate_hz is None else sample_rate_hz
    filters = mel_filter_bank(
        spec.n_fft // 2 + 1,
        spec.n_mels,
        spec.f_min_hz,
        spec.f_max_hz if spec.f_max_hz is not None else spec.sample_rate_hz / 2,
        spec.sample_rate_hz,
        scale=spec.mel_scale,
        norm=spec.mel_norm,
    )
    mels = []
    longer = []
    for i, waveform in enumerate(waveforms):
        samples = check_waveform(waveform, spec, rate, label=f"waveform {i}")
        mel, is_longer = _clap_clip(samples, spec, filters)
        mels.append(mel)
        longer.append(is_longer)
    if not mels:
        frames = max_samples(spec) // spec.hop_length + 1
        return np.zeros((0, clap_channels(spec), frames, spec.n_mels), np.float32), np.zeros((0, 1), bool)
    return np.stack(mels).astype(np.float32), np.asarray(longer, dtype=bool)[:, None]


# --- Whisper ---------------------------------------------------------------------------------------


def _check_whisper_spec(spec: AudioPreprocessing) -> None:
    if spec.feature != "log_mel_whisper":
        raise ManifestError(f"audio preprocessing: expected feature 'log_mel_whisper' for Whisper features, got {spec.feature!r}")
    if min(spec.n_fft, spec.hop_length, spec.n_mels) <= 0 or spec.max_length_s <= 0:
        raise ManifestError(f"audio preprocessing: n_fft, hop_length, n_mels and max_length_s must be positive, got {spec}")


@functools.lru_cache(maxsize=8)
def _whisper_filters(spec: AudioPreprocessing) -> np.ndarray:
    f_max = spec.f_max_hz if spec.f_max_hz is not None else spec.sample_rate_hz / 2
    return mel_filter_bank(
        spec.n_fft // 2 + 1, spec.n_mels, spec.f_min_hz, f_max, spec.sample_rate_hz, scale=spec.mel_scale, norm=spec.mel_norm
    )


def whisper_frames(spec: AudioPreprocessing) -> int:
    """Feature frames per clip: 3000 for the released models (30 s at 16 kHz, hop 160)."""
    return max_samples(spec) // spec.hop_length


def whisper_features(waveforms: Sequence[np.ndarray], spec: AudioPreprocessing, *, sample_rate_hz: int | None = None) -> np.ndarray:
    """Whisper's model input for a batch of clips, as ``WhisperFeatureExtractor`` computes it.

    Args:
        waveforms: mono clips, each np.ndarray shape (n_i,), float in [-1, 1] (or int16 PCM), at
            ``spec.sample_rate_hz``. Clips shorter than ``spec.max_length_s`` are zero-padded, longer
            ones cut there (as the extractor does; :class:`edgemm.runtime.transcriber.Transcriber`
            refuses them instead of losing audio).
        spec: the component's audio preprocessing (``feature="log_mel_whisper"``).
        sample_rate_hz: the clips' rate (None: assumed to be the model's).

    Returns:
        np.ndarray, shape (batch, n_mels, frames), float32, frames = :func:`whisper_frames` (3000).

    Raises:
        SampleRateMismatchError: ``sample_rate_hz`` differs from the model's rate.
        AudioError: a clip is empty, not 1-D, or not numeric/finite.
        ManifestError: ``spec`` is not a Whisper preprocessing.
    """
    _check_whisper_spec(spec)
    rate = spec.sample_rate_hz if sample_rate_hz is None else sample_rate_hz
    filters = _whisper_filters(spec)
    length = max_samples(spec)
    out = np.empty((len(waveforms), spec.n_mels, whisper_frames(spec)), np.float32)
    for i, waveform in enumerate(waveforms):
        samples = check_waveform(waveform, spec, rate, label=f"waveform {i}")[:length]
        padded = np.pad(samples, (0, length - samples.size))
        mel = mel_power_spectrogram(padded, spec.n_fft, spec.hop_length, filters)[:, :-1]
        log = np.log10(np.maximum(mel, _MEL_FLOOR))
        log = np.maximum(log, log.max() - 8.0)
        out[i] = (log + 4.0) / 4.0
    return out
