/*
 * rfe_device.c - the protocol dispatcher of the rfedge firmware (see rfe_device.h, rfe_proto.h and
 * docs/protocol.md for the payload of every command).
 */
#include "rfe_device.h"

#include <string.h>

#include "model.h"
#include "rfe_proto.h"

#ifndef RFE_HAVE_DSP
#define RFE_HAVE_DSP 0
#endif
#if RFE_HAVE_DSP
#include "dsp/rfe_dsp.h"
#endif

#ifndef RFE_BOARD_NAME
#define RFE_BOARD_NAME "unknown"
#endif
#ifndef RFE_CLOCK_HZ
#define RFE_CLOCK_HZ 0
#endif
#ifndef RFE_COUNTER_KIND
#define RFE_COUNTER_KIND RFE_COUNTER_NS
#endif
#ifndef RFE_FW_VERSION
#define RFE_FW_VERSION "0"
#endif
#ifndef RFE_MODEL_HASH
#define RFE_MODEL_HASH 0ULL
#endif
#define RFE_BENCH_MAX 101

enum { CAP_DSP = 1, CAP_CAPTURE = 2, CAP_SELFTEST = 4 };

static struct {
    rfe_rx_t rx;
    uint8_t tx[RFE_PROTO_MAX_ENCODED];
    size_t tx_len;
    /* the last answered request, to answer a retry (same seq, type and CRC) without re-running it */
    int have_last;
    uint16_t last_seq, last_crc;
    uint8_t last_type;
    uint64_t counter_overhead;
    int stopped;
    int capture;
    uint32_t capture_id;
    uint8_t dsp_mode;
} S;

static int8_t in_buf[RFE_MODEL_INPUT_SIZE];
static int8_t out_buf[RFE_MODEL_OUTPUT_SIZE];
static uint8_t payload[RFE_PROTO_MAX_PAYLOAD];
static char line[32 + 48 + 5 * RFE_CSI_MAX_LEN];

static uint64_t counter_delta(uint64_t t0, uint64_t t1)
{
    const uint64_t d = t1 - t0;
    return d > S.counter_overhead ? d - S.counter_overhead : 0;
}

static void send(uint8_t type, uint16_t seq, const uint8_t *p, size_t n)
{
    S.tx_len = rfe_proto_encode(S.tx, sizeof S.tx, type, seq, p, n);
    if (S.tx_len) rfe_board_write(S.tx, S.tx_len);
}

static void send_error(uint16_t seq, uint8_t code, uint8_t type, const char *msg)
{
    /* own buffer: S.tx keeps the last answer for retries */
    uint8_t p[80], wire[80 + 16];
    size_t n = 2, w;
    p[0] = code;
    p[1] = type;
    while (*msg && n < sizeof p) p[n++] = (uint8_t)*msg++;
    w = rfe_proto_encode(wire, sizeof wire, RFE_T_ERROR, seq, p, n);
    if (w) rfe_board_write(wire, w);
}

void rfe_device_init(void)
{
    uint64_t best = ~(uint64_t)0;
    int k;
    memset(&S, 0, sizeof S);
    rfe_rx_init(&S.rx);
    for (k = 0; k < 8; ++k) {   /* the cost of reading the counter, taken off every measurement */
        const uint64_t a = rfe_board_counter();
        const uint64_t b = rfe_board_counter();
        if (b - a < best) best = b - a;
    }
    S.counter_overhead = best;
}

int rfe_device_stopped(void) { return S.stopped; }

static void put_f32(uint8_t *p, float v)
{
    uint32_t u;
    memcpy(&u, &v, 4);
    rfe_put_u32(p, u);
}

static size_t put_str(uint8_t *p, size_t at, size_t cap, const char *s)
{
    while (*s && at + 1 < cap) p[at++] = (uint8_t)*s++;
    p[at++] = 0;
    return at;
}

