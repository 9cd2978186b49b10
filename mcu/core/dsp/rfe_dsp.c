/*
 * rfe_dsp.c - one pre-segmented CSI window -> the model's int8 input (see rfe_dsp.h).
 *
 * Each step names the Python function it mirrors; where numpy's order of operations matters
 * for the last bit (np.interp, np.linspace, np.median, pairwise sums of np.mean) it is followed.
 */
#define RFE_DSP_DEFINE_TABLES
#include "rfe_dsp.h"
#include "rfe_dsp_internal.h"

#include <math.h>
#include <string.h>

#if RFE_DSP_N_SAMPLES < RFE_DSP_WIN_LEN
#error "RFE_DSP_N_SAMPLES must be at least the STFT length"
#endif

/* ---- packet layout (rfedge.io.subcarriers) -------------------------------------------------- */

/* Slot of subcarrier k in the chosen part; the part's byte offset and the used-tone set. */
enum { USED_LEGACY, USED_HT20, USED_HT40 };

int rfe_dsp_layout(uint16_t len, int sc, int16_t *subcarriers, int16_t *imag_offsets)
{
    int off, used, k, n = 0;
    int kind; /* slot formula */
    /* pick_part("auto"): HT-LTF when the buffer has one, else LLTF */
    if (sc == 0) {
        if (len == 128) { off = 0; used = USED_LEGACY; kind = 0; }
        else if (len == 256 || len == 384) { off = 128; used = USED_HT20; kind = 0; }
        else return RFE_DSP_E_LAYOUT;
    } else if (sc == 1 || sc == 2) {
        if (len == 128) { off = 0; used = USED_LEGACY; kind = 1; }
        else if (len == 256) { off = 128; used = USED_HT20; kind = 1; }
        else if (len == 380 && sc == 2) { off = 128; used = USED_HT20; kind = 1; }
        else if (len == 376 && sc == 1) { off = 128; used = USED_HT20; kind = 2; }
        else if (len == 384) { off = 128; used = USED_HT40; kind = 3; }
        else if (len == 612) { off = 128; used = USED_HT40; kind = 4; }
        else return RFE_DSP_E_LAYOUT;
    } else {
        return RFE_DSP_E_LAYOUT;
    }
    for (k = -58; k <= 58; ++k) {
        int slot;
        if (used == USED_LEGACY && (k < -26 || k > 26 || k == 0)) continue;
        if (used == USED_HT20 && (k < -28 || k > 28 || k == 0)) continue;
        if (used == USED_HT40 && (k < -58 || k > 58 || (k > -2 && k < 2))) continue;
        switch (kind) {
        case 0: slot = k >= 0 ? k : 64 + k; break;     /* 0..31, -32..-1 */
        case 1: slot = k + 32; break;                  /* 20 MHz field in a 40 MHz grid half */
        case 2: slot = k + 30; break;                  /* HT-LTF -62..-1 (secondary above) */
        case 3: slot = k >= 0 ? k : 128 + k; break;    /* HT40 0..63, -64..-1 */
        default: slot = k >= 0 ? k : 121 + k; break;   /* HT40 STBC 0..60, -60..-1 */
        }
        if (subcarriers) subcarriers[n] = (int16_t)k;
        if (imag_offsets) imag_offsets[n] = (int16_t)(off + 2 * slot);
        ++n;
    }
    return n;
}

/* ---- window store --------------------------------------------------------------------------- */

void rfe_dsp_reset(rfe_dsp_state *s)
{
    s->n_sub = 0;
    s->t_first = 0;
    s->head = 0;
    s->count = 0;
    s->pushed = 0;
}

void rfe_dsp_init(rfe_dsp_state *s, int secondary_channel)
{
    rfe_dsp_reset(s);
    s->secondary_channel = (int8_t)secondary_channel;
}

int rfe_dsp_decode_iq(const int8_t *buf, uint16_t len, int sc, int first_word_invalid, int8_t (*iq)[2])
{
    int16_t off[RFE_DSP_LAYOUT_MAX];
    int n = rfe_dsp_layout(len, sc, 0, 0), i;
    if (n < 0) return n;
    if (n > RFE_DSP_MAX_SUBCARRIERS) return RFE_DSP_E_SUBCARRIERS;
    rfe_dsp_layout(len, sc, 0, off);
    for (i = 0; i < n; ++i) {
        int8_t im = buf[off[i]], re = buf[off[i] + 1];
        if (first_word_invalid && off[i] < 4) im = re = 0;   /* both bytes of a slot lie in 0..3 */
        iq[i][0] = re;
        iq[i][1] = im;
    }
    return n;
}

