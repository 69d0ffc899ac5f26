/* Pieces the AVX2 and AVX-512 row-parallel kernels share (matmul_avx2.c / matmul_avx512.c
 * qblocks_rows and blocks_tokens, qdot_avx2.c / qdot_avx512.c blocks_narrow), and the column-
 * parallel tiles' prefetch. Plain C and SSE
 * prefetches only: each kernel file compiles them for its own ISA. */
#ifndef QM_KERNELS_ROWPAR_H
#define QM_KERNELS_ROWPAR_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <xmmintrin.h>

#include "kernels/kernels.h"

#define QM_ROWPAR_SHORT_GROUP 4096 /* bytes: a row group this short is prefetched as one stretch */

/* The fast mode's one-token row-parallel tiles (qdot_*.c tile_decode_b64), DR rows a pass: where
 * a pass's rows hold more than QM_ROWPAR_LONG_PASS bytes of the view (the 1.5B's down_proj: 4 rows
 * of 7 KB), the next pass's rows are prefetched into the L2, each row's bytes of the 16-block group
 * in hand (rows DR + r at the group's offset; a device's slice of columns too, which had no
 * prefetch before). Into the L1, the next pass (29 KB there) and the decode's block dots (32 rows x
 * 140 blocks, 18 KB) evicted each other. Alternating builds, `qmesh bench --activations q8`,
 * down_proj's ms a step: 1.5B Q4_K_M avx512vnni 12.3-14.9 against 16.1-21.4 before, avx2 22.7
 * against 26.7-29.2, 1x2 13.7-14.8 against 16.0-16.6; 0.5B 3.6-4.2 against 4.4-5.2. Shorter
 * passes keep the one stretch into the L1. The exact mode's and the plain types' row tiles
 * likewise (qm_rowpar_prefetch's l2): bf16 0.5B-shaped down_proj 8.1-8.9 ms against 9.0-10.3
 * (avx512vnni); the exact 1.5B and avx2 within the noise. */
#define QM_ROWPAR_LONG_PASS 8192

/* n bytes from p into the L2. Always inlined: as a plain static inline, GCC 12 left these
 * prefetches out of the AVX-512 tiles altogether (no prefetcht1 in the object). */
static inline __attribute__((always_inline)) void qm_prefetch_l2(const void *p, size_t n) {
    for (size_t off = 0; off < n; off += 64) _mm_prefetch((const char *)p + off, _MM_HINT_T1);
}

/* The exact decode tiles' prefetch (qtile_reg, matmul_avx512.c): line `off` of the next tile's R
 * rows into the L2 (prefetcht2), where `off` is inside the view's bytes. The 1.5B's exact decode
 * (avx512vnni, 2 threads, Intel Xeon, 2026-12-03, builds alternated twice): as here, gate_up
 * 33.7-35.6 ms a step; into the L1 34.4-35.7; two tiles ahead 34.2-40.6 (L2), 35.6-36.3 (L1); no
 * software prefetch 55.5-58.6. Level and distance changed nothing beyond this VM's noise (the same
 * build's gate_up took 25.6-38.5 ms over that session). */
static inline __attribute__((always_inline)) void qm_prefetch_next_tile(const char *w0, size_t wstride, int R,
                                                                       size_t off, size_t vbytes) {
    if (off < vbytes)
        for (int r = 0; r < R; r++) _mm_prefetch(w0 + (size_t)(R + r) * wstride + off, _MM_HINT_T2);
}

/* The column-parallel tiles (matmul_avx2.c / matmul_avx512.c tile), on a matrix whose rows are
 * contiguous: token tile k of a row group's n prefetches part k of the next group's rows (the
 * next_bytes after w_next) into the L1 as one sequential stream, over its `steps` iterations.
 * Returns the bytes an iteration and sets *pf to the part's first. The hardware prefetcher alone
 * does not keep R strided streams ahead; and when the first token tile asked for all of it, its
 * misses outran the L1's and the other tiles asked for none. One thread, bf16 151936 x 896 x 16
 * tokens from DRAM (avx512vnni): 143-147 GFLOP/s that way, 192-194 shared out; the 0.5B's
 * batch-16 gate_up 25-27 ms a step against 22, lm_head 15-16 against 12. Prefetches never fault
 * and change no arithmetic. */
