/*
 * rfe_proto.h - the rfedge serial protocol, version 1: framing, CRC and the frame parser.
 *
 * The one C definition of the wire format (its Python twin is host/rfedge/proto.py; the table
 * is in docs/protocol.md).  A frame, before framing:
 *
 *   offset  size  field
 *   0       1     version (RFE_PROTO_VERSION)
 *   1       1     type: a command (0x01..0x7f), its response (command | 0x80) or RFE_T_ERROR
 *   2       2     seq, little endian: chosen by the host, echoed by the device's answer
 *   4       2     n: payload length, little endian, <= RFE_PROTO_MAX_PAYLOAD
 *   6       n     payload
 *   6+n     2     CRC-16/CCITT-FALSE (poly 0x1021, init 0xffff) of bytes 0..5+n, little endian
 *
 * On the wire each frame is COBS-encoded and written between two 0x00 delimiters, so a reader
 * can resynchronise on any 0x00 and text lines (the CSI_DATA capture mode) can share the line.
 * Portable C99, no malloc; the parser is fuzzed on the host build (tests/test_proto.py).
 */
#ifndef RFE_PROTO_H
#define RFE_PROTO_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define RFE_PROTO_VERSION 1
#define RFE_PROTO_HEADER 6
#define RFE_PROTO_CRC 2
#ifndef RFE_PROTO_MAX_PAYLOAD
#define RFE_PROTO_MAX_PAYLOAD 1024
#endif
#define RFE_PROTO_MAX_FRAME (RFE_PROTO_HEADER + RFE_PROTO_MAX_PAYLOAD + RFE_PROTO_CRC)
/* COBS adds one byte per 254 and the leading code byte; two delimiters around it */
#define RFE_PROTO_MAX_ENCODED (RFE_PROTO_MAX_FRAME + RFE_PROTO_MAX_FRAME / 254 + 1 + 2)

/* frame types: commands (host -> device); the answer to command c has type c | RFE_T_RESPONSE */
enum {
    RFE_T_HELLO = 0x01,     /* -> info: versions, model hash, sizes, RAM, flash, clock, counter */
    RFE_T_SELFTEST = 0x02,  /* -> i32 mismatched bytes of the golden vector, u64 counter delta */
    RFE_T_SET_INPUT = 0x03, /* u32 offset, bytes -> u32 offset + bytes written */
    RFE_T_GET_INPUT = 0x04, /* u32 offset, u16 length -> bytes of the input tensor */
    RFE_T_INVOKE = 0x05,    /* -> i32 status, u64 counter delta, output bytes */
    RFE_T_BENCH = 0x06,     /* u16 runs -> u16 runs, u64 min, u64 median, u64 max */
    RFE_T_DSP_RESET = 0x07, /* u8 mode (0 window, 1 stream), f32 threshold -> empty */
    RFE_T_CSI_PUSH = 0x08,  /* u8 count, packet records -> u8 accepted, u64 counter, u8 events, events */
    RFE_T_FEATURES = 0x09,  /* -> i32 status, u64 counter delta, u32 input bytes (then GET_INPUT) */
    RFE_T_CAPTURE = 0x0a,   /* u8 on -> u8 on: pushed/received CSI packets printed as CSI_DATA lines */
    RFE_T_ECHO = 0x0b,      /* bytes -> the same bytes (link test) */
    RFE_T_BYE = 0x0c,       /* -> empty, then the board stops (QEMU exits, host process ends) */
    RFE_T_RESPONSE = 0x80,
    RFE_T_ERROR = 0xff      /* u8 code, u8 type of the offending frame, ASCII message */
};

/* error codes of an RFE_T_ERROR frame */
enum {
    RFE_E_OK = 0,
    RFE_E_CRC = 1,          /* CRC mismatch */
    RFE_E_TOO_LONG = 2,     /* more bytes than RFE_PROTO_MAX_ENCODED before a delimiter */
    RFE_E_VERSION = 3,      /* unknown protocol version */
    RFE_E_LENGTH = 4,       /* length field disagrees with the frame, or frame shorter than a header */
    RFE_E_COBS = 5,         /* invalid COBS encoding */
    RFE_E_UNKNOWN = 6,      /* unknown command type */
    RFE_E_ARG = 7,          /* bad argument (offset, size, count) */
    RFE_E_UNSUPPORTED = 8,  /* the firmware lacks the feature (e.g. built without on-device DSP) */
    RFE_E_STATE = 9,        /* not possible now (e.g. FEATURES before enough packets) */
    RFE_E_MODEL = 10        /* the model or DSP returned an error */
};

typedef struct {
    uint8_t version;
    uint8_t type;
    uint16_t seq;
    uint16_t len;
    const uint8_t *payload;
} rfe_frame_t;

/* CRC-16/CCITT-FALSE: poly 0x1021, init 0xffff, no reflection, no final xor ("123456789" -> 0x29b1) */
uint16_t rfe_crc16(const uint8_t *data, size_t n, uint16_t crc);

/* COBS: returns the encoded length (<= n + n/254 + 1); out must not overlap in. */
size_t rfe_cobs_encode(const uint8_t *in, size_t n, uint8_t *out);
/* In-place capable decode of one delimiter-free block; returns the decoded length or -1. */
int32_t rfe_cobs_decode(const uint8_t *in, size_t n, uint8_t *out);

/* A whole wire frame (0x00, COBS(frame), 0x00) into out[cap]; returns its length, 0 if it does
 * not fit or n > RFE_PROTO_MAX_PAYLOAD. */
size_t rfe_proto_encode(uint8_t *out, size_t cap, uint8_t type, uint16_t seq, const uint8_t *payload, size_t n);

/* Decodes one delimiter-free block in place (buf[n]); on success fills *f (payload points into
 * buf) and returns RFE_E_OK, else an error code.  f->type and f->seq are set whenever the
 * header could be read (else f->seq = 0xffff and f->type = 0), so an error can name them. */
int rfe_proto_decode(uint8_t *buf, size_t n, rfe_frame_t *f);

/* Byte-at-a-time receiver: collects bytes between delimiters. */
typedef struct {
    uint8_t buf[RFE_PROTO_MAX_ENCODED];
    size_t len;
    int overflow;           /* the block in progress was longer than buf: it ends as RFE_E_TOO_LONG */
} rfe_rx_t;

void rfe_rx_init(rfe_rx_t *rx);
/* Feeds one byte.  Returns 0 while a block is incomplete (or empty), 1 when a block ended
 * (rx->buf[0..rx->len) holds it; call rfe_rx_done() after using it), 2 when an oversized block
 * ended (nothing to decode; answer RFE_E_TOO_LONG). */
int rfe_rx_push(rfe_rx_t *rx, uint8_t byte);
void rfe_rx_done(rfe_rx_t *rx);

/* little-endian helpers */
static inline void rfe_put_u16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); }
static inline void rfe_put_u32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); p[2] = (uint8_t)(v >> 16); p[3] = (uint8_t)(v >> 24);
}
static inline void rfe_put_u64(uint8_t *p, uint64_t v) { rfe_put_u32(p, (uint32_t)v); rfe_put_u32(p + 4, (uint32_t)(v >> 32)); }
static inline uint16_t rfe_get_u16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }
static inline uint32_t rfe_get_u32(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

#ifdef __cplusplus
}
#endif

#endif /* RFE_PROTO_H */
