/* The Qwen2 forward pass over one device's shard (design: Data flow of one step).
 *
 * Activations of T tokens: x [T][d] replicated; q/att [T][hq*hd] and k/v [T][hkv*hd] split by
 * heads; gate/up [T][f] split by MLP blocks. Row-parallel layers (o_proj, down_proj) produce
 * per-block partials; each device reduces its own blocks in place to the subtrees of the fixed
 * tree that lie in its range (mesh/tree_sum.h) and comm's row_tree_sum combines those across the
 * row in tree order, so the sum has the same bits for every C.
 * Work inside a device is split over its team by output rows or by (token, head): never along
 * a reduction, so the team size changes no bits. */
#include "model/model.h"
#include "model/attention.h"
#include "kernels/qdot.h"
#include "kernels/quant.h"
#include "mesh/tree_sum.h"

#include <assert.h>
#include <math.h>
#include <stdatomic.h>
#include <string.h>

typedef enum { PH_QUANT, PH_NORM_ATTN, PH_QKV, PH_ROPE_CACHE, PH_ATTENTION, PH_OPROJ, PH_RESIDUAL, PH_NORM_MLP, PH_GATE_UP,
               PH_SILU, PH_DOWN, PH_FINAL_NORM, PH_LM_HEAD, PH_HEAD_APPROX, PH_HEAD_EXACT } phase;

typedef struct {
    qm_device *dev;
    const qm_step *s;
    int layer;
    phase ph;
    /* row-parallel layer being computed */
    const qm_wview *w;   /* o_proj or down_proj columns of this device */
    const float *in;     /* [T][in_ld] */
    int in_ld;
    int nb, b0;          /* local blocks: qm_split(n_blocks, cols, col) = [b0, b0 + nb) */
    int n_blocks;        /* blocks of the whole layer (the tree's leaves) */
    int group;           /* blocks per kernel call (tree_sum.h qm_tree_group) */
    int block_cols;      /* columns per block (the last may be shorter) */
    float *lm_in;        /* [n_out][d] normed rows of the output tokens */
    /* fast mode: rows to quantize into dev->xq before the next matmuls */
    const float *q_in;   /* [q_rows][q_ld] */
    int q_rows, q_ld;
    /* a decode step's phase: the next row of each of its matmuls (take_rows), 0 at its start */
    atomic_long next_row[3];
    atomic_long head_exact; /* the head filter's rows computed exactly in this step */
} job;

/* One matmul: in the fast mode, a quantized view whose columns are whole 32-blocks takes the
 * input as quantized into dev->xq (element offset qoff of each vector); everything else, f32. */
static void linear(const qm_device *dev, const qm_wview *w, const float *bias, const float *x, size_t ldx, int qoff,
                   int n_tok, float *y, size_t ldy, int o_begin, int o_end) {
    /* an interleaved view (fast mode only, whole rows of 32-blocks) is for matmul_q8 alone */
    assert(!qm_dtype_is_rows8(w->dtype) || (dev->xq && w->col0 == 0 && w->cols % 32 == 0));
    if (dev->xq && qm_dtype_is_quant(w->dtype) && w->col0 % 32 == 0 && w->cols % 32 == 0) {
        qm_q8act a = {dev->xq + qoff, dev->xq_d + qoff / 32, dev->xq_s + qoff / 32, (size_t)dev->xq_ld / 32};
        dev->kern.matmul_q8(w, bias, &a, n_tok, y, ldy, o_begin, o_end);
    } else {
        dev->kern.matmul(w, bias, x, ldx, n_tok, y, ldy, o_begin, o_end);
    }
}

