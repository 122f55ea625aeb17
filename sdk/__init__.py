"""edgemm: compile multimodal models for NVIDIA edge GPUs and run camera + microphone through them.

Typical use::

    import edgemm

    pack = edgemm.load("packs/home-cam")      # reads and verifies manifest.json
    caption = pack.caption("door.jpg")         # edgemm.Caption(text=..., latency_ms=...)

``edgemm.compile`` (which needs the ``compile`` extra: torch, transformers, onnx) is imported only
when used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from edgemm import errors
from edgemm.runtime._version import __version__
from edgemm.runtime.alerts import Alert, AlertEvent
from edgemm.runtime.backends import OrtOptions
from edgemm.runtime.errors import EdgemmError
from edgemm.runtime.events import Caption, Transcript
from edgemm.runtime.pack import Pack, load
from edgemm.runtime.session import CaptionPolicy, Session, SessionStats
from edgemm.runtime.session import open_session as open
from edgemm.runtime.transcriber import Transcription

if TYPE_CHECKING:
    from edgemm import compile

__all__ = [
    "Alert",
    "AlertEvent",
    "Caption",
    "CaptionPolicy",
    "EdgemmError",
    "OrtOptions",
    "Pack",
    "Session",
    "SessionStats",
    "Transcript",
    "Transcription",
    "__version__",
    "compile",
    "errors",
    "load",
    "open",
]


def __getattr__(name: str) -> Any:
    # edgemm.compile pulls in torch and transformers; import it only when a user reaches for it.
    if name == "compile":
        import importlib

        return importlib.import_module("edgemm.compile")
    raise AttributeError(f"module 'edgemm' has no attribute {name!r}")
