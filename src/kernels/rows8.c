/* Q4_0 / Q5_0 rows interleaved by 8 (rows8.h): the layout's packing and unpacking, and matmul_q8
 * on such a view. */
#include "kernels/rows8.h"

#include <string.h>

#include "kernels/quant.h"

/* Offsets inside a group block: d, hb (Q5_0), t. */
static size_t t_offset(int has_h) { return has_h ? 48 : 16; }

void qm_rows8_pack(qm_dtype base, const uint8_t *src, size_t src_stride, int nblk, uint8_t *dst) {
    const int has_h = base == QM_DT_Q5_0;
    const size_t bb = qm_dtype_block_bytes(base), gb = QM_ROWS8 * bb;
    for (int b = 0; b < nblk; b++) {
        uint8_t *g = dst + (size_t)b * gb;
        for (int r = 0; r < QM_ROWS8; r++) {
            const uint8_t *blk = src + (size_t)r * src_stride + (size_t)b * bb;
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
    const int has_h = t == QM_DT_Q5_0_R8;
    const size_t bb = qm_dtype_block_bytes(t), gb = QM_ROWS8 * bb;
    for (int b = 0; b < nblk; b++) {
        const uint8_t *g = group + (size_t)b * gb;
        for (int i = 0; i < n; i++) {
            const int r = lane0 + i;
            uint8_t *blk = dst + (size_t)i * dst_stride + (size_t)b * bb;
            memcpy(blk, g + 2 * r, 2);
            if (has_h) {
                const uint32_t qh = qm_rows8_qh_of_hb(qm_quant_rd32(g + 16 + 4 * r));
                memcpy(blk + 2, &qh, 4);
            }
            for (int k = 0; k < 4; k++) memcpy(blk + bb - 16 + 4 * k, g + t_offset(has_h) + 32 * k + 4 * r, 4);
        }
    }
}

/* Rows [o, e) of one group unpacked into the file's layout on the stack and handed to plain. */
static void plain_rows(const qm_wview *w, const float *bias, const qm_q8act *x, int n_tok, float *y, size_t ldy, int o,
                       int e, const qm_rows8_kernels *k) {
    uint8_t buf[QM_ROWS8 * QM_ROWS8_MAX_BLOCKS * 22]; /* the loader makes no view of more blocks */
    const size_t stride = qm_wview_stride(w);
    const uint8_t *group = (const uint8_t *)w->data + (size_t)(o / QM_ROWS8) * QM_ROWS8 * stride;
    qm_rows8_unpack(w->dtype, group, w->cols / 32, o % QM_ROWS8, e - o, buf, stride);
    const qm_wview v = {buf, qm_dtype_rows8_base(w->dtype), w->ld, e - o, w->cols, 0};
    k->plain(&v, bias ? bias + o : NULL, x, n_tok, y + o, ldy, 0, e - o);
}

void qm_matmul_q8_rows8(const qm_wview *w, const float *bias, const qm_q8act *x, int n_tok, float *y, size_t ldy,
                        int o_begin, int o_end, const qm_rows8_kernels *k) {
    if (n_tok <= 0 || o_begin >= o_end) return;
    const int a = (o_begin + QM_ROWS8 - 1) / QM_ROWS8 * QM_ROWS8, z = o_end / QM_ROWS8 * QM_ROWS8;
    if (a > z) { /* inside one group */
        plain_rows(w, bias, x, n_tok, y, ldy, o_begin, o_end, k);
        return;
    }
    const size_t stride = qm_wview_stride(w);
    if (o_begin < a) plain_rows(w, bias, x, n_tok, y, ldy, o_begin, a, k);
    for (int o = a; o < z; o += QM_ROWS8) {
        const uint8_t *group = (const uint8_t *)w->data + (size_t)o * stride;
        if (n_tok == 1) k->decode(w->dtype, group, w->cols / 32, x, bias ? bias + o : NULL, y + o);
        else k->tokens(w->dtype, group, w->cols / 32, x, n_tok, bias ? bias + o : NULL, y + o, ldy);
    }
    if (z < o_end) plain_rows(w, bias, x, n_tok, y, ldy, z, o_end, k);
}
