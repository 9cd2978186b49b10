"""One paper-003 device as firmware: its int16 signals in, its Einsum network's int32 log-posteriors
out, the features computed on the device (``emit_device_model`` writes the gen dir that
rfedge.firmware.build_firmware compiles with the protocol dispatcher of mcu/core/proto).

Device model interface (model.h, what rfe_device.c serves)
----------------------------------------------------------
Input (SET_INPUT bytes, little-endian int16, rfedge.rfid_features_fixed.quantize_signals):

    SPR  rss[2 tags][2 antennas][35] then phase[2][2][35]   560 bytes  (rss Q14, phase 1/512 rad)
    SA   aoa[2 tags][35]                                     140 bytes  (1/8192 rad)
    WA   aoa[2 tags][35]                                     140 bytes

Output (INVOKE bytes): C little-endian int32 normalized log2-posteriors in LU (1/256 bit,
log2 P(c|x) = v / 256), bit-identical to ``rfedge.einsum_fixed.fixed_log_posteriors``; the class is
their argmax (smallest index on ties). ``rfe_model_invoke`` = ``rfe_feat_spr/sa/wa`` (mcu/core/rfid)
-> the feature affine below -> ``<prefix>_infer`` (mcu/core/einsum).

Feature affine (device features -> the network's quantized standardized input)
-------------------------------------------------------------------------------
A device feature q_f (int32) means x_f = q_f / 2^s_f (s_f = FEATURE_SCALES[set][f]); the network
wants xq_f = sat16(rint((x_f - x_mean_f) / x_scale_f * 2^zf)) (einsum_fixed.quantize_inputs), i.e.
xq_f ~ a_f q_f - b_f with the real gain a_f = 2^(zf - s_f) / x_scale_f and offset
b_f = x_mean_f 2^zf / x_scale_f. Per feature, int32 constants lo <= hi (the input window), origin o,
pre-shift L in [0, 30], M in [0, 2^31), B and sh in [SH_MIN, 31]:

    c    = clamp(q, lo, hi)
    t    = floor(((c - o) 2^L) M / 2^32)        (c - o) 2^L is an int32: t = mulh((c - o) << L, M)
    xq_f = clamp((t + B) >> sh, -32767, 32767)  t + B is an int32; >> the arithmetic (floor) shift

    M = rint(a 2^(32 + sh - L)),  B = rint((a o - b) 2^sh) + 2^(sh - 1)   (the rounding folded in)

with sh the largest that keeps every step in 32 bits over the window (``_affine_sh``). Two kinds
(``_affine_constants``): the full window (lo, hi = INT32_MIN, INT32_MAX, o = L = 0: no input
clamp), taken when it keeps sh >= SH_FULL; else a bounded window with o = lo: lo the last feature
value whose xq saturates low, hi the first that saturates high (or the int32 limits; xq is monotone,
so the input clamp never changes xq; with a gain below one step per LSB xq(lo) = -32767 and
xq(hi) = 32767 and the C skips the output clamp), its width ~2^16/a fits int32 after the pre-shift,
and sh (~13) keeps t + B within 2^31. So the generated C (``rfe_dev_affine``, unrolled)
is per feature a few table loads, [sub, one branch, slli,] mulh, add, srai, [two clamp branches,] a
halfword store; no 64-bit arithmetic and no libgcc call on rv32imc.

``features_to_xq`` is the Python definition (exact in int64); the C computes it bit for bit. Against
the exact affine a q - b the value before the floor is off by less than 1.75 2^-sh of a step (M's
rounding < 2^-(sh+2): |(c - o) 2^L| < 2^31; B's < 2^-(sh+1); t's floor < 2^-sh), so xq equals
sat16(rint(a q - b)) except within 1.75 2^-sh (<= 2^-7) of a half step, and then differs by one;
with the feature's own fixed-point rounding that is the bound against quantizing the float features,
which is why the device is compared with this integer path, not with the float one.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rfedge.errors import RfedgeError

SETS = ("SPR", "SA", "WA")
N_SAMPLES = 35
INPUT_BYTES = {"SPR": 2 * 2 * 2 * N_SAMPLES * 2, "SA": 2 * N_SAMPLES * 2, "WA": 2 * N_SAMPLES * 2}
FEATURE_COUNT = {"SPR": 116, "SA": 29, "WA": 38}
INT32_MIN, INT32_MAX = -(1 << 31), (1 << 31) - 1
XQ_MAX = 32767
SH_MAX = 31   # the final shift (a 5-bit immediate)
SH_FULL = 12  # the full window is preferred when it keeps this many
SH_MIN = 8    # at least 8 fraction bits before the rounding: error < 1.75 * 2^-8 of a step
FEAT_FUNC = {"SPR": "rfe_feat_spr", "SA": "rfe_feat_sa", "WA": "rfe_feat_wa"}
FEAT_KERNELS = ("rfe_rfidfeat.h", "rfe_rfidfeat.c")


@dataclass
class FeatureAffine:
    """The integer constants of the feature affine (module docstring), one entry per feature."""
    set_name: str
    lo: np.ndarray      # (F,) int64: the input window [lo, hi] (int32; INT32_MIN/MAX when unbounded)
    hi: np.ndarray      # (F,) int64
    origin: np.ndarray  # (F,) int64: lo for a bounded window, 0 for the full int32 range
    pre: np.ndarray     # (F,) int64: pre-shift L, 0..30
    mult: np.ndarray    # (F,) int64: M, 0..2^31-1
    bias: np.ndarray    # (F,) int64: B (rounding folded in), int32
    shift: np.ndarray   # (F,) int64: sh, 0..31

    @property
    def full(self) -> np.ndarray:
        """(F,) bool: the window is all of int32 (the C skips the input clamp)."""
        return (self.lo == INT32_MIN) & (self.hi == INT32_MAX)


def _check_set(set_name: str) -> str:
    if set_name not in SETS:
        raise RfedgeError(f"expected a device network from {list(SETS)}, got {set_name!r}", field="set_name")
    return set_name


def _affine_v(c: int, o: int, L: int, M: int, B: int, sh: int) -> int:
    """The affine's value before the output clamp for a clamped feature c (Python ints)."""
    return ((((c - o) << L) * M >> 32) + B) >> sh


