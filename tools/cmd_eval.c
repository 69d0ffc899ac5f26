/* qmesh eval: GSM8K evaluation (gsm8k), answer extraction (extract), comparison of two results
 * files (compare) and a table / plot of results files (report).
 *
 * `gsm8k` is a thin front end over the library runner (src/eval/runner.h): flags, the default
 * exemplars file, the model check, progress lines and the summary JSON. The results file format is
 * described in src/eval/eval.h. `report` recomputes everything from
 * the per-question lines (accuracy from strict_correct / flex_correct, throughput from gen_tokens
 * and the per-run t_ms), so no separate summary file is kept; the summary JSON printed on the
 * last line of stdout by `eval gsm8k` is for scripts. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cmd.h"
#include "engine/engine.h"
#include "eval/eval.h"
#include "eval/runner.h"
#include "io/gguf_model.h"

static bool is_help(const char *a) { return !strcmp(a, "--help") || !strcmp(a, "-h"); }

/* ------------------------------------------------------------------ gsm8k */

static const char gsm8k_usage[] =
    "usage: qmesh eval gsm8k -m PATH --data FILE --out FILE.jsonl [options]\n"
    "\n"
    "Evaluates a model on GSM8K problems (JSONL {\"question\", \"answer\"} with the gold number after '#### ').\n"
    "One JSON line per question is written to --out (and flushed) as each finishes; progress goes to\n"
    "stderr; the last line of stdout is a JSON summary (length_stops: completions that reached\n"
    "--max-new-tokens, whose answers may be cut; each line's \"stop\" says why it ended: eos, stop,\n"
    "length).\n"
    "\n"
    "%s"
    "  --data FILE            GSM8K JSONL file (e.g. shared/data/gsm8k/test.jsonl)\n"
    "  --out FILE.jsonl       results file; an existing one needs --resume or --force\n"
    "  --shots K              few-shot examples, 0 to 8 (default 8)\n"
    "  --exemplars FILE       chain-of-thought exemplars (default: cot8_exemplars.jsonl from $QMESH_DATA/gsm8k,\n"
    "                         <exe dir>/../../shared/data/gsm8k, <exe dir>/../shared/data/gsm8k, ../shared/data/gsm8k)\n"
    "  --fewshot-from FILE    take the first K problems of a GSM8K file instead, in the\n"
    "                         \"Question: ...\\nAnswer: ...\" form\n"
    "  --limit N              only the first N problems\n"
    "  --chat                 wrap each prompt in the model's chat format (ChatML)\n"
    "  --max-new-tokens N     (default 256)\n"
    "  --no-prefix-cache      do not share the prefill of the few-shot prefix\n"
    "  --resume               continue --out: skip the indices it holds (a truncated last line is dropped)\n"
    "  --force                overwrite an existing --out\n";

typedef struct {
    qm_engine_opts eng; /* the engine flags every subcommand shares (engine_flags.c) */
    const char *data, *out, *exemplars, *fewshot_from;
    int shots, limit, max_new;
    bool chat, no_prefix_cache, resume, force;
} gsm8k_args;

/* Progress lines on stderr: at most one a second (and the last one), "\r"-overwritten on a tty. */
typedef struct {
    bool tty;
    double last_print; /* elapsed_s of the last line */
    int printed;       /* done_run of the last line */
} progress_state;

static void on_progress(void *ctx, const qm_eval_progress *p) {
    progress_state *c = ctx;
    double el = p->elapsed_s;
    if (!p->final && el - c->last_print < 1.0 && p->done_run < p->pending) return;
    if (p->final && !c->tty && c->printed == p->done_run) return; /* the last line is out already */
    c->last_print = el;
    c->printed = p->done_run;
    int done = p->done;
    double eta = p->done_run > 0 ? el / p->done_run * (p->pending - p->done_run) : 0.0;
    fprintf(stderr, "%sgsm8k %d/%d  strict %.1f%%  flex %.1f%%  %.1f tok/s  %.0fs elapsed  ~%.0fs left%s",
            c->tty ? "\r" : "", done, p->total, done ? 100.0 * p->strict_ok / done : 0.0,
            done ? 100.0 * p->flex_ok / done : 0.0, el > 0 ? p->gen_tokens_run / el : 0.0, el, eta,
            c->tty ? (p->final ? "\n" : "   ") : "\n");
    fflush(stderr);
}