static inline size_t qm_colpar_prefetch_share(const char *w_next, size_t next_bytes, int steps, int k, int n,
                                              const char **pf) {
    const size_t a = next_bytes * (size_t)k / (size_t)n, b = next_bytes * (size_t)(k + 1) / (size_t)n;
    *pf = w_next + a;
    return (b - a + (size_t)steps - 1) / (size_t)steps;
}

/* The next group's rows, spread over this group's blocks. Long rows: each row's bytes of the
 * block in hand (rows R + r at the block's offset), into the L1, or the L2 where R rows are over
 * QM_ROWPAR_LONG_PASS bytes. A short group (a device's narrow shard of a row-parallel layer, a
 * few hundred bytes a row) as one stretch from its first byte.
 * Measured from DRAM (bench_qmatmul rp, Q8_0, 448 rows): 640 columns 0.14 ns a weight per row,
 * 0.08 as a stretch; 4864 columns 0.10 per row, 0.14 as a stretch. Prefetches never fault. */
typedef struct {
    const char *w0, *next; /* the group's first row; the stretch's next line */
    size_t wstride, step, blk_bytes;
    int R, stretch, l2; /* l2: a tile's rows over QM_ROWPAR_LONG_PASS bytes, prefetched into the L2 */
} qm_rowpar_prefetch;

/* For a group of `rows` rows of stride wstride from w0, register tiles of R rows, nb blocks of
 * blk_bytes (about, for K-quants). */
static inline qm_rowpar_prefetch qm_rowpar_prefetch_start(const char *w0, size_t wstride, int rows, int R, int nb,
                                                          size_t blk_bytes) {
    const size_t group = (size_t)rows * wstride, per = (size_t)nb * 64;
    qm_rowpar_prefetch p = {w0, w0 + group, wstride, (group + per - 1) / per * 64, blk_bytes, R,
                            group <= QM_ROWPAR_SHORT_GROUP, (size_t)R * wstride > QM_ROWPAR_LONG_PASS};
    return p;
}

/* Whether a plain type's one-token row-parallel tiles prefetch the next tile's rows as one stretch:
 * where the view's rows are whole (a device holding them whole, ld = cols), the next 4 rows are
 * one stretch of memory, read as one sequential stream spread over the tile's blocks rather than
 * a stream a row (and the group after next then needs no prefetch of its own). The bf16 and f32
 * 0.5B shapes' down_proj at batch 1 (AVX-512, Zen 5, 2 threads, alternated three times, its time
 * over gate_up's, whose bytes are twice its): f32 0.66-0.86 -> 0.57-0.68, bf16 0.67-0.71 ->
 * 0.56-0.66. */
static inline int qm_rowpar_plain_stretch(const qm_wview *w) {
    return !qm_dtype_is_quant(w->dtype) && w->ld == (size_t)w->cols;
}

/* Before block `blk` of the group. */
static inline void qm_rowpar_prefetch_block(qm_rowpar_prefetch *p, int blk) {
    if (p->stretch) {
        for (size_t off = 0; off < p->step; off += 64) _mm_prefetch(p->next + off, _MM_HINT_T0);
        p->next += p->step;
        return;
    }
    for (int r = 0; r < p->R; r++) { /* a block of a plain type is 128 or 256 bytes: each of its lines */
        const char *b = p->w0 + (size_t)(p->R + r) * p->wstride + (size_t)blk * p->blk_bytes;
        if (p->l2) qm_prefetch_l2(b, p->blk_bytes);
        else for (size_t off = 0; off < p->blk_bytes; off += 64) _mm_prefetch(b + off, _MM_HINT_T0);
    }
}

