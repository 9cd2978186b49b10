/* rfe_pool_s8.c - MAX_POOL_2D and AVERAGE_POOL_2D on int8 (TFLM's reference integer pooling):
 * windows are clipped to the input, the average divides by the taps actually inside and rounds
 * half away from zero. */
#include "rfe_fixedpoint.h"
#include "rfe_kernels.h"

static void pool(const rfe_pool_params_t *p, const int8_t *in, int8_t *out, int is_max)
{
    int32_t b, oy, ox, c, y, x;
    for (b = 0; b < p->batches; ++b) {
        const int8_t *img = in + b * p->in_h * p->in_w * p->channels;
        for (oy = 0; oy < p->out_h; ++oy) {
            const int32_t y0 = oy * p->stride_h - p->pad_h;
            const int32_t ys = y0 < 0 ? 0 : y0;
            const int32_t ye = y0 + p->k_h > p->in_h ? p->in_h : y0 + p->k_h;
            for (ox = 0; ox < p->out_w; ++ox) {
                const int32_t x0 = ox * p->stride_w - p->pad_w;
                const int32_t xs = x0 < 0 ? 0 : x0;
                const int32_t xe = x0 + p->k_w > p->in_w ? p->in_w : x0 + p->k_w;
                for (c = 0; c < p->channels; ++c) {
                    int32_t acc = is_max ? -128 : 0, count = 0;
                    for (y = ys; y < ye; ++y)
                        for (x = xs; x < xe; ++x) {
                            const int32_t v = img[(y * p->in_w + x) * p->channels + c];
                            if (is_max) acc = v > acc ? v : acc;
                            else acc += v;
                            ++count;
                        }
                    if (!is_max && count > 0)
                        acc = acc > 0 ? (acc + count / 2) / count : (acc - count / 2) / count;
                    *out++ = (int8_t)rfe_clamp(acc, p->act_min, p->act_max);
                }
            }
        }
    }
}

void rfe_max_pool_s8(const rfe_pool_params_t *p, const int8_t *in, int8_t *out) { pool(p, in, out, 1); }

void rfe_avg_pool_s8(const rfe_pool_params_t *p, const int8_t *in, int8_t *out) { pool(p, in, out, 0); }
