/* AVX2 kernels. The 16 lanes of the canonical order (kernels.h) are two ymm registers:
 * lo holds lanes 0-7, hi lanes 8-15. A tail of r < 16 elements is copied into zero-padded
 * buffers, FMA'd, and blended back so that only lanes 0..r-1 change; the halving tree starts
 * with lo + hi (w = 8) and goes on with shuffles, always as acc[l] + acc[l + w].
 *
 * matmul tiles R output rows x T tokens of accumulator pairs, as the AVX-512 file does; from
 * PMIN tokens a plain type's rows go through the block-quantized prefill's tiles with the tokens
 * side by side (qprefill_t), and from 9 tokens a row-parallel layer's nodes are made in the
 * kernel 16 tokens at a time (nodes_wide; from NMIN tokens a block-quantized type's, and a view
 * nodes_wide does not take, by nodes_tokens with the 16-row transposed panels). Every
 * accumulator sees exactly the canonical sequence of FMAs. */
#include <immintrin.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "kernels/expf_isa.h"
#include "kernels/kernels.h"
#include "kernels/qdot.h"
#include "kernels/quant.h"
#include "kernels/rowpar.h"

#include "kernels/inline.h"

/* 8 weights of dtype dt at p, converted exactly to f32. */
QM_INLINE __m256 load_w8(const void *p, qm_dtype dt) {
    if (dt == QM_DT_F32) return _mm256_loadu_ps(p);
    __m128i h = _mm_loadu_si128((const __m128i *)p);
    if (dt == QM_DT_BF16) return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
    return _mm256_cvtph_ps(h);
}

/* Lanes j with j + off < rem are all ones (as a blend mask). */
QM_INLINE __m256 lane_mask(int rem, int off) {
    __m256i idx = _mm256_setr_epi32(off, off + 1, off + 2, off + 3, off + 4, off + 5, off + 6, off + 7);
    return _mm256_castsi256_ps(_mm256_cmpgt_epi32(_mm256_set1_epi32(rem), idx));
}

/* The halving tree w = 4, 2, 1 of four accumulators already summed for w = 8 (lo + hi). */
QM_INLINE void reduce4(__m256 a, __m256 b, __m256 c, __m256 d, float out[4]) {
    __m256 ab = _mm256_add_ps(_mm256_permute2f128_ps(a, b, 0x20), _mm256_permute2f128_ps(a, b, 0x31));
    __m256 cd = _mm256_add_ps(_mm256_permute2f128_ps(c, d, 0x20), _mm256_permute2f128_ps(c, d, 0x31));
    /* w = 2: [ab0 ab1 cd0 cd1] + [ab2 ab3 cd2 cd3] per 128-bit half (a,c low half; b,d high). */
    __m256 s = _mm256_add_ps(_mm256_shuffle_ps(ab, cd, _MM_SHUFFLE(1, 0, 1, 0)),
                             _mm256_shuffle_ps(ab, cd, _MM_SHUFFLE(3, 2, 3, 2)));
    /* w = 1: [s0 s2 ..] + [s1 s3 ..] -> [a c a c | b d b d]. */
    __m256 u = _mm256_add_ps(_mm256_shuffle_ps(s, s, _MM_SHUFFLE(2, 0, 2, 0)),
                             _mm256_shuffle_ps(s, s, _MM_SHUFFLE(3, 1, 3, 1)));
    float f[8];
    _mm256_storeu_ps(f, u);
    out[0] = f[0];
    out[1] = f[4];
    out[2] = f[1];
    out[3] = f[5];
}

QM_INLINE float reduce1(__m256 lo, __m256 hi) {
    __m256 s8 = _mm256_add_ps(lo, hi);
    __m128 s4 = _mm_add_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps(s8, 1));
    __m128 s2 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
    __m128 s1 = _mm_add_ss(s2, _mm_shuffle_ps(s2, s2, _MM_SHUFFLE(1, 1, 1, 1)));
    return _mm_cvtss_f32(s1);
}

#define TMAX 4
#define RMAX 4
#define ACC_MAX 16 /* the most accumulators of a tile (store_tile) */
_Static_assert(RMAX * TMAX <= ACC_MAX, "store_tile's out");

/* The tile's accumulators: lo[r * ld + t] and hi[r * ld + t] for row r, token t; w = 8 per
 * accumulator (lo + hi), then the rest of the tree in groups of four (flat index k = t*R + r);
 * y[t][r] = sum (+ bias[r], one rounding). R * T <= ACC_MAX. */
QM_INLINE void store_tile(const __m256 *lo, const __m256 *hi, int ld, int R, int T, const float *bias, float *y,
                          size_t ldy) {
    float out[ACC_MAX + 4];
    const int nacc = R * T;
    for (int k = 0; k < nacc; k += 4) {
        __m256 v[4];
        for (int j = 0; j < 4; j++) {
            const int kk = k + j, at = kk % R * ld + kk / R;
            v[j] = kk < nacc ? _mm256_add_ps(lo[at], hi[at]) : _mm256_setzero_ps();
        }
        reduce4(v[0], v[1], v[2], v[3], out + k);
    }
    for (int t = 0; t < T; t++)
        for (int r = 0; r < R; r++) {
            const float d = out[t * R + r];
            y[(size_t)t * ldy + (size_t)r] = bias ? d + bias[r] : d;
        }
}

/* pf_k, pf_n: this tile's part of the prefetch of the next R rows (pf_n = 0: none). */
QM_INLINE void tile(const char *w0, size_t wstride, qm_dtype dt, int R, int T, int cols,
                    const float *x, size_t ldx, const float *bias, float *y, size_t ldy, int pf_k, int pf_n) {
    const size_t esz = dt == QM_DT_F32 ? 4 : 2;
    __m256 lo[RMAX][TMAX], hi[RMAX][TMAX];
    for (int r = 0; r < R; r++)
        for (int t = 0; t < T; t++) lo[r][t] = hi[r][t] = _mm256_setzero_ps();
    const int nfull = cols & ~15;
    /* Token tile pf_k of the row group's pf_n prefetches its part of the next R rows (rowpar.h). */
    const char *pf = w0; /* not null: it advances by 0 when there is nothing to prefetch */
    size_t pf_step = 0;
    if (pf_n && nfull > 0 && wstride == (size_t)cols * esz)
        pf_step = qm_colpar_prefetch_share(w0 + (size_t)R * wstride, (size_t)R * wstride, nfull / 16, pf_k, pf_n, &pf);
    for (int i = 0; i < nfull; i += 16) {
        for (size_t k = 0; k < pf_step; k += 64) _mm_prefetch(pf + k, _MM_HINT_T0);
        pf += pf_step;
        for (int r = 0; r < R; r++) {
            const char *wp = w0 + (size_t)r * wstride + (size_t)i * esz;
            __m256 wl = load_w8(wp, dt), wh = load_w8(wp + 8 * esz, dt);
            for (int t = 0; t < T; t++) {
                const float *xp = x + (size_t)t * ldx + i;
                lo[r][t] = _mm256_fmadd_ps(wl, _mm256_loadu_ps(xp), lo[r][t]);
                hi[r][t] = _mm256_fmadd_ps(wh, _mm256_loadu_ps(xp + 8), hi[r][t]);
            }
        }
    }
    const int rem = cols - nfull;
    if (rem > 0) {
        const __m256 ml = lane_mask(rem, 0), mh = lane_mask(rem, 8);
        float xb[TMAX][16];
        for (int t = 0; t < T; t++) {
            memset(xb[t], 0, sizeof xb[t]);
            memcpy(xb[t], x + (size_t)t * ldx + nfull, (size_t)rem * sizeof(float));
        }
        for (int r = 0; r < R; r++) {
            float wb[16] = {0}; /* 64 bytes: room for 16 elements of any dtype */
            memcpy(wb, w0 + (size_t)r * wstride + (size_t)nfull * esz, (size_t)rem * esz);
            __m256 wl = load_w8(wb, dt), wh = load_w8((const char *)wb + 8 * esz, dt);
            for (int t = 0; t < T; t++) {
                lo[r][t] = _mm256_blendv_ps(lo[r][t], _mm256_fmadd_ps(wl, _mm256_loadu_ps(xb[t]), lo[r][t]), ml);
                hi[r][t] = _mm256_blendv_ps(hi[r][t], _mm256_fmadd_ps(wh, _mm256_loadu_ps(xb[t] + 8), hi[r][t]), mh);
            }
        }
    }
    store_tile(&lo[0][0], &hi[0][0], TMAX, R, T, bias, y, ldy);
}

/* Prefill tiles: PR rows x PT tokens (2 * PR * PT accumulators of the 16 ymm registers). */
#ifndef QM_AVX2_PR
#define QM_AVX2_PR 3
#endif
#ifndef QM_AVX2_PT
#define QM_AVX2_PT 2
#endif
#define CLAMP_T(k) ((k) < TMAX ? (k) : TMAX)

/* Rows [o, o + R_) for every token: tiles of PT tokens, then the 1..PT-1 left. */
#define ROWS_TILE(R_)                                                                              \
    do {                                                                                           \
        const char *w0 = base + (size_t)o * wstride;                                               \
        const float *b0 = bias ? bias + o : NULL;                                                  \
        const int pf_n = (n_tok + QM_AVX2_PT - 1) / QM_AVX2_PT; /* the token tiles */              \
        int t = 0;                                                                                 \
        for (; t + QM_AVX2_PT <= n_tok; t += QM_AVX2_PT)                                           \
            tile(w0, wstride, dt, R_, QM_AVX2_PT, cols, x + (size_t)t * ldx, ldx, b0,              \
                 y + (size_t)t * ldy + o, ldy, t / QM_AVX2_PT, pf_n);                              \
        const float *xt = x + (size_t)t * ldx;                                                     \
        float *yt = y + (size_t)t * ldy + o;                                                       \
        const int pk = t / QM_AVX2_PT; /* the last token tile's part */                            \
        switch (n_tok - t) {                                                                       \
        case 3: tile(w0, wstride, dt, R_, CLAMP_T(3), cols, xt, ldx, b0, yt, ldy, pk, pf_n); break; \
        case 2: tile(w0, wstride, dt, R_, CLAMP_T(2), cols, xt, ldx, b0, yt, ldy, pk, pf_n); break; \
        case 1: tile(w0, wstride, dt, R_, 1, cols, xt, ldx, b0, yt, ldy, pk, pf_n); break;         \
        default: break;                                                                            \
        }                                                                                          \
    } while (0)

QM_INLINE void matmul_dt(const qm_wview *w, qm_dtype dt, const float *bias, const float *x,
                         size_t ldx, int n_tok, float *y, size_t ldy, int o_begin, int o_end) {
    const char *base = w->data;
    const size_t wstride = w->ld * (dt == QM_DT_F32 ? 4 : 2);
    const int cols = w->cols;
    int o = o_begin;
    if (n_tok == 1) /* decode: memory-bound, more rows in flight */
        for (; o + 4 <= o_end; o += 4)
            tile(base + (size_t)o * wstride, wstride, dt, 4, 1, cols, x, ldx, bias ? bias + o : NULL, y + o, ldy, 0, 1);
    for (; o + QM_AVX2_PR <= o_end; o += QM_AVX2_PR) ROWS_TILE(QM_AVX2_PR);
    for (; o < o_end; o++) ROWS_TILE(1);
}

/* ---- Block-quantized views (the exact mode), as in matmul_avx512.c ----
 *
 * A view's column i is row element e = col0 + i of the block at its data (col0 % 16 == 0) and goes
 * to lane e % 16: the 16 row elements from a multiple of 16 are one pair of ymm (lanes 0-7, 8-15).
 * Rows are walked in steps of QSTEP(dt) row elements (a 32-element block; a pair of sub-blocks of
 * a K-quant superblock), each dequantized exactly in registers with the reference's operations
 * (kernels/quant.h; codes widened to dwords and converted, or for Q5_0/Q5_1/Q6_K assembled as
 * signed bytes first); a start or an end of a view inside a step goes through the block path
 * (qm_dequant_avx2 into a buffer, the tail of 1..15 lanes zero-padded and blended back).
 *
 * Decode: register tiles of QM_AVX2_QDR rows; views of at most QSHORT columns (the forward's
 * 64-column views) keep every row's accumulators in memory and do the trees 8 rows at a time
 * (qdecode_short). Up to QAT tokens: register tiles of 2 rows x T tokens. Prefill: from QTMIN
 * tokens (short views: 6) PW_R rows dequantized into f32 against the tokens side by side
 * (qprefill_t), below that QGR rows into an f32 buffer reused by tiles of QGT tokens
 * (qgemm). Every accumulator sees exactly the canonical sequence of FMAs, so every path gives the
 * same bits. */
#define QSTEP(dt) ((dt) <= QM_DT_BF16 || (dt) >= QM_DT_Q4_K ? 64 : 32) /* plain types: the row-parallel path */
#define QRMAX 4
#define QTMAX 3
_Static_assert(QRMAX * QTMAX <= ACC_MAX, "store_tile's out");
/* Decode prefetch: see qtile_reg. */
#define QPF_AHEAD 512

/* Broadcasts from memory in the integer domain (vpbroadcastd/w, done by the load unit), as in
 * matmul_avx512.c: a float at p; an f16 at p, converted. */
QM_INLINE __m256 qbc_f32(const float *p) {
    int32_t v;
    memcpy(&v, p, 4);
    return _mm256_castsi256_ps(_mm256_set1_epi32(v));
}
QM_INLINE __m256 qbc_f16(const uint8_t *p) {
    int16_t v;
    memcpy(&v, p, 2);
    return _mm256_cvtph_ps(_mm_set1_epi16(v));
}
QM_INLINE __m256i qld_u8(const uint8_t *p) { return _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)p)); }
QM_INLINE __m256i qld_i8(const int8_t *p) { return _mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)p)); }

/* A K-quant superblock's scales: Q4_K/Q5_K ks[s] = d * sc[s], ks[8 + s] = dmin * mn[s];
 * Q6_K ks[g] = d * sc[g] (the reference's products, quant.h). */
QM_INLINE void qkscales(qm_dtype dt, const uint8_t *b, float *ks) {
    if (dt == QM_DT_Q6_K) {
        const __m256 d = qbc_f16(b + 208);
        for (int g = 0; g < 16; g += 8)
            _mm256_store_ps(ks + g, _mm256_mul_ps(d, _mm256_cvtepi32_ps(qld_i8((const int8_t *)b + 192 + g))));
        return;
    }
    const uint32_t a = qm_quant_rd32(b + 4), m = qm_quant_rd32(b + 8), c = qm_quant_rd32(b + 12);
    const __m128i sc = _mm_setr_epi32((int)(a & 0x3f3f3f3fu), (int)((c & 0x0f0f0f0fu) | ((a >> 2) & 0x30303030u)), 0, 0);
    const __m128i mn = _mm_setr_epi32((int)(m & 0x3f3f3f3fu), (int)(((c >> 4) & 0x0f0f0f0fu) | ((m >> 2) & 0x30303030u)), 0, 0);
    _mm256_store_ps(ks, _mm256_mul_ps(qbc_f16(b), _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(sc))));
    _mm256_store_ps(ks + 8, _mm256_mul_ps(qbc_f16(b + 2), _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(mn))));
}

/* 32 signed codes (bytes of q, element l in byte l) as two groups of weights: w[g][h] =
 * d_g * (float)code (+ m), d_g = d[0] and d[1] (widened from registers, no store and reload). */
QM_INLINE void qfrom_bytes(__m256i q, __m256 d0, __m256 d1, __m256 w[2][2], int hm, __m256 m) {
    const __m128i x0 = _mm256_castsi256_si128(q), x1 = _mm256_extracti128_si256(q, 1);
    const __m128i xs[4] = {x0, _mm_unpackhi_epi64(x0, x0), x1, _mm_unpackhi_epi64(x1, x1)};
    for (int k = 0; k < 4; k++) {
        const __m256 v = _mm256_mul_ps(k < 2 ? d0 : d1, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(xs[k])));
        w[k / 2][k % 2] = hm ? _mm256_add_ps(v, m) : v;
    }
}

/* Q8_0: (float)q * d */
QM_INLINE void step_q8_0(const uint8_t *b, __m256 w[4][2]) {
    const __m256 d = qbc_f16(b);
    for (int c = 0; c < 4; c++) w[c / 2][c % 2] = _mm256_mul_ps(_mm256_cvtepi32_ps(qld_i8((const int8_t *)b + 2 + 8 * c)), d);
}

/* Q4_0 Q4_1: d * (float)(q - 8); d * (float)q + m */
QM_INLINE void step_q4(qm_dtype dt, const uint8_t *b, __m256 w[4][2]) {
    const __m256i low4 = _mm256_set1_epi32(15);
    const int hm = dt == QM_DT_Q4_1;
    const __m256 d = qbc_f16(b);
    const uint8_t *qs = b + (hm ? 4 : 2);
    for (int h = 0; h < 2; h++) { /* elements 8h.. (low nibbles), 16 + 8h.. (high) */
        const __m256i v = qld_u8(qs + 8 * h);
        __m256i lo = _mm256_and_si256(v, low4), hi = _mm256_srli_epi32(v, 4);
        if (hm) {
            const __m256 m = qbc_f16(b + 2);
            w[0][h] = _mm256_add_ps(_mm256_mul_ps(d, _mm256_cvtepi32_ps(lo)), m);
            w[1][h] = _mm256_add_ps(_mm256_mul_ps(d, _mm256_cvtepi32_ps(hi)), m);
        } else {
            const __m256i eight = _mm256_set1_epi32(8);
            w[0][h] = _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_sub_epi32(lo, eight)));
            w[1][h] = _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_sub_epi32(hi, eight)));
        }
    }
}

