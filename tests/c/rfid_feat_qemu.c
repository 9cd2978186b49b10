/*
 * rfid_feat_qemu.c - instructions per device feature extraction on qemu-rv32 (rv32imc, the
 * ESP32-C3 ISA): runs rfe_feat_spr / _sa / _wa on the trials of rfid_feat_qemu_data.h (written
 * by tests/test_rfid_features_fixed.py) between two reads of minstret and prints, per trial,
 *   "T <trial> <spr> <sa> <wa>"   instructions retired by each call (read overhead subtracted)
 *   "F <set> <trial> <hex values>" the features, for the bit-exactness check on the target.
 * Linked with mcu/boards/qemu-rv32/crt0.S and link.ld; ends QEMU through the test device.
 */
#include <stdint.h>

#include "rfe_rfidfeat.h"
#include "rfid_feat_qemu_data.h"   /* RFE_Q_TRIALS, Q_RSS, Q_PHASE, Q_AOA */

#define UART ((volatile uint8_t *)0x10000000u)
#define UART_LSR 5
#define LSR_THRE 0x20
#define TEST_DEVICE ((volatile uint32_t *)0x100000u)

static void putc_(char c)
{
    while (!(UART[UART_LSR] & LSR_THRE)) {
    }
    UART[0] = (uint8_t)c;
}

static void puts_(const char *s)
{
    while (*s) putc_(*s++);
}

static void putu(uint32_t v)
{
    char b[11];
    int n = 0;
    do {
        b[n++] = (char)('0' + v % 10u);
        v /= 10u;
    } while (v);
    while (n) putc_(b[--n]);
}

static void puthex(uint32_t v)
{
    int i;
    for (i = 28; i >= 0; i -= 4) putc_("0123456789abcdef"[(v >> i) & 15u]);
}

/* Low word of minstret is enough: one call retires far fewer than 2^32 instructions. */
static inline uint32_t instret(void)
{
    uint32_t v;
    __asm__ volatile("csrr %0, minstret" : "=r"(v));
    return v;
}

static void dump(const char *set, int t, const int32_t *v, int n)
{
    int i;
    puts_("F ");
    puts_(set);
    putc_(' ');
    putu((uint32_t)t);
    for (i = 0; i < n; i++) {
        putc_(' ');
        puthex((uint32_t)v[i]);
    }
    putc_('\n');
}

void rfe_board_exit(int code);
void rfe_board_exit(int code)
{
    *TEST_DEVICE = code == 0 ? 0x5555u : (((uint32_t)code << 16) | 0x3333u);
    for (;;) {
    }
}

int main(void)
{
    static int32_t spr[RFE_FEAT_SPR_N], sa[RFE_FEAT_SA_N], wa[RFE_FEAT_WA_N];
    uint32_t t0, t1, base, c_spr, c_sa, c_wa;
    int t;
    t0 = instret();
    t1 = instret();
    base = t1 - t0;   /* cost of the read itself */
    for (t = 0; t < RFE_Q_TRIALS; t++) {
        t0 = instret();
        rfe_feat_spr(Q_RSS[t], Q_PHASE[t], spr);
        t1 = instret();
        c_spr = t1 - t0 - base;
        t0 = instret();
        rfe_feat_sa(Q_AOA[t], sa);
        t1 = instret();
        c_sa = t1 - t0 - base;
        t0 = instret();
        rfe_feat_wa(Q_AOA[t], wa);
        t1 = instret();
        c_wa = t1 - t0 - base;
        puts_("T ");
        putu((uint32_t)t);
        putc_(' ');
        putu(c_spr);
        putc_(' ');
        putu(c_sa);
        putc_(' ');
        putu(c_wa);
        putc_('\n');
        dump("SPR", t, spr, RFE_FEAT_SPR_N);
        dump("SA", t, sa, RFE_FEAT_SA_N);
        dump("WA", t, wa, RFE_FEAT_WA_N);
    }
    puts_("END\n");
    return 0;
}
