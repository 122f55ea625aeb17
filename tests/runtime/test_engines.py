"""Pure TensorRT engine logic: which graphs get engines, device keys, profiles, engine and backend choice."""

from __future__ import annotations

import dataclasses

import pytest

from edgemm import errors
from edgemm.runtime import pack as pk
from edgemm.runtime.engines import (
    ShapeDefaults,
    check_overrides,
    derive_profile,
    device_mismatches,
    dla_problem,
    engine_path,
    engine_precisions,
    find_engine,
    gpu_display_name,
    parse_shape_overrides,
    parse_version,
    reusable_engine,
    select_backend,
    tensorrt_graph,
    tensorrt_graphs,
    tensorrt_precisions,
)
from edgemm.runtime.onnx_graph import TensorSpec

SHA = "0" * 64
ORIN = pk.DeviceKey("NVIDIA Jetson AGX Orin", "8.7", "10.3.0", "12.6")
RTX = pk.DeviceKey("NVIDIA GeForce RTX 4090", "8.9", "10.13.0", "12.9")


def _graph(role: str, precision: str = "fp32", target: str = "any", *, inputs=(), outputs=(), path: str | None = None) -> pk.Graph:
    suffix = "" if (precision, target) == ("fp32", "any") else f".{precision}-{target}"
    return pk.Graph(
        role=role,
        file=pk.FileRef(path or f"caption/{role}{suffix}.onnx", SHA, 1),
        precision=precision,  # type: ignore[arg-type]
        target=target,  # type: ignore[arg-type]
        inputs=tuple(inputs),
        outputs=tuple(outputs),
        opset=18,
        quantization={"int8": {"cpu": "ort-dynamic-u8s8"}.get(target, "qdq-s8s8-symmetric")}.get(precision),
    )


def _spec(name: str, *shape, dtype: str = "float32") -> TensorSpec:
    return TensorSpec(name, dtype, tuple(shape))


ENCODER_IO = {"inputs": [_spec("pixel_values", "batch", 3, 384, 384)], "outputs": [_spec("cross.0.key", "batch", 12, 577, 64)]}
STEP_IO = {
    "inputs": [_spec("input_ids", "batch", "sequence", dtype="int64"), _spec("past.0.key", "batch", 12, "past_sequence", 64), _spec("cross.0.key", "batch", 12, "encoder_sequence", 64)],
    "outputs": [_spec("logits", "batch", "sequence", 30524), _spec("present.0.key", "batch", 12, "past_sequence + sequence", 64)],
}


def _component(*graphs: pk.Graph, engines=(), audio=None, max_new_tokens: int = 20) -> pk.Component:
    return pk.Component(
        name="caption",
        task="caption",
        family="blip",
        graphs=graphs,
        provenance=pk.Provenance("tests", "Blip", "0.1.0", "2026-01-01T00:00:00Z"),
        generation=pk.GenerationSettings(eos_token_ids=(2,), max_new_tokens=max_new_tokens),
        audio=audio,
        engines=tuple(engines),
    )


FULL = _component(
    *(
        _graph(role, precision, target, **io)
        for role, io in (("encoder", ENCODER_IO), ("decoder_step", STEP_IO))
        for precision, target in (("fp32", "any"), ("int8", "cpu"), ("fp16", "gpu"), ("int8", "tensorrt"))
    )
)
CPU_ONLY = _component(*(g for g in FULL.graphs if g.target in ("any", "cpu")))


@pytest.mark.parametrize(
    ("component", "precisions", "expected"),
    [
        (FULL, None, ["encoder[fp16/gpu]", "encoder[int8/tensorrt]", "decoder_step[fp16/gpu]", "decoder_step[int8/tensorrt]"]),
        (CPU_ONLY, None, ["encoder[fp32/any]", "decoder_step[fp32/any]"]),
        (FULL, ("fp32",), ["encoder[fp32/any]", "decoder_step[fp32/any]"]),
        (FULL, ("int8",), ["encoder[int8/tensorrt]", "decoder_step[int8/tensorrt]"]),
        (CPU_ONLY, ("int8",), []),
    ],
    ids=["gpu-variants", "cpu-pack-gets-fp32", "explicit-fp32", "int8-never-cpu-flavour", "nothing"],
)
def test_which_graphs_get_engines(component, precisions, expected) -> None:
    assert [g.variant for g in tensorrt_graphs(component, precisions)] == expected


