/*
 * rfe_dsp.c - one pre-segmented CSI window -> the model's int8 input (see rfe_dsp.h).
 *
 * Each step names the Python function it mirrors; where numpy's order of operations matters
 * for the last bit (np.interp, np.linspace, np.median, pairwise sums of np.mean) it is followed.
 */
#define RFE_DSP_DEFINE_TABLES
#define RFE_DSP_DEFINE_LOGAMP_TABLE
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

/* An integer with the order of the real numbers (finite or infinite; -0 sorts just below +0, which
 * np.median cannot tell apart either way): selection by integer compares, no soft-float calls. */
#ifdef RFE_DSP_SINGLE_PRECISION
typedef int32_t rfe_key;
static rfe_key key_of(rfe_real v)
{
    int32_t b;
    memcpy(&b, &v, sizeof b);
    return b ^ ((b >> 31) & 0x7fffffff);
}
#else
typedef int64_t rfe_key;
static rfe_key key_of(rfe_real v)
{
    int64_t b;
    memcpy(&b, &v, sizeof b);
    return b ^ ((b >> 63) & INT64_C(0x7fffffffffffffff));
}
#endif

/* np.median of n values (destroys a): the middle value, or the mean of the two middle ones.
 * Hoare's selection of the k-th smallest (a[0..k) <= a[k] afterwards), then the largest below it. */
