/* What the interleaved rows' kernels (rows8_avx2.c, rows8_q4k_avx2.c and their AVX512-VNNI builds)
 * share. Include only from files compiled with AVX2 and F16C. */
#ifndef QM_KERNELS_ROWS8_SIMD_H
#define QM_KERNELS_ROWS8_SIMD_H

#include <immintrin.h>
#include <string.h>

#include "kernels/qdot.h"

#include "kernels/inline.h"
#define PF_GROUPS 2 /* prefetch the group this many ahead (into the L2), a share each block */
#define TT 16       /* tokens whose codes a group block makes once (the several-token kernels) */

/* The *_avx512vnni.c files build the AVX2 ones again with QM_ROWS8_VNNI: each 4 products summed
 * into the int32 lanes by one vpdpbusd (AVX512-VNNI on ymm), the same exact integers. */
#ifdef QM_ROWS8_VNNI
#define R8_ISA(name) name##_avx512vnni
#else
#define R8_ISA(name) name##_avx2
#endif

QM_INLINE int rd32(const int8_t *p) {
    int v;
    memcpy(&v, p, 4);
    return v;
}

/* The several-token kernels' chunk from token t0: its tokens as one-vector views, their
 * accumulators zeroed. Returns how many (at most TT). */
QM_INLINE int rows8_chunk(const qm_q8act *x, int n_tok, int t0, qm_q8act xt[TT], __m256 acc[TT][16]) {
    const int nt = n_tok - t0 < TT ? n_tok - t0 : TT;
    for (int t = 0; t < nt; t++) {
        xt[t] = qm_q8act_vector(x, t0 + t);
        for (int l = 0; l < 16; l++) acc[t][l] = _mm256_setzero_ps();
    }
    return nt;
}

/* n bytes from p into the L2, a line at a time. */
QM_INLINE void rows8_prefetch(const void *p, size_t n) {
    for (size_t k = 0; k < n; k += 64) _mm_prefetch((const char *)p + k, _MM_HINT_T1);
}

/* The halving tree of the 16 lane accumulators, 8 rows at once, into y[0..7] (+ bias). */
QM_INLINE void rows8_store_tree(__m256 acc[16], const float *bias, float *y) {
    for (int h = 8; h >= 1; h /= 2)
        for (int l = 0; l < h; l++) acc[l] = _mm256_add_ps(acc[l], acc[l + h]);
    _mm256_storeu_ps(y, bias ? _mm256_add_ps(acc[0], _mm256_loadu_ps(bias)) : acc[0]);
}

#endif
