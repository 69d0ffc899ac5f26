/* Loading one device's shard of a Qwen2 checkpoint (design: Partitioning).
 * Row slices of a [out, in] matrix are contiguous in the file and used in place from the
 * mmap; column slices are copied once, and the mapped pages they came from are released. With
 * huge_pages, every matrix is copied, into huge pages (util/huge_arena.h), the same way. With
 * repack_q8, a layer's Q4_0 or Q5_0 matrix is copied as Q8_0 blocks of the same values; with
 * rows8, a column-parallel one of those types (Q4_0, Q5_0, Q4_K) as its rows interleaved 8 at a
 * time, and a row-parallel one (Q4_K with AVX2) as its held superblocks so (kernels/rows8.h). */
#include "model/model.h"
#include "kernels/quant.h"
#include "kernels/rows8.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static void *shard_alloc(qm_shard *s, size_t bytes) {
    if (s->n_owned == s->cap_owned) {
        int cap = s->cap_owned ? 2 * s->cap_owned : 64;
        void **grown = realloc(s->owned, (size_t)cap * sizeof *grown);
        if (!grown) return NULL;
        s->owned = grown;
        s->cap_owned = cap;
    }
    void *p = malloc(bytes ? bytes : 1);
    if (p) s->owned[s->n_owned++] = p;
    return p;
}

/* Drops the mapped pages of [p, p + n) from this process (file-backed: contents stay on disk). */
static void release_pages(const void *p, size_t n) {
    long page = sysconf(_SC_PAGESIZE);
    uintptr_t a = ((uintptr_t)p + (uintptr_t)page - 1) & ~((uintptr_t)page - 1);
    uintptr_t b = ((uintptr_t)p + n) & ~((uintptr_t)page - 1);
    if (b > a) madvise((void *)a, b - a, MADV_DONTNEED);
}

static qm_status get2(const qm_checkpoint *ck, const char *name, int64_t rows, int64_t cols, const qm_tensor_ref **t,
                      qm_error *err) {
    int64_t shape[2] = {rows, cols};
    return qm_checkpoint_expect(ck, name, 2, shape, t, err);
}

static qm_status get1(const qm_checkpoint *ck, const char *name, int64_t n, const qm_tensor_ref **t, qm_error *err) {
    int64_t shape[1] = {n};
    return qm_checkpoint_expect(ck, name, 1, shape, t, err);
}

/* Memory for a copy of `bytes`: huge pages where asked for and available, else the heap. */
static char *copy_alloc(qm_shard *s, size_t bytes) {
    char *copy = s->huge_pages ? qm_arena_alloc(&s->huge, bytes) : NULL;
    return copy ? copy : shard_alloc(s, bytes);
}

/* Rows [r0, r1) x the blocks [b0, b1) of each row of a Q4_0/Q5_0 tensor, repacked as Q8_0 (the
 * same 32-element blocks, so the view's ld and col0 are those of the copy it replaces). */
static qm_status repack_view(qm_shard *s, const qm_tensor_ref *t, int r0, int r1, size_t b0, size_t b1, int c0,
                             qm_wview *v, qm_error *err) {
    const size_t row_bytes = qm_dtype_row_bytes(t->dtype, (size_t)t->shape[1]), in_bb = qm_dtype_block_bytes(t->dtype);
    const size_t out_row = (b1 - b0) * qm_dtype_block_bytes(QM_DT_Q8_0), bytes = (size_t)(r1 - r0) * out_row;
    char *copy = copy_alloc(s, bytes);
    if (!copy) return qm_fail(err, QM_ERR_NOMEM, "out of memory repacking %s", t->name);
    const char *base = (const char *)t->data + (size_t)r0 * row_bytes;
    for (int r = 0; r < r1 - r0; r++)
        qm_requant_q8_0(t->dtype, base + (size_t)r * row_bytes + b0 * in_bb, b1 - b0, copy + (size_t)r * out_row);
    release_pages(base, (size_t)(r1 - r0) * row_bytes);
    const size_t qk = (size_t)qm_dtype_block(QM_DT_Q8_0);
    v->data = copy;
    v->dtype = QM_DT_Q8_0;
    v->ld = (b1 - b0) * qk;
    v->col0 = (int)((size_t)c0 - b0 * qk);
    s->weight_bytes += bytes;
    s->copied_bytes += bytes;
    s->repack_bytes += bytes - (size_t)(r1 - r0) * (b1 - b0) * in_bb;
    s->straddle_bytes += bytes - (size_t)v->rows * (size_t)v->cols * qm_dtype_block_bytes(QM_DT_Q8_0) / qk;
    return QM_OK;
}

