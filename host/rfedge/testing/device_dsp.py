"""The on-device DSP (mcu/core/dsp) compiled with the host's C compiler, fed raw ESP32 CSI buffers.

``HostDsp(features, normalizer, scale, zero_point)`` writes dsp_config.h (rfedge_codegen.emit_dsp),
compiles mcu/core/dsp with dsp_harness.c and keeps the process running; ``window(...)`` returns
what the board would put in the model's input tensor, ``layout(...)`` the buffer decoding and
``stream(...)`` the stream detector's gestures and scores.  ``reference_input`` is the Python
side: rfedge.features.window_features + Normalizer + quantization, as the run's model sees it.
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from rfedge.errors import RfedgeError

HERE = Path(__file__).resolve().parent
DSP_DIR = HERE.parents[2] / "mcu" / "core" / "dsp"
HARNESS = HERE / "dsp_harness.c"
CFLAGS = ["-std=c99", "-O2", "-Wall", "-Wextra", "-Werror", "-ffp-contract=off"]


def host_cc() -> str | None:
    cc = os.environ.get("CC")
    if cc and shutil.which(cc.split()[0]):
        return cc
    for c in ("cc", "gcc", "clang"):
        if shutil.which(c):
            return c
    return None


def encode_packets(csi: np.ndarray, buf_len: int = 256, secondary_channel: int = 0) -> np.ndarray:
    """int8 device buffers [P, buf_len] holding complex HT-LTF values [P, 56] (-28..28 without 0)."""
    from rfedge.io.subcarriers import encode_esp32_buffers, used_subcarriers

    subs = used_subcarriers("ht-ltf", 20)
    return encode_esp32_buffers(buf_len, secondary_channel, {"ht-ltf": (subs, csi)})


def reference_input(csi: np.ndarray, t_us: np.ndarray, cfg, normalizer, scale: float, zero_point: int):
    """(int8 model input [T*F*C], float32 features [C, F, T]) of one window, the Python way."""
    from rfedge.codegen import quantize_inputs
    from rfedge.features import window_features
    from rfedge.models.student import to_model_input

    X = window_features(csi, t_us, cfg)[None]
    return quantize_inputs(to_model_input(normalizer(X)), scale, zero_point)[0], X[0]


class HostDsp:
    """mcu/core/dsp built for this machine, behind a pipe."""

    def __init__(self, features: dict, normalizer: dict, scale: float, zero_point: int, *, single: bool = False,
                 extra_cflags: list[str] | None = None, stream: dict | None = None):
        from rfedge.features import FeatureConfig
        from rfedge_codegen.emit_dsp import write_dsp_config

        cc = host_cc()
        if cc is None:
            raise RfedgeError("no C compiler (cc, gcc or clang; or set CC)")
        self.cfg = FeatureConfig.from_dict(dict(features))
        self.shape = self.cfg.shape
        C, F, T = self.shape
        self.input_size = C * F * T
        self._tmp = tempfile.TemporaryDirectory(prefix="rfe_dsp_")
        d = Path(self._tmp.name)
        write_dsp_config(d, features, normalizer, scale, zero_point, stream=stream)
        exe = d / "dsp_harness"
        cmd = cc.split() + CFLAGS + (["-DRFE_DSP_SINGLE_PRECISION"] if single else []) + list(extra_cflags or []) + \
            ["-I", str(DSP_DIR), "-I", str(d), *map(str, sorted(DSP_DIR.glob("*.c"))), str(HARNESS), "-lm", "-o", str(exe)]
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            raise RfedgeError(f"compiling mcu/core/dsp failed:\n{r.stderr.strip()}")
        self.proc = subprocess.Popen([str(exe)], stdin=subprocess.PIPE, stdout=subprocess.PIPE)

    def close(self):
        if self.proc.poll() is None:
            try:
                self.proc.stdin.write(b"Q")
                self.proc.stdin.close()
            except BrokenPipeError:
                pass
            self.proc.wait(timeout=10)
        self._tmp.cleanup()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _read(self, n: int) -> bytes:
        b = self.proc.stdout.read(n)
        if len(b) != n:
            raise RfedgeError(f"dsp_harness ended early (exit {self.proc.poll()})")
        return b

    @staticmethod
    def _packets(bufs, t_us, secondary_channel, first_word_invalid) -> bytes:
        out = bytearray()
        for k, (b, t) in enumerate(zip(bufs, t_us)):
            b = np.asarray(b, np.int8).tobytes()
            fwi = first_word_invalid[k] if np.ndim(first_word_invalid) else first_word_invalid
            out += struct.pack("<IHbB", int(t) & 0xFFFFFFFF, len(b), int(secondary_channel), int(bool(fwi))) + b
        return bytes(out)

    def window(self, bufs, t_us, *, secondary_channel: int = 0, first_word_invalid=False, t_range=None):
        """(rc, int8 model input [T*F*C], float32 features [C, F, T]) of one window of buffers
        (``t_range=(t0, t1)``: of the packets in that time range, rfe_dsp_window_range_to_input)."""
        head = b"W" if t_range is None else b"R" + struct.pack("<II", *(int(v) & 0xFFFFFFFF for v in t_range))
        msg = head + struct.pack("<I", len(bufs)) + self._packets(bufs, t_us, secondary_channel, first_word_invalid)
        self.proc.stdin.write(msg)
        self.proc.stdin.flush()
        rc = struct.unpack("<i", self._read(4))[0]
        q = np.frombuffer(self._read(self.input_size), np.int8).copy()
        feat = np.frombuffer(self._read(4 * self.input_size), np.float32).reshape(self.shape).copy()
        return rc, q, feat

    def layout(self, buf_len: int, secondary_channel: int):
        """(subcarriers, imaginary byte offsets) the device reads from such a buffer, or None."""
        self.proc.stdin.write(b"L" + struct.pack("<Hb", buf_len, secondary_channel))
        self.proc.stdin.flush()
        n = struct.unpack("<i", self._read(4))[0]
        if n < 0:
            return None
        a = np.frombuffer(self._read(4 * n), np.int16).reshape(n, 2)
        return a[:, 0].copy(), a[:, 1].copy()

    def stream(self, bufs, t_us, threshold: float, *, secondary_channel: int = 0):
        """(gestures [(start_us, end_us)], smoothed scores [N]) of the stream detector."""
        msg = b"S" + struct.pack("<dI", float(threshold), len(bufs)) + self._packets(bufs, t_us, secondary_channel, False)
        self.proc.stdin.write(msg)
        self.proc.stdin.flush()
        ne = struct.unpack("<I", self._read(4))[0]
        ev = np.frombuffer(self._read(8 * ne), np.uint32).reshape(ne, 2)
        ns = struct.unpack("<I", self._read(4))[0]
        scores = np.frombuffer(self._read(8 * ns), np.float64).copy()
        return [(int(a), int(b)) for a, b in ev], scores
