/* fuzz.h - what every fuzz target shares.
 *
 * A target defines LLVMFuzzerTestOneInput (and may define
 * LLVMFuzzerInitialize). Built with libFuzzer (-DRSGHOST_FUZZ=ON, clang) it
 * is a fuzzer that scripts/fuzz runs; built without, replay.c supplies a
 * main() that runs the seed corpus once, which CTest does in every build.
 * A broken invariant is reported with FUZZ_CHECK and aborts, which both
 * libFuzzer (a crash, its input saved) and CTest (a failed test) notice. */
#ifndef RSG_FUZZ_H
#define RSG_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

#define FUZZ_CHECK(cond)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: invariant broken: %s\n", __FILE__, __LINE__, #cond);           \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

#endif
