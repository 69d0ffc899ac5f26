/* A device: its shard, kernels, team, KV cache and buffers (one size table, one allocation). */
#include "model/model.h"
#include "mesh/tree_sum.h"
#include <assert.h>

#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

typedef struct {
    float **ptr;
    size_t n; /* floats */
} buf_entry;

/* Fast-mode buffers: every matmul input quantized per 32 elements, so every input width must be
 * a multiple of 32 (it is for every Qwen2 size: hidden, head_dim, 64-column MLP blocks). */
static qm_status alloc_q8(qm_device *dev, const qm_config *cfg, size_t T, size_t d, size_t q, size_t f,
                          qm_error *err) {
    if (d % 32 || cfg->head_dim % 32 || QM_MLP_BLOCK % 32)
        return qm_fail(err, QM_ERR_UNSUPPORTED,
                       "--activations q8 needs hidden_size and head_dim multiples of 32 (have %zu and %d)", d,
                       cfg->head_dim);
    size_t w = d > q ? d : q;
    if (f > w) w = f;
    dev->xq_ld = (int)w;
    dev->xq = malloc(T * w + 64);
    dev->xq_d = malloc((T * w / 32 + 1) * sizeof(float));
    dev->xq_s = malloc((T * w / 32 + 1) * sizeof(int32_t));
    if (!dev->xq || !dev->xq_d || !dev->xq_s)
        return qm_fail(err, QM_ERR_NOMEM, "out of memory for the quantized activations");
    return QM_OK;
}

typedef struct {
    qm_head_filter *f;
    const qm_wview *w;
} bound_job;

static void bound_rows(void *arg, int ith, int nth) {
    bound_job *b = arg;
    long r0, r1;
    qm_split_range(b->w->rows, ith, nth, &r0, &r1);
    qm_head_filter_bound_rows(b->f, b->w, (int)r0, (int)r1);
}

/* The greedy head filter (exact mode, a supported head): its buffers, and its bounds made by the
 * team (a pass over the head's weights at load). */
static qm_status open_head_filter(qm_device *dev, qm_error *err) {
    const qm_wview *w = &dev->shard.lm_head;
    if (!dev->dims.head_filter || dev->dims.act_q8) return QM_OK;
    if (!qm_head_filter_alloc(&dev->head, w, dev->dims.head_shadow, dev->dims.max_tokens, qm_pool_size(dev->pool)))
        return qm_fail(err, QM_ERR_NOMEM, "out of memory for the head filter's bounds");
    if (!dev->head.bound) return QM_OK;
    bound_job b = {&dev->head, w};
    qm_pool_run(dev->pool, bound_rows, &b);
    return QM_OK;
}

bool qm_device_repacks(const qm_device_dims *dims, const qm_kernels *k) {
    return dims->repack_q8 > 0 || (dims->repack_q8 == 0 && !dims->act_q8 && k->exact_prefers_q8);
}

qm_rows8_types qm_device_rows8(const qm_device_dims *dims, const qm_kernels *k) {
    const bool on = dims->repack_q8 == 0 && dims->act_q8;
    return (qm_rows8_types){on ? k->q8_rows8_types : 0, on ? k->q8_rows8_rowpar_types : 0};
}