/* The next group's rows' bytes [off, off + n) of each row (a K-quant superblock, 144 to 210
 * bytes), a prefetch a line they touch: what qm_rowpar_prefetch_block does for the superblock's
 * blocks, at the superblock's own offset (that one counts blocks from the view's first column),
 * without its loops, which held about 10% of the samples of a one-token row-parallel Q4_K decode
 * (Zen 5, one thread, AVX-512): a loop of matmul_nodes on 64 x 16384 from the L2 54.5-55.1 ->
 * 60.6-61.3 GFLOP/s, Q6_K 39.0-39.9 -> 44.5-45.1; from DRAM (`bench_qmatmul rp avx512vnni Q4_K
 * 1536 8960 12`) 0.0389, 0.0390 -> 0.0345, 0.0348 ns a weight; AVX2 within the noise. Not for a
 * stretch. */
static inline void qm_rowpar_prefetch_span(const qm_rowpar_prefetch *p, size_t off, size_t n) {
    for (int r = 0; r < p->R; r++) {
        const char *b = p->w0 + (size_t)(p->R + r) * p->wstride + off;
        const uintptr_t last = (uintptr_t)(b + n - 1);
        for (uintptr_t l = (uintptr_t)b & ~(uintptr_t)63; l <= last; l += 64) {
            if (p->l2) _mm_prefetch((const char *)l, _MM_HINT_T1);
            else _mm_prefetch((const char *)l, _MM_HINT_T0);
        }
    }
}

/* Before a K-quant superblock's K blocks from k0, bytes [off, off + n) of each row: a stretch
 * block by block, long rows by qm_rowpar_prefetch_span. */
static inline void qm_rowpar_prefetch_superblock(qm_rowpar_prefetch *p, int k0, int K, size_t off, size_t n) {
    if (p->stretch)
        for (int k = 0; k < K; k++) qm_rowpar_prefetch_block(p, k0 + k);
    else qm_rowpar_prefetch_span(p, off, n);
}

/* Bytes of a view's row spent on 32-blocks [0, nb) from sub-block off of a superblock (K-quants;
 * off 0 otherwise). */
static inline size_t qm_rowpar_group_bytes(qm_dtype dt, int off, int nb) {
    const size_t qk = (size_t)qm_dtype_block(dt), bb = qm_dtype_block_bytes(dt);
    return qk == 32 ? (size_t)nb * bb : ((size_t)(off + nb) * 32 + qk - 1) / qk * bb;
}

/* Whether the next pass of `rows` rows (a tile's DR) of nblk 32-blocks from sub-block off goes to
 * the L2 a group at a time (above). */
static inline int qm_rowpar_prefetch_long(qm_dtype dt, int off, int nblk, int rows) {
    return (size_t)rows * qm_rowpar_group_bytes(dt, off, nblk) > QM_ROWPAR_LONG_PASS;
}

/* Block m's dot of row j from a group's narrow items a (item order: 32-block b of row j at
 * b R + j, each +0 + c_b), in the order of a block's own view: a_2m + a_2m+1 (bpb = 2, 64
 * columns) or (a_4m + a_4m+2) + (a_4m+1 + a_4m+3) (bpb = 4, 128 columns). */
static inline float qm_narrow_block_dot(const float *a, int R, int bpb, int m, int j) {
    const float *am = a + (size_t)(m * bpb * R + j);
    return bpb == 2 ? am[0] + am[R] : (am[0] + am[2 * R]) + (am[R] + am[3 * R]);
}

/* Every block dot of a narrow group's rows j < nr (items a, R rows a vector, nbk blocks of bpb
 * 32-blocks): block m of row j to part[m * pstride + j]. */
static inline void qm_narrow_block_dots(const float *a, int R, int bpb, int nbk, int nr, float *part, size_t pstride) {
    for (int m = 0; m < nbk; m++)
        for (int j = 0; j < nr; j++) part[(size_t)m * pstride + (size_t)j] = qm_narrow_block_dot(a, R, bpb, m, j);
}