static void on_note(void *ctx, const char *msg) {
    (void)ctx;
    fprintf(stderr, "qmesh eval gsm8k: %s\n", msg);
}

static bool readable(const char *p) { return p && access(p, R_OK) == 0; }

/* cot8_exemplars.jsonl: $QMESH_DATA, then next to the executable, then ../shared/data. */
static bool find_exemplars(char *out, size_t cap) {
    const char *name = "cot8_exemplars.jsonl";
    const char *env = getenv("QMESH_DATA");
    if (env && *env) {
        snprintf(out, cap, "%s/gsm8k/%s", env, name);
        if (readable(out)) return true;
        snprintf(out, cap, "%s/%s", env, name);
        if (readable(out)) return true;
    }
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = '\0';
        char *dir = dirname(exe);
        snprintf(out, cap, "%s/../../shared/data/gsm8k/%s", dir, name);
        if (readable(out)) return true;
        snprintf(out, cap, "%s/../shared/data/gsm8k/%s", dir, name);
        if (readable(out)) return true;
    }
    snprintf(out, cap, "../shared/data/gsm8k/%s", name);
    return readable(out);
}

static int parse_gsm8k_args(int argc, char **argv, gsm8k_args *a) {
    const char *cmd = "eval gsm8k";
    *a = (gsm8k_args){.shots = 8, .max_new = 256};
    cli_engine_defaults(&a->eng);
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i];
        if (is_help(o)) {
            printf(gsm8k_usage, cli_engine_flags_help);
            return 0;
        }
        int r = cli_engine_flag(cmd, argc, argv, &i, &a->eng, NULL, 0);
        if (r < 0) return 2;
        if (r > 0) continue;
        bool flag = true;
        if (!strcmp(o, "--chat")) a->chat = true;
        else if (!strcmp(o, "--no-prefix-cache")) a->no_prefix_cache = true;
        else if (!strcmp(o, "--resume")) a->resume = true;
        else if (!strcmp(o, "--force")) a->force = true;
        else flag = false;
        if (flag) continue;
        if (i + 1 >= argc) return cli_usage_error(cmd, "option '%s' needs a value (or is unknown)", o);
        const char *v = argv[++i];
        long n;
        if (!strcmp(o, "--data")) {
            a->data = v;
        } else if (!strcmp(o, "--out")) {
            a->out = v;
        } else if (!strcmp(o, "--exemplars")) {
            a->exemplars = v;
        } else if (!strcmp(o, "--fewshot-from")) {
            a->fewshot_from = v;
        } else if (!strcmp(o, "--shots")) {
            if (!cli_parse_int(v, 0, 8, &n)) return cli_usage_error(cmd, "--shots must be 0 to 8, not '%s'", v);
            a->shots = (int)n;
        } else if (!strcmp(o, "--limit")) {
            if (!cli_parse_int(v, 1, 1L << 30, &n)) return cli_usage_error(cmd, "--limit must be >= 1, not '%s'", v);
            a->limit = (int)n;
        } else if (!strcmp(o, "--max-new-tokens")) {
            if (!cli_parse_int(v, 1, 1 << 20, &n))
                return cli_usage_error(cmd, "--max-new-tokens must be >= 1, not '%s'", v);
            a->max_new = (int)n;
        } else
            return cli_usage_error(cmd, "unknown option '%s'", o);
    }
    if (!a->eng.model_dir) return cli_usage_error(cmd, "-m PATH (a GGUF file or a model folder) is required");
    if (!a->data) return cli_usage_error(cmd, "--data FILE is required");
    if (!a->out) return cli_usage_error(cmd, "--out FILE.jsonl is required");
    if (a->resume && a->force) return cli_usage_error(cmd, "--resume and --force exclude each other");
    return -1; /* go on */
}

