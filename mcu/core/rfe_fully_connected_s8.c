/*
 * rfe_fully_connected_s8.c - FULLY_CONNECTED, int8 x int8 -> int32 -> int8.
 *
 * TFLM accumulates sum((x + input_offset) * w) + bias.  The generator stores each weight row's
 * sum once (wsum), so the inner loop is a plain int8 dot product and the offset term is one
 * multiply per output: input_offset * wsum[o].  Integer addition is exact, so this is the same
 * int32 accumulator TFLM gets.  Four output rows share each input load.
 */
#include "rfe_fixedpoint.h"
#include "rfe_kernels.h"

static int8_t finish(const rfe_fc_params_t *p, int32_t acc, int32_t o)
{
    const int32_t c = p->per_channel ? o : 0;
    if (p->input_offset != 0) acc += p->input_offset * p->wsum[o];
    if (p->bias) acc += p->bias[o];
    acc = rfe_mbqm(acc, p->mult[c], p->shift[c]) + p->output_offset;
    return (int8_t)rfe_clamp(acc, p->act_min, p->act_max);
}

void rfe_fully_connected_s8(const rfe_fc_params_t *p, const int8_t *in, int8_t *out)
{
    const int32_t n_in = p->n_in;
    int32_t b, o, i;
    for (b = 0; b < p->batches; ++b) {
        const int8_t *x = in + b * n_in;
        int8_t *y = out + b * p->n_out;
        for (o = 0; o + 4 <= p->n_out; o += 4) {
            const int8_t *w0 = p->weights + o * n_in, *w1 = w0 + n_in, *w2 = w1 + n_in, *w3 = w2 + n_in;
            int32_t a0 = 0, a1 = 0, a2 = 0, a3 = 0;
            for (i = 0; i < n_in; ++i) {
                const int32_t xi = x[i];
                a0 += xi * w0[i];
                a1 += xi * w1[i];
                a2 += xi * w2[i];
                a3 += xi * w3[i];
            }
            y[o] = finish(p, a0, o);
            y[o + 1] = finish(p, a1, o + 1);
            y[o + 2] = finish(p, a2, o + 2);
            y[o + 3] = finish(p, a3, o + 3);
        }
        for (; o < p->n_out; ++o) {
            const int8_t *w = p->weights + o * n_in;
            int32_t acc = 0;
            for (i = 0; i < n_in; ++i) acc += (int32_t)x[i] * w[i];
            y[o] = finish(p, acc, o);
        }
    }
}
