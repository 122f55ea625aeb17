"""Which backend a task's graphs run on (TensorRT engine, else ONNX Runtime), and the decoder cache
kept on that backend between tokens.

- The planning rule (:func:`edgemm.runtime.tasks.plan_graphs`) on hand-made manifests, with the
  device probe replaced by a fixed device key.
- The ONNX Runtime path for real, on a tiny BLIP pack: the cache kept in OrtValues (IOBinding) gives
  exactly the logits and tokens of host decoding (the cache round-tripping through numpy each step,
  as the decoder did before keeping existed).
- The TensorRT path with a stand-in for ``TensorrtBackend``: no GPU or TensorRT can exist here, so a
  backend object with the same constructor and device-cache API (``keep``, ``hold``,
  ``reorder_kept``, ``fetch_kept``, ``clear``) runs the engine's source graph on ONNX Runtime's CPU
  provider, keeping "device" tensors as numpy arrays and recording every call. It checks the wiring:
  that engines are chosen and opened with the right arguments, that the captioner uploads the
  cross-attention keys/values once, never asks for the cache back, and reorders it on the backend
  in beam search, and that the tokens equal ONNX Runtime's on the same graphs. What real TensorRT
  does with those calls is tested in test_tensorrt_backend.py (simulated) and test_tensorrt_gpu.py.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import shutil
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest

from edgemm import errors
from edgemm.runtime import graph_io
from edgemm.runtime import pack as pk
from edgemm.runtime.backends import Backend, OrtBackend, OrtOptions, TensorrtBackend, check_inputs
from edgemm.runtime.backends import tensorrt as trt_module
from edgemm.runtime.onnx_graph import TensorSpec
from edgemm.runtime.tasks import KVCacheState, _DeviceCache, plan_graphs, resolve_backend

HERE = pk.DeviceKey("NVIDIA Jetson Orin Nano", "8.7", "10.3.0", "12.6")
ELSEWHERE = pk.DeviceKey("NVIDIA GeForce RTX 4090", "8.9", "10.13.0", "12.9")
SHA = "0" * 64


@pytest.fixture
def device(monkeypatch: pytest.MonkeyPatch) -> Callable[[pk.DeviceKey | None, str | None], list[int]]:
    """Replaces the TensorRT device probe; returns the list of probed device indices."""
    probes: list[int] = []

    def use(key: pk.DeviceKey | None, why: str | None = None) -> list[int]:
        def probe(index: int = 0) -> tuple[pk.DeviceKey | None, str | None]:
            probes.append(index)
            return key, why

        monkeypatch.setattr(trt_module, "tensorrt_device", probe)
        return probes

    return use


# --- the planning rule, on hand-made manifests ---------------------------------------------------


def _graph(role: str, precision: str = "fp32", target: str = "any") -> pk.Graph:
    suffix = "" if (precision, target) == ("fp32", "any") else f".{precision}-{target}"
    return pk.Graph(
        role=role,
        file=pk.FileRef(f"caption/{role}{suffix}.onnx", SHA, 1),
        precision=precision,  # type: ignore[arg-type]
        target=target,  # type: ignore[arg-type]
        inputs=(TensorSpec("x", "float32", ("batch", 4)),),
        outputs=(TensorSpec("y", "float32", ("batch", 4)),),
        opset=18,
        quantization={"int8": {"cpu": "ort-dynamic-u8s8"}.get(target, "qdq-s8s8-symmetric")}.get(precision),
    )


ROLES = ("encoder", "decoder_step")
GRAPHS = tuple(_graph(r, p, t) for r in ROLES for p, t in (("fp32", "any"), ("int8", "cpu"), ("fp16", "gpu"), ("int8", "tensorrt")))


def _engine(graph: pk.Graph, device: pk.DeviceKey) -> pk.Engine:
    return pk.Engine(
        graph=graph.file.path,
        file=pk.FileRef(f"caption/engines/{device.slug}/{graph.role}.{graph.precision}.engine", SHA, 1),
        device=device,
        precision=graph.precision,
        profiles=(),
        build_time_s=1.0,
        built_at="2026-01-01T00:00:00Z",
    )


def _component(engines: Sequence[tuple[str, str, str, pk.DeviceKey]] = (), failed: Sequence[str] = ()) -> pk.Component:
    by_key = {(g.role, g.precision, g.target): g for g in GRAPHS}
    return pk.Component(
        name="caption",
        task="caption",
        family="blip",
        graphs=GRAPHS,
        provenance=pk.Provenance("tests", "Blip", "0.1.0", "2026-01-01T00:00:00Z"),
        engines=tuple(_engine(by_key[(r, p, t)], d) for r, p, t, d in engines),
        validation=tuple(pk.ValidationResult(s, "pack fp32", {}, {}, False, 1) for s in failed),
    )


def _both(precision: str, target: str, device: pk.DeviceKey = HERE) -> list[tuple[str, str, str, pk.DeviceKey]]:
    return [(role, precision, target, device) for role in ROLES]


PLANS = [
    # engines, failed validations, precision, backend -> precision, target, backend, reason (substring)
    ("no engines", [], [], "auto", "auto", "int8", "cpu", "onnxruntime", "the pack has no TensorRT engines of this component"),
    ("fp16 engines", _both("fp16", "gpu"), [], "auto", "auto", "fp16", "tensorrt", "tensorrt", "engine built for this device, fp16 on the GPU"),
    ("int8 beats fp16", _both("fp16", "gpu") + _both("int8", "tensorrt"), [], "auto", "auto", "int8", "tensorrt", "tensorrt", "int8 on the GPU"),
    ("failed int8 skipped", _both("fp16", "gpu") + _both("int8", "tensorrt"), ["caption[int8/tensorrt]"], "auto", "trt", "fp16", "tensorrt", "tensorrt", "fp16"),
    ("failed int8 on request", _both("fp16", "gpu") + _both("int8", "tensorrt"), ["caption[int8/tensorrt]"], "int8", "auto", "int8", "tensorrt", "tensorrt", "int8"),
    ("other precision asked", _both("fp16", "gpu"), [], "fp32", "auto", "fp32", "cpu", "onnxruntime", "engines here are fp16, fp32 was requested"),
    ("onnxruntime asked", _both("fp16", "gpu"), [], "auto", "onnxruntime", "int8", "cpu", "onnxruntime", "requested"),
    ("ort short name", _both("fp16", "gpu"), [], "auto", "ORT", "int8", "cpu", "onnxruntime", "requested"),
    ("engines elsewhere", _both("fp16", "gpu", ELSEWHERE), [], "auto", "auto", "int8", "cpu", "onnxruntime", "its engines were built for other devices (NVIDIA GeForce RTX 4090"),
    ("one role only", [("encoder", "fp16", "gpu", HERE)], [], "auto", "auto", "int8", "cpu", "onnxruntime", "no complete set of engines of this component for this device"),
]


@pytest.mark.parametrize(("engines", "failed", "precision", "backend", "want_precision", "target", "want_backend", "reason"), [p[1:] for p in PLANS], ids=[p[0] for p in PLANS])
def test_plan(device: Any, engines: list, failed: list, precision: str, backend: str, want_precision: str, target: str, want_backend: str, reason: str) -> None:
    probes = device(HERE)
    plan = plan_graphs(_component(engines, failed), ROLES, precision=precision, backend=backend)
    assert (plan.precision, plan.target, plan.backend) == (want_precision, target, want_backend)
    assert all(reason in c.reason for c in plan.choices.values()), plan.describe()
    assert {g.precision for g in plan.graphs.values()} == {want_precision}
    if want_backend == "tensorrt":
        # The engines' own graphs: TensorRT's variant of the precision, and the engine built from it.
        assert all(plan.choices[r].engine is not None and plan.choices[r].engine.graph == plan.graphs[r].file.path for r in ROLES)
        assert all(plan.graphs[r].target in ("tensorrt", "gpu") for r in ROLES)
    else:
        assert all(c.engine is None for c in plan.choices.values())
    # The device is probed only when the component has engines and TensorRT is not ruled out.
    assert bool(probes) == (bool(engines) and resolve_backend(backend) != "onnxruntime")


REFUSALS = [
    # engines, device, precision -> error, message
    ("no engines", [], HERE, "auto", errors.EngineNotFoundError, r"has no TensorRT engine of this graph; run `edgemm build PACK` on this device"),
    ("elsewhere", _both("fp16", "gpu", ELSEWHERE), HERE, "auto", errors.EngineMismatchError, r"built for another device \(NVIDIA GeForce RTX 4090"),
    ("no tensorrt", _both("fp16", "gpu"), None, "auto", errors.BackendUnavailableError, r"backend tensorrt was requested, but TensorRT is not installed"),
    ("one role only", [("encoder", "fp16", "gpu", HERE)], HERE, "auto", errors.EngineNotFoundError, r"graph decoder_step\[fp16/gpu\].*has no TensorRT engine"),
    ("other precision", _both("fp16", "gpu"), HERE, "int8", errors.EngineNotFoundError, r"graph encoder\[int8/tensorrt\].*has no TensorRT engine"),
]


@pytest.mark.parametrize(("engines", "here", "precision", "error", "pattern"), [r[1:] for r in REFUSALS], ids=[r[0] for r in REFUSALS])
def test_tensorrt_requested_without_engines_is_an_error(device: Any, engines: list, here: Any, precision: str, error: type, pattern: str) -> None:
    device(here, None if here else "TensorRT is not installed")
    with pytest.raises(error, match=pattern):
        plan_graphs(_component(engines), ROLES, precision=precision, backend="tensorrt")


def test_only_failed_engines_refuse_tensorrt_unless_asked_by_precision(device: Any) -> None:
    device(HERE)
    component = _component(_both("int8", "tensorrt"), ["caption[int8/tensorrt]"])
    assert plan_graphs(component, ROLES).backend == "onnxruntime"
    with pytest.raises(errors.EngineNotFoundError, match=r"its engines for this device \(int8\) do not cover every graph in one precision whose validation passed"):
        plan_graphs(component, ROLES, backend="tensorrt")
    assert plan_graphs(component, ROLES, precision="int8", backend="tensorrt").backend == "tensorrt"


def test_bad_requests(device: Any) -> None:
    device(HERE)
    with pytest.raises(errors.BackendUnavailableError, match=r"backend: expected one of \['auto', 'tensorrt', 'onnxruntime'\] \(or 'trt', 'ort'\), got 'cuda'"):
        plan_graphs(_component(), ROLES, backend="cuda")
    with pytest.raises(errors.BackendUnavailableError, match=r"graph_target='gpu' runs ONNX graphs on ONNX Runtime"):
        plan_graphs(_component(_both("fp16", "gpu")), ROLES, backend="tensorrt", graph_target="gpu")
    with pytest.raises(errors.PackError, match=r"precision: expected auto, fp32, fp16, int8; got 'bf16'"):
        plan_graphs(_component(), ROLES, precision="bf16")
    # graph_target (compile-time validation) always means ONNX Runtime, engines or not.
    plan = plan_graphs(_component(_both("fp16", "gpu")), ROLES, graph_target="gpu")
    assert (plan.precision, plan.target, plan.backend) == ("fp16", "gpu", "onnxruntime")


def test_the_real_backends_offer_the_device_cache() -> None:
    assert issubclass(TensorrtBackend, _DeviceCache)
    assert issubclass(OrtBackend, _DeviceCache)


class _Plain(Backend):
    """A backend with ``keep`` but without hold/reorder_kept/fetch_kept (a third-party backend)."""

    def __init__(self, inner: Backend) -> None:
        self.inner, self.name, self.device = inner, "plain", "cpu"

    @property
    def inputs(self) -> tuple[Any, ...]:
        return self.inner.inputs

    @property
    def outputs(self) -> tuple[Any, ...]:
        return self.inner.outputs

    def run(self, inputs: Mapping[str, np.ndarray], **kwargs: Any) -> dict[str, np.ndarray]:
        return self.inner.run(inputs, **kwargs)

    def kept(self) -> tuple[str, ...]:
        return self.inner.kept()

    def clear(self) -> None:
        self.inner.clear()


# --- a real tiny BLIP pack -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def blip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny BLIP compiled with fp32 and fp16 (GPU) graphs."""
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from edgemm.compile import testing as models
    from edgemm.compile.caption import compile_captioner
    from edgemm.compile.config import CompileConfig, LoadConfig, VariantConfig

    root = tmp_path_factory.mktemp("blip")
    model = models.tiny_blip(root / "model")
    config = CompileConfig(load=LoadConfig(str(model), local_files_only=True), out=str(root / "pack"), variants=(VariantConfig("fp16", "tensorrt"),))
    compile_captioner(config, show_progress=False)
    return root / "pack"


