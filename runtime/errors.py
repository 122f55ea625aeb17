"""Every error edgemm raises on purpose derives from :class:`EdgemmError`.

The classes live here, in the runtime, so that the runtime can raise them without importing the
SDK; users import them as ``edgemm.errors``. Messages say what was expected and what was found.
"""

from __future__ import annotations

__all__ = [
    "AudioError",
    "BackendError",
    "BackendUnavailableError",
    "CompileError",
    "DependencyMissingError",
    "EdgemmError",
    "EngineBuildError",
    "EngineMismatchError",
    "EngineNotFoundError",
    "ExportError",
    "GStreamerUnavailableError",
    "GraphLintError",
    "GraphSpecMismatchError",
    "ImageError",
    "InputError",
    "InvalidEventError",
    "InvalidSourceError",
    "ManifestError",
    "PackError",
    "PackFileMissingError",
    "PackIntegrityError",
    "PackNotFoundError",
    "PromptError",
    "SampleRateMismatchError",
    "SchemaVersionError",
    "ShapeProfileError",
    "SinkClosedError",
    "SinkError",
    "SinkSpecError",
    "SourceDisconnectedError",
    "SourceError",
    "SourceUnavailableError",
    "SpoolLockedError",
    "TextTowerMissingError",
    "UnsafePathError",
    "UnsupportedModelError",
    "ValidationFailedError",
]


class EdgemmError(Exception):
    """Base class of every error edgemm raises on purpose."""


class DependencyMissingError(EdgemmError, ImportError):
    """An optional dependency is not installed; the message says how to install it."""

    def __init__(self, module: str, purpose: str, install: str) -> None:
        self.module = module
        self.install = install
        super().__init__(f"{purpose} needs the Python module '{module}', which is not installed: {install}")


# --- model packs -----------------------------------------------------------------------------


class PackError(EdgemmError):
    """A model pack cannot be used."""


class PackNotFoundError(PackError, FileNotFoundError):
    """The pack directory or its manifest.json does not exist."""


class ManifestError(PackError):
    """manifest.json is not valid JSON or does not follow the manifest schema."""


class SchemaVersionError(ManifestError):
    """The manifest's schema_version is not one this edgemm can read."""


class UnsafePathError(PackError):
    """A path in the manifest is absolute or escapes the pack directory."""


class PackFileMissingError(PackError):
    """A file the manifest lists is not in the pack."""


class PackIntegrityError(PackError):
    """A file's sha256 differs from the one the manifest records."""


class GraphSpecMismatchError(PackError):
    """A graph's inputs or outputs differ from the io spec the manifest records for it."""


class EngineMismatchError(PackError):
    """A TensorRT engine was built for another device or TensorRT version than this one."""


class EngineNotFoundError(EngineMismatchError):
    """The TensorRT backend was asked for, but the pack has no engine of that graph for this device
    (the message lists the engines it has and says to run ``edgemm build``)."""


# --- backends --------------------------------------------------------------------------------


class BackendError(EdgemmError):
    """An inference backend failed to load or run a graph."""


class BackendUnavailableError(BackendError):
    """The requested backend or execution provider is not available on this machine."""


class InputError(BackendError, ValueError):
    """Inputs given to a graph do not match its inputs (names, dtypes, ranks or fixed dims)."""


# --- media ---------------------------------------------------------------------------------


class ImageError(EdgemmError, ValueError):
    """An image cannot be read, or is not a picture edgemm can use (empty, corrupt, 16-bit, too small)."""


class AudioError(EdgemmError, ValueError):
    """Audio cannot be read or used: an unreadable or unsupported file, an empty or non-finite
    waveform, an array of the wrong rank or dtype."""


class SampleRateMismatchError(AudioError):
    """Audio is at another sample rate than the model's; resample it first (edgemm does not, here)."""


# --- sources ---------------------------------------------------------------------------------


class SourceError(EdgemmError):
    """A camera, stream, file or microphone cannot be opened or read."""


class InvalidSourceError(SourceError, ValueError):
    """A source URI or option is not usable: unknown scheme, malformed URI, an option that does not
    apply to that kind of source, a ``gst://`` pipeline without ``appsink``, a bad reconnect policy."""


class GStreamerUnavailableError(SourceError):
    """A ``csi://`` or ``gst://`` source needs an OpenCV built with GStreamer, and this one is not."""


class SourceUnavailableError(SourceError):
    """A source cannot be opened: a missing file, not a video, no such camera, an unreachable or
    refusing server, or no frame within ``timeout_s``."""


class SourceDisconnectedError(SourceError):
    """A live source dropped and did not come back within its ``ReconnectPolicy``."""


# --- sinks ---------------------------------------------------------------------------------


class SinkError(EdgemmError):
    """A sink cannot be opened or used."""


class SinkSpecError(SinkError, ValueError):
    """A sink spec, or one of a sink's options, is not valid; the message lists what is accepted."""


class SinkClosedError(SinkError):
    """An event was sent to a sink that is closed."""


class InvalidEventError(SinkError, ValueError):
    """An event is not a JSON object with a non-empty string ``"id"``, or is not JSON-serialisable."""


class SpoolLockedError(SinkError):
    """Another sink (in this process or another) is using the spool directory."""


# --- compile ---------------------------------------------------------------------------------


class CompileError(EdgemmError):
    """A compile stage failed."""


class UnsupportedModelError(CompileError):
    """The checkpoint's architecture is not one edgemm can compile."""


class ExportError(CompileError):
    """Exporting a model to ONNX failed."""


class ValidationFailedError(CompileError):
    """A compiled graph disagrees with its reference beyond the allowed tolerance."""


class EngineBuildError(CompileError):
    """TensorRT could not build an engine: the ONNX parser rejected a node (the message names it),
    the builder failed, or a requested feature (DLA) is not available on this device."""


class GraphLintError(EngineBuildError):
    """A graph meant for TensorRT uses something TensorRT's ONNX parser does not accept (an
    operator, opset, data type, control flow in a decoder step, asymmetric Q/DQ)."""


class ShapeProfileError(EngineBuildError, ValueError):
    """An optimization profile cannot be derived: a dynamic axis has no name or no known range, or a
    ``--shapes`` override is malformed or inconsistent (min <= opt <= max)."""


# --- zero-shot scoring -------------------------------------------------------------------------


class PromptError(InputError):
    """A zero-shot prompt is not usable: empty, not text, or unknown to a pack without a text tower."""


class TextTowerMissingError(PromptError, PackError):
    """A new prompt needs the text tower, and the pack was compiled without it (``--no-text-tower``)."""
