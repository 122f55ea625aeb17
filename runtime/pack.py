"""The model pack: a directory with ``manifest.json``, ONNX graphs, tokenizer files and engines.

The manifest is the only contract between ``edgemm.compile`` (which writes packs) and the runtime
(which reads them). Everything the runtime needs to rebuild preprocessing, decoding and backends
is in it, so a pack describes itself; nothing in a pack is executed or unpickled.

Typical use::

    pack = edgemm.runtime.pack.load("packs/home-cam")   # verifies paths, hashes and graph io
    caption = pack.component("caption")
    graph = caption.graph("decoder_step", precision="int8", target="cpu")
    path = pack.path_of(graph.file)
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any, Literal

from ._serde import from_json, to_json
from ._version import __version__
from .errors import (
    GraphSpecMismatchError,
    ManifestError,
    PackError,
    PackFileMissingError,
    PackIntegrityError,
    PackNotFoundError,
    SchemaVersionError,
    UnsafePathError,
)
from .onnx_graph import TensorSpec, describe_onnx

__all__ = [
    "MANIFEST_NAME",
    "PRECISIONS",
    "SCHEMA_VERSION",
    "TARGETS",
    "TASKS",
    "AudioPreprocessing",
    "Component",
    "DeviceKey",
    "Engine",
    "FileRef",
    "GenerationSettings",
    "Graph",
    "ImagePreprocessing",
    "KVCacheLayout",
    "Manifest",
    "OptimizationProfile",
    "Pack",
    "Provenance",
    "ShapeRange",
    "TensorSpec",
    "ValidationResult",
    "file_ref",
    "graph_from_file",
    "load",
    "sha256_file",
    "write_manifest",
]

SCHEMA_VERSION = 1
"""The manifest schema this edgemm writes and the newest it reads."""

MANIFEST_NAME = "manifest.json"

TASKS = ("caption", "zero_shot_image", "zero_shot_audio", "asr", "vad")
PRECISIONS = ("fp32", "fp16", "int8")
TARGETS = ("any", "cpu", "gpu", "tensorrt")
"""Which backends a graph variant is meant for: ``cpu`` graphs are never given to a GPU backend
and ``gpu``/``tensorrt`` graphs (fp16, symmetric Q/DQ) never to the CPU backend."""

Precision = Literal["fp32", "fp16", "int8"]
Target = Literal["any", "cpu", "gpu", "tensorrt"]

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise ManifestError(message)


@dataclass(frozen=True)
class FileRef:
    """A file of the pack, by path relative to the pack directory, with its sha256 and size."""

    path: str
    sha256: str
    size_bytes: int

    def __post_init__(self) -> None:
        _check(bool(_SHA256.match(self.sha256)), f"{self.path}: sha256 must be 64 lowercase hex digits, got {self.sha256!r}")
        _check(self.size_bytes >= 0, f"{self.path}: size_bytes must be >= 0, got {self.size_bytes}")


@dataclass(frozen=True)
class Graph:
    """One ONNX graph of a component, in one precision, for one kind of backend.

    Attributes:
        role: what the graph does in its component ("encoder", "decoder_step", "text_encoder", ...).
        file: the ONNX file, relative to the pack directory.
        precision: "fp32", "fp16" or "int8".
        target: the backends it is meant for (see :data:`TARGETS`).
        quantization: for int8 graphs, the flavour ("ort-dynamic-u8s8", "ort-static-u8s8",
            "qdq-s8s8-symmetric" for TensorRT), else None.
        inputs, outputs: io specs; checked against the ONNX file at load time.
        external_data: files holding initializers stored outside the ONNX file.
    """

    role: str
    file: FileRef
    precision: Precision
    target: Target
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    opset: int
    quantization: str | None = None
    external_data: tuple[FileRef, ...] = ()

    def __post_init__(self) -> None:
        _check(bool(_NAME.match(self.role)), f"graph role must be a short lowercase name, got {self.role!r}")
        _check(
            (self.precision == "int8") == (self.quantization is not None),
            f"graph {self.role} ({self.file.path}): an int8 graph needs a quantization flavour and only an int8 graph has one; "
            f"got precision={self.precision!r}, quantization={self.quantization!r}",
        )

    @property
    def variant(self) -> str:
        """A readable label, e.g. ``decoder_step[int8/cpu]``."""
        return f"{self.role}[{self.precision}/{self.target}]"

    def input(self, name: str) -> TensorSpec:
        for spec in self.inputs:
            if spec.name == name:
                return spec
        raise KeyError(name)


@dataclass(frozen=True)
class ImagePreprocessing:
    """How a frame becomes ``pixel_values``, equal to the source model's image processor.

    Attributes:
        size: (height, width) of the model input after resizing (and cropping).
        resize: "stretch" resizes to ``resize_size`` ignoring aspect; "shortest_edge" scales so the
            shortest edge equals ``resize_size[0]``.
        resize_size: (height, width) for "stretch", (shortest_edge, shortest_edge) otherwise.
        resample: interpolation used by the processor.
        crop: "center" crops ``size`` from the middle after resizing; "none" does not crop.
        rescale_factor: multiplies uint8 values (1/255 for most processors).
        mean, std: per-channel normalization applied after rescaling, in channel order.
        channel_order: "rgb" or "bgr" channel order expected by the model.
    """

    size: tuple[int, int]
    resize: Literal["stretch", "shortest_edge"]
    resize_size: tuple[int, int]
    resample: Literal["nearest", "bilinear", "bicubic", "lanczos", "box"]
    crop: Literal["none", "center"]
    rescale_factor: float
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    channel_order: Literal["rgb", "bgr"] = "rgb"

    def __post_init__(self) -> None:
        _check(all(v > 0 for v in self.size + self.resize_size), f"image sizes must be positive, got {self}")
        _check(all(s > 0 for s in self.std), f"image std must be positive, got {self.std}")


@dataclass(frozen=True)
class AudioPreprocessing:
    """How audio becomes model features, equal to the source model's feature extractor.

    Attributes:
        sample_rate_hz: the rate the model expects; input audio is resampled to it.
        feature: "waveform" (raw samples) or a log-mel flavour ("log_mel_whisper", "log_mel_clap").
        n_fft, hop_length, n_mels, f_min_hz, f_max_hz, mel_scale, mel_norm: STFT and mel filter bank.
        max_length_s: audio is padded or truncated to this length (0: no fixed length).
        padding, truncation: the extractor's modes ("repeatpad", "fusion", ...), where it has them.
    """

    sample_rate_hz: int
    feature: Literal["waveform", "log_mel_whisper", "log_mel_clap"]
    n_fft: int = 0
    hop_length: int = 0
    n_mels: int = 0
    f_min_hz: float = 0.0
    f_max_hz: float | None = None
    mel_scale: Literal["slaney", "htk"] = "slaney"
    mel_norm: Literal["slaney", "none"] = "slaney"
    max_length_s: float = 0.0
    padding: str | None = None
    truncation: str | None = None

    def __post_init__(self) -> None:
        _check(self.sample_rate_hz > 0, f"sample_rate_hz must be positive, got {self.sample_rate_hz}")


@dataclass(frozen=True)
class GenerationSettings:
    """Decoding settings the model ships (its generation_config), used by the runtime's decoder."""

    eos_token_ids: tuple[int, ...]
    max_new_tokens: int
    decoder_start_token_id: int | None = None
    bos_token_id: int | None = None
    pad_token_id: int | None = None
    min_new_tokens: int = 0
    num_beams: int = 1
    length_penalty: float = 1.0
    early_stopping: bool | Literal["never"] = False
    repetition_penalty: float = 1.0
    no_repeat_ngram_size: int = 0
    forced_bos_token_id: int | None = None
    forced_eos_token_id: int | None = None
    suppress_tokens: tuple[int, ...] = ()
    begin_suppress_tokens: tuple[int, ...] = ()
    prompt: str | None = None

    def __post_init__(self) -> None:
        _check(self.max_new_tokens > 0, f"max_new_tokens must be positive, got {self.max_new_tokens}")
        _check(self.num_beams >= 1, f"num_beams must be >= 1, got {self.num_beams}")
        _check(self.repetition_penalty > 0, f"repetition_penalty must be positive, got {self.repetition_penalty}")


