"""Camera and stream sources by URI: one interface over files, folders, RTSP, MJPEG, cameras and GStreamer.

``open_source(uri)`` picks the backend from the URI and returns a :class:`Source`; starting it
opens the stream (within ``timeout_s``) on a capture thread, and each read gives the newest
:class:`Frame` (RGB uint8) not read yet::

    with open_source("rtsp://10.0.0.7/stream", timeout_s=5) as camera:
        camera.on_event(print)                    # SourceDisconnected / SourceReconnected
        for frame in camera:                      # Frame(image (H, W, 3) uint8 RGB, index, time_s, ...)
            ...

========================================  =====================================================
URI                                       Source
========================================  =====================================================
``file://clip.mp4``, ``clip.mp4``         a video file, paced at its native rate
                                          (``realtime=False``: as fast as the reader takes
                                          frames, none dropped; ``loop=True``: start again)
``file://shots/``, ``shots/*.jpg``        an image folder or glob (natural name order), or one
                                          image, paced at ``fps`` (default 1)
``rtsp://``, ``rtsps://``                 an RTSP stream through OpenCV's FFmpeg, over TCP,
                                          low latency (:data:`RTSP_FFMPEG_OPTIONS`)
``http://``, ``https://``                 an MJPEG stream (``multipart/x-mixed-replace``)
``0``, ``"0"``, ``v4l2:///dev/video0``    a V4L2 / USB camera (``v4l2://`` takes
                                          ``?width=&height=&fps=&fourcc=``)
``csi://0``                               a Jetson CSI camera (``?width=&height=&fps=&flip=``),
                                          through the pipeline of :func:`csi_pipeline`
``gst://PIPELINE``                        any GStreamer pipeline ending in ``appsink``
========================================  =====================================================

Frames: a capture thread per source decodes ahead and keeps **only the newest frame**; a frame
that is replaced before :meth:`Source.read` takes it is counted as dropped, so a slow reader gets
fresh frames and memory stays bounded (one decoded frame waiting, at most). The one exception is
a file or folder read with ``realtime=False``: then the capture thread waits for the reader and no
frame is dropped. OpenCV's BGR is converted to RGB once, on the capture thread.

Live sources (everything but files and folders) reconnect after a drop, with exponential backoff
(:class:`ReconnectPolicy`), and report it as :class:`SourceDisconnected` and
:class:`SourceReconnected` events. A source that cannot be opened raises a
:class:`SourceUnavailableError` within ``timeout_s``; one that is lost for good (the policy's
attempts used up) raises :class:`SourceDisconnectedError` from :meth:`Source.read`.

CSI cameras and ``gst://`` pipelines need an OpenCV built with GStreamer: on Jetson that is the
system OpenCV (``apt install python3-opencv``), used from a virtual environment made with
``--system-site-packages`` and without the pip ``opencv-python*`` packages (README "Installing").
The pip wheels have FFmpeg but not GStreamer, and edgemm says so (:class:`GStreamerUnavailableError`).
"""

from __future__ import annotations

import base64
import contextlib
import glob
import http.client
import logging
import os
import re
import socket
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import numpy as np

from ._version import __version__
from .errors import (
    DependencyMissingError,
    GStreamerUnavailableError,
    InvalidSourceError,
    SourceDisconnectedError,
    SourceError,
    SourceUnavailableError,
)
from .events import SourceDisconnected, SourceReconnected

__all__ = [
    "IMAGE_EXTENSIONS",
    "RTSP_FFMPEG_OPTIONS",
    "SUPPORTED_SCHEMES",
    "Frame",
    "GStreamerUnavailableError",
    "InvalidSourceError",
    "ReconnectPolicy",
    "Source",
    "SourceDisconnected",
    "SourceDisconnectedError",
    "SourceEvent",
    "SourceReconnected",
    "SourceStats",
    "SourceUnavailableError",
    "csi_pipeline",
    "open_source",
]

_log = logging.getLogger(__name__)

SUPPORTED_SCHEMES = ("file", "rtsp", "rtsps", "http", "https", "v4l2", "csi", "gst")
"""URI schemes :func:`open_source` understands; a plain path or a device index needs none."""

RTSP_FFMPEG_OPTIONS = {"rtsp_transport": "tcp", "fflags": "nobuffer", "flags": "low_delay"}
"""FFmpeg options for RTSP: TCP (no lost UDP packets, passes NAT), no input buffering, low delay.

They are set in ``OPENCV_FFMPEG_CAPTURE_OPTIONS`` while the stream opens and restored afterwards.
Entries a user already has in that variable win, e.g. ``OPENCV_FFMPEG_CAPTURE_OPTIONS=rtsp_transport;udp``."""

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".pgm", ".ppm"})
"""File extensions an image folder, glob or single-image source reads (compared lower-case)."""

_FOLDER_FPS = 1.0
_FALLBACK_FPS = 25.0
_START_GRACE_S = 0.5
_CLOSE_JOIN_S = 3.0
_MAX_CONSECUTIVE_FAILURES = 3
_RETRY_PAUSE_S = 0.05
_FPS_WINDOW_S = 5.0
_MAX_LINE_BYTES = 64 * 1024
_MAX_PART_BYTES = 64 * 1024 * 1024
_FFMPEG_ENV = "OPENCV_FFMPEG_CAPTURE_OPTIONS"
_ENV_LOCK = threading.Lock()
_CAMERA_OPTIONS = {"v4l2": ("width", "height", "fps", "fourcc"), "csi": ("width", "height", "fps", "flip")}


# --- results and configuration ---------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Frame:
    """One frame from a source.

    Attributes:
        image: np.ndarray, shape (H, W, 3), uint8, RGB, C-contiguous and read-only (several
            consumers may share a frame: copy it before drawing on it).
        index: the frame's number in its source, from 0, counting every frame captured (dropped
            ones too), across reconnects and ``loop`` laps.
        time_s: seconds since the source started (monotonic clock); for files and folders, the
            frame's media position (laps of ``loop`` add up, so it always increases).
        wall_time: ``time.time()`` when the frame was captured (for files: when it was due).
        source: the source's name.
    """

    image: np.ndarray
    index: int
    time_s: float
    wall_time: float
    source: str