qm_status qm_device_init(qm_device *dev, qm_checkpoint *ck, const qm_config *cfg, qm_comm *comm, const char *isa,
                         int team_threads, const qm_device_dims *dims, qm_error *err) {
    memset(dev, 0, sizeof *dev);
    dev->comm = comm;
    dev->dims = *dims;
    if (cfg->head_dim > 1024) return qm_fail(err, QM_ERR_UNSUPPORTED, "head_dim %d > 1024", cfg->head_dim);
    if (dims->max_tokens < 1 || dims->n_slots < 1 || dims->max_context < 1)
        return qm_fail(err, QM_ERR_ARG, "bad device dimensions");
    qm_status st = qm_kernels_select(isa, &dev->kern, err);
    if (st) return st;
    if ((st = qm_shard_load(ck, cfg, comm->cols, comm->col, dims->huge_pages, qm_device_repacks(dims, &dev->kern),
                            qm_device_rows8(dims, &dev->kern),
                            &dev->shard, err)))
        return st;
    if ((st = qm_pool_create(team_threads, &dev->pool, err))) goto fail;

    const qm_partition *p = &dev->shard.part;
    size_t T = (size_t)dims->max_tokens, d = (size_t)cfg->hidden_size, hd = (size_t)cfg->head_dim;
    size_t hq = (size_t)qm_range_len(p->q_heads), hkv = (size_t)qm_range_len(p->kv_heads);
    size_t f = (size_t)qm_range_len(p->mlp_cols), nv = (size_t)qm_range_len(p->vocab);
    /* the slots of a row-parallel layer's tree reduction (mesh/tree_sum.h), [slots][T][d] in all */
    size_t part_heads = qm_tree_part_floats(p->n_heads, p->cols, p->col, dims->max_tokens, d);
    size_t part_mlp = qm_tree_part_floats(p->n_mlp_blocks, p->cols, p->col, dims->max_tokens, d);
    size_t part_floats = part_heads > part_mlp ? part_heads : part_mlp;
    if (part_floats < 1) part_floats = 1;
    size_t nth = (size_t)qm_pool_size(dev->pool);
    buf_entry table[] = {
        {&dev->x, T * d},          {&dev->xn, T * d},       {&dev->q, T * hq * hd},
        {&dev->k, T * hkv * hd},   {&dev->v, T * hkv * hd}, {&dev->att, T * hq * hd},
        {&dev->partial, part_floats}, {&dev->sum, T * d},    {&dev->gate, T * f},
        {&dev->up, T * f},         {&dev->scores, nth * (size_t)p->group * (size_t)dims->max_context},
        {&dev->logits, T * nv},
    };
    size_t total = 0;
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++) total += (table[i].n + 15) & ~(size_t)15;
    dev->buf = aligned_alloc(64, total * sizeof(float) + 64);
    if (!dev->buf) {
        st = qm_fail(err, QM_ERR_NOMEM, "out of memory for %zu MB of activation buffers", total * 4 >> 20);
        goto fail;
    }
    dev->buf_bytes = total * sizeof(float);
    memset(dev->buf, 0, dev->buf_bytes);
    float *at = dev->buf;
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++) {
        *table[i].ptr = at;
        at += (table[i].n + 15) & ~(size_t)15;
    }
    if (dims->act_q8 && (st = alloc_q8(dev, cfg, T, d, hq * hd, f, err))) goto fail;
    if ((st = open_head_filter(dev, err))) goto fail;
    /* The KV cache is reserved, not touched: pages become resident as positions are written. */
    dev->kv_bytes = (size_t)dims->n_slots * (size_t)cfg->num_hidden_layers * 2 * hkv * (size_t)dims->max_context * hd *
                    sizeof(float);
    if (dev->kv_bytes) {
        void *m = mmap(NULL, dev->kv_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (m == MAP_FAILED) {
            st = qm_fail(err, QM_ERR_NOMEM, "cannot reserve %zu MB of KV cache", dev->kv_bytes >> 20);
            goto fail;
        }
        dev->kv = m;
    }
    if (!(dev->kv_base = calloc((size_t)dims->n_slots, sizeof *dev->kv_base))) {
        st = qm_fail(err, QM_ERR_NOMEM, "out of memory");
        goto fail;
    }
    return QM_OK;
fail:
    qm_device_free(dev);
    return st;
}

void qm_device_free(qm_device *dev) {
    if (dev->kv) munmap(dev->kv, dev->kv_bytes);
    free(dev->kv_base);
    free(dev->buf);
    free(dev->xq);
    free(dev->xq_d);
    free(dev->xq_s);
    qm_head_filter_free(&dev->head);
    qm_pool_destroy(dev->pool);
    qm_shard_free(&dev->shard);
    memset(dev, 0, sizeof *dev);
}

static void kv_copy(qm_device *dev, int from, int to, int n) {
    const qm_shard *sh = &dev->shard;
    size_t hkv = (size_t)qm_range_len(sh->part.kv_heads), hd = (size_t)sh->cfg.head_dim;
    size_t ctx = (size_t)dev->dims.max_context, per_slot = (size_t)sh->cfg.num_hidden_layers * 2 * hkv;
    for (size_t r = 0; r < per_slot; r++) {
        const float *src = dev->kv + (((size_t)from * per_slot + r) * ctx) * hd;
        float *dst = dev->kv + (((size_t)to * per_slot + r) * ctx) * hd;
        memcpy(dst, src, (size_t)n * hd * sizeof(float));
    }
}

void qm_kv_share(qm_device *dev, int from, int to, int n) {
    assert(n == 0 || (from != to && dev->kv_base[from].n == 0));
    dev->kv_base[to] = (qm_kv_base){n ? from : to, n};
}

void qm_kv_own_all(qm_device *dev) {
    for (int s = 0; s < dev->dims.n_slots; s++) dev->kv_base[s] = (qm_kv_base){s, 0};
}

void qm_kv_detach(qm_device *dev, int from) {
    for (int s = 0; s < dev->dims.n_slots; s++) {
        qm_kv_base *b = &dev->kv_base[s];
        if (b->n == 0 || b->from != from) continue;
        kv_copy(dev, from, s, b->n);
        *b = (qm_kv_base){s, 0};
    }
}
