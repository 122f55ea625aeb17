"""Zero-shot scoring from a pack: image or audio embeddings against text-prompt embeddings.

A ``zero_shot_image`` (CLIP, SigLIP) or ``zero_shot_audio`` (CLAP) component holds two graphs:
the image or audio tower (``image_encoder`` / ``audio_encoder``) and, unless compiled with
``--no-text-tower``, the text tower (``text_encoder``). Both output L2-normalised embeddings. The
prompts given at compile time have their embeddings stored in the pack (``prompt_embeddings``, a
``.npy`` file), so a device can score them with the image or audio tower alone; new prompts go
through the text tower once and are cached.

Scores are probabilities in [0, 1], with each family's own semantics (``settings["score"]``):

- ``softmax`` (CLIP, CLAP): ``softmax(logit_scale * cos)`` over the asked prompts plus the
  background prompts; a prompt's score is its share. Prompts compete: two near-synonyms split
  the probability between them. Background prompts ("a photo", "background noise" by default)
  absorb the probability when nothing asked for is there.
- ``sigmoid`` (SigLIP): ``sigmoid(logit_scale * cos + logit_bias)`` per prompt, independently of
  the other prompts; background prompts are not used.

Typical use::

    scorer = edgemm.load("packs/home-cam").scorer()                # the pack's zero-shot component
    frames = scorer.embed_images([frame_a, frame_b])              # (2, d) float32
    scores = scorer.scores(frames, ["a person lying on the floor", "fire"])   # (2, 2) in [0, 1]
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from . import graph_io
from .audio_features import clap_features
from .backends import Backend, OrtOptions
from .errors import DependencyMissingError, InputError, PackError, PromptError, TextTowerMissingError
from .image import ImageInput, preprocess
from .pack import Component, Graph, Pack
from .tasks import describe_backends, open_graph, plan_graphs

__all__ = [
    "DEFAULT_BACKGROUND_PROMPTS",
    "IS_LONGER",
    "SCORE_KINDS",
    "TEXT_ENCODER",
    "ZERO_SHOT_TASKS",
    "ZeroShotScorer",
    "encoder_role",
    "sigmoid_scores",
    "softmax_scores",
]

log = logging.getLogger("edgemm")

ZERO_SHOT_TASKS = ("zero_shot_image", "zero_shot_audio")
SCORE_KINDS = ("softmax", "sigmoid")

IS_LONGER = "is_longer"
"""bool ``[batch, 1]``: whether a clip was longer than the model's length (fused CLAP only)."""
TEXT_ENCODER = "text_encoder"
"""Role of the text tower graph."""

DEFAULT_BACKGROUND_PROMPTS: Mapping[str, tuple[str, ...]] = {
    "zero_shot_image": ("a photo",),
    "zero_shot_audio": ("background noise",),
}
"""Background prompts of softmax families when the compile names none: a generic description of
what the camera or microphone gets when nothing asked for happens."""


def encoder_role(task: str) -> str:
    """Role of the image or audio tower graph of a zero-shot ``task``."""
    return "image_encoder" if task == "zero_shot_image" else "audio_encoder"


def _embeds_name(task: str) -> str:
    return graph_io.IMAGE_EMBEDS if task == "zero_shot_image" else graph_io.AUDIO_EMBEDS


def softmax_scores(embeddings: np.ndarray, prompts: np.ndarray, background: np.ndarray, logit_scale: float) -> np.ndarray:
    """CLIP/CLAP probabilities: softmax over prompts + background of ``logit_scale * cos``.

    Args:
        embeddings: np.ndarray, shape (n, d), L2-normalised.
        prompts: np.ndarray, shape (k, d), L2-normalised.
        background: np.ndarray, shape (b, d), L2-normalised (b may be 0).

    Returns:
        np.ndarray, shape (n, k), float32: each asked prompt's share of the probability.
    """
    logits = logit_scale * (embeddings.astype(np.float64) @ np.concatenate([prompts, background]).astype(np.float64).T)
    logits -= logits.max(axis=1, keepdims=True)
    weights = np.exp(logits)
    probabilities = weights / weights.sum(axis=1, keepdims=True)
    return probabilities[:, : prompts.shape[0]].astype(np.float32)


