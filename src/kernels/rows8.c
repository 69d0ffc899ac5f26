/* Q4_0 / Q5_0 / Q4_K rows interleaved by 8 (rows8.h): the layout's packing and unpacking, and matmul_q8
 * on such a view. */
#include "kernels/rows8.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/quant.h"
#include "kernels/rowpar.h"

/* Offsets inside a group block: d, hb (Q5_0), t. */
static size_t t_offset(int has_h) { return has_h ? 48 : 16; }

/* A Q4_K superblock's pieces for lane r (rows8.h): piece i is len[i] bytes at fo[i] of the row's
 * block (the file) and at go[i] of the group block. Returns how many. */
#define Q4K_PIECES (2 + 3 + 32)
static int q4k_pieces(int r, size_t go[Q4K_PIECES], size_t fo[Q4K_PIECES], size_t len[Q4K_PIECES]) {
    int n = 0;
    for (int f = 0; f < 2; f++, n++) go[n] = 16 * (size_t)f + 2 * (size_t)r, fo[n] = 2 * (size_t)f, len[n] = 2;
    for (int k = 0; k < 3; k++, n++) go[n] = 32 + 32 * (size_t)k + 4 * (size_t)r, fo[n] = 4 + 4 * (size_t)k, len[n] = 4;
    for (int j = 0; j < 4; j++)
        for (int k = 0; k < 8; k++, n++)
            go[n] = 128 + 256 * (size_t)j + 32 * (size_t)k + 4 * (size_t)r, fo[n] = 16 + 32 * (size_t)j + 4 * (size_t)k,
            len[n] = 4;
    return n;
}

void qm_rows8_pack(qm_dtype base, const uint8_t *src, size_t src_stride, int nblk, uint8_t *dst) {
    const int has_h = base == QM_DT_Q5_0, k4 = base == QM_DT_Q4_K;
    const size_t bb = qm_dtype_block_bytes(base), gb = QM_ROWS8 * bb;
    for (int b = 0; b < (k4 ? nblk / 8 : nblk); b++) {
        uint8_t *g = dst + (size_t)b * gb;
        for (int r = 0; r < QM_ROWS8; r++) {
            const uint8_t *blk = src + (size_t)r * src_stride + (size_t)b * bb;
            if (k4) {
                size_t go[Q4K_PIECES], fo[Q4K_PIECES], len[Q4K_PIECES];
                for (int p = 0, np = q4k_pieces(r, go, fo, len); p < np; p++) memcpy(g + go[p], blk + fo[p], len[p]);
                continue;
            }
            memcpy(g + 2 * r, blk, 2);
            if (has_h) {
                const uint32_t hb = qm_rows8_hb_of_qh(qm_quant_rd32(blk + 2));
                memcpy(g + 16 + 4 * r, &hb, 4);
            }
            for (int k = 0; k < 4; k++) memcpy(g + t_offset(has_h) + 32 * k + 4 * r, blk + bb - 16 + 4 * k, 4);
        }
    }
}

void qm_rows8_unpack(qm_dtype t, const uint8_t *group, int nblk, int lane0, int n, uint8_t *dst, size_t dst_stride) {
    const int has_h = t == QM_DT_Q5_0_R8, k4 = t == QM_DT_Q4_K_R8;
    const size_t bb = qm_dtype_block_bytes(t), gb = QM_ROWS8 * bb;
    for (int b = 0; b < (k4 ? nblk / 8 : nblk); b++) {
        const uint8_t *g = group + (size_t)b * gb;
        for (int i = 0; i < n; i++) {
            const int r = lane0 + i;
            uint8_t *blk = dst + (size_t)i * dst_stride + (size_t)b * bb;
            if (k4) {
                size_t go[Q4K_PIECES], fo[Q4K_PIECES], len[Q4K_PIECES];
                for (int p = 0, np = q4k_pieces(r, go, fo, len); p < np; p++) memcpy(blk + fo[p], g + go[p], len[p]);
                continue;
            }
            memcpy(blk, g + 2 * r, 2);
            if (has_h) {
                const uint32_t qh = qm_rows8_qh_of_hb(qm_quant_rd32(g + 16 + 4 * r));
                memcpy(blk + 2, &qh, 4);
            }
            for (int k = 0; k < 4; k++) memcpy(blk + bb - 16 + 4 * k, g + t_offset(has_h) + 32 * k + 4 * r, 4);
        }
    }
}

