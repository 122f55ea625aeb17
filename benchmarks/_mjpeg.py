"""A stand-in MJPEG camera for the benchmarks, run as a child process.

Usage::

    python benchmarks/_mjpeg.py --fps 25 --video vtest.avi     # prints its URL, serves until stdin closes

It serves ``http://127.0.0.1:PORT/stream.mjpg`` (``multipart/x-mixed-replace``, one JPEG per part,
with ``Content-Length``) at a fixed rate to each client. The frames are a video file's frames,
looped (``--video``), else generated frames that show their number and a moving bar. Every frame
is JPEG-encoded once at start-up, so serving costs almost no CPU; a client that falls behind
misses frames, as with a real camera, rather than receiving a burst to catch up.

It runs in its own process so that the process under test holds only the pipeline: no server
thread competes with it for the GIL and no encoded frames count in its memory. It exits when its
stdin closes, so it never outlives the benchmark that started it.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np

PATH = "/stream.mjpg"
_BOUNDARY = "edgemmbench"


def encode_video(path: str, quality: int) -> list[bytes]:
    """Every frame of a video file as JPEG bytes.

    Raises:
        SystemExit: the file gives no frame.
    """
    import cv2

    capture = cv2.VideoCapture(path)
    frames = []
    while True:
        ok, image = capture.read()
        if not ok:
            break
        frames.append(cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])[1].tobytes())
    capture.release()
    if not frames:
        raise SystemExit(f"{path}: no frame could be read")
    return frames


def encode_generated(count: int, size: tuple[int, int], quality: int) -> list[bytes]:
    """``count`` generated frames (a gradient, a moving bar and the frame's number) as JPEG bytes.

    Args:
        count: frames in one lap.
        size: (width, height) in pixels.
        quality: JPEG quality, 0..100.
    """
    import cv2

    width, height = size
    base = np.zeros((height, width, 3), np.uint8)
    base[..., 0] = np.linspace(40, 200, width, dtype=np.uint8)[None, :]
    base[..., 1] = np.linspace(200, 40, height, dtype=np.uint8)[:, None]
    frames = []
    for number in range(count):
        image = base.copy()
        x = number * width // count
        image[:, x : x + width // 10] = (255, 255, 255)
        cv2.putText(image, str(number), (10, height - 20), cv2.FONT_HERSHEY_SIMPLEX, 2.0, (0, 0, 255), 3)
        frames.append(cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])[1].tobytes())
    return frames


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, frames: list[bytes], fps: float) -> None:
        self.frames = frames
        self.fps = fps
        self.stopping = threading.Event()
        super().__init__(("127.0.0.1", 0), _Handler)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.0"

    def do_GET(self) -> None:
        if self.path != PATH:
            self.send_error(404, "no such stream")
            return
        self.send_response(200)
        self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={_BOUNDARY}")
        self.send_header("Cache-Control", "no-cache")
        self.end_headers()
        frames, period = self.server.frames, 1.0 / self.server.fps
        start = time.monotonic()
        number = 0
        try:
            while not self.server.stopping.is_set():
                jpeg = frames[number % len(frames)]
                head = f"--{_BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n\r\n"
                self.wfile.write(head.encode() + jpeg + b"\r\n")
                self.wfile.flush()
                # The frame due now by the clock: a client that fell behind skips frames, as a camera's does.
                number = max(number + 1, int((time.monotonic() - start) / period))
                self.server.stopping.wait(max(0.0, start + number * period - time.monotonic()))
        except (BrokenPipeError, ConnectionResetError):
            return

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: the benchmark reads frames, not the access log."""


def main(argv: list[str] | None = None) -> None:
    """Serves until stdin closes; prints the stream's URL on stdout first."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fps", type=float, default=25.0, help="frames per second sent to each client")
    parser.add_argument("--video", help="serve this video file's frames, looped (default: generated frames)")
    parser.add_argument("--size", default="640x480", help="generated frames' WIDTHxHEIGHT")
    parser.add_argument("--quality", type=int, default=85, help="JPEG quality")
    args = parser.parse_args(argv)
    if args.fps <= 0:
        parser.error(f"--fps must be > 0, got {args.fps}")
    if args.video:
        frames = encode_video(args.video, args.quality)
    else:
        width, _, height = args.size.partition("x")
        frames = encode_generated(round(10 * args.fps), (int(width), int(height)), args.quality)
    server = _Server(frames, args.fps)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    print(f"http://127.0.0.1:{server.server_address[1]}{PATH}", flush=True)
    sys.stdin.read()  # returns when the parent closes our stdin or exits
    server.stopping.set()
    server.shutdown()
    server.server_close()


if __name__ == "__main__":
    main()