def _photos() -> list[np.ndarray]:
    from edgemm.runtime.image import load_image
    from tests.media import opencv_sample

    return [load_image(opencv_sample(name)) for name in ("fruits.jpg", "baboon.jpg")]


class _Spy:
    """Records the keyword arguments of every ``run`` call of a backend."""

    def __init__(self, backend: Backend) -> None:
        self.calls: list[dict[str, Any]] = []
        self._run = backend.run

        def run(inputs: Mapping[str, np.ndarray], **kwargs: Any) -> dict[str, np.ndarray]:
            self.calls.append({"inputs": sorted(inputs), **kwargs})
            return self._run(inputs, **kwargs)

        backend.run = run  # type: ignore[method-assign]


def test_ort_keeps_the_cache_with_the_logits_and_tokens_of_host_decoding(blip: Path) -> None:
    from edgemm.runtime.captioner import Captioner
    from edgemm.runtime.generation import generate
    from edgemm.runtime.image import preprocess

    captioner = Captioner(pk.load(blip), precision="fp32", options=OrtOptions(providers=("cpu",)))
    assert captioner.backend == "onnxruntime" and captioner.describe() == "caption: blip fp32/cpu on onnxruntime[CPUExecutionProvider]"
    pixels = preprocess(_photos(), captioner.component.image)
    prefix, _ = captioner._prompts(None)
    cross = captioner.encode(pixels)
    rng = np.random.default_rng(0)
    tokens = rng.integers(3, 100, size=(2, 8)).astype(np.int64)
    spy = _Spy(captioner.step)

    def forced(state: KVCacheState) -> np.ndarray:
        steps = [state.step(np.tile(np.asarray(prefix, np.int64), (2, 1)))]
        steps += [state.step(tokens[:, t : t + 1]) for t in range(tokens.shape[1])]
        return np.stack(steps, axis=1)

    kept = captioner.state(dict(cross))
    on_device = forced(kept)
    pasts = {n for i in range(2) for n in graph_io.past_names(i)}
    assert kept.on_device and kept.held and set(captioner.step.kept()) == pasts | set(cross)
    device_calls, spy.calls = spy.calls, []
    host = captioner.state(dict(cross))
    assert all(v.shape == (2, 4, 0, 8) for v in host.past.values())  # reading the cache: host mode
    on_host = forced(host)
    assert not host.on_device and captioner.step.kept() == ()
    # Same graph, same kernels: bit-identical logits whether the cache stays in ONNX Runtime or not.
    assert on_device.shape == (2, 9, captioner.tokenizer.vocab_size) and np.array_equal(on_device, on_host)
    # Kept: only logits come back, and after the first step only the new token goes in (the cross
    # keys/values were held once, before the first step).
    presents = {n for i in range(2) for n in graph_io.present_names(i)}
    assert all(c["outputs"] == ["logits"] and set(c["keep"]) == presents for c in device_calls)
    assert [len([n for n in c["inputs"] if n.startswith("past.")]) for c in device_calls] == [4] + [0] * 8
    assert all(not set(cross) & set(c["inputs"]) for c in device_calls)
    assert all(set(c["outputs"]) == {"logits", *presents} and c.get("keep") is None for c in spy.calls)
    assert all(set(cross) <= set(c["inputs"]) for c in spy.calls)  # host mode feeds cross every step

    # Greedy and beam search through caption_batch (the cache stays in ONNX Runtime and beam search
    # reorders it there) give the tokens and scores of the host-mode decoder.
    settings = captioner.component.generation
    prompt_ids = np.tile(np.asarray(prefix, np.int64), (2, 1))
    for beams in (1, 3):
        spy.calls = []
        ours = captioner.caption_batch(_photos(), num_beams=beams, max_new_tokens=10)
        assert spy.calls and all("keep" in c and not set(cross) & set(c["inputs"]) for c in spy.calls)
        state = captioner.state(captioner.encode(pixels))
        state.past  # noqa: B018 - host mode: the decoder as it was before the cache was kept
        reference = generate(state, prompt_ids, settings, max_new_tokens=10, num_beams=beams)
        assert [c.tokens for c in ours] == list(reference.tokens) and all(len(c.tokens) > 0 for c in ours)
        assert [c.score for c in ours] == (list(reference.scores) if reference.scores else [None, None])


