/* The server's state, shared by its files (server.c: HTTP plumbing; handlers.c: endpoints). */
#ifndef QM_SERVER_INTERNAL_H
#define QM_SERVER_INTERNAL_H

#include <microhttpd.h>
#include <stdatomic.h>

#include "server/jobs.h"
#include "server/metrics.h"
#include "server/request.h"
#include "server/server.h"

struct qm_server {
    qm_server_opts o;
    char model_name[256];
    char *api_key;
    qm_engine *engine;
    qm_jobs jobs;
    qm_metrics metrics;
    struct MHD_Daemon *mhd;
    int port;
    long created;
    atomic_bool closing;
    atomic_int in_flight;    /* HTTP requests begun and not yet completed (answer sent or failed) */
    atomic_ullong unseeded;  /* seeds for requests that give none: a counter from the start time */
};

/* A request's body as it arrives (per connection). */
typedef struct {
    char *body;
    size_t len, cap;
    bool too_big;
} qm_http_request;

/* Answers: a JSON body (taken: freed by MHD) with a status; an error object. */
enum MHD_Result qm_http_json(qm_server *s, struct MHD_Connection *c, int status, char *json);
enum MHD_Result qm_http_error(qm_server *s, struct MHD_Connection *c, const qm_api_error *e);

/* Endpoints (handlers.c). */
enum MHD_Result qm_handle_generate(qm_server *s, struct MHD_Connection *c, qm_api_kind kind, const qm_http_request *r);
enum MHD_Result qm_handle_tokenize(qm_server *s, struct MHD_Connection *c, const qm_http_request *r);
enum MHD_Result qm_handle_detokenize(qm_server *s, struct MHD_Connection *c, const qm_http_request *r);
enum MHD_Result qm_handle_metrics(qm_server *s, struct MHD_Connection *c);

#endif
