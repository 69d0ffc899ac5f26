/* qmesh eval: GSM8K evaluation (gsm8k), answer extraction (extract), comparison of two results
 * files (compare) and a table / plot of results files (report).
 *
 * The results file format is described in src/eval/eval.h. `report` recomputes everything from
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
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cmd.h"
#include "engine/engine.h"
#include "eval/eval.h"
#include "text/chat.h"
#include "io/gguf_model.h"
#include "text/tokenizer.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static bool is_help(const char *a) { return !strcmp(a, "--help") || !strcmp(a, "-h"); }

/* ------------------------------------------------------------------ gsm8k */

static const char gsm8k_usage[] =
    "usage: qmesh eval gsm8k -m PATH --data FILE --out FILE.jsonl [options]\n"
    "\n"
    "Evaluates a model on GSM8K problems (JSONL {\"question\", \"answer\"} with the gold number after '#### ').\n"
    "One JSON line per question is written to --out (and flushed) as each finishes; progress goes to\n"
    "stderr; the last line of stdout is a JSON summary.\n"
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

typedef struct {
    FILE *out;
    const char *out_path;
    qm_eval_results *all;        /* previous lines + this run's */
    const qm_eval_problem **req_problem; /* request position -> problem */
    int n_total, n_pending, done_run, printed;
    long strict_ok, flex_ok, gen_tokens_run;
    int run;
    char mesh[32];
    int batch;
    double t0, last_print;
    bool tty;
    qm_error werr;
    bool failed;
} run_ctx;

static void progress(run_ctx *c, bool final) {
    double t = now_s(), el = t - c->t0;
    if (!final && t - c->last_print < 1.0 && c->done_run < c->n_pending) return;
    if (final && !c->tty && c->printed == c->done_run) return; /* the last line is out already */
    c->last_print = t;
    c->printed = c->done_run;
    int done = c->all->n;
    double eta = c->done_run > 0 ? el / c->done_run * (c->n_pending - c->done_run) : 0.0;
    fprintf(stderr, "%sgsm8k %d/%d  strict %.1f%%  flex %.1f%%  %.1f tok/s  %.0fs elapsed  ~%.0fs left%s",
            c->tty ? "\r" : "", done, c->n_total, done ? 100.0 * c->strict_ok / done : 0.0,
            done ? 100.0 * c->flex_ok / done : 0.0, el > 0 ? c->gen_tokens_run / el : 0.0, el, eta,
            c->tty ? (final ? "\n" : "   ") : "\n");
    fflush(stderr);
}

