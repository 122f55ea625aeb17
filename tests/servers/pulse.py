"""A private PulseAudio daemon with a virtual microphone, for tests of real audio capture.

The daemon runs in user mode from a temporary folder (its own ``HOME`` and ``XDG_RUNTIME_DIR``,
no D-Bus, no autospawn, nothing of the machine's own sound setup): a null sink ``edgemm_sink``
(48 kHz stereo), and ``edgemm_mic``, a remap source of the sink's monitor, which is the default
source: what is played into the sink comes out of the microphone. A keep-alive ``pacat`` writes
silence into the sink so its clock and monitor run even between test sounds.

Clients reach it through ``PULSE_SERVER``; PortAudio (sounddevice) reaches it through ALSA's
``pulse`` and ``default`` devices, which libasound2-plugins (a dependency of Debian's
``pulseaudio``) provides whenever a PulseAudio server is reachable. PortAudio lists ALSA's devices
once, when it initialises: :func:`portaudio_through` sets ``PULSE_SERVER`` and re-initialises it.

Needs the Debian packages ``pulseaudio`` (with ``pulseaudio-utils``: pactl, pacat, paplay) and
``libportaudio2``.
"""

from __future__ import annotations

import os
import select
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any

from tests.servers.mosquitto import wait_until

__all__ = ["PulseAudio", "portaudio_through", "pulseaudio_binary"]

SINK = "edgemm_sink"
MIC = "edgemm_mic"


def pulseaudio_binary() -> str | None:
    """The pulseaudio executable, or None when the Debian package is not installed."""
    return shutil.which("pulseaudio")


