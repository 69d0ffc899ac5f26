/* HTTP plumbing: the daemon, bodies, keys, routes (server.h). */
#include "server/server_internal.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "server/response.h"

enum MHD_Result qm_http_json(qm_server *s, struct MHD_Connection *c, int status, char *json) {
    if (!json) {
        status = 500;
        json = strdup("{\"error\":{\"message\":\"out of memory\",\"type\":\"server_error\",\"param\":null,\"code\":null}}");
        if (!json) return MHD_NO;
    }
    struct MHD_Response *r = MHD_create_response_from_buffer(strlen(json), json, MHD_RESPMEM_MUST_FREE);
    if (!r) {
        free(json);
        return MHD_NO;
    }
    MHD_add_response_header(r, "Content-Type", "application/json");
    if (status == 429 || status == 503) MHD_add_response_header(r, "Retry-After", "1");
    if (status == 401) MHD_add_response_header(r, "WWW-Authenticate", "Bearer");
    enum MHD_Result ok = MHD_queue_response(c, (unsigned)status, r);
    MHD_destroy_response(r);
    qm_metrics_http(&s->metrics, status);
    return ok;
}

enum MHD_Result qm_http_error(qm_server *s, struct MHD_Connection *c, const qm_api_error *e) {
    return qm_http_json(s, c, e->status, qm_resp_error(e));
}

/* Appends an upload piece, up to the size limit (beyond it the body is dropped, 413 follows). */
static void take_body(qm_server *s, qm_http_request *r, const char *data, size_t n) {
    if (r->too_big || n == 0) return;
    if (r->len + n > s->o.max_body) {
        r->too_big = true;
        free(r->body);
        r->body = NULL;
        r->len = r->cap = 0;
        return;
    }
    if (r->len + n + 1 > r->cap) {
        size_t cap = (r->len + n + 1) * 2;
        if (cap > s->o.max_body + 1) cap = s->o.max_body + 1;
        char *b = realloc(r->body, cap);
        if (!b) {
            r->too_big = true; /* answered as too large: the server cannot hold it */
            return;
        }
        r->body = b;
        r->cap = cap;
    }
    memcpy(r->body + r->len, data, n);
    r->len += n;
    r->body[r->len] = 0;
}

/* Constant-time comparison of the presented key with ours. */
static bool key_matches(const char *given, const char *want) {
    const size_t a = strlen(given), b = strlen(want);
    unsigned char d = a != b;
    for (size_t i = 0; i < b; i++) d |= (unsigned char)(given[i < a ? i : 0] ^ want[i]);
    return d == 0;
}

static bool authorized(const qm_server *s, struct MHD_Connection *c) {
    if (!s->api_key) return true;
    const char *h = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
    return h && !strncmp(h, "Bearer ", 7) && key_matches(h + 7, s->api_key);
}

static enum MHD_Result route(qm_server *s, struct MHD_Connection *c, const char *url, const char *method,
                             const qm_http_request *r) {
    qm_api_error e = {0};
    const bool get = !strcmp(method, "GET"), post = !strcmp(method, "POST");
    if (!strcmp(url, "/health") && get)
        return qm_http_json(s, c, s->closing ? 503 : 200,
                            strdup(s->closing ? "{\"status\":\"shutting down\"}" : "{\"status\":\"ok\"}"));
    if (!strcmp(url, "/metrics") && get) return qm_handle_metrics(s, c);
    if (!authorized(s, c)) {
        qm_api_fail(&e, 401, "authentication_error", NULL, "invalid_api_key",
                    "missing or wrong API key: send 'Authorization: Bearer KEY'");
        return qm_http_error(s, c, &e);
    }
    if (r->too_big) {
        qm_api_fail(&e, 413, "invalid_request_error", NULL, "request_too_large",
                    "the request body is larger than %zu bytes", s->o.max_body);
        return qm_http_error(s, c, &e);
    }
    const char *body = r->body ? r->body : "";
    const qm_http_request empty = {.body = (char *)body};
    const qm_http_request *req = r->body ? r : &empty;
    if (!strcmp(url, "/v1/models") && get) return qm_http_json(s, c, 200, qm_resp_models(s->model_name, s->created));
    if (!strcmp(url, "/v1/completions") && post) return qm_handle_generate(s, c, QM_API_COMPLETION, req);
    if (!strcmp(url, "/v1/chat/completions") && post) return qm_handle_generate(s, c, QM_API_CHAT, req);
    if (!strcmp(url, "/tokenize") && post) return qm_handle_tokenize(s, c, req);
    if (!strcmp(url, "/detokenize") && post) return qm_handle_detokenize(s, c, req);
    const bool known = !strcmp(url, "/v1/models") || !strcmp(url, "/v1/completions") ||
                       !strcmp(url, "/v1/chat/completions") || !strcmp(url, "/tokenize") || !strcmp(url, "/detokenize");
    if (known) qm_api_fail(&e, 405, "invalid_request_error", NULL, "method_not_allowed", "%s is not allowed on %s",
                           method, url);
    else qm_api_fail(&e, 404, "invalid_request_error", NULL, "not_found", "no such endpoint: %s %s", method, url);
    return qm_http_error(s, c, &e);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                                  const char *version, const char *upload, size_t *upload_size, void **con_cls) {
    (void)version;
    qm_server *s = cls;
    qm_http_request *r = *con_cls;
    if (!r) { /* the first call: headers only */
        if (!(r = calloc(1, sizeof *r))) return MHD_NO;
        *con_cls = r;
        atomic_fetch_add(&s->in_flight, 1);
        return MHD_YES;
    }
    if (*upload_size) {
        take_body(s, r, upload, *upload_size);
        *upload_size = 0;
        return MHD_YES;
    }
    return route(s, c, url, method, r);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode why) {
    (void)c;
    (void)why;
    qm_server *s = cls;
    qm_http_request *r = *con_cls;
    if (r) {
        free(r->body);
        free(r);
        *con_cls = NULL;
        atomic_fetch_sub(&s->in_flight, 1);
    }
}

