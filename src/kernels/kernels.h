/* Compute kernels, one implementation per instruction set, chosen once at start-up.
 *
 * THE CANONICAL REDUCTION ORDER (design: Exactness, rule 1). Every dot product in qmesh,
 * whatever the ISA, batch size, tiling or thread count, is computed exactly as:
 *
 *     float acc[16] = {+0.0f, ...};
 *     for (i = 0; i < n; i++) acc[i % 16] = fmaf(a[i], b[i], acc[i % 16]);   // increasing i
 *     for (w = 8; w >= 1; w /= 2) for (l = 0; l < w; l++) acc[l] = acc[l] + acc[l + w];
 *     result = acc[0];
 *
 * where a weight element is first converted to f32 exactly (bf16, f16 and f32 all convert
 * exactly; a block-quantized element is dequantized exactly as gguf.quants.dequantize does,
 * kernels/quant.h, and i counts from the view's first column, not the block's). Lanes that
 * receive no element keep +0.0f. A 16-wide AVX-512 register is the 16
 * lanes; AVX2 holds lanes 0-7 and 8-15 in two registers; the scalar twin uses fmaf. So every
 * ISA gives the same bits, and a decode step gives the same bits as a prefill.
 */
#ifndef QM_KERNELS_H
#define QM_KERNELS_H

#include <qmesh.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "util/dtype.h"

struct qm_q8act;

/* A weight matrix, or a column slice of one, used in place. For a block-quantized dtype, data
 * is the start of the block that holds the view's column 0, which is element col0 of that block;
 * the kernels need col0 % 16 == 0 for their fast path (heads and MLP blocks are multiples of
 * 16 columns). */
typedef struct {
    const void *data; /* element (0,0) of the view (quantized: its block) */
    qm_dtype dtype;
    size_t ld;        /* elements between consecutive rows (>= cols; quantized: whole blocks) */
    int rows;         /* outputs */
    int cols;         /* inputs: the length of each dot product */
    int col0;         /* quantized only: offset of column 0 inside the block at data (rows
                         interleaved by 8, kernels/rows8.h: data stays at the rows' first
                         group, and col0 counts from its first column) */
} qm_wview;

/* Bytes between consecutive rows of a view. */
static inline size_t qm_wview_stride(const qm_wview *w) { return qm_dtype_row_bytes(w->dtype, w->ld); }

/* Columns [c0, c1) of a view, as a view. */
static inline qm_wview qm_wview_cols(const qm_wview *w, int c0, int c1) {
    qm_wview v = *w;
    if (qm_dtype_is_rows8(w->dtype)) { /* a group's blocks are 8 rows' */
        v.col0 = w->col0 + c0;
        v.cols = c1 - c0;
        return v;
    }
    size_t abs = (size_t)w->col0 + (size_t)c0, qk = (size_t)qm_dtype_block(w->dtype);
    v.data = (const char *)w->data + abs / qk * qm_dtype_block_bytes(w->dtype);
    v.col0 = (int)(abs % qk);
    v.cols = c1 - c0;
    return v;
}

/* Asks the cache for the bytes of columns [c0, c1) of rows [o0, o1) (a hint: never faults, no
 * effect on results). A row-parallel layer reads many rows a short column slice at a time, more
 * strided streams than the hardware prefetcher follows; this fetches the next slice ahead. */
static inline void qm_wview_prefetch(const qm_wview *w, int c0, int c1, int o0, int o1) {
    if (c1 > w->cols) c1 = w->cols;
    if (c0 >= c1) return;
    size_t qk = (size_t)qm_dtype_block(w->dtype), bb = qm_dtype_block_bytes(w->dtype), stride = qm_wview_stride(w);
    size_t b0 = ((size_t)w->col0 + (size_t)c0) / qk * bb, b1 = ((size_t)w->col0 + (size_t)c1 + qk - 1) / qk * bb;
    for (int o = o0; o < o1; o++) {
        const char *row = (const char *)w->data + (size_t)o * stride;
        for (size_t b = b0 & ~(size_t)63; b < b1; b += 64) __builtin_prefetch(row + b, 0, 3);
    }
}

