"""A running smart camera: sources -> scheduling -> models -> events -> callbacks, generators and sinks.

Threads, and why each exists:

- one capture thread per source (in :mod:`edgemm.runtime.sources`) keeps only the newest frame;
- one worker thread runs the image models, so a slow model never blocks capture: frames that arrive
  while it works are overwritten (and counted as dropped), so latency stays bounded;
- one audio worker per microphone or audio file (:mod:`edgemm.runtime.audio_sources` captures into
  a ring buffer) runs voice activity detection, transcription and audio alerts; audio is never
  skipped, so a transcriber slower than real time shows up as growing latency (and, past the ring
  buffer, as counted overflows), never as silently missing words;
- each sink delivers from its own thread (:mod:`edgemm.runtime.sinks`), so a slow or dead broker
  never blocks the worker.

Typical use::

    with edgemm.open("packs/cam", camera="rtsp://10.0.0.7/stream") as session:
        for caption in session.captions():
            print(caption.time_s, caption.text)
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .alerts import Alert, AlertEvent, AlertRule
from .errors import EdgemmError, InputError, PackError
from .events import Caption, Event, Transcript, event_to_dict

__all__ = ["CaptionPolicy", "Session", "SessionStats", "scene_change", "write_wav"]

log = logging.getLogger("edgemm.session")

_THUMB = 32


@dataclass(frozen=True)
class CaptionPolicy:
    """When frames are captioned.

    Attributes:
        every_s: at most one caption per source every ``every_s`` seconds (stream time).
        on_change_only: caption only when the scene changed since the last caption (the first
            frame always is); False captions every interval regardless.
        change_threshold: the scene-change measure (:func:`scene_change`, 0..1) that counts as a change.
        repeat_identical: emit a caption identical to the previous one of the same source
            (False: it is suppressed).
    """

    every_s: float = 5.0
    on_change_only: bool = True
    change_threshold: float = 0.06
    repeat_identical: bool = False

    def __post_init__(self) -> None:
        if self.every_s < 0:
            raise InputError(f"every_s: expected seconds >= 0, got {self.every_s}")
        if not 0.0 <= self.change_threshold <= 1.0:
            raise InputError(f"change_threshold: expected a value in [0, 1], got {self.change_threshold}")


def _thumbnail(image: np.ndarray) -> np.ndarray:
    """A 32x32 grayscale float thumbnail in [0, 1] (block means; cheap and noise-tolerant)."""
    # Every 4th pixel of a 1080p frame is plenty for 32x32 block means, at a sixteenth of the cost.
    step = max(1, min(image.shape[0], image.shape[1]) // (_THUMB * 8))
    image = image[::step, ::step]
    gray = image.mean(axis=2, dtype=np.float32) if image.ndim == 3 else image.astype(np.float32)
    h, w = gray.shape
    ys = np.linspace(0, h, _THUMB + 1).astype(int)
    xs = np.linspace(0, w, _THUMB + 1).astype(int)
    rows = np.add.reduceat(gray, ys[:-1], axis=0) / np.diff(ys)[:, None]
    thumb = np.add.reduceat(rows, xs[:-1], axis=1) / np.diff(xs)[None, :]
    return thumb / 255.0


def scene_change(previous: np.ndarray | None, image: np.ndarray) -> tuple[float, np.ndarray]:
    """How much ``image`` differs from a previous thumbnail: mean absolute difference in [0, 1].

    Args:
        previous: the thumbnail returned for an earlier frame, or None (counts as a full change).
        image: np.ndarray, shape (H, W, 3), uint8.

    Returns:
        (change, thumbnail of ``image``).
    """
    thumb = _thumbnail(image)
    if previous is None:
        return 1.0, thumb
    return float(np.abs(thumb - previous).mean()), thumb


@dataclass(frozen=True)
class SessionStats:
    """A snapshot of a running session.

    Attributes:
        sources: per source: fps, captured, dropped, failed reads, reconnects.
        latency_ms: per component: p50 and p95 of frame-capture-to-event latency over the last
            512 events (capture is stamped after the frame is decoded).
        captions: captions emitted; suppressed: identical captions not emitted; alerts: alert events;
            transcripts: transcripts emitted; silent_segments: speech segments the recogniser judged
            to hold no speech (no event).
        queue_depths: events waiting in each generator's queue.
        sinks: per sink: sent, backlog, spooled, dropped, failures.
        running_s: seconds since the session started.
    """

    sources: dict[str, dict[str, Any]]
    latency_ms: dict[str, dict[str, float]]
    captions: int
    suppressed: int
    alerts: int
    transcripts: int
    silent_segments: int
    queue_depths: dict[str, int]
    sinks: dict[str, dict[str, Any]]
    running_s: float


class _Subscriber:
    """A bounded queue feeding one generator; when full, the oldest event is dropped and counted."""

    def __init__(self, name: str, types: tuple[type, ...], limit: int) -> None:
        self.name = name
        self.types = types
        self.queue: collections.deque[Event] = collections.deque(maxlen=limit)
        self.dropped = 0
        self.cond = threading.Condition()

    def put(self, event: Event) -> None:
        if not isinstance(event, self.types):
            return
        with self.cond:
            if len(self.queue) == self.queue.maxlen:
                self.dropped += 1
            self.queue.append(event)
            self.cond.notify_all()


class Session:
    """Streams sources through a pack's models and emits events. Build it with :func:`edgemm.open`.

    Args:
        captioner: an object with ``caption_batch(images) -> list[Caption]`` (a pack's captioner),
            or None for a session that only watches for alerts.
        sources: opened (not yet started) sources.
        policy: when to caption.
        sinks: sinks every event is sent to.
        max_queued_events: per generator, events kept for a slow reader before the oldest are dropped.
        scorer: a zero-shot image scorer (``score_images(images, prompts)``, ``add_prompts``) for alerts.
        alerts_max_fps: how often each camera's frames are scored for alerts, at most.
        events_dir: where alert snapshots (JPEG, and WAV clips of audio alerts) are written; None keeps none.
        events_dir_max_bytes: the snapshots kept at most; the oldest are deleted beyond it.
        audio_sources: opened (not yet started) microphones or audio files.
        transcriber: a speech recogniser (``transcribe(waveform, language=...) -> Transcription``,
            ``sample_rate_hz``), or None for no transcripts.
        audio_scorer: a zero-shot audio scorer (``score_audio``, ``add_prompts``) for audio alerts.
        vad: the voice activity detector that cuts microphone audio into segments for the
            transcriber: "auto" (Silero VAD if installed, else energy), "silero", "energy", or a
            :class:`edgemm.runtime.vad.Vad`.
        vad_config: segment padding, minimum silence and maximum length (:class:`edgemm.runtime.vad.VadConfig`).
        language: the transcription language for multilingual models (None: detected per segment).
        audio_window_s: how much audio each audio-alert score looks at (None: the audio model's
            clip length, at most 5 s).
    """

    def __init__(
        self,
        captioner: Any,
        sources: Sequence[Any],
        *,
        policy: CaptionPolicy | None = None,
        sinks: Sequence[Any] = (),
        max_queued_events: int = 1000,
        scorer: Any = None,
        alerts_max_fps: float = 2.0,
        events_dir: str | os.PathLike[str] | None = None,
        events_dir_max_bytes: int = 256 << 20,
        audio_sources: Sequence[Any] = (),
        transcriber: Any = None,
        audio_scorer: Any = None,
        vad: Any = "auto",
        vad_config: Any = None,
        language: str | None = None,
        audio_window_s: float | None = None,
    ) -> None:
        if not sources and not audio_sources:
            raise InputError("a session needs at least one camera, stream or microphone, got none")
        if sources and captioner is None and scorer is None:
            raise PackError("cameras need a caption or a zero_shot_image component in the pack; it has neither")
        if audio_sources and transcriber is None and audio_scorer is None:
            raise PackError("a microphone needs an asr or a zero_shot_audio component in the pack; it has neither")
        if audio_window_s is not None and audio_window_s <= 0:
            raise InputError(f"audio_window_s: expected seconds > 0, got {audio_window_s}")
        if alerts_max_fps <= 0:
            raise InputError(f"alerts_max_fps: expected a rate > 0, got {alerts_max_fps}")
        names = [s.name for s in (*sources, *audio_sources)]
        if len(set(names)) != len(names):
            raise InputError(f"source names must be unique, got {names}")
        self.captioner = captioner
        self.sources = list(sources)
        self.policy = policy or CaptionPolicy()
        self.sinks = list(sinks)
        self._max_queued = max_queued_events
        self._callbacks: list[tuple[type, Callable[[Any], None]]] = []
        self._subscribers: list[_Subscriber] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._finished = threading.Event()
        self._worker: threading.Thread | None = None
        self._threads: list[threading.Thread] = []
        self._running = 0
        self._latencies: dict[str, collections.deque[float]] = collections.defaultdict(lambda: collections.deque(maxlen=512))
        self._captions = 0
        self._suppressed = 0
        self._started_at = time.monotonic()
        self._error: BaseException | None = None
        self.scorer = scorer
        self._alerts: dict[str, Alert] = {}
        self._rules: dict[tuple[str, str], AlertRule] = {}
        self._alert_interval_s = 1.0 / alerts_max_fps
        self._alert_events = 0
        self.events_dir = Path(events_dir) if events_dir is not None else None
        self._events_dir_max_bytes = events_dir_max_bytes
        self.audio_sources = list(audio_sources)
        self.transcriber = transcriber
        self.audio_scorer = audio_scorer
        self._vad = vad
        self._vad_config = vad_config
        self.language = language
        self._audio_window_s = audio_window_s
        self._transcripts = 0
        self._silent_segments = 0
        for source in (*self.sources, *self.audio_sources):
            if hasattr(source, "on_event"):
                source.on_event(self._emit)

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> Session:
        """Opens the sources (failing fast on an unreachable one) and starts the worker."""
        if self._worker is not None:
            return self
        started = []
        try:
            for source in (*self.sources, *self.audio_sources):
                source.start()
                started.append(source)
        except BaseException:
            for source in started:
                source.close()
            raise
        self._started_at = time.monotonic()
        if self.sources:
            self._threads.append(threading.Thread(target=self._guard, args=(self._run,), name="edgemm-session", daemon=True))
        for source in self.audio_sources:
            worker = _AudioWorker(self, source)
            self._threads.append(threading.Thread(target=self._guard, args=(worker.run,), name=f"edgemm-audio-{source.name}", daemon=True))
        self._worker = self._threads[0]
        self._running = len(self._threads)
        for thread in self._threads:
            thread.start()
        return self

    def close(self, timeout_s: float = 5.0) -> None:
        """Stops capture, lets in-flight model work finish (up to ``timeout_s``), flushes sinks."""
        self._stop.set()
        for source in (*self.sources, *self.audio_sources):
            source.close()
        deadline = time.monotonic() + timeout_s
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join(max(0.0, deadline - time.monotonic()))
                if thread.is_alive():
                    log.warning("%s: model work still running after %.1f s; abandoning it", thread.name, timeout_s)
        for sink in self.sinks:
            sink.close(timeout_s=timeout_s)
        self._finished.set()
        for sub in self._subscribers:
            with sub.cond:
                sub.cond.notify_all()

    def __enter__(self) -> Session:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def running(self) -> bool:
        return self._worker is not None and not self._finished.is_set()

    def wait(self, timeout_s: float | None = None) -> bool:
        """Blocks until every source has ended (files) or the session is closed; True if it has."""
        return self._finished.wait(timeout_s)

    # -- events -------------------------------------------------------------------------------------

    def on(self, event_type: type, callback: Callable[[Any], None]) -> None:
        """Calls ``callback(event)`` for every event of ``event_type`` (on the worker thread: keep it short)."""
        self._callbacks.append((event_type, callback))

    def add_sink(self, sink: Any) -> None:
        self.sinks.append(sink)

    # -- alerts -------------------------------------------------------------------------------------

    def add_alert(self, alert: Alert, callback: Callable[[AlertEvent], None] | None = None) -> None:
        """Watches every camera (image alerts) or microphone (audio alerts) for ``alert``, also while
        the session runs; ``callback`` gets its events.

        Raises:
            PackError: the pack has no zero-shot component of the alert's modality.
            InputError: an alert of that name exists, or no source of the alert's modality.
            TextTowerMissingError: a new prompt, and the pack was compiled without its text tower.
        """
        if alert.modality == "audio":
            scorer, sources, what = self.audio_scorer, self.audio_sources, "microphone or audio file (mic=...)"
        else:
            scorer, sources, what = self.scorer, self.sources, "camera or stream (camera=...)"
        if scorer is None:
            task = "zero_shot_audio (CLAP)" if alert.modality == "audio" else "zero_shot_image (CLIP, SigLIP)"
            raise PackError(f"alert '{alert.name}': the pack has no {task} component to score {alert.modality} with")
        if not sources:
            raise InputError(f"alert '{alert.name}': a {alert.modality} alert needs a {what}; the session has none")
        if alert.name in self._alerts:
            raise InputError(f"an alert named '{alert.name}' is already watched; remove it first or give this one another name")
        scorer.add_prompts([alert.text])
        with self._lock:
            self._alerts[alert.name] = alert
        if callback is not None:
            name = alert.name
            self.on(AlertEvent, lambda event: callback(event) if event.alert.name == name else None)

    def _watched(self, modality: str) -> list[Alert]:
        with self._lock:
            return [a for a in self._alerts.values() if a.modality == modality]

    def _fire(self, source: str, alert: Alert, time_s: float, score: float, wall_time: float, clip: Callable[[], str | None]) -> None:
        """Feeds one score to the alert's rule on ``source``; emits an AlertEvent when it fires."""
        with self._lock:
            if alert.name not in self._alerts:
                return  # removed meanwhile
            rule = self._rules.setdefault((source, alert.name), AlertRule(alert))
        if not rule.update(time_s, score):
            return
        latency_ms = max(0.0, (time.time() - wall_time) * 1000.0)
        self._latencies[f"{alert.modality}_alert"].append(latency_ms)
        self._alert_events += 1
        snapshot = clip() if self.events_dir is not None else None
        self._emit(AlertEvent(time_s=time_s, alert=alert, score=score, source=source, snapshot=snapshot, latency_ms=latency_ms))

    def remove_alert(self, name: str) -> Alert:
        """Stops watching the alert called ``name``; returns it.

        Raises:
            InputError: no such alert (the message lists the watched ones).
        """
        with self._lock:
            if name not in self._alerts:
                raise InputError(f"no alert named '{name}'; watched alerts: {sorted(self._alerts)}")
            alert = self._alerts.pop(name)
            for key in [k for k in self._rules if k[1] == name]:
                del self._rules[key]
        return alert

    def alerts(self) -> Iterator[AlertEvent]:
        """Yields :class:`AlertEvent` events until the session ends."""
        for event in self.events(AlertEvent):
            assert isinstance(event, AlertEvent)
            yield event

    def events(self, *types: type) -> Iterator[Event]:
        """Yields events as they happen (every event, or only those of ``types``) until the session ends."""
        sub = _Subscriber(f"events{len(self._subscribers)}", types or (object,), self._max_queued)
        self._subscribers.append(sub)
        try:
            while True:
                with sub.cond:
                    while not sub.queue and not self._finished.is_set():
                        sub.cond.wait(0.5)
                    if not sub.queue:
                        break
                    event = sub.queue.popleft()
                yield event
        finally:
            self._subscribers.remove(sub)
        if self._error is not None:
            raise self._error

    def captions(self) -> Iterator[Caption]:
        """Yields :class:`Caption` events until the session ends."""
        for event in self.events(Caption):
            assert isinstance(event, Caption)
            yield event

    def transcripts(self) -> Iterator[Transcript]:
        """Yields :class:`Transcript` events until the session ends."""
        for event in self.events(Transcript):
            assert isinstance(event, Transcript)
            yield event

    def _emit(self, event: Event) -> None:
        for event_type, callback in self._callbacks:
            if isinstance(event, event_type):
                try:
                    callback(event)
                except Exception:
                    log.exception("callback %r failed on %s", callback, type(event).__name__)
        for sub in list(self._subscribers):
            sub.put(event)
        if self.sinks:
            record = event_to_dict(event)
            for sink in self.sinks:
                sink.send(record)

    # -- the worker ---------------------------------------------------------------------------------

    def _guard(self, work: Callable[[], None]) -> None:
        """Runs one worker; the session finishes when the last worker does, or at once on a failure."""
        try:
            work()
        except BaseException as exc:  # surfaced to the generators' readers and logged
            self._error = exc
            log.exception("session worker failed")
            self._stop.set()
        finally:
            with self._lock:
                self._running -= 1
                last = self._running == 0
            if last or self._error is not None:
                self._finished.set()
                for sub in list(self._subscribers):
                    with sub.cond:
                        sub.cond.notify_all()

    def _run(self) -> None:
        state: dict[str, dict[str, Any]] = {
            s.name: {"thumb": None, "last_s": None, "last_text": None, "ended": False, "alert_s": None} for s in self.sources
        }
        while not self._stop.is_set():
            due: list[tuple[Any, Any, np.ndarray | None]] = []
            score_due: list[tuple[Any, Any]] = []
            active = [s for s in self.sources if not state[s.name]["ended"]]
            if not active:
                break
            image_alerts = any(a.modality == "image" for a in self._alerts.values())
            for source in active:
                frame = source.read(timeout_s=0.05 if len(active) > 1 else 0.2)
                if frame is None:
                    if getattr(source, "ended", False):
                        state[source.name]["ended"] = True
                    continue
                st = state[source.name]
                if image_alerts and (st["alert_s"] is None or frame.time_s - st["alert_s"] >= self._alert_interval_s):
                    st["alert_s"] = frame.time_s
                    score_due.append((source, frame))
                if self.captioner is None:
                    continue
                if st["last_s"] is not None and frame.time_s - st["last_s"] < self.policy.every_s:
                    continue
                if self.policy.on_change_only:
                    change, thumb = scene_change(st["thumb"], frame.image)
                    if st["thumb"] is not None and change < self.policy.change_threshold:
                        continue
                else:
                    thumb = None  # no scene-change test, so no thumbnail to pay for
                due.append((source, frame, thumb))
            if score_due:
                self._score(score_due)
            if due:
                self._caption(due, state)

    def _caption(self, due: list[tuple[Any, Any, np.ndarray | None]], state: dict[str, dict[str, Any]]) -> None:
        # Frames of every camera due now go to the model as one batch.
        try:
            results = self.captioner.caption_batch([frame.image for _, frame, _ in due])
        except EdgemmError as exc:
            log.error("captioning failed: %s", exc)
            return
        now = time.time()
        for (source, frame, thumb), result in zip(due, results):
            st = state[source.name]
            st["thumb"], st["last_s"] = thumb, frame.time_s
            latency_ms = max(0.0, (now - frame.wall_time) * 1000.0)
            self._latencies["caption"].append(latency_ms)
            if result.text == st["last_text"] and not self.policy.repeat_identical:
                self._suppressed += 1
                continue
            st["last_text"] = result.text
            self._captions += 1
            self._emit(
                dataclasses.replace(
                    result, time_s=frame.time_s, source=source.name, frame_index=frame.index, latency_ms=latency_ms, image=None
                )
            )

    def _score(self, due: list[tuple[Any, Any]]) -> None:
        # Frames of every camera due now are scored as one batch against every image alert.
        alerts = self._watched("image")
        if not alerts:
            return
        try:
            scores = self.scorer.score_images([frame.image for _, frame in due], [a.text for a in alerts])
        except EdgemmError as exc:
            log.error("alert scoring failed: %s", exc)
            return
        for (source, frame), row in zip(due, scores):
            for alert, score in zip(alerts, row):
                self._fire(source.name, alert, frame.time_s, float(score), frame.wall_time, functools.partial(self._snapshot, frame, alert))

    def _snapshot(self, frame: Any, alert: Alert) -> str | None:
        """Writes the frame as JPEG into the events directory."""
        from PIL import Image

        return self._keep(f"{frame.index:08d}_{frame.source}_{alert.name}", ".jpg", lambda path: Image.fromarray(frame.image).save(path, quality=85))

    def _audio_clip(self, samples: np.ndarray, sample_rate_hz: int, source: str, time_s: float, alert: Alert) -> str | None:
        """Writes an audio alert's window as a 16-bit mono WAV into the events directory."""
        return self._keep(f"{time_s:09.2f}s_{source}_{alert.name}", ".wav", lambda path: write_wav(path, samples, sample_rate_hz))

    def _keep(self, stem: str, suffix: str, write: Callable[[Path], None]) -> str | None:
        """Writes one event file, then deletes the oldest until the directory is under its size limit."""
        assert self.events_dir is not None
        try:
            self.events_dir.mkdir(parents=True, exist_ok=True)
            safe = "".join(c if c.isalnum() or c == "." else "-" for c in stem)[:80]
            path = self.events_dir / f"{time.strftime('%Y%m%d-%H%M%S')}_{safe}{suffix}"
            write(path)
            files = sorted((p for p in self.events_dir.iterdir() if p.suffix in (".jpg", ".wav")), key=lambda p: p.stat().st_mtime)
            total = sum(p.stat().st_size for p in files)
            while files and total > self._events_dir_max_bytes:
                oldest = files.pop(0)
                total -= oldest.stat().st_size
                oldest.unlink(missing_ok=True)
            return str(path)
        except OSError as exc:
            log.warning("could not write the alert's %s file: %s", suffix, exc)
            return None

    # -- stats ------------------------------------------------------------------------------------

    def stats(self) -> SessionStats:
        latency = {}
        for component, values in self._latencies.items():
            if values:
                array = np.asarray(values)
                latency[component] = {"p50": float(np.percentile(array, 50)), "p95": float(np.percentile(array, 95)), "n": float(len(array))}
        return SessionStats(
            sources={s.name: dataclasses.asdict(s.stats()) for s in (*self.sources, *self.audio_sources)},
            latency_ms=latency,
            captions=self._captions,
            suppressed=self._suppressed,
            alerts=self._alert_events,
            transcripts=self._transcripts,
            silent_segments=self._silent_segments,
            queue_depths={sub.name: len(sub.queue) for sub in self._subscribers},
            sinks={getattr(sink, "name", str(i)): dataclasses.asdict(sink.stats()) for i, sink in enumerate(self.sinks)},
            running_s=time.monotonic() - self._started_at,
        )


def write_wav(path: str | os.PathLike[str], samples: np.ndarray, sample_rate_hz: int) -> None:
    """Writes mono float samples (shape (n,), in [-1, 1]) as a 16-bit PCM WAV file."""
    import wave

    pcm = (np.clip(np.asarray(samples, dtype=np.float32), -1.0, 1.0) * 32767.0).round().astype("<i2")
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(int(sample_rate_hz))
        out.writeframes(pcm.tobytes())


class _AudioWindow:
    """The newest ``length`` samples of a stream (a fixed ring, copied out in time order)."""

    def __init__(self, length: int) -> None:
        self.buffer = np.zeros(length, dtype=np.float32)
        self.filled = 0
        self.end_s = 0.0

    def push(self, samples: np.ndarray, end_s: float) -> None:
        n = len(samples)
        if n >= len(self.buffer):
            self.buffer[:] = samples[-len(self.buffer) :]
        else:
            self.buffer[:-n] = self.buffer[n:]
            self.buffer[-n:] = samples
        self.filled = min(len(self.buffer), self.filled + n)
        self.end_s = end_s

    def samples(self) -> np.ndarray:
        return self.buffer[len(self.buffer) - self.filled :].copy()


class _AudioWorker:
    """One microphone or audio file: voice activity -> transcripts, and windows -> audio alerts.

    Audio arrives at the source's rate and is resampled (anti-aliased, streaming) to each model's:
    16 kHz for Whisper and the VAD, the audio scorer's own rate (48 kHz for CLAP) for alerts.
    """

    def __init__(self, session: Session, source: Any) -> None:
        from .audio_sources import StreamResampler
        from .vad import Segmenter, open_vad

        self.session = session
        self.source = source
        rate = int(source.sample_rate_hz)
        self.segmenter: Any = None
        if session.transcriber is not None:
            vad = open_vad(session._vad) if isinstance(session._vad, str) else session._vad
            asr_rate = int(session.transcriber.sample_rate_hz)
            if int(vad.sample_rate_hz) != asr_rate:
                raise PackError(f"the voice activity detector runs at {vad.sample_rate_hz} Hz but the recogniser at {asr_rate} Hz")
            # The segmenter resamples to the VAD's (= the recogniser's) rate itself and keeps the
            # source's clock, so segment times do not drift by the resampler's delay.
            self.segmenter = Segmenter(vad, session._vad_config, sample_rate_hz=rate, source=source.name)
        self.window: _AudioWindow | None = None
        self.to_scorer: Any = None
        self.scorer_rate = rate
        if session.audio_scorer is not None:
            spec = session.audio_scorer.component.audio
            self.scorer_rate = int(spec.sample_rate_hz)
            window_s = session._audio_window_s or min(float(spec.max_length_s or 5.0), 5.0)
            self.window = _AudioWindow(max(1, round(window_s * self.scorer_rate)))
            self.to_scorer = StreamResampler(rate, self.scorer_rate) if rate != self.scorer_rate else None
        self.next_score_s = 0.0

    def run(self) -> None:
        session, source = self.session, self.source
        while not session._stop.is_set():
            chunk = source.read(timeout_s=0.2)
            if chunk is None:
                if source.ended:
                    break
                continue
            end_s = chunk.end_s
            if self.segmenter is not None:
                for segment in self.segmenter.push(chunk.samples, chunk.time_s):
                    self._transcribe(segment, chunk.wall_time)
            if self.window is not None:
                samples = self.to_scorer.push(chunk.samples) if self.to_scorer is not None else chunk.samples
                self.window.push(samples, end_s)
                if end_s >= self.next_score_s and self.window.filled == len(self.window.buffer):
                    self.next_score_s = end_s + session._alert_interval_s
                    self._score(end_s, chunk.wall_time)
        if self.segmenter is not None and not session._stop.is_set():
            for segment in self.segmenter.flush():
                self._transcribe(segment, time.time())

    def _transcribe(self, segment: Any, wall_time: float) -> None:
        session = self.session
        try:
            result = session.transcriber.transcribe(segment.samples, language=session.language)
        except EdgemmError as exc:
            log.error("transcription of %.1f-%.1f s failed: %s", segment.start_s, segment.end_s, exc)
            return
        text = result.text.strip()
        if not text:
            session._silent_segments += 1
            return
        latency_ms = max(0.0, (time.time() - wall_time) * 1000.0)
        session._latencies["transcript"].append(latency_ms)
        session._transcripts += 1
        session._emit(
            Transcript(
                text=text,
                time_s=float(segment.start_s),
                end_s=float(segment.end_s),
                latency_ms=latency_ms,
                source=self.source.name,
                language=result.language,
                no_speech_prob=float(result.no_speech_prob),
                avg_logprob=float(result.avg_logprob),
                tokens=tuple(result.tokens),
            )
        )

    def _score(self, end_s: float, wall_time: float) -> None:
        session = self.session
        alerts = session._watched("audio")
        assert self.window is not None
        # A part-filled window would be padded (CLAP repeats it), and a repeated fragment of noise
        # sounds tonal: the first score waits until one whole window was heard.
        if not alerts or self.window.filled < len(self.window.buffer):
            return
        samples = self.window.samples()
        try:
            (row,) = session.audio_scorer.score_audio([samples], self.scorer_rate, [a.text for a in alerts])
        except EdgemmError as exc:
            log.error("audio alert scoring failed: %s", exc)
            return
        # Stamped with the window's end: the stream time at which the decision could be made, as a
        # frame's alert is stamped with the frame's time. The WAV clip holds the whole window.
        for alert, score in zip(alerts, row):
            clip = functools.partial(session._audio_clip, samples, self.scorer_rate, self.source.name, end_s, alert)
            session._fire(self.source.name, alert, end_s, float(score), wall_time, clip)


def open_session(
    pack: Any,
    camera: str | int | os.PathLike[str] | Sequence[str | int | os.PathLike[str]] | None = None,
    *,
    mic: str | int | os.PathLike[str] | None = None,
    caption_every_s: float = 5.0,
    on_change_only: bool = True,
    change_threshold: float = 0.06,
    repeat_identical: bool = False,
    sinks: Sequence[Any] = (),
    realtime: bool = True,
    loop: bool = False,
    source_timeout_s: float = 10.0,
    precision: str = "auto",
    backend: str = "auto",
    alerts: Sequence[Alert] = (),
    alerts_max_fps: float = 2.0,
    events_dir: str | os.PathLike[str] | None = None,
    language: str | None = None,
    vad: Any = "auto",
    vad_config: Any = None,
    audio_window_s: float | None = None,
    start: bool = True,
) -> Session:
    """Opens cameras/streams and a microphone and runs a pack's models on them (see :class:`Session`).

    Args:
        pack: a loaded pack (``edgemm.load``) or a pack directory.
        camera: one source URI (``rtsp://``, ``http://`` MJPEG, ``file://``, a path, a device
            index, ``v4l2://``, ``csi://N``, ``gst://PIPELINE``) or a list of them; None for
            audio only.
        mic: a microphone (``"default"``, a device name or index, ``mic://NAME``) or an audio
            file (``file://clip.wav``, a path); transcribed by the pack's ``asr`` component and
            watched by its audio alerts.
        caption_every_s, on_change_only, change_threshold, repeat_identical: the :class:`CaptionPolicy`.
        sinks: sink specs (``"-"``, ``"events.jsonl"``, ``"mqtt://host:1883/topic"``,
            ``"https://host/hook"``) or callables; every event goes to each.
        realtime: pace files at their native rate (False: as fast as the model goes, nothing dropped).
        loop: replay files from the start when they end.
        source_timeout_s: how long opening a source may take before it is an error.
        precision: precision of the models when ``pack`` is a path.
        backend: "auto" (a TensorRT engine built for this device, else ONNX Runtime), "tensorrt" or
            "onnxruntime", when ``pack`` is a path.
        alerts: alerts to watch from the start (more with ``session.add_alert``).
        alerts_max_fps: how often each camera (and the microphone) is scored for alerts, at most.
        events_dir: where alert snapshots and audio clips are written (None: none are kept).
        language: transcription language of multilingual Whisper models (None: detected).
        vad: voice activity detector: "auto", "silero", "energy" or a :class:`edgemm.runtime.vad.Vad`.
        vad_config: :class:`edgemm.runtime.vad.VadConfig` (segment padding, silence, maximum length).
        audio_window_s: seconds of audio each audio-alert score looks at (None: the model's clip, at most 5 s).
        start: open the sources and start at once (else on ``start()`` / ``with``).

    Raises:
        SourceError: a source cannot be opened within its timeout (the others are closed again).
        PackError: the pack has no component for a given source (cameras: caption or
            zero_shot_image; microphone: asr or zero_shot_audio).
        InputError: neither a camera nor a microphone.
    """
    from .pack import Pack, load
    from .sinks import open_sink
    from .sources import open_source

    if camera is None and mic is None:
        raise InputError("edgemm.open: expected camera=..., mic=... or both, got neither")
    if not isinstance(pack, Pack):
        pack = load(pack, precision=precision, backend=backend)
    uris = [] if camera is None else [camera] if isinstance(camera, (str, int, os.PathLike)) else list(camera)
    captioner = pack.captioner() if uris and pack.components_for("caption") else None
    image_scorers = pack.components_for("zero_shot_image")
    scorer = pack.scorer(image_scorers[0].name) if uris and image_scorers else None
    audio_sources = []
    transcriber = audio_scorer = None
    rates = []
    if mic is not None:
        if pack.components_for("asr"):
            transcriber = pack.transcriber()
            rates.append(int(transcriber.sample_rate_hz))
        audio_scorers = pack.components_for("zero_shot_audio")
        if audio_scorers:
            audio_scorer = pack.scorer(audio_scorers[0].name)
            rates.append(int(audio_scorer.component.audio.sample_rate_hz))
        if not rates:
            raise PackError(f"mic={mic!r}: pack {pack.path} has no asr or zero_shot_audio component to run on audio")
    sources = []
    for i, uri in enumerate(uris):
        name = f"cam{i}" if len(uris) > 1 else "cam"
        sources.append(open_source(uri, name=name, realtime=realtime, loop=loop, timeout_s=source_timeout_s))
    if mic is not None:
        from .audio_sources import open_audio_source

        # One capture at the highest rate a model needs; each model's resampler takes it down from there.
        audio_sources.append(open_audio_source(mic, name="mic", sample_rate_hz=max(rates), realtime=realtime, loop=loop))
    policy = CaptionPolicy(every_s=caption_every_s, on_change_only=on_change_only, change_threshold=change_threshold, repeat_identical=repeat_identical)
    session = Session(
        captioner,
        sources,
        policy=policy,
        sinks=[open_sink(spec) for spec in sinks],
        scorer=scorer,
        alerts_max_fps=alerts_max_fps,
        events_dir=events_dir,
        audio_sources=audio_sources,
        transcriber=transcriber,
        audio_scorer=audio_scorer,
        vad=vad,
        vad_config=vad_config,
        language=language,
        audio_window_s=audio_window_s,
    )
    for alert in alerts:
        session.add_alert(alert)
    return session.start() if start else session