static size_t cmd_hello(uint8_t *p)
{
    size_t n;
    memset(p, 0, 56);
    p[0] = RFE_PROTO_VERSION;
    p[1] = RFE_COUNTER_KIND;
    p[2] = (uint8_t)(CAP_CAPTURE | CAP_SELFTEST | (RFE_HAVE_DSP ? CAP_DSP : 0));
    rfe_put_u16(p + 4, RFE_PROTO_MAX_PAYLOAD);
    rfe_put_u16(p + 6, RFE_BENCH_MAX);
    rfe_put_u32(p + 8, (uint32_t)RFE_CLOCK_HZ);
    rfe_put_u64(p + 12, (uint64_t)RFE_MODEL_HASH);
    rfe_put_u32(p + 20, RFE_MODEL_INPUT_SIZE);
    rfe_put_u32(p + 24, RFE_MODEL_OUTPUT_SIZE);
    rfe_put_u32(p + 28, RFE_MODEL_ARENA_SIZE);
    rfe_put_u32(p + 32, rfe_board_ram_bytes());
    rfe_put_u32(p + 36, rfe_board_flash_bytes());
    put_f32(p + 40, RFE_MODEL_INPUT_SCALE);
    rfe_put_u32(p + 44, (uint32_t)(int32_t)RFE_MODEL_INPUT_ZERO_POINT);
    put_f32(p + 48, RFE_MODEL_OUTPUT_SCALE);
    rfe_put_u32(p + 52, (uint32_t)(int32_t)RFE_MODEL_OUTPUT_ZERO_POINT);
    n = put_str(p, 56, RFE_PROTO_MAX_PAYLOAD, RFE_FW_VERSION);
    return put_str(p, n, RFE_PROTO_MAX_PAYLOAD, RFE_BOARD_NAME);
}

static uint64_t run_invoke(int *status)
{
    uint64_t t0, t1;
    t0 = rfe_board_counter();
    *status = rfe_model_invoke(in_buf, out_buf);
    t1 = rfe_board_counter();
    return counter_delta(t0, t1);
}

static void sort_u64(uint64_t *v, int n)
{
    int i, j;
    for (i = 1; i < n; ++i) {
        const uint64_t x = v[i];
        for (j = i; j > 0 && v[j - 1] > x; --j) v[j] = v[j - 1];
        v[j] = x;
    }
}

#if RFE_HAVE_DSP
/* ---- on-device DSP (mcu/core/dsp): window mode fills the input tensor on FEATURES; stream mode
 * runs the activity detector packet by packet and classifies each finished gesture ---- */
enum { DSP_WINDOW = 0, DSP_STREAM = 1 };
typedef char rfe_dsp_input_size_check[(RFE_DSP_INPUT_SIZE == RFE_MODEL_INPUT_SIZE) ? 1 : -1];
static rfe_dsp_state dsp;
static rfe_act_state act;
static uint8_t ev_buf[RFE_ACT_MAX_EVENTS * 2 * 24];
static size_t ev_len;
static int dsp_ready;

static void dsp_events(void)
{
    rfe_act_event ev;
    while (ev_len + 24 <= sizeof ev_buf && rfe_act_pop_event(&act, &ev)) {
        uint8_t *e = ev_buf + ev_len;
        int k, best = 0, status;
        uint64_t c;
        const uint64_t t0 = rfe_board_counter();
        status = rfe_dsp_window_range_to_input(&dsp, ev.start_us - RFE_DSP_MARGIN_US, ev.end_us + RFE_DSP_MARGIN_US, in_buf);
        if (status == RFE_DSP_OK) status = rfe_model_invoke(in_buf, out_buf);
        c = counter_delta(t0, rfe_board_counter());
        for (k = 1; k < RFE_MODEL_OUTPUT_SIZE; ++k)
            if (out_buf[k] > out_buf[best]) best = k;
        rfe_put_u32(e, ev.start_us);
        rfe_put_u32(e + 4, ev.end_us);
        e[8] = (uint8_t)best;
        e[9] = (uint8_t)out_buf[best];
        rfe_put_u16(e + 10, 0);
        rfe_put_u32(e + 12, (uint32_t)status);
        rfe_put_u64(e + 16, c);
        ev_len += 24;
    }
}

static void dsp_push(const rfe_csi_packet_t *pkt)
{
    const int fwi = (pkt->flags & RFE_CSI_F_FIRST_WORD_INVALID) != 0;
    if (!dsp_ready) return;
    rfe_dsp_push_packet_ex(&dsp, pkt->buf, pkt->len, pkt->timestamp_us, pkt->secondary_channel, fwi);
    if (S.dsp_mode == DSP_STREAM && rfe_act_push_packet(&act, pkt->buf, pkt->len, pkt->timestamp_us) > 0) dsp_events();
}
#endif

void rfe_device_csi_packet(const rfe_csi_packet_t *pkt)
{
    if (S.capture) {
        const size_t n = rfe_csi_format(pkt, S.capture_id++, line, sizeof line);
        if (n) rfe_board_write((const uint8_t *)line, n);
    }
#if RFE_HAVE_DSP
    dsp_push(pkt);
#endif
}

