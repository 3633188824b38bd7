/*
 * The op list against the header and the docs: fails when an op declared in
 * tapegrad.h (a TG_API function returning tg_tensor * whose first parameter
 * is tg_tape *tp, other than tg_custom) has no row in tests/oplist.h, when a
 * listed op is not declared, has no row in docs/ops.md (a table row whose
 * first cell is `name`) or has no shape list to gradcheck.
 *
 * Ops declared but not yet implemented wait in 'pending' (NULL-terminated, so
 * it can become empty); whoever adds an op's rows removes it from there (a
 * pending op that has rows fails too).
 *
 *     oplist_docs include/tapegrad/tapegrad.h docs/ops.md
 */
#include "oplist.h"

#include <stdio.h>
#include <string.h>

static const char *const pending[] = {
    NULL,
};

#define MAX_NAMES 256
typedef struct names {
    char name[MAX_NAMES][48];
    int n;
} names;

static bool has(const names *ns, const char *name)
{
    for (int i = 0; i < ns->n; i++)
        if (strcmp(ns->name[i], name) == 0) return true;
    return false;
}

static void add(names *ns, const char *name, size_t len)
{
    if (ns->n < MAX_NAMES && len < sizeof ns->name[0])
        snprintf(ns->name[ns->n++], sizeof ns->name[0], "%.*s", (int)len, name);
}

/* Every name after 'prefix' up to one of 'stops' on a line that starts with
 * prefix, when what follows the name starts with 'then'. */
static bool scan(const char *path, const char *prefix, const char *stops, const char *then,
                 names *out)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        printf("cannot open %s\n", path);
        return false;
    }
    char line[1024];
    size_t np = strlen(prefix);
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, prefix, np) != 0) continue;
        const char *name = line + np;
        size_t len = strcspn(name, stops);
        if (len && strncmp(name + len, then, strlen(then)) == 0) add(out, name, len);
    }
    fclose(f);
    return true;
}

static bool pending_op(const char *name)
{
    for (int i = 0; pending[i]; i++)
        if (strcmp(pending[i], name) == 0) return true;
    return false;
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        printf("usage: oplist_docs tapegrad.h ops.md\n");
        return 2;
    }
    static names declared, documented, listed;
    if (!scan(argv[1], "TG_API tg_tensor *tg_", "(", "(tg_tape *tp", &declared) ||
        !scan(argv[2], "| `", "`", "` |", &documented))
        return 1;
    for (int i = 0; i < tu_n_ops; i++)
        if (!has(&listed, tu_ops[i].name)) add(&listed, tu_ops[i].name, strlen(tu_ops[i].name));

    int bad = 0;
    for (int i = 0; i < declared.n; i++) {
        const char *op = declared.name[i];
        if (strcmp(op, "custom") == 0 || has(&listed, op) || pending_op(op)) continue;
        printf("tg_%s is declared in tapegrad.h but has no row in tests/oplist.h\n", op);
        bad++;
    }
    for (int i = 0; pending[i]; i++) {
        if (!has(&declared, pending[i])) {
            printf("pending op %s is not declared in tapegrad.h\n", pending[i]);
            bad++;
        } else if (has(&listed, pending[i])) {
            printf("%s has rows in tests/oplist.h: remove it from 'pending'\n", pending[i]);
            bad++;
        }
    }
    for (int i = 0; i < listed.n; i++) {
        const char *op = listed.name[i];
        if (!has(&declared, op)) {
            printf("%s is in tests/oplist.h but tg_%s is not declared in tapegrad.h\n", op, op);
            bad++;
        }
        if (!has(&documented, op)) {
            printf("%s is in tests/oplist.h but has no row in docs/ops.md\n", op);
            bad++;
        }
    }
    for (int i = 0; i < tu_n_ops; i++) {
        char shapes[256];
        if (!tu_op_shape_list(&tu_ops[i], 0, shapes, sizeof shapes)) {
            printf("row %s of %s has no shape list to gradcheck\n", tu_ops[i].id, tu_ops[i].name);
            bad++;
        }
    }
    printf("%d ops declared, %d listed in %d rows, %d documented\n", declared.n, listed.n,
           tu_n_ops, documented.n);
    if (pending[0]) {
        printf("pending:");
        for (int i = 0; pending[i]; i++) printf(" %s", pending[i]);
        printf("\n");
    }
    return bad != 0;
}
