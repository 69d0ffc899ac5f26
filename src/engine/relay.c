/* Results relayed to world rank 0 (see relay.h). */
#include "engine/relay.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* One packed result: this header, then n_ids ints, then text_len bytes of text. */
typedef struct {
    int32_t req, reason, prompt_tokens, n_ids, has_logprobs, pad;
    uint64_t text_len;
    double ms;
} relay_header; /* then the logprobs, n_ids of them, when has_logprobs */

static qm_status append(qm_relay *h, const void *p, size_t n) {
    if (h->len + n > h->cap) {
        const size_t cap = (h->len + n) * 2 + 256;
        char *t = realloc(h->buf, cap);
        if (!t) return QM_ERR_NOMEM;
        h->buf = t;
        h->cap = cap;
    }
    memcpy(h->buf + h->len, p, n);
    h->len += n;
    return QM_OK;
}

qm_status qm_relay_hold(qm_relay *h, int req, const qm_gen_result *res, size_t text_len) {
    relay_header hd;
    memset(&hd, 0, sizeof hd);
    hd.req = req;
    hd.reason = (int32_t)res->reason;
    hd.prompt_tokens = res->prompt_tokens;
    hd.n_ids = res->n_ids;
    hd.text_len = text_len;
    hd.ms = res->ms;
    hd.has_logprobs = res->logprobs != NULL;
    const size_t start = h->len;
    qm_status st = append(h, &hd, sizeof hd);
    if (!st) st = append(h, res->ids, (size_t)res->n_ids * sizeof(int));
    if (!st) st = append(h, res->text, text_len);
    if (!st && res->logprobs) st = append(h, res->logprobs, (size_t)res->n_ids * sizeof *res->logprobs);
    if (st) h->len = start; /* nothing half-packed */
    return st;
}

/* One packed result at p (n bytes left) handed to on_done; *used: its size. */
static qm_status report_one(const qm_gen_callbacks *cb, const char *p, size_t n, size_t *used, qm_error *err) {
    relay_header hd;
    memcpy(&hd, p, sizeof hd);
    size_t at = sizeof hd;
    const size_t ids_bytes = (size_t)hd.n_ids * sizeof(int);
    const size_t lp_bytes = hd.has_logprobs ? (size_t)hd.n_ids * sizeof(qm_token_logprobs) : 0;
    if (hd.n_ids < 0 || ids_bytes > n - at || hd.text_len > n - at - ids_bytes ||
        lp_bytes > n - at - ids_bytes - hd.text_len)
        return qm_fail(err, QM_ERR_COMM, "relayed results are damaged (request %d)", hd.req);
    int *ids = malloc(ids_bytes + 1);
    char *text = malloc((size_t)hd.text_len + 1);
    qm_token_logprobs *lps = lp_bytes ? malloc(lp_bytes) : NULL;
    if (!ids || !text || (lp_bytes && !lps)) {
        free(ids);
        free(text);
        free(lps);
        return qm_fail(err, QM_ERR_NOMEM, "out of memory reporting the result of request %d", hd.req);
    }
    memcpy(ids, p + at, ids_bytes);
    memcpy(text, p + at + ids_bytes, (size_t)hd.text_len);
    text[hd.text_len] = 0;
    if (lps) memcpy(lps, p + at + ids_bytes + hd.text_len, lp_bytes);
    *used = at + ids_bytes + (size_t)hd.text_len + lp_bytes;
    const qm_gen_result res = {.ids = ids, .n_ids = hd.n_ids, .text = text, .reason = (qm_stop_reason)hd.reason,
                               .logprobs = lps, .prompt_tokens = hd.prompt_tokens, .ms = hd.ms};
    cb->on_done(cb->ctx, hd.req, &res);
    free(ids);
    free(text);
    free(lps);
    return QM_OK;
}

/* Hands one rank's packed results (n bytes) to on_done. */
static qm_status report_packed(const qm_gen_callbacks *cb, const char *p, size_t n, qm_error *err) {
    size_t at = 0;
    while (at + sizeof(relay_header) <= n) {
        size_t used = 0;
        qm_status st = report_one(cb, p + at, n - at, &used, err);
        if (st) return st;
        at += used;
    }
    return QM_OK;
}

/* Every device's {held bytes, done} to rank 0 (sizes[2 * rank ...], rank 0 only); back from it
 * the largest held size and whether every device is done. */
static qm_status agree(qm_comm *c, size_t len, bool done, uint64_t *sizes, uint64_t agreed[2], qm_error *err) {
    const int world = c->rows * c->cols;
    uint64_t mine[2] = {len, done};
    agreed[0] = 0;
    agreed[1] = 1;
    qm_status st = c->ops->world_gather(c, mine, sizeof mine, sizes, err);
    if (st) return st;
    if (sizes)
        for (int i = 0; i < world; i++) {
            if (sizes[2 * i] > agreed[0]) agreed[0] = sizes[2 * i];
            agreed[1] &= sizes[2 * i + 1];
        }
    return c->ops->world_bcast(c, agreed, 2 * sizeof *agreed, err);
}

qm_status qm_relay_flush(qm_relay *h, qm_comm *c, const qm_gen_callbacks *cb, bool done, bool *all_done,
                         qm_error *err) {
    const int world = c->rows * c->cols;
    const bool root = qm_comm_rank(c) == 0;
    uint64_t agreed[2];
    uint64_t *sizes = root ? calloc((size_t)world, 2 * sizeof *sizes) : NULL;
    if (root && !sizes) return qm_fail(err, QM_ERR_NOMEM, "out of memory gathering results");
    qm_status st = agree(c, h->len, done, sizes, agreed, err);
    char *pad = NULL, *all = NULL;
    if (st == QM_OK && agreed[0] > 0) { /* every device sends agreed[0] bytes, its results first */
        pad = calloc(1, (size_t)agreed[0]);
        all = root ? calloc((size_t)world, (size_t)agreed[0]) : NULL;
        if (!pad || (root && !all)) st = qm_fail(err, QM_ERR_NOMEM, "out of memory gathering results");
        if (st == QM_OK) {
            if (h->len) memcpy(pad, h->buf, h->len);
            st = c->ops->world_gather(c, pad, (size_t)agreed[0], all, err);
        }
    }
    if (st == QM_OK && all && cb && cb->on_done)
        for (int i = 0; i < world && st == QM_OK; i++)
            st = report_packed(cb, all + (size_t)i * agreed[0], (size_t)sizes[2 * i], err);
    if (st == QM_OK) {
        h->len = 0;
        *all_done = agreed[1] != 0;
    }
    free(pad);
    free(all);
    free(sizes);
    return st;
}

void qm_relay_free(qm_relay *h) {
    free(h->buf);
    memset(h, 0, sizeof *h);
}
