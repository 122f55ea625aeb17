"""The audio half of the reference world: labelled sound events whose truth is known.

Every clip is made from a seed: a synthetic event (an alarm, a siren, a chime, a beep, knocking) or a
real recording of Debian's ``sound-theme-freedesktop`` and pocketsphinx's LibriVox test speech,
augmented (speed/pitch, spectral tilt, gain, time shift), mixed into coloured noise at a known
signal-to-noise ratio; or noise alone ("background noise"). The same seed always gives the same
samples, so a model's accuracy on the held-out split is a measurement that anyone can repeat.

Splits: ``"train"`` and ``"test"`` draw from disjoint seed streams; the speech class also uses
disjoint recordings (other words, same voices). The other recorded classes have one recording each:
their held-out clips are the same sound with other augmentations, noise and placement.

Typical use::

    from examples.reference_world import audio_world as aw

    rng = np.random.default_rng(7)
    clip = aw.event_clip(rng, "an alarm")                          # (96000,) float32, 2 s at 48 kHz
    waveforms, labels = aw.dataset("test", clips_per_label=20)      # (220, 96000), (220,) int64
    track = aw.soundtrack(20.0, [(5.0, "an alarm", 3.0), (12.0, "a chime")])
    track.events                                                    # true onsets and offsets
    aw.write_wav("demo.wav", track.waveform)
"""

from __future__ import annotations

import functools
import wave
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

__all__ = [
    "BACKGROUND",
    "CLASSES",
    "CLIP_S",
    "LABELS",
    "MEDIA",
    "PROMPT_TEMPLATES",
    "SAMPLE_RATE_HZ",
    "SPLITS",
    "EventClass",
    "EventSpec",
    "PlacedEvent",
    "Soundtrack",
    "Split",
    "background_noise",
    "clip_rng",
    "dataset",
    "demo_soundtrack",
    "event_clip",
    "event_sound",
    "onset_dataset",
    "prompts",
    "soundtrack",
    "write_wav",
]

SAMPLE_RATE_HZ = 48_000
"""Every waveform of this world is at CLAP's rate."""

CLIP_S = 2.0
"""Length of a training/evaluation clip: the CLAP feature extractor's ``max_length_s``."""

BACKGROUND = "background noise"
"""The noise-only class; also edgemm's default background prompt for audio."""

SPLITS = ("train", "test")

Split = Literal["train", "test"]

MEDIA = Path(__file__).resolve().parents[2] / ".cache" / "media"
"""Where scripts/setup.sh puts the Debian media packages."""

_FREEDESKTOP = "sound-theme-freedesktop/usr/share/sounds/freedesktop/stereo"
_LIBRIVOX = "pocketsphinx-testdata/usr/share/pocketsphinx/test/data/librivox"


@dataclass(frozen=True)
class EventClass:
    """One class of sound events.

    Attributes:
        label: the class name, which is also its canonical prompt ("an alarm").
        source: "synthetic" (generated here), "recorded" (real recordings) or "noise".
        description: what the sound is, for people.
        continuous: a continuous sound fills the duration asked of it in a soundtrack (an alarm
            rings until stopped); a one-shot sound plays once at its natural length (a beep).
        demo_duration_s: its length in a soundtrack when none is given (continuous sounds).
        recordings: recording files per split, relative to :data:`MEDIA` (recorded classes).
    """

    label: str
    source: Literal["synthetic", "recorded", "noise"]
    description: str
    continuous: bool
    demo_duration_s: float = 3.0
    recordings: tuple[tuple[Split, tuple[str, ...]], ...] = ()

    def files(self, split: Split) -> tuple[str, ...]:
        """The recordings this class draws from in ``split``."""
        return dict(self.recordings).get(split, ())


def _both(*names: str) -> tuple[tuple[Split, tuple[str, ...]], ...]:
    files = tuple(f"{_FREEDESKTOP}/{n}" for n in names)
    return (("train", files), ("test", files))


