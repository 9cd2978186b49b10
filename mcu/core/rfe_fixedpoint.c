/*
 * rfe_fixedpoint.c - exp, 1/(1+x), logistic and tanh on Q-format int32 values.
 *
 * The algorithms (and their constants) are gemmlowp's, which TFLite Micro's int8 LOGISTIC,
 * TANH and SOFTMAX kernels use: exp on [-1/4, 0) by a 4th-order Taylor expansion around -1/8,
 * extended to all negative inputs by a barrel shifter of exp(-2^k) factors, and division by
 * three Newton-Raphson steps started from 48/17 - 32/17 * d.  A value in Q<m>.<31-m> ("m
 * integer bits") has its real value raw / 2^(31-m).
 */
#include "rfe_fixedpoint.h"

/* exp(a) for a in [-1/4, 0), Q0.31 in and out. */
static int32_t exp_on_interval_between_negative_one_quarter_and_0_excl(int32_t a)
{
    const int32_t constant_term = 1895147668;     /* exp(-1/8) */
    const int32_t constant_1_over_3 = 715827883;  /* 1/3 */
    const int32_t x = rfe_wrap_add(a, 1 << 28);   /* a + 1/8 */
    const int32_t x2 = rfe_srdhm(x, x);
    const int32_t x3 = rfe_srdhm(x2, x);
    const int32_t x4 = rfe_srdhm(x2, x2);
    const int32_t x4_over_4 = rfe_rdbpot(x4, 2);
    const int32_t poly = rfe_rdbpot(
        rfe_wrap_add(rfe_srdhm(rfe_wrap_add(x4_over_4, x3), constant_1_over_3), x2), 1);
    return rfe_wrap_add(constant_term, rfe_srdhm(constant_term, rfe_wrap_add(x, poly)));
}

int32_t rfe_fx_exp_on_negative_values(int32_t a, int integer_bits)
{
    static const int32_t multipliers[7] = {  /* exp(-2^k) in Q0.31 for k = -2..4 */
        1672461947, 1302514674, 790015084, 290630308, 39332535, 720401, 242};
    const int fractional_bits = 31 - integer_bits;
    const int32_t one_quarter = (int32_t)1 << (fractional_bits - 2);
    const int32_t mask = one_quarter - 1;
    const int32_t a_mod_quarter_minus_one_quarter = rfe_wrap_sub(a & mask, one_quarter);
    const int32_t remainder = rfe_wrap_sub(a_mod_quarter_minus_one_quarter, a);
    int32_t result = exp_on_interval_between_negative_one_quarter_and_0_excl(
        rfe_srmpot(a_mod_quarter_minus_one_quarter, integer_bits));
    int k;
    for (k = -2; k <= 4; ++k) {
        if (integer_bits > k) {
            const int shift = fractional_bits + k;
            if (remainder & ((int32_t)1 << shift)) result = rfe_srdhm(result, multipliers[k + 2]);
        }
    }
    if (integer_bits > 5) {
        const int32_t clamp = -((int32_t)1 << (36 - integer_bits));   /* -32.0 */
        if (a < clamp) result = 0;
    }
    if (a == 0) result = RFE_INT32_MAX;   /* exactly 1.0 (saturated) */
    return result;
}

/* Newton-Raphson for 1/d with d = (1 + a) / 2 in [1/2, 1): returns x ~ 1/d in Q2.29. */
static int32_t reciprocal_of_half_denominator(int32_t half_denominator)
{
    const int32_t constant_48_over_17 = 1515870810;
    const int32_t constant_neg_32_over_17 = -1010580540;
    const int32_t one_q2 = (int32_t)1 << 29;
    int32_t x = rfe_wrap_add(constant_48_over_17, rfe_srdhm(half_denominator, constant_neg_32_over_17));
    int i;
    for (i = 0; i < 3; ++i) {
        const int32_t half_denominator_times_x = rfe_srdhm(half_denominator, x);
        const int32_t one_minus = rfe_wrap_sub(one_q2, half_denominator_times_x);
        x = rfe_wrap_add(x, rfe_srmpot(rfe_srdhm(x, one_minus), 2));
    }
    return x;
}

/* (a + b) / 2 rounded half away from zero, computed without overflow. */
static int32_t rounding_half_sum(int32_t a, int32_t b)
{
    const int64_t sum = (int64_t)a + (int64_t)b;
    const int64_t sign = sum >= 0 ? 1 : -1;
    return (int32_t)((sum + sign) / 2);
}

int32_t rfe_fx_one_over_one_plus_x(int32_t a)
{
    const int32_t x = reciprocal_of_half_denominator(rounding_half_sum(a, RFE_INT32_MAX));
    return rfe_srmpot(x, 1);   /* x/2 in Q1.30, rescaled to Q0.31 */
}

int32_t rfe_fx_one_minus_x_over_one_plus_x(int32_t a)
{
    const int32_t x = reciprocal_of_half_denominator(rounding_half_sum(a, RFE_INT32_MAX));
    return rfe_srmpot(rfe_wrap_sub(x, (int32_t)1 << 29), 2);
}

int32_t rfe_fx_logistic(int32_t a, int integer_bits)
{
    const int32_t abs_a = a > 0 ? a : rfe_wrap_sub(0, a);
    int32_t positive;
    if (a == 0) return (int32_t)1 << 30;   /* 0.5 */
    positive = rfe_fx_one_over_one_plus_x(rfe_fx_exp_on_negative_values(rfe_wrap_sub(0, abs_a), integer_bits));
    return a > 0 ? positive : rfe_wrap_sub(RFE_INT32_MAX, positive);
}

int32_t rfe_fx_tanh(int32_t a, int integer_bits)
{
    const int32_t n = a < 0 ? a : rfe_wrap_sub(0, a);
    int32_t t;
    if (a == 0) return 0;
    /* exp(2n): the same raw value read with one more integer bit */
    t = rfe_fx_one_minus_x_over_one_plus_x(rfe_fx_exp_on_negative_values(n, integer_bits + 1));
    return a < 0 ? rfe_wrap_sub(0, t) : t;
}
