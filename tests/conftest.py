"""Shared fixtures: small real ONNX graphs and packs built in the test, nothing downloaded."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from edgemm.runtime import pack as pk

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402


def make_linear_graph(path: Path, *, in_features: int = 4, out_features: int = 3, seed: int = 0) -> np.ndarray:
    """Writes ``y = x @ W + b`` (x: float32 [batch, in], y: float32 [batch, out]); returns W."""
    rng = np.random.default_rng(seed)
    weight = rng.standard_normal((in_features, out_features)).astype(np.float32)
    bias = rng.standard_normal(out_features).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["xw"]), helper.make_node("Add", ["xw", "b"], ["y"])],
        "linear",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", in_features])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", out_features])],
        [numpy_helper.from_array(weight, "W"), numpy_helper.from_array(bias, "b")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return weight


def build_pack(root: Path) -> Path:
    """A valid one-component pack: a linear 'encoder' graph and a tokenizer file."""
    root.mkdir(parents=True, exist_ok=True)
    make_linear_graph(root / "caption" / "encoder.onnx")
    (root / "caption" / "tokenizer.json").write_text(json.dumps({"version": "1.0", "model": {"type": "WordLevel"}}))
    graph = pk.graph_from_file(root, "caption/encoder.onnx", role="encoder", precision="fp32", target="any")
    component = pk.Component(
        name="caption",
        task="caption",
        family="test-linear",
        graphs=(graph,),
        provenance=pk.Provenance(
            source="tests/linear",
            architecture="Linear",
            edgemm_version="0.1.0",
            created_at="2026-11-23T00:00:00Z",
            recipe={"precision": "fp32"},
        ),
        files={"tokenizer": pk.file_ref(root, "caption/tokenizer.json")},
        image=pk.ImagePreprocessing(
            size=(8, 8),
            resize="stretch",
            resize_size=(8, 8),
            resample="bicubic",
            crop="none",
            rescale_factor=1 / 255,
            mean=(0.5, 0.5, 0.5),
            std=(0.5, 0.5, 0.5),
        ),
        generation=pk.GenerationSettings(eos_token_ids=(2,), max_new_tokens=20, bos_token_id=1),
        validation=(
            pk.ValidationResult(
                subject="encoder[fp32/any]",
                reference="torch fp32",
                metrics={"max_abs_diff": 1e-6},
                thresholds={"max_abs_diff": 1e-4},
                passed=True,
                num_samples=4,
            ),
        ),
    )
    pk.write_manifest(root, pk.Manifest(components=(component,)))
    return root


@pytest.fixture
def pack_dir(tmp_path: Path) -> Path:
    return build_pack(tmp_path / "pack")


@pytest.fixture
def edit_manifest(pack_dir: Path) -> Callable[[Callable[[dict], None]], Path]:
    """Applies an edit to the pack's manifest.json as raw JSON (to craft broken packs)."""

    def edit(change: Callable[[dict], None]) -> Path:
        path = pack_dir / pk.MANIFEST_NAME
        data = json.loads(path.read_text())
        change(data)
        path.write_text(json.dumps(data))
        return pack_dir

    return edit
