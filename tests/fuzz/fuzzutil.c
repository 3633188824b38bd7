#include "fuzzutil.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Impossible sizes must come back from malloc as NULL, as they do from the C
 * library, not stop the fuzzer. */
const char *__asan_default_options(void);
const char *__asan_default_options(void) { return "allocator_may_return_null=1"; }

void fz_fail(const char *file, int line, const char *what)
{
    fprintf(stderr, "%s:%d: invariant broken: %s\n", file, line, what);
    abort();
}

/* Every scratch path handed out, removed when the fuzzer exits. */
static char paths[4][256];
static int n_paths;

static void remove_scratch(void)
{
    for (int i = 0; i < n_paths; i++) unlink(paths[i]);
}

const char *fz_write(const uint8_t *data, size_t size, const char *suffix)
{
    char path[256];
    const char *dir = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    snprintf(path, sizeof path, "%s/tapegrad-fuzz-%ld%s", dir, (long)getpid(), suffix);
    int k = 0;
    while (k < n_paths && strcmp(paths[k], path) != 0) k++;
    if (k == n_paths) {
        if (n_paths == (int)(sizeof paths / sizeof *paths)) fz_fail(__FILE__, __LINE__, "too many suffixes");
        if (n_paths == 0) atexit(remove_scratch);
        memcpy(paths[n_paths++], path, sizeof path);
    }
    int fd = open(paths[k], O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0) fz_fail(__FILE__, __LINE__, "cannot create the scratch file");
    for (size_t done = 0; done < size;) {
        ssize_t w = write(fd, data + done, size - done);
        if (w <= 0) fz_fail(__FILE__, __LINE__, "cannot write the scratch file");
        done += (size_t)w;
    }
    close(fd);
    return paths[k];
}
