/*
 * einsum_bench_rv32.c - bare-metal qemu-rv32 (virt) driver for a generated Einsum network:
 * runs every vector of einsum_bench_inputs.h, counts retired instructions (minstret, exact under
 * -icount shift=0) around each <prefix>_infer call and prints one line per vector on the UART:
 *   "<instructions> <label> <logpost_0> ... <logpost_C-1>" (with RFE_EINSUM_PROFILE then the
 *   instructions of the 5 stages: leaves, regions, layers, root, classes)
 * then "END" and ends QEMU through the test device.
 * Build with -DRFE_EH_HEADER="<prefix>.h" -DRFE_EH_INFER=<prefix>_infer -DRFE_EH_F=.. -DRFE_EH_C=..
 */
#include <stdint.h>
#include RFE_EH_HEADER
#include "einsum_bench_inputs.h" /* RFE_EB_N, static const int16_t rfe_eb_x[RFE_EB_N][RFE_EH_F] */

#define UART ((volatile uint8_t *)0x10000000u)
#define TEST_DEVICE ((volatile uint32_t *)0x100000u)

void rfe_board_exit(int code);

static void put(char ch)
{
    while (!(UART[5] & 0x20)) {
    }
    UART[0] = (uint8_t)ch;
}

static void put_int(int32_t v)
{
    char buf[12];
    int n = 0;
    uint32_t u = v < 0 ? (uint32_t)(-(v + 1)) + 1u : (uint32_t)v;
    if (v < 0) put('-');
    do {
        buf[n++] = (char)('0' + u % 10u);
        u /= 10u;
    } while (u);
    while (n) put(buf[--n]);
}

static uint32_t instret(void)
{
    uint32_t lo;
    __asm__ volatile("csrr %0, minstret" : "=r"(lo));
    return lo;
}

void rfe_board_exit(int code)
{
    *TEST_DEVICE = code == 0 ? 0x5555u : (((uint32_t)code << 16) | 0x3333u);
    for (;;) {
    }
}

#ifdef RFE_EINSUM_PROFILE
/* per-stage instruction counts of the current inference (rfe_einsum.h) */
static uint32_t prof_last, prof_acc[5];

void rfe_einsum_prof_mark(int stage)
{
    uint32_t t = instret();
    prof_acc[stage] += t - prof_last;
    prof_last = t;
}
#endif

int main(void)
{
    static int32_t lp[RFE_EH_C];
    int i, c;
    for (i = 0; i < RFE_EB_N; i++) {
#ifdef RFE_EINSUM_PROFILE
        for (c = 0; c < 5; c++) prof_acc[c] = 0;
        prof_last = instret();
#endif
        uint32_t t0 = instret();
        int32_t label = RFE_EH_INFER(rfe_eb_x[i], lp);
        uint32_t t1 = instret();
        put_int((int32_t)(t1 - t0));
        put(' ');
        put_int(label);
        for (c = 0; c < RFE_EH_C; c++) {
            put(' ');
            put_int(lp[c]);
        }
#ifdef RFE_EINSUM_PROFILE
        for (c = 0; c < 5; c++) {
            put(' ');
            put_int((int32_t)prof_acc[c]);
        }
#endif
        put('\n');
    }
    put('E'); put('N'); put('D'); put('\n');
    return 0;
}