@dataclass(frozen=True)
class SourceStats:
    """Counters of a source, from :meth:`Source.stats`.

    Attributes:
        source: the source's name.
        captured: frames decoded and offered to the reader.
        delivered: frames :meth:`Source.read` returned.
        dropped: frames replaced by a newer one before they were read.
        failed_reads: reads that gave no usable frame (a live source that keeps failing reconnects).
        reconnects: successful reconnections.
        fps: capture rate measured over the last few seconds (0 when frames stopped coming).
        nominal_fps: the rate the source declares (a file's native rate, a folder's ``fps``,
            a camera's reported rate); None where unknown (network streams).
        connected: whether the source is open and delivering (False while reconnecting or after the end).
        uptime_s: seconds since :meth:`Source.start`.
    """

    source: str
    captured: int
    delivered: int
    dropped: int
    failed_reads: int
    reconnects: int
    fps: float
    nominal_fps: float | None
    connected: bool
    uptime_s: float


SourceEvent = SourceDisconnected | SourceReconnected
"""Events a :class:`Source` reports to the callbacks given to :meth:`Source.on_event`."""


@dataclass(frozen=True)
class ReconnectPolicy:
    """How a live source reconnects after a drop: exponential backoff between attempts.

    Attempt ``n`` (from 1) waits ``min(initial_delay_s * multiplier ** (n - 1), max_delay_s)``
    seconds, then opens the source again (bounded by the source's ``timeout_s``).

    Attributes:
        initial_delay_s: wait before the first attempt.
        max_delay_s: longest wait between attempts.
        max_attempts: attempts before giving up with :class:`SourceDisconnectedError`;
            None retries forever, 0 never reconnects.
        multiplier: growth of the wait from one attempt to the next.
    """

    initial_delay_s: float = 0.5
    max_delay_s: float = 10.0
    max_attempts: int | None = None
    multiplier: float = 2.0

    def __post_init__(self) -> None:
        if not 0 <= self.initial_delay_s <= self.max_delay_s:
            raise InvalidSourceError(
                f"ReconnectPolicy needs 0 <= initial_delay_s <= max_delay_s, got {self.initial_delay_s} and {self.max_delay_s}"
            )
        if self.max_attempts is not None and self.max_attempts < 0:
            raise InvalidSourceError(f"ReconnectPolicy.max_attempts must be None or >= 0, got {self.max_attempts}")
        if self.multiplier < 1:
            raise InvalidSourceError(f"ReconnectPolicy.multiplier must be >= 1, got {self.multiplier}")

    def delay_s(self, attempt: int) -> float:
        """Seconds to wait before attempt number ``attempt`` (from 1)."""
        return min(self.initial_delay_s * self.multiplier ** max(attempt - 1, 0), self.max_delay_s)


# --- OpenCV ----------------------------------------------------------------------------------


def _cv2() -> Any:
    try:
        import cv2
    except ImportError as exc:
        raise DependencyMissingError(
            "cv2",
            "Video, camera and stream sources",
            "pip install 'edgemm[opencv]' on a desktop; on Jetson apt install python3-opencv (README 'Installing')",
        ) from exc
    return cv2


@cache
def _opencv_has(backend: str) -> bool:
    """Whether this OpenCV was built with a video I/O backend ('FFMPEG', 'GStreamer')."""
    match = re.search(rf"^\s*{backend}:\s*(\S+)", _cv2().getBuildInformation(), flags=re.MULTILINE | re.IGNORECASE)
    return bool(match and match.group(1).upper().startswith("YES"))


def _require_gstreamer(uri: str) -> None:
    if _opencv_has("GStreamer"):
        return
    cv2 = _cv2()
    where = Path(cv2.__file__ or "cv2").parent
    raise GStreamerUnavailableError(
        f"{uri} needs OpenCV built with GStreamer, but the OpenCV in use ({cv2.__version__}, {where}) "
        "was built without it (cv2.getBuildInformation() says 'GStreamer: NO'; the pip opencv-python "
        "wheels never have it). On Jetson use the system OpenCV: `sudo apt install python3-opencv`, a "
        "virtual environment made with `python3 -m venv --system-site-packages`, and no pip OpenCV in it "
        "(`pip uninstall opencv-python opencv-python-headless`); see README 'Installing'. "
        "`edgemm doctor` shows which OpenCV is used and whether it has GStreamer."
    )


def _to_rgb(image: np.ndarray) -> np.ndarray:
    """OpenCV's BGR (or gray, BGRA) uint8 image as a C-contiguous (H, W, 3) RGB array."""
    cv2 = _cv2()
    if image.dtype != np.uint8:
        raise _ReadFailedError(f"frame is {image.dtype}, expected 8-bit (uint8) pixels")
    if image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 1):
        return cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    if image.ndim == 3 and image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2RGB)
    if image.ndim == 3 and image.shape[2] == 3:
        return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    raise _ReadFailedError(f"frame has shape {image.shape}, expected (H, W), (H, W, 3) or (H, W, 4)")


def csi_pipeline(sensor_id: int = 0, *, width: int = 1920, height: int = 1080, fps: float = 30, flip: int = 0) -> str:
    """The GStreamer pipeline that reads a Jetson CSI camera into OpenCV as BGR.

    ``nvarguscamerasrc`` (Argus: the ISP does debayering, exposure and white balance) gives NV12
    frames in NVMM (GPU) memory; ``nvvidconv`` converts them on the VIC hardware to BGRx in CPU
    memory (and flips them when ``flip`` is set); ``videoconvert`` only drops the x byte (BGRx to
    BGR, the layout OpenCV wants); ``appsink drop=1 max-buffers=1`` keeps only the newest frame,
    so a slow reader never builds a backlog inside GStreamer.

    Args:
        sensor_id: the camera's ``sensor-id`` (0 for the first CSI port).
        width: capture width in pixels; with ``height`` and ``fps`` it should be one of the
            sensor's modes (Argus picks the nearest mode otherwise).
        height: capture height in pixels.
        fps: capture rate, frames per second.
        flip: nvvidconv ``flip-method``: 0 none, 1 counter-clockwise 90°, 2 rotate 180°,
            3 clockwise 90°, 4 horizontal flip, 5 upper-right diagonal, 6 vertical flip,
            7 upper-left diagonal.

    Returns:
        The pipeline string for ``cv2.VideoCapture(pipeline, cv2.CAP_GSTREAMER)``; frames are
        (height, width, 3) uint8 BGR (width and height swap for flips 1, 3, 5 and 7).

    Raises:
        InvalidSourceError: a value out of range.
    """
    if sensor_id < 0 or width <= 0 or height <= 0 or fps <= 0 or flip not in range(8):
        raise InvalidSourceError(
            f"csi://{sensor_id}: needs sensor_id >= 0, width > 0, height > 0, fps > 0 and flip in 0..7, "
            f"got width={width}, height={height}, fps={fps}, flip={flip}"
        )
    numerator, denominator = _fraction(fps)
    return (
        f"nvarguscamerasrc sensor-id={sensor_id} ! "
        f"video/x-raw(memory:NVMM),width={width},height={height},framerate={numerator}/{denominator},format=NV12 ! "
        f"nvvidconv flip-method={flip} ! video/x-raw,format=BGRx ! "
        "videoconvert ! video/x-raw,format=BGR ! "
        "appsink drop=1 max-buffers=1"
    )


