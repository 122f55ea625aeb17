"""An MJPEG-over-HTTP server for the tests, on 127.0.0.1, and frames that carry their number.

The server streams ``multipart/x-mixed-replace`` JPEG parts at a fixed rate from a thread. Each
frame shows its number twice: as text, for people, and as 16 black/white blocks along the top
(bit 15 first), for :func:`read_counter`, which survives JPEG compression.
"""

from __future__ import annotations

import itertools
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType

import cv2
import numpy as np

__all__ = ["MjpegServer", "counter_frame", "read_counter"]

_BITS = 16
_BOUNDARY = "edgemmframe"


def counter_frame(number: int, size: tuple[int, int] = (160, 120)) -> np.ndarray:
    """A BGR frame showing ``number``: np.ndarray, shape (height, width, 3), uint8, BGR.

    Args:
        number: 0 <= number < 2**16.
        size: (width, height); the width must be at least 16 * 8 pixels.
    """
    width, height = size
    block = width // _BITS
    frame = np.full((height, width, 3), 96, np.uint8)
    for bit in range(_BITS):
        if number >> (_BITS - 1 - bit) & 1:
            frame[:block, bit * block : (bit + 1) * block] = 255
        else:
            frame[:block, bit * block : (bit + 1) * block] = 0
    cv2.putText(frame, str(number), (4, height - 10), cv2.FONT_HERSHEY_SIMPLEX, 0.8, (255, 255, 255), 2)
    return frame


def read_counter(image: np.ndarray) -> int:
    """The number :func:`counter_frame` drew into ``image`` (H, W, 3) uint8, RGB or BGR."""
    block = image.shape[1] // _BITS
    centres = image[block // 2, [bit * block + block // 2 for bit in range(_BITS)]].mean(axis=1)
    return int("".join("1" if value > 128 else "0" for value in centres), 2)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, port: int, owner: MjpegServer) -> None:
        self.owner = owner
        super().__init__(("127.0.0.1", port), _Handler)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.0"

    def do_GET(self) -> None:
        owner = self.server.owner
        if self.path != owner.path:
            self.send_error(404, "no such stream")
            return
        self.send_response(200)
        self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={_BOUNDARY}")
        self.send_header("Cache-Control", "no-cache")
        self.end_headers()
        next_due = time.monotonic()
        try:
            while not owner.stopping.is_set():
                if owner.paused.is_set():  # a stalled camera: the connection stays open, no data
                    owner.stopping.wait(0.05)
                    next_due = time.monotonic()
                    continue
                number = owner.next_number()
                ok, jpeg = cv2.imencode(
                    ".jpg", counter_frame(number, owner.size), [cv2.IMWRITE_JPEG_QUALITY, 85]
                )
                assert ok
                head = f"--{_BOUNDARY}\r\nContent-Type: image/jpeg\r\n"
                if owner.content_length:
                    head += f"Content-Length: {len(jpeg)}\r\n"
                self.wfile.write(head.encode() + b"\r\n" + jpeg.tobytes() + b"\r\n")
                self.wfile.flush()
                next_due += 1 / owner.fps
                owner.stopping.wait(max(0.0, next_due - time.monotonic()))
        except (BrokenPipeError, ConnectionResetError):
            return

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: the tests read the frames, not the access log."""


class MjpegServer:
    """Serves ``http://127.0.0.1:PORT/stream.mjpg`` (other paths: 404) until :meth:`stop`.

    Args:
        port: TCP port; 0 picks a free one (see :attr:`port` once started).
        fps: frames per second sent to each client.
        size: frame (width, height).
        first_number: number of the first frame; numbers go up by one per frame sent.
        content_length: send a Content-Length header in each part (cameras do both).
    """

    path = "/stream.mjpg"

    def __init__(
        self,
        port: int = 0,
        *,
        fps: float = 20.0,
        size: tuple[int, int] = (160, 120),
        first_number: int = 0,
        content_length: bool = True,
    ) -> None:
        self.port = port
        self.fps = fps
        self.size = size
        self.content_length = content_length
        self.stopping = threading.Event()
        self.paused = threading.Event()
        """Set: send nothing and keep the connections open, as a stalled camera does."""
        self._numbers = itertools.count(first_number)
        self._lock = threading.Lock()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The stream's URL."""
        return f"http://127.0.0.1:{self.port}{self.path}"

    def next_number(self) -> int:
        """The number of the next frame sent."""
        with self._lock:
            return next(self._numbers)

    def start(self) -> MjpegServer:
        """Listens and serves from a thread; returns the server."""
        self.stopping.clear()
        self._server = _Server(self.port, self)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stops streaming, closes every client connection and the listening socket."""
        if self._server is None:
            return
        self.stopping.set()
        self._server.shutdown()
        self._server.server_close()  # joins the handler threads, which close their connections
        assert self._thread is not None
        self._thread.join(5)
        self._server = None

    def __enter__(self) -> MjpegServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()
