"""The streaming pipeline's own cost: end-to-end caption latency vs the bare model, and RSS over a long run.

Usage::

    python benchmarks/pipeline.py                                 # tiny BLIP, local MJPEG camera at 25 fps, 10 min
    python benchmarks/pipeline.py --duration-s 60 --json > pipeline.json
    python benchmarks/pipeline.py --model-size base --duration-s 180   # BLIP-base config: the compile takes minutes
    python benchmarks/pipeline.py --pack PACK --source rtsp://10.0.0.7/stream
    python benchmarks/pipeline.py --source .cache/media/.../vtest.avi  # a file, played in real time, looped

Without ``--pack`` the script builds ``edgemm.compile.testing.tiny_blip`` (``--model-size base``:
``blip_base``, BLIP-base's released configuration with random weights, about 250M parameters) and
compiles it with fp32 and int8/cpu graphs, in a child process so that torch never enters the
process under test. ``--workdir`` keeps the checkpoint and pack for the next run.

Without ``--source`` the script starts a stand-in MJPEG camera (``benchmarks/_mjpeg.py``) in a child
process on 127.0.0.1 at ``--fps`` (25), serving vtest.avi's frames (768x576, from Debian's
opencv-doc, fetched by ``scripts/setup.sh``) looped, else generated 640x480 frames.

Method, in one process and on one captioner (``pack.captioner()``):

1. Bare model, before: ``--bare-frames`` frames are read from the source (every ``--bare-stride``-th
   frame, so they span the scene), the source is closed, the captioner is warmed up, then
   ``captioner.caption_batch([frame])`` is timed on each frame (``time.perf_counter``). Nothing
   else runs in the process meanwhile.
2. The pipeline, for ``--duration-s``: a :class:`edgemm.Session` on the same source with
   ``CaptionPolicy(every_s=--every-s, on_change_only=False, repeat_identical=True)``, so it captions
   as often as asked regardless of scene change and every caption is an event. The main thread
   reads ``session.captions()``, as an application does. Per caption it records
   ``Caption.latency_ms`` (the session's own measure: the frame's capture wall time, after decoding,
   to the event) and, through a thin wrapper around the captioner (two clock reads per call), the
   model's time inside the session, which splits the end-to-end latency into:

   * model in session: the ``caption_batch`` call inside the worker (vs bare: the cost of the
     capture thread and anything else competing for the CPU and the GIL while the model runs);
   * frame age at model start: from capture to the model call (the wait for the worker, the
     scene-change thumbnail). While the model is slower than the frame period, the worker
     takes the newest frame, which is on average half a frame period old (20 ms at 25 fps):
     sampling, not queueing;
   * delivery (not part of ``latency_ms``): from the end of the model call to the caption in the
     reader's hands (the generator's queue and wake-up).

3. Bare model, after: step 1 again on fresh frames, so a change in the machine's load over the run
   shows up as a difference between the two. The overhead is computed against both together.

Overhead = median end-to-end - median bare (and the ratio of the two); the same for p95.

Memory: a monitor thread samples ``VmRSS`` (``/proc/self/status``), thread and file-descriptor
counts every ``--sample-s`` seconds of the session. Baseline: the mean over the first minute
(the first half of runs shorter than two minutes); final: the last sample; max growth: the
largest sample minus the baseline; slope: a least-squares line through all samples, and through
those after the first minute ("steady"), in MB per hour. RSS is "flat" when the final sample is
within ``--flat-mb`` of the baseline. Everything the benchmark keeps per caption lives in arrays
allocated before the session, so its own bookkeeping does not grow the RSS it measures.

Counters from ``session.stats()``: frames captured and dropped (replaced before the worker took
them: expected whenever the model is slower than the camera), failed reads, reconnects, the capture
rate, captions per second; and the process's CPU time during the session.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]

_BUILD = """
import sys
from edgemm.compile import testing
from edgemm.compile.caption import compile_captioner
from edgemm.compile.config import CompileConfig, LoadConfig, VariantConfig
builder, model, out = sys.argv[1:4]
getattr(testing, builder)(model)
compile_captioner(CompileConfig(load=LoadConfig(model, local_files_only=True), out=out, variants=(VariantConfig("int8", "cpu"),)))
"""

_BUILDERS = {"tiny": "tiny_blip", "base": "blip_base"}
_LOG_EVERY_S = 30.0
_MAX_CAPTIONS_PER_S = 200
"""Capacity of the per-caption arrays, per second of run; captions beyond it are counted, not kept."""


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _proc_status(field_name: str) -> int | None:
    """A numeric field of /proc/self/status (VmRSS is in kB); None where /proc is missing."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def _rss_mb() -> float:
    """This process's resident set size now, in MB (nan where /proc is missing)."""
    kb = _proc_status("VmRSS")
    return float("nan") if kb is None else kb / 1024


