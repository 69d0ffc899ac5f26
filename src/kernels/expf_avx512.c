/* The AVX-512 twins of kernels/expf.h: 16 floats at a time, as two vectors of 8 doubles. */
#include <immintrin.h>
#include <math.h>

#include "kernels/expf.h"
#include "kernels/expf_isa.h"

/* qm_expf of 8 floats, as doubles: the same operations in each lane. */
static inline __m256 exp8d(__m256 x) {
    const __m512d xd = _mm512_cvtps_pd(x), c = _mm512_set1_pd(QM_EXP_INV_LN2_N), sh = _mm512_set1_pd(QM_EXP_SHIFT);
    __m512d kd = _mm512_fmadd_pd(c, xd, sh);
    const __m512i ki = _mm512_castpd_si512(kd);
    kd = _mm512_sub_pd(kd, sh);
    const __m512d r = _mm512_fmsub_pd(c, xd, kd); /* fma(c, x, -kd) */
    /* 2^(i/32): entries 0-15 and 16-31 in two pairs of registers, bit 4 of the index picks */
    const __m512i t0 = _mm512_loadu_si512(qm_exp_table), t1 = _mm512_loadu_si512(qm_exp_table + 8);
    const __m512i t2 = _mm512_loadu_si512(qm_exp_table + 16), t3 = _mm512_loadu_si512(qm_exp_table + 24);
    const __m512i lo = _mm512_permutex2var_epi64(t0, ki, t1), hi = _mm512_permutex2var_epi64(t2, ki, t3);
    const __mmask8 upper = _mm512_test_epi64_mask(ki, _mm512_set1_epi64(16));
    const __m512i t = _mm512_add_epi64(_mm512_mask_blend_epi64(upper, lo, hi), _mm512_slli_epi64(ki, 47));
    const __m512d p0 = _mm512_fmadd_pd(_mm512_set1_pd(QM_EXP_C0), r, _mm512_set1_pd(QM_EXP_C1));
    const __m512d p1 = _mm512_fmadd_pd(_mm512_set1_pd(QM_EXP_C2), r, _mm512_set1_pd(1.0));
    const __m512d p = _mm512_fmadd_pd(p0, _mm512_mul_pd(r, r), p1);
    return _mm512_cvtpd_ps(_mm512_mul_pd(p, _mm512_castsi512_pd(t)));
}

/* qm_expf of 16 floats, the cases outside the polynomial's range as qm_expf has them. */
static inline __m512 exp16(__m512 x) {
    __m512 y = _mm512_insertf32x8(_mm512_castps256_ps512(exp8d(_mm512_castps512_ps256(x))),
                                  exp8d(_mm512_extractf32x8_ps(x, 1)), 1);
    y = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(x, _mm512_set1_ps(QM_EXP_LO), _CMP_LT_OQ), y, _mm512_setzero_ps());
    y = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(x, _mm512_set1_ps(QM_EXP_HI), _CMP_GT_OQ), y,
                             _mm512_set1_ps(INFINITY));
    return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q), y, _mm512_add_ps(x, x));
}

void qm_exp_sub_avx512(float *s, int n, float m) {
    const __m512 mv = _mm512_set1_ps(m);
    int j = 0;
    for (; j + 16 <= n; j += 16) _mm512_storeu_ps(s + j, exp16(_mm512_sub_ps(_mm512_loadu_ps(s + j), mv)));
    qm_exp_sub_scalar(s + j, n - j, m);
}

void qm_silu_mul_avx512(const float *g, const float *u, float *h, int n) {
    const __m512 one = _mm512_set1_ps(1.0f), neg = _mm512_set1_ps(-0.0f);
    int i = 0;
    for (; i + 16 <= n; i += 16) {
        const __m512 gv = _mm512_loadu_ps(g + i);
        const __m512 s = _mm512_div_ps(gv, _mm512_add_ps(one, exp16(_mm512_xor_ps(gv, neg))));
        _mm512_storeu_ps(h + i, _mm512_mul_ps(s, _mm512_loadu_ps(u + i)));
    }
    qm_silu_mul_scalar(g + i, u + i, h + i, n - i);
}