/* How a layer's matrix is used: a column-parallel one's rows are this device's outputs (q, k,
 * v, gate, up), a row-parallel one's columns its inputs (o_proj, down: the row-parallel kernels). */
typedef enum { USE_HEAD, USE_COLPAR, USE_ROWPAR } view_use;

/* Whether rows [r0, r1) x columns [c0, c1) of t are held interleaved by 8 (rows8): a column-parallel
 * matrix's whole rows; a row-parallel one's held superblocks, its columns from a multiple of 64 of
 * them (kernels/rows8.h). */
static bool rows8_view_fits(const qm_shard *s, const qm_tensor_ref *t, int r0, int r1, int c0, int c1, view_use use) {
    const int64_t ld = t->shape[1];
    const int qk = qm_dtype_block(t->dtype);
    if (qm_dtype_rows8_of(t->dtype) == QM_DT_COUNT || ld % qk || r1 <= r0 || (r1 - r0) % QM_ROWS8) return false;
    if (use == USE_COLPAR)
        return (s->rows8.colpar >> t->dtype & 1u) && c0 == 0 && c1 == ld && ld / 32 <= QM_ROWS8_MAX_BLOCKS;
    const int b0 = c0 / qk, b1 = (c1 + qk - 1) / qk;
    return use == USE_ROWPAR && (s->rows8.rowpar >> t->dtype & 1u) && (c0 - b0 * qk) % 64 == 0 && (c1 - c0) % 32 == 0 &&
           (size_t)(b1 - b0) * qm_dtype_block_bytes(t->dtype) <= QM_ROWS8_ROWPAR_ROW_MAX;
}

/* v as the copy (bytes) of its rows' blocks [b0, b1) of t, column c0 of t its column 0; the
 * bytes counted as read, copied and, past the view's exact share, as blocks a neighbour device
 * also holds. */
static void hold_blocks(qm_shard *s, const qm_tensor_ref *t, const char *copy, size_t bytes, size_t b0, size_t b1,
                        int c0, qm_wview *v) {
    const size_t qk = (size_t)qm_dtype_block(t->dtype);
    v->data = copy;
    v->ld = (b1 - b0) * qk;
    v->col0 = (int)((size_t)c0 - b0 * qk);
    s->weight_bytes += bytes;
    s->copied_bytes += bytes;
    s->straddle_bytes += bytes - (size_t)v->rows * (size_t)v->cols * qm_dtype_block_bytes(t->dtype) / qk;
}

/* Rows [r0, r1) of t, the blocks that hold columns [c0, c1), interleaved 8 at a time
 * (kernels/rows8.h): the same bytes. */
static qm_status rows8_view(qm_shard *s, const qm_tensor_ref *t, int r0, int r1, int c0, int c1, qm_wview *v,
                            qm_error *err) {
    const size_t qk = (size_t)qm_dtype_block(t->dtype), bb = qm_dtype_block_bytes(t->dtype);
    const size_t b0 = (size_t)c0 / qk, b1 = ((size_t)c1 + qk - 1) / qk; /* blocks [b0, b1) */
    const size_t row_bytes = qm_dtype_row_bytes(t->dtype, (size_t)t->shape[1]), out_row = (b1 - b0) * bb;
    const size_t bytes = (size_t)(r1 - r0) * out_row;
    char *copy = copy_alloc(s, bytes);
    if (!copy) return qm_fail(err, QM_ERR_NOMEM, "out of memory interleaving %s", t->name);
    const char *base = (const char *)t->data + (size_t)r0 * row_bytes;
    for (int r = 0; r < r1 - r0; r += QM_ROWS8)
        qm_rows8_pack(t->dtype, (const uint8_t *)base + (size_t)r * row_bytes + b0 * bb, row_bytes,
                      (int)((b1 - b0) * qk / 32), (uint8_t *)copy + (size_t)r * out_row);
    release_pages(base, (size_t)(r1 - r0) * row_bytes);
    hold_blocks(s, t, copy, bytes, b0, b1, c0, v);
    v->dtype = qm_dtype_rows8_of(t->dtype);
    s->rows8_bytes += bytes;
    return QM_OK;
}

