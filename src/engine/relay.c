/* Streamed pieces and finished results relayed to world rank 0 (see relay.h). */
#include "engine/relay.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

enum { RELAY_RESULT = 1, RELAY_PIECE = 2 }; /* relay_header.kind */

/* One packed record: this header, then n_ids ints, then text_len bytes of text, then the
 * logprobs, n_ids of them, when has_logprobs. A piece: the text and the tokens it completes
 * (reason 0, prompt_tokens and ms unused); a result: a finished request's. */
typedef struct {
    int32_t req, reason, prompt_tokens, n_ids, has_logprobs, kind;
    uint64_t text_len;
    double ms;
} relay_header;

/* A record unpacked: its own copies, NUL after the text. */
typedef struct {
    relay_header hd;
    int *ids;
    char *text;
    qm_token_logprobs *lps; /* NULL without logprobs */
} relay_record;

static qm_status append(qm_relay *h, const void *p, size_t n) {
    if (n == 0) return QM_OK;
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

/* Packs one record (hd, then its parts): whole, or nothing (QM_ERR_NOMEM). */
static qm_status pack(qm_relay *h, const relay_header *hd, const int *ids, const char *text,
                      const qm_token_logprobs *lps) {
    const size_t start = h->len;
    qm_status st = append(h, hd, sizeof *hd);
    if (!st) st = append(h, ids, (size_t)hd->n_ids * sizeof(int));
    if (!st) st = append(h, text, (size_t)hd->text_len);
    if (!st && hd->has_logprobs) st = append(h, lps, (size_t)hd->n_ids * sizeof *lps);
    if (st) h->len = start; /* nothing half-packed */
    return st;
}

qm_status qm_relay_piece(qm_relay *h, int req, const char *text, size_t text_len, const int *ids,
                         const qm_token_logprobs *lps, int n) {
    relay_header hd;
    memset(&hd, 0, sizeof hd);
    hd.kind = RELAY_PIECE;
    hd.req = req;
    hd.n_ids = n > 0 ? n : 0;
    hd.has_logprobs = lps != NULL && n > 0;
    hd.text_len = text_len;
    return pack(h, &hd, ids, text, lps);
}

qm_status qm_relay_hold(qm_relay *h, int req, const qm_gen_result *res, size_t text_len) {
    relay_header hd;
    memset(&hd, 0, sizeof hd);
    hd.kind = RELAY_RESULT;
    hd.req = req;
    hd.reason = (int32_t)res->reason;
    hd.prompt_tokens = res->prompt_tokens;
    hd.n_ids = res->n_ids;
    hd.text_len = text_len;
    hd.ms = res->ms;
    hd.has_logprobs = res->logprobs != NULL;
    return pack(h, &hd, res->ids, res->text, res->logprobs);
}

static void record_free(relay_record *rec) {
    free(rec->ids);
    free(rec->text);
    free(rec->lps);
}

/* One packed record at p (n >= sizeof(relay_header) bytes left) checked and copied into *rec;
 * *used: its size. Anything out of place is a QM_ERR_COMM error, nothing read past n. */
static qm_status unpack(const char *p, size_t n, relay_record *rec, size_t *used, qm_error *err) {
    memset(rec, 0, sizeof *rec);
    relay_header hd;
    memcpy(&hd, p, sizeof hd);
    const size_t at = sizeof hd;
    const size_t ids_bytes = hd.n_ids > 0 ? (size_t)hd.n_ids * sizeof(int) : 0;
    const size_t lp_bytes = hd.has_logprobs == 1 && hd.n_ids > 0 ? (size_t)hd.n_ids * sizeof(qm_token_logprobs) : 0;
    const bool kind_ok = (hd.kind == RELAY_PIECE && hd.reason == 0) ||
                         (hd.kind == RELAY_RESULT && hd.reason >= QM_STOP_LENGTH && hd.reason <= QM_STOP_CANCELLED);
    if (!kind_ok || hd.n_ids < 0 || (hd.has_logprobs != 0 && hd.has_logprobs != 1) || ids_bytes > n - at ||
        hd.text_len > n - at - ids_bytes || lp_bytes > n - at - ids_bytes - hd.text_len)
        return qm_fail(err, QM_ERR_COMM, "relayed records are damaged (request %d, kind %d)", hd.req, hd.kind);
    rec->hd = hd;
    rec->ids = malloc(ids_bytes + 1);
    rec->text = malloc((size_t)hd.text_len + 1);
    rec->lps = lp_bytes ? malloc(lp_bytes) : NULL;
    if (!rec->ids || !rec->text || (lp_bytes && !rec->lps)) {
        record_free(rec);
        return qm_fail(err, QM_ERR_NOMEM, "out of memory reporting relayed request %d", hd.req);
    }
    if (ids_bytes) memcpy(rec->ids, p + at, ids_bytes);
    if (hd.text_len) memcpy(rec->text, p + at + ids_bytes, (size_t)hd.text_len);
    rec->text[hd.text_len] = 0;
    if (lp_bytes) memcpy(rec->lps, p + at + ids_bytes + hd.text_len, lp_bytes);
    *used = at + ids_bytes + (size_t)hd.text_len + lp_bytes;
    return QM_OK;
}

/* One packed record at p (n bytes left) handed to cb: a piece to on_tokens (or on_text), a
 * result to on_done; *used: its size. */
static qm_status report_one(const qm_gen_callbacks *cb, const char *p, size_t n, size_t *used, qm_error *err) {
    relay_record rec;
    qm_status st = unpack(p, n, &rec, used, err);
    if (st) return st;
    const relay_header *hd = &rec.hd;
    if (hd->kind == RELAY_PIECE) {
        qm_gen_stream_piece(cb, hd->req, rec.text, rec.ids, rec.lps, hd->n_ids);
    } else if (cb->on_done) {
        const qm_gen_result res = {.ids = rec.ids, .n_ids = hd->n_ids, .text = rec.text,
                                   .reason = (qm_stop_reason)hd->reason, .logprobs = rec.lps,
                                   .prompt_tokens = hd->prompt_tokens, .ms = hd->ms};
        cb->on_done(cb->ctx, hd->req, &res);
    }
    record_free(&rec);
    return QM_OK;
}

/* Hands one rank's packed records (n bytes) to cb, in order; bytes that cannot hold a whole
 * record are damaged. */
static qm_status report_packed(const qm_gen_callbacks *cb, const char *p, size_t n, qm_error *err) {
    size_t at = 0;
    while (at < n) {
        if (n - at < sizeof(relay_header))
            return qm_fail(err, QM_ERR_COMM, "relayed records are damaged (%zu stray bytes)", n - at);
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

qm_status qm_relay_open(qm_relay *h, qm_comm *c, const qm_gen_callbacks *cb, qm_error *err) {
    int32_t mode[2] = {0, 0}; /* rank 0's: streams, with tokens */
    if (qm_comm_rank(c) == 0 && cb) {
        mode[0] = qm_gen_streams(cb);
        mode[1] = cb->on_tokens != NULL;
    }
    qm_status st = c->ops->world_bcast(c, mode, sizeof mode, err);
    if (st) return st;
    h->stream = mode[0] != 0;
    h->stream_tokens = mode[1] != 0;
    return QM_OK;
}

qm_status qm_relay_flush(qm_relay *h, qm_comm *c, const qm_gen_callbacks *cb, bool done, bool *all_done,
                         qm_error *err) {
    const int world = c->rows * c->cols;
    const bool root = qm_comm_rank(c) == 0;
    uint64_t agreed[2];
    uint64_t *sizes = root ? calloc((size_t)world, 2 * sizeof *sizes) : NULL;
    if (root && !sizes) return qm_fail(err, QM_ERR_NOMEM, "out of memory gathering relayed records");
    qm_status st = agree(c, h->len, done, sizes, agreed, err);
    char *pad = NULL, *all = NULL;
    if (st == QM_OK && agreed[0] > 0) { /* every device sends agreed[0] bytes, its records first */
        pad = calloc(1, (size_t)agreed[0]);
        all = root ? calloc((size_t)world, (size_t)agreed[0]) : NULL;
        if (!pad || (root && !all)) st = qm_fail(err, QM_ERR_NOMEM, "out of memory gathering relayed records");
        if (st == QM_OK) {
            if (h->len) memcpy(pad, h->buf, h->len);
            st = c->ops->world_gather(c, pad, (size_t)agreed[0], all, err);
        }
    }
    if (st == QM_OK && all && cb)
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
