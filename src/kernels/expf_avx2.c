/* The AVX2 twins of kernels/expf.h: 8 floats at a time, as two vectors of 4 doubles. */
#include <immintrin.h>
#include <math.h>

#include "kernels/expf.h"
#include "kernels/expf_isa.h"

/* qm_expf of 4 floats, as doubles: the same operations in each lane. */
static inline __m128 exp4(__m128 x) {
    const __m256d xd = _mm256_cvtps_pd(x), c = _mm256_set1_pd(QM_EXP_INV_LN2_N), sh = _mm256_set1_pd(QM_EXP_SHIFT);
    __m256d kd = _mm256_fmadd_pd(c, xd, sh);
    const __m256i ki = _mm256_castpd_si256(kd);
    kd = _mm256_sub_pd(kd, sh);
    const __m256d r = _mm256_fmsub_pd(c, xd, kd); /* fma(c, x, -kd) */
    const __m256i idx = _mm256_and_si256(ki, _mm256_set1_epi64x(QM_EXP_N - 1));
    const __m256i t = _mm256_add_epi64(_mm256_i64gather_epi64((const long long *)qm_exp_table, idx, 8),
                                       _mm256_slli_epi64(ki, 47));
    const __m256d p0 = _mm256_fmadd_pd(_mm256_set1_pd(QM_EXP_C0), r, _mm256_set1_pd(QM_EXP_C1));
    const __m256d p1 = _mm256_fmadd_pd(_mm256_set1_pd(QM_EXP_C2), r, _mm256_set1_pd(1.0));
    const __m256d p = _mm256_fmadd_pd(p0, _mm256_mul_pd(r, r), p1);
    return _mm256_cvtpd_ps(_mm256_mul_pd(p, _mm256_castsi256_pd(t)));
}

/* qm_expf of 8 floats, the cases outside the polynomial's range as qm_expf has them. */
static inline __m256 exp8(__m256 x) {
    __m256 y = _mm256_set_m128(exp4(_mm256_extractf128_ps(x, 1)), exp4(_mm256_castps256_ps128(x)));
    y = _mm256_blendv_ps(y, _mm256_setzero_ps(), _mm256_cmp_ps(x, _mm256_set1_ps(QM_EXP_LO), _CMP_LT_OQ));
    y = _mm256_blendv_ps(y, _mm256_set1_ps(INFINITY), _mm256_cmp_ps(x, _mm256_set1_ps(QM_EXP_HI), _CMP_GT_OQ));
    return _mm256_blendv_ps(y, _mm256_add_ps(x, x), _mm256_cmp_ps(x, x, _CMP_UNORD_Q));
}

void qm_exp_sub_avx2(float *s, int n, float m) {
    const __m256 mv = _mm256_set1_ps(m);
    int j = 0;
    for (; j + 8 <= n; j += 8) _mm256_storeu_ps(s + j, exp8(_mm256_sub_ps(_mm256_loadu_ps(s + j), mv)));
    qm_exp_sub_scalar(s + j, n - j, m);
}

void qm_silu_mul_avx2(const float *g, const float *u, float *h, int n) {
    const __m256 one = _mm256_set1_ps(1.0f), neg = _mm256_set1_ps(-0.0f);
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 gv = _mm256_loadu_ps(g + i);
        const __m256 s = _mm256_div_ps(gv, _mm256_add_ps(one, exp8(_mm256_xor_ps(gv, neg))));
        _mm256_storeu_ps(h + i, _mm256_mul_ps(s, _mm256_loadu_ps(u + i)));
    }
    qm_silu_mul_scalar(g + i, u + i, h + i, n - i);
}
