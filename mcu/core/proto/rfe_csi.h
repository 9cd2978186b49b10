/*
 * rfe_csi.h - one ESP32 CSI packet as the protocol carries it (RFE_T_CSI_PUSH records) and as
 * esp-csi prints it (CSI_DATA console lines, the capture mode).
 *
 * Wire record (little endian), 20 bytes + len:
 *   u32 timestamp_us, i8 rssi, i8 noise_floor, u8 channel, u8 secondary_channel, u8 sig_mode,
 *   u8 mcs, u8 cwb, u8 flags (RFE_CSI_F_*), u8 mac[6], u16 len, int8 buf[len]
 * buf is wifi_csi_info_t.buf exactly: [imag, real] int8 pairs, LLTF / HT-LTF / STBC-HT-LTF.
 */
#ifndef RFE_CSI_H
#define RFE_CSI_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define RFE_CSI_RECORD_HEADER 20
#define RFE_CSI_MAX_LEN 612

enum {
    RFE_CSI_F_FIRST_WORD_INVALID = 1 << 0,
    RFE_CSI_F_STBC = 1 << 1,
    RFE_CSI_F_SGI = 1 << 2,
    RFE_CSI_F_SMOOTHING = 1 << 3,
    RFE_CSI_F_NOT_SOUNDING = 1 << 4,
    RFE_CSI_F_AGGREGATION = 1 << 5,
    RFE_CSI_F_FEC_CODING = 1 << 6
};

typedef struct {
    uint32_t timestamp_us;
    int8_t rssi, noise_floor;
    uint8_t channel, secondary_channel, sig_mode, mcs, cwb, flags;
    uint8_t mac[6];
    uint16_t len;
    const int8_t *buf;      /* points into the frame (or the Wi-Fi driver's buffer) */
} rfe_csi_packet_t;

/* Parses one record from p[n]; returns the bytes it took, or 0 if it is truncated or too long. */
size_t rfe_csi_parse(const uint8_t *p, size_t n, rfe_csi_packet_t *pkt);

/* The esp-csi console line of a packet, "CSI_DATA,id,mac,...,len,first_word,\"[v,...]\"\n",
 * into out[cap]; returns its length, 0 if it does not fit. */
size_t rfe_csi_format(const rfe_csi_packet_t *pkt, uint32_t id, char *out, size_t cap);

#ifdef __cplusplus
}
#endif

#endif /* RFE_CSI_H */