/* The fast mode's row-parallel view takes the narrow items (several rows per vector) when it is
 * whole blocks of bc columns and at most 8 32-blocks of a 32-element type (a device's one or two
 * heads of o_proj). K-quants keep a row per group: their narrow items gather the scales, which
 * measured slower (Q4_K, 192 of 512 columns from DRAM: 0.42 against 0.13 ns a weight). */
static inline int qm_rowpar_narrow(qm_dtype dt, const qm_wview *w, int bc, int nbk) {
    return qm_dtype_block(dt) == 32 && w->cols / 32 <= 8 && w->cols == nbk * bc;
}

/* Whether a row-parallel view's rows follow one another in memory as whole rows: a device's
 * slice is its rows whole but for the parts of the K-quant superblocks (256 columns) at its edges
 * that belong to its neighbours, and is prefetched as whole rows. */
static inline int qm_rowpar_whole_rows(const qm_wview *w) { return w->ld - (size_t)w->cols < 2 * 256; }

/* matmul_q8_nodes' shapes (kernels.h): whole 32-blocks, blocks of 64 or 128 columns that cover
 * the view (the last may be shorter). */
static inline int qm_rowpar_nodes_shape(const qm_wview *w, int n_tok, int bc, int nb) {
    return n_tok >= 1 && (bc == 64 || bc == 128) && nb >= 1 && (nb - 1) * bc < w->cols && nb * bc >= w->cols &&
           w->col0 % 32 == 0 && w->cols % 32 == 0;
}

/* A row tile's nodes: its block dots lf (block k, token t, row r at lf[(k * nt + t) * R + r], rows
 * r < nr of R) added up along the halving tree for each node, node i's rows to out[i * ostride +
 * t * ldy + r] (out at the tile's first token and row). */
static inline void qm_rowpar_store_nodes(float *lf, int R, int nt, int nr, const qm_leaf_node *nodes, int n_nodes,
                                         float *out, size_t ostride, size_t ldy) {
    for (int i = 0; i < n_nodes; i++) {
        const float *v = qm_tree_halving_sum(lf, (size_t)nt * (size_t)R, nodes[i].first, nodes[i].count);
        float *oi = out + (size_t)i * ostride;
        for (int t = 0; t < nt; t++)
            for (int r = 0; r < nr; r++) oi[(size_t)t * ldy + (size_t)r] = v[t * R + r];
    }
}

/* One token's block dots of rows [o_begin, o_end) of w, block k of row o to part[k * pstride + o]:
 * an ISA's matmul_q8_blocks (x a qm_q8act) or its exact mode's (x f32, the view's column 0). */
typedef void (*qm_rowpar_decode_fn)(const qm_wview *w, const void *x, int bc, int nb, float *part, size_t pstride,
                                    int o_begin, int o_end);

#define QM_ROWPAR_DECODE_ROWS 32 /* one token: rows a tile, their block dots in the L1 (32 x 140 floats) */

/* matmul_q8_nodes / matmul_nodes of one token (a decode step): the ISA's block dots (each row read
 * once, whole, its block dots as the blocks path forms them) on QM_ROWPAR_DECODE_ROWS rows at a
 * time into a buffer of the tile's blocks, lf[block][row], then the tile's nodes added up there.
 * Before it, a decode step wrote every block dot of the device's rows to dev->partial (the 1.5B's
 * down_proj: 140 x 1536 floats, most of the L2) for the tree walk to read back. 0 where lf is not
 * had. */