/* Q5_0 Q5_1: d * (float)(q - 16); d * (float)q + m; q = nibble | 5th bit << 4, as bytes */
QM_INLINE void step_q5(qm_dtype dt, const uint8_t *b, __m256 w[4][2]) {
    const int hm = dt == QM_DT_Q5_1;
    const uint32_t qh = qm_quant_rd32(b + (hm ? 4 : 2));
    const __m128i qs = _mm_loadu_si128((const __m128i *)(b + (hm ? 8 : 6))), m4 = _mm_set1_epi8(0x0f);
    const __m256i nib = _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_and_si128(qs, m4)),
                                                _mm_and_si128(_mm_srli_epi16(qs, 4), m4), 1);
    /* byte l: bit l of qh, as 0x10 (byte l of the broadcast word l / 8, then its bit l % 8) */
    const __m256i sel = _mm256_shuffle_epi8(_mm256_set1_epi32((int)qh),
                                            _mm256_setr_epi64x(0, 0x0101010101010101ll, 0x0202020202020202ll,
                                                               0x0303030303030303ll));
    const __m256i bit = _mm256_set1_epi64x(0x8040201008040201ll);
    const __m256i h5 = _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(sel, bit), bit), _mm256_set1_epi8(0x10));
    __m256i q = _mm256_or_si256(nib, h5);
    if (!hm) q = _mm256_sub_epi8(q, _mm256_set1_epi8(16));
    const __m256 dv = qbc_f16(b);
    qfrom_bytes(q, dv, dv, w, hm, hm ? qbc_f16(b + 2) : _mm256_setzero_ps());
}

/* step_q5 for one token, without byte-to-dword shuffles: the block's 16 code bytes broadcast to
 * both halves and placed by one pshufb so that byte k of dword p (lane p) holds element 8k + p
 * (k = 0, 1: low nibbles of qs[p], qs[8 + p]; k = 2, 3: their high nibbles); the fifth bits are
 * then qh's byte k in every dword, bit p (qh broadcast, a bit mask per lane, cmpeq); vector k is
 * byte k of every dword, shifted and masked. Q5_0: d * (float)q - 16 d as one FMA (d q and 16 d
 * are exact in f32, so the difference rounds once, to the reference's exact d (q - 16)); Q5_1:
 * d * (float)q + m as one FMA (the reference's product is exact, its sum rounds once). Each weight
 * vector FMA'd into lo (lanes 0-7) or hi (8-15) at once, each lane's order: elements l, l + 16. */
QM_INLINE void step_q5_dot(qm_dtype dt, const uint8_t *b, const float *xe, __m256 *lo, __m256 *hi) {
    const int hm = dt == QM_DT_Q5_1;
    const __m256i qs = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(b + (hm ? 8 : 6))));
    const __m256i place = _mm256_setr_epi8(0, 8, 0, 8, 1, 9, 1, 9, 2, 10, 2, 10, 3, 11, 3, 11, /* */
                                           4, 12, 4, 12, 5, 13, 5, 13, 6, 14, 6, 14, 7, 15, 7, 15);
    const __m256i t = _mm256_shuffle_epi8(qs, place);
    const __m256i nib = _mm256_or_si256(_mm256_and_si256(t, _mm256_set1_epi32(0x00000f0f)),
                                        _mm256_and_si256(_mm256_srli_epi16(t, 4), _mm256_set1_epi32(0x0f0f0000)));
    int32_t qh;
    memcpy(&qh, b + (hm ? 4 : 2), 4);
    const __m256i bit = _mm256_setr_epi32(0x01010101, 0x02020202, 0x04040404, 0x08080808, 0x10101010, 0x20202020,
                                          0x40404040, (int)0x80808080u);
    const __m256i h5 = _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(_mm256_set1_epi32(qh), bit), bit),
                                        _mm256_set1_epi8(0x10));
    const __m256i q = _mm256_or_si256(nib, h5);
    const __m256 d = qbc_f16(b);
    const __m256 c = hm ? qbc_f16(b + 2) : _mm256_mul_ps(d, _mm256_set1_ps(-16.0f));
    const __m256i ff = _mm256_set1_epi32(0xff);
    __asm__("" : "+r"(xe));
    const __m256i v[4] = {_mm256_and_si256(q, ff), _mm256_and_si256(_mm256_srli_epi32(q, 8), ff),
                          _mm256_and_si256(_mm256_srli_epi32(q, 16), ff), _mm256_srli_epi32(q, 24)};
    for (int k = 0; k < 4; k++) { /* elements 8k .. 8k + 7: lanes 0-7 (k even) or 8-15 */
        const __m256 w = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(v[k]), c);
        if (k & 1) *hi = _mm256_fmadd_ps(w, _mm256_loadu_ps(xe + 8 * k), *hi);
        else *lo = _mm256_fmadd_ps(w, _mm256_loadu_ps(xe + 8 * k), *lo);
    }
}

/* Q4_K Q5_K: the codes of elements 8c.. of sub-block 2j + u (u = 0: low nibbles, 1: high; Q5_K's
 * fifth bit, bit 2j + u of qh[l], added). */
QM_INLINE __m256i k_codes(qm_dtype dt, const uint8_t *b, int j, int u, int c) {
    const int k5 = dt == QM_DT_Q5_K;
    const __m256i v = qld_u8(b + (k5 ? 48 : 16) + 32 * j + 8 * c);
    __m256i q = u ? _mm256_srli_epi32(v, 4) : _mm256_and_si256(v, _mm256_set1_epi32(15));
    if (k5) {
        const __m256i hv = _mm256_slli_epi32(qld_u8(b + 16 + 8 * c), 4);
        q = _mm256_or_si256(q, _mm256_and_si256(_mm256_srl_epi32(hv, _mm_cvtsi32_si128(2 * j + u)), _mm256_set1_epi32(16)));
    }
    return q;
}

/* Q4_K Q5_K: (d * sc) * (float)q - dmin * mn, sub-blocks 2j (low nibbles), 2j + 1. One FMA for
 * the multiply and the subtraction, the same bits: d * sc (11 x 6 significant bits) and its
 * product with a code (4 or 5 bits) are exact in f32, so only the subtraction rounds, once, in
 * both (quant.h's reference rounds the product, exactly, then the difference). */
QM_INLINE void step_k(qm_dtype dt, const uint8_t *b, int j, int fresh, float *ks, __m256 w[4][2]) {
    if (fresh) qkscales(dt, b, ks);
    const __m256 ds0 = qbc_f32(ks + 2 * j), dm0 = qbc_f32(ks + 8 + 2 * j);
    const __m256 ds1 = qbc_f32(ks + 2 * j + 1), dm1 = qbc_f32(ks + 9 + 2 * j);
    for (int c = 0; c < 4; c++) { /* elements 8c.. of both sub-blocks */
        w[c / 2][c % 2] = _mm256_fmsub_ps(ds0, _mm256_cvtepi32_ps(k_codes(dt, b, j, 0, c)), dm0);
        w[2 + c / 2][c % 2] = _mm256_fmsub_ps(ds1, _mm256_cvtepi32_ps(k_codes(dt, b, j, 1, c)), dm1);
    }
}

/* step_k for one token: each weight vector FMA'd into lo (lanes 0-7) or hi (8-15) as soon as it
 * is made, sub-block 2j then 2j + 1 (each lane's order: elements l, l + 16, l + 32, l + 48), x
 * read by the FMAs from memory. Made all at once, a step's 8 weight vectors for each of 4 rows
 * did not fit AVX2's 16 registers and went through the stack: one thread, Q4_K 4096 x 1536,
 * about 33 -> 36 GFLOP/s (the codes are loaded twice, once per sub-block). */
QM_INLINE void step_k_dot(qm_dtype dt, const uint8_t *b, int j, int fresh, float *ks, const float *xe, __m256 *lo,
                          __m256 *hi) {
    if (fresh) qkscales(dt, b, ks);
    __asm__("" : "+r"(xe)); /* not the same x registers for every row */
    for (int u = 0; u < 2; u++) {
        const __m256 ds = qbc_f32(ks + 2 * j + u), dm = qbc_f32(ks + 8 + 2 * j + u);
        for (int c = 0; c < 4; c++) { /* elements 8c.. of sub-block 2j + u */
            const __m256 w = _mm256_fmsub_ps(ds, _mm256_cvtepi32_ps(k_codes(dt, b, j, u, c)), dm);
            const __m256 xv = _mm256_loadu_ps(xe + 32 * u + 8 * c);
            if (c & 1) *hi = _mm256_fmadd_ps(w, xv, *hi);
            else *lo = _mm256_fmadd_ps(w, xv, *lo);
        }
    }
}

/* Q6_K: (d * sc[g]) * (float)(q - 32); layout in quant.h */
QM_INLINE void step_q6_k(qm_dtype dt, const uint8_t *b, int j, int fresh, float *ks, __m256 w[4][2]) {
    if (fresh) qkscales(dt, b, ks);
    /* step j = (h, k) = (j / 2, 2 (j % 2) + u), u = 0, 1: low 4 bits from ql[64h + 32u..]
     * (nibble j % 2), high 2 bits from qh[32h..] (bits 2k, 2k + 1) */
    const int h = j >> 1;
    const __m256i hq = _mm256_loadu_si256((const __m256i *)(b + 128 + 32 * h));
    for (int u = 0; u < 2; u++) {
        __m256i lo = _mm256_loadu_si256((const __m256i *)(b + 64 * h + 32 * u)), hi;
        if (j & 1) {
            lo = _mm256_srli_epi16(lo, 4);
            hi = u ? _mm256_srli_epi16(hq, 2) : hq;
        } else {
            hi = _mm256_slli_epi16(hq, u ? 2 : 4);
        }
        const __m256i q = _mm256_or_si256(_mm256_and_si256(lo, _mm256_set1_epi8(0x0f)),
                                          _mm256_and_si256(hi, _mm256_set1_epi8(0x30)));
        qfrom_bytes(_mm256_sub_epi8(q, _mm256_set1_epi8(32)), qbc_f32(ks + 4 * j + 2 * u), qbc_f32(ks + 4 * j + 2 * u + 1),
                    w + 2 * u, 0, _mm256_setzero_ps());
    }
}

/* The QSTEP(dt) / 16 weight vector pairs of row elements [e, e + QSTEP) (e a multiple of QSTEP):
 * b is the block that holds them, j = e % 256 / 64 (K-quants: which pair of sub-blocks). K-quants:
 * ks holds the superblock's scales, refreshed when fresh. */
QM_INLINE void qstep(qm_dtype dt, const uint8_t *b, int j, int fresh, float *ks, __m256 w[4][2]) {
    switch (dt) {
    case QM_DT_Q8_0: step_q8_0(b, w); break;
    case QM_DT_Q4_0:
    case QM_DT_Q4_1: step_q4(dt, b, w); break;
    case QM_DT_Q5_0:
    case QM_DT_Q5_1: step_q5(dt, b, w); break;
    case QM_DT_Q4_K:
    case QM_DT_Q5_K: step_k(dt, b, j, fresh, ks, w); break;
    case QM_DT_Q6_K: step_q6_k(dt, b, j, fresh, ks, w); break;
    default: /* a plain type (the row-parallel path only): 64 elements, converted exactly */
        for (int g = 0; g < 4; g++) {
            w[g][0] = load_w8(b + (size_t)(16 * g) * qm_dtype_block_bytes(dt), dt);
            w[g][1] = load_w8(b + (size_t)(16 * g + 8) * qm_dtype_block_bytes(dt), dt);
        }
        break;
    }
}

/* Lanes j with j + off < rem are all ones (as a blend mask). */
QM_INLINE __m256 qlane_mask(int rem, int off) {
    return _mm256_castsi256_ps(_mm256_cmpgt_epi32(_mm256_set1_epi32(rem), _mm256_setr_epi32(off, off + 1, off + 2, off + 3,
                                                                                            off + 4, off + 5, off + 6, off + 7)));
}

/* Row elements [ea, eb) of R rows (ea a multiple of 16) by the block path: each block dequantized
 * into a buffer; a last group of 1..15 lanes zero-padded and blended back (other lanes untouched). */
QM_INLINE void qedge(const char *w0, size_t wstride, qm_dtype dt, int col0, int R, int T, int ea, int eb,
                     const float *x, size_t ldx, __m256 lo[QRMAX][QTMAX], __m256 hi[QRMAX][QTMAX]) {
    const int qk = qm_dtype_block(dt);
    const size_t bb = qm_dtype_block_bytes(dt);
    float buf[256] __attribute__((aligned(32)));
    for (int c = ea / qk * qk; c < eb; c += qk) {
        const int lo_e = ea > c ? ea : c, hi_e = eb < c + qk ? eb : c + qk;
        for (int r = 0; r < R; r++) {
            qm_dequant_avx2(dt, w0 + (size_t)r * wstride + (size_t)(c / qk) * bb, 1, buf);
            for (int j = lo_e; j < hi_e; j += 16) {
                const __m256 wl = _mm256_load_ps(buf + (j - c)), wh = _mm256_load_ps(buf + (j - c) + 8);
                const int rem = hi_e - j;
                for (int t = 0; t < T; t++) {
                    const float *xp = x + (size_t)t * ldx + (j - col0);
                    if (rem >= 16) {
                        lo[r][t] = _mm256_fmadd_ps(wl, _mm256_loadu_ps(xp), lo[r][t]);
                        hi[r][t] = _mm256_fmadd_ps(wh, _mm256_loadu_ps(xp + 8), hi[r][t]);
                    } else {
                        float xb[16] = {0};
                        memcpy(xb, xp, (size_t)rem * sizeof(float));
                        const __m256 ml = qlane_mask(rem, 0), mh = qlane_mask(rem, 8);
                        lo[r][t] = _mm256_blendv_ps(lo[r][t], _mm256_fmadd_ps(wl, _mm256_loadu_ps(xb), lo[r][t]), ml);
                        hi[r][t] = _mm256_blendv_ps(hi[r][t], _mm256_fmadd_ps(wh, _mm256_loadu_ps(xb + 8), hi[r][t]), mh);
                    }
                }
            }
        }
    }
}

/* The steps of a view's row elements [col0, col0 + cols): [e0, e1), whole steps; the rest, edges. */
QM_INLINE void qsteps(qm_dtype dt, int col0, int cols, int *e0, int *e1) {
    const int S = QSTEP(dt), end = col0 + cols;
    *e0 = (col0 + S - 1) / S * S;
    *e1 = end / S * S;
    if (*e0 >= *e1) *e0 = *e1 = end;
}

/* R rows x T tokens, every weight step dequantized in registers once for the T tokens. */
QM_INLINE void qtile_reg(const char *w0, size_t wstride, qm_dtype dt, int col0, int R, int T, int cols,
                         const float *x, size_t ldx, const float *bias, float *y, size_t ldy, int keep, float *accout) {
    __m256 lo[QRMAX][QTMAX], hi[QRMAX][QTMAX];
    float ks[QRMAX][16] __attribute__((aligned(32)));
    for (int r = 0; r < R; r++)
        for (int t = 0; t < T; t++) lo[r][t] = hi[r][t] = _mm256_setzero_ps();
    const int S = QSTEP(dt), G = S / 16, end = col0 + cols;
    int e0, e1;
    qsteps(dt, col0, cols, &e0, &e1);
    if (col0 < e0) qedge(w0, wstride, dt, col0, R, T, col0, e0, x, ldx, lo, hi);
    /* Decode prefetch, as in matmul_avx512.c. */
    const size_t step_bytes = qm_dtype_block_bytes(dt) * (size_t)S / (size_t)qm_dtype_block(dt); /* about */
    const int nst = (e1 - e0) / S, pf_next = T == 1 && nst >= 4, pf_ahead = T == 1 && nst > 0 && nst < 4;
    const size_t vbytes = (size_t)(end + qm_dtype_block(dt) - 1) / (size_t)qm_dtype_block(dt) * qm_dtype_block_bytes(dt);
    if (pf_ahead)
        for (int r = 0; r < R; r++)
            _mm_prefetch(w0 + (size_t)r * wstride + (size_t)(e0 / S) * step_bytes + QPF_AHEAD, _MM_HINT_T0);
    for (int e = e0; e < e1; e += S) {
        const unsigned ue = (unsigned)e;
        const int fresh = e == e0 || ue % 256 == 0, j = (int)(ue % 256 / 64);
        const char *wb = w0 + (size_t)(ue / (unsigned)qm_dtype_block(dt)) * qm_dtype_block_bytes(dt);
        const float *xe = x + (e - col0);
        if (pf_next) qm_prefetch_next_tile(w0, wstride, R, (size_t)((e - e0) / S) * 64, vbytes);
        if (T == 1 && (dt == QM_DT_Q4_K || dt == QM_DT_Q5_K)) {
#pragma GCC unroll 4
            for (int r = 0; r < R; r++)
                step_k_dot(dt, (const uint8_t *)wb + (size_t)r * wstride, j, fresh, ks[r], xe, &lo[r][0], &hi[r][0]);
            continue;
        }
        if (T == 1 && (dt == QM_DT_Q5_0 || dt == QM_DT_Q5_1)) {
#pragma GCC unroll 4
            for (int r = 0; r < R; r++) step_q5_dot(dt, (const uint8_t *)wb + (size_t)r * wstride, xe, &lo[r][0], &hi[r][0]);
            continue;
        }
        for (int r = 0; r < R; r++) {
            __m256 w[4][2];
            qstep(dt, (const uint8_t *)wb + (size_t)r * wstride, j, fresh, ks[r], w);
            for (int g = 0; g < G; g++)
                for (int t = 0; t < T; t++) {
                    const float *xp = xe + (size_t)t * ldx + 16 * g;
                    lo[r][t] = _mm256_fmadd_ps(w[g][0], _mm256_loadu_ps(xp), lo[r][t]);
                    hi[r][t] = _mm256_fmadd_ps(w[g][1], _mm256_loadu_ps(xp + 8), hi[r][t]);
                }
        }
    }
    if (e1 < end) qedge(w0, wstride, dt, col0, R, T, e1, end, x, ldx, lo, hi);
    if (keep) /* T == 1: the accumulators themselves (lanes 0-15), reduced later (qreduce8) */
        for (int r = 0; r < R; r++) {
            _mm256_store_ps(accout + 16 * r, lo[r][0]);
            _mm256_store_ps(accout + 16 * r + 8, hi[r][0]);
        }
    else
        store_tile(&lo[0][0], &hi[0][0], QTMAX, R, T, bias, y, ldy);
}

