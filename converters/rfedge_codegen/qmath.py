"""TFLite's quantization arithmetic in Python, exactly as TFLite Micro's Prepare() functions and
kernels do it (double or float where they use double or float), for three uses:

* the constants of each op (multipliers, shifts, clamps), computed once at generation time;
* the 256-entry tables of LOGISTIC and TANH (their int8 input has only 256 values, so the
  gemmlowp fixed-point functions are evaluated here once instead of on the MCU at every call);
* a readable reference for the per-op tests.

Integers are Python ints kept in int32 range explicitly (``_i32`` wraps like C).
"""

from __future__ import annotations

import math

import numpy as np

INT32_MIN = -(1 << 31)
INT32_MAX = (1 << 31) - 1


def _i32(x: int) -> int:
    """Two's-complement wrap to int32 (gemmlowp's plain Add/Sub on int32)."""
    x &= 0xFFFFFFFF
    return x - (1 << 32) if x & 0x80000000 else x


def round_half_away(x: float) -> int:
    """std::round / TfLiteRound: nearest integer, ties away from zero (exact for doubles)."""
    r = math.floor(abs(x) + 0.5)
    return int(r) if x >= 0 else -int(r)


def quantize_multiplier(m: float) -> tuple[int, int]:
    """QuantizeMultiplier: (q, shift) with m = q * 2^(shift - 31), q in [2^30, 2^31)."""
    if m == 0.0:
        return 0, 0
    frac, shift = math.frexp(m)
    q = round_half_away(frac * (1 << 31))
    if q == 1 << 31:
        q //= 2
        shift += 1
    if shift < -31:
        shift, q = 0, 0
    return q, shift


def quantize_multiplier_lt1(m: float) -> tuple[int, int]:
    """QuantizeMultiplierSmallerThanOneExp (0 < m < 1): shift <= 0."""
    if not 0.0 < m < 1.0:
        raise ValueError(f"multiplier {m} not in (0, 1)")
    return quantize_multiplier(m)


def quantize_multiplier_gt1(m: float) -> tuple[int, int]:
    if not m > 1.0:
        raise ValueError(f"multiplier {m} not > 1")
    return quantize_multiplier(m)


def f32(x) -> np.float32:
    return np.float32(x)


def activation_range(activation: str, scale: float, zero_point: int, qmin: int = -128, qmax: int = 127):
    """CalculateActivationRangeQuantized: the int8 clamp of a fused activation (float arithmetic)."""

    def q(f: float) -> int:
        t = float(f32(f) / f32(scale))          # float division, exact float32 value
        return zero_point + round_half_away(t)

    if activation == "NONE":
        return qmin, qmax
    if activation == "RELU":
        return max(qmin, q(0.0)), qmax
    if activation == "RELU6":
        return max(qmin, q(0.0)), min(qmax, q(6.0))
    if activation == "RELU_N1_TO_1":
        return max(qmin, q(-1.0)), min(qmax, q(1.0))
    raise ValueError(activation)


# ---- integer primitives (rfe_fixedpoint.h) ----------------------------------------------------

def srdhm(a: int, b: int) -> int:
    """SaturatingRoundingDoublingHighMul."""
    if a == INT32_MIN and b == INT32_MIN:
        return INT32_MAX
    ab = a * b
    nudge = (1 << 30) if ab >= 0 else 1 - (1 << 30)
    v = ab + nudge
    return v >> 31 if v >= 0 else -((-v) >> 31)     # C division truncates toward zero


def rdbpot(x: int, exponent: int) -> int:
    """RoundingDivideByPOT: x / 2^exponent, ties away from zero."""
    mask = (1 << exponent) - 1
    remainder = x & mask
    threshold = (mask >> 1) + (1 if x < 0 else 0)
    return (x >> exponent) + (1 if remainder > threshold else 0)


def srmpot(x: int, exponent: int) -> int:
    """SaturatingRoundingMultiplyByPOT."""
    if exponent == 0:
        return x
    if exponent < 0:
        return rdbpot(x, -exponent)
    threshold = (1 << (31 - exponent)) - 1
    if x > threshold:
        return INT32_MAX
    if x < -threshold:
        return INT32_MIN
    return _i32(x << exponent)


def mbqm(x: int, mult: int, shift: int) -> int:
    """MultiplyByQuantizedMultiplier (double rounding, TFLM's default build)."""
    left = shift if shift > 0 else 0
    right = 0 if shift > 0 else -shift
    return rdbpot(srdhm(_i32(x << left), mult), right)


def mbqm_lt1(x: int, mult: int, shift: int) -> int:
    return rdbpot(srdhm(x, mult), -shift)


def mbqm_gt1(x: int, mult: int, shift: int) -> int:
    return srdhm(_i32(x << shift), mult)


# ---- gemmlowp fixed-point functions (rfe_fixedpoint.c) ----------------------------------------

def _exp_quarter(a: int) -> int:
    constant_term, one_third = 1895147668, 715827883
    x = _i32(a + (1 << 28))
    x2 = srdhm(x, x)
    x3 = srdhm(x2, x)
    x4 = srdhm(x2, x2)
    x4_over_4 = rdbpot(x4, 2)
    poly = rdbpot(_i32(srdhm(_i32(x4_over_4 + x3), one_third) + x2), 1)
    return _i32(constant_term + srdhm(constant_term, _i32(x + poly)))


_EXP_MULTIPLIERS = {-2: 1672461947, -1: 1302514674, 0: 790015084, 1: 290630308, 2: 39332535, 3: 720401, 4: 242}