/* A thread's next rows [*b, *e) of a phase's matmul q (of `rows` output rows); 0 when none are
 * left. A decode step of one token hands rows out to whichever thread is free, so that a thread
 * the memory serves slower does less and its partner does not wait at the phase's end, in
 * shrinking chunks: each takes 1/nth of the rows left (whole 32-row tiles, at least one), so the
 * first ones are long contiguous runs (each call of a kernel starts its weight stream cold and
 * makes its activation groups again) and the last ones short. Fixed chunks of 1/(8 nth) of the
 * rows cost 4-7% of the 1.5B's AVX2 fast decode (27.0 against 28.6-29.0 tok/s, `qmesh bench
 * --activations q8 --isa avx2 --threads 2`; qkv 2.35 against 1.88 ms a step). Over 2 to 16 tokens a column-parallel matmul (batched:
 * share_batch) does the same with 4 chunks a thread (multiples of 16 rows, at least 64), whose
 * calls each transpose the tokens' activations first (a few microseconds); at batch 16 on this
 * 2-vCPU VM, fixed halves left each thread idle 5-8% of a run waiting for the other, in both
 * directions (the host's noise). Otherwise (prefill; a row-parallel layer, whose calls transpose
 * all of the view's columns) each thread takes its fixed share at once. Output rows are
 * independent: which thread computes a row changes no bits. */
static int take_rows(job *J, int q, int n_tok, int share_batch, long rows, int ith, int nth, int *taken, long *b,
                     long *e) {
    long chunk;
    if (nth > 1 && n_tok == 1) {
        long b0 = atomic_load_explicit(&J->next_row[q], memory_order_relaxed);
        do {
            if (b0 >= rows) return 0;
            chunk = ((rows - b0) / nth + 31) / 32 * 32;
            if (chunk < 32) chunk = 32;
        } while (!atomic_compare_exchange_weak_explicit(&J->next_row[q], &b0, b0 + chunk, memory_order_relaxed,
                                                        memory_order_relaxed));
        *b = b0;
        *e = b0 + chunk < rows ? b0 + chunk : rows;
        return 1;
    } else if (nth > 1 && n_tok <= 16 && share_batch) {
        chunk = ((rows + 4L * nth - 1) / (4L * nth) + 15) / 16 * 16;
        if (chunk < 64) chunk = 64;
    } else {
        if ((*taken)++) return 0;
        qm_split_range(rows, ith, nth, b, e);
        return *e > *b;
    }
    *b = atomic_fetch_add_explicit(&J->next_row[q], chunk, memory_order_relaxed);
    *e = *b + chunk < rows ? *b + chunk : rows;
    return *b < rows;
}

static void run_matmul_split(job *J, int q, const qm_wview *w, const float *bias, const float *x, size_t ldx,
                             int n_tok, float *y, size_t ldy, int ith, int nth) {
    long b, e;
    int taken = 0;
    if (w->cols <= 0) return;
    while (take_rows(J, q, n_tok, 1, w->rows, ith, nth, &taken, &b, &e))
        linear(J->dev, w, bias, x, ldx, 0, n_tok, y, ldy, (int)b, (int)e);
}

/* Fast mode: rows of J->q_in quantized into dev->xq (vector t at t * xq_ld). */
static void quantize_rows(job *J, int ith, int nth) {
    qm_device *dev = J->dev;
    long b, e;
    qm_split_range(J->q_rows, ith, nth, &b, &e);
    for (long t = b; t < e; t++) {
        size_t off = (size_t)t * (size_t)dev->xq_ld;
        dev->kern.quantize_act(J->q_in + (size_t)t * (size_t)J->q_ld, J->q_ld, dev->xq + off, dev->xq_d + off / 32,
                               dev->xq_s + off / 32);
    }
}

typedef enum { LEAVES_F32, LEAVES_Q8, LEAVES_BY_BLOCK } leaves_path;

typedef struct {
    job *J;
    leaves_path path;
    long ob, oe; /* the thread's output rows */
} leaf_maker;

/* Block partials of the device's blocks [first, first + count) (row-wide numbers) for the
 * thread's output rows into slots slot.. of dev->partial ([slot][T][d]). The kernels read each
 * weight row once along the blocks of a call (kernels.h, matmul_blocks). In the fast mode, a view
 * whose blocks are not all whole 32-blocks (odd test shapes only) goes block by block through
 * linear(), which picks per block. */
