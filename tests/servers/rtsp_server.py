"""A small RTSP server for the source tests: GStreamer's gst-rtsp-server serving videotestsrc.

Run with the SYSTEM Python (``/usr/bin/python3``), which has the GObject bindings; the venv does
not. Needs the Debian packages python3-gi, gir1.2-gst-rtsp-server-1.0, gstreamer1.0-plugins-base
and gstreamer1.0-plugins-good (jpegenc, rtpjpegpay). The stream is RTP/JPEG, so no H.264 encoder
(x264, plugins-ugly) is needed, and FFmpeg decodes it as MJPEG.

Usage::

    /usr/bin/python3 tests/servers/rtsp_server.py [PORT] [--width W] [--height H] [--fps N]

Listens on 127.0.0.1 only (PORT 0 picks a free port), serves ``rtsp://127.0.0.1:PORT/test``
and prints ``READY <port>`` on stdout once it listens. Stops on SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import signal
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402

MOUNT = "/test"


def main(argv: list[str] | None = None) -> int:
    """Serves the test stream until SIGTERM/SIGINT; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("port", type=int, nargs="?", default=0)
    parser.add_argument("--width", type=int, default=160)
    parser.add_argument("--height", type=int, default=120)
    parser.add_argument("--fps", type=int, default=15)
    args = parser.parse_args(argv)

    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(args.port))
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(
        f"( videotestsrc is-live=true pattern=ball ! video/x-raw,format=I420,width={args.width},height={args.height},"
        f"framerate={args.fps}/1 ! jpegenc quality=80 ! rtpjpegpay name=pay0 pt=26 )"
    )
    factory.set_shared(True)
    server.get_mount_points().add_factory(MOUNT, factory)
    if server.attach(None) == 0:
        print(f"cannot listen on 127.0.0.1:{args.port}", file=sys.stderr, flush=True)
        return 1

    loop = GLib.MainLoop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        GLib.unix_signal_add(GLib.PRIORITY_HIGH, signum, loop.quit)
    print(f"READY {server.get_bound_port()}", flush=True)
    loop.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