static qm_status listen_address(const char *host, int port, struct sockaddr_in *a, qm_error *err) {
    memset(a, 0, sizeof *a);
    a->sin_family = AF_INET;
    a->sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, host, &a->sin_addr) != 1)
        return qm_fail(err, QM_ERR_ARG, "--host '%s' is not an IPv4 address (such as 127.0.0.1 or 0.0.0.0)", host);
    return QM_OK;
}

qm_status qm_server_start(const qm_server_opts *o, qm_engine *e, qm_server **out, qm_error *err) {
    qm_server *s = calloc(1, sizeof *s);
    if (!s) return qm_fail(err, QM_ERR_NOMEM, "out of memory");
    s->o = *o;
    s->engine = e;
    if (!s->o.host) s->o.host = "127.0.0.1";
    if (s->o.max_queue <= 0) s->o.max_queue = 64;
    if (!s->o.max_body) s->o.max_body = 1 << 20;
    snprintf(s->model_name, sizeof s->model_name, "%s", o->model_name ? o->model_name : "qmesh");
    s->api_key = o->api_key ? strdup(o->api_key) : NULL;
    s->created = (long)time(NULL);
    atomic_init(&s->closing, false);
    atomic_init(&s->in_flight, 0);
    atomic_init(&s->unseeded, (unsigned long long)time(NULL) * 0x9e3779b97f4a7c15ull);
    qm_metrics_init(&s->metrics);
    qm_status st = qm_jobs_init(&s->jobs, s->o.max_queue, &s->metrics, err);
    struct sockaddr_in addr;
    if (!st) st = listen_address(s->o.host, o->port, &addr, err);
    if (st) {
        qm_server_free(s);
        return st;
    }
    s->mhd = MHD_start_daemon(MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ITC |
                                  MHD_USE_ERROR_LOG,
                              (uint16_t)o->port, NULL, NULL, on_request, s, MHD_OPTION_SOCK_ADDR, &addr,
                              MHD_OPTION_NOTIFY_COMPLETED, on_completed, s, MHD_OPTION_CONNECTION_LIMIT, 512u,
                              MHD_OPTION_CONNECTION_TIMEOUT, 600u, MHD_OPTION_END);
    if (!s->mhd) {
        qm_server_free(s);
        return qm_fail(err, QM_ERR_IO, "cannot listen on %s:%d (in use, or not an address of this machine?)",
                       o->host ? o->host : "127.0.0.1", o->port);
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(s->mhd, MHD_DAEMON_INFO_BIND_PORT);
    s->port = info ? info->port : o->port;
    *out = s;
    return QM_OK;
}

int qm_server_port(const qm_server *s) { return s->port; }

/* The source of ranks other than world rank 0: never asked (rank 0 broadcasts its requests). */
static bool no_next(void *ctx, qm_gen_request *out, int *id) {
    (void)ctx, (void)out, (void)id;
    return false;
}
static bool always_closed(void *ctx) {
    (void)ctx;
    return true;
}

qm_status qm_server_run_engine(qm_server *s, qm_engine *e, qm_error *err) {
    qm_request_source src = {.next = no_next, .closed = always_closed};
    qm_gen_callbacks cb = {0};
    if (s) {
        qm_jobs_source(&s->jobs, &src);
        qm_jobs_callbacks(&s->jobs, &cb);
    }
    qm_status st = qm_engine_serve(e, &src, &cb, NULL, err);
    if (st && s) {
        qm_server_close(s, true);
        qm_jobs_abort(&s->jobs); /* the answers still awaited end as cancelled (503) */
    }
    return st;
}

void qm_server_close(qm_server *s, bool cancel) {
    if (!s) return;
    if (!atomic_exchange(&s->closing, true) && s->mhd) {
        const MHD_socket fd = MHD_quiesce_daemon(s->mhd); /* no new connections */
        if (fd != MHD_INVALID_SOCKET) close(fd);
    }
    qm_jobs_close(&s->jobs, cancel);
}

void qm_server_counts(qm_server *s, int *waiting, int *running) { qm_jobs_counts(&s->jobs, waiting, running); }

void qm_server_free(qm_server *s) {
    if (!s) return;
    /* the answers being written (a stream's last events) go out before the daemon stops, which
     * closes every connection; 10 s at most */
    for (int i = 0; i < 1000 && s->mhd && atomic_load(&s->in_flight) > 0; i++) usleep(10000);
    if (s->mhd) MHD_stop_daemon(s->mhd);
    qm_jobs_destroy(&s->jobs);
    qm_metrics_destroy(&s->metrics);
    free(s->api_key);
    free(s);
}
