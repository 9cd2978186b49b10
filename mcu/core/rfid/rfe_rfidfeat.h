/*
 * rfe_rfidfeat.h - paper 003's per-device RFID features (SPR 116, SA 29, WA 38; §IV-C, §VI-B1)
 * in fixed point: portable C99, no malloc, no floating point (rv32imc without FPU).
 *
 * The arithmetic is defined by host/rfedge/rfid_features_fixed.py (module docstring), whose
 * pure-integer reference these functions match bit for bit; the float definitions are
 * host/rfedge/rfid_features.py.
 *
 * Inputs: the reader-side signals of rfedge.rfid_dsp, 35 samples each, as int16 with a fixed
 * number of fraction bits per kind (value = q / 2^frac, saturated to int16 on the host):
 *   RSS    Q14     (min-max normalized, [0, 1] -> 0..16384; int16 covers [-2, 2))
 *   phase  1/256 rad (covers +-128 rad; simulated signals stay within +-38 rad)
 *   AoA    1/8192 rad (covers +-4 rad; simulated signals stay within +-1.1 rad)
 * Outputs: int32, feature = out / 2^RFE_FEAT_*_SCALE_LOG2[i].
 *
 * Assumes two's complement int32 with arithmetic >> of negative values and modular
 * uint32 -> int32 conversion (GCC and Clang document both).
 */
#ifndef RFE_RFIDFEAT_H
#define RFE_RFIDFEAT_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define RFE_FEAT_N 35          /* samples per signal (paper 003 §VI-B1) */
#define RFE_FEAT_NSTAT 14      /* statistics per signal */
#define RFE_FEAT_BINS 10       /* histogram of mode and entropy (rfid_features.HIST_BINS) */
#define RFE_FEAT_SPR_N 116
#define RFE_FEAT_SA_N 29
#define RFE_FEAT_WA_N 38
#define RFE_FEAT_WA_NCOEF 19   /* db2, symmetric extension: floor((35 + 3) / 2) */

/* Input fraction bits per signal kind. */
#define RFE_FEAT_RSS_FRAC 14
#define RFE_FEAT_PHASE_FRAC 8
#define RFE_FEAT_AOA_FRAC 13

/* Right shift of the third central moment (in input LSB^3) per kind, chosen so that the largest
 * m3 of a signal within its kind's plausible span fits int32 (|m3| <= 0.0962 span^3): RSS span
 * <= 1 (2^14 LSB), phase span <= 128 rad (2^15 LSB), AoA span <= 1.38 rad (simulated spans reach
 * 0.97 rad). Beyond that the output saturates. */
#define RFE_FEAT_M3_SHIFT_RSS 8
#define RFE_FEAT_M3_SHIFT_PHASE 11
#define RFE_FEAT_M3_SHIFT_AOA 6

/* Order of the 14 statistics (as rfedge.rfid_features.STAT_NAMES). Output scales relative to
 * an input with f fraction bits: mode..range and std 2^(f+4) (1/16 LSB), variance 2^(2f) (LSB^2),
 * m3 2^(3f - m3_shift), kurtosis, skewness and entropy (nats) Q16; Pearson Q16; WA 2^(f+15). */
enum {
    RFE_ST_MODE, RFE_ST_MEDIAN, RFE_ST_Q1, RFE_ST_Q3, RFE_ST_MEAN, RFE_ST_MAX, RFE_ST_MIN,
    RFE_ST_RANGE, RFE_ST_VAR, RFE_ST_STD, RFE_ST_M3, RFE_ST_KURT, RFE_ST_SKEW, RFE_ST_ENTROPY
};

/* Per-feature scales: float feature = out[i] / 2^SCALE_LOG2[i]. */
extern const int8_t RFE_FEAT_SPR_SCALE_LOG2[RFE_FEAT_SPR_N];
extern const int8_t RFE_FEAT_SA_SCALE_LOG2[RFE_FEAT_SA_N];
extern const int8_t RFE_FEAT_WA_SCALE_LOG2[RFE_FEAT_WA_N];

/* Moments of one signal kept for Pearson correlations (filled by rfe_feat_stats14). */
typedef struct {
    int16_t u[RFE_FEAT_N];  /* centred samples (35 x - sum) scaled to |u| <= 2^13 */
    uint32_t sq;            /* isqrt(s2 << z), in [2^15, 2^16); 0 for a constant signal */
    int32_t z;              /* even normalization shift of s2 = sum u^2 */
} rfe_feat_moments_t;

/* The 14 statistics of one signal x[35] into out[14]; m3_shift as RFE_FEAT_M3_SHIFT_*.
 * mom (may be NULL) receives what rfe_feat_pearson needs. */
void rfe_feat_stats14(const int16_t x[RFE_FEAT_N], int32_t m3_shift, int32_t out[RFE_FEAT_NSTAT],
                      rfe_feat_moments_t *mom);
/* Pearson correlation (Q16, in [-65536, 65536]; 0 when either signal is constant). */
int32_t rfe_feat_pearson(const rfe_feat_moments_t *a, const rfe_feat_moments_t *b);

/* SPR: stats14 of the 8 signals in the order tag, antenna, {rss, phase}, then the 4 Pearson
 * correlations rss vs phase per (tag, antenna). */
void rfe_feat_spr(const int16_t rss[2][2][RFE_FEAT_N], const int16_t phase[2][2][RFE_FEAT_N],
                  int32_t out[RFE_FEAT_SPR_N]);
/* SA: stats14 of AoA of tag 1, of tag 2, then Pearson(AoA1, AoA2). */
void rfe_feat_sa(const int16_t aoa[2][RFE_FEAT_N], int32_t out[RFE_FEAT_SA_N]);
/* WA: db2 single-level approximation (pywt mode "symmetric") of AoA of tag 1 then tag 2. */
void rfe_feat_wa(const int16_t aoa[2][RFE_FEAT_N], int32_t out[RFE_FEAT_WA_N]);

#ifdef __cplusplus
}
#endif

#endif