/* The last line of stdout: the run's figures as JSON (keys in a fixed order, for scripts). */
static void print_summary(const gsm8k_args *a, const qm_eval_gsm8k_summary *z) {
    const qm_eval_summary *s = &z->file;
    const qm_gen_stats *g = &z->gen;
    printf("{\"n\": %ld, \"strict_acc\": %.6f, \"strict_ci95\": [%.6f, %.6f], \"flex_acc\": %.6f, "
           "\"flex_ci95\": [%.6f, %.6f], \"strict_correct\": %ld, \"flex_correct\": %ld, "
           "\"n_new\": %d, \"tokens_per_s\": %.3f, \"wall_s\": %.3f, \"mesh\": \"%dx%d\", \"batch\": %d, "
           "\"backend\": \"%s\", \"shots\": %d, \"chat\": %s, \"prefix_cache\": %s, \"shared_prefix_tokens\": %d, "
           "\"prompt_tokens\": %ld, \"prefill_tokens\": %ld, \"gen_tokens\": %ld, \"prefill_s\": %.3f, "
           "\"decode_s\": %.3f, \"length_stops\": %ld, \"out\": ",
           s->n, s->strict_acc, s->strict_lo, s->strict_hi, s->flex_acc, s->flex_lo, s->flex_hi, s->strict_correct,
           s->flex_correct, z->n_new, z->tokens_per_s, z->wall_s, a->eng.rows, a->eng.cols, a->eng.batch,
           a->eng.backend, a->shots, a->chat ? "true" : "false", a->no_prefix_cache ? "false" : "true",
           z->shared_prefix_tokens, g->prompt_tokens, g->prefill_tokens, g->gen_tokens, g->prefill_s, g->decode_s,
           s->length_stops);
    cJSON *js = cJSON_CreateString(a->out);
    char *jt = js ? cJSON_PrintUnformatted(js) : NULL;
    printf("%s}\n", jt ? jt : "null");
    free(jt);
    cJSON_Delete(js);
}

static int run_gsm8k(int argc, char **argv) {
    const char *cmd = "eval gsm8k";
    gsm8k_args a;
    int rc = parse_gsm8k_args(argc, argv, &a);
    if (rc >= 0) return rc;

    /* 1. Every input is checked before the model is loaded (eval/runner.h). */
    char found[PATH_MAX];
    if (a.shots > 0 && !a.fewshot_from && !a.exemplars && find_exemplars(found, sizeof found)) a.exemplars = found;
    qm_eval_gsm8k_opts o = {.data = a.data, .out = a.out, .exemplars = a.exemplars, .fewshot_from = a.fewshot_from,
                            .shots = a.shots, .limit = a.limit, .max_new = a.max_new, .chat = a.chat,
                            .no_prefix_cache = a.no_prefix_cache, .resume = a.resume, .force = a.force,
                            .rows = a.eng.rows, .cols = a.eng.cols, .batch = a.eng.batch};
    qm_error err = {0};
    qm_eval_gsm8k_plan *plan = NULL;
    qm_engine *eng = NULL;
    rc = 1;
    if (qm_eval_gsm8k_prepare(&o, &plan, &err) != QM_OK) goto fail;
    char cfg[PATH_MAX];
    if (qm_is_gguf_path(a.eng.model_dir)) snprintf(cfg, sizeof cfg, "%s", a.eng.model_dir);
    else snprintf(cfg, sizeof cfg, "%s/config.json", a.eng.model_dir);
    if (!readable(cfg)) {
        qm_fail(&err, QM_ERR_IO, "cannot read model %s: %s: %s", a.eng.model_dir, cfg, strerror(errno));
        goto fail;
    }

    /* 2. The model (under mpirun without --backend, the mpi backend, as for the other commands). */
    cli_engine_finalize(&a.eng);
    if (qm_engine_open(&a.eng, &eng, &err) != QM_OK) goto fail;

    /* 3. The run: results file and progress only on the output rank. */
    progress_state ps = {.tty = isatty(2) != 0, .last_print = -1e9};
    qm_eval_progress_cb pcb = {.on_progress = on_progress, .on_note = on_note, .ctx = &ps};
    qm_eval_gsm8k_summary sum;
    if (qm_eval_gsm8k_run(plan, eng, &pcb, &sum, &err) != QM_OK) goto fail;
    if (sum.output_rank) print_summary(&a, &sum);
    rc = 0;
    goto done;
fail:
    rc = cli_error(cmd, &err);
done:
    if (eng) qm_engine_close(eng);
    qm_eval_gsm8k_plan_free(plan);
    return rc;
}

/* ------------------------------------------------------------------ extract */

