"""Event sinks against real receivers on 127.0.0.1: a mosquitto broker, an HTTP server, files, stdout.

The MQTT tests need the Debian package ``mosquitto`` and paho-mqtt (the ``mqtt`` extra); without
them they skip, except under CI, where they fail. Every wait is bounded.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import re
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from edgemm.runtime.errors import DependencyMissingError, EdgemmError
from edgemm.runtime.sinks import (
    CallbackSink,
    InvalidEventError,
    JsonlSink,
    MqttSink,
    Sink,
    SinkClosedError,
    SinkSpecError,
    SpoolLockedError,
    StdoutSink,
    WebhookSink,
    open_sink,
)
from tests.servers.mosquitto import Mosquitto, Subscriber, free_port, mosquitto_binary, retained, wait_until
from tests.servers.webhook import WebhookReceiver

FAST_RETRY = {"retry_initial_s": 0.02, "retry_max_s": 0.1}
FAST_MQTT = {"reconnect_min_s": 0.05, "reconnect_max_s": 0.2, **FAST_RETRY}


def event(i: int, **extra: Any) -> dict[str, Any]:
    return {"id": f"e{i:02d}", "type": "caption", "time_s": float(i), "text": f"frame {i}", **extra}


def ids(count: int, start: int = 0) -> list[str]:
    return [f"e{i:02d}" for i in range(start, start + count)]


def first_occurrences(values: list[str]) -> list[str]:
    seen: set[str] = set()
    return [v for v in values if not (v in seen or seen.add(v))]


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    # urllib would send requests for 127.0.0.1 through a proxy set in the environment.
    for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def sinks() -> Iterator[list[Sink]]:
    """Sinks a test opens; closed at teardown even when the test fails."""
    opened: list[Sink] = []
    yield opened
    for sink in opened:
        sink.close(timeout_s=0.5)


# --- specs and events ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "kind"),
    [
        ("-", StdoutSink),
        ("stdout", StdoutSink),
        ("jsonl:{tmp}/a.log", JsonlSink),
        ("{tmp}/b.jsonl", JsonlSink),
        ("http://127.0.0.1:9/hook", WebhookSink),
    ],
)
def test_open_sink_picks_the_sink_from_the_spec(spec: str, kind: type[Sink], tmp_path: Path) -> None:
    sink = open_sink(spec.format(tmp=tmp_path), spool=False)
    try:
        assert type(sink) is kind
    finally:
        sink.close(timeout_s=0)


def test_open_sink_takes_paths_callables_and_sinks(tmp_path: Path) -> None:
    with open_sink(tmp_path / "events.log") as by_path:
        assert isinstance(by_path, JsonlSink)
        assert open_sink(by_path) is by_path
    with open_sink(print) as by_callable:
        assert isinstance(by_callable, CallbackSink)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("", "unknown sink spec"),
        ("ftp://127.0.0.1/events", "unknown sink spec"),
        ("events.txt", "unknown sink spec"),
        (42, "must be a string, a path or a callable"),
        ("jsonl:", "names no file"),
        ("{tmp}/no-such-dir/events.jsonl", "does not exist"),
        ("mqtt://127.0.0.1:1883", "has no topic"),
        ("mqtt:///events", "has no host"),
        ("mqtt://127.0.0.1:1883/cam/#", "wildcards"),
        ("mqtt://127.0.0.1:99999/cam", "port"),
        ("mqtt://127.0.0.1/cam?qos=2", "no ?query"),
        ("http://", "http(s)://host"),
        ("https://127.0.0.1:port/hook", "port"),
    ],
)
def test_open_sink_rejects_bad_specs(spec: Any, message: str, tmp_path: Path) -> None:
    if isinstance(spec, str):
        spec = spec.format(tmp=tmp_path)
    with pytest.raises(SinkSpecError, match=re.escape(message)) as info:
        open_sink(spec, spool=False)
    assert isinstance(info.value, EdgemmError)
    assert isinstance(info.value, ValueError)
    if "unknown" in message or "must be" in message:  # lists every accepted form
        for form in ('"-"', "jsonl:PATH", ".jsonl", "mqtt://", "https://", "callable"):
            assert form in str(info.value)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"queue_size": 0}, "queue_size must be a positive int, got 0"),
        ({"spool_max_bytes": -1}, "spool_max_bytes must be a positive int"),
        ({"retry_initial_s": 0}, "retry_initial_s must be a positive number"),
        ({"spool_fsync_interval_s": -1.0}, "spool_fsync_interval_s must be a non-negative number"),
    ],
)
def test_open_sink_rejects_bad_options(options: dict[str, Any], message: str) -> None:
    with pytest.raises(SinkSpecError, match=message):
        open_sink("-", **options)


def test_network_sinks_spool_by_default_under_edgemm_spool_dir(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("EDGEMM_SPOOL_DIR", str(tmp_path / "state"))
    sink = open_sink("http://user:s3cret@127.0.0.1:9/hook")
    try:
        assert sink.spool_dir is not None and sink.spool_dir.parent == tmp_path / "state"
        assert sink.spool_dir.name.startswith("http-")
        assert (sink.spool_dir / "lock").exists()
        assert "s3cret" not in sink.name and "s3cret" not in str(sink.spool_dir)
    finally:
        sink.close(timeout_s=0)
    with open_sink(tmp_path / "events.jsonl") as local:
        assert local.spool_dir is None  # local sinks keep events in memory unless given a spool_dir


def test_send_rejects_what_is_not_an_event(sinks: list[Sink]) -> None:
    sink = open_sink(lambda event: None)
    sinks.append(sink)
    cases: list[tuple[Any, str]] = [
        (["e0"], "must be a dict"),
        ({"type": "caption"}, "non-empty string 'id'"),
        ({"id": ""}, "non-empty string 'id'"),
        ({"id": 7}, "non-empty string 'id'"),
        ({"id": "e0", "score": float("nan")}, "not JSON-serialisable"),
        ({"id": "e0", "frame": object()}, "not JSON-serialisable"),
    ]
    for bad, message in cases:
        with pytest.raises(InvalidEventError, match=message):
            sink.send(bad)
    sink.close()
    with pytest.raises(SinkClosedError, match="closed"):
        sink.send(event(0))


def test_importing_sinks_does_not_import_paho() -> None:
    code = "import sys, edgemm.runtime.sinks; print(any(m.split('.')[0] == 'paho' for m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "False"


def test_mqtt_without_paho_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # Simulates paho-mqtt not being installed: None in sys.modules makes its import fail.
    for name in ("paho", "paho.mqtt", "paho.mqtt.client"):
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(DependencyMissingError, match=r"pip install 'edgemm\[mqtt\]'") as info:
        open_sink("mqtt://127.0.0.1:1883/cam/events", spool_dir=tmp_path / "spool")
    assert info.value.module == "paho.mqtt"
    assert not (tmp_path / "spool").exists()  # failed before touching anything


# --- local sinks -----------------------------------------------------------------------------


def test_jsonl_file_sink_appends_one_line_per_event(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_text('{"id":"earlier"}\n')
    events = [event(i, text="café ☕") for i in range(5)]
    with open_sink(str(path)) as sink:
        for e in events:
            sink.send(e)
    assert sink.stats().sent == 5
    assert [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()] == [
        {"id": "earlier"},
        *events,
    ]

    other = tmp_path / "events.log"
    with open_sink(f"jsonl:{other}") as sink:
        sink.send(events[0])
    assert json.loads(other.read_text()) == events[0]


def test_stdout_sink_writes_json_lines(capsys: pytest.CaptureFixture[str]) -> None:
    events = [event(i) for i in range(3)]
    with open_sink("-") as sink:
        for e in events:
            sink.send(e)
    assert [json.loads(line) for line in capsys.readouterr().out.splitlines()] == events


def test_callback_sink_counts_and_logs_a_raising_callback(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger="edgemm.sinks")
    got: list[dict[str, Any]] = []

    def notify(e: dict[str, Any]) -> None:
        if e["id"] == "e02":
            raise RuntimeError("bad frame")
        got.append(e)

    sink = open_sink(notify)
    for i in range(5):
        sink.send(event(i))  # never raises: the failure stays in the sink
    sink.close(timeout_s=5)
    assert [e["id"] for e in got] == ["e00", "e01", "e03", "e04"]
    assert got[0] == event(0)
    stats = sink.stats()
    assert (stats.sent, stats.failures, stats.discarded, stats.backlog) == (4, 1, 1, 0)
    assert "RuntimeError: bad frame" in (stats.last_error or "")
    (record,) = [r for r in caplog.records if r.name == "edgemm.sinks" and r.levelno == logging.ERROR]
    assert "'e02'" in record.getMessage()
    assert record.exc_info is not None  # the callback's traceback is in the log


def _blocked_callback() -> tuple[Any, threading.Event, threading.Event, list[str]]:
    entered, gate, got = threading.Event(), threading.Event(), []

    def slow(e: dict[str, Any]) -> None:
        entered.set()
        gate.wait(10)
        got.append(e["id"])

    return slow, entered, gate, got


def test_slow_consumer_overflows_to_the_spool_and_stays_in_order(tmp_path: Path) -> None:
    slow, entered, gate, got = _blocked_callback()
    sink = open_sink(slow, queue_size=5, spool_dir=tmp_path / "spool")
    try:
        sink.send(event(0))
        assert entered.wait(5)
        started = time.perf_counter()
        for i in range(1, 50):
            sink.send(event(i))
        assert time.perf_counter() - started < 1.0  # 49 sends, none waits for the blocked consumer
        assert wait_until(lambda: sink.stats().queued <= 5, 5)
        assert sink.stats().spooled >= 44
        assert list((tmp_path / "spool").glob("*.jsonl"))
        gate.set()
    finally:
        gate.set()
        sink.close(timeout_s=5)
    assert got == ids(50)
    assert sink.stats().dropped_oldest == 0
    assert not list((tmp_path / "spool").glob("*.jsonl"))  # delivered segments are deleted


def test_without_a_spool_a_full_memory_queue_drops_the_oldest(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="edgemm.sinks")
    slow, entered, gate, got = _blocked_callback()
    sink = open_sink(slow, queue_size=5)
    try:
        sink.send(event(0))
        assert entered.wait(5)
        for i in range(1, 20):
            sink.send(event(i))
        assert wait_until(lambda: sink.stats().dropped_oldest == 15, 5)
    finally:
        gate.set()
        sink.close(timeout_s=5)
    assert got == ["e00", *ids(4, start=16)]  # the one being delivered, then the newest
    assert (sink.stats().sent, sink.stats().dropped_oldest) == (5, 15)
    assert any("dropped the oldest" in r.getMessage() for r in caplog.records)


# --- webhooks and the spool ------------------------------------------------------------------


def test_webhook_retries_5xx_and_delivers_each_event_once_in_order(sinks: list[Sink]) -> None:
    failures = iter([500, 502, 503, 429, 500])
    receiver = WebhookReceiver(respond=lambda e: next(failures, 200))
    try:
        sink = open_sink(receiver.url, spool=False, **FAST_RETRY)
        sinks.append(sink)
        for i in range(10):
            sink.send(event(i))
        assert wait_until(lambda: sink.stats().backlog == 0, 10)
        assert receiver.delivered_ids() == ids(10)
        assert receiver.delivered == [event(i) for i in range(10)]
        # Only the event that failed was sent again, and only after each failure.
        expected = [("e00", status) for status in (500, 502, 503, 429, 500, 200)] + [
            (i, 200) for i in ids(9, start=1)
        ]
        assert receiver.attempts == expected
        assert [h["Idempotency-Key"] for h in receiver.headers][-10:] == ids(10)
        assert receiver.headers[0]["Content-Type"] == "application/json"
        stats = sink.stats()
        assert (stats.sent, stats.failures, stats.discarded) == (10, 5, 0)
    finally:
        receiver.close()


def test_webhook_gives_up_an_event_on_4xx_without_retrying(
    sinks: list[Sink], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="edgemm.sinks")
    receiver = WebhookReceiver(respond=lambda e: 400 if e["type"] == "bad" else 200)
    try:
        sink = open_sink(receiver.url, spool=False, **FAST_RETRY)
        sinks.append(sink)
        for e in (event(0), event(1, type="bad"), event(2)):
            sink.send(e)
        assert wait_until(lambda: sink.stats().backlog == 0, 10)
        assert receiver.attempts == [("e00", 200), ("e01", 400), ("e02", 200)]
        stats = sink.stats()
        assert (stats.sent, stats.failures, stats.discarded) == (2, 1, 1)
        assert "HTTP 400" in (stats.last_error or "")
        assert any("'e01'" in r.getMessage() and "HTTP 400" in r.getMessage() for r in caplog.records)
    finally:
        receiver.close()


def _line_bytes(e: dict[str, Any]) -> int:
    return len(json.dumps(e, separators=(",", ":")).encode()) + 1


def test_full_spool_drops_the_oldest_and_delivers_the_newest(
    tmp_path: Path, sinks: list[Sink], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="edgemm.sinks")
    port = free_port()  # nothing listens: the receiver is down
    events = [event(i, text="x" * 60) for i in range(40)]
    limit = 16 * _line_bytes(events[0])
    sink = open_sink(
        f"http://127.0.0.1:{port}/events",
        spool_dir=tmp_path / "spool",
        spool_max_bytes=limit,
        queue_size=4,
        **FAST_RETRY,
    )
    sinks.append(sink)
    for e in events:
        sink.send(e)
    assert wait_until(lambda: sink.stats().queued == 0 and sink.stats().dropped_oldest > 0, 10)
    dropped = sink.stats().dropped_oldest
    assert sink.stats().spooled == 40 - dropped
    assert sum(p.stat().st_size for p in (tmp_path / "spool").glob("*.jsonl")) <= limit
    assert any("spool" in r.getMessage() and "dropped the oldest" in r.getMessage() for r in caplog.records)

    receiver = WebhookReceiver(port=port)  # the receiver comes back
    try:
        assert wait_until(lambda: sink.stats().backlog == 0, 10)
        delivered = receiver.delivered_ids()
    finally:
        receiver.close()
    assert len(delivered) >= 10
    assert delivered == ids(40)[-len(delivered) :]  # the newest, in order
    assert len(delivered) + dropped == 40
    assert sink.stats().dropped_oldest == dropped


def test_spooled_events_survive_a_restart_and_go_first(
    tmp_path: Path, sinks: list[Sink], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="edgemm.sinks")
    port, spool = free_port(), tmp_path / "spool"
    url = f"http://127.0.0.1:{port}/events"
    first = open_sink(url, spool_dir=spool, **FAST_RETRY)
    sinks.append(first)
    for i in range(10):
        first.send(event(i))
    assert wait_until(lambda: first.stats().failures > 0 and first.stats().queued == 0, 10)
    with pytest.raises(SpoolLockedError, match="in use"):
        open_sink(url, spool_dir=spool)
    first.close(timeout_s=0.2)  # the receiver is still down
    assert (first.stats().sent, first.stats().spooled) == (0, 10)
    segments = sorted(spool.glob("*.jsonl"))
    assert [json.loads(line)["id"] for p in segments for line in p.read_text().splitlines()] == ids(10)
    # A write cut short by a power loss, at the end of the spool: skipped with a warning.
    (spool / f"{int(segments[-1].stem) + 1:012d}.jsonl").write_bytes(b'{"id":"torn","ty')

    receiver = WebhookReceiver(port=port)
    try:
        second = open_sink(url, spool_dir=spool, **FAST_RETRY)
        sinks.append(second)
        for i in range(10, 15):
            second.send(event(i))
        assert wait_until(lambda: second.stats().backlog == 0, 10)
        assert receiver.delivered_ids() == ids(15)  # the spooled ones first, each once
    finally:
        receiver.close()
    assert (second.stats().sent, second.stats().failures) == (15, 1)
    assert any("unreadable line" in r.getMessage() for r in caplog.records)
    second.close()
    assert not list(spool.glob("*.jsonl"))


# --- MQTT against a real mosquitto -----------------------------------------------------------


def _require_mqtt() -> None:
    missing = []
    if mosquitto_binary() is None:
        missing.append("the mosquitto broker (apt-get install mosquitto)")
    if importlib.util.find_spec("paho") is None:
        missing.append("paho-mqtt (pip install 'edgemm[mqtt]')")
    if missing:
        message = "needs " + " and ".join(missing)
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    _require_mqtt()
    server = Mosquitto(tmp_path / "broker")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def persistent_broker(tmp_path: Path) -> Iterator[Mosquitto]:
    # Keeps the test subscriber's session across a restart, so that events the sink publishes
    # before the subscriber is back are queued for it rather than published to nobody.
    _require_mqtt()
    server = Mosquitto(tmp_path / "broker", persistence=True)
    server.start()
    yield server
    server.stop()


def test_mqtt_publishes_in_order_with_a_retained_status(
    broker: Mosquitto, tmp_path: Path, sinks: list[Sink]
) -> None:
    subscriber = Subscriber(broker.port, ["cam/events", "cam/events/status"])
    try:
        url = broker.url("cam/events").replace("mqtt://", "mqtt://camera:s3cret@")
        sink = open_sink(url, spool_dir=tmp_path / "spool", **FAST_MQTT)
        sinks.append(sink)
        assert isinstance(sink, MqttSink) and sink.status_topic == "cam/events/status"
        assert sink.name == f"mqtt://camera@127.0.0.1:{broker.port}/cam/events"  # no password
        events = [event(i) for i in range(20)]
        for e in events:
            sink.send(e)
        assert wait_until(lambda: len(subscriber.payloads("cam/events")) >= 20, 10)
        assert [json.loads(p) for p in subscriber.payloads("cam/events")] == events
        assert retained(broker.port, "cam/events/status") == "online"
        sink.close(timeout_s=5)
        stats = sink.stats()
        assert (stats.sent, stats.backlog, stats.failures) == (20, 0, 0)
        assert wait_until(lambda: subscriber.payloads("cam/events/status")[-1:] == ["offline"], 5)
        assert retained(broker.port, "cam/events/status") == "offline"
    finally:
        subscriber.close()


def test_mqtt_last_will_marks_a_killed_client_offline(broker: Mosquitto) -> None:
    subscriber = Subscriber(broker.port, ["cam/events", "cam/events/status"])
    code = textwrap.dedent(
        """
        import sys, time
        from edgemm.runtime.sinks import open_sink
        sink = open_sink(sys.argv[1], spool=False)
        sink.send({"id": "k-1", "type": "caption", "time_s": 0.0})
        time.sleep(60)
        """
    )
    process = subprocess.Popen([sys.executable, "-c", code, broker.url("cam/events")])
    try:
        assert wait_until(lambda: len(subscriber.payloads("cam/events")) == 1, 15)
        assert retained(broker.port, "cam/events/status") == "online"
        process.kill()  # no DISCONNECT: the broker publishes the will
        process.wait(10)
        assert wait_until(lambda: subscriber.payloads("cam/events/status")[-1:] == ["offline"], 10)
        assert retained(broker.port, "cam/events/status") == "offline"
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
        subscriber.close()


def test_mqtt_broker_restart_loses_no_event(
    persistent_broker: Mosquitto, tmp_path: Path, sinks: list[Sink]
) -> None:
    broker = persistent_broker
    subscriber = Subscriber(broker.port, ["cam/events"], client_id="edgemm-test-subscriber", persistent=True)
    try:
        sink = open_sink(
            broker.url("cam/events"), spool_dir=tmp_path / "spool", publish_timeout_s=2, **FAST_MQTT
        )
        sinks.append(sink)
        for i in range(100):
            sink.send(event(i))
        assert wait_until(lambda: len(_ids(subscriber)) >= 20, 10)
        broker.stop()  # most likely while events are still being published

        slowest_s = 0.0
        for i in range(100, 120):
            started = time.perf_counter()
            sink.send(event(i))
            slowest_s = max(slowest_s, time.perf_counter() - started)
            time.sleep(0.005)
        assert slowest_s < 0.1  # send() only queues, even with the broker gone
        # During the outage every event waits in the spool on disk.
        assert wait_until(lambda: sink.stats().queued == 0 and sink.stats().spooled >= 20, 10)
        assert sink.stats().failures > 0

        broker.start()
        assert wait_until(lambda: sink.stats().backlog == 0, 15)
        assert wait_until(lambda: set(ids(120)) <= set(_ids(subscriber)), 10)
        assert first_occurrences(_ids(subscriber)) == ids(120)  # none lost, in order of first arrival
        # QoS 1 is at least once: the one event in flight when the broker went away may be
        # published twice. (The broker's own redeliveries to the subscriber carry the DUP flag.)
        fresh = _ids(subscriber, redelivered=False)
        assert len(fresh) - len(set(fresh)) <= 1, fresh
        assert retained(broker.port, "cam/events/status") == "online"
    finally:
        subscriber.close()


def _ids(subscriber: Subscriber, *, redelivered: bool = True) -> list[str]:
    return [json.loads(p)["id"] for p in subscriber.payloads("cam/events", redelivered=redelivered)]
