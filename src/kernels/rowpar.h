/* Pieces the AVX2 and AVX-512 row-parallel kernels share (matmul_avx2.c / matmul_avx512.c
 * qblocks_rows, qdot_avx2.c / qdot_avx512.c blocks_narrow). Plain C and SSE prefetches only:
 * each kernel file compiles them for its own ISA. */
#ifndef QM_KERNELS_ROWPAR_H
#define QM_KERNELS_ROWPAR_H

#include <stddef.h>
#include <xmmintrin.h>

#include "kernels/kernels.h"

#define QM_ROWPAR_SHORT_GROUP 4096 /* bytes: a row group this short is prefetched as one stretch */

/* The next group's rows into the L1, spread over this group's blocks. Long rows: each row's bytes
 * of the block in hand (rows R + r at the block's offset). A short group (a device's narrow shard
 * of a row-parallel layer, a few hundred bytes a row) as one stretch from its first byte.
 * Measured from DRAM (bench_qmatmul rp, Q8_0, 448 rows): 640 columns 0.14 ns a weight per row,
 * 0.08 as a stretch; 4864 columns 0.10 per row, 0.14 as a stretch. Prefetches never fault. */
typedef struct {
    const char *w0, *next; /* the group's first row; the stretch's next line */
    size_t wstride, step, blk_bytes;
    int R, stretch;
} qm_rowpar_prefetch;

/* For a group of `rows` rows of stride wstride from w0, register tiles of R rows, nb blocks of
 * blk_bytes (about, for K-quants). */
static inline qm_rowpar_prefetch qm_rowpar_prefetch_start(const char *w0, size_t wstride, int rows, int R, int nb,
                                                          size_t blk_bytes) {
    const size_t group = (size_t)rows * wstride, per = (size_t)nb * 64;
    qm_rowpar_prefetch p = {w0, w0 + group, wstride, (group + per - 1) / per * 64, blk_bytes, R,
                            group <= QM_ROWPAR_SHORT_GROUP};
    return p;
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
        for (size_t off = 0; off < p->blk_bytes; off += 64) _mm_prefetch(b + off, _MM_HINT_T0);
    }
}

/* Block m's dot of row j from a group's narrow items a (item order: 32-block b of row j at
 * b R + j, each +0 + c_b), in the order of a block's own view: a_2m + a_2m+1 (bpb = 2, 64
 * columns) or (a_4m + a_4m+2) + (a_4m+1 + a_4m+3) (bpb = 4, 128 columns). */
static inline float qm_narrow_block_dot(const float *a, int R, int bpb, int m, int j) {
    const float *am = a + (size_t)(m * bpb * R + j);
    return bpb == 2 ? am[0] + am[R] : (am[0] + am[2 * R]) + (am[R] + am[3 * R]);
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

#endif
