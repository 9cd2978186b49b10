/*
 * test_kernels.c - per-kernel tests of mcu/core with golden values derived by hand (the way
 * tflite-micro's kernel tests are written): rounding ties, saturation, zero points.  Built and
 * run by tests/test_kernels.py (with UBSan when the compiler has it); exits non-zero on failure.
 *
 * Notation in the comments: M = mult * 2^(shift - 31).
 */
#include <stdio.h>
#include <string.h>

#include "rfe_fixedpoint.h"
#include "rfe_kernels.h"

static int failures = 0, checks = 0;

#define CHECK_EQ(got, want)                                                                   \
    do {                                                                                      \
        long long g_ = (long long)(got), w_ = (long long)(want);                              \
        ++checks;                                                                             \
        if (g_ != w_) {                                                                       \
            ++failures;                                                                       \
            printf("FAIL %s:%d: %s = %lld, want %lld\n", __FILE__, __LINE__, #got, g_, w_);   \
        }                                                                                     \
    } while (0)

static void check_bytes(const char *what, const int8_t *got, const int8_t *want, int n)
{
    int i;
    for (i = 0; i < n; ++i) {
        ++checks;
        if (got[i] != want[i]) {
            ++failures;
            printf("FAIL %s[%d] = %d, want %d\n", what, i, got[i], want[i]);
        }
    }
}

static void test_primitives(void)
{
    /* SRDHM(a, b) = round(a*b / 2^31); the nudge makes ties go up: +0.5 -> 1, -0.5 -> 0 */
    CHECK_EQ(rfe_srdhm(1 << 30, 1 << 30), 1 << 29);             /* 0.5 * 0.5 = 0.25 */
    CHECK_EQ(rfe_srdhm(1 << 15, 1 << 15), 1);                   /* 2^30 / 2^31 = 0.5 -> 1 */
    CHECK_EQ(rfe_srdhm(-(1 << 15), 1 << 15), 0);                /* -0.5 -> 0 */
    CHECK_EQ(rfe_srdhm(3 << 15, 1 << 15), 2);                   /* 1.5 -> 2 */
    CHECK_EQ(rfe_srdhm(-(3 << 15), 1 << 15), -1);               /* -1.5 -> -1 */
    CHECK_EQ(rfe_srdhm(RFE_INT32_MIN, RFE_INT32_MIN), RFE_INT32_MAX);   /* (-1)(-1) saturates */
    CHECK_EQ(rfe_srdhm(RFE_INT32_MIN, RFE_INT32_MAX), -RFE_INT32_MAX);
    /* RDBPOT: x / 2^e, ties away from zero */
    CHECK_EQ(rfe_rdbpot(5, 1), 3);
    CHECK_EQ(rfe_rdbpot(-5, 1), -3);
    CHECK_EQ(rfe_rdbpot(3, 1), 2);
    CHECK_EQ(rfe_rdbpot(-3, 1), -2);
    CHECK_EQ(rfe_rdbpot(6, 2), 2);      /* 1.5 */
    CHECK_EQ(rfe_rdbpot(-6, 2), -2);
    CHECK_EQ(rfe_rdbpot(5, 2), 1);      /* 1.25 */
    CHECK_EQ(rfe_rdbpot(-7, 2), -2);    /* -1.75 */
    CHECK_EQ(rfe_rdbpot(7, 0), 7);
    CHECK_EQ(rfe_rdbpot(RFE_INT32_MIN, 31), -1);
    /* MBQM rounds twice: 5 * 0.25 (M = 2^30 * 2^-32) -> SRDHM gives round(2.5) = 3, then
     * RDBPOT(3, 1) = round(1.5) = 2, although 1.25 rounds to 1 */
    CHECK_EQ(rfe_mbqm(5, 1 << 30, -1), 2);
    CHECK_EQ(rfe_mbqm(100, 1 << 30, 0), 50);
    CHECK_EQ(rfe_mbqm(-3, 1 << 30, 0), -1);          /* -1.5 -> -1 (the SRDHM tie goes up) */
    CHECK_EQ(rfe_mbqm(3, 1 << 30, 2), 6);            /* left shift first: 3 * 0.5 * 4 */
    CHECK_EQ(rfe_mbqm(1000, 1 << 30, -31), 0);       /* 1000 * 2^-32 */
    /* saturating multiply by a power of two */
    CHECK_EQ(rfe_srmpot(1 << 29, 1), 1 << 30);
    CHECK_EQ(rfe_srmpot(1 << 30, 1), RFE_INT32_MAX);
    CHECK_EQ(rfe_srmpot(-(1 << 30) - 1, 1), RFE_INT32_MIN);
    CHECK_EQ(rfe_srmpot(6, -2), 2);
}

static void test_fixedpoint_functions(void)
{
    /* exp(0) = 1 (saturated Q0.31), logistic(0) = 1/2, tanh(0) = 0 */
    CHECK_EQ(rfe_fx_exp_on_negative_values(0, 5), RFE_INT32_MAX);
    CHECK_EQ(rfe_fx_logistic(0, 4), 1 << 30);
    CHECK_EQ(rfe_fx_tanh(0, 4), 0);
    /* 1/(1+0) saturates just below 1.0 (Q0.31 cannot hold 1.0) */
    CHECK_EQ(rfe_fx_one_over_one_plus_x(0) >= RFE_INT32_MAX - 8, 1);
    /* exp(-1/4) = 0.7788007831 = 1672461947 / 2^31; -1/4 in Q5.26 is -(1 << 24).  The 4th-order
     * Taylor polynomial around -1/8 is within ~2.5e-7 of it: +-600 units of Q0.31 */
    {
        const int32_t e = rfe_fx_exp_on_negative_values(-(1 << 24), 5);
        CHECK_EQ(e > 1672461947 - 600 && e < 1672461947 + 600, 1);
    }
    /* symmetry: logistic(-x) = 1 - logistic(x) exactly by construction (INT32_MAX - r) */
    CHECK_EQ(rfe_fx_logistic(-(1 << 27), 4), RFE_INT32_MAX - rfe_fx_logistic(1 << 27, 4));
    CHECK_EQ(rfe_fx_tanh(-(1 << 27), 4), -rfe_fx_tanh(1 << 27, 4));
}

static void test_fully_connected(void)
{
    /* 2 inputs, 3 outputs; input zero point -1 (offset +1), output zero point 5, per channel:
     * M0 = 0.5, M1 = 0.25 (mult 2^30, shift -1), M2 = 1.0 (mult 2^30, shift 1).
     * x = {3, -2} -> x + 1 = {4, -1}
     * row 0 {1, 2}, bias 10: 4 - 2 + 10 = 12, *0.5 = 6, + 5 = 11
     * row 1 {-3, 4}, bias 1: -12 - 4 + 1 = -15, *0.25: SRDHM(-15, 2^30) = round(-7.5) = -7,
     *        RDBPOT(-7, 1) = -3.5 -> -4, + 5 = 1
     * row 2 {127, 127}, bias 0: 508 - 127 = 381, *1 = 381 + 5 = 386 -> clamps to act_max 127 */
    static const int8_t w[6] = {1, 2, -3, 4, 127, 127};
    static const int32_t bias[3] = {10, 1, 0};
    static const int32_t wsum[3] = {3, 1, 254};
    static const int32_t mult[3] = {1 << 30, 1 << 30, 1 << 30};
    static const int8_t shift[3] = {0, -1, 1};
    const rfe_fc_params_t p = {1, 2, 3, 1, 5, -128, 127, 1, w, bias, wsum, mult, shift};
    const int8_t x[2] = {3, -2}, want[3] = {11, 1, 127};
    int8_t y[3];
    rfe_fully_connected_s8(&p, x, y);
    check_bytes("fc", y, want, 3);
    {   /* same with a RELU-like clamp at the zero point and per-tensor M = 0.5: row 1 gives
         * -15 * 0.5 = round(-7.5) = -7 + 5 = -2 -> clamps to 5 */
        const int32_t m1[1] = {1 << 30};
        const int8_t s1[1] = {0};
        const rfe_fc_params_t q = {1, 2, 3, 1, 5, 5, 127, 0, w, bias, wsum, m1, s1};
        const int8_t want2[3] = {11, 5, 127};
        rfe_fully_connected_s8(&q, x, y);
        check_bytes("fc_relu", y, want2, 3);
    }
}

static void test_conv(void)
{
    /* 3x3 input, one channel, zero point 2 (offset -2); 2x2 kernel of ones, SAME padding
     * (pad 0 before, 1 after), M = 1 (2^30, shift 1), output zero point 0.
     * x - 2 = [[1,2,3],[4,5,6],[7,8,9]]: out[0][0] = 1+2+4+5 = 12, out[0][2] = 3+6 = 9,
     * out[2][2] = 9 (taps outside the input are skipped, i.e. read the zero point) */
    static const int8_t x[9] = {3, 4, 5, 6, 7, 8, 9, 10, 11};
    static const int8_t w[4] = {1, 1, 1, 1};
    static const int32_t mult[1] = {1 << 30};
    static const int8_t shift[1] = {1};
    const rfe_conv_params_t p = {1, 3, 3, 1, 3, 3, 1, 2, 2, 1, 1, 1, 1, 0, 0, 1,
                                 -2, 0, -128, 127, 0, w, NULL, NULL, mult, shift};
    const int8_t want[9] = {12, 16, 9, 24, 28, 15, 15, 17, 9};
    int8_t y[9];
    rfe_conv_s8(&p, x, y);
    check_bytes("conv", y, want, 9);
    /* depthwise, depth multiplier 2: channel 0 weights 1, channel 1 weights -1 */
    {
        static const int8_t wd[8] = {1, -1, 1, -1, 1, -1, 1, -1};
        const int32_t md[2] = {1 << 30, 1 << 30};
        const int8_t sd[2] = {1, 1};
        const rfe_conv_params_t d = {1, 3, 3, 1, 3, 3, 2, 2, 2, 1, 1, 1, 1, 0, 0, 2,
                                     -2, 0, -128, 127, 1, wd, NULL, NULL, md, sd};
        const int8_t wantd[18] = {12, -12, 16, -16, 9, -9, 24, -24, 28, -28, 15, -15, 15, -15, 17, -17, 9, -9};
        int8_t yd[18];
        rfe_depthwise_conv_s8(&d, x, yd);
        check_bytes("depthwise", yd, wantd, 18);
    }
}

static void test_add_sub_mul(void)
{
    /* equal input scales s, output scale 2s: r1 = r2 = 1/2 (2^30, shift 0) and
     * r_out = 2s / (2^20 * 2s) = 2^-20 (2^30, shift -19).  Input offsets -1 and +2, output zp -10.
     * element 0: x - zp = 3, 4: (3 << 20)/2 + (4 << 20)/2 = 7 * 2^19, * 2^-20 = 3.5 -> 4 - 10 = -6
     * element 1: -129, -126: -127.5 -> -128 (ties away from zero) - 10 = -138 -> saturates at -128
     * element 2: 126, 129: 127.5 -> 128 - 10 = 118 */
    const rfe_add_params_t p = {-1, 2, -10, 20, 1 << 30, 0, 1 << 30, 0, 1 << 30, -19, -128, 127};
    const int8_t a[3] = {4, -128, 127}, b[3] = {2, -128, 127};
    const int8_t want_add[3] = {-6, -128, 118};
    /* SUB: (3 - 4)/2 = -0.5 -> -1; (-129 + 126)/2 = -1.5 -> -2; (126 - 129)/2 = -1.5 -> -2 */
    const int8_t want_sub[3] = {-11, -12, -12};
    /* a scalar against a vector: 3 + {4, -126, 129} = 7, -123, 132 -> 3.5, -61.5, 66 */
    const int8_t want_bcast[3] = {-6, -72, 56};
    const rfe_bcast_t bc = {{1, 1, 1, 3}, {0, 0, 0, 0}, {0, 0, 0, 1}};
    int8_t y[3];
    rfe_add_s8(&p, a, b, y, 3, NULL);
    check_bytes("add", y, want_add, 3);
    rfe_sub_s8(&p, a, b, y, 3, NULL);
    check_bytes("sub", y, want_sub, 3);
    rfe_add_s8(&p, a, b, y, 3, &bc);
    check_bytes("add_broadcast", y, want_bcast, 3);
    {   /* MUL: (x + 1)(y - 2) * 0.25 (2^30, shift -1), zero point 3:
         * 10 * 2 = 20 -> 5 + 3 = 8; -127 * 125 = -15875 -> -3968.75 -> saturates; 128 * 125 -> 4000 */
        const rfe_mul_params_t m = {1, -2, 3, 1 << 30, -1, -128, 127};
        const int8_t ma[3] = {9, -128, 127}, mb[3] = {4, 127, 127};
        const int8_t want_m[3] = {8, -128, 127};
        rfe_mul_s8(&m, ma, mb, y, 3, NULL);
        check_bytes("mul", y, want_m, 3);
    }
}

static void test_activations(void)
{
    /* input scale 2^-4 -> multiplier s * 2^27 = 2^23: frexp = 0.5 * 2^24 (2^30, shift 24);
     * radius = (15 << 27) >> 24 = 120.  Zero point 10. */
    const rfe_act_params_t p = {10, 120, 1 << 30, 24};
    const int8_t x[4] = {10, -128, 127, 10 + 16};   /* 0, far below, 117 (< radius), 1.0 */
    int8_t y[4];
    rfe_logistic_s8(&p, x, y, 4);
    CHECK_EQ(y[0], 0);        /* 0.5 * 256 - 128 */
    CHECK_EQ(y[1], -128);     /* x - zp = -138 <= -radius */
    CHECK_EQ(y[2], 127);      /* logistic(7.3) * 256 = 255.8 -> 256 -> saturates */
    CHECK_EQ(y[3], 59);       /* logistic(1) = 0.7310586 * 256 = 187.15 -> 187 - 128 */
    rfe_tanh_s8(&p, x, y, 4);
    CHECK_EQ(y[0], 0);
    CHECK_EQ(y[1], -128);
    CHECK_EQ(y[2], 127);
    CHECK_EQ(y[3], 97);       /* tanh(1) = 0.7615942 * 128 = 97.48 -> 97 */
    {
        int8_t lut[256], in[3] = {-128, 0, 127}, out[3];
        int i;
        for (i = 0; i < 256; ++i) lut[i] = (int8_t)(127 - i);   /* x -> -1 - x */
        rfe_lut_s8(lut, in, out, 3);
        CHECK_EQ(out[0], 127);
        CHECK_EQ(out[1], -1);
        CHECK_EQ(out[2], -128);
    }
}

static void test_softmax(void)
{
    /* equal logits: each gets 1/4 = 64/256 -> 64 - 128 = -64 (see the derivation in
     * tests/test_kernels.py); a logit far below the max (diff < diff_min) gets -128 exactly */
    const rfe_softmax_params_t p = {1 << 30, 20, -100};
    const int8_t x[4] = {7, 7, 7, 7}, x2[3] = {50, -100, 50};
    int8_t y[4];
    const int8_t want[4] = {-64, -64, -64, -64};
    rfe_softmax_s8(&p, x, y, 1, 4);
    check_bytes("softmax", y, want, 4);
    rfe_softmax_s8(&p, x2, y, 1, 3);
    CHECK_EQ(y[1], -128);
    CHECK_EQ(y[0], y[2]);
    CHECK_EQ(y[0], 0);   /* two equal winners share 1/2 -> 128 - 128 */
}

static void test_pool_mean_copy(void)
{
    /* 2x2 input, 1 channel: avg over the whole window, ties away from zero */
    const rfe_pool_params_t p = {1, 1, 2, 1, 1, 1, 1, 2, 1, 1, 0, 0, -128, 127};
    const int8_t a[2] = {1, 2}, b[2] = {-1, -2}, c[2] = {-128, -128};
    int8_t y[1];
    rfe_avg_pool_s8(&p, a, y);
    CHECK_EQ(y[0], 2);        /* 1.5 -> 2 */
    rfe_avg_pool_s8(&p, b, y);
    CHECK_EQ(y[0], -2);       /* -1.5 -> -2 */
    rfe_max_pool_s8(&p, c, y);
    CHECK_EQ(y[0], -128);
    rfe_max_pool_s8(&p, b, y);
    CHECK_EQ(y[0], -1);
    {   /* MEAN of 2 values with M = 1/2 folded in (2^30, shift 0): the SRDHM tie goes up */
        const rfe_mean_params_t m = {1, 2, 1, 0, 0, 1 << 30, 0};
        const int8_t v1[2] = {1, 2}, v2[2] = {-1, -2}, v3[2] = {1, 3};
        rfe_mean_s8(&m, v1, y);
        CHECK_EQ(y[0], 2);    /* 1.5 -> 2 */
        rfe_mean_s8(&m, v2, y);
        CHECK_EQ(y[0], -1);   /* -1.5 -> -1 */
        rfe_mean_s8(&m, v3, y);
        CHECK_EQ(y[0], 2);
    }
    {   /* MEAN with zero points: inputs 5, 7 at zero point 4 -> (1 + 3)/2 = 2, output zp -3 */
        const rfe_mean_params_t m = {1, 2, 1, 4, -3, 1 << 30, 0};
        const int8_t v[2] = {5, 7};
        rfe_mean_s8(&m, v, y);
        CHECK_EQ(y[0], -1);
    }
    {   /* copy rows 1..2, columns 1..2 of a 4x4 block into a 2x2 one */
        int8_t src[16], dst[4];
        const int8_t want[4] = {5, 6, 9, 10};
        const rfe_copy_t cp = {{1, 1, 1, 2}, {0, 0, 0, 4}, {0, 0, 0, 2}, 2, 5, 0};
        int i;
        for (i = 0; i < 16; ++i) src[i] = (int8_t)i;
        rfe_copy_s8(&cp, src, dst);
        check_bytes("copy", dst, want, 4);
        rfe_fill_s8(dst, -7, 4);
        CHECK_EQ(dst[3], -7);
    }
}

static void test_dw_pw_fused(void)
{
    /* the fused block must equal depthwise -> pointwise -> pool run one after the other */
    enum { H = 5, W = 4, C = 3, CO = 4 };
    int8_t x[H * W * C], dw_out[H * W * C], pw_out[H * W * CO], ref[H * 2 * CO], got[H * 2 * CO];
    int8_t scratch[W * C + W * CO];
    int8_t wd[9 * C], wp[CO * C];
    int32_t md[C], mp[CO], bias[CO], wsum[CO];
    int8_t sd[C], sp[CO];
    int i, o;
    for (i = 0; i < H * W * C; ++i) x[i] = (int8_t)((i * 37) % 256 - 128);
    for (i = 0; i < 9 * C; ++i) wd[i] = (int8_t)((i * 53) % 255 - 127);
    for (i = 0; i < CO * C; ++i) wp[i] = (int8_t)((i * 71) % 255 - 127);
    for (i = 0; i < C; ++i) { md[i] = 1300000000 + i; sd[i] = (int8_t)(-7 - i); }
    for (o = 0; o < CO; ++o) {
        mp[o] = 1100000000 + 977 * o;
        sp[o] = -6;
        bias[o] = 100 * o - 150;
        wsum[o] = 0;
        for (i = 0; i < C; ++i) wsum[o] += wp[o * C + i];
    }
    {
        const rfe_conv_params_t dw = {1, H, W, C, H, W, C, 3, 3, 1, 1, 1, 1, 1, 1, 1,
                                      5, -3, -128, 127, 1, wd, NULL, NULL, md, sd};
        const rfe_fc_params_t pw_all = {H * W, C, CO, 3, 7, -128, 127, 1, wp, bias, wsum, mp, sp};
        const rfe_fc_params_t pw_row = {W, C, CO, 3, 7, -128, 127, 1, wp, bias, wsum, mp, sp};
        const rfe_pool_params_t pool_all = {1, H, W, CO, H, 2, 1, 2, 1, 2, 0, 0, -128, 127};
        const rfe_pool_params_t pool_row = {1, 1, W, CO, 1, 2, 1, 2, 1, 2, 0, 0, -128, 127};
        const rfe_dw_pw_params_t f = {&dw, &pw_row, &pool_row};
        rfe_depthwise_conv_s8(&dw, x, dw_out);
        rfe_fully_connected_s8(&pw_all, dw_out, pw_out);
        rfe_max_pool_s8(&pool_all, pw_out, ref);
        CHECK_EQ(rfe_dw_pw_s8_get_buffer_size(&f), W * C + W * CO);
        rfe_dw_pw_s8(&f, x, got, scratch);
        check_bytes("dw_pw", got, ref, H * 2 * CO);
    }
}

int main(void)
{
    test_primitives();
    test_fixedpoint_functions();
    test_fully_connected();
    test_conv();
    test_add_sub_mul();
    test_activations();
    test_softmax();
    test_pool_mean_copy();
    test_dw_pw_fused();
    printf("%s: %d checks, %d failures\n", failures ? "FAIL" : "ok", checks, failures);
    return failures ? 1 : 0;
}
