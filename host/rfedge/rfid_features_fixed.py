"""Paper 003's per-device RFID features (SPR 116, SA 29, WA 38) in fixed point: the host-side
quantization of the signals, and the pure-integer reference of the device C
(mcu/core/rfid/rfe_rfidfeat.c), which it matches bit for bit. The float definitions are
rfedge.rfid_features; this module computes the same statistics with integer operations only.

Inputs (``quantize_signals``): the 35-sample signals of rfedge.rfid_dsp as int16,
q = sat16(rint(x * 2^frac)) (numpy rint: round half to even; saturated to [-32768, 32767]):

    kind    frac  LSB           int16 covers   simulated data
    rss     14    1/16384       [-2, 2)        [0, 1] (min-max normalized)
    phase    8    1/256 rad     +-128 rad      within +-38 rad (relative phase, unwrapped)
    aoa     13    1/8192 rad    +-4 rad        within +-1.1 rad (MUSIC field of view +-0.32 rad, smoother overshoot)

Outputs: int64 arrays holding exactly the C's int32 outputs; the float feature is
``q / 2^FEATURE_SCALES[set][i]`` (``to_float``).

The 14 statistics of one signal x_0..x_34 (integers), all intermediate values below 2^63
(and, on the device, below 2^32 except where a 64-bit product is named):

    s = sorted x; lo = s_0, hi = s_34, span = hi - lo; S = sum x
    median = 16 s_17, Q1 = 8 (s_8 + s_9), Q3 = 8 (s_25 + s_26)        (numpy "linear": h = 8.5, 17, 25.5)
    max = 16 hi, min = 16 lo, range = 16 span
    mean = sign(S) floor((32 |S| + 35) / 70)                          (16 S / 35, half away from zero)
    histogram: bin(x) = min(floor(10 (x - lo) / span), 9), all in bin 0 when span = 0; counts c_b
    mode = 16 lo + floor(((2 b* + 1) span 8 + 5) / 10), b* = first bin of the largest count
           (16 (lo + (b* + 0.5) span / 10), half up)
    entropy = LN35 - floor((sum_b CLNC[c_b] + 17) / 35)               (ln 35 - sum c ln c / 35, Q16)
           with CLNC[c] = round(2^16 c ln c), LN35 = round(2^16 ln 35)
    moments: D_i = 35 x_i - S (exact, sum D = 0), M = max |D|; a constant signal (M = 0) has
           variance, std, m3, kurtosis, skewness = 0. Else k = bitlen(M) - 13 and
           u_i = (D_i + 2^(k-1)) >> k (k > 0; >> is floor), u_i = D_i 2^-k (k <= 0): 2^12 <= max|u| <= 2^13
           s2 = sum u^2 (< 2^31.2, uint32), r_i = (u_i^2 + 8192) >> 14, s3 = sum r u (< 2^30.2),
           s4 = sum r^2 (< 2^29.2)
           z = smallest even number with s2 2^z >= 2^30; sq = isqrt(s2 2^z) in [2^15, 2^16)
    variance = rshr(s2 R_VAR, 45 - 2k)                                (s2 2^2k / 35^3, LSB^2)
    std = rshr(sq K_STD, 32 + z/2 - k)                                (16 sqrt(variance))
    m3 = sign(s3) min(rshr(|s3| R_M3, 36 + T - 3k), 2^31 - 1)         (s3 2^14 2^3k / 35^4 / 2^T)
    kurtosis = rshr(35 X4, 16 + a4 - 2z) - 3 2^16,  X0 = s4 2^a4 in [2^30, 2^31), X_{j+1} = div15(X_j, sq)
           (35 2^28 s4 / s2^2 - 3, Q16)
    skewness = sign(s3) rshr(X3 K_SQRT35, 43 + a3 - 3z/2), X0 = |s3| 2^a3 in [2^30, 2^31), 0 if s3 = 0
           (sqrt(35) 2^14 s3 / s2^1.5, Q16)
    with rshr(p, sh) = floor((p + 2^(sh-1)) / 2^sh) (0 when sh > 62), div15(x, d) = floor(x 2^15 / d)
    (two 32-bit divisions on the device), R_VAR = round(2^45 / 35^3), R_M3 = round(2^50 / 35^4),
    K_STD = round(2^32 16 / sqrt(35^3)), K_SQRT35 = round(2^28 sqrt(35)), T = M3_SHIFT[kind].

    Pearson(a, b) = sign(c) min(rshr(X2, ac + 13 - (z_a + z_b)/2), 2^16), c = sum ((u_a u_b) >> 1)
           (halved: |sum u_a u_b| < 35 2^26 does not fit int32),
           X0 = |c| 2^ac in [2^30, 2^31), X1 = div15(X0, sq_a), X2 = div15(X1, sq_b);
           0 when either signal is constant or c = 0 (Q16).
    WA: db2 approximation with Q15 taps HQ = rint(2^15 dec_lo) over the half-sample symmetric
           extension (pywt mode "symmetric"): out_k = sum_j HQ[3-j] x_ext[2k-2+j], k = 0..18,
           exact in int32 (scale 2^(frac+15)).

Output scales (log2, relative to an input with ``frac`` fraction bits): mode..range and std
frac+4, variance 2 frac, m3 3 frac - T, kurtosis, skewness, entropy and Pearson 16, WA frac+15.

Precision against the float features: the location statistics are exact up to the input
rounding (+-0.5 LSB); the moments carry u's 13-bit normalization and the 16-bit sq in the
ratios (~1e-4 relative); mode and entropy can change where a sample sits on a bin edge within
the input rounding (measured bounds: tests/test_rfid_features_fixed.py).
"""