int rfe_dsp_push_packet_ex(rfe_dsp_state *s, const int8_t *buf, uint16_t len, uint32_t t_us,
                           int secondary_channel, int first_word_invalid)
{
    int8_t iq[RFE_DSP_MAX_SUBCARRIERS][2];
    uint32_t slot, rel;
    int n = rfe_dsp_decode_iq(buf, len, secondary_channel, first_word_invalid, iq);
    if (n < 0) return n;
    if (s->count == 0) {
        s->n_sub = (int16_t)n;
        s->t_first = t_us;
        s->head = 0;
    } else {
        uint32_t last = (s->head + s->count - 1) % RFE_DSP_MAX_PACKETS;
        if (n != s->n_sub) return RFE_DSP_E_SUBCARRIERS;
        rel = t_us - s->t_first;
        /* strictly increasing (modulo 2^32: a jump of more than 2^31 us is taken as going back) */
        if ((int32_t)(rel - s->t_rel[last]) <= 0) return RFE_DSP_E_TIME;
    }
    rel = t_us - s->t_first;
    if (s->count == RFE_DSP_MAX_PACKETS) {          /* ring full: the oldest is overwritten */
        s->head = (s->head + 1) % RFE_DSP_MAX_PACKETS;
        s->count--;
    }
    slot = (s->head + s->count) % RFE_DSP_MAX_PACKETS;
    memcpy(s->iq[slot], iq, (size_t)n * 2);
    s->t_rel[slot] = rel;
    s->count++;
    s->pushed++;
    return RFE_DSP_OK;
}

int rfe_dsp_push_packet(rfe_dsp_state *s, const int8_t *buf, uint16_t len, uint32_t t_us)
{
    return rfe_dsp_push_packet_ex(s, buf, len, t_us, s->secondary_channel, 0);
}

/* ---- numpy-exact helpers -------------------------------------------------------------------- */

/* numpy's pairwise summation (loops_utils.h: < 8 sequential, <= 128 eight accumulators, halves) */
rfe_real rfe_dsp_pairwise_sum(const rfe_real *a, int32_t n, int32_t stride)
{
    if (n < 8) {
        rfe_real r = 0;
        int32_t i;
        for (i = 0; i < n; ++i) r += a[i * stride];
        return r;
    } else if (n <= 128) {
        rfe_real r[8], res;
        int32_t i, j;
        for (j = 0; j < 8; ++j) r[j] = a[j * stride];
        for (i = 8; i < n - (n % 8); i += 8)
            for (j = 0; j < 8; ++j) r[j] += a[(i + j) * stride];
        res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
        for (; i < n; ++i) res += a[i * stride];
        return res;
    } else {
        int32_t n2 = n / 2;
        n2 -= n2 % 8;
        return rfe_dsp_pairwise_sum(a, n2, stride) + rfe_dsp_pairwise_sum(a + n2 * stride, n - n2, stride);
    }
}

static void sift(rfe_real *a, int32_t root, int32_t n)
{
    for (;;) {
        int32_t c = 2 * root + 1;
        rfe_real t;
        if (c >= n) return;
        if (c + 1 < n && a[c + 1] > a[c]) ++c;
        if (!(a[c] > a[root])) return;
        t = a[c]; a[c] = a[root]; a[root] = t;
        root = c;
    }
}

/* np.median of n values (destroys a): the middle value, or the mean of the two middle ones */
rfe_real rfe_dsp_median(rfe_real *a, int32_t n)
{
    int32_t i;
    rfe_real t;
    for (i = n / 2 - 1; i >= 0; --i) sift(a, i, n);
    for (i = n - 1; i > 0; --i) {
        t = a[0]; a[0] = a[i]; a[i] = t;
        sift(a, 0, i);
    }
    if (n & 1) return a[n / 2];
    return (a[n / 2 - 1] + a[n / 2]) / 2;
}