@dataclass(frozen=True)
class KVCacheLayout:
    """The decoder's key/value cache, in the one convention every family uses.

    ``convention`` names the input/output naming and layout defined in
    :mod:`edgemm.runtime.graph_io` (``past.{i}.key`` in, ``present.{i}.key`` out, cross-attention
    ``cross.{i}.key``; every tensor ``[batch, heads, sequence, head_dim]``).
    """

    convention: str
    num_layers: int
    num_heads: int
    head_dim: int
    cross_attention: bool

    def __post_init__(self) -> None:
        _check(min(self.num_layers, self.num_heads, self.head_dim) > 0, f"kv cache dims must be positive, got {self}")


@dataclass(frozen=True)
class Provenance:
    """Where a component came from and how it was made."""

    source: str
    architecture: str
    edgemm_version: str
    created_at: str
    revision: str | None = None
    recipe: dict[str, Any] = field(default_factory=dict)
    tool_versions: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ValidationResult:
    """A numeric check of one graph variant against its reference, as measured at compile time.

    Attributes:
        subject: what was checked, e.g. ``decoder_step[int8/cpu]`` or ``caption[fp16/gpu]``.
        reference: what it was compared with, e.g. "torch fp32" or "pack fp32".
        metrics: measured values, e.g. ``{"logits_max_abs_diff": 2e-5, "token_agreement": 1.0}``.
        thresholds: the bound each metric was held to (same keys).
        passed: whether every metric met its threshold.
        num_samples: number of inputs the metrics were measured on.
    """

    subject: str
    reference: str
    metrics: dict[str, float]
    thresholds: dict[str, float]
    passed: bool
    num_samples: int


