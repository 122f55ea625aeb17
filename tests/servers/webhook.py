"""A webhook receiver for tests: an HTTP server on 127.0.0.1 whose answer a test decides per request."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["WebhookReceiver"]


class WebhookReceiver:
    """Records every POST (event id, status answered) and the events it answered 2xx to.

    Args:
        port: the port on 127.0.0.1 (0: any free one); a receiver can be started on the port a
            sink already points at, to play a server coming back.
        respond: the status to answer for an event (called with the decoded event); default 200.
    """

    def __init__(self, port: int = 0, respond: Callable[[dict[str, Any]], int] | None = None) -> None:
        self.attempts: list[tuple[str, int]] = []
        self.delivered: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self._respond = respond or (lambda event: 200)
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                event = json.loads(body)
                status = receiver._respond(event)
                with receiver._lock:
                    receiver.attempts.append((event["id"], status))
                    receiver.headers.append(dict(self.headers))
                    if 200 <= status < 300:
                        receiver.delivered.append(event)
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.port = int(self._server.server_address[1])
        self.url = f"http://127.0.0.1:{self.port}/events"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    def delivered_ids(self) -> list[str]:
        with self._lock:
            return [event["id"] for event in self.delivered]

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)