static const char extract_usage[] =
    "usage: qmesh eval extract < completions.jsonl\n"
    "\n"
    "stdin: one {\"completion\": ...} per line; stdout: one {\"strict\": S, \"flex\": F} per line, each a\n"
    "normalized number as a string, or null. strict: the number right after the last \"The answer is\"\n"
    "or \"####\"; flex: the last number anywhere.\n";

static int run_extract(int argc, char **argv) {
    const char *cmd = "eval extract";
    for (int i = 1; i < argc; i++) {
        if (is_help(argv[i])) {
            fputs(extract_usage, stdout);
            return 0;
        }
        return cli_usage_error(cmd, "unknown option '%s'", argv[i]);
    }
    char *line = NULL;
    size_t cap = 0;
    int lineno = 0, rc = 0;
    while (getline(&line, &cap, stdin) != -1) {
        lineno++;
        bool blank = true;
        for (const char *p = line; *p; p++)
            if (*p != ' ' && *p != '\t' && *p != '\r' && *p != '\n') blank = false;
        if (blank) continue;
        cJSON *o = cJSON_Parse(line);
        const cJSON *c = cJSON_GetObjectItemCaseSensitive(o, "completion");
        if (!cJSON_IsString(c)) {
            fprintf(stderr, "qmesh %s: stdin:%d: expected {\"completion\": \"...\"}\n", cmd, lineno);
            cJSON_Delete(o);
            rc = 1;
            break;
        }
        qm_eval_extraction ex;
        qm_eval_extract(c->valuestring, &ex);
        printf("{\"strict\": ");
        printf(ex.has_strict ? "\"%s\"" : "null", ex.strict);
        printf(", \"flex\": ");
        printf(ex.has_flex ? "\"%s\"" : "null", ex.flex);
        printf("}\n");
        cJSON_Delete(o);
    }
    free(line);
    fflush(stdout);
    return rc;
}

/* ------------------------------------------------------------------ compare */

static const char compare_usage[] =
    "usage: qmesh eval compare A.jsonl B.jsonl [--require-identical]\n"
    "\n"
    "Compares two results files question by question (matched by index): how many completions are\n"
    "identical, and the accuracy of each. The last line of stdout is a JSON object.\n"
    "  --require-identical  exit 1 unless both hold the same indices with identical completions\n";

static int run_compare(int argc, char **argv) {
    const char *cmd = "eval compare";
    const char *files[2] = {0};
    int nf = 0;
    bool require = false;
    for (int i = 1; i < argc; i++) {
        if (is_help(argv[i])) {
            fputs(compare_usage, stdout);
            return 0;
        }
        if (!strcmp(argv[i], "--require-identical")) require = true;
        else if (argv[i][0] == '-' && argv[i][1]) return cli_usage_error(cmd, "unknown option '%s'", argv[i]);
        else if (nf < 2) files[nf++] = argv[i];
        else return cli_usage_error(cmd, "expected two results files");
    }
    if (nf != 2) return cli_usage_error(cmd, "expected two results files");
    qm_eval_results r[2] = {0};
    qm_error err = {0};
    for (int k = 0; k < 2; k++)
        if (qm_eval_results_load(files[k], false, &r[k], &err) != QM_OK) {
            qm_eval_results_free(&r[0]);
            return cli_error(cmd, &err);
        }
    int common = 0, identical = 0, first_diff = -1;
    for (int i = 0; i < r[0].n; i++) {
        const qm_eval_result *x = &r[0].items[i], *y = qm_eval_results_find(&r[1], x->index);
        if (!y) continue;
        common++;
        if (!strcmp(x->completion, y->completion)) identical++;
        else if (first_diff < 0 || x->index < first_diff) first_diff = x->index;
    }
    qm_eval_summary s[2];
    for (int k = 0; k < 2; k++) {
        qm_eval_summarize(&r[k], &s[k]);
        printf("%s: %s  n=%ld  strict %.4f [%.4f, %.4f]  flex %.4f [%.4f, %.4f]\n", k ? "B" : "A", files[k], s[k].n,
               s[k].strict_acc, s[k].strict_lo, s[k].strict_hi, s[k].flex_acc, s[k].flex_lo, s[k].flex_hi);
    }
    printf("common indices %d (only in A %d, only in B %d); identical completions %d of %d\n", common,
           r[0].n - common, r[1].n - common, identical, common);
    if (first_diff >= 0) printf("first differing index: %d\n", first_diff);
    printf("{\"common\": %d, \"identical\": %d, \"only_a\": %d, \"only_b\": %d, \"first_diff\": %d, "
           "\"a_n\": %ld, \"a_strict_acc\": %.6f, \"a_flex_acc\": %.6f, \"b_n\": %ld, \"b_strict_acc\": %.6f, "
           "\"b_flex_acc\": %.6f}\n",
           common, identical, r[0].n - common, r[1].n - common, first_diff, s[0].n, s[0].strict_acc, s[0].flex_acc,
           s[1].n, s[1].strict_acc, s[1].flex_acc);
    bool same = identical == common && common == r[0].n && common == r[1].n;
    qm_eval_results_free(&r[0]);
    qm_eval_results_free(&r[1]);
    if (require && !same) {
        fprintf(stderr, "qmesh %s: the files differ\n", cmd);
        return 1;
    }
    return 0;
}

