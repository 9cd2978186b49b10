/*
 * rfe_kernels.h - int8 neural-network kernels of the rfedge MCU core (portable C99, no malloc).
 *
 * One function per op, named like CMSIS-NN's (rfe_<op>_s8).  Each computes exactly what TFLite
 * Micro's reference kernel computes for the same tensors (see rfe_fixedpoint.h); the code
 * generator (converters/rfedge_codegen) fills the parameter structs from a .tflite file.
 *
 * Conventions: tensors are dense, NHWC; an "offset" is a negated zero point for inputs and the
 * zero point itself for outputs (TFLite's convention); per-channel requantization is given as
 * mult[c] (Q0.31) and shift[c] (power of two), per-tensor as arrays of length 1 with
 * per_channel = 0.  Activation clamps are in the output's int8 domain.
 * A kernel that needs scratch memory has a rfe_<op>_s8_get_buffer_size() twin, so the caller
 * can plan it before anything runs (only rfe_dw_pw_s8 does).
 */
#ifndef RFE_KERNELS_H
#define RFE_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- FULLY_CONNECTED (and 1x1 convolutions seen as one FC per pixel) ----------------------- */
typedef struct {
    int32_t batches, n_in, n_out;
    int32_t input_offset, output_offset, act_min, act_max;
    int32_t per_channel;            /* 1: mult/shift have n_out entries, 0: one entry */
    const int8_t *weights;          /* [n_out][n_in] */
    const int32_t *bias;            /* [n_out] or NULL */
    const int32_t *wsum;            /* [n_out] row sums of weights (used when input_offset != 0) */
    const int32_t *mult;
    const int8_t *shift;
} rfe_fc_params_t;
void rfe_fully_connected_s8(const rfe_fc_params_t *p, const int8_t *in, int8_t *out);

/* ---- CONV_2D / DEPTHWISE_CONV_2D ---------------------------------------------------------- */
typedef struct {
    int32_t batches, in_h, in_w, in_c, out_h, out_w, out_c, k_h, k_w;
    int32_t stride_h, stride_w, dil_h, dil_w, pad_h, pad_w;
    int32_t depth_multiplier;       /* depthwise only: out_c = in_c * depth_multiplier */
    int32_t input_offset, output_offset, act_min, act_max;
    int32_t per_channel;
    const int8_t *weights;          /* conv: [out_c][k_h][k_w][in_c]; depthwise: [k_h][k_w][out_c] */
    const int32_t *bias;            /* [out_c] or NULL */
    const int32_t *wsum;            /* conv only, NULL unless every tap is inside the input */
    const int32_t *mult;
    const int8_t *shift;
} rfe_conv_params_t;
void rfe_conv_s8(const rfe_conv_params_t *p, const int8_t *in, int8_t *out);
void rfe_depthwise_conv_s8(const rfe_conv_params_t *p, const int8_t *in, int8_t *out);

/* ---- MAX_POOL_2D / AVERAGE_POOL_2D -------------------------------------------------------- */
typedef struct {
    int32_t batches, in_h, in_w, channels, out_h, out_w, k_h, k_w;
    int32_t stride_h, stride_w, pad_h, pad_w, act_min, act_max;
} rfe_pool_params_t;
void rfe_max_pool_s8(const rfe_pool_params_t *p, const int8_t *in, int8_t *out);
void rfe_avg_pool_s8(const rfe_pool_params_t *p, const int8_t *in, int8_t *out);

/* ---- DEPTHWISE_CONV_2D -> 1x1 CONV_2D [-> MAX_POOL_2D over W], one output row at a time ------
 * The depthwise-separable block of DS-CNNs without its full-size intermediate tensors: each row
 * of the depthwise output is computed into scratch, turned into a row of the pointwise output
 * (scratch too when a pool follows) and pooled into `out`.  Same arithmetic as the three
 * kernels run one after the other. */
typedef struct {
    const rfe_conv_params_t *dw;    /* the whole depthwise layer */
    const rfe_fc_params_t *pw;      /* one row: batches = dw->out_w, n_in = dw->out_c */
    const rfe_pool_params_t *pool;  /* NULL, or one row: batches = in_h = out_h = k_h = stride_h = 1 */
} rfe_dw_pw_params_t;
int32_t rfe_dw_pw_s8_get_buffer_size(const rfe_dw_pw_params_t *p);
void rfe_dw_pw_s8(const rfe_dw_pw_params_t *p, const int8_t *in, int8_t *out, int8_t *scratch);

