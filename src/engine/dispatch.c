/* Orders for each row at a step boundary: new requests and cancellations (dispatch.h). */
#include "engine/dispatch.h"
#include "engine/request_pack.h"

#include <stdlib.h>
#include <string.h>

enum { ROW_HDR = 3, WORLD_HDR = 4 }; /* row: stop, n_new, len; world: stop, n_cancel, n_new, body_len */

qm_status qm_orders_init(qm_row_orders *o, int batch, int world, qm_error *err) {
    memset(o, 0, sizeof *o);
    o->batch = batch;
    o->cancel = calloc((size_t)batch, 1);
    const size_t gathered = (size_t)world * (size_t)(1 + batch);
    o->msg = calloc(WORLD_HDR + ROW_HDR + (size_t)batch + 1 + (size_t)batch + gathered, sizeof *o->msg);
    if (!o->cancel || !o->msg) return qm_fail(err, QM_ERR_NOMEM, "out of memory for the request dispatch");
    return QM_OK;
}

void qm_orders_free(qm_row_orders *o) {
    free(o->cancel);
    free(o->payload);
    free(o->msg);
    free(o->body);
    memset(o, 0, sizeof *o);
}

static qm_status reserve(char **buf, size_t *cap, size_t need, qm_error *err) {
    if (need <= *cap) return QM_OK;
    size_t c = need * 2 + 256;
    char *t = realloc(*buf, c);
    if (!t) return qm_fail(err, QM_ERR_NOMEM, "out of memory receiving new requests");
    *buf = t;
    *cap = c;
    return QM_OK;
}

/* A request the engine cannot run: reported done at once, nothing generated. */
static void report_refused(qm_engine *e, int id, const qm_gen_request *q) {
    if (!e->cb || !e->cb->on_done || id < 0) return;
    const qm_gen_result res = {.ids = NULL, .n_ids = 0, .text = "", .reason = QM_STOP_CANCELLED,
                               .prompt_tokens = q->n_prompt};
    e->cb->on_done(e->cb->ctx, id, &res);
}

/* One request from the source packed at the end of o->payload; *got false when none waits.
 * The caller makes the source's calls one at a time (the engine's lock, or rank 0's one thread). */
static qm_status poll_one(qm_engine *e, qm_row_orders *o, bool *got, qm_error *err) {
    const qm_request_source *src = e->src;
    *got = false;
    for (;;) {
        qm_gen_request q;
        int id = -1;
        memset(&q, 0, sizeof q);
        if (!src->next(src->ctx, &q, &id)) return QM_OK;
        qm_error why = {0};
        if (id < 0 || qm_engine_check_request(e, &q, &why)) {
            report_refused(e, id, &q);
            continue;
        }
        const size_t n = qm_request_packed_size(&q);
        qm_status st = reserve(&o->payload, &o->cap, o->len + n, err);
        if (st) return st;
        qm_request_pack(&q, id, o->payload + o->len);
        o->len += n;
        *got = true;
        return QM_OK;
    }
}

/* How long an idle leader waits for a request: briefly where devices share threads (util/coop.h),
 * whose other devices (other rows) cannot run while it sleeps. */
static int idle_ms(const qm_engine *e) { return e->coop_threads > 0 ? 1 : 20; }

static bool source_cancelled(const qm_engine *e, int id) {
    return e->src->cancelled && e->src->cancelled(e->src->ctx, id);
}

/* The leader's orders for its row (threads: the source is shared under the engine's lock). */
static qm_status leader_orders(qm_engine *e, const int *ids, qm_row_orders *o, int64_t *h, qm_error *err) {
    const int B = o->batch;
    int n_free = 0, n_live = 0, n_new = 0;
    qm_status st = QM_OK;
    pthread_mutex_lock(&e->mu);
    for (int b = 0; b < B; b++) {
        if (ids[b] < 0) n_free++;
        else if (source_cancelled(e, ids[b])) h[ROW_HDR + b] = 1;
        else n_live++;
    }
    for (bool got = true; !st && got && n_new < n_free;) {
        st = poll_one(e, o, &got, err);
        n_new += got;
    }
    const bool closed = e->src->closed(e->src->ctx);
    pthread_mutex_unlock(&e->mu);
    h[0] = closed && n_new == 0 && n_live == 0;
    h[1] = n_new;
    h[2] = (int64_t)o->len;
    if (!st && !h[0] && n_new == 0 && n_live == 0 && e->src->idle_wait) e->src->idle_wait(e->src->ctx, idle_ms(e));
    return st;
}

static qm_status dispatch_row(qm_engine *e, qm_comm *c, const int *ids, qm_row_orders *o, qm_error *err) {
    const int B = o->batch;
    int64_t *h = o->msg;
    memset(h, 0, (ROW_HDR + (size_t)B) * sizeof *h);
    o->len = 0;
    qm_status st = QM_OK;
    if (c->col == 0) st = leader_orders(e, ids, o, h, err);
    if (st) return st;
    if ((st = c->ops->row_bcast(c, h, (ROW_HDR + (size_t)B) * sizeof *h, 0, err))) return st;
    if ((st = reserve(&o->payload, &o->cap, (size_t)h[2], err))) return st;
    if (h[2] > 0 && (st = c->ops->row_bcast(c, o->payload, (size_t)h[2], 0, err))) return st;
    o->stop = h[0] != 0;
    o->n_new = (int)h[1];
    o->len = (size_t)h[2];
    for (int b = 0; b < B; b++) o->cancel[b] = h[ROW_HDR + b] != 0;
    return QM_OK;
}