def sigmoid_scores(embeddings: np.ndarray, prompts: np.ndarray, logit_scale: float, logit_bias: float) -> np.ndarray:
    """SigLIP probabilities: ``sigmoid(logit_scale * cos + logit_bias)``, each prompt on its own.

    Args:
        embeddings: np.ndarray, shape (n, d), L2-normalised. prompts: np.ndarray, shape (k, d).

    Returns:
        np.ndarray, shape (n, k), float32.
    """
    logits = logit_scale * (embeddings.astype(np.float64) @ prompts.astype(np.float64).T) + logit_bias
    return (0.5 * (1.0 + np.tanh(0.5 * logits))).astype(np.float32)


def _check_prompts(prompts: Sequence[str], what: str = "prompt") -> tuple[str, ...]:
    if isinstance(prompts, str):
        raise PromptError(f"{what}s: expected a list of strings, got one string {prompts!r} (wrap it in a list)")
    out = []
    for prompt in prompts:
        if not isinstance(prompt, str):
            raise PromptError(f"{what}: expected a string, got {type(prompt).__name__} {prompt!r}")
        if not prompt.strip():
            raise PromptError(f"{what}: expected text, got an empty {what} {prompt!r}")
        out.append(prompt)
    dupes = sorted({p for p in out if out.count(p) > 1})
    if dupes:
        raise PromptError(f"{what}s: expected each {what} once, got {dupes} more than once")
    return tuple(out)


class _PromptTokenizer:
    """The pack's ``tokenizer.json`` with the padding and truncation the text tower was trained with."""

    def __init__(self, path: Path, text: Mapping[str, Any]) -> None:
        try:
            from tokenizers import Tokenizer
        except ImportError as exc:
            raise DependencyMissingError("tokenizers", "embedding new prompts", "pip install tokenizers") from exc
        try:
            self._tokenizer = Tokenizer.from_file(str(path))
        except Exception as exc:
            raise PackError(f"{path}: expected a tokenizers JSON file, could not load it: {exc}") from exc
        self.max_length = int(text["max_length"])
        self.padding = str(text["padding"])
        self.padding_side = str(text.get("padding_side", "right"))
        self.pad_token_id = int(text["pad_token_id"])
        self.attention_mask = bool(text["attention_mask"])
        self._tokenizer.no_padding()
        self._tokenizer.enable_truncation(self.max_length)

    def __call__(self, prompts: Sequence[str]) -> dict[str, np.ndarray]:
        rows = [self._tokenizer.encode(p).ids for p in prompts]
        length = self.max_length if self.padding == "max_length" else max(len(r) for r in rows)
        ids = np.full((len(rows), length), self.pad_token_id, dtype=np.int64)
        mask = np.zeros((len(rows), length), dtype=np.int64)
        for i, row in enumerate(rows):
            span = slice(0, len(row)) if self.padding_side == "right" else slice(length - len(row), length)
            ids[i, span] = row
            mask[i, span] = 1
        feeds = {graph_io.INPUT_IDS: ids}
        if self.attention_mask:
            feeds[graph_io.ATTENTION_MASK] = mask
        return feeds


