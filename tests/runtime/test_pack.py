"""The model pack: JSON round trip, and every way load() refuses a broken pack."""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from edgemm import errors
from edgemm.runtime import pack as pk
from tests.conftest import build_pack, make_linear_graph


def test_manifest_round_trips_through_json(pack_dir: Path) -> None:
    manifest = pk.read_manifest(pack_dir)
    text = json.dumps(manifest.to_json())
    again = pk.Manifest.from_json(json.loads(text))
    assert again == manifest
    assert again.components[0].image is not None
    assert again.components[0].image.mean == (0.5, 0.5, 0.5)  # tuples come back as tuples
    assert again.components[0].graphs[0].inputs[0].shape == ("batch", 4)


def test_load_returns_verified_pack(pack_dir: Path) -> None:
    pack = pk.load(pack_dir)
    comp = pack.component("caption")
    graph = comp.graph("encoder")
    assert graph.file.path == "caption/encoder.onnx"
    assert pack.path_of(graph.file) == (pack_dir / "caption" / "encoder.onnx").resolve()
    assert [s.name for s in graph.inputs] == ["x"]
    assert graph.inputs[0].dtype == "float32"
    assert comp.precisions("cpu") == ("fp32",)


def test_write_load_write_is_stable(pack_dir: Path) -> None:
    before = (pack_dir / "manifest.json").read_text()
    pk.write_manifest(pack_dir, pk.load(pack_dir).manifest)
    assert (pack_dir / "manifest.json").read_text() == before
    assert not list(pack_dir.glob(".manifest.*"))  # no temp file left behind


def test_with_component_replaces_only_that_component(pack_dir: Path) -> None:
    manifest = pk.read_manifest(pack_dir)
    other = dataclasses.replace(manifest.components[0], name="alerts", task="zero_shot_image")
    both = manifest.with_component(other)
    assert [c.name for c in both.components] == ["caption", "alerts"]
    replaced = both.with_component(dataclasses.replace(manifest.components[0], family="changed"))
    assert [c.name for c in replaced.components] == ["alerts", "caption"]
    assert replaced.components[1].family == "changed"


def test_graph_lookup_prefers_target_specific_variant(pack_dir: Path) -> None:
    comp = pk.read_manifest(pack_dir).components[0]
    cpu_graph = dataclasses.replace(comp.graphs[0], target="cpu", precision="int8", quantization="ort-dynamic-u8s8")
    comp = dataclasses.replace(comp, graphs=(*comp.graphs, cpu_graph))
    assert comp.graph("encoder", "int8", "cpu") is cpu_graph
    assert comp.graph("encoder", "fp32", "cpu").target == "any"
    with pytest.raises(errors.PackError, match=r"no encoder graph in int8 for target tensorrt; it has: encoder\[fp32/any\], encoder\[int8/cpu\]"):
        comp.graph("encoder", "int8", "tensorrt")


def test_unknown_component_lists_available(pack_dir: Path) -> None:
    with pytest.raises(errors.PackError, match="no component 'speech'; it has: caption"):
        pk.load(pack_dir).component("speech")


def _set(path: str, value: object) -> Callable[[dict], None]:
    def change(data: dict) -> None:
        node = data
        keys = path.split(".")
        for key in keys[:-1]:
            node = node[int(key)] if key.isdigit() else node[key]
        last = keys[-1]
        if value is _DELETE:
            del node[last]
        else:
            node[last] = value

    return change


_DELETE = object()

