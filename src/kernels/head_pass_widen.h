/* A row of the head filter's 8-bit view unpacked for the head_pass kernels: Q6_K's codes as
 * bytes (head_pass_avx512vnni.c), and either type's as 16-bit codes (head_pass_avx2.c). Include
 * only from files compiled with AVX2 and F16C. */
#ifndef QM_KERNELS_HEAD_PASS_WIDEN_H
#define QM_KERNELS_HEAD_PASS_WIDEN_H

#include <immintrin.h>
#include <stdint.h>

#include "kernels/qdot.h"
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

/* Q6_K sub-block j of blk: its codes c - 32 times their group's scale (at most 32 x 128: 16-bit)
 * into out[32], so that a block's sums of 16-bit products are the definition's S_b. */
static inline void qm_head_pass_q6k_scaled(const qm_block_q6_k *blk, int j, int16_t *out) {
    const __m256i c = _mm256_sub_epi8(qm_head_pass_q6k_bytes(blk, j), _mm256_set1_epi8(32));
    const __m256i c0 = _mm256_cvtepi8_epi16(_mm256_castsi256_si128(c));
    const __m256i c1 = _mm256_cvtepi8_epi16(_mm256_extracti128_si256(c, 1));
    _mm256_storeu_si256((__m256i *)out, _mm256_mullo_epi16(c0, _mm256_set1_epi16(blk->scales[2 * j])));
    _mm256_storeu_si256((__m256i *)(out + 16), _mm256_mullo_epi16(c1, _mm256_set1_epi16(blk->scales[2 * j + 1])));
}

/* The nb 32-blocks of a Q8_0 or Q6_K row: codes into c[nb * 32] (16-bit; Q6_K's scaled), each
 * block's d (Q6_K: its superblock's) as f32 into d[nb]. */
static inline void qm_head_pass_widen_row(qm_dtype dt, const uint8_t *row, int nb, int16_t *c, float *d) {
    if (dt == QM_DT_Q6_K) {
        for (int b = 0; b < nb; b++) {
            const qm_block_q6_k *blk = (const qm_block_q6_k *)row + b / 8;
            qm_head_pass_q6k_scaled(blk, b % 8, c + (size_t)b * QM_Q8_BLOCK);
            d[b] = _cvtsh_ss(qm_quant_rd16(blk->d));
        }
        return;
    }
    for (int b = 0; b < nb; b++) {
        const qm_block_q8_0 *blk = (const qm_block_q8_0 *)row + b;
        const __m128i lo = _mm_loadu_si128((const __m128i *)blk->qs);
        const __m128i hi = _mm_loadu_si128((const __m128i *)(blk->qs + 16));
        _mm256_storeu_si256((__m256i *)(c + (size_t)b * QM_Q8_BLOCK), _mm256_cvtepi8_epi16(lo));
        _mm256_storeu_si256((__m256i *)(c + (size_t)b * QM_Q8_BLOCK + 16), _mm256_cvtepi8_epi16(hi));
        d[b] = _cvtsh_ss(qm_quant_rd16(blk->d));
    }
}

#endif
