/* Full logits of a sequence (gathered from the vocabulary shards), MPI result gathering, info. */
#include "engine/engine_internal.h"

#include <stdlib.h>
#include <string.h>

typedef struct {
    const int *const *ids; /* [n_seq] sequences */
    const int *lens;
    int n_seq;
    float *const *out;     /* [n_seq] -> [lens[i]][vocab] on the output rank, else NULL */
} logits_job;

/* All tokens of all sequences, in order, packed into steps of up to max_tokens: a step may hold
 * the end of one sequence and the start of the next (each in its own KV slot). */
static qm_status logits_device(qm_engine *e, qm_device *dev, void *arg, qm_error *err) {
    logits_job *J = arg;
    if (dev->comm->row != 0) return QM_OK; /* one replica is enough */
    const qm_partition *p = &dev->shard.part;
    int C = dev->comm->cols, V = e->cfg.vocab_size, T = dev->dims.max_tokens;
    int maxv = (V + C - 1) / C, nv = qm_range_len(p->vocab);
    float *send = calloc((size_t)T * (size_t)maxv, sizeof(float));
    float *recv = calloc((size_t)C * (size_t)T * (size_t)maxv, sizeof(float));
    int *buf = malloc(5 * (size_t)T * sizeof(int));
    qm_status st = QM_OK;
    if (!send || !recv || !buf) {
        st = qm_fail(err, QM_ERR_NOMEM, "out of memory gathering logits");
        goto done;
    }
    int *ids = buf, *pos = buf + T, *slot = pos + T, *outs = slot + T, *seq_of = outs + T;
    int s = 0, at = 0; /* next token: sequence s, position at */
    while (s < J->n_seq) {
        int n = 0;
        while (n < T && s < J->n_seq) {
            ids[n] = J->ids[s][at];
            pos[n] = at;
            slot[n] = s;
            outs[n] = n;
            seq_of[n] = s;
            n++;
            if (++at == J->lens[s]) {
                s++;
                at = 0;
            }
        }
        qm_step step = {.n_tok = n, .ids = ids, .pos = pos, .slot = slot, .out = outs, .n_out = n};
        if ((st = qm_forward(dev, &step, err))) goto done;
        for (int i = 0; i < n; i++)
            memcpy(send + (size_t)i * maxv, dev->logits + (size_t)i * nv, (size_t)nv * sizeof(float));
        double t0 = qm_now();
        st = dev->comm->ops->row_allgather(dev->comm, send, (size_t)T * maxv * sizeof(float), recv, err);
        dev->comm_s += qm_now() - t0;
        if (st) goto done;
        if (dev->comm->col != 0) continue;
        for (int i = 0; i < n; i++) {
            float *dst = J->out[seq_of[i]];
            if (!dst) continue;
            for (int c = 0; c < C; c++) {
                qm_range r = qm_split(V, C, c);
                memcpy(dst + (size_t)pos[i] * V + r.begin, recv + ((size_t)c * T + i) * maxv,
                       (size_t)qm_range_len(r) * sizeof(float));
            }
        }
    }
done:
    free(send);
    free(recv);
    free(buf);
    return st;
}

qm_status qm_engine_logits_batch(qm_engine *e, const int *const *ids, const int *lens, int n_seq, float *const *out,
                                 qm_error *err) {
    if (n_seq < 1) return qm_fail(err, QM_ERR_ARG, "no sequences");
    if (n_seq > e->dims.n_slots)
        return qm_fail(err, QM_ERR_ARG, "%d sequences but the engine holds %d at once (--batch)", n_seq, e->dims.n_slots);
    for (int k = 0; k < n_seq; k++) {
        if (lens[k] < 1) return qm_fail(err, QM_ERR_ARG, "sequence %d has no token ids", k);
        if (lens[k] > e->dims.max_context)
            return qm_fail(err, QM_ERR_ARG, "sequence %d: %d ids do not fit the context of %d (--ctx)", k, lens[k],
                           e->dims.max_context);
        for (int i = 0; i < lens[k]; i++)
            if (ids[k][i] < 0 || ids[k][i] >= e->cfg.vocab_size)
                return qm_fail(err, QM_ERR_ARG, "sequence %d: token id %d (position %d) is outside the vocabulary [0, %d)",
                               k, ids[k][i], i, e->cfg.vocab_size);
    }
    float *const *dst = out;
    float **nulls = NULL;
    if (!qm_engine_is_output_rank(e)) {
        nulls = calloc((size_t)n_seq, sizeof *nulls);
        if (!nulls) return qm_fail(err, QM_ERR_NOMEM, "out of memory");
        dst = nulls;
    }
    logits_job J = {ids, lens, n_seq, dst};
    qm_status st = qm_engine_run_devices(e, logits_device, &J, err);
    free(nulls);
    return st;
}

