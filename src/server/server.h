/* qmesh's OpenAI-compatible HTTP server: a thin layer above the engine's request API
 * (qm_engine_serve). HTTP threads (libmicrohttpd, one per connection) parse and validate each
 * request, tokenize it and queue it as a job; the engine's serving loop, run by the caller,
 * takes jobs from the queue at step boundaries and hands back text as it comes. */
#ifndef QM_SERVER_SERVER_H
#define QM_SERVER_SERVER_H

#include <stdbool.h>
#include <stddef.h>

#include "engine/engine.h"

typedef struct {
    const char *host;        /* address to listen on (default 127.0.0.1) */
    int port;                /* 0: any free port (qm_server_port says which) */
    const char *api_key;     /* NULL: no key needed; else "Authorization: Bearer KEY" */
    const char *model_name;  /* the name /v1/models lists and requests may give */
    int max_queue;           /* requests waiting at most (default 64): more get 429 */
    size_t max_body;         /* request body bytes at most (default 1 MiB): more get 413 */
} qm_server_opts;

typedef struct qm_server qm_server;

/* Starts listening; the engine must outlive the server. */
qm_status qm_server_start(const qm_server_opts *o, qm_engine *e, qm_server **out, qm_error *err);
int qm_server_port(const qm_server *s);
/* Runs the engine's serving loop on the calling thread until qm_server_close (every rank of
 * the mesh calls it; only world rank 0 has a server, the others pass s = NULL). */
qm_status qm_server_run_engine(qm_server *s, qm_engine *e, qm_error *err);
/* Stops accepting connections and requests; with cancel, running requests are cancelled too
 * (they end within a step); else they finish. The engine loop returns when none is left. */
void qm_server_close(qm_server *s, bool cancel);
/* Requests waiting and running now. */
void qm_server_counts(qm_server *s, int *waiting, int *running);
void qm_server_free(qm_server *s);

#endif
