/*
 * rfe_act.c - stream-mode gesture detection, packet by packet (see rfe_dsp.h).
 *
 * The "doppler" statistic of rfedge.activity.detect_stream, run causally:
 *   log1p |h| per packet -> AGC steps removed on the packets (one packet of look-ahead)
 *   -> uniform grid from the first packet (np.interp) -> subcarrier groups
 *   -> sliding Hann STFT (hop 1): mean power at the in-band Doppler bins and at the noise bins,
 *      each frame assigned to its centre sample (latency win_len / 2)
 *   -> noise floor: median of the medians of the last completed blocks of the noise power
 *   -> score = in-band / floor, moving average (centred, as np.convolve 'same')
 *   -> runs above the threshold, merged across short gaps, kept when long enough.
 * One difference from the Python reference, which sees the whole recording: the AGC step test
 * scales packet gaps by the nominal period 1/RFE_DSP_RATE_HZ instead of the recording's median
 * gap (unknowable in advance).  Everything else, the stream's edges included (rfe_act_finish),
 * follows the reference.
 */
#define RFE_DSP_DEFINE_TABLES
#include "rfe_dsp.h"
#include "rfe_dsp_internal.h"

#include <string.h>

#define L RFE_DSP_ACT_WIN_LEN
#define NB (RFE_DSP_ACT_N_IN + RFE_DSP_ACT_N_OUT)
#define BLK RFE_DSP_ACT_BLOCK
#define KSM RFE_DSP_ACT_SMOOTH
#define SM_LEFT (KSM / 2)
#define SM_RIGHT (KSM - SM_LEFT - 1)

void rfe_act_init(rfe_act_state *a, rfe_real threshold, int secondary_channel)
{
    memset(a, 0, sizeof *a);
    a->threshold = threshold;
    a->secondary_channel = (int8_t)secondary_channel;
}

int rfe_act_pop_event(rfe_act_state *a, rfe_act_event *ev)
{
    if (a->n_events == 0) return 0;
    *ev = a->events[0];
    memmove(&a->events[0], &a->events[1], (size_t)(a->n_events - 1) * sizeof *ev);
    a->n_events--;
    return 1;
}

/* ---- runs (rfedge.activity.active_runs + score_runs) ---------------------------------------- */

static void emit_pending(rfe_act_state *a)
{
    if (!a->have_pending) return;
    a->have_pending = 0;
    if ((double)(a->pend_b - a->pend_a) >= RFE_DSP_ACT_MIN_LEN) {
        rfe_act_event ev;
        ev.start_us = a->t_first + (uint32_t)(uint64_t)floor((double)a->pend_a * (1e6 / RFE_DSP_RATE_HZ) + 0.5);
        ev.end_us = a->t_first + (uint32_t)(uint64_t)floor((double)a->pend_b * (1e6 / RFE_DSP_RATE_HZ) + 0.5);
        if (a->n_events == RFE_ACT_MAX_EVENTS) {    /* nobody popped: the oldest is lost */
            memmove(&a->events[0], &a->events[1], (RFE_ACT_MAX_EVENTS - 1) * sizeof ev);
            a->n_events--;
            a->events_lost++;
        }
        a->events[a->n_events++] = ev;
    }
}

/* a finished run [ra, rb): joins the pending one, or replaces it (which is then final) */
static void close_run(rfe_act_state *a, uint32_t ra, uint32_t rb)
{
    if (a->have_pending && (double)(ra - a->pend_b) <= RFE_DSP_ACT_MERGE_GAP) {
        a->pend_b = rb;
        return;
    }
    emit_pending(a);
    a->have_pending = 1;
    a->pend_a = ra;
    a->pend_b = rb;
}

/* the smoothed score of sample i */
static void scored(rfe_act_state *a, uint32_t i, rfe_real score)
{
    int above = score > a->threshold;
    if (a->on_score) a->on_score(a->ctx, i, (double)score);
    if (above && !a->active) {
        a->active = 1;
        a->run_start = i;
    } else if (!above && a->active) {
        a->active = 0;
        close_run(a, a->run_start, i);
    }
    /* a pending run that no later run can join any more is final */
    if (!a->active && a->have_pending && (double)(i + 1 - a->pend_b) > RFE_DSP_ACT_MERGE_GAP)
        emit_pending(a);
}

/* ---- score: in-band power / floor, then the centred moving average ---------------------------- */

