/* qmesh logits: float32 logits of every position of an id sequence, as .npy (n_ids, vocab). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd.h"
#include "io/npy.h"

#include <libgen.h>
#include <unistd.h>

/* The output's folder must exist and be writable before any work is done. */
static bool out_dir_writable(const char *path) {
    char buf[4096];
    snprintf(buf, sizeof buf, "%s", path);
    return access(dirname(buf), W_OK) == 0;
}

static const char usage_text[] =
    "usage: qmesh logits -m PATH --ids \"1 2 3\" --out FILE.npy [--mesh RxC] [--backend threads|mpi]\n"
    "\nWrites the float32 logits of every position, shape (n_ids, vocab_size). The same bits on every\n"
    "mesh and backend.\n\noptions:\n"
    "  --ids \"I1 I2 ...\"    token ids (space or comma separated)\n"
    "  --out FILE.npy       output file (written atomically)\n"
    "  --ids-file FILE      several sequences, one line of ids each, computed together in one batch;\n"
    "                       with --out P.npy, sequence k goes to P.k.npy\n";

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

/* --ids-file: every line a sequence, all computed in the same steps. */
static int logits_file(qm_engine_opts *o, const char *path, const char *out_path) {
    const char *cmd = "logits";
    qm_error err = {0};
    FILE *f = fopen(path, "r");
    if (!f) {
        qm_fail(&err, QM_ERR_IO, "cannot read %s", path);
        return cli_error(cmd, &err);
    }
    int *seqs[256], lens[256], n_seq = 0, rc = 0, maxlen = 0;
    float *outs[256] = {0};
    char line[65536];
    while (fgets(line, sizeof line, f)) {
        if (line[strspn(line, " \t\r\n")] == 0) continue;
        if (n_seq == 256 || parse_ids(line, &seqs[n_seq], &lens[n_seq]) || lens[n_seq] == 0) {
            fclose(f);
            for (int k = 0; k < n_seq; k++) free(seqs[k]);
            return cli_usage_error(cmd, "%s line %d: expected non-negative integer ids (at most 256 lines)", path,
                                   n_seq + 1);
        }
        if (lens[n_seq] > maxlen) maxlen = lens[n_seq];
        n_seq++;
    }
    fclose(f);
    if (n_seq == 0) return cli_usage_error(cmd, "%s has no sequences", path);
    o->quiet = true;
    o->batch = n_seq;
    if (o->max_context == 0 || o->max_context < maxlen) o->max_context = maxlen > 16 ? maxlen : 16;
    qm_engine *e = NULL;
    if (qm_engine_open(o, &e, &err)) {
        rc = cli_error(cmd, &err);
        goto done;
    }
    int V = qm_engine_config(e)->vocab_size;
    if (qm_engine_is_output_rank(e))
        for (int k = 0; k < n_seq; k++)
            if (!(outs[k] = malloc((size_t)lens[k] * (size_t)V * sizeof(float)))) {
                qm_fail(&err, QM_ERR_NOMEM, "out of memory");
                rc = cli_error(cmd, &err);
                goto done;
            }
    if (qm_engine_logits_batch(e, (const int *const *)seqs, lens, n_seq, outs, &err)) {
        rc = cli_error(cmd, &err);
        goto done;
    }
    if (qm_engine_is_output_rank(e)) {
        size_t base = strlen(out_path);
        if (base > 4 && !strcmp(out_path + base - 4, ".npy")) base -= 4;
        for (int k = 0; k < n_seq && !rc; k++) {
            char name[4200];
            snprintf(name, sizeof name, "%.*s.%d.npy", (int)base, out_path, k);
            int64_t shape[2] = {lens[k], V};
            if (qm_npy_write_f32(name, outs[k], 2, shape, &err)) rc = cli_error(cmd, &err);
        }
    }
done:
    for (int k = 0; k < n_seq; k++) {
        free(seqs[k]);
        free(outs[k]);
    }
    qm_engine_close(e);
    return rc;
}

int cmd_logits(int argc, char **argv) {
    const char *cmd = "logits", *ids_s = NULL, *out_path = NULL, *ids_file = NULL;
    qm_engine_opts o;
    cli_engine_defaults(&o);
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            printf("%s%s", usage_text, cli_engine_flags_help);
            return 0;
        }
        int r = cli_engine_flag(cmd, argc, argv, &i, &o, NULL, 0);
        if (r < 0) return 2;
        if (r) continue;
        if (!strcmp(argv[i], "--ids") && i + 1 < argc) ids_s = argv[++i];
        else if (!strcmp(argv[i], "--out") && i + 1 < argc) out_path = argv[++i];
        else if (!strcmp(argv[i], "--ids-file") && i + 1 < argc) ids_file = argv[++i];
        else return cli_usage_error(cmd, "unknown or incomplete option '%s'", argv[i]);
    }
    if (!o.model_dir) return cli_usage_error(cmd, "-m PATH (a GGUF file or a model folder) is required");
    if (!ids_s == !ids_file) return cli_usage_error(cmd, "give --ids or --ids-file (one of them)");
    if (!out_path) return cli_usage_error(cmd, "--out is required");
    if (!out_dir_writable(out_path)) {
        qm_error e0;
        qm_fail(&e0, QM_ERR_IO, "cannot write %s: its folder does not exist or is not writable", out_path);
        return cli_error(cmd, &e0);
    }
    cli_engine_finalize(&o);
    if (ids_file) return logits_file(&o, ids_file, out_path);
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
