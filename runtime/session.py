"""A running smart camera: sources -> scheduling -> models -> events -> callbacks, generators and sinks.

Threads, and why each exists:

- one capture thread per source (in :mod:`edgemm.runtime.sources`) keeps only the newest frame;
- one worker thread runs the models, so a slow model never blocks capture: frames that arrive
  while it works are overwritten (and counted as dropped), so latency stays bounded;
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
from .events import Caption, Event, event_to_dict

__all__ = ["CaptionPolicy", "Session", "SessionStats", "scene_change"]

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
        captions: captions emitted; suppressed: identical captions not emitted; alerts: alert events.
        queue_depths: events waiting in each generator's queue.
        sinks: per sink: sent, backlog, spooled, dropped, failures.
        running_s: seconds since the session started.
    """

    sources: dict[str, dict[str, Any]]
    latency_ms: dict[str, dict[str, float]]
    captions: int
    suppressed: int
    alerts: int
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
        events_dir: where alert snapshots (JPEG) are written; None keeps none.
        events_dir_max_bytes: the snapshots kept at most; the oldest are deleted beyond it.
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
    ) -> None:
        if not sources:
            raise InputError("a session needs at least one camera or stream, got none")
        if captioner is None and scorer is None:
            raise PackError("a session needs a caption or a zero_shot_image component in the pack; it has neither")
        if alerts_max_fps <= 0:
            raise InputError(f"alerts_max_fps: expected a rate > 0, got {alerts_max_fps}")
        names = [s.name for s in sources]
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
        for source in self.sources:
            if hasattr(source, "on_event"):
                source.on_event(self._emit)

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> Session:
        """Opens the sources (failing fast on an unreachable one) and starts the worker."""
        if self._worker is not None:
            return self
        started = []
        try:
            for source in self.sources:
                source.start()
                started.append(source)
        except BaseException:
            for source in started:
                source.close()
            raise
        self._started_at = time.monotonic()
        self._worker = threading.Thread(target=self._run, name="edgemm-session", daemon=True)
        self._worker.start()
        return self

    def close(self, timeout_s: float = 5.0) -> None:
        """Stops capture, lets in-flight model work finish (up to ``timeout_s``), flushes sinks."""
        self._stop.set()
        for source in self.sources:
            source.close()
        if self._worker is not None and self._worker is not threading.current_thread():
            self._worker.join(timeout_s)
            if self._worker.is_alive():
                log.warning("model work still running after %.1f s; abandoning it", timeout_s)
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
        """Watches every camera for ``alert`` (also while the session runs); ``callback`` gets its events.

        Raises:
            PackError: the pack has no zero_shot_image component.
            InputError: an alert of that name exists, or an audio alert (no microphone input yet).
            TextTowerMissingError: a new prompt, and the pack was compiled without its text tower.
        """
        if alert.modality == "audio":
            raise InputError(f"alert '{alert.name}': audio alerts need microphone input, which this edgemm does not have yet")
        if self.scorer is None:
            raise PackError(f"alert '{alert.name}': the pack has no zero_shot_image component to score frames with")
        if alert.name in self._alerts:
            raise InputError(f"an alert named '{alert.name}' is already watched; remove it first or give this one another name")
        self.scorer.add_prompts([alert.text])
        with self._lock:
            self._alerts[alert.name] = alert
        if callback is not None:
            name = alert.name
            self.on(AlertEvent, lambda event: callback(event) if event.alert.name == name else None)

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

    def _run(self) -> None:
        state: dict[str, dict[str, Any]] = {
            s.name: {"thumb": None, "last_s": None, "last_text": None, "ended": False, "alert_s": None} for s in self.sources
        }
        try:
            while not self._stop.is_set():
                due: list[tuple[Any, Any, np.ndarray | None]] = []
                score_due: list[tuple[Any, Any]] = []
                active = [s for s in self.sources if not state[s.name]["ended"]]
                if not active:
                    break
                for source in active:
                    frame = source.read(timeout_s=0.05 if len(active) > 1 else 0.2)
                    if frame is None:
                        if getattr(source, "ended", False):
                            state[source.name]["ended"] = True
                        continue
                    st = state[source.name]
                    if self._alerts and (st["alert_s"] is None or frame.time_s - st["alert_s"] >= self._alert_interval_s):
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
        except BaseException as exc:  # surfaced to the generators' readers and logged
            self._error = exc
            log.exception("session worker failed")
        finally:
            self._finished.set()
            for sub in list(self._subscribers):
                with sub.cond:
                    sub.cond.notify_all()

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
        # Frames of every camera due now are scored as one batch against every alert.
        with self._lock:
            alerts = list(self._alerts.values())
        if not alerts:
            return
        try:
            scores = self.scorer.score_images([frame.image for _, frame in due], [a.text for a in alerts])
        except EdgemmError as exc:
            log.error("alert scoring failed: %s", exc)
            return
        now = time.time()
        for (source, frame), row in zip(due, scores):
            for alert, score in zip(alerts, row):
                with self._lock:
                    if alert.name not in self._alerts:
                        continue  # removed meanwhile
                    rule = self._rules.setdefault((source.name, alert.name), AlertRule(alert))
                if not rule.update(frame.time_s, float(score)):
                    continue
                latency_ms = max(0.0, (now - frame.wall_time) * 1000.0)
                self._latencies["alert"].append(latency_ms)
                self._alert_events += 1
                snapshot = self._snapshot(frame, alert) if self.events_dir is not None else None
                self._emit(AlertEvent(time_s=frame.time_s, alert=alert, score=float(score), source=source.name, snapshot=snapshot, latency_ms=latency_ms))

    def _snapshot(self, frame: Any, alert: Alert) -> str | None:
        """Writes the frame as JPEG into the events directory, keeping the directory under its size limit."""
        from PIL import Image

        assert self.events_dir is not None
        try:
            self.events_dir.mkdir(parents=True, exist_ok=True)
            safe = "".join(c if c.isalnum() else "-" for c in f"{frame.source}_{alert.name}")[:80]
            path = self.events_dir / f"{time.strftime('%Y%m%d-%H%M%S')}_{frame.index:08d}_{safe}.jpg"
            Image.fromarray(frame.image).save(path, quality=85)
            files = sorted(self.events_dir.glob("*.jpg"), key=lambda p: p.stat().st_mtime)
            total = sum(p.stat().st_size for p in files)
            while files and total > self._events_dir_max_bytes:
                oldest = files.pop(0)
                total -= oldest.stat().st_size
                oldest.unlink(missing_ok=True)
            return str(path)
        except OSError as exc:
            log.warning("could not write the alert snapshot: %s", exc)
            return None

    # -- stats ------------------------------------------------------------------------------------

    def stats(self) -> SessionStats:
        latency = {}
        for component, values in self._latencies.items():
            if values:
                array = np.asarray(values)
                latency[component] = {"p50": float(np.percentile(array, 50)), "p95": float(np.percentile(array, 95)), "n": float(len(array))}
        return SessionStats(
            sources={s.name: dataclasses.asdict(s.stats()) for s in self.sources},
            latency_ms=latency,
            captions=self._captions,
            suppressed=self._suppressed,
            alerts=self._alert_events,
            queue_depths={sub.name: len(sub.queue) for sub in self._subscribers},
            sinks={getattr(sink, "name", str(i)): dataclasses.asdict(sink.stats()) for i, sink in enumerate(self.sinks)},
            running_s=time.monotonic() - self._started_at,
        )