static void smooth_out(rfe_act_state *a, uint32_t j)
{
    /* np.convolve(raw, ones(K) / K, "same")[j] = sum of raw[j - K/2 .. j + K - K/2 - 1] / K (0 outside) */
    uint32_t m, lo = j >= SM_LEFT ? j - SM_LEFT : 0, hi = j + SM_RIGHT;
    rfe_real sum = 0;
    if (hi > a->n_raw - 1) hi = a->n_raw - 1;
    for (m = lo; m <= hi; ++m) sum += a->raw[m % KSM] * (rfe_real)(1.0 / KSM);
    scored(a, j, sum);
}

static void raw_score(rfe_act_state *a, rfe_real raw)
{
    uint32_t i = a->n_raw++;
    a->raw[i % KSM] = raw;
    if (i >= SM_RIGHT) smooth_out(a, i - SM_RIGHT);
}

static rfe_real block_floor(rfe_act_state *a, uint32_t b)
{
    /* trailing_median: the median of the medians of blocks max(0, b - keep) .. b - 1 */
    rfe_real tmp[RFE_ACT_MAX_BLOCKS];
    uint32_t lo = b > RFE_ACT_MAX_BLOCKS ? b - RFE_ACT_MAX_BLOCKS : 0, k, n = 0;
    for (k = lo; k < b; ++k) tmp[n++] = a->block_med[k % RFE_ACT_MAX_BLOCKS];
    return rfe_dsp_median(tmp, (int32_t)n);
}

static rfe_real safe_div(rfe_real p, rfe_real fl)
{
    return p / (fl > (rfe_real)1e-12 ? fl : (rfe_real)1e-12);
}

static rfe_real median_of_block(rfe_act_state *a, uint32_t n)
{
    rfe_real tmp[BLK];
    uint32_t k;
    for (k = 0; k < n; ++k) tmp[k] = a->blockbuf[k];
    return rfe_dsp_median(tmp, (int32_t)n);
}

/* padded sample s (frame s - L/2, clamped at the edges) has in-band p_in and noise p_out */
static void padded_sample(rfe_act_state *a, rfe_real p_in, rfe_real p_out)
{
    uint32_t s = a->n_padded++, b = s / BLK, k;
    a->blockbuf[s % BLK] = p_out;
    if (b == 0) {
        a->pin0[s] = p_in;                      /* block 0 is scored with its own median */
        if (s == BLK - 1) {
            a->block_med[0] = median_of_block(a, BLK);
            for (k = 0; k < BLK; ++k) raw_score(a, safe_div(a->pin0[k], a->block_med[0]));
        }
        return;
    }
    if (s % BLK == 0) a->cur_floor = block_floor(a, b);
    if (s % BLK == BLK - 1) a->block_med[b % RFE_ACT_MAX_BLOCKS] = median_of_block(a, BLK);
    raw_score(a, safe_div(p_in, a->cur_floor));
}

/* ---- sliding STFT of the grouped samples ----------------------------------------------------- */

static void frame(rfe_act_state *a)
{
    /* dsp.stft_bins(...).sum(axis=0): per bin, |DFT|^2 summed over the groups in order */
    rfe_real p[NB], seg[L], p_in, p_out;
    int32_t b, c, l;
    uint32_t first = a->n_grid - L, k;         /* oldest sample of the frame */
    for (c = 0; c < RFE_DSP_GROUPS; ++c) {
        for (l = 0; l < L; ++l) seg[l] = a->ring[(first + (uint32_t)l) % L][c] * (rfe_real)rfe_act_hann[l];
        for (b = 0; b < NB; ++b) {
            rfe_real re = 0, im = 0;
            for (l = 0; l < L; ++l) {
                re += seg[l] * (rfe_real)rfe_act_basis_re[l * NB + b];
                im += seg[l] * (rfe_real)rfe_act_basis_im[l * NB + b];
            }
            if (c == 0) p[b] = re * re + im * im;
            else p[b] += re * re + im * im;
        }
    }
    p_in = rfe_dsp_pairwise_sum(p, RFE_DSP_ACT_N_IN, 1) / (rfe_real)RFE_DSP_ACT_N_IN;
    p_out = rfe_dsp_pairwise_sum(p + RFE_DSP_ACT_N_IN, RFE_DSP_ACT_N_OUT, 1) / (rfe_real)RFE_DSP_ACT_N_OUT;
    if (a->n_frames++ == 0)                     /* left edge: frame 0 also stands for samples 0 .. L/2 - 1 */
        for (k = 0; k < L / 2; ++k) padded_sample(a, p_in, p_out);
    a->last_in = p_in;
    a->last_out = p_out;
    padded_sample(a, p_in, p_out);
}

