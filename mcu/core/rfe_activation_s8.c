/*
 * rfe_activation_s8.c - LOGISTIC and TANH on int8 (TFLM's reference_integer_ops::Logistic and
 * ::Tanh): inputs beyond the range radius saturate; the rest are rescaled to Q4.27, run through
 * gemmlowp's fixed-point logistic/tanh and rounded to the output (scale 1/256, zero point -128
 * for LOGISTIC; scale 1/128, zero point 0 for TANH).  rfe_lut_s8 applies a table of them.
 */
#include "rfe_fixedpoint.h"
#include "rfe_kernels.h"

/* x - zero point beyond the range radius saturates; otherwise it is rescaled to Q4.27 and mapped
 * by gemmlowp's logistic (output Q0.31 -> /2^23 - 128) or tanh (-> /2^24). */
static void activation(const rfe_act_params_t *p, const int8_t *in, int8_t *out, int32_t n, int is_tanh)
{
    int32_t i;
    for (i = 0; i < n; ++i) {
        const int32_t x = (int32_t)in[i] - p->input_zero_point;
        if (x <= -p->input_range_radius) {
            out[i] = -128;
        } else if (x >= p->input_range_radius) {
            out[i] = 127;
        } else {
            const int32_t q4 = rfe_mbqm(x, p->input_multiplier, p->input_left_shift);
            const int32_t y = is_tanh ? rfe_rdbpot(rfe_fx_tanh(q4, 4), 24)
                                      : rfe_rdbpot(rfe_fx_logistic(q4, 4), 23) - 128;
            out[i] = (int8_t)rfe_clamp(y, -128, 127);
        }
    }
}

void rfe_logistic_s8(const rfe_act_params_t *p, const int8_t *in, int8_t *out, int32_t n)
{
    activation(p, in, out, n, 0);
}

void rfe_tanh_s8(const rfe_act_params_t *p, const int8_t *in, int8_t *out, int32_t n)
{
    activation(p, in, out, n, 1);
}

void rfe_lut_s8(const int8_t *lut, const int8_t *in, int8_t *out, int32_t n)
{
    int32_t i;
    for (i = 0; i < n; ++i) out[i] = lut[(int32_t)in[i] + 128];
}