/* Rows [r0, r1) x columns [c0, c1) of a 2-D tensor as a view: in place when all columns are
 * taken (copied into huge pages with huge_pages, where there is memory for it), else copied. A
 * block-quantized tensor's column slice keeps every block that holds one of its columns (a block
 * that straddles two devices' ranges is held by both; the excess is counted in copied_bytes and
 * reported by bench). A layer's Q4_0/Q5_0 tensor (use not USE_HEAD) repacked as Q8_0, or
 * interleaved by 8 rows, where the shard asks for it. */
static qm_status slice_view(qm_shard *s, const qm_tensor_ref *t, int r0, int r1, int c0, int c1, view_use use,
                            qm_wview *v, qm_error *err) {
    const size_t ld = (size_t)t->shape[1], qk = (size_t)qm_dtype_block(t->dtype);
    const size_t row_bytes = qm_dtype_row_bytes(t->dtype, ld);
    v->dtype = t->dtype;
    v->rows = r1 - r0;
    v->cols = c1 - c0;
    v->col0 = 0;
    if (use != USE_HEAD && s->repack_q8 && (t->dtype == QM_DT_Q4_0 || t->dtype == QM_DT_Q5_0))
        return repack_view(s, t, r0, r1, (size_t)c0 / qk, ((size_t)c1 + qk - 1) / qk, c0, v, err);
    if (rows8_view_fits(s, t, r0, r1, c0, c1, use)) return rows8_view(s, t, r0, r1, c0, c1, v, err);
    const char *base = (const char *)t->data + (size_t)r0 * row_bytes;
    if (c0 == 0 && (size_t)c1 == ld) {
        const size_t bytes = (size_t)v->rows * row_bytes;
        char *copy = s->huge_pages ? qm_arena_alloc(&s->huge, bytes) : NULL;
        if (copy) {
            memcpy(copy, base, bytes);
            release_pages(base, bytes);
        }
        v->data = copy ? copy : base;
        v->ld = ld;
        s->weight_bytes += bytes;
        return QM_OK;
    }
    size_t b0 = (size_t)c0 / qk, b1 = ((size_t)c1 + qk - 1) / qk; /* blocks [b0, b1) */
    size_t bytes_row = (b1 - b0) * qm_dtype_block_bytes(t->dtype), bytes = (size_t)v->rows * bytes_row;
    char *copy = copy_alloc(s, bytes);
    if (!copy) return qm_fail(err, QM_ERR_NOMEM, "out of memory copying a column slice of %s", t->name);
    for (int r = 0; r < v->rows; r++)
        memcpy(copy + (size_t)r * bytes_row, base + (size_t)r * row_bytes + b0 * qm_dtype_block_bytes(t->dtype),
               bytes_row);
    release_pages(base, (size_t)v->rows * row_bytes);
    hold_blocks(s, t, copy, bytes, b0, b1, c0, v);
    return QM_OK;
}