/* |re + j im| in float32 as numpy (>= 1.25) computes the absolute value of a complex64 (SIMD loop
 * CFLOAT_absolute): larger * sqrt(ratio * ratio + 1) with ratio = smaller / larger and the
 * multiply-add fused where the CPU has FMA (x86-64-v3, the usual training machine).  It differs
 * from the correctly rounded hypot for about a third of all int8 pairs. */
float rfe_dsp_abs_c64(int8_t re, int8_t im)
{
    float a = re < 0 ? -(float)re : (float)re, b = im < 0 ? -(float)im : (float)im;
    float l = a > b ? a : b, m = a > b ? b : a, r;
    if (l == 0.0f) return 0.0f;
    r = m / l;
#ifdef RFE_DSP_ABS_NO_FMA
    return l * sqrtf(r * r + 1.0f);
#else
    return l * sqrtf(fmaf(r, r, 1.0f));
#endif
}

/* log(max(|h|, 0.5)), as rfedge.features.uniform_logamp */
static rfe_real logamp(const int8_t *h)
{
    float a = rfe_dsp_abs_c64(h[0], h[1]);
    rfe_real v = (rfe_real)(a > 0.5f ? a : 0.5f);
    return RFE_LOG(v);
}

/* ---- rfedge.activity.remove_agc_steps on packets [first, first + n) of the ring ------------- */

static int8_t (*row(rfe_dsp_state *s, uint32_t first, uint32_t i))[2]
{
    return s->iq[(s->head + first + i) % RFE_DSP_MAX_PACKETS];
}

static double tabs(const rfe_dsp_state *s, uint32_t first, uint32_t i)
{
    /* absolute time as the reference sees it: t_first + relative (exact integers in a double) */
    return (double)s->t_first + (double)s->t_rel[(s->head + first + i) % RFE_DSP_MAX_PACKETS];
}

static void agc_correction(rfe_dsp_state *s, uint32_t first, int32_t n)
{
    const int32_t S = s->n_sub, nd = n - 1;
    rfe_real *med = s->med, *gap = s->gap, *tmp = s->tmp, *rate = s->rate;
    rfe_real d[RFE_DSP_MAX_SUBCARRIERS], lb[RFE_DSP_MAX_SUBCARRIERS];
    const rfe_real sqrt_s = RFE_SQRT((rfe_real)S);
    rfe_real gm;
    int32_t i, k;
    s->corr[0] = 0;
    if (nd <= 0) return;
    for (k = 0; k < S; ++k) lb[k] = logamp(row(s, first, 0)[k]);
    for (i = 0; i < nd; ++i) {
        int8_t (*r1)[2] = row(s, first, (uint32_t)i + 1);
        for (k = 0; k < S; ++k) {
            rfe_real la1 = logamp(r1[k]);
            d[k] = la1 - lb[k];
            lb[k] = la1;
        }
        for (k = 0; k < S; ++k) tmp[k] = d[k];
        med[i] = rfe_dsp_median(tmp, S);
        for (k = 0; k < S; ++k) tmp[k] = RFE_FABS(d[k] - med[i]);
        /* se = 1.2533 * 1.4826 * spread / sqrt(S), in the reference's order */
        s->se[i] = (rfe_real)(1.2533 * 1.4826) * rfe_dsp_median(tmp, S) / sqrt_s;
        gap[i] = (rfe_real)(tabs(s, first, (uint32_t)i + 1) - tabs(s, first, (uint32_t)i));
    }
    for (i = 0; i < nd; ++i) tmp[i] = gap[i];
    gm = rfe_dsp_median(tmp, nd);
    if (gm < (rfe_real)1e-9) gm = (rfe_real)1e-9;
    for (i = 0; i < nd; ++i) {
        gap[i] = gap[i] / gm;
        rate[i] = med[i] / (gap[i] > (rfe_real)1e-9 ? gap[i] : (rfe_real)1e-9);
    }
    for (i = 0; i < nd; ++i) {
        rfe_real before, after, around, a = RFE_FABS(med[i]), size;
        int step;
        if (nd == 1) {
            before = after = rate[0];
        } else {
            before = i == 0 ? rate[1] : rate[i - 1];
            after = i == nd - 1 ? rate[nd - 2] : rate[i + 1];
        }
        around = (RFE_FABS(before) > RFE_FABS(after) ? RFE_FABS(before) : RFE_FABS(after)) * gap[i];
        step = a > (rfe_real)RFE_AGC_STEP_MIN && a > (rfe_real)RFE_AGC_STEP_Z * s->se[i]
               && a > (rfe_real)RFE_AGC_STEP_ISOLATION * around;
        size = med[i] - (rfe_real)0.5 * (before + after) * gap[i];
        s->corr[i + 1] = s->corr[i] + (step ? size : (rfe_real)0);
    }
}