def test_a_state_refuses_what_it_cannot_do(blip: Path) -> None:
    from edgemm.runtime.captioner import Captioner

    captioner = Captioner(pk.load(blip), precision="fp32", options=OrtOptions(providers=("cpu",)))
    cross = captioner.encode(np.zeros((1, 3, 64, 64), np.float32))
    first = captioner.state(dict(cross))
    start = np.asarray([captioner.decoder_start_ids], np.int64)
    reference = first.step(start)
    # A backend without the device-cache methods: cross goes in with every step; a reorder before
    # the first step switches to host mode, after it there is no way to get the cache back.
    plain = KVCacheState(_Plain(captioner.step), dict(cross), captioner.component.kv_cache, np.float32)
    assert not plain.held and np.array_equal(plain.step(start), reference)
    with pytest.raises(errors.BackendError, match=r"plain keeps the decoder cache but cannot hand it back or reorder it"):
        plain.reorder(np.asarray([0]))
    host = KVCacheState(_Plain(captioner.step), dict(cross), captioner.component.kv_cache, np.float32)
    host.reorder(np.asarray([0, 0]))
    assert not host.on_device and np.array_equal(host.step(np.repeat(start, 2, axis=0)), np.repeat(reference, 2, axis=0))
    first = captioner.state(dict(cross))
    first.step(start)
    with pytest.raises(errors.BackendError, match=r"reorder: expected row indices in \[0, 1\), got \[1\]"):
        captioner.state(dict(cross)).reorder(np.asarray([1]))
    second = captioner.state(dict(cross))
    with pytest.raises(errors.BackendError, match=r"this decoder state is stale"):
        first.step(np.asarray([[5]], np.int64))
    assert second.step(start).shape == (1, captioner.tokenizer.vocab_size)


