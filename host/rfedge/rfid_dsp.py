"""Passive-RFID trial processing of paper 003 §IV-A and §IV-B: per tag and reader antenna, the
RSS and phase series, and per tag the angle of arrival, each on a common grid of 35 samples.

Stage input: an rfedge dataset of kind ``rfid`` (rfedge.sim.rfid; arrays [trial, tag, antenna,
slot] ``iq``, ``detected``, ``t_s``, ``rss_dbm``, ``phase_rad``; manifest config with
``window_s``, ``element_spacing_wl`` and ``tags``). Output, for the selected tags (one per hand by
default, the paper's "two tags"):

    rss    float32 [N, tags, 2 antennas, 35]   min-max normalized RSS (eq. 4), in [0, 1]
    phase  float32 [N, tags, 2 antennas, 35]   unwrapped, smoothed phase in rad, relative to its
                                               first grid sample
    aoa    float32 [N, tags, 35]               MUSIC + RTS-smoothed angle of arrival in rad,
                                               paper 003's θ (positive toward -x)

Steps per tag and antenna (``process_rss_phase``):
  1. RSS of the detected reads min-max normalized (a constant series gives zeros).
  2. Phase of the detected reads unwrapped in time order, linearly interpolated over missed
     reads onto one sample per read cycle (the filters need uniform sampling), then
     Savitzky-Golay, then Gaussian filtered.
  3. Both resampled onto ``time_grid`` (35 bin centres over the trial window) by linear
     interpolation, held constant before the first and after the last read.

AoA per tag (``estimate_aoa``):
  4. Snapshots [y1, y2] at every detected read: the read's own antenna and the other antenna's
     reads just before and after it (the reader alternates antennas, so these bracket it)
     interpolated to the read's time — amplitude linearly, phase along the shorter arc. That
     alignment uses only the measured read times; nothing else (port phases, multipath) is
     corrected, since nothing else is known.
  5. Sample covariance of the snapshots in sliding windows, eigen-decomposition, the noise
     eigenvector, and the MUSIC pseudo-spectrum with the round-trip steering vector
     a(θ) = [1, exp(j 4π d/λ sinθ)] line-searched over the unambiguous field of view
     |θ| <= asin(λ / (4 d)) (18.2° for d = 0.8 λ): there the round-trip phase difference
     4π d/λ sinθ covers exactly one turn (-π..π), so every covariance maps to one angle; a wider
     search would give two equal peaks.
  6. A Rauch-Tung-Striebel smoother with a constant-velocity state over the window estimates
     (windows without enough snapshots have none), interpolated onto ``time_grid``.

``dataset_signals`` runs all of it over a dataset, vectorized over trials, and caches the result
under ``<dataset>/cache/`` keyed by the arrays' bytes, the tag selection and this module's source.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.ndimage import gaussian_filter1d
from scipy.signal import savgol_filter

from rfedge.errors import RfedgeError
from rfedge.fileio import atomic_write_bytes
from rfedge.progress import Progress

# Paper 003 §VI-B1: every signal enters feature extraction as 35 samples.
N_SAMPLES = 35
# One tag per hand gives the paper's two tags (8 RSS/phase signals, 2 AoA signals, §VI-B1);
# R1 and L1 sit at the same place on either hand.
DEFAULT_TAGS = ("R1", "L1")

# Savitzky-Golay over 9 read cycles of one antenna (0.25 s at the simulator's 35.6 cycles/s):
# long enough to average the per-read jitter and the quantization, short against the ~1.5 s
# gestures; a cubic keeps the curvature of a turning hand, which a mean would flatten.
SG_WINDOW = 9
SG_POLYORDER = 3
# Gaussian sigma in read cycles: the series is then decimated 128 -> 35 (by ~3.7), and a sigma of
# about half the decimation factor removes what would alias without blurring the 0.1 s grid.
GAUSS_SIGMA = 1.5
# The absolute phase holds tag and port offsets and the distance modulo λ/2: no gesture
# information. Referencing each smoothed series to its first grid sample keeps only the
# displacement, so location statistics (mean, quartiles, ...) describe the motion.
PHASE_RELATIVE = True

# MUSIC windows in read cycles (one cycle = one read of each antenna, window_s / slots = 28 ms):
# 8 cycles (0.23 s) give up to 16 snapshots; a 2-cycle hop (56 ms) samples the AoA twice per
# output sample so the smoother has something to interpolate between.
MUSIC_WINDOW_CYCLES = 8
MUSIC_HOP_CYCLES = 2
# Below this many snapshots the 2x2 covariance is too noisy to trust: the window has no estimate.
MUSIC_MIN_SNAPSHOTS = 4
# Line-search points across the field of view, then a parabolic refinement of the peak.
MUSIC_GRID = 181
# Constant-velocity RTS smoother. The hand's angular acceleration seen from 3 m is of the order
# of (0.5 m / 3 m) / (0.4 s)^2 ~ 1 rad/s^2; white acceleration of that spectral density lets the
# track follow a gesture. The window estimates scatter about aoa_true_rad with a standard
# deviation of 0.03 rad (1.7°, median absolute error 0.7°, measured on arm21).
KALMAN_ACCEL = 1.5             # rad/s^2/sqrt(Hz), continuous white-acceleration density
KALMAN_MEAS_STD = 0.03         # rad, window estimate noise
KALMAN_PRIOR_STD = (0.3, 1.0)  # rad, rad/s: vague prior around boresight at rest

# Trials processed per vectorized block (bounds memory: ~1 MB per trial in flight).
BLOCK = 256
_NEEDED = ("iq", "detected", "t_s", "rss_dbm", "phase_rad")


# ---- small vectorized helpers ----------------------------------------------------------------

def field_of_view(spacing_wl: float) -> float:
    """Half-width in rad of the unambiguous AoA range of a two-element array with round-trip
    phase difference 4π d/λ sinθ: asin(λ / (4 d)), or π/2 when d <= λ/4."""
    if spacing_wl <= 0:
        raise RfedgeError(f"expected a positive element spacing in wavelengths, got {spacing_wl!r}",
                          field="element_spacing_wl")
    return math.asin(min(1.0, 1.0 / (4.0 * spacing_wl)))


def time_grid(window_s: float, n: int = N_SAMPLES) -> np.ndarray:
    """The common output grid: centres of ``n`` equal bins over [0, window_s]."""
    return (np.arange(n) + 0.5) * (window_s / n)


def _compact(values: np.ndarray, valid: np.ndarray):
    """Move the valid entries of each row (last axis) to the front, in order; pad each row with
    its last valid value (zero for an empty row). Returns (packed, counts)."""
    order = np.argsort(~valid, axis=-1, kind="stable")
    packed = np.take_along_axis(values, order, axis=-1)
    counts = valid.sum(axis=-1)
    k = np.arange(values.shape[-1])
    last = np.take_along_axis(packed, np.maximum(counts - 1, 0)[..., None], axis=-1)
    packed = np.where(k < counts[..., None], packed, np.where(counts[..., None] > 0, last, 0))
    return packed, counts


def interp_rows(t: np.ndarray, y: np.ndarray, counts: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Row-wise linear interpolation of packed rows (t, y: [B, K], first ``counts`` entries valid,
    t increasing) at ``grid`` [G]; held constant outside a row's reads; zero for empty rows."""
    B, K = t.shape
    out = np.zeros((B, len(grid)))
    has = counts > 0
    if not has.any():
        return out
    valid = np.arange(K)[None, :] < counts[:, None]
    # One np.interp over all rows: each row is shifted to its own interval of the time axis,
    # and queries are clamped to the row's first..last read, so no row reads its neighbour's.
    span = float(max(np.nanmax(np.abs(t[valid])), np.max(np.abs(grid)))) * 2 + 1.0
    off = np.arange(B)[:, None] * span
    tf, yf = (t + off)[valid], y[valid]
    first = t[:, 0]
    lastt = np.take_along_axis(t, np.maximum(counts - 1, 0)[:, None], axis=1)[:, 0]
    q = np.clip(grid[None, :], first[:, None], lastt[:, None]) + off
    out[has] = np.interp(q[has].ravel(), tf, yf).reshape(-1, len(grid))
    return out


