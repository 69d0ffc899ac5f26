/* The head filter's first pass over several outputs: the definition (kernels.h, head_pass), one
 * row and one output at a time. The ISA kernels (head_pass_avx512vnni.c) compute the same f32
 * operations in the same order; test_head_filter compares them bit for bit. */
#include <math.h>

#include "kernels/kernels.h"
#include "kernels/qdot.h"
#include "kernels/quant.h"

/* Row o of the Q8_0 view (quant.h's blocks) against output t of x: a. */
static float pass_dot(const qm_block_q8_0 *row, int nb, const qm_q8act *x, int t) {
    const qm_q8act xt = qm_q8act_vector(x, t);
    float a = 0.0f;
    for (int b = 0; b < nb; b++) {
        const int8_t *q = xt.q + (size_t)b * QM_Q8_BLOCK;
        int32_t s = 0;
        for (int i = 0; i < QM_Q8_BLOCK; i++) s += (int32_t)row[b].qs[i] * (int32_t)q[i];
        a = fmaf((float)s, qm_f16_to_f32(qm_quant_rd16(row[b].d)) * xt.d[b], a);
    }
    return a;
}

/* Row o's E for output t, margin included. */
static float pass_bound(const qm_head_bounds *hb, int o, int t) {
    const float *e = hb->coef + (size_t)(2 * t) * (size_t)hb->groups, *h = e + hb->groups;
    float E = 0.0f;
    for (int g = 0; g < hb->groups; g++) {
        const size_t at = (size_t)g * hb->ldb + (size_t)o;
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
            const qm_block_q8_0 *row = (const qm_block_q8_0 *)((const char *)w->data + (size_t)o * stride);
            const float a = pass_dot(row, nb, x, t), E = pass_bound(hb, o, t);
            const float lo = a - E;
            y[(size_t)t * ldy + (size_t)o] = a + E;
            if (lo > low[t]) low[t] = lo;
        }
}
