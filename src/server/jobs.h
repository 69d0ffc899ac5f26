/* The server's jobs: generation requests waiting or running, shared between the HTTP threads
 * (submit, wait for text, leave) and the engine's serving loop (the request source and the
 * result callbacks). One lock, one condition variable broadcast on every change. */
#ifndef QM_SERVER_JOBS_H
#define QM_SERVER_JOBS_H

#include <pthread.h>
#include <stdbool.h>

#include "engine/engine.h"
#include "server/metrics.h"
#include "server/request.h"

typedef struct qm_job {
    int id;
    qm_gen_request req;      /* what the engine runs; prompt and stop strings owned here */
    qm_api_request api;      /* what the client asked (for the answer's format) */
    int *prompt;
    char *text;              /* text so far: streamed pieces, then the final text */
    size_t len, cap;
    bool running, done, cancel;
    qm_stop_reason reason;
    int n_gen, prompt_tokens;
    int *ids;                   /* the generated ids and, when asked, their logprobs: n_tok of them while
                                   streaming (those whose text has come), n_gen once done */
    qm_token_logprobs *logprobs;
    int n_tok, cap_tok;
    bool tok_lost;              /* out of memory while streaming: the rest come with the end */
    double t_submit, t_first, t_done;
    int refs;                /* the HTTP side and the queue each hold one */
    struct qm_job *next;     /* waiting list */
} qm_job;

typedef struct {
    pthread_mutex_t mu;
    pthread_cond_t changed;
    qm_job *head, *tail;     /* waiting, oldest first */
    int n_waiting, max_queue;
    qm_job **live;           /* taken by the engine, not done */
    int n_live, cap_live;
    int next_id;
    bool closed;             /* no new job is accepted; the engine ends when the live ones are done */
    qm_metrics *metrics;
} qm_jobs;

typedef enum { QM_SUBMIT_OK = 0, QM_SUBMIT_FULL, QM_SUBMIT_CLOSED, QM_SUBMIT_NOMEM } qm_submit_result;

qm_status qm_jobs_init(qm_jobs *q, int max_queue, qm_metrics *metrics, qm_error *err);
void qm_jobs_destroy(qm_jobs *q);

/* A new job owning prompt (n ids) and api (moved in: *api is left empty); NULL when out of memory
 * (then prompt and api are freed). refs: one for the caller. */
qm_job *qm_job_new(int *prompt, int n, qm_api_request *api, const qm_gen_request *params);
/* Queues the job (the queue takes its own reference). */
qm_submit_result qm_jobs_submit(qm_jobs *q, qm_job *j);
/* What a streamed job has beyond what was sent: copies, malloc'd (NULL when none). */
typedef struct {
    char *text;                  /* the text after the bytes sent, NUL-terminated */
    size_t len;
    int *ids;                    /* the tokens after those sent whose text has come (all of them once the job */
    qm_token_logprobs *logprobs; /* is done), with their logprobs: only when the request asks for logprobs */
    int n_tok;
} qm_job_piece;

/* Waits at most timeout_ms until job j has text beyond `from` bytes (tokens beyond from_tok) or
 * is done. When piece is not NULL, it gets what lies beyond them (qm_job_piece_free it). Returns
 * true when j is done: from then on its fields do not change. */
bool qm_jobs_wait(qm_jobs *q, qm_job *j, size_t from, int from_tok, int timeout_ms, qm_job_piece *piece);
void qm_job_piece_free(qm_job_piece *p);
/* The HTTP side is finished with the job: when it is not done yet, it is cancelled. */
void qm_jobs_leave(qm_jobs *q, qm_job *j);
/* No new jobs; with cancel, every waiting and running job is cancelled too. */
void qm_jobs_close(qm_jobs *q, bool cancel);
void qm_jobs_counts(qm_jobs *q, int *waiting, int *running);
/* The engine stopped (an error): every job still waiting or running ends as cancelled, so that
 * no HTTP thread waits for it any more. */
void qm_jobs_abort(qm_jobs *q);

/* The engine's side. */
void qm_jobs_source(qm_jobs *q, qm_request_source *src);
void qm_jobs_callbacks(qm_jobs *q, qm_gen_callbacks *cb);

#endif