/* ------------------------------------------------------------------ report */

static const char report_usage[] =
    "usage: qmesh eval report FILE.jsonl... [--png FILE.png]\n"
    "\n"
    "A table of accuracy (strict / flex, with 95% Wilson intervals), tokens/s and wall time per\n"
    "results file, all recomputed from the per-question lines: throughput = sum(gen_tokens) / wall,\n"
    "wall = sum over runs (a --resume starts a new run) of the last line's t_ms. A file with\n"
    "completions that stopped at the token limit (\"stop\": \"length\") gets a line saying how many.\n"
    "  --png FILE  also plot accuracy and throughput per file (mesh, batch) with gnuplot\n";

static int plot_png(const char *png, const char *const *files, const qm_eval_summary *s, int n, qm_error *err) {
    if (system("command -v gnuplot >/dev/null 2>&1") != 0)
        return qm_fail(err, QM_ERR_UNSUPPORTED, "--png: gnuplot is not installed (apt-get install gnuplot-nox)");
    char dat[] = "/tmp/qmesh_report_XXXXXX";
    int fd = mkstemp(dat);
    if (fd < 0) return qm_fail(err, QM_ERR_IO, "--png: cannot create a temporary file: %s", strerror(errno));
    FILE *f = fdopen(fd, "w");
    if (!f) {
        close(fd);
        unlink(dat);
        return qm_fail(err, QM_ERR_IO, "--png: %s", strerror(errno));
    }
    for (int i = 0; i < n; i++) {
        char tmp[PATH_MAX];
        snprintf(tmp, sizeof tmp, "%s", files[i]);
        char label[PATH_MAX + 64];
        snprintf(label, sizeof label, "%s b%d (%s)", s[i].mesh[0] ? s[i].mesh : "?", s[i].batch, basename(tmp));
        for (char *p = label; *p; p++)
            if (*p == '"' || *p == '\'') *p = '_';
        fprintf(f, "\"%s\" %.6f %.6f %.6f %.6f %.6f %.6f %.3f\n", label, s[i].strict_acc, s[i].strict_lo,
                s[i].strict_hi, s[i].flex_acc, s[i].flex_lo, s[i].flex_hi, s[i].tokens_per_s);
    }
    fclose(f);
    FILE *g = popen("gnuplot", "w");
    if (!g) {
        unlink(dat);
        return qm_fail(err, QM_ERR_IO, "--png: cannot run gnuplot: %s", strerror(errno));
    }
    char esc[PATH_MAX];
    snprintf(esc, sizeof esc, "%s", png);
    for (char *p = esc; *p; p++)
        if (*p == '\'') *p = '_';
    fprintf(g,
            "set terminal png size 1200,500 noenhanced\nset output '%s'\nset multiplot layout 1,2\n"
            "set style fill solid 0.6 border -1\nset xtics rotate by -30 font ',8'\nset key top left\n"
            "set style data histogram\nset style histogram errorbars gap 1 lw 1\n"
            "set yrange [0:1]\nset title 'GSM8K accuracy (95%% Wilson)'\n"
            "plot '%s' using 2:3:4:xtic(1) title 'strict', '' using 5:6:7 title 'flex'\n"
            "set style histogram clustered gap 1\nset yrange [0:*]\nset title 'throughput (generated tokens/s)'\n"
            "plot '%s' using 8:xtic(1) title 'tokens/s'\nunset multiplot\n",
            esc, dat, dat);
    int st = pclose(g);
    unlink(dat);
    if (st != 0) return qm_fail(err, QM_ERR_IO, "--png: gnuplot failed (status %d)", st);
    return QM_OK;
}