def _fraction(fps: float) -> tuple[int, int]:
    """A frame rate as a GStreamer fraction (30 -> 30/1, 29.97 -> 2997/100)."""
    if float(fps).is_integer():
        return int(fps), 1
    return round(fps * 1000), 1000


# --- readers: one per kind of source; they run on the capture thread -------------------------


class _ReadFailedError(Exception):
    """A read gave no usable frame; the source may go on (a live one reconnects if it keeps failing)."""


class _StreamLostError(Exception):
    """A live stream dropped; the source reconnects."""


class _Reader:
    """Opens, reads and closes one kind of source. Runs on the capture thread only, except
    :meth:`interrupt`, which :meth:`Source.close` calls to unblock a read."""

    live = False
    nominal_fps: float | None = None
    describe = "source"

    def open(self) -> None:
        """Opens the source. Raises SourceUnavailableError (or another SourceError)."""

    def read(self) -> tuple[np.ndarray, float | None] | None:
        """The next image (OpenCV layout: BGR, gray or BGRA, uint8) and its media time in seconds
        when known; None at the end of a file or folder. Raises _ReadFailedError or _StreamLostError."""
        return None

    def rewind(self) -> None:
        """Starts a file or folder again from its first frame."""
        self.close()
        self.open()

    def interrupt(self) -> None:
        """Unblocks a read in progress, where the backend allows it (called from another thread)."""

    def close(self) -> None:
        """Releases the source; safe to call twice."""


class _CaptureReader(_Reader):
    """Anything ``cv2.VideoCapture`` opens: files (FFmpeg), RTSP (FFmpeg), cameras (V4L2), GStreamer."""

    def __init__(
        self,
        target: str | int,
        *,
        api: str,
        describe: str,
        unavailable: str,
        live: bool,
        timeout_s: float,
        ffmpeg_options: dict[str, str] | None = None,
        props: tuple[tuple[str, float], ...] = (),
    ) -> None:
        self._target = target
        self._api = api
        self.describe = describe
        self._unavailable = unavailable
        self.live = live
        self._timeout_ms = round(timeout_s * 1000)
        self._ffmpeg_options = ffmpeg_options
        self._props = props
        self._capture: Any = None
        self._media_time = not live

    def open(self) -> None:
        cv2 = _cv2()
        api = getattr(cv2, self._api)
        # Only FFmpeg takes these: OpenCV refuses to open a capture whose backend leaves a
        # parameter unused, and GStreamer's support for them varies between OpenCV versions.
        params = (
            [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, self._timeout_ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, self._timeout_ms]
            if self._api == "CAP_FFMPEG" and self.live
            else []
        )
        if self._ffmpeg_options is None:
            capture = cv2.VideoCapture(self._target, api, params)
        else:
            with _ENV_LOCK:
                saved = os.environ.get(_FFMPEG_ENV)
                os.environ[_FFMPEG_ENV] = _merge_ffmpeg_options(self._ffmpeg_options, saved)
                try:
                    capture = cv2.VideoCapture(self._target, api, params)
                finally:
                    if saved is None:
                        os.environ.pop(_FFMPEG_ENV, None)
                    else:
                        os.environ[_FFMPEG_ENV] = saved
        if not capture.isOpened():
            capture.release()
            raise SourceUnavailableError(f"{self.describe}: {self._unavailable}")
        for name, value in self._props:
            capture.set(getattr(cv2, name), value)
        fps = capture.get(cv2.CAP_PROP_FPS)
        self.nominal_fps = float(fps) if 0 < fps < 1000 else None
        self._capture = capture

    def read(self) -> tuple[np.ndarray, float | None] | None:
        if self._capture is None:
            raise _StreamLostError("not open")
        ok, image = self._capture.read()
        if ok and image is not None and image.size:
            media_time = self._capture.get(_cv2().CAP_PROP_POS_MSEC) / 1000 if self._media_time else None
            return image, media_time
        if not self.live:
            return None  # OpenCV does not tell the end of a file from a broken tail; both end it
        raise _ReadFailedError("the capture gave no frame")

    def close(self) -> None:
        capture, self._capture = self._capture, None
        if capture is not None:
            capture.release()


def _merge_ffmpeg_options(defaults: dict[str, str], user: str | None) -> str:
    """``key;value|key;value`` with the user's entries (from the environment) over edgemm's."""
    options = dict(defaults)
    for item in (user or "").split("|"):
        key, _, value = item.partition(";")
        if key.strip():
            options[key.strip()] = value
    return "|".join(f"{key};{value}" for key, value in options.items())


class _ImagesReader(_Reader):
    """A list of image files, read in order."""

    def __init__(self, files: list[Path], *, describe: str, fps: float) -> None:
        self._files = files
        self.describe = describe
        self.nominal_fps = fps
        self._next = 0

    def open(self) -> None:
        self._next = 0

    def read(self) -> tuple[np.ndarray, float | None] | None:
        if self._next >= len(self._files):
            return None
        path = self._files[self._next]
        self._next += 1
        image = _cv2().imread(str(path), _cv2().IMREAD_COLOR)
        if image is None:
            raise _ReadFailedError(f"cannot read image {path}")
        return image, None