# --- the TensorRT wiring, with a stand-in backend ---------------------------------------------------


class StandInTensorrt(Backend):
    """Stands in for :class:`TensorrtBackend`, which needs a GPU and TensorRT (neither can exist here).

    Same constructor (checked against the real signature) and the same device-cache API; the "device"
    is a dict of numpy arrays and the engine is its source ONNX graph run on ONNX Runtime's CPU
    provider. Every call is recorded.
    """

    made: ClassVar[list[StandInTensorrt]] = []

    def __init__(
        self, path: str | Path, *, engine: pk.Engine | None = None, graph: pk.Graph | None = None, device: pk.DeviceKey | None = None, device_index: int = 0
    ) -> None:
        inspect.signature(TensorrtBackend).bind(path, engine=engine, graph=graph, device=device, device_index=device_index)
        assert engine is not None and graph is not None and engine.graph == graph.file.path
        assert device == HERE and device_index == 0
        assert str(path).endswith(engine.file.path) and Path(path).is_file()
        root = Path(str(path)[: -len(engine.file.path)])
        self.engine, self.graph = engine, graph
        self.onnx = OrtBackend(root / graph.file.path, OrtOptions(providers=("cpu",)))
        self.name = f"tensorrt[stand-in, {graph.role}]"
        self.device = "cuda"
        self.calls: list[tuple[str, Any]] = []
        self._kept: dict[str, np.ndarray] = {}
        self._held: dict[str, np.ndarray] = {}
        StandInTensorrt.made.append(self)

    @property
    def inputs(self) -> tuple[TensorSpec, ...]:
        return self.graph.inputs

    @property
    def outputs(self) -> tuple[TensorSpec, ...]:
        return self.graph.outputs

    def kept(self) -> tuple[str, ...]:
        return (*self._kept, *(n for n in self._held if n not in self._kept))

    def clear(self) -> None:
        self.calls.append(("clear", None))
        self._kept.clear()
        self._held.clear()

    def hold(self, inputs: Mapping[str, np.ndarray]) -> None:
        self.calls.append(("hold", {k: v.shape for k, v in inputs.items()}))
        self._held.update(check_inputs("stand-in", [s for s in self.inputs if s.name in inputs], inputs))

    def reorder_kept(self, rows: Sequence[int] | np.ndarray) -> None:
        self.calls.append(("reorder_kept", [int(r) for r in rows]))
        self._kept = {k: v[np.asarray(rows)] for k, v in self._kept.items()}
        self._held = {k: v[np.asarray(rows)] for k, v in self._held.items()}

    def fetch_kept(self, name: str) -> np.ndarray:
        self.calls.append(("fetch_kept", name))
        return (self._kept.get(name) if name in self._kept else self._held[name]).copy()

    def run(self, inputs: Mapping[str, np.ndarray], *, outputs: Sequence[str] | None = None, keep: Mapping[str, str] | None = None) -> dict[str, np.ndarray]:
        self.calls.append(("run", {"inputs": sorted(inputs), "outputs": None if outputs is None else list(outputs), "keep": dict(keep or {})}))
        available = [n for n in self.kept() if n not in inputs]
        check_inputs("stand-in", self.inputs, inputs, available)
        keep = dict(keep or {})
        wanted = list(outputs) if outputs is not None else [o.name for o in self.outputs if o.name not in keep]
        feeds = {**self._held, **self._kept, **inputs}
        result = self.onnx.run(feeds, outputs=list(dict.fromkeys([*wanted, *keep])))
        self._kept = {target: result[source] for source, target in keep.items()}
        return {name: result[name] for name in wanted}