def _open_fds() -> int:
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return -1


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _percentile(values: Sequence[float] | np.ndarray, q: float) -> float:
    array = np.asarray(values, dtype=np.float64)
    array = array[~np.isnan(array)]
    return float(np.percentile(array, q)) if array.size else float("nan")


def _slope_mb_per_h(times_s: Sequence[float], rss_mb: Sequence[float]) -> float:
    """Least-squares slope of RSS over time, MB/hour (nan with fewer than 3 samples)."""
    if len(times_s) < 3:
        return float("nan")
    slope_per_s = np.polyfit(np.asarray(times_s, dtype=np.float64), np.asarray(rss_mb, dtype=np.float64), 1)[0]
    return float(slope_per_s * 3600.0)


# --- results ---------------------------------------------------------------------------------------


@dataclass
class Latency:
    """Median and 95th percentile of a set of times, in milliseconds."""

    p50_ms: float
    p95_ms: float
    n: int

    @classmethod
    def of(cls, values_ms: Sequence[float] | np.ndarray) -> Latency:
        array = np.asarray(values_ms, dtype=np.float64)
        array = array[~np.isnan(array)]
        return cls(_percentile(array, 50), _percentile(array, 95), int(array.size))


@dataclass
class RssSample:
    """One sample of the process: seconds since the session started, RSS (MB), threads, open fds,
    blocks Python's allocator holds (numpy's small-buffer cache and bounded queues fill it for a
    while; steady growth there points at Python objects, RSS growth without it at native memory:
    ONNX Runtime, OpenCV, malloc), and events waiting for the reader in the session's queues."""

    t_s: float
    rss_mb: float
    threads: int
    fds: int
    python_blocks: int
    queued_events: int


@dataclass
class RssResult:
    """How the process's RSS moved over the session (MB, MB/hour)."""

    before_session_mb: float
    baseline_mb: float
    baseline_window_s: float
    final_mb: float
    final_growth_mb: float
    max_growth_mb: float
    slope_mb_per_h: float
    steady_slope_mb_per_h: float
    peak_rss_mb: float
    flat: bool
    flat_limit_mb: float
    threads_first_last: tuple[int, int]
    fds_first_last: tuple[int, int]
    python_blocks_first_last: tuple[int, int]
    queued_events_max: int
    samples: list[RssSample] = field(default_factory=list)


@dataclass
class Report:
    """Everything one run measured; ``--json`` prints it as is."""

    config: dict[str, Any]
    bare_before: Latency
    bare_after: Latency
    bare: Latency
    bare_tokens_mean: float
    end_to_end: Latency
    end_to_end_by_minute: list[Latency]
    session_tokens_mean: float
    model_in_session: Latency
    frame_age_at_model: Latency
    delivery: Latency
    overhead_p50_ms: float
    overhead_p95_ms: float
    overhead_ratio_p50: float
    overhead_ratio_p95: float
    captions: int
    captions_unmatched: int
    captions_per_s: float
    suppressed: int
    session_stats_latency_ms: dict[str, float]
    source: dict[str, Any]
    capture_fps_mean: float
    drop_fraction: float
    cpu_percent_of_one_core: float
    rss: RssResult
    run_s: float
    load_average: dict[str, list[float]]
    interrupted: bool = False


# --- the captioner wrapper and the recorder ------------------------------------------------------


