/*
 * host_harness.c - drives a generated model on the host: reads N input vectors from stdin
 * (raw int8, <NAME>_INPUT_SIZE bytes each), writes the N outputs to stdout.  With --selftest it
 * runs the boot self-test instead and exits with its result.  Used by the tests and by
 * `rfedge bench codegen` (also under valgrind's callgrind, which counts rfe_*_invoke alone).
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include RFE_HARNESS_HEADER

int main(int argc, char **argv)
{
    static int8_t in[RFE_HARNESS_IN], out[RFE_HARNESS_OUT];
    if (argc > 1 && strcmp(argv[1], "--selftest") == 0) {
        int r = RFE_HARNESS_SELFTEST();
        printf("selftest %s (%d)\n", r == 0 ? "pass" : "FAIL", r);
        return r == 0 ? 0 : 1;
    }
    while (fread(in, 1, sizeof in, stdin) == sizeof in) {
        RFE_HARNESS_INVOKE(in, out);
        if (fwrite(out, 1, sizeof out, stdout) != sizeof out) return 2;
    }
    return 0;
}