def test_tensorrt_graph_prefers_tensorrt_then_gpu_then_any() -> None:
    assert tensorrt_graph(FULL, "encoder", "int8").variant == "encoder[int8/tensorrt]"
    assert tensorrt_graph(FULL, "encoder", "fp16").variant == "encoder[fp16/gpu]"
    assert tensorrt_graph(CPU_ONLY, "encoder", "fp32").variant == "encoder[fp32/any]"
    with pytest.raises(errors.EngineNotFoundError, match=r"no encoder graph in fp16 for TensorRT; it has: encoder\[fp32/any\]"):
        tensorrt_graph(CPU_ONLY, "encoder", "fp16")
    assert tensorrt_precisions(FULL) == ("int8", "fp16", "fp32")
    assert tensorrt_precisions(CPU_ONLY) == ("fp32",)


def test_engine_path() -> None:
    graph = tensorrt_graph(FULL, "decoder_step", "int8")
    assert engine_path(graph, ORIN) == "caption/engines/nvidia-jetson-agx-orin-sm87-trt10.3.0/decoder_step.int8-tensorrt.engine"
    assert engine_path(graph, ORIN, dla_core=1).endswith("/decoder_step.int8-tensorrt.dla1.engine")


@pytest.mark.parametrize(("text", "expected"), [("10.3.0.30", (10, 3, 0, 30)), ("11.0", (11, 0)), ("10.8.0.43+cuda12.8", (10, 8, 0, 43))])
def test_parse_version(text, expected) -> None:
    assert parse_version(text) == expected


@pytest.mark.parametrize(
    ("cuda_name", "model", "expected"),
    [
        ("Orin", "NVIDIA Jetson AGX Orin Developer Kit", "NVIDIA Jetson AGX Orin"),
        ("Orin", "NVIDIA Jetson Orin Nano Engineering Reference Developer Kit Super", "NVIDIA Jetson Orin Nano"),
        ("Orin", "NVIDIA Jetson Orin NX Engineering Reference Developer Kit", "NVIDIA Jetson Orin NX"),
        ("NVIDIA GeForce RTX 4090", None, "NVIDIA GeForce RTX 4090"),
        ("NVIDIA GeForce RTX 4090", "Some PC board", "NVIDIA GeForce RTX 4090"),
    ],
)
def test_gpu_display_name(cuda_name, model, expected) -> None:
    assert gpu_display_name(cuda_name, model) == expected


@pytest.mark.parametrize(
    ("here", "expected"),
    [
        (ORIN, []),
        (dataclasses.replace(ORIN, tensorrt_version="10.3.0.30"), []),  # build number is not part of the key
        (dataclasses.replace(ORIN, cuda_version="12.8"), []),  # CUDA minor versions are compatible
        (dataclasses.replace(ORIN, tensorrt_version="10.4.0"), ["TensorRT 10.3.0 != 10.4.0"]),
        (dataclasses.replace(ORIN, cuda_version="13.0"), ["CUDA 12.6 != 13.0 (major version differs)"]),
        (dataclasses.replace(ORIN, gpu_name="NVIDIA Jetson Orin Nano"), ["GPU 'NVIDIA Jetson AGX Orin' != 'NVIDIA Jetson Orin Nano'"]),
        (RTX, ["GPU 'NVIDIA Jetson AGX Orin' != 'NVIDIA GeForce RTX 4090'", "compute capability 8.7 != 8.9", "TensorRT 10.3.0 != 10.13.0"]),
    ],
)
def test_device_mismatches(here, expected) -> None:
    assert device_mismatches(ORIN, here) == expected


@pytest.mark.parametrize(
    ("built", "here", "runs"),
    [
        ("10.3.0", "10.3.0", True),
        ("10.3.0", "10.7.0", True),  # a later release of the same major version
        ("10.3.0", "11.1.0", True),  # TensorRT 10 -> 11 is supported
        ("8.6.1", "10.3.0", True),  # as is 8 -> 10
        ("10.7.0", "10.3.0", False),  # never an earlier release
        ("11.1.0", "10.16.0", False),
        ("8.6.1", "11.1.0", False),  # 8 -> 11 is not supported
    ],
)
def test_version_compatible_engines_run_on_later_releases(built: str, here: str, runs: bool) -> None:
    engine_device = dataclasses.replace(ORIN, tensorrt_version=built)
    here_device = dataclasses.replace(ORIN, tensorrt_version=here)
    reasons = device_mismatches(engine_device, here_device, version_compatible=True)
    assert (reasons == []) == runs, reasons
    if not runs:
        assert reasons == [f"TensorRT {here} cannot run a version-compatible engine of TensorRT {built} (it runs on the same or a later release: same major version, 8 -> 9/10, 10 -> 11)"]
    # The GPU still has to match.
    assert device_mismatches(engine_device, dataclasses.replace(RTX, tensorrt_version=built), version_compatible=True)[:2] == [
        "GPU 'NVIDIA Jetson AGX Orin' != 'NVIDIA GeForce RTX 4090'",
        "compute capability 8.7 != 8.9",
    ]


