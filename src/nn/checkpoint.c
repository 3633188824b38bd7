/*
 * Checkpoints in the safetensors format, so other tools can read them:
 *
 *     8 bytes     N, little-endian u64
 *     N bytes     UTF-8 JSON, padded with spaces to a multiple of 8:
 *                 {"name": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]}, ...,
 *                  "__metadata__": {"format": "pt"}}
 *     the rest    raw little-endian data; offsets count from its first byte
 *
 * The JSON is built and parsed by jansson only. A save writes a temporary file
 * next to the target and renames it over the target after fsync, so a crash or
 * an error never leaves a half-written checkpoint where a good one was. A load
 * checks the whole file against every parameter before it copies anything, so
 * a bad file changes no parameter.
 */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <libgen.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int tg__io_fail_after = -1;

bool tg__io_fault(void)
{
    if (tg__io_fail_after < 0 || tg__io_fail_after-- > 0) return false;
    errno = EIO;
    return true;
}

/* ====== Parameters of several registries, one list ====== */

typedef struct ckpt_entry {
    const char *name; /* owned by the registry */
    tg_tensor *t;
    const unsigned char *src; /* load: the tensor's bytes in the file */
} ckpt_entry;

static const char *st_dtype(tg_dtype dt) { return tg__dt(dt)->tag; }

/* True when s is well-formed UTF-8 as jansson takes it: no overlong forms, no
 * surrogates, nothing past U+10FFFF. Checked here, not left to jansson, whose
 * failed insertion cannot tell a bad name from a failed allocation. */
static bool utf8_valid(const char *s)
{
    for (const unsigned char *p = (const unsigned char *)s; *p;) {
        unsigned c = *p++;
        int more = c < 0x80                 ? 0
                   : c >= 0xC2 && c <= 0xDF ? 1
                   : c >= 0xE0 && c <= 0xEF ? 2
                   : c >= 0xF0 && c <= 0xF4 ? 3
                                            : -1;
        if (more < 0) return false;
        uint32_t v = more == 0 ? c : more == 1 ? c & 0x1F : more == 2 ? c & 0x0F : c & 0x07;
        for (int k = 0; k < more; k++, p++) {
            if ((*p & 0xC0) != 0x80) return false; /* also stops at the NUL */
            v = v << 6 | (*p & 0x3F);
        }
        if ((more == 2 && v < 0x800) || (more == 3 && v < 0x10000) || v > 0x10FFFF ||
            (v >= 0xD800 && v <= 0xDFFF))
            return false;
    }
    return true;
}

/* Lists every parameter of the sets in order. TG_ERR_ARG for a NULL set, an
 * empty, reserved, non-UTF-8 or repeated name (a jansson object is the set of
 * names seen). */
static tg_status collect(const char *path, tg_params *const *sets, int n_sets, ckpt_entry **out,
                         size_t *n_out, tg_error *err)
{
    if (!path || n_sets < 0 || (n_sets > 0 && !sets))
        return tg__set_error(err, TG_ERR_ARG, "checkpoint: NULL path or sets");
    size_t n = 0;
    for (int s = 0; s < n_sets; s++) {
        if (!sets[s])
            return tg__set_error(err, TG_ERR_ARG, "%s: parameter set %d is NULL", path, s);
        n += tg_params_count(sets[s]);
    }
    if (n > SIZE_MAX / sizeof(ckpt_entry))
        return tg__set_error(err, TG_ERR_NOMEM, "%s: too many parameters", path);
    ckpt_entry *ents = tg__malloc(n ? n * sizeof *ents : 1);
    json_t *seen = json_object();
    tg_status st = TG_OK;
    if (!ents || !seen) {
        st = tg__set_error(err, TG_ERR_NOMEM, "%s: out of memory listing parameters", path);
        goto fail;
    }
    size_t k = 0;
    for (int s = 0; s < n_sets; s++)
        for (size_t i = 0; i < tg_params_count(sets[s]); i++) {
            const char *name = NULL;
            tg_tensor *t = tg_params_at(sets[s], i, &name);
            if (!t || !name || !*name || strcmp(name, "__metadata__") == 0) {
                st = tg__set_error(err, TG_ERR_ARG, "%s: set %d parameter %zu: bad name '%s'", path,
                                   s, i, name ? name : "(null)");
                goto fail;
            }
            if (!utf8_valid(name)) {
                st = tg__set_error(err, TG_ERR_ARG, "%s: parameter name '%s' is not UTF-8", path,
                                   name);
                goto fail;
            }
            if (json_object_get(seen, name)) {
                st = tg__set_error(err, TG_ERR_ARG, "%s: parameter name '%s' appears twice", path,
                                   name);
                goto fail;
            }
            if (json_object_set_new_nocheck(seen, name, json_null())) {
                st = tg__set_error(err, TG_ERR_NOMEM, "%s: out of memory listing parameters", path);
                goto fail;
            }
            ents[k++] = (ckpt_entry){name, t, NULL};
        }
    json_decref(seen);
    *out = ents;
    *n_out = n;
    return TG_OK;
fail:
    json_decref(seen);
    free(ents);
    return st;
}