_SPEECH_TRAIN = (
    *(f"{_FREEDESKTOP}/audio-channel-{n}.oga" for n in ("front-left", "front-right", "rear-center", "rear-left", "side-left")),
    *(f"{_LIBRIVOX}/sense_and_sensibility_01_austen_64kb-{n}.wav" for n in ("0870", "0880", "0890", "0920")),
)
_SPEECH_TEST = (
    *(f"{_FREEDESKTOP}/audio-channel-{n}.oga" for n in ("front-center", "rear-right", "side-right")),
    f"{_LIBRIVOX}/sense_and_sensibility_01_austen_64kb-0930.wav",
)

CLASSES: tuple[EventClass, ...] = (
    EventClass("an alarm", "synthetic", "two tones (sine or square) alternating every 0.1-0.25 s", continuous=True, demo_duration_s=4.0),
    EventClass("a siren", "synthetic", "a tone sweeping slowly up and down (wail)", continuous=True, demo_duration_s=5.0),
    EventClass("a chime", "synthetic", "one to three struck bell tones with decaying inharmonic partials", continuous=False),
    EventClass("a beep", "synthetic", "one short steady tone", continuous=False),
    EventClass("knocking", "synthetic", "two to five knocks on wood", continuous=False),
    EventClass("a phone ringing", "recorded", "freedesktop phone-incoming-call", continuous=True, demo_duration_s=4.0, recordings=_both("phone-incoming-call.oga")),
    EventClass("an alarm clock", "recorded", "freedesktop alarm-clock-elapsed (high beeps)", continuous=True, demo_duration_s=4.0, recordings=_both("alarm-clock-elapsed.oga")),
    EventClass("a bell", "recorded", "freedesktop bell (a short ding)", continuous=False, recordings=_both("bell.oga")),
    EventClass("a camera shutter", "recorded", "freedesktop camera-shutter", continuous=False, recordings=_both("camera-shutter.oga")),
    EventClass(
        "a person speaking",
        "recorded",
        "freedesktop audio-channel announcements and LibriVox read speech",
        continuous=True,
        demo_duration_s=4.0,
        recordings=(("train", _SPEECH_TRAIN), ("test", _SPEECH_TEST)),
    ),
    EventClass(BACKGROUND, "noise", "coloured noise, sometimes with mains hum, at -80 to -10 dBFS", continuous=True),
)
"""The classes, in label-index order."""

LABELS: tuple[str, ...] = tuple(c.label for c in CLASSES)
"""Class labels in index order (the last is :data:`BACKGROUND`)."""

PROMPT_TEMPLATES = ("{}", "the sound of {}", "a recording of {}", "{} can be heard", "i hear {}")
"""Text forms of a label the CLAP text tower is trained on (the first is the canonical prompt)."""

_BY_LABEL = {c.label: c for c in CLASSES}
_SPLIT_IDS = {"train": 1, "test": 2}
_MIN_VISIBLE_S = 0.5
"""A clip shows at least this much of its event (or all of a shorter one)."""
_MIN_ACTIVE_S = 0.1
"""... and at least this much of it above -20 dB of the event's loudest 10 ms (recordings pause)."""


def prompts(label: str) -> tuple[str, ...]:
    """Every templated prompt of ``label`` (:data:`PROMPT_TEMPLATES`), the canonical one first."""
    _event_class(label)
    return tuple(t.format(label) for t in PROMPT_TEMPLATES)


def _event_class(label: str) -> EventClass:
    try:
        return _BY_LABEL[label]
    except KeyError:
        raise ValueError(f"label: expected one of {list(LABELS)}, got {label!r}") from None


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"split: expected one of {list(SPLITS)}, got {split!r}")


def clip_rng(split: Split, label: str, index: int, *, seed: int = 0) -> np.random.Generator:
    """The generator of clip ``index`` of ``label`` in ``split``: splits never share a stream."""
    _check_split(split)
    return np.random.default_rng([seed, _SPLIT_IDS[split], LABELS.index(label), index])


# --- synthesis -----------------------------------------------------------------------------------