@pytest.mark.parametrize(
    ("device", "core", "cores", "expected"),
    [
        (ORIN, 0, 2, None),
        (ORIN, 1, 2, None),
        (ORIN, 2, 2, "DLA core 2 does not exist: NVIDIA Jetson AGX Orin has 2 (0..1)"),
        (dataclasses.replace(ORIN, gpu_name="NVIDIA Jetson Orin Nano"), 0, 0, "NVIDIA Jetson Orin Nano has no DLA"),
        (dataclasses.replace(ORIN, tensorrt_version="11.2.0"), 0, 2, "supports DLA only on Jetson AGX Orin, from TensorRT 11.4.1 on"),
        (dataclasses.replace(ORIN, tensorrt_version="11.4.1"), 0, 2, None),
        (dataclasses.replace(ORIN, gpu_name="NVIDIA Jetson Orin NX", tensorrt_version="11.4.1"), 0, 1, "supports DLA only on Jetson AGX Orin"),
        (dataclasses.replace(ORIN, gpu_name="NVIDIA Jetson Orin NX"), 0, 1, None),
        (dataclasses.replace(ORIN, tensorrt_version="10.7.0"), 0, 2, None),
        (dataclasses.replace(ORIN, tensorrt_version="10.8.0"), 0, 2, "10.7 was the last 10.x release with DLA"),
    ],
)
def test_dla_problem(device, core, cores, expected) -> None:
    problem = dla_problem(device, core, cores)
    assert (problem is None) if expected is None else (problem is not None and expected in problem)


def _shapes(profile: pk.OptimizationProfile) -> dict[str, tuple]:
    return {name: (s.min, s.opt, s.max) for name, s in profile.shapes.items()}


def test_decoder_profile_from_symbolic_shapes() -> None:
    step = tensorrt_graph(FULL, "decoder_step", "fp16")
    shapes = _shapes(derive_profile(FULL, step))
    assert shapes["input_ids"] == ((1, 1), (1, 1), (4, 64))  # one token per step is what runs most
    assert shapes["past.0.key"] == ((1, 12, 0, 64), (1, 12, 48, 64), (4, 12, 96, 64))  # empty cache for prefill; 20 + 64 -> 96
    assert shapes["cross.0.key"] == ((1, 12, 577, 64), (1, 12, 577, 64), (4, 12, 577, 64))  # from the encoder's output


def test_profile_defaults_and_overrides() -> None:
    step = tensorrt_graph(FULL, "decoder_step", "int8")
    overrides = parse_shape_overrides(["batch=1:3:6", "past_sequence=0:16:32", "input_ids=1x1:1x1:6x8"], ["input_ids"])
    shapes = _shapes(derive_profile(FULL, step, ShapeDefaults(max_batch=2), overrides))
    assert shapes["input_ids"] == ((1, 1), (1, 1), (6, 8))
    assert shapes["past.0.key"] == ((1, 12, 0, 64), (3, 12, 16, 64), (6, 12, 32, 64))
    shapes = _shapes(derive_profile(FULL, step, ShapeDefaults(max_batch=8, max_sequence=16, max_past=256)))
    assert shapes["past.0.key"][2] == (8, 12, 256, 64) and shapes["input_ids"][2] == (8, 16)


def test_axis_produced_as_an_expression_of_another_graphs_inputs() -> None:
    # Florence-2: the encoder output's length is the image tokens plus the task prompt's tokens
    encoder = _graph(
        "encoder",
        inputs=[_spec("pixel_values", "batch", 3, 768, 768), _spec("input_ids", "batch", "prompt_sequence", dtype="int64")],
        outputs=[_spec("cross.0.key", "batch", 12, "prompt_sequence + 577", 64)],
    )
    step = _graph("decoder_step", **STEP_IO)
    component = _component(encoder, step)
    shapes = _shapes(derive_profile(component, step))
    assert shapes["cross.0.key"] == ((1, 12, 578, 64), (1, 12, 593, 64), (4, 12, 641, 64))