static inline int qm_rowpar_nodes_decode(qm_rowpar_decode_fn blocks, const qm_wview *w, const void *x, int bc, int nb,
                                         const qm_leaf_node *nodes, int n_nodes, float *out, size_t ostride,
                                         size_t ldy, int o_begin, int o_end) {
    const int R = QM_ROWPAR_DECODE_ROWS;
    float *lf = malloc((size_t)nb * (size_t)R * sizeof(float)); /* [nb][R] */
    if (!lf) return 0;
    const size_t stride = qm_wview_stride(w);
    for (int o = o_begin; o < o_end; o += R) {
        const int nr = o_end - o < R ? o_end - o : R;
        qm_wview tile = *w; /* rows [o, o + nr) */
        tile.data = (const char *)w->data + (size_t)o * stride;
        tile.rows = nr;
        blocks(&tile, x, bc, nb, lf, (size_t)R, 0, nr);
        qm_rowpar_store_nodes(lf, R, 1, nr, nodes, n_nodes, out + o, ostride, ldy);
    }
    free(lf);
    return 1;
}

/* An ISA file's matmul_q8_nodes from its nodes_dt (defined before this is expanded) and its
 * matmul_q8_blocks (blocks_, one token): the shape check, then the weight type's switch; 0 where
 * the shape or a buffer is not had. */
#define QM_ROWPAR_NODES_ENTRY(name_, blocks_)                                                      \
    static void q8_blocks_decode(const qm_wview *w, const void *x, int bc, int nb, float *part, size_t pstride, \
                                 int o_begin, int o_end) {                                         \
        blocks_(w, (const qm_q8act *)x, 1, bc, nb, part, pstride, pstride, o_begin, o_end);      \
    }                                                                                              \
    static int q8_nodes_decode(const qm_wview *w, const qm_q8act *x, int bc, int nb, const qm_leaf_node *nodes, \
                               int n_nodes, float *out, size_t ostride, size_t ldy, int o_begin, int o_end) { \
        return qm_rowpar_nodes_decode(q8_blocks_decode, w, x, bc, nb, nodes, n_nodes, out, ostride, ldy, o_begin, \
                                      o_end);                                                      \
    }                                                                                              \
    QM_ROWPAR_NODES_ENTRY_DECODE(name_, q8_nodes_decode)

/* The same with the ISA's own one-token path, decode_(w, x, bc, nb, nodes, n_nodes, out, ostride,
 * ldy, o_begin, o_end). */
#define QM_ROWPAR_NODES_ENTRY_DECODE(name_, decode_)                                               \
    int name_(const qm_wview *w, const qm_q8act *x, int n_tok, int bc, int nb, const qm_leaf_node *nodes, \
              int n_nodes, float *out, size_t ostride, size_t ldy, int o_begin, int o_end) {      \
        if (!qm_rowpar_nodes_shape(w, n_tok, bc, nb)) return 0;                                   \
        if (o_begin >= o_end) return 1;                                                            \
        if (n_tok == 1) return decode_(w, x, bc, nb, nodes, n_nodes, out, ostride, ldy, o_begin, o_end); \
        int done = 0;                                                                              \
        QM_SWITCH_QUANT_DTYPE(w->dtype, QM_ROWPAR_NODES_DT);                                        \
        return done;                                                                               \
    }
#define QM_ROWPAR_NODES_DT(dt_) done = nodes_dt(dt_, w, x, n_tok, bc / 32, nb, nodes, n_nodes, out, ostride, ldy, \
                                                o_begin, o_end)

/* An ISA file's exact-mode matmul_nodes (kernels.h) from its one-token block path (blocks_(w, x,
 * bc, nb, part, pstride, o_begin, o_end), x f32) and that path's shape test (shape_(w, n_tok, bc,
 * nb)): one token only. */
#define QM_ROWPAR_EXACT_NODES_ENTRY(name_, blocks_, shape_)                                        \
    static void f32_blocks_decode(const qm_wview *w, const void *x, int bc, int nb, float *part, size_t pstride, \
                                  int o_begin, int o_end) {                                        \
        blocks_(w, (const float *)x, bc, nb, part, pstride, o_begin, o_end);                      \
    }                                                                                              \
    static int name_(const qm_wview *w, const float *x, size_t ldx, int n_tok, int bc, int nb,  \
                     const qm_leaf_node *nodes, int n_nodes, float *out, size_t ostride, size_t ldy, int o_begin, \
                     int o_end) {                                                                  \
        (void)ldx;                                                                                 \
        if (n_tok != 1 || !shape_(w, n_tok, bc, nb)) return 0;                                    \
        if (o_begin >= o_end) return 1;                                                            \
        return qm_rowpar_nodes_decode(f32_blocks_decode, w, x, bc, nb, nodes, n_nodes, out, ostride, ldy, o_begin, \
                                      o_end);                                                      \
    }

