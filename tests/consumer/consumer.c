/*
 * A program outside tapegrad, built the two ways another project would take
 * the library: installed (pkg-config) and as a Meson subproject. It checks
 * that the header it compiled against matches the library it runs with and
 * that a gradient comes out right: y = sum x^2 gives dy/dx = 2x.
 */
#include <tapegrad/tapegrad.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(void)
{
    char header[32];
    snprintf(header, sizeof header, "%d.%d.%d", TG_VERSION_MAJOR, TG_VERSION_MINOR,
             TG_VERSION_PATCH);
    if (tg_version_number() != TG_VERSION_NUMBER || strcmp(tg_version_string(), header) != 0) {
        fprintf(stderr, "consumer: header %s but library %s\n", header, tg_version_string());
        return EXIT_FAILURE;
    }

    tg_tape *tp = tg_tape_new();
    tg_tensor *x = tg_tensor_from(TG_F64, 1, (const int64_t[]){3}, (const double[]){1, 2, 3});
    int status = EXIT_FAILURE;
    if (!tp || !x) goto done;
    tg_tensor_set_requires_grad(x, true);
    tg_tensor *y = tg_sum(tp, tg_square(tp, x));
    if (tg_backward(tp, y) != TG_OK) {
        fprintf(stderr, "consumer: %s\n", tg_tape_error(tp));
        goto done;
    }
    const double *dx = tg_tensor_data(tg_tensor_grad(x));
    if (tg_tensor_item(y) != 14 || dx[0] != 2 || dx[1] != 4 || dx[2] != 6) {
        fprintf(stderr, "consumer: wrong values\n");
        goto done;
    }
    printf("consumer: tapegrad %s, y = %g, dy/dx = [%g %g %g]\n", tg_version_string(),
           tg_tensor_item(y), dx[0], dx[1], dx[2]);
    status = EXIT_SUCCESS;

done:
    tg_tape_free(tp);
    tg_tensor_free(x);
    return status;
}
