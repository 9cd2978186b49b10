/*
 * rfe_dsp.h - on-device DSP of rfedge: raw ESP32 CSI packets -> the model's int8 input tensor.
 *
 * The same steps, in the same order and with the same arithmetic, as the Python reference
 * (rfedge.features.window_features, then rfedge.dsp.Normalizer, then int8 quantization as
 * rfedge.codegen.quantize_inputs does):
 *
 *   per packet:  used subcarriers of the buffer (HT-LTF if present, else LLTF; design.md §3)
 *                -> amplitude |h| in float32 as numpy's complex64 abs computes it
 *                   (max * sqrt(fma(r, r, 1)), r = min / max; not the correctly rounded hypot:
 *                   -DRFE_DSP_ABS_NO_FMA for numpy builds without FMA) -> log(max(|h|, 0.5))
 *   per window:  AGC-step removal on the packets (rfedge.activity.remove_agc_steps)
 *                -> linear resampling to RFE_DSP_RATE_HZ (np.interp semantics)
 *                -> time normalization to RFE_DSP_N_SAMPLES -> mean removal
 *                -> RFE_DSP_GROUPS subcarrier groups -> Hann STFT at the Doppler bins
 *                -> log(power + eps) -> float32 -> (x - mean[c]) / std[c] (float32)
 *                -> / input scale, round half to even, + zero point, saturate to int8
 *   stream mode: rfe_act_* - the "doppler" gesture detector of rfedge.activity.detect_stream,
 *                run packet by packet; a finished gesture selects the packets whose window
 *                (start - margin .. end + margin) goes through rfe_dsp_window_range_to_input().
 *
 * Everything is in static storage the caller provides (a state struct, sized by the macros of the
 * generated dsp_config.h); no malloc.  The per-model constants (FeatureConfig, Doppler bins, Hann
 * window and DFT basis, normalizer, input quantization, stream detector settings) are emitted by
 * rfedge_codegen.emit_dsp into dsp_config.h.
 *
 * Cost (the reference's steps, cheaper arithmetic; each change at most a last-bit rounding of the
 * float64 reference, see rfe_dsp.c): log-amplitudes from a generated table of all int8 values
 * (Q58), the AGC medians by integer selection, group means taken on the packets before the
 * (linear) interpolation / normalization / mean removal, the STFT in 64-bit fixed point using the
 * basis' symmetries, and log(power + eps) in fixed point.
 *
 * Arithmetic: RFE_DSP_REAL is double unless RFE_DSP_SINGLE_PRECISION is defined.  Double gives
 * the int8 tensor of the Python reference exactly in practice (tests/test_device_dsp.py measures
 * it); on ESP32/ESP32-S3 (single-precision FPU) and ESP32-C3 (no FPU) double is soft-float and
 * slow, and RFE_DSP_SINGLE_PRECISION trades exactness (the test bounds it to +-1 LSB) for speed.
 * Build with -ffp-contract=off so the compiler does not fuse multiply-adds the reference does not.
 */
#ifndef RFE_DSP_H
#define RFE_DSP_H

#include <stdint.h>

#include "dsp_config.h"   /* generated per model: RFE_DSP_* constants and sizes */

