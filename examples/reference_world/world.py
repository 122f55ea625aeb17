"""The reference world's pictures: seeded scenes of coloured shapes with true captions, and a video.

A scene holds 0, 1 or 2 objects, each a {small, large} x {red, green, blue, yellow} x {circle,
square, triangle}, on a low-saturation background (flat, gradient, stripes, checker or smooth noise),
with blur and pixel noise. Its caption follows a small grammar that says exactly what the image
shows, so a caption is either right or wrong:

- no object: "an empty scene";
- one object: "a small red triangle";
- two objects: "a small red triangle to the left of a large blue circle" (the left one first) or
  "a small red triangle above a large blue circle" (the upper one first). Two objects are always
  placed so that one relation holds clearly: their offset is at least 2.5 times longer along one
  axis than along the other, and they do not overlap along it.

Everything is drawn in fractions of the image side, so a scene renders at any resolution: training
images at :data:`IMAGE_SIZE`, video frames at 256x256 (the runtime resizes them to the models'
input, as it would a camera's).

Splits are disjoint by seed: scene ``i`` of split ``s`` is drawn from
``numpy.random.default_rng([SPLIT_SEEDS[s], i])``, so the test scenes never occur in training.

Typical use::

    from examples.reference_world import world

    image, caption, objects = world.scene(world.scene_rng("test", 0))   # (96, 96, 3) uint8 RGB
    timeline = world.demo_timeline()                                   # 24 s at 10 fps, 256x256
    world.write_video("demo.avi", timeline)
    timeline.caption_at(9.0)       # 'a small red triangle above a large blue circle'
    timeline.intervals("red", "triangle")   # ((8.0, 13.0),)
"""

from __future__ import annotations

import colorsys
import dataclasses
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image, ImageFilter

__all__ = [
    "BACKGROUND_PROMPTS",
    "COLOURS",
    "DEMO_ALERT",
    "EMPTY_CAPTION",
    "IMAGE_SIZE",
    "OBJECT_PROMPTS",
    "RELATIONS",
    "SHAPES",
    "SIZES",
    "SPLIT_SEEDS",
    "VOCABULARY",
    "Background",
    "SceneObject",
    "Segment",
    "Timeline",
    "Track",
    "demo_timeline",
    "describe",
    "object_map",
    "object_prompt",
    "random_background",
    "render",
    "scene",
    "scene_rng",
    "scenes",
    "write_video",
]

IMAGE_SIZE = 96
"""Height and width of the models' input (both models): scenes are generated at this size."""

SHAPES = ("circle", "square", "triangle")
COLOURS = ("red", "green", "blue", "yellow")
SIZES = ("small", "large")
RELATIONS = ("to the left of", "above")
EMPTY_CAPTION = "an empty scene"

VOCABULARY = ("a", "an", "empty", "scene", "to", "the", "left", "of", "above", *SIZES, *COLOURS, *SHAPES)
"""Every word a caption can hold."""

OBJECT_PROMPTS = tuple(f"a {colour} {shape}" for colour in COLOURS for shape in SHAPES)
"""The 12 colour-and-shape prompts ("a red triangle", ...) the CLIP is asked in zero-shot tests."""

BACKGROUND_PROMPTS = (*OBJECT_PROMPTS, EMPTY_CAPTION)
"""Every object prompt and "an empty scene": as background prompts (``--background``), an alert's
score becomes its share among everything that can be in view (about 0.5 when its object shares the
scene with another). Alerts work better against edgemm's default background, "a photo", which the
reference CLIP learnt to score below what a scene shows (examples/reference_world/README.md)."""

SPLIT_SEEDS = {"train": 1, "test": 2}
"""Scene ``i`` of a split is drawn from ``default_rng([SPLIT_SEEDS[split], i])``."""

# Hue (degrees) of each colour; saturation and value are drawn per object.
_HUES = {"red": 0.0, "green": 125.0, "blue": 222.0, "yellow": 54.0}
# Radius of each size, as a fraction of the image side. A square's half side is 0.87 r and a
# triangle's circumradius 1.15 r, so the three shapes of one size cover similar areas.
_RADII = {"small": (0.09, 0.115), "large": (0.155, 0.19)}
_EXTENT = 1.15  # how far any shape of radius r reaches from its centre, in r
_MARGIN = 0.02  # between an object and the image border
_GAP = 0.04  # between two objects, along the axis of their relation
_CLEAR = 2.5  # the relation's axis offset is at least this many times the other axis's
_OBJECT_COUNTS = (0.05, 0.35, 0.6)  # probabilities of 0, 1 and 2 objects


