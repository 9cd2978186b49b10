/*
 * rfe_add_s8.c - ADD and SUB of int8 tensors with different scales (TFLM's AddFunc and
 * SubElementwise): both inputs are shifted left by left_shift, rescaled to a common scale
 * (each multiplier < 1), added or subtracted, then rescaled to the output.
 */
#include "rfe_fixedpoint.h"
#include "rfe_kernels.h"

static int8_t add_or_sub(const rfe_add_params_t *p, int8_t x, int8_t y, int subtract)
{
    const int32_t a = (int32_t)((uint32_t)(p->in1_offset + x) << p->left_shift);
    const int32_t b = (int32_t)((uint32_t)(p->in2_offset + y) << p->left_shift);
    const int32_t sa = rfe_mbqm_lt1(a, p->in1_mult, p->in1_shift);
    const int32_t sb = rfe_mbqm_lt1(b, p->in2_mult, p->in2_shift);
    const int32_t raw = subtract ? rfe_wrap_sub(sa, sb) : rfe_wrap_add(sa, sb);
    const int32_t o = rfe_mbqm_lt1(raw, p->out_mult, p->out_shift) + p->output_offset;
    return (int8_t)rfe_clamp(o, p->act_min, p->act_max);
}

static int8_t add_one(const void *p, int8_t x, int8_t y) { return add_or_sub((const rfe_add_params_t *)p, x, y, 0); }

static int8_t sub_one(const void *p, int8_t x, int8_t y) { return add_or_sub((const rfe_add_params_t *)p, x, y, 1); }

void rfe_add_s8(const rfe_add_params_t *p, const int8_t *a, const int8_t *b, int8_t *out, int32_t n,
                const rfe_bcast_t *bc)
{
    rfe_broadcast_s8(bc, n, a, b, out, add_one, p);
}

void rfe_sub_s8(const rfe_add_params_t *p, const int8_t *a, const int8_t *b, int8_t *out, int32_t n,
                const rfe_bcast_t *bc)
{
    rfe_broadcast_s8(bc, n, a, b, out, sub_one, p);
}