static void make_leaves(void *ctx, int first, int count, int slot) {
    const leaf_maker *M = ctx;
    const job *J = M->J;
    qm_device *dev = J->dev;
    const int T = J->s->n_tok, d = dev->shard.cfg.hidden_size, bc = J->block_cols;
    const int c0 = (first - J->b0) * bc, c1 = c0 + count * bc < J->w->cols ? c0 + count * bc : J->w->cols;
    const qm_wview v = qm_wview_cols(J->w, c0, c1);
    const size_t pstride = (size_t)T * (size_t)d;
    float *part = dev->partial + (size_t)slot * pstride; /* [count][T][d] */
    if (M->path == LEAVES_Q8) {
        const qm_q8act a = {dev->xq + c0, dev->xq_d + c0 / 32, dev->xq_s + c0 / 32, (size_t)dev->xq_ld / 32};
        dev->kern.matmul_q8_blocks(&v, &a, T, bc, count, part, pstride, (size_t)d, (int)M->ob, (int)M->oe);
    } else if (M->path == LEAVES_F32) {
        dev->kern.matmul_blocks(&v, J->in + c0, (size_t)J->in_ld, T, bc, count, part, pstride, (size_t)d, (int)M->ob,
                                (int)M->oe);
    } else {
        for (int bi = 0; bi < count; bi++) {
            int b0 = c0 + bi * bc, b1 = b0 + bc < c1 ? b0 + bc : c1;
            qm_wview blk = qm_wview_cols(J->w, b0, b1);
            linear(dev, &blk, NULL, J->in + b0, (size_t)J->in_ld, b0, T, part + (size_t)bi * pstride, (size_t)d,
                   (int)M->ob, (int)M->oe);
        }
    }
}

/* The kernel reduces the device's blocks to its cover itself (kernels.h matmul_q8_nodes, and the
 * exact mode's matmul_nodes), cover node i into dev->partial slot i. 0 where it
 * leaves the shape to the leaves and the walk below. */
static int row_parallel_nodes(const job *J, leaves_path path, long ob, long oe) {
    qm_device *dev = J->dev;
    const int T = J->s->n_tok, d = dev->shard.cfg.hidden_size;
    if (path == LEAVES_Q8 ? !dev->kern.matmul_q8_nodes : path != LEAVES_F32 || !dev->kern.matmul_nodes) return 0;
    qm_tree_node cover[QM_TREE_MAX_COVER];
    qm_leaf_node nodes[QM_TREE_MAX_COVER];
    const int m = qm_tree_cover(J->n_blocks, dev->comm->cols, dev->comm->col, cover);
    for (int i = 0; i < m; i++) nodes[i] = (qm_leaf_node){cover[i].first - J->b0, cover[i].count};
    const size_t ostride = (size_t)T * (size_t)d;
    if (path == LEAVES_F32)
        return dev->kern.matmul_nodes(J->w, J->in, (size_t)J->in_ld, T, J->block_cols, J->nb, nodes, m, dev->partial, ostride, (size_t)d,
                                      (int)ob, (int)oe);
    const qm_q8act a = {dev->xq, dev->xq_d, dev->xq_s, (size_t)dev->xq_ld / 32};
    return dev->kern.matmul_q8_nodes(J->w, &a, T, J->block_cols, J->nb, nodes, m, dev->partial, ostride, (size_t)d,
                                     (int)ob, (int)oe);
}

/* A row-parallel layer on this device, for output rows [ob, oe): its blocks' partials reduced to
 * its cover of the fixed tree (mesh/tree_sum.h), cover node i into dev->partial slot i, a group of
 * blocks at a time. */
static void row_parallel_rows(job *J, long ob, long oe) {
    qm_device *dev = J->dev;
    const qm_wview *w = J->w;
    int T = J->s->n_tok, d = dev->shard.cfg.hidden_size, bc = J->block_cols;
    const int q8 = dev->xq && qm_dtype_is_quant(w->dtype);
    leaf_maker M = {J, LEAVES_BY_BLOCK, ob, oe};
    if (q8 && w->col0 % 32 == 0 && w->cols % 32 == 0 && bc % 32 == 0) M.path = LEAVES_Q8;
    else if (!q8) M.path = LEAVES_F32;
    if (row_parallel_nodes(J, M.path, ob, oe)) return;
    const qm_tree_span span = {dev->partial, (size_t)T * (size_t)d, (size_t)ob, (size_t)(oe - ob), (size_t)T, (size_t)d};
    qm_tree_reduce_part(J->n_blocks, dev->comm->cols, dev->comm->col, J->group, make_leaves, &M, &span);
}

