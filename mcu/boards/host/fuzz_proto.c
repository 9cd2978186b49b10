/*
 * fuzz_proto.c - fuzzing the frame parser and the dispatcher behind it (host build).
 *
 * LLVMFuzzerTestOneInput() feeds one input to a fresh device (rfe_device_init + rfe_device_feed)
 * and checks what comes back: every block the device writes between 0x00 delimiters must be a
 * valid frame (or a CSI_DATA text line in capture mode), and the device must still answer a
 * HELLO afterwards ("the device keeps serving").  Any violation aborts, as do the sanitizers.
 *
 * With clang: clang -fsanitize=fuzzer,address,undefined -DRFE_LIBFUZZER ... (libFuzzer's main).
 * Without: this file's main() runs a bounded campaign itself: random byte strings and mutations
 * (bit flips, byte changes, cuts, splices, length-field edits, duplicated delimiters) of valid
 * frames of every command, reproducible from a seed, plus any corpus files given:
 *     fuzz_proto ITERATIONS SEED [corpus files...]
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rfe_proto.h"
#include "rfe_device.h"

static uint8_t out[1 << 20];
static size_t out_len;
static uint64_t fake_counter;

void rfe_board_write(const uint8_t *data, size_t n)
{
    if (n > sizeof out - out_len) {   /* keep the tail: older output was already checked */
        out_len = 0;
        if (n > sizeof out) abort();
    }
    memcpy(out + out_len, data, n);
    out_len += n;
}

uint64_t rfe_board_counter(void) { return fake_counter += 7; }
uint32_t rfe_board_ram_bytes(void) { return 0; }
uint32_t rfe_board_flash_bytes(void) { return 0; }

/* every block between delimiters decodes as a frame, or is a capture text line */
static int check_output(int *hello_seen)
{
    size_t i = 0;
    while (i < out_len) {
        size_t j = i;
        while (j < out_len && out[j] != 0) ++j;
        if (j > i) {
            static uint8_t blk[RFE_PROTO_MAX_ENCODED + 16];
            rfe_frame_t f;
            const size_t n = j - i;
            if (n >= 9 && memcmp(out + i, "CSI_DATA,", 9) == 0) {
                /* text: fine */
            } else {
                if (n > sizeof blk) return 0;
                memcpy(blk, out + i, n);
                if (rfe_proto_decode(blk, n, &f) != RFE_E_OK) return 0;
                if (f.type == (RFE_T_HELLO | RFE_T_RESPONSE) && f.seq == 0x4242) *hello_seen = 1;
            }
        }
        i = j + 1;
    }
    return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t hello[32];
    size_t hn;
    int seen = 0;
    out_len = 0;
    rfe_device_init();
    rfe_device_feed(data, size);
    if (!check_output(&seen)) {
        fprintf(stderr, "fuzz_proto: the device wrote a block that is not a valid frame\n");
        abort();
    }
    if (rfe_device_stopped()) return 0;   /* a BYE frame: the device stops by design */
    /* whatever came before, a delimiter and a HELLO get an answer */
    out_len = 0;
    hn = rfe_proto_encode(hello, sizeof hello, RFE_T_HELLO, 0x4242, NULL, 0);
    rfe_device_feed(hello, hn);
    seen = 0;
    if (!check_output(&seen) || !seen) {
        fprintf(stderr, "fuzz_proto: the device stopped answering after this input\n");
        abort();
    }
    return 0;
}

#ifndef RFE_LIBFUZZER
static uint64_t rng_state;

static uint32_t rnd(void)
{
    rng_state = rng_state * 6364136223846793005ULL + 1442695040888963407ULL;
    return (uint32_t)(rng_state >> 33);
}