/* A node of a row-parallel layer's tree: blocks [first, first + count) of a view. */
typedef struct {
    int first, count;
} qm_leaf_node;

/* The halving tree of leaves [first, first + count) of `leaves` (leaf k: n floats at k * n),
 * elementwise: one leaf is itself; more, the first floor(count/2) leaves' tree + the rest's,
 * added into the first leaf's place (the others are left as scratch). Returns that place. */
static inline float *qm_tree_halving_sum(float *leaves, size_t n, int first, int count) {
    float *left = leaves + (size_t)first * n;
    if (count <= 1) return left;
    const int lc = count / 2;
    qm_tree_halving_sum(leaves, n, first, lc);
    const float *right = qm_tree_halving_sum(leaves, n, first + lc, count - lc);
    for (size_t i = 0; i < n; i++) left[i] = left[i] + right[i];
    return left;
}

/* A matmul (qm_kernels.matmul, below). */
typedef void (*qm_matmul_fn)(const qm_wview *w, const float *bias, const float *x, size_t ldx, int n_tok, float *y,
                             size_t ldy, int o_begin, int o_end);

/* Every block-quantized type as X(suffix, name), for an ISA file's entries made per type:
 * X(q8_0, Q8_0) names QM_DT_Q8_0. */
#define QM_QUANT_TYPES(X)                                                                          \
    X(q8_0, Q8_0) X(q4_0, Q4_0) X(q4_1, Q4_1) X(q5_0, Q5_0) X(q5_1, Q5_1) X(q4_k, Q4_K) X(q5_k, Q5_K) X(q6_k, Q6_K)

/* A qm_matmul_fn name_ that calls body_(w, dt_, bias, x, ...): one function per type, each with its
 * own stack buffers and code specialised to the type. */
#define QM_MATMUL_OF_TYPE(name_, body_, dt_)                                                       \
    static __attribute__((noinline)) void name_(const qm_wview *w, const float *bias, const float *x, size_t ldx, \
                                                int n_tok, float *y, size_t ldy, int o_begin, int o_end) { \
        body_(w, dt_, bias, x, ldx, n_tok, y, ldy, o_begin, o_end);                                \
    }

/* The head filter's bounds as its first pass reads them (kernels.head_pass): in tiles of
 * QM_HEAD_TILE rows, tile i at i * tile floats, S and D of row o in group g at bound[at] and
 * dev[at], at = qm_head_bound_at (dev NULL: no D terms; model/head_filter.h lays a tile's D after
 * its S), output t's e_g and h_g at coef[(2 t) * groups + g] and coef[(2 t + 1) * groups + g], in
 * f32 rounded up. A tile's rows side by side: a chunk of rows reads its bounds as one stream. */
typedef struct qm_head_bounds {
    const float *bound, *dev, *coef;
    size_t tile;
    int groups;
} qm_head_bounds;

#define QM_HEAD_TILE 32

static inline size_t qm_head_bound_at(const qm_head_bounds *hb, int g, int o) {
    return (size_t)(o / QM_HEAD_TILE) * hb->tile + (size_t)g * QM_HEAD_TILE + (size_t)(o % QM_HEAD_TILE);
}

/* E's relative margin (1 + 2^-7) and the widest view the pass takes: with c >= 2^-16 in every
 * e_g (head_filter.h), E is at least 2^-16 |a|, so the margin covers the f32 rounding of E's
 * terms and of a + E and a - E; up to 8192 columns a's own rounding (one fmaf a block) stays
 * inside the bound's 256 2^-24 of slack. */
#define QM_HEAD_PASS_MARGIN 1.0078125f
#define QM_HEAD_PASS_MAX_COLS 8192

/* Whether head_pass takes w: Q8_0 or Q6_K, from column 0, at most QM_HEAD_PASS_MAX_COLS columns. */
static inline int qm_head_pass_view_ok(const qm_wview *w) {
    return (w->dtype == QM_DT_Q8_0 || w->dtype == QM_DT_Q6_K) && w->col0 == 0 && w->cols <= QM_HEAD_PASS_MAX_COLS &&
           w->cols % qm_dtype_block(w->dtype) == 0;
}

