/* The endpoints: generation (whole or streamed), tokenize, detokenize, metrics. */
#include "server/server_internal.h"

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "server/response.h"
#include "text/tokenizer.h"

#define INVALID "invalid_request_error"

/* The chat prompt's tokens before the user message (the system turn), shared by every request
 * with that system message: the common start of the prompt and of the same chat with an empty
 * user message (the template's text after the user message starts with a control token, which a
 * message tokenized as plain text never holds). 0 when it cannot be worked out. */
static int chat_prefix(qm_server *s, const qm_api_request *a, const int *ids, int n) {
    int *empty = NULL, m = 0;
    qm_error err = {0};
    if (qm_engine_chat_ids(s->engine, "", a->system, false, &empty, &m, &err)) return 0;
    int k = 0;
    while (k < n && k < m && ids[k] == empty[k]) k++;
    free(empty);
    return k < n ? k : 0;
}

/* A conversation of more than one turn as token ids, in the engine's chat format, with the
 * system message or else the default system prompt that the engine gives one turn. */
static qm_status conversation_ids(qm_server *s, const qm_api_request *a, int **ids, int *n, qm_error *err) {
    qm_chat_format fmt;
    char *one = NULL, *sys = NULL;
    qm_status st = qm_engine_chat_format(s->engine, &fmt, err);
    if (!st && !a->system && !(st = qm_engine_chat_prompt(s->engine, "", NULL, &one, err)))
        st = qm_chat_prompt_system(fmt, one, &sys, err);
    if (!st)
        st = qm_chat_ids(qm_engine_tokenizer(s->engine), fmt, a->messages, a->n_messages, sys, false, ids, n, err);
    free(one);
    free(sys);
    return st;
}

/* The prompt's token ids: the chat format around the messages, the prompt text tokenized as
 * written (special tokens included, as `qmesh generate -p`), or the ids given. *prefix: the
 * tokens shared with other requests (the chat's system turn), 0 = none. */
static bool prompt_ids(qm_server *s, const qm_api_request *a, int **ids, int *n, int *prefix, qm_api_error *e) {
    *prefix = 0;
    qm_error err = {0};
    const qm_tokenizer *tok = qm_engine_tokenizer(s->engine);
    *ids = NULL;
    *n = 0;
    if (a->kind == QM_API_COMPLETION && a->prompt_ids) {
        if (!(*ids = malloc((size_t)a->n_prompt_ids * sizeof(int)))) return qm_api_fail(e, 500, "server_error", NULL, NULL, "out of memory");
        memcpy(*ids, a->prompt_ids, (size_t)a->n_prompt_ids * sizeof(int));
        *n = a->n_prompt_ids;
        return true;
    }
    if (!tok) return qm_api_fail(e, 400, INVALID, NULL, NULL, "the model has no tokenizer: give the prompt as token ids");
    qm_status st = a->kind == QM_API_COMPLETION ? qm_tokenize(tok, a->prompt, strlen(a->prompt), ids, n, &err)
                   : qm_api_one_turn(a) ? qm_engine_chat_ids(s->engine, a->user, a->system, false, ids, n, &err)
                                        : conversation_ids(s, a, ids, n, &err);
    if (st) return qm_api_fail(e, 400, INVALID, a->kind == QM_API_CHAT ? "messages" : "prompt", NULL, "%s", err.msg);
    if (*n == 0) return qm_api_fail(e, 400, INVALID, "prompt", NULL, "the prompt is empty");
    if (a->kind == QM_API_CHAT) *prefix = chat_prefix(s, a, *ids, *n);
    return true;
}

