/*
 * rfe_fixedpoint.h - the integer arithmetic of TFLite's int8 kernels, as portable C99.
 *
 * Written from the rules of TFLite / TFLite Micro (tensorflow/lite/kernels/internal/common.h,
 * gemmlowp fixedpoint.h): a real multiplier M is stored as a Q0.31 significand `mult` in
 * [2^30, 2^31) and an exponent `shift` (M = mult * 2^(shift - 31)); products are rounded twice,
 * first by a saturating rounding doubling high multiply, then by a rounding right shift
 * (ties away from zero).  Every function here is exact: the generated code is bit-exact with
 * TFLM's reference kernels because it performs these same operations in the same order.
 *
 * Signed overflow is avoided by doing wrapping arithmetic on uint32_t; right shifts of negative
 * values are assumed arithmetic (true of every compiler we target, and relied on by TFLM too).
 */
#ifndef RFE_FIXEDPOINT_H
#define RFE_FIXEDPOINT_H

#include <stdint.h>

#define RFE_INT32_MIN ((int32_t)(-2147483647 - 1))
#define RFE_INT32_MAX ((int32_t)2147483647)

/* a + b and a - b with two's-complement wrap-around (gemmlowp's plain Add/Sub on int32). */
static inline int32_t rfe_wrap_add(int32_t a, int32_t b) { return (int32_t)((uint32_t)a + (uint32_t)b); }
static inline int32_t rfe_wrap_sub(int32_t a, int32_t b) { return (int32_t)((uint32_t)a - (uint32_t)b); }

/* round(a * b / 2^31) as TFLite's SaturatingRoundingDoublingHighMul: (ab + nudge) / 2^31 truncated,
 * nudge = 2^30 for ab >= 0 and 1 - 2^30 below; the single overflow case (-1 * -1) saturates.
 * For ab < 0 the truncating division is the ceiling: ceil((ab + 1 - 2^30) / 2^31) =
 * floor((ab + 1 - 2^30 + 2^31 - 1) / 2^31) = floor((ab + 2^30) / 2^31), the same expression as for
 * ab >= 0, so one add and one arithmetic shift do it (no branch, no 64-bit negation on rv32). */
static inline int32_t rfe_srdhm(int32_t a, int32_t b)
{
    if (a == RFE_INT32_MIN && b == RFE_INT32_MIN) return RFE_INT32_MAX;
    return (int32_t)(((int64_t)a * (int64_t)b + ((int64_t)1 << 30)) >> 31);
}

/* x / 2^exponent rounded to nearest, ties away from zero (0 <= exponent <= 31). */
static inline int32_t rfe_rdbpot(int32_t x, int exponent)
{
    const int32_t mask = (int32_t)((1u << exponent) - 1u);
    const int32_t remainder = x & mask;
    const int32_t threshold = (mask >> 1) + (x < 0 ? 1 : 0);
    return (x >> exponent) + (remainder > threshold ? 1 : 0);
}

/* x * 2^exponent, saturating (exponent > 0), or rounding (exponent < 0). */
static inline int32_t rfe_srmpot(int32_t x, int exponent)
{
    int32_t threshold;
    if (exponent == 0) return x;
    if (exponent < 0) return rfe_rdbpot(x, -exponent);
    threshold = (int32_t)(((int32_t)1 << (31 - exponent)) - 1);
    if (x > threshold) return RFE_INT32_MAX;
    if (x < -threshold) return RFE_INT32_MIN;
    return (int32_t)((uint32_t)x << exponent);
}

/* x * M for M = mult * 2^(shift - 31), any shift (TFLite's MultiplyByQuantizedMultiplier). */
static inline int32_t rfe_mbqm(int32_t x, int32_t mult, int32_t shift)
{
    const int left = shift > 0 ? (int)shift : 0;
    const int right = shift > 0 ? 0 : (int)-shift;
    return rfe_rdbpot(rfe_srdhm((int32_t)((uint32_t)x << left), mult), right);
}

/* x * M for M < 1 (shift <= 0): ...SmallerThanOneExp. */
static inline int32_t rfe_mbqm_lt1(int32_t x, int32_t mult, int32_t shift)
{
    return rfe_rdbpot(rfe_srdhm(x, mult), (int)-shift);
}

/* x * M for M > 1 (shift >= 0): ...GreaterThanOne (no final rounding shift). */
static inline int32_t rfe_mbqm_gt1(int32_t x, int32_t mult, int32_t shift)
{
    return rfe_srdhm((int32_t)((uint32_t)x << shift), mult);
}

static inline int32_t rfe_clamp(int32_t x, int32_t lo, int32_t hi)
{
    return x < lo ? lo : (x > hi ? hi : x);
}

/* gemmlowp's transcendental functions on raw fixed-point values (rfe_fixedpoint.c).
 * `integer_bits` is the number of integer bits of the input format (Q<ib>.<31-ib>);
 * results are Q0.31. */
int32_t rfe_fx_exp_on_negative_values(int32_t a, int integer_bits);
int32_t rfe_fx_one_over_one_plus_x(int32_t a);           /* 1/(1+x) for x in [0,1) */
int32_t rfe_fx_one_minus_x_over_one_plus_x(int32_t a);   /* (1-x)/(1+x) for x in [0,1) */
int32_t rfe_fx_logistic(int32_t a, int integer_bits);
int32_t rfe_fx_tanh(int32_t a, int integer_bits);

#endif /* RFE_FIXEDPOINT_H */