from __future__ import annotations

import math

import numpy as np

from rfedge.errors import RfedgeError

N = 35
NSTAT = 14
BINS = 10
FRAC = {"rss": 14, "phase": 8, "aoa": 13}
M3_SHIFT = {"rss": 8, "phase": 11, "aoa": 6}
SET_NAMES = ("SPR", "SA", "WA")
SIZES = {"SPR": 116, "SA": 29, "WA": 38}

CLNC = np.array([0, 0] + [round(65536 * c * math.log(c)) for c in range(2, N + 1)], dtype=np.int64)
LN35_Q16 = round(65536 * math.log(N))
R_VAR = round(2 ** 45 / N ** 3)
R_M3 = round(2 ** 50 / N ** 4)
K_STD = round(2 ** 32 * 16 / math.sqrt(N ** 3))
K_SQRT35 = round(2 ** 28 * math.sqrt(N))
# pywt.Wavelet("db2").dec_lo; written out so the device constants do not depend on pywt's version
DB2_DEC_LO = (-0.12940952255126037, 0.2241438680420134, 0.8365163037378079, 0.48296291314453416)
HQ = tuple(int(v) for v in np.rint(np.array(DB2_DEC_LO) * 32768))
INT32_MAX = 2 ** 31 - 1


def stat_scales(kind: str) -> np.ndarray:
    """log2 scales of the 14 statistics of a signal of ``kind`` ("rss", "phase", "aoa")."""
    f, t = FRAC[kind], M3_SHIFT[kind]
    return np.array([f + 4] * 8 + [2 * f, f + 4, 3 * f - t, 16, 16, 16], dtype=np.int64)


FEATURE_SCALES = {
    "SPR": np.concatenate([stat_scales(k) for _ in range(4) for k in ("rss", "phase")] + [np.full(4, 16)]),
    "SA": np.concatenate([stat_scales("aoa"), stat_scales("aoa"), [16]]),
    "WA": np.full(38, FRAC["aoa"] + 15),
}


# ---- host -> device -------------------------------------------------------------------------

def quantize(x, kind: str) -> np.ndarray:
    """int16 signal of ``kind``: sat16(rint(x * 2^frac)), rint = round half to even."""
    if kind not in FRAC:
        raise RfedgeError(f"expected a signal kind from {sorted(FRAC)}, got {kind!r}", field="kind")
    x = np.asarray(x, dtype=np.float64)
    if not np.isfinite(x).all():
        raise RfedgeError(f"expected finite {kind} signals, got NaN or inf", field=kind)
    return np.clip(np.rint(x * 2.0 ** FRAC[kind]), -32768, 32767).astype(np.int16)


def quantize_signals(rss, phase, aoa) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(rss_q, phase_q, aoa_q) int16 of rfedge.rfid_dsp's float signals (see the module docstring)."""
    return quantize(rss, "rss"), quantize(phase, "phase"), quantize(aoa, "aoa")


def to_float(set_name: str, q) -> np.ndarray:
    """Fixed-point features [..., F] of ``set_name`` -> float64 features in the units of
    rfedge.rfid_features."""
    if set_name not in FEATURE_SCALES:
        raise RfedgeError(f"expected a feature set name from {list(SET_NAMES)}, got {set_name!r}", field="set_name")
    q = np.asarray(q)
    sc = FEATURE_SCALES[set_name]
    if q.shape[-1:] != sc.shape:
        raise RfedgeError(f"expected {set_name} features with {len(sc)} columns, got shape {list(q.shape)}",
                          field="q")
    return q.astype(np.float64) * np.exp2(-sc.astype(np.float64))