/* The halving tree of 8 accumulators at once, each already summed for w = 8 (lanes 0-7 + 8-15,
 * s8[r]): lane r of the result is accumulator r's sum; w = 4 across 128-bit halves, 2 and 1
 * within, the lanes of several accumulators side by side. qreduce8: accumulators in memory
 * (a[16 * r ..], r < 8; rows n.. are not read and count as zero), y[r] = sum (+ bias[r], one
 * rounding) for r < n. */
QM_INLINE __m256 qtree8(const __m256 s8[8]) {
    __m256 s4[4], s2[2];
    for (int k = 0; k < 4; k++) /* half h: acc 2k + h, lanes 0-3 + 4-7 */
        s4[k] = _mm256_add_ps(_mm256_permute2f128_ps(s8[2 * k], s8[2 * k + 1], 0x20),
                              _mm256_permute2f128_ps(s8[2 * k], s8[2 * k + 1], 0x31));
    for (int k = 0; k < 2; k++) /* half h: (acc 4k + h: l0+l2, l1+l3), (acc 4k + 2 + h: ...) */
        s2[k] = _mm256_add_ps(_mm256_shuffle_ps(s4[2 * k], s4[2 * k + 1], _MM_SHUFFLE(1, 0, 1, 0)),
                              _mm256_shuffle_ps(s4[2 * k], s4[2 * k + 1], _MM_SHUFFLE(3, 2, 3, 2)));
    /* half h: sums of acc h, 2 + h, 4 + h, 6 + h */
    __m256 s1 = _mm256_add_ps(_mm256_shuffle_ps(s2[0], s2[1], _MM_SHUFFLE(2, 0, 2, 0)),
                              _mm256_shuffle_ps(s2[0], s2[1], _MM_SHUFFLE(3, 1, 3, 1)));
    return _mm256_permutevar8x32_ps(s1, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

QM_INLINE void qreduce8(const float *a, int n, const float *bias, float *y) {
    __m256 s8[8];
    for (int r = 0; r < 8; r++)
        s8[r] = r < n ? _mm256_add_ps(_mm256_load_ps(a + 16 * r), _mm256_load_ps(a + 16 * r + 8)) : _mm256_setzero_ps();
    float out[8];
    _mm256_storeu_ps(out, qtree8(s8));
    for (int r = 0; r < n && r < 8; r++) y[r] = bias ? out[r] + bias[r] : out[r];
}

/* Decode of short views (the forward's 64-column views): every row's steps first, accumulators
 * kept in memory, then the trees 8 rows at a time, so that no row waits on the one before. */
#define QSB 64
QM_INLINE void qdecode_short(const char *base, size_t wstride, qm_dtype dt, int col0, int cols, const float *x,
                             const float *bias, float *y, int o_begin, int o_end) {
    float acc[QSB * 16] __attribute__((aligned(32)));
    for (int o0 = o_begin; o0 < o_end; o0 += QSB) {
        const int n = o_end - o0 < QSB ? o_end - o0 : QSB;
        int r = 0;
        for (; r + 4 <= n; r += 4)
            qtile_reg(base + (size_t)(o0 + r) * wstride, wstride, dt, col0, 4, 1, cols, x, 0, NULL, NULL, 0, 1, acc + 16 * r);
        for (; r < n; r++)
            qtile_reg(base + (size_t)(o0 + r) * wstride, wstride, dt, col0, 1, 1, cols, x, 0, NULL, NULL, 0, 1, acc + 16 * r);
        for (int k = 0; k < n; k += 8) qreduce8(acc + 16 * k, n - k, bias ? bias + o0 + k : NULL, y + o0 + k);
    }
}

/* A plain type's row (f32, f16, bf16; row: its view's column 0), converted exactly into out[0 .. cols). */
QM_INLINE void prow_f32(const char *row, qm_dtype dt, int cols, float *out) {
    const size_t esz = dt == QM_DT_F32 ? 4 : 2;
    int i = 0;
    for (; i + 8 <= cols; i += 8) _mm256_storeu_ps(out + i, load_w8(row + (size_t)i * esz, dt));
    if (i < cols) {
        float wb[8] = {0}, f[8]; /* 32 bytes: room for 8 elements of any plain dtype */
        memcpy(wb, row + (size_t)i * esz, (size_t)(cols - i) * esz);
        _mm256_storeu_ps(f, load_w8(wb, dt));
        memcpy(out + i, f, (size_t)(cols - i) * sizeof(float));
    }
}

/* One row's view, dequantized exactly into out[0 .. cols) (f32, as qm_dequant_range). */
QM_INLINE void qrow_f32(const char *row, qm_dtype dt, int col0, int cols, float *out) {
    if (!qm_dtype_is_quant(dt)) { /* row: the view's column 0; col0: the first column wanted */
        prow_f32(row + (size_t)col0 * (dt == QM_DT_F32 ? 4 : 2), dt, cols, out);
        return;
    }
    const int S = QSTEP(dt), G = S / 16, qk = qm_dtype_block(dt), end = col0 + cols;
    const size_t bb = qm_dtype_block_bytes(dt);
    float ks[16] __attribute__((aligned(32)));
    float buf[256] __attribute__((aligned(32)));
    int e0, e1;
    qsteps(dt, col0, cols, &e0, &e1);
    for (int part = 0; part < 2; part++) { /* the edges */
        const int ea = part ? e1 : col0, eb = part ? end : e0;
        for (int c = ea / qk * qk; ea < eb && c < eb; c += qk) {
            const int lo = ea > c ? ea : c, hi = eb < c + qk ? eb : c + qk;
            qm_dequant_avx2(dt, row + (size_t)(c / qk) * bb, 1, buf);
            for (int j = lo; j < hi; j++) out[j - col0] = buf[j - c];
        }
    }
    for (int e = e0; e < e1; e += S) {
        __m256 w[4][2];
        const unsigned ue = (unsigned)e;
        qstep(dt, (const uint8_t *)row + (size_t)(ue / (unsigned)qk) * bb, (int)(ue % 256 / 64), e == e0 || ue % 256 == 0, ks, w);
        for (int g = 0; g < G; g++) {
            _mm256_storeu_ps(out + (e - col0) + 16 * g, w[g][0]);
            _mm256_storeu_ps(out + (e - col0) + 16 * g + 8, w[g][1]);
        }
    }
}

/* R rows of f32 weights (row r at buf + r*ldb, 32-byte aligned, cols long) x T tokens; a tail of
 * 1..15 columns zero-padded and blended back. */
QM_INLINE void qgemm(const float *buf, size_t ldb, int R, int T, int cols, const float *x, size_t ldx,
                     const float *bias, float *y, size_t ldy) {
    __m256 lo[QRMAX][QTMAX], hi[QRMAX][QTMAX];
    for (int r = 0; r < R; r++)
        for (int t = 0; t < T; t++) lo[r][t] = hi[r][t] = _mm256_setzero_ps();
    const int nfull = cols & ~15;
    for (int i = 0; i < nfull; i += 16) {
        __m256 wl[QRMAX], wh[QRMAX];
        for (int r = 0; r < R; r++) {
            wl[r] = _mm256_load_ps(buf + (size_t)r * ldb + i);
            wh[r] = _mm256_load_ps(buf + (size_t)r * ldb + i + 8);
        }
        for (int t = 0; t < T; t++) {
            const __m256 xl = _mm256_loadu_ps(x + (size_t)t * ldx + i), xh = _mm256_loadu_ps(x + (size_t)t * ldx + i + 8);
            for (int r = 0; r < R; r++) {
                lo[r][t] = _mm256_fmadd_ps(wl[r], xl, lo[r][t]);
                hi[r][t] = _mm256_fmadd_ps(wh[r], xh, hi[r][t]);
            }
        }
    }
    const int rem = cols - nfull;
    if (rem > 0) {
        const __m256 ml = qlane_mask(rem, 0), mh = qlane_mask(rem, 8);
        for (int t = 0; t < T; t++) {
            float xb[16] = {0};
            memcpy(xb, x + (size_t)t * ldx + nfull, (size_t)rem * sizeof(float));
            for (int r = 0; r < R; r++) {
                float wb[16] = {0};
                memcpy(wb, buf + (size_t)r * ldb + nfull, (size_t)rem * sizeof(float));
                lo[r][t] = _mm256_blendv_ps(lo[r][t], _mm256_fmadd_ps(_mm256_loadu_ps(wb), _mm256_loadu_ps(xb), lo[r][t]), ml);
                hi[r][t] = _mm256_blendv_ps(hi[r][t], _mm256_fmadd_ps(_mm256_loadu_ps(wb + 8), _mm256_loadu_ps(xb + 8), hi[r][t]), mh);
            }
        }
    }
    store_tile(&lo[0][0], &hi[0][0], QTMAX, R, T, bias, y, ldy);
}

/* Every token against rows buf[0..R): tiles of QGT tokens, then the 1..QGT-1 left. */
#define QGR 2
#define QGT 3
QM_INLINE void qgemm_rows(const float *buf, size_t ldb, int R, int cols, const float *x, size_t ldx, int n_tok,
                          const float *bias, float *y, size_t ldy) {
    int t = 0;
    for (; t + QGT <= n_tok; t += QGT) qgemm(buf, ldb, R, QGT, cols, x + (size_t)t * ldx, ldx, bias, y + (size_t)t * ldy, ldy);
    const float *xt = x + (size_t)t * ldx;
    float *yt = y + (size_t)t * ldy;
    switch (n_tok - t) {
    case 2: qgemm(buf, ldb, R, 2, cols, xt, ldx, bias, yt, ldy); break;
    case 1: qgemm(buf, ldb, R, 1, cols, xt, ldx, bias, yt, ldy); break;
    default: break;
    }
}

static void qgemm_rows2(const float *buf, size_t ldb, int cols, const float *x, size_t ldx, int n_tok,
                        const float *bias, float *y, size_t ldy) {
    qgemm_rows(buf, ldb, QGR, cols, x, ldx, n_tok, bias, y, ldy);
}
static void qgemm_rows1(const float *buf, size_t ldb, int cols, const float *x, size_t ldx, int n_tok,
                        const float *bias, float *y, size_t ldy) {
    qgemm_rows(buf, ldb, 1, cols, x, ldx, n_tok, bias, y, ldy);
}

/* ---- Prefill: the tokens side by side ----
 * A group of up to PG tokens has its activations transposed once, lane-major per chunk of kc
 * columns and tile of 16 tokens (pw_transpose): view column i = m kc + l + 16 j (chunk m, lane l,
 * step j) of token t = 16 g + u at xt[(((m 16 + l) ng + g) nj + j) 16 + u], nj = kc / 16, ng the
 * group's tiles of 16 tokens, so that a lane's steps for one tile are one contiguous run (with
 * all the group's tokens side by side a step, the steps were a 576-byte stride: `bench_qmatmul pre
 * avx2 BF16 4864 896 512`, one thread, Zen 4, alternated: 84-91 -> 87-93 GFLOP/s, 896 4864 512:
 * 68-72 -> 73-74; `qmesh bench -m r05-bf16.gguf --isa avx2 --prompt 512`, 2 threads, alternated
 * three times: 199-206 -> 202-211 tok/s). PW_R rows, converted or dequantized to f32 once a group
 * (row-major, qrow_f32), go against
 * PW_V vectors of 8 tokens: for lane l a ymm holds lane l of one row for 8 tokens and takes the
 * FMAs w[r][l + 16 j] * xt[l][j][8 v ..] in increasing j, the weight broadcast from the L1 and the
 * tokens one load, so every (row, token, lane) sees its canonical FMA sequence: 12 FMAs for 2
 * loads and 6 broadcasts. The lanes' halving tree (w = 8, 4, 2, 1) is then element-wise adds of
 * lane vectors. Chunks carry each lane's accumulators over (kept in memory in between). The panels
 * this replaced held one lane of 8 rows (16 rows dequantized and transposed, x broadcast from its
 * rows, a pass over 512 columns of 16 rows, 32 KB, for every 6 tokens): one thread (AMD EPYC Zen 4,
 * `bench_qmatmul pre avx2 BF16 4864 896 512`) 78-80 -> 89-93 GFLOP/s; `qmesh bench -m
 * r05-bf16.gguf --isa avx2 --prompt 512`, alternated: 1 thread 88-89 -> 96-97 tok/s, 2 threads
 * 168-173 -> 183-191 (with whole rows rather than chunks, 6 rows of 1536 columns overflowed the
 * L1: no faster on 2 threads). 4 rows x 3 vectors ran as fast, but 128 tokens are not whole tiles
 * of 24; chunks of 256 or 384 columns were no faster. */
#ifndef PW_R
#define PW_R 6
#endif
#define PW_V 2
#define PW_T (8 * PW_V)
#ifndef PG
#define PG 128 /* tokens a group: the rows are converted once for them (64: 156-168 tok/s above) */
#endif
#ifndef PW_KC
#define PW_KC 512 /* the most columns a chunk: a chunk of PW_R rows, 12 KB, stays in the L1 */
#endif
/* bf16 rows, read as they are, take half the bytes: chunks of up to 1536 columns (18 KB) make
 * each lane's run of FMAs three times as long as 512 did, its accumulators loaded and stored a
 * third as often (`bench_qmatmul pre avx2 BF16 R C 512`, one thread, AMD EPYC Zen 4, 2026-12-06,
 * 512 -> 1536: 4864 x 896 92.9 -> 98.3 GFLOP/s, 896 x 4864 73.8 -> 85.1, 8960 x 1536 85.0 ->
 * 92.7, 1536 x 8960 72.7 -> 82.5; 1024 and 2048 in between or no better). f32 rows (converted,
 * dequantized) stay at 512: at 1024 they were no faster. */
#ifndef PW_KC_BF16
#define PW_KC_BF16 1536
#endif

/* The 8 x 8 floats v[i] lane j -> v[j] lane i. */
QM_INLINE void transpose8(__m256 v[8]) {
    __m256 t[8], u[8];
    for (int i = 0; i < 8; i += 2) {
        t[i] = _mm256_unpacklo_ps(v[i], v[i + 1]);
        t[i + 1] = _mm256_unpackhi_ps(v[i], v[i + 1]);
    }
    for (int i = 0; i < 8; i += 4) {
        u[i] = _mm256_shuffle_ps(t[i], t[i + 2], 0x44);
        u[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], 0xee);
        u[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0x44);
        u[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0xee);
    }
    for (int j = 0; j < 4; j++) {
        v[j] = _mm256_permute2f128_ps(u[j], u[j + 4], 0x20);
        v[j + 4] = _mm256_permute2f128_ps(u[j], u[j + 4], 0x31);
    }
}

/* Tiles of 16 tokens in a group of tg. */
QM_INLINE int pw_tiles(int tg) { return (tg + 15) / 16; }

/* Floats of a group's xt: whole chunks of kc columns x whole tiles of 16 tokens. */
QM_INLINE size_t pw_xt_floats(int cols, int kc, int tg) {
    return (size_t)((cols + kc - 1) / kc) * (size_t)kc * (size_t)pw_tiles(tg) * 16;
}

/* The place of view column i, token t, in xt (above) of a group of ng tiles. */
QM_INLINE size_t pw_at(int i, int t, int kc, int ng) {
    const int m = i / kc, r = i % kc;
    return (((size_t)(m * 16 + r % 16) * (size_t)ng + (size_t)(t / 16)) * (size_t)(kc / 16) + (size_t)(r / 16)) * 16 +
           (size_t)(t % 16);
}

/* xt (above) of the tg tokens of x (x: the view's column 0 of the group's first token); a tile's
 * tokens past tg in its first 8: zero; its second 8 past tg: not written (not read: V = 1). */
static void pw_transpose(const float *x, size_t ldx, int tg, int cols, int kc, float *xt) {
    const int ng = pw_tiles(tg);
    for (int t0 = 0; t0 < tg; t0 += 8)
        for (int c0 = 0; c0 < cols; c0 += 8) {
            const int nc = cols - c0 < 8 ? cols - c0 : 8;
            __m256 v[8];
            for (int i = 0; i < 8; i++) {
                const float *xp = x + (size_t)(t0 + i) * ldx + (size_t)c0;
                if (t0 + i >= tg) {
                    v[i] = _mm256_setzero_ps();
                } else if (nc == 8) {
                    v[i] = _mm256_loadu_ps(xp);
                } else {
                    float b[8] = {0};
                    memcpy(b, xp, (size_t)nc * sizeof(float));
                    v[i] = _mm256_loadu_ps(b);
                }
            }
            transpose8(v); /* v[k]: column c0 + k of tokens t0 .. t0 + 7 */
            for (int k = 0; k < nc; k++) _mm256_store_ps(xt + pw_at(c0 + k, t0, kc, ng), v[k]);
        }
}

/* Element i of a row, as f32, in every lane: f32 rows as they are, bf16 rows (bf16: 1) read as
 * they are too (the bf16 bits widened to f32's upper half: the exact conversion), so a bf16 tile
 * needs no f32 copy of its rows and keeps half the L1: `bench_qmatmul pre avx2 BF16 9728 896 16`,
 * one thread, Zen 4: 79-80 -> 89-93 GFLOP/s (the conversion and its stores were 13% of the
 * kernel); a bf16 broadcast and shift per weight cost about what the f32 broadcast does. */
QM_INLINE __m256 wide_weight(const void *row, size_t i, int bf16) {
    if (bf16)
        return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_set1_epi16((short)((const uint16_t *)row)[i]), 16));
    return _mm256_broadcast_ss((const float *)row + i);
}