def _fits32(v: int) -> bool:
    return INT32_MIN <= v <= INT32_MAX


def _affine_sh(a: float, b: float, lo: int, hi: int, o: int, L: int) -> tuple | None:
    """(lo, hi, o, L, M, B, sh) with the largest sh in [SH_MIN, SH_MAX] whose integers fit: M < 2^31,
    B and t + B int32 over the window (t + B is monotone in the clamped feature: its ends bound it)."""
    if not (INT32_MIN <= lo <= hi <= INT32_MAX and _fits32((hi - o) << L) and _fits32((lo - o) << L)):
        return None
    for sh in range(SH_MAX, SH_MIN - 1, -1):
        M = int(np.rint(np.ldexp(a, 32 + sh - L)))
        if M >= 1 << 31:
            continue
        B = int(np.rint(np.ldexp(a * o - b, sh))) + ((1 << (sh - 1)) if sh else 0)
        if _fits32(B) and all(_fits32((((c - o) << L) * M >> 32) + B) for c in (lo, hi)):
            return lo, hi, o, L, M, B, sh
    return None


def _affine_window(a: float, b: float) -> tuple | None:
    """A bounded window with origin o = lo: lo the last feature value whose xq saturates low, hi the
    first that saturates high (or the int32 limits), so clamping to it never changes xq; or None."""
    lo = int(min(max(np.floor((b - XQ_MAX + 0.5) / a), INT32_MIN), INT32_MAX))
    width = (2.0 * XQ_MAX + 1.0) / a + 8.0
    if width >= 2.0 ** 31 - 16:
        return None
    L = 0
    while L < 30 and width * 2.0 ** (L + 1) < 2.0 ** 31:
        L += 1
    k = None
    for _ in range(8):
        top = min(INT32_MAX, lo + (((1 << 31) - 1) >> L))
        k = _affine_sh(a, b, lo, top, lo, L)
        if k is None:
            return None
        if _affine_v(lo, *k[2:]) > -XQ_MAX and lo > INT32_MIN:
            lo -= 1
        elif lo < top and _affine_v(lo + 1, *k[2:]) <= -XQ_MAX:
            lo += 1
        else:
            break
    lo, top, o, L, M, B, sh = k
    if lo > INT32_MIN and _affine_v(lo, o, L, M, B, sh) > -XQ_MAX:
        return None
    if _affine_v(top, o, L, M, B, sh) < XQ_MAX:
        if top < INT32_MAX:
            return None
        return lo, top, o, L, M, B, sh
    x, y = lo, top                            # hi: the first feature value with v >= XQ_MAX (monotone)
    while x < y:
        m = (x + y) // 2
        if _affine_v(m, o, L, M, B, sh) >= XQ_MAX:
            y = m
        else:
            x = m + 1
    return lo, x, o, L, M, B, sh


def _affine_constants(a: float, b: float) -> tuple | None:
    """(lo, hi, o, L, M, B, sh) of one feature with gain a > 0 and offset b (xq ~ a q - b), or None
    when no sh >= SH_MIN fits. The full int32 window (no input clamp) is taken when it keeps SH_FULL
    fraction bits or as many as a bounded window."""
    full = _affine_sh(a, b, INT32_MIN, INT32_MAX, 0, 0)
    if full is not None and full[-1] >= SH_FULL:
        return full
    win = _affine_window(a, b)
    if win is not None and (full is None or win[-1] > full[-1]):
        return win
    return full