static bool host_is_le(void)
{
    const uint16_t one = 1;
    unsigned char first;
    memcpy(&first, &one, 1);
    return first == 1;
}

/* Copies n elements of 'size' bytes; a big-endian host swaps each, since the
 * file is little-endian. The same copy serves both directions. */
static void copy_le(void *dst, const void *src, size_t n, size_t size)
{
    if (host_is_le()) {
        memcpy(dst, src, n * size);
        return;
    }
    unsigned char *d = dst;
    const unsigned char *s = src;
    for (size_t i = 0; i < n; i++)
        for (size_t b = 0; b < size; b++)
            d[i * size + b] = s[i * size + size - 1 - b];
}

static size_t tensor_bytes(const tg_tensor *t)
{
    return (size_t)t->numel * tg__dtype_size(t->dtype);
}

/* ====== Save ====== */

/* The 8-byte length, the JSON header and its padding, in one malloc'd buffer. */
static tg_status build_header(const char *path, const ckpt_entry *ents, size_t n,
                              unsigned char **out, size_t *out_len, tg_error *err)
{
    json_t *root = json_object();
    char *text = NULL;
    tg_status st = TG_OK;
    if (!root) goto nomem;
    uint64_t offset = 0;
    for (size_t i = 0; i < n; i++) {
        const tg_tensor *t = ents[i].t;
        uint64_t size = tensor_bytes(t);
        if (size > (uint64_t)INT64_MAX - offset) {
            st = tg__set_error(err, TG_ERR_ARG, "%s: parameters exceed 2^63 bytes", path);
            goto done;
        }
        json_t *shape = json_array();
        if (!shape) goto nomem;
        for (int d = 0; d < t->rank; d++)
            if (json_array_append_new(shape, json_integer(t->shape[d]))) {
                json_decref(shape);
                goto nomem;
            }
        json_t *info = json_pack("{s:s, s:o, s:[I,I]}", "dtype", st_dtype(t->dtype), "shape", shape,
                                 "data_offsets", (json_int_t)offset, (json_int_t)(offset + size));
        if (!info || json_object_set_new(root, ents[i].name, info)) goto nomem;
        offset += size;
    }
    if (json_object_set_new(root, "__metadata__", json_pack("{s:s}", "format", "pt"))) goto nomem;
    text = json_dumps(root, JSON_COMPACT);
    if (!text) goto nomem;
    size_t len = strlen(text), padded = (len + 7) / 8 * 8;
    unsigned char *buf = tg__malloc(8 + padded);
    if (!buf) goto nomem;
    for (int b = 0; b < 8; b++)
        buf[b] = (unsigned char)((uint64_t)padded >> (8 * b));
    memcpy(buf + 8, text, len);
    memset(buf + 8 + len, ' ', padded - len);
    *out = buf;
    *out_len = 8 + padded;
    goto done;
nomem:
    st = tg__set_error(err, TG_ERR_NOMEM, "%s: out of memory building the header", path);
done:
    free(text);
    json_decref(root);
    return st;
}

/* Writes one tensor's data, little-endian, through a small staging buffer. */
static bool write_tensor(FILE *fp, const tg_tensor *t)
{
    if (tg__io_fault()) return false;
    unsigned char buf[1 << 16];
    size_t esize = tg__dtype_size(t->dtype), per_chunk = sizeof buf / esize;
    const unsigned char *src = t->data;
    for (size_t i = 0, n = (size_t)t->numel; i < n; i += per_chunk) {
        size_t k = n - i < per_chunk ? n - i : per_chunk;
        copy_le(buf, src + i * esize, k, esize);
        if (fwrite(buf, esize, k, fp) != k) return false;
    }
    return true;
}

