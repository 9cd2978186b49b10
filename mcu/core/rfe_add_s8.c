/*
 * rfe_add_s8.c - ADD and SUB of int8 tensors with different scales (TFLM's AddFunc and
 * SubElementwise): both inputs are shifted left by left_shift, rescaled to a common scale
 * (each multiplier < 1), added or subtracted, then rescaled to the output.
 *
 * The parameters are read into locals once per call (an int8_t store may alias them, so the
 * compiler would otherwise reload them for every element), the rounding shifts' masks are
 * computed once, and broadcasting makes one call per row (rfe_broadcast_rows_s8), not one per
 * element.
 */
#include "rfe_fixedpoint.h"
#include "rfe_kernels.h"

typedef struct {
    int32_t off1, off2, out_off, ls, m1, m2, mo, lo, hi;
    int e1, e2, eo;
    int32_t mask1, half1, mask2, half2, masko, halfo;
    int subtract;
} add_k;

/* rfe_rdbpot with the exponent's mask and half-mask precomputed: (x < 0) is -(x >> 31) */
static inline int32_t rdbpot_k(int32_t x, int e, int32_t mask, int32_t half)
{
    return (x >> e) + ((x & mask) > half - (x >> 31) ? 1 : 0);
}

static void add_consts(const rfe_add_params_t *p, int subtract, add_k *k)
{
    k->off1 = p->in1_offset;
    k->off2 = p->in2_offset;
    k->out_off = p->output_offset;
    k->ls = p->left_shift;
    k->m1 = p->in1_mult;
    k->m2 = p->in2_mult;
    k->mo = p->out_mult;
    k->lo = p->act_min;
    k->hi = p->act_max;
    /* the multipliers are < 1: shifts <= 0, i.e. rounding right shifts by -shift */
    k->e1 = (int)-p->in1_shift;
    k->e2 = (int)-p->in2_shift;
    k->eo = (int)-p->out_shift;
    k->mask1 = (int32_t)((1u << k->e1) - 1u);
    k->mask2 = (int32_t)((1u << k->e2) - 1u);
    k->masko = (int32_t)((1u << k->eo) - 1u);
    k->half1 = k->mask1 >> 1;
    k->half2 = k->mask2 >> 1;
    k->halfo = k->masko >> 1;
    k->subtract = subtract;
}

static inline int8_t add_one(const add_k *k, int32_t x, int32_t y)
{
    const int32_t a = (int32_t)((uint32_t)(k->off1 + x) << k->ls);
    const int32_t b = (int32_t)((uint32_t)(k->off2 + y) << k->ls);
    const int32_t sa = rdbpot_k(rfe_srdhm(a, k->m1), k->e1, k->mask1, k->half1);
    const int32_t sb = rdbpot_k(rfe_srdhm(b, k->m2), k->e2, k->mask2, k->half2);
    const int32_t raw = k->subtract ? rfe_wrap_sub(sa, sb) : rfe_wrap_add(sa, sb);
    const int32_t o = rdbpot_k(rfe_srdhm(raw, k->mo), k->eo, k->masko, k->halfo) + k->out_off;
    return (int8_t)rfe_clamp(o, k->lo, k->hi);
}

static void add_row(const void *ctx, const int8_t *a, const int8_t *b, int32_t sa, int32_t sb, int32_t len, int8_t *out)
{
    const add_k *k = (const add_k *)ctx;
    int32_t l;
    if (sa == 1 && sb == 1) {
        for (l = 0; l < len; ++l) out[l] = add_one(k, a[l], b[l]);
    } else {
        for (l = 0; l < len; ++l) out[l] = add_one(k, a[l * sa], b[l * sb]);
    }
}

static void add_or_sub(const rfe_add_params_t *p, const int8_t *a, const int8_t *b, int8_t *out, int32_t n,
                       const rfe_bcast_t *bc, int subtract)
{
    add_k k;
    add_consts(p, subtract, &k);
    if (bc) rfe_broadcast_rows_s8(bc, a, b, out, add_row, &k);
    else add_row(&k, a, b, 1, 1, n, out);
}

void rfe_add_s8(const rfe_add_params_t *p, const int8_t *a, const int8_t *b, int8_t *out, int32_t n,
                const rfe_bcast_t *bc)
{
    add_or_sub(p, a, b, out, n, bc, 0);
}

void rfe_sub_s8(const rfe_add_params_t *p, const int8_t *a, const int8_t *b, int8_t *out, int32_t n,
                const rfe_bcast_t *bc)
{
    add_or_sub(p, a, b, out, n, bc, 1);
}