/* ---- np.interp ------------------------------------------------------------------------------ */

/* value at x of the line through (x0, y0), (x1, y1) as numpy's arr_interp computes it */
static rfe_real interp1(double x, double x0, double x1, rfe_real y0, rfe_real y1)
{
    rfe_real slope, r;
    if (x == x0) return y0;
    slope = (y1 - y0) / (rfe_real)(x1 - x0);
    r = slope * (rfe_real)(x - x0) + y0;
    if (r != r) {
        r = slope * (rfe_real)(x - x1) + y1;
        if (r != r && y0 == y1) r = y0;
    }
    return r;
}

/* ---- the window -> features -> int8 ------------------------------------------------------------ */

static int8_t quantize(float v)
{
    int32_t t;
    float frac;
    if (v > 1.0e6f) v = 1.0e6f;
    if (v < -1.0e6f) v = -1.0e6f;
    t = (int32_t)v;                           /* toward zero; exact below 2^24 */
    frac = v - (float)t;
    if (frac > 0.5f || (frac == 0.5f && (t & 1))) t += 1;          /* half to even, as np.round */
    else if (frac < -0.5f || (frac == -0.5f && (t & 1))) t -= 1;
    t += RFE_DSP_INPUT_ZERO_POINT;
    return (int8_t)(t < -128 ? -128 : (t > 127 ? 127 : t));
}

