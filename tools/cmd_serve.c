/* qmesh serve: the OpenAI-compatible HTTP server (src/server/) over an engine on any mesh.
 *
 * Signals: SIGTERM and SIGINT are blocked in every thread (before any is started) and taken by
 * one thread with sigwait, so no handler and no global state: it closes the server (no new
 * connections or requests), lets the running requests finish for --shutdown-timeout seconds,
 * then cancels the rest; the serving loop then returns and the program exits 0. Under mpirun only
 * world rank 0 listens; every rank computes, and learns of new requests by broadcast. */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cmd.h"
#include "server/server.h"

static const char usage_text[] =
    "usage: qmesh serve -m PATH [--mesh RxC] [--host 127.0.0.1] [--port 8080] [--batch B] [--ctx N]\n"
    "                   [--api-key KEY] [--max-queue N]\n"
    "\nServes the model over HTTP with an OpenAI-compatible API: POST /v1/completions,\n"
    "/v1/chat/completions (stream, stop, seed, temperature, top_p, top_k, max_tokens, logprobs),\n"
    "/tokenize, /detokenize; GET /v1/models, /health, /metrics (Prometheus). Requests are batched\n"
    "continuously across the mesh's rows; a seeded or greedy request gives the same text (and\n"
    "logprobs) whatever the load and the mesh.\n\noptions:\n"
    "  --host ADDR          IPv4 address to listen on (default 127.0.0.1: this machine only)\n"
    "  --port N             TCP port (default 8080; 0: any free port, printed on stderr)\n"
    "  --api-key KEY        require 'Authorization: Bearer KEY' (default: no key)\n"
    "  --max-queue N        requests waiting at most; more are answered 429 (default 64)\n"
    "  --max-body BYTES     request body size at most; larger ones are answered 413 (default 1048576)\n"
    "  --model-name NAME    the model's name in the API (default: the file or folder name of -m)\n"
    "  --shutdown-timeout S after SIGTERM, seconds running requests may take to finish before they\n"
    "                       are cancelled (default 10)\n";

typedef struct {
    qm_engine_opts o;
    char mesh[32];
    qm_server_opts so;
    char name[256];
    long port, max_queue, max_body, shutdown_s;
} serve_args;

static int value_flag(serve_args *a, const char *f, const char *v) {
    const char *cmd = "serve";
    if (!strcmp(f, "--host")) a->so.host = v;
    else if (!strcmp(f, "--api-key")) {
        if (!*v) return cli_usage_error(cmd, "--api-key needs a non-empty key");
        a->so.api_key = v;
    } else if (!strcmp(f, "--model-name")) snprintf(a->name, sizeof a->name, "%s", v);
    else if (!strcmp(f, "--port")) {
        if (!cli_parse_int(v, 0, 65535, &a->port)) return cli_usage_error(cmd, "--port needs an integer in [0, 65535]");
    } else if (!strcmp(f, "--max-queue")) {
        if (!cli_parse_int(v, 1, 1 << 20, &a->max_queue)) return cli_usage_error(cmd, "--max-queue needs an integer >= 1");
    } else if (!strcmp(f, "--max-body")) {
        if (!cli_parse_int(v, 64, 1L << 30, &a->max_body)) return cli_usage_error(cmd, "--max-body needs an integer in [64, 2^30]");
    } else if (!strcmp(f, "--shutdown-timeout")) {
        if (!cli_parse_int(v, 0, 86400, &a->shutdown_s)) return cli_usage_error(cmd, "--shutdown-timeout needs seconds >= 0");
    } else
        return cli_usage_error(cmd, "unknown option '%s'", f);
    return 0;
}

/* The default API name of the model: the last part of its path. */
static void default_name(serve_args *a) {
    if (a->name[0]) return;
    char path[4096];
    snprintf(path, sizeof path, "%s", a->o.model_dir);
    size_t n = strlen(path);
    while (n > 1 && path[n - 1] == '/') path[--n] = 0;
    const char *slash = strrchr(path, '/');
    snprintf(a->name, sizeof a->name, "%.*s", (int)sizeof a->name - 1, slash ? slash + 1 : path);
}

