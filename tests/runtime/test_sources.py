"""Sources by URI, on real parts: video files, image folders, an MJPEG server and an RTSP server.

The servers run on 127.0.0.1 only: MJPEG from an http.server thread (tests/servers/mjpeg.py),
RTSP from Debian's gst-rtsp-server in a system-Python subprocess (tests/servers/rtsp.py). Frames
of the generated clip, the folders and the MJPEG stream carry their number in their pixels, so
the tests check which frame arrived, not only that one did. No Jetson here: the CSI camera is
checked through the pipeline it builds; reading one is left to a Jetson.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgemm.errors import SourceError
from edgemm.runtime import sources
from edgemm.runtime.sources import (
    Frame,
    GStreamerUnavailableError,
    InvalidSourceError,
    ReconnectPolicy,
    SourceDisconnected,
    SourceDisconnectedError,
    SourceEvent,
    SourceReconnected,
    SourceUnavailableError,
    csi_pipeline,
    open_source,
)
from tests.media import opencv_sample
from tests.servers.mjpeg import MjpegServer, counter_frame, read_counter
from tests.servers.rtsp import RtspServer

CLIP_FRAMES = 20
CLIP_FPS = 20.0
FAST_RECONNECT = ReconnectPolicy(initial_delay_s=0.1, max_delay_s=0.5)


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 1 s MJPG/AVI clip, 20 frames of 160x120 at 20 fps; frame i shows the number i."""
    path = tmp_path_factory.mktemp("clip") / "counter.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), CLIP_FPS, (160, 120))
    assert writer.isOpened()
    for number in range(CLIP_FRAMES):
        writer.write(counter_frame(number))
    writer.release()
    return path


@pytest.fixture
def mjpeg() -> Iterator[MjpegServer]:
    with MjpegServer(fps=20) as server:
        yield server


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _source_threads() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name.startswith("edgemm-source:")]


class _Events:
    """Collects a source's events and lets a test wait for one kind."""

    def __init__(self) -> None:
        self.events: list[SourceEvent] = []
        self._cond = threading.Condition()

    def __call__(self, event: SourceEvent) -> None:
        with self._cond:
            self.events.append(event)
            self._cond.notify_all()

    def wait_for(self, kind: type, timeout_s: float) -> SourceEvent:
        with self._cond:
            assert self._cond.wait_for(lambda: any(isinstance(e, kind) for e in self.events), timeout_s), (
                f"no {kind.__name__} within {timeout_s} s; events: {self.events}"
            )
            return next(e for e in self.events if isinstance(e, kind))


# --- files and folders --------------------------------------------------------------------------


def test_video_file_with_realtime_false_delivers_every_frame_as_rgb() -> None:
    path = opencv_sample("vtest.avi")  # 795 frames, 768x576, 10 fps
    with open_source(path, realtime=False) as source:
        assert source.kind == "file" and not source.live
        frames = list(source)
        stats = source.stats()

    assert len(frames) == 795
    assert [f.index for f in frames] == list(range(795))
    times = np.array([f.time_s for f in frames])
    assert np.all(np.diff(times) > 0)
    np.testing.assert_allclose(times, np.arange(795) / 10, atol=1e-6)  # the media position
    assert all(f.source == str(path) for f in frames)
    assert (stats.captured, stats.delivered, stats.dropped, stats.failed_reads) == (795, 795, 0, 0)
    assert stats.nominal_fps == pytest.approx(10.0)

    first = frames[0].image
    assert first.shape == (576, 768, 3) and first.dtype == np.uint8 and first.flags.c_contiguous
    assert not first.flags.writeable
    capture = cv2.VideoCapture(str(path))
    ok, bgr = capture.read()
    capture.release()
    assert ok
    np.testing.assert_array_equal(first, bgr[..., ::-1])  # RGB, converted once from OpenCV's BGR


