/* Helpers shared by the libFuzzer targets. */
#ifndef TG_FUZZUTIL_H
#define TG_FUZZUTIL_H

#include <stddef.h>
#include <stdint.h>

/* Writes the input to this process's scratch file (under /dev/shm when it
 * exists, else /tmp), replacing what the previous run left, and returns its
 * path with 'suffix' appended to the name. The file loaders take paths, so
 * this is how a fuzz input reaches them. Never fails quietly: it aborts, since
 * a fuzzer that cannot write its input would test nothing. */
const char *fz_write(const uint8_t *data, size_t size, const char *suffix);

/* Stops the fuzzer with a message: the target found a broken invariant. */
#define FZ_CHECK(cond)                                                                             \
    do {                                                                                           \
        if (!(cond)) fz_fail(__FILE__, __LINE__, #cond);                                           \
    } while (0)
void fz_fail(const char *file, int line, const char *what) __attribute__((noreturn));

#endif