def feature_affine(fx, set_name: str) -> FeatureAffine:
    """The integer constants of the feature affine (module docstring) for the quantized network
    ``fx`` (einsum_fixed.FixedEinsum) on device ``set_name``."""
    from rfedge.rfid_features_fixed import FEATURE_SCALES

    _check_set(set_name)
    s = np.asarray(FEATURE_SCALES[set_name], np.int64)
    if fx.F != len(s):
        raise RfedgeError(f"network {fx.name} has F = {fx.F} inputs, device {set_name} computes {len(s)} features",
                          field="F")
    mean = np.asarray(fx.x_mean, np.float64)
    scale = np.asarray(fx.x_scale, np.float64)
    bad = np.flatnonzero(~(np.isfinite(scale) & (scale > 0)) | ~np.isfinite(mean))
    if bad.size:
        raise RfedgeError(f"network {fx.name}: x_scale must be finite and > 0 and x_mean finite "
                          f"(feature {int(bad[0])}: mean {mean[bad[0]]}, scale {scale[bad[0]]})", field="x_scale")
    a = np.exp2(float(fx.zf) - s.astype(np.float64)) / scale
    b = mean * 2.0 ** fx.zf / scale
    F = len(s)
    cols = np.zeros((7, F), np.int64)
    for f in range(F):
        k = _affine_constants(float(a[f]), float(b[f])) if np.isfinite(a[f]) and np.isfinite(b[f]) else None
        if k is None:
            raise RfedgeError(f"network {fx.name}, feature {f}: gain {a[f]:.3g} or offset {b[f]:.3g} out of the "
                              "affine's range (x_scale too small for the feature's fixed-point scale)", field="x_scale")
        cols[:, f] = k
    return FeatureAffine(set_name, *cols)


def features_to_xq(aff: FeatureAffine, Q) -> np.ndarray:
    """(N, F) device features (int32 values) -> (N, F) int16 network inputs (the C's integer steps)."""
    q = np.asarray(Q, np.int64)
    if q.ndim != 2 or q.shape[1] != len(aff.mult):
        raise RfedgeError(f"expected {aff.set_name} features of shape (N, {len(aff.mult)}), got {q.shape}", field="Q")
    if q.size and (q.min() < INT32_MIN or q.max() > INT32_MAX):
        raise RfedgeError("device features must be int32", field="Q")
    d = (np.clip(q, aff.lo[None], aff.hi[None]) - aff.origin[None]) << aff.pre[None]   # int32 by construction
    t = (d * aff.mult[None]) >> 32                                                     # |d M| < 2^62: mulh
    v = (t + aff.bias[None]) >> aff.shift[None]
    return np.clip(v, -XQ_MAX, XQ_MAX).astype(np.int16)


# ---- signals ------------------------------------------------------------------------------------

@dataclass
class QuantSignals:
    """int16 signals of N trials (rfid_features_fixed.quantize_signals)."""
    rss: np.ndarray    # (N, 2, 2, 35)
    phase: np.ndarray  # (N, 2, 2, 35)
    aoa: np.ndarray    # (N, 2, 35)

    def __len__(self) -> int:
        return len(self.aoa)

    def take(self, ids) -> "QuantSignals":
        ids = np.asarray(ids)
        return QuantSignals(self.rss[ids], self.phase[ids], self.aoa[ids])


def quantize_dataset_signals(signals) -> QuantSignals:
    """QuantSignals of an rfid_dsp.RfidSignals (float)."""
    from rfedge.rfid_features_fixed import quantize_signals

    r, p, a = quantize_signals(signals.rss, signals.phase, signals.aoa)
    return QuantSignals(r, p, a)


def device_features(set_name: str, sig: QuantSignals) -> np.ndarray:
    """(N, F) int64 features exactly as the device computes them (rfid_features_fixed)."""
    from rfedge import rfid_features_fixed as rff

    _check_set(set_name)
    if set_name == "SPR":
        return rff.spr_fixed(sig.rss, sig.phase)
    return rff.sa_fixed(sig.aoa) if set_name == "SA" else rff.wa_fixed(sig.aoa)


def pack_inputs(set_name: str, sig: QuantSignals) -> np.ndarray:
    """(N, INPUT_BYTES[set]) uint8: each trial's device input (module docstring)."""
    _check_set(set_name)
    n = len(sig)
    if set_name == "SPR":
        for nm, a in (("rss", sig.rss), ("phase", sig.phase)):
            if np.shape(a) != (n, 2, 2, N_SAMPLES):
                raise RfedgeError(f"expected {nm} of shape ({n}, 2, 2, {N_SAMPLES}), got {np.shape(a)}", field=nm)
        words = np.concatenate([np.asarray(sig.rss).reshape(n, -1), np.asarray(sig.phase).reshape(n, -1)], axis=1)
    else:
        if np.shape(sig.aoa) != (n, 2, N_SAMPLES):
            raise RfedgeError(f"expected aoa of shape ({n}, 2, {N_SAMPLES}), got {np.shape(sig.aoa)}", field="aoa")
        words = np.asarray(sig.aoa).reshape(n, -1)
    if words.dtype != np.int16:
        raise RfedgeError(f"expected int16 signals (quantize_signals), got {words.dtype}", field="signals")
    return np.ascontiguousarray(words.astype("<i2")).view(np.uint8).reshape(n, INPUT_BYTES[set_name])


def unpack_output(data: bytes | np.ndarray, C: int) -> np.ndarray:
    """C int32 log-posteriors (LU) of one INVOKE answer's output bytes."""
    b = np.frombuffer(data.tobytes() if isinstance(data, np.ndarray) else bytes(data), np.uint8)
    if b.size != 4 * C:
        raise RfedgeError(f"expected {4 * C} output bytes ({C} int32 log-posteriors), got {b.size}", field="output")
    return b.view("<i4").astype(np.int32)


