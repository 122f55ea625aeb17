"""From a Hugging Face image processor to the manifest's :class:`ImagePreprocessing`.

The runtime (:mod:`edgemm.runtime.image`) reproduces the standard transformers pipeline, as the
PIL backend runs it: convert to RGB, resize, center crop, rescale, normalize, (pad). This module
reads a processor's settings into that description, and refuses, with an
:class:`UnsupportedModelError` naming the setting and its value, anything the description cannot
say exactly: a processor that changes the pipeline itself (overridden steps, as in ConvNext,
Pixtral or Qwen2-VL), sizes that depend on the image beyond "shortest edge" (``longest_edge``,
``max_height``, pixel budgets), resampling filters the runtime does not have (hamming), padding to
a size other than the output, no resize at all. It never approximates.

Typical use::

    processor = transformers.AutoProcessor.from_pretrained(model_dir)
    image = image_preprocessing_from_processor(processor)      # or processor.image_processor
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from edgemm.runtime.errors import DependencyMissingError, UnsupportedModelError
from edgemm.runtime.pack import ImagePreprocessing

__all__ = ["image_preprocessing_from_processor"]

_Resample = Literal["nearest", "bilinear", "bicubic", "lanczos", "box"]

# PIL.Image.Resampling values, as processor configs store them ("resample": 3). HAMMING (5) has
# no counterpart in ImagePreprocessing.
_RESAMPLE_NAMES: dict[int, _Resample] = {0: "nearest", 1: "lanczos", 2: "bilinear", 3: "bicubic", 4: "box"}

# Steps of the standard pipeline; a processor that overrides one of them does something else.
_PIPELINE_METHODS = (
    "__call__",
    "preprocess",
    "_preprocess_image_like_inputs",
    "_prepare_image_like_inputs",
    "_standardize_kwargs",
    "process_image",
    "convert_to_rgb",
    "_preprocess",
    "resize",
    "center_crop",
    "rescale",
    "normalize",
    "rescale_and_normalize",
    "pad",
)


def image_preprocessing_from_processor(image_processor: Any) -> ImagePreprocessing:
    """Describes what a transformers image processor does to an image, for the model pack.

    Reads the settings the processor's ``preprocess`` uses when called without overrides: its
    attributes, completed with its class defaults and standardized the way ``preprocess`` does
    it (an int ``size`` becomes ``{"shortest_edge": n}`` or ``{"height": n, "width": n}``
    according to ``default_to_square``).

    Mapping:

    - ``size`` ``{"height", "width"}`` -> ``resize="stretch"``; ``{"shortest_edge"}`` ->
      ``resize="shortest_edge"``, which needs ``do_center_crop`` (else every image has its own
      size); ``resample`` (a ``PIL.Image.Resampling`` value, bilinear when unset) -> its name.
    - ``do_center_crop`` + ``crop_size`` ``{"height", "width"}`` -> ``crop="center"``,
      ``size=crop_size``.
    - ``do_rescale``/``rescale_factor`` -> ``rescale_factor`` (1.0 when off);
      ``do_normalize``/``image_mean``/``image_std`` -> ``mean``/``std`` (0 and 1 when off, which
      leaves float32 values unchanged bit for bit).
    - ``do_pad`` without ``pad_size`` pads each image to the largest in the batch; every output
      already has the fixed ``size``, so it changes nothing and is accepted. A ``pad_size`` other
      than the output size is refused.
    - ``do_convert_rgb``: the runtime always converts to RGB as ``do_convert_rgb=True`` does.
      With it off (ViT-GPT2, Florence-2 configs), transformers passes RGB images through
      unchanged, as the runtime does, and fails on grayscale, palette and RGBA inputs, which
      the runtime converts. The one input both accept and treat differently is an RGB image
      carrying a PNG colour key (``info["transparency"]``): the runtime composites the keyed
      colour onto white, the processor keeps it.

    The runtime reproduces the PIL backend (``*ImageProcessorPil``; what ``BlipImageProcessor``
    and friends are when torchvision is missing) bit for bit. A torchvision-backend processor
    with the same settings maps to the same description; its own output differs slightly from
    the PIL backend's (different resampling code), which the compile stage's parity check
    measures against whichever processor it is given.

    Args:
        image_processor: a transformers image processor (``BlipImageProcessor``,
            ``ViTImageProcessor``, ``CLIPImageProcessor``, ``SiglipImageProcessor``, their
            ``...Pil`` variants, ...), or a multimodal processor holding one as
            ``.image_processor`` (``BlipProcessor``, ``CLIPProcessor``, ``Florence2Processor``).

    Returns:
        The processor's preprocessing, ``channel_order="rgb"``.

    Raises:
        UnsupportedModelError: a setting (named, with its value) that the description cannot
            represent exactly, or a processor that is not a transformers image processor with
            the standard pipeline.
    """
    processor = _image_processor_of(image_processor)
    name = type(processor).__name__
    _check_standard_pipeline(processor)
    settings = _effective_settings(processor)

    if not settings.get("do_resize"):
        raise UnsupportedModelError(
            f"{name}: do_resize={settings.get('do_resize')!r} keeps every image at its own size; "
            "edgemm needs a resize to the model's fixed input size"
        )
    size = _size_items(settings.get("size"), "size", name)
    resize: Literal["stretch", "shortest_edge"]
    crop: Literal["none", "center"]
    if set(size) == {"height", "width"}:
        resize = "stretch"
        resize_size = (size["height"], size["width"])
    elif set(size) == {"shortest_edge"}:
        resize = "shortest_edge"
        resize_size = (size["shortest_edge"], size["shortest_edge"])
    else:
        raise UnsupportedModelError(
            f"{name}: size={size} is not supported; expected {{'height', 'width'}} or {{'shortest_edge'}}"
        )
    resample = _resample_name(settings.get("resample"), name)

    if settings.get("do_center_crop"):
        crop_size = _size_items(settings.get("crop_size"), "crop_size", name)
        if set(crop_size) != {"height", "width"}:
            raise UnsupportedModelError(f"{name}: crop_size={crop_size} is not supported; expected {{'height', 'width'}}")
        crop = "center"
        output_size = (crop_size["height"], crop_size["width"])
    elif resize == "shortest_edge":
        raise UnsupportedModelError(
            f"{name}: size={size} without do_center_crop gives every image its own size "
            "(its aspect ratio decides the longer edge); edgemm needs a fixed input size"
        )
    else:
        crop = "none"
        output_size = resize_size

    if settings.get("do_pad"):
        pad_size = settings.get("pad_size")
        if pad_size is not None:
            pad = _size_items(pad_size, "pad_size", name)
            if (pad.get("height"), pad.get("width")) != output_size or set(pad) != {"height", "width"}:
                raise UnsupportedModelError(
                    f"{name}: do_pad=True with pad_size={pad} pads to another size than the {output_size} "
                    "output; edgemm does not pad"
                )

    rescale_factor = 1.0
    if settings.get("do_rescale"):
        factor = settings.get("rescale_factor")
        if not isinstance(factor, (int, float)) or isinstance(factor, bool) or factor <= 0:
            raise UnsupportedModelError(f"{name}: do_rescale=True with rescale_factor={factor!r}; expected a positive number")
        rescale_factor = float(factor)

    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)
    if settings.get("do_normalize"):
        mean = _three_floats(settings.get("image_mean"), "image_mean", name)
        std = _three_floats(settings.get("image_std"), "image_std", name)
        if min(std) <= 0:
            raise UnsupportedModelError(f"{name}: image_std={std}; expected positive values")

    return ImagePreprocessing(
        size=output_size,
        resize=resize,
        resize_size=resize_size,
        resample=resample,
        crop=crop,
        rescale_factor=rescale_factor,
        mean=mean,
        std=std,
        channel_order="rgb",
    )


def _image_processor_of(obj: Any) -> Any:
    if not hasattr(obj, "do_resize") and hasattr(obj, "image_processor"):
        return obj.image_processor
    return obj


def _check_standard_pipeline(processor: Any) -> None:
    try:
        from transformers.image_processing_backends import PilBackend, TorchvisionBackend
    except ImportError as exc:
        raise DependencyMissingError(
            "transformers", "reading a Hugging Face image processor", "pip install 'edgemm[compile]'"
        ) from exc

    cls = type(processor)
    name = cls.__name__
    backend = next((b for b in (PilBackend, TorchvisionBackend) if isinstance(processor, b)), None)
    if backend is None:
        raise UnsupportedModelError(
            f"{name} is not a transformers image processor with the standard pipeline "
            f"(expected a subclass of PilBackend or TorchvisionBackend, got bases "
            f"{[b.__name__ for b in cls.__mro__[1:]]})"
        )
    for method in _PIPELINE_METHODS:
        ours = getattr(cls, method, None)
        standard = getattr(backend, method, None)
        if ours is not standard:
            raise UnsupportedModelError(
                f"{name} overrides {method}() of the standard {backend.__name__} pipeline, so its preprocessing "
                "is not the resize/crop/rescale/normalize edgemm reproduces"
            )


def _effective_settings(processor: Any) -> dict[str, Any]:
    # What BaseImageProcessor.preprocess does with no call-time kwargs: every valid kwarg from
    # the instance (None where unset), then the processor's own standardization.
    names = getattr(processor, "_valid_kwargs_names", None)
    if names is None:
        names = list(processor.valid_kwargs.__annotations__)
    kwargs = {key: getattr(processor, key, None) for key in names}
    return dict(processor._standardize_kwargs(**kwargs))


def _size_items(value: Any, setting: str, name: str) -> dict[str, int]:
    if value is None:
        raise UnsupportedModelError(f"{name}: {setting} is not set")
    items = dict(value) if not isinstance(value, Mapping) else dict(value.items())
    items = {key: val for key, val in items.items() if val is not None}
    for key, val in items.items():
        if not isinstance(val, int) or isinstance(val, bool) or val <= 0:
            raise UnsupportedModelError(f"{name}: {setting}={items} has {key}={val!r}; expected a positive integer")
    return items


def _resample_name(value: Any, name: str) -> _Resample:
    if value is None:
        # PilBackend.resize uses bilinear when no filter is set.
        return "bilinear"
    if isinstance(value, int) and not isinstance(value, bool):  # PILImageResampling is an IntEnum
        filter_name = _RESAMPLE_NAMES.get(int(value))
        if filter_name is not None:
            return filter_name
    else:
        # torchvision's InterpolationMode has string values ("bicubic", ...).
        mode = getattr(value, "value", value)
        for filter_name in _RESAMPLE_NAMES.values():
            if mode == filter_name:
                return filter_name
    known = " (hamming)" if value == 5 else ""
    raise UnsupportedModelError(
        f"{name}: resample={value!r}{known} is not supported; expected one of nearest (0), lanczos (1), "
        "bilinear (2), bicubic (3), box (4)"
    )


def _three_floats(value: Any, setting: str, name: str) -> tuple[float, float, float]:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return (float(value), float(value), float(value))
    try:
        values = [float(v) for v in value]
    except (TypeError, ValueError):
        values = []
    if len(values) != 3:
        raise UnsupportedModelError(f"{name}: {setting}={value!r}; expected one number or three (one per RGB channel)")
    return (values[0], values[1], values[2])
