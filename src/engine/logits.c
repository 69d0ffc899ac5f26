/* Full logits of a sequence (gathered from the vocabulary shards), and the engine's info. */
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
    qm_kv_own_all(dev); /* slots 0..n_seq - 1 hold every position themselves */
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
        dev->time_s[QM_TIME_COMM] += qm_now() - t0;
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

void qm_engine_get_info(const qm_engine *e, qm_engine_info *info) {
    memset(info, 0, sizeof *info);
    int row0_devices = 0;
    info->load_s = e->load_s;
    info->weight_bytes_total = qm_model_weight_bytes(e->ck, &e->cfg);
    info->matmul_flops_per_token = qm_model_matmul_flops(&e->cfg);
    info->lm_head_flops = qm_model_lm_head_flops(&e->cfg);
    for (int i = 0; i < e->n_init; i++) {
        const qm_device *d = &e->devs[i];
        if (d->comm->row != 0 && e->whole_mesh) continue; /* rows here share their weights */
        size_t w = d->shard.weight_bytes;
        if (d->comm->col < 64) info->device_weight_bytes[d->comm->col] = w;
        if (w > info->device_weight_bytes_max) info->device_weight_bytes_max = w;
        if (d->shard.copied_bytes > info->device_copied_bytes_max) info->device_copied_bytes_max = d->shard.copied_bytes;
        if (d->shard.huge.used > info->device_huge_bytes_max) info->device_huge_bytes_max = d->shard.huge.used;
        info->repacked |= d->shard.repack_q8;
        if (d->shard.repack_bytes > info->device_repack_bytes_max) info->device_repack_bytes_max = d->shard.repack_bytes;
        if (d->shard.rows8_bytes > info->device_rows8_bytes_max) info->device_rows8_bytes_max = d->shard.rows8_bytes;
        if (d->shard.straddle_bytes > info->device_shared_block_bytes_max)
            info->device_shared_block_bytes_max = d->shard.straddle_bytes;
        for (int k = 0; k < QM_TIME_COUNT; k++) {
            info->time_s[k] += d->time_s[k] / e->cols;
            info->decode_time_s[k] += d->decode_time_s[k] / e->cols;
        }
        if (d->comm->row == 0 && d->comm->col == 0) info->decode_steps = d->decode_steps;
        if (d->comm->row != 0) continue;
        row0_devices++;
        info->repack_bytes += d->shard.repack_bytes;
        /* whole-vocabulary bytes from a row's per-row cost (an MPI rank sees its own device only) */
        const size_t V = (size_t)e->cfg.vocab_size, rows = (size_t)d->shard.lm_head.rows;
        info->head_bytes = V * qm_wview_stride(&d->shard.lm_head);
        if (d->head.bound && rows) info->head_filter_bytes = V * (d->head.read_bytes / rows);
        info->head_filter |= d->head.bound != NULL;
        info->head_exact_rows += d->head.exact_rows;
        if (d->comm->col == 0) info->head_filtered_outputs = d->head.outputs;
        const qm_comm_stats *cs = &d->comm->stats;
        for (int k = 0; k < QM_COLL_KINDS; k++) {
            if (cs->calls[k] > info->comm.calls[k]) info->comm.calls[k] = cs->calls[k];
            if (cs->bytes_sent[k] > info->comm.bytes_sent[k]) info->comm.bytes_sent[k] = cs->bytes_sent[k];
            if (cs->bytes_recv[k] > info->comm.bytes_recv[k]) info->comm.bytes_recv[k] = cs->bytes_recv[k];
        }
    }
    if (row0_devices) /* an MPI rank sees its own device: the row's others repack alike */
        info->repack_bytes = info->repack_bytes * (size_t)e->cols / (size_t)row0_devices;
    info->isa = e->n_init ? e->devs[0].kern.isa : "";
    info->team_threads = e->team;
    info->pinned = e->cpus != NULL;
    info->first_cpu = e->cpus ? e->cpus[0] : -1;
    info->huge_pages = e->dims.huge_pages;
}
