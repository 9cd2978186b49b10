/* rfe_mul_s8.c - MUL of int8 tensors (TFLM's MulElementwise): one rescale of the int32 product.
 * Parameters in locals once per call; one call per row (rfe_broadcast_rows_s8), not per element. */
#include "rfe_fixedpoint.h"
#include "rfe_kernels.h"

typedef struct {
    int32_t off1, off2, mult, shift, out_off, lo, hi;
} mul_k;

static void mul_row(const void *ctx, const int8_t *a, const int8_t *b, int32_t sa, int32_t sb, int32_t len, int8_t *out)
{
    const mul_k k = *(const mul_k *)ctx;
    int32_t l;
    for (l = 0; l < len; ++l) {
        const int32_t o = rfe_mbqm((k.off1 + a[l * sa]) * (k.off2 + b[l * sb]), k.mult, k.shift) + k.out_off;
        out[l] = (int8_t)rfe_clamp(o, k.lo, k.hi);
    }
}

void rfe_mul_s8(const rfe_mul_params_t *p, const int8_t *a, const int8_t *b, int8_t *out, int32_t n,
                const rfe_bcast_t *bc)
{
    mul_k k;
    k.off1 = p->in1_offset;
    k.off2 = p->in2_offset;
    k.mult = p->out_mult;
    k.shift = p->out_shift;
    k.out_off = p->output_offset;
    k.lo = p->act_min;
    k.hi = p->act_max;
    if (bc) rfe_broadcast_rows_s8(bc, a, b, out, mul_row, &k);
    else mul_row(&k, a, b, 1, 1, n, out);
}
