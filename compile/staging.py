"""What every compile shares: the staging directory, variants, validation reports and the install.

A compile builds one component in a staging directory beside the pack, checks every graph there,
and only then moves the component into the pack (:func:`install`), replacing nothing but that
component. A failure at any point leaves the pack as it was and removes the staging directory.

Typical use (see ``caption.py`` and ``zero_shot.py``)::

    check_out(out)
    with staging(out, name) as root:                         # root / name is the component folder
        ...export graphs into root / name, validate them...
        graphs += quantize_variant(root, name, roles, variant, calibration)
        return install(root, out, component)
"""

from __future__ import annotations

import datetime
import os
import shutil
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

import numpy as np

from edgemm.runtime._version import __version__
from edgemm.runtime.backends import OrtOptions
from edgemm.runtime.errors import CompileError, EdgemmError
from edgemm.runtime.pack import (
    MANIFEST_NAME,
    Component,
    Graph,
    Manifest,
    Pack,
    Provenance,
    ValidationResult,
    graph_from_file,
    read_manifest,
    write_manifest,
)

from .config import CompileConfig, VariantConfig
from .progress import Progress

__all__ = [
    "CPU",
    "check_out",
    "install",
    "load_staged",
    "provenance",
    "quantize_variant",
    "read_model_config",
    "report",
    "staging",
    "summary",
    "tool_versions",
    "variant_target",
]

CPU = OrtOptions(providers=("cpu",))
"""Every variant is measured at compile time with ONNX Runtime on the CPU, GPU flavours included."""


def read_model_config(model: str, *, revision: str | None, local_files_only: bool) -> Any:
    """The checkpoint's transformers config.

    Raises:
        CompileError: the checkpoint cannot be found or read.
    """
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(model, revision=revision, local_files_only=local_files_only)
    except Exception as exc:
        where = "a local directory" if os.path.isdir(model) else "a local directory or a hub id reachable from here"
        raise CompileError(f"could not read the model config of {model!r} (expected {where}): {type(exc).__name__}: {exc}") from exc


def tool_versions() -> dict[str, str]:
    import importlib.metadata

    versions = {}
    for dist in ("torch", "transformers", "onnx", "onnxscript", "onnxruntime"):
        try:
            versions[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def provenance(config: CompileConfig, architecture: str) -> Provenance:
    """Where a component comes from and the recipe that made it."""
    return Provenance(
        source=config.load.model,
        architecture=architecture,
        edgemm_version=__version__,
        created_at=datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        revision=config.load.revision,
        recipe=config.to_json(),
        tool_versions=tool_versions(),
    )


def check_out(out: Path) -> None:
    """Refuses, before any work, an output that is neither a pack this edgemm reads nor an empty/new directory.

    Raises:
        CompileError: a directory with other files. ManifestError, SchemaVersionError: a pack that cannot be read.
    """
    if (out / MANIFEST_NAME).exists():
        read_manifest(out)
    elif out.exists() and any(out.iterdir()):
        raise CompileError(f"{out}: expected a pack directory or an empty/new directory, found other files")


@contextmanager
def staging(out: Path, name: str) -> Iterator[Path]:
    """A fresh staging directory beside ``out`` holding ``name/``, removed on exit.

    Errors that are not edgemm's own become :class:`CompileError` (with the original as cause).
    """
    root = out.parent / f".{out.name}.staging-{name}-{os.getpid()}"
    shutil.rmtree(root, ignore_errors=True)
    (root / name).mkdir(parents=True)
    try:
        yield root
    except (EdgemmError, KeyboardInterrupt):
        raise
    except Exception as exc:
        raise CompileError(f"compile failed: {type(exc).__name__}: {exc}") from exc
    finally:
        shutil.rmtree(root, ignore_errors=True)


def load_staged(root: Path, component: Component) -> Pack:
    """Writes a one-component manifest into the staging directory and loads it (hashes unchecked)."""
    from edgemm.runtime.pack import load

    write_manifest(root, Manifest(components=(component,)))
    return load(root, check_hashes=False)


def install(root: Path, out: Path, component: Component) -> Pack:
    """Moves the staged component into the pack and records it in the manifest (only it is replaced)."""
    from edgemm.runtime.pack import load

    out.mkdir(parents=True, exist_ok=True)
    manifest = read_manifest(out) if (out / MANIFEST_NAME).exists() else Manifest()
    target = out / component.name
    backup = out / f".{component.name}.old-{os.getpid()}"
    if target.exists():
        target.rename(backup)
    try:
        (root / component.name).rename(target)
        write_manifest(out, manifest.with_component(component))
    except BaseException:
        if target.exists():
            shutil.rmtree(target, ignore_errors=True)
        if backup.exists():
            backup.rename(target)
        raise
    shutil.rmtree(backup, ignore_errors=True)
    return load(out)


def variant_target(variant: VariantConfig) -> Literal["cpu", "gpu", "tensorrt"]:
    """The graph target of a variant: "gpu" for fp16, else the variant's own target."""
    return "gpu" if variant.precision == "fp16" else variant.target


def quantize_variant(
    root: Path,
    name: str,
    roles: Sequence[str],
    variant: VariantConfig,
    calibration: Mapping[str, Sequence[dict[str, np.ndarray]]] | None = None,
) -> list[Graph]:
    """Builds ``variant`` of each fp32 graph ``name/{role}.onnx`` into ``name/{role}.{precision}-{target}.onnx``.

    Args:
        calibration: role -> recorded inputs of that graph, for static INT8 (None: dynamic/fp16).

    Returns:
        The new graphs, described from their files.
    """
    from .quantize import quantize_graph

    target = variant_target(variant)
    graphs = []
    for role in roles:
        relative = f"{name}/{role}.{variant.precision}-{target}.onnx"
        feeds = calibration.get(role) if calibration is not None else None
        flavour = quantize_graph(root / name / f"{role}.onnx", root / relative, variant, feeds)
        graphs.append(graph_from_file(root, relative, role=role, precision=variant.precision, target=target, quantization=flavour))
    return graphs


def summary(result: ValidationResult) -> str:
    return ", ".join(f"{k}={v:.4g}" for k, v in result.metrics.items())


def report(progress: Progress, result: ValidationResult) -> None:
    verdict = "PASS" if result.passed else "FAIL"
    progress.note(f"{verdict} {result.subject} vs {result.reference}: {summary(result)}")
