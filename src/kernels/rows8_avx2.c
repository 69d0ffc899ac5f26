/* Tokens against 8 interleaved Q4_0 / Q5_0 rows (rows8.h), AVX2 (and AVX512-VNNI: below): lane r of
 * every vector is row r. A group block's 4 code vectors t[k] load as they are (no transposition); the low nibbles of
 * t[k] are elements 4k .. 4k + 3 of each row, the high ones 16 + 4k .., whose fifth bits (Q5_0)
 * one shift and a mask of hb put at bit 4; maddubs against the token's 4 activations of those
 * elements, broadcast, adds up vertically, so each lane ends with its row's exact block sum (int16
 * while 4 pairs of at most 2 x 31 x 127 fit), less 8 s or 16 s: the spec's integer. Then the spec's
 * f32 operations lane by lane (qdot.h), c_b into acc[b % 16] in block order and the halving tree:
 * the same bits as every other path. The file layout's 8-row tile (qdot_avx2.c q50_decode8) spends
 * half its vector operations gathering the 8 rows' codes, fifth bits and scales into lanes; here
 * the load did that once (one thread, Zen 5, Q5_0 512 x 896 from the L2: 0.034 -> 0.018 ns a
 * weight). */
#include "kernels/rows8.h"

#include "kernels/rows8_simd.h"

/* A block's running integer sums, lane r: the int32 sums (VNNI), or the low and high nibbles'
 * int16 pairs (maddubs; 4 pairs of at most 2 x 31 x 127 fit). */
typedef struct {
    __m256i a, b;
} isums;

QM_INLINE isums isums_zero(void) { return (isums){_mm256_setzero_si256(), _mm256_setzero_si256()}; }

/* codes lo (elements 4k ..) and hi (16 + 4k ..) against the 4 activations of each, xl and xh */
QM_INLINE isums isums_add(isums s, __m256i lo, __m256i hi, int xl, int xh) {
#ifdef QM_ROWS8_VNNI
    s.a = _mm256_dpbusd_epi32(s.a, lo, _mm256_set1_epi32(xl)); /* two chains: half the latency */
    s.b = _mm256_dpbusd_epi32(s.b, hi, _mm256_set1_epi32(xh));
#else
    s.a = _mm256_add_epi16(s.a, _mm256_maddubs_epi16(lo, _mm256_set1_epi32(xl)));
    s.b = _mm256_add_epi16(s.b, _mm256_maddubs_epi16(hi, _mm256_set1_epi32(xh)));
#endif
    return s;
}

QM_INLINE __m256i isums_total(isums s) {
#ifdef QM_ROWS8_VNNI
    return _mm256_add_epi32(s.a, s.b);
#else
    const __m256i ones = _mm256_set1_epi16(1);
    return _mm256_add_epi32(_mm256_madd_epi16(s.a, ones), _mm256_madd_epi16(s.b, ones));
#endif
}

/* Bit 4 of byte j of each dword: the fifth bit in hb's bit 8 j + p. */
QM_INLINE __m256i fifth_bits(__m256i hb, int p) {
    const __m256i m = _mm256_set1_epi8(16);
    if (p < 4) return _mm256_and_si256(_mm256_slli_epi32(hb, 4 - p), m);
    if (p > 4) return _mm256_and_si256(_mm256_srli_epi32(hb, p - 4), m);
    return _mm256_and_si256(hb, m);
}

/* A group block's 8 code vectors: the low nibbles of t[k] (elements 4k ..) and the high ones, with
 * their fifth bits (Q5_0). */
QM_INLINE void codes8(int has_h, const uint8_t *g, __m256i lo[4], __m256i hi[4]) {
    const uint8_t *t = g + (has_h ? 48 : 16);
    const __m256i hb = has_h ? _mm256_loadu_si256((const __m256i *)(g + 16)) : _mm256_setzero_si256();
    const __m256i m4 = _mm256_set1_epi8(15);
#pragma GCC unroll 4
    for (int k = 0; k < 4; k++) {
        const __m256i v = _mm256_loadu_si256((const __m256i *)(t + 32 * k));
        lo[k] = _mm256_and_si256(v, m4);
        hi[k] = _mm256_and_si256(_mm256_srli_epi16(v, 4), m4);
        if (has_h) {
            lo[k] = _mm256_or_si256(lo[k], fifth_bits(hb, k));
            hi[k] = _mm256_or_si256(hi[k], fifth_bits(hb, 4 + k));
        }
    }
}

