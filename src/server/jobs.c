/* Jobs shared by the HTTP threads and the engine's serving loop (jobs.h). */
#include "server/jobs.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "util/pool.h"

qm_status qm_jobs_init(qm_jobs *q, int max_queue, qm_metrics *metrics, qm_error *err) {
    memset(q, 0, sizeof *q);
    q->max_queue = max_queue;
    q->metrics = metrics;
    pthread_mutex_init(&q->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&q->changed, &ca);
    pthread_condattr_destroy(&ca);
    (void)err;
    return QM_OK;
}

static void job_free(qm_job *j) {
    free(j->prompt);
    free(j->text);
    free(j->ids);
    free(j->logprobs);
    qm_api_request_free(&j->api);
    free(j);
}

static void job_unref(qm_job *j) {
    if (--j->refs == 0) job_free(j);
}

void qm_jobs_destroy(qm_jobs *q) {
    while (q->head) {
        qm_job *j = q->head;
        q->head = j->next;
        job_unref(j);
    }
    for (int i = 0; i < q->n_live; i++) job_unref(q->live[i]);
    free(q->live);
    pthread_cond_destroy(&q->changed);
    pthread_mutex_destroy(&q->mu);
}

qm_job *qm_job_new(int *prompt, int n, qm_api_request *api, const qm_gen_request *params) {
    qm_job *j = calloc(1, sizeof *j);
    if (!j) {
        free(prompt);
        qm_api_request_free(api);
        return NULL;
    }
    j->api = *api;
    memset(api, 0, sizeof *api);
    j->prompt = prompt;
    j->req = *params;
    j->req.prompt = prompt;
    j->req.n_prompt = n;
    j->req.stop = (const char *const *)j->api.stop;
    j->req.n_stop = j->api.n_stop;
    j->refs = 1;
    j->t_submit = qm_now();
    return j;
}

qm_submit_result qm_jobs_submit(qm_jobs *q, qm_job *j) {
    pthread_mutex_lock(&q->mu);
    qm_submit_result r = QM_SUBMIT_OK;
    if (q->closed) r = QM_SUBMIT_CLOSED;
    else if (q->n_waiting >= q->max_queue) r = QM_SUBMIT_FULL;
    if (r == QM_SUBMIT_OK) {
        j->id = q->next_id++ & 0x3fffffff;
        j->refs++;
        j->next = NULL;
        if (q->tail) q->tail->next = j;
        else q->head = j;
        q->tail = j;
        q->n_waiting++;
        pthread_cond_broadcast(&q->changed);
    }
    pthread_mutex_unlock(&q->mu);
    return r;
}