@dataclass(frozen=True)
class SceneObject:
    """One shape in a scene.

    Attributes:
        shape, colour, size: the words the caption uses for it.
        x, y: its centre, as fractions of the image width and height (y grows downwards).
        radius: as a fraction of the image side.
        angle_deg: rotation of squares and triangles (a triangle at 0 points up).
        rgb: its fill colour, 0..255.
    """

    shape: str
    colour: str
    size: str
    x: float
    y: float
    radius: float
    angle_deg: float = 0.0
    rgb: tuple[int, int, int] = (0, 0, 0)

    @property
    def phrase(self) -> str:
        """E.g. "a small red triangle"."""
        return f"a {self.size} {self.colour} {self.shape}"

    @property
    def extent(self) -> float:
        """How far the shape reaches from its centre, as a fraction of the image side."""
        return self.radius * _EXTENT

    def moved(self, x: float, y: float) -> SceneObject:
        """The same object centred at (x, y)."""
        return SceneObject(self.shape, self.colour, self.size, x, y, self.radius, self.angle_deg, self.rgb)


def object_prompt(colour: str, shape: str) -> str:
    """The zero-shot prompt of an object: ``object_prompt("red", "triangle")`` -> "a red triangle"."""
    return f"a {colour} {shape}"


def describe(objects: Sequence[SceneObject]) -> str | None:
    """The caption of a scene, or None when two objects stand in no clear relation.

    Args:
        objects: 0, 1 or 2 objects.

    Raises:
        ValueError: more than 2 objects (the grammar has no words for them).
    """
    if len(objects) == 0:
        return EMPTY_CAPTION
    if len(objects) == 1:
        return objects[0].phrase
    if len(objects) != 2:
        raise ValueError(f"a scene holds 0, 1 or 2 objects, got {len(objects)}")
    a, b = objects
    dx, dy = b.x - a.x, b.y - a.y
    reach = a.extent + b.extent
    if abs(dx) >= _CLEAR * abs(dy) and abs(dx) > reach:
        left, right = (a, b) if dx > 0 else (b, a)
        return f"{left.phrase} to the left of {right.phrase}"
    if abs(dy) >= _CLEAR * abs(dx) and abs(dy) > reach:
        top, bottom = (a, b) if dy > 0 else (b, a)
        return f"{top.phrase} above {bottom.phrase}"
    return None


# --- drawing -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Background:
    """A scene's background, drawn at any resolution.

    Attributes:
        kind: "flat", "gradient", "stripes", "checker" or "noise" (smooth value noise).
        colours: two low-saturation colours, 0..255 (flat uses the first).
        angle_deg: direction of the gradient or stripes.
        period: stripe or checker period, as a fraction of the image side.
        cells: noise: the coarse grid the noise is interpolated from (cells x cells).
        seed: noise: seed of the grid's values.
        blur: Gaussian blur sigma, as a fraction of the image side (applied to the whole image).
        noise_std: per-pixel Gaussian noise, in 0..255 units.
    """

    kind: Literal["flat", "gradient", "stripes", "checker", "noise"]
    colours: tuple[tuple[int, int, int], tuple[int, int, int]]
    angle_deg: float = 0.0
    period: float = 0.1
    cells: int = 4
    seed: int = 0
    blur: float = 0.0
    noise_std: float = 0.0

    def draw(self, size: int) -> np.ndarray:
        """np.ndarray, shape (size, size, 3), float32 in 0..255."""
        centres = (np.arange(size, dtype=np.float32) + 0.5) / size
        v, u = np.meshgrid(centres, centres, indexing="ij")
        theta = math.radians(self.angle_deg)
        along = u * math.cos(theta) + v * math.sin(theta)
        if self.kind == "flat":
            t = np.zeros_like(u)
        elif self.kind == "gradient":
            t = (along - along.min()) / max(float(along.max() - along.min()), 1e-6)
        elif self.kind == "stripes":
            t = 0.5 + 0.5 * np.tanh(3.0 * np.sin(2 * math.pi * along / self.period))
        elif self.kind == "checker":
            t = ((np.floor(u / self.period) + np.floor(v / self.period)) % 2).astype(np.float32)
        else:
            grid = np.random.default_rng(self.seed).random((self.cells + 1, self.cells + 1)).astype(np.float32)
            t = _bilinear(grid, u * self.cells, v * self.cells)
        c1, c2 = (np.asarray(c, dtype=np.float32) for c in self.colours)
        return c1 + (c2 - c1) * t[..., None]


