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
    "\nGenerates a completion of TEXT and streams it to stdout; statistics go to stderr.\n\noptions:\n"
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

int cmd_generate(int argc, char **argv) {
    const char *cmd = "generate", *prompt = NULL, *system = NULL;
    const char *stops[16];
    int n_stops = 0;
    long n_predict = 128, top_k = 0, seed = 0;
    double temp = 0.0, top_p = 1.0;
    bool chat = false, ignore_eos = false, parse_special = false;
    qm_engine_opts o;
    cli_engine_defaults(&o);
    char mesh[32] = "1x1";
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            printf("%s%s", usage_text, cli_engine_flags_help);
            return 0;
        }
        int r = cli_engine_flag(cmd, argc, argv, &i, &o, mesh, sizeof mesh);
        if (r < 0) return 2;
        if (r) continue;
        if (!strcmp(a, "--chat")) { chat = true; continue; }
        if (!strcmp(a, "--parse-special")) { parse_special = true; continue; }
        if (!strcmp(a, "--ignore-eos")) { ignore_eos = true; continue; }
        if (i + 1 >= argc) return cli_usage_error(cmd, "unknown or incomplete option '%s'", a);
        const char *v = argv[++i];
        if (!strcmp(a, "-p") || !strcmp(a, "--prompt")) prompt = v;
        else if (!strcmp(a, "--system")) system = v;
        else if (!strcmp(a, "--stop")) {
            if (n_stops == 16) return cli_usage_error(cmd, "at most 16 --stop strings");
            if (!*v) return cli_usage_error(cmd, "--stop needs a non-empty string");
            unescape(argv[i]);
            stops[n_stops++] = argv[i];
        } else if (!strcmp(a, "-n") || !strcmp(a, "--n-predict")) {
            if (!cli_parse_int(v, 0, 1 << 20, &n_predict)) return cli_usage_error(cmd, "-n needs an integer >= 0");
        } else if (!strcmp(a, "--top-k")) {
            if (!cli_parse_int(v, 0, 1 << 20, &top_k)) return cli_usage_error(cmd, "--top-k needs an integer >= 0");
        } else if (!strcmp(a, "--seed")) {
            if (!cli_parse_int(v, 0, 0x7fffffffffffffffL, &seed)) return cli_usage_error(cmd, "--seed needs an integer >= 0");
        } else if (!strcmp(a, "--temp")) {
            if (!cli_parse_float(v, 0.0, 100.0, &temp)) return cli_usage_error(cmd, "--temp needs a number in [0, 100]");
        } else if (!strcmp(a, "--top-p")) {
            if (!cli_parse_float(v, 0.0, 1.0, &top_p) || top_p <= 0.0)
                return cli_usage_error(cmd, "--top-p needs a number in (0, 1]");
        } else
            return cli_usage_error(cmd, "unknown option '%s'", a);
    }
    if (!o.model_dir) return cli_usage_error(cmd, "-m PATH (a GGUF file or a model folder) is required");
    if (!prompt) return cli_usage_error(cmd, "-p TEXT is required");
    cli_engine_finalize(&o);
    o.quiet = true;
    qm_error err = {0};
    qm_engine *e = NULL;
    if (qm_engine_open(&o, &e, &err)) return cli_error(cmd, &err);
    const qm_tokenizer *tok = qm_engine_tokenizer(e);
    int rc = 0, *ids = NULL, n_ids = 0;
    if (!tok) {
        qm_fail(&err, QM_ERR_IO, "%s has no tokenizer.json: generate needs one", o.model_dir);
        rc = cli_error(cmd, &err);
        goto done;
    }
    qm_status tst = chat ? qm_engine_chat_ids(e, prompt, system, parse_special, &ids, &n_ids, &err)
                         : qm_tokenize(tok, prompt, strlen(prompt), &ids, &n_ids, &err);
    if (tst) {
        rc = cli_error(cmd, &err);
        goto done;
    }
    if (n_ids == 0) {
        qm_fail(&err, QM_ERR_ARG, "the prompt is empty");
        rc = cli_error(cmd, &err);
        goto done;
    }
    qm_gen_request req = {
        .prompt = ids, .n_prompt = n_ids, .max_new_tokens = (int)n_predict, .temperature = (float)temp,
        .top_k = (int)top_k, .top_p = (float)top_p, .seed = (uint64_t)seed, .stop = stops, .n_stop = n_stops,
        .stop_at_eos = !ignore_eos,
    };
    gen_ctx g = {0};
    qm_gen_callbacks cb = {.on_text = on_text, .ctx = &g};
    qm_gen_stats stats;
    if (qm_engine_generate(e, &req, 1, &cb, &stats, &err)) {
        fflush(stdout);
        rc = cli_error(cmd, &err);
        goto done;
    }
    if (qm_engine_is_output_rank(e)) {
        printf("\n");
        fflush(stdout);
        qm_engine_info info;
        qm_engine_get_info(e, &info);
        fprintf(stderr,
                "qmesh generate: mesh %s, %ld prompt + %ld generated tokens in %.2f s (%.2f tok/s generated); "
                "load %.2f s; device weights %.1f MB; resident %.1f MB\n",
                mesh, stats.prompt_tokens, stats.gen_tokens, stats.wall_s,
                stats.wall_s > 0 ? stats.gen_tokens / stats.wall_s : 0.0, info.load_s,
                info.device_weight_bytes_max / 1e6, qm_resident_bytes() / 1e6);
    }
done:
    free(ids);

    qm_engine_close(e);
    return rc;
}