#define CHUNK_BYTES ((size_t)256 << 10) /* rows unpacked for one call of plain, at most about */

/* Rows [o, e) of w unpacked into buf (row o at buf), as a view of the file's layout: the same
 * columns (all the held blocks, w->ld, unpacked). */
static qm_wview unpack_rows(const qm_wview *w, int o, int e, qm_rows8_unpack8_fn unpack8, uint8_t *buf) {
    const size_t stride = qm_wview_stride(w);
    const int nblk = (int)(w->ld / 32);
    for (int r = o; r < e;) {
        const int g = r / QM_ROWS8, lane = r % QM_ROWS8, n = e - r < QM_ROWS8 - lane ? e - r : QM_ROWS8 - lane;
        const uint8_t *group = (const uint8_t *)w->data + (size_t)g * QM_ROWS8 * stride;
        if (n == QM_ROWS8) unpack8(w->dtype, group, nblk, buf + (size_t)(r - o) * stride, stride);
        else qm_rows8_unpack(w->dtype, group, nblk, lane, n, buf + (size_t)(r - o) * stride, stride);
        r += n;
    }
    return (qm_wview){buf, qm_dtype_rows8_base(w->dtype), w->ld, e - o, w->cols, w->col0};
}

/* Rows [o, e) of w unpacked into buf and handed to plain. */
static void plain_rows(const qm_wview *w, const float *bias, const qm_q8act *x, int n_tok, float *y, size_t ldy, int o,
                       int e, const qm_rows8_kernels *k, uint8_t *buf) {
    const qm_wview v = unpack_rows(w, o, e, k->unpack8, buf);
    k->plain(&v, bias ? bias + o : NULL, x, n_tok, y + o, ldy, 0, e - o);
}

/* Rows [o_begin, o_end) through plain, a chunk of whole groups at a time (the first and last
 * maybe cut), in a buffer on the heap, or one group at a time on the stack without one. */
static void plain_range(const qm_wview *w, const float *bias, const qm_q8act *x, int n_tok, float *y, size_t ldy,
                        int o_begin, int o_end, const qm_rows8_kernels *k) {
    const size_t stride = qm_wview_stride(w);
    int rows = (int)(CHUNK_BYTES / stride) / QM_ROWS8 * QM_ROWS8;
    if (rows < QM_ROWS8) rows = QM_ROWS8;
    if (rows > o_end - o_begin + 2 * QM_ROWS8) rows = (o_end - o_begin) / QM_ROWS8 * QM_ROWS8 + 2 * QM_ROWS8;
    uint8_t stack[QM_ROWS8 * QM_ROWS8_MAX_BLOCKS * 22]; /* the loader makes no view of more blocks */
    uint8_t *heap = rows > QM_ROWS8 ? malloc((size_t)rows * stride) : NULL;
    if (!heap) rows = QM_ROWS8;
    for (int o = o_begin; o < o_end;) {
        const int end = o / QM_ROWS8 * QM_ROWS8 + rows, e = end < o_end ? end : o_end;
        plain_rows(w, bias, x, n_tok, y, ldy, o, e, k, heap ? heap : stack);
        o = e;
    }
    free(heap);
}

