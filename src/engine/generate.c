/* The serving loop of one mesh row: continuous batching with a shared-prefix KV cache. */
#include "engine/engine_internal.h"
#include "engine/relay.h"
#include "engine/stop.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    int req;              /* request index, -1 = free */
    int *toks;            /* [n_prompt + max_new] prompt then generated ids */
    int n_toks, n_done;   /* known tokens; tokens already in the KV cache */
    int n_prompt, n_gen;
    qm_rng rng;
    qm_sampling sp;
    qm_decode_stream ds;
    char *text;
    size_t len, cap, emitted;
    double t_start;
} seq;

typedef struct {
    qm_engine *e;
    qm_device *dev;
    seq *seqs;            /* [batch] */
    int *step_ids, *step_pos, *step_slot, *step_out, *out_seq;
    qm_sampling *out_sp;
    qm_rng *out_rng;
    int *picked;
    int *assign;          /* [batch] requests the leader hands to free sequences, -1 none */
    void *scratch;
    int max_stop;
    /* prefix cache */
    const int *prefix;
    int prefix_len;
    bool prefix_ready;
    qm_relay relay;       /* finished results of a row that does not report itself (relay.h) */
    qm_status failed;     /* an allocation failed while finishing or decoding text: stop */
    qm_gen_stats st;
} row_ctx;

static bool is_leader(const row_ctx *r) { return r->dev->comm->col == 0; }
/* The leader calls the callbacks itself: in a process that runs the whole mesh every row's
 * leader does; otherwise row 0's alone, and other rows' results reach it by the flush. */
static bool reports(const row_ctx *r) { return r->e->whole_mesh || r->dev->comm->row == 0; }
static bool is_eos(const qm_engine *e, int id) {
    for (int i = 0; i < e->n_eos; i++)
        if (e->eos[i] == id) return true;
    return false;
}

static int next_request(row_ctx *r) {
    qm_engine *e = r->e;
    const qm_gen_callbacks *cb = e->cb;
    for (;;) {
        int i;
        if (!e->whole_mesh) {
            /* rows in other processes: no queue is shared across rows, so row r takes requests
             * r, r + R, r + 2R, ... (e->next_req starts at -1). */
            i = e->next_req < 0 ? r->dev->comm->row : e->next_req;
            if (i >= e->n_reqs) return -1;
            e->next_req = i + e->rows;
        } else {
            pthread_mutex_lock(&e->mu);
            i = e->next_req < e->n_reqs ? e->next_req++ : -1;
            pthread_mutex_unlock(&e->mu);
            if (i < 0) return -1;
        }
        if (!cb || !cb->skip || !cb->skip(cb->ctx, i)) return i;
    }
}

static qm_status text_append(seq *s, const char *p, size_t n) {
    if (s->len + n + 1 > s->cap) {
        size_t cap = (s->len + n + 1) * 2;
        char *t = realloc(s->text, cap);
        if (!t) return QM_ERR_NOMEM;
        s->text = t;
        s->cap = cap;
    }
    memcpy(s->text + s->len, p, n);
    s->len += n;
    s->text[s->len] = 0;
    return QM_OK;
}

static void emit_text(row_ctx *r, seq *s, size_t upto) {
    qm_engine *e = r->e;
    if (!is_leader(r) || !e->cb || !e->cb->on_text || upto <= s->emitted) return;
    if (!reports(r)) return;
    /* never cut a UTF-8 character */
    while (upto > s->emitted && upto < s->len && ((unsigned char)s->text[upto] & 0xC0) == 0x80) upto--;
    if (upto <= s->emitted) return;
    char save = s->text[upto];
    s->text[upto] = 0;
    pthread_mutex_lock(&e->mu);
    e->cb->on_text(e->cb->ctx, s->req, s->text + s->emitted);
    pthread_mutex_unlock(&e->mu);
    s->text[upto] = save;
    s->emitted = upto;
}

