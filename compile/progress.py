"""Progress of long compile work, so a user can tell what runs and how far along it is."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO

__all__ = ["Progress"]


class Progress:
    """Prints numbered stages with their durations, and counters inside long stages.

    Example output::

        [1/5] loading Salesforce/blip-image-captioning-base
            done in 3.1 s
        [4/5] validating fp32 against torch
            images 8/8
            done in 12.4 s
    """

    def __init__(self, total_stages: int, *, stream: TextIO | None = None, enabled: bool = True) -> None:
        self.total = total_stages
        self.index = 0
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = enabled
        self._tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self._last_count = 0.0

    def _write(self, text: str) -> None:
        if self.enabled:
            self.stream.write(text)
            self.stream.flush()

    @contextmanager
    def stage(self, label: str) -> Iterator[None]:
        self.index += 1
        start = time.perf_counter()
        self._write(f"[{self.index}/{self.total}] {label}\n")
        try:
            yield
        except BaseException:
            self._write(f"    failed after {time.perf_counter() - start:.1f} s\n")
            raise
        self._write(f"    done in {time.perf_counter() - start:.1f} s\n")

    def count(self, done: int, total: int, what: str) -> None:
        """Reports ``done`` of ``total`` inside the current stage (throttled on non-terminals)."""
        now = time.perf_counter()
        if self._tty:
            self._write(f"\r    {what} {done}/{total}" + ("\n" if done == total else ""))
        elif done == total or now - self._last_count > 10:
            self._write(f"    {what} {done}/{total}\n")
            self._last_count = now

    def note(self, text: str) -> None:
        self._write(f"    {text}\n")