/* one uniform sample u[S] of corrected log-amplitude */
static void grid_sample(rfe_act_state *a, const rfe_real *u)
{
    int32_t c;
    rfe_real *g = a->ring[a->n_grid % L];
    for (c = 0; c < RFE_DSP_GROUPS; ++c) {
        int32_t lo = a->edges[c], hi = a->edges[c + 1];
        g[c] = rfe_dsp_pairwise_sum(u + lo, hi - lo, 1) / (rfe_real)(hi - lo);
    }
    a->n_grid++;
    if (a->n_grid >= L) frame(a);
}

/* ---- uniform resampling of the corrected packets (np.interp) ---------------------------------- */

static void corrected(rfe_act_state *a, double t, const rfe_real *v)
{
    const int32_t S = a->n_sub;
    const double step = 1e6 / RFE_DSP_RATE_HZ;
    rfe_real u[RFE_DSP_MAX_SUBCARRIERS];
    int32_t k;
    if (a->n_corrected > 0) {
        for (;;) {                              /* grid instants in [previous packet, this one) */
            double g = (double)a->n_grid * step;
            if (!(g < t)) break;
            for (k = 0; k < S; ++k) {
                rfe_real slope;
                if (g == a->ct) { u[k] = a->ca[k]; continue; }
                slope = (v[k] - a->ca[k]) / (rfe_real)(t - a->ct);
                u[k] = slope * (rfe_real)(g - a->ct) + a->ca[k];
            }
            grid_sample(a, u);
        }
    }
    memcpy(a->ca, v, (size_t)S * sizeof(rfe_real));
    a->ct = t;
    a->n_corrected++;
}

/* ---- AGC steps on packets (rfedge.activity.remove_agc_steps, one packet of look-ahead) -------- */

static void pair_stats(rfe_act_state *a, const rfe_real *la0, const rfe_real *la1, double dt, int slot)
{
    const int32_t S = a->n_sub;
    rfe_real d[RFE_DSP_MAX_SUBCARRIERS], tmp[RFE_DSP_MAX_SUBCARRIERS], med;
    int32_t k;
    for (k = 0; k < S; ++k) tmp[k] = d[k] = la1[k] - la0[k];
    med = rfe_dsp_median(tmp, S);
    for (k = 0; k < S; ++k) tmp[k] = RFE_FABS(d[k] - med);
    a->d_med[slot] = med;
    a->d_se[slot] = (rfe_real)(1.2533 * 1.4826) * rfe_dsp_median(tmp, S) / RFE_SQRT((rfe_real)S);
    a->d_gap[slot] = (rfe_real)(dt / (1e6 / RFE_DSP_RATE_HZ));    /* the nominal period, see above */
    a->d_rate[slot] = med / (a->d_gap[slot] > (rfe_real)1e-9 ? a->d_gap[slot] : (rfe_real)1e-9);
}

static rfe_real step_size(const rfe_act_state *a, int slot, rfe_real before, rfe_real after)
{
    rfe_real med = a->d_med[slot], gap = a->d_gap[slot], am = RFE_FABS(med);
    rfe_real around = (RFE_FABS(before) > RFE_FABS(after) ? RFE_FABS(before) : RFE_FABS(after)) * gap;
    if (am > (rfe_real)RFE_AGC_STEP_MIN && am > (rfe_real)RFE_AGC_STEP_Z * a->d_se[slot]
        && am > (rfe_real)RFE_AGC_STEP_ISOLATION * around)
        return med - (rfe_real)0.5 * (before + after) * gap;
    return 0;
}

/* pair p (packets p, p + 1) is decided: packet p + 1 gets its correction and goes on */
static void decide(rfe_act_state *a, uint32_t p, rfe_real before, rfe_real after)
{
    rfe_real v[RFE_DSP_MAX_SUBCARRIERS];
    int32_t k;
    a->corr = a->corr + step_size(a, (int)(p % 3), before, after);
    if (p == 0) corrected(a, a->t[0], a->la[0]);   /* packet 0 is never corrected */
    for (k = 0; k < a->n_sub; ++k) v[k] = a->la[(p + 1) % 3][k] - a->corr;
    corrected(a, a->t[(p + 1) % 3], v);
}