class PulseAudio:
    """A PulseAudio daemon with a null sink and a virtual microphone fed by it.

    Args:
        sink_rate_hz: the null sink's (and so the microphone's) native rate.

    Attributes:
        server: the ``PULSE_SERVER`` value that reaches it (``unix:/tmp/.../native``).
        sink: the sink's name; :meth:`play` plays into it.
        mic: the microphone source's name (the default source).
    """

    def __init__(self, *, sink_rate_hz: int = 48000) -> None:
        binary = pulseaudio_binary()
        if binary is None:
            raise FileNotFoundError("pulseaudio is not installed (apt-get install pulseaudio)")
        self.binary = binary
        self.sink_rate_hz = sink_rate_hz
        self.sink = SINK
        self.mic = MIC
        # A short path of its own: unix socket paths are limited to 107 bytes.
        self.workdir = Path(tempfile.mkdtemp(prefix="edgemm-pulse-"))
        self.runtime_dir = self.workdir / "run"
        self.home = self.workdir / "home"
        self.socket = self.runtime_dir / "native"
        self.server = f"unix:{self.socket}"
        self.log_path = self.workdir / "pulseaudio.log"
        self._daemon: subprocess.Popen[bytes] | None = None
        self._keepalive: subprocess.Popen[bytes] | None = None
        self._log: Any = None

    def env(self) -> dict[str, str]:
        """The environment for client tools (pactl, pacat, paplay): this server, nothing else."""
        env = dict(os.environ)
        env.update(PULSE_SERVER=self.server, HOME=str(self.home), XDG_RUNTIME_DIR=str(self.runtime_dir))
        return env

    def start(self, timeout_s: float = 20.0) -> PulseAudio:
        """Starts the daemon and the keep-alive writer; returns once the microphone is there."""
        self.runtime_dir.mkdir(mode=0o700, parents=True)
        self.home.mkdir(parents=True)
        script = self.workdir / "default.pa"
        script.write_text(
            "\n".join(
                [
                    f"load-module module-native-protocol-unix socket={self.socket} auth-anonymous=1",
                    f"load-module module-null-sink sink_name={SINK} rate={self.sink_rate_hz} channels=2",
                    f"load-module module-remap-source master={SINK}.monitor source_name={MIC} "
                    "channels=2 channel_map=front-left,front-right",
                    f"set-default-sink {SINK}",
                    f"set-default-source {MIC}",
                    "",
                ]
            )
        )
        daemon_env = self.env()
        daemon_env.pop("PULSE_SERVER")
        self._log = self.log_path.open("wb")
        self._daemon = subprocess.Popen(
            [
                self.binary,
                "--daemonize=no",
                "-n",  # no default script: only the modules above
                f"--file={script}",
                "--exit-idle-time=-1",
                "--use-pid-file=no",
                "--system=no",
                "--log-target=stderr",
                "--log-level=notice",
            ],
            env=daemon_env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

        def ready() -> bool:
            if self._daemon is None or self._daemon.poll() is not None:
                return True
            probe = subprocess.run(
                ["pactl", "list", "short", "sources"], env=self.env(), capture_output=True, text=True, timeout=10
            )
            return probe.returncode == 0 and MIC in probe.stdout

        if not wait_until(ready, timeout_s, 0.1) or self._daemon.poll() is not None:
            log = self.log_path.read_text(errors="replace")[-3000:]
            self.stop()
            raise RuntimeError(f"pulseaudio did not start with its virtual microphone within {timeout_s} s: {log}")
        self._keepalive = subprocess.Popen(
            [
                "pacat",
                "--playback",
                f"--device={SINK}",
                "--raw",
                "--format=s16le",
                f"--rate={self.sink_rate_hz}",
                "--channels=2",
                "--client-name=edgemm-keepalive",
                "--latency-msec=20",
                "/dev/zero",
            ],
            env=self.env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self._wait_for_audio(timeout_s)
        return self

    def _wait_for_audio(self, timeout_s: float) -> None:
        """Returns once the microphone delivers audio to a recording client (the first recording after
        the daemon starts waits about 2 s for it; later ones start at once)."""
        recorder = subprocess.Popen(
            ["parec", f"--device={MIC}", "--raw", "--latency-msec=20", "--client-name=edgemm-probe"],
            env=self.env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        try:
            assert recorder.stdout is not None
            readable, _, _ = select.select([recorder.stdout], [], [], timeout_s)
            if not readable or not recorder.stdout.read1(4096):
                raise RuntimeError(f"the virtual microphone {MIC} gave no audio within {timeout_s} s")
        except BaseException:
            self.stop()
            raise
        finally:
            recorder.kill()
            recorder.wait()
            recorder.stdout.close()

    def play(self, path: Path) -> subprocess.Popen[bytes]:
        """Starts playing an audio file into the sink (paplay: WAV, FLAC, Ogg); returns the process."""
        return subprocess.Popen(
            ["paplay", f"--device={SINK}", "--client-name=edgemm-test", str(path)],
            env=self.env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )

    def stop(self) -> None:
        """Stops the keep-alive writer and the daemon, and removes the temporary folder."""
        for attribute in ("_keepalive", "_daemon"):
            process = getattr(self, attribute)
            setattr(self, attribute, None)
            if process is None:
                continue
            process.terminate()
            try:
                process.wait(5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
        if self._log is not None:
            self._log.close()
            self._log = None
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> PulseAudio:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None) -> None:
        self.stop()


@contextmanager
def portaudio_through(pulse: PulseAudio) -> Iterator[Any]:
    """Points PortAudio (sounddevice) at ``pulse`` for the duration; yields the sounddevice module.

    ALSA's pulse plugin connects to ``PULSE_SERVER``; PortAudio enumerates devices when it
    initialises, so it is re-initialised after the variable is set, and again afterwards so later
    tests see the machine as it was.
    """
    import sounddevice

    saved = os.environ.get("PULSE_SERVER")
    os.environ["PULSE_SERVER"] = pulse.server
    sounddevice._terminate()
    sounddevice._initialize()
    try:
        yield sounddevice
    finally:
        if saved is None:
            os.environ.pop("PULSE_SERVER", None)
        else:
            os.environ["PULSE_SERVER"] = saved
        sounddevice._terminate()
        sounddevice._initialize()
