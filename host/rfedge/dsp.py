"""CSI signal processing (paper 002 §3.3; paper 000's CSI-ratio), each step a plain function.

Shapes: a window of CSI is complex [P, S] (packets x subcarriers) with timestamps [P] in µs.
Everything here is deterministic float32/float64 numpy, written so that the device (mcu/) can
compute the same numbers: no data-dependent branches beyond clipping, small fixed sizes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rfedge.errors import RfedgeError

C = 299_792_458.0


def amplitude(csi: np.ndarray) -> np.ndarray:
    return np.abs(csi)


def sanitize_phase(csi: np.ndarray, subcarriers: np.ndarray) -> np.ndarray:
    """Per-packet phase with the least-squares linear trend over subcarrier index removed.

    The random common phase (CFO) and linear slope (timing/SFO) of each packet are exactly a line
    in subcarrier index, so what remains is the channel's own phase shape.
    """
    ph = np.unwrap(np.angle(csi), axis=-1)
    k = np.asarray(subcarriers, dtype=np.float64)
    kc = k - k.mean()
    slope = (ph * kc).sum(-1, keepdims=True) / (kc**2).sum()
    return ph - ph.mean(-1, keepdims=True) - slope * kc


def csi_ratio(csi: np.ndarray, ref: np.ndarray | int) -> np.ndarray:
    """CSI divided by a reference: another receive chain [P, S] of the same radio, or the index of a
    reference subcarrier. Common per-packet phase and gain (CFO, AGC) cancel in the ratio."""
    if isinstance(ref, (int, np.integer)):
        den = np.take(csi, [int(ref)], axis=-1)
    else:
        den = ref
    mag = np.abs(den)
    safe = np.where(mag > 0, den, 1.0)
    return np.where(mag > 0, csi / safe, 0.0)


def resample_uniform(values: np.ndarray, t_us: np.ndarray, rate_hz: float, n_out: int,
                     t0_us: float | None = None) -> np.ndarray:
    """Linear interpolation of irregular packets onto n_out uniform instants from t0 (default: first packet).

    Before the first and after the last packet the edge value is held (packet loss at the edges).
    ``values`` is [P, ...]; the result is [n_out, ...].
    """
    t = np.asarray(t_us, dtype=np.float64)
    if len(t) == 0:
        raise RfedgeError("cannot resample a window with no packets")
    t0 = t[0] if t0_us is None else t0_us
    grid = t0 + np.arange(n_out) * (1e6 / rate_hz)
    flat = values.reshape(len(t), -1)
    out = np.empty((n_out, flat.shape[1]), dtype=np.result_type(values.dtype, np.float32))
    if np.iscomplexobj(flat):
        for j in range(flat.shape[1]):
            out[:, j] = np.interp(grid, t, flat[:, j].real) + 1j * np.interp(grid, t, flat[:, j].imag)
    else:
        for j in range(flat.shape[1]):
            out[:, j] = np.interp(grid, t, flat[:, j])
    return out.reshape((n_out,) + values.shape[1:])


def doppler_bins(win_len: int, rate_hz: float, carrier_hz: float, v_max: float, include_dc: bool = False) -> np.ndarray:
    """STFT bins m with m·fs/L <= f_c·v_max/c (paper 002 eq. 11): the feasible Doppler band."""
    f_max = carrier_hz * v_max / C
    m_max = min(int(np.floor(f_max * win_len / rate_hz)), win_len // 2)
    return np.arange(0 if include_dc else 1, m_max + 1)


def hann(win_len: int) -> np.ndarray:
    """Periodic Hann window (the STFT convention, scipy.signal.get_window('hann', L))."""
    n = np.arange(win_len)
    return (0.5 - 0.5 * np.cos(2 * np.pi * n / win_len)).astype(np.float64)


def stft_bins(x: np.ndarray, win_len: int, hop: int, bins: np.ndarray) -> np.ndarray:
    """|STFT|² of real x [N, C] at the chosen bins only, Hann window: [C, F, T].

    A direct DFT of the few Doppler bins costs C·T·L·F multiply-adds, far less than an FFT of all
    L bins when F is small, and is what the device computes too.
    """
    n = x.shape[0]
    if n < win_len:
        raise RfedgeError(f"window of {n} samples is shorter than the STFT length {win_len}")
    frames = 1 + (n - win_len) // hop
    w = hann(win_len)
    idx = np.arange(win_len)[None, :] + hop * np.arange(frames)[:, None]          # [T, L]
    seg = x[idx] * w[None, :, None]                                                # [T, L, C]
    basis = np.exp(-2j * np.pi * np.outer(np.arange(win_len), bins) / win_len)    # [L, F]
    spec = np.einsum("tlc,lf->cft", seg, basis)
    return spec.real**2 + spec.imag**2


def log_power(p: np.ndarray, eps: float = 1e-3) -> np.ndarray:
    return np.log(p + eps)


def group_subcarriers(a: np.ndarray, groups: int) -> np.ndarray:
    """Mean over ``groups`` contiguous blocks of subcarriers (last axis): fewer channels, less noise."""
    s = a.shape[-1]
    if not 1 <= groups <= s:
        raise RfedgeError(f"cannot make {groups} subcarrier groups from {s} subcarriers")
    edges = np.linspace(0, s, groups + 1).round().astype(int)
    return np.stack([a[..., lo:hi].mean(-1) for lo, hi in zip(edges[:-1], edges[1:])], axis=-1)


@dataclass
class Normalizer:
    """Per-channel standardization of X; its statistics travel with the model to the device."""

    mean: np.ndarray   # [C]
    std: np.ndarray    # [C]

    @classmethod
    def fit(cls, X: np.ndarray) -> "Normalizer":
        axes = tuple(i for i in range(X.ndim) if i != 1)  # X is [N, C, F, T]
        return cls(X.mean(axis=axes).astype(np.float32), (X.std(axis=axes) + 1e-6).astype(np.float32))

    def __call__(self, X: np.ndarray) -> np.ndarray:
        shape = (1, -1) + (1,) * (X.ndim - 2)
        return ((X - self.mean.reshape(shape)) / self.std.reshape(shape)).astype(np.float32)

    def to_dict(self) -> dict:
        return {"mean": self.mean.tolist(), "std": self.std.tolist()}

    @classmethod
    def from_dict(cls, d: dict) -> "Normalizer":
        return cls(np.asarray(d["mean"], np.float32), np.asarray(d["std"], np.float32))
