/* rfe_mul_s8.c - MUL of int8 tensors (TFLM's MulElementwise): one rescale of the int32 product. */
#include "rfe_fixedpoint.h"
#include "rfe_kernels.h"

static int8_t mul_one(const void *params, int8_t x, int8_t y)
{
    const rfe_mul_params_t *p = (const rfe_mul_params_t *)params;
    const int32_t prod = (p->in1_offset + x) * (p->in2_offset + y);
    const int32_t o = rfe_mbqm(prod, p->out_mult, p->out_shift) + p->output_offset;
    return (int8_t)rfe_clamp(o, p->act_min, p->act_max);
}

void rfe_mul_s8(const rfe_mul_params_t *p, const int8_t *a, const int8_t *b, int8_t *out, int32_t n,
                const rfe_bcast_t *bc)
{
    rfe_broadcast_s8(bc, n, a, b, out, mul_one, p);
}
