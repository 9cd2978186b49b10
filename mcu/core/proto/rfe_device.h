/*
 * rfe_device.h - the board-independent firmware application: the protocol dispatcher (rfe_proto.h)
 * in front of the generated model (model.h), the on-device DSP (dsp/rfe_dsp.h, when built with
 * RFE_HAVE_DSP) and the esp-csi capture mode.
 *
 * A board layer (mcu/boards/<board>/) implements the rfe_board_* functions below and calls
 * rfe_device_init() once, then rfe_device_feed() with every byte block it receives from the serial
 * line, until rfe_device_stopped().  The ESP-IDF layer also calls rfe_device_csi_packet() from its
 * Wi-Fi CSI callback.
 *
 * Build-time facts (the builder, host/rfedge/firmware.py, passes them with -D):
 *   RFE_BOARD_NAME "qemu-rv32"    RFE_CLOCK_HZ 160000000    RFE_COUNTER_KIND RFE_COUNTER_INSTRET
 *   RFE_FW_VERSION "0.1.0"        RFE_MODEL_HASH 0x0123456789abcdefULL (first 8 bytes of the .tflite's SHA-256)
 */
#ifndef RFE_DEVICE_H
#define RFE_DEVICE_H

#include <stddef.h>
#include <stdint.h>

#include "rfe_csi.h"

#ifdef __cplusplus
extern "C" {
#endif

/* what rfe_board_counter() counts */
enum {
    RFE_COUNTER_NS = 0,         /* nanoseconds of wall time (host board) */
    RFE_COUNTER_INSTRET = 1,    /* retired instructions (rv32 minstret; exact under QEMU -icount) */
    RFE_COUNTER_CYCLES = 2,     /* CPU cycles (ESP32 ccount / systimer) */
    RFE_COUNTER_SYSTICK = 3     /* SysTick ticks (Cortex-M under QEMU -icount: one tick = a fixed
                                   number of instructions, see the board's TOML) */
};

/* ---- implemented by the board layer ---- */
void rfe_board_write(const uint8_t *data, size_t n);   /* blocking, all bytes */
uint64_t rfe_board_counter(void);
uint32_t rfe_board_ram_bytes(void);     /* static RAM of the image (data + bss + stack), 0 if unknown */
uint32_t rfe_board_flash_bytes(void);   /* image in flash (text + rodata + data), 0 if unknown */

/* ---- the application ---- */
void rfe_device_init(void);
void rfe_device_feed(const uint8_t *data, size_t n);
int rfe_device_stopped(void);           /* 1 after a BYE frame was answered */
/* A CSI packet from the radio (or from a CSI_PUSH frame): printed as a CSI_DATA line in capture
 * mode, fed to the stream detector in stream mode, kept for FEATURES in window mode. */
void rfe_device_csi_packet(const rfe_csi_packet_t *pkt);

#ifdef __cplusplus
}
#endif

#endif /* RFE_DEVICE_H */
