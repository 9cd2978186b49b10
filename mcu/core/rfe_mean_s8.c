/* rfe_mean_s8.c - MEAN of int8 over contiguous axes (TFLM's QuantizedMeanOrSum): the int32 sum
 * minus count * zero point, times a multiplier that already includes 1/count. */
#include "rfe_fixedpoint.h"
#include "rfe_kernels.h"

void rfe_mean_s8(const rfe_mean_params_t *p, const int8_t *in, int8_t *out)
{
    int32_t o, i, r;
    for (o = 0; o < p->outer; ++o) {
        const int8_t *base = in + o * p->reduced * p->inner;
        for (i = 0; i < p->inner; ++i) {
            int32_t sum = 0, v;
            for (r = 0; r < p->reduced; ++r) sum += base[r * p->inner + i];
            sum -= p->input_zero_point * p->reduced;
            v = rfe_mbqm(sum, p->mult, p->shift) + p->output_zero_point;
            *out++ = (int8_t)rfe_clamp(v, -128, 127);
        }
    }
}