/* The engine's request: length and sampling, checked against the context. */
static bool gen_params(qm_server *s, const qm_api_request *a, const int *ids, int n, int prefix, qm_gen_request *q,
                       qm_api_error *e) {
    const int ctx = qm_engine_max_context(s->engine);
    if (n >= ctx)
        return qm_api_fail(e, 400, INVALID, a->kind == QM_API_CHAT ? "messages" : "prompt", "context_length_exceeded",
                           "the prompt has %d tokens, but this server's context is %d tokens (prompt and completion "
                           "together)", n, ctx);
    const int max = a->max_tokens >= 0 ? a->max_tokens : a->kind == QM_API_COMPLETION ? 16 : ctx - n;
    if (n + max > ctx)
        return qm_api_fail(e, 400, INVALID, "max_tokens", "context_length_exceeded",
                           "the prompt (%d tokens) and max_tokens (%d) exceed this server's context of %d tokens", n,
                           max, ctx);
    *q = (qm_gen_request){
        .prompt = ids, .n_prompt = n, .shared_prefix = prefix, .max_new_tokens = max, .temperature = (float)a->temperature,
        .top_k = a->top_k, .top_p = (float)a->top_p,
        .seed = a->has_seed ? a->seed : atomic_fetch_add(&s->unseeded, 0x9e3779b97f4a7c15ull),
        .stop = (const char *const *)a->stop, .n_stop = a->n_stop, .stop_at_eos = !a->ignore_eos, .rng_stream = 0,
        .logprobs = a->logprobs,
    };
    qm_error err = {0};
    if (qm_engine_check_request(s->engine, q, &err)) return qm_api_fail(e, 400, INVALID, "prompt", NULL, "%s", err.msg);
    return true;
}

/* One token's bytes (qm_token_namer). */
static char *token_bytes(void *ctx, int id, size_t *len) {
    qm_server *s = ctx;
    const qm_tokenizer *tok = qm_engine_tokenizer(s->engine);
    char *text = NULL;
    qm_error err = {0};
    if (!tok || qm_detokenize(tok, &id, 1, &text, len, &err)) return NULL;
    return text;
}

/* A streamed answer: server-sent events as text comes (with its tokens' logprobs when asked), then
 * the last chunk and [DONE]. */
typedef struct {
    qm_server *s;
    qm_job *j;
    size_t sent;      /* text bytes sent */
    int sent_tok;     /* tokens sent with their logprobs (requests that ask for them) */
    size_t offset;    /* completions' text_offset of the next token */
    char *out;        /* the event being written */
    size_t out_len, out_pos;
    bool first;
    int stage;        /* 0: text; 1: the last chunk written, [DONE] next; 2: all written */
} stream_ctx;

/* The next event into t->out; false when there is none left or no memory. */
static bool next_event(stream_ctx *t) {
    while (!t->out) {
        if (t->stage == 2) return false;
        if (t->stage == 1) {
            t->stage = 2;
            if (!(t->out = strdup("data: [DONE]\n\n"))) return false;
            break;
        }
        qm_job_piece pc;
        const bool done = qm_jobs_wait(&t->s->jobs, t->j, t->sent, t->sent_tok, 1000, &pc);
        const bool some = pc.len || pc.n_tok;
        if (some) {
            const qm_token_namer names = {.text = token_bytes, .ctx = t->s};
            const qm_resp_logprobs toks = {.ids = pc.ids, .logprobs = pc.logprobs, .n = pc.n_tok,
                                           .offset = &t->offset, .names = &names};
            t->out = qm_resp_chunk_logprobs(t->j, t->s->model_name, t->s->created, pc.text ? pc.text : "", pc.len,
                                            t->first, false, &toks);
            t->first = false;
            t->sent += pc.len;
            t->sent_tok += pc.n_tok;
        } else if (done && t->j->reason == QM_STOP_CANCELLED) {
            qm_api_error e;
            qm_api_fail(&e, 503, "server_error", NULL, "cancelled", "the request was cancelled (server shutting down)");
            char *json = qm_resp_error(&e);
            size_t len = json ? strlen(json) + 16 : 0;
            if (json && (t->out = malloc(len))) snprintf(t->out, len, "data: %s\n\n", json);
            free(json);
            t->stage = 1;
        } else if (done) {
            t->out = qm_resp_chunk(t->j, t->s->model_name, t->s->created, "", 0, t->first, true);
            t->stage = 1;
        }
        qm_job_piece_free(&pc);
        if ((some || done) && !t->out) return false;
    }
    t->out_len = strlen(t->out);
    t->out_pos = 0;
    return true;
}