def _seconds(n: int) -> np.ndarray:
    return np.arange(n) / SAMPLE_RATE_HZ


def _oscillator(frequency_hz: np.ndarray, harmonics: Sequence[float], phase: float = 0.0) -> np.ndarray:
    """A tone following ``frequency_hz`` (per sample), harmonics weighted by ``harmonics``, below Nyquist."""
    # Harmonic k is the imaginary part of z**k, z = exp(i * phase): products, not one sine per harmonic.
    z = np.exp(1j * (phase + 2 * np.pi * np.cumsum(frequency_hz) / SAMPLE_RATE_HZ))
    power = np.ones_like(z)
    out = np.zeros(frequency_hz.size)
    limit = 0.45 * SAMPLE_RATE_HZ
    for k, weight in enumerate(harmonics, start=1):
        power *= z
        if weight and k * float(frequency_hz.min()) < limit:
            out += weight * (power.imag if k * float(frequency_hz.max()) < limit else power.imag * (k * frequency_hz < limit))
    return out


def _ramp(n: int, ramp_s: float = 0.004) -> np.ndarray:
    """A gate of ``n`` samples with raised-cosine edges (no clicks at the ends of a tone)."""
    edge = min(n // 2, max(1, int(ramp_s * SAMPLE_RATE_HZ)))
    gate = np.ones(n)
    rise = 0.5 - 0.5 * np.cos(np.linspace(0, np.pi, edge))
    gate[:edge] = rise
    gate[n - edge :] = rise[::-1]
    return gate


_SINE = (1.0,)
_SQUARE = (1.0, 0.0, 1 / 3, 0.0, 1 / 5, 0.0, 1 / 7)
_BUZZER = (1.0, 0.5, 0.3, 0.2, 0.1)


def _timbre(rng: np.random.Generator, choices: Sequence[tuple[float, ...]] = (_SINE, _SQUARE, _BUZZER)) -> tuple[float, ...]:
    """Harmonic weights, one of ``choices``: a sine, a square-ish or a brighter buzzer tone."""
    return choices[int(rng.integers(len(choices)))]


def _alarm(rng: np.random.Generator, duration_s: float) -> np.ndarray:
    n = int(duration_s * SAMPLE_RATE_HZ)
    low = rng.uniform(500, 1400)
    high = low * rng.uniform(1.2, 1.6)
    # Tones of at least 0.1 s: three 33 ms feature frames (the model's time resolution) each.
    tone_s = rng.uniform(0.1, 0.25)
    gap_s = 0.0 if rng.random() < 0.5 else rng.uniform(0.03, 0.08)
    step = int((tone_s + gap_s) * SAMPLE_RATE_HZ)
    tone = int(tone_s * SAMPLE_RATE_HZ)
    frequency = np.empty(n)
    gate = np.zeros(n)
    for i, start in enumerate(range(0, n, step)):
        frequency[start : start + step] = (low, high)[i % 2]
        stop = min(n, start + tone)
        gate[start:stop] = _ramp(stop - start)
    # Sine or square: a buzzer's dense harmonics at a ratio near 1.2 interleave into a stack of
    # lines that, in 0.5 s, looks like a chime's partials.
    return _oscillator(frequency, _timbre(rng, (_SINE, _SQUARE)), rng.uniform(0, 2 * np.pi)) * gate


def _siren(rng: np.random.Generator, duration_s: float) -> np.ndarray:
    t = _seconds(int(duration_s * SAMPLE_RATE_HZ))
    centre, depth, period = rng.uniform(700, 1100), rng.uniform(250, 500), rng.uniform(1.5, 4.0)
    frequency = centre + depth * np.sin(2 * np.pi * t / period + rng.uniform(0, 2 * np.pi))
    return _oscillator(frequency, (1.0, rng.uniform(0.2, 0.6), rng.uniform(0.1, 0.3))) * _ramp(t.size, 0.05)


_BELL_PARTIALS = ((1.0, 2.76, 5.40, 8.93), (1.0, 2.32, 4.25, 6.63))
"""Inharmonic, widely spaced partial ratios (a struck bar, a plate): what tells a chime from a beep's
or an alarm's harmonic tone in the first half second, before its decay shows."""


def _chime(rng: np.random.Generator) -> np.ndarray:
    strikes = int(rng.integers(1, 4))
    spacing_s = rng.uniform(0.25, 0.7)
    decay_s = rng.uniform(0.3, 1.0)
    n = int((spacing_s * (strikes - 1) + 4 * decay_s) * SAMPLE_RATE_HZ)
    out = np.zeros(n)
    ratios = _BELL_PARTIALS[int(rng.integers(len(_BELL_PARTIALS)))]
    pitch = rng.uniform(600, 2000)
    for s in range(strikes):
        start = int(s * spacing_s * SAMPLE_RATE_HZ)
        ring = np.zeros(n - start)
        for k, ratio in enumerate(ratios):
            if pitch * ratio < 0.45 * SAMPLE_RATE_HZ:
                # Partial k decays k + 1 times faster than the fundamental: computed until -43 dB.
                t = _seconds(min(ring.size, int(5 * decay_s / (k + 1) * SAMPLE_RATE_HZ)))
                ring[: t.size] += rng.uniform(0.3, 1.0) / (k + 1) * np.sin(2 * np.pi * pitch * ratio * t + rng.uniform(0, 2 * np.pi)) * np.exp(-t * (k + 1) / decay_s)
        out[start:] += ring * _ramp(ring.size, 0.002)
        pitch *= rng.choice([0.75, 0.8, 1.0, 1.25])
    return out


def _beep(rng: np.random.Generator) -> np.ndarray:
    n = int(rng.uniform(0.08, 0.4) * SAMPLE_RATE_HZ)
    return _oscillator(np.full(n, rng.uniform(400, 3000)), _timbre(rng)) * _ramp(n)


def _knocking(rng: np.random.Generator) -> np.ndarray:
    knocks = int(rng.integers(2, 6))
    body = (rng.uniform(80, 300), rng.uniform(350, 1200))
    onsets = np.cumsum([0.0, *rng.uniform(0.12, 0.3, knocks - 1)])
    n = int((onsets[-1] + 0.25) * SAMPLE_RATE_HZ)
    out = np.zeros(n)
    t = _seconds(int(0.25 * SAMPLE_RATE_HZ))
    for onset in onsets:
        knock = sum(np.sin(2 * np.pi * f * rng.uniform(0.95, 1.05) * t) * np.exp(-t / rng.uniform(0.01, 0.05)) for f in body)
        knock = knock + 0.3 * rng.standard_normal(t.size) * np.exp(-t / 0.003)
        start = int(onset * SAMPLE_RATE_HZ)
        out[start : start + t.size] += rng.uniform(0.6, 1.0) * knock
    return out


# --- recordings ----------------------------------------------------------------------------------


@functools.cache
def _recording(relative: str) -> np.ndarray:
    """A recording from :data:`MEDIA`, mono, at 48 kHz, peak 1 (read once)."""
    import soundfile
    import soxr

    path = MEDIA / relative
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: run `bash scripts/setup.sh` (it fetches the media the reference world uses)")
    samples, rate = soundfile.read(str(path), dtype="float64", always_2d=True)
    mono = samples.mean(axis=1)
    if rate != SAMPLE_RATE_HZ:
        mono = soxr.resample(mono, rate, SAMPLE_RATE_HZ, quality="HQ")
    mono = np.asarray(mono, dtype=np.float64)
    mono = mono / max(float(np.abs(mono).max()), 1e-9)
    mono.setflags(write=False)  # shared by every caller through the cache
    return mono


def _recorded(rng: np.random.Generator, event: EventClass, split: Split, speed: float) -> np.ndarray:
    import soxr

    files = event.files(split)
    sound = _recording(files[int(rng.integers(len(files)))])
    if speed != 1.0:
        # Resampling played back at the original rate: faster and higher (or slower and lower) together.
        sound = np.asarray(soxr.resample(sound, SAMPLE_RATE_HZ, SAMPLE_RATE_HZ / speed, quality="HQ"), dtype=np.float64)
    return sound


def _loop(sound: np.ndarray, n: int, gap: int) -> np.ndarray:
    """``sound`` repeated with ``gap`` samples of silence between repeats, cut to ``n`` samples."""
    period = np.concatenate([sound, np.zeros(gap)])
    return np.tile(period, n // period.size + 1)[:n] * _ramp(n, 0.02)


def event_sound(rng: np.random.Generator, label: str, *, split: Split = "train", duration_s: float | None = None, augment: bool = True) -> np.ndarray:
    """One dry event (no noise), peak 1.

    Args:
        rng: the random source (every choice: pitch, rhythm, recording, speed, ...).
        label: one of :data:`LABELS` except :data:`BACKGROUND`.
        split: which recordings recorded classes draw from.
        duration_s: continuous classes: the length to fill (default: a random 1-4 s); one-shot
            classes ignore it and keep their natural length.
        augment: recordings: random speed/pitch (0.9-1.1x) and start; False plays them as recorded.

    Returns:
        np.ndarray, shape (n,), float64, at :data:`SAMPLE_RATE_HZ`.
    """
    event = _event_class(label)
    _check_split(split)
    if event.source == "noise":
        raise ValueError(f"label: {BACKGROUND!r} is noise, not an event; use background_noise()")
    length_s = rng.uniform(1.0, 4.0) if duration_s is None else duration_s
    if length_s <= 0:
        raise ValueError(f"duration_s: expected a positive length, got {duration_s}")
    if label == "an alarm":
        sound = _alarm(rng, length_s)
    elif label == "a siren":
        sound = _siren(rng, length_s)
    elif label == "a chime":
        sound = _chime(rng)
    elif label == "a beep":
        sound = _beep(rng)
    elif label == "knocking":
        sound = _knocking(rng)
    else:
        sound = _recorded(rng, event, split, rng.uniform(0.9, 1.1) if augment else 1.0)
        if event.continuous:
            n = int(length_s * SAMPLE_RATE_HZ)
            if sound.size > n:
                start = int(rng.integers(sound.size - n + 1)) if augment else 0
                sound = sound[start : start + n] * _ramp(n, 0.02)
            else:
                sound = _loop(sound, n, int(rng.uniform(0.2, 0.6) * SAMPLE_RATE_HZ) if augment else SAMPLE_RATE_HZ // 4)
    return sound / max(float(np.abs(sound).max()), 1e-9)


def _fft_size(n: int) -> int:
    """The power of two at or above ``n``: numpy's FFT is slow on lengths with large prime factors."""
    return 1 << max(0, int(n) - 1).bit_length()


def _energy(spectrum: np.ndarray, size: int) -> float:
    """Sum of squares of ``np.fft.irfft(spectrum, size)`` (Parseval), ``size`` even."""
    power = np.abs(spectrum) ** 2
    return float((power[0] + 2.0 * power[1:-1].sum() + power[-1]) / size)


def _noise_spectrum(rng: np.random.Generator, size: int, *, color: float | None, hum: bool | None) -> np.ndarray:
    """The rfft of ``size`` samples of coloured noise (and hum), time-domain RMS 1.

    Drawn in the frequency domain (a complex Gaussian per bin is white noise's spectrum), so mixing a
    clip costs one inverse FFT.
    """
    slope = rng.uniform(0.0, 2.0) if color is None else color
    bins = size // 2 + 1
    frequency = np.maximum(np.fft.rfftfreq(size, 1 / SAMPLE_RATE_HZ), 20.0)
    spectrum = (rng.standard_normal(bins) + 1j * rng.standard_normal(bins)) / frequency ** (slope / 2)
    spectrum[0], spectrum[-1] = spectrum[0].real, spectrum[-1].real
    spectrum /= np.sqrt(_energy(spectrum, size) / size)
    with_hum = rng.random() < 0.3 if hum is None else hum
    if with_hum:
        # Mains hum: 50 or 60 Hz and 4 harmonics, each on its nearest bin (0.37 Hz apart at 48 kHz).
        mains = float(rng.choice([50.0, 60.0]))
        buzz = np.zeros(bins, complex)
        for k in range(1, 6):
            buzz[round(mains * k * size / SAMPLE_RATE_HZ)] = rng.uniform(0.2, 1.0) / k * np.exp(1j * rng.uniform(0, 2 * np.pi))
        spectrum += rng.uniform(0.3, 2.0) * buzz / np.sqrt(_energy(buzz, size) / size)
        spectrum /= np.sqrt(_energy(spectrum, size) / size)
    return spectrum


def background_noise(rng: np.random.Generator, n_samples: int, *, color: float | None = None, hum: bool | None = None) -> np.ndarray:
    """Coloured noise, RMS 1.

    Args:
        n_samples: length.
        color: spectral slope: power ~ 1 / f**color (0 white, 1 pink, 2 brown); None: random in [0, 2].
        hum: add mains hum (50 or 60 Hz and harmonics); None: with probability 0.3.

    Returns:
        np.ndarray, shape (n_samples,), float64.
    """
    size = _fft_size(n_samples)
    noise = np.fft.irfft(_noise_spectrum(rng, size, color=color, hum=hum), n=size)[:n_samples]
    return np.asarray(noise / max(float(np.sqrt(np.mean(noise**2))), 1e-12), dtype=np.float64)


def _db(level_db: float) -> float:
    return float(10.0 ** (level_db / 20.0))


def _active(sound: np.ndarray) -> np.ndarray:
    """Per 10 ms frame: whether it is within 20 dB of the sound's loudest frame."""
    hop = SAMPLE_RATE_HZ // 100
    frames = np.sqrt(np.mean(np.pad(sound, (0, -sound.size % hop)).reshape(-1, hop) ** 2, axis=1))
    return np.asarray(frames > 0.1 * frames.max())


def _placement(rng: np.random.Generator, sound: np.ndarray, n: int) -> int:
    """A random onset (samples; negative: the event began before the clip) that shows at least
    :data:`_MIN_VISIBLE_S` of the event (all of a shorter one) and :data:`_MIN_ACTIVE_S` of its
    active part. A quarter of the clips catch the event starting (under 1 s of it in the clip), as
    the first windows of a stream that hears it do (where an alert must fire, and no other); a tenth
    catch it ending."""
    hop = SAMPLE_RATE_HZ // 100
    visible = min(sound.size, int(_MIN_VISIBLE_S * SAMPLE_RATE_HZ))
    edge = max(visible, min(sound.size, SAMPLE_RATE_HZ))
    active = _active(sound)
    need = min(int(active.sum()), int(_MIN_ACTIVE_S * 100))
    onset = 0
    for _ in range(50):
        mode = rng.random()
        if mode < 0.25:
            onset = int(rng.integers(n - edge, n - visible + 1))  # starting
        elif mode < 0.35:
            onset = int(rng.integers(visible - sound.size, edge - sound.size + 1))  # ending
        else:
            onset = int(rng.integers(visible - sound.size, n - visible + 1))
        first, last = max(0, -onset) // hop, (min(sound.size, n - onset) + hop - 1) // hop
        if active[first:last].sum() >= need:
            return onset
    return onset


def event_clip(rng: np.random.Generator, label: str, *, split: Split = "train", duration_s: float = CLIP_S) -> np.ndarray:
    """A clip of ``label``: one event, placed at random, in noise; or noise alone for :data:`BACKGROUND`.

    Events: peak level -32 to -3 dBFS (before a random spectral tilt), SNR 5-35 dB against coloured
    noise (RMS to RMS, the event's over its part in the clip). Background clips: noise at -80 to
    -10 dBFS RMS.

    Args:
        rng: the random source (see :func:`clip_rng` for the dataset's).
        label: one of :data:`LABELS`.
        split: "train" or "test" (recorded speech differs between them).
        duration_s: clip length.

    Returns:
        np.ndarray, shape (round(duration_s * 48000),), float32 in [-1, 1], at :data:`SAMPLE_RATE_HZ`.
    """
    event = _event_class(label)
    n = round(duration_s * SAMPLE_RATE_HZ)
    if event.source == "noise":
        return _limit(background_noise(rng, n) * _db(rng.uniform(-80, -10)))
    sound = event_sound(rng, label, split=split)
    onset = _placement(rng, sound, n)
    start, stop = max(0, onset), min(n, onset + sound.size)
    size = _fft_size(n)
    # Spectral tilt (+-5 dB per decade around 1 kHz: other microphones and rooms) and noise are
    # applied in the frequency domain: one forward and one inverse FFT per clip.
    frequency = np.maximum(np.fft.rfftfreq(size, 1 / SAMPLE_RATE_HZ), 50.0)
    placed = np.fft.rfft(sound[start - onset : stop - onset], n=size) * (frequency / 1000.0) ** rng.uniform(-0.25, 0.25)
    peak = _db(rng.uniform(-32, -3))
    event_rms = peak * np.sqrt(_energy(placed, size) / (stop - start))
    noise_rms = max(event_rms / _db(rng.uniform(5, 35)), _db(-85))
    noise = _noise_spectrum(rng, size, color=None, hum=None)
    mix = np.fft.irfft(peak * placed + noise_rms * noise, n=size)
    return _limit(np.roll(mix, start)[:n])


def _limit(mix: np.ndarray) -> np.ndarray:
    """float32, scaled down to a peak of 0.99 if it is louder."""
    top = float(np.abs(mix).max())
    return (mix * (0.99 / top if top > 0.99 else 1.0)).astype(np.float32)


def dataset(split: Split, clips_per_label: int, *, seed: int = 0, labels: Sequence[str] = LABELS) -> tuple[np.ndarray, np.ndarray]:
    """``clips_per_label`` clips of every label, label by label, each from :func:`clip_rng`.

    Returns:
        (waveforms, targets): waveforms np.ndarray shape (len(labels) * clips_per_label, 96000)
        float32; targets np.ndarray shape (same,) int64, indices into :data:`LABELS`.
    """
    _check_split(split)
    waveforms = [event_clip(clip_rng(split, label, i, seed=seed), label, split=split) for label in labels for i in range(clips_per_label)]
    targets = [LABELS.index(label) for label in labels for _ in range(clips_per_label)]
    n = round(CLIP_S * SAMPLE_RATE_HZ)
    return (np.stack(waveforms) if waveforms else np.zeros((0, n), np.float32)), np.asarray(targets, dtype=np.int64)


# --- soundtracks ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class PlacedEvent:
    """An event of a soundtrack: ``label`` sounds from ``onset_s`` to ``offset_s`` (stream time)."""

    label: str
    onset_s: float
    offset_s: float


@dataclass(frozen=True)
class Soundtrack:
    """A mixed soundtrack and its truth.

    Attributes:
        waveform: np.ndarray, shape (n,), float32 in [-1, 1], at ``sample_rate_hz``.
        events: the events in it, by onset.
        sample_rate_hz: 48000.
    """

    waveform: np.ndarray
    events: tuple[PlacedEvent, ...]
    sample_rate_hz: int = SAMPLE_RATE_HZ

    @property
    def duration_s(self) -> float:
        return self.waveform.size / self.sample_rate_hz


EventSpec = tuple[float, str] | tuple[float, str, float]


def soundtrack(
    duration_s: float,
    events: Sequence[EventSpec],
    *,
    seed: int = 0,
    noise_dbfs: float = -50.0,
    event_peak_dbfs: float = -12.0,
) -> Soundtrack:
    """Events mixed at known times into steady pink noise.

    Args:
        duration_s: the soundtrack's length.
        events: ``(onset_s, label)`` or ``(onset_s, label, duration_s)``; continuous classes
            (alarm, siren, phone, alarm clock, speech) last ``duration_s`` (default: the class's
            ``demo_duration_s``), one-shot classes their natural length. Sounds are the held-out
            ("test") variants, played without speed/pitch change; an event running past the end
            is cut there.
        seed: the random source of the noise and of each event's free parameters.
        noise_dbfs: RMS level of the noise.
        event_peak_dbfs: peak level of each event.

    Returns:
        The waveform (float32 at 48 kHz) and the events' true onsets and offsets.

    Raises:
        ValueError: an unknown label, the background label, or an onset outside the soundtrack.
    """
    rng = np.random.default_rng(seed)
    n = round(duration_s * SAMPLE_RATE_HZ)
    mix = background_noise(rng, n, color=1.0, hum=False) * _db(noise_dbfs)
    placed = []
    for spec in sorted(events, key=lambda e: e[0]):
        onset_s, label = float(spec[0]), str(spec[1])
        event = _event_class(label)
        if not 0.0 <= onset_s < duration_s:
            raise ValueError(f"event {label!r}: expected an onset in [0, {duration_s}) s, got {onset_s}")
        extra = spec[2:]
        length_s = float(extra[0]) if extra else event.demo_duration_s
        sound = event_sound(rng, label, split="test", duration_s=length_s, augment=False)
        start = round(onset_s * SAMPLE_RATE_HZ)
        stop = min(n, start + sound.size)
        mix[start:stop] += _db(event_peak_dbfs) * sound[: stop - start]
        placed.append(PlacedEvent(label, onset_s, stop / SAMPLE_RATE_HZ))
    return Soundtrack(_limit(mix), tuple(placed))


def demo_soundtrack(duration_s: float, events: Sequence[EventSpec], *, seed: int = 0) -> np.ndarray:
    """``soundtrack(duration_s, events, seed=seed).waveform``: shape (n,), float32, 48 kHz."""
    return soundtrack(duration_s, events, seed=seed).waveform


def onset_dataset(clips_per_label: int, *, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Windows a stream sees as an event starts: 2 s of a :func:`soundtrack` in which the event
    begins 0.5 to 1 s before the end (held-out sounds, continuous ones lasting 3 s). The first
    window that may fire an alert; the one where no other alert may fire.

    Returns:
        (waveforms, targets): waveforms np.ndarray shape (events * clips_per_label, 96000) float32;
        targets np.ndarray shape (same,) int64, indices into :data:`LABELS` (no background clips).
    """
    waveforms, targets = [], []
    for event in CLASSES:
        if event.source == "noise":
            continue
        for i in range(clips_per_label):
            rng = clip_rng("test", event.label, i, seed=seed + 1_000_000)
            spec: EventSpec = (CLIP_S - rng.uniform(0.5, 1.0), event.label, 3.0)
            waveforms.append(soundtrack(CLIP_S, [spec], seed=int(rng.integers(2**31))).waveform)
            targets.append(LABELS.index(event.label))
    return np.stack(waveforms), np.asarray(targets, dtype=np.int64)


def write_wav(path: str | Path, waveform: np.ndarray, rate: int = SAMPLE_RATE_HZ) -> Path:
    """Writes a mono 16-bit PCM WAV (what ``edgemm score`` and the runtime's ``read_wav`` read).

    Args:
        waveform: np.ndarray, shape (n,), float in [-1, 1] (clipped beyond).
        rate: sample rate in Hz.
    """
    samples = np.asarray(waveform, dtype=np.float64)
    if samples.ndim != 1:
        raise ValueError(f"waveform: expected a mono waveform of shape (n,), got shape {samples.shape}")
    pcm = np.round(np.clip(samples, -1.0, 1.0) * 32767.0).astype("<i2")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as writer:
        writer.setnchannels(1)
        writer.setsampwidth(2)
        writer.setframerate(int(rate))
        writer.writeframes(pcm.tobytes())
    return path