def _with_engines(source: Path, destination: Path, precision: str, target: str, device: pk.DeviceKey = HERE) -> Path:
    """A copy of the pack with (fake) engine files for every graph of ``precision``/``target``."""
    shutil.copytree(source, destination)
    manifest = pk.read_manifest(destination)
    for component in manifest.components:
        engines = []
        for graph in component.graphs:
            if (graph.precision, graph.target) != (precision, target):
                continue
            relative = f"{component.name}/engines/{device.slug}/{Path(graph.file.path).stem}.engine"
            (destination / relative).parent.mkdir(parents=True, exist_ok=True)
            (destination / relative).write_bytes(b"stand-in engine of " + graph.file.path.encode())
            engines.append(pk.Engine(graph.file.path, pk.file_ref(destination, relative), device, graph.precision, (), 1.0, "2026-01-01T00:00:00Z"))
        manifest = manifest.with_component(dataclasses.replace(component, engines=tuple(engines)))
    pk.write_manifest(destination, manifest)
    return destination


@pytest.fixture
def stand_in(device: Any, monkeypatch: pytest.MonkeyPatch) -> type[StandInTensorrt]:
    device(HERE)
    monkeypatch.setattr(trt_module, "TensorrtBackend", StandInTensorrt)
    StandInTensorrt.made = []
    return StandInTensorrt


