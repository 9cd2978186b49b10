"""Fixed-point Einsum networks: quantization and the bit-exact integer reference of the C kernels
(mcu/core/einsum/rfe_einsum.c). Every function here does exactly the integer arithmetic the C does.

Design
------
* Log unit (LU): 1/256 of a bit, i.e. a log-value v means log2(p) = v / 256 (``LU_BITS = 8``).
  All log-values (leaf, node outputs, log-likelihoods, log-posteriors) are int32: leaf sums of
  squared deviations over up to a few hundred features with outliers do not fit int16 in any
  useful unit, and int32 adds cost the same as int16 on rv32.
* Input: standardized feature z as int16 ``zq = sat16(round_half_even(z * 2^ZF))`` (nan -> 0,
  +-inf -> +-32767) with one ZF per model: the largest ZF in [0, 14] that holds the leaf means
  +- 4 sigma and 1.5 x the calibration data's 99.9th percentile of |z|, raised if needed until the
  input step is <= min(sigma) / 64. Features beyond the int16 range saturate (the leaf sees the
  clipped value).
* Leaf (feature f, component k), all integers::

      d  = |zq - muq[f,k]|                     (<= 65535)
      e  = (d * g[f,k] + 2^(sh[f,k]-1)) >> sh[f,k]   (unsigned 32-bit; e ~ 16 sqrt(A) |z-mu| / sigma)
      q  = qmax                 if e > 46340
           min((e*e) >> 8, qmax) otherwise
      lf = c[f,k] - q

  where A = 128 log2(e) so that q = 256 * 0.5 log2(e) ((z-mu)/sigma)^2 LU, and
  c = round(256 (-log2 sigma - 0.5 log2 2 pi)). ``qmax = min(2^29 // F, 46340^2 >> 8)`` caps the
  quadratic term per feature (saturation at extreme inputs) so no sum further down can overflow.
* Leaf region (per repetition): int32 sum of lf over the region's features.
* Einsum node (I inputs per side, O outputs; log-einsum-exp in the linear domain)::

      mu = max_i u_i ; mv = max_j v_j
      a_i = EXP(mu - u_i) ; b_j = EXP(mv - v_j)          Q31 unsigned, EXP(0) = 2^31
      t_i = sum_j mulhu(W[o,i,j], b_j)                   Q30, < 2^31 (weights sum to ~2^31)
      s   = sum_i mulhu(a_i, t_i)                        Q29, rows with a_i == 0 are skipped (exact)
      out_o = mu + mv + LOG2(s) - 29*256

  with ``mulhu(x, y) = (x*y) >> 32`` (one rv32im instruction), ``W = min(round(2^31 exp(logw)), 2^31)``,
  ``EXP(d) = 0 if d >= 32*256 else EXPT[d & 255] >> (d >> 8)``, ``EXPT[f] = round(2^31 2^(-f/256))``
  and ``LOG2(s)`` (s == 0 is taken as 1) = n*256 + round_half_up(v / 256) where n is the index of the
  top bit of s, m = s << (31-n), idx = bits 30..23 of m, frac = bits 22..7 of m,
  v = LOGT[idx] + (((LOGT[idx+1] - LOGT[idx]) * frac) >> 16), LOGT[i] = round(2^16 log2(1 + i/256)).
* Mixture over repetitions, and posterior normalization: LSE of n int32 log-values::

      m = max v ; s = sum (EXP(m - v_i) >> rsh) ; LSE = m + LOG2(s) - (31 - rsh)*256,
      rsh = ceil(log2 n) (so s <= 2^31).

  log p(x|c) = LSE_r(mixq[c,r] + root_r[c]); logpost_c = j_c - LSE_c(j), j_c = log p(x|c) + priorq[c].
  mixq and priorq are LU (round(256 log2 w)), -inf and anything below floored at ``LOG_FLOOR = -2^24``.
* Fusion of several networks (aggregator): score_c = sum_n clamp(lp_n[c], -2^27, 2^27) (no overflow
  for up to 15 networks); label = the smallest c with the maximal score.

Rounding: numpy ``rint`` (half to even) for every quantized constant and the input; integer
shifts in the datapath are floor (arithmetic) except where round_half_up is written above.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rfedge.errors import RfedgeError
from rfedge.models.einsum_format import EinsumParams

LU_BITS = 8
LU = 1 << LU_BITS
EXP_Q = 31  # a_i, b_j, weights
NODE_Q = 29  # s of an einsum node (Q31 * Q31 -> Q30 -> Q29)
E_MAX = 46340  # largest e with e*e < 2^31
LOG_FLOOR = -(1 << 24)
FUSE_CLAMP = 1 << 27
M32 = (1 << 32) - 1


def _exp_table() -> np.ndarray:
    f = np.arange(LU)
    return np.rint(2.0 ** EXP_Q * 2.0 ** (-f / LU)).astype(np.int64)


def _log_table() -> np.ndarray:
    i = np.arange(LU + 1)
    return np.rint(65536.0 * np.log2(1.0 + i / LU)).astype(np.int64)


EXPT = _exp_table()  # (256,) int64 values < 2^32
LOGT = _log_table()  # (257,) LOGT[256] = 65536


@dataclass
class FixedEinsum:
    name: str
    D: int
    K: int
    L: int
    R: int
    C: int
    F: int
    zf: int  # input fraction bits
    x_mean: np.ndarray  # float64, for quantize_inputs on the host
    x_scale: np.ndarray
    perm: np.ndarray  # (R, F) int64
    bounds: np.ndarray  # (2^D+1,) int64
    muq: np.ndarray  # (F, L) int16 range
    g: np.ndarray  # (F, L) 1..32767
    sh: np.ndarray  # (F, L) 1..31
    c: np.ndarray  # (F, L) int32 LU
    qmax: int
    W: list  # D arrays uint32 range, shapes like logw
    mixq: np.ndarray  # (C, R) LU
    priorq: np.ndarray  # (C,) LU

    def rsh(self, n: int) -> int:
        return _rsh(n)


def _rsh(n: int) -> int:
    return max(0, int(np.ceil(np.log2(n)))) if n > 1 else 0


def _lu(logp_nat) -> np.ndarray:
    a = np.asarray(logp_nat, np.float64) * (LU / np.log(2.0))
    with np.errstate(invalid="ignore"):
        a = np.where(np.isfinite(a), a, LOG_FLOOR)
    return np.maximum(np.rint(a), LOG_FLOOR).astype(np.int64)


def quantize_params(params: EinsumParams, calib_X=None) -> FixedEinsum:
    """Integer constants for ``params``; ``calib_X`` (raw features, (N, F)) sets the input range."""
    params.validate()
    F = params.F
    mu = np.asarray(params.mu, np.float64)
    sg = np.asarray(params.sigma, np.float64)
    # range: the leaf means +- 4 sigma and (with a margin) the calibration data's 99.9th percentile
    zmax = float(np.max(np.abs(mu) + 4.0 * sg))
    if calib_X is not None:
        from rfedge.models.einsum_format import standardize

        z = np.abs(standardize(params, calib_X))
        z = z[np.isfinite(z)]
        if z.size:
            zmax = max(zmax, 1.5 * float(np.quantile(z, 0.999)))
    zf_range = int(np.clip(np.floor(np.log2(32767.0 / max(zmax, 1.0))), 0, 14))
    # resolution: an input step of at most sigma_min / 64 (heavy-tailed calibration data must not
    # coarsen the inputs that matter); when the two conflict, resolution wins and rarer outliers
    # saturate at +-32767 / 2^zf
    zf_res = int(np.clip(np.ceil(np.log2(64.0 / float(np.min(sg)))), 0, 14))
    zf = max(zf_range, zf_res)
    muq = np.clip(np.rint(mu * 2.0 ** zf), -32767, 32767).astype(np.int64)
    A = 128.0 * np.log2(np.e)
    G = np.sqrt(A) * 16.0 / (sg * 2.0 ** zf)
    sh = np.clip(np.floor(np.log2(32767.0 / G)), 1, 31).astype(np.int64)
    g = np.clip(np.rint(G * 2.0 ** sh), 1, 32767).astype(np.int64)
    c = np.rint(LU * (-np.log2(sg) - 0.5 * np.log2(2 * np.pi))).astype(np.int64)
    qmax = int(min((1 << 29) // F, (E_MAX * E_MAX) >> 8))
    W = [np.minimum(np.rint(2.0 ** EXP_Q * np.exp(np.asarray(w, np.float64))), 2.0 ** EXP_Q).astype(np.int64)
         for w in params.logw]
    if params.D > 1 and params.K > 2 * params.L:
        raise RfedgeError(f"K = {params.K} > 2L = {2 * params.L} is not supported by the in-place layer",
                          field="K")
    return FixedEinsum(
        name=params.name, D=int(params.D), K=int(params.K), L=int(params.L), R=int(params.R), C=int(params.C),
        F=F, zf=zf, x_mean=np.asarray(params.x_mean, np.float64), x_scale=np.asarray(params.x_scale, np.float64),
        perm=np.asarray(params.perm, np.int64), bounds=np.asarray(params.bounds, np.int64),
        muq=muq, g=g, sh=sh, c=c, qmax=qmax, W=W,
        mixq=_lu(params.logw_mix), priorq=_lu(params.log_prior))


def quantize_inputs(fx: FixedEinsum, X) -> np.ndarray:
    """(N, F) raw features -> int16 standardized inputs sat16(rint(z * 2^zf)); nan -> 0."""
    X = np.asarray(X, np.float64)
    if X.ndim != 2 or X.shape[1] != fx.F:
        raise RfedgeError(f"expected inputs of shape (N, {fx.F}), got {X.shape}", field="X")
    z = (X - fx.x_mean) / fx.x_scale * 2.0 ** fx.zf
    z = np.nan_to_num(z, nan=0.0, posinf=32767.0, neginf=-32767.0)
    return np.clip(np.rint(z), -32767, 32767).astype(np.int16)


# ----------------------------------------------------------------------------- integer primitives

def exp2q(d: np.ndarray) -> np.ndarray:
    """EXP(d) for int d >= 0: Q31 of 2^(-d/256)."""
    d = np.asarray(d, np.int64)
    k = d >> LU_BITS
    v = EXPT[d & (LU - 1)] >> np.minimum(k, 31)
    return np.where(k >= 32, 0, v)


def log2q(s: np.ndarray) -> np.ndarray:
    """LOG2(s) for 0 <= s < 2^32 in LU (s == 0 taken as 1)."""
    s = np.maximum(np.asarray(s, np.int64), 1)
    n = np.zeros(s.shape, np.int64)
    t = s.copy()
    for b in (16, 8, 4, 2, 1):  # same binary search the C does; result: n = floor(log2 s)
        big = (t >> b) != 0
        n = n + np.where(big, b, 0)
        t = np.where(big, t >> b, t)
    m = (s << (31 - n)) & M32
    idx = (m >> 23) & 255
    frac = (m >> 7) & 0xFFFF
    lo = LOGT[idx]
    hi = LOGT[idx + 1]
    v = lo + (((hi - lo) * frac) >> 16)
    return (n << LU_BITS) + ((v + 128) >> 8)


def lse_q(v: np.ndarray, axis: int = -1) -> np.ndarray:
    """Integer LSE over ``axis``: m + LOG2(sum EXP(m - v) >> rsh) - (31 - rsh) * 256."""
    v = np.asarray(v, np.int64)
    n = v.shape[axis]
    r = _rsh(n)
    m = np.max(v, axis=axis, keepdims=True)
    s = np.sum(exp2q(m - v) >> r, axis=axis)
    return np.squeeze(m, axis) + log2q(s) - ((EXP_Q - r) << LU_BITS)


def _mulhu(a, b):
    return (a * b) >> 32


# ----------------------------------------------------------------------------- forward

def fixed_leaves(fx: FixedEinsum, Xq) -> np.ndarray:
    """(N, F, L) int leaf log-densities in LU."""
    x = np.asarray(Xq, np.int64)
    if x.ndim != 2 or x.shape[1] != fx.F:
        raise RfedgeError(f"expected int16 inputs of shape (N, {fx.F}), got {x.shape}", field="Xq")
    d = np.abs(x[:, :, None] - fx.muq[None])
    e = (d * fx.g + (1 << (fx.sh - 1))) >> fx.sh
    q = np.where(e > E_MAX, fx.qmax, np.minimum((np.minimum(e, E_MAX) ** 2) >> 8, fx.qmax))
    return fx.c[None] - q


def _node_layer(x: np.ndarray, W: np.ndarray) -> np.ndarray:
    """x: (N, R, 2n, I) log-values; W: (R, n, O, I, I) -> (N, R, n, O)."""
    u, v = x[:, :, 0::2], x[:, :, 1::2]
    mu = u.max(axis=-1, keepdims=True)
    mv = v.max(axis=-1, keepdims=True)
    a = exp2q(mu - u)  # (N, R, n, I)
    b = exp2q(mv - v)
    t = np.sum(_mulhu(W[None], b[:, :, :, None, None, :]), axis=-1)  # (N, R, n, O, I)
    s = np.sum(_mulhu(a[:, :, :, None, :], t), axis=-1)  # (N, R, n, O)
    return mu + mv + log2q(s) - (NODE_Q << LU_BITS)


def fixed_log_likelihoods(fx: FixedEinsum, Xq, chunk: int = 32) -> np.ndarray:
    """(N, C) int64 log2 p(x|c) in LU — exactly what rfe_einsum_forward computes before the prior."""
    lf = fixed_leaves(fx, Xq)
    N = lf.shape[0]
    starts = fx.bounds[:-1]
    out = np.empty((N, fx.C), np.int64)
    for s0 in range(0, N, chunk):
        sl = slice(s0, min(N, s0 + chunk))
        x = np.stack([np.add.reduceat(lf[sl][:, fx.perm[r]], starts, axis=1) for r in range(fx.R)], axis=1)
        for l in range(fx.D):
            W = fx.W[l]
            if l == fx.D - 1:
                W = W[:, None]
            x = _node_layer(x, W)
        root = x[:, :, 0, :]  # (n, R, C)
        out[sl] = lse_q(np.transpose(root, (0, 2, 1)) + fx.mixq[None], axis=-1)
    return out


def fixed_log_posteriors(fx: FixedEinsum, Xq) -> np.ndarray:
    """(N, C) int64 (int32 range) normalized log2 P(c|x) in LU; nats = value * ln2 / 256."""
    j = fixed_log_likelihoods(fx, Xq) + fx.priorq[None]
    return j - lse_q(j, axis=-1)[:, None]


def fixed_predict(fx: FixedEinsum, Xq) -> np.ndarray:
    """argmax of the log-posterior, ties to the smallest class (as the C)."""
    return np.argmax(fixed_log_posteriors(fx, Xq), axis=1)


def fixed_fuse(logposts) -> np.ndarray:
    """Labels from several networks' (N, C) integer log-posteriors: argmax_c sum_n clamp(lp_n[c], +-2^27)
    (the product of posteriors, paper 003 eq. 9); ties go to the smallest class."""
    lps = [np.asarray(a, np.int64) for a in logposts]
    if not lps:
        raise RfedgeError("fixed_fuse needs at least one network's log-posteriors")
    if len(lps) > 15:
        raise RfedgeError(f"fixed_fuse takes at most 15 networks (int32 sum), got {len(lps)}")
    shp = lps[0].shape
    if any(a.shape != shp or a.ndim != 2 for a in lps):
        raise RfedgeError(f"all log-posteriors must have the same (N, C) shape, got {[a.shape for a in lps]}")
    s = np.sum([np.clip(a, -FUSE_CLAMP, FUSE_CLAMP) for a in lps], axis=0)
    return np.argmax(s, axis=1)


def to_nats(v) -> np.ndarray:
    return np.asarray(v, np.float64) * (np.log(2.0) / LU)


def scratch_words(fx: FixedEinsum) -> int:
    """int32 words of the single scratch buffer the C needs (leaf table, one repetition's regions,
    the roots of all repetitions, the exponentials of one node)."""
    I = max(fx.L, fx.K)
    return fx.F * fx.L + (2 ** fx.D) * fx.L + fx.R * fx.C + 2 * I + fx.C
