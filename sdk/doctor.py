"""``edgemm doctor [PACK]``: what this machine offers edgemm (versions, providers, GPUs, TensorRT, cameras'
OpenCV, audio) and, given a pack, which precision and backend each of its components gets here."""

from __future__ import annotations

import importlib
import importlib.metadata
import platform
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from edgemm.runtime._version import __version__

__all__ = ["OPTIONAL_MODULES", "collect", "format_report", "pack_backends"]

OPTIONAL_MODULES: tuple[tuple[str, str, str], ...] = (
    # (import name, distribution name (the report's key), how to install it)
    ("torch", "torch", "edgemm[compile]"),
    ("transformers", "transformers", "edgemm[compile]"),
    ("onnx", "onnx", "edgemm[compile]"),
    ("tensorrt", "tensorrt", "edgemm[tensorrt] on desktop; JetPack's python3-libnvinfer on Jetson"),
    ("cuda.bindings", "cuda-python", "edgemm[tensorrt]"),
    ("pycuda", "pycuda", "pip install pycuda, built against a local CUDA toolkit"),
    ("sounddevice", "sounddevice", "edgemm[audio]"),
    ("paho.mqtt", "paho-mqtt", "edgemm[mqtt]"),
    ("cv2", "opencv", "edgemm[opencv] on desktop; apt install python3-opencv on Jetson"),
)


def _dist_version(dist: str, module: Any) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        version = getattr(module, "__version__", None)
        return str(version) if version is not None else None


def _probe_module(name: str, dist: str, provider: str) -> dict[str, Any]:
    entry: dict[str, Any] = {"module": name, "installed": False, "version": None, "install": provider}
    try:
        module = importlib.import_module(name)
    except ImportError:
        return entry
    except Exception as exc:  # a broken install (missing shared library, say) is worth reporting as such
        entry["error"] = f"{type(exc).__name__}: {exc}"
        return entry
    entry["installed"] = True
    if name == "cv2":
        entry["version"] = getattr(module, "__version__", None)
    else:
        entry["version"] = _dist_version(dist, module)
    entry["path"] = str(Path(getattr(module, "__file__", "") or "").parent)
    return entry


def _onnxruntime() -> dict[str, Any]:
    try:
        import onnxruntime
    except ImportError as exc:
        return {"installed": False, "error": str(exc)}
    return {
        "installed": True,
        "version": onnxruntime.__version__,
        "device": onnxruntime.get_device(),
        "providers": list(onnxruntime.get_available_providers()),
    }


