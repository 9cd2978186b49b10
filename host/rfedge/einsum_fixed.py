"""Fixed-point Einsum networks: quantization and the bit-exact integer reference of the C kernels
(mcu/core/einsum/rfe_einsum.c). Every function here does exactly the integer arithmetic the C does.

Design (block floating point: linear domain inside the circuit, logs only at the leaves' rare
slow path and at the classes)
------------------------------------------------------------------------------------------
* Numbers inside the circuit are vectors of uint32 mantissas m_k with one shared int32 exponent e
  (bits): value_k = m_k / 2^32 * 2^e. "Normalized" means the largest mantissa has bit 31 set.
  ``mulhu(a, b) = (a * b) >> 32`` (one rv32im instruction) multiplies two such numbers (exponents
  add); Q32 weights (w * 2^32) scale them.
* NORM(s, e): top = OR of the mantissas; top == 0 -> every mantissa := 1 (the floor; no log of 0
  anywhere); n = leading zeros of top (table NLZ8 of the 8-bit leading-zero counts, looked up on
  the highest non-zero byte: rv32imc has no clz); m_k = s_k << n, e -= n.
  NORM24 (einsum nodes): nothing when top >= 2^24, else NORM. A node's inputs then keep >= 24
  bits and their products >= 16 bits (relative error <= 2^-16 per product, ~1e-4 nats along a
  tree, against ~1e-2 of the Gaussian table), and about every second layer skips the shifts.
* Input: standardized feature z as int16 ``zq = sat16(round_half_even(z * 2^ZF))`` (nan -> 0,
  +-inf -> +-32767), one ZF per model (the largest in [0, 14] holding the leaf means +- 4 sigma and
  1.5 x the calibration 99.9th percentile of |z|, raised if needed until the step is <= sigma_min/64).
* Leaves, per feature f (shared by all repetitions). Gaussian l is looked up in a table over the
  standardized distance, the table centre folded into the mean (no add per Gaussian)::

      idx = mulhu((2 zq - mb[f,l]) mod 2^32, g[f,l]),  replaced by 2 OFF when > 2 OFF
      v_l = GT[idx],  GT[i] = round(2^32 exp(-t^2 / 2)), t = (i - OFF + 1/2) / S, GT[2 OFF] = 0

  with g = round(2^31 S / (sigma 2^ZF)) in [2^12, 2^31) and mb = 2 round(mu 2^ZF) - B,
  B = round(OFF 2^32 / g): idx ~ S (z - mu) / sigma + OFF (the rounding of B shifts the centre by at
  most half a table step). A distance below the table wraps to >= 2^32 - 2^17 and, because
  g >= 2^12, lands beyond 2 OFF too. S = 64 table steps per sigma, OFF = 7 S (+-7 sigma; beyond,
  exp(-t^2/2) 2^32 < 1).
  The K leaf densities (leaf mixing; without it K -> L with a diagonal mixing) are
  s_k = sum_l mulhu(WL[f,k,l], v_l), WL = floor((2^32 - 16) w_fkl / (sigma_fl A_f)),
  A_f = max_k sum_l w_fkl / sigma_fl, so s_k < 2^32. log2(A_f / sqrt(2 pi)) summed over the
  features is one constant ``const_lu`` (every repetition holds every feature once).
  Fast path: top = OR_k s_k >= 2^16 -> NORM with e = 0.
  Slow path (top < 2^16: every component far away, or weights on far components only), in the
  log domain so that nothing underflows: u = mulh(2 zq - mb, g) - OFF (signed), w = |2u + 1| (~ 2 S |t|),
  q_l = min((w^2 * KQ) >> 24, qmax) (LU = 1/256 bit of exp(-t^2/2); KQ = round(2^24 * 32 log2(e) / S^2)),
  base = min_l q_l & ~255, v_l = EXP(q_l - base), s_k = sum_l mulhu(WL[f,k,l], v_l),
  e = 1 - (base >> 8), then NORM. qmax = min(2^29 // F, 2^24) caps a feature's contribution (the
  saturation at extreme inputs: no exponent sum can overflow).
* Leaf table (when quantize_params had calibration data and ``leaf_table_bits`` > 0): per feature a
  grid of T = 2^bits input cells over its calibration range (0.1-99.9th percentile of the quantized
  inputs, widened by 10 % of that span on each side): cell j holds zq in [lo_f + j 2^sh_f,
  lo_f + (j + 1) 2^sh_f), sh_f the smallest shift that fits the range into T cells. The table holds
  the leaf densities above (fast or slow path) at each cell's midpoint min(lo_f + j 2^sh_f +
  2^sh_f / 2, 32767), mantissas truncated to their top 16 bits (LM[f,j,k] = m_k >> 16, the top one
  keeps bit 15) and the int32 exponent LE[f,j]. Lookup: j = (zq - lo_f) >> sh_f (arithmetic);
  0 <= j < T -> m_k = LM[f,j,k] << 16, e = LE[f,j]; else (inputs outside the calibration range)
  the computation above. The leaf layer then costs a few loads per feature instead of L Gaussians;
  the price is the input snapped to the cell midpoint (cells are ~sigma/5 wide on the trained paper
  networks: accuracy in docs/einsum.md, bounds in tests/test_einsum_fixed.py) and the table,
  F T 4 (1 + ceil(I0 / 2)) bytes (bits are lowered until it fits LT_MAX_BYTES; below LT_MIN_BITS
  no table).
* Leaf region of a repetition: the product of its features: the first feature's (m, e), then per
  further feature m_k = mulhu(m_k, m_f,k), e += e_f, and NORM except after the last product (a
  product of two normalized vectors keeps ~30 bits; the first einsum layer normalizes).
* Einsum node (I inputs per side, K outputs), whichever order has fewer products:
  I <= K: p_ij = mulhu(a_i, b_j), s_k = sum_ij mulhu(W[k,i,j], p_ij)      (I^2 (K + 1) products);
  I > K (the plain form's first layer, I = L): t_ki = sum_j mulhu(W[k,i,j], b_j),
  s_k = sum_i mulhu(a_i, t_ki)                                             (K I (I + 1) products);
  e = e_a + e_b; NORM24. W = floor((2^32 - 16) exp(logw)), so sum_ij W < 2^32 and every partial
  sum (p, t, s) < 2^32.
* Root and mixture over repetitions in one dot product per class: the root's products
  p_rij = mulhu(a_i, b_j), e_r = e_a + e_b; E = max_r e_r; P_rij = p_rij >> (E - e_r + rshR)
  (0 when that shift is >= 32; rshR = ceil(log2 R) keeps the sum < 2^32);
  acc_c = sum_{r,i,j} mulhu(WR[r,c,i,j], P_rij) with the repetition mixture folded into the weights:
  WR[r,c,i,j] = floor((2^32 - 16) exp(logw[r,c,i,j]) mix[c,r] / max_r' mix[c,r']);
  J_c = ((E + rshR - 32) << 8) + LOG2(acc_c) + pc_c + const_lu, the log2 joint p(x, c) in LU,
  with pc_c = LU(log(prior_c max_r mix[c,r])) (LU: round(256 log2), -inf and below floored at
  LOG_FLOOR = -2^24).
* Output: log-posterior lp_c = J_c - log2 sum_c' 2^(J_c'/256), normalized in the linear domain
  (E and const_lu cancel): Z = sum_c mulhu(acc_c >> rshC, PW_c), PW_c = floor((2^32 - 16)
  2^((pc_c - pcmax) / 256)), pcmax = max_c pc_c, rshC = ceil(log2 C);
  lp_c = LOG2(acc_c) + pc_c - LZ, LZ = pcmax + LOG2(Z) + rshC 256 (log2 P(c|x) = lp / 256;
  ``to_nats``); argmax of lp, ties to the smallest class. (J_c itself, ``fixed_joint``, is a
  diagnostic the C does not form.)
  LSE (``lse_q``, host-side helper): m = max v; s = sum (EXP(m - v_i) >> rsh); m + LOG2(s) - (31 - rsh) 256,
  rsh = ceil(log2 n); EXP(d) = 0 if d >= 32*256 else EXPT[d & 255] >> (d >> 8),
  EXPT[f] = round(2^31 2^(-f/256)); LOG2(s) (s == 0 taken as 1) = n 256 + round_half_up(v / 256),
  n = index of the top bit, m = s << (31 - n), idx = bits 30..23, frac = bits 22..7 of m,
  v = LOGT[idx] + (((LOGT[idx+1] - LOGT[idx]) frac) >> 16), LOGT[i] = round(2^16 log2(1 + i/256)).
* Fusion of several networks (aggregator): score_c = sum_n clamp(lp_n[c], -2^27, 2^27) (no overflow
  for up to 15 networks); label = the smallest c with the maximal score.

Int32 ranges: |2 zq - mb| < 2^31 (B <= OFF 2^20 since g >= 2^12) and g < 2^31, so |u| <= 2^17 and
w < 2^18 in the slow path; (w^2 KQ) >> 24 is exact in 64 bits here, and the C takes it as
mulhu(w^2, KQ << 8) for w < 2^16 (w^2 < 2^32) and as "above qmax" beyond (there it exceeds 2^24);
exponents: a leaf >= -(qmax/256 + 31), every NORM >= -31, so |E| < 2^23 for F, 2^D <= 2^16 and
E * 256 + LOG2 + pc_c + const_lu stays inside int32.

Rounding: numpy ``rint`` (half to even) for the quantized constants and the input, floor for the
Q32 weights; datapath shifts are floor (arithmetic) except where round_half_up is written above.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rfedge.errors import RfedgeError
from rfedge.models.einsum_format import EinsumParams

LU_BITS = 8
LU = 1 << LU_BITS
EXP_Q = 31  # EXPT
LOG_FLOOR = -(1 << 24)
FUSE_CLAMP = 1 << 27
M32 = (1 << 32) - 1
GT_S = 64  # Gaussian table steps per sigma
GT_OFF = 7 * GT_S  # table centre: +-7 sigma
GT_N = 2 * GT_OFF + 1
FAST_MIN = 1 << 16  # leaf fast path needs top >= 2^16
WSUM = (1 << 32) - 16  # Q32 weight scale (floor): sums stay < 2^32
KQ = int(np.rint(2.0 ** 24 * 32.0 * np.log2(np.e) / GT_S ** 2))
MAX_I = 64  # I0, K limit of the C (stack arrays)
LT_BITS = 8  # leaf table: 2^LT_BITS input cells per feature (quantize_params' default)
LT_MIN_BITS = 7  # a coarser table than 128 cells costs too much accuracy: none instead
LT_MAX_BYTES = 256 * 1024  # SPR (F = 116, K = 2) at 256 cells needs 232 KiB


def _exp_table() -> np.ndarray:
    f = np.arange(LU)
    return np.rint(2.0 ** EXP_Q * 2.0 ** (-f / LU)).astype(np.int64)


def _log_table() -> np.ndarray:
    i = np.arange(LU + 1)
    return np.rint(65536.0 * np.log2(1.0 + i / LU)).astype(np.int64)


def _gauss_table() -> np.ndarray:
    t = (np.arange(GT_N) - GT_OFF + 0.5) / GT_S
    gt = np.minimum(np.rint(2.0 ** 32 * np.exp(-0.5 * t * t)), M32).astype(np.int64)
    gt[-1] = 0  # the clamp target of every index outside the table
    return gt


def _nlz8_table() -> np.ndarray:
    b = np.arange(256)
    return np.array([8 - int(v).bit_length() for v in b], np.int64)


EXPT = _exp_table()  # (256,) int64 values < 2^32
LOGT = _log_table()  # (257,) LOGT[256] = 65536
GT = _gauss_table()  # (GT_N,) Q32 Gaussian
NLZ8 = _nlz8_table()  # (256,) leading zeros of a byte (NLZ8[0] = 8)


@dataclass
class FixedEinsum:
    name: str
    D: int
    K: int
    L: int
    R: int
    C: int
    F: int
    I0: int  # leaf densities per region: K (leaf mixing) or L
    mixing: bool  # leaf mixing (else WL is diagonal)
    zf: int  # input fraction bits
    x_mean: np.ndarray  # float64, for quantize_inputs on the host
    x_scale: np.ndarray
    perm: np.ndarray  # (R, F) int64
    bounds: np.ndarray  # (2^D+1,) int64
    mb: np.ndarray  # (F, L) 2 * round(mu 2^zf) - B (the table centre folded in)
    g: np.ndarray  # (F, L) in [2^12, 2^31)
    WL: np.ndarray  # (F, I0, L) Q32 leaf mixing (diagonal without leaf mixing)
    qmax: int
    W: list  # D-1 arrays (R, n, K, I, I) Q32 node weights
    WR: np.ndarray  # (R, C, I, I) Q32 root weights with the mixture folded in
    pc: np.ndarray  # (C,) LU class constants (prior + mixture scale)
    const_lu: int
    priorq: np.ndarray  # (C,) LU log2 prior (diagnostics: fixed_log_likelihoods)
    lt_bits: int = 0  # leaf table cells per feature 2^lt_bits (0: no table)
    lt_lo: np.ndarray | None = None  # (F,) int16 grid origin
    lt_sh: np.ndarray | None = None  # (F,) cell width 2^sh
    lt_m: np.ndarray | None = None  # (F, T, I0) uint16 top mantissa bits
    lt_e: np.ndarray | None = None  # (F, T) int32 exponents

    def rsh(self, n: int) -> int:
        return _rsh(n)


def _rsh(n: int) -> int:
    return max(0, int(np.ceil(np.log2(n)))) if n > 1 else 0


def _lu(logp_nat) -> np.ndarray:
    a = np.asarray(logp_nat, np.float64) * (LU / np.log(2.0))
    with np.errstate(invalid="ignore"):
        a = np.where(np.isfinite(a), a, LOG_FLOOR)
    return np.maximum(np.rint(a), LOG_FLOOR).astype(np.int64)


def _q32(w) -> np.ndarray:
    """Q32 weights, floor, so any block summing to <= 1 in float sums to < 2^32."""
    return np.floor(np.asarray(w, np.float64) * WSUM).astype(np.int64)


def quantize_params(params: EinsumParams, calib_X=None, leaf_table_bits: int = LT_BITS) -> FixedEinsum:
    """Integer constants for ``params``; ``calib_X`` (raw features, (N, F)) sets the input range
    and, with ``leaf_table_bits`` > 0, the leaf table's range (no calibration data: no table)."""
    params.validate()
    F = params.F
    D, K, L, R, C = (int(getattr(params, k)) for k in ("D", "K", "L", "R", "C"))
    mixing = params.leaf_mixing
    I0 = K if mixing else L
    if I0 > MAX_I or K > MAX_I:
        raise RfedgeError(f"at most {MAX_I} leaf densities / sums per region, got {max(I0, K)}",
                          field="K" if K > MAX_I else "L")
    if D > 1 and K + 1 > 2 * (I0 + 1):
        raise RfedgeError(f"K = {K} > 2L + 1 = {2 * L + 1} is not supported by the in-place layer", field="K")
    if 4 * F * I0 > 65535:
        raise RfedgeError(f"4 * F * I0 = {4 * F * I0} > 65535 (uint16 byte offsets into the leaf table)", field="F")
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
    # resolution: an input step of at most sigma_min / 64 (= one Gaussian-table step, S = 64);
    # when range and resolution conflict, resolution wins and rarer outliers saturate
    zf_res = int(np.clip(np.ceil(np.log2(GT_S / float(np.min(sg)))), 0, 14))
    zf = max(zf_range, zf_res)
    muq2 = 2 * np.clip(np.rint(mu * 2.0 ** zf), -32767, 32767).astype(np.int64)
    G = 2.0 ** 31 * GT_S / (sg * 2.0 ** zf)
    if np.any(G < 2 ** 12):
        raise RfedgeError(f"sigma up to {float(np.max(sg)):.4g} is too wide for the input step 2^-{zf} "
                          f"(needs sigma < 2^{31 - 12} * 64 / 2^zf)", field="sigma")
    g = np.minimum(np.rint(G), 2 ** 31 - 1).astype(np.int64)
    mb = muq2 - np.rint(GT_OFF * 2.0 ** 32 / g).astype(np.int64)
    # leaf mixing weights with each Gaussian's 1/sigma folded in, per feature scaled by A_f
    if mixing:
        w = np.exp(np.asarray(params.logw_leaf, np.float64)) / sg[:, None, :]  # (F, K, L)
    else:
        w = np.zeros((F, L, L))
        w[:, np.arange(L), np.arange(L)] = 1.0 / sg
    A = np.max(np.sum(w, axis=2), axis=1)  # (F,)
    WL = _q32(w / A[:, None, None])
    const_lu = int(np.rint(LU * np.sum(np.log2(A) - 0.5 * np.log2(2.0 * np.pi))))
    qmax = int(min((1 << 29) // F, 1 << 24))
    W = [_q32(np.exp(np.asarray(params.logw[l], np.float64))) for l in range(D - 1)]
    mix = np.exp(np.asarray(params.logw_mix, np.float64))  # (C, R)
    mmax = np.max(mix, axis=1)  # (C,) > 0 (normalized)
    WR = _q32(np.exp(np.asarray(params.logw[D - 1], np.float64)) * (mix / mmax[:, None]).T[:, :, None, None])
    with np.errstate(divide="ignore"):
        pc = _lu(np.asarray(params.log_prior, np.float64) + np.log(mmax))
    fx = FixedEinsum(
        name=params.name, D=D, K=K, L=L, R=R, C=C, F=F, I0=I0, mixing=bool(mixing),
        zf=zf, x_mean=np.asarray(params.x_mean, np.float64), x_scale=np.asarray(params.x_scale, np.float64),
        perm=np.asarray(params.perm, np.int64), bounds=np.asarray(params.bounds, np.int64),
        mb=mb, g=g, WL=WL, qmax=qmax, W=W, WR=WR, pc=pc, const_lu=const_lu,
        priorq=_lu(params.log_prior))
    if calib_X is not None and leaf_table_bits > 0:
        add_leaf_table(fx, quantize_inputs(fx, calib_X), leaf_table_bits)
    return fx


def leaf_table_bytes(F: int, I0: int, bits: int) -> int:
    """Bytes of the C leaf table: per cell the exponent word, then the mantissa tops two per word."""
    return F * (1 << bits) * 4 * (1 + (I0 + 1) // 2)


def add_leaf_table(fx: FixedEinsum, xq_calib, bits: int = LT_BITS) -> FixedEinsum:
    """Fill fx's leaf table (the docstring's "Leaf table") from calibration inputs (N, F) int16;
    ``bits`` is lowered until the table fits LT_MAX_BYTES, and below LT_MIN_BITS no table is made."""
    x = _check_xq(fx, xq_calib)
    while bits >= LT_MIN_BITS and leaf_table_bytes(fx.F, fx.I0, bits) > LT_MAX_BYTES:
        bits -= 1
    fx.lt_bits, fx.lt_lo, fx.lt_sh, fx.lt_m, fx.lt_e = 0, None, None, None, None
    if bits < LT_MIN_BITS or len(x) == 0:
        return fx
    T = 1 << bits
    qlo, qhi = np.quantile(x, 0.001, axis=0), np.quantile(x, 0.999, axis=0)
    pad = 0.1 * (qhi - qlo)
    lo = np.clip(np.floor(qlo - pad), -32768, 32767).astype(np.int64)
    span = np.ceil(qhi + pad) - lo + 1
    sh = np.maximum(0, np.ceil(np.log2(span / T))).astype(np.int64)
    mid = lo[:, None] + (np.arange(T)[None] << sh[:, None]) + ((1 << sh) >> 1)[:, None]  # (F, T)
    m, e, _ = _exact_leaves(fx, np.minimum(mid, 32767).T)  # (T, F, I0), (T, F)
    fx.lt_bits = int(bits)
    fx.lt_lo, fx.lt_sh = lo, sh
    fx.lt_m = np.ascontiguousarray((m >> 16).transpose(1, 0, 2))
    fx.lt_e = np.ascontiguousarray(e.T)
    return fx


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
    n = 31 - nlz32(s)
    m = (s << (31 - n)) & M32
    idx = (m >> 23) & 255
    frac = (m >> 7) & 0xFFFF
    lo = LOGT[idx]
    hi = LOGT[idx + 1]
    v = lo + (((hi - lo) * frac) >> 16)
    return (n << LU_BITS) + ((v + 128) >> 8)


def nlz32(top: np.ndarray) -> np.ndarray:
    """Leading zeros of 0 < top < 2^32 by the byte table, as the C does (top == 0 gives 32)."""
    t = np.asarray(top, np.int64)
    out = np.full(t.shape, 24, np.int64) + NLZ8[t & 255]
    for sh, base in ((8, 16), (16, 8), (24, 0)):
        hi = (t >> sh) != 0
        out = np.where(hi, base + NLZ8[np.where(hi, (t >> sh) & 255, 0)], out)
    return out


def lse_q(v: np.ndarray, axis: int = -1) -> np.ndarray:
    """Integer LSE over ``axis``: m + LOG2(sum EXP(m - v) >> rsh) - (31 - rsh) * 256."""
    v = np.asarray(v, np.int64)
    n = v.shape[axis]
    r = _rsh(n)
    m = np.max(v, axis=axis, keepdims=True)
    s = np.sum(exp2q(m - v) >> r, axis=axis)
    return np.squeeze(m, axis) + log2q(s) - ((EXP_Q - r) << LU_BITS)


def _mulhu(a, b):
    """(a * b) >> 32 for 0 <= a, b < 2^32 (uint64 products, no overflow)."""
    return ((np.asarray(a).astype(np.uint64) * np.asarray(b).astype(np.uint64)) >> np.uint64(32)).astype(np.int64)


def norm_lazy(s: np.ndarray, e: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """NORM24: vectors whose top mantissa is >= 2^24 stay as they are, the others get NORM."""
    s = np.asarray(s, np.int64)
    e = np.asarray(e, np.int64)
    low = np.bitwise_or.reduce(s, axis=-1) < (1 << 24)
    m, ee = norm(s, e)
    return np.where(low[..., None], m, s), np.where(low, ee, e)


def norm(s: np.ndarray, e: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """NORM over the last axis of s (..., n) with exponents e (...)."""
    s = np.asarray(s, np.int64)
    top = np.bitwise_or.reduce(s, axis=-1)
    zero = top == 0
    s = np.where(zero[..., None], 1, s)
    n = nlz32(np.where(zero, 1, top))
    return (s << n[..., None]) & M32, np.asarray(e, np.int64) - n


# ----------------------------------------------------------------------------- forward

def _check_xq(fx, Xq):
    x = np.asarray(Xq)
    if x.ndim != 2 or x.shape[1] != fx.F:
        raise RfedgeError(f"expected int16 inputs of shape (N, {fx.F}), got {x.shape}", field="Xq")
    return np.clip(x.astype(np.int64), -32768, 32767)


def fixed_leaves(fx: FixedEinsum, Xq) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per feature: normalized mantissas (N, F, I0), exponents (N, F) and the slow-path mask (N, F)
    (from the leaf table where it has the cell, else computed)."""
    x = _check_xq(fx, Xq)
    m, e, slow = _exact_leaves(fx, x)
    if fx.lt_bits:
        j = (x - fx.lt_lo[None]) >> fx.lt_sh[None]  # (N, F), floor like the C's arithmetic shift
        ok = (j >= 0) & (j < (1 << fx.lt_bits))
        jj = np.where(ok, j, 0)
        f = np.arange(fx.F)[None]
        m = np.where(ok[..., None], fx.lt_m[f, jj] << 16, m)
        e = np.where(ok, fx.lt_e[f, jj], e)
        slow = slow & ~ok
    return m, e, slow


def _exact_leaves(fx: FixedEinsum, x) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    x = np.asarray(x, np.int64)
    d = 2 * x[:, :, None] - fx.mb[None]  # (N, F, L), |d| < 2^31
    idx = ((d & M32) * fx.g[None]) >> 32  # < 2^63: no int64 overflow
    idx = np.where(idx > 2 * GT_OFF, 2 * GT_OFF, idx)
    v = GT[idx]
    s = np.sum(_mulhu(fx.WL[None], v[:, :, None, :]), axis=-1)  # (N, F, I0)
    top = np.bitwise_or.reduce(s, axis=-1)
    slow = top < FAST_MIN
    e = np.zeros(top.shape, np.int64)
    if slow.any():
        gs = np.broadcast_to(fx.g[None], d.shape)[slow]
        u = ((d[slow] * gs) >> 32) - GT_OFF  # (n, L) signed
        w = np.abs(2 * u + 1)
        q = np.minimum((w * w * KQ) >> 24, fx.qmax)
        base = np.min(q, axis=-1) & ~255
        vs = exp2q(q - base[:, None])
        WLs = np.broadcast_to(fx.WL[None], s.shape + (fx.L,))[slow]  # (n, I0, L)
        s[slow] = np.sum(_mulhu(WLs, vs[:, None, :]), axis=-1)
        e[slow] = 1 - (base >> 8)
    m, e = norm(s, e)
    return m, e, slow


def _node(a, ea, b, eb, W):
    """a (N, I), b (N, I), W (O, I, I) -> unnormalized s (N, O), e (N,); the cheaper of the two
    evaluation orders (the docstring's einsum node)."""
    O, I = W.shape[0], W.shape[1]
    if I <= O:
        p = _mulhu(a[:, :, None], b[:, None, :])  # (N, I, I)
        s = np.sum(_mulhu(W[None], p[:, None]), axis=(-2, -1))
    else:
        t = np.sum(_mulhu(W[None], b[:, None, None, :]), axis=-1)  # (N, O, I) < 2^32
        s = np.sum(_mulhu(a[:, None, :], t), axis=-1)
    return s, ea + eb


def fixed_joint(fx: FixedEinsum, Xq) -> np.ndarray:
    """(N, C) int64 J_c: log2 p(x, c) in LU (a diagnostic; the C normalizes without forming it)."""
    acc, E = _class_sums(fx, Xq)
    return ((E + _rsh(fx.R) - 32) << LU_BITS)[:, None] + log2q(acc) + fx.pc[None] + fx.const_lu


def norm_weights(fx: FixedEinsum) -> tuple[np.ndarray, int]:
    """(PW (C,) Q32, pcmax): the class weights of the linear-domain normalizer (the docstring's Output)."""
    pc = np.asarray(fx.pc, np.int64)
    pcmax = int(pc.max())
    return _q32(2.0 ** ((pc - pcmax) / LU)), pcmax


def _class_sums(fx: FixedEinsum, Xq) -> tuple[np.ndarray, np.ndarray]:
    """(acc (N, C) < 2^32, E (N,)): the root + mixture dot products and the repetitions' common exponent."""
    m, e, _ = fixed_leaves(fx, Xq)
    N = m.shape[0]
    nreg = 2 ** fx.D
    I = fx.WR.shape[-1]
    P = np.zeros((N, fx.R, I * I), np.int64)
    re_ = np.zeros((N, fx.R), np.int64)
    for r in range(fx.R):
        xs, es = [], []
        for j in range(nreg):
            feats = fx.perm[r, fx.bounds[j]:fx.bounds[j + 1]]
            acc, ea = m[:, feats[0]], e[:, feats[0]]
            for i, f in enumerate(feats[1:]):
                acc, ea = _mulhu(acc, m[:, f]), ea + e[:, f]
                if i < len(feats) - 2:
                    acc, ea = norm(acc, ea)
            xs.append(acc)
            es.append(ea)
        for l in range(fx.D - 1):
            W = fx.W[l][r]
            nx, ne = [], []
            for j in range(len(xs) // 2):
                s, ee = _node(xs[2 * j], es[2 * j], xs[2 * j + 1], es[2 * j + 1], W[j])
                s, ee = norm_lazy(s, ee)
                nx.append(s)
                ne.append(ee)
            xs, es = nx, ne
        P[:, r] = _mulhu(xs[0][:, :, None], xs[1][:, None, :]).reshape(N, I * I)
        re_[:, r] = es[0] + es[1]
    rshR = _rsh(fx.R)
    E = np.max(re_, axis=1)  # (N,)
    sft = (E[:, None] - re_) + rshR  # (N, R) >= 0
    P = np.where(sft[:, :, None] < 32, P >> np.minimum(sft, 31)[:, :, None], 0).reshape(N, 1, -1)
    WRc = np.transpose(fx.WR, (1, 0, 2, 3)).reshape(fx.C, -1)  # (C, R*I*I)
    acc = np.sum(_mulhu(WRc[None], P), axis=-1)  # (N, C) < 2^32
    return acc, E


def fixed_log_likelihoods(fx: FixedEinsum, Xq) -> np.ndarray:
    """(N, C) log2 p(x|c) in LU = J_c - priorq_c (a diagnostic: the C never forms it)."""
    return fixed_joint(fx, Xq) - fx.priorq[None]


def fixed_log_posteriors(fx: FixedEinsum, Xq) -> np.ndarray:
    """(N, C) int64 (int32 range) normalized log2 P(c|x) in LU; nats = value * ln2 / 256 (to_nats)."""
    acc, _ = _class_sums(fx, Xq)
    pw, pcmax = norm_weights(fx)
    rshC = _rsh(fx.C)
    z = np.sum(_mulhu(acc >> rshC, pw[None]), axis=1)
    lz = pcmax + log2q(z) + (rshC << LU_BITS)
    return log2q(acc) + fx.pc[None] - lz[:, None]


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
    """int32 words of the single scratch buffer the C needs: the leaf table F x I0 and its F
    exponents, one repetition's regions 2^D x I (no exponents below the leaves: they only add up),
    the root products R x I x I and exponents R, a node's products I x I and the slow leaf path's
    L log-values (I = max(I0, K))."""
    I = max(fx.I0, fx.K)
    return fx.F * (fx.I0 + 1) + (2 ** fx.D) * I + fx.R * (I * I + 1) + I * I + fx.L
