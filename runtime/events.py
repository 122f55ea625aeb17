"""Results the runtime produces, as frozen dataclasses."""

from __future__ import annotations

import dataclasses
import uuid
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Caption", "Event", "SourceDisconnected", "SourceReconnected", "Transcript", "event_to_dict", "event_type_name", "new_event_id"]

Event = Any
"""Any event dataclass: :class:`Caption`, source events, alerts, transcripts."""


def new_event_id() -> str:
    """A unique event id (UUID4, hex)."""
    return uuid.uuid4().hex


@dataclass(frozen=True)
class Caption:
    """A caption of one image or frame.

    Attributes:
        text: the caption (a text prompt, where the model continues one, is part of it).
        latency_ms: time from the call (or the frame's capture) to the caption, in milliseconds.
        tokens: the generated token ids (EOS included when one ended the caption).
        image: the image file it describes, when it came from a file.
        time_s: seconds since the stream started (streams only).
        source: the camera or stream it came from (streams only).
        frame_index: the frame's index in its source (streams only).
        score: beam search only: the beam's length-normalised log-probability.
        id: unique per event (sinks and consumers deduplicate by it).
    """

    text: str
    latency_ms: float
    tokens: tuple[int, ...] = ()
    image: str | None = None
    time_s: float | None = None
    source: str | None = None
    frame_index: int | None = None
    score: float | None = None
    id: str = field(default_factory=new_event_id)


@dataclass(frozen=True)
class Transcript:
    """Speech recognised in one segment of audio (a voice-activity segment or a file window).

    Attributes:
        text: the recognised text, stripped; never empty (silence produces no event).
        time_s: where the speech starts, in seconds since the stream (or file) started.
        end_s: where it ends, same clock.
        latency_ms: from the end of the segment's audio to the transcript, in milliseconds.
        source: the microphone or file it came from.
        language: the language decoded in (ISO 639-1, e.g. "en"), None for English-only models.
        no_speech_prob: the model's probability that the segment holds no speech.
        avg_logprob: mean log-probability of the generated tokens.
        tokens: the generated token ids (prompt and special tokens excluded).
        id: unique per event.
    """

    text: str
    time_s: float
    end_s: float
    latency_ms: float = 0.0
    source: str | None = None
    language: str | None = None
    no_speech_prob: float | None = None
    avg_logprob: float | None = None
    tokens: tuple[int, ...] = ()
    id: str = field(default_factory=new_event_id)


@dataclass(frozen=True)
class SourceDisconnected:
    """A live source dropped; it reconnects per its ``ReconnectPolicy``.

    Attributes:
        time_s: seconds since the source started.
        source: the source's name.
        reason: what happened (server closed the stream, read failures, no frame for N s, ...).
    """

    time_s: float
    source: str
    reason: str
    id: str = field(default_factory=new_event_id)


@dataclass(frozen=True)
class SourceReconnected:
    """A live source is back after a drop.

    Attributes:
        time_s: seconds since the source started.
        source: the source's name.
        attempt: which attempt succeeded (1 = the first).
        offline_s: seconds from the drop to the reconnection.
    """

    time_s: float
    source: str
    attempt: int
    offline_s: float
    id: str = field(default_factory=new_event_id)


def event_type_name(event: Event) -> str:
    """The ``type`` an event has in JSON: ``Caption`` -> "caption", ``AlertEvent`` -> "alert",
    ``SourceDisconnected`` -> "source_disconnected"."""
    name = type(event).__name__.removesuffix("Event")
    return "".join("_" + c.lower() if c.isupper() and i else c.lower() for i, c in enumerate(name))


def event_to_dict(event: Event) -> dict[str, Any]:
    """An event as a JSON-ready dict with ``type`` and ``id`` first."""
    data = dataclasses.asdict(event)
    return {"type": event_type_name(event), "id": data.pop("id", None) or new_event_id(), **data}