/* Lane l's steps [0, n) of a chunk, PW_R rows x V vectors of 8 tokens: wl[r] is row r's weight of
 * the lane's first step (the next one 16 floats on), xl the tile's tokens (16 floats a step); the
 * accumulators continue lb[r PW_V + v] (from +0 when first) and are left there. */
QM_INLINE void pw_lane(const void *const wl[PW_R], int bf16, int n, const float *xl, int V, __m256 *lb,
                       int first) {
    __m256 acc[PW_R][PW_V];
    for (int r = 0; r < PW_R; r++)
        for (int v = 0; v < V; v++) acc[r][v] = first ? _mm256_setzero_ps() : lb[r * PW_V + v];
    for (int j = 0; j < n; j++) {
        __m256 xv[PW_V];
        for (int v = 0; v < V; v++) xv[v] = _mm256_load_ps(xl + (size_t)j * 16 + 8 * v);
        for (int r = 0; r < PW_R; r++) {
            const __m256 b = wide_weight(wl[r], (size_t)(16 * j), bf16);
            for (int v = 0; v < V; v++) acc[r][v] = _mm256_fmadd_ps(b, xv[v], acc[r][v]);
        }
    }
    for (int r = 0; r < PW_R; r++)
        for (int v = 0; v < V; v++) lb[r * PW_V + v] = acc[r][v];
}

/* The dots of PW_R rows (wf[r]: row r as f32, or as bf16 when bf16, from the view's column 0, cols long) x the 8 V
 * tokens of tile g of xt (as pw_transpose made it with kc, ng tiles): out[r PW_T + t]. */
QM_INLINE void pw_tile(const void *const wf[PW_R], int bf16, int cols, int kc, const float *xt, int ng, int g, int V,
                       float *out) {
    __m256 lb[16][PW_R * PW_V];
    const int nj = kc / 16;
    for (int c0 = 0, m = 0; c0 < cols; c0 += kc, m++) {
        const int kcm = cols - c0 < kc ? cols - c0 : kc;
        for (int l = 0; l < 16; l++) {
            const void *wl[PW_R];
            for (int r = 0; r < PW_R; r++)
                wl[r] = bf16 ? (const void *)((const uint16_t *)wf[r] + c0 + l)
                             : (const void *)((const float *)wf[r] + c0 + l);
            const int n = kcm > l ? (kcm - l + 15) / 16 : 0;
            const float *xl = xt + ((size_t)(m * 16 + l) * (size_t)ng + (size_t)g) * (size_t)nj * 16;
            pw_lane(wl, bf16, n, xl, V, lb[l], m == 0);
        }
    }
    for (int r = 0; r < PW_R; r++)
        for (int v = 0; v < V; v++) {
            __m256 s[16];
            for (int l = 0; l < 16; l++) s[l] = lb[l][r * PW_V + v];
            for (int w = 8; w >= 1; w /= 2)
                for (int l = 0; l < w; l++) s[l] = _mm256_add_ps(s[l], s[l + w]);
            _mm256_storeu_ps(out + r * PW_T + 8 * v, s[0]);
        }
}

/* pw_tile with V a literal. */
static void pw_tile_any(const void *const wf[PW_R], int bf16, int cols, int kc, const float *xt, int ng, int g,
                        int V, float *out) {
    if (bf16) {
        if (V == PW_V) pw_tile(wf, 1, cols, kc, xt, ng, g, PW_V, out);
        else pw_tile(wf, 1, cols, kc, xt, ng, g, 1, out);
    } else if (V == PW_V) {
        pw_tile(wf, 0, cols, kc, xt, ng, g, PW_V, out);
    } else {
        pw_tile(wf, 0, cols, kc, xt, ng, g, 1, out);
    }
}

/* Rows [o_begin, o_end) x n_tok tokens of a view (dt a literal; every dtype; rows converted or
 * dequantized by qrow_f32); 0 where its buffers are not had. */
QM_INLINE int qprefill_t(const qm_wview *w, qm_dtype dt, const float *x, size_t ldx, int n_tok, const float *bias,
                         float *y, size_t ldy, int o_begin, int o_end) {
    const char *base = w->data;
    const size_t wstride = qm_wview_stride(w);
    const int col0 = qm_dtype_is_quant(dt) ? w->col0 : 0, cols = w->cols;
    const int kmax = dt == QM_DT_BF16 ? PW_KC_BF16 : PW_KC;
    const int nch = (cols + kmax - 1) / kmax, kc = ((cols + nch - 1) / nch + 15) / 16 * 16; /* even chunks */
    const size_t ldw = (size_t)(cols + 15) / 16 * 16;
    float *xt = aligned_alloc(32, pw_xt_floats(cols, kc, PG) * sizeof(float));
    float *wbuf = aligned_alloc(32, PW_R * ldw * sizeof(float));
    if (!xt || !wbuf) {
        free(xt);
        free(wbuf);
        return 0;
    }
    const size_t lines = (qm_dtype_row_bytes(dt, (size_t)col0 + (size_t)cols) + 63) / 64; /* a row's, prefetched */
    float out[PW_R * PW_T] __attribute__((aligned(32)));
    for (int t0 = 0; t0 < n_tok; t0 += PG) {
        const int tg = n_tok - t0 < PG ? n_tok - t0 : PG, nv = (tg + 7) / 8;
        pw_transpose(x + (size_t)t0 * ldx, ldx, tg, cols, kc, xt);
        for (int o = o_begin; o < o_end; o += PW_R) {
            const int nr = o_end - o < PW_R ? o_end - o : PW_R;
            const void *wf[PW_R]; /* rows past nr: row o again, their dots dropped */
            for (int r = 0; r < PW_R; r++) {
                const char *row = base + (size_t)(o + (r < nr ? r : 0)) * wstride;
                if (dt == QM_DT_F32 || dt == QM_DT_BF16) {
                    wf[r] = row; /* as it is (wide_weight) */
                } else {
                    if (r < nr) qrow_f32(row, dt, col0, cols, wbuf + (size_t)r * ldw);
                    wf[r] = wbuf + (size_t)(r < nr ? r : 0) * ldw;
                }
            }
            /* the next tile's rows, a share a token tile (their conversion would wait on DRAM) */
            const int nr_next = o_end - o - nr < PW_R ? o_end - o - nr : PW_R;
            const size_t pf_total = lines * (size_t)(nr_next > 0 ? nr_next : 0);
            size_t pf = 0;
            for (int tv = 0; tv < nv;) {
                const int V = nv - tv < PW_V ? nv - tv : PW_V;
                for (const size_t pf_end = pf_total * (size_t)(tv + V) / (size_t)nv; pf < pf_end; pf++)
                    _mm_prefetch(base + (size_t)(o + PW_R + (int)(pf / lines)) * wstride + pf % lines * 64, _MM_HINT_T0);
                pw_tile_any(wf, dt == QM_DT_BF16, cols, kc, xt, pw_tiles(tg), tv / 2, V, out);
                for (int t = 8 * tv; t < 8 * (tv + V) && t < tg; t++)
                    for (int r = 0; r < nr; r++) {
                        const float d = out[r * PW_T + t - 8 * tv];
                        y[(size_t)(t0 + t) * ldy + (size_t)(o + r)] = bias ? d + bias[o + r] : d;
                    }
                tv += V;
            }
        }
    }
    free(xt);
    free(wbuf);
    return 1;
}

/* Decode (one token): QDR rows in flight; short views: qdecode_short. From QTMIN tokens (short
 * views: 6): qprefill_t. Up to QAT tokens: register tiles of 2 rows. Between: qgemm on QGR rows of
 * at most QKC columns (longer ones: register tiles of 3 tokens). */
#ifndef QM_AVX2_QDR
#define QM_AVX2_QDR 4
#endif
#define QAT 3
#define QKC 4096
#ifndef QTMIN
#define QTMIN 24 /* from this many tokens (short views: 6) the lanes-side-by-side path, below it qgemm */
#endif
#ifndef QSHORT
#define QSHORT 128 /* decode views of at most this many columns: qdecode_short */
#endif

#define QREG_TOKENS(R_, o_)                                                                        \
    for (int t = 0; t < n_tok; t += 3) {                                                           \
        const char *w0 = base + (size_t)(o_) * wstride;                                            \
        const float *b0 = bias ? bias + (o_) : NULL;                                               \
        const float *xt = x + (size_t)t * ldx;                                                     \
        float *yt = y + (size_t)t * ldy + (o_);                                                    \
        switch (n_tok - t) {                                                                       \
        case 1: qtile_reg(w0, wstride, dt, col0, R_, 1, cols, xt, ldx, b0, yt, ldy, 0, NULL); break;  \
        case 2: qtile_reg(w0, wstride, dt, col0, R_, 2, cols, xt, ldx, b0, yt, ldy, 0, NULL); break;  \
        default: qtile_reg(w0, wstride, dt, col0, R_, 3, cols, xt, ldx, b0, yt, ldy, 0, NULL); break; \
        }                                                                                          \
    }

QM_INLINE void matmul_q_dt(const qm_wview *w, qm_dtype dt, const float *bias, const float *x, size_t ldx, int n_tok,
                           float *y, size_t ldy, int o_begin, int o_end) {
    const char *base = w->data;
    const size_t wstride = qm_wview_stride(w);
    const int col0 = w->col0, cols = w->cols;
    int o = o_begin;
    if (n_tok == 1 && cols <= QSHORT) {
        qdecode_short(base, wstride, dt, col0, cols, x, bias, y, o_begin, o_end);
    } else if (n_tok == 1 || (dt == QM_DT_Q6_K && n_tok <= 3)) {
        /* 2 or 3 tokens of Q6_K: one at a time, faster than its token tiles (docs/perf-history.md,
         * 2026-12-06 14:57: 2 tokens took 3.6x one) */
        for (int t = 0; t < n_tok; t++) {
            const float *xt = x + (size_t)t * ldx;
            float *yt = y + (size_t)t * ldy;
            for (o = o_begin; o + QM_AVX2_QDR <= o_end; o += QM_AVX2_QDR)
                qtile_reg(base + (size_t)o * wstride, wstride, dt, col0, QM_AVX2_QDR, 1, cols, xt, ldx,
                          bias ? bias + o : NULL, yt + o, ldy, 0, NULL);
            for (; o < o_end; o++)
                qtile_reg(base + (size_t)o * wstride, wstride, dt, col0, 1, 1, cols, xt, ldx,
                          bias ? bias + o : NULL, yt + o, ldy, 0, NULL);
        }
    } else if (n_tok >= QTMIN || (cols <= QSHORT && n_tok >= 6)) {
        if (!qprefill_t(w, dt, x, ldx, n_tok, bias, y, ldy, o_begin, o_end)) /* no buffers: the scalar twin */
            qm_kernels_scalar_table.matmul(w, bias, x, ldx, n_tok, y, ldy, o_begin, o_end);
    } else if (n_tok <= QAT || cols > QKC) {
        for (; o + 2 <= o_end; o += 2) QREG_TOKENS(2, o)
        for (; o < o_end; o++) QREG_TOKENS(1, o)
    } else {
        float buf[QGR * QKC] __attribute__((aligned(32)));
        const size_t ldb = (size_t)(cols + 15) / 16 * 16;
        for (; o < o_end; o += QGR) {
            const int R = o_end - o < QGR ? o_end - o : QGR;
            for (int r = 0; r < R; r++) qrow_f32(base + (size_t)(o + r) * wstride, dt, col0, cols, buf + (size_t)r * ldb);
            if (R == QGR)
                qgemm_rows2(buf, ldb, cols, x, ldx, n_tok, bias ? bias + o : NULL, y + o, ldy);
            else
                qgemm_rows1(buf, ldb, cols, x, ldx, n_tok, bias ? bias + o : NULL, y + o, ldy);
        }
    }
}

/* One function per type (each with its own stack buffer, code specialised to the type). */
#define QM_Q_DT(s_, T_) QM_MATMUL_OF_TYPE(matmul_##s_, matmul_q_dt, QM_DT_##T_)
QM_QUANT_TYPES(QM_Q_DT)
#define QM_Q_ENTRY(s_, T_) [QM_DT_##T_] = matmul_##s_,

static void matmul_q(const qm_wview *w, const float *bias, const float *x, size_t ldx, int n_tok, float *y,
                     size_t ldy, int o_begin, int o_end) {
    static const qm_matmul_fn fn[QM_DT_COUNT] = {QM_QUANT_TYPES(QM_Q_ENTRY)};
    if ((unsigned)w->dtype < QM_DT_COUNT && fn[w->dtype]) fn[w->dtype](w, bias, x, ldx, n_tok, y, ldy, o_begin, o_end);
}

/* ---- 9 to 16 tokens (batched decode), every type: the tokens side by side ----
 * The tokens' activations are transposed once a call, lane-major (pw_transpose, one chunk of
 * all the columns): xt[(l * nj + j) * 16 + t] =
 * x[t][l + 16 j] (nj = cols / 16 rounded up; zero for t >= nt). For each tile of WIDE_ROWS rows,
 * converted or dequantized to f32 once (wf, qrow_f32; a view's column i is row element col0 + i,
 * col0 % 16 == 0, so lane i % 16), and each lane l, a ymm holds lane l of one row for 8 tokens
 * and takes the FMAs w[r][l + 16 j] * xt[l][j][8 h ..] in increasing j: every (row, token, lane)
 * sees its canonical FMA sequence, 12 FMAs for 2 loads of activations and 6 broadcasts of weights
 * from the L1. The lanes' halving tree is then vertical adds of whole vectors. The 3 x 2 register
 * tiles before it (matmul_dt; qgemm for the block-quantized types) converted or dequantized each
 * row once per tile of tokens. `bench_qmatmul pre avx2 BF16 600 896 16` (weights in the L2, one
 * thread, Intel Xeon, 2026-12-04): 71-79 GFLOP/s against 51-67; Q4_K 600 or 8960 x 1536: 85-86
 * against 54-60. */
#define WIDE_ROWS 6
/* Columns a chunk of the lanes' loops (a multiple of 16) where the tile's rows as the lanes read
 * them (4 bytes a weight, bf16 2: wide_weight) pass WIDE_L1_ROWS bytes, so that a chunk of them
 * stays in the L1 while the 16 lanes go over it. bench_qmatmul pre avx2 BF16 600 COLS 16, one
 * thread (Intel Xeon, 48 KB L1): 3584 columns 36-44 GFLOP/s whole, 62-63 in chunks of 256 to 512,
 * 47 in chunks of 1200. On Zen 4 (32 KB L1) the 1.5B's 1536 columns dequantized (37 KB for 6
 * rows) thrashed it: `pre avx2 Q4_K 8960 1536 16` 53 -> 78-81 GFLOP/s in chunks, Q6_K 1536 x
 * 1536 41-51 -> 76-78; on the Xeon's 48 KB that shape had been 60 against 65-67 whole. */
#ifndef WIDE_KC
#define WIDE_KC 512
#endif
#ifndef WIDE_L1_ROWS
#define WIDE_L1_ROWS (24 * 1024)
#endif
#define WIDE_MAX_COLS 4096 /* xt on the stack: 256 KB */
#ifndef WIDE_MIN_TOKENS
#define WIDE_MIN_TOKENS 9
#endif
_Static_assert(WIDE_MIN_TOKENS > 8, "xt's 16 tokens a step are pw_transpose's for 9 to 16 tokens");

/* Lane l of WIDE_ROWS rows (wr[r]: row r as f32, or as bf16 when bf16) x 16 tokens over its
 * columns l + 16 j, j in [j0, j1) (xl: lane l of xt), continued from lb (from +0 when first):
 * lb[2 r + h] = tokens 8 h .. 8 h + 7. */
