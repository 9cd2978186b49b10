/*
 * rfe_conv_s8.c - CONV_2D and DEPTHWISE_CONV_2D, per-channel int8 (TFLM's ConvPerChannel and
 * DepthwiseConvPerChannel): taps outside the input are skipped, i.e. they read the zero point.
 */
#include "rfe_fixedpoint.h"
#include "rfe_kernels.h"

/* Channels of the depthwise layer are processed in blocks of RFE_DW_BLOCK with their
 * accumulators on the stack, so the innermost loop runs over contiguous channels. */
#define RFE_DW_BLOCK 32

typedef void (*pixel_fn)(const rfe_conv_params_t *p, const int8_t *img, int32_t y0, int32_t x0, int8_t *out);

static inline int8_t requantize(const rfe_conv_params_t *p, int32_t acc, int32_t oc)
{
    const int32_t c = p->per_channel ? oc : 0;
    if (p->bias) acc += p->bias[oc];
    acc = rfe_mbqm(acc, p->mult[c], p->shift[c]) + p->output_offset;
    return (int8_t)rfe_clamp(acc, p->act_min, p->act_max);
}

/* Calls `pixel` for every output pixel with the input coordinates of its window's corner. */
static void for_each_pixel(const rfe_conv_params_t *p, const int8_t *in, int8_t *out, pixel_fn pixel)
{
    int32_t b, oy, ox;
    for (b = 0; b < p->batches; ++b) {
        const int8_t *img = in + b * p->in_h * p->in_w * p->in_c;
        for (oy = 0; oy < p->out_h; ++oy) {
            for (ox = 0; ox < p->out_w; ++ox) {
                pixel(p, img, oy * p->stride_h - p->pad_h, ox * p->stride_w - p->pad_w, out);
                out += p->out_c;
            }
        }
    }
}

static void conv_pixel(const rfe_conv_params_t *p, const int8_t *img, int32_t y0, int32_t x0, int8_t *out)
{
    int32_t oc, ky, kx, ic;
    for (oc = 0; oc < p->out_c; ++oc) {
        const int8_t *w = p->weights + oc * p->k_h * p->k_w * p->in_c;
        int32_t acc = 0;
        for (ky = 0; ky < p->k_h; ++ky) {
            const int32_t iy = y0 + ky * p->dil_h;
            if (iy < 0 || iy >= p->in_h) continue;
            for (kx = 0; kx < p->k_w; ++kx) {
                const int32_t ix = x0 + kx * p->dil_w;
                const int8_t *xi, *wi;
                if (ix < 0 || ix >= p->in_w) continue;
                xi = img + (iy * p->in_w + ix) * p->in_c;
                wi = w + (ky * p->k_w + kx) * p->in_c;
                if (p->wsum) {
                    for (ic = 0; ic < p->in_c; ++ic) acc += (int32_t)xi[ic] * wi[ic];
                } else {
                    for (ic = 0; ic < p->in_c; ++ic) acc += ((int32_t)xi[ic] + p->input_offset) * wi[ic];
                }
            }
        }
        /* wsum is only given when no tap ever falls outside the input */
        if (p->wsum) acc += p->input_offset * p->wsum[oc];
        out[oc] = requantize(p, acc, oc);
    }
}

static void depthwise_pixel(const rfe_conv_params_t *p, const int8_t *img, int32_t y0, int32_t x0, int8_t *out)
{
    const int32_t m = p->depth_multiplier, oc_n = p->out_c;
    int32_t acc[RFE_DW_BLOCK];
    int32_t ky, kx, c0, c;
    for (c0 = 0; c0 < oc_n; c0 += RFE_DW_BLOCK) {
        const int32_t nc = oc_n - c0 < RFE_DW_BLOCK ? oc_n - c0 : RFE_DW_BLOCK;
        for (c = 0; c < nc; ++c) acc[c] = 0;
        for (ky = 0; ky < p->k_h; ++ky) {
            const int32_t iy = y0 + ky * p->dil_h;
            if (iy < 0 || iy >= p->in_h) continue;
            for (kx = 0; kx < p->k_w; ++kx) {
                const int32_t ix = x0 + kx * p->dil_w;
                const int8_t *xp = img + (iy * p->in_w + ix) * p->in_c;
                const int8_t *wp = p->weights + (ky * p->k_w + kx) * oc_n + c0;
                if (ix < 0 || ix >= p->in_w) continue;
                if (m == 1) {
                    xp += c0;
                    for (c = 0; c < nc; ++c) acc[c] += ((int32_t)xp[c] + p->input_offset) * wp[c];
                } else {
                    for (c = 0; c < nc; ++c) acc[c] += ((int32_t)xp[(c0 + c) / m] + p->input_offset) * wp[c];
                }
            }
        }
        for (c = 0; c < nc; ++c) out[c0 + c] = requantize(p, acc[c], c0 + c);
    }
}

