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
wants xq_f = sat16(rint((x_f - x_mean_f) / x_scale_f * 2^zf)) (einsum_fixed.quantize_inputs). With
the real gain a_f = 2^(zf - s_f) / x_scale_f and offset b_f = x_mean_f 2^zf / x_scale_f:

    sh_f = the largest integer in [0, 62] with rint(a_f 2^sh) < 2^30 and |b_f| 2^sh <= 2^60
    M_f  = rint(a_f 2^sh_f)              (0 <= M < 2^30, int32)
    B_f  = rint(-b_f 2^sh_f)             (|B| <= 2^60, int64)
    xq_f = clamp((q_f M_f + B_f + r_f) >> sh_f, -32767, 32767),  r_f = 2^(sh_f - 1) if sh_f > 0 else 0

with >> the arithmetic (floor) shift of an int64: |q M| < 2^61, so the sum stays below 2^62.
rint is numpy's (half to even) on float64. ``features_to_xq`` is the Python definition; the C is
the generated ``rfe_dev_affine``. It differs from quantizing the float features by at most one
step of xq plus the feature's own fixed-point rounding, which is why the device is compared with
this integer path, not with the float one.
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
M_BITS = 30
B_BITS = 60
SH_MAX = 62
FEAT_FUNC = {"SPR": "rfe_feat_spr", "SA": "rfe_feat_sa", "WA": "rfe_feat_wa"}
FEAT_KERNELS = ("rfe_rfidfeat.h", "rfe_rfidfeat.c")


@dataclass
class FeatureAffine:
    set_name: str
    mult: np.ndarray   # (F,) int64, 0..2^30-1
    bias: np.ndarray   # (F,) int64, |.| <= 2^60
    shift: np.ndarray  # (F,) int64, 0..62


def _check_set(set_name: str) -> str:
    if set_name not in SETS:
        raise RfedgeError(f"expected a device network from {list(SETS)}, got {set_name!r}", field="set_name")
    return set_name


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
    mult, bias, shift = np.zeros(F, np.int64), np.zeros(F, np.int64), np.zeros(F, np.int64)
    for f in range(F):
        sh = SH_MAX
        while sh >= 0 and (np.rint(a[f] * 2.0 ** sh) >= 2.0 ** M_BITS or abs(b[f]) * 2.0 ** sh > 2.0 ** B_BITS):
            sh -= 1
        if sh < 0:
            raise RfedgeError(f"network {fx.name}, feature {f}: gain {a[f]:.3g} or offset {b[f]:.3g} out of the "
                              "affine's range (x_scale too small for the feature's fixed-point scale)", field="x_scale")
        shift[f] = sh
        mult[f] = int(np.rint(a[f] * 2.0 ** sh))
        bias[f] = int(np.rint(-b[f] * 2.0 ** sh))
    return FeatureAffine(set_name, mult, bias, shift)


def features_to_xq(aff: FeatureAffine, Q) -> np.ndarray:
    """(N, F) device features (int32 values) -> (N, F) int16 network inputs (the C's integer steps)."""
    q = np.asarray(Q, np.int64)
    if q.ndim != 2 or q.shape[1] != len(aff.mult):
        raise RfedgeError(f"expected {aff.set_name} features of shape (N, {len(aff.mult)}), got {q.shape}", field="Q")
    if q.size and (q.min() < -(1 << 31) or q.max() >= (1 << 31)):
        raise RfedgeError("device features must be int32", field="Q")
    sh = aff.shift[None]
    r = np.where(sh > 0, np.left_shift(np.int64(1), np.maximum(sh - 1, 0)), 0)
    v = (q * aff.mult[None] + aff.bias[None] + r) >> sh
    return np.clip(v, -32767, 32767).astype(np.int16)


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


def _int64_lit(v: int) -> str:
    v = int(v)
    # INT64_C keeps the literal 64-bit on ILP32; -2^63 never occurs (|B| <= 2^60)
    return f"INT64_C({v})"


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
    # B + 2^(sh-1): the rounding folded into the constant (|B| <= 2^60, so no overflow)
    bias_r = [int(b) + ((1 << (int(sh) - 1)) if sh > 0 else 0) for b, sh in zip(dev.aff.bias, dev.aff.shift)]
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
        feat_call = ("rfe_feat_spr((const int16_t (*)[2][RFE_FEAT_N])sig,\n"
                     "                 (const int16_t (*)[2][RFE_FEAT_N])(sig + 4 * RFE_FEAT_N), feat);")
    else:
        feat_call = f"{FEAT_FUNC[name]}((const int16_t (*)[RFE_FEAT_N])sig, feat);"
    c = f"""/* model.c - device {name}: see model.h. Generated by rfedge.einsum_device; do not edit. */
#include "model.h"

#include <stdint.h>
#include <string.h>

#include "rfe_rfidfeat.h"
#include "{prefix}.h"

typedef char rfe_dev_f_check[({P}_F == {F} && RFE_FEAT_{name}_N == {F} && {P}_C == {C}) ? 1 : -1];

/* Feature affine (rfedge/einsum_device.py): xq = clamp((q * M + B + round) >> sh, +-32767). */
static const int32_t rfe_dev_M[{F}] = {{
{_c_list(dev.aff.mult)}
}};
static const int64_t rfe_dev_B[{F}] = {{
{chr(10).join('    ' + ', '.join(_int64_lit(v) for v in bias_r[i:i + 4]) + ',' for i in range(0, F, 4))}
}};
static const uint8_t rfe_dev_sh[{F}] = {{
{_c_list(dev.aff.shift)}
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

/* B here already holds B + 2^(sh-1) (the rounding term folded in at generation time). */
static int16_t rfe_dev_affine(int32_t q, int32_t m, int64_t b, uint32_t sh)
{{
    const int64_t t = (int64_t)q * m + b;
    int32_t v;
    if (sh >= 32) {{
        /* floor(t / 2^sh) = floor(floor(t / 2^32) / 2^(sh-32)): the high word, then a 32-bit shift */
        const int32_t hi = (int32_t)(t >> 32);
        v = hi >> (sh - 32);
    }} else {{
        const int64_t w = t >> sh;   /* arithmetic shift: floor */
        if (w > 32767) return 32767;
        if (w < -32767) return -32767;
        v = (int32_t)w;
    }}
    if (v > 32767) return 32767;
    if (v < -32767) return -32767;
    return (int16_t)v;
}}

int rfe_model_invoke(const int8_t *in, int8_t *out)
{{
    const uint8_t *b = (const uint8_t *)in;
    uint8_t *o = (uint8_t *)out;
    int i;
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    memcpy(sig, b, sizeof sig);   /* the wire is little endian: a copy (the buffer may be unaligned) */
#else
    for (i = 0; i < {n_sig}; ++i) sig[i] = (int16_t)(uint16_t)(b[2 * i] | ((uint32_t)b[2 * i + 1] << 8));
#endif
    {feat_call}
    for (i = 0; i < {F}; ++i) xq[i] = rfe_dev_affine(feat[i], rfe_dev_M[i], rfe_dev_B[i], rfe_dev_sh[i]);
    last_class = {prefix}_infer(xq, lp);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    memcpy(o, lp, sizeof lp);
#else
    for (i = 0; i < {C}; ++i) {{
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
