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
from typing import Any

import numpy as np

from .errors import EdgemmError, InputError
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
        latency_ms: per component: p50 and p95 of frame-capture-to-event latency.
        captions: captions emitted; suppressed: identical captions not emitted.
        queue_depths: events waiting in each generator's queue.
        sinks: per sink: sent, backlog, spooled, dropped, failures.
        running_s: seconds since the session started.
    """

    sources: dict[str, dict[str, Any]]
    latency_ms: dict[str, dict[str, float]]
    captions: int
    suppressed: int
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
        captioner: an object with ``caption_batch(images) -> list[Caption]`` (a pack's captioner).
        sources: opened (not yet started) sources.
        policy: when to caption.
        sinks: sinks every event is sent to.
        max_queued_events: per generator, events kept for a slow reader before the oldest are dropped.
    """

    def __init__(
        self,
        captioner: Any,
        sources: Sequence[Any],
        *,
        policy: CaptionPolicy | None = None,
        sinks: Sequence[Any] = (),
        max_queued_events: int = 1000,
    ) -> None:
        if not sources:
            raise InputError("a session needs at least one camera or stream, got none")
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
            s.name: {"thumb": None, "last_s": None, "last_text": None, "ended": False} for s in self.sources
        }
        try:
            while not self._stop.is_set():
                due: list[tuple[Any, Any, np.ndarray]] = []
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
                    if st["last_s"] is not None and frame.time_s - st["last_s"] < self.policy.every_s:
                        continue
                    change, thumb = scene_change(st["thumb"], frame.image)
                    if self.policy.on_change_only and st["thumb"] is not None and change < self.policy.change_threshold:
                        continue
                    due.append((source, frame, thumb))
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

    def _caption(self, due: list[tuple[Any, Any, np.ndarray]], state: dict[str, dict[str, Any]]) -> None:
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
    start: bool = True,
) -> Session:
    """Opens cameras/streams and runs a pack's captioner on them (see :class:`Session`).

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
        start: open the sources and start at once (else on ``start()`` / ``with``).

    Raises:
        SourceError: a source cannot be opened within its timeout (the others are closed again).
        PackError: the pack has no caption component.
    """
    from .pack import Pack, load
    from .sinks import open_sink
    from .sources import open_source

    if mic is not None:
        raise InputError(f"mic={mic!r}: microphone input comes with the speech component, which this edgemm does not have yet")
    if not isinstance(pack, Pack):
        pack = load(pack, precision=precision)
    uris = [camera] if isinstance(camera, (str, int, os.PathLike)) else list(camera)
    captioner = pack.captioner()
    sources = []
    for i, uri in enumerate(uris):
        name = f"cam{i}" if len(uris) > 1 else "cam"
        sources.append(open_source(uri, name=name, realtime=realtime, loop=loop, timeout_s=source_timeout_s))
    policy = CaptionPolicy(every_s=caption_every_s, on_change_only=on_change_only, change_threshold=change_threshold, repeat_identical=repeat_identical)
    session = Session(captioner, sources, policy=policy, sinks=[open_sink(spec) for spec in sinks])
    return session.start() if start else session