@dataclass(frozen=True)
class DeviceKey:
    """The device a TensorRT engine was built for; an engine only runs where the key matches."""

    gpu_name: str
    compute_capability: str
    tensorrt_version: str
    cuda_version: str

    @property
    def slug(self) -> str:
        """Directory name under ``engines/``, e.g. ``nvidia-jetson-agx-orin-sm87-trt10.3.0``."""
        gpu = re.sub(r"[^a-z0-9]+", "-", self.gpu_name.lower()).strip("-")
        cc = self.compute_capability.replace(".", "")
        return f"{gpu}-sm{cc}-trt{self.tensorrt_version}"


@dataclass(frozen=True)
class ShapeRange:
    """Min/opt/max shape of one input in a TensorRT optimization profile."""

    min: tuple[int, ...]
    opt: tuple[int, ...]
    max: tuple[int, ...]


@dataclass(frozen=True)
class OptimizationProfile:
    shapes: dict[str, ShapeRange]


@dataclass(frozen=True)
class Engine:
    """A TensorRT engine built from one graph of the component on one device."""

    graph: str
    """The ``file.path`` of the graph it was built from."""
    file: FileRef
    device: DeviceKey
    precision: Precision
    profiles: tuple[OptimizationProfile, ...]
    build_time_s: float
    built_at: str
    dla_core: int | None = None
    version_compatible: bool = False
    """Built with TensorRT's version-compatible flag: it also runs with later TensorRT releases
    (same major version, or TensorRT 10 -> 11), carrying its own lean runtime."""