static int run_report(int argc, char **argv) {
    const char *cmd = "eval report";
    const char *png = NULL;
    const char **files = calloc((size_t)argc, sizeof *files);
    int nf = 0, rc = 0;
    if (!files) return 1;
    for (int i = 1; i < argc; i++) {
        if (is_help(argv[i])) {
            fputs(report_usage, stdout);
            free(files);
            return 0;
        }
        if (!strcmp(argv[i], "--png")) {
            if (i + 1 >= argc) {
                free(files);
                return cli_usage_error(cmd, "--png needs a file name");
            }
            png = argv[++i];
        } else if (argv[i][0] == '-' && argv[i][1]) {
            free(files);
            return cli_usage_error(cmd, "unknown option '%s'", argv[i]);
        } else
            files[nf++] = argv[i];
    }
    if (nf == 0) {
        free(files);
        return cli_usage_error(cmd, "expected one or more results files");
    }
    qm_eval_summary *s = calloc((size_t)nf, sizeof *s);
    qm_error err = {0};
    if (!s) {
        free(files);
        return 1;
    }
    for (int i = 0; i < nf; i++) {
        qm_eval_results r;
        if (qm_eval_results_load(files[i], false, &r, &err) != QM_OK) {
            rc = cli_error(cmd, &err);
            goto out;
        }
        qm_eval_summarize(&r, &s[i]);
        qm_eval_results_free(&r);
    }
    printf("%-32s %-6s %5s %6s  %-24s  %-24s %10s %9s\n", "file", "mesh", "batch", "n", "strict [95% CI]",
           "flex [95% CI]", "tokens/s", "wall s");
    for (int i = 0; i < nf; i++) {
        char st[64], fl[64];
        snprintf(st, sizeof st, "%.4f [%.4f, %.4f]", s[i].strict_acc, s[i].strict_lo, s[i].strict_hi);
        snprintf(fl, sizeof fl, "%.4f [%.4f, %.4f]", s[i].flex_acc, s[i].flex_lo, s[i].flex_hi);
        printf("%-32s %-6s %5d %6ld  %-24s  %-24s %10.2f %9.2f\n", files[i], s[i].mesh[0] ? s[i].mesh : "?",
               s[i].batch, s[i].n, st, fl, s[i].tokens_per_s, s[i].wall_s);
    }
    for (int i = 0; i < nf; i++)
        if (s[i].length_stops > 0)
            printf("%s: %ld of %ld completions stopped at the token limit (--max-new-tokens): their answers may be "
                   "cut\n",
                   files[i], s[i].length_stops, s[i].n);
    if (png) {
        if (plot_png(png, files, s, nf, &err) != QM_OK) rc = cli_error(cmd, &err);
        else fprintf(stderr, "qmesh %s: wrote %s\n", cmd, png);
    }
out:
    free(s);
    free(files);
    return rc;
}

/* ------------------------------------------------------------------ dispatch */

static void eval_usage(FILE *f) {
    fputs("usage: qmesh eval <gsm8k|extract|compare|report> [options]   (qmesh eval <sub> --help)\n"
          "  gsm8k    evaluate a model on GSM8K, one JSON line per question\n"
          "  extract  completions on stdin -> strict and flexible answers\n"
          "  compare  two results files: identical completions, accuracy of each\n"
          "  report   table (and --png plot) of results files\n",
          f);
}

int cmd_eval(int argc, char **argv) {
    if (argc < 2) {
        eval_usage(stderr);
        return 2;
    }
    const char *sub = argv[1];
    if (is_help(sub)) {
        eval_usage(stdout);
        return 0;
    }
    if (!strcmp(sub, "gsm8k")) return run_gsm8k(argc - 1, argv + 1);
    if (!strcmp(sub, "extract")) return run_extract(argc - 1, argv + 1);
    if (!strcmp(sub, "compare")) return run_compare(argc - 1, argv + 1);
    if (!strcmp(sub, "report")) return run_report(argc - 1, argv + 1);
    fprintf(stderr, "qmesh eval: unknown subcommand '%s'\n", sub);
    eval_usage(stderr);
    return 2;
}