/* The thread's output rows of a row-parallel layer (take_rows). */
static void row_parallel(job *J, int ith, int nth) {
    long ob, oe;
    int taken = 0;
    while (take_rows(J, 0, J->s->n_tok, 0, J->dev->shard.cfg.hidden_size, ith, nth, &taken, &ob, &oe))
        row_parallel_rows(J, ob, oe);
}

static void norm_rows(const qm_device *dev, const float *x, const float *w, float *y, int n_rows, int ith, int nth) {
    int d = dev->shard.cfg.hidden_size;
    long b, e;
    qm_split_range(n_rows, ith, nth, &b, &e);
    for (long t = b; t < e; t++)
        qm_rmsnorm(&dev->kern, x + (size_t)t * (size_t)d, w, QM_DT_F32, d, (float)dev->shard.cfg.rms_norm_eps,
                   y + (size_t)t * (size_t)d);
}

/* Whether a step's first pass takes the ISA's head_pass (outputs side by side): where it has one,
 * for at least its head_pass_min_outputs, and the 8-bit view is one it takes (Q8_0, Q6_K); the
 * others go one output at a time through matmul_q8 and the bounds in double. */
static int head_pass_takes(const qm_device *dev, int n_out) {
    return dev->kern.head_pass && n_out >= dev->kern.head_pass_min_outputs && qm_head_pass_view_ok(&dev->head.approx);
}

/* head_approx by the ISA's head_pass: a_j + E_j into dev->logits, the thread's lows in float. */
static void head_approx_pass(job *J, int ith, int nth) {
    qm_device *dev = J->dev;
    qm_head_filter *f = &dev->head;
    const int n = J->s->n_out;
    const qm_q8act a = {f->xq, f->xq_d, f->xq_s, (size_t)f->approx.cols / QM_Q8_BLOCK};
    const qm_head_bounds hb = qm_head_filter_bounds(f);
    float *low = f->low32 + (size_t)ith * (size_t)dev->dims.max_tokens;
    for (int t = 0; t < n; t++) low[t] = -INFINITY;
    long b, e;
    int taken = 0;
    while (take_rows(J, 0, n, 1, f->approx.rows, ith, nth, &taken, &b, &e))
        dev->kern.head_pass(&f->approx, &a, n, &hb, dev->logits, (size_t)f->approx.rows, low, (int)b, (int)e);
    double *lowd = f->low + (size_t)ith * (size_t)dev->dims.max_tokens;
    for (int t = 0; t < n; t++) lowd[t] = low[t];
}

/* The head filter's first pass (model/head_filter.h): every row's 8-bit logit a_j, the thread's
 * largest a_j - E_j of each output into head.low, and a_j + E_j (rounded up) into dev->logits:
 * all the second pass needs of the row. Fewer outputs than head_pass takes: matmul_q8, then the
 * ISA's head_finish (head_pass's bound in f32, where the view is one head_pass's slack covers),
 * else the bounds in double. */
static void head_approx(job *J, int ith, int nth) {
    qm_device *dev = J->dev;
    qm_head_filter *f = &dev->head;
    const qm_wview *w = &dev->shard.lm_head;
    const int n = J->s->n_out;
    if (head_pass_takes(dev, n)) {
        head_approx_pass(J, ith, nth);
        return;
    }
    const size_t ld = (size_t)w->rows; /* logits [n_out][vocab_local] */
    const qm_q8act a = {f->xq, f->xq_d, f->xq_s, (size_t)w->cols / QM_Q8_BLOCK};
    const qm_head_bounds hb = qm_head_filter_bounds(f);
    const int in_f32 = dev->kern.head_finish && f->approx.cols <= QM_HEAD_PASS_MAX_COLS;
    double *low = f->low + (size_t)ith * (size_t)dev->dims.max_tokens, err[QM_HEAD_FILTER_CHUNK];
    float *low32 = f->low32 + (size_t)ith * (size_t)dev->dims.max_tokens;
    for (int t = 0; t < n; t++) low[t] = low32[t] = -INFINITY;
    long b, e;
    int taken = 0;
    while (take_rows(J, 0, n, 1, w->rows, ith, nth, &taken, &b, &e)) {
        dev->kern.matmul_q8(&f->approx, NULL, &a, n, dev->logits, ld, (int)b, (int)e);
        for (int t = 0; t < n; t++) {
            float *y = dev->logits + (size_t)t * ld;
            if (in_f32) {
                dev->kern.head_finish(&hb, t, y, &low32[t], (int)b, (int)e);
                continue;
            }
            for (long j0 = b; j0 < e; j0 += QM_HEAD_FILTER_CHUNK) {
                const int m = e - j0 < QM_HEAD_FILTER_CHUNK ? (int)(e - j0) : QM_HEAD_FILTER_CHUNK;
                qm_head_filter_errors(f, (int)j0, m, t, err);
                for (int i = 0; i < m; i++) {
                    const double lo = (double)y[j0 + i] - err[i];
                    if (lo > low[t]) low[t] = lo;
                    y[j0 + i] = qm_float_up((double)y[j0 + i] + err[i]);
                }
            }
        }
    }
    if (in_f32)
        for (int t = 0; t < n; t++) low[t] = low32[t];
}