def test_video_file_plays_at_its_native_rate(clip: Path) -> None:
    started = time.monotonic()
    with open_source(f"file://{clip}") as source:
        frames = list(source)
        stats = source.stats()
    elapsed = time.monotonic() - started

    duration = CLIP_FRAMES / CLIP_FPS
    assert 0.8 * duration <= elapsed < duration + 3  # paced, not decoded as fast as possible
    assert len(frames) + stats.dropped == CLIP_FRAMES
    for frame in frames:
        assert read_counter(frame.image) == frame.index
        assert frame.time_s == pytest.approx(frame.index / CLIP_FPS)
    walls = [f.wall_time for f in frames]
    assert walls[-1] - walls[0] >= 0.6 * duration


def test_loop_starts_the_file_again_with_time_still_increasing(clip: Path) -> None:
    with open_source(clip, realtime=False, loop=True) as source:
        frames = [source.read(timeout_s=5) for _ in range(2 * CLIP_FRAMES + 10)]
    assert all(frame is not None for frame in frames)
    got = [f for f in frames if f is not None]
    assert [f.index for f in got] == list(range(len(got)))
    assert [read_counter(f.image) for f in got] == [i % CLIP_FRAMES for i in range(len(got))]
    times = np.array([f.time_s for f in got])
    assert np.all(np.diff(times) > 0)
    assert got[CLIP_FRAMES].time_s == pytest.approx(CLIP_FRAMES / CLIP_FPS)


def test_image_folder_in_natural_order_paced_at_fps(tmp_path: Path) -> None:
    numbers = [1, 2, 10, 11]
    for number in numbers:
        cv2.imwrite(str(tmp_path / f"frame{number}.png"), counter_frame(number))
    (tmp_path / "notes.txt").write_text("not an image")

    started = time.monotonic()
    with open_source(tmp_path, fps=10) as source:
        assert source.kind == "folder"
        frames = list(source)
    elapsed = time.monotonic() - started
    assert [read_counter(f.image) for f in frames] == numbers  # frame2 before frame10
    assert [f.time_s for f in frames] == pytest.approx([0.0, 0.1, 0.2, 0.3])
    assert elapsed >= 0.25

    with open_source(f"file://{tmp_path}/frame1*.png", realtime=False) as source:
        assert [read_counter(f.image) for f in source] == [1, 10, 11]
    with open_source(tmp_path / "frame2.png", realtime=False) as source:
        assert [read_counter(f.image) for f in source] == [2]


def test_a_slow_reader_gets_the_newest_frame_and_drops_are_counted(clip: Path) -> None:
    """One frame waits at most: the capture thread replaces it, counts a drop, and keeps no queue."""
    seen: list[Frame] = []
    with open_source(clip) as source:  # 20 fps, real time
        for frame in source:
            seen.append(frame)
            stats = source.stats()
            assert 0 <= stats.captured - stats.delivered - stats.dropped <= 1
            time.sleep(0.2)
        stats = source.stats()

    assert stats.captured == CLIP_FRAMES
    assert stats.dropped >= CLIP_FRAMES // 2
    assert stats.delivered == len(seen) and stats.delivered + stats.dropped == CLIP_FRAMES
    steps = np.diff([f.index for f in seen])
    assert np.all(steps >= 1) and steps.max() >= 3  # index jumps over the frames it missed
    assert all(read_counter(f.image) == f.index for f in seen)
    assert seen[-1].index == CLIP_FRAMES - 1  # the newest frame, not the oldest unread one


# --- MJPEG over HTTP --------------------------------------------------------------------------


@pytest.mark.parametrize("content_length", [True, False], ids=["with-length", "boundary-only"])
def test_mjpeg_stream_frames_arrive(content_length: bool) -> None:
    with MjpegServer(fps=25, content_length=content_length) as server, open_source(server.url, timeout_s=5) as source:
        assert source.kind == "http" and source.live
        frames = [source.read(timeout_s=5) for _ in range(6)]
        stats = source.stats()
    got = [f for f in frames if f is not None]
    assert len(got) == 6
    assert all(f.image.shape == (120, 160, 3) and f.image.dtype == np.uint8 for f in got)
    counters = [read_counter(f.image) for f in got]
    assert counters == sorted(counters) and len(set(counters)) == 6
    assert [f.index for f in got] == sorted(f.index for f in got)
    assert stats.connected and stats.fps > 0 and stats.failed_reads == 0
    assert not _source_threads()


