/*
 * einsum_harness.c - host test driver for a generated Einsum network.
 * Build with -DRFE_EH_HEADER="<prefix>.h" -DRFE_EH_INFER=<prefix>_infer -DRFE_EH_F=... -DRFE_EH_C=...
 * stdin: N records of F little-endian int16; stdout: per record C int32 log-posteriors then the
 * int32 label (native byte order).  With argument "fuse N": stdin holds records of N*C int32
 * log-posteriors; stdout one int32 label + C int32 scores per record (rfe_einsum_fuse).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "rfe_einsum.h"
#include RFE_EH_HEADER

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "fuse") == 0) {
        int n = atoi(argv[2]), k;
        int32_t buf[15 * 64], score[64];
        const int32_t *lps[15];
        if (n < 1 || n > 15 || RFE_EH_C > 64) return 2;
        for (k = 0; k < n; k++) lps[k] = buf + k * RFE_EH_C;
        while (fread(buf, sizeof(int32_t), (size_t)(n * RFE_EH_C), stdin) == (size_t)(n * RFE_EH_C)) {
            int32_t label = rfe_einsum_fuse(lps, n, RFE_EH_C, score);
            fwrite(&label, sizeof label, 1, stdout);
            fwrite(score, sizeof(int32_t), RFE_EH_C, stdout);
        }
        return 0;
    }
    {
        int16_t xq[RFE_EH_F];
        int32_t lp[RFE_EH_C], label;
        while (fread(xq, sizeof xq[0], RFE_EH_F, stdin) == RFE_EH_F) {
            label = RFE_EH_INFER(xq, lp);
            fwrite(lp, sizeof lp[0], RFE_EH_C, stdout);
            fwrite(&label, sizeof label, 1, stdout);
        }
    }
    return 0;
}
