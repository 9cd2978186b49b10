/*
 * startup.c - qemu-m4 (mps2-an386, Cortex-M4F): vector table, reset (data copy, bss zero, FPU on),
 * SysTick extended to 64 bits by its wrap interrupt.
 */
#include <stdint.h>

extern uint32_t __data_load[], __data_start[], __data_end[], __bss_start[], __bss_end[], __stack_top[];
int main(void);
void rfe_board_exit(int code);
void rfe_systick_wrap(void);

void Reset_Handler(void)
{
    uint32_t *s = __data_load, *d = __data_start;
    while (d < __data_end) *d++ = *s++;
    for (d = __bss_start; d < __bss_end; ++d) *d = 0;
    *(volatile uint32_t *)0xE000ED88u |= 0xFu << 20;   /* CPACR: CP10, CP11 full access (FPU) */
    __asm__ volatile("dsb\n isb");
    rfe_board_exit(main());
}

static void Default_Handler(void)
{
    rfe_board_exit(99);
}

void SysTick_Handler(void) { rfe_systick_wrap(); }

__attribute__((section(".vectors"), used)) static void (*const vectors[16])(void) = {
    (void (*)(void))__stack_top, Reset_Handler, Default_Handler, Default_Handler,
    Default_Handler, Default_Handler, Default_Handler, 0, 0, 0, 0,
    Default_Handler, Default_Handler, 0, Default_Handler, SysTick_Handler,
};
