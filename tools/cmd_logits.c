/* qmesh logits: float32 logits of every position of an id sequence, as .npy (n_ids, vocab). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd.h"
#include "io/npy.h"

static const char usage_text[] =
    "usage: qmesh logits -m DIR --ids \"1 2 3\" --out FILE.npy [--mesh RxC] [--backend threads|mpi]\n"
    "\nWrites the float32 logits of every position, shape (n_ids, vocab_size). The same bits on every\n"
    "mesh and backend.\n\noptions:\n"
    "  --ids \"I1 I2 ...\"    token ids (space or comma separated)\n"
    "  --out FILE.npy       output file (written atomically)\n";

static int parse_ids(const char *s, int **out, int *n) {
    int cap = 64, k = 0;
    int *ids = malloc((size_t)cap * sizeof *ids);
    if (!ids) return -1;
    while (*s) {
        while (*s == ' ' || *s == ',' || *s == '\t' || *s == '\n') s++;
        if (!*s) break;
        char *end;
        long v = strtol(s, &end, 10);
        if (end == s || v < 0 || v > 0x7fffffff || (*end && *end != ' ' && *end != ',' && *end != '\t' && *end != '\n')) {
            free(ids);
            return -1;
        }
        if (k == cap) {
            int *g = realloc(ids, (size_t)(cap *= 2) * sizeof *ids);
            if (!g) {
                free(ids);
                return -1;
            }
            ids = g;
        }
        ids[k++] = (int)v;
        s = end;
    }
    *out = ids;
    *n = k;
    return 0;
}

int cmd_logits(int argc, char **argv) {
    const char *cmd = "logits", *ids_s = NULL, *out_path = NULL;
    qm_engine_opts o;
    cli_engine_defaults(&o);
    bool backend_given = false;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            printf("%s%s", usage_text, cli_engine_flags_help);
            return 0;
        }
        if (!strcmp(argv[i], "--backend")) backend_given = true;
        int r = cli_engine_flag(cmd, argc, argv, &i, &o, NULL, 0);
        if (r < 0) return 2;
        if (r) continue;
        if (!strcmp(argv[i], "--ids") && i + 1 < argc) ids_s = argv[++i];
        else if (!strcmp(argv[i], "--out") && i + 1 < argc) out_path = argv[++i];
        else return cli_usage_error(cmd, "unknown or incomplete option '%s'", argv[i]);
    }
    if (!o.model_dir) return cli_usage_error(cmd, "-m DIR is required");
    if (!ids_s) return cli_usage_error(cmd, "--ids is required");
    if (!out_path) return cli_usage_error(cmd, "--out is required");
    cli_engine_finalize(&o, backend_given);
    int *ids = NULL, n = 0;
    if (parse_ids(ids_s, &ids, &n) || n == 0) {
        free(ids);
        return cli_usage_error(cmd, "--ids must be non-negative integers separated by spaces or commas");
    }
    o.quiet = true;
    if (o.max_context == 0 || o.max_context < n) o.max_context = n > 16 ? n : 16;
    qm_error err = {0};
    qm_engine *e = NULL;
    if (qm_engine_open(&o, &e, &err)) {
        free(ids);
        return cli_error(cmd, &err);
    }
    int V = qm_engine_config(e)->vocab_size, rc = 0;
    float *logits = qm_engine_is_output_rank(e) ? malloc((size_t)n * (size_t)V * sizeof(float)) : NULL;
    if (qm_engine_is_output_rank(e) && !logits) {
        qm_fail(&err, QM_ERR_NOMEM, "out of memory for %d x %d logits", n, V);
        rc = cli_error(cmd, &err);
    } else if (qm_engine_logits(e, ids, n, logits, &err)) {
        rc = cli_error(cmd, &err);
    } else if (qm_engine_is_output_rank(e)) {
        int64_t shape[2] = {n, V};
        if (qm_npy_write_f32(out_path, logits, 2, shape, &err)) rc = cli_error(cmd, &err);
    }
    free(logits);
    free(ids);
    qm_engine_close(e);
    return rc;
}
