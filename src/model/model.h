/* A Qwen2 model on one device of a mesh: its shard of the weights, its KV cache, its buffers,
 * and the forward pass over its shard (SPMD: every device of a row runs the same steps). */
#ifndef QM_MODEL_MODEL_H
#define QM_MODEL_MODEL_H

#include <qmesh.h>
#include <stdbool.h>
#include "io/checkpoint.h"
#include "io/config.h"
#include "kernels/kernels.h"
#include "mesh/comm.h"
#include "mesh/partition.h"
#include "model/head_filter.h"
#include "model/timing.h"
#include "util/huge_arena.h"
#include "util/pool.h"

/* Bit t of colpar / rowpar: the column-parallel / row-parallel matrices of file type t. */
typedef struct {
    unsigned colpar, rowpar;
} qm_rows8_types;

/* One decoder layer's shard. hq = local query heads, hkv = local KV heads, hd = head_dim,
 * d = hidden_size, f = local intermediate columns (whole QM_MLP_BLOCK blocks). */
typedef struct {
    float *attn_norm;   /* [d] replicated (f32 copy) */
    qm_wview wq;        /* [hq*hd][d]  column-parallel: rows of q_proj, in place in the mmap */
    qm_wview wk, wv;    /* [hkv*hd][d] column-parallel, KV heads replicated where shared */
    float *bq, *bk, *bv;/* [hq*hd], [hkv*hd], [hkv*hd] (f32 copies) */
    qm_wview wo;        /* [d][hq*hd]  row-parallel: columns of o_proj (copied when C > 1) */
    float *mlp_norm;    /* [d] replicated */
    qm_wview wgate, wup;/* [f][d]      column-parallel, in place */
    qm_wview wdown;     /* [d][f]      row-parallel: columns of down_proj (copied when C > 1) */
} qm_layer;

typedef struct {
    qm_config cfg;
    qm_partition part;
    qm_checkpoint *ck;
    const qm_tensor_ref *embed; /* [vocab][d] replicated by mapping: only the rows of the step's
                                   tokens are read */
    float *final_norm;          /* [d] */
    qm_wview lm_head;           /* [vocab_local][d] vocabulary-parallel, in place */
    qm_layer *layers;           /* [n_layers] */
    void **owned;               /* copies made at load (column slices, norms, biases) */
    int n_owned, cap_owned;
    size_t weight_bytes;        /* weight bytes this device reads per forward pass */
    size_t copied_bytes;        /* of which copied into memory at load */
    size_t straddle_bytes;      /* of which quantization blocks also held by a neighbour device
                                   (a block that spans two devices' column ranges) */
    bool huge_pages;            /* the matrices copied at load into huge pages (util/huge_arena.h) */
    bool repack_q8;             /* the layers' Q4_0 and Q5_0 matrices repacked at load to Q8_0 */
    size_t repack_bytes;        /* the bytes that added (of weight_bytes; included in copied_bytes) */
    qm_rows8_types rows8;       /* the file types whose layers' matrices are held interleaved 8
                                   rows at a time (kernels/rows8.h; not with repack_q8) */
    size_t rows8_bytes;         /* the bytes held so (of weight_bytes and copied_bytes) */
    qm_arena huge;              /* their memory; huge.used: bytes copied there */
} qm_shard;

/* Loads device `col`'s shard of the checkpoint `ck` (shared, not owned). huge_pages: every matrix
 * (the views above) copied into transparent huge pages instead of used in place from the mapping,
 * where memory allows (a matrix it does not stays in place). repack_q8: the layers' Q4_0 and Q5_0
 * matrices rewritten as Q8_0 blocks of the same values (kernels/quant.h qm_requant_q8_0; the same
 * 32-column blocks, so the same slices and the same logits, bit for bit), for kernels that run
 * Q8_0 faster (kernels.h exact_prefers_q8): 34 bytes a block instead of 18 or 22. rows8 (not with
 * repack_q8): the column-parallel matrices (q, k, v, gate, up) of the file types in rows8.colpar,
 * of whole rows, a multiple of 8 of them, and the row-parallel ones (o_proj, down) of those in
 * rows8.rowpar, their held superblocks (kernels/rows8.h), interleaved 8 rows at a time for the
 * fast mode's kernels (kernels.h q8_rows8_types, q8_rows8_rowpar_types), the same bytes. */
qm_status qm_shard_load(qm_checkpoint *ck, const qm_config *cfg, int cols, int col, bool huge_pages, bool repack_q8,
                        qm_rows8_types rows8, qm_shard *out, qm_error *err);
void qm_shard_free(qm_shard *s);

/* Weight bytes of the whole model: every tensor the forward pass reads once (the embedding only
 * when it is also the LM head: otherwise only a step's rows of it are read). */
size_t qm_model_weight_bytes(const qm_checkpoint *ck, const qm_config *cfg);
/* The layers' Q4_0 and Q5_0 matrices at their Q8_0 size: the copies repack_q8 (qm_shard_load)
 * makes, all devices of a row together. */
size_t qm_model_repacked_bytes(const qm_checkpoint *ck);
/* Floating-point operations of one token's matmuls (q, k, v, o_proj, gate, up, down_proj in every
 * layer, and lm_head), 2 per multiply-add; attention's scores and values (which grow with the
 * position) not counted. */
double qm_model_matmul_flops(const qm_config *cfg);
/* The lm_head's part of it (a prefill makes logits only for each sequence's last token). */
double qm_model_lm_head_flops(const qm_config *cfg);