void qm_head_pass_scalar(const qm_wview *w, const struct qm_q8act *x, int n_tok, const qm_head_bounds *hb, float *y,
                         size_t ldy, float *low, int o_begin, int o_end);
/* The same for outputs [t0, t0 + nt) of x only (the ISA kernels' way out when out of memory). */
void qm_head_pass_scalar_outputs(const qm_wview *w, const struct qm_q8act *x, int t0, int nt, const qm_head_bounds *hb,
                                 float *y, size_t ldy, float *low, int o_begin, int o_end);
/* kernels.head_finish's definition (below), and its ISA twins. */
void qm_head_finish_scalar(const qm_head_bounds *hb, int t, float *y, float *low, int o_begin, int o_end);
#if defined(__x86_64__) || defined(__i386__)
void qm_head_finish_avx2(const qm_head_bounds *hb, int t, float *y, float *low, int o_begin, int o_end);
void qm_head_finish_avx512(const qm_head_bounds *hb, int t, float *y, float *low, int o_begin, int o_end);
void qm_head_pass_avx2(const qm_wview *w, const struct qm_q8act *x, int n_tok, const qm_head_bounds *hb, float *y,
                       size_t ldy, float *low, int o_begin, int o_end);
void qm_head_pass_avx512vnni(const qm_wview *w, const struct qm_q8act *x, int n_tok, const qm_head_bounds *hb,
                             float *y, size_t ldy, float *low, int o_begin, int o_end);
#endif