class _MjpegReader(_Reader):
    """An MJPEG stream over HTTP(S): ``multipart/x-mixed-replace`` parts holding JPEG images.

    Read with http.client rather than FFmpeg: HTTP errors become clear messages (404, 401), the
    timeouts are plain socket timeouts, and close() can unblock a read by shutting the socket.
    """

    live = True

    def __init__(self, url: str, *, describe: str, timeout_s: float) -> None:
        parts = urlsplit(url)
        if not parts.hostname:
            raise InvalidSourceError(f"{describe}: no host in the URL")
        self._https = parts.scheme == "https"
        self._host = parts.hostname
        try:
            self._port = parts.port
        except ValueError as exc:
            raise InvalidSourceError(f"{describe}: bad port ({exc})") from exc
        self._target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self._headers = {"User-Agent": f"edgemm/{__version__}", "Accept": "multipart/x-mixed-replace, */*"}
        if parts.username is not None:
            credentials = f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode()
            self._headers["Authorization"] = "Basic " + base64.b64encode(credentials).decode("ascii")
        self.describe = describe
        self._timeout_s = timeout_s
        self._connection: http.client.HTTPConnection | None = None
        self._socket: socket.socket | None = None
        self._response: http.client.HTTPResponse | None = None
        self._boundary = b""
        self._in_part = False

    def open(self) -> None:
        factory = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
        connection = factory(self._host, self._port, timeout=self._timeout_s)
        try:
            connection.connect()
            self._socket = connection.sock
            connection.request("GET", self._target, headers=self._headers)
            response = connection.getresponse()
        except (OSError, http.client.HTTPException) as exc:
            connection.close()
            raise SourceUnavailableError(f"{self.describe}: cannot connect: {exc or type(exc).__name__}") from exc
        content_type = response.getheader("Content-Type", "")
        problem = None
        if response.status != 200:
            problem = f"the server answered HTTP {response.status} {response.reason}"
            if response.status in (401, 403):
                problem += " (credentials go in the URL: http://user:password@host/path)"
            elif 300 <= response.status < 400 and response.getheader("Location"):
                problem += f" (redirects are not followed: use {response.getheader('Location')})"
        else:
            match = re.search(r'boundary="?([^";]+)"?', content_type, flags=re.IGNORECASE)
            if not content_type.lower().startswith("multipart/") or match is None:
                problem = (
                    f"expected an MJPEG stream (Content-Type: multipart/x-mixed-replace; boundary=...), "
                    f"got Content-Type {content_type or '(none)'!r}"
                )
            else:
                self._boundary = match.group(1).strip().removeprefix("--").encode("latin-1")
        if problem is not None:
            response.close()
            connection.close()
            raise SourceUnavailableError(f"{self.describe}: {problem}")
        self._connection, self._response, self._in_part = connection, response, False

    def read(self) -> tuple[np.ndarray, float | None] | None:
        try:
            jpeg = self._next_part()
        except (OSError, http.client.HTTPException, ValueError) as exc:
            raise _StreamLostError(f"connection lost ({exc or type(exc).__name__})") from exc
        if jpeg is None:
            raise _StreamLostError("the server closed the stream")
        cv2 = _cv2()
        image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
        if image is None:
            raise _ReadFailedError(f"a part of {len(jpeg)} bytes is not a JPEG OpenCV can decode")
        return image, None

    def _next_part(self) -> bytes | None:
        """The body of the next part; None when the stream ends."""
        response = self._response
        if response is None:
            return None
        if not self._in_part:
            while True:
                line = response.readline(_MAX_LINE_BYTES)
                if not line:
                    return None
                kind = self._boundary_kind(line)
                if kind == "end":
                    return None
                if kind == "next":
                    break
        self._in_part = False
        headers: dict[bytes, bytes] = {}
        while True:
            line = response.readline(_MAX_LINE_BYTES)
            if not line:
                return None
            if not line.strip():
                break
            key, _, value = line.partition(b":")
            headers[key.strip().lower()] = value.strip()
        if b"content-length" in headers:
            length = int(headers[b"content-length"])
            if not 0 < length <= _MAX_PART_BYTES:
                raise ValueError(f"part of {length} bytes")
            body = response.read(length)
            return body if len(body) == length else None
        # No Content-Length: the part runs to the next boundary line.
        chunks: list[bytes] = []
        size = 0
        while True:
            line = response.readline(_MAX_LINE_BYTES)
            if not line:
                return None
            kind = self._boundary_kind(line)
            if kind is not None:
                self._in_part = kind == "next"
                return b"".join(chunks).removesuffix(b"\n").removesuffix(b"\r")
            chunks.append(line)
            size += len(line)
            if size > _MAX_PART_BYTES:
                raise ValueError(f"part larger than {_MAX_PART_BYTES} bytes without a boundary")

    def _boundary_kind(self, line: bytes) -> str | None:
        stripped = line.strip()
        if stripped in (b"--" + self._boundary, self._boundary):
            return "next"
        if stripped == b"--" + self._boundary + b"--":
            return "end"
        return None

    def interrupt(self) -> None:
        sock = self._socket
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        response, connection = self._response, self._connection
        self._response = self._connection = None
        self._socket = None
        for closable in (response, connection):
            if closable is not None:
                with contextlib.suppress(OSError):
                    closable.close()


# --- the source --------------------------------------------------------------------------------


