/* qmesh generate: text from a prompt, streamed to stdout. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd.h"
#include "text/chat.h"
#include "util/pool.h"

static const char usage_text[] =
    "usage: qmesh generate -m PATH -p TEXT [-n N] [--temp T] [--top-k K] [--top-p P] [--seed S] [--chat]\n"
    "                      [--mesh RxC] [--backend threads|mpi]\n"
    "\nGenerates a completion of TEXT and streams it to stdout; statistics go to stderr, with why it\n"
    "stopped: end of text, stop string, -n N tokens, or context full (--ctx).\n\noptions:\n"
    "  -p, --prompt TEXT    the prompt\n"
    "  -n, --n-predict N    tokens to generate at most (default 128)\n"
    "  --temp T             temperature; 0 = greedy (default 0)\n"
    "  --top-k K            keep the K most likely tokens (default 0 = off)\n"
    "  --top-p P            nucleus sampling threshold (default 1 = off)\n"
    "  --seed S             random seed for sampling (default 0)\n"
    "  --chat               wrap the prompt in the model's chat format (system + user + assistant turn)\n"
    "  --system TEXT        system message with --chat (default: the chat template's)\n"
    "  --parse-special      with --chat, special tokens written in the messages (\"<|im_start|>\") become\n"
    "                       control tokens; by default they stay plain text (without --chat, -p TEXT\n"
    "                       is tokenized as written, special tokens included)\n"
    "  --stop STR           stop before this text (repeatable; \\n and \\t are newline and tab)\n"
    "  --ignore-eos         do not stop at end-of-text tokens\n";

typedef struct {
    long n_text;
    int done, n_ids;          /* on_done came; the tokens generated */
    qm_stop_reason reason;
} gen_ctx;

/* --stop takes C escapes (\\n, \\t, \\\\) so that "\\n\\n" can be typed in a shell. In place. */
static void unescape(char *s) {
    char *w = s;
    for (const char *r = s; *r; r++) {
        if (*r == '\\' && (r[1] == 'n' || r[1] == 't' || r[1] == '\\')) {
            r++;
            *w++ = *r == 'n' ? '\n' : *r == 't' ? '\t' : '\\';
        } else {
            *w++ = *r;
        }
    }
    *w = 0;
}

static void on_text(void *ctx, int index, const char *text) {
    (void)index;
    gen_ctx *g = ctx;
    fputs(text, stdout);
    fflush(stdout);
    g->n_text++;
}

static void on_done(void *ctx, int index, const qm_gen_result *r) {
    (void)index;
    gen_ctx *g = ctx;
    g->done = 1;
    g->n_ids = r->n_ids;
    g->reason = r->reason;
}

typedef struct {
    qm_engine_opts o;
    char mesh[32];
    const char *prompt, *system;
    const char *stops[16];
    int n_stops;
    long n_predict, top_k, seed;
    double temp, top_p;
    bool chat, ignore_eos, parse_special;
} gen_args;

/* A flag that takes a value (argv[i] = f, v its value); 0, or a usage error's status. */
static int value_flag(gen_args *a, const char *f, char *v) {
    const char *cmd = "generate";
    if (!strcmp(f, "-p") || !strcmp(f, "--prompt")) a->prompt = v;
    else if (!strcmp(f, "--system")) a->system = v;
    else if (!strcmp(f, "--stop")) {
        if (a->n_stops == 16) return cli_usage_error(cmd, "at most 16 --stop strings");
        if (!*v) return cli_usage_error(cmd, "--stop needs a non-empty string");
        unescape(v);
        a->stops[a->n_stops++] = v;
    } else if (!strcmp(f, "-n") || !strcmp(f, "--n-predict")) {
        if (!cli_parse_int(v, 0, 1 << 20, &a->n_predict)) return cli_usage_error(cmd, "-n needs an integer >= 0");
    } else if (!strcmp(f, "--top-k")) {
        if (!cli_parse_int(v, 0, 1 << 20, &a->top_k)) return cli_usage_error(cmd, "--top-k needs an integer >= 0");
    } else if (!strcmp(f, "--seed")) {
        if (!cli_parse_int(v, 0, 0x7fffffffffffffffL, &a->seed)) return cli_usage_error(cmd, "--seed needs an integer >= 0");
    } else if (!strcmp(f, "--temp")) {
        if (!cli_parse_float(v, 0.0, 100.0, &a->temp)) return cli_usage_error(cmd, "--temp needs a number in [0, 100]");
    } else if (!strcmp(f, "--top-p")) {
        if (!cli_parse_float(v, 0.0, 1.0, &a->top_p) || a->top_p <= 0.0)
            return cli_usage_error(cmd, "--top-p needs a number in (0, 1]");
    } else
        return cli_usage_error(cmd, "unknown option '%s'", f);
    return 0;
}

