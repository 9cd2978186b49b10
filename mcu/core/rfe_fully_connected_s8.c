/*
 * rfe_fully_connected_s8.c - FULLY_CONNECTED, int8 x int8 -> int32 -> int8.
 *
 * TFLM accumulates sum((x + input_offset) * w) + bias.  The generator stores each weight row's
 * sum once (wsum), so the inner loop is a plain int8 dot product and the offset term is one
 * multiply per output: input_offset * wsum[o].  Integer addition is exact (and wraps the same
 * way in any order), so this is the same int32 accumulator TFLM gets.
 *
 * Speed (rv32imc has no SIMD; a MAC is at least a weight load, a multiply and an add):
 * - one input vector (batches == 1, the GRU's matrix-vector products): four output rows share
 *   every input load and the loop runs eight inputs per iteration with constant offsets, so the
 *   pointer bumps and the branch are spread over 32 MACs;
 * - several input vectors (1x1 convolutions: one vector per pixel): two pixels x four rows, so
 *   each weight load serves two MACs and each input load four.
 */
#include "rfe_fixedpoint.h"
#include "rfe_kernels.h"

/* the parameters, read once per call: an int8_t store may alias *p, so the compiler would
 * otherwise reload every field for every output */
typedef struct {
    int32_t in_off, out_off, lo, hi, per_channel;
    const int32_t *wsum, *bias, *mult;
    const int8_t *shift;
} fc_k;

static inline int8_t finish(const fc_k *k, int32_t acc, int32_t o)
{
    const int32_t c = k->per_channel ? o : 0;
    if (k->in_off != 0) acc += k->in_off * k->wsum[o];
    if (k->bias) acc += k->bias[o];
    acc = rfe_mbqm(acc, k->mult[c], k->shift[c]) + k->out_off;
    return (int8_t)rfe_clamp(acc, k->lo, k->hi);
}

/* y[o..o+3] of one input vector: four rows share each input load; eight inputs per iteration
 * with constant offsets (the rv32 register file holds the 4 accumulators, 5 pointers and 8
 * inputs without spilling) */
static void rows4(const rfe_fc_params_t *p, const fc_k *k, const int8_t *x, int8_t *y, int32_t o)
{
    const int32_t n = p->n_in;
    const int8_t *w0 = p->weights + o * n, *w1 = w0 + n, *w2 = w1 + n, *w3 = w2 + n;
    const int8_t *xe = x + (n & ~7), *xp = x;
    int32_t a0 = 0, a1 = 0, a2 = 0, a3 = 0;
    while (xp < xe) {
        const int32_t x0 = xp[0], x1 = xp[1], x2 = xp[2], x3 = xp[3], x4 = xp[4], x5 = xp[5], x6 = xp[6], x7 = xp[7];
        a0 += x0 * w0[0] + x1 * w0[1] + x2 * w0[2] + x3 * w0[3] + x4 * w0[4] + x5 * w0[5] + x6 * w0[6] + x7 * w0[7];
        a1 += x0 * w1[0] + x1 * w1[1] + x2 * w1[2] + x3 * w1[3] + x4 * w1[4] + x5 * w1[5] + x6 * w1[6] + x7 * w1[7];
        a2 += x0 * w2[0] + x1 * w2[1] + x2 * w2[2] + x3 * w2[3] + x4 * w2[4] + x5 * w2[5] + x6 * w2[6] + x7 * w2[7];
        a3 += x0 * w3[0] + x1 * w3[1] + x2 * w3[2] + x3 * w3[3] + x4 * w3[4] + x5 * w3[5] + x6 * w3[6] + x7 * w3[7];
        xp += 8;
        w0 += 8; w1 += 8; w2 += 8; w3 += 8;
    }
    for (; xp < x + n; ++xp) {
        const int32_t xi = *xp;
        a0 += xi * *w0++; a1 += xi * *w1++; a2 += xi * *w2++; a3 += xi * *w3++;
    }
    y[o] = finish(k, a0, o);
    y[o + 1] = finish(k, a1, o + 1);
    y[o + 2] = finish(k, a2, o + 2);
    y[o + 3] = finish(k, a3, o + 3);
}