/* Rows [b, e) of output t: the exact logit of each row that can hold the largest (a_j + E_j >=
 * cut, NaN included; runs of them one kernel call), -inf elsewhere; returns how many were computed. */
static long head_exact_rows(job *J, int t, long b, long e) {
    qm_device *dev = J->dev;
    const qm_wview *w = &dev->shard.lm_head;
    const size_t ld = (size_t)w->rows;
    float *y = dev->logits + (size_t)t * ld; /* a_j + E_j from the first pass */
    const float *x = J->lm_in + (size_t)t * (size_t)w->cols;
    const double cut = dev->head.cut[t];
    long done = 0;
    for (long j = b; j < e;) {
        if ((double)y[j] < cut) {
            y[j++] = -INFINITY;
            continue;
        }
        long k = j + 1;
        while (k < e && !((double)y[k] < cut)) k++;
        dev->kern.matmul(w, NULL, x, (size_t)w->cols, 1, y, ld, (int)j, (int)k);
        done += k - j;
        j = k;
    }
    return done;
}

/* The head filter's second pass: the exact logits of the candidates (head_exact_rows). */
static void head_exact(job *J, int ith, int nth) {
    const int n = J->s->n_out;
    long b, e, done = 0;
    int taken = 0;
    while (take_rows(J, 1, n, 1, J->dev->shard.lm_head.rows, ith, nth, &taken, &b, &e))
        for (int t = 0; t < n; t++) done += head_exact_rows(J, t, b, e);
    atomic_fetch_add_explicit(&J->head_exact, done, memory_order_relaxed);
}

