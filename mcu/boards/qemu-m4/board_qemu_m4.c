/*
 * board_qemu_m4.c - QEMU mps2-an386 (Cortex-M4F): CMSDK UART0 at 0x40004000, the counter is
 * SysTick (DWT CYCCNT reads 0 in QEMU) widened to 64 bits by its wrap interrupt.  Under
 * -icount shift=0 an instruction takes 1 ns of virtual time and SysTick runs at the 25 MHz CPU
 * clock, so one tick is 40 instructions (the board's TOML: counter_scale; measured: a loop of
 * 20,000,000 instructions took 500,066 ticks).  Exit: semihosting.
 */
#include <stdint.h>

#include "rfe_device.h"

#define UART_DATA (*(volatile uint32_t *)0x40004000u)
#define UART_STATE (*(volatile uint32_t *)0x40004004u)
#define UART_CTRL (*(volatile uint32_t *)0x40004008u)
#define UART_BAUDDIV (*(volatile uint32_t *)0x40004010u)
#define STATE_TXFULL 1u
#define STATE_RXFULL 2u
#define SYST_CSR (*(volatile uint32_t *)0xE000E010u)
#define SYST_RVR (*(volatile uint32_t *)0xE000E014u)
#define SYST_CVR (*(volatile uint32_t *)0xE000E018u)
#define SCB_ICSR (*(volatile uint32_t *)0xE000ED04u)
#define ICSR_PENDSTSET (1u << 26)

extern char __flash_start[], __flash_end[], __ram_start[], __ram_end[];
void rfe_board_exit(int code);
void rfe_systick_wrap(void);

static volatile uint32_t wraps;

void rfe_systick_wrap(void) { wraps++; }

void rfe_board_write(const uint8_t *data, size_t n)
{
    while (n--) {
        while (UART_STATE & STATE_TXFULL) {
        }
        UART_DATA = *data++;
    }
}

uint64_t rfe_board_counter(void)
{
    uint32_t w, v, pend;
    do {
        w = wraps;
        v = SYST_CVR;
        pend = SCB_ICSR & ICSR_PENDSTSET;
    } while (w != wraps);
    if (pend && v > 0x800000u) w++;   /* reloaded, interrupt not taken yet */
    return ((uint64_t)w << 24) + (0xFFFFFFu - v);
}

uint32_t rfe_board_ram_bytes(void) { return (uint32_t)(__ram_end - __ram_start); }
uint32_t rfe_board_flash_bytes(void) { return (uint32_t)(__flash_end - __flash_start); }

void rfe_board_exit(int code)
{
    /* semihosting SYS_EXIT (0x18) with ADP_Stopped_ApplicationExit (0x20026) or RunTimeErrorUnknown */
    register uint32_t r0 __asm__("r0") = 0x18;
    register uint32_t r1 __asm__("r1") = code == 0 ? 0x20026u : 0x20023u;
    __asm__ volatile("bkpt 0xab" : : "r"(r0), "r"(r1) : "memory");
    for (;;) {
    }
}

int main(void)
{
    uint8_t buf[64];
    UART_BAUDDIV = 16;
    UART_CTRL = 3;   /* TX and RX enabled */
    SYST_RVR = 0xFFFFFFu;
    SYST_CVR = 0;
    SYST_CSR = 7;    /* processor clock, interrupt on wrap, enabled */
    while (SYST_CVR == 0) {   /* CVR reads 0 until the first reload: a counter read then would be 2^24 - 1 */
    }
    rfe_device_init();
    while (!rfe_device_stopped()) {
        size_t n = 0;
        while (!(UART_STATE & STATE_RXFULL)) {
        }
        while (n < sizeof buf && (UART_STATE & STATE_RXFULL)) buf[n++] = (uint8_t)UART_DATA;
        rfe_device_feed(buf, n);
    }
    return 0;
}