class ZeroShotScorer:
    """Scores images or audio clips against text prompts with a pack's zero-shot component.

    Args:
        pack: a loaded pack.
        component: the component's name (default: the pack's only zero-shot component).
        precision: "auto" (the fastest validated variant for this device), "fp32", "fp16" or "int8".
        options: ONNX Runtime options (providers, threads).
        graph_target: run the graphs built for this target instead of the device's own (compile-time
            validation runs GPU graphs on the CPU this way; not for deployment).
        background_prompts: background prompts of softmax families (None: the pack's, which are
            the compile's or :data:`DEFAULT_BACKGROUND_PROMPTS`).
        backend: "auto" (TensorRT engines built for this device, else ONNX Runtime), "tensorrt"
            (an error without such engines) or "onnxruntime"; see :func:`edgemm.runtime.tasks.plan_graphs`.

    Raises:
        PackError: no such zero-shot component, or one that lacks what scoring needs.
        TextTowerMissingError: background prompts the pack has no embeddings for, and no text tower.
    """

    def __init__(
        self,
        pack: Pack,
        component: str | None = None,
        *,
        precision: str = "auto",
        options: OrtOptions | None = None,
        graph_target: str | None = None,
        background_prompts: Sequence[str] | None = None,
        backend: str = "auto",
    ) -> None:
        self.pack = pack
        self.component = _zero_shot_component(pack, component)
        comp = self.component
        self.modality = "image" if comp.task == "zero_shot_image" else "audio"
        if (self.modality == "image" and comp.image is None) or (self.modality == "audio" and comp.audio is None):
            raise PackError(f"component '{comp.name}': a {comp.task} component needs {self.modality} preprocessing, found none")
        settings = comp.settings
        self.score_kind = str(settings.get("score"))
        if self.score_kind not in SCORE_KINDS:
            raise PackError(f"component '{comp.name}': settings.score must be one of {list(SCORE_KINDS)}, got {self.score_kind!r}")
        self.logit_scale = float(settings["logit_scale"])
        self.logit_bias = float(settings.get("logit_bias", 0.0))
        self.has_text_tower = any(g.role == TEXT_ENCODER for g in comp.graphs)
        roles = (encoder_role(comp.task), TEXT_ENCODER) if self.has_text_tower else (encoder_role(comp.task),)
        self.plan = plan_graphs(comp, roles, precision=precision, backend=backend, options=options, graph_target=graph_target)
        self.options, self.target, self.precision = self.plan.options, self.plan.target, self.plan.precision
        self.encoder_graph = self.plan.graphs[encoder_role(comp.task)]
        self.encoder = open_graph(pack, comp, self.plan, encoder_role(comp.task))
        self.text_graph: Graph | None = self.plan.graphs[TEXT_ENCODER] if self.has_text_tower else None
        self._text_encoder: Backend | None = None
        self._lock = threading.Lock()  # a TensorRT backend's buffers serve one call at a time
        self._tokenizer: _PromptTokenizer | None = None
        self.dim = int(self.encoder_graph.outputs[0].shape[-1]) if isinstance(self.encoder_graph.outputs[0].shape[-1], int) else 0
        self._embeddings: dict[str, np.ndarray] = {}
        if "prompt_embeddings" in comp.files:
            texts = [str(t) for t in settings.get("embedding_texts", [])]
            table = np.load(pack.path_of(comp.files["prompt_embeddings"]), allow_pickle=False)
            if table.ndim != 2 or table.shape[0] != len(texts) or not np.issubdtype(table.dtype, np.floating):
                raise PackError(
                    f"component '{comp.name}': prompt_embeddings should be a float (k, d) array with k = {len(texts)} "
                    f"(settings.embedding_texts), found dtype {table.dtype} shape {table.shape}"
                )
            self.dim = self.dim or int(table.shape[1])
            self._embeddings = {t: table[i].astype(np.float32) for i, t in enumerate(texts)}
        self.compiled_prompts: tuple[str, ...] = tuple(str(p) for p in settings.get("prompts", []))
        self.background_prompts: tuple[str, ...] = ()
        self.set_background(settings.get("background_prompts", ()) if background_prompts is None else background_prompts)
        log.info("%s", self.describe())

    @property
    def backend(self) -> str:
        """"tensorrt" or "onnxruntime": what runs the scorer's graphs."""
        return self.plan.backend

    def describe(self) -> str:
        """E.g. ``alerts: clip int8/cpu on onnxruntime[CPUExecutionProvider], text tower yes``
        (the text tower's backend is named too once it is loaded, if it differs)."""
        tower = "yes" if self.has_text_tower else "no (compiled prompts only)"
        backends: dict[str, Backend] = {encoder_role(self.component.task): self.encoder}
        if self._text_encoder is not None:
            backends[TEXT_ENCODER] = self._text_encoder
        return f"{self.component.name}: {self.component.family} {self.precision}/{self.target} on {describe_backends(backends)}, text tower {tower}"

    @property
    def text_tower_loaded(self) -> bool:
        """Whether the text tower is in memory: it loads on the first new prompt, never for compiled ones."""
        return self._text_encoder is not None

    @property
    def prompts(self) -> tuple[str, ...]:
        """Every prompt with a known embedding: compiled into the pack or added since."""
        return tuple(self._embeddings)

    # -- embeddings ---------------------------------------------------------------------------

    def embed_images(self, images: Sequence[ImageInput] | np.ndarray) -> np.ndarray:
        """Embeds images with the image tower.

        Args:
            images: paths, PIL images or arrays (H, W, 3) uint8 RGB, each of any size; or a uint8
                batch array, shape (n, H, W, 3), RGB (frames from OpenCV are BGR: ``frame[..., ::-1]``).

        Returns:
            np.ndarray, shape (n, d), float32, L2-normalised.

        Raises:
            InputError: the component is an audio component. ImageError: an image cannot be used.
        """
        if self.modality != "image":
            raise InputError(f"component '{self.component.name}' scores audio ({self.component.family}); use embed_audio()")
        if len(images) == 0:
            return np.zeros((0, self.dim), np.float32)
        assert self.component.image is not None
        pixels = preprocess(images, self.component.image)
        return self.encode({graph_io.PIXEL_VALUES: pixels})

    def embed_audio(self, waveforms: Sequence[np.ndarray], sample_rate_hz: int) -> np.ndarray:
        """Embeds audio clips with the audio tower.

        Args:
            waveforms: mono clips, each np.ndarray shape (n_i,), float32 in [-1, 1] (or int16 PCM),
                of any length (CLAP pads or truncates them to its ``max_length_s``).
            sample_rate_hz: the clips' rate; must be the model's (``component.audio.sample_rate_hz``).

        Returns:
            np.ndarray, shape (n, d), float32, L2-normalised.

        Raises:
            SampleRateMismatchError: another rate than the model's. AudioError: a clip is unusable.
            InputError: the component is an image component.
        """
        if self.modality != "audio":
            raise InputError(f"component '{self.component.name}' scores images ({self.component.family}); use embed_images()")
        if isinstance(waveforms, np.ndarray) and waveforms.ndim == 1:
            raise InputError("waveforms: expected a list of clips, got one 1-D array (wrap it in a list)")
        if len(waveforms) == 0:
            return np.zeros((0, self.dim), np.float32)
        assert self.component.audio is not None
        features, is_longer = clap_features(list(waveforms), self.component.audio, sample_rate_hz=sample_rate_hz)
        feeds = {graph_io.INPUT_FEATURES: features}
        if any(spec.name == IS_LONGER for spec in self.encoder_graph.inputs):
            feeds[IS_LONGER] = is_longer
        return self.encode(feeds)

    def encode(self, feeds: Mapping[str, np.ndarray]) -> np.ndarray:
        """Runs the image or audio tower on preprocessed inputs -> (n, d) float32 embeddings."""
        with self._lock:
            out = self.encoder.run(dict(feeds))
        return np.asarray(out[_embeds_name(self.component.task)], dtype=np.float32)

    def tokenize(self, prompts: Sequence[str]) -> dict[str, np.ndarray]:
        """The text tower's inputs for ``prompts``: ``input_ids`` (and ``attention_mask``), int64 (k, L)."""
        if self._tokenizer is None:
            if "tokenizer" not in self.component.files:
                raise self._missing_tower(prompts)
            self._tokenizer = _PromptTokenizer(self.pack.path_of(self.component.files["tokenizer"]), self.component.settings["text"])
        return self._tokenizer(_check_prompts(prompts))

    def embed_texts(self, prompts: Sequence[str]) -> np.ndarray:
        """Embeds prompts with the text tower (always; see :meth:`prompt_embeddings` for the cache).

        Returns:
            np.ndarray, shape (k, d), float32, L2-normalised.

        Raises:
            PromptError: an empty prompt, a non-string, a duplicate.
            TextTowerMissingError: the pack was compiled with ``--no-text-tower``.
        """
        prompts = _check_prompts(prompts)
        if not prompts:
            return np.zeros((0, self.dim), np.float32)
        if self.text_graph is None:
            raise self._missing_tower(prompts)
        feeds = self.tokenize(prompts)
        with self._lock:
            if self._text_encoder is None:
                # Loaded on first use: a device that scores compiled prompts never pays for the text tower.
                self._text_encoder = open_graph(self.pack, self.component, self.plan, TEXT_ENCODER)
            out = self._text_encoder.run(feeds)
        return np.asarray(out[graph_io.TEXT_EMBEDS], dtype=np.float32)

    def _missing_tower(self, prompts: Sequence[str]) -> TextTowerMissingError:
        unknown = [p for p in prompts if p not in self._embeddings]
        return TextTowerMissingError(
            f"component '{self.component.name}' was compiled without its text tower (--no-text-tower), so it can score only "
            f"the prompts compiled into it: {list(self._embeddings)}; got new prompt(s) {unknown}. Re-compile with "
            "--prompt for each of them, or without --no-text-tower to add prompts at run time"
        )

    def add_prompts(self, prompts: Sequence[str]) -> None:
        """Embeds the prompts not yet known (text tower) and keeps their embeddings.

        Raises:
            PromptError: an empty prompt, a non-string, a duplicate.
            TextTowerMissingError: a new prompt, and the pack has no text tower.
        """
        prompts = _check_prompts(prompts)
        new = [p for p in prompts if p not in self._embeddings]
        if not new:
            return
        if self.text_graph is None:
            raise self._missing_tower(new)
        for prompt, row in zip(new, self.embed_texts(new)):
            self._embeddings[prompt] = row

    def set_prompt_embedding(self, prompt: str, embedding: np.ndarray) -> None:
        """Uses ``embedding`` for ``prompt`` instead of the text tower's: e.g. the image tower's
        embedding of a reference picture, for an alert on "something that looks like this".

        Args:
            embedding: np.ndarray, shape (d,), float; normalised here.

        Raises:
            PromptError: an empty prompt. InputError: an embedding of the wrong shape or all zeros.
        """
        (prompt,) = _check_prompts([prompt])
        vector = np.asarray(embedding, dtype=np.float32).reshape(-1)
        if (self.dim and vector.shape[0] != self.dim) or not np.isfinite(vector).all() or not vector.any():
            raise InputError(f"embedding for {prompt!r}: expected a finite, non-zero vector of {self.dim or 'd'} floats, got shape {np.shape(embedding)}")
        self._embeddings[prompt] = vector / np.linalg.norm(vector)

    def prompt_embeddings(self, prompts: Sequence[str]) -> np.ndarray:
        """Embeddings of ``prompts`` from the pack or the cache, embedding new ones first.

        Returns:
            np.ndarray, shape (k, d), float32.
        """
        prompts = _check_prompts(prompts)
        self.add_prompts(prompts)
        if not prompts:
            return np.zeros((0, self.dim), np.float32)
        return np.stack([self._embeddings[p] for p in prompts])

    def set_background(self, prompts: Sequence[str]) -> None:
        """Sets the background prompts of softmax families (embedding them if new; ignored by sigmoid ones).

        Raises:
            PromptError, TextTowerMissingError: as :meth:`add_prompts`.
        """
        prompts = _check_prompts(prompts, "background prompt")
        if self.score_kind == "softmax":
            self.add_prompts(prompts)
        self.background_prompts = prompts

    # -- scores -------------------------------------------------------------------------------

    def scores(self, embeddings: np.ndarray, prompt_names: Sequence[str]) -> np.ndarray:
        """Probabilities of each prompt for each embedding (see the module docstring per family).

        Args:
            embeddings: np.ndarray, shape (n, d), from :meth:`embed_images` / :meth:`embed_audio`.
            prompt_names: the prompts (their texts); new ones are embedded with the text tower.

        Returns:
            np.ndarray, shape (n, k), float32 in [0, 1]. Softmax families: row sums are at most 1
            (the rest goes to the background prompts). Sigmoid families: independent per prompt.

        Raises:
            InputError: embeddings of the wrong shape. PromptError, TextTowerMissingError: as
            :meth:`add_prompts`.
        """
        embeddings = np.asarray(embeddings)
        if embeddings.ndim != 2 or (self.dim and embeddings.shape[1] != self.dim):
            raise InputError(f"embeddings: expected shape (n, {self.dim or 'd'}) from embed_images/embed_audio, got {embeddings.shape}")
        prompts = self.prompt_embeddings(prompt_names)
        if self.score_kind == "sigmoid":
            return sigmoid_scores(embeddings, prompts, self.logit_scale, self.logit_bias)
        extra = [p for p in self.background_prompts if p not in set(prompt_names)]
        background = np.stack([self._embeddings[p] for p in extra]) if extra else np.zeros((0, prompts.shape[1]), np.float32)
        return softmax_scores(embeddings, prompts, background, self.logit_scale)

    def score_images(self, images: Sequence[ImageInput] | np.ndarray, prompt_names: Sequence[str]) -> np.ndarray:
        """``scores(embed_images(images), prompt_names)``: (n, k) float32."""
        return self.scores(self.embed_images(images), prompt_names)

    def score_audio(self, waveforms: Sequence[np.ndarray], sample_rate_hz: int, prompt_names: Sequence[str]) -> np.ndarray:
        """``scores(embed_audio(waveforms, sample_rate_hz), prompt_names)``: (n, k) float32."""
        return self.scores(self.embed_audio(waveforms, sample_rate_hz), prompt_names)


def _zero_shot_component(pack: Pack, name: str | None) -> Component:
    if name is not None:
        component = pack.component(name)
        if component.task not in ZERO_SHOT_TASKS:
            raise PackError(f"component '{name}' is a {component.task} component, not a zero-shot one ({', '.join(ZERO_SHOT_TASKS)})")
        return component
    found = [c for c in pack.components if c.task in ZERO_SHOT_TASKS]
    if len(found) != 1:
        have = [f"{c.name} ({c.task})" for c in found]
        raise PackError(
            f"pack {pack.path}: expected one zero-shot component, found {len(found)} {have}; name the one to use"
            if found
            else f"pack {pack.path} has no zero-shot component (compile a CLIP, SigLIP or CLAP model into it with `edgemm compile`)"
        )
    return found[0]