/* 0: run; 1: --help printed; 2: a usage error (printed). */
static int parse_args(int argc, char **argv, gen_args *a) {
    const char *cmd = "generate";
    *a = (gen_args){.n_predict = 128, .top_p = 1.0};
    cli_engine_defaults(&a->o);
    snprintf(a->mesh, sizeof a->mesh, "1x1");
    for (int i = 1; i < argc; i++) {
        const char *f = argv[i];
        int r = cli_subcommand_flag(cmd, usage_text, argc, argv, &i, &a->o, a->mesh, sizeof a->mesh);
        if (r == CLI_FLAG_HELP) return 1;
        if (r < 0) return 2;
        if (r) continue;
        if (!strcmp(f, "--chat")) { a->chat = true; continue; }
        if (!strcmp(f, "--parse-special")) { a->parse_special = true; continue; }
        if (!strcmp(f, "--ignore-eos")) { a->ignore_eos = true; continue; }
        if (i + 1 >= argc) return cli_usage_error(cmd, "unknown or incomplete option '%s'", f);
        if (value_flag(a, f, argv[++i])) return 2;
    }
    if (!a->o.model_dir) return cli_usage_error(cmd, "-m PATH (a GGUF file or a model folder) is required");
    if (!a->prompt) return cli_usage_error(cmd, "-p TEXT is required");
    cli_engine_finalize(&a->o);
    a->o.quiet = true;
    return 0;
}

/* The prompt's ids: the chat format around it with --chat, else tokenized as written. */
static qm_status prompt_ids(qm_engine *e, const gen_args *a, int **ids, int *n, qm_error *err) {
    const qm_tokenizer *tok = qm_engine_tokenizer(e);
    if (!tok) return qm_fail(err, QM_ERR_IO, "%s has no tokenizer.json: generate needs one", a->o.model_dir);
    qm_status st = a->chat ? qm_engine_chat_ids(e, a->prompt, a->system, a->parse_special, ids, n, err)
                           : qm_tokenize(tok, a->prompt, strlen(a->prompt), ids, n, err);
    if (!st && *n == 0) st = qm_fail(err, QM_ERR_ARG, "the prompt is empty");
    return st;
}

/* Why the generation ended, in words: a length stop short of -n is the context's end. */
static void stop_words(qm_engine *e, const gen_args *a, const gen_ctx *g, char *buf, size_t size) {
    if (!g->done) snprintf(buf, size, "unknown");
    else if (g->reason == QM_STOP_EOS) snprintf(buf, size, "end of text");
    else if (g->reason == QM_STOP_STRING) snprintf(buf, size, "stop string");
    else if (g->reason == QM_STOP_CANCELLED) snprintf(buf, size, "cancelled");
    else if (g->n_ids < a->n_predict)
        snprintf(buf, size, "context full (%d positions; --ctx)", qm_engine_max_context(e));
    else snprintf(buf, size, "-n %ld tokens", a->n_predict);
}

static void print_stats(qm_engine *e, const gen_args *a, const gen_ctx *g, const qm_gen_stats *stats) {
    qm_engine_info info;
    qm_engine_get_info(e, &info);
    char why[96];
    stop_words(e, a, g, why, sizeof why);
    fprintf(stderr,
            "qmesh generate: mesh %s, %ld prompt + %ld generated tokens in %.2f s (%.2f tok/s generated), "
            "stopped: %s; load %.2f s; device weights %.1f MB; resident %.1f MB\n",
            a->mesh, stats->prompt_tokens, stats->gen_tokens, stats->wall_s,
            stats->wall_s > 0 ? stats->gen_tokens / stats->wall_s : 0.0, why, info.load_s,
            info.device_weight_bytes_max / 1e6, qm_resident_bytes() / 1e6);
}

int cmd_generate(int argc, char **argv) {
    gen_args a;
    const int r = parse_args(argc, argv, &a);
    if (r) return r == 1 ? 0 : 2;
    qm_error err = {0};
    qm_engine *e = NULL;
    if (qm_engine_open(&a.o, &e, &err)) return cli_error("generate", &err);
    int rc = 0, *ids = NULL, n_ids = 0;
    qm_gen_stats stats;
    gen_ctx g = {0};
    qm_status st = prompt_ids(e, &a, &ids, &n_ids, &err);
    if (!st) {
        qm_gen_request req = {
            .prompt = ids, .n_prompt = n_ids, .max_new_tokens = (int)a.n_predict, .temperature = (float)a.temp,
            .top_k = (int)a.top_k, .top_p = (float)a.top_p, .seed = (uint64_t)a.seed, .stop = a.stops,
            .n_stop = a.n_stops, .stop_at_eos = !a.ignore_eos,
        };
        qm_gen_callbacks cb = {.on_done = on_done, .on_text = on_text, .ctx = &g};
        st = qm_engine_generate(e, &req, 1, &cb, &stats, &err);
    }
    if (st) {
        fflush(stdout);
        rc = cli_error("generate", &err);
    } else if (qm_engine_is_output_rank(e)) {
        printf("\n");
        fflush(stdout);
        print_stats(e, &a, &g, &stats);
    }
    free(ids);
    qm_engine_close(e);
    return rc;
}