def _bilinear(grid: np.ndarray, gx: np.ndarray, gy: np.ndarray) -> np.ndarray:
    x0 = np.clip(np.floor(gx).astype(int), 0, grid.shape[1] - 2)
    y0 = np.clip(np.floor(gy).astype(int), 0, grid.shape[0] - 2)
    fx, fy = gx - x0, gy - y0
    top = grid[y0, x0] * (1 - fx) + grid[y0, x0 + 1] * fx
    bottom = grid[y0 + 1, x0] * (1 - fx) + grid[y0 + 1, x0 + 1] * fx
    return np.asarray(top * (1 - fy) + bottom * fy, dtype=np.float32)


def _coverage(obj: SceneObject, size: int, supersample: int) -> tuple[np.ndarray, slice, slice]:
    """The fraction of each pixel the object covers, over the pixels near it.

    Returns:
        (coverage np.ndarray shape (h, w) float32 in [0, 1], rows, columns): the window of the image
        the coverage is for.
    """
    lo_y, hi_y = (max(0, math.floor((obj.y - obj.extent) * size) - 1), min(size, math.ceil((obj.y + obj.extent) * size) + 1))
    lo_x, hi_x = (max(0, math.floor((obj.x - obj.extent) * size) - 1), min(size, math.ceil((obj.x + obj.extent) * size) + 1))
    fine = 1.0 / (size * supersample)
    ys = (np.arange(lo_y * supersample, hi_y * supersample, dtype=np.float32) + 0.5) * fine - obj.y
    xs = (np.arange(lo_x * supersample, hi_x * supersample, dtype=np.float32) + 0.5) * fine - obj.x
    v, u = np.meshgrid(ys, xs, indexing="ij")
    theta = math.radians(obj.angle_deg)
    # Rotate the sampling grid into the object's frame.
    ru = u * math.cos(theta) + v * math.sin(theta)
    rv = -u * math.sin(theta) + v * math.cos(theta)
    r = obj.radius
    if obj.shape == "circle":
        inside = ru**2 + rv**2 <= r**2
    elif obj.shape == "square":
        half = 0.87 * r
        inside = (np.abs(ru) <= half) & (np.abs(rv) <= half)
    elif obj.shape == "triangle":
        circum = 1.15 * r
        # An equilateral triangle pointing up (v grows downwards): inside its three edges, whose
        # outward normals point down (90 degrees) and 120 degrees either side of it.
        inside = np.ones_like(ru, dtype=bool)
        for k in range(3):
            phi = math.radians(90 + 120 * k)
            inside &= ru * math.cos(phi) + rv * math.sin(phi) <= circum / 2
    else:
        raise ValueError(f"unknown shape {obj.shape!r}; shapes are {SHAPES}")
    h, w = hi_y - lo_y, hi_x - lo_x
    coverage = inside.reshape(h, supersample, w, supersample).mean(axis=(1, 3), dtype=np.float32)
    return coverage, slice(lo_y, hi_y), slice(lo_x, hi_x)


def object_map(objects: Sequence[SceneObject], grid: int) -> np.ndarray:
    """Which object covers each cell of a ``grid`` x ``grid`` partition of the image (a patch grid).

    Returns:
        np.ndarray, shape (grid, grid), int64: 0 where no object covers at least 30% of the cell,
        else 1 + the index in ``objects`` of the topmost object that does.
    """
    out = np.zeros((grid, grid), dtype=np.int64)
    for index, obj in enumerate(objects):
        coverage, rows, columns = _coverage(obj, grid, 8)
        window = out[rows, columns]
        window[coverage >= 0.3] = index + 1
    return out


