/* The head filter's first pass over several outputs: the definition (kernels.h, head_pass), one
 * row and one output at a time, for Q8_0 and Q6_K views. The ISA kernels (head_pass_avx512vnni.c,
 * head_pass_avx2.c) compute the same f32 operations in the same order; test_head_filter compares
 * them bit for bit. */
#include <math.h>

#include "kernels/kernels.h"
#include "kernels/qdot.h"
#include "kernels/quant.h"

/* Block b's exact integer sum against q (32 activations): Q8_0 Σ w q; Q6_K (sub-block b % 8 of
 * superblock b / 8) sc_2j Σ (c - 32) q over its first 16 + sc_2j+1 Σ over its last 16, at most
 * 2 x 128 x 16 x 32 x 127 < 2^24 in magnitude, so exact as a float too. And the block's scale. */
static int32_t pass_block_sum(qm_dtype dt, const uint8_t *row, int b, const int8_t *q, float *dw) {
    int32_t s = 0;
    if (dt == QM_DT_Q8_0) {
        const qm_block_q8_0 *blk = (const qm_block_q8_0 *)row + b;
        for (int i = 0; i < QM_Q8_BLOCK; i++) s += (int32_t)blk->qs[i] * (int32_t)q[i];
        *dw = qm_f16_to_f32(qm_quant_rd16(blk->d));
        return s;
    }
    const qm_block_q6_k *blk = (const qm_block_q6_k *)row + b / 8;
    const int j = b % 8;
    int c[32];
    qm_q6k_codes(blk, j, c);
    int32_t s0 = 0, s1 = 0;
    for (int i = 0; i < 16; i++) {
        s0 += c[i] * (int32_t)q[i];
        s1 += c[i + 16] * (int32_t)q[i + 16];
    }
    *dw = qm_f16_to_f32(qm_quant_rd16(blk->d));
    return blk->scales[2 * j] * s0 + blk->scales[2 * j + 1] * s1;
}

/* Row o of the view (quant.h's blocks) against output t of x: a. */
static float pass_dot(qm_dtype dt, const uint8_t *row, int nb, const qm_q8act *x, int t) {
    const qm_q8act xt = qm_q8act_vector(x, t);
    float a = 0.0f;
    for (int b = 0; b < nb; b++) {
        float dw;
        const int32_t s = pass_block_sum(dt, row, b, xt.q + (size_t)b * QM_Q8_BLOCK, &dw);
        a = fmaf((float)s, dw * xt.d[b], a);
    }
    return a;
}

/* Row o's E for output t, margin included. */
static float pass_bound(const qm_head_bounds *hb, int o, int t) {
    const float *e = hb->coef + (size_t)(2 * t) * (size_t)hb->groups, *h = e + hb->groups;
    float E = 0.0f;
    for (int g = 0; g < hb->groups; g++) {
        const size_t at = qm_head_bound_at(hb, g, o);
        E = fmaf(hb->bound[at], e[g], E);
        if (hb->dev) E = fmaf(hb->dev[at], h[g], E);
    }
    return E * QM_HEAD_PASS_MARGIN + 1e-35f;
}

void qm_head_pass_scalar(const qm_wview *w, const qm_q8act *x, int n_tok, const qm_head_bounds *hb, float *y,
                         size_t ldy, float *low, int o_begin, int o_end) {
    const size_t stride = qm_wview_stride(w);
    const int nb = w->cols / QM_Q8_BLOCK;
    for (int o = o_begin; o < o_end; o++)
        for (int t = 0; t < n_tok; t++) {
            const uint8_t *row = (const uint8_t *)w->data + (size_t)o * stride;
            const float a = pass_dot(w->dtype, row, nb, x, t), E = pass_bound(hb, o, t);
            const float lo = a - E;
            y[(size_t)t * ldy + (size_t)o] = a + E;
            if (lo > low[t]) low[t] = lo;
        }
}

void qm_head_pass_scalar_outputs(const qm_wview *w, const qm_q8act *x, int t0, int nt, const qm_head_bounds *hb,
                                 float *y, size_t ldy, float *low, int o_begin, int o_end) {
    const size_t at = (size_t)t0 * x->ld_blocks;
    const qm_q8act xt = {x->q + at * QM_Q8_BLOCK, x->d + at, x->s + at, x->ld_blocks};
    qm_head_bounds ht = *hb;
    ht.coef = hb->coef + (size_t)(2 * t0) * (size_t)hb->groups;
    qm_head_pass_scalar(w, &xt, nt, &ht, y + (size_t)t0 * ldy, ldy, low + t0, o_begin, o_end);
}

void qm_head_finish_scalar(const qm_head_bounds *hb, int t, float *y, float *low, int o_begin, int o_end) {
    for (int o = o_begin; o < o_end; o++) {
        const float a = y[o], E = pass_bound(hb, o, t), lo = a - E;
        y[o] = a + E;
        if (lo > *low) *low = lo;
    }
}