rfe_real rfe_dsp_median(rfe_real *a, int32_t n)
{
    const int32_t k = n / 2;
    int32_t lo = 0, hi = n - 1, i;
    rfe_real t, below;
    rfe_key kb;
    while (hi > lo) {
        const rfe_key pv = key_of(a[lo + (hi - lo) / 2]);
        int32_t p = lo, q = hi;
        while (p <= q) {
            while (key_of(a[p]) < pv) ++p;
            while (key_of(a[q]) > pv) --q;
            if (p <= q) {
                t = a[p]; a[p] = a[q]; a[q] = t;
                ++p; --q;
            }
        }
        if (k <= q) hi = q;
        else if (k >= p) lo = p;
        else break;
    }
    if (n & 1) return a[k];
    below = a[0];
    kb = key_of(below);
    for (i = 1; i < k; ++i) {
        rfe_key ki = key_of(a[i]);
        if (ki > kb) { kb = ki; below = a[i]; }
    }
    return (below + a[k]) / 2;
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

/* log(max(|h|, 0.5)), as rfedge.features.uniform_logamp, in Q58 fixed point: looked up in the
 * generated table of every int8 value's log-amplitude (numpy's complex64 abs and log, rounded from
 * float64; see rfedge_codegen.emit_dsp) */
static int64_t logamp_q58(const int8_t *h)
{
    int32_t a = h[0] < 0 ? -h[0] : h[0], b = h[1] < 0 ? -h[1] : h[1];
    int32_t m = a > b ? a : b, l = a > b ? b : a;
    return rfe_dsp_logamp_q58[((m * (m + 1)) >> 1) + l];
}

static rfe_real q58_real(int64_t v)
{
    return (rfe_real)((double)v * 0x1p-58);
}

static rfe_real q52_real(int64_t v)
{
    return (rfe_real)((double)v * 0x1p-52);
}

/* the middle value(s) of n integers (destroys a): *m1 the (n/2)-th smallest, *m0 the one below it
 * when n is even (else m1 again) - Hoare's selection, as rfe_dsp_median */
static void median_i64(int64_t *a, int32_t n, int64_t *m0, int64_t *m1)
{
    const int32_t k = n / 2;
    int32_t lo = 0, hi = n - 1, i;
    int64_t t, below;
    while (hi > lo) {
        const int64_t pv = a[lo + (hi - lo) / 2];
        int32_t p = lo, q = hi;
        while (p <= q) {
            while (a[p] < pv) ++p;
            while (a[q] > pv) --q;
            if (p <= q) {
                t = a[p]; a[p] = a[q]; a[q] = t;
                ++p; --q;
            }
        }
        if (k <= q) hi = q;
        else if (k >= p) lo = p;
        else break;
    }
    *m1 = a[k];
    if (n & 1) { *m0 = a[k]; return; }
    below = a[0];
    for (i = 1; i < k; ++i) if (a[i] > below) below = a[i];
    *m0 = below;
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
    int64_t d[RFE_DSP_MAX_SUBCARRIERS], lb[RFE_DSP_MAX_SUBCARRIERS], w[RFE_DSP_MAX_SUBCARRIERS];
    const rfe_real sqrt_s = RFE_SQRT((rfe_real)S);
    rfe_real gm;
    int32_t i, k;
    s->corr[0] = 0;
    if (nd <= 0) return;
    /* The changes between packets and their spread in Q58 fixed point: integer subtractions and
     * compares (the log-amplitudes lie in [log 0.5, log 182), so nothing overflows); only the
     * medians become floating point.  They differ from the float64 arithmetic of the reference by
     * ~2^-58, far below anything the step test or the features can see. */
    for (k = 0; k < S; ++k) lb[k] = logamp_q58(row(s, first, 0)[k]);
    for (i = 0; i < nd; ++i) {
        int8_t (*r1)[2] = row(s, first, (uint32_t)i + 1);
        int64_t m0, m1, sum;
        for (k = 0; k < S; ++k) {
            int64_t la1 = logamp_q58(r1[k]);
            d[k] = la1 - lb[k];
            w[k] = d[k];
            lb[k] = la1;
        }
        median_i64(w, S, &m0, &m1);
        med[i] = S & 1 ? q58_real(m1) : (q58_real(m0) + q58_real(m1)) / 2;
        /* |d - med| at twice the scale (Q59), exact */
        sum = m0 + m1;
        for (k = 0; k < S; ++k) {
            int64_t v = 2 * d[k] - sum;
            w[k] = v < 0 ? -v : v;
        }
        median_i64(w, S, &m0, &m1);
        /* se = 1.2533 * 1.4826 * spread / sqrt(S), in the reference's order */
        s->se[i] = (rfe_real)(1.2533 * 1.4826)
                   * (S & 1 ? q58_real(m1) / 2 : (q58_real(m0) / 2 + q58_real(m1) / 2) / 2) / sqrt_s;
        gap[i] = (rfe_real)(s->tw[i + 1] - s->tw[i]);
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

/* ---- log(power + eps) of the STFT, rounded to float32 ---------------------------------------- */

/* 2^62 / c_i and log(c_i) * 2^60, c_i = 1 + (2 i + 1) / 256 (exact to the last bit, from Python's decimal) */
static const uint64_t log_inv_q62[128] = {
    UINT64_C(0x3fc03fc03fc03fc0), UINT64_C(0x3f42395403f42395), UINT64_C(0x3ec6215941b76ae9), UINT64_C(0x3e4bec8846156a19),
    UINT64_C(0x3dd38ff08b1c03dd), UINT64_C(0x3d5d00f57403d5d0), UINT64_C(0x3ce8354b2ea1c8ce), UINT64_C(0x3c7522f3b834e67f),
    UINT64_C(0x3c03c03c03c03c04), UINT64_C(0x3b9403b9403b9404), UINT64_C(0x3b25e4463cff1368), UINT64_C(0x3ab95900eae56404),
    UINT64_C(0x3a4e5947f8b634d7), UINT64_C(0x39e4dcb8897f8c36), UINT64_C(0x397cdb2c0397cdb3), UINT64_C(0x39164cb5f7148404),
    UINT64_C(0x38b129a21a930b84), UINT64_C(0x384d6a725d40384d), UINT64_C(0x37eb07dd0d1b15d8), UINT64_C(0x3789facb107cf674),
    UINT64_C(0x372a3c5631fe46ae), UINT64_C(0x36cbc5c77ddc0a46), UINT64_C(0x366e9095b00d9ba4), UINT64_C(0x36129663b24547d1),
    UINT64_C(0x35b7d0ff2920bc03), UINT64_C(0x355e3a5f0fd7f954), UINT64_C(0x3505cca261c2b14b), UINT64_C(0x34ae820ed114942b),
    UINT64_C(0x3458550f8a39409d), UINT64_C(0x3403403403403403), UINT64_C(0x33af3e2ed6d05a73), UINT64_C(0x335c49d4aa21b490),
    UINT64_C(0x330a5e1b1d81fe68), UINT64_C(0x32b97617c6ef5b25), UINT64_C(0x32698cff3659cc03), UINT64_C(0x321a9e240321a9e2),
    UINT64_C(0x31cca4f5e26e7e0e), UINT64_C(0x317f9d00c5fe7403), UINT64_C(0x313381ec0313381f), UINT64_C(0x30e84f79812571dd),
    UINT64_C(0x309e0184f00c2780), UINT64_C(0x3054940305494030), UINT64_C(0x300c0300c0300c03), UINT64_C(0x2fc44aa2b49e3a37),
    UINT64_C(0x2f7d67245c02f7d6), UINT64_C(0x2f3754d76c7316df), UINT64_C(0x2ef21023358c1a68), UINT64_C(0x2ead958402ead958),
    UINT64_C(0x2e69e18a83fd1962), UINT64_C(0x2e26f0db38f8114f), UINT64_C(0x2de4c02de4c02de5), UINT64_C(0x2da34c4d0390c1f6),
    UINT64_C(0x2d629215463479f9), UINT64_C(0x2d228e7511a17fa6), UINT64_C(0x2ce33e6c02ce33e7), UINT64_C(0x2ca49f0a76954674),
    UINT64_C(0x2c66ad711581bc03), UINT64_C(0x2c2966d0635d2755), UINT64_C(0x2becc868525bf7c4), UINT64_C(0x2bb0cf87d9c54a69),
    UINT64_C(0x2b75798c8ff522a2), UINT64_C(0x2b3ac3e24799546f), UINT64_C(0x2b00ac02b00ac02b), UINT64_C(0x2ac72f74f8a5c3d8),
    UINT64_C(0x2a8e4bcd7705fc03), UINT64_C(0x2a55fead500a9580), UINT64_C(0x2a1e45c223898adc), UINT64_C(0x29e71ec5ba993509),
    UINT64_C(0x29b0877db8589720), UINT64_C(0x297a7dbb4d1fc1c8), UINT64_C(0x2944ff5aec029450), UINT64_C(0x29100a44029100a4),
    UINT64_C(0x28db9c68b2c0cc4a), UINT64_C(0x28a7b3c58eed9403), UINT64_C(0x28744e6157dc9a3b), UINT64_C(0x28416a4cbcb2a248),
    UINT64_C(0x280f05a21ccacc0d), UINT64_C(0x27dd1e854b5e0db4), UINT64_C(0x27abb32354eb8b78), UINT64_C(0x277ac1b24652a906),
    UINT64_C(0x274a4870f59044c2), UINT64_C(0x271a45a6cc111b7e), UINT64_C(0x26eab7a3928bdb84), UINT64_C(0x26bb9cbf3e55f044),
    UINT64_C(0x268cf359c0268cf3), UINT64_C(0x265eb9dad43bf402), UINT64_C(0x2630eeb1d3d76c02), UINT64_C(0x260390558804c072),
    UINT64_C(0x25d69d43fda2962c), UINT64_C(0x25aa14025aa14026), UINT64_C(0x257df31cb46e21fa), UINT64_C(0x25523925e7820a7f),
    UINT64_C(0x2526e4b7700949b9), UINT64_C(0x24fbf471439c9adf), UINT64_C(0x24d166f9ac024d16), UINT64_C(0x24a73afd22ef6439),
    UINT64_C(0x247d6f2e2ec0b673), UINT64_C(0x2454024540245402), UINT64_C(0x242af30090abcc02), UINT64_C(0x2402402402402402),
    UINT64_C(0x23d9e878ff70985e), UINT64_C(0x23b1eace5c957907), UINT64_C(0x238a45f839c0b1b3), UINT64_C(0x2362f8cfe575c564),
    UINT64_C(0x233c0233c0233c02), UINT64_C(0x231561072057b573), UINT64_C(0x22ef143237ad0830), UINT64_C(0x22c91aa1f864022d),
    UINT64_C(0x22a37347fbab9197), UINT64_C(0x227e1d1a688e4838), UINT64_C(0x22591713db81577b), UINT64_C(0x223460334e904cf6),
    UINT64_C(0x220ff77c0220ff78), UINT64_C(0x21ebdbf5664b4350), UINT64_C(0x21c80cab04c021c8), UINT64_C(0x21a488ac6b3c73a6),
    UINT64_C(0x21814f0d1682e11d), UINT64_C(0x215e5ee45dd96ae2), UINT64_C(0x213bb74d5f06c021), UINT64_C(0x21195766eacbc402),
    UINT64_C(0x20f73e5371d5c338), UINT64_C(0x20d56b38f225f6c4), UINT64_C(0x20b3dd40e4eb0cc6), UINT64_C(0x209293982cc98af1),
    UINT64_C(0x20718d6f048ff7e4), UINT64_C(0x2050c9f8ee53d18c), UINT64_C(0x2030486ca2f46ea6), UINT64_C(0x2010080402010080)
};

static const int64_t log_c_q60[128] = {
    INT64_C(0xff805515885e0), INT64_C(0x2fb88ebf0214ee), INT64_C(0x4f3a910d1a95d4), INT64_C(0x6e7f009ebe4660),
    INT64_C(0x8d86cc491ecbfe), INT64_C(0xac52dd7e4726a4), INT64_C(0xcae41876471f5c), INT64_C(0xe93b5c56d85a91),
    INT64_C(0x1075983598e4713), INT64_C(0x1253f62f0a14170), INT64_C(0x142edcbea646f04), INT64_C(0x160658a93750c3b),
    INT64_C(0x17da766d7b12cc8), INT64_C(0x19ab42462033ace), INT64_C(0x1b78c82bb0eda11), INT64_C(0x1d4313d66cb35d6),
    INT64_C(0x1f0a30c01162a66), INT64_C(0x20ce2a2594b2dc5), INT64_C(0x228f0b08ce8558d), INT64_C(0x244cde3214b5970),
    INT64_C(0x2607ae31c8ffa60), INT64_C(0x27bf8561d98c539), INT64_C(0x29746de734abcab), INT64_C(0x2b2671b330410ba),
    INT64_C(0x2cd59a84e55aa1c), INT64_C(0x2e81f1ea806f499), INT64_C(0x302b814286afd5b), INT64_C(0x31d251bd10da815),
    INT64_C(0x33766c5cfbf706b), INT64_C(0x3517d9f9105e318), INT64_C(0x36b6a33d1f6b48e), INT64_C(0x3852d0ab1831814),
    INT64_C(0x39ec6a9c138bb89), INT64_C(0x3b83794157d8fac), INT64_C(0x3d1804a554b4bfd), INT64_C(0x3eaa14ac96f66e1),
    INT64_C(0x4039b116b540732), INT64_C(0x41c6e17f3564347), INT64_C(0x4351ad5e6add2c8), INT64_C(0x44da1c0a4ea2c18),
    INT64_C(0x466034b7508dbda), INT64_C(0x47e3fe79228bca3), INT64_C(0x496580437dd8e7c), INT64_C(0x4ae4c0eae274927),
    INT64_C(0x4c61c725510613f), INT64_C(0x4ddc998aff616bd), INT64_C(0x4f553e9707dc3e2), INT64_C(0x50cbbca813a04ed),
    INT64_C(0x52401a010027433), INT64_C(0x53b25cc98009a6c), INT64_C(0x55228b0eb7498b4), INT64_C(0x5690aac3d33f867),
    INT64_C(0x57fcc1c29e4f4f2), INT64_C(0x5966d5cc0f87ca0), INT64_C(0x5aceec88d650f62), INT64_C(0x5c350b89e248d75),
    INT64_C(0x5d993848e76f3b0), INT64_C(0x5efb7828debefe8), INT64_C(0x605bd076835256d), INT64_C(0x61ba4668cc2e802),
    INT64_C(0x6316df2162d22a2), INT64_C(0x64719fad16a0f62), INT64_C(0x65ca8d044d4561a), INT64_C(0x6721ac0b70218a7),
    INT64_C(0x6877019356e6559), INT64_C(0x69ca9259af67a86), INT64_C(0x6b1c630962c3903), INT64_C(0x6c6c783af7f16da),
    INT64_C(0x6dbad674f3cd767), INT64_C(0x6f07822c36b4291), INT64_C(0x70527fc457c09ab), INT64_C(0x719bd38ffdbfdfa),
    INT64_C(0x72e381d135eb27f), INT64_C(0x74298eb9c879909), INT64_C(0x756dfe6b8b1a0f3), INT64_C(0x76b0d4f8b165509),
    INT64_C(0x77f216641b56d50), INT64_C(0x7931c6a1a1dc10b), INT64_C(0x7a6fe9966187d59), INT64_C(0x7bac83190377d0d),
    INT64_C(0x7ce796f204796f3), INT64_C(0x7e2128dbfa7b08b), INT64_C(0x7f593c83d855c73), INT64_C(0x808fd5892ffc50c),
    INT64_C(0x81c4f77e7319d9e), INT64_C(0x82f8a5e9322ce05), INT64_C(0x842ae4425a2872e), INT64_C(0x855bb5f670a68e0),
    INT64_C(0x868b1e65ceb5bf0), INT64_C(0x87b920e4da4bea7), INT64_C(0x88e5c0bc3e67c20), INT64_C(0x8a11012921ea279),
    INT64_C(0x8b3ae55d5d30702), INT64_C(0x8c63707fae78306), INT64_C(0x8d8aa5abed14f78), INT64_C(0x8eb087f33b80184),
    INT64_C(0x8fd51a5c384a606), INT64_C(0x90f85fe32df75f1), INT64_C(0x921a5b7a41c99f1), INT64_C(0x933b1009a186fe7),
    INT64_C(0x945a806fb03c158), INT64_C(0x9578af81320568e), INT64_C(0x9695a00976e4ed6), INT64_C(0x97b154ca84aa317),
    INT64_C(0x98cbd07d3ff350f), INT64_C(0x99e515d1944ca64), INT64_C(0x9afd276e9b75001), INT64_C(0x9c1407f2c3cbf60),
    INT64_C(0x9d29b9f3f5efcc6), INT64_C(0x9e3e3fffb9902e4), INT64_C(0x9f519c9b597adc2), INT64_C(0xa063d24406e7491),
    INT64_C(0xa174e36efc05f96), INT64_C(0xa284d2899dd8528), INT64_C(0xa393a1f99d55699), INT64_C(0xa4a1541d17e03be),
    INT64_C(0xa5adeb4ab7139c7), INT64_C(0xa6b969d1cfe8024), INT64_C(0xa7c3d1fa8137443), INT64_C(0xa8cd2605d1a2333),
    INT64_C(0xa9d5682dccdbe55), INT64_C(0xaadc9aa5a05e69e), INT64_C(0xabe2bf99b78c843), INT64_C(0xace7d92fd743efc),
    INT64_C(0xadebe98738e398e), INT64_C(0xaeeef2b8a4c91bc), INT64_C(0xaff0f6d68c48c47), INT64_C(0xb0f1f7ed232334c)
};

#define LOG_LN2_Q56 INT64_C(0xb17217f7d1cf7a)
#define LOG_INV2_Q60 INT64_C(0x800000000000000)
#define LOG_INV3_Q60 INT64_C(0x555555555555555)
#define LOG_INV4_Q60 INT64_C(0x400000000000000)
#define LOG_INV5_Q60 INT64_C(0x333333333333333)
#define LOG_LN2_Q60 INT64_C(0xb17217f7d1cf79b)
#define LOG_INV7_Q60 INT64_C(0x249249249249249)
#define LOG_INV6_Q60 INT64_C(0x2aaaaaaaaaaaaab)

/* (a * b) >> sh (32 <= sh < 64) of signed 64-bit values, rounded toward minus infinity: the
 * unsigned 128-bit product from 32-bit multiplies, its high word corrected for the signs */
static int64_t mulq(int64_t a, int64_t b, int sh)
{
    const uint64_t ua = (uint64_t)a, ub = (uint64_t)b;
    const uint64_t a0 = (uint32_t)ua, a1 = ua >> 32, b0 = (uint32_t)ub, b1 = ub >> 32;
    const uint64_t p00 = a0 * b0, p01 = a0 * b1, p10 = a1 * b0, p11 = a1 * b1;
    const uint64_t mid = (p00 >> 32) + (uint32_t)p01 + (uint32_t)p10;
    uint64_t hi = p11 + (p01 >> 32) + (p10 >> 32) + (mid >> 32);
    const uint64_t lo = (mid << 32) | (uint32_t)p00;
    if (a < 0) hi -= ub;
    if (b < 0) hi -= ua;
    return (int64_t)((hi << (64 - sh)) | (lo >> sh));
}

/* (float)log(p) for the STFT's power + eps without a soft-float log: p = 2^e m, m in [1, 2);
 * log m = log c_i + log1p(r), c_i the centre of m's 1/128 interval, r = (m - c_i) / c_i
 * (|r| < 2^-8, seven series terms) in 64-bit fixed point, absolute error ~2^-59 (2^-56 when
 * |log p| > 5), then one
 * rounding to float32.  The float32 equals that of a correctly rounded double log but when the
 * log lies within ~2^-56 of a float32 rounding boundary (never seen: tests/test_device_dsp.py). */
static float log_core(int32_t e, uint64_t mant);

static float log_f32(rfe_real p)
{
    int32_t e;
    uint64_t mant;
#ifdef RFE_DSP_SINGLE_PRECISION
    uint32_t b;
    memcpy(&b, &p, sizeof b);
    e = (int32_t)((b >> 23) & 0xff);
    if (e == 0 || e == 0xff || (b >> 31)) return (float)RFE_LOG(p);
    e -= 127;
    mant = (uint64_t)(b & 0x7fffffu) << 29;
#else
    uint64_t b;
    memcpy(&b, &p, sizeof b);
    e = (int32_t)((b >> 52) & 0x7ff);
    if (e == 0 || e == 0x7ff || (b >> 63)) return (float)RFE_LOG(p);
    e -= 1023;
    mant = b & ((UINT64_C(1) << 52) - 1);
#endif
    if (e > 60 || e < -60) return (float)RFE_LOG(p);
    return log_core(e, mant);
}

/* log(2^e (1 + mant / 2^52)) rounded to float32, |e| <= 60 */
static float log_core(int32_t e, uint64_t mant)
{
    int32_t i;
    int64_t d, r, t, y, v;
    if (e > 60 || e < -60) {       /* out of the fixed-point range: the library's log */
        double p;
        uint64_t b = ((uint64_t)(e + 1023) << 52) | mant;
        if (e + 1023 < 1 || e + 1023 > 2046) return e < 0 ? -HUGE_VALF : HUGE_VALF;
        memcpy(&p, &b, sizeof p);
        return (float)log(p);
    }
    i = (int32_t)(mant >> 45);
    d = (int64_t)mant - (int64_t)((uint64_t)(2 * i + 1) << 44);           /* m - c_i, Q52 */
    r = mulq(d, (int64_t)log_inv_q62[i], 54);                              /* Q60 */
    t = LOG_INV6_Q60 - mulq(r, LOG_INV7_Q60, 60);
    t = LOG_INV5_Q60 - mulq(r, t, 60);
    t = LOG_INV4_Q60 - mulq(r, t, 60);
    t = LOG_INV3_Q60 - mulq(r, t, 60);
    t = LOG_INV2_Q60 - mulq(r, t, 60);
    t = (INT64_C(1) << 60) - mulq(r, t, 60);
    y = mulq(r, t, 60) + log_c_q60[i];                                     /* log m, Q60 */
    if (e >= -7 && e <= 7)                                                 /* |log p| < 6: Q60 */
        return (float)((int64_t)e * LOG_LN2_Q60 + y) * 0x1p-60f;
    v = (int64_t)e * LOG_LN2_Q56 + (y >= 0 ? (y + 8) / 16 : -((-y + 8) / 16));
    return (float)v * 0x1p-56f;
}

/* ---- the STFT in 64-bit fixed point ------------------------------------------------------------ */

/* round(x * 2^q) of a double (|x| * 2^q < 2^62); 0 for zero and subnormals */
static int64_t to_fixed(double x, int32_t q)
{
    uint64_t b, m;
    int32_t sh;
    memcpy(&b, &x, sizeof b);
    if (((b >> 52) & 0x7ff) == 0) return 0;
    m = (b & ((UINT64_C(1) << 52) - 1)) | (UINT64_C(1) << 52);
    sh = (int32_t)((b >> 52) & 0x7ff) - 1075 + q;
    if (sh >= 0) m <<= sh;
    else if (sh > -63) m = (m + (UINT64_C(1) << (-sh - 1))) >> -sh;
    else m = 0;
    return (b >> 63) ? -(int64_t)m : (int64_t)m;
}

enum { STFT_HALF = (RFE_DSP_WIN_LEN - 1) / 2,            /* pairs (l, L - l), l = 1..HALF */
       STFT_HL = RFE_DSP_WIN_LEN / 2, STFT_QN = (STFT_HL - 1) / 2,  /* L even: (l, L/2 - l), l = 1..QN */
       STFT_QP = STFT_QN > 0 ? STFT_QN : 1 };

/* Hann window and basis in Q62, for stft_fixed */
typedef struct {
    int64_t hw[RFE_DSP_WIN_LEN];
    int64_t bre[STFT_HALF + 1][RFE_DSP_N_BINS], bim[STFT_HALF + 1][RFE_DSP_N_BINS];
    int64_t mid_re[RFE_DSP_N_BINS], mid_im[RFE_DSP_N_BINS];
} stft_q62;

/* 128-bit (hi, lo) += (ah, al) */
static void add128(uint64_t *hi, uint64_t *lo, uint64_t ah, uint64_t al)
{
    const uint64_t l = *lo + al;
    *hi += ah + (l < al);
    *lo = l;
}

/* |x|^2 as 128 bits */
static void sq128(int64_t x, uint64_t *hi, uint64_t *lo)
{
    const uint64_t u = x < 0 ? (uint64_t)0 - (uint64_t)x : (uint64_t)x;
    const uint64_t u0 = (uint32_t)u, u1 = u >> 32, p01 = u0 * u1;
    *hi = u1 * u1;
    *lo = u0 * u0;
    add128(hi, lo, p01 >> 32, p01 << 32);
    add128(hi, lo, p01 >> 32, p01 << 32);
}

/* (float)log(re^2 + im^2 + eps) with re, im and eps (eh, el) scaled by 2^q, 2^2q: the power in
 * 128-bit integers, rounded once to 53 bits (what a double holds), then log_core */
static float log_power_q(int64_t re, int64_t im, uint64_t eh, uint64_t el, int32_t q2)
{
    uint64_t hi, lo, h2, l2, m;
    int32_t pos, sh;
    sq128(re, &hi, &lo);
    sq128(im, &h2, &l2);
    add128(&hi, &lo, h2, l2);
    add128(&hi, &lo, eh, el);                     /* > 0: eps > 0 */
    pos = hi ? 127 - __builtin_clzll(hi) : 63 - __builtin_clzll(lo);
    sh = pos - 53;                                /* keep 54 bits, then round half up to 53 */
    if (sh <= 0) m = lo << -sh;
    else if (sh >= 64) m = hi >> (sh - 64);
    else m = (hi << (64 - sh)) | (lo >> sh);
    m = (m + 1) >> 1;
    if (m >> 53) { m >>= 1; ++pos; }
    return log_core(pos - q2, m & ((UINT64_C(1) << 52) - 1));
}

/* One group's |STFT|^2 -> log (the even-L symmetric form of window() below) with the samples in
 * block floating point: scaled by 2^q so that the largest sum stays below 2^61, and the Hann
 * window and basis in Q62.  A multiply-add costs four 32-bit multiplies instead of two soft-float
 * double operations; the rounding errors (2^-q, at most ~2^-50 of the group's largest sample) are
 * those of double arithmetic in size.  Returns 0 (nothing done) when the samples do not fit. */
static int stft_fixed(rfe_dsp_state *s, int32_t c, const stft_q62 *k)
{
    const int32_t L = RFE_DSP_WIN_LEN, F = RFE_DSP_N_BINS, T = RFE_DSP_N_FRAMES, N = RFE_DSP_N_SAMPLES;
    const int32_t HL = STFT_HL, QN = STFT_QN;
    int64_t g[RFE_DSP_N_SAMPLES];
    double gd[RFE_DSP_N_SAMPLES], scale;
    uint64_t mx = 0, sb, eh = 0, el = 0;
    int32_t i, l, t, f, e, q, lg = 0, use_q;
    for (i = 0; i < N; ++i) {
        uint64_t b;
        gd[i] = (double)s->grouped[i][c];
        memcpy(&b, &gd[i], sizeof b);
        b &= ~(UINT64_C(1) << 63);
        if (b > mx) mx = b;                      /* the bits of |x| order as |x| does */
    }
    e = (int32_t)(mx >> 52);
    if (e == 0x7ff) return 0;                    /* inf or NaN */
    e -= 1022;                                   /* |x| < 2^e */
    while ((1 << lg) < L) ++lg;
    q = 61 - e - lg - 1;
    if (q < 0 || q > 1000) q = q < 0 ? -1 : 1000;
    if (q < 0) return 0;
    for (i = 0; i < N; ++i) g[i] = to_fixed(gd[i], q);
    sb = (uint64_t)(1023 - q) << 52;             /* 2^-q */
    memcpy(&scale, &sb, sizeof scale);
    {   /* eps * 2^2q as a 128-bit integer, when exact and small enough for the power's sum */
        const double eps = (double)(rfe_real)RFE_DSP_EPS;
        uint64_t b, me;
        int32_t es;
        memcpy(&b, &eps, sizeof b);
        es = (int32_t)((b >> 52) & 0x7ff);
        me = (b & ((UINT64_C(1) << 52) - 1)) | (UINT64_C(1) << 52);
        es = es - 1075 + 2 * q;
        use_q = eps > 0 && ((b >> 52) & 0x7ff) != 0 && es >= 0 && es + 53 <= 125;
        if (use_q) {
            eh = es >= 64 ? me << (es - 64) : (es ? me >> (64 - es) : 0);
            el = es >= 64 ? 0 : me << es;
        }
    }
    for (t = 0; t < T; ++t) {
        int64_t seg[RFE_DSP_WIN_LEN], u[STFT_HALF + 1], v[STFT_HALF + 1];
        int64_t ue[STFT_QP + 1], uo[STFT_QP + 1], ve[STFT_QP + 1], vo[STFT_QP + 1];
        const int64_t *gt = g + t * RFE_DSP_HOP;
        for (l = 0; l < L; ++l) seg[l] = mulq(gt[l], k->hw[l], 62);
        for (l = 1; l < HL; ++l) {
            u[l] = seg[l] + seg[L - l];
            v[l] = seg[l] - seg[L - l];
        }
        for (l = 1; l <= QN; ++l) {
            ue[l] = u[l] + u[HL - l];
            uo[l] = u[l] - u[HL - l];
            ve[l] = v[l] - v[HL - l];
            vo[l] = v[l] + v[HL - l];
        }
        for (f = 0; f < F; ++f) {
            const int odd = rfe_dsp_bins[f] & 1;
            const int64_t *pu = odd ? uo : ue, *pv = odd ? vo : ve;
            int64_t re = seg[0], im = 0;
            rfe_real rr, ri;
            for (l = 1; l <= QN; ++l) {
                re += mulq(pu[l], k->bre[l][f], 62);
                im += mulq(pv[l], k->bim[l][f], 62);
            }
            if (HL % 2 == 0 && HL >= 2) {
                re += mulq(u[HL / 2], k->bre[HL / 2][f], 62);
                im += mulq(v[HL / 2], k->bim[HL / 2][f], 62);
            }
            re += mulq(seg[HL], k->mid_re[f], 62);
            im += mulq(seg[HL], k->mid_im[f], 62);
            if (use_q) {
                s->feat[c][f][t] = log_power_q(re, im, eh, el, 2 * q);
                continue;
            }
            rr = (rfe_real)((double)re * scale);
            ri = (rfe_real)((double)im * scale);
            s->feat[c][f][t] = log_f32(rr * rr + ri * ri + (rfe_real)RFE_DSP_EPS);
        }
    }
    return 1;
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
    step_us = 1e6 / RFE_DSP_RATE_HZ;
    /* group edges: np.linspace(0, S, C + 1).round() */
    for (c = 0; c <= C; ++c) {
        double e = c == C ? (double)S : (double)c * ((double)S / (double)C);
        edges[c] = (int32_t)nearbyint(e);    /* round half to even, as np.round */
    }
    /* The interpolation positions are the same for every subcarrier: found once per window.
     * dsp.resample_uniform: np.interp(t0 + i * step, t, la - corr), edges held */
    for (j = 0; j < n; ++j) s->tw[j] = tabs(s, first, (uint32_t)j);
    for (j = 0; j + 1 < n; ++j) s->dt[j] = (rfe_real)(s->tw[j + 1] - s->tw[j]);
    agc_correction(s, first, n);
    j = 0;
    for (i = 0; i < ng; ++i) {
        double g = t0 + (double)i * step_us;
        while (j + 1 < n && s->tw[j + 1] <= g) ++j;
        if (j >= n - 1) {
            s->gj[i] = -1;
            s->gat[i] = 0;
            s->gdx[i] = 0;
        } else {
            s->gj[i] = (int16_t)j;
            s->gat[i] = g == s->tw[j];
            s->gdx[i] = (rfe_real)(g - s->tw[j]) / s->dt[j];   /* (x - x0) / (x1 - x0) */
        }
    }
    /* time normalization grid: np.linspace(0, ng - 1, N); np.interp(linspace, arange(ng), column) */
    lin_step = (double)(ng - 1) / (double)(N - 1);
    for (i = 0; i < N; ++i) {
        double g = i == N - 1 ? (double)(ng - 1) : (double)i * lin_step;
        int32_t jj = (int32_t)g;
        if (jj >= ng - 1) {
            s->nj[i] = -1;
            s->nat[i] = 0;
            s->nfr[i] = 0;
        } else {
            s->nj[i] = (int16_t)jj;
            s->nat[i] = g == (double)jj;
            s->nfr[i] = (rfe_real)(g - (double)jj);
        }
    }
    /* Interpolation, time normalization, mean removal and the subcarrier groups' means are all
     * linear in the (AGC-corrected) log-amplitudes, so the group mean is taken first, on the
     * packets (after the log, as the reference does; one rounding apart in the last bit), and the
     * rest runs on C groups instead of S subcarriers. */
    for (c = 0; c < C; ++c) {
        const int32_t lo = edges[c], hi = edges[c + 1];
        rfe_real mean;
        /* dsp.group_subcarriers: mean over the block of la - corr */
        for (j = 0; j < n; ++j) {      /* the sum exact in Q52 (< 2^62 for <= 114 subcarriers) */
            int8_t (*r)[2] = row(s, first, (uint32_t)j);
            int64_t sum = 0;
            for (k = lo; k < hi; ++k) sum += (logamp_q58(r[k]) + 32) >> 6;
            s->lk[j] = q52_real(sum) / (rfe_real)(hi - lo) - s->corr[j];
        }
        /* np.interp: (y1 - y0) / (x1 - x0) * (x - x0) + y0, computed as (y1 - y0) * w + y0 with
         * w = (x - x0) / (x1 - x0) the same for every group (one rounding apart in the last bit:
         * no division per value; the inputs are finite, so numpy's NaN fallback never applies) */
        for (i = 0; i < ng; ++i) {
            const int32_t jg = s->gj[i];
            if (jg < 0) s->col[i] = s->lk[n - 1];
            else if (s->gat[i]) s->col[i] = s->lk[jg];
            else s->col[i] = (s->lk[jg + 1] - s->lk[jg]) * s->gdx[i] + s->lk[jg];
        }
        /* features_from_logamp: x1 - x0 = 1 exactly, so the slope is y1 - y0 */
        for (i = 0; i < N; ++i) {
            const int32_t jj = s->nj[i];
            if (jj < 0) x[i] = s->col[ng - 1];
            else if (s->nat[i]) x[i] = s->col[jj];
            else x[i] = (s->col[jj + 1] - s->col[jj]) * s->nfr[i] + s->col[jj];
        }
        /* x - x.mean(axis=0): a sequential sum down the time axis */
        mean = x[0];
        for (i = 1; i < N; ++i) mean += x[i];
        mean = mean / (rfe_real)N;
        for (i = 0; i < N; ++i) s->grouped[i][c] = x[i] - mean;
    }
    /* dsp.stft_bins at the Doppler bins, then dsp.log_power, float32.
     * The basis is conjugate-symmetric (exp(-2j pi (L - l) m / L) = conj(exp(-2j pi l m / L))), so
     * the windowed samples l and L - l are added (real part) and subtracted (imaginary part) before
     * the multiplications: half the multiply-adds.  Sample 0 has the basis 1 (+0j) exactly. */
    {
        enum { HALF = STFT_HALF, HL = STFT_HL, QN = STFT_QN, QP = STFT_QP };
        rfe_real hw[RFE_DSP_WIN_LEN], bre[HALF + 1][RFE_DSP_N_BINS], bim[HALF + 1][RFE_DSP_N_BINS];
        rfe_real mid_re[RFE_DSP_N_BINS], mid_im[RFE_DSP_N_BINS];
        for (l = 0; l < L; ++l) hw[l] = (rfe_real)rfe_dsp_hann[l];
        for (l = 1; l <= HALF; ++l)
            for (f = 0; f < F; ++f) {
                bre[l][f] = (rfe_real)rfe_dsp_basis_re[l * F + f];
                bim[l][f] = (rfe_real)rfe_dsp_basis_im[l * F + f];
            }
        for (f = 0; f < F; ++f) {   /* l = L / 2 when L is even: its own conjugate */
            mid_re[f] = (L % 2 == 0) ? (rfe_real)rfe_dsp_basis_re[(L / 2) * F + f] : 0;
            mid_im[f] = (L % 2 == 0) ? (rfe_real)rfe_dsp_basis_im[(L / 2) * F + f] : 0;
        }
        stft_q62 kq;
        if (L % 2 == 0) {
            for (l = 0; l < L; ++l) kq.hw[l] = to_fixed(rfe_dsp_hann[l], 62);
            for (l = 1; l <= HALF; ++l)
                for (f = 0; f < F; ++f) {
                    kq.bre[l][f] = to_fixed(rfe_dsp_basis_re[l * F + f], 62);
                    kq.bim[l][f] = to_fixed(rfe_dsp_basis_im[l * F + f], 62);
                }
            for (f = 0; f < F; ++f) {
                kq.mid_re[f] = to_fixed(rfe_dsp_basis_re[(L / 2) * F + f], 62);
                kq.mid_im[f] = to_fixed(rfe_dsp_basis_im[(L / 2) * F + f], 62);
            }
        }
        for (c = 0; c < C; ++c) {
            if (L % 2 == 0 && stft_fixed(s, c, &kq)) continue;
            for (t = 0; t < T; ++t) {
                rfe_real seg[RFE_DSP_WIN_LEN], u[HALF + 1], v[HALF + 1];
                for (l = 0; l < L; ++l) seg[l] = s->grouped[t * RFE_DSP_HOP + l][c] * hw[l];
                for (l = 1; l <= HALF; ++l) {
                    u[l] = seg[l] + seg[L - l];
                    v[l] = seg[l] - seg[L - l];
                }
                if (L % 2 == 0) {
                    /* L even: exp(-2j pi (L/2 - l) m / L) = (-1)^m conj(exp(-2j pi l m / L)) - the
                     * pairs (l, L/2 - l) combine once more, by the parity of the bin m */
                    rfe_real ue[QP + 1], uo[QP + 1], ve[QP + 1], vo[QP + 1];
                    for (l = 1; l <= QN; ++l) {
                        ue[l] = u[l] + u[HL - l];
                        uo[l] = u[l] - u[HL - l];
                        ve[l] = v[l] - v[HL - l];
                        vo[l] = v[l] + v[HL - l];
                    }
                    for (f = 0; f < F; ++f) {
                        const int odd = rfe_dsp_bins[f] & 1;
                        const rfe_real *pu = odd ? uo : ue, *pv = odd ? vo : ve;
                        rfe_real re = seg[0], im = 0;
                        for (l = 1; l <= QN; ++l) {
                            re += pu[l] * bre[l][f];
                            im += pv[l] * bim[l][f];
                        }
                        if (HL % 2 == 0 && HL >= 2) {    /* l = L/4: its own partner */
                            re += u[HL / 2] * bre[HL / 2][f];
                            im += v[HL / 2] * bim[HL / 2][f];
                        }
                        re += seg[HL] * mid_re[f];
                        im += seg[HL] * mid_im[f];
                        s->feat[c][f][t] = log_f32(re * re + im * im + (rfe_real)RFE_DSP_EPS);
                    }
                    continue;
                }
                for (f = 0; f < F; ++f) {    /* L odd */
                    rfe_real re = seg[0], im = 0;
                    for (l = 1; l <= HALF; ++l) {
                        re += u[l] * bre[l][f];
                        im += v[l] * bim[l][f];
                    }
                    s->feat[c][f][t] = log_f32(re * re + im * im + (rfe_real)RFE_DSP_EPS);
                }
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
