"""Event sinks: deliver events to a callback, JSON lines, MQTT or a webhook, never blocking the pipeline.

Every sink has the same shape::

    sink = open_sink("mqtt://10.0.0.2:1883/home-cam/events", spool_dir="/var/lib/edgemm/spool/mqtt")
    sink.send({"id": "c-17", "type": "caption", "time_s": 12.5, "text": "a person at the door"})
    print(sink.stats())         # SinkStats(sent=..., queued=..., spooled=..., ...)
    sink.close(timeout_s=5)     # flushes what it can in time; the rest stays in the spool

Events are JSON-ready dicts with at least a unique string ``"id"``, a ``"type"`` and ``"time_s"``.

**Delivery.** :meth:`Sink.send` only serialises the event and appends it to an in-memory queue; a
worker thread per sink delivers the events one at a time, in order. A delivery that fails in a way
that may heal (broker or server down, HTTP 5xx, 408, 425, 429, timeouts, a full disk) is retried
with exponential backoff (``retry_initial_s`` doubling up to ``retry_max_s``, +-10 % jitter, a
server's ``Retry-After`` respected up to ``retry_max_s``), forever: nothing behind it is delivered
first, so order holds. A failure that retrying cannot heal (HTTP 4xx other than 408/425/429, a
redirect, an MQTT PUBACK with a failure reason code, a callback that raises) is counted in
``failures`` and ``discarded``, logged at ERROR with the event id, and the sink moves on.

**The spool.** A sink with a spool (MQTT and webhooks by default) never loses an event to an
outage. Events wait in memory (``queue_size`` of them at most) while the sink is healthy. As soon
as a delivery fails, or the memory queue overflows, the worker moves them to the spool directory,
oldest first, and the sink delivers from there, in order, when it comes back. The spool is a folder
of JSON lines segment files, ``000000000001.jsonl``, ``000000000002.jsonl``, ... (one event, as
sent, per line; readable with ``cat``), each with an ``.ack`` file that grows by one byte per line
delivered, and a ``lock`` file that keeps a second sink off the folder. Fully delivered segments
are deleted. A sink opened on a folder with leftovers (after a crash, a power loss, or a close while
the receiver was down) delivers them first. When the spool outgrows ``spool_max_bytes``, its oldest
segments (each at most 1/16 of the limit, 1 MiB at most) are deleted: the events in them are
counted in ``dropped_oldest`` and logged as a warning, and the newest events are kept. (An
event dropped while it was being delivered may still arrive.)

**What a crash or a power loss can cost.** While the sink is healthy, events live only in memory
(no flash wear when all is well): a crash loses at most those, ``queue_size`` at most. Spooled
events are written to the kernel at once (they survive the process dying) and fsynced at most
``spool_fsync_interval_s`` after they were written (default 1 s; ``0`` fsyncs every write, which
costs a flash write per event, 1 to 10 ms on SD cards and eMMC; ``None`` leaves it to the kernel's
writeback, about 30 s), when a segment is full, and on close. A power loss can therefore lose the
last second of spooled events. Acks are not fsynced: a power loss can make already delivered
events be delivered again, never lose them.

**Duplicates.** Delivery is at least once: consumers dedupe by the event's ``"id"``. MQTT uses
QoS 1, whose PUBACK can be lost with the connection; the message is then sent again (by paho after
it reconnects, with the DUP flag, or by the next run from the spool), so a consumer can see the
event that was in flight at an outage twice. Only one event is in flight at a time, so that is at
most one duplicate per outage. A webhook request that times out after the server processed it is
sent again too; webhooks carry the event id in an ``Idempotency-Key`` header for that.

**MQTT** (``mqtt://[user:password@]host[:port]/topic``, ``mqtts://`` for TLS; paho-mqtt >= 2.0):
events are published to the topic at QoS 1, not retained. The client reconnects by itself and
publishes a retained ``"online"`` on ``<topic>/status`` on every connect; a last will sets it to
a retained ``"offline"`` when the client dies, and :meth:`Sink.close` publishes ``"offline"``.

Sinks still open when the interpreter exits are closed then (2 s each), so a script that forgets
:meth:`Sink.close` still flushes or spools what it sent. Logs go to the ``edgemm.sinks`` logger: a warning when a sink goes down and when events are
dropped, info when it recovers, errors for events given up.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import hashlib
import http.client
import json
import logging
import math
import os
import random
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import weakref
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, ClassVar

from ._version import __version__
from .errors import (
    DependencyMissingError,
    InvalidEventError,
    SinkClosedError,
    SinkError,
    SinkSpecError,
    SpoolLockedError,
)

__all__ = [
    "ACCEPTED_SPECS",
    "CallbackSink",
    "InvalidEventError",
    "JsonlSink",
    "MqttSink",
    "Sink",
    "SinkClosedError",
    "SinkError",
    "SinkSpecError",
    "SinkStats",
    "SpoolLockedError",
    "StdoutSink",
    "WebhookSink",
    "default_spool_dir",
    "open_sink",
]

_log = logging.getLogger("edgemm.sinks")

ACCEPTED_SPECS = (
    '"-" or "stdout" (JSON lines on stdout), "jsonl:PATH" or a path ending in ".jsonl" (JSON lines '
    'file), "mqtt://[user:password@]host[:port]/topic" or "mqtts://..." (MQTT, QoS 1), '
    '"http://..." or "https://..." (webhook: POST of each event as JSON), '
    "or a Python callable that takes the event dict"
)

_MQTT_INSTALL = "pip install 'edgemm[mqtt]'"
_RETRYABLE_HTTP = frozenset({408, 425, 429})
_ATEXIT_TIMEOUT_S = 2.0
_WARN_INTERVAL_S = 10.0


# --- errors (to move into edgemm.runtime.errors) ---------------------------------------------


# --- public types ----------------------------------------------------------------------------


@dataclass(frozen=True)
class SinkStats:
    """A snapshot of a sink's counters.

    Attributes:
        sent: events delivered since the sink was opened.
        queued: events waiting in memory now (the one being delivered included).
        spooled: events waiting in the spool directory now.
        dropped_oldest: events dropped because the spool (or, without a spool, the memory queue)
            was full; always the oldest ones.
        failures: failed delivery attempts (each retry counts) plus unreadable spool lines and
            spool write errors.
        last_error: the latest failure, or None.
        backlog: events not yet delivered: ``queued + spooled``.
        discarded: events given up after a failure that retrying cannot heal (HTTP 4xx, a
            callback that raised); each is logged at ERROR.
    """

    sent: int
    queued: int
    spooled: int
    dropped_oldest: int
    failures: int
    last_error: str | None
    backlog: int
    discarded: int = 0


class _RetryableError(Exception):
    """A delivery failed in a way that may heal: retry the same event after a backoff."""

    def __init__(self, message: str, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class _PermanentError(Exception):
    """A delivery failed in a way that retrying cannot heal: give the event up."""


# --- the spool -------------------------------------------------------------------------------


@dataclass
class _Segment:
    number: int
    lines: int
    acked: int
    size: int


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


class _Spool:
    """A FIFO of JSON lines on disk: numbered segment files, each with an ack file.

    Not thread-safe: the owning sink serialises access under its lock.
    """

    def __init__(self, directory: Path, max_bytes: int, fsync_interval_s: float | None) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        self.segment_bytes = max(1, min(max_bytes // 16, 1 << 20))
        self.fsync_interval_s = fsync_interval_s
        self.count = 0
        self.bytes = 0
        try:
            directory.mkdir(parents=True, exist_ok=True)
            self._lock_fd = os.open(directory / "lock", os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise SinkError(f"spool directory {directory} cannot be used: {exc}") from exc
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(self._lock_fd)
            raise SpoolLockedError(
                f"spool directory {directory} is in use by another open sink; "
                "give each sink its own spool_dir, or close the other one first"
            ) from None
        os.ftruncate(self._lock_fd, 0)
        os.write(self._lock_fd, f"{os.getpid()}\n".encode())
        self._segments: deque[_Segment] = deque()
        self._tail_fd: int | None = None
        self._ack_fd: int | None = None
        self._ack_number = -1
        self._head_lines: deque[bytes] | None = None
        self._head_number = -1
        self._dirty = False
        self._dir_dirty = False
        self._last_sync = time.monotonic()
        try:
            self._next_number = self._load() + 1
        except OSError as exc:
            os.close(self._lock_fd)
            raise SinkError(f"spool directory {directory} cannot be read: {exc}") from exc

    def _path(self, number: int, suffix: str) -> Path:
        return self.directory / f"{number:012d}{suffix}"

    def _load(self) -> int:
        numbers = sorted(int(p.stem) for p in self.directory.glob("*.jsonl") if p.stem.isdigit())
        for number in numbers:
            data = self._path(number, ".jsonl").read_bytes()
            lines = data.count(b"\n") + (1 if data and not data.endswith(b"\n") else 0)
            ack = self._path(number, ".ack")
            acked = min(ack.stat().st_size, lines) if ack.exists() else 0
            segment = _Segment(number, lines, acked, len(data))
            self._segments.append(segment)
            self.count += lines - acked
            self.bytes += len(data)
        self._trim_front()
        for ack in self.directory.glob("*.ack"):
            if ack.stem.isdigit() and int(ack.stem) not in numbers:
                ack.unlink(missing_ok=True)
        return numbers[-1] if numbers else 0

    def append(self, line: str) -> None:
        """Appends one event line (without its newline); raises OSError, leaving no partial line."""
        data = line.encode("utf-8") + b"\n"
        if self._tail_fd is None or self._segments[-1].size >= self.segment_bytes:
            self._open_tail()
        assert self._tail_fd is not None  # for mypy: _open_tail set it
        segment = self._segments[-1]
        try:
            _write_all(self._tail_fd, data)
        except OSError:
            with contextlib.suppress(OSError):
                os.ftruncate(self._tail_fd, segment.size)
            self._close_tail()
            self._trim_front()
            raise
        segment.lines += 1
        segment.size += len(data)
        self.count += 1
        self.bytes += len(data)
        self._dirty = True
        if self._head_lines is not None and self._head_number == segment.number:
            self._head_lines.append(data[:-1])

    def _open_tail(self) -> None:
        if self._tail_fd is not None:
            if self.fsync_interval_s is not None:
                os.fsync(self._tail_fd)
            self._close_tail()
        number = self._next_number
        self._next_number += 1
        self._tail_fd = os.open(
            self._path(number, ".jsonl"), os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o644
        )
        self._segments.append(_Segment(number, 0, 0, 0))
        self._dir_dirty = True

    def _close_tail(self) -> None:
        if self._tail_fd is not None:
            os.close(self._tail_fd)
            self._tail_fd = None

    def peek(self) -> bytes | None:
        """The oldest undelivered line (without its newline), or None; raises OSError."""
        while self.count > 0:
            head = self._segments[0]
            if self._head_lines is None or self._head_number != head.number:
                data = self._path(head.number, ".jsonl").read_bytes()
                lines = data.split(b"\n")
                if data.endswith(b"\n"):
                    lines.pop()
                self._head_lines = deque(lines[head.acked :])
                self._head_number = head.number
            if self._head_lines:
                return self._head_lines[0]
            self.drop_head_segment()  # shorter than recorded: changed behind our back
        return None

    def pop(self) -> None:
        """Marks the oldest line delivered."""
        head = self._segments[0]
        if self._head_lines and self._head_number == head.number:
            self._head_lines.popleft()
        head.acked += 1
        self.count -= 1
        try:
            if self._ack_number != head.number:
                if self._ack_fd is not None:
                    os.close(self._ack_fd)
                    self._ack_fd = None
                self._ack_fd = os.open(
                    self._path(head.number, ".ack"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644
                )
                self._ack_number = head.number
            assert self._ack_fd is not None  # for mypy: opened just above
            _write_all(self._ack_fd, b"\n")
        except OSError as exc:
            # Only costs a duplicate after a restart: the event is delivered already.
            _log.warning(
                "spool %s: cannot record a delivery (%s); it may be delivered again", self.directory, exc
            )
        self._trim_front()

    def drop_head_segment(self) -> int:
        """Drops the oldest segment; returns how many undelivered events were in it."""
        head = self._segments[0]
        lost = head.lines - head.acked
        self.count -= lost
        head.acked = head.lines
        self._trim_front()
        return lost

    def enforce_limit(self) -> int:
        """Drops the oldest segments while the spool is over its limit; returns the events dropped."""
        dropped = 0
        while self.bytes > self.max_bytes and self._segments:
            dropped += self.drop_head_segment()
        return dropped

    def _trim_front(self) -> None:
        """Deletes the delivered (or dropped) segments at the front of the spool."""
        while self._segments and self._segments[0].acked >= self._segments[0].lines:
            segment = self._segments[0]
            is_tail = self._tail_fd is not None and segment is self._segments[-1]
            if is_tail and segment.lines == 0:
                return  # a fresh tail segment, about to be written
            self._segments.popleft()
            if is_tail:
                self._close_tail()
            if self._ack_number == segment.number and self._ack_fd is not None:
                os.close(self._ack_fd)
                self._ack_fd = None
                self._ack_number = -1
            if self._head_number == segment.number:
                self._head_lines = None
                self._head_number = -1
            self._path(segment.number, ".jsonl").unlink(missing_ok=True)
            self._path(segment.number, ".ack").unlink(missing_ok=True)
            self.bytes -= segment.size

    def sync_due_in(self) -> float | None:
        """Seconds until written data is due to be fsynced; None when nothing is pending."""
        if not self._dirty or self.fsync_interval_s is None:
            return None
        return max(0.0, self._last_sync + self.fsync_interval_s - time.monotonic())

    def sync(self, force: bool = False) -> None:
        """Fsyncs the data written since the last sync when it is due (or now, with force)."""
        if not force and self.sync_due_in() != 0.0:
            return
        for fd in (self._tail_fd, self._ack_fd if force else None):
            if fd is not None:
                os.fsync(fd)
        if self._dir_dirty:
            dir_fd = os.open(self.directory, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        self._dirty = self._dir_dirty = False
        self._last_sync = time.monotonic()

    def close(self) -> None:
        try:
            self.sync(force=True)
        except OSError as exc:
            _log.warning("spool %s: fsync failed on close: %s", self.directory, exc)
        self._close_tail()
        if self._ack_fd is not None:
            os.close(self._ack_fd)
            self._ack_fd = None
        os.close(self._lock_fd)


# --- the sink engine -------------------------------------------------------------------------

_live_sinks: weakref.WeakSet[Sink] = weakref.WeakSet()


@atexit.register
def _close_live_sinks() -> None:
    # A script that forgets close() still flushes, or spools, what it sent.
    for sink in list(_live_sinks):
        with contextlib.suppress(Exception):
            sink.close(timeout_s=_ATEXIT_TIMEOUT_S)


def default_spool_dir(name: str) -> Path:
    """The spool directory a sink uses when it is given none: one per sink spec, kept across runs.

    ``$EDGEMM_SPOOL_DIR/<kind>-<hash of the spec>``; ``$EDGEMM_SPOOL_DIR`` defaults to
    ``$XDG_STATE_HOME/edgemm/spool`` (``~/.local/state/edgemm/spool``).

    Args:
        name: the sink's spec without credentials, e.g. ``"mqtt://10.0.0.2:1883/cam"``.
    """
    base = os.environ.get("EDGEMM_SPOOL_DIR")
    if not base:
        state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
        base = str(Path(state) / "edgemm" / "spool")
    kind = name.split(":", 1)[0] if ":" in name else "sink"
    return Path(base) / f"{kind}-{hashlib.sha256(name.encode()).hexdigest()[:12]}"


def _encode_event(event: Mapping[str, Any]) -> str:
    if not isinstance(event, Mapping):
        raise InvalidEventError(f"an event must be a dict (a JSON object), got {type(event).__name__}")
    event_id = event.get("id")
    if not isinstance(event_id, str) or not event_id:
        raise InvalidEventError(
            f"an event needs a non-empty string 'id' (consumers dedupe by it), got {event_id!r}"
        )
    try:
        return json.dumps(dict(event), ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InvalidEventError(f"event {event_id!r} is not JSON-serialisable: {exc}") from exc


def _positive(name: str, value: float, *, allow_zero: bool = False) -> None:
    if (
        not isinstance(value, (int, float))
        or math.isnan(value)
        or value < 0
        or (value == 0 and not allow_zero)
    ):
        raise SinkSpecError(
            f"{name} must be a {'non-negative' if allow_zero else 'positive'} number, got {value!r}"
        )


class Sink:
    """Base of every sink: a non-blocking queue, a delivery thread, a spool thread and the spool.

    Subclasses implement ``_deliver`` (and optionally ``_start``, ``_interrupt``, ``_shutdown``)
    and call ``_begin()`` at the end of their constructor.

    Args:
        name: how logs and errors name the sink (its spec, without credentials).
        queue_size: events kept in memory at most; more go to the spool (or, without a spool,
            the oldest are dropped).
        spool: whether to spool to disk; None: the sink kind's default (MQTT and webhooks do,
            stdout, JSON lines files and callbacks do not, unless given a spool_dir).
        spool_dir: the spool directory; None: :func:`default_spool_dir`.
        spool_max_bytes: the spool's size limit on disk.
        spool_fsync_interval_s: at most this long between a spool write and its fsync; 0: fsync
            every write; None: never (the kernel writes back within about 30 s).
        retry_initial_s: the first backoff after a failed delivery; doubles on each failure.
        retry_max_s: the longest backoff.
    """

    kind: ClassVar[str] = "sink"
    spools_by_default: ClassVar[bool] = False

    def __init__(
        self,
        name: str,
        *,
        queue_size: int = 1000,
        spool: bool | None = None,
        spool_dir: str | os.PathLike[str] | None = None,
        spool_max_bytes: int = 64 << 20,
        spool_fsync_interval_s: float | None = 1.0,
        retry_initial_s: float = 0.5,
        retry_max_s: float = 30.0,
    ) -> None:
        if not isinstance(queue_size, int) or queue_size < 1:
            raise SinkSpecError(f"queue_size must be a positive int, got {queue_size!r}")
        if not isinstance(spool_max_bytes, int) or spool_max_bytes < 1:
            raise SinkSpecError(f"spool_max_bytes must be a positive int, got {spool_max_bytes!r}")
        if spool_fsync_interval_s is not None:
            _positive("spool_fsync_interval_s", spool_fsync_interval_s, allow_zero=True)
        _positive("retry_initial_s", retry_initial_s)
        _positive("retry_max_s", retry_max_s)
        self.name = name
        self._queue_size = queue_size
        use_spool = (self.spools_by_default or spool_dir is not None) if spool is None else spool
        self.spool_dir: Path | None = None
        if use_spool:
            self.spool_dir = (
                Path(spool_dir).expanduser() if spool_dir is not None else default_spool_dir(name)
            )
        self._spool_max_bytes = spool_max_bytes
        self._spool_fsync_interval_s = spool_fsync_interval_s
        self._retry_initial_s = float(retry_initial_s)
        self._retry_max_s = max(float(retry_max_s), self._retry_initial_s)
        self._spool: _Spool | None = None
        # send() touches only _inbox (appends on the right) under _send_lock, which is never held
        # during I/O. The worker threads take events from the left under _lock, which they may
        # hold during spool I/O. Events are a contiguous sequence: the oldest one (spool head, or
        # _inbox[0] when the spool is empty) has number _head_seq.
        self._inbox: deque[str] = deque()
        self._send_lock = threading.Lock()
        self._lock = threading.RLock()
        self._head_seq = 0
        self._inflight_seq: int | None = None
        self._finished = False
        self._closing = False
        self._outage = False
        self._sent = 0
        self._dropped = 0
        self._failures = 0
        self._discarded = 0
        self._last_error: str | None = None
        self._last_warning: dict[str, float] = {}
        self._wake_deliverer = threading.Event()
        self._wake_spooler = threading.Event()
        self._retry_now = threading.Event()
        self._progress = threading.Event()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    # -- hooks for subclasses --

    def _start(self) -> None:
        """Opens connections; called once before the threads start. Must not block for long."""

    def _deliver(self, seq: int, line: str) -> None:
        """Delivers one event (``line``: its JSON text); raises _RetryableError or _PermanentError."""
        raise NotImplementedError

    def _interrupt(self) -> None:
        """Wakes a _deliver call that is waiting, because the sink is closing."""

    def _shutdown(self, deadline: float) -> None:
        """Closes connections after the last delivery; ``deadline`` is a time.monotonic() value."""

    # -- public API --

    def send(self, event: Mapping[str, Any]) -> None:
        """Queues an event for delivery and returns at once; never waits for the network or the disk.

        Args:
            event: a JSON-ready dict with at least a non-empty string ``"id"``; it is serialised
                now, so changing it afterwards changes nothing.

        Raises:
            InvalidEventError: the event is not a dict with a string id, or not JSON-serialisable.
            SinkClosedError: the sink is closed.
        """
        line = _encode_event(event)
        with self._send_lock:
            if self._closing:
                raise SinkClosedError(f"sink {self.name} is closed; it takes no more events")
            self._inbox.append(line)
        self._wake_deliverer.set()
        if self._outage or len(self._inbox) > self._queue_size:
            self._wake_spooler.set()

    def stats(self) -> SinkStats:
        """A consistent snapshot of the sink's counters.

        Never waits for the network; at most for a spool write in progress (milliseconds).
        """
        with self._lock:
            queued = len(self._inbox)
            spooled = self._spool.count if self._spool is not None else 0
            return SinkStats(
                sent=self._sent,
                queued=queued,
                spooled=spooled,
                dropped_oldest=self._dropped,
                failures=self._failures,
                last_error=self._last_error,
                backlog=queued + spooled,
                discarded=self._discarded,
            )

    def close(self, timeout_s: float = 5.0) -> None:
        """Stops taking events, delivers what it can within ``timeout_s``, spools the rest.

        Events still undelivered at the deadline stay in the spool, and a sink opened later on the
        same spool directory delivers them first. Without a spool they are lost, and logged. MQTT
        sinks take up to one more second to publish their ``"offline"`` status. Idempotent.

        Args:
            timeout_s: how long to keep delivering, in seconds.
        """
        with self._send_lock:
            if self._closing:
                return
            self._closing = True
        deadline = time.monotonic() + max(0.0, timeout_s)
        self._wake_deliverer.set()
        while time.monotonic() < deadline:
            self._progress.clear()
            if self.stats().backlog == 0:
                break
            self._progress.wait(min(0.1, max(0.0, deadline - time.monotonic())))
        self._stop.set()
        self._retry_now.set()
        self._wake_deliverer.set()
        self._wake_spooler.set()
        self._interrupt()
        for thread in self._threads:
            if thread is not threading.current_thread():  # close() called from a callback
                thread.join(timeout=max(0.0, deadline - time.monotonic()))
        with self._lock:
            if self._spool is not None:
                self._spill_locked(len(self._inbox))
                self._spool.close()
            self._finished = True
        try:
            self._shutdown(deadline)
        finally:
            _live_sinks.discard(self)
        stats = self.stats()
        if stats.spooled:
            _log.info(
                "sink %s closed with %d events in the spool %s; a sink opened on it delivers them first",
                self.name,
                stats.spooled,
                self.spool_dir,
            )
        if stats.queued:
            _log.warning(
                "sink %s closed with %d events undelivered and no spool: they are lost",
                self.name,
                stats.queued,
            )

    def __enter__(self) -> Sink:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"

    # -- the engine --

    def _begin(self) -> None:
        if self.spool_dir is not None:
            self._spool = _Spool(self.spool_dir, self._spool_max_bytes, self._spool_fsync_interval_s)
            if self._spool.count:
                _log.info(
                    "sink %s: %d events left in the spool %s by an earlier run are delivered first",
                    self.name,
                    self._spool.count,
                    self.spool_dir,
                )
        try:
            self._start()
        except BaseException:
            if self._spool is not None:
                self._spool.close()
            raise
        label = f"edgemm-sink-{self.kind}"
        self._threads = [
            threading.Thread(target=self._deliver_loop, name=f"{label}-deliver", daemon=True),
            threading.Thread(target=self._spool_loop, name=f"{label}-spool", daemon=True),
        ]
        for thread in self._threads:
            thread.start()
        _live_sinks.add(self)

    def _record_failure(self, message: str, *, discarded: bool = False) -> None:
        with self._lock:
            self._failures += 1
            self._discarded += discarded
            self._last_error = message

    def _warn_rate_limited(self, key: str, message: str, *args: object) -> None:
        now = time.monotonic()
        if now - self._last_warning.get(key, -math.inf) >= _WARN_INTERVAL_S:
            self._last_warning[key] = now
            _log.warning(message, *args)

    def _peek_locked(self) -> tuple[int, str] | None:
        spool = self._spool
        while spool is not None and spool.count > 0 and not self._finished:
            try:
                raw = spool.peek()
            except OSError as exc:
                lost = spool.drop_head_segment()
                self._head_seq += lost
                self._dropped += lost
                self._record_failure(f"spool segment unreadable: {exc}")
                _log.error(
                    "sink %s: spool segment unreadable (%s); %d events in it are lost", self.name, exc, lost
                )
                continue
            if raw is None:
                break
            try:
                text = raw.decode("utf-8")
                event = json.loads(text)
                if not isinstance(event, dict) or not isinstance(event.get("id"), str):
                    raise ValueError("not an event object with a string id")
            except ValueError as exc:
                spool.pop()
                self._head_seq += 1
                self._record_failure(f"unreadable spool line skipped: {exc}")
                _log.warning(
                    "sink %s: skipped an unreadable line in the spool %s (a write cut short by a crash?): %r",
                    self.name,
                    spool.directory,
                    raw[:120],
                )
                continue
            return self._head_seq, text
        if self._inbox:
            return self._head_seq, self._inbox[0]
        return None

    def _commit_locked(self, seq: int) -> None:
        self._inflight_seq = None
        if self._finished or seq != self._head_seq:
            return  # dropped (spool full) while it was being delivered
        if self._spool is not None and self._spool.count > 0:
            self._spool.pop()
        else:
            self._inbox.popleft()
        self._head_seq += 1

    def _backoff_s(self, failures_in_row: int, retry_after_s: float | None) -> float:
        delay = min(self._retry_max_s, self._retry_initial_s * 2.0 ** min(failures_in_row - 1, 30))
        if retry_after_s is not None:
            delay = max(delay, min(retry_after_s, self._retry_max_s))
        return delay * random.uniform(0.9, 1.1)

    def _deliver_loop(self) -> None:
        failures_in_row = 0
        while not self._stop.is_set():
            self._wake_deliverer.clear()
            with self._lock:
                head = self._peek_locked()
                if head is not None:
                    self._inflight_seq = head[0]
            if head is None:
                self._progress.set()
                self._wake_deliverer.wait()
                continue
            seq, line = head
            self._retry_now.clear()
            try:
                self._deliver(seq, line)
            except _RetryableError as exc:
                failures_in_row += 1
                self._record_failure(str(exc))
                if not self._outage:
                    self._outage = True
                    self._wake_spooler.set()
                    _log.warning(
                        "sink %s is down (%s); events wait%s and are retried",
                        self.name,
                        exc,
                        f" in the spool {self.spool_dir}" if self.spool_dir else " in memory",
                    )
                else:
                    _log.debug("sink %s: still down (%s)", self.name, exc)
                with self._lock:
                    self._inflight_seq = None
                self._retry_now.wait(self._backoff_s(failures_in_row, exc.retry_after_s))
                continue
            except _PermanentError as exc:
                with self._lock:
                    self._record_failure(str(exc), discarded=True)
                    self._commit_locked(seq)
                _log.error(
                    "sink %s: event %s not delivered and given up (retrying cannot help): %s",
                    self.name,
                    _event_id(line),
                    exc,
                    exc_info=exc.__cause__,
                )
            except Exception as exc:
                # A bug in a sink, or in a library under it: keep the event and retry it.
                failures_in_row += 1
                self._record_failure(f"{type(exc).__name__}: {exc}")
                _log.exception("sink %s: unexpected error delivering event %s", self.name, _event_id(line))
                with self._lock:
                    self._inflight_seq = None
                self._retry_now.wait(self._backoff_s(failures_in_row, None))
                continue
            else:
                with self._lock:
                    self._sent += 1
                    self._commit_locked(seq)
                if self._outage:
                    self._outage = False
                    _log.info(
                        "sink %s is back after %d failed attempts; %d events to catch up on",
                        self.name,
                        failures_in_row,
                        max(0, self.stats().backlog - 1),
                    )
                failures_in_row = 0
            self._progress.set()

    def _spool_loop(self) -> None:
        while True:
            spool = self._spool
            self._wake_spooler.wait(spool.sync_due_in() if spool is not None else None)
            self._wake_spooler.clear()
            stopping = self._stop.is_set()
            with self._lock:
                if self._finished:
                    return
                excess = len(self._inbox) - self._queue_size
                if spool is None:
                    if excess > 0:
                        self._drop_from_memory_locked(excess)
                else:
                    self._spill_locked(len(self._inbox) if self._outage else excess)
                    try:
                        spool.sync()
                    except OSError as exc:
                        self._record_failure(f"spool fsync failed: {exc}")
                        self._warn_rate_limited("fsync", "sink %s: spool fsync failed: %s", self.name, exc)
            if stopping:
                return

    def _drop_from_memory_locked(self, count: int) -> None:
        keep_first = bool(self._inbox) and self._inflight_seq == self._head_seq
        first = self._inbox.popleft() if keep_first else None
        count = min(count, len(self._inbox))
        for _ in range(count):
            self._inbox.popleft()
        if first is not None:
            self._inbox.appendleft(first)
        else:
            self._head_seq += count
        self._dropped += count
        self._warn_rate_limited(
            "dropped",
            "sink %s: memory queue full (%d events, no spool): dropped the oldest events, %d so far",
            self.name,
            self._queue_size,
            self._dropped,
        )

    def _spill_locked(self, count: int) -> None:
        spool = self._spool
        if spool is None or count <= 0:
            return
        moved = 0
        try:
            while moved < count and self._inbox:
                spool.append(self._inbox[0])
                self._inbox.popleft()
                moved += 1
        except OSError as exc:
            self._record_failure(f"spool write failed: {exc}")
            self._warn_rate_limited(
                "spool-write",
                "sink %s: cannot write to the spool %s (%s); %d events stay in memory meanwhile",
                self.name,
                spool.directory,
                exc,
                len(self._inbox),
            )
        dropped = spool.enforce_limit() if moved else 0
        if dropped:
            self._head_seq += dropped
            self._dropped += dropped
            self._warn_rate_limited(
                "dropped",
                "sink %s: spool %s is full (limit %d bytes): dropped the oldest events, %d so far",
                self.name,
                spool.directory,
                spool.max_bytes,
                self._dropped,
            )


def _event_id(line: str) -> str:
    try:
        return repr(json.loads(line).get("id"))
    except (ValueError, AttributeError):
        return "?"


# --- local sinks -----------------------------------------------------------------------------


class CallbackSink(Sink):
    """Calls a Python function with each event (a fresh dict), on the sink's own thread.

    A callback that raises is counted in ``failures`` and ``discarded`` and logged with its
    traceback; the exception does not reach the pipeline, and the next event is delivered.

    Args:
        callback: called as ``callback(event)``; its return value is ignored.
        **options: the :class:`Sink` options.
    """

    kind = "callback"

    def __init__(self, callback: Callable[[dict[str, Any]], object], **options: Any) -> None:
        if not callable(callback):
            raise SinkSpecError(f"a callback sink needs a callable, got {type(callback).__name__}")
        label = getattr(callback, "__qualname__", None) or type(callback).__name__
        super().__init__(f"callback:{label}", **options)
        self._callback = callback
        self._begin()

    def _deliver(self, seq: int, line: str) -> None:
        try:
            self._callback(json.loads(line))
        except Exception as exc:
            raise _PermanentError(f"the callback raised {type(exc).__name__}: {exc}") from exc


class StdoutSink(Sink):
    """Writes each event as one JSON line to ``sys.stdout`` (looked up at each write).

    Args:
        **options: the :class:`Sink` options.
    """

    kind = "stdout"

    def __init__(self, **options: Any) -> None:
        super().__init__("stdout", **options)
        self._begin()

    def _deliver(self, seq: int, line: str) -> None:
        try:
            sys.stdout.write(line + "\n")
            sys.stdout.flush()
        except OSError as exc:
            raise _RetryableError(f"cannot write to stdout: {exc}") from exc


class JsonlSink(Sink):
    """Appends each event as one JSON line to a file, flushed to the OS after each event.

    Args:
        path: the file; created if missing, appended to otherwise. Its directory must exist.
        **options: the :class:`Sink` options.

    Raises:
        SinkSpecError: the file's directory does not exist.
        SinkError: the file cannot be opened.
    """

    kind = "jsonl"

    def __init__(self, path: str | os.PathLike[str], **options: Any) -> None:
        self.path = Path(path).expanduser()
        if not self.path.parent.is_dir():
            raise SinkSpecError(f"JSON lines sink {self.path}: directory {self.path.parent} does not exist")
        super().__init__(f"jsonl:{self.path}", **options)
        try:
            self._file: IO[str] = self.path.open("a", encoding="utf-8")
        except OSError as exc:
            raise SinkError(f"JSON lines sink {self.path} cannot be opened: {exc}") from exc
        try:
            self._begin()
        except BaseException:
            self._file.close()
            raise

    def _deliver(self, seq: int, line: str) -> None:
        try:
            self._file.write(line + "\n")
            self._file.flush()
        except OSError as exc:
            raise _RetryableError(f"cannot write to {self.path}: {exc}") from exc

    def _shutdown(self, deadline: float) -> None:
        with contextlib.suppress(OSError):
            self._file.flush()
            os.fsync(self._file.fileno())
        self._file.close()


# --- MQTT ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _MqttTarget:
    host: str
    port: int
    topic: str
    tls: bool
    username: str | None
    password: str | None

    @property
    def name(self) -> str:
        scheme = "mqtts" if self.tls else "mqtt"
        user = f"{self.username}@" if self.username else ""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{user}{host}:{self.port}/{self.topic}"


def _parse_mqtt(url: str) -> _MqttTarget:
    form = "mqtt://[user:password@]host[:port]/topic"
    parts = urllib.parse.urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("mqtt", "mqtts"):
        raise SinkSpecError(f"an MQTT sink needs {form} (or mqtts://...), got {url!r}")
    try:
        port = parts.port
    except ValueError:
        raise SinkSpecError(f"MQTT sink {url!r}: the port is not a number in 1..65535") from None
    if not parts.hostname:
        raise SinkSpecError(f"MQTT sink {url!r} has no host; expected {form}")
    topic = urllib.parse.unquote(parts.path.lstrip("/"))
    if not topic:
        raise SinkSpecError(f"MQTT sink {url!r} has no topic; expected {form}")
    if "+" in topic or "#" in url:
        raise SinkSpecError(f"MQTT sink {url!r}: a topic to publish to cannot contain the wildcards + or #")
    if parts.query or parts.fragment:
        raise SinkSpecError(
            f"MQTT sink {url!r}: the URL takes no ?query or #fragment; pass options to open_sink() instead"
        )
    return _MqttTarget(
        host=parts.hostname,
        port=port or (8883 if scheme == "mqtts" else 1883),
        topic=topic,
        tls=scheme == "mqtts",
        username=urllib.parse.unquote(parts.username) if parts.username else None,
        password=urllib.parse.unquote(parts.password) if parts.password else None,
    )


def _import_paho() -> Any:
    try:
        import paho.mqtt.client as mqtt
    except ImportError as exc:
        raise DependencyMissingError("paho.mqtt", "The MQTT sink", _MQTT_INSTALL) from exc
    if not hasattr(mqtt, "CallbackAPIVersion"):
        raise DependencyMissingError(
            "paho.mqtt >= 2.0", "The MQTT sink", f"{_MQTT_INSTALL} (paho-mqtt >= 2.0)"
        )
    return mqtt


class MqttSink(Sink):
    """Publishes each event as JSON to an MQTT topic at QoS 1, one at a time, in order.

    The paho client reconnects by itself. On every connect it publishes a retained ``"online"``
    to the status topic; its last will sets a retained ``"offline"`` there if it dies without
    saying goodbye, and :meth:`close` publishes ``"offline"`` itself.

    Args:
        url: ``mqtt://[user:password@]host[:port]/topic`` (port 1883), or ``mqtts://`` (TLS with
            the system's CAs, port 8883).
        client_id: the MQTT client id; default ``edgemm-<hostname>-<pid>``.
        status_topic: the retained online/offline topic; default ``<topic>/status``.
        keepalive_s: the MQTT keepalive: how soon the broker notices a dead client (x1.5).
        publish_timeout_s: how long to wait for a PUBACK before counting a failure (the message
            stays with the client, which resends it after a reconnect).
        connect_timeout_s: how long the first event waits for the first connection before the
            sink counts as down.
        reconnect_min_s: the client's first reconnect delay; it doubles up to reconnect_max_s.
        reconnect_max_s: the client's longest reconnect delay.
        **options: the :class:`Sink` options.

    Raises:
        SinkSpecError: the URL is not valid.
        DependencyMissingError: paho-mqtt (>= 2.0) is not installed.
    """

    kind = "mqtt"
    spools_by_default = True

    def __init__(
        self,
        url: str,
        *,
        client_id: str | None = None,
        status_topic: str | None = None,
        keepalive_s: int = 30,
        publish_timeout_s: float = 10.0,
        connect_timeout_s: float = 2.0,
        reconnect_min_s: float = 1.0,
        reconnect_max_s: float = 30.0,
        **options: Any,
    ) -> None:
        self._target = _parse_mqtt(url)
        for label, value in (
            ("keepalive_s", keepalive_s),
            ("publish_timeout_s", publish_timeout_s),
            ("connect_timeout_s", connect_timeout_s),
            ("reconnect_min_s", reconnect_min_s),
            ("reconnect_max_s", reconnect_max_s),
        ):
            _positive(label, value)
        self._mqtt = _import_paho()
        super().__init__(self._target.name, **options)
        self.topic = self._target.topic
        self.status_topic = status_topic or f"{self.topic}/status"
        self._client_id = client_id or f"edgemm-{os.uname().nodename}-{os.getpid()}"
        self._keepalive_s = int(keepalive_s)
        self._publish_timeout_s = float(publish_timeout_s)
        self._connect_timeout_s = float(connect_timeout_s)
        self._reconnect = (float(reconnect_min_s), max(float(reconnect_min_s), float(reconnect_max_s)))
        self._cond = threading.Condition()
        self._connected = False
        self._ever_connected = False
        self._refused: str | None = None
        self._pending_seq: int | None = None
        self._pending_mid: int | None = None
        self._pending_result: str | None = None  # "ok", or a failure reason code
        self._acked: dict[int, str] = {}
        self._client: Any = None
        self._begin()

    def _start(self) -> None:
        mqtt = self._mqtt
        client = mqtt.Client(
            callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
            client_id=self._client_id,
            clean_session=True,
            protocol=mqtt.MQTTv311,
        )
        if self._target.username:
            client.username_pw_set(self._target.username, self._target.password)
        if self._target.tls:
            client.tls_set()
        client.will_set(self.status_topic, "offline", qos=1, retain=True)
        client.reconnect_delay_set(*self._reconnect)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.connect_async(self._target.host, self._target.port, self._keepalive_s)
        client.loop_start()
        self._client = client

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        if reason_code.is_failure:
            with self._cond:
                self._refused = str(reason_code)
            self._warn_rate_limited(
                "refused", "sink %s: the broker refused the connection: %s", self.name, reason_code
            )
            return
        client.publish(self.status_topic, "online", qos=1, retain=True)
        with self._cond:
            self._connected = self._ever_connected = True
            self._refused = None
            self._cond.notify_all()
        self._retry_now.set()

    def _on_disconnect(
        self, client: Any, userdata: Any, flags: Any, reason_code: Any, properties: Any
    ) -> None:
        with self._cond:
            was_connected, self._connected = self._connected, False
            self._cond.notify_all()
        if was_connected and not self._stop.is_set():
            _log.info("sink %s: connection lost (%s); reconnecting", self.name, reason_code)

    def _on_publish(self, client: Any, userdata: Any, mid: int, reason_code: Any, properties: Any) -> None:
        result = str(reason_code) if reason_code.is_failure else "ok"
        with self._cond:
            if mid == self._pending_mid:
                self._pending_result = result
            else:
                self._acked[mid] = result  # the PUBACK can beat publish() returning the mid
            self._cond.notify_all()

    def _not_connected(self) -> str:
        where = f"{self._target.host}:{self._target.port}"
        return f"not connected to the MQTT broker at {where}" + (
            f" (refused: {self._refused})" if self._refused else ""
        )

    def _deliver(self, seq: int, line: str) -> None:
        with self._cond:
            if not self._connected and not self._ever_connected:
                self._cond.wait_for(
                    lambda: self._connected or self._stop.is_set(), timeout=self._connect_timeout_s
                )
            if not self._connected:
                raise _RetryableError(self._not_connected())
            publish = self._pending_seq != seq
        if publish:
            # A message published before a disconnect stays with paho, which resends it (DUP) after
            # reconnecting; publishing it again would only add a duplicate.
            info = self._client.publish(self.topic, line, qos=1)
            if info.rc not in (self._mqtt.MQTT_ERR_SUCCESS, self._mqtt.MQTT_ERR_NO_CONN):
                raise _RetryableError(f"publish failed: {self._mqtt.error_string(info.rc)}")
            with self._cond:
                self._pending_seq, self._pending_mid = seq, info.mid
                self._pending_result = self._acked.pop(info.mid, None)
                self._acked.clear()
        with self._cond:
            self._cond.wait_for(
                lambda: self._pending_result is not None or not self._connected or self._stop.is_set(),
                timeout=self._publish_timeout_s,
            )
            result = self._pending_result
            if result is not None:
                self._pending_seq = self._pending_mid = self._pending_result = None
        if result == "ok":
            return
        if result is not None:
            raise _PermanentError(f"the broker refused the message: {result}")
        if not self._connected:
            raise _RetryableError(self._not_connected() + "; the message is resent after reconnecting")
        raise _RetryableError(f"no PUBACK within {self._publish_timeout_s:g} s")

    def _interrupt(self) -> None:
        with self._cond:
            self._cond.notify_all()

    def _shutdown(self, deadline: float) -> None:
        client = self._client
        if client is None:
            return
        if self._connected:
            info = client.publish(self.status_topic, "offline", qos=1, retain=True)
            with contextlib.suppress(ValueError, RuntimeError):
                info.wait_for_publish(timeout=min(1.0, max(0.2, deadline - time.monotonic())))
        client.disconnect()
        client.loop_stop()


# --- webhooks --------------------------------------------------------------------------------


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    # urllib turns a redirected POST into a GET without the body: fail loudly instead.
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def _retry_after_s(headers: Any) -> float | None:
    value = headers.get("Retry-After") if headers is not None else None
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None  # an HTTP date: the backoff decides


class WebhookSink(Sink):
    """POSTs each event as JSON to a URL, one at a time, in order.

    2xx is success. Connection errors, timeouts, 5xx, 408, 425 and 429 are retried with backoff
    (honouring ``Retry-After``). Any other status (other 4xx, and 3xx: redirects are not followed,
    as a redirected POST would lose its body) gives the event up: it is counted in ``failures`` and
    ``discarded`` and logged at ERROR. Each request carries ``Idempotency-Key: <event id>``.

    Args:
        url: ``http://...`` or ``https://...``.
        timeout_s: the timeout of one request, in seconds.
        headers: extra request headers (e.g. an ``Authorization``).
        ssl_context: for https, a context to verify the server with; default: the system's CAs.
        **options: the :class:`Sink` options.

    Raises:
        SinkSpecError: the URL is not valid.
    """

    kind = "webhook"
    spools_by_default = True

    def __init__(
        self,
        url: str,
        *,
        timeout_s: float = 5.0,
        headers: Mapping[str, str] | None = None,
        ssl_context: Any = None,
        **options: Any,
    ) -> None:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
            raise SinkSpecError(f"a webhook sink needs an http(s)://host[:port]/path URL, got {url!r}")
        try:
            parts.port  # noqa: B018 - validates it
        except ValueError:
            raise SinkSpecError(f"webhook {url!r}: the port is not a number in 1..65535") from None
        _positive("timeout_s", timeout_s)
        netloc = parts.netloc.rpartition("@")[2]
        super().__init__(
            urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, parts.query, "")), **options
        )
        self.url = url
        self._timeout_s = float(timeout_s)
        self._headers = {
            "Content-Type": "application/json",
            "User-Agent": f"edgemm/{__version__}",
            **(headers or {}),
        }
        handlers: list[Any] = [_NoRedirect()]
        if ssl_context is not None:
            handlers.append(urllib.request.HTTPSHandler(context=ssl_context))
        self._opener = urllib.request.build_opener(*handlers)
        self._begin()

    def _deliver(self, seq: int, line: str) -> None:
        request = urllib.request.Request(
            self.url,
            data=line.encode("utf-8"),
            method="POST",
            headers={**self._headers, "Idempotency-Key": str(json.loads(line)["id"])},
        )
        try:
            with self._opener.open(request, timeout=self._timeout_s) as response:
                response.read(1 << 16)
        except urllib.error.HTTPError as exc:
            status, reason = exc.code, exc.reason
            body = b""
            with contextlib.suppress(Exception):
                body = exc.read(200)
            exc.close()
            if status >= 500 or status in _RETRYABLE_HTTP:
                raise _RetryableError(f"HTTP {status} {reason}", _retry_after_s(exc.headers)) from None
            raise _PermanentError(
                f"HTTP {status} {reason} {body.decode('utf-8', 'replace')!r}".rstrip()
            ) from None
        except (OSError, http.client.HTTPException) as exc:
            detail: object = exc.reason if isinstance(exc, urllib.error.URLError) else exc
            raise _RetryableError(f"{type(exc).__name__}: {detail}") from None


# --- open_sink -------------------------------------------------------------------------------


def open_sink(
    spec: str | os.PathLike[str] | Callable[[dict[str, Any]], object] | Sink, **options: Any
) -> Sink:
    """Opens a sink from a spec.

    Args:
        spec: ``"-"`` or ``"stdout"``; ``"jsonl:PATH"``, a path ending in ``.jsonl`` or a
            ``pathlib.Path`` (JSON lines file); ``"mqtt://[user:password@]host[:port]/topic"``
            or ``"mqtts://..."``; ``"http://..."`` or ``"https://..."`` (webhook); a callable
            (called with each event dict); or a :class:`Sink`, returned as it is.
        **options: the :class:`Sink` options (``queue_size``, ``spool``, ``spool_dir``,
            ``spool_max_bytes``, ``spool_fsync_interval_s``, ``retry_initial_s``, ``retry_max_s``)
            and the chosen kind's own (see :class:`MqttSink`, :class:`WebhookSink`).

    Returns:
        The open sink; close it (or use it as a context manager) to flush it.

    Raises:
        SinkSpecError: the spec is none of the accepted forms, or an option is not valid.
        DependencyMissingError: an MQTT spec without paho-mqtt installed.
    """
    if isinstance(spec, Sink):
        if options:
            raise SinkSpecError(
                f"options {sorted(options)} cannot be applied to the already open sink {spec.name}"
            )
        return spec
    if isinstance(spec, os.PathLike):
        return JsonlSink(spec, **options)
    if callable(spec):
        return CallbackSink(spec, **options)
    if not isinstance(spec, str):
        raise SinkSpecError(
            f"a sink spec must be a string, a path or a callable, got {type(spec).__name__}; accepted: {ACCEPTED_SPECS}"
        )
    text = spec.strip()
    if text in ("-", "stdout"):
        return StdoutSink(**options)
    if text.startswith("jsonl:"):
        if not text[len("jsonl:") :]:
            raise SinkSpecError(f"sink spec {spec!r} names no file; expected jsonl:PATH")
        return JsonlSink(text[len("jsonl:") :], **options)
    scheme = urllib.parse.urlsplit(text).scheme.lower() if "://" in text else ""
    if scheme in ("mqtt", "mqtts"):
        return MqttSink(text, **options)
    if scheme in ("http", "https"):
        return WebhookSink(text, **options)
    if not scheme and text.endswith(".jsonl"):
        return JsonlSink(text, **options)
    raise SinkSpecError(f"unknown sink spec {spec!r}; accepted: {ACCEPTED_SPECS}")