# ---- the reference of one device ---------------------------------------------------------------

@dataclass
class DeviceNet:
    """One device's network, quantized, with its feature affine."""
    set_name: str
    params: object     # EinsumParams
    fx: object         # FixedEinsum
    aff: FeatureAffine

    @property
    def C(self) -> int:
        return int(self.fx.C)

    def xq(self, sig: QuantSignals) -> np.ndarray:
        return features_to_xq(self.aff, device_features(self.set_name, sig))

    def log_posteriors(self, sig: QuantSignals) -> np.ndarray:
        """(N, C) int32: the bit-exact reference of the device's output."""
        from rfedge.einsum_fixed import fixed_log_posteriors

        return fixed_log_posteriors(self.fx, self.xq(sig)).astype(np.int32)


def calibration_features(set_name: str, sig: QuantSignals) -> np.ndarray:
    """Float features as the device sees them (its fixed-point features / scale): the calibration
    data of einsum_fixed.quantize_params."""
    from rfedge.rfid_features_fixed import to_float

    return to_float(set_name, device_features(set_name, sig))


def device_net(set_name: str, params, calib: QuantSignals | None = None) -> DeviceNet:
    """Quantize ``params`` (EinsumParams of ``set_name``) with the device features of ``calib``."""
    from rfedge.einsum_fixed import quantize_params

    _check_set(set_name)
    X = calibration_features(set_name, calib) if calib is not None and len(calib) else None
    fx = quantize_params(params, X)
    return DeviceNet(set_name, params, fx, feature_affine(fx, set_name))


# ---- code generation ----------------------------------------------------------------------------

def _c_list(vals, per_line: int = 12, suffix: str = "") -> str:
    v = [f"{int(x)}{suffix}" for x in np.asarray(vals).reshape(-1)]
    return "\n".join("    " + ", ".join(v[i:i + per_line]) + "," for i in range(0, len(v), per_line))


def _affine_c(aff: FeatureAffine) -> tuple[str, str]:
    """(constant table, unrolled statements) of the feature affine in C: per feature a few loads,
    mulh, add and an immediate shift. A full window skips the input clamp; a window whose values
    stay within +-32767 (a bounded one with a gain below one step per LSB: xq(lo) = -32767,
    xq(hi) = 32767; a full one with a tiny gain) the output clamp; a zero pre-shift the shift."""
    F = len(aff.mult)
    rows, body = [], []
    for f in range(F):
        k = tuple(int(v[f]) for v in (aff.lo, aff.hi, aff.origin, aff.pre, aff.mult, aff.bias, aff.shift))
        lo, hi, o, L, M, B, sh = k
        if not (0 <= M < (1 << 31) and _fits32(B) and 0 <= sh <= SH_MAX and 0 <= L <= 30 and lo <= hi):
            raise RfedgeError(f"feature {f}: affine constants out of range", field="aff")
        if not all(_fits32((((c - o) << L) * M >> 32) + B) and _fits32((c - o) << L) for c in (lo, hi)):
            raise RfedgeError(f"feature {f}: the affine's 32-bit steps overflow on its window", field="aff")
        vlo, vhi = _affine_v(lo, *k[2:]), _affine_v(hi, *k[2:])
        inside = vlo >= -XQ_MAX and vhi <= XQ_MAX          # no output clamp needed within the window
        mh = f"((rfe_dev_mulh({{}}, k[{f}].m) + k[{f}].b) >> {sh})"
        if lo == INT32_MIN and hi == INT32_MAX:
            if o != 0 or L != 0:
                raise RfedgeError(f"feature {f}: a full window has origin 0 and no pre-shift", field="aff")
            rows.append(f"    {{0, 0, {M}, {B}}},")
            e = mh.format(f"feat[{f}]")
            body.append(f"    xq[{f}] = " + (f"(int16_t){e};" if inside else f"rfe_dev_sat({e}, lim);"))
            continue
        if o != lo:
            raise RfedgeError(f"feature {f}: a bounded window starts at its origin", field="aff")
        rows.append(f"    {{{lo}, {hi - lo}, {M}, {B}}},")
        d = f"(int32_t)(u << {L})" if L else "(int32_t)u"
        e = mh.format(d)
        body.append(f"    u = (uint32_t)feat[{f}] - (uint32_t)k[{f}].lo;\n"
                    f"    if (RFE_DEV_OUT(u > (uint32_t)k[{f}].w))\n"
                    f"        u = feat[{f}] < k[{f}].lo ? 0u : (uint32_t)k[{f}].w;\n"
                    f"    xq[{f}] = " + (f"(int16_t){e};" if inside else f"rfe_dev_sat({e}, lim);"))
    if not aff.full.all():
        body.insert(0, "    uint32_t u;")
    # INT32_MIN as a literal is -2147483647 - 1 (2147483648 alone is not an int32)
    table = "\n".join(rows).replace(f"{{{INT32_MIN},", "{-2147483647 - 1,")
    return table, "\n".join(body)