def _resample_uniform(x: np.ndarray, src: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Linear interpolation of rows sampled at the common times ``src`` onto ``grid``."""
    W = np.zeros((len(src), len(grid)))
    for j, g in enumerate(grid):
        k = int(np.clip(np.searchsorted(src, g) - 1, 0, len(src) - 2))
        w = float(np.clip((g - src[k]) / (src[k + 1] - src[k]), 0.0, 1.0))
        W[k, j] += 1 - w
        W[k + 1, j] += w
    return x @ W


# ---- RSS and phase (§IV-A) ------------------------------------------------------------------

def normalize_rss(rss: np.ndarray, detected: np.ndarray) -> np.ndarray:
    """Eq. 4 over the detected reads of each series (last axis): (r - min) / (max - min); zero
    for a constant series and NaN where not detected."""
    r = np.where(detected, rss, np.nan).astype(np.float64)
    has = detected.any(axis=-1, keepdims=True)
    lo = np.where(has, np.nanmin(np.where(detected, r, np.inf), axis=-1, keepdims=True), 0.0)
    hi = np.where(has, np.nanmax(np.where(detected, r, -np.inf), axis=-1, keepdims=True), 0.0)
    span = hi - lo
    return np.where(detected, (r - lo) / np.where(span > 0, span, 1.0), np.nan)


def process_rss_phase(rss_dbm, phase_rad, t_s, detected, grid, window_s: float | None = None):
    """RSS and phase series [..., K] (NaN where missed) -> (rss, phase) [..., len(grid)].

    The phase is filtered on K uniform samples over [0, window_s] (default: the window that
    ``grid`` = time_grid(window_s) spans). A series without reads gives zeros; with one read,
    a constant."""
    shape = rss_dbm.shape[:-1]
    K = rss_dbm.shape[-1]
    det = np.asarray(detected, bool).reshape(-1, K)
    t = np.asarray(t_s, np.float64).reshape(-1, K)
    r = normalize_rss(np.asarray(rss_dbm).reshape(-1, K), det)
    ph = np.asarray(phase_rad, np.float64).reshape(-1, K)
    order = np.argsort(np.where(det, t, np.inf), axis=-1, kind="stable")   # reads in time order
    det, t, r, ph = (np.take_along_axis(a, order, axis=-1) for a in (det, t, r, ph))
    tp, counts = _compact(t, det)
    rp, _ = _compact(r, det)
    pp, _ = _compact(ph, det)
    pp = np.unwrap(pp, axis=-1)              # the padding repeats the last value: no jump
    # The filters assume uniform sampling, while reads are jittered and some are missed: first
    # interpolate onto one sample per read cycle over the window, then filter, then resample.
    window = float(grid[0] + grid[-1]) if window_s is None else float(window_s)
    uniform = time_grid(window, K)
    pu = interp_rows(tp, pp, counts, uniform)
    pu = savgol_filter(pu, SG_WINDOW, SG_POLYORDER, axis=-1, mode="interp")
    pu = gaussian_filter1d(pu, GAUSS_SIGMA, axis=-1, mode="nearest")
    rss_g = interp_rows(tp, rp, counts, grid)
    ph_g = _resample_uniform(pu, uniform, grid)
    if PHASE_RELATIVE:
        ph_g = ph_g - ph_g[:, :1]
    return rss_g.reshape(shape + (len(grid),)), ph_g.reshape(shape + (len(grid),))


# ---- AoA (§IV-B) ----------------------------------------------------------------------------

def snapshots(iq: np.ndarray, t_s: np.ndarray, detected: np.ndarray):
    """Time-aligned two-antenna snapshots of one tag's reads.

    iq, t_s, detected: [..., 2, K] (antenna, slot; antenna 1's read of cycle k precedes antenna
    2's, which precedes antenna 1's of cycle k+1). Returns (Y [..., 2K, 2] complex, t [..., 2K],
    ok [..., 2K]): one snapshot per read in time order, the other antenna interpolated from its
    reads on either side; ok is False where the read or either neighbour is missing.
    """
    K = iq.shape[-1]
    lead = iq.shape[:-2]
    z = np.stack([iq[..., 0, :], iq[..., 1, :]], axis=-1).reshape(lead + (2 * K,))
    tt = np.stack([t_s[..., 0, :], t_s[..., 1, :]], axis=-1).reshape(lead + (2 * K,)).astype(np.float64)
    dd = np.stack([detected[..., 0, :], detected[..., 1, :]], axis=-1).reshape(lead + (2 * K,))
    z = np.where(dd, z, 0).astype(np.complex128)
    prev_z, next_z = np.roll(z, 1, axis=-1), np.roll(z, -1, axis=-1)
    prev_t, next_t = np.roll(tt, 1, axis=-1), np.roll(tt, -1, axis=-1)
    ok = dd & np.roll(dd, 1, axis=-1) & np.roll(dd, -1, axis=-1)
    ok[..., 0] = False
    ok[..., -1] = False
    gap = next_t - prev_t
    w = np.clip((tt - prev_t) / np.where(gap > 0, gap, 1.0), 0.0, 1.0)
    # The other antenna's phase moves along the shorter arc between its two reads: right while
    # the tag's radial speed stays below λ/4 per cycle (3 m/s here).
    dphi = np.angle(next_z * np.conj(prev_z))
    amp = (1 - w) * np.abs(prev_z) + w * np.abs(next_z)
    other = amp * np.exp(1j * (np.angle(prev_z) + w * dphi))
    ant = np.arange(2 * K) % 2                  # 0: the read is antenna 1's
    y1 = np.where(ant == 0, z, other)
    y2 = np.where(ant == 0, other, z)
    Y = np.stack([y1, y2], axis=-1)
    return Y, tt, ok


def window_covariances(Y, t, ok, window: int, hop: int):
    """Sample covariances of snapshots in sliding windows of ``window`` cycles (2 snapshots per
    cycle) every ``hop`` cycles. Returns (R [..., W, 2, 2], centre_t [..., W], count [..., W])."""
    S = Y.shape[-2]
    w2, h2 = 2 * window, 2 * hop
    starts = np.arange(0, S - w2 + 1, h2)
    m = ok.astype(np.float64)
    Ym = Y * m[..., None]
    outer = Ym[..., :, None] * np.conj(Ym[..., None, :])            # [..., S, 2, 2]
    cs_n = np.concatenate([np.zeros(m.shape[:-1] + (1,)), np.cumsum(m, axis=-1)], axis=-1)
    cs_t = np.concatenate([np.zeros(m.shape[:-1] + (1,)), np.cumsum(m * t, axis=-1)], axis=-1)
    cs_o = np.concatenate([np.zeros(outer.shape[:-3] + (1, 2, 2), complex), np.cumsum(outer, axis=-3)], axis=-3)
    n = cs_n[..., starts + w2] - cs_n[..., starts]
    R = (cs_o[..., starts + w2, :, :] - cs_o[..., starts, :, :]) / np.maximum(n, 1)[..., None, None]
    centre = (cs_t[..., starts + w2] - cs_t[..., starts]) / np.maximum(n, 1)
    # A window without snapshots still gets a time: the middle of its slots' read times.
    mid = 0.5 * (t[..., starts] + t[..., starts + w2 - 1])
    centre = np.where(n > 0, centre, mid)
    return R, centre, n


def music_aoa(R: np.ndarray, spacing_wl: float, grid_points: int = MUSIC_GRID) -> np.ndarray:
    """MUSIC angle (rad) of 2x2 covariances R [..., 2, 2] with the round-trip steering vector
    a(θ) = [1, exp(j 4π d/λ sinθ)]: noise eigenvector u_n (smallest eigenvalue), pseudo-spectrum
    1 / |a^H u_n|^2 line-searched on ``grid_points`` angles over ±field_of_view, peak refined by
    a parabola through its neighbours. NaN where R carries no direction (zero or degenerate)."""
    fov = field_of_view(spacing_wl)
    R = np.asarray(R, np.complex128)
    Rh = 0.5 * (R + np.conj(np.swapaxes(R, -1, -2)))
    bad = ~np.isfinite(Rh).all(axis=(-1, -2))
    Rh = np.where(bad[..., None, None], np.eye(2), Rh)
    evals, evecs = np.linalg.eigh(Rh)
    un = evecs[..., :, 0]                                          # ascending: smallest first
    degenerate = bad | (evals[..., 1] - evals[..., 0] <= 1e-12 * np.maximum(np.abs(evals[..., 1]), 1e-300))
    theta = np.linspace(-fov, fov, grid_points)
    psi = 4 * np.pi * spacing_wl * np.sin(theta)
    # |a^H u|^2 = |u1|^2 + |u2|^2 + 2 Re(conj(u1) u2 e^{-jψ}); only its ψ-dependent part matters.
    c = np.conj(un[..., 0]) * un[..., 1]
    flat = c.reshape(-1)
    out = np.empty(flat.shape)
    e = np.exp(-1j * psi)
    for s in range(0, len(flat), 65536):
        den = 1.0 + 2.0 * np.real(flat[s:s + 65536, None] * e[None, :])   # |u| = 1
        k = np.argmin(den, axis=1)
        kk = np.clip(k, 1, grid_points - 2)
        rows = np.arange(len(k))
        # Parabola through the minimum of the denominator and its neighbours, in grid steps:
        # the denominator is a smooth cosine, unlike the spectrum's sharp peak at high SNR.
        p = den[rows[:, None], kk[:, None] + np.array([-1, 0, 1])]
        curv = p[:, 0] - 2 * p[:, 1] + p[:, 2]
        delta = np.where(curv > 0, 0.5 * (p[:, 0] - p[:, 2]) / np.where(curv > 0, curv, 1.0), 0.0)
        delta = np.where(k == kk, np.clip(delta, -0.5, 0.5), 0.0)
        out[s:s + len(k)] = theta[k] + delta * (theta[1] - theta[0])
    out = out.reshape(c.shape)
    return np.where(degenerate, np.nan, out)


def rts_smooth(z: np.ndarray, t: np.ndarray, accel: float | None = None, meas_std: float | None = None,
               prior_std=None) -> np.ndarray:
    """Rauch-Tung-Striebel smoother of a constant-velocity track, batched over rows.

    z [B, W] measurements of the position (NaN = none), t [B, W] their times (increasing).
    State (position, velocity), continuous white acceleration of density ``accel``², prior
    N(0, diag(prior_std²)). Returns the smoothed positions [B, W]; a row without measurements
    gives the prior mean, 0. Unset parameters take the module constants KALMAN_*."""
    accel = KALMAN_ACCEL if accel is None else accel
    meas_std = KALMAN_MEAS_STD if meas_std is None else meas_std
    prior_std = KALMAN_PRIOR_STD if prior_std is None else prior_std
    z = np.asarray(z, np.float64)
    t = np.asarray(t, np.float64)
    B, W = z.shape
    q = accel ** 2
    r = meas_std ** 2
    xf = np.zeros((W, B, 2))
    Pf = np.zeros((W, B, 2, 2))
    xp_all = np.zeros((W, B, 2))
    Pp_all = np.zeros((W, B, 2, 2))
    x = np.zeros((B, 2))
    P = np.zeros((B, 2, 2))
    P[:, 0, 0], P[:, 1, 1] = prior_std[0] ** 2, prior_std[1] ** 2
    F_all = np.zeros((W, B, 2, 2))
    for k in range(W):
        dt = np.zeros(B) if k == 0 else np.maximum(t[:, k] - t[:, k - 1], 0.0)
        F = np.zeros((B, 2, 2))
        F[:, 0, 0] = F[:, 1, 1] = 1.0
        F[:, 0, 1] = dt
        Q = np.empty((B, 2, 2))
        Q[:, 0, 0] = q * dt ** 3 / 3
        Q[:, 0, 1] = Q[:, 1, 0] = q * dt ** 2 / 2
        Q[:, 1, 1] = q * dt
        x = np.einsum("bij,bj->bi", F, x)
        P = F @ P @ np.swapaxes(F, 1, 2) + Q
        F_all[k], xp_all[k], Pp_all[k] = F, x, P
        have = np.isfinite(z[:, k])
        S = P[:, 0, 0] + r
        K = P[:, :, 0] / S[:, None]                                   # [B, 2]
        innov = np.where(have, z[:, k] - x[:, 0], 0.0)
        x = x + np.where(have[:, None], K * innov[:, None], 0.0)
        P = np.where(have[:, None, None], P - K[:, :, None] * P[:, None, 0, :], P)
        xf[k], Pf[k] = x, P
    xs = xf[-1].copy()
    Ps = Pf[-1].copy()
    out = np.empty((B, W))
    out[:, -1] = xs[:, 0]
    for k in range(W - 2, -1, -1):
        Pp = Pp_all[k + 1]
        C = Pf[k] @ np.swapaxes(F_all[k + 1], 1, 2) @ np.linalg.inv(Pp)
        xs = xf[k] + np.einsum("bij,bj->bi", C, xs - xp_all[k + 1])
        Ps = Pf[k] + C @ (Ps - Pp) @ np.swapaxes(C, 1, 2)
        out[:, k] = xs[:, 0]
    return out


def estimate_aoa(iq, t_s, detected, spacing_wl: float, grid: np.ndarray, *, raw: bool = False):
    """AoA tracks [..., len(grid)] (rad) of tags from iq, t_s, detected [..., 2, K].

    With ``raw`` also returns the window estimates before smoothing: (aoa, window_theta,
    window_t), NaN where a window had too few snapshots."""
    lead = iq.shape[:-2]
    K = iq.shape[-1]
    Y, t, ok = snapshots(np.asarray(iq).reshape((-1, 2, K)), np.asarray(t_s).reshape((-1, 2, K)),
                         np.asarray(detected, bool).reshape((-1, 2, K)))
    R, centre, n = window_covariances(Y, t, ok, MUSIC_WINDOW_CYCLES, MUSIC_HOP_CYCLES)
    th = music_aoa(R, spacing_wl)
    th = np.where(n >= MUSIC_MIN_SNAPSHOTS, th, np.nan)
    sm = rts_smooth(th, centre)
    counts = np.full(len(sm), sm.shape[1])
    aoa = interp_rows(centre, sm, counts, grid).reshape(lead + (len(grid),))
    if raw:
        return aoa, th.reshape(lead + th.shape[-1:]), centre.reshape(lead + centre.shape[-1:])
    return aoa


# ---- whole trials and datasets --------------------------------------------------------------

@dataclass
class RfidSignals:
    """Processed signals of a dataset's trials (see the module docstring for units)."""

    rss: np.ndarray        # float32 [N, tags, 2, 35]
    phase: np.ndarray      # float32 [N, tags, 2, 35]
    aoa: np.ndarray        # float32 [N, tags, 35]
    tags: tuple            # tag names, in the order of axis 1
    t_grid: np.ndarray     # float64 [35], seconds from the window start


def tag_indices(config: dict, tags=DEFAULT_TAGS) -> list[int]:
    """Indices into the tag axis of the dataset's arrays of the tag names ``tags``."""
    have = [t.get("name") for t in config.get("tags", [])]
    missing = [t for t in tags if t not in have]
    if not tags or missing:
        raise RfedgeError(f"expected tag names from {have}, got {list(tags)!r}", field="tags")
    return [have.index(t) for t in tags]


def process_trials(arrays: dict, config: dict, tags=DEFAULT_TAGS) -> dict:
    """rss, phase [n, tags, 2, 35] and aoa [n, tags, 35] (float32) of trials given as in-memory
    arrays [n, all tags, 2, slots] (``iq``, ``detected``, ``t_s``, ``rss_dbm``, ``phase_rad``)
    and the dataset config (``window_s``, ``element_spacing_wl``, ``tags``)."""
    _check_arrays(arrays, config)
    idx = tag_indices(config, tags)
    grid = time_grid(float(config["window_s"]))
    sel = {k: np.asarray(arrays[k])[:, idx] for k in _NEEDED}
    rss, phase = process_rss_phase(sel["rss_dbm"], sel["phase_rad"], sel["t_s"], sel["detected"], grid,
                                   float(config["window_s"]))
    aoa = estimate_aoa(sel["iq"], sel["t_s"], sel["detected"], float(config["element_spacing_wl"]), grid)
    return {"rss": rss.astype(np.float32), "phase": phase.astype(np.float32), "aoa": aoa.astype(np.float32)}


def _check_arrays(arrays: dict, config: dict) -> None:
    missing = [k for k in _NEEDED if k not in arrays]
    if missing:
        raise RfedgeError(f"expected RFID arrays {list(_NEEDED)}, missing {missing}")
    shape = np.shape(arrays["iq"])
    ntags = len(config.get("tags", []))
    if len(shape) != 4 or shape[2] != 2 or shape[3] < 2 * MUSIC_WINDOW_CYCLES or (ntags and shape[1] != ntags):
        raise RfedgeError(f"expected RFID arrays of shape [trial, {ntags or 'tag'}, 2 antennas, slots >= "
                          f"{2 * MUSIC_WINDOW_CYCLES}], got {list(shape)}", field="iq")
    for k in _NEEDED:
        if np.shape(arrays[k]) != shape:
            raise RfedgeError(f"expected array {k!r} of shape {list(shape)} like 'iq', got {list(np.shape(arrays[k]))}",
                              field=k)
    for k in ("window_s", "element_spacing_wl", "tags"):
        if k not in config:
            raise RfedgeError(f"expected the dataset config to hold {k!r} (an rfedge.sim.rfid dataset)", field=k)


def _code_digest() -> str:
    return hashlib.sha256(Path(__file__).read_bytes()).hexdigest()


def _open(dataset):
    from rfedge.data.dataset import Dataset

    ds = dataset if isinstance(dataset, Dataset) else Dataset.open(dataset)
    if ds.kind != "rfid":
        raise RfedgeError(f"expected a dataset of kind 'rfid', this one is {ds.kind!r}", path=ds.path)
    return ds


def dataset_signals(dataset, tags=DEFAULT_TAGS, cache: bool = True, stream=None) -> RfidSignals:
    """Processed signals of every trial of an rfid dataset (a path or an open Dataset).

    With ``cache``, the result is stored as ``<dataset>/cache/rfid_dsp-<key>.npz`` (written
    atomically) and reused; the key hashes the bytes of the arrays read, the tag selection, the
    config fields used and this module's source, so a changed dataset or changed code never
    reads a stale file."""
    ds = _open(dataset)
    config = ds.manifest.get("config", {})
    src = {k: ds.array(k) for k in _NEEDED} if all(k in ds.manifest["arrays"] for k in _NEEDED) else None
    if src is None:
        raise RfedgeError(f"expected RFID arrays {list(_NEEDED)}, dataset has {sorted(ds.manifest['arrays'])}",
                          path=ds.path)
    _check_arrays(src, config)
    tags = tuple(tags)
    idx = tag_indices(config, tags)
    grid = time_grid(float(config["window_s"]))
    stream = stream or sys.stderr
    key = None
    f = None
    if cache:
        h = hashlib.sha256()
        for k in _NEEDED:
            a = np.ascontiguousarray(src[k])
            h.update(f"{k}|{a.dtype.str}|{a.shape}|".encode())
            h.update(memoryview(a).cast("B"))
        h.update(json.dumps({"tags": list(tags), "window_s": config["window_s"],
                             "spacing": config["element_spacing_wl"], "code": _code_digest()}).encode())
        key = h.hexdigest()[:20]
        f = ds.path / "cache" / f"rfid_dsp-{key}.npz"
        if f.is_file():
            try:
                with np.load(f, allow_pickle=False) as z:
                    out = {k: z[k] for k in ("rss", "phase", "aoa")}
                if out["rss"].shape[0] == len(ds):
                    stream.write(f"rfid dsp: loaded from cache {f}\n")
                    return RfidSignals(out["rss"], out["phase"], out["aoa"], tags, grid)
            except (OSError, ValueError, KeyError):
                pass                       # unreadable or truncated: recompute and overwrite
    N = len(ds)
    out = {"rss": np.empty((N, len(idx), 2, N_SAMPLES), np.float32),
           "phase": np.empty((N, len(idx), 2, N_SAMPLES), np.float32),
           "aoa": np.empty((N, len(idx), N_SAMPLES), np.float32)}
    blocks = range(0, N, BLOCK)
    with Progress(len(blocks), "rfid dsp", stream) as p:
        for s in blocks:
            part = {k: np.asarray(src[k][s:s + BLOCK]) for k in _NEEDED}
            res = process_trials(part, config, tags)
            for k in out:
                out[k][s:s + BLOCK] = res[k]
            p.update()
    if f is not None:
        buf = io.BytesIO()
        np.savez(buf, **out)
        atomic_write_bytes(f, buf.getvalue())
    return RfidSignals(out["rss"], out["phase"], out["aoa"], tags, grid)
