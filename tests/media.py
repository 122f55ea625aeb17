"""Real media for the tests, fetched from Debian packages by scripts/fetch_media.sh."""

from __future__ import annotations

from pathlib import Path

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