/* Runs one decoded request; returns 1 if a response was sent that may be replayed on a retry. */
static int dispatch(const rfe_frame_t *f)
{
    const uint8_t *a = f->payload;
    const uint16_t n = f->len, seq = f->seq;
    const uint8_t rt = (uint8_t)(f->type | RFE_T_RESPONSE);
    switch (f->type) {
    case RFE_T_HELLO:
        send(rt, seq, payload, cmd_hello(payload));
        return 1;
    case RFE_T_ECHO:
        send(rt, seq, a, n);
        return 1;
    case RFE_T_SELFTEST: {
        const uint64_t t0 = rfe_board_counter();
        const int32_t bad = rfe_model_selftest();
        const uint64_t t1 = rfe_board_counter();
        rfe_put_u32(payload, (uint32_t)bad);
        rfe_put_u64(payload + 4, counter_delta(t0, t1));
        send(rt, seq, payload, 12);
        return 1;
    }
    case RFE_T_SET_INPUT: {
        uint32_t off;
        if (n < 4) break;
        off = rfe_get_u32(a);
        if (off > RFE_MODEL_INPUT_SIZE || (uint32_t)(n - 4) > RFE_MODEL_INPUT_SIZE - off) {
            send_error(seq, RFE_E_ARG, f->type, "offset + length beyond the input tensor");
            return 0;
        }
        memcpy(in_buf + off, a + 4, (size_t)(n - 4));
        rfe_put_u32(payload, off + (uint32_t)(n - 4));
        send(rt, seq, payload, 4);
        return 1;
    }
    case RFE_T_GET_INPUT: {
        uint32_t off, len;
        if (n != 6) break;
        off = rfe_get_u32(a);
        len = rfe_get_u16(a + 4);
        if (off > RFE_MODEL_INPUT_SIZE || len > RFE_MODEL_INPUT_SIZE - off || len > RFE_PROTO_MAX_PAYLOAD) {
            send_error(seq, RFE_E_ARG, f->type, "offset + length beyond the input tensor or the payload");
            return 0;
        }
        send(rt, seq, (const uint8_t *)in_buf + off, len);
        return 1;
    }
    case RFE_T_INVOKE: {
        int status;
        uint64_t c;
        if (n != 0) break;
        c = run_invoke(&status);
        if (12 + RFE_MODEL_OUTPUT_SIZE > RFE_PROTO_MAX_PAYLOAD) {
            send_error(seq, RFE_E_UNSUPPORTED, f->type, "output larger than a frame");
            return 0;
        }
        rfe_put_u32(payload, (uint32_t)status);
        rfe_put_u64(payload + 4, c);
        memcpy(payload + 12, out_buf, RFE_MODEL_OUTPUT_SIZE);
        send(rt, seq, payload, 12 + RFE_MODEL_OUTPUT_SIZE);
        return 1;
    }
    case RFE_T_BENCH: {
        static uint64_t runs[RFE_BENCH_MAX];
        int k, status = 0, runs_n;
        if (n != 2) break;
        runs_n = rfe_get_u16(a);
        if (runs_n < 1 || runs_n > RFE_BENCH_MAX) {
            send_error(seq, RFE_E_ARG, f->type, "runs must be 1..101");
            return 0;
        }
        for (k = 0; k < runs_n; ++k) {
            int st;
            runs[k] = run_invoke(&st);
            status |= st;
        }
        sort_u64(runs, runs_n);
        rfe_put_u16(payload, (uint16_t)runs_n);
        rfe_put_u64(payload + 2, runs[0]);
        rfe_put_u64(payload + 10, runs[runs_n / 2]);
        rfe_put_u64(payload + 18, runs[runs_n - 1]);
        rfe_put_u32(payload + 26, (uint32_t)status);
        send(rt, seq, payload, 30);
        return 1;
    }
    case RFE_T_CAPTURE:
        if (n != 1) break;
        S.capture = a[0] != 0;
        payload[0] = (uint8_t)S.capture;
        send(rt, seq, payload, 1);
        return 1;
    case RFE_T_CSI_PUSH: {
        uint32_t off = 1;
        uint8_t k, count;
        uint64_t t0, t1;
        size_t m = 0;
        if (n < 1) break;
        if (!S.capture && !RFE_HAVE_DSP) {
            send_error(seq, RFE_E_UNSUPPORTED, f->type, "built without on-device DSP (mcu/core/dsp): capture mode only");
            return 0;
        }
        count = a[0];
#if RFE_HAVE_DSP
        ev_len = 0;
#endif
        t0 = rfe_board_counter();
        for (k = 0; k < count; ++k) {
            rfe_csi_packet_t pkt;
            const size_t used = rfe_csi_parse(a + off, (size_t)(n - off), &pkt);
            if (!used) break;
            rfe_device_csi_packet(&pkt);
            off += (uint32_t)used;
        }
#if RFE_HAVE_DSP
        /* an empty push ends a stream: the detector scores its edge */
        if (count == 0 && dsp_ready && S.dsp_mode == DSP_STREAM && rfe_act_finish(&act) > 0) dsp_events();
#endif
        t1 = rfe_board_counter();
        payload[0] = k;
        rfe_put_u64(payload + 1, counter_delta(t0, t1));
        m = 9;
#if RFE_HAVE_DSP
        payload[m++] = (uint8_t)(ev_len / 24);
        memcpy(payload + m, ev_buf, ev_len);
        m += ev_len;
#else
        payload[m++] = 0;
#endif
        send(rt, seq, payload, m);
        return 1;
    }
#if RFE_HAVE_DSP
    case RFE_T_DSP_RESET:
    {
        uint32_t bits;
        float thr;
        if (n != 5) break;
        if (a[0] > DSP_STREAM) {
            send_error(seq, RFE_E_ARG, f->type, "DSP mode must be 0 (window) or 1 (stream)");
            return 0;
        }
        S.dsp_mode = a[0];
        bits = rfe_get_u32(a + 1);
        memcpy(&thr, &bits, 4);
        rfe_dsp_init(&dsp, 0);
        if (S.dsp_mode == DSP_STREAM) rfe_act_init(&act, (rfe_real)thr, 0);
        dsp_ready = 1;
        send(rt, seq, payload, 0);
        return 1;
    }
    case RFE_T_FEATURES:
    {
        uint64_t t0, t1;
        int32_t st;
        if (n != 0) break;
        if (!dsp_ready) {
            send_error(seq, RFE_E_STATE, f->type, "DSP_RESET first");
            return 0;
        }
        t0 = rfe_board_counter();
        st = rfe_dsp_window_to_input(&dsp, in_buf);
        t1 = rfe_board_counter();
        rfe_put_u32(payload, (uint32_t)st);
        rfe_put_u64(payload + 4, counter_delta(t0, t1));
        rfe_put_u32(payload + 12, RFE_MODEL_INPUT_SIZE);
        send(rt, seq, payload, 16);
        return 1;
    }
#else
    case RFE_T_DSP_RESET:
    case RFE_T_FEATURES:
        send_error(seq, RFE_E_UNSUPPORTED, f->type, "built without on-device DSP (mcu/core/dsp)");
        return 0;
#endif
    case RFE_T_BYE:
        send(rt, seq, payload, 0);
        S.stopped = 1;
        return 0;
    default:
        send_error(seq, RFE_E_UNKNOWN, f->type, "unknown command");
        return 0;
    }
    send_error(seq, RFE_E_ARG, f->type, "bad payload length");
    return 0;
}