class _Recorder:
    """Per-caption numbers in arrays allocated (and touched) up front: no growth during the run."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.e2e_ms = np.full(capacity, np.nan)
        self.model_ms = np.full(capacity, np.nan)
        self.age_ms = np.full(capacity, np.nan)
        self.delivery_ms = np.full(capacity, np.nan)
        self.tokens = np.full(capacity, np.nan)
        self.received_s = np.full(capacity, np.nan)
        self.origin = time.monotonic()
        self.count = 0
        self.unmatched = 0
        self.lock = threading.Lock()
        # Calls whose caption has not reached the reader yet, by caption id: (call end wall time, model ms).
        self.calls: dict[str, tuple[float, float]] = {}

    def add_call(self, caption_id: str, ended: float, model_ms: float) -> None:
        with self.lock:
            self.calls[caption_id] = (ended, model_ms)

    def add_caption(self, caption: Any, received: float) -> None:
        with self.lock:
            call = self.calls.pop(caption.id, None)
        if call is None:
            self.unmatched += 1
        i = self.count
        self.count += 1
        if i >= self.capacity:
            return
        self.e2e_ms[i] = caption.latency_ms
        self.received_s[i] = time.monotonic() - self.origin
        self.tokens[i] = len(caption.tokens)
        if call is not None:
            ended, model_ms = call
            self.model_ms[i] = model_ms
            self.age_ms[i] = caption.latency_ms - model_ms
            self.delivery_ms[i] = (received - ended) * 1000.0

    def kept(self) -> slice:
        return slice(0, min(self.count, self.capacity))


class _TimedCaptioner:
    """Wraps a captioner for the session and times each ``caption_batch`` call (two clock reads)."""

    def __init__(self, captioner: Any, recorder: _Recorder) -> None:
        self.captioner = captioner
        self.recorder = recorder

    def caption_batch(self, images: Sequence[np.ndarray], **kwargs: Any) -> list[Any]:
        tick = time.perf_counter()
        results = self.captioner.caption_batch(images, **kwargs)
        model_ms, ended = (time.perf_counter() - tick) * 1000.0, time.time()
        for result in results:
            self.recorder.add_call(result.id, ended, model_ms)
        return list(results)


# --- the source ------------------------------------------------------------------------------------


@contextlib.contextmanager
def _camera(args: argparse.Namespace) -> Iterator[tuple[str, str]]:
    """Yields (source URI, description): ``--source``, or a stand-in MJPEG camera in a child process."""
    if args.source:
        yield args.source, args.source
        return
    command = [sys.executable, str(Path(__file__).with_name("_mjpeg.py")), "--fps", str(args.fps)]
    video = _vtest()
    if video is not None:
        command += ["--video", str(video)]
        what = f"vtest.avi frames (768x576) looped, MJPEG over HTTP at {args.fps:g} fps (child process)"
    else:
        what = f"generated 640x480 frames, MJPEG over HTTP at {args.fps:g} fps (child process; vtest.avi not found)"
    server = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        url = server.stdout.readline().strip()
        if not url.startswith("http://"):
            raise SystemExit(f"the MJPEG server did not start (exit code {server.wait(10)})")
        yield url, what
    finally:
        assert server.stdin is not None
        server.stdin.close()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def _vtest() -> Path | None:
    sys.path.insert(0, str(REPO))
    try:
        from tests.media import opencv_sample

        return opencv_sample("vtest.avi")
    except (ImportError, FileNotFoundError) as exc:
        _log(f"vtest.avi unavailable ({exc}); the camera serves generated frames")
        return None
    finally:
        sys.path.remove(str(REPO))


def _is_file(uri: str) -> bool:
    return uri.startswith("file://") or ("://" not in uri and not uri.isdigit())


def _open(uri: str, name: str, timeout_s: float) -> Any:
    from edgemm.runtime.sources import open_source

    return open_source(uri, name=name, realtime=True, loop=_is_file(uri), timeout_s=timeout_s)


def _collect_frames(uri: str, count: int, stride: int, timeout_s: float) -> list[np.ndarray]:
    """``count`` frames of the source, every ``stride``-th one: RGB uint8 (H, W, 3)."""
    images: list[np.ndarray] = []
    with _open(uri, "bare", timeout_s) as source:
        next_index = 0
        while len(images) < count:
            frame = source.read(timeout_s=timeout_s)
            if frame is None:
                if source.ended:
                    break
                continue
            if frame.index >= next_index:
                images.append(frame.image)
                next_index = frame.index + stride
    if not images:
        raise SystemExit(f"{uri}: no frame to time the bare model on")
    return images


def _bare(captioner: Any, uri: str, args: argparse.Namespace, label: str) -> tuple[list[float], list[int]]:
    """Times ``caption_batch([frame])`` on fresh frames of the source: (ms per frame, tokens per frame)."""
    _log(f"bare model ({label}): reading {args.bare_frames} frames (one in {args.bare_stride}) ...")
    images = _collect_frames(uri, args.bare_frames, args.bare_stride, args.source_timeout_s)
    for _ in range(args.warmup):
        captioner.caption_batch([images[0]])
    times_ms, tokens = [], []
    for image in images:
        start = time.perf_counter()
        caption = captioner.caption_batch([image])[0]
        times_ms.append((time.perf_counter() - start) * 1000.0)
        tokens.append(len(caption.tokens))
    _log(f"bare model ({label}): median {statistics.median(times_ms):.1f} ms over {len(times_ms)} frames")
    return times_ms, tokens


# --- the session run -------------------------------------------------------------------------------


class _Monitor(threading.Thread):
    """Samples RSS every ``sample_s``, logs progress, and closes the session at the deadline."""

    def __init__(self, session: Any, recorder: _Recorder, duration_s: float, sample_s: float) -> None:
        super().__init__(name="bench-monitor", daemon=True)
        self.session = session
        self.recorder = recorder
        self.duration_s = duration_s
        self.sample_s = sample_s
        self.samples: list[RssSample] = []
        self.stats: Any = None
        self.stop = threading.Event()
        self.started_at = 0.0

    def sample(self) -> None:
        self.samples.append(
            RssSample(
                round(time.monotonic() - self.started_at, 3),
                _rss_mb(),
                _proc_status("Threads") or -1,
                _open_fds(),
                sys.getallocatedblocks(),
                sum(self.session.stats().queue_depths.values()),
            )
        )

    def run(self) -> None:
        self.started_at = time.monotonic()
        deadline = self.started_at + self.duration_s
        next_sample = self.started_at
        next_log = self.started_at + _LOG_EVERY_S
        logged = 0
        while True:
            now = time.monotonic()
            if now >= next_sample:
                self.sample()
                next_sample += self.sample_s
            if now >= next_log:
                next_log += _LOG_EVERY_S
                # The last interval only: a bounded slice, so progress reports do not grow the heap they measure.
                count = min(self.recorder.count, self.recorder.capacity)
                recent = self.recorder.e2e_ms[logged:count]
                logged = count
                _log(
                    f"[{now - self.started_at:6.0f}/{self.duration_s:.0f} s] captions {self.recorder.count}, "
                    f"last {_LOG_EVERY_S:.0f} s: {recent.size / _LOG_EVERY_S:.1f}/s, end-to-end p50 {_percentile(recent, 50):.1f} ms, "
                    f"RSS {self.samples[-1].rss_mb:.1f} MB"
                )
            if now >= deadline or self.stop.is_set():
                break
            self.stop.wait(max(0.0, min(next_sample, next_log, deadline) - time.monotonic()))
        self.stats = self.session.stats()
        self.sample()
        self.session.close()


def _run_session(captioner: Any, uri: str, args: argparse.Namespace, recorder: _Recorder) -> tuple[_Monitor, float, float, bool]:
    """Runs the session for ``--duration-s``: (monitor, run seconds, CPU seconds, interrupted)."""
    from edgemm.runtime.session import CaptionPolicy, Session

    policy = CaptionPolicy(every_s=args.every_s, on_change_only=False, repeat_identical=True)
    session = Session(_TimedCaptioner(captioner, recorder), [_open(uri, "cam", args.source_timeout_s)], policy=policy)
    monitor = _Monitor(session, recorder, args.duration_s, args.sample_s)
    interrupted = False
    _log(f"session: {args.duration_s:g} s, captioning every {args.every_s:g} s, RSS every {args.sample_s:g} s ...")
    cpu_start = _cpu_s()
    session.start()
    recorder.origin = time.monotonic()
    monitor.start()
    try:
        for caption in session.captions():
            recorder.add_caption(caption, time.time())
    except KeyboardInterrupt:
        interrupted = True
        _log("interrupted: reporting what was measured so far")
    finally:
        monitor.stop.set()  # the session ended early (a failed source raises here) or was interrupted
        monitor.join()
    run_s = time.monotonic() - monitor.started_at
    return monitor, run_s, _cpu_s() - cpu_start, interrupted


def _by_minute(recorder: _Recorder, run_s: float) -> list[Latency]:
    """End-to-end latency per minute of the session (shows drift, and a neighbour's load coming and going).

    The captions of a last, partial minute (those finishing after the deadline, or a run that is not
    a whole number of minutes) count in the minute before, so no bucket holds a handful of samples.
    """
    kept = recorder.kept()
    last = max(int(run_s // 60.0) - 1, 0)
    minutes = np.minimum(np.floor(recorder.received_s[kept] / 60.0), last)
    e2e = recorder.e2e_ms[kept]
    return [Latency.of(e2e[minutes == m]) for m in np.unique(minutes[~np.isnan(minutes)])]


def _rss_result(samples: list[RssSample], before_mb: float, flat_mb: float) -> RssResult:
    times = [s.t_s for s in samples]
    rss = [s.rss_mb for s in samples]
    window = min(60.0, times[-1] / 2) if times[-1] > 0 else 0.0
    first = [r for t, r in zip(times, rss) if t <= window] or rss[:1]
    baseline = statistics.fmean(first)
    steady = [(t, r) for t, r in zip(times, rss) if t >= window]
    return RssResult(
        before_session_mb=before_mb,
        baseline_mb=baseline,
        baseline_window_s=window,
        final_mb=rss[-1],
        final_growth_mb=rss[-1] - baseline,
        max_growth_mb=max(rss) - baseline,
        slope_mb_per_h=_slope_mb_per_h(times, rss),
        steady_slope_mb_per_h=_slope_mb_per_h([t for t, _ in steady], [r for _, r in steady]),
        peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        flat=rss[-1] - baseline <= flat_mb,
        flat_limit_mb=flat_mb,
        threads_first_last=(samples[0].threads, samples[-1].threads),
        fds_first_last=(samples[0].fds, samples[-1].fds),
        python_blocks_first_last=(samples[0].python_blocks, samples[-1].python_blocks),
        queued_events_max=max(s.queued_events for s in samples),
        samples=samples,
    )


# --- the pack --------------------------------------------------------------------------------------


def _prepare_pack(args: argparse.Namespace, workdir: Path) -> Path:
    """The pack directory: ``--pack``, one kept in ``--workdir``, or a fresh tiny/base BLIP pack."""
    if args.pack:
        return Path(args.pack)
    pack_dir = workdir / f"{args.model_size}-pack"
    if (pack_dir / "manifest.json").exists():
        _log(f"reusing the pack in {pack_dir}")
        return pack_dir
    builder = _BUILDERS[args.model_size]
    if args.model_size == "base":
        _log("building blip_base (about 250M parameters, random weights) and compiling fp32 + int8/cpu graphs: this takes minutes")
    else:
        _log("building tiny_blip and compiling fp32 + int8/cpu graphs ...")
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", _BUILD, builder, str(workdir / f"{args.model_size}-model"), str(pack_dir)],
        stdout=sys.stderr,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"building the pack failed (exit code {done.returncode})")
    _log(f"pack ready in {time.perf_counter() - start:.0f} s: {pack_dir}")
    return pack_dir


# --- reporting -------------------------------------------------------------------------------------


def _table(report: Report) -> str:
    rss = report.rss
    src = report.source
    c = report.config

    def lat(row: str, value: Latency, note: str = "") -> str:
        return f"  {row:<34}{value.p50_ms:>10.1f}{value.p95_ms:>10.1f}{value.n:>8}  {note}"

    lines = [
        f"edgemm pipeline benchmark: {c['captioner']}",
        f"  source: {c['source']}",
        f"  run: {report.run_s:.0f} s, caption every {c['every_s']:g} s, intra-op threads {c['threads'] or 'auto'}, "
        f"{c['cpus']} CPUs, load average {report.load_average['start'][0]:.2f} -> {report.load_average['end'][0]:.2f}"
        + (" (INTERRUPTED)" if report.interrupted else ""),
        "",
        f"  {'latency':<34}{'p50 ms':>10}{'p95 ms':>10}{'n':>8}",
        lat("bare model (before + after)", report.bare, f"tokens/caption {report.bare_tokens_mean:.1f}"),
        lat("  before the session", report.bare_before),
        lat("  after the session", report.bare_after),
        lat("end to end (Caption.latency_ms)", report.end_to_end, f"tokens/caption {report.session_tokens_mean:.1f}"),
        lat("  first minute", report.end_to_end_by_minute[0]),
        lat("  last minute", report.end_to_end_by_minute[-1]),
        lat("  model inside the session", report.model_in_session),
        lat("  frame age at model start", report.frame_age_at_model),
        lat("delivery to the reader (extra)", report.delivery),
        f"  {'overhead (e2e - bare)':<34}{report.overhead_p50_ms:>10.1f}{report.overhead_p95_ms:>10.1f}",
        f"  {'ratio (e2e / bare)':<34}{report.overhead_ratio_p50:>10.2f}{report.overhead_ratio_p95:>10.2f}",
        "",
        f"  RSS (MB)       before session {rss.before_session_mb:.1f} | baseline {rss.baseline_mb:.1f} (first {rss.baseline_window_s:.0f} s) "
        f"| final {rss.final_mb:.1f} | growth {rss.final_growth_mb:+.1f} | max growth {rss.max_growth_mb:+.1f} | peak {rss.peak_rss_mb:.1f}",
        f"  RSS slope      {rss.slope_mb_per_h:+.1f} MB/h (all {len(rss.samples)} samples), "
        f"{rss.steady_slope_mb_per_h:+.1f} MB/h (after the first {rss.baseline_window_s:.0f} s) "
        f"-> {'FLAT' if rss.flat else 'GROWING'} (final within {rss.flat_limit_mb:g} MB of baseline: {'yes' if rss.flat else 'no'})",
        f"  threads        {rss.threads_first_last[0]} -> {rss.threads_first_last[1]}; open fds {rss.fds_first_last[0]} -> {rss.fds_first_last[1]}; "
        f"Python allocator blocks {rss.python_blocks_first_last[0]} -> {rss.python_blocks_first_last[1]}; "
        f"events queued for the reader, most sampled {rss.queued_events_max}",
        "",
        f"  frames         captured {src['captured']} ({report.capture_fps_mean:.1f} fps mean, {src['fps']:.1f} fps at the end), "
        f"delivered to the worker {src['delivered']}, dropped {src['dropped']} ({100 * report.drop_fraction:.1f}%), "
        f"failed reads {src['failed_reads']}, reconnects {src['reconnects']}",
        f"  captions       {report.captions} ({report.captions_per_s:.2f}/s), suppressed {report.suppressed}, "
        f"unmatched {report.captions_unmatched}; session.stats() p50/p95 (last {report.session_stats_latency_ms.get('n', 0):.0f}) "
        f"{report.session_stats_latency_ms.get('p50', float('nan')):.1f}/{report.session_stats_latency_ms.get('p95', float('nan')):.1f} ms",
        f"  CPU            {report.cpu_percent_of_one_core:.0f}% of one core over the session (this process)",
    ]
    return "\n".join(lines)


def _to_json(value: Any) -> Any:
    """NaN and infinity as null: JSON has neither."""
    if isinstance(value, float):
        return value if np.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _to_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_json(v) for v in value]
    return value


# --- main ------------------------------------------------------------------------------------------


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pack", help="an existing caption pack (default: build and compile tiny_blip, or blip_base)")
    parser.add_argument("--model-size", choices=sorted(_BUILDERS), default="tiny", help="the BLIP to build without --pack (base: minutes)")
    parser.add_argument("--workdir", help="keep the checkpoint and pack here and reuse them (default: a temporary directory)")
    parser.add_argument("--precision", default="auto", choices=("auto", "fp32", "int8", "fp16"), help="graphs to run (auto: int8 on the CPU when validated)")
    parser.add_argument("--threads", type=int, default=0, help="ONNX Runtime intra-op threads (0: one per core)")
    parser.add_argument("--source", help="a source URI (default: a local MJPEG camera started by the script)")
    parser.add_argument("--fps", type=float, default=25.0, help="the local camera's frame rate")
    parser.add_argument("--source-timeout-s", type=float, default=10.0, help="how long opening the source may take")
    parser.add_argument("--duration-s", type=float, default=600.0, help="length of the session run")
    parser.add_argument("--every-s", type=float, default=0.0, help="caption at most every this many seconds (0: as often as possible)")
    parser.add_argument("--sample-s", type=float, default=10.0, help="RSS sampling period")
    parser.add_argument("--bare-frames", type=int, default=40, help="frames the bare model is timed on, before and again after the session")
    parser.add_argument("--bare-stride", type=int, default=3, help="take every Nth frame of the source for the bare timing")
    parser.add_argument("--warmup", type=int, default=3, help="untimed captions before the bare timing")
    parser.add_argument("--flat-mb", type=float, default=10.0, help="RSS counts as flat when the final sample is within this of the baseline")
    parser.add_argument("--json", action="store_true", help="print the report as JSON (the table goes to stderr)")
    args = parser.parse_args(argv)
    for name in ("duration_s", "sample_s", "fps", "source_timeout_s"):
        if getattr(args, name) <= 0:
            parser.error(f"--{name.replace('_', '-')} must be > 0, got {getattr(args, name)}")
    for name in ("every_s", "threads", "warmup"):
        if getattr(args, name) < 0:
            parser.error(f"--{name.replace('_', '-')} must be >= 0, got {getattr(args, name)}")
    if args.bare_frames < 1 or args.bare_stride < 1:
        parser.error(f"--bare-frames and --bare-stride must be >= 1, got {args.bare_frames} and {args.bare_stride}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the benchmark; returns the exit status (0; 1 when no caption came)."""
    args = _parse(argv)
    import edgemm

    with contextlib.ExitStack() as stack:
        workdir = Path(args.workdir) if args.workdir else Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="edgemm-pipeline-")))
        workdir.mkdir(parents=True, exist_ok=True)
        pack_dir = _prepare_pack(args, workdir)
        uri, source_text = stack.enter_context(_camera(args))
        pack = edgemm.load(pack_dir, precision=args.precision, options=edgemm.OrtOptions(intra_op_threads=args.threads))
        captioner = pack.captioner()
        _log(f"{captioner.describe()}; source {uri}")
        load_start = list(os.getloadavg())

        before_ms, before_tokens = _bare(captioner, uri, args, "before")
        recorder = _Recorder(int(args.duration_s * _MAX_CAPTIONS_PER_S) + 1000)
        rss_before = _rss_mb()
        monitor, run_s, cpu_s, interrupted = _run_session(captioner, uri, args, recorder)
        after_ms, after_tokens = _bare(captioner, uri, args, "after")
        load_end = list(os.getloadavg())

    if recorder.count == 0:
        _log("no caption came from the session: nothing to compare")
        return 1
    kept = recorder.kept()
    bare = Latency.of(before_ms + after_ms)
    e2e = Latency.of(recorder.e2e_ms[kept])
    stats = monitor.stats
    source = stats.sources["cam"]
    report = Report(
        config={
            "pack": str(pack_dir),
            "model_size": None if args.pack else args.model_size,
            "captioner": captioner.describe(),
            "source": source_text,
            "uri": uri,
            "duration_s": args.duration_s,
            "every_s": args.every_s,
            "sample_s": args.sample_s,
            "threads": args.threads,
            "bare_frames": args.bare_frames,
            "cpus": os.cpu_count(),
            "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
            "python": platform.python_version(),
            "edgemm": edgemm.__version__,
        },
        bare_before=Latency.of(before_ms),
        bare_after=Latency.of(after_ms),
        bare=bare,
        bare_tokens_mean=statistics.fmean(before_tokens + after_tokens),
        end_to_end=e2e,
        end_to_end_by_minute=_by_minute(recorder, run_s),
        session_tokens_mean=float(np.nanmean(recorder.tokens[kept])),
        model_in_session=Latency.of(recorder.model_ms[kept]),
        frame_age_at_model=Latency.of(recorder.age_ms[kept]),
        delivery=Latency.of(recorder.delivery_ms[kept]),
        overhead_p50_ms=e2e.p50_ms - bare.p50_ms,
        overhead_p95_ms=e2e.p95_ms - bare.p95_ms,
        overhead_ratio_p50=e2e.p50_ms / bare.p50_ms,
        overhead_ratio_p95=e2e.p95_ms / bare.p95_ms,
        captions=stats.captions,
        captions_unmatched=recorder.unmatched,
        captions_per_s=stats.captions / stats.running_s,
        suppressed=stats.suppressed,
        session_stats_latency_ms=stats.latency_ms.get("caption", {}),
        source=source,
        capture_fps_mean=source["captured"] / source["uptime_s"] if source["uptime_s"] else float("nan"),
        drop_fraction=source["dropped"] / source["captured"] if source["captured"] else float("nan"),
        cpu_percent_of_one_core=100.0 * cpu_s / run_s,
        rss=_rss_result(monitor.samples, rss_before, args.flat_mb),
        run_s=run_s,
        load_average={"start": load_start, "end": load_end},
        interrupted=interrupted,
    )
    table = _table(report)
    if args.json:
        _log(table)
        print(json.dumps(_to_json(asdict(report)), indent=2))
    else:
        print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
