/* rfe_csi.c - CSI packet records and esp-csi CSI_DATA lines (rfe_csi.h); no printf needed. */
#include "rfe_csi.h"

#include "rfe_proto.h"

size_t rfe_csi_parse(const uint8_t *p, size_t n, rfe_csi_packet_t *pkt)
{
    int k;
    if (n < RFE_CSI_RECORD_HEADER) return 0;
    pkt->timestamp_us = rfe_get_u32(p);
    pkt->rssi = (int8_t)p[4];
    pkt->noise_floor = (int8_t)p[5];
    pkt->channel = p[6];
    pkt->secondary_channel = p[7];
    pkt->sig_mode = p[8];
    pkt->mcs = p[9];
    pkt->cwb = p[10];
    pkt->flags = p[11];
    for (k = 0; k < 6; ++k) pkt->mac[k] = p[12 + k];
    pkt->len = rfe_get_u16(p + 18);
    if (pkt->len > RFE_CSI_MAX_LEN || n - RFE_CSI_RECORD_HEADER < pkt->len) return 0;
    pkt->buf = (const int8_t *)(p + RFE_CSI_RECORD_HEADER);
    return RFE_CSI_RECORD_HEADER + pkt->len;
}

typedef struct {
    char *p;
    size_t n, cap;
    int full;
} out_t;

static void put_c(out_t *o, char c)
{
    if (o->n + 1 >= o->cap) {
        o->full = 1;
        return;
    }
    o->p[o->n++] = c;
}

static void put_s(out_t *o, const char *s)
{
    while (*s) put_c(o, *s++);
}

static void put_i(out_t *o, int32_t v)
{
    char tmp[12];
    int k = 0;
    uint32_t u = v < 0 ? (uint32_t)0 - (uint32_t)v : (uint32_t)v;
    if (v < 0) put_c(o, '-');
    do {
        tmp[k++] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    while (k) put_c(o, tmp[--k]);
}

static void put_hex2(out_t *o, uint8_t b)
{
    static const char hex[] = "0123456789abcdef";
    put_c(o, hex[b >> 4]);
    put_c(o, hex[b & 15]);
}

size_t rfe_csi_format(const rfe_csi_packet_t *pkt, uint32_t id, char *out, size_t cap)
{
    out_t o;
    int k;
    const uint8_t f = pkt->flags;
    /* rate, sig_mode, mcs, bandwidth, smoothing, not_sounding, aggregation, stbc, fec_coding, sgi */
    const int32_t mid[10] = {11, pkt->sig_mode, pkt->mcs, pkt->cwb, !!(f & RFE_CSI_F_SMOOTHING),
                             !!(f & RFE_CSI_F_NOT_SOUNDING), !!(f & RFE_CSI_F_AGGREGATION), !!(f & RFE_CSI_F_STBC),
                             !!(f & RFE_CSI_F_FEC_CODING), !!(f & RFE_CSI_F_SGI)};
    o.p = out;
    o.n = 0;
    o.cap = cap;
    o.full = 0;
    put_s(&o, "CSI_DATA,");
    put_i(&o, (int32_t)id);
    put_c(&o, ',');
    for (k = 0; k < 6; ++k) {
        if (k) put_c(&o, ':');
        put_hex2(&o, pkt->mac[k]);
    }
    put_c(&o, ',');
    put_i(&o, pkt->rssi);
    for (k = 0; k < 10; ++k) {
        put_c(&o, ',');
        put_i(&o, mid[k]);
    }
    put_c(&o, ',');
    put_i(&o, pkt->noise_floor);
    put_s(&o, ",0,");                       /* ampdu_cnt */
    put_i(&o, pkt->channel);
    put_c(&o, ',');
    put_i(&o, pkt->secondary_channel);
    put_c(&o, ',');
    put_i(&o, (int32_t)(pkt->timestamp_us & 0x7fffffffu));
    put_s(&o, ",0,0,0,");                   /* ant, sig_len, rx_state */
    put_i(&o, pkt->len);
    put_c(&o, ',');
    put_i(&o, !!(f & RFE_CSI_F_FIRST_WORD_INVALID));
    put_s(&o, ",\"[");
    for (k = 0; k < pkt->len; ++k) {
        if (k) put_c(&o, ',');
        put_i(&o, pkt->buf[k]);
    }
    put_s(&o, "]\"\n");
    if (o.full) return 0;
    out[o.n] = 0;
    return o.n;
}
