/*
 * rfe_rfidfeat.c - fixed-point RFID features of paper 003 (see rfe_rfidfeat.h).
 *
 * Bit-exact with host/rfedge/rfid_features_fixed.py; its module docstring states every formula.
 * Per signal, in three passes over the 35 samples:
 *   1. Shell sort (gaps 5, 1) into a local copy (sum on the way): median, quartiles, min, max, range;
 *      the 10-bin histogram of mode and entropy is a walk of the sorted samples against the bin
 *      thresholds (no division per sample);
 *   2. one pass of centred, normalized samples u = (35 x - sum) * 2^-k with |u| <= 2^13:
 *      s2 = sum u^2, s3 = sum r u, s4 = sum r^2, r = round(u^2 / 2^14), all in 32 bits; for the
 *      second signal of a Pearson pair the same pass also sums the cross products;
 *   3. a few per-signal divisions (unsigned 32-bit, two-step with a 16-bit divisor) and 64-bit
 *      products turn the sums into variance, std, m3, kurtosis and skewness.
 */
#include "rfe_rfidfeat.h"

#define N RFE_FEAT_N

/* Q15 db2 decomposition low-pass (pywt dec_lo h0..h3), rint(h * 2^15). */
#define H0 (-4240)
#define H1 7345
#define H2 27411
#define H3 15826

/* round(2^16 * c * ln c), c = 0..35: sum over bins of count * ln count for the entropy
 * H = ln 35 - (1/35) sum_b c_b ln c_b. */
static const int32_t CLNC[N + 1] = {
    0, 0, 90852, 215996, 363409, 527381, 704548, 892690, 1090226, 1295976, 1509022, 1728633,
    1954210, 2185255, 2421346, 2662122, 2907270, 3156517, 3409621, 3666368, 3926566, 4190042,
    4456640, 4726218, 4998646, 5273806, 5551588, 5831891, 6114622, 6399694, 6687026, 6976543,
    7268175, 7561855, 7857521, 8155115};
#define LN35_Q16 233003               /* round(2^16 ln 35) */
#define R_VAR 820626754u              /* round(2^45 / 35^3) */
#define R_M3 750287318u               /* round(2^50 / 35^4) */
#define K_STD 331877475u              /* round(2^32 * 16 / sqrt(35^3)) */
#define K_SQRT35 1588085574u          /* round(2^28 * sqrt(35)) */

#define LOC(f) (f) + 4, (f) + 4, (f) + 4, (f) + 4, (f) + 4, (f) + 4, (f) + 4, (f) + 4
#define STATS(f, t) LOC(f), 2 * (f), (f) + 4, 3 * (f) - (t), 16, 16, 16
#define S_RSS STATS(RFE_FEAT_RSS_FRAC, RFE_FEAT_M3_SHIFT_RSS)
#define S_PHASE STATS(RFE_FEAT_PHASE_FRAC, RFE_FEAT_M3_SHIFT_PHASE)
#define S_AOA STATS(RFE_FEAT_AOA_FRAC, RFE_FEAT_M3_SHIFT_AOA)
#define W_AOA (RFE_FEAT_AOA_FRAC + 15)
#define W19 W_AOA, W_AOA, W_AOA, W_AOA, W_AOA, W_AOA, W_AOA, W_AOA, W_AOA, W_AOA, W_AOA, W_AOA, \
            W_AOA, W_AOA, W_AOA, W_AOA, W_AOA, W_AOA, W_AOA

const int8_t RFE_FEAT_SPR_SCALE_LOG2[RFE_FEAT_SPR_N] = {S_RSS, S_PHASE, S_RSS, S_PHASE, S_RSS, S_PHASE,
                                                       S_RSS, S_PHASE, 16, 16, 16, 16};
const int8_t RFE_FEAT_SA_SCALE_LOG2[RFE_FEAT_SA_N] = {S_AOA, S_AOA, 16};
const int8_t RFE_FEAT_WA_SCALE_LOG2[RFE_FEAT_WA_N] = {W19, W19};

