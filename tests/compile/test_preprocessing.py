"""HF image processor -> ImagePreprocessing, and the runtime's pixel_values equal to the processor's.

The processors are built from the released checkpoints' preprocessor_config.json values, written
out below (nothing is downloaded). transformers 5.x without torchvision gives the PIL backend
(``BlipImageProcessor`` is ``BlipImageProcessorPil`` then), which is the reference the runtime
reproduces; the parity tests hold it to 1e-5 and it is in fact exact.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from PIL import Image

from edgemm.compile.preprocessing import image_preprocessing_from_processor
from edgemm.errors import UnsupportedModelError
from edgemm.runtime.image import preprocess
from edgemm.runtime.pack import ImagePreprocessing
from tests.media import opencv_sample

transformers = pytest.importorskip("transformers")

TOLERANCE = 1e-5
OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

# name -> (processor class, the checkpoint's preprocessor_config.json, the description expected)
RELEASED: dict[str, tuple[str, dict[str, Any], ImagePreprocessing]] = {
    "blip": (  # Salesforce/blip-image-captioning-base
        "BlipImageProcessorPil",
        {
            "do_normalize": True,
            "do_rescale": True,
            "do_resize": True,
            "image_mean": list(OPENAI_CLIP_MEAN),
            "image_processor_type": "BlipImageProcessor",
            "image_std": list(OPENAI_CLIP_STD),
            "processor_class": "BlipProcessor",
            "resample": 3,
            "rescale_factor": 0.00392156862745098,
            "size": {"height": 384, "width": 384},
        },
        ImagePreprocessing(
            size=(384, 384),
            resize="stretch",
            resize_size=(384, 384),
            resample="bicubic",
            crop="none",
            rescale_factor=0.00392156862745098,
            mean=OPENAI_CLIP_MEAN,
            std=OPENAI_CLIP_STD,
        ),
    ),
    "vit-gpt2": (  # nlpconnect/vit-gpt2-image-captioning (an old feature-extractor config: int size)
        "ViTImageProcessorPil",
        {
            "do_normalize": True,
            "do_resize": True,
            "feature_extractor_type": "ViTFeatureExtractor",
            "image_mean": [0.5, 0.5, 0.5],
            "image_std": [0.5, 0.5, 0.5],
            "resample": 2,
            "size": 224,
        },
        ImagePreprocessing(
            size=(224, 224),
            resize="stretch",
            resize_size=(224, 224),
            resample="bilinear",
            crop="none",
            rescale_factor=1 / 255,
            mean=(0.5, 0.5, 0.5),
            std=(0.5, 0.5, 0.5),
        ),
    ),
    "clip": (  # openai/clip-vit-base-patch32 (int size + default_to_square=False -> shortest edge)
        "CLIPImageProcessorPil",
        {
            "crop_size": 224,
            "do_center_crop": True,
            "do_normalize": True,
            "do_resize": True,
            "feature_extractor_type": "CLIPFeatureExtractor",
            "image_mean": list(OPENAI_CLIP_MEAN),
            "image_std": list(OPENAI_CLIP_STD),
            "resample": 3,
            "size": 224,
        },
        ImagePreprocessing(
            size=(224, 224),
            resize="shortest_edge",
            resize_size=(224, 224),
            resample="bicubic",
            crop="center",
            rescale_factor=1 / 255,
            mean=OPENAI_CLIP_MEAN,
            std=OPENAI_CLIP_STD,
        ),
    ),
    "siglip": (  # google/siglip-base-patch16-224
        "SiglipImageProcessorPil",
        {
            "do_normalize": True,
            "do_rescale": True,
            "do_resize": True,
            "image_mean": [0.5, 0.5, 0.5],
            "image_processor_type": "SiglipImageProcessor",
            "image_std": [0.5, 0.5, 0.5],
            "processor_class": "SiglipProcessor",
            "resample": 3,
            "rescale_factor": 0.00392156862745098,
            "size": {"height": 224, "width": 224},
        },
        ImagePreprocessing(
            size=(224, 224),
            resize="stretch",
            resize_size=(224, 224),
            resample="bicubic",
            crop="none",
            rescale_factor=0.00392156862745098,
            mean=(0.5, 0.5, 0.5),
            std=(0.5, 0.5, 0.5),
        ),
    ),
    # microsoft/Florence-2-base; transformers 5.x maps model type florence2 to CLIPImageProcessor.
    # do_convert_rgb is null there, so transformers itself fails on grayscale/RGBA input.
    "florence-2": (
        "CLIPImageProcessorPil",
        {
            "crop_size": {"height": 768, "width": 768},
            "do_center_crop": False,
            "do_convert_rgb": None,
            "do_normalize": True,
            "do_rescale": True,
            "do_resize": True,
            "image_mean": [0.485, 0.456, 0.406],
            "image_processor_type": "CLIPImageProcessor",
            "image_seq_length": 577,
            "image_std": [0.229, 0.224, 0.225],
            "processor_class": "Florence2Processor",
            "resample": 3,
            "rescale_factor": 0.00392156862745098,
            "size": {"height": 768, "width": 768},
        },
        ImagePreprocessing(
            size=(768, 768),
            resize="stretch",
            resize_size=(768, 768),
            resample="bicubic",
            crop="none",
            rescale_factor=0.00392156862745098,
            mean=(0.485, 0.456, 0.406),
            std=(0.229, 0.224, 0.225),
        ),
    ),
}


def _processor(name: str, **overrides: Any) -> Any:
    class_name, config, _ = RELEASED[name]
    return getattr(transformers, class_name).from_dict({**config, **overrides})


def _photo(name: str) -> Image.Image:
    return Image.open(opencv_sample(name))


def _pixels(name: str, rows: slice, cols: slice) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(_photo(name).convert("RGB"))[rows, cols])


# Inputs as a user hands them to the processor: PIL images straight from Image.open, and
# arrays (H, W, C), which transformers is told are channels-last (it would guess wrong for 3x3).
INPUTS: dict[str, Any] = {
    "fruits.jpg (RGB 512x480)": lambda: _photo("fruits.jpg"),
    "messi5.jpg (RGB 548x342)": lambda: _photo("messi5.jpg"),
    "HappyFish.jpg (RGB 259x194, upscaled)": lambda: _photo("HappyFish.jpg"),
    "37x501 array": lambda: _pixels("fruits.jpg", slice(0, 37), slice(0, 501)),
    "501x37 array": lambda: _pixels("baboon.jpg", slice(0, 501), slice(100, 137)),
    "3x3 array": lambda: _pixels("messi5.jpg", slice(100, 103), slice(200, 203)),
    "2x2 array": lambda: _pixels("baboon.jpg", slice(10, 12), slice(10, 12)),
    "opencv-logo.png (RGBA, transparent areas)": lambda: _photo("opencv-logo.png"),
    "RGBA array": lambda: np.asarray(_photo("opencv-logo.png"))[::7, ::5].copy(),
    "box.png (grayscale L)": lambda: _photo("box.png"),
    "3x5 grayscale": lambda: Image.fromarray(np.asarray(_photo("box.png"))[50:53, 60:65]),
    "imageTextN.png (palette P)": lambda: _photo("imageTextN.png"),
    "mask.png (LA)": lambda: _photo("mask.png"),
}
NOT_RGB = {
    "opencv-logo.png (RGBA, transparent areas)",
    "RGBA array",
    "box.png (grayscale L)",
    "3x5 grayscale",
    "imageTextN.png (palette P)",
    "mask.png (LA)",
}


def _hf(processor: Any, images: Any) -> np.ndarray:
    out = processor(images, return_tensors="np", input_data_format="channels_last")["pixel_values"]
    return np.asarray(out)


@pytest.mark.parametrize("name", RELEASED)
def test_released_configs_map_to_the_expected_description(name: str) -> None:
    assert image_preprocessing_from_processor(_processor(name)) == RELEASED[name][2]


@pytest.mark.parametrize("image", INPUTS)
@pytest.mark.parametrize("name", RELEASED)
def test_pixel_values_equal_the_processor(name: str, image: str) -> None:
    processor = _processor(name)
    spec = image_preprocessing_from_processor(processor)
    picture = INPUTS[image]()
    if image in NOT_RGB and not processor.do_convert_rgb:
        # ViT-GPT2 and Florence-2 ship do_convert_rgb off: transformers then fails on anything
        # but RGB, and the runtime converts as do_convert_rgb=True would, which is compared.
        with pytest.raises(ValueError, match="mean must have"):
            _hf(processor, picture)
        processor = _processor(name, do_convert_rgb=True)
    expected = _hf(processor, picture)
    ours = preprocess(picture, spec)
    assert ours.shape == expected.shape == (1, 3, *spec.size)
    assert ours.dtype == np.float32
    assert float(np.abs(ours - expected).max()) <= TOLERANCE


@pytest.mark.parametrize("name", RELEASED)
def test_batch_of_different_sizes_equals_the_processor(name: str) -> None:
    processor = _processor(name)
    spec = image_preprocessing_from_processor(processor)
    batch = [INPUTS[key]() for key in ("messi5.jpg (RGB 548x342)", "37x501 array", "3x3 array", "HappyFish.jpg (RGB 259x194, upscaled)")]
    expected = _hf(processor, batch)
    ours = preprocess(batch, spec)
    assert ours.shape == expected.shape == (4, 3, *spec.size)
    assert float(np.abs(ours - expected).max()) <= TOLERANCE
    assert not np.array_equal(ours[0], ours[1])


def test_rgba_parity_is_not_vacuous() -> None:
    # The white compositing matters on this picture: dropping alpha instead moves values a lot.
    processor = _processor("clip")
    spec = image_preprocessing_from_processor(processor)
    logo = _photo("opencv-logo.png")
    alpha_dropped = preprocess(np.asarray(logo.convert("RGB")), spec)
    assert float(np.abs(alpha_dropped - _hf(processor, logo)).max()) > 1.0


def test_a_multimodal_processor_is_read_through_its_image_processor() -> None:
    wrapper = SimpleNamespace(image_processor=_processor("clip"), tokenizer=object())
    assert image_preprocessing_from_processor(wrapper) == RELEASED["clip"][2]


def test_padding_to_the_largest_in_the_batch_changes_nothing_and_is_accepted() -> None:
    processor = _processor("blip", do_pad=True)
    spec = image_preprocessing_from_processor(processor)
    assert spec == RELEASED["blip"][2]
    batch = [INPUTS["3x3 array"](), INPUTS["fruits.jpg (RGB 512x480)"]()]
    assert float(np.abs(preprocess(batch, spec) - _hf(processor, batch)).max()) <= TOLERANCE


def test_settings_that_switch_steps_off_map_exactly() -> None:
    processor = _processor("siglip", do_rescale=False, do_normalize=False, resample=0)
    spec = image_preprocessing_from_processor(processor)
    assert (spec.rescale_factor, spec.mean, spec.std, spec.resample) == (1.0, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), "nearest")
    picture = INPUTS["messi5.jpg (RGB 548x342)"]()
    expected = _hf(processor, picture).astype(np.float32)  # uint8 there: nothing made it float
    np.testing.assert_array_equal(preprocess(picture, spec), expected)


def test_stretch_with_a_larger_center_crop_pads_like_the_processor() -> None:
    processor = _processor("vit-gpt2", do_center_crop=True, crop_size={"height": 240, "width": 231}, resample=1)
    spec = image_preprocessing_from_processor(processor)
    assert (spec.size, spec.resize_size, spec.crop, spec.resample) == ((240, 231), (224, 224), "center", "lanczos")
    picture = INPUTS["fruits.jpg (RGB 512x480)"]()
    assert float(np.abs(preprocess(picture, spec) - _hf(processor, picture)).max()) <= TOLERANCE


class _NotAProcessor:
    def __init__(self) -> None:
        self.do_resize = True
        self.size = {"height": 224, "width": 224}


# processor -> fragment of the UnsupportedModelError message (the setting and its value)
UNSUPPORTED: dict[str, tuple[Any, str]] = {
    "overridden pipeline (ConvNext)": (lambda: transformers.ConvNextImageProcessorPil(), "overrides _preprocess()"),
    "no resize": (lambda: _processor("siglip", do_resize=False), "do_resize=False"),
    "longest_edge": (
        lambda: _processor("clip", size={"shortest_edge": 224, "longest_edge": 448}),
        "size={'longest_edge': 448, 'shortest_edge': 224} is not supported",
    ),
    "max_height/max_width": (
        lambda: _processor("siglip", size={"max_height": 224, "max_width": 224}),
        "size={'max_height': 224, 'max_width': 224} is not supported",
    ),
    "shortest_edge without crop": (lambda: _processor("clip", do_center_crop=False), "without do_center_crop"),
    "hamming filter": (lambda: _processor("siglip", resample=5), "resample=5 (hamming) is not supported"),
    "pad beyond the output": (
        lambda: _processor("siglip", do_pad=True, pad_size={"height": 256, "width": 256}),
        "do_pad=True with pad_size={'height': 256, 'width': 256}",
    ),
    "one-channel mean": (lambda: _processor("siglip", image_mean=[0.5], image_std=[0.5]), "image_mean=(0.5,)"),
    "not a transformers processor": (lambda: _NotAProcessor(), "_NotAProcessor is not a transformers image processor"),
}


@pytest.mark.parametrize("case", UNSUPPORTED)
def test_settings_it_cannot_represent_are_refused(case: str) -> None:
    make, fragment = UNSUPPORTED[case]
    with pytest.raises(UnsupportedModelError) as caught:
        image_preprocessing_from_processor(make())
    assert fragment in str(caught.value)
