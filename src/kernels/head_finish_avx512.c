/* kernels.head_finish with AVX-512 (the avx512 and avx512vnni tables): 16 rows at a time where
 * they lie in one tile of the bounds (rows from a multiple of 16), the rows before and after by
 * the definition (qm_head_finish_scalar, kernels/head_pass.c). */
#include <immintrin.h>

#include "kernels/kernels.h"

_Static_assert(QM_HEAD_TILE % 16 == 0, "16 rows inside a tile");

void qm_head_finish_avx512(const qm_head_bounds *hb, int t, float *y, float *low, int o_begin, int o_end) {
    const float *e = hb->coef + (size_t)(2 * t) * (size_t)hb->groups, *h = e + hb->groups;
    int o = o_begin;
    const int head = (16 - o % 16) % 16 < o_end - o ? (16 - o % 16) % 16 : o_end - o;
    qm_head_finish_scalar(hb, t, y, low, o, o + head);
    o += head;
    __m512 lw = _mm512_set1_ps(-__builtin_inff());
    for (; o + 16 <= o_end; o += 16) {
        const size_t at = qm_head_bound_at(hb, 0, o);
        __m512 E = _mm512_setzero_ps();
        for (int g = 0; g < hb->groups; g++) {
            E = _mm512_fmadd_ps(_mm512_loadu_ps(hb->bound + at + (size_t)g * QM_HEAD_TILE), _mm512_set1_ps(e[g]), E);
            if (hb->dev)
                E = _mm512_fmadd_ps(_mm512_loadu_ps(hb->dev + at + (size_t)g * QM_HEAD_TILE), _mm512_set1_ps(h[g]), E);
        }
        E = _mm512_add_ps(_mm512_mul_ps(E, _mm512_set1_ps(QM_HEAD_PASS_MARGIN)), _mm512_set1_ps(1e-35f));
        const __m512 a = _mm512_loadu_ps(y + o), lo = _mm512_sub_ps(a, E);
        _mm512_storeu_ps(y + o, _mm512_add_ps(a, E));
        lw = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(lo, lw, _CMP_GT_OQ), lw, lo);
    }
    float lows[16] __attribute__((aligned(64)));
    _mm512_store_ps(lows, lw);
    for (int i = 0; i < 16; i++)
        if (lows[i] > *low) *low = lows[i];
    qm_head_finish_scalar(hb, t, y, low, o, o_end);
}
