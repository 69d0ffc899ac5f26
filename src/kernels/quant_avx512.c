/* AVX-512 twin of quant.c: the same operations in the same order on 16 lanes (one zmm = 16
 * consecutive output elements), so the same bits. Codes are widened byte -> dword
 * (vpmovzxbd), masked/shifted as integers, converted exactly to f32, then one vmulps and, for
 * Q4_1/Q5_1/Q4_K/Q5_K, one vaddps/vsubps: never FMA (the reference rounds twice; the products
 * happen to be exact, but we keep the reference's operations). The scalar f16 scales use
 * vcvtph2ps (exact, as qm_f16_to_f32). */
#include <immintrin.h>

#include "kernels/quant.h"

#include "kernels/inline.h"

QM_INLINE float ld_f16(const uint8_t *p) { return _cvtsh_ss(qm_quant_rd16(p)); }

/* 16 bytes at p, zero-extended to 16 dwords. */
QM_INLINE __m512i ld_u8x16(const uint8_t *p) {
    return _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)p));
}

QM_INLINE void deq_q8_0(const uint8_t *b, float *y) {
    const __m512 d = _mm512_set1_ps(ld_f16(b));
    for (int c = 0; c < 2; c++) {
        __m512i q = _mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(b + 2 + 16 * c)));
        _mm512_storeu_ps(y + 16 * c, _mm512_mul_ps(_mm512_cvtepi32_ps(q), d));
    }
}

/* Q4_0 (m == NULL: d * (q - 8)) and Q4_1 (d * q + m). */
QM_INLINE void deq_q4(const uint8_t *b, float *y, int has_m) {
    const __m512 d = _mm512_set1_ps(ld_f16(b));
    const uint8_t *qs = b + (has_m ? 4 : 2);
    const __m512i w = ld_u8x16(qs), low4 = _mm512_set1_epi32(15);
    __m512i lo = _mm512_and_si512(w, low4), hi = _mm512_srli_epi32(w, 4);
    if (has_m) {
        const __m512 m = _mm512_set1_ps(ld_f16(b + 2));
        _mm512_storeu_ps(y, _mm512_add_ps(_mm512_mul_ps(d, _mm512_cvtepi32_ps(lo)), m));
        _mm512_storeu_ps(y + 16, _mm512_add_ps(_mm512_mul_ps(d, _mm512_cvtepi32_ps(hi)), m));
    } else {
        const __m512i eight = _mm512_set1_epi32(8);
        lo = _mm512_sub_epi32(lo, eight);
        hi = _mm512_sub_epi32(hi, eight);
        _mm512_storeu_ps(y, _mm512_mul_ps(d, _mm512_cvtepi32_ps(lo)));
        _mm512_storeu_ps(y + 16, _mm512_mul_ps(d, _mm512_cvtepi32_ps(hi)));
    }
}

/* Q5_0 (d * (q - 16)) and Q5_1 (d * q + m); bit j of qh is bit 4 of element j: a k-mask. */
QM_INLINE void deq_q5(const uint8_t *b, float *y, int has_m) {
    const __m512 d = _mm512_set1_ps(ld_f16(b));
    const uint8_t *qhp = b + (has_m ? 4 : 2);
    const uint32_t qh = qm_quant_rd32(qhp);
    const __m512i w = ld_u8x16(qhp + 4), sixteen = _mm512_set1_epi32(16);
    __m512i lo = _mm512_and_si512(w, _mm512_set1_epi32(15)), hi = _mm512_srli_epi32(w, 4);
    lo = _mm512_mask_or_epi32(lo, (__mmask16)qh, lo, sixteen);
    hi = _mm512_mask_or_epi32(hi, (__mmask16)(qh >> 16), hi, sixteen);
    if (has_m) {
        const __m512 m = _mm512_set1_ps(ld_f16(b + 2));
        _mm512_storeu_ps(y, _mm512_add_ps(_mm512_mul_ps(d, _mm512_cvtepi32_ps(lo)), m));
        _mm512_storeu_ps(y + 16, _mm512_add_ps(_mm512_mul_ps(d, _mm512_cvtepi32_ps(hi)), m));
    } else {
        lo = _mm512_sub_epi32(lo, sixteen);
        hi = _mm512_sub_epi32(hi, sixteen);
        _mm512_storeu_ps(y, _mm512_mul_ps(d, _mm512_cvtepi32_ps(lo)));
        _mm512_storeu_ps(y + 16, _mm512_mul_ps(d, _mm512_cvtepi32_ps(hi)));
    }
}