/* Elements [b, e) of a 1-D tensor as an owned f32 array. */
static qm_status f32_copy(qm_shard *s, const qm_tensor_ref *t, int b, int e, float **out, qm_error *err) {
    float *p = shard_alloc(s, (size_t)(e - b) * sizeof(float));
    if (!p) return qm_fail(err, QM_ERR_NOMEM, "out of memory copying %s", t->name);
    if (qm_dtype_is_quant(t->dtype)) {
        qm_dequant_range(t->dtype, t->data, (size_t)b, (size_t)(e - b), p);
        s->weight_bytes += t->nbytes * (size_t)(e - b) / (size_t)t->shape[0];
    } else {
        for (int i = b; i < e; i++) p[i - b] = qm_load_f32(t->data, t->dtype, (size_t)i);
        s->weight_bytes += (size_t)(e - b) * qm_dtype_size(t->dtype);
    }
    *out = p;
    return QM_OK;
}

#define TRY(x)                                                                                                         \
    do {                                                                                                               \
        qm_status st_ = (x);                                                                                           \
        if (st_ != QM_OK) return st_;                                                                                  \
    } while (0)

static qm_status load_layer(qm_shard *s, int i, qm_layer *L, qm_error *err) {
    const qm_config *c = &s->cfg;
    const qm_partition *p = &s->part;
    const qm_checkpoint *ck = s->ck;
    int d = c->hidden_size, hd = c->head_dim, nq = c->num_attention_heads, nkv = c->num_key_value_heads;
    int f = c->intermediate_size;
    char name[160];
    const qm_tensor_ref *t;
#define NAME(fmt) (snprintf(name, sizeof name, "model.layers.%d." fmt, i), name)
    TRY(get1(ck, NAME("input_layernorm.weight"), d, &t, err));
    TRY(f32_copy(s, t, 0, d, &L->attn_norm, err));
    TRY(get1(ck, NAME("post_attention_layernorm.weight"), d, &t, err));
    TRY(f32_copy(s, t, 0, d, &L->mlp_norm, err));

    int q0 = p->q_heads.begin * hd, q1 = p->q_heads.end * hd;
    int k0 = p->kv_heads.begin * hd, k1 = p->kv_heads.end * hd;
    TRY(get2(ck, NAME("self_attn.q_proj.weight"), (int64_t)nq * hd, d, &t, err));
    TRY(slice_view(s, t, q0, q1, 0, d, USE_COLPAR, &L->wq, err));
    TRY(get2(ck, NAME("self_attn.k_proj.weight"), (int64_t)nkv * hd, d, &t, err));
    TRY(slice_view(s, t, k0, k1, 0, d, USE_COLPAR, &L->wk, err));
    TRY(get2(ck, NAME("self_attn.v_proj.weight"), (int64_t)nkv * hd, d, &t, err));
    TRY(slice_view(s, t, k0, k1, 0, d, USE_COLPAR, &L->wv, err));
    TRY(get1(ck, NAME("self_attn.q_proj.bias"), (int64_t)nq * hd, &t, err));
    TRY(f32_copy(s, t, q0, q1, &L->bq, err));
    TRY(get1(ck, NAME("self_attn.k_proj.bias"), (int64_t)nkv * hd, &t, err));
    TRY(f32_copy(s, t, k0, k1, &L->bk, err));
    TRY(get1(ck, NAME("self_attn.v_proj.bias"), (int64_t)nkv * hd, &t, err));
    TRY(f32_copy(s, t, k0, k1, &L->bv, err));
    TRY(get2(ck, NAME("self_attn.o_proj.weight"), d, (int64_t)nq * hd, &t, err));
    TRY(slice_view(s, t, 0, d, q0, q1, USE_ROWPAR, &L->wo, err));

    TRY(get2(ck, NAME("mlp.gate_proj.weight"), f, d, &t, err));
    TRY(slice_view(s, t, p->mlp_cols.begin, p->mlp_cols.end, 0, d, USE_COLPAR, &L->wgate, err));
    TRY(get2(ck, NAME("mlp.up_proj.weight"), f, d, &t, err));
    TRY(slice_view(s, t, p->mlp_cols.begin, p->mlp_cols.end, 0, d, USE_COLPAR, &L->wup, err));
    TRY(get2(ck, NAME("mlp.down_proj.weight"), d, f, &t, err));
    TRY(slice_view(s, t, 0, d, p->mlp_cols.begin, p->mlp_cols.end, USE_ROWPAR, &L->wdown, err));
#undef NAME
    return QM_OK;
}