@dataclass(frozen=True)
class Component:
    """One model of the pack, for one task.

    Attributes:
        name: unique within the pack ("caption", "alerts", "speech").
        task: one of :data:`TASKS`.
        family: model family the runtime adapts to ("blip", "vision_encoder_decoder", "clip", ...).
        graphs: every graph variant (role x precision x target).
        files: other files by role ("tokenizer" -> tokenizer.json, "prompt_embeddings" -> .npy).
        settings: task-specific values the runtime needs (e.g. CLIP's logit scale).
    """

    name: str
    task: str
    family: str
    graphs: tuple[Graph, ...]
    provenance: Provenance
    files: dict[str, FileRef] = field(default_factory=dict)
    image: ImagePreprocessing | None = None
    audio: AudioPreprocessing | None = None
    generation: GenerationSettings | None = None
    kv_cache: KVCacheLayout | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    validation: tuple[ValidationResult, ...] = ()
    engines: tuple[Engine, ...] = ()

    def __post_init__(self) -> None:
        _check(bool(_NAME.match(self.name)), f"component name must be a short lowercase name, got {self.name!r}")
        _check(self.task in TASKS, f"component {self.name}: task must be one of {list(TASKS)}, got {self.task!r}")
        _check(len(self.graphs) > 0, f"component {self.name}: expected at least one graph, got none")
        seen: set[tuple[str, str, str]] = set()
        for graph in self.graphs:
            key = (graph.role, graph.precision, graph.target)
            _check(key not in seen, f"component {self.name}: graph {graph.variant} is listed twice")
            seen.add(key)

    def graph(self, role: str, precision: str = "fp32", target: str = "any") -> Graph:
        """Returns the graph variant for ``role`` in ``precision`` for ``target``.

        A ``target="any"`` graph serves every target; a target-specific graph wins over it.

        Raises:
            PackError: listing the variants the component has.
        """
        candidates = [g for g in self.graphs if g.role == role and g.precision == precision]
        for wanted in (target, "any"):
            for g in candidates:
                if g.target == wanted:
                    return g
        have = ", ".join(g.variant for g in self.graphs) or "none"
        raise PackError(
            f"component '{self.name}' has no {role} graph in {precision} for target {target}; it has: {have}"
        )

    def precisions(self, target: str) -> tuple[str, ...]:
        """Precisions for which every graph role has a variant usable on ``target``."""
        roles = {g.role for g in self.graphs}
        usable = []
        for precision in PRECISIONS:
            if all(any(g.role == r and g.precision == precision and g.target in (target, "any") for g in self.graphs) for r in roles):
                usable.append(precision)
        return tuple(usable)

    def referenced_files(self) -> Iterable[FileRef]:
        for graph in self.graphs:
            yield graph.file
            yield from graph.external_data
        yield from self.files.values()
        for engine in self.engines:
            yield engine.file


@dataclass(frozen=True)
class Manifest:
    """The contents of ``manifest.json``."""

    schema_version: int = SCHEMA_VERSION
    components: tuple[Component, ...] = ()

    def __post_init__(self) -> None:
        names = [c.name for c in self.components]
        dupes = sorted({n for n in names if names.count(n) > 1})
        _check(not dupes, f"component names must be unique, got {dupes} more than once")

    def to_json(self) -> dict[str, Any]:
        return to_json(self)

    @classmethod
    def from_json(cls, data: Any) -> Manifest:
        """Builds a manifest from parsed JSON, checking the schema version first.

        Raises:
            SchemaVersionError: the manifest is of a schema this edgemm cannot read.
            ManifestError: a field is missing, unknown or of the wrong type.
        """
        if not isinstance(data, dict):
            raise ManifestError(f"manifest: expected a JSON object, got {type(data).__name__}")
        version = data.get("schema_version")
        if not isinstance(version, int) or isinstance(version, bool):
            raise ManifestError(f"manifest: expected an integer schema_version, got {version!r}")
        if version > SCHEMA_VERSION:
            raise SchemaVersionError(
                f"manifest: schema_version {version} is newer than this edgemm {__version__} can read "
                f"(up to {SCHEMA_VERSION}); upgrade edgemm (pip install -U edgemm) or re-compile the pack with this version"
            )
        if version < 1:
            raise SchemaVersionError(f"manifest: schema_version must be between 1 and {SCHEMA_VERSION}, got {version}")
        return from_json(cls, data, error=ManifestError, path="manifest")

    def with_component(self, component: Component) -> Manifest:
        """Returns a manifest with ``component`` added, or replacing the one of the same name."""
        kept = tuple(c for c in self.components if c.name != component.name)
        return dataclasses.replace(self, components=(*kept, component))