/* Number of significant bits of v (0 for 0); rv32imc has no clz. */
static int32_t bitlen(uint32_t v)
{
    int32_t n = 0;
    if (v >> 16) { n += 16; v >>= 16; }
    if (v >> 8) { n += 8; v >>= 8; }
    if (v >> 4) { n += 4; v >>= 4; }
    if (v >> 2) { n += 2; v >>= 2; }
    if (v >> 1) { n += 1; v >>= 1; }
    return n + (int32_t)v;
}

/* floor(sqrt(v)) for v in [2^30, 2^32): Newton's iteration from above, started on the tangent
 * of sqrt at 2^31 (23170 + v / 92682 + 1 > sqrt(v), sqrt being concave), stops at the first
 * non-decreasing step, which is the floor (3-4 steps here against 16 of the bitwise method). */
static uint32_t isqrt32(uint32_t v)
{
    uint32_t r = 23171u + v / 92682u, y = (r + v / r) >> 1;
    while (y < r) {
        r = y;
        y = (r + v / r) >> 1;
    }
    return r;
}

/* floor(x * 2^15 / d) exactly, for d in [2^15, 2^16): two 32-bit divisions (long division). */
static uint32_t div15(uint32_t x, uint32_t d)
{
    uint32_t q = x / d, r = x - q * d;
    return (q << 15) + ((r << 15) / d);
}

/* round(p / 2^sh), half up, for p < 2^62 and sh >= 1 (0 when sh > 62). */
static uint64_t rshr(uint64_t p, int32_t sh)
{
    if (sh > 62) return 0;
    return (p + ((uint64_t)1 << (sh - 1))) >> sh;
}

static int32_t sat_signed(uint64_t mag, int neg)
{
    int32_t v = mag > (uint64_t)INT32_MAX ? INT32_MAX : (int32_t)mag;
    return neg ? -v : v;
}

/* The statistics of x; with pu (the u of a partner signal) also c = sum (u_pu u_x) >> 1 for their
 * Pearson correlation, accumulated in the moment pass instead of a pass of its own (x's u is then
 * not stored). */