def _runs(backend: StandInTensorrt) -> list[dict[str, Any]]:
    return [args for kind, args in backend.calls if kind == "run"]


def test_captioner_on_tensorrt_keeps_the_cache_on_the_device(blip: Path, tmp_path: Path, stand_in: type[StandInTensorrt]) -> None:
    from edgemm.runtime.captioner import Captioner

    pack = pk.load(_with_engines(blip, tmp_path / "pack", "fp16", "gpu"))
    captioner = pack.captioner()
    # precision auto with fp16 engines here: the engines' precision, not ONNX Runtime's CPU choice (fp32).
    assert (captioner.backend, captioner.precision, captioner.target) == ("tensorrt", "fp16", "tensorrt")
    assert captioner.describe() == "caption: blip fp16/tensorrt on encoder tensorrt[stand-in, encoder], decoder_step tensorrt[stand-in, decoder_step]"
    encoder, step = stand_in.made
    assert (encoder.graph.variant, step.graph.variant) == ("encoder[fp16/gpu]", "decoder_step[fp16/gpu]")
    reference = Captioner(pk.load(blip), precision="fp16", graph_target="gpu", options=OrtOptions(providers=("cpu",)))
    assert reference.backend == "onnxruntime" and reference.step_graph == captioner.step_graph

    pasts = {n for i in range(2) for n in graph_io.past_names(i)}
    crosses = {n for i in range(2) for n in graph_io.cross_names(i)}
    keep = {present: past for i in range(2) for present, past in zip(graph_io.present_names(i), graph_io.past_names(i))}
    for beams in (1, 3):
        step.calls = []
        ours = captioner.caption_batch(_photos(), num_beams=beams, max_new_tokens=10)
        theirs = reference.caption_batch(_photos(), num_beams=beams, max_new_tokens=10)
        assert [c.tokens for c in ours] == [c.tokens for c in theirs] and [c.score for c in ours] == [c.score for c in theirs]
        kinds = [kind for kind, _ in step.calls]
        # A fresh cache, the cross keys/values uploaded once for the whole caption, never fetched back.
        assert kinds[:2] == ["clear", "hold"] and kinds.count("hold") == 1 and "fetch_kept" not in kinds
        assert step.calls[1][1] == dict.fromkeys(crosses, (2, 4, 17, 8))
        runs = _runs(step)
        assert all(r["outputs"] == ["logits"] and r["keep"] == keep for r in runs)
        assert runs[0]["inputs"] == sorted({"input_ids", *pasts}) and all(r["inputs"] == ["input_ids"] for r in runs[1:])
        reorders = [rows for kind, rows in step.calls if kind == "reorder_kept"]
        if beams == 1:
            assert reorders == []
        else:
            # Beam search, on the device: first every image's row repeated per beam, then after each
            # step but the last the surviving beams' rows, each within its own image's beams.
            assert reorders[0] == [0, 0, 0, 1, 1, 1] and len(reorders) == len(runs)
            assert all({r // 3 for r in rows[i * 3 : i * 3 + 3]} == {i} for rows in reorders[1:] for i in range(2))


def test_explicit_backend_and_precision(blip: Path, tmp_path: Path, stand_in: type[StandInTensorrt]) -> None:
    root = _with_engines(blip, tmp_path / "pack", "fp16", "gpu")
    assert pk.load(root, backend="onnxruntime").captioner().describe() == "caption: blip fp32/cpu on onnxruntime[CPUExecutionProvider]"
    assert pk.load(root, precision="fp32").captioner().backend == "onnxruntime"  # no fp32 engines
    with pytest.raises(errors.EngineNotFoundError, match=r"graph encoder\[fp32/any\].*has no TensorRT engine of this graph"):
        pk.load(root, precision="fp32", backend="tensorrt").captioner()
    with pytest.raises(errors.BackendUnavailableError, match=r"backend: expected one of"):
        pk.load(root, backend="gpu")
    assert stand_in.made == []
    assert pk.load(root, backend="trt").captioner().backend == "tensorrt"


def test_scorer_on_tensorrt_opens_the_text_tower_on_first_use(tmp_path_factory: pytest.TempPathFactory, tmp_path: Path, stand_in: type[StandInTensorrt]) -> None:
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from edgemm.runtime.zero_shot import ZeroShotScorer
    from tests.zero_shot_packs import compiled

    clip = compiled("clip", tmp_path_factory.getbasetemp() / "zero-shot")
    scorer = pk.load(_with_engines(clip.pack_dir, tmp_path / "pack", "fp16", "gpu")).scorer()
    assert (scorer.backend, scorer.precision) == ("tensorrt", "fp16")
    assert [b.graph.variant for b in stand_in.made] == ["image_encoder[fp16/gpu]"]
    reference = ZeroShotScorer(pk.load(clip.pack_dir), precision="fp16", graph_target="gpu", options=OrtOptions(providers=("cpu",)))
    ours = scorer.embed_images(_photos())
    assert np.array_equal(ours, reference.embed_images(_photos()))
    scorer.add_prompts(["a red apple"])
    assert [b.graph.variant for b in stand_in.made] == ["image_encoder[fp16/gpu]", "text_encoder[fp16/gpu]"]
    assert np.array_equal(scorer.prompt_embeddings(["a red apple"]), reference.embed_texts(["a red apple"]))
    assert scorer.describe().startswith("alerts: clip fp16/tensorrt on image_encoder tensorrt[stand-in, image_encoder], text_encoder tensorrt[stand-in, text_encoder]")


# --- the command line ------------------------------------------------------------------------------


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "edgemm", *args], capture_output=True, text=True, timeout=120)