/* A row-parallel layer's block dots over several tokens, as matmul_blocks takes them (an ISA's
 * blocks_tokens, below). */
typedef void (*qm_rowpar_tokens_fn)(const qm_wview *w, const float *x, size_t ldx, int n_tok, int bc, int nb,
                                    float *part, size_t pstride, size_t ldy, int o_begin, int o_end);

#define QM_ROWPAR_TOKEN_CHUNK 16 /* tokens: a chunk's activations stay in the L2 while the rows go by */
#define QM_ROWPAR_FEW_ROWS 16    /* rows a tile of qm_rowpar_nodes_few */

/* The views an ISA's blocks_tokens takes: a plain type, whole 16-column lanes, nb blocks of bc
 * <= 256 columns (the AVX2 file's transposed block) that cover the view. */
static inline int qm_rowpar_tokens_shape(const qm_wview *w, int bc, int nb) {
    return !qm_dtype_is_quant(w->dtype) && bc % 16 == 0 && bc <= 256 && w->cols % 16 == 0 &&
           nb == (w->cols + bc - 1) / bc;
}

/* qm_rowpar_tokens_shape as a shape of n_tok tokens (the shape_ of qm_rowpar_nodes_few). */
static inline int qm_rowpar_tokens_shape_n(const qm_wview *w, int n_tok, int bc, int nb) {
    (void)n_tok;
    return qm_rowpar_tokens_shape(w, bc, nb);
}

typedef int (*qm_rowpar_shape_fn)(const qm_wview *w, int n_tok, int bc, int nb);

/* matmul_nodes over a few tokens (batched decode, below an ISA's nodes_tokens):
 * the ISA's block dots (blocks_tokens) of QM_ROWPAR_FEW_ROWS rows x QM_ROWPAR_TOKEN_CHUNK tokens
 * at a time into a buffer of the tile's blocks, lf[block][token][row] (the 1.5B's down_proj: 140
 * x 16 x 16 floats, in the L2), then the tile's nodes added up there. Before it, matmul_blocks
 * wrote every block dot of every token (the 0.5B's down_proj at batch 16: 76 x 16 x 896 floats,
 * 4.4 MB) for the tree walk to read back. Same dots, same tree. 0 where the shape is not
 * blocks_tokens' (shape: the views it takes) or lf is not had. */
static inline int qm_rowpar_nodes_few(qm_rowpar_shape_fn shape, qm_rowpar_tokens_fn blocks, const qm_wview *w,
                                      const float *x, size_t ldx, int n_tok, int bc, int nb,
                                      const qm_leaf_node *nodes, int n_nodes, float *out, size_t ostride, size_t ldy,
                                      int o_begin, int o_end) {
    if (!shape(w, n_tok, bc, nb)) return 0;
    const int R = QM_ROWPAR_FEW_ROWS, T = QM_ROWPAR_TOKEN_CHUNK;
    float *lf = malloc((size_t)nb * T * R * sizeof(float));
    if (!lf) return 0;
    const size_t stride = qm_wview_stride(w);
    for (int t0 = 0; t0 < n_tok; t0 += T) {
        const int nt = n_tok - t0 < T ? n_tok - t0 : T;
        for (int o = o_begin; o < o_end; o += R) {
            const int nr = o_end - o < R ? o_end - o : R;
            qm_wview tile = *w; /* rows [o, o + nr) */
            tile.data = (const char *)w->data + (size_t)o * stride;
            tile.rows = nr;
            blocks(&tile, x + (size_t)t0 * ldx, ldx, nt, bc, nb, lf, (size_t)nt * R, (size_t)R, 0, nr);
            qm_rowpar_store_nodes(lf, R, nt, nr, nodes, n_nodes, out + (size_t)t0 * ldy + (size_t)o, ostride, ldy);
        }
    }
    free(lf);
    return 1;
}