# (case id, edit of the manifest JSON, expected error type, message pattern)
MANIFEST_CASES = [
    ("newer-schema", _set("schema_version", 99), errors.SchemaVersionError, r"schema_version 99 is newer .* upgrade edgemm"),
    ("zero-schema", _set("schema_version", 0), errors.SchemaVersionError, r"between 1 and 1, got 0"),
    ("string-schema", _set("schema_version", "1"), errors.ManifestError, r"expected an integer schema_version, got '1'"),
    ("missing-task", _set("components.0.task", _DELETE), errors.ManifestError, r"components\[0\]: missing required field 'task'"),
    ("unknown-task", _set("components.0.task", "dance"), errors.ManifestError, r"task must be one of .*got 'dance'"),
    ("wrong-type", _set("components.0.graphs.0.opset", "17"), errors.ManifestError, r"graphs\[0\]\.opset: expected int, got str '17'"),
    ("bool-as-int", _set("components.0.graphs.0.opset", True), errors.ManifestError, r"opset: expected int, got bool True"),
    ("unknown-field", _set("components.0.colour", "red"), errors.ManifestError, r"unknown field\(s\) \['colour'\]"),
    ("bad-sha", _set("components.0.graphs.0.file.sha256", "abc"), errors.ManifestError, r"sha256 must be 64 lowercase hex digits, got 'abc'"),
    ("bad-precision", _set("components.0.graphs.0.precision", "fp8"), errors.ManifestError, r"precision: expected one of \['fp32', 'fp16', 'int8'\], got str 'fp8'"),
    ("int8-no-flavour", _set("components.0.graphs.0.precision", "int8"), errors.ManifestError, r"an int8 graph needs a quantization flavour"),
    ("duplicate-component", lambda d: d["components"].append(d["components"][0]), errors.ManifestError, r"unique, got \['caption'\]"),
    ("missing-graph-file", _set("components.0.graphs.0.file.path", "caption/nope.onnx"), errors.PackFileMissingError, r"lists caption/nope.onnx, but the file is missing"),
    ("dotdot-path", _set("components.0.graphs.0.file.path", "../../etc/passwd"), errors.UnsafePathError, r"'\.\./\.\./etc/passwd': expected a path inside the pack"),
    ("absolute-path", _set("components.0.files.tokenizer.path", "/etc/passwd"), errors.UnsafePathError, r"'/etc/passwd': expected a path relative to the pack, got an absolute path"),
    ("backslash-path", _set("components.0.files.tokenizer.path", "..\\..\\x"), errors.UnsafePathError, r"relative '/'-separated path"),
    ("io-name-mismatch", _set("components.0.graphs.0.inputs.0.name", "pixels"), errors.GraphSpecMismatchError, r"manifest inputs are \['pixels'\], the graph has \['x'\]"),
    ("io-dtype-mismatch", _set("components.0.graphs.0.inputs.0.dtype", "float16"), errors.GraphSpecMismatchError, r"input 'x' is float16\['batch', 4\], the graph has float32\['batch', 4\]"),
    ("io-shape-mismatch", _set("components.0.graphs.0.outputs.0.shape", ["batch", 5]), errors.GraphSpecMismatchError, r"output 'y' is float32\['batch', 5\], the graph has float32\['batch', 3\]"),
]


@pytest.mark.parametrize(("edit", "error", "pattern"), [c[1:] for c in MANIFEST_CASES], ids=[c[0] for c in MANIFEST_CASES])
def test_load_rejects_bad_manifest(edit_manifest, edit, error: type[Exception], pattern: str) -> None:
    pack_dir = edit_manifest(edit)
    with pytest.raises(error, match=pattern):
        pk.load(pack_dir)


def test_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(errors.PackNotFoundError, match="expected a directory, found nothing"):
        pk.load(tmp_path / "nowhere")


def test_directory_without_manifest(tmp_path: Path) -> None:
    with pytest.raises(errors.PackNotFoundError, match=r"expected manifest.json in it, found none"):
        pk.load(tmp_path)


@pytest.mark.parametrize(
    ("content", "pattern"),
    [
        (b"{not json", r"expected JSON, found a syntax error at line 1 column 2"),
        (b"\xff\xfe\x00", r"expected UTF-8 JSON"),
        (b"[1, 2]", r"expected a JSON object, got list"),
        (b"", r"expected JSON, found a syntax error"),
    ],
    ids=["syntax", "binary", "list", "empty"],
)
def test_unparsable_manifest(pack_dir: Path, content: bytes, pattern: str) -> None:
    (pack_dir / "manifest.json").write_bytes(content)
    with pytest.raises(errors.ManifestError, match=pattern):
        pk.load(pack_dir)


def test_changed_file_fails_sha256(pack_dir: Path) -> None:
    tok = pack_dir / "caption" / "tokenizer.json"
    data = bytearray(tok.read_bytes())
    data[5] ^= 0x01  # same size, one bit flipped
    tok.write_bytes(bytes(data))
    with pytest.raises(errors.PackIntegrityError, match=r"caption/tokenizer.json sha256 should be [0-9a-f]{16}\.\.\., found"):
        pk.load(pack_dir)
    pk.load(pack_dir, check_hashes=False)  # sizes still match: only hashing can see it


def test_truncated_graph_fails_size_check(pack_dir: Path) -> None:
    graph = pack_dir / "caption" / "encoder.onnx"
    graph.write_bytes(graph.read_bytes()[:-10])
    with pytest.raises(errors.PackIntegrityError, match=r"encoder.onnx should be \d+ bytes, found \d+"):
        pk.load(pack_dir, check_hashes=False)