class Pack:
    """A loaded, verified model pack. Build it with :func:`load`.

    Besides describing the pack, it runs it: ``pack.caption(image)`` builds the captioner on first
    use (with the precision, backend and ONNX Runtime options given to :func:`load`) and keeps it;
    ``pack.scorer()`` does the same for a zero-shot (alert) component.
    """

    def __init__(self, path: Path, manifest: Manifest, *, precision: str = "auto", options: Any = None, backend: str = "auto") -> None:
        self.path = path
        self.manifest = manifest
        self.precision = precision
        self.options = options
        self.backend = backend
        self._captioners: dict[str | None, Any] = {}
        self._scorers: dict[str | None, Any] = {}
        self._transcribers: dict[str | None, Any] = {}

    def _only(self, *tasks: str) -> str | None:
        """The name of the pack's only component of ``tasks`` (None when there are none or several), so
        ``scorer()`` and ``scorer("alerts")`` share one object."""
        found = [c.name for c in self.manifest.components if c.task in tasks]
        return found[0] if len(found) == 1 else None

    def captioner(self, component: str | None = None) -> Any:
        """The :class:`edgemm.runtime.captioner.Captioner` of a caption component (built once)."""
        component = component or self._only("caption")
        if component not in self._captioners:
            from .captioner import Captioner

            self._captioners[component] = Captioner(self, component, precision=self.precision, options=self.options, backend=self.backend)
        return self._captioners[component]

    def scorer(self, component: str | None = None) -> Any:
        """The :class:`edgemm.runtime.zero_shot.ZeroShotScorer` of a zero-shot component (built once)."""
        component = component or self._only("zero_shot_image", "zero_shot_audio")
        if component not in self._scorers:
            from .zero_shot import ZeroShotScorer

            self._scorers[component] = ZeroShotScorer(self, component, precision=self.precision, options=self.options, backend=self.backend)
        return self._scorers[component]

    def transcriber(self, component: str | None = None) -> Any:
        """The :class:`edgemm.runtime.transcriber.Transcriber` of an asr component (built once)."""
        component = component or self._only("asr")
        if component not in self._transcribers:
            from .transcriber import Transcriber

            self._transcribers[component] = Transcriber(self, component, precision=self.precision, options=self.options, backend=self.backend)
        return self._transcribers[component]

    def caption(self, image: Any, **kwargs: Any) -> Any:
        """Captions one image (path, PIL image, or RGB uint8 array (H, W, 3)) -> :class:`Caption`.

        Keyword arguments: ``prompt``, ``num_beams``, ``max_new_tokens`` (see
        :meth:`Captioner.caption_batch`).
        """
        return self.captioner().caption(image, **kwargs)

    def caption_batch(self, images: Any, **kwargs: Any) -> Any:
        """Captions several images in one batch -> list of :class:`Caption`."""
        return self.captioner().caption_batch(images, **kwargs)

    def __repr__(self) -> str:
        parts = ", ".join(f"{c.name}:{c.task}" for c in self.manifest.components)
        return f"Pack({str(self.path)!r}, components=[{parts}])"

    @property
    def components(self) -> tuple[Component, ...]:
        return self.manifest.components

    def component(self, name: str) -> Component:
        """Returns the component called ``name``.

        Raises:
            PackError: listing the components the pack has.
        """
        for comp in self.manifest.components:
            if comp.name == name:
                return comp
        have = ", ".join(c.name for c in self.manifest.components) or "none"
        raise PackError(f"pack {self.path} has no component '{name}'; it has: {have}")

    def components_for(self, task: str) -> tuple[Component, ...]:
        return tuple(c for c in self.manifest.components if c.task == task)

    def path_of(self, relative: str | FileRef) -> Path:
        """Absolute path of a file of the pack; refuses paths that leave the pack."""
        rel = relative.path if isinstance(relative, FileRef) else relative
        return resolve_inside(self.path, rel)


