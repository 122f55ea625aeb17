"""Audio in a running session: audio alerts on a microphone or audio file, transcripts from speech.

The tiny CLAP pack has random weights, so no text prompt means anything to it. As in the image
alert test, the alert's prompt embedding is the audio tower's embedding of the target sound and the
background prompt's is the embedding of the room noise: the alert must fire exactly once, when the
target sound plays. The target is a steady tone (two partials), so every window of it embeds
alike; a real event sound changes over its length, and a random model embeds its windows apart. (The reference-world CLAP, trained on real event sounds, is tested with real
prompts in tests/quality.)
"""

from __future__ import annotations

import json
import wave
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

import edgemm
from edgemm import errors
from edgemm.runtime.alerts import Alert, AlertEvent
from edgemm.runtime.audio_sources import open_audio_source, resample
from edgemm.runtime.session import Session, write_wav
from edgemm.runtime.sinks import open_sink
from tests import zero_shot_packs

pytest.importorskip("torch")
pytest.importorskip("soundfile")

SOUND_AT_S = 4.0
WINDOW_S = 1.0


def _noise(seconds: float, seed: int, rate: int) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal(int(seconds * rate)) * 0.01).astype(np.float32)


@pytest.fixture(scope="module")
def pack(tmp_path_factory: pytest.TempPathFactory) -> edgemm.Pack:
    compiled = zero_shot_packs.compiled("clap", tmp_path_factory.getbasetemp() / "zero-shot")
    return edgemm.load(compiled.pack_dir, precision="fp32", options=edgemm.OrtOptions(providers=("cpu",), intra_op_threads=1))


@pytest.fixture(scope="module")
def rate(pack: edgemm.Pack) -> int:
    """The CLAP pack's sample rate (the tiny config's, not the released 48 kHz)."""
    return int(pack.scorer().component.audio.sample_rate_hz)


@pytest.fixture(scope="module")
def target(rate: int) -> np.ndarray:
    """2 s of a steady 880 + 1320 Hz tone at the model's rate."""
    t = np.arange(2 * rate) / rate
    return (0.3 * np.sin(2 * np.pi * 880 * t) + 0.2 * np.sin(2 * np.pi * 1320 * t)).astype(np.float32)


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory, target: np.ndarray, rate: int) -> Path:
    """4 s of room noise, the alarm (2 s, over the noise), 3 s of room noise again."""
    path = tmp_path_factory.mktemp("audio-alert") / "room.wav"
    audio = _noise(4.0 + 2.0 + 3.0, seed=1, rate=rate)
    start = int(SOUND_AT_S * rate)
    audio[start : start + len(target)] += target
    write_wav(path, audio, rate)
    return path


def _alarm_alert(pack: edgemm.Pack, target: np.ndarray, rate: int, noise: Callable[[int], np.ndarray] | None = None, **kwargs: object) -> Alert:
    """The alarm alert, with the room's sound from ``noise(seed)`` (1 s at ``rate``; default white noise)."""
    noise = noise or (lambda seed: _noise(WINDOW_S, seed=seed, rate=rate))
    scorer = pack.scorer()
    window = int(WINDOW_S * rate)
    alarm, room = scorer.embed_audio([target[:window], noise(2)], rate)
    scorer.set_prompt_embedding("the alarm", alarm)
    scorer.set_prompt_embedding("the room", room)
    scorer.set_background(["the room"])
    inside, outside = scorer.score_audio([target[window // 2 : window // 2 + window], noise(3)], rate, ["the alarm"])[:, 0]
    assert inside - outside > 0.2, (inside, outside)  # the sounds are told apart
    return Alert("the alarm", modality="audio", threshold=float(inside + outside) / 2, **kwargs)  # type: ignore[arg-type]


def test_audio_alert_fires_once_when_the_sound_plays(pack: edgemm.Pack, target: np.ndarray, rate: int, clip: Path, tmp_path: Path) -> None:
    alert = _alarm_alert(pack, target, rate, cooldown_s=60)
    seen: list[AlertEvent] = []
    mic = open_audio_source(clip, name="mic", sample_rate_hz=rate, realtime=False)
    session = Session(
        None, [], audio_sources=[mic], audio_scorer=pack.scorer(), alerts_max_fps=4, audio_window_s=WINDOW_S,
        events_dir=tmp_path / "events", sinks=[open_sink(tmp_path / "events.jsonl")],
    )
    session.add_alert(alert, seen.append)
    with session:
        events = list(session.alerts())
    assert len(events) == 1, [(e.time_s, e.score) for e in events]
    (event,) = events
    # Stamped at the end of the window that heard it: at most a window (plus the scoring interval) late.
    assert SOUND_AT_S < event.time_s <= SOUND_AT_S + WINDOW_S + 0.25
    assert event.source == "mic" and event.alert.modality == "audio" and event.score >= alert.threshold
    assert seen == events
    assert event.snapshot is not None and event.snapshot.endswith(".wav")
    with wave.open(event.snapshot) as clip_file:  # the window that fired, as heard
        assert clip_file.getframerate() == rate and clip_file.getnframes() == int(WINDOW_S * rate)
    record = json.loads((tmp_path / "events.jsonl").read_text().splitlines()[0])
    assert record["type"] == "alert" and record["alert"]["modality"] == "audio" and record["snapshot"] == event.snapshot
    assert session.stats().alerts == 1 and "audio_alert" in session.stats().latency_ms


def test_open_with_a_mic_file_resamples_to_the_model(pack: edgemm.Pack, target: np.ndarray, rate: int, tmp_path: Path) -> None:
    """edgemm.open(mic=...) captures at the model's rate: a 16 kHz file is resampled to the CLAP's."""
    path = tmp_path / "room16k.wav"
    tone16 = resample(target, rate, 16_000)
    room16 = _noise(6.0, seed=4, rate=16_000)
    room16[3 * 16_000 : 3 * 16_000 + len(tone16)] += tone16
    write_wav(path, room16, 16_000)
    # The room as the model hears it: 16 kHz noise brought down to its rate (its top band cut).
    alert = _alarm_alert(pack, target, rate, lambda seed: resample(_noise(WINDOW_S, seed=seed, rate=16_000), 16_000, rate), cooldown_s=60)
    with edgemm.open(pack, mic=f"file://{path}", realtime=False, alerts=[alert], alerts_max_fps=4, audio_window_s=WINDOW_S) as session:
        assert session.audio_sources[0].sample_rate_hz == rate != 16_000
        events = list(session.alerts())
    assert len(events) == 1 and 3.0 < events[0].time_s <= 3.0 + WINDOW_S + 0.25


def test_audio_alert_errors(pack: edgemm.Pack, clip: Path) -> None:
    mic = open_audio_source(clip, realtime=False)
    with pytest.raises(errors.PackError, match="a microphone needs an asr or a zero_shot_audio component"):
        Session(None, [], audio_sources=[mic])
    session = Session(None, [], audio_sources=[mic], audio_scorer=pack.scorer())
    with pytest.raises(errors.PackError, match=r"no zero_shot_image \(CLIP, SigLIP\) component"):
        session.add_alert(Alert("smoke"))
    with pytest.raises(errors.InputError, match="audio_window_s"):
        Session(None, [], audio_sources=[mic], audio_scorer=pack.scorer(), audio_window_s=0)