/* 0: run; 1: --help printed; 2: a usage error (printed). */
static int parse_args(int argc, char **argv, serve_args *a) {
    const char *cmd = "serve";
    *a = (serve_args){.port = 8080, .max_queue = 64, .max_body = 1 << 20, .shutdown_s = 10};
    cli_engine_defaults(&a->o);
    snprintf(a->mesh, sizeof a->mesh, "1x1");
    for (int i = 1; i < argc; i++) {
        const char *f = argv[i];
        int r = cli_subcommand_flag(cmd, usage_text, argc, argv, &i, &a->o, a->mesh, sizeof a->mesh);
        if (r == CLI_FLAG_HELP) return 1;
        if (r < 0) return 2;
        if (r) continue;
        if (i + 1 >= argc) return cli_usage_error(cmd, "unknown or incomplete option '%s'", f);
        if (value_flag(a, f, argv[++i])) return 2;
    }
    if (!a->o.model_dir) return cli_usage_error(cmd, "-m PATH (a GGUF file or a model folder) is required");
    cli_engine_finalize(&a->o);
    a->o.quiet = true;
    default_name(a);
    a->so.port = (int)a->port;
    a->so.max_queue = (int)a->max_queue;
    a->so.max_body = (size_t)a->max_body;
    a->so.model_name = a->name;
    return 0;
}

/* The thread that takes SIGTERM/SIGINT (see the top of the file); SIGUSR1 from main ends it. */
typedef struct {
    qm_server *s; /* NULL on ranks other than 0 */
    long grace_s;
    sigset_t set;
} signal_ctx;

static void *signal_main(void *arg) {
    signal_ctx *g = arg;
    int sig = 0;
    while (!sigwait(&g->set, &sig) && sig != SIGUSR1 && !g->s) {
    } /* ranks other than 0: rank 0's stop reaches them by broadcast */
    if (sig == SIGUSR1) return NULL;
    fprintf(stderr, "qmesh serve: signal %d: no new requests; finishing those running (at most %ld s)\n", sig,
            g->grace_s);
    qm_server_close(g->s, false);
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    const struct timespec tick = {0, 100 * 1000000L};
    for (bool cancelled = false;;) {
        siginfo_t info;
        sig = sigtimedwait(&g->set, &info, &tick);
        if (sig == SIGUSR1) return NULL;
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (!cancelled && (sig == SIGTERM || sig == SIGINT || now.tv_sec - t0.tv_sec >= g->grace_s)) {
            fprintf(stderr, "qmesh serve: cancelling the requests still running\n");
            qm_server_close(g->s, true);
            cancelled = true;
        }
    }
}

static int serve(serve_args *a, sigset_t *set) {
    qm_error err = {0};
    qm_engine *e = NULL;
    if (qm_engine_open(&a->o, &e, &err)) return cli_error("serve", &err);
    qm_server *s = NULL;
    if (qm_engine_is_output_rank(e) && qm_server_start(&a->so, e, &s, &err)) {
        qm_engine_close(e);
        return cli_error("serve", &err);
    }
    if (s)
        fprintf(stderr, "qmesh serve: listening on http://%s:%d (model %s, mesh %s, batch %d per row)\n",
                a->so.host ? a->so.host : "127.0.0.1", qm_server_port(s), a->name, a->mesh, a->o.batch);
    signal_ctx g = {.s = s, .grace_s = a->shutdown_s, .set = *set};
    pthread_t th;
    const bool have_thread = pthread_create(&th, NULL, signal_main, &g) == 0;
    if (!have_thread) qm_server_close(s, true);
    qm_status st = qm_server_run_engine(s, e, &err);
    if (have_thread) {
        pthread_kill(th, SIGUSR1);
        pthread_join(th, NULL);
    }
    qm_server_free(s); /* waits for the connections still answering */
    qm_engine_close(e);
    if (st) return cli_error("serve", &err);
    if (s) fprintf(stderr, "qmesh serve: stopped\n");
    return 0;
}

int cmd_serve(int argc, char **argv) {
    serve_args a;
    const int r = parse_args(argc, argv, &a);
    if (r) return r == 1 ? 0 : 2;
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGUSR1);
    pthread_sigmask(SIG_BLOCK, &set, NULL); /* before any thread starts: all inherit it */
    signal(SIGPIPE, SIG_IGN);               /* a client gone mid-answer is an error return, not a signal */
    return serve(&a, &set);
}
