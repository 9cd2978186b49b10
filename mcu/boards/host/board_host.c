/*
 * board_host.c - the host board: the firmware core compiled with the system cc, speaking the
 * protocol on stdin/stdout (host/rfedge/board.py runs it on a pty in raw mode).  The counter is
 * CLOCK_MONOTONIC in nanoseconds.  Also the build the protocol parser is fuzzed and sanitized in.
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <stdint.h>
#include <time.h>
#include <unistd.h>

#include "rfe_device.h"

void rfe_board_write(const uint8_t *data, size_t n)
{
    while (n > 0) {
        const ssize_t w = write(1, data, n);
        if (w < 0) {
            if (errno == EINTR) continue;
            _exit(3);   /* the host went away */
        }
        data += w;
        n -= (size_t)w;
    }
}

uint64_t rfe_board_counter(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

uint32_t rfe_board_ram_bytes(void) { return 0; }     /* unknown here: the builder measures the executable */
uint32_t rfe_board_flash_bytes(void) { return 0; }

int main(void)
{
    uint8_t buf[512];
    rfe_device_init();
    while (!rfe_device_stopped()) {
        const ssize_t n = read(0, buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        rfe_device_feed(buf, (size_t)n);
    }
    return 0;
}