/* Makes the rename durable. The new file is in place by now, so a folder that
 * cannot be opened, or a file system without fsync on folders (EINVAL), only
 * weakens durability and is not reported. */
static tg_status sync_folder(const char *path, tg_error *err)
{
    /* A copy on the stack, so running out of memory cannot skip the sync
     * unnoticed. The kernel refuses longer paths, so the save got here only
     * with a path that fits. */
    char copy[PATH_MAX];
    size_t len = strlen(path);
    if (len >= sizeof copy) return TG_OK;
    memcpy(copy, path, len + 1);
    int fd = open(dirname(copy), O_RDONLY | O_DIRECTORY);
    if (fd < 0) return TG_OK;
    int rc = fsync(fd), e = errno;
    close(fd);
    if (rc != 0 && e != EINVAL)
        return tg__set_error(err, TG_ERR_IO, "%s: saved, but syncing its folder failed: %s", path,
                             strerror(e));
    return TG_OK;
}

/* Each step that can fail a save checks tg__io_fault() first, so a test can
 * interrupt the save at every step in turn; so must 'write'. */
tg_status tg__write_atomic(const char *path, bool (*write)(FILE *fp, void *arg), void *arg,
                           tg_error *err)
{
    size_t plen = strlen(path);
    char *tmp = tg__malloc(plen + sizeof ".tmp.XXXXXX");
    if (!tmp) return tg__set_error(err, TG_ERR_NOMEM, "%s: out of memory", path);
    memcpy(tmp, path, plen);
    memcpy(tmp + plen, ".tmp.XXXXXX", sizeof ".tmp.XXXXXX");

    int fd = -1;
    FILE *fp = NULL;
    bool created = false;
    const char *what = "create a temporary file";
    if (tg__io_fault() || (fd = mkstemp(tmp)) < 0) goto fail;
    created = true;
    /* mkstemp makes the file 0600: keep the old checkpoint's mode, or give a new one 0644. */
    struct stat old;
    fchmod(fd, stat(path, &old) == 0 ? old.st_mode & 0777 : 0644);
    what = "open the temporary file";
    if (!(fp = fdopen(fd, "wb"))) goto fail;
    fd = -1;
    what = "write the temporary file";
    if (!write(fp, arg)) goto fail;
    what = "flush the temporary file";
    if (tg__io_fault() || fflush(fp) != 0) goto fail;
    what = "sync the temporary file";
    if (tg__io_fault() || fsync(fileno(fp)) != 0) goto fail;
    what = "close the temporary file";
    int rc = fclose(fp);
    fp = NULL;
    if (tg__io_fault() || rc != 0) goto fail;
    what = "rename the temporary file";
    if (tg__io_fault() || rename(tmp, path) != 0) goto fail;
    free(tmp);
    return sync_folder(path, err);
fail:;
    int e = errno;
    if (fp) fclose(fp);
    if (fd >= 0) close(fd);
    if (created) unlink(tmp);
    free(tmp);
    return tg__set_error(err, TG_ERR_IO, "%s: cannot %s: %s", path, what, strerror(e));
}

/* What a checkpoint's temporary file receives: the header, then every tensor. */
typedef struct ckpt_body {
    const unsigned char *head;
    size_t head_len;
    const ckpt_entry *ents;
    size_t n;
} ckpt_body;

static bool write_body(FILE *fp, void *arg)
{
    const ckpt_body *b = arg;
    if (tg__io_fault() || fwrite(b->head, 1, b->head_len, fp) != b->head_len) return false;
    for (size_t i = 0; i < b->n; i++)
        if (!write_tensor(fp, b->ents[i].t)) return false;
    return true;
}

tg_status tg_checkpoint_save(const char *path, tg_params *const *sets, int n_sets, tg_error *err)
{
    ckpt_entry *ents;
    size_t n;
    tg_status st = collect(path, sets, n_sets, &ents, &n, err);
    if (st) return st;
    unsigned char *head = NULL;
    size_t head_len = 0;
    st = build_header(path, ents, n, &head, &head_len, err);
    if (!st) st = tg__write_atomic(path, write_body, &(ckpt_body){head, head_len, ents, n}, err);
    free(head);
    free(ents);
    return st;
}

/* ====== Load ====== */

