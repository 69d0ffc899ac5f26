/* The serving loop of one mesh row: continuous batching with a shared-prefix KV cache. */
#include "engine/dispatch.h"
#include "engine/engine_internal.h"
#include "engine/relay.h"
#include "engine/request_pack.h"
#include "engine/stop.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    int req;              /* the request's id (the source's), -1 = free */
    qm_live_request lr;   /* the request: the sequence's own copy */
    int max_stop;         /* its longest stop string: text held back from streaming */
    int *toks;            /* [n_prompt + max_new] prompt then generated ids */
    int n_toks, n_done;   /* known tokens; tokens already in the KV cache */
    int n_prompt, n_gen;
    qm_rng rng;
    qm_sampling sp;
    qm_token_logprobs *lps; /* [max_new] when the request asks for logprobs */
    size_t *tok_end;        /* [max_new] the text's length after each generated token, when its
                               logprobs stream (on_tokens): the tokens a streamed piece completes */
    int tok_emitted;        /* generated tokens streamed with their text */
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
    qm_token_logprobs *out_lp; /* [max_tokens] logprobs of the step's picks (rows that ask) */
    int *out_want;             /* [max_tokens] logprobs each output asks for (qm_gen_request.logprobs) */
    qm_rng *out_rng;
    int *picked;
    int *slot_ids;        /* [batch] the request id in each sequence slot, -1 free */
    qm_row_orders orders; /* new requests and cancellations at each step boundary (dispatch.h) */
    void *scratch;
    /* prefix cache: the shared prefix of the latest request that had one (a copy) */
    int *prefix;
    int prefix_len, prefix_cap;
    bool prefix_ready;
    qm_relay relay;       /* streamed pieces and finished results of a row that does not report
                             itself, for rank 0 (relay.h) */
    qm_status failed;     /* an allocation failed while finishing or decoding text: stop */
    qm_gen_stats st;
} row_ctx;

static bool is_leader(const row_ctx *r) { return r->dev->comm->col == 0; }
/* The leader calls the callbacks itself: in a process that runs the whole mesh every row's
 * leader does; otherwise row 0's alone, and other rows' pieces and results reach it by the flush. */