# ---- integer helpers (the C's, vectorized) ----------------------------------------------------

def _bitlen(v: np.ndarray) -> np.ndarray:
    v = np.asarray(v, dtype=np.int64)
    n = np.zeros(v.shape, np.int64)
    for i in range(40):
        n += v >= (np.int64(1) << i)
    return n


def _isqrt(v: np.ndarray) -> np.ndarray:
    r = np.floor(np.sqrt(v.astype(np.float64))).astype(np.int64)
    for _ in range(2):                       # float sqrt of v < 2^32 is off by at most one
        r = np.where(r * r > v, r - 1, r)
        r = np.where((r + 1) * (r + 1) <= v, r + 1, r)
    return r


def _rshr(p: np.ndarray, sh: np.ndarray) -> np.ndarray:
    sh = np.asarray(sh, np.int64)
    s = np.clip(sh, 1, 62)
    return np.where(sh > 62, 0, (p + (np.int64(1) << (s - 1))) >> s)


def _div15(x: np.ndarray, d: np.ndarray) -> np.ndarray:
    q = x // d
    r = x - q * d
    return (q << 15) + ((r << 15) // d)


def _check_q(xq, what: str, shape_tail: tuple) -> np.ndarray:
    x = np.asarray(xq)
    if not np.issubdtype(x.dtype, np.integer):
        raise RfedgeError(f"expected integer (int16) {what} from quantize_signals, got dtype {x.dtype}", field=what)
    if x.ndim != len(shape_tail) + 1 or x.shape[1:] != shape_tail:
        raise RfedgeError(f"expected {what} of shape [N, {', '.join(map(str, shape_tail))}], got {list(x.shape)}",
                          field=what)
    x = x.astype(np.int64)
    if x.size and (x.min() < -32768 or x.max() > 32767):
        raise RfedgeError(f"expected {what} within the int16 range", field=what)
    return x


# ---- the statistics ---------------------------------------------------------------------------

def stats14_fixed(xq, kind: str):
    """The 14 statistics of integer signals xq [..., 35] of ``kind``: (out int64 [..., 14],
    moments) where moments = (u [..., 35], sq [...], z [...]) feed ``pearson_fixed``."""
    if kind not in M3_SHIFT:
        raise RfedgeError(f"expected a signal kind from {sorted(M3_SHIFT)}, got {kind!r}", field="kind")
    x = np.asarray(xq).astype(np.int64)
    if x.shape[-1:] != (N,):
        raise RfedgeError(f"expected {N} samples on the last axis, got shape {list(x.shape)}", field=kind)
    T = M3_SHIFT[kind]
    s = np.sort(x, axis=-1)
    S = x.sum(axis=-1)
    lo, hi = s[..., 0], s[..., -1]
    span = hi - lo
    out = np.zeros(x.shape[:-1] + (NSTAT,), np.int64)
    out[..., 1] = 16 * s[..., 17]
    out[..., 2] = 8 * (s[..., 8] + s[..., 9])
    out[..., 3] = 8 * (s[..., 25] + s[..., 26])
    out[..., 4] = np.sign(S) * ((32 * np.abs(S) + 35) // 70)
    out[..., 5] = 16 * hi
    out[..., 6] = 16 * lo
    out[..., 7] = 16 * span

    d = x - lo[..., None]
    bins = np.where(span[..., None] > 0, np.minimum(10 * d // np.maximum(span, 1)[..., None], BINS - 1), 0)
    counts = (bins[..., None] == np.arange(BINS)).sum(axis=-2)
    best = np.argmax(counts, axis=-1)                                  # first maximum
    out[..., 0] = 16 * lo + ((2 * best + 1) * span * 8 + 5) // 10
    out[..., 13] = LN35_Q16 - (CLNC[counts].sum(axis=-1) + 17) // 35

    M = np.maximum(35 * hi - S, S - 35 * lo)
    flat = M == 0
    k = _bitlen(M) - 13
    D = 35 * x - S[..., None]
    kk = k[..., None]
    u = np.where(kk > 0, (D + (np.int64(1) << np.clip(kk - 1, 0, 62))) >> np.clip(kk, 0, 62),
                 D * (np.int64(1) << np.clip(-kk, 0, 62)))
    q = u * u
    r = (q + 8192) >> 14
    s2 = q.sum(axis=-1)
    s3 = (r * u).sum(axis=-1)
    s4 = (r * r).sum(axis=-1)
    s2 = np.where(flat, 1 << 30, s2)          # placeholders keep the arithmetic defined; masked below
    s4 = np.where(flat, 1 << 30, s4)
    z = np.zeros_like(s2)
    n2 = s2.copy()
    for _ in range(16):
        small = n2 < (1 << 30)
        n2 = np.where(small, n2 << 2, n2)
        z = z + 2 * small
    sq = _isqrt(n2)
    var = _rshr(s2 * R_VAR, 45 - 2 * k)
    std = _rshr(sq * K_STD, 32 + z // 2 - k)
    a = np.abs(s3)
    m3 = np.sign(s3) * np.minimum(_rshr(a * R_M3, 36 + T - 3 * k), INT32_MAX)
    a4 = 31 - _bitlen(s4)
    X = s4 << a4
    for _ in range(4):
        X = _div15(X, sq)
    kurt = _rshr(X * 35, 16 + a4 - 2 * z) - 3 * 65536
    a3 = 31 - _bitlen(np.maximum(a, 1))
    X = np.maximum(a, 1) << a3
    for _ in range(3):
        X = _div15(X, sq)
    skew = np.sign(s3) * np.minimum(_rshr(X * K_SQRT35, 43 + a3 - 3 * z // 2), INT32_MAX)
    for i, v in ((8, var), (9, std), (10, m3), (11, kurt), (12, skew)):
        out[..., i] = np.where(flat, 0, v)
    u = np.where(flat[..., None], 0, u)
    return out, (u, np.where(flat, 0, sq), np.where(flat, 0, z))


def pearson_fixed(ma, mb) -> np.ndarray:
    """Q16 Pearson correlation from the moments of two ``stats14_fixed`` calls."""
    ua, sqa, za = ma
    ub, sqb, zb = mb
    c = ((ua * ub) >> 1).sum(axis=-1)
    zero = (sqa == 0) | (sqb == 0) | (c == 0)
    m = np.where(zero, 1, np.abs(c))
    ac = 31 - _bitlen(m)
    X = _div15(_div15(m << ac, np.where(zero, 1 << 15, sqa)), np.where(zero, 1 << 15, sqb))
    r = np.minimum(_rshr(X, ac + 13 - (za + zb) // 2), 65536)
    return np.where(zero, 0, np.sign(c) * r)


def spr_fixed(rss_q, phase_q) -> np.ndarray:
    """SPR features [N, 116] int64 of rss_q, phase_q [N, 2, 2, 35] int16 (rfe_feat_spr)."""
    rss = _check_q(rss_q, "rss", (2, 2, N))
    phase = _check_q(phase_q, "phase", (2, 2, N))
    if len(rss) != len(phase):
        raise RfedgeError(f"expected rss and phase of one trial count, got {len(rss)} and {len(phase)}",
                          field="phase")
    sr, mr = stats14_fixed(rss, "rss")
    sp, mp = stats14_fixed(phase, "phase")
    st = np.stack([sr, sp], axis=3).reshape(len(rss), -1)           # tag, antenna, {rss, phase}, stat
    return np.concatenate([st, pearson_fixed(mr, mp).reshape(len(rss), -1)], axis=1)


def sa_fixed(aoa_q) -> np.ndarray:
    """SA features [N, 29] int64 of aoa_q [N, 2, 35] int16 (rfe_feat_sa)."""
    aoa = _check_q(aoa_q, "aoa", (2, N))
    st, (u, sq, z) = stats14_fixed(aoa, "aoa")
    r = pearson_fixed((u[:, 0], sq[:, 0], z[:, 0]), (u[:, 1], sq[:, 1], z[:, 1]))
    return np.concatenate([st.reshape(len(aoa), -1), r[:, None]], axis=1)


def wa_fixed(aoa_q) -> np.ndarray:
    """WA features [N, 38] int64 of aoa_q [N, 2, 35] int16 (rfe_feat_wa)."""
    x = _check_q(aoa_q, "aoa", (2, N))
    ext = np.concatenate([x[..., 1:2], x[..., 0:1], x, x[..., 34:35], x[..., 33:34], x[..., 32:33]], axis=-1)
    h0, h1, h2, h3 = HQ
    ca = h3 * ext[..., 0:37:2] + h2 * ext[..., 1:38:2] + h1 * ext[..., 2:39:2] + h0 * ext[..., 3:40:2]
    return ca.reshape(len(x), -1)


def features_fixed(rss_q, phase_q, aoa_q) -> dict:
    """{"SPR", "SA", "WA"} int64 fixed-point features of quantized signals."""
    return {"SPR": spr_fixed(rss_q, phase_q), "SA": sa_fixed(aoa_q), "WA": wa_fixed(aoa_q)}