/* Q4_K (qh NULL) and Q5_K: (d * sc) * q - dmin * mn per sub-block of 32. */
QM_INLINE void deq_k45(const uint8_t *b, const uint8_t *qh, const uint8_t *qs, float *y) {
    const float d = ld_f16(b), dmin = ld_f16(b + 2);
    uint8_t sc[8], mn[8];
    qm_quant_k_scales(b + 4, sc, mn);
    const __m512i low4 = _mm512_set1_epi32(15), sixteen = _mm512_set1_epi32(16);
    __m128i h[2] = {_mm_setzero_si128(), _mm_setzero_si128()};
    if (qh) {
        h[0] = _mm_loadu_si128((const __m128i *)qh);
        h[1] = _mm_loadu_si128((const __m128i *)(qh + 16));
    }
    for (int p = 0; p < 4; p++) {
        const int s0 = 2 * p, s1 = 2 * p + 1;
        const __m512 ds0 = _mm512_set1_ps(d * (float)sc[s0]), dm0 = _mm512_set1_ps(dmin * (float)mn[s0]);
        const __m512 ds1 = _mm512_set1_ps(d * (float)sc[s1]), dm1 = _mm512_set1_ps(dmin * (float)mn[s1]);
        for (int c = 0; c < 2; c++) {
            const __m512i w = ld_u8x16(qs + 32 * p + 16 * c);
            __m512i q0 = _mm512_and_si512(w, low4), q1 = _mm512_srli_epi32(w, 4);
            if (qh) {
                q0 = _mm512_mask_or_epi32(q0, _mm_test_epi8_mask(h[c], _mm_set1_epi8((char)(1 << s0))), q0, sixteen);
                q1 = _mm512_mask_or_epi32(q1, _mm_test_epi8_mask(h[c], _mm_set1_epi8((char)(1 << s1))), q1, sixteen);
            }
            _mm512_storeu_ps(y + 32 * s0 + 16 * c, _mm512_sub_ps(_mm512_mul_ps(ds0, _mm512_cvtepi32_ps(q0)), dm0));
            _mm512_storeu_ps(y + 32 * s1 + 16 * c, _mm512_sub_ps(_mm512_mul_ps(ds1, _mm512_cvtepi32_ps(q1)), dm1));
        }
    }
}

/* Q6_K: (d * sc[e / 16]) * (q - 32); layout in quant.h. */
QM_INLINE void deq_q6_k(const uint8_t *b, float *y) {
    const uint8_t *ql = b, *qh = b + 128;
    const __m512 d = _mm512_set1_ps(ld_f16(b + 208));
    const __m512 ds = _mm512_mul_ps(d, _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(
                                           _mm_loadu_si128((const __m128i *)(b + 192)))));
    const __m512i low4 = _mm512_set1_epi32(15), hi2 = _mm512_set1_epi32(0x30),
                  k32 = _mm512_set1_epi32(32);
    for (int h = 0; h < 2; h++)
        for (int c = 0; c < 2; c++) {
            const __m512i wl[2] = {ld_u8x16(ql + 64 * h + 16 * c), ld_u8x16(ql + 64 * h + 32 + 16 * c)};
            const __m512i wh = ld_u8x16(qh + 32 * h + 16 * c);
            /* bits 2k, 2k+1 of wh moved to bits 4, 5 */
            const __m512i hb[4] = {_mm512_and_si512(_mm512_slli_epi32(wh, 4), hi2),
                                   _mm512_and_si512(_mm512_slli_epi32(wh, 2), hi2),
                                   _mm512_and_si512(wh, hi2),
                                   _mm512_and_si512(_mm512_srli_epi32(wh, 2), hi2)};
            for (int k = 0; k < 4; k++) {
                const __m512i lo = k < 2 ? _mm512_and_si512(wl[k], low4) : _mm512_srli_epi32(wl[k - 2], 4);
                const __m512i q = _mm512_sub_epi32(_mm512_or_si512(lo, hb[k]), k32);
                const __m512 dsg = _mm512_permutexvar_ps(_mm512_set1_epi32(8 * h + 2 * k + c), ds);
                _mm512_storeu_ps(y + 128 * h + 32 * k + 16 * c, _mm512_mul_ps(dsg, _mm512_cvtepi32_ps(q)));
            }
        }
}

void qm_dequant_avx512(qm_dtype dt, const void *blocks, int nblocks, float *out) {
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