class Source:
    """A started or startable source of frames; made by :func:`open_source`.

    Use it as a context manager (``with open_source(uri) as source``), or call :meth:`start` and
    :meth:`close`. :meth:`read` and iteration start it when needed. One thread should read it;
    :meth:`stats`, :meth:`close` and :meth:`on_event` may be called from any thread.
    """

    def __init__(
        self,
        reader: _Reader,
        *,
        name: str,
        kind: str,
        realtime: bool,
        loop: bool,
        fps: float | None,
        timeout_s: float,
        reconnect: ReconnectPolicy,
    ) -> None:
        self._reader = reader
        self._name = name
        self._kind = kind
        self._realtime = realtime
        self._loop = loop
        self._fps = fps
        self._timeout_s = timeout_s
        self._policy = reconnect
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._callbacks: list[Callable[[SourceEvent], None]] = []
        self._slot: Frame | None = None
        self._error: BaseException | None = None
        self._done = False
        self._closed = False
        self._connected = False
        self._started_at = 0.0
        self._captured = self._delivered = self._dropped = self._failed_reads = self._reconnects = 0
        self._capture_times: deque[float] = deque(maxlen=120)

    @property
    def name(self) -> str:
        """The source's name (``name=`` or the URI, passwords masked); frames carry it."""
        return self._name

    @property
    def kind(self) -> str:
        """'file', 'folder', 'rtsp', 'http', 'camera', 'csi' or 'gst'."""
        return self._kind

    @property
    def live(self) -> bool:
        """Whether the source is live (reconnects, paced by the camera) rather than a file or folder."""
        return self._reader.live

    @property
    def ended(self) -> bool:
        """Whether no more frames will come: the end of a file or folder, an error, or :meth:`close`."""
        with self._cond:
            return self._done and self._slot is None

    def __repr__(self) -> str:
        state = "closed" if self._closed else "ended" if self._done else "running" if self._thread else "not started"
        return f"Source({self._name!r}, kind={self._kind!r}, {state})"

    def on_event(self, callback: Callable[[SourceEvent], None]) -> None:
        """Calls ``callback(event)`` for each :class:`SourceDisconnected` / :class:`SourceReconnected`.

        Callbacks run on the capture thread: keep them short. One that raises is logged and kept.
        """
        with self._cond:
            self._callbacks.append(callback)

    def start(self) -> Source:
        """Opens the source and waits for its first frame, at most ``timeout_s``.

        Returns:
            The source itself, so ``source = open_source(uri).start()`` works.

        Raises:
            SourceUnavailableError: it did not open, or gave no frame within ``timeout_s``.
            SourceError: it was closed.
        """
        with self._cond:
            if self._closed:
                raise SourceError(f"{self._name}: the source is closed; open it again with open_source()")
            if self._thread is not None:
                return self
            self._started_at = time.monotonic()
            self._thread = threading.Thread(target=self._run, name=f"edgemm-source:{self._name}", daemon=True)
            self._thread.start()
            deadline = self._started_at + self._timeout_s + _START_GRACE_S
            while self._captured == 0 and not self._done:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
            error, captured, done = self._error, self._captured, self._done
        if captured:
            return self
        self.close()
        if error is not None:
            raise error
        if done:
            raise SourceUnavailableError(f"{self._reader.describe}: opened but gave no frame")
        raise SourceUnavailableError(
            f"{self._reader.describe}: no frame within timeout_s={self._timeout_s:g} s "
            "(unreachable, stalled, or slower to start than that: raise timeout_s)"
        )

    def read(self, timeout_s: float | None = None) -> Frame | None:
        """The newest frame not read yet, waiting for one if needed.

        Args:
            timeout_s: longest wait in seconds; None waits until a frame, the end or an error.

        Returns:
            The frame (``image``: (H, W, 3) uint8 RGB), or None at the end of a file or folder,
            after :meth:`close`, or when ``timeout_s`` passed without a new frame (``ended`` tells
            these apart).

        Raises:
            SourceUnavailableError: the source did not open (when read() started it).
            SourceDisconnectedError: a live source dropped and did not come back.
            SourceError: the capture failed otherwise.
        """
        if self._thread is None and not self._closed:
            self.start()
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        with self._cond:
            while True:
                if self._slot is not None:
                    frame, self._slot = self._slot, None
                    self._delivered += 1
                    self._cond.notify_all()
                    return frame
                if self._error is not None and not self._closed:
                    raise self._error
                if self._done:
                    return None
                if deadline is None:
                    self._cond.wait()
                else:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        return None
                    self._cond.wait(remaining)

    def __iter__(self) -> Iterator[Frame]:
        """Frames until the end of a file or folder, :meth:`close`, or an error (raised)."""
        while (frame := self.read()) is not None:
            yield frame

    def stats(self) -> SourceStats:
        """The source's counters and measured frame rate now."""
        with self._cond:
            now = time.monotonic()
            recent = [t for t in self._capture_times if t >= now - _FPS_WINDOW_S]
            fps = (len(recent) - 1) / (now - recent[0]) if len(recent) >= 2 and now > recent[0] else 0.0
            return SourceStats(
                source=self._name,
                captured=self._captured,
                delivered=self._delivered,
                dropped=self._dropped,
                failed_reads=self._failed_reads,
                reconnects=self._reconnects,
                fps=fps,
                nominal_fps=self._fps or self._reader.nominal_fps,
                connected=self._connected,
                uptime_s=now - self._started_at if self._started_at else 0.0,
            )

    def close(self) -> None:
        """Stops the capture thread and releases the source; waits for it a few seconds at most.

        A thread blocked inside the backend (FFmpeg waiting for its read timeout, a stalled
        GStreamer pipeline) is left to finish on its own: it releases the capture when the call
        returns. Safe to call twice.
        """
        with self._cond:
            if self._closed:
                return
            self._closed = self._done = True
            self._slot = None
            self._stop.set()
            self._cond.notify_all()
            thread = self._thread
        if thread is None:
            return
        self._reader.interrupt()
        if thread is not threading.current_thread():
            thread.join(_CLOSE_JOIN_S)
            if thread.is_alive():
                _log.warning(
                    "%s: capture thread still blocked in the backend after %.0f s; it releases the capture when that call returns",
                    self._name,
                    _CLOSE_JOIN_S,
                )

    def __enter__(self) -> Source:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()

    # --- capture thread ----------------------------------------------------------------------

    def _run(self) -> None:
        error: BaseException | None = None
        try:
            self._reader.open()
            if not self._stop.is_set():
                with self._cond:
                    self._connected = True
                self._capture()
        except SourceError as exc:
            error = exc
        except Exception as exc:
            error = SourceError(f"{self._name}: capture failed: {type(exc).__name__}: {exc}")
            error.__cause__ = exc
        finally:
            self._reader.close()
            with self._cond:
                self._connected = False
                self._done = True
                if error is not None and not self._closed:
                    self._error = error
                self._cond.notify_all()
                mid_stream = self._captured > 0
            if error is not None and mid_stream and not self._stop.is_set():
                _log.error("%s", error)  # start() raises errors before the first frame itself

    def _now_s(self) -> float:
        return time.monotonic() - self._started_at

    def _capture(self) -> None:
        live = self._reader.live
        paced = self._realtime and not live
        lossless = not self._realtime and not live
        period = 1 / (self._fps or self._reader.nominal_fps or _FALLBACK_FPS)
        index = 0
        lap_offset = 0.0
        lap_frames = 0
        media_prev: float | None = None
        pace_origin: float | None = None
        failures = 0
        last_good = time.monotonic()
        while not self._stop.is_set():
            try:
                item = self._reader.read()
                image = _to_rgb(item[0]) if item is not None else None
            except _ReadFailedError as exc:
                with self._cond:
                    self._failed_reads += 1
                failures += 1
                if not live:
                    _log.warning("%s: %s; skipped", self._name, exc)
                    continue
                if failures < _MAX_CONSECUTIVE_FAILURES and time.monotonic() - last_good < self._timeout_s:
                    self._stop.wait(_RETRY_PAUSE_S)
                    continue
                reason = f"{failures} reads in a row failed ({exc})"
                if time.monotonic() - last_good >= self._timeout_s:
                    reason = f"no frame for {time.monotonic() - last_good:.1f} s ({exc})"
                if not self._reconnect(reason):
                    return
                failures, last_good = 0, time.monotonic()
                continue
            except _StreamLostError as exc:
                if not self._reconnect(str(exc)):
                    return
                failures, last_good = 0, time.monotonic()
                continue
            if item is None or image is None:
                if self._loop and lap_frames > 0:
                    lap_offset += (media_prev or 0.0) + period
                    media_prev, lap_frames = None, 0
                    self._reader.rewind()
                    continue
                return
            failures, last_good = 0, time.monotonic()
            image.flags.writeable = False
            if live:
                time_s = self._now_s()
            else:
                media_time = item[1]
                if self._fps is not None or media_time is None or (media_prev is not None and media_time <= media_prev):
                    media_time = 0.0 if media_prev is None else media_prev + period
                media_prev = media_time
                time_s = lap_offset + media_time
                lap_frames += 1
                if paced:
                    if pace_origin is None:
                        pace_origin = time.monotonic() - time_s
                    delay = pace_origin + time_s - time.monotonic()
                    if delay > 0 and self._stop.wait(delay):
                        return
            frame = Frame(image=image, index=index, time_s=time_s, wall_time=time.time(), source=self._name)
            index += 1
            if not self._publish(frame, lossless=lossless):
                return

    def _publish(self, frame: Frame, *, lossless: bool) -> bool:
        """Puts the frame in the one-frame slot; False when the source is stopping."""
        with self._cond:
            if lossless:
                while self._slot is not None and not self._stop.is_set():
                    self._cond.wait(0.1)
            if self._stop.is_set():
                return False
            if self._slot is not None:
                self._dropped += 1
            self._slot = frame
            self._captured += 1
            self._capture_times.append(time.monotonic())
            self._cond.notify_all()
            return True

    def _reconnect(self, reason: str) -> bool:
        """Reopens a live source after a drop; False when the source is stopping.

        Raises:
            SourceDisconnectedError: the policy's attempts are used up.
        """
        if self._stop.is_set():
            return False  # closing ends the stream: not a disconnection to report
        lost_at = time.monotonic()
        with self._cond:
            self._connected = False
        _log.warning("%s: disconnected: %s", self._name, reason)
        self._emit(SourceDisconnected(time_s=self._now_s(), source=self._name, reason=reason))
        self._reader.close()
        attempt = 0
        last_error = reason
        while True:
            attempt += 1
            if self._policy.max_attempts is not None and attempt > self._policy.max_attempts:
                raise SourceDisconnectedError(
                    f"{self._reader.describe}: disconnected ({reason}) and not back after "
                    f"{self._policy.max_attempts} reconnect attempts over {time.monotonic() - lost_at:.1f} s "
                    f"(last: {last_error})"
                )
            if self._stop.wait(self._policy.delay_s(attempt)):
                return False
            try:
                self._reader.open()
            except SourceError as exc:
                last_error = str(exc)
                _log.info("%s: reconnect attempt %d failed: %s", self._name, attempt, exc)
                continue
            if self._stop.is_set():
                return False
            with self._cond:
                self._connected = True
                self._reconnects += 1
            offline_s = time.monotonic() - lost_at
            _log.warning("%s: reconnected (attempt %d, offline %.1f s)", self._name, attempt, offline_s)
            self._emit(SourceReconnected(time_s=self._now_s(), source=self._name, attempt=attempt, offline_s=offline_s))
            return True

    def _emit(self, event: SourceEvent) -> None:
        with self._cond:
            callbacks = list(self._callbacks)
        for callback in callbacks:
            try:
                callback(event)
            except Exception:
                _log.exception("%s: event callback %r failed", self._name, callback)


