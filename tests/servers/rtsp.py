"""Starts and stops tests/servers/rtsp_server.py (gst-rtsp-server) with the system Python."""

from __future__ import annotations

import os
import selectors
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

__all__ = ["APT_PACKAGES", "SYSTEM_PYTHON", "RtspServer"]

SYSTEM_PYTHON = "/usr/bin/python3"
"""The Python with Debian's GObject bindings (python3-gi); the venv has none."""

APT_PACKAGES = (
    "python3-gi",
    "gir1.2-gst-rtsp-server-1.0",
    "gstreamer1.0-plugins-base",
    "gstreamer1.0-plugins-good",
)
"""Debian packages the RTSP server needs (jpegenc and rtpjpegpay come from plugins-good)."""

_SCRIPT = Path(__file__).with_name("rtsp_server.py")


class RtspServer:
    """``rtsp://127.0.0.1:PORT/test``: videotestsrc as RTP/JPEG, served by a subprocess.

    Args:
        port: TCP port; 0 picks a free one (see :attr:`port` once started).
        size: frame (width, height).
        fps: frames per second.
    """

    def __init__(self, port: int = 0, *, size: tuple[int, int] = (160, 120), fps: int = 15) -> None:
        self.port = port
        self.size = size
        self.fps = fps
        self._process: subprocess.Popen[str] | None = None
        handle, name = tempfile.mkstemp(prefix="edgemm-rtsp-", suffix=".log")
        os.close(handle)
        self._log = Path(name)

    @property
    def url(self) -> str:
        """The stream's URL."""
        return f"rtsp://127.0.0.1:{self.port}/test"

    def start(self, timeout_s: float = 20.0) -> RtspServer:
        """Starts the server and waits until it listens.

        Raises:
            RuntimeError: it did not start (the message has its output and the packages it needs).
        """
        if not Path(SYSTEM_PYTHON).exists():
            raise RuntimeError(
                f"{SYSTEM_PYTHON} is missing; the RTSP test server needs it with {', '.join(APT_PACKAGES)}"
            )
        width, height = self.size
        env = {
            key: value for key, value in os.environ.items() if not key.startswith(("PYTHON", "VIRTUAL_ENV"))
        }
        with self._log.open("w") as log:
            self._process = subprocess.Popen(
                [
                    SYSTEM_PYTHON,
                    str(_SCRIPT),
                    str(self.port),
                    f"--width={width}",
                    f"--height={height}",
                    f"--fps={self.fps}",
                ],
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
                env=env,
            )
        assert self._process.stdout is not None
        deadline = time.monotonic() + timeout_s
        with selectors.DefaultSelector() as selector:
            selector.register(self._process.stdout, selectors.EVENT_READ)
            while time.monotonic() < deadline:
                if selector.select(timeout=max(0.0, deadline - time.monotonic())):
                    line = self._process.stdout.readline()
                    if line.startswith("READY "):
                        self.port = int(line.split()[1])
                        return self
                    if not line:
                        break
        exited = self._process.poll()
        self._end(signal.SIGKILL, keep_log=True)
        output = self._log.read_text()[-2000:]
        self._log.unlink(missing_ok=True)
        raise RuntimeError(
            f"the RTSP test server did not start ({f'exit status {exited}' if exited is not None else f'nothing within {timeout_s:g} s'}); it needs {SYSTEM_PYTHON} with the "
            f"Debian packages {' '.join(APT_PACKAGES)}. Its output:\n{output}"
        )

    def kill(self) -> None:
        """Kills the server at once (SIGKILL), as a crash would: clients see their connection drop."""
        self._end(signal.SIGKILL)

    def pause(self) -> None:
        """Freezes the server (SIGSTOP): connections stay open and no data comes, as a stalled camera."""
        if self._process is not None:
            self._process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """Lets a paused server run again (SIGCONT)."""
        if self._process is not None:
            self._process.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        """Stops the server (SIGTERM, then SIGKILL after 5 s)."""
        self._end(signal.SIGTERM)

    def _end(self, signum: int, *, keep_log: bool = False) -> None:
        process, self._process = self._process, None
        if not keep_log:
            self._log.unlink(missing_ok=True)
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signum)
            process.send_signal(signal.SIGCONT)  # a paused server handles its SIGTERM
            try:
                process.wait(5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
        if process.stdout is not None:
            process.stdout.close()

    def __enter__(self) -> RtspServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()