def exp_on_negative_values(a: int, integer_bits: int) -> int:
    fb = 31 - integer_bits
    quarter = 1 << (fb - 2)
    a_mod = _i32((a & (quarter - 1)) - quarter)
    remainder = _i32(a_mod - a)
    result = _exp_quarter(srmpot(a_mod, integer_bits))
    for k, m in _EXP_MULTIPLIERS.items():
        if integer_bits > k and remainder & (1 << (fb + k)):
            result = srdhm(result, m)
    if integer_bits > 5 and a < -(1 << (36 - integer_bits)):
        result = 0
    if a == 0:
        result = INT32_MAX
    return result


def _reciprocal_half_denominator(a: int) -> int:
    s = a + INT32_MAX
    hd = (s + (1 if s >= 0 else -1))
    hd = hd // 2 if hd >= 0 else -((-hd) // 2)        # RoundingHalfSum, C truncation
    x = _i32(1515870810 + srdhm(hd, -1010580540))
    for _ in range(3):
        one_minus = _i32((1 << 29) - srdhm(hd, x))
        x = _i32(x + srmpot(srdhm(x, one_minus), 2))
    return x


def one_over_one_plus_x(a: int) -> int:
    return srmpot(_reciprocal_half_denominator(a), 1)


def one_minus_x_over_one_plus_x(a: int) -> int:
    return srmpot(_i32(_reciprocal_half_denominator(a) - (1 << 29)), 2)


def fx_logistic(a: int, integer_bits: int) -> int:
    if a == 0:
        return 1 << 30
    abs_a = a if a > 0 else _i32(-a)
    pos = one_over_one_plus_x(exp_on_negative_values(_i32(-abs_a), integer_bits))
    return pos if a > 0 else _i32(INT32_MAX - pos)


def fx_tanh(a: int, integer_bits: int) -> int:
    if a == 0:
        return 0
    n = a if a < 0 else _i32(-a)
    t = one_minus_x_over_one_plus_x(exp_on_negative_values(n, integer_bits + 1))
    return _i32(-t) if a < 0 else t


# ---- LOGISTIC / TANH (int8) -------------------------------------------------------------------

def calculate_input_radius(input_integer_bits: int, input_left_shift: int, total_signed_bits: int = 31) -> int:
    """CalculateInputRadius (all terms exact in double, so an integer floor)."""
    if input_left_shift < 0:
        raise ValueError("negative input_left_shift")
    return (((1 << input_integer_bits) - 1) << (total_signed_bits - input_integer_bits)) >> input_left_shift


def act_params(input_scale: float, input_zero_point: int) -> dict:
    """TFLM's Prepare for int8 LOGISTIC and TANH: the input rescaled to Q4.27."""
    frac, left_shift = math.frexp(float(input_scale) * float(1 << 27))
    mult = round_half_away(frac * (1 << 31))
    if mult >= 1 << 31:
        raise ValueError("input multiplier overflows int32")
    return {"input_zero_point": int(input_zero_point), "input_range_radius": calculate_input_radius(4, left_shift),
            "input_multiplier": mult, "input_left_shift": left_shift}


def _activation_s8(x: int, p: dict, is_tanh: bool) -> int:
    v = x - p["input_zero_point"]
    if v <= -p["input_range_radius"]:
        return -128
    if v >= p["input_range_radius"]:
        return 127
    q4 = mbqm(v, p["input_multiplier"], p["input_left_shift"])
    y = rdbpot(fx_tanh(q4, 4), 24) if is_tanh else rdbpot(fx_logistic(q4, 4), 23) - 128
    return max(-128, min(127, y))


def logistic_s8(x: int, p: dict) -> int:
    """TFLM's int8 LOGISTIC of one value (output scale 1/256, zero point -128)."""
    return _activation_s8(x, p, False)


def tanh_s8(x: int, p: dict) -> int:
    """TFLM's int8 TANH of one value (output scale 1/128, zero point 0)."""
    return _activation_s8(x, p, True)


def lut_s8(fn, p: dict) -> np.ndarray:
    """The op as a table over its 256 inputs, indexed by x + 128."""
    return np.array([fn(x, p) for x in range(-128, 128)], np.int8)


# ---- SOFTMAX (int8 -> int8) --------------------------------------------------------------------

def softmax_params(beta: float, input_scale: float) -> dict:
    """TFLM's CalculateSoftmaxParams for int8: PreprocessSoftmaxScaling with 5 integer bits."""
    real = min(float(f32(beta)) * float(input_scale) * float(1 << 26), float((1 << 31) - 1))
    mult, left_shift = quantize_multiplier_gt1(real)
    diff_min = -calculate_input_radius(5, left_shift)
    return {"input_multiplier": mult, "input_left_shift": left_shift, "diff_min": diff_min}


def softmax_s8(row, p: dict) -> np.ndarray:
    """One row, for tests: TFLM's quantized reference Softmax."""
    row = [int(v) for v in row]
    mx = max(row)
    total = 0
    for v in row:
        d = v - mx
        if d >= p["diff_min"]:
            total = _i32(total + rdbpot(exp_on_negative_values(mbqm_gt1(d, p["input_multiplier"],
                                                                        p["input_left_shift"]), 5), 12))
    headroom = 32 - total.bit_length() if total > 0 else (0 if total < 0 else 32)
    scale = one_over_one_plus_x(_i32(((total << headroom) & 0xFFFFFFFF) - (1 << 31)))
    exponent = (12 - headroom) + 31 - 8
    out = []
    for v in row:
        d = v - mx
        if d >= p["diff_min"]:
            e = exp_on_negative_values(mbqm_gt1(d, p["input_multiplier"], p["input_left_shift"]), 5)
            out.append(max(-128, min(127, rdbpot(srdhm(scale, e), exponent) - 128)))
        else:
            out.append(-128)
    return np.array(out, np.int8)