typedef struct qm_kernels {
    const char *isa; /* "avx512vnni", "avx512", "avx2" or "scalar" */

    /* y[t*ldy + o] = dot(W row o, x + t*ldx) (+ bias[o], one rounding after the dot)
     * for o in [o_begin, o_end), t in [0, n_tok). bias may be NULL. x: [n_tok][ldx] f32.
     * Each y element is the canonical dot: independent of n_tok, o_begin and o_end. */
    void (*matmul)(const qm_wview *w, const float *bias, const float *x, size_t ldx, int n_tok,
                   float *y, size_t ldy, int o_begin, int o_end);

    /* The canonical dot of two f32 vectors. */
    float (*dot)(const float *a, const float *b, int n);

    /* y[i] = fmaf(a, x[i], y[i]) for i in [0, n). */
    void (*axpy)(float a, const float *x, float *y, int n);

    /* Attention's weighted sum of values for g heads that share n cached value rows, continued
     * from what out holds (the caller sets +0 first; a second call over the next rows continues
     * the same sums, so a shared prefix's rows and a sequence's own are one chain):
     *   out[h*hd + i] = fmaf(p[h*ldp + j], v[j*ldv + i], out[h*hd + i])
     *   for j = 0, 1, ..., n - 1        (h < g, i < hd)
     * that is, one axpy per value row in order; a kernel keeps a tile of heads x columns in
     * registers over all the rows instead of reading and writing out n times. */
    void (*attn_values)(const float *p, size_t ldp, int g, const float *v, size_t ldv, int n, float *out, int hd);

    /* The fast mode (kernels/qdot.h): x quantized per 32 elements, and a quantized weight view
     * times quantized vectors. Declared here as opaque function types to keep this header light. */
    void (*quantize_act)(const float *x, int n, int8_t *q, float *d, int32_t *s);
    void (*matmul_q8)(const qm_wview *w, const float *bias, const struct qm_q8act *x, int n_tok, float *y, size_t ldy,
                      int o_begin, int o_end);

    /* A row-parallel layer (model/forward.c): the view's columns cut into nb blocks of bc
     * columns (the last may be shorter), each block's dot the canonical dot of that block as a
     * view of its own (qm_wview_cols), as matmul (f32 x) or matmul_q8 (quantized x, whose vector
     * starts at the view's column 0) computes it. Block bi of row o and token t goes to
     * part[bi * pstride + t * ldy + o] (the forward then adds them in the tree order of
     * mesh/tree_sum.h). The same bits as block-by-block
     * calls (qm_blocks_by_views is that loop, the scalar twin); fast paths read each row once,
     * contiguously, where the loop reads many rows a short slice at a time. */
    void (*matmul_blocks)(const qm_wview *w, const float *x, size_t ldx, int n_tok, int bc, int nb, float *part,
                          size_t pstride, size_t ldy, int o_begin, int o_end);
    void (*matmul_q8_blocks)(const qm_wview *w, const struct qm_q8act *x, int n_tok, int bc, int nb, float *part,
                             size_t pstride, size_t ldy, int o_begin, int o_end);

    /* The same layer's sums at once, for the nodes of the row-parallel tree that lie in the view
     * (mesh/tree_sum.h): node i (leaves = blocks [nodes[i].first, + count) of the view) is the
     * halving tree of those block dots (one block: its dot; more: the node of the first
     * floor(count/2) plus the node of the rest, one f32 add), for row o and token t into
     * out[i * ostride + t * ldy + o]. The same bits as matmul_q8_blocks followed by that tree;
     * only the nodes' values leave the kernel (qm_tree_halving_sum is the tree). Returns 0,
     * writing nothing, where it leaves the shape to matmul_q8_blocks. NULL: never taken. */
    int (*matmul_q8_nodes)(const qm_wview *w, const struct qm_q8act *x, int n_tok, int bc, int nb,
                           const qm_leaf_node *nodes, int n_nodes, float *out, size_t ostride, size_t ldy,
                           int o_begin, int o_end);
    /* The same for the exact mode (f32 x [n_tok][ldx], the view's column 0): matmul_blocks followed
     * by the tree; 0 where the ISA leaves the shape to matmul_blocks, writing nothing. NULL: never
     * taken. */
    int (*matmul_nodes)(const qm_wview *w, const float *x, size_t ldx, int n_tok, int bc, int nb,
                        const qm_leaf_node *nodes, int n_nodes, float *out, size_t ostride, size_t ldy, int o_begin,
                        int o_end);

    /* The greedy head filter's first pass over several outputs (model/head_filter.h), where the
     * ISA has one (NULL elsewhere: the forward then takes matmul_q8 and the bounds one output at a
     * time). w: a view qm_head_pass_view_ok takes, x: n_tok outputs quantized (kernels/qdot.h).
     * For row o in [o_begin, o_end) and output t, in f32, each operation rounded to nearest, in
     * this order (qm_head_pass_scalar is the definition):
     *   a = +0;  a = fmaf((float)S_b, dw_b * dx_tb, a)     for 32-blocks b = 0, 1, ...
     * S_b the block's exact integer sum: Q8_0 Σ_i w_i q_i, dw_b its d; Q6_K sc_2j Σ_{i<16} (c_i -
     * 32) q_i + sc_2j+1 Σ_{i>=16} (c_i - 32) q_i for sub-block j = b % 8, dw_b its superblock's d
     * (|S_b| < 2^24: exact as a float);
     *   E = +0;  E = fmaf(S[g][o], e[t][g], E); E = fmaf(D[g][o], h[t][g], E)   for g = 0, 1, ...
     *   E = E * QM_HEAD_PASS_MARGIN + 1e-35f
     *   y[t*ldy + o] = a + E;  low[t] = max(low[t], a - E)   (a NaN never replaces low[t])
     * Not a canonical dot: any order within the bound's slack would do (head_filter.h), this one
     * is fixed so that the ISA and its twin agree bit for bit. */
    void (*head_pass)(const qm_wview *w, const struct qm_q8act *x, int n_tok, const struct qm_head_bounds *hb, float *y,
                      size_t ldy, float *low, int o_begin, int o_end);
    /* Outputs a step needs before the forward takes head_pass (fewer: matmul_q8 and the bounds
     * one output at a time, or a float head's exact kernel): where it starts to win, measured. */
    int head_pass_min_outputs;
    /* The rest of head_pass for one output t whose 8-bit dots a (row o's at y[o]) a step of fewer
     * outputs took from matmul_q8 on the same view: for o in [o_begin, o_end), E as head_pass makes
     * it (the same operations in the same order), y[o] = a + E, *low = max(*low, a - E) (a NaN
     * never replaces it). qm_head_finish_scalar is the definition; each ISA's gives its bits. */
    void (*head_finish)(const struct qm_head_bounds *hb, int t, float *y, float *low, int o_begin, int o_end);

    /* kernels/expf.h: s[j] = qm_expf(s[j] - m) (softmax's exponentials), and h[i] = silu(g[i]) *
     * u[i] with silu(g) = g / (1 + qm_expf(-g)); element-wise, the same bits on every ISA. */
    void (*exp_sub)(float *s, int n, float m);
    void (*silu_mul)(const float *g, const float *u, float *h, int n);

    /* The exact-mode matmul is faster on Q8_0 than on Q4_0/Q5_0 by more than the extra bytes
     * cost: the load repacks those matrices to Q8_0 by default in the exact mode (model.h). */
    bool exact_prefers_q8;

    /* Bit t set: matmul_q8 takes views of file type t (Q4_0, Q5_0, Q4_K) interleaved 8 rows at a
     * time (kernels/rows8.h), faster there in one token's decode: the fast mode's load makes its
     * column-parallel matrices of those types so (model.h). Every table's matmul_q8 takes them
     * all; a bit says where that is faster. */
    unsigned q8_rows8_types;
    /* Bit t set: matmul_q8_blocks and matmul_q8_nodes take row-parallel views of file type t
     * interleaved so too (their rows whole groups of 8, their columns the held superblocks, col0
     * a multiple of 64), which the fast mode's load then makes (model.h). Only this table's do. */
    unsigned q8_rows8_rowpar_types;
} qm_kernels;

