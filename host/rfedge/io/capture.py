"""What every CSI reader returns: packets as columns, plus what was skipped and why.

A capture holds one radio layout (buffer length, bandwidth, secondary channel). Readers keep the
dominant layout of a file and count packets of other layouts as skipped, so downstream code never
sees ragged arrays.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from rfedge.errors import RfedgeError


@dataclass
class CsiCapture:
    """Parsed CSI packets of one file or stream.

    Attributes:
        format: reader that produced it (``esp-csi``, ``esp32-csi-tool``, ``npz``, ``intel5300``).
        csi: complex64 [N, A, S] channel estimates of the used subcarriers, ascending subcarrier
            index. ``A`` is the number of antenna streams (1 for ESP32; rx*tx for Intel 5300).
        subcarriers: int [S] subcarrier index of each column of ``csi`` (e.g. -28..-1, 1..28).
        timestamps_us: float64 [N] device timestamps in microseconds (NaN where unknown).
        raw: int8 [N, L] ESP32 buffer exactly as the device reported it ([imag, real] pairs,
            Espressif order), or None for formats without one.
        part: the training field that ``csi`` was taken from: ``lltf``, ``ht-ltf``, ``stbc-ht-ltf``
            (ESP32) or None.
        bandwidth_mhz: 20 or 40 where known.
        secondary_channel: 0 none, 1 above, 2 below, where known.
        meta: per-packet metadata columns (length N each): rssi, mac, channel, ..., and any
            extra trailing columns of the source (label, host timestamp) by name.
        skipped: reason -> count of lines/packets that were not used.
        source: path or description of the input.
        notes: observation -> count for packets that were kept but are worth knowing about
            (a ``len`` field that disagrees with the payload, an invalid first word).
        seq: int [N] record order in the input (a stream merges layouts by it), or None.
    """

    format: str
    csi: np.ndarray
    subcarriers: np.ndarray
    timestamps_us: np.ndarray
    raw: np.ndarray | None = None
    part: str | None = None
    bandwidth_mhz: int | None = None
    secondary_channel: int | None = None
    meta: dict[str, np.ndarray] = field(default_factory=dict)
    skipped: Counter = field(default_factory=Counter)
    source: str = ""
    notes: Counter = field(default_factory=Counter)
    seq: np.ndarray | None = None

    def __post_init__(self):
        n = self.csi.shape[0]
        if self.csi.ndim != 3 or self.csi.shape[2] != len(self.subcarriers):
            raise ValueError(f"csi must be [N, A, S] with S={len(self.subcarriers)}, got {self.csi.shape}")
        if len(self.timestamps_us) != n:
            raise ValueError("timestamps_us length differs from csi")
        if any(len(v) != n for v in self.meta.values()):
            k, v = next((k, v) for k, v in self.meta.items() if len(v) != n)
            raise ValueError(f"meta column {k!r} has {len(v)} rows, expected {n}")

    @property
    def packets(self) -> int:
        return int(self.csi.shape[0])

    @property
    def rate_hz(self) -> float | None:
        """Median packet rate from device timestamps, None without two valid timestamps."""
        t = self.timestamps_us[np.isfinite(self.timestamps_us)]
        if len(t) < 2:
            return None
        d = np.diff(t)
        d = d[d > 0]
        if len(d) == 0:
            return None
        return float(1e6 / np.median(d))

    @property
    def duration_s(self) -> float | None:
        t = self.timestamps_us[np.isfinite(self.timestamps_us)]
        if len(t) < 2:
            return None
        return float((t.max() - t.min()) / 1e6)

    def summary(self) -> dict:
        """The ``rfedge parse --json`` object."""
        rate = self.rate_hz
        dur = self.duration_s
        return {
            "source": self.source,
            "format": self.format,
            "packets": self.packets,
            "skipped": int(sum(self.skipped.values())),
            "skipped_reasons": dict(sorted(self.skipped.items())),
            "notes": dict(sorted(self.notes.items())),
            "subcarriers": int(len(self.subcarriers)),
            "subcarrier_indices": [int(k) for k in self.subcarriers],
            "antennas": int(self.csi.shape[1]),
            "part": self.part,
            "buffer_len": None if self.raw is None else int(self.raw.shape[1]),
            "rate_hz": None if rate is None else round(rate, 3),
            "duration_s": None if dur is None else round(dur, 6),
            "bandwidth": self.bandwidth_mhz,
            "secondary_channel": self.secondary_channel,
            "meta_columns": sorted(self.meta),
        }


def require_packets(cap: CsiCapture) -> CsiCapture:
    """Turn an empty capture into the one clear error of the readers."""
    if cap.packets == 0:
        reasons = ", ".join(f"{k}: {v}" for k, v in sorted(cap.skipped.items())) or "empty input"
        raise RfedgeError(f"no usable CSI packet ({cap.format}; skipped {reasons})", path=cap.source or None)
    return cap