void qm_matmul_q8_rows8(const qm_wview *w, const float *bias, const qm_q8act *x, int n_tok, float *y, size_t ldy,
                        int o_begin, int o_end, const qm_rows8_kernels *k) {
    if (n_tok <= 0 || o_begin >= o_end) return;
    const int a = (o_begin + QM_ROWS8 - 1) / QM_ROWS8 * QM_ROWS8, z = o_end / QM_ROWS8 * QM_ROWS8;
    if (a > z || n_tok > k->tokens_max) { /* inside one group; or tokens for plain */
        plain_range(w, bias, x, n_tok, y, ldy, o_begin, o_end, k);
        return;
    }
    const size_t stride = qm_wview_stride(w);
    if (o_begin < a) plain_range(w, bias, x, n_tok, y, ldy, o_begin, a, k);
    for (int o = a; o < z; o += QM_ROWS8) {
        const uint8_t *group = (const uint8_t *)w->data + (size_t)o * stride;
        if (n_tok == 1) k->decode(w->dtype, group, w->cols / 32, x, bias ? bias + o : NULL, y + o);
        else k->tokens(w->dtype, group, w->cols / 32, x, n_tok, bias ? bias + o : NULL, y + o, ldy);
    }
    if (z < o_end) plain_range(w, bias, x, n_tok, y, ldy, z, o_end, k);
}

/* ---- row-parallel views (kernels.h q8_rows8_rowpar_types) ---- */

/* Whether w's blocks go through k->blocks: up to tokens_max tokens, blocks of 64 or 128 columns
 * from an even sub-block, that cover the view. */
static int rowpar_blocks_shape(const qm_wview *w, int n_tok, int bc, int nb, const qm_rows8_rowpar_kernels *k) {
    return n_tok >= 1 && n_tok <= k->tokens_max && (bc == 64 || bc == 128) && w->col0 % 64 == 0 && w->cols % 32 == 0 &&
           nb >= 1 && (nb - 1) * bc < w->cols && nb * bc >= w->cols;
}

/* The block dots of the whole groups [a, z): block k of token t, row o at part[k pstride + t ldt + o
 * - row0]. */
static void rowpar_groups(const qm_wview *w, const qm_q8act *x, int n_tok, int bc, float *part, size_t pstride,
                          size_t ldt, int a, int z, int row0, const qm_rows8_rowpar_kernels *k) {
    assert(w->dtype == QM_DT_Q4_K_R8); /* the loader interleaves no other row-parallel type (k->blocks: Q4_K's) */
    const size_t stride = qm_wview_stride(w);
    for (int o = a; o < z; o += QM_ROWS8)
        k->blocks((const uint8_t *)w->data + (size_t)o * stride, (int)(w->ld / 256), w->col0 / 32, w->cols / 32,
                  bc / 32, x, n_tok, part + (o - row0), pstride, ldt);
}

/* What a call asks: matmul_q8_blocks (nodes NULL: part, pstride, ldy) or matmul_q8_nodes (out,
 * ostride, ldy). */
typedef struct {
    const qm_q8act *x;
    int n_tok, bc, nb;
    float *part;
    size_t pstride, ldy;
    const qm_leaf_node *nodes;
    int n_nodes;
} rowpar_call;

/* Rows [o, e) unpacked into buf and handed to plain_blocks or plain_nodes (whose result this
 * returns; 1 for blocks). */
static int rowpar_plain_rows(const qm_wview *w, const rowpar_call *c, int o, int e, const qm_rows8_rowpar_kernels *k,
                             uint8_t *buf) {
    const qm_wview v = unpack_rows(w, o, e, k->unpack8, buf);
    if (!c->nodes) {
        k->plain_blocks(&v, c->x, c->n_tok, c->bc, c->nb, c->part + o, c->pstride, c->ldy, 0, e - o);
        return 1;
    }
    return k->plain_nodes(&v, c->x, c->n_tok, c->bc, c->nb, c->nodes, c->n_nodes, c->part + o, c->pstride, c->ldy, 0,
                          e - o);
}

/* Rows [o_begin, o_end) through the file layout's kernels: unpacked all at once into a buffer on
 * the heap, or a group at a time on the stack without one (the loader's rows are at most
 * QM_ROWS8_ROWPAR_ROW_MAX bytes). */