# --- URIs --------------------------------------------------------------------------------------

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
_SUPPORTED_HELP = (
    "file://PATH or a plain path (video file, image folder or glob), rtsp://, rtsps://, http(s):// (MJPEG), "
    "a camera index (0) or v4l2:///dev/videoN, csi://N (Jetson), gst://PIPELINE (ending in appsink)"
)


def open_source(
    uri: str | int | os.PathLike[str],
    *,
    name: str | None = None,
    realtime: bool = True,
    loop: bool = False,
    fps: float | None = None,
    timeout_s: float = 10.0,
    reconnect: ReconnectPolicy | None = None,
) -> Source:
    """Makes the source a URI names; :meth:`Source.start` (or ``with``) opens it.

    Checks what can be checked without opening (scheme, options, the file or folder exists,
    the camera device exists, OpenCV has GStreamer for csi:// and gst://) and raises here.

    Args:
        uri: ``file://PATH`` or a plain path (video file, image folder, glob such as
            ``shots/*.jpg``, or one image), ``rtsp://``/``rtsps://``, ``http(s)://`` (MJPEG),
            a camera index (``0`` or ``"0"``) or ``v4l2:///dev/video0``, ``csi://N``,
            ``gst://PIPELINE``. Query options: ``v4l2://`` width, height, fps, fourcc (e.g.
            MJPG); ``csi://`` width, height, fps, flip (see :func:`csi_pipeline`).
        name: the name frames and events carry; default the URI with any password masked.
        realtime: files and folders: True plays them at their rate (native, or ``fps``),
            dropping frames a slow reader misses, like a camera; False delivers every frame as
            fast as the reader takes them. Live sources are always real time.
        loop: files and folders: start again at the end (``index`` and ``time_s`` keep growing).
        fps: folders: frames per second (default 1); files: play at this rate instead of the
            native one; cameras (index, v4l2://, csi://): the rate to ask the device for.
            Network streams run at the sender's rate and take no ``fps``.
        timeout_s: longest time to open the source and get its first frame; live sources also
            count a stream with no frame for this long as dropped.
        reconnect: how live sources reconnect after a drop (default :class:`ReconnectPolicy()`:
            0.5 s doubling to 10 s, forever).

    Returns:
        The source, not started.

    Raises:
        InvalidSourceError: an unknown scheme (the message lists the supported ones), a
            malformed URI, or an option that does not apply to this kind of source.
        SourceUnavailableError: a missing file or folder, a folder or glob without images, a
            camera device that does not exist.
        GStreamerUnavailableError: csi:// or gst:// with an OpenCV built without GStreamer.
        DependencyMissingError: OpenCV is not installed.
    """
    if timeout_s <= 0:
        raise InvalidSourceError(f"timeout_s must be > 0, got {timeout_s}")
    if fps is not None and fps <= 0:
        raise InvalidSourceError(f"fps must be > 0, got {fps}")
    policy = reconnect if reconnect is not None else ReconnectPolicy()
    _cv2()
    text = os.fspath(uri) if isinstance(uri, os.PathLike) else uri
    label = name or (str(text) if isinstance(text, int) else _mask_password(text))
    kind, reader, fps = _make_reader(text, label=label, fps=fps, timeout_s=timeout_s)
    if reader.live and (loop or not realtime):
        option = "loop=True" if loop else "realtime=False"
        raise InvalidSourceError(f"{label}: {option} applies to files and folders; a live {kind} source runs at its own rate")
    return Source(
        reader, name=label, kind=kind, realtime=realtime, loop=loop, fps=fps, timeout_s=timeout_s, reconnect=policy
    )


