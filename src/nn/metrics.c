/*
 * Classification metrics on tensors: top-k hits, accuracy, the confusion
 * matrix and per-class precision, recall and F1 from it. Scores are [N, C];
 * labels are I64 class indices [N] or a float one-hot [N, C]. A row's
 * prediction is its first maximum, as torch.argmax, with NaN the largest.
 */
#include "internal.h"

#include <math.h>

/* a ranks above b: larger, or NaN against a number (torch.argmax). */
static bool above(double a, double b) { return (isnan(a) && !isnan(b)) || a > b; }

/* The first maximum of row r of a [N, C] float tensor. */
static int64_t row_argmax(const tg_tensor *t, int64_t r)
{
    int64_t c = t->shape[1], best = 0;
    for (int64_t j = 1; j < c; j++)
        if (above(tg__get(t, r * c + j), tg__get(t, r * c + best))) best = j;
    return best;
}

/* Checks scores [N, C], labels and rows (-1 becomes N); false with the reason
 * in tg_last_error. */
static bool check_inputs(const char *fn, const tg_tensor *scores, const tg_tensor *labels,
                         int64_t *rows)
{
    char s0[TG__SHAPE_STR_MAX], s1[TG__SHAPE_STR_MAX];
    if (!scores || !labels) {
        tg__fail_call(TG_ERR_ARG, "%s: NULL %s", fn, scores ? "labels" : "scores");
        return false;
    }
    tg__shape_str(scores, s0, sizeof s0);
    tg__shape_str(labels, s1, sizeof s1);
    if (scores->rank != 2 || !tg__dt(scores->dtype)->is_float || scores->shape[1] < 1) {
        tg__fail_call(TG_ERR_ARG, "%s: scores %s %s must be f32 or f64 [N, C] with C >= 1", fn,
                      tg__dt(scores->dtype)->name, s0);
        return false;
    }
    bool index = labels->dtype == TG_I64 && labels->rank == 1;
    bool one_hot = tg__dt(labels->dtype)->is_float && labels->rank == 2 &&
                   labels->shape[1] == scores->shape[1];
    if ((!index && !one_hot) || labels->shape[0] != scores->shape[0]) {
        tg__fail_call(TG_ERR_ARG,
                      "%s: labels %s %s do not fit scores %s: i64 [N] indices or a one-hot "
                      "[N, C] of the scores' N and C",
                      fn, tg__dt(labels->dtype)->name, s1, s0);
        return false;
    }
    int64_t n = scores->shape[0];
    if (*rows == -1) *rows = n;
    if (*rows < 0 || *rows > n) {
        tg__fail_call(TG_ERR_ARG, "%s: rows %lld outside 0..%lld (or -1 for all)", fn,
                      (long long)*rows, (long long)n);
        return false;
    }
    return true;
}

/* The class of row r; -1, with the reason in tg_last_error, for an index out of range. */
static int64_t label_of(const char *fn, const tg_tensor *labels, int64_t r, int64_t c)
{
    if (labels->dtype != TG_I64) return row_argmax(labels, r);
    int64_t y = ((const int64_t *)labels->data)[r];
    if (y < 0 || y >= c) {
        tg__fail_call(TG_ERR_ARG, "%s: label %lld of row %lld outside [0, %lld)", fn, (long long)y,
                      (long long)r, (long long)c);
        return -1;
    }
    return y;
}

int64_t tg_topk_correct(const tg_tensor *scores, const tg_tensor *labels, int k, int64_t rows)
{
    const char *fn = "topk_correct";
    if (!check_inputs(fn, scores, labels, &rows)) return -1;
    int64_t c = scores->shape[1], hits = 0;
    if (k < 1 || k > c) {
        tg__fail_call(TG_ERR_ARG, "%s: k %d outside 1..%lld", fn, k, (long long)c);
        return -1;
    }
    for (int64_t r = 0; r < rows; r++) {
        int64_t y = label_of(fn, labels, r, c);
        if (y < 0) return -1;
        /* The label's rank: classes above it, and tied ones before it, as argmax orders ties. */
        double v = tg__get(scores, r * c + y);
        int64_t rank = 0;
        for (int64_t j = 0; j < c; j++) {
            double w = tg__get(scores, r * c + j);
            rank += above(w, v) || (j < y && !above(v, w));
        }
        hits += rank < k;
    }
    return hits;
}

double tg_accuracy(const tg_tensor *scores, const tg_tensor *labels)
{
    int64_t hits = tg_topk_correct(scores, labels, 1, -1);
    return hits < 0 ? -1 : (double)hits / (double)scores->shape[0];
}

tg_status tg_confusion_add(tg_tensor *cm, const tg_tensor *scores, const tg_tensor *labels,
                           int64_t rows)
{
    const char *fn = "confusion_add";
    char s0[TG__SHAPE_STR_MAX];
    if (!check_inputs(fn, scores, labels, &rows)) return tg_last_error()->status;
    int64_t c = scores->shape[1];
    if (!cm || cm->dtype != TG_I64 || cm->rank != 2 || cm->shape[0] != c || cm->shape[1] != c)
        return tg__fail_call(TG_ERR_ARG, "%s: the matrix %s must be i64 [%lld, %lld]", fn,
                             cm ? tg__shape_str(cm, s0, sizeof s0) : "NULL", (long long)c,
                             (long long)c);
    /* Every label first, so a bad one leaves the matrix untouched. */
    for (int64_t r = 0; r < rows; r++)
        if (label_of(fn, labels, r, c) < 0) return TG_ERR_ARG;
    int64_t *m = cm->data;
    for (int64_t r = 0; r < rows; r++)
        m[label_of(fn, labels, r, c) * c + row_argmax(scores, r)]++;
    return TG_OK;
}

tg_status tg_class_report(const tg_tensor *cm, double *precision, double *recall, double *f1,
                          int64_t *support)
{
    char s0[TG__SHAPE_STR_MAX];
    if (!cm || cm->dtype != TG_I64 || cm->rank != 2 || cm->shape[0] != cm->shape[1])
        return tg__fail_call(TG_ERR_ARG, "class_report: the matrix %s must be i64 [C, C]",
                             cm ? tg__shape_str(cm, s0, sizeof s0) : "NULL");
    int64_t c = cm->shape[0];
    const int64_t *m = cm->data;
    for (int64_t i = 0; i < c; i++) {
        int64_t row = 0, col = 0;
        for (int64_t j = 0; j < c; j++) {
            row += m[i * c + j];
            col += m[j * c + i];
        }
        double tp = (double)m[i * c + i];
        double p = col ? tp / (double)col : 0, r = row ? tp / (double)row : 0;
        if (precision) precision[i] = p;
        if (recall) recall[i] = r;
        if (f1) f1[i] = p + r > 0 ? 2 * p * r / (p + r) : 0;
        if (support) support[i] = row;
    }
    return TG_OK;
}