def test_garbage_graph_with_matching_hash_is_not_onnx(pack_dir: Path) -> None:
    (pack_dir / "caption" / "encoder.onnx").write_bytes(b"\xff" * 64)
    comp = pk.read_manifest(pack_dir).components[0]
    graph = dataclasses.replace(comp.graphs[0], file=pk.file_ref(pack_dir, "caption/encoder.onnx"))
    pk.write_manifest(pack_dir, pk.Manifest(components=(dataclasses.replace(comp, graphs=(graph,)),)))
    with pytest.raises(errors.PackError, match="expected an ONNX model, found bytes that do not parse"):
        pk.load(pack_dir)


def test_symlink_out_of_pack_is_refused(pack_dir: Path, tmp_path: Path) -> None:
    outside = tmp_path / "secret.json"
    outside.write_text("{}")
    tok = pack_dir / "caption" / "tokenizer.json"
    tok.unlink()
    os.symlink(outside, tok)
    with pytest.raises(errors.UnsafePathError, match=r"resolves to .*secret.json, outside the pack"):
        pk.load(pack_dir)


def test_graph_with_unlisted_external_data_is_refused(tmp_path: Path) -> None:
    root = build_pack(tmp_path / "pack")
    path = root / "caption" / "encoder.onnx"
    onnx = pytest.importorskip("onnx")
    model = onnx.load(str(path))
    onnx.save(model, str(path), save_as_external_data=True, location="encoder.data", size_threshold=0)
    comp = pk.read_manifest(root).components[0]
    graph = dataclasses.replace(comp.graphs[0], file=pk.file_ref(root, "caption/encoder.onnx"))
    pk.write_manifest(root, pk.Manifest(components=(dataclasses.replace(comp, graphs=(graph,)),)))
    with pytest.raises(errors.GraphSpecMismatchError, match=r"stores weights in caption/encoder.data, which the manifest does not list"):
        pk.load(root)
    # Described properly, the same graph loads, and its weights file is hashed like any other.
    described = pk.graph_from_file(root, "caption/encoder.onnx", role="encoder", precision="fp32", target="any")
    assert [ref.path for ref in described.external_data] == ["caption/encoder.data"]
    pk.write_manifest(root, pk.Manifest(components=(dataclasses.replace(comp, graphs=(described,)),)))
    pk.load(root)


def test_engine_file_is_verified(pack_dir: Path) -> None:
    engine_dir = pack_dir / "caption" / "engines" / "orin"
    engine_dir.mkdir(parents=True)
    (engine_dir / "encoder.engine").write_bytes(b"serialized-engine")
    comp = pk.read_manifest(pack_dir).components[0]
    engine = pk.Engine(
        graph="caption/encoder.onnx",
        file=pk.file_ref(pack_dir, "caption/engines/orin/encoder.engine"),
        device=pk.DeviceKey("NVIDIA Jetson AGX Orin", "8.7", "10.3.0", "12.6"),
        precision="fp16",
        profiles=(pk.OptimizationProfile({"x": pk.ShapeRange((1, 4), (1, 4), (8, 4))}),),
        build_time_s=12.5,
        built_at="2026-11-23T00:00:00Z",
    )
    pk.write_manifest(pack_dir, pk.Manifest(components=(dataclasses.replace(comp, engines=(engine,)),)))
    loaded = pk.load(pack_dir)
    assert loaded.component("caption").engines[0] == engine
    assert engine.device.slug == "nvidia-jetson-agx-orin-sm87-trt10.3.0"
    (engine_dir / "encoder.engine").unlink()
    with pytest.raises(errors.PackFileMissingError, match=r"encoder\.engine, but the file is missing"):
        pk.load(pack_dir)


def test_every_error_derives_from_base() -> None:
    for name in errors.__all__:
        assert issubclass(getattr(errors, name), errors.EdgemmError), name


def test_graph_from_file_reads_real_io(tmp_path: Path) -> None:
    make_linear_graph(tmp_path / "g.onnx", in_features=7, out_features=2)
    graph = pk.graph_from_file(tmp_path, "g.onnx", role="encoder", precision="fp32", target="cpu")
    assert graph.inputs == (pk.TensorSpec("x", "float32", ("batch", 7)),)
    assert graph.outputs == (pk.TensorSpec("y", "float32", ("batch", 2)),)
    assert graph.opset == 17
    assert graph.file.sha256 == pk.sha256_file(tmp_path / "g.onnx")