/* A step: tokens of one or more sequences, each at a position of its KV slot. */
typedef struct {
    int n_tok;
    const int *ids;   /* [n_tok] */
    const int *pos;   /* [n_tok] position in its sequence */
    const int *slot;  /* [n_tok] KV cache slot */
    const int *out;   /* [n_out] indices of the tokens whose logits are wanted */
    int n_out;
    bool greedy_only; /* only each output's greedy token is wanted (no other logit, no logprobs):
                         the head filter may leave -inf in rows that cannot hold the largest
                         logit (model/head_filter.h) */
} qm_step;

typedef struct {
    int max_tokens;   /* tokens per step at most */
    int n_slots;      /* KV cache slots (sequences held at once) */
    int max_context;  /* positions per slot */
    bool act_q8;      /* fast mode: 8-bit activations against quantized weights (kernels/qdot.h) */
    bool huge_pages;  /* the shard's matrices copied into huge pages (qm_shard_load) */
    int repack_q8;    /* Q4_0/Q5_0 matrices repacked at load (qm_shard_load): 1 on (to Q8_0), -1 off,
                         0 auto (to Q8_0 in the exact mode where the kernels prefer it:
                         exact_prefers_q8; interleaved by 8 rows in the fast mode where the
                         kernels take that: q8_rows8_types) */
    bool head_filter; /* exact mode: greedy steps filter the lm_head (model/head_filter.h) */
    bool head_shadow; /* ... a float head too, through a Q8_0 copy each device makes */
} qm_device_dims;

/* Where a KV slot's first positions live: [0, n) are slot `from`'s, read in place (a shared
 * prefix); n = 0: the slot holds all its positions itself. */
typedef struct {
    int from, n;
} qm_kv_base;

typedef struct {
    qm_shard shard;
    qm_kernels kern;
    qm_comm *comm;     /* not owned */
    qm_pool *pool;     /* the device's team; owned */
    qm_device_dims dims;
    float *kv;         /* [n_slots][n_layers][2][hkv][max_context][hd] (K then V) */
    size_t kv_bytes;
    qm_kv_base *kv_base; /* [n_slots] */
    float *buf;        /* one allocation carved into the buffers below */
    size_t buf_bytes;
    float *x;          /* [T][d] residual stream, replicated */
    float *xn;         /* [T][d] normed input, replicated */
    float *q;          /* [T][hq*hd] split by heads */
    float *k, *v;      /* [T][hkv*hd] */
    float *att;        /* [T][hq*hd] attention output, split by heads */
    float *partial;    /* [slots][T][d] a row-parallel layer's block partials and cover values (mesh/tree_sum.h) */
    float *sum;        /* [T][d] the tree sum across the row */
    float *gate, *up;  /* [T][f] */
    float *scores;     /* [nth][max_context] attention scratch per team member */
    float *logits;     /* [T][vocab_local] */
    /* fast mode: the current matmul input quantized per 32 (kernels/qdot.h); NULL when off */
    int8_t *xq;        /* [T][max_in] */
    float *xq_d;       /* [T][max_in / 32] */
    int32_t *xq_s;     /* [T][max_in / 32] */
    int xq_ld;         /* max_in: the widest matmul input (d, hq*hd, f) */
    qm_head_filter head; /* the greedy head filter; head.bound NULL when off */
    double time_s[QM_TIME_COUNT]; /* seconds by part, collectives included (timing.h; statistics) */
    double decode_time_s[QM_TIME_COUNT]; /* the part of time_s spent in steps of decode tokens only */
    long decode_steps;                   /* how many such steps */
} qm_device;

/* Where position pos of KV head kvh (local), layer `layer`, of slot `slot` lives: which 0 = its
 * key, 1 = its value, hd floats. */
static inline float *qm_kv_at(const qm_device *dev, int slot, int layer, int which, int kvh, int pos) {
    const qm_shard *sh = &dev->shard;
    const size_t hkv = (size_t)qm_range_len(sh->part.kv_heads), hd = (size_t)sh->cfg.head_dim;
    const size_t ctx = (size_t)dev->dims.max_context;
    const size_t idx = ((((size_t)slot * (size_t)sh->cfg.num_hidden_layers + (size_t)layer) * 2 + (size_t)which) * hkv +
                        (size_t)kvh) * ctx + (size_t)pos;
    return dev->kv + idx * hd;
}

/* Whether a device with these dimensions and kernels repacks its Q4_0/Q5_0 matrices (repack_q8). */
bool qm_device_repacks(const qm_device_dims *dims, const qm_kernels *k);
/* The file types whose matrices it interleaves by 8 rows (qm_shard_load rows8). */
qm_rows8_types qm_device_rows8(const qm_device_dims *dims, const qm_kernels *k);
qm_status qm_device_init(qm_device *dev, qm_checkpoint *ck, const qm_config *cfg, qm_comm *comm, const char *isa,
                         int team_threads, const qm_device_dims *dims, qm_error *err);
void qm_device_free(qm_device *dev);

/* Runs the step; on return dev->logits[i][*] holds the local vocabulary logits of token out[i]
 * (identical bits whatever the mesh, the batch and the other tokens of the step). */
qm_status qm_forward(qm_device *dev, const qm_step *s, qm_error *err);

/* Prefix cache. Slot `to` reads positions [0, n) from slot `from` in place from now on (n = 0:
 * only its own; `from` must hold its positions itself). The sequence in `to` writes its own
 * positions n, n + 1, ...; the bits of attention do not depend on where a position is read. */
void qm_kv_share(qm_device *dev, int from, int to, int n);
/* Before slot `from` is rewritten: every slot that reads positions from it gets its own copy. */
void qm_kv_detach(qm_device *dev, int from);
/* Every slot reads only its own positions again (a serving loop's sequences are over). */
void qm_kv_own_all(qm_device *dev);

#endif