QM_INLINE void wide_lane(const void *const wr[WIDE_ROWS], int bf16, int l, int j0, int j1, const float *xl,
                         __m256 *lb, int first) {
    __m256 acc[WIDE_ROWS][2];
    for (int r = 0; r < WIDE_ROWS; r++) {
        acc[r][0] = first ? _mm256_setzero_ps() : lb[2 * r];
        acc[r][1] = first ? _mm256_setzero_ps() : lb[2 * r + 1];
    }
    for (int j = j0; j < j1; j++) {
        const __m256 x0 = _mm256_load_ps(xl + (size_t)j * 16), x1 = _mm256_load_ps(xl + (size_t)j * 16 + 8);
        for (int r = 0; r < WIDE_ROWS; r++) {
            const __m256 b = wide_weight(wr[r], (size_t)(l + 16 * j), bf16);
            acc[r][0] = _mm256_fmadd_ps(b, x0, acc[r][0]);
            acc[r][1] = _mm256_fmadd_ps(b, x1, acc[r][1]);
        }
    }
    for (int r = 0; r < WIDE_ROWS; r++) {
        lb[2 * r] = acc[r][0];
        lb[2 * r + 1] = acc[r][1];
    }
}

/* Rows [o, o + nr) (nr <= WIDE_ROWS; w0: row o) of a view (col0, cols) x the nt tokens of xt:
 * y[t][o + r]; the next nr_next rows are prefetched. */
QM_INLINE void wide_rows(const char *w0, size_t wstride, qm_dtype dt, int col0, int nr, int cols, const float *xt,
                         int nt, const float *bias, float *y, size_t ldy, float *wf, int nr_next) {
    const int nj = (cols + 15) / 16;
    const void *wr[WIDE_ROWS]; /* rows past nr: row o again, its dots dropped */
    for (int r = 0; r < WIDE_ROWS; r++) {
        const char *row = w0 + (size_t)(r < nr ? r : 0) * wstride;
        float *f = wf + (size_t)r * (size_t)(nj * 16); /* [r][cols rounded up to 16] */
        if (dt == QM_DT_F32) {
            wr[r] = (const float *)row + col0; /* as it is */
        } else if (dt == QM_DT_BF16) {
            wr[r] = (const uint16_t *)row + col0; /* as it is: wide_weight converts */
        } else {
            qrow_f32(row, dt, col0, cols, f);
            wr[r] = f;
        }
    }
    __m256 lb[16][2 * WIDE_ROWS];
    /* the next tile's rows, a sixteenth a lane (its conversion would otherwise wait on DRAM) */
    const size_t lines = (qm_dtype_row_bytes(dt, (size_t)col0 + (size_t)cols) + 63) / 64;
    const size_t total = lines * (size_t)nr_next;
    size_t k = 0, pr = 0, pl = 0; /* prefetch k: line pl of the next tile's row pr (no division a line) */
    /* rows of more than WIDE_L1_ROWS bytes in chunks of WIDE_KC columns (whole lanes' groups) */
    const size_t row_bytes = (size_t)cols * (dt == QM_DT_BF16 ? 2 : 4) * WIDE_ROWS;
    const int kc = row_bytes > WIDE_L1_ROWS ? WIDE_KC : (cols + 15) / 16 * 16, nc = (cols + kc - 1) / kc;
    for (int c = 0; c < nc; c++) {
        const int j0 = c * (kc / 16), c1 = cols < (c + 1) * kc ? cols : (c + 1) * kc;
        for (int l = 0; l < 16; l++) {
            for (; k < total * (size_t)(16 * c + l + 1) / (size_t)(16 * nc); k++) {
                _mm_prefetch(w0 + (WIDE_ROWS + pr) * wstride + pl * 64, _MM_HINT_T0);
                if (++pl == lines) pl = 0, pr++;
            }
            wide_lane(wr, dt == QM_DT_BF16, l, j0, (c1 - l + 15) / 16, xt + (size_t)l * (size_t)nj * 16, lb[l], c == 0);
        }
    }
    for (int a = 0; a < 2 * nr; a++) {
        __m256 v[16];
        for (int l = 0; l < 16; l++) v[l] = lb[l][a];
        for (int w = 8; w >= 1; w /= 2)
            for (int l = 0; l < w; l++) v[l] = _mm256_add_ps(v[l], v[l + w]);
        float out[8];
        _mm256_storeu_ps(out, v[0]);
        const int r = a / 2, t0 = 8 * (a % 2);
        for (int t = t0; t < nt && t < t0 + 8; t++)
            y[(size_t)t * ldy + (size_t)r] = bias ? out[t - t0] + bias[r] : out[t - t0];
    }
}

/* Rows [o_begin, o_end) x n_tok tokens (WIDE_MIN_TOKENS..16) of a view of at most WIDE_MAX_COLS
 * columns, col0 % 16 == 0: y[t][o]. */
QM_INLINE void matmul_wide(const qm_wview *w, qm_dtype dt, const float *bias, const float *x, size_t ldx, int n_tok,
                           float *y, size_t ldy, int o_begin, int o_end) {
    const size_t wstride = qm_wview_stride(w);
    const int cols = w->cols;
    float xt[WIDE_MAX_COLS * 16] __attribute__((aligned(32)));
    float wf[WIDE_ROWS * WIDE_MAX_COLS] __attribute__((aligned(32))); /* the tile's rows as f32 */
    pw_transpose(x, ldx, n_tok, cols, (cols + 15) / 16 * 16, xt); /* one chunk: xt above */
    for (int o = o_begin; o < o_end; o += WIDE_ROWS) {
        const int nr = o_end - o < WIDE_ROWS ? o_end - o : WIDE_ROWS;
        wide_rows((const char *)w->data + (size_t)o * wstride, wstride, dt, w->col0, nr, cols, xt, n_tok,
                  bias ? bias + o : NULL, y + o, ldy, wf, o_end - o - nr < WIDE_ROWS ? o_end - o - nr : WIDE_ROWS);
    }
}

#define QM_WIDE_DT(s_, T_) QM_MATMUL_OF_TYPE(wide_##s_, matmul_wide, QM_DT_##T_)
#define QM_WIDE_ENTRY(s_, T_) [QM_DT_##T_] = wide_##s_,
#define QM_WIDE_TYPES(X) X(f32, F32) X(f16, F16) X(bf16, BF16) QM_QUANT_TYPES(X)
QM_WIDE_TYPES(QM_WIDE_DT)

/* matmul_wide for every type: 1 when it took the call. */
static int matmul_tokens_wide(const qm_wview *w, const float *bias, const float *x, size_t ldx, int n_tok, float *y,
                              size_t ldy, int o_begin, int o_end) {
    static const qm_matmul_fn fn[QM_DT_COUNT] = {QM_WIDE_TYPES(QM_WIDE_ENTRY)};
    if (n_tok < WIDE_MIN_TOKENS || n_tok > 16 || w->cols > WIDE_MAX_COLS || w->col0 % 16 ||
        (unsigned)w->dtype >= QM_DT_COUNT || !fn[w->dtype])
        return 0;
    fn[w->dtype](w, bias, x, ldx, n_tok, y, ldy, o_begin, o_end);
    return 1;
}

/* Prefill of a plain type: qprefill_t (the rows converted once for PG tokens) from PMIN tokens;
 * `bench_qmatmul pre avx2 BF16 4864 896 512` (one thread, AMD EPYC AVX2): 41-50 GFLOP/s against
 * 29-39 for the register tiles. */
#ifndef PMIN
#define PMIN 24
#endif
#ifndef NMIN
#define NMIN 32 /* tokens from which a row-parallel layer's nodes are made in the kernel (nodes_tokens) */
#endif
#define QM_P_DT(name_, dt_)                                                                        \
    static __attribute__((noinline)) void name_(const qm_wview *w, const float *bias, const float *x, size_t ldx, \
                                                int n_tok, float *y, size_t ldy, int o_begin, int o_end) { \
        if (!qprefill_t(w, dt_, x, ldx, n_tok, bias, y, ldy, o_begin, o_end))                     \
            qm_kernels_scalar_table.matmul(w, bias, x, ldx, n_tok, y, ldy, o_begin, o_end);       \
    }
QM_P_DT(prefill_f32, QM_DT_F32)
QM_P_DT(prefill_f16, QM_DT_F16)
QM_P_DT(prefill_bf16, QM_DT_BF16)

static void matmul_avx2(const qm_wview *w, const float *bias, const float *x, size_t ldx,
                        int n_tok, float *y, size_t ldy, int o_begin, int o_end) {
    if (n_tok <= 0 || o_begin >= o_end) return;
    if (n_tok > 16 && w->cols <= QSHORT && !qm_dtype_is_quant(w->dtype)) {
        /* short rows (attention's keys, the queries of many sequences): 16 tokens at a time side by
         * side, where the prefill panels spend more on their lane trees than on the FMAs of 64
         * columns (bench_qmatmul pre avx2 F32 736 64 112: 26 GFLOP/s, 16 tokens: 48) */
        for (int t = 0; t < n_tok; t += 16)
            matmul_avx2(w, bias, x + (size_t)t * ldx, ldx, n_tok - t < 16 ? n_tok - t : 16, y + (size_t)t * ldy, ldy,
                        o_begin, o_end);
        return;
    }
    if (n_tok >= PMIN && !qm_dtype_is_quant(w->dtype)) {
        switch (w->dtype) {
        case QM_DT_F32: prefill_f32(w, bias, x, ldx, n_tok, y, ldy, o_begin, o_end); return;
        case QM_DT_F16: prefill_f16(w, bias, x, ldx, n_tok, y, ldy, o_begin, o_end); return;
        case QM_DT_BF16: prefill_bf16(w, bias, x, ldx, n_tok, y, ldy, o_begin, o_end); return;
        default: break;
        }
    }
    if (matmul_tokens_wide(w, bias, x, ldx, n_tok, y, ldy, o_begin, o_end)) return;
    if (qm_dtype_is_quant(w->dtype)) {
        if (w->col0 % 16) qm_kernels_scalar_table.matmul(w, bias, x, ldx, n_tok, y, ldy, o_begin, o_end);
        else matmul_q(w, bias, x, ldx, n_tok, y, ldy, o_begin, o_end);
        return;
    }
    switch (w->dtype) {
    case QM_DT_F32: matmul_dt(w, QM_DT_F32, bias, x, ldx, n_tok, y, ldy, o_begin, o_end); break;
    case QM_DT_F16: matmul_dt(w, QM_DT_F16, bias, x, ldx, n_tok, y, ldy, o_begin, o_end); break;
    case QM_DT_BF16: matmul_dt(w, QM_DT_BF16, bias, x, ldx, n_tok, y, ldy, o_begin, o_end); break;
    default: break;
    }
}

static float dot_avx2(const float *a, const float *b, int n) {
    __m256 lo = _mm256_setzero_ps(), hi = _mm256_setzero_ps();
    int i = 0;
    for (; i + 16 <= n; i += 16) {
        lo = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), lo);
        hi = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), hi);
    }
    const int rem = n - i;
    if (rem > 0) {
        float ab[16] = {0}, bb[16] = {0};
        memcpy(ab, a + i, (size_t)rem * sizeof(float));
        memcpy(bb, b + i, (size_t)rem * sizeof(float));
        lo = _mm256_blendv_ps(lo, _mm256_fmadd_ps(_mm256_loadu_ps(ab), _mm256_loadu_ps(bb), lo), lane_mask(rem, 0));
        hi = _mm256_blendv_ps(hi, _mm256_fmadd_ps(_mm256_loadu_ps(ab + 8), _mm256_loadu_ps(bb + 8), hi), lane_mask(rem, 8));
    }
    return reduce1(lo, hi);
}