/* An exact matmul_nodes of one token at a time (decode_, the ISA's one-token entry), for 2 or 3
 * tokens of a block-quantized view: the few-token path does not take those (0: the forward's
 * block dots and walk, 1.3-1.6x slower a token: `bench_qmatmul pre avx2 Q4_K 1536 8960 N`, one
 * thread, 2026-12-06: 22.2 GFLOP/s a token alone, 13.7 and 17.6 for 2 and 3). 0 where decode_ is. */
typedef int (*qm_rowpar_exact_nodes_fn)(const qm_wview *w, const float *x, size_t ldx, int n_tok, int bc, int nb,
                                        const qm_leaf_node *nodes, int n_nodes, float *out, size_t ostride,
                                        size_t ldy, int o_begin, int o_end);
static inline int qm_rowpar_nodes_each_token(qm_rowpar_exact_nodes_fn decode, const qm_wview *w, const float *x,
                                             size_t ldx, int n_tok, int bc, int nb, const qm_leaf_node *nodes,
                                             int n_nodes, float *out, size_t ostride, size_t ldy, int o_begin,
                                             int o_end) {
    for (int t = 0; t < n_tok; t++)
        if (!decode(w, x + (size_t)t * ldx, ldx, 1, bc, nb, nodes, n_nodes, out + (size_t)t * ldy, ostride, ldy,
                    o_begin, o_end))
            return 0;
    return 1;
}

/* An ISA file's exact-mode matmul_nodes from its one-token entry (decode_, made by
 * QM_ROWPAR_EXACT_NODES_ENTRY), its many-token kernel (tokens_, nodes_tokens: the same arguments
 * less nb) and its blocks_tokens (few_, for the views few_shape_ accepts): one token by decode_;
 * from nmin_ tokens tokens_, where the blocks cover the view in whole 16-column lanes, a tree of
 * at most 2^(levels_ - 1) blocks; between, qm_rowpar_nodes_few where few_shape_ holds, else 0
 * (matmul_blocks). */
#define QM_ROWPAR_TOKENS_NODES_ENTRY(name_, decode_, tokens_, few_, few_shape_, nmin_, levels_)    \
    static int name_(const qm_wview *w, const float *x, size_t ldx, int n_tok, int bc, int nb,  \
                     const qm_leaf_node *nodes, int n_nodes, float *out, size_t ostride, size_t ldy, int o_begin, \
                     int o_end) {                                                                  \
        if (n_tok == 1) return decode_(w, x, ldx, n_tok, bc, nb, nodes, n_nodes, out, ostride, ldy, o_begin, o_end); \
        if (n_tok <= 3 && qm_dtype_is_quant(w->dtype))                                             \
            return qm_rowpar_nodes_each_token(decode_, w, x, ldx, n_tok, bc, nb, nodes, n_nodes, out, ostride, ldy, \
                                              o_begin, o_end);                                     \
        if (n_tok < (nmin_))                                                                       \
            return qm_rowpar_nodes_few(few_shape_, few_, w, x, ldx, n_tok, bc, nb, nodes, n_nodes, out, ostride, \
                                       ldy, o_begin, o_end);                                       \
        if (bc % 16 || bc > 256 || w->col0 % 16 || nb < 1 || nb != (w->cols + bc - 1) / bc ||    \
            nb > 1 << ((levels_) - 1))                                                             \
            return 0;                                                                              \
        if (o_begin >= o_end) return 1;                                                            \
        return tokens_(w, x, ldx, n_tok, bc, nodes, n_nodes, out, ostride, ldy, o_begin, o_end);   \
    }