def open_session(
    pack: Any,
    camera: str | int | os.PathLike[str] | Sequence[str | int | os.PathLike[str]],
    *,
    mic: str | None = None,
    caption_every_s: float = 5.0,
    on_change_only: bool = True,
    change_threshold: float = 0.06,
    repeat_identical: bool = False,
    sinks: Sequence[Any] = (),
    realtime: bool = True,
    loop: bool = False,
    source_timeout_s: float = 10.0,
    precision: str = "auto",
    alerts: Sequence[Alert] = (),
    alerts_max_fps: float = 2.0,
    events_dir: str | os.PathLike[str] | None = None,
    start: bool = True,
) -> Session:
    """Opens cameras/streams and runs a pack's captioner and alerts on them (see :class:`Session`).

    Args:
        pack: a loaded pack (``edgemm.load``) or a pack directory.
        camera: one source URI (``rtsp://``, ``http://`` MJPEG, ``file://``, a path, a device
            index, ``v4l2://``, ``csi://N``, ``gst://PIPELINE``) or a list of them.
        mic: not available in this version (speech arrives with the speech component).
        caption_every_s, on_change_only, change_threshold, repeat_identical: the :class:`CaptionPolicy`.
        sinks: sink specs (``"-"``, ``"events.jsonl"``, ``"mqtt://host:1883/topic"``,
            ``"https://host/hook"``) or callables; every event goes to each.
        realtime: pace files at their native rate (False: as fast as the model goes, no frame dropped).
        loop: replay files from the start when they end.
        source_timeout_s: how long opening a source may take before it is an error.
        precision: precision of the models when ``pack`` is a path.
        alerts: alerts to watch from the start (more with ``session.add_alert``).
        alerts_max_fps: how often each camera is scored for alerts, at most.
        events_dir: where alert snapshots are written (None: none are kept).
        start: open the sources and start at once (else on ``start()`` / ``with``).

    Raises:
        SourceError: a source cannot be opened within its timeout (the others are closed again).
        PackError: the pack has neither a caption nor a zero_shot_image component.
    """
    from .pack import Pack, load
    from .sinks import open_sink
    from .sources import open_source

    if mic is not None:
        raise InputError(f"mic={mic!r}: microphone input comes with the speech component, which this edgemm does not have yet")
    if not isinstance(pack, Pack):
        pack = load(pack, precision=precision)
    uris = [camera] if isinstance(camera, (str, int, os.PathLike)) else list(camera)
    captioner = pack.captioner() if pack.components_for("caption") else None
    scorer = pack.scorer() if pack.components_for("zero_shot_image") else None
    sources = []
    for i, uri in enumerate(uris):
        name = f"cam{i}" if len(uris) > 1 else "cam"
        sources.append(open_source(uri, name=name, realtime=realtime, loop=loop, timeout_s=source_timeout_s))
    policy = CaptionPolicy(every_s=caption_every_s, on_change_only=on_change_only, change_threshold=change_threshold, repeat_identical=repeat_identical)
    session = Session(
        captioner,
        sources,
        policy=policy,
        sinks=[open_sink(spec) for spec in sinks],
        scorer=scorer,
        alerts_max_fps=alerts_max_fps,
        events_dir=events_dir,
    )
    for alert in alerts:
        session.add_alert(alert)
    return session.start() if start else session