static void run_phase(void *arg, int ith, int nth) {
    job *J = arg;
    qm_device *dev = J->dev;
    const qm_shard *sh = &dev->shard;
    const qm_step *s = J->s;
    int T = s->n_tok, d = sh->cfg.hidden_size, hd = sh->cfg.head_dim;
    int hq = qm_range_len(sh->part.q_heads), hkv = qm_range_len(sh->part.kv_heads);
    int f = qm_range_len(sh->part.mlp_cols);
    const qm_layer *L = J->layer >= 0 ? &sh->layers[J->layer] : NULL;
    switch (J->ph) {
    case PH_QUANT: quantize_rows(J, ith, nth); break;
    case PH_NORM_ATTN: norm_rows(dev, dev->x, L->attn_norm, dev->xn, T, ith, nth); break;
    case PH_NORM_MLP: norm_rows(dev, dev->x, L->mlp_norm, dev->xn, T, ith, nth); break;
    case PH_QKV:
        run_matmul_split(J, 0, &L->wq, L->bq, dev->xn, (size_t)d, T, dev->q, (size_t)(hq * hd), ith, nth);
        run_matmul_split(J, 1, &L->wk, L->bk, dev->xn, (size_t)d, T, dev->k, (size_t)(hkv * hd), ith, nth);
        run_matmul_split(J, 2, &L->wv, L->bv, dev->xn, (size_t)d, T, dev->v, (size_t)(hkv * hd), ith, nth);
        break;
    case PH_ROPE_CACHE: {
        float cos_t[512], sin_t[512]; /* head_dim <= 1024 (checked at init) */
        long b, e;
        qm_split_range(T, ith, nth, &b, &e);
        for (long t = b; t < e; t++) {
            qm_rope_table(s->pos[t], hd, sh->cfg.rope_theta, cos_t, sin_t);
            for (int h = 0; h < hq; h++) qm_rope_apply(dev->q + ((size_t)t * hq + h) * hd, hd, cos_t, sin_t);
            for (int h = 0; h < hkv; h++) {
                float *kh = dev->k + ((size_t)t * hkv + h) * hd;
                qm_rope_apply(kh, hd, cos_t, sin_t);
                memcpy(qm_kv_at(dev, s->slot[t], J->layer, 0, h, s->pos[t]), kh, (size_t)hd * sizeof(float));
                memcpy(qm_kv_at(dev, s->slot[t], J->layer, 1, h, s->pos[t]), dev->v + ((size_t)t * hkv + h) * hd,
                       (size_t)hd * sizeof(float));
            }
        }
        break;
    }
    case PH_ATTENTION: qm_attention(dev, s, J->layer, ith, nth); break;
    case PH_OPROJ:
    case PH_DOWN: row_parallel(J, ith, nth); break;
    case PH_RESIDUAL: {
        long b, e;
        qm_split_range((long)T * d, ith, nth, &b, &e);
        for (long i = b; i < e; i++) dev->x[i] = dev->x[i] + dev->sum[i];
        break;
    }
    case PH_GATE_UP: {
        run_matmul_split(J, 0, &L->wgate, NULL, dev->xn, (size_t)d, T, dev->gate, (size_t)f, ith, nth);
        run_matmul_split(J, 1, &L->wup, NULL, dev->xn, (size_t)d, T, dev->up, (size_t)f, ith, nth);
        break;
    }
    case PH_SILU: {
        long b, e;
        qm_split_range(T, ith, nth, &b, &e);
        for (long t = b; t < e; t++)
            dev->kern.silu_mul(dev->gate + (size_t)t * f, dev->up + (size_t)t * f, dev->gate + (size_t)t * f, f);
        break;
    }
    case PH_FINAL_NORM: norm_rows(dev, J->lm_in, sh->final_norm, J->lm_in, s->n_out, ith, nth); break;
    case PH_LM_HEAD:
        run_matmul_split(J, 0, &sh->lm_head, NULL, J->lm_in, (size_t)d, s->n_out, dev->logits,
                         (size_t)qm_range_len(sh->part.vocab), ith, nth);
        break;
    case PH_HEAD_APPROX: head_approx(J, ith, nth); break;
    case PH_HEAD_EXACT: head_exact(J, ith, nth); break;
    }
}

/* The part of the device's time (model/timing.h) each phase counts in. */
static qm_time_part part_of(phase ph) {
    static const qm_time_part part[] = {
        [PH_QUANT] = QM_TIME_NORM,       [PH_NORM_ATTN] = QM_TIME_NORM, [PH_QKV] = QM_TIME_QKV,
        [PH_ROPE_CACHE] = QM_TIME_ROPE_KV, [PH_ATTENTION] = QM_TIME_ATTENTION, [PH_OPROJ] = QM_TIME_OPROJ,
        [PH_RESIDUAL] = QM_TIME_NORM,    [PH_NORM_MLP] = QM_TIME_NORM,  [PH_GATE_UP] = QM_TIME_GATE_UP,
        [PH_SILU] = QM_TIME_GATE_UP,     [PH_DOWN] = QM_TIME_DOWN,        [PH_FINAL_NORM] = QM_TIME_LM_HEAD, [PH_LM_HEAD] = QM_TIME_LM_HEAD,
        [PH_HEAD_APPROX] = QM_TIME_LM_HEAD, [PH_HEAD_EXACT] = QM_TIME_LM_HEAD};
    return part[ph];
}

/* Whether a phase is one piece of work, for one token or output row (a decode step's norms,
 * quantizing, RoPE, residual and SiLU): the calling thread does it alone, without waking the team. A
 * team's round trip costs microseconds, more than such a phase's work, and a decode step had 9 of
 * them a layer. The work is split by rows or elements (never along a reduction), so who does it
 * changes no bits; the next qm_pool_run publishes its stores to the team. */
static int serial_phase(const job *J, phase ph) {
    switch (ph) {
    case PH_QUANT: return J->q_rows <= 1;
    case PH_NORM_ATTN:
    case PH_NORM_MLP:
    case PH_ROPE_CACHE:
    case PH_RESIDUAL:
    case PH_SILU: return J->s->n_tok <= 1;
    case PH_FINAL_NORM: return J->s->n_out <= 1;
    default: return 0;
    }
}