def emit_device_model(dev: DeviceNet, out_dir, golden: QuantSignals | None = None, *, extra: dict | None = None) -> Path:
    """Write the gen dir of device ``dev.set_name``: model.h / model.c (the rfe_device model
    interface), the network's C (rfedge_codegen.emit_einsum), the feature and einsum kernels and
    model.json. ``golden``: the self-test's input (its first trial; else zero signals)."""
    from rfedge.firmware import core_dir
    from rfedge_codegen.emit_einsum import emit_einsum_c

    name = _check_set(dev.set_name)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    prefix = f"einsum_{name.lower()}"
    P = prefix.upper()
    emit_einsum_c(dev.fx, out, prefix)
    for k in FEAT_KERNELS:
        src = core_dir() / "rfid" / k
        if not src.is_file():
            raise RfedgeError("the device features (mcu/core/rfid/rfe_rfidfeat.c) are missing", path=src)
        shutil.copyfile(src, out / k)
    F, C = dev.fx.F, dev.C
    nin, nout = INPUT_BYTES[name], 4 * C
    if golden is None or not len(golden):
        golden = QuantSignals(np.zeros((1, 2, 2, N_SAMPLES), np.int16), np.zeros((1, 2, 2, N_SAMPLES), np.int16),
                              np.zeros((1, 2, N_SAMPLES), np.int16))
    g = golden.take([0])
    gin = pack_inputs(name, g)[0]
    gout = np.ascontiguousarray(dev.log_posteriors(g)[0].astype("<i4")).view(np.uint8)
    from rfedge.einsum_fixed import scratch_words

    n_sig = nin // 2
    arena = 4 * scratch_words(dev.fx) + 2 * n_sig + 4 * F + 2 * F + 4 * C
    aff_table, aff_body = _affine_c(dev.aff)
    in_scale = {"SPR": 0.0, "SA": 2.0 ** -13, "WA": 2.0 ** -13}[name]
    h = f"""/*
 * model.h - device {name} of paper 003: int16 signals -> features on the device -> Einsum network.
 * Generated by rfedge.einsum_device; do not edit. Formats: docs/protocol.md ("Einsum devices").
 */
#ifndef RFE_MODEL_H
#define RFE_MODEL_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {{
#endif

#define RFE_MODEL_EINSUM_SET "{name}"
#define RFE_MODEL_FEATURES {F}
#define RFE_MODEL_CLASSES {C}
/* input: {n_sig} little-endian int16 signal samples ({'rss[2][2][35] Q14 then phase[2][2][35] 1/512 rad' if name == 'SPR' else 'aoa[2][35] 1/8192 rad'}) */
#define RFE_MODEL_INPUT_SIZE {nin}
/* output: {C} little-endian int32 log2-posteriors in 1/256 bit */
#define RFE_MODEL_OUTPUT_SIZE {nout}
#define RFE_MODEL_ARENA_SIZE {arena}           /* static RAM of the model: scratch, signals, features */
#define RFE_MODEL_RAM_SIZE RFE_MODEL_ARENA_SIZE

/* HELLO's scale fields: input = one signal LSB ({'0: rss and phase differ, see above' if name == 'SPR' else '2^-13 rad'}),
 * output = 1/256 bit per int32 (log2 P = scale * q). */
#define RFE_MODEL_INPUT_SCALE {in_scale!r}f
#define RFE_MODEL_INPUT_ZERO_POINT (0)
#define RFE_MODEL_OUTPUT_SCALE 0.00390625f
#define RFE_MODEL_OUTPUT_ZERO_POINT (0)

/* in[RFE_MODEL_INPUT_SIZE] bytes -> out[RFE_MODEL_OUTPUT_SIZE] bytes; returns 0. Not reentrant. */
int rfe_model_invoke(const int8_t *in, int8_t *out);
/* The class of the last invoke (argmax of its log-posteriors). */
int32_t rfe_model_last_class(void);
/* Runs the golden trial and returns the number of output bytes that differ from the host
 * reference's (0 = pass). */
int rfe_model_selftest(void);

#ifdef __cplusplus
}}
#endif

#endif /* RFE_MODEL_H */
"""
    if name == "SPR":
        feat_call = ("rfe_feat_spr((const int16_t (*)[2][RFE_FEAT_N])sig_in,\n"
                     "                 (const int16_t (*)[2][RFE_FEAT_N])(sig_in + 4 * RFE_FEAT_N), feat);")
    else:
        feat_call = f"{FEAT_FUNC[name]}((const int16_t (*)[RFE_FEAT_N])sig_in, feat);"
    c = f"""/* model.c - device {name}: see model.h. Generated by rfedge.einsum_device; do not edit. */
#include "model.h"

#include <stdint.h>
#include <string.h>

#include "rfe_rfidfeat.h"
#include "{prefix}.h"

typedef char rfe_dev_f_check[({P}_F == {F} && RFE_FEAT_{name}_N == {F} && {P}_C == {C}) ? 1 : -1];

/* Feature affine (rfedge/einsum_device.py, features_to_xq):
 * xq = sat((mulh((clamp(q, lo, hi) - lo) << L, M) + B) >> sh), unrolled below. */
typedef struct {{
    int32_t lo;   /* window start (the origin); 0 for the full int32 window */
    int32_t w;    /* window width hi - lo */
    int32_t m;    /* M, 0..2^31-1 */
    int32_t b;    /* B, the rounding 2^(sh-1) folded in */
}} rfe_dev_k_t;
static const rfe_dev_k_t rfe_dev_K[{F}] = {{
{aff_table}
}};

static const uint8_t rfe_dev_golden_in[{nin}] = {{
{_c_list(gin, 16)}
}};
static const uint8_t rfe_dev_golden_out[{nout}] = {{
{_c_list(gout, 16)}
}};

static int16_t sig[{n_sig}];
static int32_t feat[{F}];
static int16_t xq[{F}];
static int32_t lp[{C}];
static int32_t last_class;

/* the high word of the signed 64-bit product: one mulh on rv32 (the compiler's widening multiply
 * may expand into four instructions once the operand is a shift) */
static inline int32_t rfe_dev_mulh(int32_t x, int32_t m)
{{
#if defined(__GNUC__) && defined(__riscv) && __riscv_xlen == 32 && defined(__riscv_mul)
    int32_t h;
    __asm__("mulh %0, %1, %2" : "=r"(h) : "r"(x), "r"(m));
    return h;
#else
    return (int32_t)(((int64_t)x * m) >> 32);
#endif
}}

/* a feature outside its window: rare */
#if defined(__GNUC__)
#define RFE_DEV_OUT(c) __builtin_expect((c), 0)
#else
#define RFE_DEV_OUT(c) (c)
#endif

/* clamp to +-lim (lim = 32767, kept in a register) */
static inline int16_t rfe_dev_sat(int32_t v, int32_t lim)
{{
    if (v > lim) v = lim;
    if (v < -lim) v = -lim;
    return (int16_t)v;
}}

static void rfe_dev_affine(void)
{{
    const rfe_dev_k_t *k = rfe_dev_K;
    int32_t lim = 32767;
#if defined(__GNUC__)
    /* opaque: the constants are loaded from the table (1 instruction) instead of built as
     * immediates (2), and the clamp's limit stays in a register */
    __asm__("" : "+r"(k), "+r"(lim));
#endif
    (void)lim;
{aff_body}
}}

int rfe_model_invoke(const int8_t *in, int8_t *out)
{{
    const uint8_t *b = (const uint8_t *)in;
    uint8_t *o = (uint8_t *)out;
    const int16_t *sig_in = sig;
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    /* the wire is little endian: an aligned buffer is read in place, else copied */
    if (((uintptr_t)b & 1u) == 0) sig_in = (const int16_t *)(const void *)b;
    else memcpy(sig, b, sizeof sig);
#else
    int i;
    for (i = 0; i < {n_sig}; ++i) sig[i] = (int16_t)(uint16_t)(b[2 * i] | ((uint32_t)b[2 * i + 1] << 8));
#endif
    {feat_call}
    rfe_dev_affine();
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    if (((uintptr_t)o & 3u) == 0) {{   /* an aligned buffer takes the log-posteriors in place */
        last_class = {prefix}_infer(xq, (int32_t *)(void *)o);
        return 0;
    }}
    last_class = {prefix}_infer(xq, lp);
    memcpy(o, lp, sizeof lp);
#else
    last_class = {prefix}_infer(xq, lp);
    for (int i = 0; i < {C}; ++i) {{
        const uint32_t u = (uint32_t)lp[i];
        o[4 * i] = (uint8_t)u;
        o[4 * i + 1] = (uint8_t)(u >> 8);
        o[4 * i + 2] = (uint8_t)(u >> 16);
        o[4 * i + 3] = (uint8_t)(u >> 24);
    }}
#endif
    return 0;
}}

int32_t rfe_model_last_class(void) {{ return last_class; }}

int rfe_model_selftest(void)
{{
    static uint8_t got[{nout}];
    int i, bad = 0;
    if (rfe_model_invoke((const int8_t *)rfe_dev_golden_in, (int8_t *)got) != 0) return -1;
    for (i = 0; i < {nout}; ++i) bad += got[i] != rfe_dev_golden_out[i];
    return bad;
}}
"""
    (out / "model.h").write_text(h)
    (out / "model.c").write_text(c)
    rep = {"kind": "einsum_device", "set": name, "prefix": prefix, "F": F, "C": C, "zf": int(dev.fx.zf),
           "config": {k: int(getattr(dev.fx, k)) for k in ("D", "K", "L", "R", "C", "F")},
           "input_bytes": nin, "output_bytes": nout, "arena_bytes": arena,
           "budget": instruction_budget(dev.fx, name),
           "golden_output": [int(v) for v in gout.view("<i4")], **(extra or {})}
    (out / "model.json").write_text(json.dumps(rep, indent=2) + "\n")
    return out


