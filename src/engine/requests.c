/* Checking requests, and qm_engine_generate: a fixed array of requests served through the
 * request-source interface (qm_engine_serve). */
#include "engine/engine_internal.h"

#include <string.h>

qm_status qm_engine_check_request(const qm_engine *e, const qm_gen_request *q, qm_error *err) {
    if (q->n_prompt < 1 || !q->prompt) return qm_fail(err, QM_ERR_ARG, "empty prompt");
    if (q->n_prompt >= e->dims.max_context)
        return qm_fail(err, QM_ERR_ARG, "prompt of %d tokens does not fit the context of %d (--ctx)", q->n_prompt,
                       e->dims.max_context);
    for (int j = 0; j < q->n_prompt; j++)
        if (q->prompt[j] < 0 || q->prompt[j] >= e->cfg.vocab_size)
            return qm_fail(err, QM_ERR_ARG, "token id %d outside the vocabulary of %d", q->prompt[j], e->cfg.vocab_size);
    if (q->max_new_tokens < 0) return qm_fail(err, QM_ERR_ARG, "negative max_new_tokens");
    if (q->shared_prefix < 0 || q->shared_prefix > q->n_prompt)
        return qm_fail(err, QM_ERR_ARG, "shared prefix longer than the prompt");
    if (q->n_stop < 0 || (q->n_stop > 0 && !q->stop)) return qm_fail(err, QM_ERR_ARG, "bad stop strings");
    if (q->logprobs < 0 || q->logprobs > 1 + QM_MAX_TOP_LOGPROBS)
        return qm_fail(err, QM_ERR_ARG, "logprobs %d outside [0, %d]", q->logprobs, 1 + QM_MAX_TOP_LOGPROBS);
    return QM_OK;
}

int qm_engine_max_context(const qm_engine *e) { return e->dims.max_context; }

/* The array as a request source: request i has id i; skipped ones (cb->skip) are never taken. */
typedef struct {
    const qm_gen_request *reqs;
    int n, next;
    const qm_gen_callbacks *cb;
} array_source;

static bool array_next(void *ctx, qm_gen_request *out, int *id) {
    array_source *a = ctx;
    while (a->next < a->n) {
        const int i = a->next++;
        if (a->cb && a->cb->skip && a->cb->skip(a->cb->ctx, i)) continue;
        *out = a->reqs[i];
        out->rng_stream = (uint64_t)i;
        *id = i;
        return true;
    }
    return false;
}

static bool array_closed(void *ctx) {
    (void)ctx;
    return true; /* every request is known from the start */
}

qm_status qm_engine_generate(qm_engine *e, const qm_gen_request *reqs, int n, const qm_gen_callbacks *cb,
                             qm_gen_stats *stats, qm_error *err) {
    for (int i = 0; i < n; i++) {
        qm_error why = {0};
        if (qm_engine_check_request(e, &reqs[i], &why))
            return qm_fail(err, QM_ERR_ARG, "request %d: %s", i, why.msg);
    }
    array_source a = {.reqs = reqs, .n = n, .cb = cb};
    const qm_request_source src = {.next = array_next, .closed = array_closed, .ctx = &a};
    return qm_engine_serve(e, &src, cb, stats, err);
}
