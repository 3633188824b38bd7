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

/* ====== Values and assertions ====== */

/* The dtype a loop test runs in: F64 for _i == 0, F32 for _i == 1. */
tg_dtype tu_loop_dtype(int i);
/* "f64" or "f32", for failure messages. */
const char *tu_dtype_name(tg_dtype dt);
/* Stores v as element k, rounded to t's dtype. */
void tu_put(tg_tensor *t, int64_t k, double v);
/* tu_from that fails the test when the tensor cannot be made. */
tg_tensor *tu_lit(tg_dtype dt, const char *shape, const double *v);
/* NULL for a NULL shape (to pass a NULL tensor), else tu_random in [-1, 1)
 * that fails the test when the tensor cannot be made. */
tg_tensor *tu_operand(const char *shape, tg_dtype dt, uint64_t seed);
/* Asserts t's shape and that every element equals want[k] rounded to t's dtype;
 * 'what' names t in the failure message. */
void tu_expect_exact(const tg_tensor *t, const char *shape, const double *want, const char *what);

/* ====== Ops under test ====== */

/* An op recorded on tp from inputs in; row is the caller's table row (op parameters). */
typedef tg_tensor *(*tu_op_fn)(tg_tape *tp, tg_tensor *const *in, const void *row);
/* tg_gradcheck in F64 of op through the probe ||op(x) - W||^2, W[k] = cos(0.7k + 0.3)
 * in op's output shape, so dG differs from element to element. The inputs have the
 * shapes "a;b;..." (up to 4), are uniform in [-1, 1) from seeds 100 s + i + 1, and
 * require grad unless bit i of frozen is set. Asserts that the check runs and passes
 * (name and shapes label the failure) and leaves the report in *r. */
void tu_probe_gradcheck(const char *name, tu_op_fn op, const void *row, const char *shapes, int s,
                        unsigned frozen, tg_gradcheck_report *r);
/* ====== The rows of oplist.h (include it to read them) ====== */

typedef struct tu_op tu_op;
/* Makes the inputs of one shape list of op ("3x4;c:4;i:3@5", see oplist.h) in
 * dtype dt (index inputs are I64 whatever dt is): input i from seed + i,
 * floats drawn by op's values unless the token gives a range, requiring grad
 * unless marked c:. Returns the number made, -1 (nothing left allocated) for
 * a malformed list or a tensor that cannot be made. */
int tu_op_inputs(const tu_op *op, const char *shapes, tg_dtype dt, uint64_t seed, tg_tensor **in);
/* The scalar Σ_k w_k y_k with w_k = (2 (7k mod 11) - 9) / 8 (never 0), recorded
 * as one custom op: differentiating it seeds dy with weights that differ from
 * element to element, so a transposed or permuted VJP shows. */
tg_tensor *tu_probe(tg_tape *tp, tg_tensor *y);
/* tg_gradcheck with default options in F64 of tu_probe(op(x)) on op's shape
 * list s, inputs from tu_op_inputs with seed 1000 + 10 s. TG_ERR_ARG when op
 * has no list s or it cannot be made; else what tg_gradcheck returned. */
tg_status tu_op_gradcheck(const tu_op *op, int s, tg_gradcheck_report *r);
/* tg_gradgradcheck in F64 of Σ_k W_k op(x)_k on op's shape list s, with W an
 * extra input of op's output shape that requires grad (uniform in [-1, 1)):
 * the check then covers the second derivatives of op and, through W, the
 * recorded VJP itself, even for an op that is linear. Returns as
 * tu_op_gradcheck. */
tg_status tu_op_gradgradcheck(const tu_op *op, int s, tg_gradcheck_report *r);

/* Asserts that tp has failed with status want and exactly msg and recorded nothing;
 * case_no labels the failure message. */
void tu_expect_failed(tg_tape *tp, tg_status want, const char *msg, int case_no);
/* Asserts that the failure is sticky: the message is still msg and backward returns want. */
void tu_expect_still_failed(tg_tape *tp, tg_status want, const char *msg);

/* ====== A scratch folder per test ====== */

/* Makes a fresh folder /tmp/<prefix>_XXXXXX (call it from a checked fixture). */
void tu_scratch_make(const char *prefix);
/* Removes the scratch folder and the files in it. */
void tu_scratch_remove(void);
/* The scratch folder's path. */
const char *tu_scratch(void);
/* "<scratch>/<name>" in one of two rotating buffers. */
const char *tu_in_scratch(const char *name);
/* Writes n bytes to path, failing the test on any error. */
void tu_write_file(const char *path, const void *data, size_t n);

#endif