def _make_reader(uri: str | int, *, label: str, fps: float | None, timeout_s: float) -> tuple[str, _Reader, float | None]:
    """(kind, reader, pacing fps for files and folders) for a URI."""
    if isinstance(uri, bool):
        raise InvalidSourceError(f"a source is a URI, a path or a camera index, got {uri!r}")
    if isinstance(uri, int):
        return "camera", _camera_reader(uri, label=label, fps=fps, timeout_s=timeout_s), None
    text = uri.strip()
    if not text:
        raise InvalidSourceError(f"empty source URI; expected {_SUPPORTED_HELP}")
    if text.isdigit():
        return "camera", _camera_reader(int(text), label=label, fps=fps, timeout_s=timeout_s), None
    match = _SCHEME.match(text)
    if match is None:
        return _path_reader(text, label=label, fps=fps, timeout_s=timeout_s)
    scheme = match.group(1).lower()
    rest = text[match.end() :]
    if scheme == "file":
        return _path_reader(unquote(rest), label=label, fps=fps, timeout_s=timeout_s)
    if scheme in ("rtsp", "rtsps"):
        _no_fps(fps, label, "an RTSP stream")
        if not _opencv_has("FFMPEG"):
            raise SourceUnavailableError(
                f"{label}: RTSP is read through OpenCV's FFmpeg, and this OpenCV has no FFmpeg; "
                "use a gst:// pipeline with rtspsrc instead"
            )
        reader = _CaptureReader(
            text,
            api="CAP_FFMPEG",
            describe=f"RTSP stream {label}",
            unavailable=(
                f"cannot open it (nothing listening, wrong path or credentials, no video, or no answer within "
                f"timeout_s={timeout_s:g} s; FFmpeg options {_merge_ffmpeg_options(RTSP_FFMPEG_OPTIONS, os.environ.get(_FFMPEG_ENV))})"
            ),
            live=True,
            timeout_s=timeout_s,
            ffmpeg_options=RTSP_FFMPEG_OPTIONS,
        )
        return "rtsp", reader, None
    if scheme in ("http", "https"):
        _no_fps(fps, label, "an MJPEG stream")
        return "http", _MjpegReader(text, describe=f"MJPEG stream {label}", timeout_s=timeout_s), None
    if scheme == "v4l2":
        path, options = _split_query(rest, "v4l2", label)
        device = f"/dev/video{path}" if path.isdigit() else path
        return "camera", _camera_reader(device, label=label, fps=_option_fps(fps, options, label), timeout_s=timeout_s, options=options), None
    if scheme == "csi":
        sensor, options = _split_query(rest, "csi", label)
        if not sensor.isdigit():
            raise InvalidSourceError(f"{label}: expected csi://N with N the sensor id (csi://0), got {sensor!r}")
        pipeline = csi_pipeline(
            int(sensor),
            width=_int_option(options, "width", 1920, label),
            height=_int_option(options, "height", 1080, label),
            fps=_option_fps(fps, options, label) or 30,
            flip=_int_option(options, "flip", 0, label),
        )
        _require_gstreamer(label)
        return "csi", _gst_reader(pipeline, f"CSI camera {label}", timeout_s), None
    if scheme == "gst":
        _no_fps(fps, label, "a gst:// pipeline (set the rate in the pipeline's caps)")
        if not rest.strip() or not rest.rsplit("!", 1)[-1].strip().startswith("appsink"):
            raise InvalidSourceError(
                f"{label}: a gst:// pipeline must end in appsink, e.g. "
                "gst://videotestsrc ! videoconvert ! video/x-raw,format=BGR ! appsink drop=1 max-buffers=1"
            )
        _require_gstreamer(label)
        return "gst", _gst_reader(rest.strip(), f"GStreamer pipeline {label}", timeout_s), None
    raise InvalidSourceError(f"unknown source scheme '{scheme}://' in {label!r}; supported: {_SUPPORTED_HELP}")


