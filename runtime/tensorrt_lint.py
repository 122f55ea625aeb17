"""Checks graphs meant for TensorRT against what TensorRT's ONNX parser accepts, without TensorRT.

``edgemm lint PACK`` runs this on every TensorRT-flavour graph of a pack (see
:func:`edgemm.runtime.engines.tensorrt_graphs`); ``edgemm build`` runs it first, against the
installed TensorRT, and stops on errors, so a graph the parser would reject (or would build into
something else than the manifest says) fails in a second with the node's name instead of minutes
into a build on the device.

Rules (each finding names the rule, the graph and the nodes):

- ``opset``: the default-domain opset is within the parser's range for the TensorRT version.
- ``operator``: every operator is in the parser's support matrix for that version (the table
  below); ONNX Runtime's integer ops (``MatMulInteger``, ``DynamicQuantizeLinear``, ...) and other
  domains (``com.microsoft``) are refused with a hint; model-local functions are checked through.
- ``dtype``: no float64, int16/uint16/uint32/uint64, strings or complex numbers anywhere; no int8
  graph inputs/outputs (int8 exists only between Q and DQ); uint8 only as graph input/output.
- ``control-flow``: no ``If``/``Loop``/``Scan`` in a decoder step (they defeat fusion on every
  token); elsewhere a warning.
- ``qdq``: ``QuantizeLinear``/``DequantizeLinear`` are symmetric: a constant int8 zero point of 0
  (no uint8, no computed zero points, no missing zero point that would mean uint8).
- ``precision``: the graph is what the manifest says (an fp16 graph has float16 tensors, an int8
  graph has Q/DQ of the ``qdq-s8s8-symmetric`` flavour): a strongly typed network builds exactly
  what the graph holds, so a mismatch would be a silent change of precision.
- ``attribute``: documented restrictions the parser enforces (Resize modes and antialiasing,
  LayerNormalization's single output, MaxPool indices, TopK ``sorted``, ScatterND ``reduction``,
  Reduce* ``axes`` from a constant).

The operator table is written from onnx-tensorrt's ``docs/operators.md`` (the TensorRT 10.15
matrix, opset 9 to 24) and its changelog (which 10.x release added which operator), and from
NVIDIA's TensorRT 11 release notes and ONNX opset guide (11.0 added ``Swish``, 11.2 ``DFT``, 11.5
opset 25). TensorRT 10.0's matrix documents opset 9 to 20; for 10.1 to 10.14 opsets 21 to 24 are
not documented either way, so they are a warning there, not an error.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from .engines import parse_version, tensorrt_graphs
from .errors import PackError
from .onnx_graph import ELEMENT_TYPES
from .onnx_model import ModelInfo, Node, read_model
from .pack import Component, Graph, Pack

__all__ = [
    "DEFAULT_TENSORRT_VERSIONS",
    "OPERATORS",
    "Finding",
    "LintReport",
    "graph_precision",
    "lint_graph",
    "lint_model",
    "lint_pack",
    "opset_range",
]

DEFAULT_TENSORRT_VERSIONS = ("10.3", "11.0")
"""What ``edgemm lint`` checks against when TensorRT is not installed: JetPack 6's TensorRT 10.3
(the oldest 10.x edgemm supports) and TensorRT 11.0 (JetPack 7 and current desktops)."""

Version = tuple[int, ...]

# Operators TensorRT's ONNX parser imports, with the first TensorRT release that does (10.0 for
# everything the 10.0 matrix lists). From onnx-tensorrt docs/operators.md (TensorRT 10.15) and
# CHANGELOG.md; 11.x additions from the TensorRT 11.0 and 11.2 release notes.
_SINCE_10_0 = """
Abs Acos Acosh Add And ArgMax ArgMin Asin Asinh Atan Atanh AveragePool BatchNormalization Cast
CastLike Ceil Celu Clip Concat Constant ConstantOfShape Conv ConvTranspose Cos Cosh CumSum
DepthToSpace DequantizeLinear Div Dropout Einsum Elu Equal Erf Exp Expand EyeLike Flatten Floor
Gather GatherElements GatherND Gelu Gemm GlobalAveragePool GlobalLpPool GlobalMaxPool Greater
GreaterOrEqual GridSample GroupNormalization GRU HardSigmoid HardSwish Hardmax Identity If
ImageScaler InstanceNormalization IsInf IsNaN LayerNormalization LeakyRelu Less LessOrEqual Log
LogSoftmax Loop LRN LSTM LpNormalization LpPool MatMul Max MaxPool Mean MeanVarianceNormalization
Min Mish Mod Mul Neg NonMaxSuppression NonZero Not OneHot Or Pad ParametricSoftplus Pow PRelu
QuantizeLinear RandomNormal RandomNormalLike RandomUniform RandomUniformLike Range Reciprocal
ReduceL1 ReduceL2 ReduceLogSum ReduceLogSumExp ReduceMax ReduceMean ReduceMin ReduceProd ReduceSum
ReduceSumSquare Relu Reshape Resize ReverseSequence RNN RoiAlign Round ScaledTanh Scan Scatter
ScatterElements ScatterND Selu Shape Shrink Sigmoid Sign Sin Sinh Size Slice Softmax Softplus
Softsign SpaceToDepth Split Sqrt Squeeze Sub Sum Tan Tanh ThresholdedRelu Tile TopK Transpose Trilu
Unsqueeze Upsample Where Xor
"""
_LATER: dict[str, Version] = {
    "DeformConv": (10, 1),
    "BlackmanWindow": (10, 4),
    "HammingWindow": (10, 4),
    "HannWindow": (10, 4),
    "STFT": (10, 5),
    "Attention": (10, 14),
    "RMSNormalization": (10, 15),
    "RotaryEmbedding": (10, 15),
    "TensorScatter": (10, 15),
    "Swish": (11, 0),
    "DFT": (11, 2),
}
OPERATORS: dict[str, Version] = dict.fromkeys(_SINCE_10_0.split(), (10, 0)) | _LATER
"""Operator -> the first TensorRT version whose ONNX parser imports it."""

# Listed as unsupported ("N") in the matrix. Kept to say so rather than "unknown operator".
_LISTED_UNSUPPORTED = """
AffineGrid Bernoulli BitShift BitwiseAnd BitwiseNot BitwiseOr BitwiseXor Col2Im CenterCropPad Compress
ConcatFromSequence ConvInteger Det DynamicQuantizeLinear ImageDecoder MatMulInteger MaxRoiPool MaxUnpool
MelWeightMatrix Multinomial NegativeLogLikelihoodLoss Optional OptionalGetElement OptionalHasElement
QLinearConv QLinearMatMul RegexFullMatch SequenceAt SequenceConstruct SequenceEmpty SequenceErase
SequenceInsert SequenceLength SequenceMap SoftmaxCrossEntropyLoss SplitToSequence StringConcat
StringNormalizer StringSplit TfIdfVectorizer Unique
"""
_UNSUPPORTED = set(_LISTED_UNSUPPORTED.split())
_ORT_INTEGER_OPS = {"DynamicQuantizeLinear", "MatMulInteger", "ConvInteger", "QLinearMatMul", "QLinearConv"}

_CONTROL_FLOW = {"If", "Loop", "Scan"}
_BAD_TYPES = {"float64", "int16", "uint16", "uint32", "uint64", "string", "complex64", "complex128"}
_QUANTIZED_TYPES = {"int8", "int4", "float8e4m3fn", "float4e2m1"}
_RESIZE_TRANSFORMS = {"half_pixel", "pytorch_half_pixel", "tf_half_pixel_for_nn", "asymmetric", "align_corners"}
_REDUCE_OPS = {op for op in OPERATORS if op.startswith("Reduce")}
_ONNX_TYPE = {name: code for code, name in ELEMENT_TYPES.items()}

Severity = Literal["error", "warning"]


def opset_range(version: Version) -> tuple[int, int, bool]:
    """(min opset, max opset, documented) the ONNX parser of TensorRT ``version`` accepts.

    ``documented`` is False where the maximum is a conservative guess (10.1 to 10.14).
    """
    if version >= (11, 5):
        return 9, 25, True
    if version >= (10, 15):
        return 9, 24, True
    if version >= (10, 1):
        return 9, 20, False
    return 9, 20, True


@dataclass(frozen=True)
class Finding:
    """One problem found in a graph.

    Attributes:
        severity: "error" stops ``edgemm build``; "warning" is reported.
        rule: "opset", "operator", "dtype", "control-flow", "qdq", "precision" or "attribute".
        message: what is wrong and what to do, naming the nodes or tensors.
        graph: the graph file (relative to the pack) or path.
        versions: the TensorRT versions it applies to (empty: every version checked).
    """

    severity: Severity
    rule: str
    message: str
    graph: str = ""
    versions: tuple[str, ...] = ()

    def format(self) -> str:
        where = f" [TensorRT {', '.join(self.versions)}]" if self.versions else ""
        return f"{self.severity}: {self.graph}: [{self.rule}]{where} {self.message}"


@dataclass(frozen=True)
class LintReport:
    """Findings over the graphs of a pack. ``ok`` when there are no errors."""

    graphs: tuple[str, ...]
    versions: tuple[str, ...]
    findings: tuple[Finding, ...] = field(default_factory=tuple)

    @property
    def errors(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.severity == "error")

    @property
    def warnings(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.severity == "warning")

    @property
    def ok(self) -> bool:
        return not self.errors

    def summary(self) -> str:
        n = len(self.graphs)
        return (
            f"checked {n} graph{'s' * (n != 1)} against TensorRT {', '.join(self.versions)}: "
            f"{len(self.errors)} error{'s' * (len(self.errors) != 1)}, {len(self.warnings)} warning{'s' * (len(self.warnings) != 1)}"
        )


def _names(nodes: Sequence[Node], limit: int = 5) -> str:
    shown = ", ".join(n.label for n in nodes[:limit])
    return shown + (f" and {len(nodes) - limit} more" if len(nodes) > limit else "")


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'s' * (n != 1)}"


def _use(n: int, word: str = "node") -> str:
    """E.g. "1 node uses", "3 nodes use"."""
    return f"{_plural(n, word)} use{'s' * (n == 1)}"


def graph_precision(info: ModelInfo) -> Literal["int8", "fp16", "fp32"]:
    """The precision a strongly typed network builds from this graph: "int8" when it has Q/DQ to
    int8, else "fp16" when it has float16 tensors, else "fp32"."""
    if any(n.op_type in ("QuantizeLinear", "DequantizeLinear") and not n.domain for n in info.nodes):
        return "int8"
    if _has_float16(info):
        return "fp16"
    return "fp32"


def _has_float16(info: ModelInfo) -> bool:
    declared = (*info.inputs, *info.outputs, *info.value_infos)
    return (
        any(spec.dtype == "float16" for spec in declared)
        or any(c.dtype == "float16" for c in info.constants.values())
        or any(n.op_type == "Cast" and n.ints.get("to") == _ONNX_TYPE["float16"] for n in info.nodes)
    )


def _opset_findings(info: ModelInfo, versions: Sequence[str]) -> list[Finding]:
    findings: list[Finding] = []
    opset = info.opsets.get("ai.onnx")
    if opset is None:
        return [Finding("error", "opset", "the model imports no default-domain (ai.onnx) opset")]
    for text in versions:
        low, high, documented = opset_range(parse_version(text))
        if opset < low:
            findings.append(Finding("error", "opset", f"opset {opset} is older than the parser accepts ({low}); re-export at opset 17 or later", versions=(text,)))
        elif opset > high:
            severity: Severity = "error" if documented else "warning"
            how = "accepts up to" if documented else "is documented (for 10.0) up to"
            findings.append(Finding(severity, "opset", f"opset {opset}: this TensorRT {how} opset {high}; re-export with --opset {min(high, 18)}", versions=(text,)))
    return findings


def _operator_findings(info: ModelInfo, versions: Sequence[str]) -> list[Finding]:
    findings: list[Finding] = []
    by_op: dict[tuple[str, str], list[Node]] = {}
    for node in info.nodes:
        if node.domain in ("", "ai.onnx") and node.op_type == "Constant":
            continue
        by_op.setdefault((node.domain, node.op_type), []).append(node)
    for (domain, op), nodes in sorted(by_op.items()):
        qualified = f"{domain}::{op}" if domain else op
        if qualified in info.functions or (not domain and op in info.functions):
            continue  # a model-local function: the parser expands it; its body's nodes are checked
        count = _use(len(nodes))
        if domain:
            if domain.startswith("trt"):
                findings.append(Finding("warning", "operator", f"{count} the TensorRT plugin op {qualified}: the plugin must be registered when building ({_names(nodes)})"))
                continue
            hint = " (ONNX Runtime's contrib ops; export without ONNX Runtime's optimizer or fusions)" if domain == "com.microsoft" else ""
            findings.append(Finding("error", "operator", f"{count} {qualified}, an op outside the ONNX standard that TensorRT's parser does not import{hint}: {_names(nodes)}"))
            continue
        if op in _ORT_INTEGER_OPS:
            findings.append(Finding(
                "error", "operator",
                f"{count} {op}, ONNX Runtime's integer quantization, which TensorRT does not import "
                f"(this is a CPU int8 graph; TensorRT takes explicit symmetric Q/DQ: compile with --precision int8 --target tensorrt): {_names(nodes)}",
            ))
            continue
        since = OPERATORS.get(op)
        if since is None:
            why = "listed as unsupported in TensorRT's ONNX operator matrix" if op in _UNSUPPORTED else "not in TensorRT's ONNX operator matrix"
            findings.append(Finding("error", "operator", f"{count} {op}, {why}: {_names(nodes)}"))
            continue
        too_old = tuple(v for v in versions if parse_version(v)[:2] < since)
        if too_old:
            first = ".".join(str(p) for p in since)
            findings.append(Finding("error", "operator", f"{count} {op}, which TensorRT's parser imports from {first} on: {_names(nodes)}", versions=too_old))
    return findings


def _dtype_findings(info: ModelInfo) -> list[Finding]:
    findings: list[Finding] = []
    io_names = {s.name for s in (*info.inputs, *info.outputs)}
    bad: dict[str, list[str]] = {}

    def note(dtype: str, what: str) -> None:
        if dtype in _BAD_TYPES or dtype.startswith("onnx-type-") or dtype == "non-tensor":
            bad.setdefault(dtype, []).append(what)

    for spec in info.inputs:
        note(spec.dtype, f"input '{spec.name}'")
    for spec in info.outputs:
        note(spec.dtype, f"output '{spec.name}'")
    for spec in info.value_infos:
        note(spec.dtype, f"tensor '{spec.name}'")
    for constant in info.constants.values():
        note(constant.dtype, f"constant '{constant.name}'")
    for node in info.nodes:
        for attr in ("to", "dtype", "output_dtype"):
            code = node.ints.get(attr)
            if isinstance(code, int) and code:
                note(ELEMENT_TYPES.get(code, f"onnx-type-{code}"), f"{node.label} {attr}=")
        for attr, tensor in node.tensors.items():
            note(tensor.dtype, f"{node.label} {attr}")
    for dtype, where in sorted(bad.items()):
        shown = ", ".join(where[:5]) + (f" and {len(where) - 5} more" if len(where) > 5 else "")
        hint = {
            "float64": "TensorRT has no float64; its parser would cast to float32 silently. Export in float32",
            "non-tensor": "sequences, maps and optionals do not exist in TensorRT",
        }.get(dtype, f"TensorRT has no {dtype} type")
        findings.append(Finding("error", "dtype", f"{_use(len(where), 'place')} {dtype} ({hint}): {shown}"))
    int8_io = [s.name for s in (*info.inputs, *info.outputs) if s.dtype == "int8"]
    if int8_io:
        findings.append(Finding("error", "dtype", f"int8 graph inputs/outputs {int8_io}: TensorRT has int8 only between QuantizeLinear and DequantizeLinear; keep io in float"))
    qdq_tensors = {i for n in info.nodes if n.op_type in ("QuantizeLinear", "DequantizeLinear") for i in (*n.inputs, *n.outputs)}
    inner_u8 = sorted(
        {s.name for s in info.value_infos if s.dtype == "uint8" and s.name not in io_names | qdq_tensors}
        | {c.name for c in info.constants.values() if c.dtype == "uint8" and c.name not in qdq_tensors}
    )
    if inner_u8:
        findings.append(Finding("warning", "dtype", f"uint8 tensors inside the graph {inner_u8[:5]}: TensorRT supports uint8 only as a network input or output"))
    return findings


def _control_flow_findings(info: ModelInfo, role: str) -> list[Finding]:
    nodes = [n for n in info.nodes if n.op_type in _CONTROL_FLOW and not n.domain]
    if not nodes:
        return []
    if "decoder" in role:
        return [Finding(
            "error", "control-flow",
            f"{_plural(len(nodes), 'node')} of control flow in a decoder step ({_names(nodes)}): the step runs once per token and "
            "must be a straight-line graph (export the cache branch out: edgemm's decoder steps take an empty past for prefill)",
        )]
    return [Finding("warning", "control-flow", f"{_plural(len(nodes), 'node')} of control flow ({_names(nodes)}): TensorRT runs them, but they block fusion")]


def _qdq_findings(info: ModelInfo) -> list[Finding]:
    problems: dict[str, list[Node]] = {}
    unknown: list[Node] = []
    for node in info.nodes:
        if node.domain or node.op_type not in ("QuantizeLinear", "DequantizeLinear"):
            continue
        zero_point = node.inputs[2] if len(node.inputs) > 2 and node.inputs[2] else None
        if zero_point is None:
            if node.op_type == "QuantizeLinear" and node.ints.get("output_dtype") not in (_ONNX_TYPE["int8"], _ONNX_TYPE["float8e4m3fn"], _ONNX_TYPE["int4"]):
                problems.setdefault("with no zero point, so quantizing to uint8 (ONNX's default); TensorRT needs int8: give them an int8 zero point of 0", []).append(node)
            data = info.constants.get(node.inputs[0]) if node.op_type == "DequantizeLinear" and node.inputs else None
            if data is not None and data.dtype == "uint8":
                problems.setdefault("dequantizing uint8 data; TensorRT needs int8 (symmetric S8S8)", []).append(node)
            continue
        constant = info.constants.get(zero_point)
        if constant is None:
            problems.setdefault("with a zero point computed at run time; TensorRT needs a constant zero point of 0", []).append(node)
        elif constant.dtype == "uint8":
            problems.setdefault(
                "with a uint8 zero point: ONNX Runtime's U8 (asymmetric) flavour, which TensorRT does not build; "
                "compile the TensorRT variant (--precision int8 --target tensorrt: qdq-s8s8-symmetric)",
                [],
            ).append(node)
        elif constant.dtype not in _QUANTIZED_TYPES:
            problems.setdefault(f"with a {constant.dtype} zero point; TensorRT quantizes to int8 (or fp8/int4/fp4)", []).append(node)
        elif constant.all_zero is False:
            problems.setdefault("with a non-zero zero point (asymmetric quantization); TensorRT supports only symmetric quantization (zero point 0)", []).append(node)
        elif constant.all_zero is None:
            unknown.append(node)
    findings = [Finding("error", "qdq", f"{_plural(len(nodes), 'node')} {why}: {_names(nodes)}") for why, nodes in problems.items()]
    if unknown:
        findings.append(Finding("warning", "qdq", f"{_plural(len(unknown), 'node')} with the zero point stored outside the file, so it could not be checked for 0: {_names(unknown)}"))
    return findings


def _attribute_findings(info: ModelInfo) -> list[Finding]:
    problems: dict[str, list[Node]] = {}
    warnings: dict[str, list[Node]] = {}
    for node in info.nodes:
        if node.domain:
            continue
        op = node.op_type
        if op == "Resize":
            mode = node.strings.get("mode", "nearest")
            if mode not in ("nearest", "linear"):
                problems.setdefault(f"Resize mode '{mode}' (TensorRT's parser supports nearest and linear)", []).append(node)
            transform = node.strings.get("coordinate_transformation_mode", "half_pixel")
            if transform not in _RESIZE_TRANSFORMS:
                problems.setdefault(f"Resize coordinate_transformation_mode '{transform}' (supported: {', '.join(sorted(_RESIZE_TRANSFORMS))})", []).append(node)
            if node.ints.get("antialias", 0):
                problems.setdefault("Resize with antialias=1 (not supported)", []).append(node)
            policy = node.strings.get("keep_aspect_ratio_policy", "stretch")
            if policy != "stretch":
                problems.setdefault(f"Resize keep_aspect_ratio_policy '{policy}' (only stretch)", []).append(node)
        elif op == "LayerNormalization" and any(node.outputs[1:]):
            problems.setdefault("LayerNormalization with Mean/InvStdDev outputs (only the first output Y is supported)", []).append(node)
        elif op == "MaxPool" and len(node.outputs) > 1 and node.outputs[1]:
            problems.setdefault("MaxPool with an Indices output (unsupported)", []).append(node)
        elif op == "TopK" and node.ints.get("sorted", 1) == 0:
            problems.setdefault("TopK with sorted=0 (sorted must be 1)", []).append(node)
        elif op == "ScatterND" and node.strings.get("reduction", "none") != "none":
            problems.setdefault("ScatterND with a reduction (only 'none')", []).append(node)
        elif op in _REDUCE_OPS and len(node.inputs) > 1 and node.inputs[1]:
            axes = node.inputs[1]
            if axes not in info.constants:
                warnings.setdefault(f"{op} axes from a computed tensor (the parser wants an initializer)", []).append(node)
    findings = [Finding("error", "attribute", f"{_plural(len(nodes), 'node')}: {why}: {_names(nodes)}") for why, nodes in problems.items()]
    findings += [Finding("warning", "attribute", f"{_plural(len(nodes), 'node')}: {why}: {_names(nodes)}") for why, nodes in warnings.items()]
    return findings


def _precision_findings(info: ModelInfo, precision: str | None, quantization: str | None, target: str | None) -> list[Finding]:
    if precision is None:
        return []
    built = graph_precision(info)
    findings: list[Finding] = []
    if precision == "int8":
        if target in ("tensorrt", "gpu") and quantization != "qdq-s8s8-symmetric":
            findings.append(Finding("error", "precision", f"an int8 graph for TensorRT must be of the qdq-s8s8-symmetric flavour, the manifest says {quantization!r}"))
        if built != "int8":
            findings.append(Finding("error", "precision", "the manifest says int8, but the graph has no QuantizeLinear/DequantizeLinear: TensorRT would build it in " + built))
    elif precision == "fp16" and built != "fp16":
        findings.append(Finding("error", "precision", f"the manifest says fp16, but the graph has no float16 tensors: a strongly typed network would build it in {built}"))
    elif precision == "fp32" and built != "fp32":
        findings.append(Finding("warning", "precision", f"the manifest says fp32, but the graph holds {built} tensors: TensorRT builds what the graph holds"))
    return findings


def lint_model(
    info: ModelInfo,
    *,
    role: str = "",
    precision: str | None = None,
    quantization: str | None = None,
    target: str | None = None,
    versions: Sequence[str] = DEFAULT_TENSORRT_VERSIONS,
    graph: str = "",
) -> list[Finding]:
    """Checks one read graph (see the module docstring for the rules).

    Args:
        info: from :func:`edgemm.runtime.onnx_model.read_model`.
        role: the graph's role; "decoder" in it makes control flow an error.
        precision, quantization, target: what the manifest says the graph is (None: skip the check).
        versions: TensorRT versions to check operator and opset support against ("10.3", "11.0").
        graph: how findings name the graph.
    """
    findings = [
        *_opset_findings(info, versions),
        *_operator_findings(info, versions),
        *_dtype_findings(info),
        *_control_flow_findings(info, role),
        *_qdq_findings(info),
        *_attribute_findings(info),
        *_precision_findings(info, precision, quantization, target),
    ]
    merged: dict[tuple[str, str, str], Finding] = {}
    for finding in findings:
        key = (finding.severity, finding.rule, finding.message)
        if key in merged and finding.versions:
            previous = merged[key]
            finding = Finding(finding.severity, finding.rule, finding.message, graph, (*previous.versions, *finding.versions))
        merged[key] = Finding(finding.severity, finding.rule, finding.message, graph, finding.versions)
    return sorted(merged.values(), key=lambda f: (f.severity != "error", f.rule))


def lint_graph(path: str, graph: Graph | None = None, *, versions: Sequence[str] = DEFAULT_TENSORRT_VERSIONS, label: str | None = None) -> list[Finding]:
    """Reads and checks one ONNX file; with ``graph`` (its manifest entry), also its role and precision.

    Raises:
        PackError: the file is not an ONNX model.
    """
    info = read_model(path)
    return lint_model(
        info,
        role=graph.role if graph else "",
        precision=graph.precision if graph else None,
        quantization=graph.quantization if graph else None,
        target=graph.target if graph else None,
        versions=versions,
        graph=label or (graph.file.path if graph else str(path)),
    )


def lint_pack(
    pack: Pack,
    *,
    components: Iterable[Component] | None = None,
    graphs: Iterable[Graph] | None = None,
    versions: Sequence[str] = DEFAULT_TENSORRT_VERSIONS,
) -> LintReport:
    """Checks the TensorRT-flavour graphs of a pack (or the given components or graphs).

    Raises:
        PackError: a graph file is not an ONNX model.
    """
    for text in versions:
        try:
            parse_version(text)
        except ValueError:
            raise PackError(f"TensorRT version: expected e.g. 10.3 or 11.0, got {text!r}") from None
    if graphs is None:
        chosen = list(components) if components is not None else list(pack.components)
        graphs = [g for c in chosen for g in tensorrt_graphs(c)]
    graph_list = list(graphs)
    findings: list[Finding] = []
    for graph in graph_list:
        findings += lint_graph(str(pack.path_of(graph.file)), graph, versions=versions)
    return LintReport(graphs=tuple(g.file.path for g in graph_list), versions=tuple(versions), findings=tuple(findings))