static bool reports(const row_ctx *r) { return r->e->whole_mesh || r->dev->comm->row == 0; }
static bool is_eos(const qm_engine *e, int id) {
    for (int i = 0; i < e->n_eos; i++)
        if (e->eos[i] == id) return true;
    return false;
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

/* Whether s's text streams from this device: its row's leader, when the callbacks (those of
 * rank 0, for a row that does not report itself) take streamed text. */
static bool streams(const row_ctx *r) {
    const qm_gen_callbacks *cb = r->e->cb;
    if (!is_leader(r)) return false;
    if (!reports(r)) return r->relay.stream;
    return qm_gen_streams(cb);
}

/* Streams s's text up to byte `upto` (on_tokens: with the generated tokens it completes); a row
 * that does not report itself packs it as a piece for rank 0 (relay.h). */
static void emit_text(row_ctx *r, seq *s, size_t upto) {
    qm_engine *e = r->e;
    const qm_gen_callbacks *cb = e->cb;
    if (upto <= s->emitted || !streams(r)) return;
    /* never cut a UTF-8 character */
    while (upto > s->emitted && upto < s->len && ((unsigned char)s->text[upto] & 0xC0) == 0x80) upto--;
    if (upto <= s->emitted) return;
    int done = s->tok_emitted; /* the tokens whose text ends by upto */
    while (s->tok_end && done < s->n_gen && s->tok_end[done] <= upto) done++;
    const int *ids = s->toks + s->n_prompt + s->tok_emitted;
    const qm_token_logprobs *lps = s->tok_end ? s->lps + s->tok_emitted : NULL;
    if (!reports(r)) {
        /* out of memory: nothing is lost, this text goes with the next piece or the result */
        if (qm_relay_piece(&r->relay, s->req, s->text + s->emitted, upto - s->emitted, ids, lps,
                           done - s->tok_emitted))
            return;
    } else {
        char save = s->text[upto];
        s->text[upto] = 0;
        pthread_mutex_lock(&e->mu);
        qm_gen_stream_piece(cb, s->req, s->text + s->emitted, ids, lps, done - s->tok_emitted);
        pthread_mutex_unlock(&e->mu);
        s->text[upto] = save;
    }
    s->emitted = upto;
    s->tok_emitted = done;
}

static void finish(row_ctx *r, seq *s, qm_stop_reason why) {
    qm_engine *e = r->e;
    qm_gen_result res = {
        .ids = s->toks + s->n_prompt,
        .n_ids = s->n_gen,
        .text = s->text ? s->text : "",
        .reason = why,
        .logprobs = s->lps,
        .prompt_tokens = s->n_prompt,
        .ms = (qm_now() - s->t_start) * 1e3,
    };
    if (is_leader(r)) {
        if (why != QM_STOP_CANCELLED) emit_text(r, s, s->len);
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
    free(s->lps);
    free(s->tok_end);
    qm_live_request_free(&s->lr);
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

/* The prefix cache holds q's shared prefix (a copy), recomputed when it differs from the last. */
static qm_status remember_prefix(row_ctx *r, const qm_gen_request *q, qm_error *err) {
    if (r->prefix_len == q->shared_prefix && !memcmp(q->prompt, r->prefix, (size_t)r->prefix_len * sizeof(int)))
        return QM_OK;
    if (q->shared_prefix > r->prefix_cap) {
        int *t = realloc(r->prefix, (size_t)q->shared_prefix * sizeof(int));
        if (!t) return qm_fail(err, QM_ERR_NOMEM, "out of memory for the shared prefix");
        r->prefix = t;
        r->prefix_cap = q->shared_prefix;
    }
    memcpy(r->prefix, q->prompt, (size_t)q->shared_prefix * sizeof(int));
    r->prefix_len = q->shared_prefix;
    r->prefix_ready = false;
    return QM_OK;
}

/* Starts sequence s on the request lr (taken over: s owns it from here, even on failure). */
static qm_status start_seq(row_ctx *r, seq *s, qm_live_request *lr, qm_error *err) {
    qm_engine *e = r->e;
    memset(s, 0, sizeof *s);
    s->lr = *lr;
    s->req = lr->id;
    const qm_gen_request *q = &s->lr.q;
    for (int j = 0; j < q->n_stop; j++)
        if ((int)strlen(q->stop[j]) > s->max_stop) s->max_stop = (int)strlen(q->stop[j]);
    s->n_prompt = q->n_prompt;
    s->toks = malloc(((size_t)q->n_prompt + (size_t)q->max_new_tokens + 1) * sizeof(int));
    if (!s->toks) return qm_fail(err, QM_ERR_NOMEM, "out of memory");
    memcpy(s->toks, q->prompt, (size_t)q->n_prompt * sizeof(int));
    s->n_toks = q->n_prompt;
    s->sp = (qm_sampling){q->temperature, q->top_k, q->top_p};
    if (q->logprobs > 0 && !(s->lps = calloc((size_t)q->max_new_tokens + 1, sizeof *s->lps)))
        return qm_fail(err, QM_ERR_NOMEM, "out of memory");
    const bool stream_tokens =
        s->lps && is_leader(r) && (reports(r) ? e->cb && e->cb->on_tokens : r->relay.stream_tokens);
    if (stream_tokens && !(s->tok_end = calloc((size_t)q->max_new_tokens + 1, sizeof *s->tok_end)))
        return qm_fail(err, QM_ERR_NOMEM, "out of memory");
    qm_rng_seed(&s->rng, q->seed, q->rng_stream);
    s->t_start = qm_now();
    r->st.prompt_tokens += q->n_prompt;
    if (q->max_new_tokens == 0) { /* nothing to generate: done without computing anything */
        finish(r, s, QM_STOP_LENGTH);
        return QM_OK;
    }
    /* Prefix cache: the shared prefix's KV is computed once per row and read in place by every
     * sequence that shares it (until the prefix slot is rewritten for another prefix). */
    const int slot = (int)(s - r->seqs);
    qm_kv_share(r->dev, slot, slot, 0);
    if (q->shared_prefix > 0 && q->n_prompt > q->shared_prefix) {
        qm_status st = remember_prefix(r, q, err);
        if (st) return st;
        const int pslot = e->batch;
        if (!r->prefix_ready) {
            qm_kv_detach(r->dev, pslot);
            if ((st = prefill_only(r, r->prefix, 0, r->prefix_len, pslot, err))) return st;
            r->prefix_ready = true;
        }
        qm_kv_share(r->dev, pslot, slot, r->prefix_len);
        s->n_done = r->prefix_len;
    }
    return QM_OK;
}

/* After a token is picked for s: stops, text, streaming. Returns true when s finished. */
static bool accept_token(row_ctx *r, seq *s, int tok, const qm_token_logprobs *lp) {
    qm_engine *e = r->e;
    const qm_gen_request *q = &s->lr.q;
    if (q->stop_at_eos && is_eos(e, tok)) {
        finish(r, s, QM_STOP_EOS);
        return true;
    }
    s->toks[s->n_toks++] = tok;
    if (s->lps) s->lps[s->n_gen] = *lp;
    s->n_gen++;
    r->st.gen_tokens++;
    if (e->tok) {
        char piece[256];
        size_t old = s->len;
        size_t n = qm_decode_stream_push(e->tok, &s->ds, tok, piece, sizeof piece);
        if (n && text_append(s, piece, n)) r->failed = QM_ERR_NOMEM;
        if (s->tok_end) s->tok_end[s->n_gen - 1] = s->len;
        size_t at;
        if (s->text && qm_stop_find(s->text, s->len, old, q->stop, q->n_stop, &at)) {
            s->len = at;
            s->text[s->len] = 0;
            if (s->emitted > s->len) s->emitted = s->len;
            finish(r, s, QM_STOP_STRING);
            return true;
        }
        size_t hold = s->max_stop > 0 ? (size_t)s->max_stop - 1 : 0;
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
                r->out_want[*n_out] = s->lr.q.logprobs;
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
                    .out = r->step_out, .n_out = n_out, .greedy_only = true};
    for (int i = 0; i < n_out; i++) /* the sampler's greedy pick needs no other logit */
        step.greedy_only &= r->out_sp[i].temperature <= 0.0f && r->out_want[i] <= 0;
    double t_step = qm_now(), before[QM_TIME_COUNT];
    memcpy(before, dev->time_s, sizeof before);
    qm_status st = qm_forward(dev, &step, err);
    if (st) return st;
    int *pk = r->picked;
    const double t_sample = qm_now();
    st = qm_sample_rows_logprobs(dev->comm, dev->logits, (size_t)qm_range_len(p->vocab), p->vocab.begin,
                                 qm_range_len(p->vocab), n_out, r->out_sp, r->out_want, r->out_rng, r->scratch, pk,
                                 r->out_lp, err);
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
    if (n > n_out) {
        r->st.prefill_s += qm_now() - t_step;
    } else {
        r->st.decode_s += qm_now() - t_step;
        r->st.decode_tokens += n_out;
        for (int k = 0; k < QM_TIME_COUNT; k++) dev->decode_time_s[k] += dev->time_s[k] - before[k];
        dev->decode_steps++;
    }
    for (int i = 0; i < n_out; i++) {
        seq *s = &r->seqs[r->out_seq[i]];
        s->rng = r->out_rng[i];
        accept_token(r, s, pk[i], &r->out_lp[i]);
    }
    return QM_OK;
}

/* The row's buffers. */
static qm_status row_open(row_ctx *r, qm_engine *e, qm_device *dev, qm_error *err) {
    const int B = e->batch, T = dev->dims.max_tokens;
    *r = (row_ctx){.e = e, .dev = dev};
    r->seqs = calloc((size_t)B, sizeof *r->seqs);
    r->slot_ids = calloc((size_t)B, sizeof *r->slot_ids);
    r->step_ids = calloc((size_t)T * 5, sizeof(int));
    r->out_sp = calloc((size_t)T, sizeof *r->out_sp);
    r->out_rng = calloc((size_t)T, sizeof *r->out_rng);
    r->out_lp = calloc((size_t)T, sizeof *r->out_lp);
    r->out_want = calloc((size_t)T, sizeof *r->out_want);
    r->scratch = malloc(qm_sample_scratch_bytes(B < T ? B : T, dev->comm->cols)); /* one output per sequence */
    r->picked = malloc((size_t)T * sizeof(int));
    if (!r->seqs || !r->slot_ids || !r->step_ids || !r->out_sp || !r->out_rng || !r->out_lp || !r->out_want || !r->scratch || !r->picked)
        return qm_fail(err, QM_ERR_NOMEM, "out of memory");
    r->step_pos = r->step_ids + T;
    r->step_slot = r->step_pos + T;
    r->step_out = r->step_slot + T;
    r->out_seq = r->step_out + T;
    for (int b = 0; b < B; b++) r->seqs[b].req = -1;
    return qm_orders_init(&r->orders, B, dev->comm->rows * dev->comm->cols, err);
}

/* The row's statistics into the engine's (the leader's), then everything freed, the sequences
 * still running included (after a failure). */
static void row_close(row_ctx *r) {
    qm_kv_own_all(r->dev); /* no later user of the slots (logits, the next loop) reads the prefix slot */
    qm_engine *e = r->e;
    if (r->seqs)
        for (int b = 0; b < e->batch; b++)
            if (r->seqs[b].req >= 0) {
                free(r->seqs[b].toks);
                free(r->seqs[b].text);
                free(r->seqs[b].lps);
                free(r->seqs[b].tok_end);
                qm_live_request_free(&r->seqs[b].lr);
            }
    if (is_leader(r)) {
        pthread_mutex_lock(&e->mu);
        e->stats.prompt_tokens += r->st.prompt_tokens;
        e->stats.prefill_tokens += r->st.prefill_tokens;
        e->stats.gen_tokens += r->st.gen_tokens;
        if (r->st.prefill_s > e->stats.prefill_s) e->stats.prefill_s = r->st.prefill_s;
        if (r->st.decode_s > e->stats.decode_s) e->stats.decode_s = r->st.decode_s;
        e->stats.decode_tokens += r->st.decode_tokens;
        pthread_mutex_unlock(&e->mu);
    }
    qm_relay_free(&r->relay);
    qm_orders_free(&r->orders);
    free(r->seqs);
    free(r->slot_ids);
    free(r->prefix);
    free(r->step_ids);
    free(r->out_sp);
    free(r->out_rng);
    free(r->out_lp);
    free(r->out_want);
    free(r->scratch);
    free(r->picked);
}

/* At a step boundary: the row learns its orders (dispatch.h), cancels and starts sequences.
 * *active: sequences running now; *stop: the loop ends. */
static qm_status take_requests(row_ctx *r, int *active, bool *stop, qm_error *err) {
    const int B = r->e->batch;
    qm_row_orders *o = &r->orders;
    for (int b = 0; b < B; b++) r->slot_ids[b] = r->seqs[b].req;
    qm_status st = qm_dispatch(r->e, r->dev->comm, r->slot_ids, o, err);
    if (st) return st;
    for (int b = 0; b < B; b++)
        if (o->cancel[b] && r->seqs[b].req >= 0) finish(r, &r->seqs[b], QM_STOP_CANCELLED);
    const char *p = o->payload;
    size_t left = o->len;
    for (int k = 0, b = 0; k < o->n_new && !st; k++) {
        while (b < B && r->slot_ids[b] >= 0) b++; /* the free slots before this step, in order */
        if (b == B) return qm_fail(err, QM_ERR_COMM, "more new requests than free sequences");
        qm_live_request lr;
        size_t used = 0;
        if ((st = qm_request_unpack(p, left, &lr, &used, err))) break;
        p += used;
        left -= used;
        st = start_seq(r, &r->seqs[b++], &lr, err);
    }
    *active = 0;
    for (int b = 0; b < B; b++) *active += r->seqs[b].req >= 0;
    *stop = o->stop;
    return st;
}

static qm_status row_loop(qm_engine *e, qm_device *dev, void *arg, qm_error *err) {
    (void)arg;
    row_ctx r;
    qm_status st = row_open(&r, e, dev, err);
    /* Rows in other processes: the streamed pieces and results of rows other than 0 are flushed to
     * rank 0 every pass, so that they stream and a crash loses at most the last pass of them. */
    const bool flush = !e->whole_mesh && e->rows > 1;
    if (!st && flush) st = qm_relay_open(&r.relay, dev->comm, e->cb, err); /* what rank 0 streams */
    while (!st) {
        int active = 0;
        bool stop = false;
        if ((st = take_requests(&r, &active, &stop, err))) break;
        if (flush) { /* every rank, once per pass: pieces and results reach rank 0 a pass after */
            bool all_done = false;
            if ((st = qm_relay_flush(&r.relay, dev->comm, e->cb, !active, &all_done, err))) break;
        }
        if (stop) break;
        if (!active) continue; /* waiting for requests, or they finished at once (max_new_tokens 0) */
        int n_out = 0, n = fill_step(&r, &n_out);
        if ((st = run_step(&r, n, n_out, err))) break;
        if (r.failed) /* this device stops; the comm's abort stops the others of the mesh */
            st = qm_fail(err, r.failed, "out of memory keeping the text or results of finished requests");
    }
    row_close(&r);
    return st;
}

qm_status qm_engine_serve(qm_engine *e, const qm_request_source *src, const qm_gen_callbacks *cb,
                          qm_gen_stats *stats, qm_error *err) {
    if (!src || !src->next || !src->closed)
        return qm_fail(err, QM_ERR_ARG, "qm_engine_serve needs a request source with next and closed");
    e->src = src;
    e->cb = cb;
    memset(&e->stats, 0, sizeof e->stats);
    double t0 = qm_now();
    qm_status st = qm_engine_run_devices(e, row_loop, NULL, err);
    e->stats.wall_s = qm_now() - t0;
    if (stats) *stats = e->stats;
    e->src = NULL;
    e->cb = NULL;
    return st;
}
