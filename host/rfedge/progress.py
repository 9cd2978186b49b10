"""Progress lines on stderr for long work; silent when stderr is not a terminal unless forced."""

from __future__ import annotations

import os
import sys
import time


class Progress:
    """``with Progress(total, "synth csi") as p: ... p.update()`` prints a throttled status line."""

    def __init__(self, total: int, desc: str, stream=None, every_s: float = 0.5):
        self.total = max(int(total), 1)
        self.desc = desc
        self.n = 0
        self.stream = stream or sys.stderr
        self.every_s = every_s
        self._t0 = time.monotonic()
        self._last = 0.0
        self.enabled = os.environ.get("RFEDGE_PROGRESS", "auto") != "0"
        self._tty = self.enabled and (self.stream.isatty() or os.environ.get("RFEDGE_PROGRESS") == "1")

    def __enter__(self):
        return self

    def update(self, k: int = 1):
        self.n += k
        now = time.monotonic()
        if self._tty and (now - self._last >= self.every_s or self.n >= self.total):
            self._last = now
            el = now - self._t0
            eta = el / self.n * (self.total - self.n) if self.n else 0.0
            self.stream.write(f"\r{self.desc}: {self.n}/{self.total} ({100 * self.n / self.total:.0f}%) "
                              f"{el:.1f}s elapsed, ~{eta:.0f}s left   ")
            self.stream.flush()

    def __exit__(self, *exc):
        if self.enabled:
            el = time.monotonic() - self._t0
            if self._tty:
                self.stream.write("\n")
            self.stream.write(f"{self.desc}: {self.n}/{self.total} done in {el:.1f}s\n")
            self.stream.flush()
        return False
