"""Results the runtime produces, as frozen dataclasses."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Caption"]


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
    """

    text: str
    latency_ms: float
    tokens: tuple[int, ...] = ()
    image: str | None = None
    time_s: float | None = None
    source: str | None = None
    frame_index: int | None = None
    score: float | None = None