def _gpus() -> dict[str, Any]:
    result: dict[str, Any] = {"devices": [], "jetson": None}
    model_file = Path("/proc/device-tree/model")
    if model_file.is_file():
        model = model_file.read_bytes().rstrip(b"\x00").decode(errors="replace")
        if "jetson" in model.lower() or "nvidia" in model.lower():
            result["jetson"] = model
    release = Path("/etc/nv_tegra_release")
    if release.is_file():
        result["l4t_release"] = release.read_text(errors="replace").splitlines()[0].strip()
    smi = shutil.which("nvidia-smi")
    if smi is None:
        result["note"] = "nvidia-smi not found"
        return result
    try:
        out = subprocess.run(
            [smi, "--query-gpu=name,compute_cap,driver_version,memory.total", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        result["note"] = f"nvidia-smi failed: {exc}"
        return result
    if out.returncode != 0:
        result["note"] = f"nvidia-smi exited {out.returncode}: {out.stderr.strip()[:200]}"
        return result
    for line in out.stdout.strip().splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) >= 4:
            result["devices"].append(
                {"name": parts[0], "compute_capability": parts[1], "driver": parts[2], "memory": parts[3]}
            )
    return result


def _audio_inputs() -> dict[str, Any]:
    try:
        import sounddevice
    except ImportError:
        return {"available": False, "note": "sounddevice not installed (pip install 'edgemm[audio]')"}
    except OSError as exc:  # sounddevice raises OSError when the PortAudio library is missing
        return {"available": False, "note": f"PortAudio not usable: {exc} (apt install libportaudio2)"}
    try:
        devices = sounddevice.query_devices()
    except Exception as exc:
        return {"available": False, "note": f"could not list audio devices: {exc}"}
    inputs = [
        {"index": i, "name": d["name"], "channels": d["max_input_channels"], "sample_rate_hz": d["default_samplerate"]}
        for i, d in enumerate(devices)
        if d["max_input_channels"] > 0
    ]
    return {"available": True, "inputs": inputs}


def _opencv() -> dict[str, Any]:
    try:
        import cv2
    except ImportError:
        return {
            "installed": False,
            "note": "OpenCV not installed: pip install 'edgemm[opencv]' (desktop) or apt install python3-opencv (Jetson)",
        }
    info = cv2.getBuildInformation()

    def backend(name: str) -> bool:
        match = re.search(rf"^\s*{name}:\s*(\S+)", info, flags=re.MULTILINE | re.IGNORECASE)
        return bool(match and match.group(1).upper().startswith("YES"))

    return {
        "installed": True,
        "version": cv2.__version__,
        "path": str(Path(cv2.__file__ or "").parent),
        "ffmpeg": backend("FFMPEG"),
        "gstreamer": backend("GStreamer"),
        "v4l2": backend("v4l/v4l2"),
        "cuda": bool(re.search(r"NVIDIA CUDA:\s*YES", info)),
    }


def _tensorrt_device() -> dict[str, Any]:
    """This machine's TensorRT device key (what engines must be built for), or why TensorRT cannot run."""
    from edgemm.runtime.backends.tensorrt import tensorrt_device
    from edgemm.runtime.engines import describe_device

    try:
        device, why = tensorrt_device(0)
    except Exception as exc:  # a broken install (a missing shared library, say) is worth reporting as such
        return {"usable": False, "reason": f"{type(exc).__name__}: {exc}"}
    if device is None:
        return {"usable": False, "reason": why}
    return {"usable": True, "device": describe_device(device), "slug": device.slug}


def pack_backends(path: str | Path, backend: str = "auto") -> dict[str, Any]:
    """For each component of the pack at ``path``: the precision and backend its task gets here, and
    the backend every graph that runs or has TensorRT engines gets (as ``edgemm info`` shows it).

    The pack's manifest, file sizes and graph io are verified (sha256 is not: ``edgemm info`` does it).
    Nothing is loaded: the plans are :func:`edgemm.runtime.tasks.plan_graphs`'s.

    Raises:
        PackError: the pack cannot be read. BackendUnavailableError: an unknown backend.
    """
    from edgemm.runtime.backends import choose_backend
    from edgemm.runtime.errors import EdgemmError
    from edgemm.runtime.pack import load
    from edgemm.runtime.tasks import plan_graphs, resolve_backend

    backend = resolve_backend(backend)
    pack = load(path, check_hashes=False)
    components = []
    for component in pack.components:
        entry: dict[str, Any] = {"name": component.name, "task": component.task, "family": component.family}
        runs: dict[str, str] = {}
        try:
            plan = plan_graphs(component, list(dict.fromkeys(g.role for g in component.graphs)), backend=backend)
        except EdgemmError as exc:
            entry["error"] = str(exc)
        else:
            entry.update(precision=plan.precision, target=plan.target, backend=plan.backend)
            runs = {plan.graphs[role].file.path: plan.choices[role].describe() for role in plan.graphs}
        with_engines = {e.graph for e in component.engines}
        graphs = []
        for graph in component.graphs:
            if graph.file.path in runs:
                graphs.append({"variant": graph.variant, "runs": True, "backend": runs[graph.file.path]})
            elif graph.file.path in with_engines:
                try:
                    choice = choose_backend(component, graph, backend).describe()
                except EdgemmError as exc:
                    choice = f"unavailable: {exc}"
                graphs.append({"variant": graph.variant, "runs": False, "backend": choice})
        entry["graphs"] = graphs
        components.append(entry)
    return {"path": str(pack.path), "backend": backend, "components": components}


def collect(pack: str | Path | None = None, backend: str = "auto") -> dict[str, Any]:
    """Gathers the doctor report as JSON-ready values (with ``pack``: :func:`pack_backends` too)."""
    report = {
        "edgemm": __version__,
        "python": {
            "version": platform.python_version(),
            "implementation": platform.python_implementation(),
            "executable": sys.executable,
            "platform": f"{platform.system()} {platform.machine()}",
        },
        "onnxruntime": _onnxruntime(),
        "optional": {dist: _probe_module(mod, dist, provider) for mod, dist, provider in OPTIONAL_MODULES},
        "gpus": _gpus(),
        "tensorrt": _tensorrt_device(),
        "audio": _audio_inputs(),
        "opencv": _opencv(),
    }
    if pack is not None:
        report["pack"] = pack_backends(pack, backend)
    return report


def _yes(value: bool) -> str:
    return "yes" if value else "no"


def format_report(report: dict[str, Any]) -> str:
    """Formats :func:`collect`'s report for a terminal."""
    lines = [f"edgemm {report['edgemm']}"]
    py = report["python"]
    lines.append(f"  python      {py['version']} ({py['implementation']}, {py['platform']}) {py['executable']}")
    ort = report["onnxruntime"]
    if ort["installed"]:
        lines.append(f"  onnxruntime {ort['version']}  providers: {', '.join(ort['providers'])}")
    else:
        lines.append(f"  onnxruntime NOT INSTALLED ({ort['error']})")
    lines.append("optional modules:")
    for dist, entry in report["optional"].items():
        if entry["installed"]:
            state = f"{entry['version'] or 'version unknown'}"
        elif "error" in entry:
            state = f"BROKEN: {entry['error']}"
        else:
            state = f"not installed  ({entry['install']})"
        lines.append(f"  {dist:<14}{state}")
    gpus = report["gpus"]
    lines.append("gpus:")
    if gpus.get("jetson"):
        lines.append(f"  jetson        {gpus['jetson']} {gpus.get('l4t_release', '')}".rstrip())
    for dev in gpus["devices"]:
        lines.append(f"  {dev['name']}  sm {dev['compute_capability']}  driver {dev['driver']}  {dev['memory']}")
    if not gpus["devices"] and not gpus.get("jetson"):
        lines.append(f"  none visible ({gpus.get('note', 'no NVIDIA GPU found')})")
    trt = report.get("tensorrt")
    if trt is not None:
        lines.append("tensorrt engines:")
        if trt["usable"]:
            lines.append(f"  this device: {trt['device']}  (engines go to engines/{trt['slug']}/)")
        else:
            lines.append(f"  cannot run here: {trt['reason']}")
    audio = report["audio"]
    lines.append("audio inputs:")
    if not audio["available"]:
        lines.append(f"  {audio['note']}")
    elif not audio["inputs"]:
        lines.append("  none")
    for dev in audio.get("inputs", []):
        lines.append(f"  [{dev['index']}] {dev['name']} ({dev['channels']} ch, {dev['sample_rate_hz']:.0f} Hz)")
    cv = report["opencv"]
    lines.append("opencv:")
    if cv["installed"]:
        lines.append(
            f"  {cv['version']} at {cv['path']}  FFmpeg: {_yes(cv['ffmpeg'])}  GStreamer: {_yes(cv['gstreamer'])}  "
            f"V4L2: {_yes(cv['v4l2'])}"
        )
        if not cv["gstreamer"]:
            lines.append("  (no GStreamer: csi:// and gst:// cameras need the system OpenCV; see README 'Installing')")
    else:
        lines.append(f"  {cv['note']}")
    if "pack" in report:
        lines += _format_pack(report["pack"])
    return "\n".join(lines)


def _format_pack(pack: dict[str, Any]) -> list[str]:
    lines = [f"pack {pack['path']}  (--backend {pack['backend']}; * = the graphs its task runs)"]
    for comp in pack["components"]:
        head = f"  {comp['name']}  task={comp['task']}  family={comp['family']}"
        if "error" in comp:
            lines.append(f"{head}  cannot run here: {comp['error']}")
        else:
            lines.append(f"{head}  runs {comp['precision']}/{comp['target']} on {comp['backend']}")
        for graph in comp["graphs"]:
            lines.append(f"   {'*' if graph['runs'] else ' '} {graph['variant']}: {graph['backend']}")
    return lines
