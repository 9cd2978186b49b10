/* rfe_dw_pw_s8.c - a depthwise-separable block (DEPTHWISE_CONV_2D -> 1x1 CONV_2D [-> MAX_POOL_2D
 * over W]) row by row, so that only one row of each intermediate tensor exists at a time. */
#include "rfe_kernels.h"

int32_t rfe_dw_pw_s8_get_buffer_size(const rfe_dw_pw_params_t *p)
{
    return p->dw->out_w * p->dw->out_c + (p->pool ? p->pw->batches * p->pw->n_out : 0);
}

void rfe_dw_pw_s8(const rfe_dw_pw_params_t *p, const int8_t *in, int8_t *out, int8_t *scratch)
{
    const rfe_conv_params_t *dw = p->dw;
    const int32_t in_image = dw->in_h * dw->in_w * dw->in_c;
    const int32_t out_row = p->pool ? p->pool->out_w * p->pool->channels : p->pw->batches * p->pw->n_out;
    int8_t *dw_row = scratch, *pw_row = scratch + dw->out_w * dw->out_c;
    rfe_conv_params_t row = *dw;   /* the depthwise layer restricted to one output row */
    int32_t b, oy;
    row.batches = 1;
    row.out_h = 1;
    for (b = 0; b < dw->batches; ++b) {
        for (oy = 0; oy < dw->out_h; ++oy) {
            int8_t *dst = out + (b * dw->out_h + oy) * out_row;
            row.pad_h = dw->pad_h - oy * dw->stride_h;   /* output row 0 of `row` is row oy of the layer */
            rfe_depthwise_conv_s8(&row, in + b * in_image, dw_row);
            if (p->pool) {
                rfe_fully_connected_s8(p->pw, dw_row, pw_row);
                rfe_max_pool_s8(p->pool, pw_row, dst);
            } else {
                rfe_fully_connected_s8(p->pw, dw_row, dst);
            }
        }
    }
}
