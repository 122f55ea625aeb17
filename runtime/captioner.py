"""Captioning from a pack: preprocessing, the encoder graph, and the KV-cache decode loop."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from . import graph_io
from .backends import OrtOptions
from .errors import InputError, PackError
from .events import Caption
from .generation import generate
from .image import ImageInput, load_image, preprocess
from .pack import Pack
from .tasks import (
    KVCacheState,
    choose_precision,
    describe_backends,
    device_target,
    input_dtype,
    open_graph,
    plan_component,
    plan_graphs,
    task_component,
)
from .tokenizer import TextTokenizer

__all__ = ["CAPTION_ROLES", "Captioner", "choose_precision", "device_target", "plan_component"]

CAPTION_ROLES = ("encoder", "decoder_step")
"""The graphs a caption component runs."""

log = logging.getLogger("edgemm")


class Captioner:
    """Captions images with a pack's ``caption`` component.

    Args:
        pack: a loaded pack.
        component: the component's name (default: the pack's only caption component).
        precision: "auto" (the fastest validated variant for this device), "fp32", "fp16" or "int8".
        options: ONNX Runtime options (providers, threads).
        graph_target: run the graphs built for this target instead of the device's own (compile-time
            validation runs GPU graphs on the CPU this way; not for deployment).
        backend: "auto" (TensorRT engines built for this device, else ONNX Runtime), "tensorrt"
            (an error without such engines) or "onnxruntime"; see :func:`edgemm.runtime.tasks.plan_graphs`.

    The decoder's cache stays on the backend between tokens (see :class:`KVCacheState`), so one
    captioner decodes one batch at a time; concurrent calls wait for each other.

    Example::

        captioner = Captioner(edgemm.load("packs/cam"))
        print(captioner.caption("photo.jpg").text)
    """

    def __init__(
        self,
        pack: Pack,
        component: str | None = None,
        *,
        precision: str = "auto",
        options: OrtOptions | None = None,
        graph_target: str | None = None,
        backend: str = "auto",
    ) -> None:
        self.pack = pack
        self.component = task_component(pack, component, "caption", "a", "a captioner")
        comp = self.component
        if comp.image is None or comp.generation is None or comp.kv_cache is None or "tokenizer" not in comp.files:
            raise PackError(f"component '{comp.name}': a caption component needs image, generation, kv_cache and a tokenizer file")
        self.plan = plan_graphs(comp, CAPTION_ROLES, precision=precision, backend=backend, options=options, graph_target=graph_target)
        self.options, self.target, self.precision = self.plan.options, self.plan.target, self.plan.precision
        self.encoder_graph = self.plan.graphs["encoder"]
        self.step_graph = self.plan.graphs["decoder_step"]
        self.encoder = open_graph(pack, comp, self.plan, "encoder")
        self.step = open_graph(pack, comp, self.plan, "decoder_step")
        self._lock = threading.Lock()
        settings = comp.settings
        self.tokenizer = TextTokenizer(pack.path_of(comp.files["tokenizer"]), clean_up_spaces=bool(settings.get("clean_up_tokenization_spaces", False)))
        self.prompt_mode = str(settings.get("prompt_mode", "none"))
        self.decoder_start_ids = [int(t) for t in settings.get("decoder_start_ids", [comp.generation.decoder_start_token_id])]
        self.task_prompts: dict[str, str] = dict(settings.get("task_prompts", {}))
        self.encoder_template = str(settings.get("encoder_template", "{prompt}"))
        self._past_dtype = np.dtype(input_dtype(self.step_graph, graph_io.past_names(0)[0]))
        log.info("%s", self.describe())

    @property
    def backend(self) -> str:
        """"tensorrt" or "onnxruntime": what runs the captioner's graphs."""
        return self.plan.backend

    def describe(self) -> str:
        """E.g. ``caption: blip int8/cpu on onnxruntime[CPUExecutionProvider]`` or
        ``caption: blip fp16/tensorrt on tensorrt[10.3.0, GPU 0]``."""
        backends = describe_backends({"encoder": self.encoder, "decoder_step": self.step})
        return f"{self.component.name}: {self.component.family} {self.precision}/{self.target} on {backends}"

    # -- prompts ------------------------------------------------------------------------------

    def _prompts(self, prompt: str | None) -> tuple[list[int], list[int] | None]:
        """(decoder prefix ids, encoder prompt ids or None) for ``prompt``."""
        assert self.component.generation is not None
        prompt = prompt if prompt is not None else self.component.generation.prompt
        if self.prompt_mode == "none":
            if prompt:
                raise InputError(f"component '{self.component.name}' ({self.component.family}) takes no text prompt, got {prompt!r}")
            return list(self.decoder_start_ids), None
        if self.prompt_mode == "decoder":
            extra = self.tokenizer.encode(prompt, add_special_tokens=False) if prompt else []
            return [*self.decoder_start_ids, *extra], None
        if self.prompt_mode == "encoder":
            text = prompt or ""
            if text.startswith("<") and text.endswith(">") and text not in self.task_prompts:
                raise InputError(f"unknown task prompt {text!r}; {self.component.family} caption tasks are {sorted(self.task_prompts)}")
            text = self.task_prompts.get(text, text)
            return list(self.decoder_start_ids), self.tokenizer.encode(self.encoder_template.format(prompt=text), add_special_tokens=False)
        raise PackError(f"component '{self.component.name}': unknown prompt_mode {self.prompt_mode!r}")

    # -- running ------------------------------------------------------------------------------

    def encode(self, pixel_values: np.ndarray, encoder_prompt: Sequence[int] | None = None) -> dict[str, np.ndarray]:
        """Runs the encoder: ``pixel_values`` float32 (n, 3, H, W) -> cross-attention keys/values."""
        inputs: dict[str, np.ndarray] = {graph_io.PIXEL_VALUES: pixel_values.astype(input_dtype(self.encoder_graph, graph_io.PIXEL_VALUES))}
        if encoder_prompt is not None:
            inputs[graph_io.INPUT_IDS] = np.tile(np.asarray(encoder_prompt, dtype=np.int64), (pixel_values.shape[0], 1))
        return self.encoder.run(inputs)

    def state(self, cross: dict[str, np.ndarray]) -> KVCacheState:
        """A fresh decoder state (empty cache, kept on the decoder's backend) over the given
        cross-attention keys/values; it replaces any earlier state of this captioner."""
        assert self.component.kv_cache is not None
        return KVCacheState(self.step, cross, self.component.kv_cache, self._past_dtype)

    def caption_batch(
        self,
        images: Sequence[ImageInput],
        *,
        prompt: str | None = None,
        num_beams: int | None = None,
        max_new_tokens: int | None = None,
    ) -> list[Caption]:
        """Captions several images in one batch.

        Args:
            images: paths, PIL images or numpy arrays (shape (H, W, 3) uint8 RGB, (H, W) gray, (H, W, 4) RGBA).
            prompt: a text prompt (BLIP) or task (Florence-2: "<CAPTION>", "<DETAILED_CAPTION>", ...);
                None uses the pack's default.
            num_beams: beam search width (default: the model's own setting).
            max_new_tokens: caption length limit (default: the pack's).

        Raises:
            ImageError: an image cannot be read or used. InputError: a bad prompt or setting.
        """
        if len(images) == 0:
            return []
        start = time.perf_counter()
        assert self.component.image is not None
        assert self.component.generation is not None
        arrays = [load_image(image) for image in images]
        pixels = preprocess(arrays, self.component.image)
        prefix, encoder_prompt = self._prompts(prompt)
        prompt_ids = np.tile(np.asarray(prefix, dtype=np.int64), (len(arrays), 1))
        with self._lock:  # the decoder's backend holds one cache at a time
            cross = self.encode(pixels, encoder_prompt)
            result = generate(self.state(cross), prompt_ids, self.component.generation, max_new_tokens=max_new_tokens, num_beams=num_beams)
        latency_ms = (time.perf_counter() - start) * 1000.0
        captions = []
        for i, tokens in enumerate(result.tokens):
            text = self.tokenizer.decode([*prefix, *tokens], skip_special_tokens=True).strip()
            captions.append(
                Caption(
                    text=text,
                    latency_ms=latency_ms,
                    tokens=tuple(tokens),
                    image=str(images[i]) if isinstance(images[i], (str,)) or hasattr(images[i], "__fspath__") else None,
                    score=None if result.scores is None else result.scores[i],
                )
            )
        return captions

    def caption(self, image: ImageInput, **kwargs: Any) -> Caption:
        """Captions one image; keyword arguments as :meth:`caption_batch`."""
        return self.caption_batch([image], **kwargs)[0]

