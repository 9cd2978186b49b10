/*
 * rfid_feat_driver.c - host driver of mcu/core/rfid/rfe_rfidfeat.c for
 * tests/test_rfid_features_fixed.py.
 *
 *   rfid_feat_driver spr|sa|wa   reads trials of int16 signals (native byte order) from stdin
 *                                until EOF: spr: rss[2][2][35] then phase[2][2][35] (280 values),
 *                                sa, wa: aoa[2][35] (70 values); writes the int32 features
 *                                (116, 29, 38 per trial) to stdout.
 *   rfid_feat_driver sa_api      as sa, but through the public rfe_feat_stats14 and
 *                                rfe_feat_pearson (rfe_feat_sa fuses the Pearson pass).
 *   rfid_feat_driver scales      writes the three int8 scale tables (116 + 29 + 38 bytes).
 */
#include <stdio.h>
#include <string.h>

#include "rfe_rfidfeat.h"

int main(int argc, char **argv)
{
    int16_t in[280];
    int32_t out[RFE_FEAT_SPR_N];
    size_t nin, nout;
    int api = 0;
    rfe_feat_moments_t m0, m1;
    if (argc != 2) {
        fprintf(stderr, "usage: %s spr|sa|sa_api|wa|scales\n", argv[0]);
        return 2;
    }
    if (strcmp(argv[1], "scales") == 0) {
        fwrite(RFE_FEAT_SPR_SCALE_LOG2, 1, RFE_FEAT_SPR_N, stdout);
        fwrite(RFE_FEAT_SA_SCALE_LOG2, 1, RFE_FEAT_SA_N, stdout);
        fwrite(RFE_FEAT_WA_SCALE_LOG2, 1, RFE_FEAT_WA_N, stdout);
        return 0;
    }
    if (strcmp(argv[1], "spr") == 0) {
        nin = 280;
        nout = RFE_FEAT_SPR_N;
    } else if (strcmp(argv[1], "sa") == 0 || strcmp(argv[1], "sa_api") == 0) {
        nin = 70;
        nout = RFE_FEAT_SA_N;
        api = strcmp(argv[1], "sa_api") == 0;
    } else if (strcmp(argv[1], "wa") == 0) {
        nin = 70;
        nout = RFE_FEAT_WA_N;
    } else {
        fprintf(stderr, "unknown mode %s\n", argv[1]);
        return 2;
    }
    for (;;) {
        size_t got = fread(in, sizeof in[0], nin, stdin);
        if (got == 0) break;
        if (got != nin) {
            fprintf(stderr, "truncated trial: %zu of %zu values\n", got, nin);
            return 3;
        }
        if (nin == 280) {
            rfe_feat_spr((const int16_t(*)[2][RFE_FEAT_N])in, (const int16_t(*)[2][RFE_FEAT_N])(in + 140), out);
        } else if (api) {
            rfe_feat_stats14(in, RFE_FEAT_M3_SHIFT_AOA, out, &m0);
            rfe_feat_stats14(in + RFE_FEAT_N, RFE_FEAT_M3_SHIFT_AOA, out + RFE_FEAT_NSTAT, &m1);
            out[2 * RFE_FEAT_NSTAT] = rfe_feat_pearson(&m0, &m1);
        } else if (nout == RFE_FEAT_SA_N) {
            rfe_feat_sa((const int16_t(*)[RFE_FEAT_N])in, out);
        } else {
            rfe_feat_wa((const int16_t(*)[RFE_FEAT_N])in, out);
        }
        if (fwrite(out, sizeof out[0], nout, stdout) != nout) return 4;
    }
    return 0;
}
