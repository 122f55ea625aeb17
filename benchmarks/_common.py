"""Helpers the benchmark scripts share: logging, memory, CPU contention, child processes, versions.

The scripts run as ``python benchmarks/NAME.py``, so Python finds this module beside them.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

__all__ = ["child", "cpu_seconds", "log", "others_share", "peak_rss_mb", "rss_mb", "versions"]


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