static void stats14(const int16_t *x, int32_t m3_shift, int32_t *out, rfe_feat_moments_t *mom,
                    const int16_t *pu, int32_t *cross)
{
    int16_t buf[N + 5];
    int16_t *s = buf + 5;
    int32_t i, S = 0;
    /* Shell sort with gaps 5 and 1 behind 5 sentinels (no sample is below INT16_MIN, so the
     * inner loops need no bound check); the gap-5 pass reads the input (and sums it). A signal
     * that falls overall is read from its end: for the smooth signals of the reader the moves
     * (inversions) of the reversed order are then fewer. On the simulated signals this takes
     * ~75 moves per signal against ~210 of a plain insertion sort. */
    int32_t j0 = 0, dj = 1;
    for (i = 0; i < 5; i++) buf[i] = INT16_MIN;
    if (x[0] > x[N - 1]) {
        j0 = N - 1;
        dj = -1;
    }
    for (i = 0; i < N; i++) {
        int16_t v = x[j0 + dj * i];
        int16_t *q = s + i;
        S += v;
        while (q[-5] > v) {
            q[0] = q[-5];
            q -= 5;
        }
        q[0] = v;
    }
    for (i = 1; i < N; i++) {
        int16_t v = s[i];
        int16_t *q = s + i;
        if (q[-1] <= v) continue;
        do {
            q[0] = q[-1];
            q--;
        } while (q[-1] > v);
        q[0] = v;
    }

    int32_t lo = s[0], hi = s[N - 1], span = hi - lo;
    /* numpy "linear" quantiles at n = 35: h = q * 34 -> 8.5, 17, 25.5 */
    out[RFE_ST_MEDIAN] = 16 * s[17];
    out[RFE_ST_Q1] = 8 * (s[8] + s[9]);
    out[RFE_ST_Q3] = 8 * (s[25] + s[26]);
    out[RFE_ST_MAX] = 16 * hi;
    out[RFE_ST_MIN] = 16 * lo;
    out[RFE_ST_RANGE] = 16 * span;
    {
        uint32_t a = (uint32_t)(S < 0 ? -S : S);
        int32_t m = (int32_t)((32u * a + 35u) / 70u);   /* 16 |S| / 35, half away from zero */
        out[RFE_ST_MEAN] = S < 0 ? -m : m;
    }

    /* Histogram: x is in bin >= b iff 10 (x - lo) >= b span iff x >= lo + ceil(b span / 10). */
    if (span == 0) {
        out[RFE_ST_MODE] = 16 * lo;
        out[RFE_ST_ENTROPY] = 0;
    } else {
        const int16_t *p = s, *prev = s;
        int32_t b, best = 0, cbest = -1, csum = 0, bspan = 9, c;
        for (b = 0; b < RFE_FEAT_BINS - 1; b++) {
            bspan += span;                          /* (b + 1) span + 9 */
            {
                int32_t t = lo + bspan / 10;        /* first value of bin b + 1 */
                while (*p < t) p++;                 /* stops at hi at the latest: t <= hi */
            }
            c = (int32_t)(p - prev);
            prev = p;
            csum += CLNC[c];
            if (c > cbest) {                        /* strict: ties go to the lowest bin */
                cbest = c;
                best = b;
            }
        }
        c = (int32_t)(s + N - prev);                /* last bin is closed: x = hi lands here */
        csum += CLNC[c];
        if (c > cbest) best = RFE_FEAT_BINS - 1;
        out[RFE_ST_MODE] = 16 * lo + (int32_t)(((uint32_t)(2 * best + 1) * (uint32_t)span * 8u + 5u) / 10u);
        out[RFE_ST_ENTROPY] = LN35_Q16 - (int32_t)(((uint32_t)csum + 17u) / 35u);
    }

    /* Central moments from D = 35 x - S (exact), normalized to u = D * 2^-k, 2^12 <= max|u| <= 2^13. */
    int32_t M = 35 * hi - S;
    if (S - 35 * lo > M) M = S - 35 * lo;
    if (M == 0) {
        out[RFE_ST_VAR] = out[RFE_ST_STD] = out[RFE_ST_M3] = out[RFE_ST_KURT] = out[RFE_ST_SKEW] = 0;
        if (mom) {
            if (!pu)
                for (i = 0; i < N; i++) mom->u[i] = 0;
            mom->sq = 0;
            mom->z = 0;
        }
        if (cross) *cross = 0;
        return;
    }
    int32_t k = bitlen((uint32_t)M) - 13;
    uint32_t c1, c0;
    int32_t sh;
    if (k > 0) {
        c1 = 35u;
        c0 = (1u << (k - 1)) - (uint32_t)S;  /* + half: round half up */
        sh = k;
    } else {
        c1 = 35u << -k;
        c0 = (0u - (uint32_t)S) << -k;
        sh = 0;
    }
    uint32_t s2 = 0, s4 = 0;
    int32_t s3 = 0;
    /* modular uint32 arithmetic: the true value fits int32 even where x * c1 alone does not;
     * unrolled 5 times (35 = 7 * 5) to spend the loop overhead once per 5 samples */
#define MOMENT(j, TAIL)                                             \
    do {                                                            \
        int32_t v = (int32_t)((uint32_t)x[i + (j)] * c1 + c0) >> sh; \
        uint32_t q = (uint32_t)(v * v);                             \
        int32_t r = (int32_t)((q + 8192u) >> 14);   /* <= 2^12 */   \
        s2 += q;                                                    \
        s3 += r * v;                                                \
        s4 += (uint32_t)(r * r);                                    \
        TAIL;                                                       \
    } while (0)
#define MOMENTS5(TAIL)                                              \
    for (i = 0; i < N; i += 5) {                                    \
        MOMENT(0, TAIL(0));                                         \
        MOMENT(1, TAIL(1));                                         \
        MOMENT(2, TAIL(2));                                         \
        MOMENT(3, TAIL(3));                                         \
        MOMENT(4, TAIL(4));                                         \
    }
    if (pu) {
        /* halved products: |sum u_a u_b| <= sqrt(s2_a s2_b) < 35 * 2^26 would not fit int32 */
        int32_t c = 0;
#define CROSS(j) c += (pu[i + (j)] * v) >> 1
        MOMENTS5(CROSS)
#undef CROSS
        *cross = c;
    } else {
        int16_t ubuf[N];
        int16_t *u = mom ? mom->u : ubuf;
#define STORE(j) u[i + (j)] = (int16_t)v
        MOMENTS5(STORE)
#undef STORE
    }
#undef MOMENTS5
#undef MOMENT
    /* s2 in [2^24, 35 * 2^26 < 2^32) since max |u| >= 2^12; z even with s2 << z in [2^30, 2^32) */
    int32_t z = 0;
    uint32_t n2 = s2;
    while (n2 < (1u << 30)) {
        n2 <<= 2;
        z += 2;
    }
    uint32_t sq = isqrt32(n2);   /* sqrt(s2) * 2^(z/2), in [2^15, 2^16) */
    if (mom) {
        mom->sq = sq;
        mom->z = z;
    }
    /* variance = s2 2^2k / 35^3 (LSB^2); std = 16 2^k sqrt(s2 / 35^3) (LSB/16) */
    out[RFE_ST_VAR] = (int32_t)rshr((uint64_t)s2 * R_VAR, 45 - 2 * k);
    out[RFE_ST_STD] = (int32_t)rshr((uint64_t)sq * K_STD, 32 + z / 2 - k);
    /* m3 = s3 2^14 2^3k / 35^4, in LSB^3 / 2^m3_shift */
    {
        uint32_t a = (uint32_t)(s3 < 0 ? -s3 : s3);
        out[RFE_ST_M3] = sat_signed(rshr((uint64_t)a * R_M3, 36 + m3_shift - 3 * k), s3 < 0);
    }
    /* kurtosis + 3 = 35 2^28 s4 / s2^2 = 35 X4 2^(2z - a4 - 32), X4 = (s4 << a4) 2^60 / sq^4 */
    {
        int32_t a4 = 31 - bitlen(s4);
        uint32_t X = s4 << a4;
        X = div15(X, sq);
        X = div15(X, sq);
        X = div15(X, sq);
        X = div15(X, sq);
        out[RFE_ST_KURT] = (int32_t)rshr((uint64_t)X * 35u, 16 + a4 - 2 * z) - 3 * 65536;
    }
    /* skewness = sqrt(35) 2^14 s3 / s2^1.5 = sqrt(35) X3 2^(1.5z - a3 - 31), X3 = (|s3| << a3) 2^45 / sq^3 */
    if (s3 == 0) {
        out[RFE_ST_SKEW] = 0;
    } else {
        uint32_t a = (uint32_t)(s3 < 0 ? -s3 : s3);
        int32_t a3 = 31 - bitlen(a);
        uint32_t X = a << a3;
        X = div15(X, sq);
        X = div15(X, sq);
        X = div15(X, sq);
        out[RFE_ST_SKEW] = sat_signed(rshr((uint64_t)X * K_SQRT35, 43 + a3 - 3 * z / 2), s3 < 0);
    }
}