/* Rank 0: every row's orders into the world body (cancelled ids, each new request's row, the
 * packed requests) and the header h. g: the gathered slots, [world][B] request ids. */
static qm_status world_orders(qm_engine *e, qm_comm *c, qm_row_orders *o, const int64_t *g, int64_t *h,
                              qm_error *err) {
    const int B = o->batch, R = c->rows, C = c->cols;
    int64_t *list = calloc((size_t)R * (size_t)B * 2 + 1, sizeof *list); /* cancelled ids, then rows */
    int *n_free = calloc((size_t)R, sizeof *n_free);
    if (!list || !n_free) {
        free(list);
        free(n_free);
        return qm_fail(err, QM_ERR_NOMEM, "out of memory dispatching requests");
    }
    int64_t *targets = list + (size_t)R * (size_t)B;
    int n_cancel = 0, n_live = 0, n_new = 0;
    for (int r = 0; r < R; r++)
        for (int b = 0; b < B; b++) {
            const int64_t id = g[(size_t)r * (size_t)C * (size_t)B + (size_t)b];
            if (id < 0) n_free[r]++;
            else if (source_cancelled(e, (int)id)) list[n_cancel++] = id;
            else n_live++;
        }
    qm_status st = QM_OK;
    o->len = 0;
    for (bool more = true; more && !st;) { /* one request per row with a free slot, in turn */
        more = false;
        for (int r = 0; r < R && !st; r++) {
            if (!n_free[r]) continue;
            bool got = false;
            st = poll_one(e, o, &got, err);
            if (!got) break;
            targets[n_new++] = r;
            n_free[r]--;
            more = true;
        }
    }
    const bool closed = e->src->closed(e->src->ctx);
    const size_t ints = (size_t)(n_cancel + n_new) * sizeof(int64_t);
    if (!st) st = reserve(&o->body, &o->body_cap, ints + o->len, err);
    if (!st) {
        if (n_cancel) memcpy(o->body, list, (size_t)n_cancel * sizeof(int64_t));
        if (n_new) memcpy(o->body + (size_t)n_cancel * sizeof(int64_t), targets, (size_t)n_new * sizeof(int64_t));
        if (o->len) memcpy(o->body + ints, o->payload, o->len);
        h[0] = closed && n_new == 0 && n_live == 0;
        h[1] = n_cancel;
        h[2] = n_new;
        h[3] = (int64_t)(ints + o->len);
        if (!h[0] && n_new == 0 && n_live == 0 && e->src->idle_wait) e->src->idle_wait(e->src->ctx, idle_ms(e));
    }
    free(list);
    free(n_free);
    return st;
}

/* Every device: this row's orders out of the world body. */
static qm_status row_from_world(qm_comm *c, const int *ids, qm_row_orders *o, const int64_t *h, qm_error *err) {
    const int B = o->batch;
    const int n_cancel = (int)h[1], n_new = (int)h[2];
    const size_t ints = (size_t)(n_cancel + n_new) * sizeof(int64_t);
    if (n_cancel < 0 || n_new < 0 || ints > (size_t)h[3])
        return qm_fail(err, QM_ERR_COMM, "the broadcast request orders are damaged");
    memset(o->cancel, 0, (size_t)B);
    for (int i = 0; i < n_cancel; i++) {
        int64_t id;
        memcpy(&id, o->body + (size_t)i * sizeof id, sizeof id);
        for (int b = 0; b < B; b++) o->cancel[b] |= ids[b] >= 0 && ids[b] == id;
    }
    const char *p = o->body + ints, *end = o->body + h[3];
    o->len = 0;
    o->n_new = 0;
    for (int i = 0; i < n_new; i++) {
        int64_t row;
        memcpy(&row, o->body + (size_t)(n_cancel + i) * sizeof row, sizeof row);
        const size_t n = qm_request_packed_at(p, (size_t)(end - p));
        if (!n) return qm_fail(err, QM_ERR_COMM, "a broadcast request is damaged");
        if (row == c->row) {
            qm_status st = reserve(&o->payload, &o->cap, o->len + n, err);
            if (st) return st;
            memcpy(o->payload + o->len, p, n);
            o->len += n;
            o->n_new++;
        }
        p += n;
    }
    o->stop = h[0] != 0;
    return QM_OK;
}

static qm_status dispatch_world(qm_engine *e, qm_comm *c, const int *ids, qm_row_orders *o, qm_error *err) {
    const int B = o->batch;
    const bool root = qm_comm_rank(c) == 0;
    int64_t *h = o->msg, *mine = h + WORLD_HDR, *g = mine + B;
    memset(h, 0, WORLD_HDR * sizeof *h);
    for (int b = 0; b < B; b++) mine[b] = ids[b];
    qm_status st = c->ops->world_gather(c, mine, (size_t)B * sizeof *mine, root ? g : NULL, err);
    if (!st && root) st = world_orders(e, c, o, g, h, err);
    if (st) return st;
    if ((st = c->ops->world_bcast(c, h, WORLD_HDR * sizeof *h, err))) return st;
    if (h[3] < 0 || (st = reserve(&o->body, &o->body_cap, (size_t)h[3], err)))
        return st ? st : qm_fail(err, QM_ERR_COMM, "the broadcast request orders are damaged");
    if (h[3] > 0 && (st = c->ops->world_bcast(c, o->body, (size_t)h[3], err))) return st;
    return row_from_world(c, ids, o, h, err);
}

qm_status qm_dispatch(qm_engine *e, qm_comm *c, const int *ids, qm_row_orders *o, qm_error *err) {
    return e->whole_mesh ? dispatch_row(e, c, ids, o, err) : dispatch_world(e, c, ids, o, err);
}