static void row1(const rfe_fc_params_t *p, const fc_k *k, const int8_t *x, int8_t *y, int32_t o)
{
    const int8_t *w = p->weights + o * p->n_in;
    int32_t acc = 0, i;
    for (i = 0; i < p->n_in; ++i) acc += (int32_t)x[i] * w[i];
    y[o] = finish(k, acc, o);
}

/* y0[o..o+3], y1[o..o+3] of two input vectors */
static void pixels2_rows4(const rfe_fc_params_t *p, const fc_k *k, const int8_t *x0, const int8_t *x1, int8_t *y0, int8_t *y1,
                          int32_t o)
{
    const int32_t n = p->n_in;
    const int8_t *w0 = p->weights + o * n, *w1 = w0 + n, *w2 = w1 + n, *w3 = w2 + n;
    int32_t a0 = 0, a1 = 0, a2 = 0, a3 = 0, b0 = 0, b1 = 0, b2 = 0, b3 = 0;
    const int8_t *xe = x0 + (n & ~1);
    while (x0 < xe) {
        const int32_t u0 = x0[0], u1 = x0[1], v0 = x1[0], v1 = x1[1];
        int32_t w;
        w = w0[0]; a0 += u0 * w; b0 += v0 * w;
        w = w0[1]; a0 += u1 * w; b0 += v1 * w;
        w = w1[0]; a1 += u0 * w; b1 += v0 * w;
        w = w1[1]; a1 += u1 * w; b1 += v1 * w;
        w = w2[0]; a2 += u0 * w; b2 += v0 * w;
        w = w2[1]; a2 += u1 * w; b2 += v1 * w;
        w = w3[0]; a3 += u0 * w; b3 += v0 * w;
        w = w3[1]; a3 += u1 * w; b3 += v1 * w;
        x0 += 2; x1 += 2;
        w0 += 2; w1 += 2; w2 += 2; w3 += 2;
    }
    if (n & 1) {
        const int32_t u = *x0, v = *x1;
        a0 += u * *w0; b0 += v * *w0;
        a1 += u * *w1; b1 += v * *w1;
        a2 += u * *w2; b2 += v * *w2;
        a3 += u * *w3; b3 += v * *w3;
    }
    y0[o] = finish(k, a0, o); y0[o + 1] = finish(k, a1, o + 1);
    y0[o + 2] = finish(k, a2, o + 2); y0[o + 3] = finish(k, a3, o + 3);
    y1[o] = finish(k, b0, o); y1[o + 1] = finish(k, b1, o + 1);
    y1[o + 2] = finish(k, b2, o + 2); y1[o + 3] = finish(k, b3, o + 3);
}

void rfe_fully_connected_s8(const rfe_fc_params_t *p, const int8_t *in, int8_t *out)
{
    const int32_t n_in = p->n_in, n_out = p->n_out;
    int32_t b = 0, o;
    fc_k k;
    k.in_off = p->input_offset;
    k.out_off = p->output_offset;
    k.lo = p->act_min;
    k.hi = p->act_max;
    k.per_channel = p->per_channel;
    k.wsum = p->wsum;
    k.bias = p->bias;
    k.mult = p->mult;
    k.shift = p->shift;
    for (; b + 2 <= p->batches; b += 2) {
        const int8_t *x0 = in + b * n_in, *x1 = x0 + n_in;
        int8_t *y0 = out + b * n_out, *y1 = y0 + n_out;
        for (o = 0; o + 4 <= n_out; o += 4) pixels2_rows4(p, &k, x0, x1, y0, y1, o);
        for (; o < n_out; ++o) {
            row1(p, &k, x0, y0, o);
            row1(p, &k, x1, y1, o);
        }
    }
    for (; b < p->batches; ++b) {
        const int8_t *x = in + b * n_in;
        int8_t *y = out + b * n_out;
        for (o = 0; o + 4 <= n_out; o += 4) rows4(p, &k, x, y, o);
        for (; o < n_out; ++o) row1(p, &k, x, y, o);
    }
}
