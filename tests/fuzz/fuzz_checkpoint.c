/*
 * Fuzz target: the input is a safetensors file, loaded into two registries
 * of a few tensors (F32 and F64, rank 0 to 2, one empty). A load that fails
 * must say why and change no parameter; one that succeeds may change them.
 */
#include "fuzzutil.h"

#include <tapegrad/tapegrad.h>

#include <string.h>

typedef struct spec {
    const char *name;
    tg_dtype dt;
    int rank;
    int64_t shape[2];
} spec;

static const spec specs_a[] = {
    {"w", TG_F32, 2, {2, 3}}, {"b", TG_F64, 1, {3}}, {"s", TG_F32, 0, {0}},
};
static const spec specs_b[] = {
    {"emb", TG_F64, 2, {0, 4}}, {"layer.0.weight", TG_F32, 1, {1}},
};

static tg_params *sets[2];

static tg_params *make(const spec *sp, size_t n)
{
    tg_params *ps = tg_params_new();
    FZ_CHECK(ps);
    for (size_t i = 0; i < n; i++)
        FZ_CHECK(tg_params_add(ps, sp[i].name, sp[i].dt, sp[i].rank, sp[i].shape));
    return ps;
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    sets[0] = make(specs_a, sizeof specs_a / sizeof *specs_a);
    sets[1] = make(specs_b, sizeof specs_b / sizeof *specs_b);
    return 0;
}

static size_t bytes_of(tg_tensor *t)
{
    return (size_t)tg_tensor_numel(t) * (tg_tensor_dtype(t) == TG_F64 ? 8 : 4);
}

/* Fills every parameter with a known pattern and remembers it. */
static void fill(int n_sets)
{
    unsigned char v = 0x5a;
    for (int s = 0; s < n_sets; s++)
        for (size_t i = 0; i < tg_params_count(sets[s]); i++) {
            tg_tensor *t = tg_params_at(sets[s], i, NULL);
            memset(tg_tensor_data(t), v++, bytes_of(t));
        }
}

static bool unchanged(int n_sets)
{
    unsigned char v = 0x5a;
    for (int s = 0; s < n_sets; s++)
        for (size_t i = 0; i < tg_params_count(sets[s]); i++) {
            tg_tensor *t = tg_params_at(sets[s], i, NULL);
            const unsigned char *p = tg_tensor_data(t);
            for (size_t k = 0; k < bytes_of(t); k++)
                if (p[k] != v) return false;
            v++;
        }
    return true;
}

static void load(const char *path, int n_sets)
{
    fill(n_sets);
    tg_error err = {TG_OK, ""};
    tg_status s = tg_checkpoint_load(path, sets, n_sets, &err);
    if (s == TG_OK) return;
    FZ_CHECK(s == TG_ERR_FORMAT || s == TG_ERR_IO || s == TG_ERR_NOMEM);
    FZ_CHECK(err.status == s && err.msg[0] != '\0');
    FZ_CHECK(unchanged(n_sets));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *path = fz_write(data, size, ".safetensors");
    load(path, 1);
    load(path, 2);
    load(path, 0); /* no parameter expected: only the file's own consistency is checked */
    return 0;
}
