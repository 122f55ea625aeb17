"""Image loading and preprocessing in the runtime, checked without transformers.

What is checked here is meaning on small inputs whose answer can be worked out by hand (and the
error table); equality with the Hugging Face processors themselves, on real photos, is in
tests/compile/test_preprocessing.py, which needs transformers.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from edgemm.errors import ImageError, ManifestError
from edgemm.runtime.image import load_image, preprocess, resized_size
from edgemm.runtime.pack import ImagePreprocessing
from tests.media import opencv_sample


def _spec(**changes: Any) -> ImagePreprocessing:
    values: dict[str, Any] = {
        "size": (4, 4),
        "resize": "stretch",
        "resize_size": (4, 4),
        "resample": "nearest",
        "crop": "none",
        "rescale_factor": 1 / 255,
        "mean": (0.5, 0.5, 0.5),
        "std": (0.5, 0.5, 0.5),
    }
    values.update(changes)
    return ImagePreprocessing(**values)


def _normalized(values: np.ndarray, spec: ImagePreprocessing) -> np.ndarray:
    """The processors' arithmetic on uint8 values laid out (..., 3): float64 rescale, float32 normalize."""
    scaled = (values.astype(np.float64) * spec.rescale_factor).astype(np.float32)
    return (scaled - np.asarray(spec.mean, np.float32)) / np.asarray(spec.std, np.float32)


# --- load_image ------------------------------------------------------------------------------


def test_load_image_reads_a_jpeg_as_rgb_uint8() -> None:
    path = opencv_sample("fruits.jpg")
    rgb = load_image(path)
    assert rgb.shape == (480, 512, 3)
    assert rgb.dtype == np.uint8
    assert rgb.flags.c_contiguous
    np.testing.assert_array_equal(rgb, np.asarray(Image.open(path).convert("RGB")))
    np.testing.assert_array_equal(load_image(str(path)), rgb)
    np.testing.assert_array_equal(load_image(Image.open(path)), rgb)


def test_transparent_pixels_become_white_not_the_colour_stored_under_them() -> None:
    path = opencv_sample("opencv-logo.png")  # RGBA; the colour under alpha 0 is near black
    rgba = np.asarray(Image.open(path))
    rgb = load_image(path)
    transparent = rgba[..., 3] == 0
    opaque = rgba[..., 3] == 255
    assert transparent.sum() > 1000
    assert opaque.sum() > 1000
    assert (rgb[transparent] == 255).all()
    np.testing.assert_array_equal(rgb[opaque], rgba[opaque][:, :3])
    # Dropping alpha (PIL's convert("RGB")) would have given the dark stored colour instead.
    assert rgba[transparent][:, :3].mean() < 20