qm_status qm_engine_logits(qm_engine *e, const int *ids, int n, float *out, qm_error *err) {
    return qm_engine_logits_batch(e, &ids, &n, 1, &out, err);
}

/* MPI: rows other than 0 hold their finished results; rank 0 receives them and reports them
 * (after its own row's, which it reported as they finished). */
/* Rank 0 hands one rank's blob of finished results (hdr[5], ms, ids, text, ...) to on_done. */
static void emit_blob(qm_engine *e, const char *blob, size_t n) {
    size_t at = 0;
    while (at + 5 * sizeof(int) + sizeof(double) <= n) {
        int hdr[5];
        double ms;
        memcpy(hdr, blob + at, sizeof hdr);
        at += sizeof hdr;
        memcpy(&ms, blob + at, sizeof ms);
        at += sizeof ms;
        int *ids = malloc((size_t)hdr[3] * sizeof(int) + 1);
        char *text = malloc((size_t)hdr[4] + 1);
        if (ids && text) {
            memcpy(ids, blob + at, (size_t)hdr[3] * sizeof(int));
            memcpy(text, blob + at + (size_t)hdr[3] * sizeof(int), (size_t)hdr[4]);
            text[hdr[4]] = 0;
            qm_gen_result res = {.ids = ids, .n_ids = hdr[3], .text = text, .reason = (qm_stop_reason)hdr[1],
                                 .prompt_tokens = hdr[2], .ms = ms};
            e->cb->on_done(e->cb->ctx, hdr[0], &res);
        }
        at += (size_t)hdr[3] * sizeof(int) + (size_t)hdr[4];
        free(ids);
        free(text);
    }
}

qm_status qm_engine_flush_held(qm_engine *e, qm_device *dev, const char *held, size_t *len, bool done,
                               bool *all_done, qm_error *err) {
    qm_comm *c = dev->comm;
    int world = c->rows * c->cols;
    bool root = qm_comm_rank(c) == 0;
    uint64_t mine[2] = {*len, done}, agreed[2] = {0, 1}; /* [max length, every rank done] */
    uint64_t *sizes = root ? calloc((size_t)world, 2 * sizeof *sizes) : NULL;
    if (root && !sizes) return qm_fail(err, QM_ERR_NOMEM, "out of memory gathering results");
    qm_status st = c->ops->world_gather(c, mine, sizeof mine, sizes, err);
    if (st == QM_OK && root)
        for (int i = 0; i < world; i++) {
            if (sizes[2 * i] > agreed[0]) agreed[0] = sizes[2 * i];
            agreed[1] &= sizes[2 * i + 1];
        }
    if (st == QM_OK) st = c->ops->world_bcast(c, agreed, sizeof agreed, err);
    char *pad = NULL, *all = NULL;
    if (st == QM_OK && agreed[0] > 0) {
        pad = calloc(1, (size_t)agreed[0]);
        all = root ? calloc((size_t)world, (size_t)agreed[0]) : NULL;
        if (!pad || (root && !all)) st = qm_fail(err, QM_ERR_NOMEM, "out of memory gathering results");
        if (st == QM_OK) {
            if (*len) memcpy(pad, held, *len);
            st = c->ops->world_gather(c, pad, (size_t)agreed[0], all, err);
        }
    }
    if (st == QM_OK && root && all && e->cb && e->cb->on_done)
        for (int i = 0; i < world; i++) emit_blob(e, all + (size_t)i * agreed[0], (size_t)sizes[2 * i]);
    if (st == QM_OK) {
        *len = 0;
        *all_done = agreed[1] != 0;
    }
    free(pad);
    free(all);
    free(sizes);
    return st;
}

void qm_engine_get_info(const qm_engine *e, qm_engine_info *info) {
    memset(info, 0, sizeof *info);
    info->load_s = e->load_s;
    info->weight_bytes_total = qm_model_weight_bytes(e->ck, &e->cfg);
    for (int i = 0; i < e->n_init; i++) {
        const qm_device *d = &e->devs[i];
        if (d->comm->row != 0 && !e->mpi) continue;
        size_t w = d->shard.weight_bytes;
        if (d->comm->col < 64) info->device_weight_bytes[d->comm->col] = w;
        if (w > info->device_weight_bytes_max) info->device_weight_bytes_max = w;
        if (d->shard.copied_bytes > info->device_copied_bytes_max) info->device_copied_bytes_max = d->shard.copied_bytes;
        if (d->shard.straddle_bytes > info->device_shared_block_bytes_max)
            info->device_shared_block_bytes_max = d->shard.straddle_bytes;
        info->comm_s += d->comm_s / e->cols;
    }
    info->isa = e->n_init ? e->devs[0].kern.isa : "";
    info->team_threads = e->team;
}
