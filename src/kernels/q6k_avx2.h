/* Q6_K codes unpacked with AVX2, for the kernels that take them a byte each (0..63, element
 * order): the fast mode's (qdot_avx2.c) and the head filter's pass (head_pass_avx2.c,
 * head_pass_avx512vnni.c). Include only from files compiled with AVX2 and F16C. */
#ifndef QM_KERNELS_Q6K_AVX2_H
#define QM_KERNELS_Q6K_AVX2_H

#include <immintrin.h>
#include <stdint.h>

#include "kernels/quant.h"

/* Sub-blocks 4i .. 4i + 3 of the Q6_K superblock at blk into c[4], codes 0..63 (q + 32), each
 * 32-byte load used for all the sub-blocks it holds: sub-block 4i + k takes ql half i (k % 2)
 * shifted by 4 (k / 2) and qh bits 2k..2k+1 moved to bits 4-5 by one 16-bit shift and a mask. */
static inline __attribute__((always_inline)) void qm_q6k_half_codes_avx2(const uint8_t *blk, int i, __m256i c[4]) {
    const qm_block_q6_k *b = (const qm_block_q6_k *)blk;
    const __m256i m4 = _mm256_set1_epi8(15), m30 = _mm256_set1_epi8(0x30);
    const __m256i l0 = _mm256_loadu_si256((const __m256i *)(b->ql + 64 * i));
    const __m256i l1 = _mm256_loadu_si256((const __m256i *)(b->ql + 64 * i + 32));
    const __m256i hq = _mm256_loadu_si256((const __m256i *)(b->qh + 32 * i));
    c[0] = _mm256_or_si256(_mm256_and_si256(l0, m4), _mm256_and_si256(_mm256_slli_epi16(hq, 4), m30));
    c[1] = _mm256_or_si256(_mm256_and_si256(l1, m4), _mm256_and_si256(_mm256_slli_epi16(hq, 2), m30));
    c[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), m4), _mm256_and_si256(hq, m30));
    c[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), m4), _mm256_and_si256(_mm256_srli_epi16(hq, 2), m30));
}

/* A Q6_K superblock's 256 codes, a byte each, into c[256] and its d as f32 into d[8] (one a
 * 32-block): the head filter's pass reads 4 consecutive codes as one dword. */
static inline void qm_q6k_unpack_avx2(const qm_block_q6_k *blk, uint8_t *c, float *d) {
    for (int i = 0; i < 2; i++) {
        __m256i v[4];
        qm_q6k_half_codes_avx2((const uint8_t *)blk, i, v);
        for (int k = 0; k < 4; k++) _mm256_storeu_si256((__m256i *)(c + 128 * i + 32 * k), v[k]);
    }
    _mm256_storeu_ps(d, _mm256_set1_ps(_cvtsh_ss(qm_quant_rd16(blk->d))));
}

#endif
