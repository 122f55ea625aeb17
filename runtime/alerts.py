"""Alert rules: when a zero-shot score becomes an :class:`AlertEvent`.

A rule watches one alert's score on one source over time:

- it **fires once** when the score has stayed at or above ``threshold`` for ``min_duration_s``;
- it then stays latched (no new events) until the score falls below ``threshold - hysteresis``,
  which **re-arms** it (so a score hovering around the threshold does not flap);
- it never fires twice within ``cooldown_s`` (a re-armed rule whose condition holds when the
  cooldown ends fires then).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from .errors import InputError
from .events import new_event_id

__all__ = ["Alert", "AlertEvent", "AlertRule"]


@dataclass(frozen=True)
class Alert:
    """Something to watch for, described in words.

    Attributes:
        text: the prompt, e.g. "a person lying on the floor" or "glass breaking".
        threshold: the score (a probability, 0..1; see docs/ALERTS.md) at or above which the
            condition holds.
        modality: "image" (camera frames) or "audio" (microphone).
        min_duration_s: how long the condition must hold before the alert fires.
        cooldown_s: the shortest time between two events of this alert on one source.
        hysteresis: how far below the threshold the score must fall to re-arm the alert.
        name: how events and ``remove_alert`` refer to it (default: the text).
    """

    text: str
    threshold: float = 0.5
    modality: Literal["image", "audio"] = "image"
    min_duration_s: float = 0.0
    cooldown_s: float = 30.0
    hysteresis: float = 0.05
    name: str = ""

    def __post_init__(self) -> None:
        if not self.text or not self.text.strip():
            raise InputError("alert text: expected a description such as 'a person lying on the floor', got an empty string")
        if not 0.0 < self.threshold <= 1.0:
            raise InputError(f"alert '{self.text}': threshold must be a score in (0, 1], got {self.threshold}")
        if self.modality not in ("image", "audio"):
            raise InputError(f"alert '{self.text}': modality must be 'image' or 'audio', got {self.modality!r}")
        if self.min_duration_s < 0 or self.cooldown_s < 0:
            raise InputError(
                f"alert '{self.text}': min_duration_s and cooldown_s must be >= 0, got {self.min_duration_s} and {self.cooldown_s}"
            )
        if not 0.0 <= self.hysteresis < self.threshold:
            raise InputError(f"alert '{self.text}': hysteresis must be in [0, threshold), got {self.hysteresis}")
        if not self.name:
            object.__setattr__(self, "name", self.text.strip())


@dataclass(frozen=True)
class AlertEvent:
    """An alert fired.

    Attributes:
        time_s: stream time of the frame or audio window that fired it.
        alert: the alert.
        score: the score that fired it.
        source: the camera or microphone.
        snapshot: the JPEG of the frame (image alerts) or WAV of the audio clip (audio alerts)
            written to the session's events directory, or None when not kept.
        latency_ms: from capture to the event.
        id: unique per event.
    """

    time_s: float
    alert: Alert
    score: float
    source: str
    snapshot: str | None = None
    latency_ms: float = 0.0
    id: str = field(default_factory=new_event_id)


class AlertRule:
    """The state of one alert on one source. Feed it scores in time order with :meth:`update`."""

    def __init__(self, alert: Alert) -> None:
        self.alert = alert
        self._armed = True
        self._since: float | None = None
        self._last_fired: float | None = None
        self._last_time: float | None = None

    def update(self, time_s: float, score: float) -> bool:
        """Takes the score at ``time_s``; returns True when the alert fires now.

        Raises:
            InputError: times that go backwards.
        """
        if self._last_time is not None and time_s < self._last_time:
            raise InputError(f"alert '{self.alert.name}': scores must come in time order, got {time_s} after {self._last_time}")
        self._last_time = time_s
        alert = self.alert
        if not self._armed:
            if score < alert.threshold - alert.hysteresis:
                self._armed = True
            return False
        if score < alert.threshold:
            self._since = None
            return False
        if self._since is None:
            self._since = time_s
        if time_s - self._since < alert.min_duration_s:
            return False
        if self._last_fired is not None and time_s - self._last_fired < alert.cooldown_s:
            return False
        self._armed = False
        self._since = None
        self._last_fired = time_s
        return True
