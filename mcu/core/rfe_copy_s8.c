/* rfe_copy_s8.c - strided block copies and fills: every data-movement op (SPLIT, UNPACK,
 * STRIDED_SLICE, SLICE, PAD, CONCATENATION, PACK, TRANSPOSE) as planned by the generator. */
#include <string.h>

#include "rfe_kernels.h"

void rfe_copy_s8(const rfe_copy_t *c, const int8_t *src, int8_t *dst)
{
    int32_t i, j, k, l;
    for (i = 0; i < c->count[0]; ++i)
        for (j = 0; j < c->count[1]; ++j)
            for (k = 0; k < c->count[2]; ++k) {
                const int8_t *s = src + c->src_off + i * c->src_stride[0] + j * c->src_stride[1] + k * c->src_stride[2];
                int8_t *d = dst + c->dst_off + i * c->dst_stride[0] + j * c->dst_stride[1] + k * c->dst_stride[2];
                for (l = 0; l < c->count[3]; ++l)
                    memcpy(d + l * c->dst_stride[3], s + l * c->src_stride[3], (size_t)c->len);
            }
}

void rfe_fill_s8(int8_t *dst, int8_t value, int32_t n)
{
    memset(dst, (unsigned char)value, (size_t)n);
}