static int rowpar_plain(const qm_wview *w, const rowpar_call *c, int o_begin, int o_end,
                        const qm_rows8_rowpar_kernels *k) {
    if (o_begin >= o_end) return 1;
    uint8_t *heap = malloc((size_t)(o_end - o_begin) * qm_wview_stride(w));
    if (heap) {
        const int done = rowpar_plain_rows(w, c, o_begin, o_end, k, heap);
        free(heap);
        return done;
    }
    uint8_t stack[QM_ROWS8 * QM_ROWS8_ROWPAR_ROW_MAX];
    for (int o = o_begin; o < o_end;) {
        const int next = (o / QM_ROWS8 + 1) * QM_ROWS8, e = next < o_end ? next : o_end;
        if (!rowpar_plain_rows(w, c, o, e, k, stack)) return 0;
        o = e;
    }
    return 1;
}

void qm_matmul_q8_blocks_rows8(const qm_wview *w, const qm_q8act *x, int n_tok, int bc, int nb, float *part,
                               size_t pstride, size_t ldy, int o_begin, int o_end, const qm_rows8_rowpar_kernels *k) {
    const rowpar_call c = {x, n_tok, bc, nb, part, pstride, ldy, NULL, 0};
    const int a = (o_begin + QM_ROWS8 - 1) / QM_ROWS8 * QM_ROWS8, z = o_end / QM_ROWS8 * QM_ROWS8;
    if (o_begin >= o_end) return;
    if (!rowpar_blocks_shape(w, n_tok, bc, nb, k) || a > z) {
        rowpar_plain(w, &c, o_begin, o_end, k);
        return;
    }
    rowpar_plain(w, &c, o_begin, a, k);
    rowpar_groups(w, x, n_tok, bc, part, pstride, ldy, a, z, 0, k);
    rowpar_plain(w, &c, z, o_end, k);
}

/* The whole groups [a, z) a tile of R rows at a time: the tile's block dots into lf (block k, token
 * t, row r at lf[(k n_tok + t) R + r]), then its nodes added up there (rowpar.h). 0 without lf. */
static int rowpar_nodes_tiles(const qm_wview *w, const rowpar_call *c, int a, int z, const qm_rows8_rowpar_kernels *k) {
    const int R = c->n_tok == 1 ? QM_ROWPAR_DECODE_ROWS : QM_ROWS8;
    float *lf = malloc((size_t)c->nb * (size_t)c->n_tok * (size_t)R * sizeof(float));
    if (!lf) return 0;
    for (int o = a; o < z; o += R) {
        const int nr = z - o < R ? z - o : R;
        rowpar_groups(w, c->x, c->n_tok, c->bc, lf, (size_t)c->n_tok * (size_t)R, (size_t)R, o, o + nr, o, k);
        qm_rowpar_store_nodes(lf, R, c->n_tok, nr, c->nodes, c->n_nodes, c->part + o, c->pstride, c->ldy);
    }
    free(lf);
    return 1;
}

int qm_matmul_q8_nodes_rows8(const qm_wview *w, const qm_q8act *x, int n_tok, int bc, int nb,
                             const qm_leaf_node *nodes, int n_nodes, float *out, size_t ostride, size_t ldy,
                             int o_begin, int o_end, const qm_rows8_rowpar_kernels *k) {
    const rowpar_call c = {x, n_tok, bc, nb, out, ostride, ldy, nodes, n_nodes};
    const int a = (o_begin + QM_ROWS8 - 1) / QM_ROWS8 * QM_ROWS8, z = o_end / QM_ROWS8 * QM_ROWS8;
    if (o_begin >= o_end) return 1;
    if (!rowpar_blocks_shape(w, n_tok, bc, nb, k) || a > z) return rowpar_plain(w, &c, o_begin, o_end, k);
    return rowpar_plain(w, &c, o_begin, a, k) && rowpar_nodes_tiles(w, &c, a, z, k) && rowpar_plain(w, &c, z, o_end, k);
}