static void phase_run(job *J, phase ph) {
    const double t0 = qm_now();
    J->ph = ph;
    for (int q = 0; q < 3; q++) atomic_store_explicit(&J->next_row[q], 0, memory_order_relaxed);
    if (serial_phase(J, ph)) run_phase(J, 0, 1);
    else qm_pool_run(J->dev->pool, run_phase, J); /* publishes the stores above to the team */
    J->dev->time_s[part_of(ph)] += qm_now() - t0;
}

/* Fast mode: quantizes rows [0, rows) of in [rows][ld] for the matmuls that follow. */
static void quantize_input(job *J, const float *in, int rows, int ld) {
    if (!J->dev->xq || rows <= 0 || ld <= 0) return;
    J->q_in = in;
    J->q_rows = rows;
    J->q_ld = ld;
    phase_run(J, PH_QUANT);
}

/* A row-parallel layer: local partials reduced to this device's cover, then the tree sum across
 * the row into dev->sum. */
static qm_status row_parallel_layer(job *J, phase ph, const qm_wview *w, const float *in, int in_ld, qm_range blocks,
                                    int n_blocks, int block_cols, qm_error *err) {
    qm_device *dev = J->dev;
    int T = J->s->n_tok, d = dev->shard.cfg.hidden_size;
    assert(blocks.begin == qm_split(n_blocks, dev->comm->cols, dev->comm->col).begin &&
           blocks.end == qm_split(n_blocks, dev->comm->cols, dev->comm->col).end);
    J->w = w;
    J->in = in;
    J->in_ld = in_ld;
    J->nb = qm_range_len(blocks);
    J->b0 = blocks.begin;
    J->n_blocks = n_blocks;
    J->group = qm_tree_group(J->nb, (size_t)T * (size_t)d);
    J->block_cols = block_cols;
    quantize_input(J, in, T, in_ld);
    phase_run(J, ph);
    double t0 = qm_now();
    qm_status st = dev->comm->ops->row_tree_sum(dev->comm, dev->partial, n_blocks, (size_t)T * (size_t)d, dev->sum, err);
    dev->time_s[QM_TIME_COMM] += qm_now() - t0;
    return st;
}

/* A greedy step's lm_head through the head filter (model/head_filter.h): the outputs' inputs
 * quantized and their error coefficients, the 8-bit pass, each output's cut, the exact pass.
 * Returns 0 (nothing done) where the step or the head does not take it. */
static int head_filtered(job *J) {
    qm_device *dev = J->dev;
    qm_head_filter *f = &dev->head;
    const int n = J->s->n_out, d = dev->shard.cfg.hidden_size, T = dev->dims.max_tokens;
    /* A float head's exact kernel reads the head once for 2 or more outputs, faster than the
     * shadow's 8-bit tiles and bounds for each (bf16 0.5B shape, AVX2: 7.8 against 11.2 ms at 2,
     * 10.6 against 16.0 at 4); a quantized head's exact kernel dequantizes, slower than the 8-bit
     * pass at every batch (the 1.5B's Q6_K head, AVX2: 23.5-24.0 against 17.0-17.8 ms at 2, 54
     * against 51 at 16). An ISA's head_pass (outputs side by side) serves a float head's batches
     * too. */
    if (!f->bound || !J->s->greedy_only || (f->shadow && n > 1 && !head_pass_takes(dev, n))) return 0;
    const double t0 = qm_now();
    for (int t = 0; t < n; t++) /* -inf: non-finite input, every row of the output exact */
        f->cut[t] = qm_head_filter_prepare(f, &dev->kern, J->lm_in + (size_t)t * (size_t)d, d, t) ? 0.0 : -INFINITY;
    dev->time_s[QM_TIME_LM_HEAD] += qm_now() - t0;
    phase_run(J, PH_HEAD_APPROX);
    for (int t = 0; t < n; t++) {
        if (f->cut[t] == -INFINITY) continue;
        double cut = -INFINITY;
        for (int i = 0; i < qm_pool_size(dev->pool); i++) cut = fmax(cut, f->low[(size_t)i * (size_t)T + (size_t)t]);
        f->cut[t] = isfinite(cut) ? cut : -INFINITY;
    }
    atomic_store_explicit(&J->head_exact, 0, memory_order_relaxed);
    phase_run(J, PH_HEAD_EXACT);
    f->outputs += n;
    f->exact_rows += atomic_load_explicit(&J->head_exact, memory_order_relaxed);
    return 1;
}