static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max) {
    (void)pos;
    stream_ctx *t = cls;
    if (!t->out && !next_event(t)) return t->stage == 2 ? MHD_CONTENT_READER_END_OF_STREAM : MHD_CONTENT_READER_END_WITH_ERROR;
    size_t n = t->out_len - t->out_pos;
    if (n > max) n = max;
    memcpy(buf, t->out + t->out_pos, n);
    t->out_pos += n;
    if (t->out_pos == t->out_len) {
        free(t->out);
        t->out = NULL;
    }
    return (ssize_t)n;
}

/* The client is gone or the answer is complete: a job not done yet is cancelled. */
static void stream_free(void *cls) {
    stream_ctx *t = cls;
    qm_jobs_leave(&t->s->jobs, t->j);
    free(t->out);
    free(t);
}

static enum MHD_Result answer_stream(qm_server *s, struct MHD_Connection *c, qm_job *j) {
    stream_ctx *t = calloc(1, sizeof *t);
    struct MHD_Response *r = t ? MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096, stream_read, t, stream_free) : NULL;
    if (!r) {
        free(t);
        qm_jobs_leave(&s->jobs, j);
        return MHD_NO;
    }
    *t = (stream_ctx){.s = s, .j = j, .first = true};
    MHD_add_response_header(r, "Content-Type", "text/event-stream");
    MHD_add_response_header(r, "Cache-Control", "no-cache");
    enum MHD_Result ok = MHD_queue_response(c, 200, r);
    MHD_destroy_response(r);
    qm_metrics_http(&s->metrics, 200);
    return ok;
}

/* Whether the client closed its connection (read EOF or an error on the socket). libmicrohttpd
 * cannot tell while the connection's thread waits in this handler (and does not watch suspended
 * connections), so the waiting thread looks at the socket itself. A client that only shut down its
 * sending side looks the same: HTTP clients do not. */
