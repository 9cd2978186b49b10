/*
 * board_qemu_rv32.c - QEMU virt, rv32imc (the ESP32-C3's ISA): 16550 UART at 0x10000000, the
 * counter is minstret (retired instructions; exact and repeatable under -icount shift=0), and
 * writing 0x5555 to the test device at 0x100000 ends QEMU.
 */
#include <stdint.h>

#include "rfe_device.h"

void rfe_board_exit(int code);

#define UART ((volatile uint8_t *)0x10000000u)
#define UART_RBR 0
#define UART_THR 0
#define UART_LSR 5
#define UART_FCR 2
#define LSR_DR 0x01
#define LSR_THRE 0x20
#define TEST_DEVICE ((volatile uint32_t *)0x100000u)

extern char __flash_start[], __flash_end[], __ram_start[], __ram_end[];

void rfe_board_write(const uint8_t *data, size_t n)
{
    while (n--) {
        while (!(UART[UART_LSR] & LSR_THRE)) {
        }
        UART[UART_THR] = *data++;
    }
}

uint64_t rfe_board_counter(void)
{
    uint32_t hi, lo, hi2;
    do {
        __asm__ volatile("csrr %0, minstreth" : "=r"(hi));
        __asm__ volatile("csrr %0, minstret" : "=r"(lo));
        __asm__ volatile("csrr %0, minstreth" : "=r"(hi2));
    } while (hi != hi2);
    return ((uint64_t)hi << 32) | lo;
}

uint32_t rfe_board_ram_bytes(void) { return (uint32_t)(__ram_end - __ram_start); }
uint32_t rfe_board_flash_bytes(void) { return (uint32_t)(__flash_end - __flash_start); }

void rfe_board_exit(int code)
{
    *TEST_DEVICE = code == 0 ? 0x5555u : (((uint32_t)code << 16) | 0x3333u);
    for (;;) {
    }
}

int main(void)
{
    uint8_t buf[64];
    UART[UART_FCR] = 0x07;   /* FIFOs on and cleared */
    rfe_device_init();
    while (!rfe_device_stopped()) {
        size_t n = 0;
        while (!(UART[UART_LSR] & LSR_DR)) {
        }
        while (n < sizeof buf && (UART[UART_LSR] & LSR_DR)) buf[n++] = UART[UART_RBR];
        rfe_device_feed(buf, n);
    }
    return 0;
}