# ---- the instruction budget ---------------------------------------------------------------------

BUDGET_FACTOR = 4


def instruction_budget(fx, set_name: str) -> dict:
    """Issue 6 item 6: instructions per inference per device <= 4 x (paper 003's MACs of the
    network's configuration, eqs. 12-14, + the paper's feature OPs of the device, §VI-B1)."""
    from rfedge.evaluate_rfid import feature_ops

    _check_set(set_name)
    D, K, R, C = int(fx.D), int(fx.K), int(fx.R), int(fx.C)
    # eqs. 12-14 with Table IV's leaf column, as rfedge.models.einsum.paper_macs (which imports
    # TensorFlow): einsum (2^(D+1) - 2) R (K^3 + K), leaf 2 * 2^D, mixture R C
    pm = {"total": (2 ** (D + 1) - 2) * R * (K ** 3 + K) + 2 * 2 ** D + R * C}
    # 2 tags x 2 antennas x {rss, phase}, 4 rss-phase pairs, 2 AoA signals, 35 samples, 14 stats, db2 (4 taps)
    fo = feature_ops(8, 4, 2, N_SAMPLES, 14, 4)[set_name]
    total = int(pm["total"]) + int(fo["total"])
    return {"paper_macs": int(pm["total"]), "feature_ops": int(fo["total"]), "factor": BUDGET_FACTOR,
            "instructions_max": BUDGET_FACTOR * total}


