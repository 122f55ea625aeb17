"""edgemm's compile stage: load -> distill -> export -> quantize -> validate -> build.

Needs the ``compile`` extra (``pip install 'edgemm[compile]'``: torch, transformers, onnx). Each
stage is one verb with one frozen config; every stage checks its output numerically against its
input and fails loudly beyond tolerance.
"""

from __future__ import annotations

__all__: list[str] = []