def _gst_reader(pipeline: str, describe: str, timeout_s: float) -> _Reader:
    return _CaptureReader(
        pipeline,
        api="CAP_GSTREAMER",
        describe=describe,
        unavailable=f"GStreamer could not start the pipeline {pipeline!r} (a missing element, a busy or absent camera)",
        live=True,
        timeout_s=timeout_s,
    )


def _camera_reader(
    device: int | str, *, label: str, fps: float | None, timeout_s: float, options: dict[str, str] | None = None
) -> _Reader:
    options = options or {}
    if isinstance(device, int) and device < 0:
        raise InvalidSourceError(f"a camera index is >= 0, got {device}")
    path = f"/dev/video{device}" if isinstance(device, int) else device
    if sys.platform.startswith("linux") and not Path(path).exists():
        cameras = sorted(glob.glob("/dev/video*"), key=_natural_key)
        raise SourceUnavailableError(
            f"camera {label}: no such device {path} (video devices here: {', '.join(cameras) or 'none'})"
        )
    props: list[tuple[str, float]] = []
    if "fourcc" in options:
        code = options["fourcc"]
        if len(code) != 4:
            raise InvalidSourceError(f"{label}: fourcc is 4 characters (MJPG, YUYV), got {code!r}")
        props.append(("CAP_PROP_FOURCC", _cv2().VideoWriter.fourcc(*code)))
    for key, prop in (("width", "CAP_PROP_FRAME_WIDTH"), ("height", "CAP_PROP_FRAME_HEIGHT")):
        if key in options:
            props.append((prop, _int_option(options, key, 0, label)))
    if fps is not None:
        props.append(("CAP_PROP_FPS", fps))
    return _CaptureReader(
        device,
        api="CAP_V4L2" if sys.platform.startswith("linux") and _opencv_has("v4l/v4l2") else "CAP_ANY",
        describe=f"camera {label}",
        unavailable=f"{path} exists but cannot be opened (in use by another program, no permission, or not a capture device)",
        live=True,
        timeout_s=timeout_s,
        props=tuple(props),
    )


def _path_reader(text: str, *, label: str, fps: float | None, timeout_s: float) -> tuple[str, _Reader, float | None]:
    path = Path(text).expanduser()
    folder_fps = fps or _FOLDER_FPS
    if glob.has_magic(text):
        matches = sorted((Path(p) for p in glob.glob(str(path), recursive=True)), key=lambda p: _natural_key(str(p)))
        images = [p for p in matches if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS]
        if not images:
            raise SourceUnavailableError(
                f"{label}: the pattern matches {len(matches)} paths and no image "
                f"({', '.join(sorted(IMAGE_EXTENSIONS))})"
            )
        return "folder", _ImagesReader(images, describe=f"images {label}", fps=folder_fps), folder_fps
    if path.is_dir():
        images = sorted(
            (p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS),
            key=lambda p: _natural_key(p.name),
        )
        if not images:
            raise SourceUnavailableError(f"{label}: the folder has no images ({', '.join(sorted(IMAGE_EXTENSIONS))})")
        return "folder", _ImagesReader(images, describe=f"image folder {label}", fps=folder_fps), folder_fps
    if not path.exists():
        hint = f" (not a URI either: supported are {_SUPPORTED_HELP})" if ":" in text else ""
        raise SourceUnavailableError(f"no such file or folder: {str(path)!r}{hint}")
    if path.suffix.lower() in IMAGE_EXTENSIONS:
        return "folder", _ImagesReader([path], describe=f"image {label}", fps=folder_fps), folder_fps
    reader = _CaptureReader(
        str(path),
        api="CAP_FFMPEG" if _opencv_has("FFMPEG") else "CAP_ANY",
        describe=f"video file {label}",
        unavailable=(
            f"OpenCV ({'FFmpeg' if _opencv_has('FFMPEG') else 'no FFmpeg'}) cannot read it as a video "
            f"({path.stat().st_size} bytes: not a video, corrupt, or a codec this build lacks)"
        ),
        live=False,
        timeout_s=timeout_s,
    )
    return "file", reader, fps


def _split_query(rest: str, scheme: str, label: str) -> tuple[str, dict[str, str]]:
    """'/dev/video0?width=640' -> ('/dev/video0', {'width': '640'}), checking the option names."""
    target, _, query = rest.partition("?")
    options = dict(parse_qsl(query, keep_blank_values=True))
    allowed = _CAMERA_OPTIONS[scheme]
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise InvalidSourceError(f"{label}: unknown option(s) {', '.join(unknown)}; {scheme}:// takes {', '.join(allowed)}")
    return unquote(target), options


def _int_option(options: dict[str, str], key: str, default: int, label: str) -> int:
    if key not in options:
        return default
    try:
        return int(options[key])
    except ValueError:
        raise InvalidSourceError(f"{label}: {key} must be an integer, got {options[key]!r}") from None


def _option_fps(fps: float | None, options: dict[str, str], label: str) -> float | None:
    if "fps" not in options:
        return fps
    if fps is not None:
        raise InvalidSourceError(f"{label}: fps is given twice (fps={fps} and ?fps={options['fps']}); give one")
    try:
        value = float(options["fps"])
    except ValueError:
        raise InvalidSourceError(f"{label}: fps must be a number, got {options['fps']!r}") from None
    if value <= 0:
        raise InvalidSourceError(f"{label}: fps must be > 0, got {value}")
    return value


def _no_fps(fps: float | None, label: str, what: str) -> None:
    if fps is not None:
        raise InvalidSourceError(f"{label}: fps does not apply to {what}: it runs at the sender's rate")


def _mask_password(uri: str) -> str:
    """The URI with the password of its user info replaced by ***."""
    return re.sub(r"^([A-Za-z][A-Za-z0-9+.-]*://[^/@:]*:)[^/@]*@", r"\1***@", uri)


def _natural_key(text: str) -> list[tuple[int, int | str]]:
    """Sort key that puts frame2 before frame10."""
    return [(0, int(part)) if part.isdigit() else (1, part) for part in re.split(r"(\d+)", text) if part]
