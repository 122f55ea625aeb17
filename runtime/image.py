"""Images in, ``pixel_values`` out: loading and preprocessing equal to Hugging Face image processors.

The reference is the PIL backend of transformers' image processors (``BlipImageProcessorPil``,
``CLIPImageProcessorPil``, ...; without torchvision, ``BlipImageProcessor`` is that class). It
converts the input to an RGB uint8 array, resizes it with Pillow, center-crops it (padding with
zeros where the crop is larger than the image), then rescales in float64, casts to float32 and
normalizes in float32. This module takes the same steps with the same libraries, so its output
equals the processor's bit for bit on the same input (the tests hold it to 1e-5).

Typical use::

    spec = pack.component("caption").image          # an ImagePreprocessing from the manifest
    pixel_values = preprocess([frame, "door.jpg"], spec)   # float32 [2, 3, H, W]

Frames from OpenCV are BGR: give them as ``frame[..., ::-1]`` (or ``cv2.cvtColor(frame,
cv2.COLOR_BGR2RGB)``); arrays are always read as RGB.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import ImageError, ManifestError
from .pack import ImagePreprocessing

__all__ = ["MIN_IMAGE_SIZE", "RESAMPLE_FILTERS", "ImageInput", "load_image", "preprocess", "resized_size"]

ImageInput = str | os.PathLike[str] | Image.Image | np.ndarray
"""A path to an image file, a PIL image, or a uint8 array (H, W), (H, W, 1), (H, W, 3) RGB or (H, W, 4) RGBA."""

MIN_IMAGE_SIZE = 2
"""Smallest height and width accepted. A 1-pixel-high or -wide picture carries nothing a model can
use, and transformers has no consistent answer to match for it: it guesses the channel axis of an
array from its shape, and reads an (1, W, 3) array as one channel of W x 3 pixels."""

RESAMPLE_FILTERS: dict[str, Image.Resampling] = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
    "box": Image.Resampling.BOX,
}
"""The ``ImagePreprocessing.resample`` names and the Pillow filters they stand for."""

_SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I;16S", "I;16LS", "I;16BS")
_WIDE_MODES = {"I": "32-bit integer", "F": "32-bit float"}
_MODE_KINDS = {"RGB": "RGB", "RGBA": "RGBA", "LA": "grayscale + alpha", "L": "grayscale"}


def load_image(image: ImageInput, *, apply_exif_orientation: bool = False) -> np.ndarray:
    """Reads an image as an RGB uint8 array, converting it the way transformers' processors do.

    Conversion follows ``transformers.image_transforms.convert_to_rgb`` (transformers 5.x):

    - Transparency is composited onto white: a PIL image with an alpha band or a ``transparency``
      entry (palette or colour-key PNGs) is converted to RGBA and alpha-composited over an opaque
      white background; an (H, W, 4) array gets ``round(a/255 * rgb + (1 - a/255) * 255)``. The
      two formulas agree for every (value, alpha) pair. (Older transformers and PIL's plain
      ``convert("RGB")`` dropped alpha instead, which turns transparent regions into whatever
      colour they happen to store, often black.)
    - Grayscale (PIL "L", "1", an (H, W) or (H, W, 1) array) is repeated into three channels;
      palette and CMYK images go through PIL's ``convert("RGB")``.
    - EXIF orientation is not applied by default: the processors take pixels as stored, so a
      phone photo tagged "rotate 90" reaches the model sideways there too, and matching them is
      what keeps a pack equal to its source model. ``apply_exif_orientation=True`` rotates first,
      as ``transformers.image_utils.load_image`` (used by the pipelines) does.

    Refused, with an :class:`ImageError` saying what was expected and what was found: missing,
    empty or undecodable files; more than 8 bits per channel (16-bit PNG/TIFF, uint16 arrays,
    32-bit integer or float images: Pillow's conversion clips 16-bit gray at 255, transformers
    refuses such arrays, and 16-bit RGB is cut to its high byte on decoding, so no answer is
    right without knowing the data's range); images smaller than 2x2 pixels; arrays of another
    dtype, rank or channel count.

    Args:
        image: a path to an image file; a PIL image; or a uint8 array, shape (H, W) grayscale,
            (H, W, 1) grayscale, (H, W, 3) RGB or (H, W, 4) RGBA. Arrays are channels-last and
            RGB; OpenCV's BGR frames must be flipped first (``frame[..., ::-1]``).
        apply_exif_orientation: rotate/flip by the EXIF orientation tag of a file or PIL image.

    Returns:
        np.ndarray, shape (H, W, 3), uint8, RGB, C-contiguous. An input that already is such an
        array is returned as is (no copy).

    Raises:
        ImageError: the input cannot be read or is not an 8-bit picture of at least 2x2 pixels.
    """
    if isinstance(image, np.ndarray):
        return _array_to_rgb(image)
    if isinstance(image, Image.Image):
        return _pil_to_rgb(image, "PIL image", apply_exif_orientation=apply_exif_orientation)
    if isinstance(image, (str, os.PathLike)):
        path = Path(image)
        with _open_file(path) as opened:
            return _pil_to_rgb(opened, f"image file {path}", apply_exif_orientation=apply_exif_orientation)
    raise ImageError(
        f"expected an image as a path, a PIL.Image.Image or a numpy array, got {type(image).__module__}.{type(image).__qualname__}"
    )


def resized_size(height: int, width: int, spec: ImagePreprocessing) -> tuple[int, int]:
    """The (height, width) an image of ``height`` x ``width`` is resized to, before any crop.

    "shortest_edge" follows ``transformers.image_transforms.get_resize_output_image_size`` with
    ``default_to_square=False``: the shorter side becomes ``resize_size[0]`` and the longer one
    ``int(shortest_edge * long / short)`` (truncated, as there).
    """
    _check_spec(spec)
    if spec.resize == "stretch":
        return spec.resize_size
    target = spec.resize_size[0]
    short, long = (width, height) if width <= height else (height, width)
    new_long = int(target * long / short)
    return (new_long, target) if width <= height else (target, new_long)


def preprocess(images: ImageInput | Sequence[ImageInput], spec: ImagePreprocessing) -> np.ndarray:
    """Turns images into model input, equal to the source model's image processor.

    Each image is loaded with :func:`load_image`, resized with Pillow (the filter named by
    ``spec.resample``) to ``spec.resize_size`` ("stretch") or so that its shortest edge is
    ``spec.resize_size[0]`` ("shortest_edge"), center-cropped to ``spec.size`` when
    ``spec.crop == "center"`` (padding with zeros, before normalization, where the crop is larger
    than the image: transformers' ``center_crop``), put in ``spec.channel_order``, then
    ``(float32(float64(x) * rescale_factor) - mean) / std`` in float32. ``mean`` and ``std`` are
    read in the model's channel order.

    Args:
        images: one image or a sequence of images of any sizes, each anything :func:`load_image`
            accepts; or a uint8 batch array, shape (n, H, W, 3), RGB.
        spec: the component's image preprocessing (``Component.image``).

    Returns:
        np.ndarray, shape (n, 3, spec.size[0], spec.size[1]), float32, channels in
        ``spec.channel_order``. ``n`` is 1 for a single image.

    Raises:
        ImageError: an image cannot be used (see :func:`load_image`).
        ManifestError: ``spec`` is inconsistent (e.g. "shortest_edge" without a center crop,
            which would give every image its own size).
    """
    _check_spec(spec)
    batch = _as_batch(images)
    height, width = spec.size
    out = np.empty((len(batch), 3, height, width), dtype=np.float32)
    mean = np.asarray(spec.mean, dtype=np.float32)
    std = np.asarray(spec.std, dtype=np.float32)
    for index, image in enumerate(batch):
        rgb = load_image(image)
        resized = _resize(rgb, resized_size(rgb.shape[0], rgb.shape[1], spec), spec.resample)
        cropped = _center_crop(resized, spec.size) if spec.crop == "center" else resized
        if spec.channel_order == "bgr":
            cropped = cropped[..., ::-1]
        # The processors rescale in float64 and cast to float32 before normalizing in float32;
        # doing the same steps in the same dtypes is what makes the results equal, not just close.
        scaled = (cropped.astype(np.float64) * spec.rescale_factor).astype(np.float32)
        out[index] = ((scaled - mean) / std).transpose(2, 0, 1)
    return out


# --- loading ---------------------------------------------------------------------------------


@contextmanager
def _open_file(path: Path) -> Iterator[Image.Image]:
    """Opens an image file with Pillow, turning every way it can fail into an ImageError."""
    if not path.exists():
        raise ImageError(f"image file {path}: expected an image file there, found nothing (no such file)")
    if not path.is_file():
        raise ImageError(f"image file {path}: expected an image file, found a directory or special file")
    if path.stat().st_size == 0:
        raise ImageError(f"image file {path}: expected an image, found an empty file (0 bytes)")
    try:
        image = Image.open(path)
    except UnidentifiedImageError as exc:
        raise ImageError(
            f"image file {path}: expected an image Pillow can decode (JPEG, PNG, ...), "
            f"found data it cannot identify (corrupt, or not an image): {exc}"
        ) from exc
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise ImageError(f"image file {path}: cannot be read as an image: {exc}") from exc
    with image:
        yield image


def _pil_to_rgb(image: Image.Image, what: str, *, apply_exif_orientation: bool) -> np.ndarray:
    _check_pil_depth(image, what)
    try:
        if apply_exif_orientation:
            transposed = ImageOps.exif_transpose(image)
            image = transposed if transposed is not None else image
        # Same test and steps as transformers.image_transforms.convert_to_rgb.
        has_alpha = "A" in image.getbands() or image.info.get("transparency") is not None
        if has_alpha:
            rgba = image.convert("RGBA")
            background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            rgb = Image.alpha_composite(background, rgba).convert("RGB")
        else:
            rgb = image.convert("RGB")
        array = np.asarray(rgb)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        # Truncated or damaged data surfaces only when the pixels are decoded.
        raise ImageError(f"{what}: expected a decodable image, found corrupt or truncated data: {exc}") from exc
    _check_size(array.shape[0], array.shape[1], what)
    return np.ascontiguousarray(array)


def _check_pil_depth(image: Image.Image, what: str) -> None:
    # Pillow decodes 16-bit RGB(A) PNG/TIFF into 8-bit modes and says so only in the tile's raw
    # mode (e.g. "RGB;16B"), which is there until the pixels are loaded.
    rawmode = ""
    for tile in getattr(image, "tile", None) or ():
        args = tile[3] if len(tile) > 3 else None
        if isinstance(args, tuple) and args:
            args = args[0]
        if isinstance(args, str) and ";16" in args:
            rawmode = args
    if rawmode or image.mode in _SIXTEEN_BIT_MODES:
        kind = _MODE_KINDS.get(image.mode, "grayscale" if image.mode.startswith("I") else image.mode)
        stored = f", stored as {rawmode}" if rawmode and image.mode not in _SIXTEEN_BIT_MODES else ""
        raise ImageError(
            f"{what}: expected 8 bits per channel, got 16-bit {kind} (PIL mode {image.mode}{stored}); "
            "convert it to 8-bit first"
        )
    if image.mode in _WIDE_MODES:
        raise ImageError(
            f"{what}: expected 8 bits per channel, got {_WIDE_MODES[image.mode]} pixels (PIL mode {image.mode}); "
            "convert it to 8-bit first"
        )


def _array_to_rgb(array: np.ndarray) -> np.ndarray:
    what = "image array"
    if array.dtype == np.uint16:
        raise ImageError(
            f"{what}: expected 8 bits per channel (uint8), got 16-bit (uint16) shape {array.shape}; "
            "convert it to 8-bit first (e.g. (array >> 8).astype(np.uint8))"
        )
    if array.dtype != np.uint8:
        raise ImageError(
            f"{what}: expected dtype uint8 (0..255), got {array.dtype} shape {array.shape}; "
            "scale it to 0..255 and convert with .astype(np.uint8)"
        )
    if array.ndim == 2:
        _check_size(array.shape[0], array.shape[1], what)
        return np.ascontiguousarray(np.repeat(array[:, :, None], 3, axis=2))
    if array.ndim != 3:
        raise ImageError(
            f"{what}: expected shape (H, W), (H, W, 1), (H, W, 3) or (H, W, 4), got {array.ndim} dimensions {array.shape}"
        )
    channels = array.shape[2]
    if channels not in (1, 3, 4):
        hint = "; channels-first arrays must be transposed to (H, W, C)" if array.shape[0] in (1, 3, 4) else ""
        raise ImageError(f"{what}: expected 1, 3 or 4 channels in the last axis, got {channels} (shape {array.shape}){hint}")
    _check_size(array.shape[0], array.shape[1], what)
    if channels == 1:
        return np.ascontiguousarray(np.repeat(array, 3, axis=2))
    if channels == 4:
        # transformers' convert_to_rgb for arrays, step for step (float64, round half to even).
        alpha = array[..., 3:4] / 255
        return np.round(alpha * array[..., :3] + (1 - alpha) * 255).astype(np.uint8)
    return np.ascontiguousarray(array)


def _check_size(height: int, width: int, what: str) -> None:
    if height < MIN_IMAGE_SIZE or width < MIN_IMAGE_SIZE:
        raise ImageError(
            f"{what}: expected at least {MIN_IMAGE_SIZE}x{MIN_IMAGE_SIZE} pixels, got {height}x{width} (height x width)"
        )


def _as_batch(images: ImageInput | Sequence[ImageInput]) -> Sequence[ImageInput]:
    if isinstance(images, np.ndarray):
        if images.ndim == 4:
            return list(images)
        return [images]
    if isinstance(images, (str, os.PathLike, Image.Image)):
        return [images]
    if isinstance(images, Sequence):
        return images
    raise ImageError(
        "expected an image or a sequence of images (paths, PIL images or arrays), "
        f"got {type(images).__module__}.{type(images).__qualname__}"
    )


# --- preprocessing ---------------------------------------------------------------------------


def _check_spec(spec: ImagePreprocessing) -> None:
    if spec.resample not in RESAMPLE_FILTERS:
        raise ManifestError(f"image preprocessing: resample must be one of {sorted(RESAMPLE_FILTERS)}, got {spec.resample!r}")
    if spec.resize not in ("stretch", "shortest_edge"):
        raise ManifestError(f"image preprocessing: resize must be 'stretch' or 'shortest_edge', got {spec.resize!r}")
    if spec.crop not in ("none", "center"):
        raise ManifestError(f"image preprocessing: crop must be 'none' or 'center', got {spec.crop!r}")
    if spec.channel_order not in ("rgb", "bgr"):
        raise ManifestError(f"image preprocessing: channel_order must be 'rgb' or 'bgr', got {spec.channel_order!r}")
    if spec.resize == "shortest_edge":
        if spec.resize_size[0] != spec.resize_size[1]:
            raise ManifestError(
                f"image preprocessing: resize 'shortest_edge' expects resize_size (edge, edge), got {spec.resize_size}"
            )
        if spec.crop != "center":
            raise ManifestError(
                "image preprocessing: resize 'shortest_edge' without a center crop gives every image its own size; "
                f"expected crop 'center' to reach size {spec.size}, got crop {spec.crop!r}"
            )
    elif spec.crop == "none" and spec.resize_size != spec.size:
        raise ManifestError(
            f"image preprocessing: without a crop the resized image is the model input, so resize_size should equal "
            f"size {spec.size}, got {spec.resize_size}"
        )


def _resize(rgb: np.ndarray, size: tuple[int, int], resample: str) -> np.ndarray:
    """Pillow resize of an (H, W, 3) uint8 array to ``size`` (height, width), as the processors call it."""
    height, width = size
    resized = Image.fromarray(rgb).resize((width, height), resample=RESAMPLE_FILTERS[resample])
    return np.asarray(resized)


def _center_crop(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """transformers' ``center_crop``: out[i, j] = image[top + i, left + j], zero outside the image.

    ``top = (H - crop_h) // 2`` (floor, also when negative), likewise ``left``; this is the same
    window its pad-then-crop code takes, written once.
    """
    height, width = image.shape[:2]
    crop_h, crop_w = size
    top = (height - crop_h) // 2
    left = (width - crop_w) // 2
    if top >= 0 and left >= 0:
        return image[top : top + crop_h, left : left + crop_w]
    out = np.zeros((crop_h, crop_w, image.shape[2]), dtype=image.dtype)
    src_top, src_left = max(top, 0), max(left, 0)
    src_bottom, src_right = min(top + crop_h, height), min(left + crop_w, width)
    out[src_top - top : src_bottom - top, src_left - left : src_right - left] = image[src_top:src_bottom, src_left:src_right]
    return out
