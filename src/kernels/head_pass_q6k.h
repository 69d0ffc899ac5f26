/* Q6_K rows unpacked for the head_pass kernels (head_pass_avx2.c, head_pass_avx512vnni.c): a code
 * (0..63) a byte, in element order, so that 4 consecutive codes are one dword to broadcast. Include
 * only from files compiled with AVX2 and F16C. */
#ifndef QM_KERNELS_HEAD_PASS_Q6K_H
#define QM_KERNELS_HEAD_PASS_Q6K_H

#include <immintrin.h>
#include <stdint.h>

#include "kernels/quant.h"

/* Q6_K sub-block j of blk: its 32 codes c (0..63), a byte each. */
static inline __m256i qm_head_pass_q6k_bytes(const qm_block_q6_k *blk, int j) {
    const int h = j / 4, k = j % 4;
    __m256i lo = _mm256_loadu_si256((const __m256i *)(blk->ql + 64 * h + 32 * (k & 1)));
    const __m256i qh = _mm256_loadu_si256((const __m256i *)(blk->qh + 32 * h));
    if (k >> 1) lo = _mm256_srli_epi16(lo, 4);
    lo = _mm256_and_si256(lo, _mm256_set1_epi8(15));
    const __m256i hi = _mm256_and_si256(_mm256_srl_epi16(qh, _mm_cvtsi32_si128(2 * k)), _mm256_set1_epi8(3));
    return _mm256_or_si256(lo, _mm256_slli_epi16(hi, 4));
}

/* A Q6_K superblock's 256 codes, a byte each, into c[256] and its d as f32 into d[8] (one a
 * 32-block). */
static inline void qm_head_pass_q6k_unpack(const qm_block_q6_k *blk, uint8_t *c, float *d) {
    for (int j = 0; j < 8; j++) _mm256_storeu_si256((__m256i *)(c + 32 * j), qm_head_pass_q6k_bytes(blk, j));
    _mm256_storeu_ps(d, _mm256_set1_ps(_cvtsh_ss(qm_quant_rd16(blk->d))));
}

#endif