static void axpy_avx2(float a, const float *x, float *y, int n) {
    const __m256 av = _mm256_set1_ps(a);
    int i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, _mm256_fmadd_ps(av, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
    for (; i < n; i++) y[i] = fmaf(a, x[i], y[i]);
}

/* Attention values (kernels.h attn_values), columns [i0, i0 + 16) (two: both 8-column halves) of
 * heads [h0, h0 + H): H x 2 accumulators kept over all n rows. A head past g repeats the last one
 * (never stored). */
QM_INLINE void attn_values_tile(const float *p, size_t ldp, int g, int h0, int H, const float *v, size_t ldv, int n,
                                float *out, int hd, int i0, int two) {
    const float *ph[6];
    __m256 acc[6][2];
    for (int h = 0; h < H; h++) {
        const int hh = h0 + h < g ? h0 + h : g - 1;
        ph[h] = p + (size_t)hh * ldp;
        const float *o = out + (size_t)hh * (size_t)hd + i0;
        acc[h][0] = _mm256_loadu_ps(o);
        acc[h][1] = two ? _mm256_loadu_ps(o + 8) : acc[h][0];
    }
    for (int j = 0; j < n; j++) {
        const float *vj = v + (size_t)j * ldv + i0;
        const __m256 x0 = _mm256_loadu_ps(vj), x1 = two ? _mm256_loadu_ps(vj + 8) : x0;
        for (int h = 0; h < H; h++) {
            const __m256 a = _mm256_set1_ps(ph[h][j]);
            acc[h][0] = _mm256_fmadd_ps(a, x0, acc[h][0]);
            acc[h][1] = _mm256_fmadd_ps(a, x1, acc[h][1]);
        }
    }
    for (int h = 0; h < H && h0 + h < g; h++) {
        float *o = out + (size_t)(h0 + h) * (size_t)hd + i0;
        _mm256_storeu_ps(o, acc[h][0]);
        if (two) _mm256_storeu_ps(o + 8, acc[h][1]);
    }
}

/* Tiles of 6 heads (12 accumulators: the FMAs' latency covered, each value row loaded once for 6
 * heads) while 6 are left, else of 4; 7 or 8 left (one token's 7 query heads of a KV head) go as
 * two of 4. 112 heads (16 tokens of 7) x 700 rows x 64 columns, one thread: 60.5 GFLOP/s in
 * tiles of 4, 85.3 in tiles of 6. Columns past a multiple of 8 go through the scalar fmaf, in
 * the same row order. */
static void attn_values_avx2(const float *p, size_t ldp, int g, const float *v, size_t ldv, int n, float *out, int hd) {
    const int hd8 = hd / 8 * 8;
    for (int h0 = 0, H; h0 < g; h0 += H) {
        H = g - h0 >= 6 && g - h0 != 7 && g - h0 != 8 ? 6 : 4;
        for (int i0 = 0; i0 < hd8; i0 += 16) {
            const int two = i0 + 16 <= hd8;
            if (H == 6) attn_values_tile(p, ldp, g, h0, 6, v, ldv, n, out, hd, i0, two);
            else attn_values_tile(p, ldp, g, h0, 4, v, ldv, n, out, hd, i0, two);
        }
        for (int h = h0; h < g && h < h0 + H; h++)
            for (int i = hd8; i < hd; i++) {
                float o = out[(size_t)h * (size_t)hd + (size_t)i];
                for (int j = 0; j < n; j++) o = fmaf(p[(size_t)h * ldp + (size_t)j], v[(size_t)j * ldv + (size_t)i], o);
                out[(size_t)h * (size_t)hd + (size_t)i] = o;
            }
    }
}

/* ---- row-parallel layers of 64- or 128-column blocks (an MLP block, a head), one token (see matmul_avx512.c) ----
 * Register tiles of R rows, each row read once along all its blocks; a block's accumulators
 * (exactly its own view's) kept as items i = r n + k for the n blocks in hand, then their trees 8
 * items at a time (qreduce8), whichever rows they belong to; a view of one block (a device's one
 * head of 64) takes two register tiles in a group, so that its items fill the reductions. */
#define QB_ROWS 8 /* rows of a group at most */
_Static_assert(QRMAX <= QB_ROWS && QM_AVX2_QDR <= QB_ROWS, "qblocks_rows' rows");

QM_INLINE void qblocks_rows(const char *w0, size_t wstride, qm_dtype dt, int col0, int col_end, int bc, int R,
                            int ntile, int nb, const float *x, float *part, size_t pstride) {
    float accm[QB_ROWS * 8 * 16] __attribute__((aligned(32))); /* [rows * n][16] */
    float ks[QB_ROWS][16] __attribute__((aligned(32)));
    float out[QB_ROWS * 8];
    const int S = QSTEP(dt), G = S / 16, qk = qm_dtype_block(dt), rows = R * ntile;
    const size_t bb = qm_dtype_block_bytes(dt);
    /* the next group's rows into the L1 (rowpar.h) */
    qm_rowpar_prefetch pf = qm_rowpar_prefetch_start(w0, wstride, rows, R, nb, bb * (size_t)bc / (size_t)qk);
    for (int b0 = 0; b0 < nb; b0 += 8) {
        const int n = nb - b0 < 8 ? nb - b0 : 8;
        for (int k = 0; k < n; k++) {
            const int e0 = col0 + (b0 + k) * bc, e1 = e0 + bc < col_end ? e0 + bc : col_end;
            qm_rowpar_prefetch_block(&pf, b0 + k);
            for (int t = 0; t < ntile; t++) {
                const char *wt = w0 + (size_t)(t * R) * wstride;
                __m256 lo[QRMAX], hi[QRMAX];
                for (int r = 0; r < R; r++) lo[r] = hi[r] = _mm256_setzero_ps();
                for (int e = e0; e < e1; e += S) {
                    const unsigned ue = (unsigned)e;
                    const int fresh = (b0 + k == 0 && e == e0) || ue % 256 == 0, j = (int)(ue % 256 / 64);
                    const char *wb = wt + (size_t)(ue / (unsigned)qk) * bb;
                    for (int r = 0; r < R; r++) {
                        __m256 w[4][2];
                        qstep(dt, (const uint8_t *)wb + (size_t)r * wstride, j, fresh, ks[t * R + r], w);
                        for (int g = 0; g < G; g++) {
                            const float *xp = x + (e - col0) + 16 * g;
                            lo[r] = _mm256_fmadd_ps(w[g][0], _mm256_loadu_ps(xp), lo[r]);
                            hi[r] = _mm256_fmadd_ps(w[g][1], _mm256_loadu_ps(xp + 8), hi[r]);
                        }
                    }
                }
                for (int r = 0; r < R; r++) {
                    _mm256_store_ps(accm + 16 * ((t * R + r) * n + k), lo[r]);
                    _mm256_store_ps(accm + 16 * ((t * R + r) * n + k) + 8, hi[r]);
                }
            }
        }
        for (int i = 0; i < rows * n; i += 8) qreduce8(accm + 16 * i, rows * n - i < 8 ? rows * n - i : 8, NULL, out + i);
        for (int r = 0; r < rows; r++)
            for (int k = 0; k < n; k++) part[(size_t)(b0 + k) * pstride + (size_t)r] = out[r * n + k];
    }
}

/* Step j (columns 64 j .. 64 j + 63 of superblock b, x at xe) of a block's lanes, continued in lo
 * (lanes 0-7) and hi (8-15): Q4_K/Q5_K by step_k_dot, each weight vector FMA'd as soon as it is
 * made; the other types' vectors made first (qstep). */
QM_INLINE void qblock_step(qm_dtype dt, const uint8_t *b, int j, float *ks, const float *xe, __m256 *lo, __m256 *hi) {
    if (dt == QM_DT_Q4_K || dt == QM_DT_Q5_K) {
        step_k_dot(dt, b, j, 0, ks, xe, lo, hi);
        return;
    }
    __m256 w[4][2];
    qstep(dt, b, j, 0, ks, w);
    for (int g = 0; g < 4; g++) {
        *lo = _mm256_fmadd_ps(w[g][0], _mm256_loadu_ps(xe + 16 * g), *lo);
        *hi = _mm256_fmadd_ps(w[g][1], _mm256_loadu_ps(xe + 16 * g + 8), *hi);
    }
}

/* The trees of 8 items (s8[K r + k]: row r's block k0 + k, each already lo + hi) at once (qtree8),
 * to part[(k0 + k) pstride + r] for rows r < nr. */
QM_INLINE void store_items8(const __m256 s8[8], int K, int nr, int k0, float *part, size_t pstride) {
    float out[8] __attribute__((aligned(32)));
    _mm256_store_ps(out, qtree8(s8));
    for (int k = 0; k < K; k++)
        for (int r = 0; r < nr; r++) part[(size_t)(k0 + k) * pstride + (size_t)r] = out[K * r + k];
}

/* 8 / K rows' (nr <= 8 / K) blocks k0 .. k0 + K - 1 of 256 / K columns that are one K-quant
 * superblock (at row element e, a multiple of 256): K = 4, blocks of 64 columns for two rows; K =
 * 2, o_proj's heads of 128 for four rows. Each block's accumulators stay in registers (from +0,
 * its steps in turn: lane l takes columns l + 16 g in order), their w = 8 level (lanes l + l + 8)
 * is added at once, and the 8 items (row r, block k: K r + k) are one qtree8; each row's scales
 * made once, the steps unrolled with constant offsets. qblocks_rows stores every block's 16 lanes
 * and reduces them from memory: bench one thread, exact Q4_K and Q6_K down_proj-shaped (8960
 * columns), 0.101 and 0.111 ns a weight that way, 0.073 and 0.080 this way (AMD EPYC family 26,
 * --isa avx2); the 1.5B's exact o_proj (K = 2, --isa avx2, 2 threads, Zen 4) 3.73-3.93 ->
 * 2.88-3.30 ms a token. Four rows of K = 4 did not fit the 16 ymm registers. */
QM_INLINE void qblocks_superblock(const char *w0, size_t wstride, qm_dtype dt, int col0, int k0, int nr, int K,
                                  const float *x, qm_rowpar_prefetch *pf, float *part, size_t pstride) {
    const int R = 8 / K, S = 4 / K; /* rows; steps of 64 columns a block */
    const int e = col0 + k0 * (256 / K);
    const uint8_t *sb = (const uint8_t *)w0 + (size_t)(e / 256) * qm_dtype_block_bytes(dt);
    const float *xe = x + (e - col0); /* [256] */
    float ks[16] __attribute__((aligned(32)));
    __m256 s8[8];
    qm_rowpar_prefetch_superblock(pf, k0, K, (size_t)(e / 256) * qm_dtype_block_bytes(dt), qm_dtype_block_bytes(dt));
    for (int r = 0; r < R; r++) {
        if (r >= nr) {
            for (int k = 0; k < K; k++) s8[K * r + k] = _mm256_setzero_ps();
            continue;
        }
        const uint8_t *b = sb + (size_t)r * wstride;
        qkscales(dt, b, ks);
        __asm__ volatile("" : : "r"(ks) : "memory"); /* ks broadcast from memory, not from registers */
#pragma GCC unroll 4
        for (int k = 0; k < K; k++) {
            __m256 lo = _mm256_setzero_ps(), hi = _mm256_setzero_ps();
#pragma GCC unroll 2
            for (int j = S * k; j < S * k + S; j++) qblock_step(dt, b, j, ks, xe + 64 * j, &lo, &hi);
            s8[K * r + k] = _mm256_add_ps(lo, hi);
        }
    }
    store_items8(s8, K, nr, k0, part, pstride);
}

/* Rows w0 .. (nr <= 8 / K) of a K-quant's blocks of 256 / K columns (K = 4 or 2, a literal): the
 * blocks before the view's first whole superblock and after its last by qblocks_rows (each part as
 * a view of its own), the superblocks between by qblocks_superblock. */
QM_INLINE void qblocks_rows_k(const char *w0, size_t wstride, qm_dtype dt, int col0, int col_end, int nr, int nb, int K,
                              const float *x, float *part, size_t pstride) {
    const int bc = 256 / K, lead = (256 - col0 % 256) % 256 / bc;
    int k = lead < nb ? lead : nb;
    if (k) qblocks_rows(w0, wstride, dt, col0, col_end, bc, nr, 1, k, x, part, pstride);
    qm_rowpar_prefetch pf = qm_rowpar_prefetch_start(w0, wstride, 8 / K, 8 / K, nb, qm_dtype_block_bytes(dt) / (size_t)K);
    for (; k + K <= nb && col0 + (k + K) * bc <= col_end; k += K)
        qblocks_superblock(w0, wstride, dt, col0, k, nr, K, x, &pf, part, pstride);
    if (k < nb)
        qblocks_rows(w0, wstride, dt, col0 + bc * k, col_end, bc, nr, 1, nb - k, x + bc * k, part + (size_t)k * pstride,
                     pstride);
}

/* Rows w0 .. (nr <= 4) of a plain type's 64-column blocks k0 and k0 + 1 (nk <= 2 of them; x: the
 * view's column 0): each block's 16 lanes in two accumulators (lane l: columns l + 16 g, g in
 * order, from +0), their w = 8 level added at once, and the 8 items (block k, row r: 4 k + r) one
 * qtree8, all in registers (rows past nr: row 0 again, dropped). qblocks_rows stored every block's
 * 16 lanes and reduced them from memory 8 at a time, a scalar store a dot: `bench_qmatmul pre
 * avx2 BF16 896 4864 1`, one thread, Zen 4: nodes 24.5 -> 34 GFLOP/s, F32 21.5 -> 27. */
QM_INLINE void pblocks_4x2(const char *w0, size_t ws, qm_dtype dt, int nr, int k0, int nk, const float *x,
                           float *part, size_t pstride) {
    const size_t esz = qm_dtype_block_bytes(dt);
    __m256 s8[8];
    for (int k = 0; k < 2; k++) {
        __m256 lo[4], hi[4];
        for (int r = 0; r < 4; r++) lo[r] = hi[r] = _mm256_setzero_ps();
        const int e = 64 * (k0 + (k < nk ? k : 0));
        for (int g = 0; g < 4; g++) {
            const __m256 x0 = _mm256_loadu_ps(x + e + 16 * g), x1 = _mm256_loadu_ps(x + e + 16 * g + 8);
            for (int r = 0; r < 4; r++) {
                const char *p = w0 + (size_t)(r < nr ? r : 0) * ws + (size_t)(e + 16 * g) * esz;
                lo[r] = _mm256_fmadd_ps(load_w8(p, dt), x0, lo[r]);
                hi[r] = _mm256_fmadd_ps(load_w8(p + 8 * esz, dt), x1, hi[r]);
            }
        }
        for (int r = 0; r < 4; r++) s8[4 * k + r] = _mm256_add_ps(lo[r], hi[r]);
    }
    const __m256 out = qtree8(s8);
    if (nr == 4) {
        _mm_storeu_ps(part + (size_t)k0 * pstride, _mm256_castps256_ps128(out));
        if (nk == 2) _mm_storeu_ps(part + (size_t)(k0 + 1) * pstride, _mm256_extractf128_ps(out, 1));
        return;
    }
    float o[8];
    _mm256_storeu_ps(o, out);
    for (int k = 0; k < nk; k++)
        for (int r = 0; r < nr; r++) part[(size_t)(k0 + k) * pstride + (size_t)r] = o[4 * k + r];
}

/* A plain type's rows [o_begin, o_end) x its 64-column blocks, pblocks_4x2 down the blocks of 4
 * rows at a time, the next 4 rows' blocks prefetched along (rowpar.h) and the 4 after them into
 * the L2: the 0.5B's o_proj (896 columns, a group of 4 rows 7 KB) waited on DRAM at each group,
 * 1.9-2.0 ms a step (bf16, 2 threads, --isa avx2), 1.2-1.3 with the L2 prefetch (12 or 16 rows
 * ahead the same); down_proj 6.1-7.3 -> 4.7-6.6 (this VM's two memory states). */
QM_INLINE void pblocks_dt(qm_dtype dt, const qm_wview *w, const float *x, int nb, float *part, size_t pstride,
                          int o_begin, int o_end) {
    const size_t ws = qm_wview_stride(w), esz = qm_dtype_block_bytes(dt);
    const int stretch = qm_rowpar_plain_stretch(w);
    for (int o = o_begin; o < o_end; o += 4) {
        const char *w0 = (const char *)w->data + (size_t)o * ws;
        const int nr = o_end - o < 4 ? o_end - o : 4;
        qm_rowpar_prefetch pf = qm_rowpar_prefetch_start(w0, ws, 4, 4, nb, 64 * esz);
        pf.stretch |= stretch;
        for (int k = 0; k < nb; k += 2) {
            qm_rowpar_prefetch_block(&pf, k);
            if (k + 1 < nb) qm_rowpar_prefetch_block(&pf, k + 1);
            for (int r = 8; !stretch && r < 12; r++) /* the same blocks of the group after next, into the L2 */
                qm_prefetch_l2(w0 + (size_t)r * ws + (size_t)k * 64 * esz, 128 * esz);
            pblocks_4x2(w0, ws, dt, nr, k, nb - k < 2 ? nb - k : 2, x, part + o, pstride);
        }
    }
}

/* Rows [o_begin, o_end) in groups of register tiles of QM_AVX2_QDR rows (two tiles for a view of
 * one block), the rest one by one; a K-quant's 64-column blocks two rows at a time by
 * qblocks_rows_k. */
QM_INLINE void blocks_dt(qm_dtype dt, const qm_wview *w, const float *x, int bc, int nb, float *part, size_t pstride,
                         int o_begin, int o_end) {
    const size_t ws = qm_wview_stride(w);
    const int end = w->col0 + w->cols, R = QM_AVX2_QDR, ntile = nb == 1 ? QB_ROWS / R : 1;
    int o = o_begin;
    if (!qm_dtype_is_quant(dt) && bc == 64 && w->col0 == 0 && w->cols == 64 * nb) {
        pblocks_dt(dt, w, x, nb, part, pstride, o_begin, o_end);
        return;
    }
    if (dt >= QM_DT_Q4_K && ((bc == 64 && nb >= 4) || (bc == 128 && w->col0 % 128 == 0 && nb >= 2))) {
        const int K = 256 / bc, rows = 8 / K; /* 64 columns: 2 rows a tile; o_proj's heads of 128: 4 */
        for (; o < o_end; o += rows) {
            const char *w0 = w->data + (size_t)o * ws;
            const int nr = o_end - o < rows ? o_end - o : rows;
            if (K == 4) qblocks_rows_k(w0, ws, dt, w->col0, end, nr, nb, 4, x, part + o, pstride);
            else qblocks_rows_k(w0, ws, dt, w->col0, end, nr, nb, 2, x, part + o, pstride);
        }
        return;
    }
    for (; o + R * ntile <= o_end; o += R * ntile)
        qblocks_rows(w->data + (size_t)o * ws, ws, dt, w->col0, end, bc, R, ntile, nb, x, part + o, pstride);
    for (; o + R <= o_end; o += R)
        qblocks_rows(w->data + (size_t)o * ws, ws, dt, w->col0, end, bc, R, 1, nb, x, part + o, pstride);
    for (; o < o_end; o++)
        qblocks_rows(w->data + (size_t)o * ws, ws, dt, w->col0, end, bc, 1, 1, nb, x, part + o, pstride);
}

static __attribute__((noinline)) void blocks_fast(const qm_wview *w, const float *x, int bc, int nb, float *part,
                                                  size_t pstride, int o_begin, int o_end) {
#define BLOCKS_DT(dt_) blocks_dt(dt_, w, x, bc, nb, part, pstride, o_begin, o_end)
    switch (w->dtype) {
    case QM_DT_F32: BLOCKS_DT(QM_DT_F32); break;
    case QM_DT_F16: BLOCKS_DT(QM_DT_F16); break;
    case QM_DT_BF16: BLOCKS_DT(QM_DT_BF16); break;
    default: QM_SWITCH_QUANT_DTYPE(w->dtype, BLOCKS_DT); break;
    }
#undef BLOCKS_DT
}

/* ---- row-parallel layers of a plain type over several tokens (batched decode, prefill; see
 * matmul_avx512.c) ----
 * Tiles of 2 rows x 4 tokens of one block, whose 8 accumulators (item t * 2 + r) are one qtree8: lanes
 * 0-7 in a first pass over the block's columns, 8-15 in a second (8 ymm accumulators at a time), then
 * lo + hi (the tree's w = 8) and the rest of the tree from registers. Tokens in chunks of 16. */

/* Block [e0, e1) of rows w0 (nr <= 2) x tokens x (nt <= 4): into p[t * ldy + r]. */
QM_INLINE void dblock_tile(const char *w0, size_t wstride, qm_dtype dt, int nr, int nt, int e0, int e1,
                           const float *x, size_t ldx, float *p, size_t ldy) {
    const size_t esz = qm_dtype_block_bytes(dt);
    __m256 lo[8], acc[8];
    for (int half = 0; half < 2; half++) {
        for (int i = 0; i < 8; i++) acc[i] = _mm256_setzero_ps();
        for (int e = e0 + 8 * half; e < e1; e += 16) {
            __m256 wv[2], xv[4];
            for (int r = 0; r < 2; r++) wv[r] = r < nr ? load_w8(w0 + (size_t)r * wstride + (size_t)e * esz, dt) : _mm256_setzero_ps();
            for (int t = 0; t < 4; t++) xv[t] = t < nt ? _mm256_loadu_ps(x + (size_t)t * ldx + e) : _mm256_setzero_ps();
            for (int t = 0; t < 4; t++)
                for (int r = 0; r < 2; r++) acc[t * 2 + r] = _mm256_fmadd_ps(wv[r], xv[t], acc[t * 2 + r]);
        }
        if (half == 0)
            for (int i = 0; i < 8; i++) lo[i] = acc[i];
    }
    for (int i = 0; i < 8; i++) acc[i] = _mm256_add_ps(lo[i], acc[i]);
    float out[8];
    _mm256_storeu_ps(out, qtree8(acc));
    for (int t = 0; t < nt; t++)
        for (int r = 0; r < nr; r++) p[(size_t)t * ldy + (size_t)r] = out[t * 2 + r];
}

QM_ROWPAR_TOKEN_KERNELS(2) /* blocks_tokens (rowpar.h) */

/* From 9 tokens, the tokens side by side. A block's lane l (its columns e0 + l + 16 j, j = 0,
 * 1, ..: the lanes of the tiles above, lo and hi) is, for 16 tokens, two ymm, updated by FMAs of
 * the row's weight, broadcast, with the block's activations transposed (xt[c][t]). qtree8's lane
 * tree (lo + hi: L_l = V_l + V_(l+8); then a_l = L_l + L_(l+4), (a_0 + a_2) + (a_1 + a_3)) is
 * then vertical adds of whole vectors: the same sums in the same order, no shuffles. A register
 * tile is TOK_ROWS rows x 16 tokens x lanes l and l + 8, 12 accumulators; a block's transposed
 * activations (4 KB for 64 columns) stay in the L1 while TOK_TILE_ROWS rows go by. bf16 896 x
 * 4864 x 16 tokens, one thread, --isa avx2 (AMD EPYC family 26): 44-51 GFLOP/s in the 2 x 4
 * tiles, 60-66 here (2 rows a tile: 52-55). Up to 8 tokens the 2 x 4 tiles stay: half-empty
 * vectors made this slower there (8 tokens 46 against 53, 4 tokens 25 against 60). */
#define TOK_ROWS 3
#define TOK_TILE_ROWS 18

/* Columns [e0, e1) (a multiple of 8 wide) of tokens [0, nt) (nt <= 16) of x, transposed:
 * xt[(c - e0) * 16 + t], zero for t >= nt. */
QM_INLINE void xt_block(const float *x, size_t ldx, int nt, int e0, int e1, float *xt) {
    for (int c = e0; c < e1; c += 8)
        for (int g = 0; g < 2; g++) {
            __m256 v[8];
            for (int i = 0; i < 8; i++)
                v[i] = 8 * g + i < nt ? _mm256_loadu_ps(x + (size_t)(8 * g + i) * ldx + (size_t)c) : _mm256_setzero_ps();
            transpose8(v);
            for (int i = 0; i < 8; i++) _mm256_store_ps(xt + (size_t)(c - e0 + i) * 16 + 8 * g, v[i]);
        }
}

/* TOK_ROWS rows' block (wf[r]: row r's n weights, f32, or bf16 when bf16; n a multiple of 16) x the 16 tokens of xt:
 * the block dots, row r's token 8 g + i in lane i of d[r][g]. Pass l < 8 runs lanes l and l + 8. */
QM_INLINE void tok_dots(const void *const wf[TOK_ROWS], int bf16, int n, const float *xt, __m256 d[TOK_ROWS][2]) {
    __m256 L[8][TOK_ROWS][2];
    for (int l = 0; l < 8; l++) {
        __m256 acc[2][TOK_ROWS][2]; /* [lane l + 8 m][row][tokens 8 g ..] */
        for (int m = 0; m < 2; m++)
            for (int r = 0; r < TOK_ROWS; r++) acc[m][r][0] = acc[m][r][1] = _mm256_setzero_ps();
        for (int j = 0; j < n; j += 16)
            for (int m = 0; m < 2; m++) {
                const int c = j + l + 8 * m;
                const __m256 x0 = _mm256_load_ps(xt + (size_t)c * 16), x1 = _mm256_load_ps(xt + (size_t)c * 16 + 8);
                for (int r = 0; r < TOK_ROWS; r++) {
                    const __m256 b = wide_weight(wf[r], (size_t)c, bf16);
                    acc[m][r][0] = _mm256_fmadd_ps(b, x0, acc[m][r][0]);
                    acc[m][r][1] = _mm256_fmadd_ps(b, x1, acc[m][r][1]);
                }
            }
        for (int r = 0; r < TOK_ROWS; r++)
            for (int g = 0; g < 2; g++) L[l][r][g] = _mm256_add_ps(acc[0][r][g], acc[1][r][g]);
    }
    for (int r = 0; r < TOK_ROWS; r++)
        for (int g = 0; g < 2; g++) {
            __m256 a[4];
            for (int l = 0; l < 4; l++) a[l] = _mm256_add_ps(L[l][r][g], L[l + 4][r][g]);
            d[r][g] = _mm256_add_ps(_mm256_add_ps(a[0], a[2]), _mm256_add_ps(a[1], a[3]));
        }
}

static void qrow_any(const char *row, qm_dtype dt, int col0, int cols, float *out);

/* The bytes before row element e (within a block-quantized type's block: its share of the block). */
QM_INLINE size_t elem_bytes(qm_dtype dt, int e) {
    const size_t qk = (size_t)qm_dtype_block(dt), bb = qm_dtype_block_bytes(dt);
    return (size_t)e / qk * bb + (size_t)e % qk * bb / qk;
}

/* A tile's K-quant superblock scales in hand: the rows' qkscales (ks[r], row o0 + r of the tile)
 * and the superblock they are of (sb[r], -1: none), kept while the tile's blocks go by in order. */
typedef struct {
    float ks[TOK_TILE_ROWS][16] __attribute__((aligned(32)));
    int sb[TOK_TILE_ROWS];
} kscale_cache;

static void kscale_reset(kscale_cache *kc) {
    for (int r = 0; r < TOK_TILE_ROWS; r++) kc->sb[r] = -1;
}

/* Rows [o0, o1) of a K-quant's n columns (whole 64-column steps) from row element e (a multiple of
 * 64) into wf[o - o0][n] through qstep, each row's superblock scales made once for its four steps
 * (kc), where qrow_f32 made them again for each block. The type a constant. */
QM_INLINE void k_rows_dt(const char *w0, size_t ws, qm_dtype dt, unsigned e, int n, int o0, int o1, kscale_cache *kc,
                         float *wf) {
    const size_t bb = qm_dtype_block_bytes(dt);
    for (int o = o0; o < o1; o++) {
        const int r = o - o0;
        for (int i = 0; i < n; i += 64) {
            const unsigned ei = e + (unsigned)i;
            const int sb = (int)(ei / 256), fresh = kc->sb[r] != sb;
            kc->sb[r] = sb;
            __m256 w[4][2];
            qstep(dt, (const uint8_t *)w0 + (size_t)o * ws + (size_t)sb * bb, (int)(ei % 256 / 64), fresh, kc->ks[r], w);
            for (int g = 0; g < 4; g++) {
                _mm256_store_ps(wf + (size_t)r * (size_t)n + (size_t)(i + 16 * g), w[g][0]);
                _mm256_store_ps(wf + (size_t)r * (size_t)n + (size_t)(i + 16 * g + 8), w[g][1]);
            }
        }
    }
}

static void k_rows_any(const char *w0, size_t ws, qm_dtype dt, unsigned e, int n, int o0, int o1, kscale_cache *kc,
                       float *wf) {
    switch (dt) {
    case QM_DT_Q4_K: k_rows_dt(w0, ws, QM_DT_Q4_K, e, n, o0, o1, kc, wf); break;
    case QM_DT_Q5_K: k_rows_dt(w0, ws, QM_DT_Q5_K, e, n, o0, o1, kc, wf); break;
    default: k_rows_dt(w0, ws, QM_DT_Q6_K, e, n, o0, o1, kc, wf); break;
    }
}

/* Rows [o0, o1) (at most TOK_TILE_ROWS) of a block (columns [e0, e1) of a view from row element
 * col0) x tokens [0, nt) whose transposed block is xt: the dots into p[t * ldy + o]. A 16-bit
 * type's rows are converted to f32 first, a block-quantized type's dequantized (qrow_any), the
 * tile's at once (wf), so that no broadcast waits on a store just made (f32 and bf16 rows are read
 * as they are: wide_weight); each row's block two blocks on is prefetched (the rows are as many
 * strided streams). The dots go to p[t * ldy + o], or with rows16 to p[o * 16 + t]. */
QM_INLINE void tok_rows(const char *w0, size_t ws, qm_dtype dt, int col0, int o0, int o1, int e0, int e1,
                        const float *xt, int nt, float *p, size_t ldy, int rows16, kscale_cache *kc) {
    const size_t esz = qm_dtype_block_bytes(dt), n = (size_t)(e1 - e0);
    const size_t at = elem_bytes(dt, col0 + e0), nbytes = elem_bytes(dt, col0 + e1) - at;
    float wf[TOK_TILE_ROWS * 256] __attribute__((aligned(32))); /* [o - o0][n]: the rows as f32 */
    const int k_step = kc && dt >= QM_DT_Q4_K && n % 64 == 0 && (col0 + e0) % 64 == 0; /* k_rows_any */
    for (int o = o0; o < o1; o++) {
        const char *row = w0 + (size_t)o * ws + at;
        for (size_t b = 0; b < nbytes; b += 64) _mm_prefetch(row + 2 * nbytes + b, _MM_HINT_T0);
        if (k_step) continue; /* after the loop */
        if (qm_dtype_is_quant(dt))
            qrow_any(w0 + (size_t)o * ws, dt, col0 + e0, (int)n, wf + (size_t)(o - o0) * n);
        else if (dt != QM_DT_F32 && dt != QM_DT_BF16) /* those two as they are (wide_weight) */
            for (size_t c = 0; c < n; c += 8) _mm256_store_ps(wf + (size_t)(o - o0) * n + c, load_w8(row + c * esz, dt));
    }
    if (k_step) k_rows_any(w0, ws, dt, (unsigned)(col0 + e0), (int)n, o0, o1, kc, wf);
    for (int o = o0; o < o1; o += TOK_ROWS) {
        const int nr = o1 - o < TOK_ROWS ? o1 - o : TOK_ROWS;
        const void *wr[TOK_ROWS]; /* rows past nr: row o again, its dots dropped */
        for (int r = 0; r < TOK_ROWS; r++) {
            const int orow = r < nr ? o + r : o;
            wr[r] = dt == QM_DT_F32 || dt == QM_DT_BF16 ? (const void *)(w0 + (size_t)orow * ws + (size_t)e0 * esz)
                                                        : (const void *)(wf + (size_t)(orow - o0) * n);
        }
        __m256 d[TOK_ROWS][2];
        if (n == 64) tok_dots(wr, dt == QM_DT_BF16, 64, xt, d);
        else tok_dots(wr, dt == QM_DT_BF16, (int)n, xt, d);
        for (int r = 0; r < nr && rows16; r++) { /* p[(o + r) * 16 + t], all 16 tokens */
            _mm256_store_ps(p + (size_t)(o + r) * 16, d[r][0]);
            _mm256_store_ps(p + (size_t)(o + r) * 16 + 8, d[r][1]);
        }
        for (int r = 0; r < nr && !rows16; r++) {
            float out[16] __attribute__((aligned(32)));
            _mm256_store_ps(out, d[r][0]);
            _mm256_store_ps(out + 8, d[r][1]);
            for (int t = 0; t < nt; t++) p[(size_t)t * ldy + (size_t)(o + r)] = out[t];
        }
    }
}

/* matmul_blocks over tokens [t0, t0 + nt), 8 < nt <= 16 (tokens_wide_shape: blocks of bc <= 256
 * columns, whole 16-column lanes): rows in tiles of TOK_TILE_ROWS, each block transposed once a
 * tile. */
QM_INLINE void blocks_wide_dt(const qm_wview *w, qm_dtype dt, const float *x, size_t ldx, int t0, int nt, int bc,
                              int nb, float *part, size_t pstride, size_t ldy, int o_begin, int o_end) {
    const size_t ws = qm_wview_stride(w);
    float xt[256 * 16] __attribute__((aligned(32))); /* [c - e0][16 tokens] */
    kscale_cache kc;
    for (int o0 = o_begin; o0 < o_end; o0 += TOK_TILE_ROWS) {
        const int o1 = o_end - o0 < TOK_TILE_ROWS ? o_end : o0 + TOK_TILE_ROWS;
        kscale_reset(&kc);
        for (int k = 0; k < nb; k++) {
            const int e0 = k * bc, e1 = e0 + bc < w->cols ? e0 + bc : w->cols;
            xt_block(x + (size_t)t0 * ldx, ldx, nt, e0, e1, xt);
            tok_rows(w->data, ws, dt, w->col0, o0, o1, e0, e1, xt, nt, part + (size_t)k * pstride + (size_t)t0 * ldy,
                     ldy, 0, &kc);
        }
    }
}

/* The views blocks_tokens_wide takes: a plain type's as qm_rowpar_tokens_shape, over any count of
 * tokens; a block-quantized type's from a row element col0 % 16 == 0 (lane i % 16 for column i),
 * over 9 to 16 tokens (one chunk side by side; the 2 x 4 tiles take plain types only). */
static int tokens_wide_shape(const qm_wview *w, int n_tok, int bc, int nb) {
    if (!qm_dtype_is_quant(w->dtype)) return qm_rowpar_tokens_shape(w, bc, nb);
    return n_tok > 8 && n_tok <= 16 && w->col0 % 16 == 0 && bc % 16 == 0 && bc <= 256 && w->cols % 16 == 0 &&
           nb == (w->cols + bc - 1) / bc;
}

/* blocks_tokens with the chunks of 9 to 16 tokens side by side; the rest in the 2 x 4 tiles. */
static __attribute__((noinline)) void blocks_tokens_wide(const qm_wview *w, const float *x, size_t ldx, int n_tok,
                                                         int bc, int nb, float *part, size_t pstride, size_t ldy,
                                                         int o_begin, int o_end) {
    for (int t0 = 0; t0 < n_tok; t0 += 16) {
        const int nt = n_tok - t0 < 16 ? n_tok - t0 : 16;
        if (nt <= 8)
            blocks_tokens(w, x + (size_t)t0 * ldx, ldx, nt, bc, nb, part + (size_t)t0 * ldy, pstride, ldy, o_begin, o_end);
        else if (w->dtype == QM_DT_F32)
            blocks_wide_dt(w, QM_DT_F32, x, ldx, t0, nt, bc, nb, part, pstride, ldy, o_begin, o_end);
        else if (w->dtype == QM_DT_F16)
            blocks_wide_dt(w, QM_DT_F16, x, ldx, t0, nt, bc, nb, part, pstride, ldy, o_begin, o_end);
        else if (w->dtype == QM_DT_BF16)
            blocks_wide_dt(w, QM_DT_BF16, x, ldx, t0, nt, bc, nb, part, pstride, ldy, o_begin, o_end);
        else /* block-quantized: qrow_any */
            blocks_wide_dt(w, w->dtype, x, ldx, t0, nt, bc, nb, part, pstride, ldy, o_begin, o_end);
    }
}

/* The one-token shapes blocks_fast takes: whole steps, blocks that cover the view. */
static int blocks_fast_shape(const qm_wview *w, int n_tok, int bc, int nb) {
    return n_tok == 1 && (bc == 64 || bc == 128) && nb >= 1 && (unsigned)w->dtype < QM_DT_COUNT &&
           w->col0 % QSTEP(w->dtype) == 0 && w->cols % 64 == 0 && nb == (w->cols + bc - 1) / bc;
}

static void matmul_blocks_avx2(const qm_wview *w, const float *x, size_t ldx, int n_tok, int bc, int nb, float *part,
                               size_t pstride, size_t ldy, int o_begin, int o_end) {
    const int fast = blocks_fast_shape(w, n_tok, bc, nb);
    if (!fast && n_tok > 1 && tokens_wide_shape(w, n_tok, bc, nb)) {
        if (o_begin < o_end) blocks_tokens_wide(w, x, ldx, n_tok, bc, nb, part, pstride, ldy, o_begin, o_end);
        return;
    }
    if (!fast) {
        qm_blocks_by_views(matmul_avx2, w, x, ldx, n_tok, bc, nb, part, pstride, ldy, o_begin, o_end);
        return;
    }
    if (o_begin < o_end) blocks_fast(w, x, bc, nb, part, pstride, o_begin, o_end);
}

QM_ROWPAR_EXACT_NODES_ENTRY(matmul_nodes_decode, blocks_fast, blocks_fast_shape) /* rowpar.h */

/* ---- row-parallel layers over NMIN tokens or more (prefill): the panels of 16 rows ----
 * A 64-column block gives each lane 4 steps; there the register holds one lane of 8 rows: QTR = 16
 * rows dequantized into a transposed buffer (bt, lane-major: bt_at), lane c of the 16 rows x T
 * tokens is 2 x T accumulators, and for each column i = c, c + 16, ... the 16 weights of column i
 * (2 loads) times x[t][i] (a broadcast) are FMA'd into them: the canonical sequence of FMAs of each
 * (row, token, lane); the halving tree over the 16 lanes is then element-wise adds of lane
 * vectors. pw_tile on these blocks (4 rows x 24 tokens) was slower: `bench_qmatmul pre avx2 BF16
 * 896 4864 512` nodes 50-56 against 58-62 GFLOP/s (one thread, AMD EPYC Zen 4). */
#define QTR 16
#define QTT 6   /* tokens a panel's pass */
/* tokens a group: each block's rows are converted and transposed once for them. 512, not 128:
 * the conversion (qrow_any) took 6.7% of a 512-token bf16 prefill, done 4 times over. One thread,
 * `bench_qmatmul pre avx2 BF16 896 4864 512` nodes 60.4-61.1 -> 63.8-64.2 GFLOP/s (256: 62.6-62.9);
 * `qmesh bench -m r05-bf16.gguf --isa avx2 --prompt 512 --threads 2`, builds alternated five
 * times: 169-185 -> 181-191 tok/s. A tree walks one level a depth (8 for the 0.5B's 76 blocks),
 * 32 KB each at 512 tokens: in the L2. */
#define QTG 512
/* dst[j * ldd + i] = src[i * lds + j], i, j < 8. */
QM_INLINE void qtranspose8(const float *src, size_t lds, float *dst, size_t ldd) {
    __m256 v[8];
    for (int i = 0; i < 8; i++) v[i] = _mm256_load_ps(src + (size_t)i * lds);
    transpose8(v);
    for (int j = 0; j < 8; j++) _mm256_store_ps(dst + (size_t)j * ldd, v[j]);
}

/* The panel's place of column i of a chunk of nj = ceil(kc / 16) steps: lane-major, lane i % 16's
 * steps one after another (bt[((i % 16) nj + i / 16) QTR + r]), so that a lane's loop reads its
 * weights as one stream. */
QM_INLINE size_t bt_at(int i, int nj) { return ((size_t)(i % 16) * (size_t)nj + (size_t)(i / 16)) * QTR; }

/* Columns i .. i + 7 (i % 8 == 0) of 8 rows (src, lds) into the lane-major panel bt (row h first). */
QM_INLINE void bt_put8(const float *src, size_t lds, float *bt, int i, int nj, int h) {
    qtranspose8(src, lds, bt + bt_at(i, nj) + h, (size_t)nj * QTR);
}

/* The 16 lanes of QTR rows x T tokens over columns [0, kc) of the block's panel bt (lane-major,
 * bt_at; x: the block's first column of token 0), each from +0.0f; lb[(t * 16 + c) * QTR + r]. */
QM_INLINE void qlanes(const float *bt, int kc, int T, const float *x, size_t ldx, float *lb) {
    const int nj = (kc + 15) / 16;
    for (int c = 0; c < 16; c++) {
        __m256 a0[QTT], a1[QTT];
        for (int t = 0; t < T; t++) a0[t] = a1[t] = _mm256_setzero_ps();
        const float *bc = bt + bt_at(c, nj);
        for (int i = c; i < kc; i += 16, bc += QTR) {
            const __m256 w0 = _mm256_load_ps(bc), w1 = _mm256_load_ps(bc + 8);
            for (int t = 0; t < T; t++) {
                const __m256 xb = _mm256_broadcast_ss(x + (size_t)t * ldx + (size_t)i);
                a0[t] = _mm256_fmadd_ps(w0, xb, a0[t]);
                a1[t] = _mm256_fmadd_ps(w1, xb, a1[t]);
            }
        }
        for (int t = 0; t < T; t++) {
            float *p = lb + ((size_t)t * 16 + (size_t)c) * QTR;
            _mm256_store_ps(p, a0[t]);
            _mm256_store_ps(p + 8, a1[t]);
        }
    }
}

static void qlanes_any(const float *bt, int kc, int T, const float *x, size_t ldx, float *lb) {
    switch (T) { /* T <= QTT */
    case 6: qlanes(bt, kc, 6 <= QTT ? 6 : 1, x, ldx, lb); break;
    case 5: qlanes(bt, kc, 5 <= QTT ? 5 : 1, x, ldx, lb); break;
    case 4: qlanes(bt, kc, 4 <= QTT ? 4 : 1, x, ldx, lb); break;
    case 3: qlanes(bt, kc, 3, x, ldx, lb); break;
    case 2: qlanes(bt, kc, 2, x, ldx, lb); break;
    default: qlanes(bt, kc, 1, x, ldx, lb); break;
    }
}

/* The halving tree (w = 8, 4, 2, 1) of the 16 lanes of token t, rows g..g+7 (lb as qlanes leaves it). */
QM_INLINE __m256 lanes_tree(const float *lb, int t, int g) {
    __m256 v[16];
    for (int c = 0; c < 16; c++) v[c] = _mm256_load_ps(lb + ((size_t)t * 16 + (size_t)c) * QTR + g);
    for (int w = 8; w >= 1; w /= 2)
        for (int l = 0; l < w; l++) v[l] = _mm256_add_ps(v[l], v[l + w]);
    return v[0];
}

/* ---- row-parallel layers over NMIN tokens or more (prefill): the nodes in the kernel ----
 * For QTR rows x up to QTG tokens at a time, each block's 16 rows are dequantized (or converted)
 * into a transposed panel, its lanes FMA'd side by side (qlanes: the canonical
 * sequence of each lane), each lane tree made (lanes_tree), and the block dots go straight into
 * the halving tree over the blocks, evaluated depth first: a node of count >= 2 is its left child
 * (the first count/2 blocks) plus its right child, one add per element. At most one value per
 * level is alive ([tg][QTR] floats each), where the leaves path wrote every block dot of every
 * token to memory and walked the tree there (a 512-token prefill: 1.8 MB a block). */
#define NODE_LEVELS 17 /* a tree of up to 2^16 blocks */

typedef struct {
    const char *w0; /* the tile's first row */
    size_t wstride;
    qm_dtype dt;
    int col0, cols, bc, nr, tg; /* view; block columns; the tile's rows and tokens */
    const float *x;             /* the group's first token, the view's column 0 */
    size_t ldx;
    float *rows, *bt, *lb, *level; /* [8][bc8]; [bc8][QTR]; [QTT][16][QTR]; [NODE_LEVELS][tg][QTR] */
} node_walk;

/* qrow_f32 with the type a constant in each case. */
static void qrow_any(const char *row, qm_dtype dt, int col0, int cols, float *out) {
#define QROW_DT(dt_) qrow_f32(row, dt_, col0, cols, out)
    switch (dt) {
    case QM_DT_F32: QROW_DT(QM_DT_F32); break;
    case QM_DT_F16: QROW_DT(QM_DT_F16); break;
    case QM_DT_BF16: QROW_DT(QM_DT_BF16); break;
    default: QM_SWITCH_QUANT_DTYPE(dt, QROW_DT); break;
    }
#undef QROW_DT
}

/* Block k's dots of the tile's rows x tokens into v[t * QTR + r] (rows nr.. are zero). */
static void node_leaf(const node_walk *nw, int k, float *v) {
    const int e0 = k * nw->bc, kc = nw->cols - e0 < nw->bc ? nw->cols - e0 : nw->bc, kc8 = (kc + 7) / 8 * 8;
    const size_t ldr = (size_t)(nw->bc + 7) / 8 * 8;
    for (int h = 0; h < QTR; h += 8) {
        for (int r = 0; r < 8; r++) {
            float *row = nw->rows + (size_t)r * ldr;
            const int in = h + r < nw->nr;
            if (in) qrow_any(nw->w0 + (size_t)(h + r) * nw->wstride, nw->dt, nw->col0 + e0, kc, row);
            memset(row + (in ? kc : 0), 0, (size_t)(kc8 - (in ? kc : 0)) * sizeof(float));
        }
        for (int i = 0; i < kc8; i += 8) bt_put8(nw->rows + i, ldr, nw->bt, i, (kc + 15) / 16, h);
    }
    for (int tt = 0; tt < nw->tg; tt += QTT) { /* QTT tokens' lanes (6 KB, in the L1), then their trees */
        const int T = nw->tg - tt < QTT ? nw->tg - tt : QTT;
        qlanes_any(nw->bt, kc, T, nw->x + (size_t)tt * nw->ldx + (size_t)e0, nw->ldx, nw->lb);
        for (int t = 0; t < T; t++)
            for (int g = 0; g < QTR; g += 8) _mm256_store_ps(v + (size_t)(tt + t) * QTR + g, lanes_tree(nw->lb, t, g));
    }
}

/* The halving tree of blocks [first, first + count) into level `lv` (its children use lv, lv + 1). */
static const float *node_value(const node_walk *nw, int first, int count, int lv) {
    float *v = nw->level + (size_t)lv * (size_t)nw->tg * QTR;
    if (count == 1) {
        node_leaf(nw, first, v);
        return v;
    }
    node_value(nw, first, count / 2, lv);
    const float *right = node_value(nw, first + count / 2, count - count / 2, lv + 1);
    for (size_t i = 0; i < (size_t)nw->tg * QTR; i += 8)
        _mm256_store_ps(v + i, _mm256_add_ps(_mm256_load_ps(v + i), _mm256_load_ps(right + i)));
    return v;
}

/* The nodes of rows [o_begin, o_end) x n_tok tokens (kernels.h matmul_nodes); 0 without buffers. */
static int nodes_tokens(const qm_wview *w, const float *x, size_t ldx, int n_tok, int bc, const qm_leaf_node *nodes,
                        int n_nodes, float *out, size_t ostride, size_t ldy, int o_begin, int o_end) {
    const size_t bc8 = (size_t)(bc + 7) / 8 * 8, tg = n_tok < QTG ? (size_t)n_tok : QTG; /* a group's most */
    float *buf = aligned_alloc(32, (8 * bc8 + bc8 * QTR + QTT * 16 * QTR + NODE_LEVELS * tg * QTR) * sizeof(float));
    if (!buf) return 0;
    node_walk nw = {.wstride = qm_wview_stride(w), .dt = w->dtype, .col0 = w->col0, .cols = w->cols, .bc = bc,
                    .ldx = ldx, .rows = buf, .bt = buf + 8 * bc8};
    nw.lb = nw.bt + bc8 * QTR;
    nw.level = nw.lb + QTT * 16 * QTR;
    for (int o0 = o_begin; o0 < o_end; o0 += QTR) {
        nw.w0 = (const char *)w->data + (size_t)o0 * nw.wstride;
        nw.nr = o_end - o0 < QTR ? o_end - o0 : QTR;
        for (int t0 = 0; t0 < n_tok; t0 += QTG) {
            nw.tg = n_tok - t0 < QTG ? n_tok - t0 : QTG;
            nw.x = x + (size_t)t0 * ldx;
            for (int i = 0; i < n_nodes; i++) {
                const float *v = node_value(&nw, nodes[i].first, nodes[i].count, 0);
                float *oi = out + (size_t)i * ostride + (size_t)t0 * ldy + (size_t)o0;
                for (int t = 0; t < nw.tg; t++) memcpy(oi + (size_t)t * ldy, v + (size_t)t * QTR, (size_t)nw.nr * sizeof(float));
            }
        }
    }
    free(buf);
    return 1;
}

/* matmul_nodes: one token by the block path (rowpar.h); from NMIN tokens nodes_tokens, where the
 * blocks cover the view in whole 16-column lanes. Between, the register tiles of matmul_blocks
 * (blocks_tokens_wide; its 2 x 4 tiles, which read the rows two at a time along the blocks, were
 * measured faster at batch 16 than nodes_tokens: `qmesh bench --batch 16`, 0.5B bf16, 38 against
 * 34 tok/s), with the nodes made from their block dots in the L2 (qm_rowpar_nodes_few). From 9
 * tokens, where tokens_wide_shape holds (the models' views), matmul_nodes_avx2 below takes the call
 * first: nodes_wide on chunks of at most 16 tokens, as even as can be (a plain type's prefill of
 * 512 tokens too: the chunks' tiles ran faster than nodes_tokens' panels, `bench_qmatmul pre avx2
 * BF16 896 4864 512` nodes 54-56 -> 70-76 GFLOP/s, F16 57-62 -> 76-77, F32 level; the weights are
 * read again for each chunk, from the L3 where a layer's view fits). A block-quantized type's
 * prefill stays with nodes_tokens, which dequantizes each block once for QTG tokens: in chunks the
 * 1.5B's exact prefill spent 13% of its time dequantizing and was no faster. */
QM_ROWPAR_TOKENS_NODES_ENTRY(matmul_nodes_rowpar, matmul_nodes_decode, nodes_tokens, blocks_tokens_wide, tokens_wide_shape,
                             NMIN, NODE_LEVELS) /* rowpar.h */

/* ---- row-parallel layers over 9 to 16 tokens (batched decode): the nodes of the tokens side by side ----
 * The view's activations are transposed once a call (xt_block over all its columns, 16 floats a
 * column: 311 KB for the 0.5B's down_proj, in the L2), where qm_rowpar_nodes_few over
 * blocks_tokens_wide transposed every block again for each tile of 16 rows; tiles of NW_ROWS rows,
 * a multiple of TOK_ROWS (16 left a register tile of 3 rows with one row in it), each block's dots
 * by tok_rows into lf[block][row][16 tokens] (two vector stores a row: with lf[block][token][row]
 * the 16 scalar stores a row took 15% of the kernel; `bench_qmatmul pre avx2 BF16 896 4864 16`,
 * one thread, Zen 4: 59-60 -> 76-77 GFLOP/s), then the tile's nodes added up there as
 * qm_rowpar_store_nodes does. The same block dots, the same tree. */
#define NW_ROWS TOK_TILE_ROWS
#define LF_BLOCK (16 * NW_ROWS) /* a block's dots in lf: [row][16 tokens], written as whole vectors */
_Static_assert(NW_ROWS % TOK_ROWS == 0, "whole register tiles");

QM_INLINE void nodes_wide_dt(const qm_wview *w, qm_dtype dt, const float *xt, int n_tok, int bc, int nb,
                             const qm_leaf_node *nodes, int n_nodes, float *lf, float *out, size_t ostride,
                             size_t ldy, int o_begin, int o_end) {
    const size_t ws = qm_wview_stride(w);
    kscale_cache kc;
    for (int o = o_begin; o < o_end; o += NW_ROWS) {
        const int nr = o_end - o < NW_ROWS ? o_end - o : NW_ROWS;
        const char *w0 = (const char *)w->data + (size_t)o * ws;
        kscale_reset(&kc);
        for (int k = 0; k < nb; k++) {
            const int e0 = k * bc, e1 = e0 + bc < w->cols ? e0 + bc : w->cols;
            tok_rows(w0, ws, dt, w->col0, 0, nr, e0, e1, xt + (size_t)e0 * 16, n_tok, lf + (size_t)k * LF_BLOCK, 16, 1,
                     &kc);
        }
        for (int i = 0; i < n_nodes; i++) { /* qm_rowpar_store_nodes with a block's dots [row][16 tokens] */
            const float *v = qm_tree_halving_sum(lf, LF_BLOCK, nodes[i].first, nodes[i].count);
            float *oi = out + (size_t)i * ostride + o;
            for (int t = 0; t < n_tok; t++)
                for (int r = 0; r < nr; r++) oi[(size_t)t * ldy + (size_t)r] = v[r * 16 + t];
        }
    }
}

/* matmul_nodes of 9 tokens or more where tokens_wide_shape holds, in chunks of at most 16 tokens,
 * as even as can be (the buffers made once for all of them); 0 without buffers. */
static __attribute__((noinline)) int nodes_wide(const qm_wview *w, const float *x, size_t ldx, int n_tok, int bc,
                                                int nb, const qm_leaf_node *nodes, int n_nodes, float *out,
                                                size_t ostride, size_t ldy, int o_begin, int o_end) {
    float *xt = aligned_alloc(32, (size_t)w->cols * 16 * sizeof(float)); /* [column][16 tokens] */
    float *lf = aligned_alloc(32, (size_t)nb * LF_BLOCK * sizeof(float)); /* [block][row][16 tokens] */
    const int ok = xt && lf, nc = (n_tok + 15) / 16;
    for (int c = 0, t0 = 0, nt; ok && c < nc; c++, t0 += nt) {
        nt = (n_tok - t0 + (nc - c) - 1) / (nc - c);
        xt_block(x + (size_t)t0 * ldx, ldx, nt, 0, w->cols, xt);
        float *oc = out + (size_t)t0 * ldy;
#define NODES_WIDE(dt_) nodes_wide_dt(w, dt_, xt, nt, bc, nb, nodes, n_nodes, lf, oc, ostride, ldy, o_begin, o_end)
        switch (w->dtype) {
        case QM_DT_F32: NODES_WIDE(QM_DT_F32); break;
        case QM_DT_F16: NODES_WIDE(QM_DT_F16); break;
        case QM_DT_BF16: NODES_WIDE(QM_DT_BF16); break;
        default: NODES_WIDE(w->dtype); break; /* block-quantized: qrow_any */
        }
#undef NODES_WIDE
    }
    free(xt);
    free(lf);
    return ok;
}

static int matmul_nodes_avx2(const qm_wview *w, const float *x, size_t ldx, int n_tok, int bc, int nb,
                             const qm_leaf_node *nodes, int n_nodes, float *out, size_t ostride, size_t ldy, int o_begin,
                             int o_end) {
    if (n_tok > 8 && (n_tok <= 16 || !qm_dtype_is_quant(w->dtype)) &&
        tokens_wide_shape(w, n_tok < 16 ? n_tok : 16, bc, nb)) {
        if (o_begin >= o_end) return 1;
        if (nodes_wide(w, x, ldx, n_tok, bc, nb, nodes, n_nodes, out, ostride, ldy, o_begin, o_end)) return 1;
    }
    return matmul_nodes_rowpar(w, x, ldx, n_tok, bc, nb, nodes, n_nodes, out, ostride, ldy, o_begin, o_end);
}

const qm_kernels qm_kernels_avx2_table = {
    .isa = "avx2", .matmul = matmul_avx2, .dot = dot_avx2, .axpy = axpy_avx2, .attn_values = attn_values_avx2,
    .quantize_act = qm_quantize_act_avx2, .matmul_q8 = qm_matmul_q8_avx2,
    .matmul_blocks = matmul_blocks_avx2, .matmul_q8_blocks = qm_matmul_q8_blocks_avx2,
    .matmul_q8_nodes = qm_matmul_q8_nodes_avx2, .matmul_nodes = matmul_nodes_avx2,
    .head_pass = qm_head_pass_avx2, .head_pass_min_outputs = 8, .head_finish = qm_head_finish_avx2,
    .exp_sub = qm_exp_sub_avx2, .silu_mul = qm_silu_mul_avx2, .exact_prefers_q8 = true,
    .q8_rows8_types = 1u << QM_DT_Q4_0 | 1u << QM_DT_Q5_0 | 1u << QM_DT_Q4_K,
    .q8_rows8_rowpar_types = 1u << QM_DT_Q4_K};