int rfe_act_push_packet(rfe_act_state *a, const int8_t *buf, uint16_t len, uint32_t t_us)
{
    int8_t iq[RFE_DSP_MAX_SUBCARRIERS][2];
    rfe_real *v;
    int32_t n = rfe_dsp_decode_iq(buf, len, a->secondary_channel, 0, iq), k, c;
    uint32_t i;
    double t;
    if (n < 0) return n;
    if (a->n_packets == 0) {
        if (n < RFE_DSP_GROUPS) return RFE_DSP_E_SUBCARRIERS;
        a->n_sub = (int16_t)n;
        a->t_first = t_us;
        for (c = 0; c <= RFE_DSP_GROUPS; ++c) {      /* np.linspace(0, S, C + 1).round() */
            double e = c == RFE_DSP_GROUPS ? (double)n : (double)c * ((double)n / (double)RFE_DSP_GROUPS);
            a->edges[c] = (int16_t)nearbyint(e);
        }
        t = 0;
    } else {
        if (n != a->n_sub) return RFE_DSP_E_SUBCARRIERS;
        if ((int32_t)(t_us - a->t_prev_us) <= 0) return RFE_DSP_E_TIME;
        /* time since the first packet, extended past the 32-bit counter's wrap */
        t = a->t[(a->n_packets - 1) % 3] + (double)(uint32_t)(t_us - a->t_prev_us);
    }
    a->t_prev_us = t_us;
    i = a->n_packets++;
    v = a->la[i % 3];
    /* np.log1p(np.abs(csi)) of a complex128 stream (rfedge.activity.stream_logamp): the correctly
     * rounded magnitude of the exact integer |h|^2 */
    for (k = 0; k < n; ++k) {
        int32_t re = iq[k][0], im = iq[k][1];
        v[k] = RFE_LOG1P((rfe_real)sqrt((double)(re * re + im * im)));
    }
    a->t[i % 3] = t;
    if (i >= 1) pair_stats(a, a->la[(i - 1) % 3], v, t - a->t[(i - 1) % 3], (int)((i - 1) % 3));
    if (i >= 2) {
        /* pair p = i - 2: before = pair p - 1 (for pair 0, its after), after = pair p + 1 */
        uint32_t p = i - 2;
        rfe_real after = a->d_rate[(p + 1) % 3];
        decide(a, p, p == 0 ? after : a->d_rate[(p + 2) % 3], after);
    }
    return (int)a->n_events;
}

int rfe_act_finish(rfe_act_state *a)
{
    uint32_t n = a->n_packets, ng, k;
    double t_last;
    if (n < 2) return (int)a->n_events;
    t_last = a->t[(n - 1) % 3];
    {   /* the last pair: before = after = the pair ahead of it (remove_agc_steps' end rule) */
        uint32_t p = n - 2;
        rfe_real before = p == 0 ? a->d_rate[0] : a->d_rate[(p + 2) % 3];
        decide(a, p, before, before);
    }
    {   /* the grid has max(floor(span * rate) + 1, 2) samples; past the last packet it is held */
        double span = floor(t_last * 1e-6 * RFE_DSP_RATE_HZ);
        ng = (uint32_t)span + 1;
        if (ng < 2) ng = 2;
    }
    if (ng < L) return (int)a->n_events;        /* shorter than the STFT: nothing to score */
    while (a->n_grid < ng) grid_sample(a, a->ca);
    while (a->n_padded < ng) padded_sample(a, a->last_in, a->last_out);   /* right edge */
    if (a->n_raw == 0) {                        /* shorter than one floor block: its own median */
        a->block_med[0] = median_of_block(a, a->n_padded);
        for (k = 0; k < a->n_padded; ++k) raw_score(a, safe_div(a->pin0[k], a->block_med[0]));
    }
    for (k = a->n_raw > SM_RIGHT ? a->n_raw - SM_RIGHT : 0; k < a->n_raw; ++k) smooth_out(a, k);
    if (a->active) {
        a->active = 0;
        close_run(a, a->run_start, a->n_raw);
    }
    emit_pending(a);
    return (int)a->n_events;
}