def sha256_file(path: str | Path, chunk_bytes: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(chunk_bytes):
            digest.update(chunk)
    return digest.hexdigest()


def resolve_inside(root: Path, relative: str) -> Path:
    """Resolves ``relative`` (a manifest path, '/'-separated) under ``root``.

    Raises:
        UnsafePathError: the path is empty, absolute, contains '..' or resolves (through links)
            outside ``root``.
    """
    if not relative or "\\" in relative or "\x00" in relative:
        raise UnsafePathError(f"pack path {relative!r}: expected a relative '/'-separated path inside the pack")
    posix = PurePosixPath(relative)
    if posix.is_absolute() or PureWindowsPath(relative).drive:
        raise UnsafePathError(f"pack path {relative!r}: expected a path relative to the pack, got an absolute path")
    if ".." in posix.parts:
        raise UnsafePathError(f"pack path {relative!r}: expected a path inside the pack, got one with '..'")
    root_resolved = root.resolve()
    target = (root_resolved / posix).resolve()
    if target != root_resolved and root_resolved not in target.parents:
        raise UnsafePathError(f"pack path {relative!r}: resolves to {target}, outside the pack {root_resolved}")
    return target


def file_ref(pack_dir: str | Path, relative: str) -> FileRef:
    """Hashes a file of the pack into a :class:`FileRef` (for writers)."""
    path = resolve_inside(Path(pack_dir), relative)
    return FileRef(path=relative, sha256=sha256_file(path), size_bytes=path.stat().st_size)


def graph_from_file(
    pack_dir: str | Path,
    relative: str,
    *,
    role: str,
    precision: Precision,
    target: Target,
    quantization: str | None = None,
) -> Graph:
    """Describes an ONNX file already written into the pack as a :class:`Graph` entry.

    The io specs are read from the graph itself, so the manifest records what the file really has.
    """
    pack_dir = Path(pack_dir)
    path = resolve_inside(pack_dir, relative)
    info = describe_onnx(path)
    parent = PurePosixPath(relative).parent
    external = tuple(file_ref(pack_dir, str(parent / loc)) for loc in info.external_data)
    return Graph(
        role=role,
        file=file_ref(pack_dir, relative),
        precision=precision,
        target=target,
        inputs=info.inputs,
        outputs=info.outputs,
        opset=info.opsets.get("ai.onnx", 0),
        quantization=quantization,
        external_data=external,
    )


def write_manifest(pack_dir: str | Path, manifest: Manifest) -> Path:
    """Writes ``manifest.json`` atomically (a reader never sees a half-written manifest)."""
    pack_dir = Path(pack_dir)
    pack_dir.mkdir(parents=True, exist_ok=True)
    text = _dumps(manifest.to_json()) + "\n"
    fd, tmp = tempfile.mkstemp(prefix=".manifest.", suffix=".tmp", dir=pack_dir)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes it private; a manifest is as readable as the graphs
        os.replace(tmp, pack_dir / MANIFEST_NAME)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return pack_dir / MANIFEST_NAME


def _dumps(value: Any, indent: str = "") -> str:
    """JSON with two-space indents, keeping lists of plain values (shapes, means) on one line."""
    inner = indent + "  "
    if isinstance(value, dict) and value:
        items = (f"{inner}{json.dumps(k)}: {_dumps(v, inner)}" for k, v in value.items())
        return "{\n" + ",\n".join(items) + "\n" + indent + "}"
    if isinstance(value, list) and value and any(isinstance(v, (dict, list)) for v in value):
        return "[\n" + ",\n".join(inner + _dumps(v, inner) for v in value) + "\n" + indent + "]"
    return json.dumps(value, separators=(", ", ": "))


def read_manifest(pack_dir: str | Path) -> Manifest:
    """Reads and parses ``manifest.json`` without checking the files it lists."""
    pack_dir = Path(pack_dir)
    if not pack_dir.is_dir():
        raise PackNotFoundError(f"pack {pack_dir}: expected a directory, found {'a file' if pack_dir.exists() else 'nothing'}")
    manifest_path = pack_dir / MANIFEST_NAME
    if not manifest_path.is_file():
        raise PackNotFoundError(f"pack {pack_dir}: expected {MANIFEST_NAME} in it, found none (is this a pack directory?)")
    try:
        data = json.loads(manifest_path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise ManifestError(f"{manifest_path}: expected UTF-8 JSON, found undecodable bytes ({exc})") from exc
    except json.JSONDecodeError as exc:
        raise ManifestError(f"{manifest_path}: expected JSON, found a syntax error at line {exc.lineno} column {exc.colno}: {exc.msg}") from exc
    return Manifest.from_json(data)


def _verify_file(pack_dir: Path, ref: FileRef, *, check_hash: bool) -> Path:
    path = resolve_inside(pack_dir, ref.path)
    if not path.is_file():
        raise PackFileMissingError(f"pack {pack_dir}: manifest lists {ref.path}, but the file is missing")
    size = path.stat().st_size
    if size != ref.size_bytes:
        raise PackIntegrityError(
            f"pack {pack_dir}: {ref.path} should be {ref.size_bytes} bytes, found {size} (the file was changed or truncated)"
        )
    if check_hash:
        digest = sha256_file(path)
        if digest != ref.sha256:
            raise PackIntegrityError(
                f"pack {pack_dir}: {ref.path} sha256 should be {ref.sha256[:16]}..., found {digest[:16]}... (the file was changed)"
            )
    return path


def _format_spec(spec: TensorSpec) -> str:
    return f"{spec.dtype}{list(spec.shape)}"


def _verify_graph_io(pack_dir: Path, component: Component, graph: Graph, path: Path) -> None:
    info = describe_onnx(path)
    label = f"pack {pack_dir}: component '{component.name}' graph {graph.variant} ({graph.file.path})"
    for kind, declared, actual in (("input", graph.inputs, info.inputs), ("output", graph.outputs, info.outputs)):
        want = {s.name: s for s in declared}
        have = {s.name: s for s in actual}
        if set(want) != set(have):
            missing = sorted(set(want) - set(have))
            extra = sorted(set(have) - set(want))
            raise GraphSpecMismatchError(
                f"{label}: manifest {kind}s are {sorted(want)}, the graph has {sorted(have)} "
                f"(missing from graph: {missing}; not in manifest: {extra})"
            )
        for name, spec in want.items():
            if spec != have[name]:
                raise GraphSpecMismatchError(
                    f"{label}: manifest says {kind} '{name}' is {_format_spec(spec)}, the graph has {_format_spec(have[name])}"
                )
    listed = {PurePosixPath(ref.path) for ref in graph.external_data}
    parent = PurePosixPath(graph.file.path).parent
    for location in info.external_data:
        resolve_inside(pack_dir, str(parent / location))
        if parent / location not in listed:
            raise GraphSpecMismatchError(
                f"{label}: the graph stores weights in {parent / location}, which the manifest does not list"
            )


def verify(pack: Pack, *, check_hashes: bool = True) -> None:
    """Checks every file the manifest lists: path safety, presence, size, sha256 and graph io.

    Raises:
        UnsafePathError, PackFileMissingError, PackIntegrityError, GraphSpecMismatchError.
    """
    for component in pack.manifest.components:
        for ref in component.referenced_files():
            _verify_file(pack.path, ref, check_hash=check_hashes)
        for graph in component.graphs:
            _verify_graph_io(pack.path, component, graph, pack.path_of(graph.file))


def load(
    path: str | os.PathLike[str], *, check_hashes: bool = True, precision: str = "auto", options: Any = None, backend: str = "auto"
) -> Pack:
    """Loads and verifies a pack directory.

    Args:
        path: the pack directory (the one holding manifest.json).
        check_hashes: hash every file against the manifest (reads every byte once). Sizes, paths
            and graph io are checked either way.
        precision: which graph variants tasks run: "auto" (the fastest validated one for the
            device), "fp32", "fp16" or "int8".
        options: :class:`edgemm.runtime.backends.OrtOptions` (providers, threads) for the tasks.
        backend: what runs the tasks' graphs: "auto" (TensorRT engines built for this device, else
            ONNX Runtime), "tensorrt" (an error when a task has no such engines) or "onnxruntime".

    Raises:
        PackNotFoundError, ManifestError, SchemaVersionError, UnsafePathError,
        PackFileMissingError, PackIntegrityError, GraphSpecMismatchError.
        BackendUnavailableError: an unknown backend.
    """
    pack_dir = Path(path)
    manifest = read_manifest(pack_dir)
    if precision not in ("auto", *PRECISIONS):
        raise PackError(f"precision: expected auto, {', '.join(PRECISIONS)}; got {precision!r}")
    from .tasks import resolve_backend  # tasks imports this module

    pack = Pack(pack_dir.resolve(), manifest, precision=precision, options=options, backend=resolve_backend(backend))
    verify(pack, check_hashes=check_hashes)
    return pack


def describe(manifest: Manifest) -> Mapping[str, Any]:
    """A compact summary of a manifest for ``edgemm info`` (components, graphs, engines, checks)."""
    return {
        "schema_version": manifest.schema_version,
        "components": [
            {
                "name": c.name,
                "task": c.task,
                "family": c.family,
                "source": c.provenance.source,
                "graphs": [
                    {"variant": g.variant, "file": g.file.path, "size_bytes": g.file.size_bytes, "quantization": g.quantization}
                    for g in c.graphs
                ],
                "engines": [
                    {"graph": e.graph, "device": e.device.slug, "precision": e.precision, "file": e.file.path} for e in c.engines
                ],
                "validation": [to_json(v) for v in c.validation],
            }
            for c in manifest.components
        ],
    }