def test_mjpeg_server_restarted_mid_stream_reconnects_and_frames_continue() -> None:
    events = _Events()
    server = MjpegServer(fps=20).start()
    try:
        with open_source(server.url, timeout_s=3, reconnect=FAST_RECONNECT) as source:
            source.on_event(events)
            before = [source.read(timeout_s=5) for _ in range(3)]
            assert all(f is not None for f in before)

            server.stop()  # closes the client's connection, as a camera reboot does
            lost = events.wait_for(SourceDisconnected, timeout_s=5)
            assert not source.stats().connected
            server = MjpegServer(server.port, fps=20, first_number=1000).start()
            back = events.wait_for(SourceReconnected, timeout_s=10)

            after = [source.read(timeout_s=5) for _ in range(3)]
            stats = source.stats()
    finally:
        server.stop()

    assert isinstance(lost, SourceDisconnected) and lost.source == source.name and "closed" in lost.reason
    assert isinstance(back, SourceReconnected) and back.attempt >= 1 and back.offline_s > 0
    assert back.time_s > lost.time_s
    assert stats.reconnects == 1
    got = [f for f in after if f is not None]
    assert len(got) == 3 and all(read_counter(f.image) >= 1000 for f in got)  # from the new server
    assert got[0].index > max(f.index for f in before if f is not None)


def test_a_stalled_mjpeg_stream_counts_as_dropped_after_timeout_s() -> None:
    events = _Events()
    with MjpegServer(fps=20) as server, open_source(server.url, timeout_s=1, reconnect=FAST_RECONNECT) as source:
        source.on_event(events)
        assert source.read(timeout_s=5) is not None
        server.paused.set()  # connected, silent
        lost = events.wait_for(SourceDisconnected, timeout_s=5)
        server.paused.clear()
        events.wait_for(SourceReconnected, timeout_s=10)
        assert source.read(timeout_s=5) is not None
    assert isinstance(lost, SourceDisconnected) and "timed out" in lost.reason


def test_mjpeg_source_that_stays_down_raises_disconnected_after_its_attempts() -> None:
    server = MjpegServer(fps=20).start()
    source = open_source(server.url, timeout_s=2, reconnect=ReconnectPolicy(0.1, 0.2, max_attempts=2))
    with source:
        assert source.read(timeout_s=5) is not None
        server.stop()
        started = time.monotonic()
        with pytest.raises(SourceDisconnectedError, match="not back after 2 reconnect attempts"):
            list(source)  # the frames left, then the error
        assert time.monotonic() - started < 10
    assert source.ended and source.read() is None


def test_close_is_bounded_and_ends_a_blocked_reader(mjpeg: MjpegServer) -> None:
    source = open_source(mjpeg.url, timeout_s=5).start()
    results: list[Frame | None] = []
    reader = threading.Thread(target=lambda: results.extend(iter(source)))
    reader.start()
    time.sleep(0.2)
    started = time.monotonic()
    source.close()
    reader.join(5)
    assert time.monotonic() - started < 4
    assert not reader.is_alive() and results  # iteration ended cleanly after some frames
    assert not _source_threads()
    with pytest.raises(SourceError, match="closed"):
        source.start()


# --- RTSP ----------------------------------------------------------------------------------------


def test_rtsp_server_restarted_mid_stream_reconnects_and_frames_continue() -> None:
    events = _Events()
    env_before = os.environ.get("OPENCV_FFMPEG_CAPTURE_OPTIONS")
    server = RtspServer(size=(160, 120), fps=15).start()
    try:
        with open_source(server.url, timeout_s=5, reconnect=FAST_RECONNECT) as source:
            assert os.environ.get("OPENCV_FFMPEG_CAPTURE_OPTIONS") == env_before  # set per open, restored
            source.on_event(events)
            before = [source.read(timeout_s=5) for _ in range(3)]
            assert all(f is not None and f.image.shape == (120, 160, 3) for f in before)

            port = server.port
            server.kill()  # a crash: the TCP connection drops
            events.wait_for(SourceDisconnected, timeout_s=10)
            server = RtspServer(port, size=(160, 120), fps=15).start()
            events.wait_for(SourceReconnected, timeout_s=15)

            after = [source.read(timeout_s=5) for _ in range(3)]
            stats = source.stats()
    finally:
        server.stop()

    got = [f for f in after if f is not None]
    assert len(got) == 3 and all(f.image.shape == (120, 160, 3) for f in got)
    assert got[0].index > max(f.index for f in before if f is not None)
    assert stats.reconnects == 1
    assert [type(e) for e in events.events] == [SourceDisconnected, SourceReconnected]