static void finish(row_ctx *r, seq *s, qm_stop_reason why) {
    qm_engine *e = r->e;
    qm_gen_result res = {
        .ids = s->toks + s->n_prompt,
        .n_ids = s->n_gen,
        .text = s->text ? s->text : "",
        .reason = why,
        .prompt_tokens = s->n_prompt,
        .ms = (qm_now() - s->t_start) * 1e3,
    };
    if (is_leader(r)) {
        emit_text(r, s, s->len);
        if (!reports(r)) {
            if (qm_relay_hold(&r->relay, s->req, &res, s->len)) r->failed = QM_ERR_NOMEM; /* never a silent drop */
        } else if (e->cb && e->cb->on_done) {
            pthread_mutex_lock(&e->mu);
            e->cb->on_done(e->cb->ctx, s->req, &res);
            pthread_mutex_unlock(&e->mu);
        }
    }
    free(s->toks);
    free(s->text);
    memset(s, 0, sizeof *s);
    s->req = -1;
}

/* Prefills tokens [from, to) of `toks` into `slot`, in steps of at most max_tokens; no logits. */
static qm_status prefill_only(row_ctx *r, const int *toks, int from, int to, int slot, qm_error *err) {
    qm_device *dev = r->dev;
    while (from < to) {
        int n = to - from;
        if (n > dev->dims.max_tokens) n = dev->dims.max_tokens;
        for (int i = 0; i < n; i++) {
            r->step_ids[i] = toks[from + i];
            r->step_pos[i] = from + i;
            r->step_slot[i] = slot;
        }
        qm_step s = {.n_tok = n, .ids = r->step_ids, .pos = r->step_pos, .slot = r->step_slot, .n_out = 0};
        double t0 = qm_now();
        qm_status st = qm_forward(dev, &s, err);
        r->st.prefill_s += qm_now() - t0;
        if (st) return st;
        r->st.prefill_tokens += n;
        from += n;
    }
    return QM_OK;
}

static qm_status start_seq(row_ctx *r, seq *s, int req, qm_error *err) {
    qm_engine *e = r->e;
    const qm_gen_request *q = &e->reqs[req];
    memset(s, 0, sizeof *s);
    s->req = req;
    s->n_prompt = q->n_prompt;
    s->toks = malloc(((size_t)q->n_prompt + (size_t)q->max_new_tokens + 1) * sizeof(int));
    if (!s->toks) return qm_fail(err, QM_ERR_NOMEM, "out of memory");
    memcpy(s->toks, q->prompt, (size_t)q->n_prompt * sizeof(int));
    s->n_toks = q->n_prompt;
    s->sp = (qm_sampling){q->temperature, q->top_k, q->top_p};
    qm_rng_seed(&s->rng, q->seed, (uint64_t)req);
    s->t_start = qm_now();
    r->st.prompt_tokens += q->n_prompt;
    if (q->max_new_tokens == 0) { /* nothing to generate: done without computing anything */
        finish(r, s, QM_STOP_LENGTH);
        return QM_OK;
    }
    /* Prefix cache: the shared prefix's KV is computed once per row and copied. */
    if (r->prefix_len > 0 && q->shared_prefix == r->prefix_len &&
        !memcmp(q->prompt, r->prefix, (size_t)r->prefix_len * sizeof(int)) && q->n_prompt > r->prefix_len) {
        int pslot = e->batch;
        if (!r->prefix_ready) {
            qm_status st = prefill_only(r, r->prefix, 0, r->prefix_len, pslot, err);
            if (st) return st;
            r->prefix_ready = true;
        }
        qm_kv_copy(r->dev, pslot, (int)(s - r->seqs), r->prefix_len);
        s->n_done = r->prefix_len;
    }
    return QM_OK;
}