static size_t valid_frame(uint8_t *buf, size_t cap)
{
    static const uint8_t types[] = {RFE_T_HELLO, RFE_T_SELFTEST, RFE_T_SET_INPUT, RFE_T_GET_INPUT, RFE_T_INVOKE,
                                    RFE_T_BENCH, RFE_T_DSP_RESET, RFE_T_CSI_PUSH, RFE_T_FEATURES, RFE_T_CAPTURE,
                                    RFE_T_ECHO, 0x33, 0x85};
    uint8_t p[RFE_PROTO_MAX_PAYLOAD];
    size_t n = 0, k;
    const uint8_t t = types[rnd() % sizeof types];
    switch (t) {
    case RFE_T_SET_INPUT:
    case RFE_T_GET_INPUT:
        rfe_put_u32(p, rnd() % 3 == 0 ? rnd() : rnd() % 4096);
        n = t == RFE_T_GET_INPUT ? 6 : 4 + rnd() % 600;
        for (k = 4; k < n; ++k) p[k] = (uint8_t)rnd();
        if (t == RFE_T_GET_INPUT) rfe_put_u16(p + 4, (uint16_t)(rnd() % 1500));
        break;
    case RFE_T_BENCH:
        rfe_put_u16(p, (uint16_t)(rnd() % 4));
        n = 2;
        break;
    case RFE_T_CAPTURE:
        p[0] = (uint8_t)(rnd() & 1);
        n = 1;
        break;
    case RFE_T_DSP_RESET:
        p[0] = (uint8_t)(rnd() % 3);
        rfe_put_u32(p + 1, rnd());
        n = 5;
        break;
    case RFE_T_CSI_PUSH: {   /* 1-3 packet records, lengths sometimes inconsistent */
        const uint8_t cnt = (uint8_t)(1 + rnd() % 3);
        p[0] = cnt;
        n = 1;
        for (k = 0; k < cnt && n + 20 + 128 < sizeof p; ++k) {
            size_t b;
            const uint16_t len = (uint16_t)(rnd() % 4 ? 128 : rnd() % 700);
            rfe_put_u32(p + n, rnd());
            for (b = 4; b < 18; ++b) p[n + b] = (uint8_t)rnd();
            rfe_put_u16(p + n + 18, len);
            n += 20;
            for (b = 0; b < len && n < sizeof p; ++b) p[n++] = (uint8_t)rnd();
        }
        break;
    }
    default:
        n = rnd() % 3 == 0 ? rnd() % 64 : 0;
        for (k = 0; k < n; ++k) p[k] = (uint8_t)rnd();
    }
    return rfe_proto_encode(buf, cap, t, (uint16_t)rnd(), p, n);
}

static size_t make_input(uint8_t *buf, size_t cap)
{
    size_t n = 0;
    int frames = 1 + (int)(rnd() % 4);
    if (rnd() % 8 == 0) {   /* plain random bytes, sometimes longer than any frame */
        n = rnd() % (rnd() % 4 == 0 ? cap : 64);
        for (size_t k = 0; k < n; ++k) buf[k] = (uint8_t)(rnd() % 3 == 0 ? 0 : rnd());
        return n;
    }
    while (frames-- && n + RFE_PROTO_MAX_ENCODED < cap) n += valid_frame(buf + n, cap - n);
    {   /* mutations */
        int m = (int)(rnd() % 5);
        while (m-- > 0 && n > 0) {
            const size_t at = rnd() % n;
            switch (rnd() % 6) {
            case 0: buf[at] ^= (uint8_t)(1u << (rnd() % 8)); break;
            case 1: buf[at] = (uint8_t)rnd(); break;
            case 2: n = at; break;                                   /* cut */
            case 3: buf[at] = 0; break;                              /* extra delimiter */
            case 4: if (n + 64 < cap) { memmove(buf + at + 1, buf + at, n - at); ++n; } break;
            default: if (n + 3000 < cap) { memset(buf + n, 0x11, 2000); n += 2000; } break;   /* oversized */
            }
        }
    }
    return n;
}

int main(int argc, char **argv)
{
    static uint8_t buf[4 * RFE_PROTO_MAX_ENCODED + 4096];
    const long iters = argc > 1 ? atol(argv[1]) : 10000;
    long i;
    int a;
    rng_state = argc > 2 ? strtoull(argv[2], NULL, 10) : 1;
    for (a = 3; a < argc; ++a) {   /* corpus replay */
        FILE *f = fopen(argv[a], "rb");
        size_t n;
        if (!f) {
            fprintf(stderr, "fuzz_proto: cannot open %s\n", argv[a]);
            return 2;
        }
        n = fread(buf, 1, sizeof buf, f);
        fclose(f);
        LLVMFuzzerTestOneInput(buf, n);
    }
    for (i = 0; i < iters; ++i) {
        const size_t n = make_input(buf, sizeof buf);
        LLVMFuzzerTestOneInput(buf, n);
    }
    printf("fuzz_proto: %ld inputs, %d corpus files: no crash, every answer a valid frame\n", iters, argc > 3 ? argc - 3 : 0);
    return 0;
}
#endif