/* A row-parallel layer of a plain type over several tokens (blocks_tokens of the AVX2 and AVX-512
 * files): the ISA's register tile, block [e0, e1) of rows w0 (nr <= the tile's rows, stride ws) x
 * tokens xt (nt <= 4, stride ldx), its block dots into pt[t * ldy + r]. */
typedef void (*qm_rowpar_tile_fn)(const char *w0, size_t ws, int nr, int nt, int e0, int e1, const float *xt,
                                  size_t ldx, float *pt, size_t ldy);

/* Its loops: tokens in chunks, row groups of R, each of the view's nb blocks of bc columns, tiles of 4
 * tokens. The tile is a constant at each call, so the compiler calls (or inlines) it directly. */
static inline __attribute__((always_inline)) void qm_rowpar_token_tiles(const qm_wview *w, int R, qm_rowpar_tile_fn tile,
                                                                         const float *x, size_t ldx, int n_tok, int bc,
                                                                         int nb, float *part, size_t pstride,
                                                                         size_t ldy, int o_begin, int o_end) {
    const size_t ws = qm_wview_stride(w);
    for (int t0 = 0; t0 < n_tok; t0 += QM_ROWPAR_TOKEN_CHUNK) {
        const int t1 = n_tok - t0 < QM_ROWPAR_TOKEN_CHUNK ? n_tok : t0 + QM_ROWPAR_TOKEN_CHUNK;
        for (int o = o_begin; o < o_end; o += R) {
            const int nr = o_end - o < R ? o_end - o : R;
            const char *w0 = (const char *)w->data + (size_t)o * ws;
            for (int k = 0; k < nb; k++) {
                const int e0 = k * bc, e1 = e0 + bc < w->cols ? e0 + bc : w->cols;
                float *pk = part + (size_t)k * pstride + (size_t)o;
                for (int t = t0; t < t1; t += 4)
                    tile(w0, ws, nr, t1 - t < 4 ? t1 - t : 4, e0, e1, x + (size_t)t * ldx, ldx, pk + (size_t)t * ldy, ldy);
            }
        }
    }
}

/* An ISA file's blocks_tokens from its dblock_tile (defined before this is expanded; tiles of R_
 * rows x 4 tokens): one tile function per plain type, with literal sizes for a whole tile so that
 * its loops unroll, and the type's switch. */
#define QM_ROWPAR_TOKEN_KERNELS(R_)                                                                \
    QM_ROWPAR_TOKEN_TILE(R_, token_tile_f32, QM_DT_F32)                                            \
    QM_ROWPAR_TOKEN_TILE(R_, token_tile_f16, QM_DT_F16)                                            \
    QM_ROWPAR_TOKEN_TILE(R_, token_tile_bf16, QM_DT_BF16)                                          \
    static __attribute__((noinline)) void blocks_tokens(const qm_wview *w, const float *x, size_t ldx, int n_tok, \
                                                        int bc, int nb, float *part, size_t pstride, size_t ldy, \
                                                        int o_begin, int o_end) {                  \
        const qm_rowpar_tile_fn fn = w->dtype == QM_DT_F32 ? token_tile_f32                       \
                                     : w->dtype == QM_DT_F16 ? token_tile_f16                     \
                                                             : token_tile_bf16;                   \
        qm_rowpar_token_tiles(w, R_, fn, x, ldx, n_tok, bc, nb, part, pstride, ldy, o_begin, o_end); \
    }
#define QM_ROWPAR_TOKEN_TILE(R_, name_, dt_)                                                       \
    static void name_(const char *w0, size_t ws, int nr, int nt, int e0, int e1, const float *xt, size_t ldx, \
                      float *pt, size_t ldy) {                                                     \
        if (nr == (R_) && nt == 4) dblock_tile(w0, ws, dt_, R_, 4, e0, e1, xt, ldx, pt, ldy);      \
        else dblock_tile(w0, ws, dt_, nr, nt, e0, e1, xt, ldx, pt, ldy);                            \
    }

#endif