/* After a token is picked for s: stops, text, streaming. Returns true when s finished. */
static bool accept_token(row_ctx *r, seq *s, int tok) {
    qm_engine *e = r->e;
    const qm_gen_request *q = &e->reqs[s->req];
    if (q->stop_at_eos && is_eos(e, tok)) {
        finish(r, s, QM_STOP_EOS);
        return true;
    }
    s->toks[s->n_toks++] = tok;
    s->n_gen++;
    r->st.gen_tokens++;
    if (e->tok) {
        char piece[256];
        size_t old = s->len;
        size_t n = qm_decode_stream_push(e->tok, &s->ds, tok, piece, sizeof piece);
        if (n && text_append(s, piece, n)) r->failed = QM_ERR_NOMEM;
        size_t at;
        if (s->text && qm_stop_find(s->text, s->len, old, q->stop, q->n_stop, &at)) {
            s->len = at;
            s->text[s->len] = 0;
            if (s->emitted > s->len) s->emitted = s->len;
            finish(r, s, QM_STOP_STRING);
            return true;
        }
        size_t hold = r->max_stop > 0 ? (size_t)r->max_stop - 1 : 0;
        if (s->len > hold) emit_text(r, s, s->len - hold);
    }
    if (s->n_gen >= q->max_new_tokens || s->n_toks >= r->dev->dims.max_context) {
        if (e->tok) {
            char piece[64];
            size_t n = qm_decode_stream_flush(&s->ds, piece, sizeof piece);
            if (n && text_append(s, piece, n)) r->failed = QM_ERR_NOMEM;
        }
        finish(r, s, QM_STOP_LENGTH);
        return true;
    }
    return false;
}

/* The next step: every pending token of decoding sequences, then prompt chunks, up to
 * max_tokens; returns the token count, *n_out the sequences that get a next token. */
static int fill_step(row_ctx *r, int *n_out) {
    const int B = r->e->batch, T = r->dev->dims.max_tokens;
    int n = 0;
    *n_out = 0;
    for (int pass = 0; pass < 2; pass++)
        for (int b = 0; b < B && n < T; b++) {
            seq *s = &r->seqs[b];
            int take = s->n_toks - s->n_done;
            if (s->req < 0 || take == 0 || (pass == 0) != (take == 1)) continue;
            if (take > T - n) take = T - n;
            for (int i = 0; i < take; i++) {
                r->step_ids[n] = s->toks[s->n_done + i];
                r->step_pos[n] = s->n_done + i;
                r->step_slot[n] = b;
                n++;
            }
            s->n_done += take;
            if (s->n_done == s->n_toks) {
                r->step_out[*n_out] = n - 1;
                r->out_seq[*n_out] = b;
                r->out_sp[*n_out] = s->sp;
                r->out_rng[*n_out] = s->rng;
                (*n_out)++;
            }
            if (pass == 1) r->st.prefill_tokens += take;
        }
    return n;
}

/* Runs a filled step: the forward pass, the next tokens (the same on every device of the row),
 * then stops, text and streaming for each. */
static qm_status run_step(row_ctx *r, int n, int n_out, qm_error *err) {
    qm_device *dev = r->dev;
    const qm_partition *p = &dev->shard.part;
    qm_step step = {.n_tok = n, .ids = r->step_ids, .pos = r->step_pos, .slot = r->step_slot,
                    .out = r->step_out, .n_out = n_out};
    double t_step = qm_now();
    qm_status st = qm_forward(dev, &step, err);
    if (st) return st;
    int *pk = r->picked;
    const double t_sample = qm_now();
    st = qm_sample_rows(dev->comm, dev->logits, (size_t)qm_range_len(p->vocab), p->vocab.begin, qm_range_len(p->vocab),
                        n_out, r->out_sp, r->out_rng, r->scratch, pk, err);
    dev->time_s[QM_TIME_SAMPLE] += qm_now() - t_sample;
    if (st) return st;
    for (int i = 0; i < n_out; i++)
        if (pk[i] < 0) { /* the same on every device of the row: all of them stop */
            const seq *bad = &r->seqs[r->out_seq[i]];
            return qm_fail(err, QM_ERR_FORMAT,
                           "request %d, generated token %d (position %d): every logit is -inf or NaN "
                           "(broken weights?), no token to pick",
                           bad->req, bad->n_gen + 1, bad->n_toks);
        }
    /* a step with prompt tokens counts as prefill time, one of only decode tokens as decode */
    if (n > n_out) r->st.prefill_s += qm_now() - t_step;
    else r->st.decode_s += qm_now() - t_step;
    for (int i = 0; i < n_out; i++) {
        seq *s = &r->seqs[r->out_seq[i]];
        s->rng = r->out_rng[i];
        accept_token(r, s, pk[i]);
    }
    return QM_OK;
}