qm_status qm_shard_load(qm_checkpoint *ck, const qm_config *cfg, int cols, int col, bool huge_pages, bool repack_q8,
                        qm_rows8_types rows8, qm_shard *s, qm_error *err) {
    memset(s, 0, sizeof *s);
    s->cfg = *cfg;
    s->ck = ck;
    s->huge_pages = huge_pages;
    s->repack_q8 = repack_q8;
    if (!repack_q8) s->rows8 = rows8;
    qm_status st = qm_partition_make(cols, col, cfg->num_attention_heads, cfg->num_key_value_heads, cfg->head_dim,
                                     cfg->intermediate_size, cfg->vocab_size, &s->part, err);
    if (st) return st;
    int d = cfg->hidden_size;
    const qm_tensor_ref *t;
    if ((st = get2(ck, "model.embed_tokens.weight", cfg->vocab_size, d, &s->embed, err))) goto fail;
    if ((st = get1(ck, "model.norm.weight", d, &t, err))) goto fail;
    if ((st = f32_copy(s, t, 0, d, &s->final_norm, err))) goto fail;
    const qm_tensor_ref *head = s->embed;
    if (!cfg->tie_word_embeddings) {
        if ((st = get2(ck, "lm_head.weight", cfg->vocab_size, d, &head, err))) goto fail;
    }
    if ((st = slice_view(s, head, s->part.vocab.begin, s->part.vocab.end, 0, d, USE_HEAD, &s->lm_head, err))) goto fail;
    s->layers = calloc((size_t)cfg->num_hidden_layers, sizeof *s->layers);
    if (!s->layers) {
        st = qm_fail(err, QM_ERR_NOMEM, "out of memory");
        goto fail;
    }
    for (int i = 0; i < cfg->num_hidden_layers; i++)
        if ((st = load_layer(s, i, &s->layers[i], err))) goto fail;
    return QM_OK;
fail:
    qm_shard_free(s);
    return st;
}

void qm_shard_free(qm_shard *s) {
    for (int i = 0; i < s->n_owned; i++) free(s->owned[i]);
    free(s->owned);
    qm_arena_free(&s->huge);
    free(s->layers);
    memset(s, 0, sizeof *s);
}

double qm_model_matmul_flops(const qm_config *cfg) {
    const double d = cfg->hidden_size, q = (double)cfg->num_attention_heads * cfg->head_dim;
    const double kv = (double)cfg->num_key_value_heads * cfg->head_dim, f = cfg->intermediate_size;
    const double layer = d * q + 2 * d * kv + q * d + 3 * d * f; /* multiply-adds */
    return 2 * (cfg->num_hidden_layers * layer + (double)cfg->vocab_size * d);
}

double qm_model_lm_head_flops(const qm_config *cfg) { return 2 * (double)cfg->vocab_size * cfg->hidden_size; }

size_t qm_model_repacked_bytes(const qm_checkpoint *ck) {
    size_t bytes = 0;
    for (int i = 0; i < qm_checkpoint_count(ck); i++) {
        const qm_tensor_ref *t = qm_checkpoint_at(ck, i);
        if ((t->dtype != QM_DT_Q4_0 && t->dtype != QM_DT_Q5_0) || strncmp(t->name, "model.layers.", 13)) continue;
        bytes += t->nbytes / qm_dtype_block_bytes(t->dtype) * qm_dtype_block_bytes(QM_DT_Q8_0);
    }
    return bytes;
}

size_t qm_model_weight_bytes(const qm_checkpoint *ck, const qm_config *cfg) {
    size_t total = 0;
    for (int i = 0; i < qm_checkpoint_count(ck); i++) {
        const qm_tensor_ref *t = qm_checkpoint_at(ck, i);
        if (!cfg->tie_word_embeddings && !strcmp(t->name, "model.embed_tokens.weight")) continue;
        total += t->nbytes;
    }
    return total;
}
