/*
 * dsp_harness.c - runs mcu/core/dsp on the host for rfedge.testing.device_dsp.
 *
 * stdin, little-endian, one record after another:
 *   'W' u32 n_packets, then per packet: u32 t_us, u16 len, i8 secondary_channel, u8 first_word_invalid,
 *       len bytes of wifi_csi_info_t.buf                 -> i32 rc, i8[RFE_DSP_INPUT_SIZE], f32 features[C*F*T]
 *   'R' u32 t0_us, u32 t1_us, then as 'W'               -> as 'W', for the packets with t in [t0, t1]
 *   'L' u16 len, i8 secondary_channel                    -> i32 n, then n x (i16 subcarrier, i16 imag offset)
 *   'S' f64 threshold, u32 n_packets, packets as for 'W' -> u32 n_events, n x (u32 start_us, u32 end_us),
 *                                                          u32 n_scores, f64 scores[n] (smoothed, per sample)
 *   'Q' stop
 * Packets the DSP refuses are counted, not fatal (rc of the window is then the first refusal).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rfe_dsp.h"

static rfe_dsp_state st;
static rfe_act_state act;
static double scores[1 << 20];
static uint32_t n_scores;

static void on_score(void *ctx, uint32_t i, double v)
{
    (void)ctx;
    if (i < (1u << 20)) scores[i] = v;
    if (i + 1 > n_scores) n_scores = i + 1;
}

static void rd(void *p, size_t n)
{
    if (fread(p, 1, n, stdin) != n) {
        fprintf(stderr, "dsp_harness: short read\n");
        exit(2);
    }
}

static int read_packet(int8_t *buf, uint16_t *len, uint32_t *t, int8_t *sc, uint8_t *fwi)
{
    rd(t, 4);
    rd(len, 2);
    rd(sc, 1);
    rd(fwi, 1);
    if (*len > 1024) {
        fprintf(stderr, "dsp_harness: packet of %u bytes\n", (unsigned)*len);
        exit(2);
    }
    rd(buf, *len);
    return 0;
}

int main(void)
{
    static int8_t buf[1024];
    static int8_t out[RFE_DSP_INPUT_SIZE];
    for (;;) {
        int c = getchar();
        if (c == EOF || c == 'Q') break;
        if (c == 'W' || c == 'R') {
            uint32_t n, i, t, r0 = 0, r1 = 0;
            uint16_t len;
            int8_t sc;
            uint8_t fwi;
            int32_t rc = 0;
            if (c == 'R') {
                rd(&r0, 4);
                rd(&r1, 4);
            }
            rd(&n, 4);
            rfe_dsp_init(&st, 0);
            for (i = 0; i < n; ++i) {
                int r;
                read_packet(buf, &len, &t, &sc, &fwi);
                r = rfe_dsp_push_packet_ex(&st, buf, len, t, sc, fwi);
                if (r && !rc) rc = r;
            }
            memset(out, 0, sizeof out);
            if (!rc) rc = c == 'W' ? rfe_dsp_window_to_input(&st, out) : rfe_dsp_window_range_to_input(&st, r0, r1, out);
            fwrite(&rc, 4, 1, stdout);
            fwrite(out, 1, sizeof out, stdout);
            fwrite(rfe_dsp_features(&st), sizeof(float), RFE_DSP_GROUPS * RFE_DSP_N_BINS * RFE_DSP_N_FRAMES, stdout);
        } else if (c == 'L') {
            uint16_t len;
            int8_t sc;
            int16_t sub[128], off[128];
            int32_t n, i;
            rd(&len, 2);
            rd(&sc, 1);
            n = rfe_dsp_layout(len, sc, sub, off);
            fwrite(&n, 4, 1, stdout);
            for (i = 0; i < n; ++i) {
                fwrite(&sub[i], 2, 1, stdout);
                fwrite(&off[i], 2, 1, stdout);
            }
        } else if (c == 'S') {
            double thr;
            uint32_t n, i, t, ne = 0;
            uint16_t len;
            int8_t sc;
            uint8_t fwi;
            static rfe_act_event ev[4096];
            rd(&thr, 8);
            rd(&n, 4);
            rfe_act_init(&act, (rfe_real)thr, 0);
            act.on_score = on_score;
            n_scores = 0;
            for (i = 0; i < n; ++i) {
                read_packet(buf, &len, &t, &sc, &fwi);
                act.secondary_channel = sc;
                if (rfe_act_push_packet(&act, buf, len, t) > 0)
                    while (ne < 4096 && rfe_act_pop_event(&act, &ev[ne])) ++ne;
            }
            rfe_act_finish(&act);
            while (ne < 4096 && rfe_act_pop_event(&act, &ev[ne])) ++ne;
            fwrite(&ne, 4, 1, stdout);
            for (i = 0; i < ne; ++i) {
                fwrite(&ev[i].start_us, 4, 1, stdout);
                fwrite(&ev[i].end_us, 4, 1, stdout);
            }
            fwrite(&n_scores, 4, 1, stdout);
            fwrite(scores, 8, n_scores, stdout);
        } else {
            fprintf(stderr, "dsp_harness: unknown record %d\n", c);
            return 2;
        }
        fflush(stdout);
    }
    return 0;
}
