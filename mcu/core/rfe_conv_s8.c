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

static int8_t requantize(const rfe_conv_params_t *p, int32_t acc, int32_t oc)
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

void rfe_depthwise_conv_s8(const rfe_conv_params_t *p, const int8_t *in, int8_t *out)
{
    for_each_pixel(p, in, out, depthwise_pixel);
}