QM_INLINE __m256 contrib8(int has_h, const __m256i lo[4], const __m256i hi[4], __m256 d, const qm_q8act *x, int b) {
    const int8_t *xq = x->q + (size_t)b * QM_Q8_BLOCK;
    isums sum = isums_zero();
#pragma GCC unroll 4
    for (int k = 0; k < 4; k++) sum = isums_add(sum, lo[k], hi[k], rd32(xq + 4 * k), rd32(xq + 16 + 4 * k));
    const __m256i is = _mm256_sub_epi32(isums_total(sum), _mm256_set1_epi32((has_h ? 16 : 8) * x->s[b]));
    return _mm256_mul_ps(_mm256_mul_ps(d, _mm256_set1_ps(x->d[b])), _mm256_cvtepi32_ps(is));
}

/* Group block g (block b of the 8 rows), one token: c_b, lane r (the 16 accumulators of decode8
 * stay in registers beside the 8 code vectors: as fast as decoding them a k at a time). */
QM_INLINE __m256 block8(int has_h, const uint8_t *g, const qm_q8act *x, int b) {
    __m256i lo[4], hi[4];
    codes8(has_h, g, lo, hi);
    return contrib8(has_h, lo, hi, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)g)), x, b);
}

QM_INLINE void decode8(int has_h, const uint8_t *group, int nblk, const qm_q8act *x, const float *bias, float *y) {
    const size_t gb = has_h ? 8 * 22 : 8 * 18;
    const char *pf = (const char *)group + (size_t)PF_GROUPS * (size_t)nblk * gb; /* never faults */
    __m256 acc[16];
    for (int l = 0; l < 16; l++) acc[l] = _mm256_setzero_ps();
    for (int b = 0; b < nblk; b++) {
        rows8_prefetch(pf + (size_t)b * gb, gb);
        acc[b & 15] = _mm256_add_ps(acc[b & 15], block8(has_h, group + (size_t)b * gb, x, b));
    }
    rows8_store_tree(acc, bias, y);
}

/* Several tokens: each group block's codes made once (8 vectors in registers) for TT tokens at a
 * time, the tokens' accumulators in memory (the group's bytes stay in the L1 for the next TT); the
 * same sums and f32 operations as one token's block8. Against the file layout's token tiles
 * (qdot_avx2.c),
 * the 0.5B's fast gate_up (--isa avx2, 2 threads, Zen 5): batch 16 23.1 -> 18.0 ms a step,
 * prefill of 512 tokens 643 -> 551 ms (TT 4: 25.9 and 649; 8: 21.5 and 616; 32: 18.1 and 546):
 * TT, rows8_simd.h. */
QM_INLINE void tokens8(int has_h, const uint8_t *group, int nblk, const qm_q8act *x, int n_tok, const float *bias,
                       float *y, size_t ldy) {
    const size_t gb = has_h ? 8 * 22 : 8 * 18;
    __m256 acc[TT][16];
    for (int t0 = 0; t0 < n_tok; t0 += TT) {
        qm_q8act xt[TT];
        const int nt = rows8_chunk(x, n_tok, t0, xt, acc);
        for (int b = 0; b < nblk; b++) {
            const uint8_t *g = group + (size_t)b * gb;
            if (t0 == 0) rows8_prefetch(g + (size_t)nblk * gb, gb); /* the next group, a share a block, as decode8 */
            __m256i lo[4], hi[4];
            codes8(has_h, g, lo, hi);
            const __m256 d = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)g));
            for (int t = 0; t < nt; t++)
                acc[t][b & 15] = _mm256_add_ps(acc[t][b & 15], contrib8(has_h, lo, hi, d, &xt[t], b));
        }
        for (int t = 0; t < nt; t++) rows8_store_tree(acc[t], bias, y + (size_t)(t0 + t) * ldy);
    }
}