def render(objects: Sequence[SceneObject], background: Background, size: int = IMAGE_SIZE, *, noise_seed: int = 0) -> np.ndarray:
    """Draws a scene.

    Args:
        objects: drawn in order (later ones on top).
        background: the background, with the blur and noise of the whole image.
        size: height and width in pixels.
        noise_seed: seed of the per-pixel noise.

    Returns:
        np.ndarray, shape (size, size, 3), uint8, RGB.
    """
    image = background.draw(size)
    supersample = max(2, 256 // size)
    for obj in objects:
        coverage, rows, columns = _coverage(obj, size, supersample)
        alpha = coverage[..., None]
        image[rows, columns] = image[rows, columns] * (1 - alpha) + np.asarray(obj.rgb, dtype=np.float32) * alpha
    if background.blur > 0:
        pil = Image.fromarray(np.clip(image, 0, 255).round().astype(np.uint8))
        image = np.asarray(pil.filter(ImageFilter.GaussianBlur(background.blur * size)), dtype=np.float32)
    if background.noise_std > 0:
        image = image + np.random.default_rng(noise_seed).normal(0.0, background.noise_std, image.shape).astype(np.float32)
    return np.clip(image, 0, 255).round().astype(np.uint8)


# --- random scenes -------------------------------------------------------------------------------


def _rgb(hue_deg: float, saturation: float, value: float) -> tuple[int, int, int]:
    r, g, b = colorsys.hsv_to_rgb((hue_deg % 360) / 360, saturation, value)
    return round(r * 255), round(g * 255), round(b * 255)


def _background_colour(rng: np.random.Generator) -> tuple[int, int, int]:
    # Low saturation keeps every background apart from the four saturated object colours.
    return _rgb(float(rng.uniform(0, 360)), float(rng.uniform(0.0, 0.25)), float(rng.uniform(0.15, 0.92)))


def random_background(rng: np.random.Generator) -> Background:
    """A background drawn from the scene distribution (kind, colours, texture, blur, noise)."""
    kind = ("flat", "gradient", "stripes", "checker", "noise")[int(rng.integers(5))]
    first = _background_colour(rng)
    second = _background_colour(rng)
    if kind in ("stripes", "checker"):
        # Textures stay faint next to the objects: the second colour is near the first.
        mix = float(rng.uniform(0.2, 0.5))
        second = tuple(round(a + (b - a) * mix) for a, b in zip(first, second))  # type: ignore[assignment]
    return Background(
        kind=kind,  # type: ignore[arg-type]
        colours=(first, second),
        angle_deg=float(rng.uniform(0, 180)),
        period=float(rng.uniform(0.06, 0.2)),
        cells=int(rng.integers(2, 7)),
        seed=int(rng.integers(2**31)),
        blur=float(rng.uniform(0.0, 0.007)),
        noise_std=float(rng.uniform(0.0, 8.0)),
    )


def _random_object(rng: np.random.Generator) -> SceneObject:
    colour = COLOURS[int(rng.integers(len(COLOURS)))]
    size = SIZES[int(rng.integers(len(SIZES)))]
    low, high = _RADII[size]
    return SceneObject(
        shape=SHAPES[int(rng.integers(len(SHAPES)))],
        colour=colour,
        size=size,
        x=0.5,
        y=0.5,
        radius=float(rng.uniform(low, high)),
        angle_deg=float(rng.uniform(-10, 10)),
        rgb=_rgb(_HUES[colour] + float(rng.uniform(-8, 8)), float(rng.uniform(0.7, 1.0)), float(rng.uniform(0.7, 1.0))),
    )


def _place(rng: np.random.Generator, obj: SceneObject) -> SceneObject:
    lo, hi = obj.extent + _MARGIN, 1 - obj.extent - _MARGIN
    return obj.moved(float(rng.uniform(lo, hi)), float(rng.uniform(lo, hi)))


def _place_pair(rng: np.random.Generator, a: SceneObject, b: SceneObject, relation: str) -> tuple[SceneObject, SceneObject]:
    """Places two objects so that ``relation`` holds clearly, ``a`` first (left of or above ``b``)."""
    lo_a, hi_a = a.extent + _MARGIN, 1 - a.extent - _MARGIN
    lo_b, hi_b = b.extent + _MARGIN, 1 - b.extent - _MARGIN
    # Along the relation's axis: b at least both extents and a gap after a.
    reach = a.extent + b.extent + _GAP
    along_a = float(rng.uniform(lo_a, min(hi_a, hi_b - reach)))
    along_b = float(rng.uniform(along_a + reach, hi_b))
    # Across it: within 1 / _CLEAR of the offset along it.
    width = (along_b - along_a) / _CLEAR
    across_a = float(rng.uniform(max(lo_a, lo_b - width), min(hi_a, hi_b + width)))
    across_b = float(rng.uniform(max(lo_b, across_a - width), min(hi_b, across_a + width)))
    if relation == RELATIONS[0]:
        return a.moved(along_a, across_a), b.moved(along_b, across_b)
    return a.moved(across_a, along_a), b.moved(across_b, along_b)


def scene_rng(split: str, index: int) -> np.random.Generator:
    """The generator of scene ``index`` of ``split`` ("train" or "test")."""
    if split not in SPLIT_SEEDS:
        raise ValueError(f"split: expected one of {sorted(SPLIT_SEEDS)}, got {split!r}")
    return np.random.default_rng([SPLIT_SEEDS[split], index])


def scene(rng: np.random.Generator, *, size: int = IMAGE_SIZE) -> tuple[np.ndarray, str, list[SceneObject]]:
    """A random scene with its true caption.

    Args:
        rng: the scene's generator (e.g. :func:`scene_rng`); the scene depends on nothing else.
        size: height and width of the image in pixels.

    Returns:
        (image np.ndarray shape (size, size, 3) uint8 RGB, caption, objects).
    """
    count = int(rng.choice(3, p=_OBJECT_COUNTS))
    objects = [_random_object(rng) for _ in range(count)]
    if count == 1:
        objects = [_place(rng, objects[0])]
    elif count == 2:
        relation = RELATIONS[int(rng.integers(len(RELATIONS)))]
        objects = list(_place_pair(rng, objects[0], objects[1], relation))
    background = random_background(rng)
    image = render(objects, background, size, noise_seed=int(rng.integers(2**31)))
    caption = describe(objects)
    assert caption is not None  # _place_pair makes the relation clear
    return image, caption, objects


def scenes(split: str, count: int, *, start: int = 0, size: int = IMAGE_SIZE) -> Iterator[tuple[np.ndarray, str, list[SceneObject]]]:
    """Scenes ``start .. start + count - 1`` of ``split``, as :func:`scene` returns them."""
    for index in range(start, start + count):
        yield scene(scene_rng(split, index), size=size)


# --- video -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Track:
    """An object visible during ``[start_s, end_s)``, moving in a straight line from its own
    position to ``(to_x, to_y)``."""

    obj: SceneObject
    start_s: float
    end_s: float
    to_x: float | None = None
    to_y: float | None = None

    def at(self, time_s: float) -> SceneObject | None:
        """The object at ``time_s``, or None when it is not visible."""
        if not self.start_s <= time_s < self.end_s:
            return None
        f = (time_s - self.start_s) / (self.end_s - self.start_s)
        x = self.obj.x if self.to_x is None else self.obj.x + (self.to_x - self.obj.x) * f
        y = self.obj.y if self.to_y is None else self.obj.y + (self.to_y - self.obj.y) * f
        return self.obj.moved(x, y)


@dataclass(frozen=True)
class Segment:
    """A stretch of video over which the true caption does not change: ``[start_s, end_s)``."""

    start_s: float
    end_s: float
    caption: str


@dataclass(frozen=True)
class Timeline:
    """A scripted video with its ground truth.

    Attributes:
        tracks: the objects and when they are visible.
        background: the background of every frame.
        duration_s: length; frames are at ``index / fps`` for ``index < duration_s * fps``.
        fps: frames per second.
        frame_size: height and width of the frames in pixels.
        seed: seed of each frame's pixel noise (frame ``i`` uses ``[seed, i]``).
    """

    tracks: tuple[Track, ...]
    background: Background
    duration_s: float
    fps: float = 10.0
    frame_size: int = 256
    seed: int = 0

    @property
    def num_frames(self) -> int:
        return round(self.duration_s * self.fps)

    def time_of(self, index: int) -> float:
        """Time of frame ``index`` in seconds (as a video reader reports it)."""
        return index / self.fps

    def objects_at(self, time_s: float) -> list[SceneObject]:
        return [obj for obj in (track.at(time_s) for track in self.tracks) if obj is not None]

    def caption_at(self, time_s: float) -> str | None:
        """The true caption at ``time_s`` (None where two objects stand in no clear relation)."""
        return describe(self.objects_at(time_s))

    def segments(self) -> tuple[Segment, ...]:
        """The frames grouped into stretches of one true caption."""
        out: list[Segment] = []
        for index in range(self.num_frames):
            t, caption = self.time_of(index), self.caption_at(self.time_of(index))
            if caption is None:
                raise ValueError(f"frame {index} ({t:.1f} s): two objects in no clear relation {self.objects_at(t)}")
            if out and out[-1].caption == caption:
                out[-1] = dataclasses.replace(out[-1], end_s=self.time_of(index + 1))
            else:
                out.append(Segment(t, self.time_of(index + 1), caption))
        return tuple(out)

    def intervals(self, colour: str, shape: str) -> tuple[tuple[float, float], ...]:
        """When an object of ``colour`` and ``shape`` is visible: ``[start_s, end_s)`` stretches."""
        out: list[tuple[float, float]] = []
        for index in range(self.num_frames):
            t = self.time_of(index)
            if not any(o.colour == colour and o.shape == shape for o in self.objects_at(t)):
                continue
            if out and math.isclose(out[-1][1], t):
                out[-1] = (out[-1][0], self.time_of(index + 1))
            else:
                out.append((t, self.time_of(index + 1)))
        return tuple(out)

    def frame(self, index: int) -> np.ndarray:
        """Frame ``index``: np.ndarray, shape (frame_size, frame_size, 3), uint8, RGB."""
        return render(self.objects_at(self.time_of(index)), self.background, self.frame_size, noise_seed=self.seed * 1_000_003 + index)

    def frames(self) -> Iterator[np.ndarray]:
        for index in range(self.num_frames):
            yield self.frame(index)


def _demo_object(shape: str, colour: str, size: str, x: float, y: float, angle_deg: float = 0.0) -> SceneObject:
    radius = sum(_RADII[size]) / 2
    saturation, value = 0.85, 0.9
    return SceneObject(shape, colour, size, x, y, radius, angle_deg, _rgb(_HUES[colour], saturation, value))


DEMO_ALERT = ("red", "triangle")
"""The object the demo video's visual alert watches for (``object_prompt(*DEMO_ALERT)``)."""


def demo_timeline(*, fps: float = 10.0, frame_size: int = 256, seed: int = 0) -> Timeline:
    """The demo's 24 s video: objects appear, move and leave at known times.

    ======  =========================================================================
    0-3 s   an empty scene
    3-8 s   a large blue circle, drifting right; a small green square joins at 5 s on its left
    8-13 s  a small red triangle above the blue circle (the alert's object: onset 8 s), moving right
    13-18 s the blue circle alone, then a large yellow square to its left from 15 s
    18-24 s a small blue triangle above a small red circle: red and a triangle, but no red triangle
    ======  =========================================================================
    """
    circle = _demo_object("circle", "blue", "large", 0.6, 0.65)
    tracks = (
        Track(circle, 3.0, 8.0, to_x=0.7),
        Track(_demo_object("square", "green", "small", 0.2, 0.6), 5.0, 8.0, to_y=0.7),
        Track(circle.moved(0.7, 0.65), 8.0, 13.0),
        Track(_demo_object("triangle", "red", "small", 0.62, 0.22), 8.0, 13.0, to_x=0.74),
        Track(circle.moved(0.7, 0.65), 13.0, 18.0, to_y=0.6),
        Track(_demo_object("square", "yellow", "large", 0.22, 0.6, angle_deg=8.0), 15.0, 18.0, to_y=0.66),
        Track(_demo_object("triangle", "blue", "small", 0.45, 0.25), 18.0, 24.0, to_x=0.52),
        Track(_demo_object("circle", "red", "small", 0.48, 0.7), 18.0, 24.0, to_x=0.55),
    )
    background = Background("gradient", ((150, 140, 120), (90, 100, 110)), angle_deg=60.0, blur=0.004, noise_std=3.0)
    timeline = Timeline(tracks, background, duration_s=24.0, fps=fps, frame_size=frame_size, seed=seed)
    timeline.segments()  # every frame has a clear caption
    return timeline


def write_video(path: str | Path, timeline: Timeline | None = None) -> Path:
    """Writes a timeline (default: :func:`demo_timeline`) as an MJPG .avi that OpenCV reads.

    Returns:
        The path written.

    Raises:
        RuntimeError: OpenCV could not open a writer for the file.
    """
    import cv2

    timeline = timeline or demo_timeline()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    size = (timeline.frame_size, timeline.frame_size)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), timeline.fps, size)
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV could not write an MJPG video to {path}")
    try:
        for frame in timeline.frames():
            writer.write(np.ascontiguousarray(frame[..., ::-1]))
    finally:
        writer.release()
    return path
