/* AVX2 twin of quant.c: the same operations in the same order on 8 lanes (one ymm = 8
 * consecutive output elements), so the same bits. Codes are widened byte -> dword
 * (vpmovzxbd), masked/shifted as integers, converted exactly to f32, then one vmulps and, for
 * Q4_1/Q5_1/Q4_K/Q5_K, one vaddps/vsubps: never FMA (see quant_avx512.c). */
#include <immintrin.h>

#include "kernels/quant.h"

#include "kernels/inline.h"

QM_INLINE float ld_f16(const uint8_t *p) { return _cvtsh_ss(qm_quant_rd16(p)); }

/* 8 bytes at p, zero-extended to 8 dwords. */
QM_INLINE __m256i ld_u8x8(const uint8_t *p) {
    return _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)p));
}

QM_INLINE void deq_q8_0(const uint8_t *b, float *y) {
    const __m256 d = _mm256_set1_ps(ld_f16(b));
    for (int c = 0; c < 4; c++) {
        __m256i q = _mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(b + 2 + 8 * c)));
        _mm256_storeu_ps(y + 8 * c, _mm256_mul_ps(_mm256_cvtepi32_ps(q), d));
    }
}

/* y[0..7] and y[16..23] from lo and hi codes: d * (q - off) or d * q + m. */
QM_INLINE void store_pair(float *y, __m256i lo, __m256i hi, __m256 d, int has_m, __m256 m, __m256i off) {
    if (has_m) {
        _mm256_storeu_ps(y, _mm256_add_ps(_mm256_mul_ps(d, _mm256_cvtepi32_ps(lo)), m));
        _mm256_storeu_ps(y + 16, _mm256_add_ps(_mm256_mul_ps(d, _mm256_cvtepi32_ps(hi)), m));
    } else {
        _mm256_storeu_ps(y, _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_sub_epi32(lo, off))));
        _mm256_storeu_ps(y + 16, _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_sub_epi32(hi, off))));
    }
}

/* Q4_0 (d * (q - 8)) and Q4_1 (d * q + m). */
QM_INLINE void deq_q4(const uint8_t *b, float *y, int has_m) {
    const __m256 d = _mm256_set1_ps(ld_f16(b));
    const __m256 m = has_m ? _mm256_set1_ps(ld_f16(b + 2)) : _mm256_setzero_ps();
    const uint8_t *qs = b + (has_m ? 4 : 2);
    const __m256i low4 = _mm256_set1_epi32(15), eight = _mm256_set1_epi32(8);
    for (int c = 0; c < 2; c++) {
        const __m256i w = ld_u8x8(qs + 8 * c);
        store_pair(y + 8 * c, _mm256_and_si256(w, low4), _mm256_srli_epi32(w, 4), d, has_m, m, eight);
    }
}

/* Q5_0 (d * (q - 16)) and Q5_1 (d * q + m); bit j of qh is bit 4 of element j. */
QM_INLINE void deq_q5(const uint8_t *b, float *y, int has_m) {
    const __m256 d = _mm256_set1_ps(ld_f16(b));
    const __m256 m = has_m ? _mm256_set1_ps(ld_f16(b + 2)) : _mm256_setzero_ps();
    const uint8_t *qhp = b + (has_m ? 4 : 2);
    const __m256i qh = _mm256_set1_epi32((int)qm_quant_rd32(qhp));
    const __m256i low4 = _mm256_set1_epi32(15), sixteen = _mm256_set1_epi32(16), one = _mm256_set1_epi32(1);
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    for (int c = 0; c < 2; c++) {
        /* elements 8c + i (lo) and 16 + 8c + i (hi): bits 8c + i and 16 + 8c + i of qh */
        const __m256i w = ld_u8x8(qhp + 4 + 8 * c);
        const __m256i bl = _mm256_srlv_epi32(qh, _mm256_add_epi32(lane, _mm256_set1_epi32(8 * c)));
        const __m256i bh = _mm256_srlv_epi32(qh, _mm256_add_epi32(lane, _mm256_set1_epi32(16 + 8 * c)));
        const __m256i lo = _mm256_or_si256(_mm256_and_si256(w, low4), _mm256_slli_epi32(_mm256_and_si256(bl, one), 4));
        const __m256i hi = _mm256_or_si256(_mm256_srli_epi32(w, 4), _mm256_slli_epi32(_mm256_and_si256(bh, one), 4));
        store_pair(y + 8 * c, lo, hi, d, has_m, m, sixteen);
    }
}