def test_rgba_array_is_composited_like_the_pil_image_and_by_hand() -> None:
    values, alphas = np.meshgrid(np.arange(256), np.arange(256))
    rgba = np.stack([values, 255 - values, values // 2, alphas], axis=-1).astype(np.uint8)
    np.testing.assert_array_equal(load_image(rgba), load_image(Image.fromarray(rgba, "RGBA")))
    pixel = np.array([[[100, 0, 200, 128]] * 2] * 2, dtype=np.uint8)
    # round(128/255 * v + 127/255 * 255): 177.2 -> 177, 127.0 -> 127, 227.4 -> 227
    np.testing.assert_array_equal(load_image(pixel)[0, 0], [177, 127, 227])


def test_palette_colour_key_is_composited_onto_white(tmp_path: Path) -> None:
    palette_image = Image.new("P", (4, 3), color=1)
    palette_image.putpalette([10, 20, 30, 200, 0, 0] + [0] * 762)
    palette_image.putpixel((0, 0), 0)
    palette_image.info["transparency"] = 0
    palette_image.save(tmp_path / "keyed.png")
    rgb = load_image(tmp_path / "keyed.png")
    np.testing.assert_array_equal(rgb[0, 0], [255, 255, 255])
    np.testing.assert_array_equal(rgb[2, 3], [200, 0, 0])


@pytest.mark.parametrize("shape", [(5, 7), (5, 7, 1)])
def test_grayscale_array_is_repeated_into_three_channels(shape: tuple[int, ...]) -> None:
    gray = np.arange(35, dtype=np.uint8).reshape(shape)
    rgb = load_image(gray)
    assert rgb.shape == (5, 7, 3)
    for channel in range(3):
        np.testing.assert_array_equal(rgb[..., channel], gray.reshape(5, 7))


def test_grayscale_file_is_repeated_into_three_channels() -> None:
    path = opencv_sample("box.png")  # mode L
    gray = np.asarray(Image.open(path))
    assert gray.ndim == 2
    np.testing.assert_array_equal(load_image(path), np.repeat(gray[..., None], 3, axis=2))


def test_rgb_array_is_returned_without_copy_and_views_are_made_contiguous() -> None:
    rgb = np.random.default_rng(0).integers(0, 256, (6, 5, 3), dtype=np.uint8)
    assert load_image(rgb) is rgb
    flipped = load_image(rgb[:, :, ::-1])  # e.g. an OpenCV BGR frame flipped to RGB as a view
    assert flipped.flags.c_contiguous
    np.testing.assert_array_equal(flipped, rgb[:, :, ::-1])


def test_exif_orientation_is_ignored_unless_asked_for(tmp_path: Path) -> None:
    stored = np.arange(4 * 6 * 3, dtype=np.uint8).reshape(4, 6, 3)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    Image.fromarray(stored).save(tmp_path / "rotated.png", exif=exif)
    np.testing.assert_array_equal(load_image(tmp_path / "rotated.png"), stored)
    upright = load_image(tmp_path / "rotated.png", apply_exif_orientation=True)
    np.testing.assert_array_equal(upright, np.rot90(stored, k=-1))


def _write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def _png(tmp_path: Path, array: np.ndarray, name: str = "image.png") -> Path:
    Image.fromarray(array).save(tmp_path / name)
    return tmp_path / name


def _cv2_png16(tmp_path: Path) -> Path:
    cv2 = pytest.importorskip("cv2")
    path = tmp_path / "rgb16.png"
    assert cv2.imwrite(str(path), np.full((8, 8, 3), 40000, np.uint16))
    return path


def _truncated_jpeg(tmp_path: Path) -> Path:
    data = opencv_sample("fruits.jpg").read_bytes()
    return _write(tmp_path, "truncated.jpg", data[: len(data) // 2])


# input built in tmp_path -> fragment the ImageError message must contain
ERROR_CASES: dict[str, tuple[Callable[[Path], Any], str]] = {
    "missing file": (lambda tmp: tmp / "nope.jpg", "found nothing (no such file)"),
    "directory": (lambda tmp: tmp, "found a directory"),
    "0-byte file": (lambda tmp: _write(tmp, "empty.jpg", b""), "found an empty file (0 bytes)"),
    "text named .jpg": (lambda tmp: _write(tmp, "notes.jpg", b"not a picture\n" * 20), "cannot identify"),
    "garbage after a PNG signature": (
        lambda tmp: _write(tmp, "bad.png", b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4),
        "cannot identify",
    ),
    "truncated JPEG": (_truncated_jpeg, "corrupt or truncated data"),
    "1x1 PNG": (lambda tmp: _png(tmp, np.zeros((1, 1, 3), np.uint8)), "expected at least 2x2 pixels, got 1x1"),
    "1x500 array": (lambda tmp: np.zeros((1, 500, 3), np.uint8), "expected at least 2x2 pixels, got 1x500"),
    "16-bit gray PNG (PIL)": (
        lambda tmp: _png(tmp, np.full((8, 8), 1000, np.uint16)),
        "expected 8 bits per channel, got 16-bit grayscale (PIL mode I;16)",
    ),
    "16-bit RGB PNG (cv2)": (_cv2_png16, "expected 8 bits per channel, got 16-bit RGB (PIL mode RGB, stored as RGB;16B)"),
    "16-bit PIL image": (
        lambda tmp: Image.fromarray(np.full((8, 8), 1000, np.uint16)),
        "expected 8 bits per channel, got 16-bit grayscale (PIL mode I;16)",
    ),
    "32-bit float TIFF": (
        lambda tmp: _png(tmp, np.zeros((8, 8), np.float32), "float.tif"),
        "expected 8 bits per channel, got 32-bit float",
    ),
    "uint16 array": (lambda tmp: np.zeros((8, 8, 3), np.uint16), "expected 8 bits per channel (uint8), got 16-bit (uint16)"),
    "float array": (lambda tmp: np.zeros((8, 8, 3), np.float32), "expected dtype uint8 (0..255), got float32"),
    "two channels": (lambda tmp: np.zeros((8, 8, 2), np.uint8), "expected 1, 3 or 4 channels in the last axis, got 2"),
    "channels first": (lambda tmp: np.zeros((3, 8, 9), np.uint8), "channels-first arrays must be transposed"),
    "batch given as one image": (lambda tmp: np.zeros((2, 8, 8, 3), np.uint8), "got 4 dimensions"),
    "not an image at all": (lambda tmp: [[0, 0], [0, 0]], "expected an image as a path, a PIL.Image.Image or a numpy array"),
}


@pytest.mark.parametrize("case", ERROR_CASES)
def test_load_image_refuses_with_a_typed_error(case: str, tmp_path: Path) -> None:
    make, fragment = ERROR_CASES[case]
    image = make(tmp_path)
    with pytest.raises(ImageError) as caught:
        load_image(image)
    assert fragment in str(caught.value)
    if isinstance(image, Path) and image != tmp_path:
        assert str(image) in str(caught.value)


def test_preprocess_reports_the_same_errors() -> None:
    with pytest.raises(ImageError, match="got 16-bit"):
        preprocess([np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8, 3), np.uint16)], _spec())


# --- preprocess ------------------------------------------------------------------------------


def test_nearest_stretch_repeats_pixels_and_normalizes_in_float32() -> None:
    image = np.array([[[0, 10, 20], [30, 40, 50]], [[60, 70, 80], [255, 128, 1]]], dtype=np.uint8)
    spec = _spec()
    out = preprocess(image, spec)
    assert out.shape == (1, 3, 4, 4)
    assert out.dtype == np.float32
    expected = _normalized(np.repeat(np.repeat(image, 2, axis=0), 2, axis=1), spec).transpose(2, 0, 1)
    np.testing.assert_array_equal(out[0], expected)
    assert out[0, 0, 3, 3] == np.float32(1.0)  # 255 -> 1.0 -> (1 - 0.5) / 0.5


def test_filter_named_in_the_spec_is_the_one_used() -> None:
    checker = (np.indices((4, 4)).sum(axis=0) % 2 * 255).astype(np.uint8)
    image = np.repeat(checker[..., None], 3, axis=2)
    nearest = preprocess(image, _spec(size=(8, 8), resize_size=(8, 8), rescale_factor=1.0, mean=(0, 0, 0), std=(1, 1, 1)))
    bilinear = preprocess(
        image, _spec(size=(8, 8), resize_size=(8, 8), resample="bilinear", rescale_factor=1.0, mean=(0, 0, 0), std=(1, 1, 1))
    )
    assert set(np.unique(nearest)) == {0.0, 255.0}
    assert len(np.unique(bilinear)) > 2


def test_center_crop_larger_than_the_image_pads_with_zeros_before_normalizing() -> None:
    image = np.full((3, 3, 3), 200, np.uint8)
    spec = _spec(size=(6, 6), resize_size=(3, 3), crop="center")
    out = preprocess(image, spec)[0, 0]
    # top = (3 - 6) // 2 = -2: rows/cols 0, 1 and 5 are padding, 2..4 the image (transformers'
    # center_crop puts the odd pixel of padding first).
    inside = np.zeros((6, 6), bool)
    inside[2:5, 2:5] = True
    assert (out[inside] == _normalized(np.array([200]), spec)[0]).all()
    assert (out[~inside] == np.float32(-1.0)).all()  # padding 0 -> (0 - 0.5) / 0.5


def test_center_crop_inside_the_image_takes_the_floor_offset() -> None:
    image = np.arange(25, dtype=np.uint8).reshape(5, 5, 1).repeat(3, axis=2)
    spec = _spec(size=(2, 3), resize_size=(5, 5), crop="center", rescale_factor=1.0, mean=(0, 0, 0), std=(1, 1, 1))
    out = preprocess(image, spec)[0, 0]
    np.testing.assert_array_equal(out, [[6, 7, 8], [11, 12, 13]])  # top (5-2)//2 = 1, left (5-3)//2 = 1


@pytest.mark.parametrize(
    ("height", "width", "expected"),
    [
        (480, 512, (224, 238)),  # int(224 * 512 / 480) = int(238.93)
        (37, 501, (224, 3033)),
        (501, 37, (3033, 224)),
        (3, 3, (224, 224)),
        (480, 640, (224, 298)),  # truncated, not rounded: 298.67 -> 298
    ],
)
def test_shortest_edge_size_truncates_like_transformers(height: int, width: int, expected: tuple[int, int]) -> None:
    spec = _spec(size=(224, 224), resize="shortest_edge", resize_size=(224, 224), crop="center")
    assert resized_size(height, width, spec) == expected


def test_batch_of_different_sizes_and_kinds() -> None:
    spec = _spec(size=(8, 8), resize="shortest_edge", resize_size=(8, 8), crop="center", resample="bicubic")
    rng = np.random.default_rng(1)
    images: list[Any] = [
        rng.integers(0, 256, (20, 9, 3), dtype=np.uint8),
        rng.integers(0, 256, (3, 3), dtype=np.uint8),
        rng.integers(0, 256, (12, 40, 4), dtype=np.uint8),
        opencv_sample("HappyFish.jpg"),
    ]
    out = preprocess(images, spec)
    assert out.shape == (4, 3, 8, 8)
    for index, image in enumerate(images):
        np.testing.assert_array_equal(out[index], preprocess(image, spec)[0])
    assert not np.array_equal(out[0], out[2])


def test_path_pil_and_array_inputs_give_the_same_pixel_values() -> None:
    spec = _spec(size=(32, 32), resize_size=(32, 32), resample="bicubic")
    path = opencv_sample("messi5.jpg")
    from_path = preprocess(path, spec)
    np.testing.assert_array_equal(preprocess(Image.open(path), spec), from_path)
    np.testing.assert_array_equal(preprocess(load_image(path), spec), from_path)
    np.testing.assert_array_equal(preprocess(load_image(path)[None], spec), from_path)  # (n, H, W, 3) batch


def test_bgr_channel_order_flips_channels_before_normalizing_with_mean_in_model_order() -> None:
    image = np.zeros((2, 2, 3), np.uint8)
    image[..., 0], image[..., 2] = 255, 51  # R = 255, B = 51
    spec = _spec(size=(2, 2), resize_size=(2, 2), channel_order="bgr", mean=(0.1, 0.2, 0.3), std=(0.5, 0.5, 0.5))
    out = preprocess(image, spec)[0, :, 0, 0]
    expected = (np.float32([0.2, 0.0, 1.0]) - np.float32([0.1, 0.2, 0.3])) / np.float32(0.5)  # B, G, R
    np.testing.assert_allclose(out, expected, rtol=0, atol=1e-7)


def test_empty_batch_gives_an_empty_array() -> None:
    assert preprocess([], _spec()).shape == (0, 3, 4, 4)


@pytest.mark.parametrize(
    ("changes", "fragment"),
    [
        ({"resize": "shortest_edge", "resize_size": (4, 4)}, "without a center crop gives every image its own size"),
        ({"resize": "shortest_edge", "resize_size": (4, 5), "crop": "center"}, "expects resize_size (edge, edge)"),
        ({"resize_size": (8, 8)}, "resize_size should equal size (4, 4), got (8, 8)"),
        ({"resample": "hamming"}, "resample must be one of"),
    ],
)
def test_inconsistent_spec_is_refused(changes: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ManifestError) as caught:
        preprocess(np.zeros((4, 4, 3), np.uint8), _spec(**changes))
    assert fragment in str(caught.value)