qm_status qm_forward(qm_device *dev, const qm_step *s, qm_error *err) {
    const qm_shard *sh = &dev->shard;
    const qm_config *c = &sh->cfg;
    const qm_partition *p = &sh->part;
    int T = s->n_tok, d = c->hidden_size, hd = c->head_dim;
    if (T < 1 || T > dev->dims.max_tokens || s->n_out < 0 || s->n_out > T)
        return qm_fail(err, QM_ERR_ARG, "step of %d tokens (%d outputs): at most %d", T, s->n_out, dev->dims.max_tokens);
    for (int t = 0; t < T; t++) {
        if (s->ids[t] < 0 || s->ids[t] >= c->vocab_size)
            return qm_fail(err, QM_ERR_ARG, "token id %d is outside the vocabulary [0, %d)", s->ids[t], c->vocab_size);
        if (s->pos[t] < 0 || s->pos[t] >= dev->dims.max_context)
            return qm_fail(err, QM_ERR_ARG, "position %d is past the context of %d tokens", s->pos[t],
                           dev->dims.max_context);
        if (s->slot[t] < 0 || s->slot[t] >= dev->dims.n_slots)
            return qm_fail(err, QM_ERR_ARG, "KV slot %d outside [0, %d)", s->slot[t], dev->dims.n_slots);
    }
    /* Embedding: every device reads the rows of the step's tokens from the mapped table. */
    const qm_tensor_ref *E = sh->embed;
    size_t row_bytes = qm_dtype_row_bytes(E->dtype, (size_t)d);
    for (int t = 0; t < T; t++) {
        const char *row = (const char *)E->data + (size_t)s->ids[t] * row_bytes;
        float *xt = dev->x + (size_t)t * d;
        if (qm_dtype_is_quant(E->dtype)) qm_dequant_range(E->dtype, row, 0, (size_t)d, xt);
        else
            for (int i = 0; i < d; i++) xt[i] = qm_load_f32(row, E->dtype, (size_t)i);
    }
    job J = {.dev = dev, .s = s};
    int hq = qm_range_len(p->q_heads);
    qm_status st;
    for (int l = 0; l < c->num_hidden_layers; l++) {
        J.layer = l;
        const qm_layer *L = &sh->layers[l];
        phase_run(&J, PH_NORM_ATTN);
        quantize_input(&J, dev->xn, T, d);
        phase_run(&J, PH_QKV);
        phase_run(&J, PH_ROPE_CACHE);
        phase_run(&J, PH_ATTENTION);
        if ((st = row_parallel_layer(&J, PH_OPROJ, &L->wo, dev->att, hq * hd, p->q_heads, p->n_heads, hd, err)))
            return st;
        phase_run(&J, PH_RESIDUAL);
        phase_run(&J, PH_NORM_MLP);
        quantize_input(&J, dev->xn, T, d);
        phase_run(&J, PH_GATE_UP);
        phase_run(&J, PH_SILU);
        if ((st = row_parallel_layer(&J, PH_DOWN, &L->wdown, dev->gate, qm_range_len(p->mlp_cols), p->mlp_blocks,
                                     p->n_mlp_blocks, QM_MLP_BLOCK, err)))
            return st;
        phase_run(&J, PH_RESIDUAL);
    }
    if (s->n_out == 0) return QM_OK;
    J.layer = -1;
    J.lm_in = dev->xn;
    for (int i = 0; i < s->n_out; i++)
        memcpy(dev->xn + (size_t)i * d, dev->x + (size_t)s->out[i] * d, (size_t)d * sizeof(float));
    phase_run(&J, PH_FINAL_NORM);
    if (head_filtered(&J)) return QM_OK;
    quantize_input(&J, J.lm_in, s->n_out, d);
    phase_run(&J, PH_LM_HEAD);
    return QM_OK;
}
