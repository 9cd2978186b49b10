/* rfe_broadcast_s8.c - the loop shared by the elementwise binary kernels: n elements of equal
 * shapes (bc NULL), or the output iterated as bc->dims (outermost first) with each input
 * stepping by its own strides. */
#include "rfe_kernels.h"

void rfe_broadcast_s8(const rfe_bcast_t *bc, int32_t n, const int8_t *a, const int8_t *b, int8_t *out,
                      rfe_binary_fn f, const void *params)
{
    int32_t i, j, k, l;
    if (!bc) {
        for (i = 0; i < n; ++i) out[i] = f(params, a[i], b[i]);
        return;
    }
    for (i = 0; i < bc->dims[0]; ++i)
        for (j = 0; j < bc->dims[1]; ++j)
            for (k = 0; k < bc->dims[2]; ++k) {
                const int32_t ia = i * bc->a_stride[0] + j * bc->a_stride[1] + k * bc->a_stride[2];
                const int32_t ib = i * bc->b_stride[0] + j * bc->b_stride[1] + k * bc->b_stride[2];
                for (l = 0; l < bc->dims[3]; ++l)
                    *out++ = f(params, a[ia + l * bc->a_stride[3]], b[ib + l * bc->b_stride[3]]);
            }
}

void rfe_broadcast_rows_s8(const rfe_bcast_t *bc, const int8_t *a, const int8_t *b, int8_t *out, rfe_row_fn row,
                           const void *ctx)
{
    int32_t i, j, k;
    for (i = 0; i < bc->dims[0]; ++i)
        for (j = 0; j < bc->dims[1]; ++j)
            for (k = 0; k < bc->dims[2]; ++k) {
                row(ctx, a + i * bc->a_stride[0] + j * bc->a_stride[1] + k * bc->a_stride[2],
                    b + i * bc->b_stride[0] + j * bc->b_stride[1] + k * bc->b_stride[2],
                    bc->a_stride[3], bc->b_stride[3], bc->dims[3], out);
                out += bc->dims[3];
            }
}