static void handle_block(uint8_t *buf, size_t len)
{
    rfe_frame_t f;
    uint16_t crc;
    const int err = rfe_proto_decode(buf, len, &f);
    if (err != RFE_E_OK) {
        static const char *const why[] = {"", "CRC mismatch", "frame too long", "unknown protocol version",
                                          "length field disagrees with the frame", "bad COBS encoding"};
        send_error(f.seq, (uint8_t)err, f.type, err <= RFE_E_COBS ? why[err] : "bad frame");
        return;
    }
    crc = rfe_get_u16(buf + RFE_PROTO_HEADER + f.len);   /* a retry has the same CRC as the original */
    if (f.type & RFE_T_RESPONSE) {
        send_error(f.seq, RFE_E_UNKNOWN, f.type, "responses are not requests");
        return;
    }
    if (S.have_last && f.seq == S.last_seq && f.type == S.last_type && crc == S.last_crc && S.tx_len) {
        rfe_board_write(S.tx, S.tx_len);   /* a retry: the answer was lost, not the request */
        return;
    }
    S.have_last = dispatch(&f);
    S.last_seq = f.seq;
    S.last_type = f.type;
    S.last_crc = crc;
}

void rfe_device_feed(const uint8_t *data, size_t n)
{
    size_t i;
    for (i = 0; i < n && !S.stopped; ++i) {
        const int r = rfe_rx_push(&S.rx, data[i]);
        if (r == 1) {
            handle_block(S.rx.buf, S.rx.len);
            rfe_rx_done(&S.rx);
        } else if (r == 2) {
            send_error(0xffff, RFE_E_TOO_LONG, 0, "frame too long");
            rfe_rx_done(&S.rx);
        }
    }
}