void R8_ISA(qm_rows8_tokens)(qm_dtype t, const uint8_t *group, int nblk, const qm_q8act *x, int n_tok,
                             const float *bias, float *y, size_t ldy) {
    if (t == QM_DT_Q4_K_R8) R8_ISA(qm_rows8_q4k_tokens)(group, nblk, x, n_tok, bias, y, ldy);
    else if (t == QM_DT_Q5_0_R8) tokens8(1, group, nblk, x, n_tok, bias, y, ldy);
    else tokens8(0, group, nblk, x, n_tok, bias, y, ldy);
}

void R8_ISA(qm_rows8_decode)(qm_dtype t, const uint8_t *group, int nblk, const qm_q8act *x, const float *bias,
                             float *y) {
    if (t == QM_DT_Q4_K_R8) R8_ISA(qm_rows8_q4k_decode)(group, nblk, x, bias, y);
    else if (t == QM_DT_Q5_0_R8) decode8(1, group, nblk, x, bias, y);
    else decode8(0, group, nblk, x, bias, y);
}

/* hb -> qh in each lane (rows8.h qm_rows8_qh_of_hb, 8 lanes at once). */
QM_INLINE __m256i delta_swap(__m256i x, int delta, uint32_t m) {
    const __m256i t = _mm256_and_si256(_mm256_xor_si256(_mm256_srli_epi32(x, delta), x), _mm256_set1_epi32((int)m));
    return _mm256_xor_si256(_mm256_xor_si256(x, t), _mm256_slli_epi32(t, delta));
}

/* qm_rows8_unpack of all 8 lanes: the code vectors transposed back to rows (4 x 8 dwords). */
QM_INLINE void unpack8(int has_h, const uint8_t *group, int nblk, uint8_t *dst, size_t dst_stride) {
    const size_t bb = has_h ? 22 : 18, gb = 8 * bb;
    for (int b = 0; b < nblk; b++) {
        const uint8_t *g = group + (size_t)b * gb, *t = g + (has_h ? 48 : 16);
        uint8_t *blk = dst + (size_t)b * bb; /* row r's block at blk + r dst_stride */
        uint32_t qh[8];
        if (has_h) {
            __m256i h = _mm256_loadu_si256((const __m256i *)(g + 16));
            h = delta_swap(h, 1, 0x22222222u);
            h = delta_swap(h, 7, 0x00aa00aau);
            h = delta_swap(h, 2, 0x0c0c0c0cu);
            h = delta_swap(h, 14, 0x0000ccccu);
            _mm256_storeu_si256((__m256i *)qh, h);
        }
        __m256i v[4];
        for (int k = 0; k < 4; k++) v[k] = _mm256_loadu_si256((const __m256i *)(t + 32 * k));
        const __m256i a0 = _mm256_unpacklo_epi32(v[0], v[1]), a1 = _mm256_unpackhi_epi32(v[0], v[1]);
        const __m256i a2 = _mm256_unpacklo_epi32(v[2], v[3]), a3 = _mm256_unpackhi_epi32(v[2], v[3]);
        const __m256i r[4] = {_mm256_unpacklo_epi64(a0, a2), _mm256_unpackhi_epi64(a0, a2),
                              _mm256_unpacklo_epi64(a1, a3), _mm256_unpackhi_epi64(a1, a3)}; /* rows i, i + 4 */
        for (int i = 0; i < 4; i++) {
            uint8_t *lo = blk + (size_t)i * dst_stride + bb - 16, *hi = blk + (size_t)(i + 4) * dst_stride + bb - 16;
            _mm_storeu_si128((__m128i *)lo, _mm256_castsi256_si128(r[i]));
            _mm_storeu_si128((__m128i *)hi, _mm256_extracti128_si256(r[i], 1));
        }
        for (int i = 0; i < 8; i++) {
            uint8_t *row = blk + (size_t)i * dst_stride;
            memcpy(row, g + 2 * i, 2);
            if (has_h) memcpy(row + 2, &qh[i], 4);
        }
    }
}

void R8_ISA(qm_rows8_unpack8)(qm_dtype t, const uint8_t *group, int nblk, uint8_t *dst, size_t dst_stride) {
    if (t == QM_DT_Q4_K_R8) R8_ISA(qm_rows8_q4k_unpack8)(group, nblk, dst, dst_stride);
    else if (t == QM_DT_Q5_0_R8) unpack8(1, group, nblk, dst, dst_stride);
    else unpack8(0, group, nblk, dst, dst_stride);
}