/* Pearson (Q16) from c = sum (u_a u_b) >> 1 and the two signals' sq, z. */
static int32_t pearson_finish(int32_t c, uint32_t sqa, int32_t za, uint32_t sqb, int32_t zb)
{
    if (sqa == 0 || sqb == 0 || c == 0) return 0;
    uint32_t m = (uint32_t)(c < 0 ? -c : c);
    int32_t ac = 31 - bitlen(m);
    uint32_t X = div15(div15(m << ac, sqa), sqb);   /* |c| 2^(ac + 30) / (sq_a sq_b), r = 2 c / sqrt(s2_a s2_b) */
    uint32_t r = (uint32_t)rshr(X, ac + 13 - (za + zb) / 2);
    if (r > 65536u) r = 65536u;
    return c < 0 ? -(int32_t)r : (int32_t)r;
}

void rfe_feat_stats14(const int16_t x[N], int32_t m3_shift, int32_t out[RFE_FEAT_NSTAT], rfe_feat_moments_t *mom)
{
    stats14(x, m3_shift, out, mom, 0, 0);
}

int32_t rfe_feat_pearson(const rfe_feat_moments_t *a, const rfe_feat_moments_t *b)
{
    int32_t i, c = 0;
    if (a->sq == 0 || b->sq == 0) return 0;
    for (i = 0; i < N; i++) c += (a->u[i] * b->u[i]) >> 1;   /* as in the fused pass of stats14 */
    return pearson_finish(c, a->sq, a->z, b->sq, b->z);
}