# ---- the aggregator as a fourth board -----------------------------------------------------------

def fuse_scores(logposts) -> tuple[np.ndarray, np.ndarray]:
    """(labels (N,), scores (N, C) int64) of the aggregator: score_c = sum_n clamp(lp_n[c], +-2^27)
    (einsum_fixed.fixed_fuse's sum, with the scores the fuser firmware also returns)."""
    from rfedge.einsum_fixed import FUSE_CLAMP, fixed_fuse

    lps = [np.asarray(a, np.int64) for a in logposts]
    s = np.sum([np.clip(a, -FUSE_CLAMP, FUSE_CLAMP) for a in lps], axis=0)
    return fixed_fuse(lps), s


def pack_fuse_input(logposts) -> np.ndarray:
    """(N, 4 n C) uint8: the aggregator's input, device k's C int32 (little endian) after device k-1's."""
    a = np.stack([np.asarray(x, np.int64) for x in logposts], axis=1)  # (N, n, C)
    if a.size and (a.min() < -(1 << 31) or a.max() >= (1 << 31)):
        raise RfedgeError("log-posteriors must be int32", field="logposts")
    return np.ascontiguousarray(a.astype("<i4")).view(np.uint8).reshape(len(a), -1)


def unpack_fuse_output(data, C: int) -> tuple[int, np.ndarray]:
    """(label, C int32 scores) of one aggregator INVOKE answer."""
    b = np.frombuffer(data.tobytes() if isinstance(data, np.ndarray) else bytes(data), np.uint8)
    if b.size != 4 * (C + 1):
        raise RfedgeError(f"expected {4 * (C + 1)} aggregator output bytes, got {b.size}", field="output")
    v = b.view("<i4").astype(np.int64)
    return int(v[0]), v[1:]