void rfe_conv_s8(const rfe_conv_params_t *p, const int8_t *in, int8_t *out)
{
    for_each_pixel(p, in, out, conv_pixel);
}

/* requantize() with the parameters in locals (read once per call) */
typedef struct {
    int32_t per_channel, out_off, lo, hi;
    const int32_t *bias, *mult;
    const int8_t *shift;
} rq_k;

static void rq_consts(const rfe_conv_params_t *p, rq_k *k)
{
    k->per_channel = p->per_channel;
    k->out_off = p->output_offset;
    k->lo = p->act_min;
    k->hi = p->act_max;
    k->bias = p->bias;
    k->mult = p->mult;
    k->shift = p->shift;
}

static inline int8_t requantize_k(const rq_k *k, int32_t acc, int32_t oc)
{
    const int32_t c = k->per_channel ? oc : 0;
    if (k->bias) acc += k->bias[oc];
    acc = rfe_mbqm(acc, k->mult[c], k->shift[c]) + k->out_off;
    return (int8_t)rfe_clamp(acc, k->lo, k->hi);
}

/* Depth multiplier 1 (every DS-CNN): for each output pixel the taps inside the input are found
 * once, then four channels at a time accumulate in registers over those taps, with the
 * parameters read into locals once per call (int8_t stores may alias *p). */
static void depthwise_m1(const rfe_conv_params_t *p, const int8_t *in, int8_t *out)
{
    const int32_t C = p->out_c, in_h = p->in_h, in_w = p->in_w, k_h = p->k_h, k_w = p->k_w;
    const int32_t dil_h = p->dil_h, dil_w = p->dil_w, off = p->input_offset, xstep = dil_w * C;
    const int8_t *weights = p->weights;
    rq_k k;
    int32_t b, oy, ox, c, ky, kx;
    rq_consts(p, &k);
    for (b = 0; b < p->batches; ++b) {
        const int8_t *img = in + b * in_h * in_w * C;
        for (oy = 0; oy < p->out_h; ++oy) {
            const int32_t y0 = oy * p->stride_h - p->pad_h;
            int32_t ky0 = 0, ky1 = k_h;
            while (ky0 < k_h && y0 + ky0 * dil_h < 0) ++ky0;
            while (ky1 > ky0 && y0 + (ky1 - 1) * dil_h >= in_h) --ky1;
            for (ox = 0; ox < p->out_w; ++ox) {
                const int32_t x0 = ox * p->stride_w - p->pad_w;
                int32_t kx0 = 0, kx1 = k_w;
                while (kx0 < k_w && x0 + kx0 * dil_w < 0) ++kx0;
                while (kx1 > kx0 && x0 + (kx1 - 1) * dil_w >= in_w) --kx1;
                for (c = 0; c + 4 <= C; c += 4) {
                    int32_t a0 = 0, a1 = 0, a2 = 0, a3 = 0;
                    for (ky = ky0; ky < ky1; ++ky) {
                        const int8_t *xp = img + ((y0 + ky * dil_h) * in_w + x0 + kx0 * dil_w) * C + c;
                        const int8_t *wp = weights + (ky * k_w + kx0) * C + c;
                        const int8_t *we = wp + (kx1 - kx0) * C;
                        for (; wp < we; xp += xstep, wp += C) {
                            a0 += (xp[0] + off) * wp[0];
                            a1 += (xp[1] + off) * wp[1];
                            a2 += (xp[2] + off) * wp[2];
                            a3 += (xp[3] + off) * wp[3];
                        }
                    }
                    out[c] = requantize_k(&k, a0, c);
                    out[c + 1] = requantize_k(&k, a1, c + 1);
                    out[c + 2] = requantize_k(&k, a2, c + 2);
                    out[c + 3] = requantize_k(&k, a3, c + 3);
                }
                for (; c < C; ++c) {
                    int32_t a = 0;
                    for (ky = ky0; ky < ky1; ++ky)
                        for (kx = kx0; kx < kx1; ++kx)
                            a += (img[((y0 + ky * dil_h) * in_w + x0 + kx * dil_w) * C + c] + off) *
                                 weights[(ky * k_w + kx) * C + c];
                    out[c] = requantize_k(&k, a, c);
                }
                out += C;
            }
        }
    }
}

void rfe_depthwise_conv_s8(const rfe_conv_params_t *p, const int8_t *in, int8_t *out)
{
    if (p->depth_multiplier == 1) depthwise_m1(p, in, out);
    else for_each_pixel(p, in, out, depthwise_pixel);
}