/* stats14 of a (u kept) and of b with their Pearson correlation fused into b's moment pass. */
static int32_t stats_pair(const int16_t *a, int32_t sha, int32_t *outa, const int16_t *b, int32_t shb, int32_t *outb)
{
    rfe_feat_moments_t ma, mb;
    int32_t c;
    stats14(a, sha, outa, &ma, 0, 0);
    stats14(b, shb, outb, &mb, ma.u, &c);
    return pearson_finish(c, ma.sq, ma.z, mb.sq, mb.z);
}

void rfe_feat_spr(const int16_t rss[2][2][N], const int16_t phase[2][2][N], int32_t out[RFE_FEAT_SPR_N])
{
    int32_t t, a;
    for (t = 0; t < 2; t++) {
        for (a = 0; a < 2; a++) {
            int32_t j = t * 2 + a;
            out[8 * RFE_FEAT_NSTAT + j] =
                stats_pair(rss[t][a], RFE_FEAT_M3_SHIFT_RSS, out + (2 * j) * RFE_FEAT_NSTAT,
                           phase[t][a], RFE_FEAT_M3_SHIFT_PHASE, out + (2 * j + 1) * RFE_FEAT_NSTAT);
        }
    }
}

void rfe_feat_sa(const int16_t aoa[2][N], int32_t out[RFE_FEAT_SA_N])
{
    out[2 * RFE_FEAT_NSTAT] = stats_pair(aoa[0], RFE_FEAT_M3_SHIFT_AOA, out, aoa[1], RFE_FEAT_M3_SHIFT_AOA,
                                         out + RFE_FEAT_NSTAT);
}

/* out[k] = sum_j h[3-j] x[2k-2+j] over the half-sample symmetric extension (x[-1] = x[0],
 * x[-2] = x[1], x[35] = x[34], x[36] = x[33], x[37] = x[32]); |out| <= 1.673 * 2^30 < 2^31. */
static void db2_approx(const int16_t *x, int32_t *out)
{
    int32_t k;
    out[0] = H3 * x[1] + H2 * x[0] + H1 * x[0] + H0 * x[1];
    for (k = 1; k <= 16; k++) {
        const int16_t *p = x + 2 * k - 2;
        out[k] = H3 * p[0] + H2 * p[1] + H1 * p[2] + H0 * p[3];
    }
    out[17] = H3 * x[32] + H2 * x[33] + H1 * x[34] + H0 * x[34];
    out[18] = H3 * x[34] + H2 * x[34] + H1 * x[33] + H0 * x[32];
}

void rfe_feat_wa(const int16_t aoa[2][N], int32_t out[RFE_FEAT_WA_N])
{
    db2_approx(aoa[0], out);
    db2_approx(aoa[1], out + RFE_FEAT_WA_NCOEF);
}