def test_cli_backend_option(blip: Path) -> None:
    from tests.media import opencv_sample

    image = str(opencv_sample("fruits.jpg"))
    out = _cli("caption", str(blip), image, "--backend", "onnxruntime", "--json", "--max-new-tokens", "4")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["backend"] == "onnxruntime[CPUExecutionProvider]"
    refused = _cli("caption", str(blip), image, "--backend", "tensorrt")
    assert refused.returncode == 1 and refused.stdout == ""
    assert refused.stderr.startswith("edgemm: error: component 'caption' graph encoder[")
    assert len(refused.stderr.strip().splitlines()) == 1, refused.stderr


def test_doctor_shows_the_backend_of_every_graph_of_a_pack(pack_dir: Path) -> None:
    from edgemm import doctor

    root = _with_engines(pack_dir, pack_dir.parent / "with-engines", "fp32", "any", ELSEWHERE)
    lines = doctor.format_report({**doctor.collect(), "pack": doctor.pack_backends(root)}).splitlines()
    assert "tensorrt engines:" in lines
    start = lines.index(f"pack {root.resolve()}  (--backend auto; * = the graphs its task runs)")
    assert lines[start + 1] == "  caption  task=caption  family=test-linear  runs fp32/cpu on onnxruntime"
    assert lines[start + 2].startswith("   * encoder[fp32/any]: onnxruntime (")
    out = _cli("doctor", str(pack_dir), "--json", "--backend", "tensorrt")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    (component,) = report["pack"]["components"]
    assert report["pack"]["backend"] == "tensorrt" and component["graphs"] == []
    assert component["error"].startswith("component 'caption' graph encoder[fp32/any] (caption/encoder.onnx): ")