/* The whole file in one malloc'd buffer. */
static tg_status read_file(const char *path, unsigned char **out, size_t *size, tg_error *err)
{
    FILE *fp = fopen(path, "rb");
    if (!fp) return tg__set_error(err, TG_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    unsigned char *buf = NULL;
    tg_status st = TG_OK;
    struct stat sb;
    if (fstat(fileno(fp), &sb) != 0) {
        st = tg__set_error(err, TG_ERR_IO, "%s: cannot stat: %s", path, strerror(errno));
        goto done;
    }
    if (!S_ISREG(sb.st_mode)) {
        st = tg__set_error(err, TG_ERR_IO, "%s: not a regular file", path);
        goto done;
    }
    if ((uintmax_t)sb.st_size > SIZE_MAX - 1) {
        st = tg__set_error(err, TG_ERR_NOMEM, "%s: too large to read", path);
        goto done;
    }
    *size = (size_t)sb.st_size;
    buf = tg__malloc(*size ? *size : 1);
    if (!buf) {
        st = tg__set_error(err, TG_ERR_NOMEM, "%s: out of memory for %zu bytes", path, *size);
        goto done;
    }
    size_t got = fread(buf, 1, *size, fp);
    if (got != *size) {
        st = ferror(fp)
                 ? tg__set_error(err, TG_ERR_IO, "%s: read failed: %s", path, strerror(errno))
                 : tg__set_error(err, TG_ERR_FORMAT, "%s: offset %zu: file shrank while read", path,
                                 got);
        free(buf);
        goto done;
    }
    *out = buf;
done:
    fclose(fp);
    return st;
}

/* data_offsets of one header entry, checked: two integers, begin <= end <= data_len. */
static bool entry_offsets(json_t *info, uint64_t data_len, uint64_t *begin, uint64_t *end)
{
    json_t *offs = json_object_get(info, "data_offsets");
    if (!json_is_array(offs) || json_array_size(offs) != 2) return false;
    json_t *b = json_array_get(offs, 0), *e = json_array_get(offs, 1);
    if (!json_is_integer(b) || !json_is_integer(e)) return false;
    json_int_t bv = json_integer_value(b), ev = json_integer_value(e);
    if (bv < 0 || ev < bv || (uint64_t)ev > data_len) return false;
    *begin = (uint64_t)bv;
    *end = (uint64_t)ev;
    return true;
}

typedef struct byte_range {
    uint64_t begin, end;
    const char *name;
} byte_range;

static int range_cmp(const void *pa, const void *pb)
{
    const byte_range *a = pa, *b = pb;
    if (a->begin != b->begin) return a->begin < b->begin ? -1 : 1;
    return (a->end > b->end) - (a->end < b->end);
}

/* Every entry of the file (known or not) has sane offsets and no two share a byte. */
static tg_status check_ranges(const char *path, json_t *root, uint64_t data_len, tg_error *err)
{
    size_t n = json_object_size(root);
    byte_range *r = tg__malloc(n ? n * sizeof *r : 1);
    if (!r) return tg__set_error(err, TG_ERR_NOMEM, "%s: out of memory", path);
    tg_status st = TG_OK;
    size_t k = 0;
    const char *key;
    json_t *info;
    json_object_foreach(root, key, info)
    {
        if (strcmp(key, "__metadata__") == 0) continue;
        if (!entry_offsets(info, data_len, &r[k].begin, &r[k].end)) {
            st = tg__set_error(err, TG_ERR_FORMAT,
                               "%s: tensor '%s': bad data_offsets (data section is %llu bytes)",
                               path, key, (unsigned long long)data_len);
            goto done;
        }
        r[k++].name = key;
    }
    qsort(r, k, sizeof *r, range_cmp);
    for (size_t i = 1; i < k; i++)
        if (r[i].begin < r[i - 1].end) {
            st = tg__set_error(err, TG_ERR_FORMAT, "%s: tensors '%s' and '%s' overlap", path,
                               r[i - 1].name, r[i].name);
            goto done;
        }
done:
    free(r);
    return st;
}

/* The entry for one parameter: present, same dtype and shape, numel * size bytes. */
static tg_status check_entry(const char *path, json_t *root, const unsigned char *data,
                             uint64_t data_len, ckpt_entry *e, tg_error *err)
{
    const tg_tensor *t = e->t;
    json_t *info = json_object_get(root, e->name);
    if (!info) return tg__set_error(err, TG_ERR_FORMAT, "%s: tensor '%s' missing", path, e->name);
    const char *dt = json_string_value(json_object_get(info, "dtype"));
    if (!dt || strcmp(dt, st_dtype(t->dtype)) != 0)
        return tg__set_error(err, TG_ERR_FORMAT, "%s: tensor '%s': dtype %s, expected %s", path,
                             e->name, dt ? dt : "(none)", st_dtype(t->dtype));
    json_t *shape = json_object_get(info, "shape");
    bool same = json_is_array(shape) && json_array_size(shape) == (size_t)t->rank;
    for (int d = 0; same && d < t->rank; d++) {
        json_t *dim = json_array_get(shape, (size_t)d);
        same = json_is_integer(dim) && json_integer_value(dim) == t->shape[d];
    }
    if (!same) {
        char want[TG__SHAPE_STR_MAX];
        char *got = shape ? json_dumps(shape, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
        tg_status st = tg__set_error(
            err, TG_ERR_FORMAT, "%s: tensor '%s': shape %s in the file, %s in the registry", path,
            e->name, got ? got : "(none)", tg__dims_str(t->rank, t->shape, want, sizeof want));
        free(got);
        return st;
    }
    uint64_t begin = 0, end = 0;
    entry_offsets(info, data_len, &begin, &end); /* already checked by check_ranges */
    if (end - begin != tensor_bytes(t))
        return tg__set_error(err, TG_ERR_FORMAT, "%s: tensor '%s': %llu data bytes, expected %zu",
                             path, e->name, (unsigned long long)(end - begin), tensor_bytes(t));
    e->src = data + begin;
    return TG_OK;
}

static tg_status check_file(const char *path, const unsigned char *buf, size_t size,
                            ckpt_entry *ents, size_t n, tg_error *err)
{
    if (size < 8)
        return tg__set_error(err, TG_ERR_FORMAT, "%s: offset 0: %zu bytes, too short for a header",
                             path, size);
    uint64_t hlen = 0;
    for (int b = 7; b >= 0; b--)
        hlen = hlen << 8 | buf[b];
    if (hlen > size - 8)
        return tg__set_error(err, TG_ERR_FORMAT,
                             "%s: offset 0: header length %llu beyond the file's %zu bytes", path,
                             (unsigned long long)hlen, size);
    json_error_t jerr;
    json_t *root = json_loadb((const char *)buf + 8, (size_t)hlen, JSON_REJECT_DUPLICATES, &jerr);
    /* jansson reports most failed allocations as such, but one that fails
     * before parsing starts leaves the error blank (and its code unset);
     * every parse error has a text. */
    if (!root && (!jerr.text[0] || json_error_code(&jerr) == json_error_out_of_memory))
        return tg__set_error(err, TG_ERR_NOMEM, "%s: out of memory parsing the header", path);
    if (!root)
        return tg__set_error(err, TG_ERR_FORMAT, "%s: offset %lld: bad JSON header: %s", path,
                             8LL + jerr.position, jerr.text);
    tg_status st = TG_OK;
    if (!json_is_object(root)) {
        st = tg__set_error(err, TG_ERR_FORMAT, "%s: offset 8: header is not a JSON object", path);
        goto done;
    }
    const unsigned char *data = buf + 8 + hlen;
    uint64_t data_len = size - 8 - hlen;
    st = check_ranges(path, root, data_len, err);
    for (size_t i = 0; !st && i < n; i++)
        st = check_entry(path, root, data, data_len, &ents[i], err);
done:
    json_decref(root);
    return st;
}

tg_status tg_checkpoint_load(const char *path, tg_params *const *sets, int n_sets, tg_error *err)
{
    ckpt_entry *ents;
    size_t n;
    tg_status st = collect(path, sets, n_sets, &ents, &n, err);
    if (st) return st;
    unsigned char *buf = NULL;
    size_t size = 0;
    st = read_file(path, &buf, &size, err);
    if (!st) st = check_file(path, buf, size, ents, n, err);
    /* Only now, with every tensor checked, does any parameter change. */
    for (size_t i = 0; !st && i < n; i++)
        copy_le(ents[i].t->data, ents[i].src, (size_t)ents[i].t->numel,
                tg__dtype_size(ents[i].t->dtype));
    free(buf);
    free(ents);
    return st;
}
