"""`edgemm build` without TensorRT: its config, its plan, committing engines atomically, and the
error a machine without TensorRT gets. Building real engines is in tests/runtime/test_tensorrt_gpu.py."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest

from edgemm import errors
from edgemm.compile import build as build_module
from edgemm.compile.build import (
    BuildConfig,
    _commit,
    build_engines,
    default_timing_cache,
    network_flags,
    plan_builds,
)
from edgemm.runtime import pack as pk
from edgemm.runtime.engines import engine_path

DEVICE = pk.DeviceKey("NVIDIA GeForce RTX 4090", "8.9", "10.13.0", "12.9")


@pytest.mark.parametrize(
    ("changes", "pattern"),
    [
        ({"optimization_level": 6}, r"optimization_level: expected 0..5, got 6"),
        ({"workspace_gb": 0}, r"workspace_gb: expected a positive size"),
        ({"dla_core": -1}, r"dla_core: expected 0 or more"),
        ({"precisions": ("fp8",)}, r"precisions: expected some of"),
        ({"max_batch": 0}, r"batch: expected 1 <= opt \(1\) <= max \(0\)"),
        ({"version": 2}, r"build config version: expected 1, got 2"),
        ({"shapes": ("batch=4:2:8",)}, r"--shapes 'batch=4:2:8': expected 0 <= min <= opt <= max"),
    ],
)
def test_config_is_validated(changes, pattern) -> None:
    with pytest.raises(errors.CompileError, match=pattern):
        BuildConfig(pack="p", **changes)


def test_config_round_trips_through_json() -> None:
    config = BuildConfig(pack="packs/cam", components=("caption",), shapes=("batch=1:2:4",), dla_core=0, workspace_gb=2.5)
    assert BuildConfig.from_json(json.loads(json.dumps(config.to_json()))) == config


def test_network_flags() -> None:
    assert network_flags(None) == 0  # a TensorRT without the flag: strongly typed anyway
    assert network_flags(1) == 2  # TensorRT 10: STRONGLY_TYPED = 1
    assert network_flags(0) == 1  # TensorRT 11: the (ignored) flag is enum value 0


def test_timing_cache_is_per_device(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert default_timing_cache(DEVICE) == tmp_path / "edgemm" / "tensorrt" / "nvidia-geforce-rtx-4090-sm89-trt10.13.0.timing-cache"


def test_plan_builds_and_keeps_matching_engines(pack_dir: Path) -> None:
    pack = pk.load(pack_dir)
    plans = plan_builds(pack, BuildConfig(pack=str(pack_dir)), DEVICE)
    assert [(p.graph.variant, p.path, p.reuse) for p in plans] == [
        ("encoder[fp32/any]", "caption/engines/nvidia-geforce-rtx-4090-sm89-trt10.13.0/encoder.engine", None)
    ]
    shape = plans[0].profile.shapes["x"]
    assert (shape.min, shape.opt, shape.max) == ((1, 4), (1, 4), (4, 4))
    engine = _engine(plans[0].graph, plans[0].profile)
    component = dataclasses.replace(pack.component("caption"), engines=(engine,))
    with_engine = pk.Pack(pack.path, pack.manifest.with_component(component))
    assert plan_builds(with_engine, BuildConfig(pack=str(pack_dir)), DEVICE)[0].reuse == engine
    assert plan_builds(with_engine, BuildConfig(pack=str(pack_dir), force=True), DEVICE)[0].reuse is None
    assert plan_builds(with_engine, BuildConfig(pack=str(pack_dir), max_batch=8), DEVICE)[0].reuse is None
    with pytest.raises(errors.EngineBuildError, match=r"component 'caption' has no graph to build for TensorRT in \['int8'\]"):
        plan_builds(pack, BuildConfig(pack=str(pack_dir), precisions=("int8",)), DEVICE)


def _engine(graph: pk.Graph, profile: pk.OptimizationProfile, data: bytes = b"engine-bytes") -> pk.Engine:
    import hashlib

    return pk.Engine(
        graph=graph.file.path,
        file=pk.FileRef(engine_path(graph, DEVICE), hashlib.sha256(data).hexdigest(), len(data)),
        device=DEVICE,
        precision="fp32",
        profiles=(profile,),
        build_time_s=1.5,
        built_at="2026-01-01T00:00:00Z",
    )


def test_commit_adds_the_engine_and_the_pack_still_loads(pack_dir: Path) -> None:
    pack = pk.load(pack_dir)
    plan = plan_builds(pack, BuildConfig(pack=str(pack_dir)), DEVICE)[0]
    new = _commit(pack, plan, b"engine-bytes", _engine(plan.graph, plan.profile))
    reloaded = pk.load(pack_dir)
    assert reloaded.component("caption").engines == new.component("caption").engines
    assert (pack_dir / plan.path).read_bytes() == b"engine-bytes"
    # rebuilding replaces the entry and the file, never duplicates them
    _commit(reloaded, plan, b"rebuilt", _engine(plan.graph, plan.profile, b"rebuilt"))
    again = pk.load(pack_dir)
    assert len(again.component("caption").engines) == 1 and (pack_dir / plan.path).read_bytes() == b"rebuilt"


def test_a_failed_commit_leaves_the_pack_as_it_was(pack_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pack = pk.load(pack_dir)
    plan = plan_builds(pack, BuildConfig(pack=str(pack_dir)), DEVICE)[0]
    pack = _commit(pack, plan, b"first", _engine(plan.graph, plan.profile, b"first"))
    manifest_before = (pack_dir / pk.MANIFEST_NAME).read_bytes()

    def fail(*args: object, **kwargs: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(build_module, "write_manifest", fail)
    with pytest.raises(OSError, match="disk full"):
        _commit(pack, plan, b"second", _engine(plan.graph, plan.profile, b"second"))
    assert (pack_dir / pk.MANIFEST_NAME).read_bytes() == manifest_before
    assert (pack_dir / plan.path).read_bytes() == b"first"
    assert sorted(p.name for p in (pack_dir / plan.path).parent.iterdir()) == ["encoder.engine"]  # no temp or backup left
    pk.load(pack_dir)


def test_without_tensorrt_build_says_what_is_missing(pack_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    with pytest.raises(errors.DependencyMissingError, match=r"^edgemm build needs the Python module 'tensorrt', which is not installed: on Jetson"):
        build_engines(BuildConfig(pack=str(pack_dir)))


def test_build_module_does_not_import_torch() -> None:
    code = "import sys, edgemm.compile.build; print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'transformers', 'onnx', 'tensorrt')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
