"""Images for calibration and validation: the user's own folder, or generated scenes."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgemm.runtime.errors import CompileError, ImageError
from edgemm.runtime.image import load_image

__all__ = ["IMAGE_SUFFIXES", "calibration_images", "synthetic_images"]

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


def synthetic_images(count: int, *, height: int = 240, width: int = 320, seed: int = 0) -> list[np.ndarray]:
    """Deterministic scenes (gradient backgrounds, noise, filled rectangles and discs).

    Returns:
        ``count`` arrays, each shape (height, width, 3), uint8, RGB.
    """
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    images = []
    for _ in range(count):
        top, bottom = rng.uniform(0, 255, size=(2, 3))
        image = top + (bottom - top) * (yy / max(height - 1, 1))[..., None]
        image += rng.normal(0, 8, size=image.shape)
        for _ in range(int(rng.integers(2, 6))):
            colour = rng.uniform(0, 255, size=3)
            cy, cx = rng.uniform(0, height), rng.uniform(0, width)
            size = rng.uniform(0.08, 0.3) * min(height, width)
            if rng.random() < 0.5:
                mask = (np.abs(yy - cy) < size) & (np.abs(xx - cx) < size * rng.uniform(0.5, 1.5))
            else:
                mask = (yy - cy) ** 2 + (xx - cx) ** 2 < size**2
            image[mask] = colour
        images.append(np.clip(image, 0, 255).astype(np.uint8))
    return images


def calibration_images(folder: str | Path, limit: int) -> list[np.ndarray]:
    """The first ``limit`` images of ``folder`` (sorted by name), as RGB uint8 arrays.

    Raises:
        CompileError: the folder is missing, has no images, or an image cannot be read (the
            message names it: calibration data is the user's and should be clean).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise CompileError(f"calibration folder {folder}: expected a directory of images, found {'a file' if folder.exists() else 'nothing'}")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise CompileError(f"calibration folder {folder}: expected images ({', '.join(IMAGE_SUFFIXES)}), found none")
    images = []
    for path in files[:limit]:
        try:
            images.append(load_image(path))
        except ImageError as exc:
            raise CompileError(f"calibration image unusable: {exc}") from exc
    return images
