"""edgemm's runtime: model packs, backends, and (in later modules) tasks, sources and sinks.

The runtime never imports torch or transformers: a deployed device needs only numpy,
onnxruntime (or TensorRT), tokenizers and OpenCV.
"""

from __future__ import annotations

from . import errors, graph_io
from ._version import __version__
from .pack import Component, Graph, Manifest, Pack, load

__all__ = ["Component", "Graph", "Manifest", "Pack", "__version__", "errors", "graph_io", "load"]