static void deadline_in(struct timespec *ts, int ms) {
    clock_gettime(CLOCK_MONOTONIC, ts);
    ts->tv_sec += ms / 1000;
    ts->tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

void qm_job_piece_free(qm_job_piece *p) {
    free(p->text);
    free(p->ids);
    free(p->logprobs);
    memset(p, 0, sizeof *p);
}

/* Copies what job j has beyond `from` bytes and from_tok tokens into p (the caller holds the lock);
 * false when out of memory. */
static bool copy_piece(const qm_job *j, size_t from, int from_tok, qm_job_piece *p) {
    memset(p, 0, sizeof *p);
    const int n_tok = !j->ids ? 0 : j->done ? j->n_gen : j->n_tok;
    if (j->len > from) {
        if (!(p->text = malloc(j->len - from + 1))) return false;
        p->len = j->len - from;
        memcpy(p->text, j->text + from, p->len);
        p->text[p->len] = 0;
    }
    if (n_tok > from_tok) {
        const size_t k = (size_t)(n_tok - from_tok);
        p->ids = malloc(k * sizeof *p->ids);
        p->logprobs = malloc(k * sizeof *p->logprobs);
        if (!p->ids || !p->logprobs) {
            qm_job_piece_free(p);
            return false;
        }
        memcpy(p->ids, j->ids + from_tok, k * sizeof *p->ids);
        memcpy(p->logprobs, j->logprobs + from_tok, k * sizeof *p->logprobs);
        p->n_tok = (int)k;
    }
    return true;
}

bool qm_jobs_wait(qm_jobs *q, qm_job *j, size_t from, int from_tok, int timeout_ms, qm_job_piece *piece) {
    struct timespec ts;
    deadline_in(&ts, timeout_ms);
    pthread_mutex_lock(&q->mu);
    while (!j->done && j->len <= from && j->n_tok <= from_tok)
        if (pthread_cond_timedwait(&q->changed, &q->mu, &ts) == ETIMEDOUT) break;
    if (piece && !copy_piece(j, from, from_tok, piece)) memset(piece, 0, sizeof *piece); /* nothing this time */
    const bool done = j->done;
    pthread_mutex_unlock(&q->mu);
    return done;
}

void qm_jobs_leave(qm_jobs *q, qm_job *j) {
    pthread_mutex_lock(&q->mu);
    if (!j->done) j->cancel = true; /* the engine frees its sequence at the next step boundary */
    job_unref(j);
    pthread_mutex_unlock(&q->mu);
}

void qm_jobs_close(qm_jobs *q, bool cancel) {
    pthread_mutex_lock(&q->mu);
    q->closed = true;
    if (cancel) {
        for (qm_job *j = q->head; j; j = j->next) j->cancel = true;
        for (int i = 0; i < q->n_live; i++) q->live[i]->cancel = true;
    }
    pthread_cond_broadcast(&q->changed);
    pthread_mutex_unlock(&q->mu);
}

void qm_jobs_counts(qm_jobs *q, int *waiting, int *running) {
    pthread_mutex_lock(&q->mu);
    *waiting = q->n_waiting;
    *running = q->n_live;
    pthread_mutex_unlock(&q->mu);
}

/* A job that ends without running (cancelled while waiting): done, nothing generated. */
static void end_unrun(qm_jobs *q, qm_job *j) {
    j->done = true;
    j->reason = QM_STOP_CANCELLED;
    j->t_done = qm_now();
    qm_metrics_generation(q->metrics, 0, 0, -1, j->t_done - j->t_submit, 1);
    job_unref(j);
}

void qm_jobs_abort(qm_jobs *q) {
    pthread_mutex_lock(&q->mu);
    q->closed = true;
    while (q->head) {
        qm_job *j = q->head;
        q->head = j->next;
        q->n_waiting--;
        end_unrun(q, j);
    }
    q->tail = NULL;
    for (int i = 0; i < q->n_live; i++) end_unrun(q, q->live[i]);
    q->n_live = 0;
    pthread_cond_broadcast(&q->changed);
    pthread_mutex_unlock(&q->mu);
}

static bool source_next(void *ctx, qm_gen_request *out, int *id) {
    qm_jobs *q = ctx;
    bool got = false;
    pthread_mutex_lock(&q->mu);
    while (q->head && !got) {
        qm_job *j = q->head;
        q->head = j->next;
        if (!q->head) q->tail = NULL;
        q->n_waiting--;
        if (j->cancel) {
            end_unrun(q, j);
            continue;
        }
        if (q->n_live == q->cap_live) {
            int cap = q->cap_live * 2 + 16;
            qm_job **t = realloc(q->live, (size_t)cap * sizeof *t);
            if (!t) { /* cannot track it: refuse it as cancelled */
                end_unrun(q, j);
                continue;
            }
            q->live = t;
            q->cap_live = cap;
        }
        q->live[q->n_live++] = j;
        j->running = true;
        *out = j->req;
        *id = j->id;
        got = true;
    }
    pthread_cond_broadcast(&q->changed);
    pthread_mutex_unlock(&q->mu);
    return got;
}

static int live_index(const qm_jobs *q, int id) {
    for (int i = 0; i < q->n_live; i++)
        if (q->live[i]->id == id) return i;
    return -1;
}

static bool source_cancelled(void *ctx, int id) {
    qm_jobs *q = ctx;
    pthread_mutex_lock(&q->mu);
    const int i = live_index(q, id);
    const bool c = i >= 0 && q->live[i]->cancel;
    pthread_mutex_unlock(&q->mu);
    return c;
}

static bool source_closed(void *ctx) {
    qm_jobs *q = ctx;
    pthread_mutex_lock(&q->mu);
    const bool c = q->closed && !q->head;
    pthread_mutex_unlock(&q->mu);
    return c;
}

static void source_idle_wait(void *ctx, int max_ms) {
    qm_jobs *q = ctx;
    struct timespec ts;
    deadline_in(&ts, max_ms);
    pthread_mutex_lock(&q->mu);
    if (!q->head && !q->closed) pthread_cond_timedwait(&q->changed, &q->mu, &ts);
    pthread_mutex_unlock(&q->mu);
}

void qm_jobs_source(qm_jobs *q, qm_request_source *src) {
    *src = (qm_request_source){.next = source_next, .cancelled = source_cancelled, .closed = source_closed,
                               .idle_wait = source_idle_wait, .ctx = q};
}

/* Text of job j: its own copy grows (the caller holds the lock). */
static bool set_text(qm_job *j, const char *text, size_t n, bool append) {
    const size_t len = append ? j->len + n : n;
    if (len + 1 > j->cap) {
        size_t cap = (len + 1) * 2;
        char *t = realloc(j->text, cap);
        if (!t) return false;
        j->text = t;
        j->cap = cap;
    }
    memcpy(j->text + (append ? j->len : 0), text, n);
    j->len = len;
    j->text[len] = 0;
    return true;
}

/* Keeps the streamed tokens' ids and logprobs (the caller holds the lock). After a failure the
 * job keeps none until it is done (on_done brings them all). */
static void add_tokens(qm_job *j, const int *ids, const qm_token_logprobs *lps, int n) {
    if (n <= 0 || !lps || j->tok_lost) return;
    if (j->n_tok + n > j->cap_tok) {
        const int cap = (j->n_tok + n) * 2 + 16;
        int *t = realloc(j->ids, (size_t)cap * sizeof *t);
        if (t) j->ids = t;
        qm_token_logprobs *l = t ? realloc(j->logprobs, (size_t)cap * sizeof *l) : NULL;
        if (l) j->logprobs = l;
        if (!t || !l) {
            j->tok_lost = true;
            return;
        }
        j->cap_tok = cap;
    }
    memcpy(j->ids + j->n_tok, ids, (size_t)n * sizeof *ids);
    memcpy(j->logprobs + j->n_tok, lps, (size_t)n * sizeof *lps);
    j->n_tok += n;
}

static void on_tokens(void *ctx, int id, const char *text, const int *ids, const qm_token_logprobs *lps, int n) {
    qm_jobs *q = ctx;
    pthread_mutex_lock(&q->mu);
    const int i = live_index(q, id);
    if (i >= 0 && set_text(q->live[i], text, strlen(text), true)) {
        add_tokens(q->live[i], ids, lps, n);
        if (q->live[i]->t_first == 0) q->live[i]->t_first = qm_now();
        pthread_cond_broadcast(&q->changed);
    }
    pthread_mutex_unlock(&q->mu);
}

/* The generated ids and their logprobs, when the request asked for logprobs (else nothing). */
static void keep_tokens(qm_job *j, const qm_gen_result *r) {
    free(j->ids); /* those streamed: the same as the first of r's */
    free(j->logprobs);
    j->ids = NULL;
    j->logprobs = NULL;
    if (!r->logprobs || r->n_ids <= 0) return;
    j->ids = malloc((size_t)r->n_ids * sizeof *j->ids);
    j->logprobs = malloc((size_t)r->n_ids * sizeof *j->logprobs);
    if (!j->ids || !j->logprobs) { /* answered without them: the response says null */
        free(j->ids);
        free(j->logprobs);
        j->ids = NULL;
        j->logprobs = NULL;
        return;
    }
    memcpy(j->ids, r->ids, (size_t)r->n_ids * sizeof *j->ids);
    memcpy(j->logprobs, r->logprobs, (size_t)r->n_ids * sizeof *j->logprobs);
}

static void on_done(void *ctx, int id, const qm_gen_result *r) {
    qm_jobs *q = ctx;
    pthread_mutex_lock(&q->mu);
    const int i = live_index(q, id);
    if (i >= 0) {
        qm_job *j = q->live[i];
        q->live[i] = q->live[--q->n_live];
        /* the final text extends what was streamed (a stop string's held-back text, or what a
         * piece that could not be relayed left for the result) */
        if (!set_text(j, r->text, strlen(r->text), false)) j->len = 0;
        j->done = true;
        j->reason = r->reason;
        j->n_gen = r->n_ids;
        keep_tokens(j, r);
        j->prompt_tokens = r->prompt_tokens;
        j->t_done = qm_now();
        if (j->t_first == 0 && j->len) j->t_first = j->t_done;
        qm_metrics_generation(q->metrics, j->prompt_tokens, j->n_gen, j->t_first ? j->t_first - j->t_submit : -1,
                              j->t_done - j->t_submit, j->reason == QM_STOP_CANCELLED);
        pthread_cond_broadcast(&q->changed);
        job_unref(j);
    }
    pthread_mutex_unlock(&q->mu);
}

void qm_jobs_callbacks(qm_jobs *q, qm_gen_callbacks *cb) {
    *cb = (qm_gen_callbacks){.on_done = on_done, .on_tokens = on_tokens, .ctx = q};
}