def test_audio_frames_come_from_the_audio_settings() -> None:
    audio = pk.AudioPreprocessing(sample_rate_hz=16000, feature="log_mel_whisper", n_fft=400, hop_length=160, n_mels=80, max_length_s=30.0)
    encoder = _graph("encoder", inputs=[_spec("input_features", "batch", 80, "frames")], outputs=[_spec("cross.0.key", "batch", 6, 1500, 64)])
    shapes = _shapes(derive_profile(_component(encoder, audio=audio), encoder))
    assert shapes["input_features"] == ((1, 80, 3000), (1, 80, 3000), (4, 80, 3000))


@pytest.mark.parametrize(
    ("shape", "overrides", "pattern"),
    [
        (("batch", "mystery"), {}, r"input 'x' axis 1 \('mystery'\) has no known range; pass --shapes mystery=MIN:OPT:MAX"),
        (("batch", "?"), {}, r"input 'x' axis 1 has no name; pass --shapes x=MINSHAPE"),
        (("batch", 4), {"x": ((1, 4, 1), (1, 4, 1), (2, 4, 1))}, r"has rank 2 \['batch', 4\], the override has rank 3"),
        (("batch", 4), {"x": ((1, 5), (1, 5), (2, 5))}, r"axis 1 of input 'x' is fixed at 4"),
        (("batch", 4), {"batch": "0:1:4"}, r"batch axis must be >= 1"),
    ],
)
def test_profiles_that_cannot_be_derived(shape, overrides, pattern) -> None:
    graph = _graph("encoder", inputs=[_spec("x", *shape)], outputs=[_spec("y", "batch", 4)])
    parsed = {k: (parse_shape_overrides([f"{k}={v}"])[k] if isinstance(v, str) else v) for k, v in overrides.items()}
    with pytest.raises(errors.ShapeProfileError, match=pattern):
        derive_profile(_component(graph), graph, overrides=parsed)


@pytest.mark.parametrize(
    ("spec", "pattern"),
    [
        ("batch", r"expected AXIS=MIN:OPT:MAX"),
        ("batch=1:2", r"expected one value or three"),
        ("batch=4:2:8", r"expected 0 <= min <= opt <= max, got 4:2:8"),
        ("batch=a:b:c", r"expected integers"),
        ("x=1x3:2x3:1x3", r"expected min <= opt <= max on every axis"),
        ("x=1x3:2x3x4:4x3", r"same rank"),
    ],
)
def test_bad_shape_overrides(spec, pattern) -> None:
    with pytest.raises(errors.ShapeProfileError, match=pattern):
        parse_shape_overrides([spec])


def test_overrides_must_name_an_axis_or_input() -> None:
    graphs = tensorrt_graphs(FULL)
    check_overrides(parse_shape_overrides(["past_sequence=0:8:16", "pixel_values=1x3x384x384"]), graphs)
    with pytest.raises(errors.ShapeProfileError, match=r"names \['past_seq'\], which no graph being built has; axes: \['batch', 'encoder_sequence'"):
        check_overrides(parse_shape_overrides(["past_seq=0:8:16"]), graphs)


def _engine(
    graph: pk.Graph, device: pk.DeviceKey, profile: pk.OptimizationProfile | None = None, dla_core: int | None = None, *, compatible: bool = False
) -> pk.Engine:
    return pk.Engine(
        graph=graph.file.path,
        file=pk.FileRef(engine_path(graph, device, dla_core), SHA, 1),
        device=device,
        precision=graph.precision,
        profiles=(profile or derive_profile(FULL, graph),),
        build_time_s=1.0,
        built_at="2026-01-01T00:00:00Z",
        dla_core=dla_core,
        version_compatible=compatible,
    )


def test_find_and_reuse_engines() -> None:
    graph = tensorrt_graph(FULL, "encoder", "fp16")
    engine = _engine(graph, ORIN)
    component = dataclasses.replace(FULL, engines=(engine,))
    assert find_engine(component, graph, dataclasses.replace(ORIN, tensorrt_version="10.3.0.30")) == engine
    assert find_engine(component, graph, RTX) is None
    assert find_engine(component, graph, ORIN, dla_core=0) is None
    assert reusable_engine(component, graph, ORIN, engine.profiles, None) == engine
    wider = derive_profile(FULL, graph, ShapeDefaults(max_batch=8))
    assert reusable_engine(component, graph, ORIN, (wider,), None) is None
    assert reusable_engine(component, graph, ORIN, engine.profiles, None, version_compatible=True) is None  # asked for another kind