/* Q4_K (qh NULL) and Q5_K: (d * sc) * q - dmin * mn per sub-block of 32. */
QM_INLINE void deq_k45(const uint8_t *b, const uint8_t *qh, const uint8_t *qs, float *y) {
    const float d = ld_f16(b), dmin = ld_f16(b + 2);
    uint8_t sc[8], mn[8];
    qm_quant_k_scales(b + 4, sc, mn);
    const __m256i low4 = _mm256_set1_epi32(15), sixteen = _mm256_set1_epi32(16);
    __m256i hq[4]; /* qh widened once (the stores to y may alias it, so the compiler would not) */
    for (int c = 0; c < 4; c++) hq[c] = qh ? ld_u8x8(qh + 8 * c) : _mm256_setzero_si256();
    for (int p = 0; p < 4; p++) {
        const int s0 = 2 * p, s1 = 2 * p + 1;
        const __m256 ds0 = _mm256_set1_ps(d * (float)sc[s0]), dm0 = _mm256_set1_ps(dmin * (float)mn[s0]);
        const __m256 ds1 = _mm256_set1_ps(d * (float)sc[s1]), dm1 = _mm256_set1_ps(dmin * (float)mn[s1]);
        for (int c = 0; c < 4; c++) {
            const __m256i w = ld_u8x8(qs + 32 * p + 8 * c);
            __m256i q0 = _mm256_and_si256(w, low4), q1 = _mm256_srli_epi32(w, 4);
            if (qh) {
                /* bits s0, s1 of qh[l] to bit 4 */
                const __m256i h = _mm256_srli_epi32(hq[c], s0);
                q0 = _mm256_or_si256(q0, _mm256_and_si256(_mm256_slli_epi32(h, 4), sixteen));
                q1 = _mm256_or_si256(q1, _mm256_and_si256(_mm256_slli_epi32(h, 3), sixteen));
            }
            _mm256_storeu_ps(y + 32 * s0 + 8 * c, _mm256_sub_ps(_mm256_mul_ps(ds0, _mm256_cvtepi32_ps(q0)), dm0));
            _mm256_storeu_ps(y + 32 * s1 + 8 * c, _mm256_sub_ps(_mm256_mul_ps(ds1, _mm256_cvtepi32_ps(q1)), dm1));
        }
    }
}

/* Q6_K: (d * sc[e / 16]) * (q - 32); layout in quant.h. */
QM_INLINE void deq_q6_k(const uint8_t *b, float *y) {
    const uint8_t *ql = b, *qh = b + 128;
    const __m256 d = _mm256_set1_ps(ld_f16(b + 208));
    float ds[16];
    for (int g = 0; g < 16; g += 8)
        _mm256_storeu_ps(ds + g, _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(
                                                     _mm_loadl_epi64((const __m128i *)(b + 192 + g))))));
    const __m256i low4 = _mm256_set1_epi32(15), hi2 = _mm256_set1_epi32(0x30),
                  k32 = _mm256_set1_epi32(32);
    for (int h = 0; h < 2; h++)
        for (int c = 0; c < 4; c++) {
            const __m256i wl[2] = {ld_u8x8(ql + 64 * h + 8 * c), ld_u8x8(ql + 64 * h + 32 + 8 * c)};
            const __m256i wh = ld_u8x8(qh + 32 * h + 8 * c);
            const __m256i hb[4] = {_mm256_and_si256(_mm256_slli_epi32(wh, 4), hi2),
                                   _mm256_and_si256(_mm256_slli_epi32(wh, 2), hi2),
                                   _mm256_and_si256(wh, hi2),
                                   _mm256_and_si256(_mm256_srli_epi32(wh, 2), hi2)};
            for (int k = 0; k < 4; k++) {
                const __m256i lo = k < 2 ? _mm256_and_si256(wl[k], low4) : _mm256_srli_epi32(wl[k - 2], 4);
                const __m256i q = _mm256_sub_epi32(_mm256_or_si256(lo, hb[k]), k32);
                const __m256 dsg = _mm256_set1_ps(ds[8 * h + 2 * k + c / 2]);
                _mm256_storeu_ps(y + 128 * h + 32 * k + 8 * c, _mm256_mul_ps(dsg, _mm256_cvtepi32_ps(q)));
            }
        }
}

void qm_dequant_avx2(qm_dtype dt, const void *blocks, int nblocks, float *out) {
    const uint8_t *p = blocks;
    switch (dt) {
    case QM_DT_Q8_0:
        for (int i = 0; i < nblocks; i++) deq_q8_0(p + 34 * (size_t)i, out + 32 * (size_t)i);
        break;
    case QM_DT_Q4_0:
        for (int i = 0; i < nblocks; i++) deq_q4(p + 18 * (size_t)i, out + 32 * (size_t)i, 0);
        break;
    case QM_DT_Q4_1:
        for (int i = 0; i < nblocks; i++) deq_q4(p + 20 * (size_t)i, out + 32 * (size_t)i, 1);
        break;
    case QM_DT_Q5_0:
        for (int i = 0; i < nblocks; i++) deq_q5(p + 22 * (size_t)i, out + 32 * (size_t)i, 0);
        break;
    case QM_DT_Q5_1:
        for (int i = 0; i < nblocks; i++) deq_q5(p + 24 * (size_t)i, out + 32 * (size_t)i, 1);
        break;
    case QM_DT_Q4_K:
        for (int i = 0; i < nblocks; i++) {
            const uint8_t *b = p + 144 * (size_t)i;
            deq_k45(b, NULL, b + 16, out + 256 * (size_t)i);
        }
        break;
    case QM_DT_Q5_K:
        for (int i = 0; i < nblocks; i++) {
            const uint8_t *b = p + 176 * (size_t)i;
            deq_k45(b, b + 16, b + 48, out + 256 * (size_t)i);
        }
        break;
    case QM_DT_Q6_K:
        for (int i = 0; i < nblocks; i++) deq_q6_k(p + 210 * (size_t)i, out + 256 * (size_t)i);
        break;
    default: break; /* not a quantized type: nothing to do */
    }
}
