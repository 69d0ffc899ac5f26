/* libFuzzer entry point for GSM8K results files, as `qmesh eval gsm8k --resume` reads its --out file:
 * the bytes are written to a scratch file (mkstemp in /dev/shm, else /tmp; removed after every input)
 * and read with qm_eval_results_load, first without repair, then with repair (which truncates a cut
 * last line away, as --resume does before appending); the repaired file must then read back whole,
 * with the same lines. Each loaded result is looked up by index and written back as a line
 * (qm_eval_result_line).
 * Seeds: corpus/results/ (results files as the tool writes them, a cut last line, broken lines). */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "eval/eval.h"

static void walk(const qm_eval_results *r) {
    for (int i = 0; i < r->n; i++) {
        const qm_eval_result *x = &r->items[i];
        if (qm_eval_results_find(r, x->index) != x || !x->completion) abort();
        char *line = qm_eval_result_line(x);
        if (line && line[strlen(line) - 1] != '\n') abort();
        free(line);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char path[64]; /* in memory where there is a tmpfs */
    snprintf(path, sizeof path, "%s/qmesh_fuzz_results_XXXXXX", access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp");
    int fd = mkstemp(path);
    if (fd < 0) return 0;
    FILE *f = fdopen(fd, "wb");
    if (!f) {
        close(fd);
        unlink(path);
        return 0;
    }
    int bad = size && fwrite(data, 1, size, f) != size;
    if (fclose(f) != 0 || bad) {
        unlink(path);
        return 0;
    }
    qm_eval_results r, again;
    qm_error err;
    if (qm_eval_results_load(path, false, &r, &err) == QM_OK) {
        if (r.valid_bytes < 0 || (size_t)r.valid_bytes > size) abort();
        walk(&r);
        if (qm_eval_results_load(path, true, &again, &err) != QM_OK || again.n != r.n) abort();
        qm_eval_results_free(&again);
        /* repaired: the cut line is gone, and the file reads back whole */
        if (qm_eval_results_load(path, false, &again, &err) != QM_OK || again.had_partial || again.n != r.n ||
            again.valid_bytes != r.valid_bytes)
            abort();
        for (int i = 0; i < r.n; i++)
            if (again.items[i].index != r.items[i].index) abort();
        qm_eval_results_free(&again);
        qm_eval_results_free(&r);
    }
    unlink(path);
    return 0;
}