typedef void (*qm_matmul_fn)(const qm_wview *w, const float *bias, const float *x, size_t ldx, int n_tok, float *y,
                             size_t ldy, int o_begin, int o_end);

void qm_blocks_by_views(qm_matmul_fn mm, const qm_wview *w, const float *x, size_t ldx, int n_tok, int bc, int nb,
                        float *part, size_t pstride, size_t ldy, int o_begin, int o_end);


/* The scalar twin (every ISA's fallback for what it has no fast path for). */
extern const qm_kernels qm_kernels_scalar_table;

/* Picks the kernels: isa NULL or "auto" = the best this CPU supports (read from CPUID at run
 * time), else "avx512vnni", "avx512", "avx2" or "scalar"; asking for one the CPU lacks is
 * QM_ERR_UNSUPPORTED. */
qm_status qm_kernels_select(const char *isa, qm_kernels *out, qm_error *err);

/* Names of the ISAs this CPU can run, best first; returns how many (at most max). */
int qm_kernels_supported(const char **names, int max);

/* Element-wise helpers (one implementation; no reduction across elements, so no order issue). */

/* RMSNorm as transformers: y[i] = w[i] * (x[i] * r), r = 1 / sqrtf(dot(x,x)/n + eps),
 * with dot the canonical one. w is n weights of dtype wt. y may alias x. */
void qm_rmsnorm(const qm_kernels *k, const float *x, const void *w, qm_dtype wt, int n, float eps,
                float *y);

/* Rotary embedding, transformers' rotate-half form, on one head vector x[head_dim] at `pos`:
 * x'[i] = x[i]*cos[i] - x[i+h]*sin[i], x'[i+h] = x[i+h]*cos[i] + x[i]*sin[i] (h = head_dim/2),
 * with cos/sin from qm_rope_table. */
void qm_rope_apply(float *x, int head_dim, const float *cos_t, const float *sin_t);

/* cos_t/sin_t [head_dim/2] for position pos: angle_i = (float)pos * inv_freq_i,
 * inv_freq_i = (float)(1 / theta^(2i/head_dim)), cos/sin computed in double and rounded. */
void qm_rope_table(int pos, int head_dim, double theta, float *cos_t, float *sin_t);

#endif
