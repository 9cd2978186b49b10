/*
 * rfe_softmax_s8.c - SOFTMAX int8 -> int8 (TFLM's quantized reference Softmax): differences to
 * the row maximum are rescaled to Q5.26, exponentiated in fixed point, summed in Q12.19, and
 * each exp is multiplied by the reciprocal of the sum.  Differences below diff_min give -128.
 */
#include "rfe_fixedpoint.h"
#include "rfe_kernels.h"

static int count_leading_zeros(uint32_t x)
{
    int n = 0;
    if (x == 0) return 32;
    while (!(x & 0x80000000u)) {
        x <<= 1;
        ++n;
    }
    return n;
}

void rfe_softmax_s8(const rfe_softmax_params_t *p, const int8_t *in, int8_t *out, int32_t rows, int32_t depth)
{
    int32_t r, c;
    for (r = 0; r < rows; ++r) {
        const int8_t *x = in + r * depth;
        int8_t *y = out + r * depth;
        int32_t max_in_row = -128, sum_of_exps = 0, shifted_scale, exponent;
        int headroom;
        for (c = 0; c < depth; ++c) max_in_row = x[c] > max_in_row ? x[c] : max_in_row;
        for (c = 0; c < depth; ++c) {
            const int32_t diff = (int32_t)x[c] - max_in_row;
            if (diff >= p->diff_min) {
                const int32_t scaled = rfe_mbqm_gt1(diff, p->input_multiplier, p->input_left_shift);
                sum_of_exps = rfe_wrap_add(sum_of_exps, rfe_rdbpot(rfe_fx_exp_on_negative_values(scaled, 5), 12));
            }
        }
        headroom = count_leading_zeros((uint32_t)sum_of_exps);
        shifted_scale = rfe_fx_one_over_one_plus_x(
            (int32_t)(((uint32_t)sum_of_exps << headroom) - ((uint32_t)1 << 31)));
        exponent = (12 - headroom) + 31 - 8;
        for (c = 0; c < depth; ++c) {
            const int32_t diff = (int32_t)x[c] - max_in_row;
            if (diff >= p->diff_min) {
                const int32_t scaled = rfe_mbqm_gt1(diff, p->input_multiplier, p->input_left_shift);
                const int32_t e = rfe_fx_exp_on_negative_values(scaled, 5);
                const int32_t o = rfe_rdbpot(rfe_srdhm(shifted_scale, e), exponent) - 128;
                y[c] = (int8_t)rfe_clamp(o, -128, 127);
            } else {
                y[c] = -128;
            }
        }
    }
}
