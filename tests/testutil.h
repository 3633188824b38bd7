/* Helpers shared by the test suites. */
#ifndef TG_TESTUTIL_H
#define TG_TESTUTIL_H

#include <tapegrad/tapegrad.h>

#include <check.h>

/* A leaf of dtype dt from a shape string like "2x3" ("" or "scalar" for rank 0)
 * filled with deterministic pseudo-random values in [lo, hi). */
tg_tensor *tu_random(tg_dtype dt, const char *shape, double lo, double hi, uint64_t seed);
/* A leaf from a shape string and n doubles (converted to dt). */
tg_tensor *tu_from(tg_dtype dt, const char *shape, const double *v);
/* Parses "2x3x4" into shape; returns the rank, -1 on a malformed string. */
int tu_parse_shape(const char *s, int64_t *shape);
/* Element k as a double. */
double tu_at(const tg_tensor *t, int64_t k);
/* True when every |a-b| <= tol * max(1, |b|); on failure writes the first bad
 * index into *bad (if not NULL). */
int tu_close(const tg_tensor *a, const tg_tensor *b, double tol, int64_t *bad);
/* Runs the suite with CK_ENV and returns the process exit status. */
int tu_run(Suite *s);

#endif
