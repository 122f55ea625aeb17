"""A real mosquitto broker on 127.0.0.1 for tests, and a paho subscriber that records what it gets.

The broker runs from a temporary config (one listener on 127.0.0.1, anonymous access); it can be
stopped and started again on the same port. Needs the Debian package ``mosquitto``.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["Mosquitto", "Subscriber", "free_port", "mosquitto_binary", "retained", "wait_until"]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(condition: Callable[[], bool], timeout_s: float, interval_s: float = 0.02) -> bool:
    """Polls ``condition`` until it holds or ``timeout_s`` passes; returns whether it held."""
    deadline = time.monotonic() + timeout_s
    while True:
        if condition():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval_s)


def mosquitto_binary() -> str | None:
    """The mosquitto executable (Debian installs it in /usr/sbin), or None."""
    return shutil.which("mosquitto") or shutil.which("mosquitto", path="/usr/sbin:/usr/local/sbin")


class Mosquitto:
    """A mosquitto process listening on 127.0.0.1:port.

    Args:
        workdir: where the config, the log and (with persistence) the database go.
        persistence: keep sessions and queued messages across a stop (SIGTERM) and start.
    """

    def __init__(self, workdir: Path, *, persistence: bool = False) -> None:
        binary = mosquitto_binary()
        if binary is None:
            raise FileNotFoundError("mosquitto is not installed (apt-get install mosquitto)")
        self.binary = binary
        self.workdir = workdir
        self.port = free_port()
        self.log_path = workdir / "mosquitto.log"
        self.config_path = workdir / "mosquitto.conf"
        lines = [
            f"listener {self.port} 127.0.0.1",
            "allow_anonymous true",
            # as root, mosquitto would switch to the 'mosquitto' user and lose access to workdir
            "user root",
            f"log_dest file {self.log_path}",
            "log_type all",
            f"persistence {'true' if persistence else 'false'}",
        ]
        if persistence:
            lines += [f"persistence_location {workdir}/", "autosave_interval 0"]
        workdir.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text("\n".join(lines) + "\n")
        self._process: subprocess.Popen[bytes] | None = None

    def url(self, topic: str) -> str:
        return f"mqtt://127.0.0.1:{self.port}/{topic}"

    def start(self, timeout_s: float = 5.0) -> None:
        """Starts the broker and waits until it accepts connections."""
        self._process = subprocess.Popen(
            [self.binary, "-c", str(self.config_path)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )

        def listening() -> bool:
            if self._process is not None and self._process.poll() is not None:
                return True
            with socket.socket() as sock:
                return sock.connect_ex(("127.0.0.1", self.port)) == 0

        ready = wait_until(listening, timeout_s, 0.02)
        if not ready or self._process.poll() is not None:
            stderr = (
                self._process.stderr.read().decode()
                if self._process.stderr and self._process.poll() is not None
                else ""
            )
            log = self.log_path.read_text() if self.log_path.exists() else ""
            self.stop()
            raise RuntimeError(f"mosquitto did not start on 127.0.0.1:{self.port}: {stderr} {log[-2000:]}")

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stops the broker (SIGTERM: it saves its database when persistent)."""
        process, self._process = self._process, None
        if process is None:
            return
        process.terminate()
        try:
            process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout_s)
        if process.stderr is not None:
            process.stderr.close()


class Subscriber:
    """A paho client subscribed to some topics, recording every message in arrival order.

    Args:
        port: the broker's port on 127.0.0.1.
        topics: topic filters to subscribe to at QoS 1 (again after every reconnect).
        client_id: with ``persistent``, the broker keeps the session under this id.
        persistent: a persistent session (clean_session=False): the broker queues QoS 1 messages
            for it while it is disconnected.
    """

    def __init__(
        self, port: int, topics: list[str], *, client_id: str = "", persistent: bool = False
    ) -> None:
        import paho.mqtt.client as mqtt

        self.messages: list[tuple[str, str, bool, bool]] = []  # topic, payload, retained, dup
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self._subacks = 0
        self._suback_cond = threading.Condition()
        self._topics = topics
        self._client = mqtt.Client(
            callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
            client_id=client_id,
            clean_session=not persistent,
            protocol=mqtt.MQTTv311,
        )
        self._client.reconnect_delay_set(0.05, 0.2)
        self._client.on_connect = self._on_connect
        self._client.on_subscribe = self._on_subscribe
        self._client.on_message = self._on_message
        self._client.connect_async("127.0.0.1", port, keepalive=10)
        self._client.loop_start()
        if not self._subscribed.wait(5):
            self.close()
            raise RuntimeError(f"subscriber could not subscribe to {topics} on 127.0.0.1:{port}")

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        if not reason_code.is_failure:
            client.subscribe([(topic, 1) for topic in self._topics])

    def _on_subscribe(self, client: Any, userdata: Any, mid: int, reason_codes: Any, properties: Any) -> None:
        self._subscribed.set()
        with self._suback_cond:
            self._subacks += 1
            self._suback_cond.notify_all()

    def sync(self, timeout_s: float = 5.0) -> None:
        """Returns once the broker has processed everything this client sent so far (its PUBACKs too).

        A broker handles a connection's packets in order, so the SUBACK of a new subscription
        comes after the acknowledgements sent before it.
        """
        with self._suback_cond:
            before = self._subacks
        self._client.subscribe("edgemm-test/sync", 1)
        with self._suback_cond:
            if not self._suback_cond.wait_for(lambda: self._subacks > before, timeout_s):
                raise TimeoutError("the broker did not answer a SUBSCRIBE")

    def _on_message(self, client: Any, userdata: Any, message: Any) -> None:
        with self._lock:
            self.messages.append(
                (message.topic, message.payload.decode(), bool(message.retain), bool(message.dup))
            )

    def payloads(self, topic: str, *, redelivered: bool = True) -> list[str]:
        """Payloads received on ``topic``, in arrival order.

        Args:
            topic: the topic.
            redelivered: include messages the broker sent again with the DUP flag because it
                missed this client's PUBACK (a broker does not pass on the DUP flag of a
                publisher's resend, so those arrive as fresh messages).
        """
        with self._lock:
            return [p for t, p, _, dup in self.messages if t == topic and (redelivered or not dup)]

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


def retained(port: int, topic: str, timeout_s: float = 5.0) -> str | None:
    """The retained message on ``topic`` (read by a fresh subscriber), or None if there is none."""
    subscriber = Subscriber(port, [topic])
    try:
        wait_until(lambda: bool(subscriber.payloads(topic)), min(timeout_s, 1.0))
        values = [
            payload for t, payload, was_retained, _ in subscriber.messages if t == topic and was_retained
        ]
        return values[-1] if values else None
    finally:
        subscriber.close()