/* The row's buffers, and the run's facts every device derives alike: the longest stop string
 * (text held back from streaming) and the shared prefix. */
static qm_status row_open(row_ctx *r, qm_engine *e, qm_device *dev, qm_error *err) {
    const int B = e->batch, T = dev->dims.max_tokens;
    *r = (row_ctx){.e = e, .dev = dev};
    r->seqs = calloc((size_t)B, sizeof *r->seqs);
    r->assign = calloc((size_t)B, sizeof *r->assign);
    r->step_ids = calloc((size_t)T * 5, sizeof(int));
    r->out_sp = calloc((size_t)T, sizeof *r->out_sp);
    r->out_rng = calloc((size_t)T, sizeof *r->out_rng);
    r->scratch = malloc(qm_sample_scratch_bytes(B < T ? B : T, dev->comm->cols)); /* one output per sequence */
    r->picked = malloc((size_t)T * sizeof(int));
    if (!r->seqs || !r->assign || !r->step_ids || !r->out_sp || !r->out_rng || !r->scratch || !r->picked)
        return qm_fail(err, QM_ERR_NOMEM, "out of memory");
    r->step_pos = r->step_ids + T;
    r->step_slot = r->step_pos + T;
    r->step_out = r->step_slot + T;
    r->out_seq = r->step_out + T;
    for (int b = 0; b < B; b++) r->seqs[b].req = -1;
    for (int i = 0; i < e->n_reqs; i++) {
        for (int j = 0; j < e->reqs[i].n_stop; j++)
            if ((int)strlen(e->reqs[i].stop[j]) > r->max_stop) r->max_stop = (int)strlen(e->reqs[i].stop[j]);
        if (!r->prefix && e->reqs[i].shared_prefix > 0) {
            r->prefix = e->reqs[i].prompt;
            r->prefix_len = e->reqs[i].shared_prefix;
        }
    }
    return QM_OK;
}

/* The row's statistics into the engine's (the leader's), then everything freed; after a
 * failure, also the sequences still running. */
static void row_close(row_ctx *r, bool failed) {
    qm_engine *e = r->e;
    if (failed && r->seqs)
        for (int b = 0; b < e->batch; b++)
            if (r->seqs[b].req >= 0) {
                free(r->seqs[b].toks);
                free(r->seqs[b].text);
            }
    if (is_leader(r)) {
        pthread_mutex_lock(&e->mu);
        e->stats.prompt_tokens += r->st.prompt_tokens;
        e->stats.prefill_tokens += r->st.prefill_tokens;
        e->stats.gen_tokens += r->st.gen_tokens;
        if (r->st.prefill_s > e->stats.prefill_s) e->stats.prefill_s = r->st.prefill_s;
        if (r->st.decode_s > e->stats.decode_s) e->stats.decode_s = r->st.decode_s;
        pthread_mutex_unlock(&e->mu);
    }
    qm_relay_free(&r->relay);
    free(r->seqs);
    free(r->assign);
    free(r->step_ids);
    free(r->out_sp);
    free(r->out_rng);
    free(r->scratch);
    free(r->picked);
}

/* The leader fills free sequences with new requests; the row learns them and starts them.
 * *active: sequences running now; *assigned: those just started. */