#ifdef __cplusplus
extern "C" {
#endif

#ifdef RFE_DSP_SINGLE_PRECISION
typedef float rfe_real;
#else
typedef double rfe_real;
#endif

/* Capacity: packets kept for one window (a ring: in stream mode the oldest are overwritten). */
#ifndef RFE_DSP_MAX_PACKETS
#define RFE_DSP_MAX_PACKETS 512
#endif
/* Used subcarriers of one packet: 52 (LLTF), 56 (HT20) or 114 (HT40). */
#ifndef RFE_DSP_MAX_SUBCARRIERS
#define RFE_DSP_MAX_SUBCARRIERS 56
#endif
/* Uniform samples of one window after resampling (window length x RFE_DSP_RATE_HZ + 1). */
#ifndef RFE_DSP_MAX_SAMPLES
#define RFE_DSP_MAX_SAMPLES 512
#endif

/* Subcarriers in the largest group (np.linspace(0, S, C + 1).round() edges). */
#define RFE_DSP_MAX_GROUP ((RFE_DSP_MAX_SUBCARRIERS + RFE_DSP_GROUPS - 1) / RFE_DSP_GROUPS + 1)

/* Return codes (0 = ok). */
#define RFE_DSP_OK 0
#define RFE_DSP_E_LAYOUT (-1)      /* unknown buffer length / secondary channel combination */
#define RFE_DSP_E_SUBCARRIERS (-2) /* more used subcarriers than RFE_DSP_MAX_SUBCARRIERS, or a
                                      packet whose count differs from the window's first packet */
#define RFE_DSP_E_OVERFLOW (-3)    /* the window had more than RFE_DSP_MAX_PACKETS packets */
#define RFE_DSP_E_EMPTY (-4)       /* too few packets (< 2) in the window / range */
#define RFE_DSP_E_TOO_LONG (-5)    /* the window spans more than RFE_DSP_MAX_SAMPLES samples */
#define RFE_DSP_E_TIME (-6)        /* timestamps not increasing */

/* One window of packets: (real, imag) int8 of each used subcarrier and the timestamp relative to the first packet of the state (modulo 2^32, so the ESP32's
 * 32-bit microsecond counter may wrap), plus the scratch of rfe_dsp_window_to_input(). */
typedef struct {
    int8_t secondary_channel;      /* default for rfe_dsp_push_packet (wifi_csi_info_t.rx_ctrl) */
    int16_t n_sub;                 /* used subcarriers per packet, set by the first packet */
    uint32_t t_first;              /* absolute timestamp (us) of the first packet pushed */
    uint32_t head;                 /* index of the oldest packet in the ring */
    uint32_t count;                /* packets in the ring */
    uint32_t pushed;               /* packets pushed since reset (count + overwritten) */
    int8_t iq[RFE_DSP_MAX_PACKETS][RFE_DSP_MAX_SUBCARRIERS][2];
    uint32_t t_rel[RFE_DSP_MAX_PACKETS];
    /* scratch for one window (no malloc) */
    rfe_real corr[RFE_DSP_MAX_PACKETS];          /* cumulative AGC correction per packet */
    rfe_real med[RFE_DSP_MAX_PACKETS];           /* AGC: median change per packet pair */
    rfe_real se[RFE_DSP_MAX_PACKETS];            /* AGC: its standard error */
    rfe_real gap[RFE_DSP_MAX_PACKETS];           /* AGC: packet gaps / their median */
    rfe_real rate[RFE_DSP_MAX_PACKETS];          /* AGC: median change per unit gap */
    rfe_real tmp[RFE_DSP_MAX_PACKETS > RFE_DSP_MAX_SUBCARRIERS ? RFE_DSP_MAX_PACKETS : RFE_DSP_MAX_SUBCARRIERS];
    rfe_real lk[RFE_DSP_MAX_PACKETS];            /* one subcarrier's corrected log-amplitude */
    rfe_real col[RFE_DSP_MAX_SAMPLES];           /* the same on the uniform grid */
    double tw[RFE_DSP_MAX_PACKETS];              /* packet times of the window (absolute us) */
    rfe_real dt[RFE_DSP_MAX_PACKETS];            /* their differences t[j + 1] - t[j] */
    int16_t gj[RFE_DSP_MAX_SAMPLES];             /* uniform grid: packet interval (-1 past the end) */
    uint8_t gat[RFE_DSP_MAX_SAMPLES];            /* uniform grid: 1 when exactly at packet gj */
    rfe_real gdx[RFE_DSP_MAX_SAMPLES];           /* uniform grid: fraction of interval gj */
    int16_t nj[RFE_DSP_N_SAMPLES];               /* time normalization: sample index (-1: the last) */
    uint8_t nat[RFE_DSP_N_SAMPLES];              /* time normalization: 1 when exactly at sample nj */
    rfe_real nfr[RFE_DSP_N_SAMPLES];             /* time normalization: fraction past sample nj */
    rfe_real grouped[RFE_DSP_N_SAMPLES][RFE_DSP_GROUPS];
    float feat[RFE_DSP_GROUPS][RFE_DSP_N_BINS][RFE_DSP_N_FRAMES];
} rfe_dsp_state;

/* Forget all packets; keep the secondary channel setting.  Call before each window. */
void rfe_dsp_reset(rfe_dsp_state *s);
/* rfe_dsp_reset + secondary channel of the packets to come (0 none, 1 above, 2 below). */
void rfe_dsp_init(rfe_dsp_state *s, int secondary_channel);

/* Adds one packet: buf = wifi_csi_info_t.buf ([imag, real] int8 pairs, LLTF / HT-LTF / STBC-HT-LTF
 * in the layout of design.md §3), len = wifi_csi_info_t.len, t_us = rx_ctrl.timestamp.
 * Returns RFE_DSP_OK or a negative RFE_DSP_E_* (the packet is then ignored). */
int rfe_dsp_push_packet(rfe_dsp_state *s, const int8_t *buf, uint16_t len, uint32_t t_us);
/* Same with the packet's own secondary channel and first_word_invalid flag (its first 4 bytes are
 * then read as 0, as rfedge.io.subcarriers.decode_esp32_buffer does). */
int rfe_dsp_push_packet_ex(rfe_dsp_state *s, const int8_t *buf, uint16_t len, uint32_t t_us,
                           int secondary_channel, int first_word_invalid);

/* The used subcarriers a buffer holds, ascending (-28..28 without 0 for HT20 ...), and their
 * byte offsets (imaginary byte; real is +1).  Returns the count or RFE_DSP_E_LAYOUT. */
int rfe_dsp_layout(uint16_t len, int secondary_channel, int16_t *subcarriers, int16_t *imag_offsets);

/* The whole window (every packet since reset; dataset trials are pre-segmented, FeatureConfig
 * segment = False) -> out[RFE_DSP_INPUT_SIZE], the model input [T][F][C] in int8.
 * Returns RFE_DSP_OK or a negative RFE_DSP_E_*. */
int rfe_dsp_window_to_input(rfe_dsp_state *s, int8_t *out);
/* The packets with t_first + t_rel in [t0_us, t1_us] (absolute, modulo 2^32 like the packets'). */
int rfe_dsp_window_range_to_input(rfe_dsp_state *s, uint32_t t0_us, uint32_t t1_us, int8_t *out);
/* The float32 features [C][F][T] of the last window (before normalization), for tests. */
const float *rfe_dsp_features(const rfe_dsp_state *s);

/* ---- stream mode: gesture activity detection (rfedge.activity, "doppler" statistic) --------- */

#ifndef RFE_ACT_MAX_BLOCKS
#define RFE_ACT_MAX_BLOCKS RFE_DSP_ACT_FLOOR_BLOCKS   /* block medians in the noise floor */
#endif
#ifndef RFE_ACT_MAX_EVENTS
#define RFE_ACT_MAX_EVENTS 4                          /* gestures waiting for rfe_act_pop_event */
#endif

/* A detected gesture [start, end), on the packets' clock (absolute us, modulo 2^32). */
typedef struct {
    uint32_t start_us, end_us;
} rfe_act_event;

typedef struct {
    rfe_real threshold;
    int8_t secondary_channel;
    int16_t n_sub;
    int16_t edges[RFE_DSP_GROUPS + 1];             /* subcarrier groups */
    uint32_t t_first, t_prev_us, n_packets;
    /* AGC: the last three packets (log1p |h|, time since the first packet in us) and pairs */
    rfe_real la[3][RFE_DSP_MAX_SUBCARRIERS];
    double t[3];
    rfe_real d_med[3], d_se[3], d_gap[3], d_rate[3];
    rfe_real corr;
    /* resampling: the last corrected packet */
    rfe_real ca[RFE_DSP_MAX_SUBCARRIERS];
    double ct;
    uint32_t n_corrected, n_grid;
    /* sliding STFT: the last win_len grouped samples */
    rfe_real ring[RFE_DSP_ACT_WIN_LEN][RFE_DSP_GROUPS];
    uint32_t n_frames, n_padded;
    rfe_real last_in, last_out;
    /* noise floor: the current block's noise powers, block medians, block 0's in-band powers */
    rfe_real blockbuf[RFE_DSP_ACT_BLOCK], pin0[RFE_DSP_ACT_BLOCK];
    rfe_real block_med[RFE_ACT_MAX_BLOCKS];
    rfe_real cur_floor;
    /* score smoothing and runs */
    rfe_real raw[RFE_DSP_ACT_SMOOTH];
    uint32_t n_raw;
    int active, have_pending;
    uint32_t run_start, pend_a, pend_b;
    rfe_act_event events[RFE_ACT_MAX_EVENTS];
    uint32_t n_events, events_lost;
    /* optional: every smoothed score (sample index on the uniform grid from the first packet) */
    void (*on_score)(void *ctx, uint32_t sample, double score);
    void *ctx;
} rfe_act_state;

/* Starts a stream; threshold as fitted by rfedge.activity.fit_stream_threshold. */
void rfe_act_init(rfe_act_state *a, rfe_real threshold, int secondary_channel);
/* Feeds one packet (as rfe_dsp_push_packet).  Returns the number of gestures ready for
 * rfe_act_pop_event (a gesture is final ~0.3 s, the merge gap, after it ends), or RFE_DSP_E_*. */
int rfe_act_push_packet(rfe_act_state *a, const int8_t *buf, uint16_t len, uint32_t t_us);
/* End of the stream: scores the edge as the reference does; returns the gestures ready. */
int rfe_act_finish(rfe_act_state *a);
/* Takes the oldest ready gesture: 1, or 0 when there is none. */
int rfe_act_pop_event(rfe_act_state *a, rfe_act_event *ev);

#ifdef __cplusplus
}
#endif

#endif /* RFE_DSP_H */
