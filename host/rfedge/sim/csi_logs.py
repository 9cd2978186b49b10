"""The simulator's esp-csi console logs: what an ESP32 receiver would have printed.

One log per (user, session, receiver), trials in recording order, each line carrying the full
256-byte HT20 buffer (LLTF + HT-LTF, [imag, real] pairs) and two trailing columns, ``trial`` and
``label``, so ``rfedge data import --label-from column:label`` can rebuild a dataset from them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from rfedge.io.esp_csi import write_esp_csi_log
from rfedge.io.subcarriers import encode_esp32_buffers

BUF_LEN = 256  # LLTF + HT-LTF, HT20, no secondary channel


class LogSink:
    """Collects one (user, session)'s packets per receiver and writes them when the session ends."""

    def __init__(self, directory: Path, cfg: dict, subcarriers_ht: np.ndarray, subcarriers_lltf: np.ndarray):
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.cfg = cfg
        self.sc_ht, self.sc_lltf = subcarriers_ht, subcarriers_lltf
        self.key = None
        self.rows = {}

    def add(self, user: int, session: int, receiver: int, trial_id: int, label: str, ht, lltf, t_us, rssi):
        if self.key != (user, session):
            self.flush()
            self.key = (user, session)
        self.rows.setdefault(receiver, []).append((trial_id, label, ht, lltf, t_us, rssi))

    def flush(self):
        if self.key is None:
            return
        u, s = self.key
        for r, trials in sorted(self.rows.items()):
            ht = np.concatenate([t[2] for t in trials])
            lltf = np.concatenate([t[3] for t in trials])
            raw = encode_esp32_buffers(BUF_LEN, 0, {"lltf": (self.sc_lltf, lltf), "ht-ltf": (self.sc_ht, ht)})
            n = len(raw)
            fields = {
                "rssi": np.concatenate([t[5] for t in trials]),
                "local_timestamp": np.concatenate([t[4] for t in trials]),
                "rate": 11, "sig_mode": 1, "mcs": 7, "bandwidth": 0, "smoothing": 1, "not_sounding": 1,
                "aggregation": 0, "stbc": 0, "fec_coding": 0, "sgi": 0, "noise_floor": -92, "ampdu_cnt": 0,
                "channel": self.cfg["channel"], "secondary_channel": 0, "ant": 0, "sig_len": 100,
                "rx_state": 0, "first_word": 0,
            }
            extra = {"trial": np.concatenate([np.full(len(t[4]), t[0]) for t in trials]),
                     "label": np.concatenate([np.full(len(t[4]), t[1], dtype=object) for t in trials])}
            assert all(len(v) == n for v in extra.values())
            write_esp_csi_log(self.dir / f"user{u}_session{s}_rx{r}.csv", raw, fields, header=True, extra_columns=extra)
        self.rows = {}
        self.key = None