static qm_status take_requests(row_ctx *r, int *active, int *assigned, qm_error *err) {
    const int B = r->e->batch;
    for (int b = 0; b < B; b++) r->assign[b] = -1;
    if (is_leader(r))
        for (int b = 0; b < B; b++)
            if (r->seqs[b].req < 0) r->assign[b] = next_request(r);
    qm_status st = r->dev->comm->ops->row_bcast(r->dev->comm, r->assign, (size_t)B * sizeof(int), 0, err);
    *active = *assigned = 0;
    for (int b = 0; !st && b < B; b++) {
        if (r->assign[b] >= 0) st = start_seq(r, &r->seqs[b], r->assign[b], err);
        *assigned += r->assign[b] >= 0;
        *active += r->seqs[b].req >= 0;
    }
    return st;
}

static qm_status row_loop(qm_engine *e, qm_device *dev, void *arg, qm_error *err) {
    (void)arg;
    row_ctx r;
    qm_status st = row_open(&r, e, dev, err);
    if (!e->whole_mesh) e->next_req = -1;
    /* Rows in other processes: the results of rows other than 0 are flushed to rank 0 every pass,
     * so that a crash loses at most the last pass of them. */
    const bool flush = !e->whole_mesh && e->rows > 1;
    while (!st) {
        int active, assigned;
        if ((st = take_requests(&r, &active, &assigned, err))) break;
        const bool idle = !active && !assigned; /* nothing left for this row */
        if (flush) { /* every rank, once per pass: finished results reach rank 0 a pass after */
            bool all_done = false;
            if ((st = qm_relay_flush(&r.relay, dev->comm, e->cb, idle, &all_done, err))) break;
            if (idle) {
                if (all_done) break;
                continue;
            }
        } else if (idle) {
            break;
        }
        if (!active) continue; /* requests that finished at once (max_new_tokens 0) */
        int n_out = 0, n = fill_step(&r, &n_out);
        if ((st = run_step(&r, n, n_out, err))) break;
        if (r.failed) /* this device stops; the comm's abort stops the others of the mesh */
            st = qm_fail(err, r.failed, "out of memory keeping the text or results of finished requests");
    }
    row_close(&r, st != QM_OK);
    return st;
}

qm_status qm_engine_generate(qm_engine *e, const qm_gen_request *reqs, int n, const qm_gen_callbacks *cb,
                             qm_gen_stats *stats, qm_error *err) {
    for (int i = 0; i < n; i++) {
        const qm_gen_request *q = &reqs[i];
        if (q->n_prompt < 1)
            return qm_fail(err, QM_ERR_ARG, "request %d has an empty prompt", i);
        if (q->n_prompt >= e->dims.max_context)
            return qm_fail(err, QM_ERR_ARG, "request %d: prompt of %d tokens does not fit the context of %d (--ctx)", i,
                           q->n_prompt, e->dims.max_context);
        for (int j = 0; j < q->n_prompt; j++)
            if (q->prompt[j] < 0 || q->prompt[j] >= e->cfg.vocab_size)
                return qm_fail(err, QM_ERR_ARG, "request %d: token id %d outside the vocabulary of %d", i, q->prompt[j],
                               e->cfg.vocab_size);
        if (q->max_new_tokens < 0) return qm_fail(err, QM_ERR_ARG, "request %d: negative max_new_tokens", i);
        if (q->shared_prefix < 0 || q->shared_prefix > q->n_prompt)
            return qm_fail(err, QM_ERR_ARG, "request %d: shared prefix longer than the prompt", i);
    }
    e->reqs = reqs;
    e->n_reqs = n;
    e->cb = cb;
    e->next_req = 0;
    memset(&e->stats, 0, sizeof e->stats);
    double t0 = qm_now();
    qm_status st = qm_engine_run_devices(e, row_loop, NULL, err);
    e->stats.wall_s = qm_now() - t0;
    if (stats) *stats = e->stats;
    return st;
}
