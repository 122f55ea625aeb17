"""Helpers the benchmark scripts share: logging, memory, CPU contention, child processes, versions.

The scripts run as ``python benchmarks/NAME.py``, so Python finds this module beside them.
"""

from __future__ import annotations

import dataclasses
import json
import os
import resource
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

__all__ = ["child", "cpu_seconds", "interleaved", "log", "others_share", "peak_rss_mb", "report", "rss_mb", "versions"]


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def rss_mb() -> float | None:
    """This process's resident set size now, in MB (None where /proc is missing)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def cpu_seconds() -> tuple[float, float] | None:
    """(busy, busy + idle) CPU seconds of the whole machine since boot (None where /proc is missing)."""
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    except (OSError, ValueError):
        return None
    user, nice, system, idle, iowait, irq, softirq, steal = fields
    tick = os.sysconf("SC_CLK_TCK")
    busy = user + nice + system + irq + softirq + steal
    return busy / tick, (busy + idle + iowait) / tick


def others_share(start: tuple[float, float] | None, self_start: float) -> float | None:
    """The share of the machine's CPU time that other processes used since ``start``."""
    end = cpu_seconds()
    if start is None or end is None or end[1] <= start[1]:
        return None
    times = os.times()
    mine = times.user + times.system - self_start
    return max(0.0, (end[0] - start[0] - mine) / (end[1] - start[1]))


def peak_rss_mb(who: int = resource.RUSAGE_SELF) -> float:
    # ru_maxrss is in kilobytes on Linux (bytes on macOS).
    scale = 1 / (1024 * 1024) if sys.platform == "darwin" else 1 / 1024
    return resource.getrusage(who).ru_maxrss * scale


def child(code: str, *args: str) -> None:
    """Runs ``code`` in a fresh interpreter (its output goes to stderr); fails loudly."""
    done = subprocess.run([sys.executable, "-c", code, *args], stdout=sys.stderr, check=False)
    if done.returncode != 0:
        raise SystemExit(f"child process failed with exit code {done.returncode}")


def versions(dists: Sequence[str]) -> dict[str, str]:
    import importlib.metadata

    out = {}
    for dist in dists:
        try:
            out[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    return out


def interleaved(
    engines: Sequence[Any], names: Sequence[str], repeats: int, new_tokens: int, run: Callable[[Any, int], Any], what: str = ""
) -> dict[str, list[list[Any]]]:
    """Times every engine on every input ``repeats`` times, the engines in a rotating order (so a
    busy neighbour slows all of them alike). ``run(engine, i)`` times input ``i`` and returns a
    sample with ``tokens`` and ``total_ms``; every sample must hold exactly ``new_tokens`` tokens.
    Returns engine name -> [input][repeat]."""
    samples: dict[str, list[list[Any]]] = {e.name: [[] for _ in names] for e in engines}
    for repeat in range(repeats):
        for i, name in enumerate(names):
            shift = (repeat * len(names) + i) % len(engines)
            line = []
            for engine in [*engines[shift:], *engines[:shift]]:
                sample = run(engine, i)
                if len(sample.tokens) != new_tokens:
                    raise SystemExit(f"{engine.name} generated {len(sample.tokens)} tokens on {name}, expected exactly {new_tokens}")
                samples[engine.name][i].append(sample)
                line.append(f"{engine.name} {sample.total_ms:.0f} ms")
            log(f"  repeat {repeat + 1}/{repeats} {what}{name}: " + ", ".join(line))
    return samples


def report(text: list[str], others: float | None, setup: dict[str, Any], results: Sequence[Any], as_json: bool) -> int:
    """Prints the text report (to stderr when ``as_json``) with the contention line, then the JSON."""
    if others is not None:
        text.append(f"other processes used {others:.0%} of the machine's CPU time while timing")
        if others > 0.1:
            text.append("WARNING: the machine was shared; absolute times are inflated (transformers eager the most), rerun on a quiet machine")
    print("\n".join(text), file=sys.stderr if as_json else sys.stdout, flush=True)
    if as_json:
        print(json.dumps({"setup": setup, "results": [dataclasses.asdict(r) for r in results]}, indent=2))
    return 0
