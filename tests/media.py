"""Real media for the tests, fetched from Debian packages by scripts/fetch_media.sh."""

from __future__ import annotations

import re
from pathlib import Path
from typing import NamedTuple

MEDIA = Path(__file__).resolve().parents[1] / ".cache" / "media"

OPENCV_DATA = "opencv-doc/usr/share/doc/opencv-doc/examples/data"


def media(relative: str) -> Path:
    """Path of a media file under .cache/media; fails (not skips) when it was not fetched."""
    path = MEDIA / relative
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: run `bash scripts/setup.sh` (it fetches the test media)")
    return path


def opencv_sample(name: str) -> Path:
    """A sample image or video shipped by Debian's opencv-doc (e.g. 'fruits.jpg', 'vtest.avi')."""
    return media(f"{OPENCV_DATA}/{name}")


FREEDESKTOP_SOUNDS = "sound-theme-freedesktop/usr/share/sounds/freedesktop/stereo"

# Decodes an Ogg Vorbis file to 16-bit PCM WAV with GStreamer (python3-gi and
# gstreamer1.0-plugins-base, which scripts/setup.sh installs for the RTSP tests).
_GST_DECODE = """
import sys
import gi
gi.require_version("Gst", "1.0")
from gi.repository import Gst
Gst.init(None)
pipeline = Gst.parse_launch(
    "filesrc name=src ! oggdemux ! vorbisdec ! audioconvert ! audio/x-raw,format=S16LE ! wavenc ! filesink name=dst"
)
pipeline.get_by_name("src").set_property("location", sys.argv[1])
pipeline.get_by_name("dst").set_property("location", sys.argv[2])
pipeline.set_state(Gst.State.PLAYING)
message = pipeline.get_bus().timed_pop_filtered(60 * Gst.SECOND, Gst.MessageType.EOS | Gst.MessageType.ERROR)
pipeline.set_state(Gst.State.NULL)
if message is None or message.type != Gst.MessageType.EOS:
    sys.exit(f"decoding failed: {message.parse_error() if message is not None else 'timeout'}")
"""


def freedesktop_sound(name: str) -> Path:
    """An event sound of Debian's sound-theme-freedesktop (e.g. 'bell.oga', 'alarm-clock-elapsed.oga'),
    decoded once from Ogg Vorbis to a 16-bit PCM WAV under .cache/media/decoded/ (channels and rate
    kept). Decodes with ffmpeg when it is installed, else with the system python's GStreamer."""
    import shutil
    import subprocess

    source = media(f"{FREEDESKTOP_SOUNDS}/{name}")
    target = MEDIA / "decoded" / f"{Path(name).stem}.wav"
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".partial.wav")
    if shutil.which("ffmpeg"):
        command = ["ffmpeg", "-loglevel", "error", "-y", "-i", str(source), "-c:a", "pcm_s16le", str(partial)]
    else:
        command = ["/usr/bin/python3", "-c", _GST_DECODE, str(source), str(partial)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    if result.returncode != 0:
        raise RuntimeError(f"could not decode {source} ({command[0]}): {result.stderr.strip()[-500:]}")
    partial.replace(target)
    return target


LIBRIVOX = "pocketsphinx-testdata/usr/share/pocketsphinx/test/data/librivox"


class SpeechClip(NamedTuple):
    """A LibriVox recording from Debian's pocketsphinx-testdata: 16 kHz mono 16-bit WAV, one
    sentence of read speech after about 0.25 s of room tone (about -50 dBFS), speech to the end."""

    path: Path
    transcript: str


def speech_clips() -> list[SpeechClip]:
    """The LibriVox clips (2.9 to 7.1 s, 'Sense and Sensibility') with their transcripts, in file order."""
    folder = media(LIBRIVOX)
    clips = []
    for line in (folder / "transcription").read_text().splitlines():
        match = re.fullmatch(r"\s*<s>\s*(.*?)\s*</s>\s*\((\S+)\)\s*", line)
        if match:
            clips.append(SpeechClip(media(f"{LIBRIVOX}/{match.group(2)}.wav"), match.group(1)))
    if not clips:
        raise FileNotFoundError(f"{folder / 'transcription'} lists no clips")
    return clips


def librivox_clip(number: str = "0880") -> SpeechClip:
    """One LibriVox clip by its number: '0870' (7.1 s), '0880' (3.0 s), '0890' (5.3 s),
    '0920' (6.1 s) or '0930' (3.3 s)."""
    for clip in speech_clips():
        if clip.path.stem.endswith(f"-{number}"):
            return clip
    raise FileNotFoundError(f"no LibriVox clip numbered {number!r} in {media(LIBRIVOX)}")