static void on_done(void *ctx, int i, const qm_gen_result *r) {
    run_ctx *c = ctx;
    if (c->failed) return;
    const qm_eval_problem *p = c->req_problem[i];
    qm_eval_extraction ex;
    qm_eval_extract(r->text, &ex);
    qm_eval_result x = {
        .index = p->index,
        .question = p->question,
        .gold = p->has_gold ? (char *)p->gold : NULL,
        .completion = r->text ? r->text : "",
        .strict = ex.has_strict ? ex.strict : NULL,
        .flex = ex.has_flex ? ex.flex : NULL,
        .prompt_tokens = r->prompt_tokens,
        .gen_tokens = r->n_ids,
        .ms = r->ms,
        .batch = c->batch,
        .run = c->run,
        .t_ms = (now_s() - c->t0) * 1000.0,
    };
    snprintf(x.mesh, sizeof x.mesh, "%s", c->mesh);
    x.strict_correct = p->has_gold && ex.has_strict && qm_eval_numbers_equal(ex.strict, p->gold);
    x.flex_correct = p->has_gold && ex.has_flex && qm_eval_numbers_equal(ex.flex, p->gold);
    char *line = qm_eval_result_line(&x);
    if (!line) {
        c->failed = true;
        qm_fail(&c->werr, QM_ERR_NOMEM, "out of memory writing a result");
        return;
    }
    if (fputs(line, c->out) == EOF || fflush(c->out) != 0) {
        c->failed = true;
        qm_fail(&c->werr, QM_ERR_IO, "cannot write %s: %s", c->out_path, strerror(errno));
    }
    free(line);
    if (c->failed) return;
    if (qm_eval_results_add(c->all, &x, &c->werr) != QM_OK) {
        c->failed = true;
        return;
    }
    c->done_run++;
    c->strict_ok += x.strict_correct;
    c->flex_ok += x.flex_correct;
    c->gen_tokens_run += x.gen_tokens;
    progress(c, false);
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

/* --out: refuse to overwrite without --force; must be writable (checked without touching it). */
static qm_status check_out(const gsm8k_args *a, bool *exists, qm_error *err) {
    struct stat st;
    *exists = stat(a->out, &st) == 0;
    if (*exists) {
        if (!S_ISREG(st.st_mode)) return qm_fail(err, QM_ERR_ARG, "--out %s is not a regular file", a->out);
        if (!a->resume && !a->force)
            return qm_fail(err, QM_ERR_ARG,
                           "--out %s already exists: pass --resume to continue it or --force to overwrite it", a->out);
        if (access(a->out, W_OK) != 0)
            return qm_fail(err, QM_ERR_IO, "--out %s is not writable: %s", a->out, strerror(errno));
        return QM_OK;
    }
    char tmp[PATH_MAX];
    snprintf(tmp, sizeof tmp, "%s", a->out);
    const char *dir = dirname(tmp);
    if (access(dir, W_OK | X_OK) != 0)
        return qm_fail(err, QM_ERR_IO, "--out %s cannot be created: folder %s: %s", a->out, dir, strerror(errno));
    return QM_OK;
}

static qm_status tokenize_str(const qm_tokenizer *tok, const char *s, int **ids, int *n, qm_error *err) {
    return qm_tokenize(tok, s, strlen(s), ids, n, err);
}

static int run_gsm8k(int argc, char **argv) {
    const char *cmd = "eval gsm8k";
    gsm8k_args a;
    int rc = parse_gsm8k_args(argc, argv, &a);
    if (rc >= 0) return rc;

    qm_error err = {0};
    qm_eval_dataset data = {0}, shots = {0};
    qm_eval_results all = {0};
    qm_engine *eng = NULL;
    char *prefix = NULL, *shared_text = NULL;
    int *prefix_ids = NULL, n_prefix = 0;
    qm_gen_request *reqs = NULL;
    int **req_ids = NULL;
    const qm_eval_problem **req_problem = NULL;
    int n_pending = 0;
    FILE *out = NULL;
    rc = 1;

    /* 1. Every input is checked before the model is loaded. */
    if (qm_eval_data_load(a.data, QM_EVAL_DATA_GSM8K, a.limit, &data, &err) != QM_OK) goto fail;
    qm_eval_prompt_style style = a.fewshot_from ? QM_EVAL_PROMPT_QA : QM_EVAL_PROMPT_COT;
    if (a.shots > 0) {
        char found[PATH_MAX];
        const char *shots_path = a.fewshot_from ? a.fewshot_from : a.exemplars;
        if (!shots_path) {
            if (!find_exemplars(found, sizeof found)) {
                qm_fail(&err, QM_ERR_IO,
                        "cannot find cot8_exemplars.jsonl (set $QMESH_DATA to the shared data folder or pass --exemplars FILE)");
                goto fail;
            }
            shots_path = found;
        }
        if (qm_eval_data_load(shots_path, a.fewshot_from ? QM_EVAL_DATA_GSM8K : QM_EVAL_DATA_EXEMPLARS, a.shots,
                              &shots, &err) != QM_OK)
            goto fail;
    }
    if (qm_eval_prompt_prefix(style, &shots, a.shots, &prefix, &err) != QM_OK) goto fail;
    bool exists;
    if (check_out(&a, &exists, &err) != QM_OK) goto fail;
    if (a.resume && exists) {
        if (qm_eval_results_load(a.out, false, &all, &err) != QM_OK) goto fail;
        for (int i = 0; i < all.n; i++) {
            for (int j = 0; j < data.n; j++) {
                if (data.items[j].index != all.items[i].index) continue;
                if (all.items[i].question && strcmp(all.items[i].question, data.items[j].question) != 0) {
                    qm_fail(&err, QM_ERR_ARG,
                            "--resume: %s holds another question at index %d than %s (another data file?)", a.out,
                            all.items[i].index, a.data);
                    goto fail;
                }
            }
        }
    }
    {
        char cfg[PATH_MAX];
        if (qm_is_gguf_path(a.eng.model_dir)) snprintf(cfg, sizeof cfg, "%s", a.eng.model_dir);
        else snprintf(cfg, sizeof cfg, "%s/config.json", a.eng.model_dir);
        if (!readable(cfg)) {
            qm_fail(&err, QM_ERR_IO, "cannot read model %s: %s: %s", a.eng.model_dir, cfg, strerror(errno));
            goto fail;
        }
    }

    /* 2. The model (under mpirun without --backend, the mpi backend, as for the other commands). */
    cli_engine_finalize(&a.eng);
    if (qm_engine_open(&a.eng, &eng, &err) != QM_OK) goto fail;
    const qm_tokenizer *tok = qm_engine_tokenizer(eng);
    bool output_rank = qm_engine_is_output_rank(eng);

    /* 3. Prompts: ids = tokens(shared prefix) + tokens(rest), tokenized separately. */
    req_problem = calloc((size_t)data.n, sizeof *req_problem);
    req_ids = calloc((size_t)data.n, sizeof *req_ids);
    reqs = calloc((size_t)data.n, sizeof *reqs);
    if (!req_problem || !req_ids || !reqs) {
        qm_fail(&err, QM_ERR_NOMEM, "out of memory");
        goto fail;
    }
    int n_stop;
    const char *const *stops = qm_eval_prompt_stops(style, &n_stop);
    for (int j = 0; j < data.n; j++) {
        const qm_eval_problem *p = &data.items[j];
        if (qm_eval_results_find(&all, p->index)) continue;
        char *suffix = qm_eval_prompt_suffix(style, p->question), *rest = NULL;
        if (!suffix) {
            qm_fail(&err, QM_ERR_NOMEM, "out of memory");
            goto fail;
        }
        if (a.chat) {
            size_t np = strlen(prefix), ns = strlen(suffix);
            char *user = malloc(np + ns + 1), *wrapped = NULL, *sh = NULL;
            qm_status cst = QM_ERR_NOMEM;
            if (user) {
                memcpy(user, prefix, np);
                memcpy(user + np, suffix, ns + 1);
                cst = qm_engine_chat_prompt(eng, user, NULL, &wrapped, &err);
            } else {
                qm_fail(&err, QM_ERR_NOMEM, "out of memory");
            }
            free(user);
            free(suffix);
            suffix = NULL;
            if (cst != QM_OK) goto fail;
            qm_status st = qm_eval_chat_split(wrapped, prefix, &sh, &rest, &err);
            free(wrapped);
            if (st != QM_OK) goto fail;
            if (!shared_text) shared_text = sh;
            else free(sh);
        } else {
            rest = suffix;
        }
        if (!prefix_ids) {
            const char *sh = a.chat ? shared_text : prefix;
            if (*sh) {
                if (tokenize_str(tok, sh, &prefix_ids, &n_prefix, &err) != QM_OK) {
                    free(rest);
                    goto fail;
                }
            } else {
                prefix_ids = malloc(sizeof(int));
                n_prefix = 0;
            }
        }
        int *sid = NULL, ns = 0;
        qm_status st = tokenize_str(tok, rest, &sid, &ns, &err);
        free(rest);
        if (st != QM_OK) goto fail;
        int *ids = malloc((size_t)(n_prefix + ns) * sizeof *ids + 1);
        if (!ids || !prefix_ids) {
            free(sid);
            free(ids);
            qm_fail(&err, QM_ERR_NOMEM, "out of memory");
            goto fail;
        }
        memcpy(ids, prefix_ids, (size_t)n_prefix * sizeof *ids);
        memcpy(ids + n_prefix, sid, (size_t)ns * sizeof *ids);
        free(sid);
        req_ids[n_pending] = ids;
        req_problem[n_pending] = p;
        reqs[n_pending] = (qm_gen_request){
            .prompt = ids,
            .n_prompt = n_prefix + ns,
            .shared_prefix = a.no_prefix_cache ? 0 : n_prefix,
            .max_new_tokens = a.max_new,
            .temperature = 0.0f,
            .top_k = 0,
            .top_p = 1.0f,
            .seed = 0,
            .stop = stops,
            .n_stop = n_stop,
            .stop_at_eos = true,
        };
        n_pending++;
    }

    /* 4. The results file: only the output rank writes it. */
    int run = 1;
    for (int i = 0; i < all.n; i++)
        if (all.items[i].run >= run) run = all.items[i].run + 1;
    if (output_rank) {
        if (a.resume && exists) {
            qm_eval_results again;
            if (qm_eval_results_load(a.out, true, &again, &err) != QM_OK) goto fail; /* drops a cut line */
            if (again.had_partial) fprintf(stderr, "qmesh %s: %s: dropped a truncated last line\n", cmd, a.out);
            qm_eval_results_free(&again);
        }
        out = fopen(a.out, a.resume ? "ab" : "wb");
        if (!out) {
            qm_fail(&err, QM_ERR_IO, "cannot write %s: %s", a.out, strerror(errno));
            goto fail;
        }
        if (a.resume && all.n)
            fprintf(stderr, "qmesh %s: resuming %s: %d done, %d to go\n", cmd, a.out, all.n, n_pending);
    }

    run_ctx ctx = {.out = out, .out_path = a.out, .all = &all, .req_problem = req_problem,
                   .n_total = all.n + n_pending, .n_pending = n_pending, .run = run, .batch = a.eng.batch,
                   .t0 = now_s(), .tty = isatty(2) != 0};
    snprintf(ctx.mesh, sizeof ctx.mesh, "%dx%d", a.eng.rows, a.eng.cols);
    for (int i = 0; i < all.n; i++) ctx.strict_ok += all.items[i].strict_correct, ctx.flex_ok += all.items[i].flex_correct;
    qm_gen_callbacks cb = {.on_done = on_done, .ctx = &ctx};
    qm_gen_stats stats = {0};
    if (n_pending > 0 && qm_engine_generate(eng, reqs, n_pending, &cb, &stats, &err) != QM_OK) goto fail;
    if (ctx.failed) {
        err = ctx.werr;
        goto fail;
    }
    if (output_rank) {
        if (n_pending > 0) progress(&ctx, true);
        if (fclose(out) != 0) {
            out = NULL;
            qm_fail(&err, QM_ERR_IO, "cannot write %s: %s", a.out, strerror(errno));
            goto fail;
        }
        out = NULL;
        qm_eval_summary s;
        qm_eval_summarize(&all, &s);
        double wall = stats.wall_s > 0 ? stats.wall_s : now_s() - ctx.t0;
        printf("{\"n\": %ld, \"strict_acc\": %.6f, \"strict_ci95\": [%.6f, %.6f], \"flex_acc\": %.6f, "
               "\"flex_ci95\": [%.6f, %.6f], \"strict_correct\": %ld, \"flex_correct\": %ld, "
               "\"n_new\": %d, \"tokens_per_s\": %.3f, \"wall_s\": %.3f, \"mesh\": \"%dx%d\", \"batch\": %d, "
               "\"backend\": \"%s\", \"shots\": %d, \"chat\": %s, \"prefix_cache\": %s, \"shared_prefix_tokens\": %d, "
               "\"prompt_tokens\": %ld, \"prefill_tokens\": %ld, \"gen_tokens\": %ld, \"prefill_s\": %.3f, "
               "\"decode_s\": %.3f, \"out\": ",
               s.n, s.strict_acc, s.strict_lo, s.strict_hi, s.flex_acc, s.flex_lo, s.flex_hi, s.strict_correct,
               s.flex_correct, n_pending, wall > 0 ? (double)stats.gen_tokens / wall : 0.0, wall, a.eng.rows, a.eng.cols,
               a.eng.batch, a.eng.backend, a.shots, a.chat ? "true" : "false", a.no_prefix_cache ? "false" : "true",
               n_prefix, stats.prompt_tokens, stats.prefill_tokens, stats.gen_tokens, stats.prefill_s,
               stats.decode_s);
        cJSON *js = cJSON_CreateString(a.out);
        char *jt = js ? cJSON_PrintUnformatted(js) : NULL;
        printf("%s}\n", jt ? jt : "null");
        free(jt);
        cJSON_Delete(js);
    }
    rc = 0;
    goto done;
fail:
    rc = cli_error(cmd, &err);
done:
    if (out) fclose(out);
    for (int i = 0; i < n_pending; i++) free(req_ids[i]);
    free(req_ids);
    free(reqs);
    free(req_problem);
    free(prefix_ids);
    free(prefix);
    free(shared_text);
    if (eng) qm_engine_close(eng);
    qm_eval_results_free(&all);
    qm_eval_data_free(&data);
    qm_eval_data_free(&shots);
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
    "wall = sum over runs (a --resume starts a new run) of the last line's t_ms.\n"
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