static int window(rfe_dsp_state *s, uint32_t first, int32_t n, int8_t *out)
{
    const int32_t S = s->n_sub, N = RFE_DSP_N_SAMPLES, C = RFE_DSP_GROUPS;
    const int32_t F = RFE_DSP_N_BINS, T = RFE_DSP_N_FRAMES, L = RFE_DSP_WIN_LEN;
    double t0, tl, step_us, lin_step;
    int32_t ng, i, k, c, f, t, l, j;
    int32_t edges[RFE_DSP_GROUPS + 1];
    rfe_real x[RFE_DSP_N_SAMPLES];
    if (n < 2) return RFE_DSP_E_EMPTY;
    if (S < C) return RFE_DSP_E_SUBCARRIERS;
    t0 = tabs(s, first, 0);
    tl = tabs(s, first, (uint32_t)n - 1);
    /* features.uniform_logamp: n = max(floor((t[-1] - t[0]) * 1e-6 * rate) + 1, 2) */
    {
        double span = floor((tl - t0) * 1e-6 * RFE_DSP_RATE_HZ);
        if (span + 1 > RFE_DSP_MAX_SAMPLES) return RFE_DSP_E_TOO_LONG;
        ng = (int32_t)span + 1;
        if (ng < 2) ng = 2;
    }
    agc_correction(s, first, n);
    step_us = 1e6 / RFE_DSP_RATE_HZ;
    /* group edges: np.linspace(0, S, C + 1).round() */
    for (c = 0; c <= C; ++c) {
        double e = c == C ? (double)S : (double)c * ((double)S / (double)C);
        edges[c] = (int32_t)nearbyint(e);    /* round half to even, as np.round */
    }
    /* time normalization grid: np.linspace(0, ng - 1, N) */
    lin_step = (double)(ng - 1) / (double)(N - 1);
    for (i = 0; i < N; ++i)
        for (c = 0; c < C; ++c) s->grouped[i][c] = 0;
    for (c = 0; c < C; ++c) {
        const int32_t lo = edges[c], hi = edges[c + 1];
        for (k = lo; k < hi; ++k) {
            rfe_real mean;
            /* la - corr of this subcarrier over the packets */
            for (j = 0; j < n; ++j) s->lk[j] = logamp(row(s, first, (uint32_t)j)[k]) - s->corr[j];
            /* dsp.resample_uniform: np.interp(t0 + i * step, t, la - corr), edges held */
            j = 0;
            for (i = 0; i < ng; ++i) {
                double g = t0 + (double)i * step_us;
                while (j + 1 < n && tabs(s, first, (uint32_t)j + 1) <= g) ++j;
                if (j >= n - 1) s->col[i] = s->lk[n - 1];
                else s->col[i] = interp1(g, tabs(s, first, (uint32_t)j), tabs(s, first, (uint32_t)j + 1),
                                         s->lk[j], s->lk[j + 1]);
            }
            /* features_from_logamp: np.interp(linspace, arange(ng), column) */
            for (i = 0; i < N; ++i) {
                double g = i == N - 1 ? (double)(ng - 1) : (double)i * lin_step;
                int32_t jj = (int32_t)g;
                if (jj >= ng - 1) x[i] = s->col[ng - 1];
                else x[i] = interp1(g, (double)jj, (double)(jj + 1), s->col[jj], s->col[jj + 1]);
            }
            /* x - x.mean(axis=0): a sequential sum down the time axis */
            mean = x[0];
            for (i = 1; i < N; ++i) mean += x[i];
            mean = mean / (rfe_real)N;
            for (i = 0; i < N; ++i) s->xk[i][k - lo] = x[i] - mean;
        }
        /* dsp.group_subcarriers: mean over the block (numpy's pairwise sum) */
        for (i = 0; i < N; ++i)
            s->grouped[i][c] = rfe_dsp_pairwise_sum(s->xk[i], hi - lo, 1) / (rfe_real)(hi - lo);
    }
    /* dsp.stft_bins at the Doppler bins, then dsp.log_power, float32 */
    for (c = 0; c < C; ++c) {
        for (t = 0; t < T; ++t) {
            rfe_real seg[RFE_DSP_WIN_LEN];
            for (l = 0; l < L; ++l) seg[l] = s->grouped[t * RFE_DSP_HOP + l][c] * (rfe_real)rfe_dsp_hann[l];
            for (f = 0; f < F; ++f) {
                rfe_real re = 0, im = 0;
                for (l = 0; l < L; ++l) {
                    re += seg[l] * (rfe_real)rfe_dsp_basis_re[l * F + f];
                    im += seg[l] * (rfe_real)rfe_dsp_basis_im[l * F + f];
                }
                s->feat[c][f][t] = (float)RFE_LOG(re * re + im * im + (rfe_real)RFE_DSP_EPS);
            }
        }
    }
    /* Normalizer (float32), then quantization; the model input is [T][F][C] */
    for (t = 0; t < T; ++t)
        for (f = 0; f < F; ++f)
            for (c = 0; c < C; ++c) {
                float v = (s->feat[c][f][t] - rfe_dsp_norm_mean[c]) / rfe_dsp_norm_std[c];
                out[(t * F + f) * C + c] = quantize(v / RFE_DSP_INPUT_SCALE);
            }
    return RFE_DSP_OK;
}

int rfe_dsp_window_to_input(rfe_dsp_state *s, int8_t *out)
{
    if (s->pushed > s->count) return RFE_DSP_E_OVERFLOW;
    return window(s, 0, (int32_t)s->count, out);
}

int rfe_dsp_window_range_to_input(rfe_dsp_state *s, uint32_t t0_us, uint32_t t1_us, int8_t *out)
{
    uint32_t a = 0, b, r0 = t0_us - s->t_first, r1 = t1_us - s->t_first;
    if (s->count == 0) return RFE_DSP_E_EMPTY;
    /* the range must start inside what the ring still holds */
    if ((int32_t)(r0 - s->t_rel[s->head]) < 0 && s->pushed > s->count) return RFE_DSP_E_OVERFLOW;
    while (a < s->count && (int32_t)(s->t_rel[(s->head + a) % RFE_DSP_MAX_PACKETS] - r0) < 0) ++a;
    b = a;
    while (b < s->count && (int32_t)(s->t_rel[(s->head + b) % RFE_DSP_MAX_PACKETS] - r1) <= 0) ++b;
    return window(s, a, (int32_t)(b - a), out);
}

const float *rfe_dsp_features(const rfe_dsp_state *s)
{
    return &s->feat[0][0][0];
}