/* ---- elementwise ADD / SUB / MUL ---------------------------------------------------------- */
/* Broadcasting: the output is iterated as dims[0..3] (outermost first); each input steps by its
 * own element strides (0 on a broadcast dimension).  NULL means same shapes: n flat elements. */
typedef struct {
    int32_t dims[4];
    int32_t a_stride[4];
    int32_t b_stride[4];
} rfe_bcast_t;

/* One output element from one element of each input; the shared broadcasting loop calls it. */
typedef int8_t (*rfe_binary_fn)(const void *params, int8_t a, int8_t b);
void rfe_broadcast_s8(const rfe_bcast_t *bc, int32_t n, const int8_t *a, const int8_t *b, int8_t *out,
                      rfe_binary_fn f, const void *params);
/* The same iteration with one call per innermost row (len elements, input strides sa and sb),
 * for kernels whose per-element work is inlined in their row function. */
typedef void (*rfe_row_fn)(const void *ctx, const int8_t *a, const int8_t *b, int32_t sa, int32_t sb, int32_t len,
                           int8_t *out);
void rfe_broadcast_rows_s8(const rfe_bcast_t *bc, const int8_t *a, const int8_t *b, int8_t *out, rfe_row_fn row,
                           const void *ctx);

typedef struct {
    int32_t in1_offset, in2_offset, output_offset;
    int32_t left_shift;             /* 20 for int8 */
    int32_t in1_mult, in1_shift, in2_mult, in2_shift, out_mult, out_shift;
    int32_t act_min, act_max;
} rfe_add_params_t;
void rfe_add_s8(const rfe_add_params_t *p, const int8_t *a, const int8_t *b, int8_t *out, int32_t n,
                const rfe_bcast_t *bc);
void rfe_sub_s8(const rfe_add_params_t *p, const int8_t *a, const int8_t *b, int8_t *out, int32_t n,
                const rfe_bcast_t *bc);

typedef struct {
    int32_t in1_offset, in2_offset, output_offset;
    int32_t out_mult, out_shift;
    int32_t act_min, act_max;
} rfe_mul_params_t;
void rfe_mul_s8(const rfe_mul_params_t *p, const int8_t *a, const int8_t *b, int8_t *out, int32_t n,
                const rfe_bcast_t *bc);

/* ---- LOGISTIC / TANH ---------------------------------------------------------------------- */
typedef struct {
    int32_t input_zero_point, input_range_radius, input_multiplier, input_left_shift;
} rfe_act_params_t;
void rfe_logistic_s8(const rfe_act_params_t *p, const int8_t *in, int8_t *out, int32_t n);
void rfe_tanh_s8(const rfe_act_params_t *p, const int8_t *in, int8_t *out, int32_t n);
/* Any int8 -> int8 function as a 256-entry table indexed by x + 128: the generator tabulates
 * LOGISTIC and TANH once per op (same values as the two functions above, far fewer cycles). */
void rfe_lut_s8(const int8_t *lut, const int8_t *in, int8_t *out, int32_t n);

/* ---- SOFTMAX (int8 in, int8 out with scale 1/256 and zero point -128) --------------------- */
typedef struct {
    int32_t input_multiplier, input_left_shift, diff_min;
} rfe_softmax_params_t;
void rfe_softmax_s8(const rfe_softmax_params_t *p, const int8_t *in, int8_t *out, int32_t rows, int32_t depth);

/* ---- MEAN over axes: the input seen as [outer][reduced][inner] after merging dims ----------- */
typedef struct {
    int32_t outer, reduced, inner;
    int32_t input_zero_point, output_zero_point;
    int32_t mult, shift;            /* already divided by the element count, as TFLM does */
} rfe_mean_params_t;
void rfe_mean_s8(const rfe_mean_params_t *p, const int8_t *in, int8_t *out);

/* ---- data movement: strided block copies (SPLIT, UNPACK, STRIDED_SLICE, PAD, CONCAT, ...) -- */
/* Copies count[0] x count[1] x count[2] x count[3] runs of `len` bytes; run (i,j,k,l) goes from
 * src + src_off + i*ss[0] + j*ss[1] + k*ss[2] + l*ss[3] to the same place under dst. */
typedef struct {
    int32_t count[4];
    int32_t src_stride[4];
    int32_t dst_stride[4];
    int32_t len, src_off, dst_off;
} rfe_copy_t;
void rfe_copy_s8(const rfe_copy_t *c, const int8_t *src, int8_t *dst);
void rfe_fill_s8(int8_t *dst, int8_t value, int32_t n);

#ifdef __cplusplus
}
#endif

#endif /* RFE_KERNELS_H */