def test_version_compatible_engines_are_found_after_this_releases_own() -> None:
    graph = tensorrt_graph(FULL, "encoder", "fp16")
    old = _engine(graph, ORIN, compatible=True)  # built with TensorRT 10.3.0
    later = dataclasses.replace(ORIN, tensorrt_version="10.7.0")
    component = dataclasses.replace(FULL, engines=(old,))
    assert find_engine(component, graph, later) == old
    choice = select_backend(component, graph, later)
    assert choice.engine == old and choice.describe() == "tensorrt (engine version-compatible, built with TensorRT 10.3.0, fp16 on the GPU)"
    assert engine_precisions(dataclasses.replace(FULL, engines=(old, _engine(tensorrt_graph(FULL, "decoder_step", "fp16"), ORIN, compatible=True))), later) == ("fp16",)
    # edgemm build on 10.7 builds 10.7's own engine rather than keeping 10.3's ...
    assert reusable_engine(component, graph, later, old.profiles, None, version_compatible=True) is None
    assert reusable_engine(component, graph, ORIN, old.profiles, None, version_compatible=True) == old
    # ... which is then preferred, whatever the manifest order.
    own = _engine(graph, later, compatible=True)
    assert find_engine(dataclasses.replace(FULL, engines=(old, own)), graph, later) == own
    assert select_backend(dataclasses.replace(FULL, engines=(old, own)), graph, later).engine == own
    # A non-compatible engine of 10.3 does not run on 10.7.
    assert find_engine(dataclasses.replace(FULL, engines=(_engine(graph, ORIN),)), graph, later) is None


def test_engine_precisions_need_an_engine_for_every_role() -> None:
    encoder, step = (tensorrt_graph(FULL, role, "fp16") for role in ("encoder", "decoder_step"))
    int8_encoder = tensorrt_graph(FULL, "encoder", "int8")
    component = dataclasses.replace(FULL, engines=(_engine(encoder, ORIN), _engine(step, ORIN), _engine(int8_encoder, ORIN), _engine(step, RTX)))
    assert engine_precisions(component, ORIN) == ("fp16",)  # int8 lacks a decoder engine
    assert engine_precisions(component, RTX) == ()
    assert engine_precisions(component, None) == ()


def test_select_backend() -> None:
    graph = tensorrt_graph(FULL, "encoder", "fp16")
    other = tensorrt_graph(FULL, "decoder_step", "fp16")
    dla = _engine(graph, ORIN, dla_core=0)
    gpu = _engine(graph, ORIN)
    component = dataclasses.replace(FULL, engines=(dla, gpu, _engine(other, RTX)))

    choice = select_backend(component, graph, ORIN)
    assert (choice.backend, choice.engine) == ("tensorrt", gpu)  # the GPU engine before the DLA one
    assert choice.describe() == "tensorrt (engine built for this device, fp16 on the GPU)"
    assert select_backend(component, graph, ORIN, "ort").describe() == "onnxruntime (requested)"
    assert select_backend(component, graph, None, unavailable="TensorRT is not installed").describe() == "onnxruntime (TensorRT is not installed)"
    assert select_backend(FULL, graph, ORIN).describe() == "onnxruntime (the pack has no TensorRT engine of this graph)"
    fallback = select_backend(component, other, ORIN)
    assert fallback.backend == "onnxruntime" and fallback.reason.startswith("no engine for this device (NVIDIA GeForce RTX 4090 (sm89, TensorRT 10.13.0, CUDA 12.9)")


@pytest.mark.parametrize(
    ("engines", "device", "error", "pattern"),
    [
        ("rtx", ORIN, errors.EngineMismatchError, r"its engines were built for another device \(NVIDIA GeForce RTX 4090 \(sm89.*this device is NVIDIA Jetson AGX Orin \(sm87, TensorRT 10.3.0, CUDA 12.6\)\. Run `edgemm build PACK`"),
        ("none", ORIN, errors.EngineNotFoundError, r"the pack has no TensorRT engine of this graph; run `edgemm build PACK` on this device"),
        ("rtx", None, errors.BackendUnavailableError, r"backend tensorrt was requested, but TensorRT is not installed"),
    ],
)
def test_requesting_tensorrt_where_it_cannot_run(engines, device, error, pattern) -> None:
    graph = tensorrt_graph(FULL, "encoder", "fp16")
    component = dataclasses.replace(FULL, engines=(_engine(graph, RTX),) if engines == "rtx" else ())
    with pytest.raises(error, match=pattern):
        select_backend(component, graph, device, "tensorrt", unavailable="TensorRT is not installed")


def test_unknown_backend_name() -> None:
    with pytest.raises(errors.BackendUnavailableError, match=r"backend: expected one of .*got 'cuda'"):
        select_backend(FULL, FULL.graphs[0], None, "cuda")