def test_a_stalled_rtsp_stream_is_detected_by_the_read_timeout_and_recovers() -> None:
    """FFmpeg's read timeout (CAP_PROP_READ_TIMEOUT_MSEC = timeout_s) catches a server that hangs."""
    events = _Events()
    with RtspServer(size=(160, 120), fps=15) as server, open_source(
        server.url, timeout_s=2, reconnect=FAST_RECONNECT
    ) as source:
        source.on_event(events)
        assert source.read(timeout_s=5) is not None
        server.pause()
        lost = events.wait_for(SourceDisconnected, timeout_s=10)
        server.resume()
        events.wait_for(SourceReconnected, timeout_s=15)
        assert source.read(timeout_s=5) is not None
    assert isinstance(lost, SourceDisconnected) and "no frame for" in lost.reason


# --- errors ------------------------------------------------------------------------------------


@contextmanager
def _silent_port() -> Iterator[int]:
    """A port that accepts TCP connections (the kernel's backlog) and never answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield int(sock.getsockname()[1])


def _text_mp4(tmp: Path, server: MjpegServer) -> str:
    path = tmp / "clip.mp4"
    path.write_text("this is not a video\n")
    return str(path)


def _empty_folder(tmp: Path, server: MjpegServer) -> str:
    (tmp / "empty").mkdir()
    return str(tmp / "empty")


BAD_INPUTS: list[tuple[str, Callable[[Path, MjpegServer], str | int], type[Exception], str]] = [
    ("unknown scheme", lambda tmp, s: "ftp://127.0.0.1/clip.mp4", InvalidSourceError, "supported: file://PATH"),
    ("rtsp nothing listening", lambda tmp, s: f"rtsp://127.0.0.1:{_free_port()}/x", SourceUnavailableError, "cannot open"),
    ("http nothing listening", lambda tmp, s: f"http://127.0.0.1:{_free_port()}/x", SourceUnavailableError, "cannot connect"),
    ("mjpeg 404", lambda tmp, s: f"http://127.0.0.1:{s.port}/nope", SourceUnavailableError, "HTTP 404"),
    ("text file named .mp4", _text_mp4, SourceUnavailableError, "cannot read it as a video"),
    ("missing file", lambda tmp, s: str(tmp / "missing.mp4"), SourceUnavailableError, "no such file"),
    ("folder without images", _empty_folder, SourceUnavailableError, "no images"),
    ("camera 57", lambda tmp, s: 57, SourceUnavailableError, "/dev/video57"),
    ("camera '57'", lambda tmp, s: "v4l2:///dev/video57", SourceUnavailableError, "no such device"),
    ("gst without appsink", lambda tmp, s: "gst://videotestsrc ! fakesink", InvalidSourceError, "must end in appsink"),
    ("csi bad option", lambda tmp, s: "csi://0?exposure=3", InvalidSourceError, "csi:// takes width, height"),
]


@pytest.mark.parametrize(("uri_of", "error", "message"), [case[1:] for case in BAD_INPUTS], ids=[c[0] for c in BAD_INPUTS])
def test_bad_input_raises_a_typed_error_within_its_timeout(
    tmp_path: Path,
    mjpeg: MjpegServer,
    uri_of: Callable[[Path, MjpegServer], str | int],
    error: type[Exception],
    message: str,
) -> None:
    timeout_s = 2.0
    started = time.monotonic()
    with pytest.raises(error, match=message) as raised, open_source(uri_of(tmp_path, mjpeg), timeout_s=timeout_s):
        pass
    assert isinstance(raised.value, SourceError)
    assert time.monotonic() - started < timeout_s + 5
    assert not _source_threads()


@pytest.mark.parametrize("scheme", ["http", "rtsp"])
def test_a_server_that_never_answers_fails_within_timeout(scheme: str) -> None:
    with _silent_port() as port:
        started = time.monotonic()
        with pytest.raises(SourceUnavailableError), open_source(f"{scheme}://127.0.0.1:{port}/x", timeout_s=1):
            pass
        assert time.monotonic() - started < 1 + 5


@pytest.mark.skipif(sources._opencv_has("GStreamer"), reason="this OpenCV has GStreamer")
@pytest.mark.parametrize("uri", ["csi://0", "gst://videotestsrc ! videoconvert ! appsink"])
def test_gstreamer_sources_without_gstreamer_say_how_to_get_it(uri: str) -> None:
    with pytest.raises(GStreamerUnavailableError, match="GStreamer") as raised:
        open_source(uri)
    assert "apt install python3-opencv" in str(raised.value) and "--system-site-packages" in str(raised.value)


@pytest.mark.parametrize(
    ("uri", "options", "message"),
    [
        ("rtsp://127.0.0.1:1/s", {"loop": True}, "loop=True applies to files"),
        ("http://127.0.0.1:1/s", {"realtime": False}, "realtime=False applies to files"),
        ("rtsp://127.0.0.1:1/s", {"fps": 5}, "fps does not apply"),
        ("v4l2:///dev/video0?fps=10", {"fps": 5}, "fps is given twice"),
        ("csi://0?flip=9", {}, "flip in 0..7"),
        ("", {}, "empty source URI"),
    ],
)
def test_options_that_do_not_apply_are_refused(uri: str, options: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidSourceError, match=message):
        open_source(uri, **options)


# --- pure parts ----------------------------------------------------------------------------------


def test_csi_pipeline_converts_on_the_vic_and_keeps_only_the_newest_frame() -> None:
    """No Jetson here: the pipeline string is checked, not run."""
    assert csi_pipeline() == (
        "nvarguscamerasrc sensor-id=0 ! "
        "video/x-raw(memory:NVMM),width=1920,height=1080,framerate=30/1,format=NV12 ! "
        "nvvidconv flip-method=0 ! video/x-raw,format=BGRx ! "
        "videoconvert ! video/x-raw,format=BGR ! "
        "appsink drop=1 max-buffers=1"
    )
    pipeline = csi_pipeline(1, width=1280, height=720, fps=59.94, flip=2)
    assert pipeline.startswith("nvarguscamerasrc sensor-id=1 ! ")
    assert "width=1280,height=720,framerate=59940/1000" in pipeline and "flip-method=2" in pipeline


def test_csi_uri_options_reach_the_pipeline(monkeypatch: pytest.MonkeyPatch) -> None:
    """No Jetson here: with GStreamer assumed present, the source is built but not started."""
    monkeypatch.setattr(sources, "_require_gstreamer", lambda uri: None)
    source = open_source("csi://1?width=1280&height=720&flip=2", fps=60)
    assert source.kind == "csi" and source.live
    assert source._reader._target == csi_pipeline(1, width=1280, height=720, fps=60, flip=2)


def test_reconnect_backoff_doubles_up_to_its_cap() -> None:
    policy = ReconnectPolicy(initial_delay_s=0.5, max_delay_s=5)
    assert [policy.delay_s(n) for n in range(1, 7)] == [0.5, 1, 2, 4, 5, 5]
    with pytest.raises(InvalidSourceError, match="initial_delay_s <= max_delay_s"):
        ReconnectPolicy(initial_delay_s=3, max_delay_s=1)
    with pytest.raises(InvalidSourceError, match="max_attempts"):
        ReconnectPolicy(max_attempts=-1)


def test_names_hide_passwords_and_ffmpeg_options_keep_the_users() -> None:
    assert open_source("rtsp://admin:s3cret@127.0.0.1:1/live").name == "rtsp://admin:***@127.0.0.1:1/live"
    assert open_source("rtsp://127.0.0.1:1/live", name="door").name == "door"
    merged = sources._merge_ffmpeg_options(sources.RTSP_FFMPEG_OPTIONS, "rtsp_transport;udp|stimeout;1000")
    assert merged == "rtsp_transport;udp|fflags;nobuffer|flags;low_delay|stimeout;1000"
