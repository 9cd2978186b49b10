/* rfe_proto.c - CRC-16, COBS and frame encode/decode of the rfedge serial protocol (rfe_proto.h). */
#include "rfe_proto.h"

uint16_t rfe_crc16(const uint8_t *data, size_t n, uint16_t crc)
{
    size_t i;
    int b;
    for (i = 0; i < n; ++i) {
        crc ^= (uint16_t)(data[i] << 8);
        for (b = 0; b < 8; ++b) crc = (uint16_t)((crc & 0x8000u) ? ((unsigned)crc << 1) ^ 0x1021u : (unsigned)crc << 1);
    }
    return crc;
}

size_t rfe_cobs_encode(const uint8_t *in, size_t n, uint8_t *out)
{
    size_t code_at = 0, o = 1, i;
    uint8_t code = 1;
    for (i = 0; i < n; ++i) {
        if (in[i] == 0) {
            out[code_at] = code;
            code_at = o++;
            code = 1;
        } else {
            out[o++] = in[i];
            if (++code == 0xff) {
                out[code_at] = code;
                code_at = o++;
                code = 1;
            }
        }
    }
    out[code_at] = code;
    return o;
}

int32_t rfe_cobs_decode(const uint8_t *in, size_t n, uint8_t *out)
{
    size_t i = 0, o = 0;
    while (i < n) {
        const uint8_t code = in[i++];
        uint8_t k;
        if (code == 0) return -1;
        for (k = 1; k < code; ++k) {
            if (i >= n || in[i] == 0) return -1;
            out[o++] = in[i++];
        }
        if (code != 0xff && i < n) out[o++] = 0;
    }
    return (int32_t)o;
}

size_t rfe_proto_encode(uint8_t *out, size_t cap, uint8_t type, uint16_t seq, const uint8_t *payload, size_t n)
{
    uint8_t raw[RFE_PROTO_MAX_FRAME];
    size_t i, enc;
    uint16_t crc;
    if (n > RFE_PROTO_MAX_PAYLOAD) return 0;
    raw[0] = RFE_PROTO_VERSION;
    raw[1] = type;
    rfe_put_u16(raw + 2, seq);
    rfe_put_u16(raw + 4, (uint16_t)n);
    for (i = 0; i < n; ++i) raw[RFE_PROTO_HEADER + i] = payload[i];
    crc = rfe_crc16(raw, RFE_PROTO_HEADER + n, 0xffff);
    rfe_put_u16(raw + RFE_PROTO_HEADER + n, crc);
    n += RFE_PROTO_HEADER + RFE_PROTO_CRC;
    if (cap < n + n / 254 + 1 + 2) return 0;
    out[0] = 0;
    enc = rfe_cobs_encode(raw, n, out + 1);
    out[1 + enc] = 0;
    return enc + 2;
}

int rfe_proto_decode(uint8_t *buf, size_t n, rfe_frame_t *f)
{
    int32_t m;
    f->version = 0;
    f->type = 0;
    f->seq = 0xffff;
    f->len = 0;
    f->payload = buf + RFE_PROTO_HEADER;
    if (n > RFE_PROTO_MAX_ENCODED) return RFE_E_TOO_LONG;
    m = rfe_cobs_decode(buf, n, buf);
    if (m < 0) return RFE_E_COBS;
    if (m < RFE_PROTO_HEADER + RFE_PROTO_CRC) return RFE_E_LENGTH;
    f->version = buf[0];
    f->type = buf[1];
    f->seq = rfe_get_u16(buf + 2);
    f->len = rfe_get_u16(buf + 4);
    if (rfe_crc16(buf, (size_t)m - RFE_PROTO_CRC, 0xffff) != rfe_get_u16(buf + m - RFE_PROTO_CRC)) {
        f->seq = 0xffff;            /* not to be trusted */
        f->type = 0;
        return RFE_E_CRC;
    }
    if (f->version != RFE_PROTO_VERSION) return RFE_E_VERSION;
    if ((size_t)f->len + RFE_PROTO_HEADER + RFE_PROTO_CRC != (size_t)m) return RFE_E_LENGTH;
    if (f->len > RFE_PROTO_MAX_PAYLOAD) return RFE_E_TOO_LONG;
    return RFE_E_OK;
}

void rfe_rx_init(rfe_rx_t *rx)
{
    rx->len = 0;
    rx->overflow = 0;
}

int rfe_rx_push(rfe_rx_t *rx, uint8_t byte)
{
    if (byte == 0) {
        if (rx->overflow) return 2;
        return rx->len > 0 ? 1 : 0;
    }
    if (rx->overflow) return 0;
    if (rx->len >= sizeof rx->buf) {
        rx->overflow = 1;
        rx->len = 0;
        return 0;
    }
    rx->buf[rx->len++] = byte;
    return 0;
}

void rfe_rx_done(rfe_rx_t *rx)
{
    rx->len = 0;
    rx->overflow = 0;
}
