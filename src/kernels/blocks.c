/* A row-parallel layer's blocks as one per-view call per block (kernels.h, matmul_blocks): the
 * definition of matmul_blocks / matmul_q8_blocks, the scalar twin's implementation, and every
 * ISA's fallback for the shapes its fast path does not take.
 *
 * Rows go in chunks of CHUNK_ROWS, each chunk through all blocks, so the weights are read row by
 * row. */
#include "kernels/kernels.h"
#include "kernels/qdot.h"

#define CHUNK_ROWS 32

/* Rows [o0, o1) of a view, as a view whose row 0 is o0. */
static qm_wview rows_from(const qm_wview *w, int o0, int o1) {
    qm_wview v = *w;
    v.data = (const char *)w->data + (size_t)o0 * qm_wview_stride(w);
    v.rows = o1 - o0;
    return v;
}

/* One block's dot for rows [0, nr) of v (already cut to the block's columns) and tokens
 * [t0, t0 + nt), into y[t * ldy + r] (t counted from t0). */
typedef struct {
    qm_matmul_fn mm;       /* f32 x ... */
    const float *x;        /* [n_tok][ldx] */
    size_t ldx;
    qm_matmul_q8_fn mm_q8; /* ... or quantized x */
    const qm_q8act *xq;
} block_dot;

static void run_block(const block_dot *bd, const qm_wview *v, int c0, int t0, int nt, float *y, size_t ldy) {
    if (bd->mm) {
        bd->mm(v, NULL, bd->x + (size_t)t0 * bd->ldx + (size_t)c0, bd->ldx, nt, y, ldy, 0, v->rows);
    } else {
        const qm_q8act *a = bd->xq;
        const size_t off = (size_t)t0 * a->ld_blocks + (size_t)c0 / QM_Q8_BLOCK;
        qm_q8act ab = {a->q + off * QM_Q8_BLOCK, a->d + off, a->s + off, a->ld_blocks};
        bd->mm_q8(v, NULL, &ab, nt, y, ldy, 0, v->rows);
    }
}

static void blocks_loop(const block_dot *bd, const qm_wview *w, int n_tok, int bc, int nb, float *part,
                        size_t pstride, size_t ldy, int o_begin, int o_end) {
    for (int o0 = o_begin; o0 < o_end; o0 += CHUNK_ROWS) {
        const int o1 = o_end - o0 < CHUNK_ROWS ? o_end : o0 + CHUNK_ROWS;
        const qm_wview rows = rows_from(w, o0, o1);
        for (int bi = 0; bi < nb; bi++) {
            const int c0 = bi * bc, c1 = c0 + bc < w->cols ? c0 + bc : w->cols;
            const qm_wview v = qm_wview_cols(&rows, c0, c1);
            run_block(bd, &v, c0, 0, n_tok, part + (size_t)bi * pstride + (size_t)o0, ldy);
        }
    }
}

void qm_blocks_by_views(qm_matmul_fn mm, const qm_wview *w, const float *x, size_t ldx, int n_tok, int bc, int nb,
                        float *part, size_t pstride, size_t ldy, int o_begin, int o_end) {
    const block_dot bd = {mm, x, ldx, NULL, NULL};
    blocks_loop(&bd, w, n_tok, bc, nb, part, pstride, ldy, o_begin, o_end);
}

void qm_q8_blocks_by_views(qm_matmul_q8_fn mm, const qm_wview *w, const qm_q8act *x, int n_tok, int bc, int nb,
                           float *part, size_t pstride, size_t ldy, int o_begin, int o_end) {
    const block_dot bd = {NULL, NULL, 0, mm, x};
    blocks_loop(&bd, w, n_tok, bc, nb, part, pstride, ldy, o_begin, o_end);
}