static bool client_gone(struct MHD_Connection *c) {
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (!ci) return false;
    struct pollfd p = {.fd = ci->connect_fd, .events = POLLIN};
    if (poll(&p, 1, 0) <= 0) return false;
    if (p.revents & (POLLERR | POLLHUP | POLLNVAL)) return true;
    char b;
    const ssize_t k = recv(ci->connect_fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
    return k == 0 || (k < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
}

/* The whole answer once the job is done (the HTTP thread waits for it, and cancels it when the
 * client goes away: its sequence is freed at the next step boundary). */
static enum MHD_Result answer_whole(qm_server *s, struct MHD_Connection *c, qm_job *j) {
    while (!qm_jobs_wait(&s->jobs, j, (size_t)-1, INT_MAX, 200, NULL)) {
        if (client_gone(c)) { /* answered for the log and metrics (nginx's 499); nobody reads it */
            qm_jobs_leave(&s->jobs, j);
            qm_api_error e;
            qm_api_fail(&e, 499, "invalid_request_error", NULL, "client_closed_request",
                        "the client closed the connection before the answer");
            return qm_http_error(s, c, &e);
        }
    }
    enum MHD_Result ok;
    if (j->reason == QM_STOP_CANCELLED) {
        qm_api_error e;
        qm_api_fail(&e, 503, "server_error", NULL, "cancelled", "the request was cancelled (server shutting down)");
        ok = qm_http_error(s, c, &e);
    } else {
        const qm_token_namer names = {.text = token_bytes, .ctx = s};
        ok = qm_http_json(s, c, 200, qm_resp_final(j, s->model_name, s->created, &names));
    }
    qm_jobs_leave(&s->jobs, j);
    return ok;
}

enum MHD_Result qm_handle_generate(qm_server *s, struct MHD_Connection *c, qm_api_kind kind, const qm_http_request *r) {
    qm_api_request api;
    qm_api_error e = {0};
    if (!qm_api_parse(kind, r->body, r->len, &api, &e)) return qm_http_error(s, c, &e);
    int *ids = NULL, n = 0, prefix = 0;
    qm_gen_request q;
    bool ok = true;
    if (api.model && strcmp(api.model, s->model_name))
        ok = qm_api_fail(&e, 400, INVALID, "model", "model_not_found", "the model '%.200s' does not exist here (this "
                         "server has '%s')", api.model, s->model_name);
    ok = ok && prompt_ids(s, &api, &ids, &n, &prefix, &e) && gen_params(s, &api, ids, n, prefix, &q, &e);
    if (!ok) {
        free(ids);
        qm_api_request_free(&api);
        return qm_http_error(s, c, &e);
    }
    qm_job *j = qm_job_new(ids, n, &api, &q);
    if (!j) return qm_http_json(s, c, 500, NULL);
    const qm_submit_result sub = qm_jobs_submit(&s->jobs, j);
    if (sub != QM_SUBMIT_OK) {
        qm_jobs_leave(&s->jobs, j);
        if (sub == QM_SUBMIT_FULL) {
            qm_metrics_rejected(&s->metrics);
            qm_api_fail(&e, 429, "rate_limit_error", NULL, "queue_full",
                        "the request queue is full (%d waiting); retry later", s->o.max_queue);
        } else {
            qm_api_fail(&e, 503, "server_error", NULL, "shutting_down", "the server is shutting down");
        }
        return qm_http_error(s, c, &e);
    }
    return j->api.stream ? answer_stream(s, c, j) : answer_whole(s, c, j);
}

enum MHD_Result qm_handle_tokenize(qm_server *s, struct MHD_Connection *c, const qm_http_request *r) {
    qm_api_error e = {0};
    char *text = NULL;
    if (!qm_api_parse_tokenize(r->body, r->len, &text, &e)) return qm_http_error(s, c, &e);
    const qm_tokenizer *tok = qm_engine_tokenizer(s->engine);
    int *ids = NULL, n = 0;
    qm_error err = {0};
    enum MHD_Result ok;
    if (!tok) {
        qm_api_fail(&e, 400, INVALID, NULL, NULL, "the model has no tokenizer");
        ok = qm_http_error(s, c, &e);
    } else if (qm_tokenize(tok, text, strlen(text), &ids, &n, &err)) {
        qm_api_fail(&e, 400, INVALID, "prompt", NULL, "%s", err.msg);
        ok = qm_http_error(s, c, &e);
    } else {
        ok = qm_http_json(s, c, 200, qm_resp_tokens(ids, n, qm_engine_max_context(s->engine)));
    }
    free(ids);
    free(text);
    return ok;
}

enum MHD_Result qm_handle_detokenize(qm_server *s, struct MHD_Connection *c, const qm_http_request *r) {
    qm_api_error e = {0};
    int *ids = NULL, n = 0;
    if (!qm_api_parse_detokenize(r->body, r->len, &ids, &n, &e)) return qm_http_error(s, c, &e);
    const qm_tokenizer *tok = qm_engine_tokenizer(s->engine);
    char *text = NULL;
    size_t len = 0;
    qm_error err = {0};
    enum MHD_Result ok;
    if (!tok || qm_detokenize(tok, ids, n, &text, &len, &err)) {
        qm_api_fail(&e, 400, INVALID, "tokens", NULL, "%s", tok ? err.msg : "the model has no tokenizer");
        ok = qm_http_error(s, c, &e);
    } else {
        ok = qm_http_json(s, c, 200, qm_resp_text(text));
    }
    free(ids);
    free(text);
    return ok;
}

enum MHD_Result qm_handle_metrics(qm_server *s, struct MHD_Connection *c) {
    int waiting = 0, running = 0;
    qm_jobs_counts(&s->jobs, &waiting, &running);
    char *text = qm_metrics_render(&s->metrics, waiting, running);
    if (!text) return qm_http_json(s, c, 500, NULL);
    struct MHD_Response *r = MHD_create_response_from_buffer(strlen(text), text, MHD_RESPMEM_MUST_FREE);
    if (!r) {
        free(text);
        return MHD_NO;
    }
    MHD_add_response_header(r, "Content-Type", "text/plain; version=0.0.4");
    enum MHD_Result ok = MHD_queue_response(c, 200, r);
    MHD_destroy_response(r);
    qm_metrics_http(&s->metrics, 200);
    return ok;
}