def emit_fuser_model(n: int, C: int, out_dir, golden=None) -> Path:
    """Gen dir of the aggregator firmware: input n x C int32 log-posteriors (device order SPR, SA,
    WA), output int32 label then C int32 fused scores; rfe_einsum_fuse (mcu/core/einsum).
    ``golden``: n (1, C) or (N, C) arrays whose first row is the self-test vector."""
    from rfedge.firmware import core_dir

    if not 1 <= n <= 15:
        raise RfedgeError(f"the aggregator fuses 1..15 networks, got {n}", field="n")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for k in ("rfe_einsum.h", "rfe_einsum.c"):
        shutil.copyfile(core_dir() / "einsum" / k, out / k)
    if golden is None:
        # spread over the clamp: values beyond +-2^27 exercise the saturation
        golden = [np.random.default_rng(k).integers(-(1 << 28), 1, (1, C)) for k in range(n)]
    gl = [np.asarray(g, np.int64)[:1] for g in golden]
    gin = pack_fuse_input(gl)[0]
    lab, sc = fuse_scores(gl)
    gout = np.ascontiguousarray(np.concatenate([[lab[0]], sc[0]]).astype("<i4")).view(np.uint8)
    nin, nout = 4 * n * C, 4 * (C + 1)
    (out / "model.h").write_text(f"""/* model.h - paper 003's aggregator: fuses {n} devices' log-posteriors (rfe_einsum_fuse).
 * Generated by rfedge.einsum_device; do not edit. Formats: docs/protocol.md ("Einsum devices"). */
#ifndef RFE_MODEL_H
#define RFE_MODEL_H

#include <stdint.h>

#define RFE_MODEL_FUSE_N {n}
#define RFE_MODEL_CLASSES {C}
#define RFE_MODEL_INPUT_SIZE {nin}     /* {n} x {C} little-endian int32 log2-posteriors (1/256 bit) */
#define RFE_MODEL_OUTPUT_SIZE {nout}    /* int32 label, then {C} int32 fused scores (1/256 bit) */
#define RFE_MODEL_ARENA_SIZE {4 * n * C + 4 * C}
#define RFE_MODEL_RAM_SIZE RFE_MODEL_ARENA_SIZE
#define RFE_MODEL_INPUT_SCALE 0.00390625f
#define RFE_MODEL_INPUT_ZERO_POINT (0)
#define RFE_MODEL_OUTPUT_SCALE 0.00390625f
#define RFE_MODEL_OUTPUT_ZERO_POINT (0)

int rfe_model_invoke(const int8_t *in, int8_t *out);
int rfe_model_selftest(void);

#endif
""")
    (out / "model.c").write_text(f"""/* model.c - the aggregator (see model.h). Generated by rfedge.einsum_device; do not edit. */
#include "model.h"

#include "rfe_einsum.h"

static const uint8_t golden_in[{nin}] = {{
{_c_list(gin, 16)}
}};
static const uint8_t golden_out[{nout}] = {{
{_c_list(gout, 16)}
}};
static int32_t lps[{n}][{C}];
static int32_t score[{C}];

static void put32(uint8_t *o, int32_t v)
{{
    const uint32_t u = (uint32_t)v;
    o[0] = (uint8_t)u; o[1] = (uint8_t)(u >> 8); o[2] = (uint8_t)(u >> 16); o[3] = (uint8_t)(u >> 24);
}}

int rfe_model_invoke(const int8_t *in, int8_t *out)
{{
    const uint8_t *b = (const uint8_t *)in;
    uint8_t *o = (uint8_t *)out;
    const int32_t *rows[{n}];
    int k, c;
    for (k = 0; k < {n}; ++k) {{
        for (c = 0; c < {C}; ++c) {{
            const uint8_t *p = b + 4 * ({C} * k + c);
            lps[k][c] = (int32_t)((uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24));
        }}
        rows[k] = lps[k];
    }}
    put32(o, rfe_einsum_fuse(rows, {n}, {C}, score));
    for (c = 0; c < {C}; ++c) put32(o + 4 + 4 * c, score[c]);
    return 0;
}}

int rfe_model_selftest(void)
{{
    static uint8_t got[{nout}];
    int i, bad = 0;
    if (rfe_model_invoke((const int8_t *)golden_in, (int8_t *)got) != 0) return -1;
    for (i = 0; i < {nout}; ++i) bad += got[i] != golden_out[i];
    return bad;
}}
""")
    (out / "model.json").write_text(json.dumps({"kind": "einsum_fuser", "n": n, "C": C, "input_bytes": nin,
                                                "output_bytes": nout, "arena_bytes": 4 * n * C + 4 * C}, indent=2) + "\n")
    return out


# ---- development networks (no training) ---------------------------------------------------------

PAPER_CONFIGS = {"SPR": (6, 2, 10, 10), "SA": (4, 2, 10, 10), "WA": (5, 2, 10, 10)}  # (D, K, L, R), Table IV


def fitted_random_params(set_name: str, sig: QuantSignals, C: int = 21, seed: int = 0):
    """einsum_format.random_params with paper 003's configuration for ``set_name`` whose
    standardization comes from the device features of ``sig`` (so the leaves see z ~ N(0, 1) and
    the quantized inputs cover their range): for development and tests before a trained run."""
    from rfedge.models import einsum_format

    D, K, L, R = PAPER_CONFIGS[_check_set(set_name)]
    X = calibration_features(set_name, sig)
    p = einsum_format.random_params(X.shape[1], D, K, L, R, C, seed=seed, name=set_name)
    p.x_mean = X.mean(axis=0)
    sd = X.std(axis=0)
    # a constant feature keeps a unit scale (z = x - mean)
    p.x_scale = np.where(sd > 1e-9 * (1.0 + np.abs(p.x_mean)), sd, 1.0)
    return p


def write_fitted_run(dataset, out_run, seed: int = 0, stream=None) -> Path:
    """A run directory like ``rfedge train einsum`` writes (SPR/SA/WA.npz, metrics.json with the
    dataset and the repetition split) holding fitted_random_params instead of trained networks:
    the devices' bit-exactness does not need trained weights (accuracy is then near chance)."""
    from rfedge.data.dataset import Dataset
    from rfedge.einsum_train import split_ids
    from rfedge.fileio import atomic_write_json
    from rfedge.models import einsum_format
    from rfedge.rfid_dsp import dataset_signals

    ds = Dataset.open(dataset)
    sig = quantize_dataset_signals(dataset_signals(ds, stream=stream))
    train, test, desc = split_ids(ds.trials, "repetition")
    out = Path(out_run)
    out.mkdir(parents=True, exist_ok=True)
    C = len(ds.label_names)
    for k in SETS:
        einsum_format.save(fitted_random_params(k, sig.take(train), C=C, seed=seed), out / f"{k}.npz")
    atomic_write_json(out / "metrics.json", {"model": "einsum", "fitted_random": True, "split": "repetition",
                                             "split_description": desc, "n_train": int(len(train)),
                                             "n_test": int(len(test)), "dataset": str(Path(dataset).resolve()),
                                             "label_names": list(ds.label_names), "seed": int(seed)})
    return out
