"""Speech in a running session: LibriVox speech played into a real PulseAudio virtual microphone
becomes Transcript events with sensible timestamps.

The Whisper pack is a tiny random one (no real weights can be downloaded here) whose decoder is
steered to always say "a" (its final layer norm's bias is the embedding of "a"), six tokens at
most: a random decoder's favourite token is often one that decodes to no text, and an empty
transcript is, rightly, no event. So the text means nothing; what is checked is the structure:
one transcript per spoken sentence, its start and end around where the speech was played, the
recogniser's own output for that audio, and silence producing nothing. (Accuracy with real
Whisper weights is for the acceptance run; see docs/ASR.md.)
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

import edgemm
from edgemm.compile import testing as models
from edgemm.compile.asr import compile_asr
from edgemm.compile.config import CompileConfig, ExportConfig, LoadConfig, ValidateConfig
from edgemm.runtime.audio_sources import open_audio_source, read_audio
from edgemm.runtime.events import Transcript
from edgemm.runtime.session import Session, write_wav
from edgemm.runtime.vad import VadConfig
from tests.media import librivox_clip
from tests.servers.pulse import PulseAudio, portaudio_through, pulseaudio_binary

pytest.importorskip("torch")

RATE = 16_000
SPEECH_AT_S = (1.0, 6.5)
"""Where the two sentences start in the played clip."""


@pytest.fixture(scope="module")
def pack(tmp_path_factory: pytest.TempPathFactory) -> edgemm.Pack:
    import torch
    from transformers import AutoTokenizer, WhisperForConditionalGeneration

    root = tmp_path_factory.mktemp("whisper-session")
    model_dir = models.tiny_whisper(root / "model", multilingual=False)
    model = WhisperForConditionalGeneration.from_pretrained(model_dir, local_files_only=True)
    token = AutoTokenizer.from_pretrained(model_dir, local_files_only=True).convert_tokens_to_ids("a")
    with torch.no_grad():
        norm = model.model.decoder.layer_norm
        norm.weight.mul_(0.01)
        norm.bias.copy_(model.model.decoder.embed_tokens.weight[token] * 20)
    model.save_pretrained(model_dir)
    config = CompileConfig(
        load=LoadConfig(str(model_dir), local_files_only=True),
        out=str(root / "pack"),
        export=ExportConfig(max_new_tokens=6),
        validate=ValidateConfig(num_images=2),
    )
    compile_asr(config, show_progress=False)
    return edgemm.load(root / "pack", precision="fp32", options=edgemm.OrtOptions(providers=("cpu",), intra_op_threads=1))


@pytest.fixture(scope="module")
def conversation(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[tuple[float, float]]]:
    """1 s of quiet, a 3.0 s sentence, quiet, a 3.3 s sentence, 2 s of quiet (16 kHz WAV), and
    where the speech is (each clip opens with ~0.25 s of room tone)."""
    first, _ = read_audio(librivox_clip("0880").path, RATE)
    second, _ = read_audio(librivox_clip("0930").path, RATE)
    total = int((SPEECH_AT_S[1] + len(second) / RATE + 2.0) * RATE)
    audio = np.zeros(total, np.float32)
    spans = []
    for at_s, clip in zip(SPEECH_AT_S, (first, second)):
        start = int(at_s * RATE)
        audio[start : start + len(clip)] = clip
        spans.append((at_s + 0.25, at_s + len(clip) / RATE))
    path = tmp_path_factory.mktemp("speech") / "conversation.wav"
    write_wav(path, audio, RATE)
    return path, spans


def _check(transcripts: list[Transcript], spans: list[tuple[float, float]], source: str, offset_s: float = 0.0, slack_s: float = 0.0) -> None:
    assert len(transcripts) == len(spans), [(t.time_s, t.end_s, t.text) for t in transcripts]
    for transcript, (start_s, end_s) in zip(transcripts, spans):
        # Segments carry the VAD's padding (pre 0.2 s, post 0.3 s) and a frame of slack; a live
        # microphone adds its own latency (slack_s).
        assert start_s - 0.6 <= transcript.time_s - offset_s <= start_s + 0.3 + slack_s, (transcript.time_s, offset_s, start_s)
        assert end_s - 0.3 <= transcript.end_s - offset_s <= end_s + 0.8 + slack_s, (transcript.end_s, offset_s, end_s)
        assert transcript.text.strip("a") == "" and transcript.text and transcript.source == source and transcript.latency_ms >= 0
        assert transcript.tokens and transcript.no_speech_prob is not None


def test_transcripts_from_an_audio_file(pack: edgemm.Pack, conversation: tuple[Path, list[tuple[float, float]]], tmp_path: Path) -> None:
    path, spans = conversation
    transcriber = pack.transcriber()
    # Silence must not be transcribed: with the thresholds off, the tiny model would "hear" text anywhere.
    with edgemm.open(pack, mic=f"file://{path}", realtime=False, vad="silero", sinks=[str(tmp_path / "events.jsonl")]) as session:
        transcripts = list(session.transcripts())
    _check(transcripts, spans, "mic")
    stats = session.stats()
    assert stats.transcripts == len(transcripts) and "transcript" in stats.latency_ms
    # The event's text is what the recogniser makes of exactly that segment.
    audio, _ = read_audio(path, RATE)
    first = transcripts[0]
    direct = transcriber.transcribe(audio[round(first.time_s * RATE) : round(first.end_s * RATE)])
    assert first.text == direct.text and first.tokens == tuple(direct.tokens)
    records = [json.loads(line) for line in (tmp_path / "events.jsonl").read_text().splitlines()]
    assert [r["type"] for r in records] == ["transcript"] * len(transcripts)
    assert records[0]["text"] == first.text and records[0]["end_s"] == first.end_s


def test_silence_and_noise_give_no_transcripts(pack: edgemm.Pack, tmp_path: Path) -> None:
    path = tmp_path / "room.wav"
    write_wav(path, (np.random.default_rng(0).standard_normal(5 * RATE) * 0.003).astype(np.float32), RATE)
    with edgemm.open(pack, mic=path, realtime=False) as session:
        assert list(session.transcripts()) == []
    assert session.stats().transcripts == 0


@pytest.fixture(scope="module")
def pulse() -> Iterator[PulseAudio]:
    if pulseaudio_binary() is None:
        pytest.skip("PulseAudio is not installed (apt-get install pulseaudio)")
    with PulseAudio() as server, portaudio_through(server):
        yield server


def test_speech_into_the_virtual_microphone_becomes_transcripts(
    pack: edgemm.Pack, conversation: tuple[Path, list[tuple[float, float]]], pulse: PulseAudio
) -> None:
    """The real path: paplay -> PulseAudio null sink -> remap source (the mic) -> PortAudio ->
    the session's ring buffer -> VAD -> Whisper -> Transcript events."""
    path, spans = conversation
    clip_s = len(read_audio(path, RATE)[0]) / RATE
    mic = open_audio_source("default", name="mic", sample_rate_hz=RATE)
    session = Session(None, [], audio_sources=[mic], transcriber=pack.transcriber(), vad="silero", vad_config=VadConfig())
    transcripts: list[Transcript] = []
    session.on(Transcript, transcripts.append)
    with session:
        played_at_s = mic.stats().captured_s  # the mic's stream time when the clip starts playing
        pulse.play(path).wait(timeout=60)
        while len(transcripts) < len(spans) and not session.wait(0.2) and mic.stats().captured_s < played_at_s + clip_s + 5:
            pass
    # Shifted by where the mic's clock stood when playing began, plus the player's start-up and
    # the sink's latency (a few hundred ms at most).
    _check(transcripts, spans, "mic", offset_s=played_at_s, slack_s=0.6)
    assert mic.stats().overflows == 0
