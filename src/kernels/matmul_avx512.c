/* AVX-512 kernels. One zmm register is the 16 lanes of the canonical order (kernels.h):
 * lane l of an accumulator receives elements i with i % 16 == l, in increasing i, by FMA;
 * a tail of r < 16 elements goes to lanes 0..r-1 by masked FMA, the other lanes untouched;
 * the halving tree 8, 4, 2, 1 is done with shuffles, always as acc[l] + acc[l + w].
 *
 * matmul tiles R output rows x T tokens of accumulators: each weight vector is loaded and
 * converted once per tile and reused for T tokens, each x vector reused for R rows. Every
 * accumulator still sees exactly the canonical sequence of FMAs, so tiling changes no bit. */
#include <immintrin.h>
#include <stdint.h>
#include <string.h>

#include "kernels/expf_isa.h"
#include "kernels/kernels.h"
#include "kernels/qdot.h"
#include "kernels/quant.h"
#include "kernels/rowpar.h"

#include "kernels/inline.h"

/* 16 weights of dtype dt at p, converted exactly to f32. */
QM_INLINE __m512 load_w(const void *p, qm_dtype dt) {
    if (dt == QM_DT_F32) return _mm512_loadu_ps(p);
    __m256i h = _mm256_loadu_si256((const __m256i *)p);
    if (dt == QM_DT_BF16) return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
    return _mm512_cvtph_ps(h);
}

/* The first lanes of m only; the others read nothing (no fault past the end) and give 0. */
QM_INLINE __m512 load_w_mask(const void *p, qm_dtype dt, __mmask16 m) {
    if (dt == QM_DT_F32) return _mm512_maskz_loadu_ps(m, p);
    __m256i h = _mm256_maskz_loadu_epi16(m, p);
    if (dt == QM_DT_BF16) return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
    return _mm512_cvtph_ps(h);
}

/* Canonical halving tree of four accumulators at once: returns their four sums. */
QM_INLINE __m128 reduce4(__m512 a, __m512 b, __m512 c, __m512 d) {
    /* w = 8: 128-bit blocks [a0 a1 b0 b1] + [a2 a3 b2 b3] -> a's 8 lanes, then b's. */
    __m512 ab = _mm512_add_ps(_mm512_shuffle_f32x4(a, b, _MM_SHUFFLE(1, 0, 1, 0)),
                              _mm512_shuffle_f32x4(a, b, _MM_SHUFFLE(3, 2, 3, 2)));
    __m512 cd = _mm512_add_ps(_mm512_shuffle_f32x4(c, d, _MM_SHUFFLE(1, 0, 1, 0)),
                              _mm512_shuffle_f32x4(c, d, _MM_SHUFFLE(3, 2, 3, 2)));
    /* w = 4: [ab0 ab2 cd0 cd2] + [ab1 ab3 cd1 cd3] -> one block of 4 lanes per output. */
    __m512 s = _mm512_add_ps(_mm512_shuffle_f32x4(ab, cd, _MM_SHUFFLE(2, 0, 2, 0)),
                             _mm512_shuffle_f32x4(ab, cd, _MM_SHUFFLE(3, 1, 3, 1)));
    /* w = 2: lanes 0,1 + lanes 2,3 within each block; w = 1: lane 0 + lane 1. */
    s = _mm512_add_ps(s, _mm512_permute_ps(s, _MM_SHUFFLE(3, 2, 3, 2)));
    s = _mm512_add_ps(s, _mm512_permute_ps(s, _MM_SHUFFLE(1, 1, 1, 1)));
    __m512 g = _mm512_permutexvar_ps(_mm512_setr_epi32(0, 4, 8, 12, 0, 4, 8, 12, 0, 4, 8, 12, 0, 4, 8, 12), s);
    return _mm512_castps512_ps128(g);
}

QM_INLINE float reduce1(__m512 a) {
    __m256 s8 = _mm256_add_ps(_mm512_castps512_ps256(a), _mm512_extractf32x8_ps(a, 1));
    __m128 s4 = _mm_add_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps(s8, 1));
    __m128 s2 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
    __m128 s1 = _mm_add_ss(s2, _mm_shuffle_ps(s2, s2, _MM_SHUFFLE(1, 1, 1, 1)));
    return _mm_cvtss_f32(s1);
}

#define TMAX 4
#define RMAX 8
#define ACC_MAX 48 /* the most accumulators of a tile (store_tile) */
_Static_assert(RMAX * TMAX <= ACC_MAX, "store_tile's out");

/* The tile's accumulators: acc[r * ld + t] for row r, token t. The halving tree of each, in
 * groups of four (flat index k = t*R + r, padded with zeros), then y[t][r] = sum (+ bias[r], one
 * rounding). R * T <= ACC_MAX. */
QM_INLINE void store_tile(const __m512 *acc, int ld, int R, int T, const float *bias, float *y, size_t ldy) {
    float out[ACC_MAX + 4];
    const int nacc = R * T;
    for (int k = 0; k < nacc; k += 4) {
        __m512 v[4];
        for (int j = 0; j < 4; j++)
            v[j] = k + j < nacc ? acc[(k + j) % R * ld + (k + j) / R] : _mm512_setzero_ps();
        _mm_storeu_ps(out + k, reduce4(v[0], v[1], v[2], v[3]));
    }
    for (int t = 0; t < T; t++)
        for (int r = 0; r < R; r++) {
            const float d = out[t * R + r];
            y[(size_t)t * ldy + (size_t)r] = bias ? d + bias[r] : d;
        }
}

/* One tile: rows w0 + r*wstride (r < R), tokens x + t*ldx (t < T); y + t*ldy + r. R, T and
 * dt are constants at every call site, so the loops unroll and acc lives in registers.
 * pf_k, pf_n: this tile's part of the prefetch of the next R rows (pf_n = 0: none). */
QM_INLINE void tile(const char *w0, size_t wstride, qm_dtype dt, int R, int T, int cols,
                    const float *x, size_t ldx, const float *bias, float *y, size_t ldy, int pf_k, int pf_n) {
    const size_t esz = dt == QM_DT_F32 ? 4 : 2;
    __m512 acc[RMAX][TMAX];
    for (int r = 0; r < R; r++)
        for (int t = 0; t < T; t++) acc[r][t] = _mm512_setzero_ps();
    const int nfull = cols & ~15;
    /* Token tile pf_k of the row group's pf_n prefetches its part of the next R rows (rowpar.h). */
    const char *pf = w0; /* not null: it advances by 0 when there is nothing to prefetch */
    size_t pf_step = 0;
    if (pf_n && nfull > 0 && wstride == (size_t)cols * esz)
        pf_step = qm_colpar_prefetch_share(w0 + (size_t)R * wstride, (size_t)R * wstride, nfull / 16, pf_k, pf_n, &pf);
    for (int i = 0; i < nfull; i += 16) {
        for (size_t k = 0; k < pf_step; k += 64) _mm_prefetch(pf + k, _MM_HINT_T0);
        pf += pf_step;
        __m512 xv[TMAX];
        for (int t = 0; t < T; t++) xv[t] = _mm512_loadu_ps(x + (size_t)t * ldx + i);
        for (int r = 0; r < R; r++) {
            __m512 wv = load_w(w0 + (size_t)r * wstride + (size_t)i * esz, dt);
            for (int t = 0; t < T; t++) acc[r][t] = _mm512_fmadd_ps(wv, xv[t], acc[r][t]);
        }
    }
    if (nfull < cols) {
        const __mmask16 m = (__mmask16)((1u << (cols - nfull)) - 1u);
        __m512 xv[TMAX];
        for (int t = 0; t < T; t++) xv[t] = _mm512_maskz_loadu_ps(m, x + (size_t)t * ldx + nfull);
        for (int r = 0; r < R; r++) {
            __m512 wv = load_w_mask(w0 + (size_t)r * wstride + (size_t)nfull * esz, dt, m);
            for (int t = 0; t < T; t++) acc[r][t] = _mm512_mask3_fmadd_ps(wv, xv[t], acc[r][t], m);
        }
    }
    store_tile(&acc[0][0], TMAX, R, T, bias, y, ldy);
}

/* Prefill tiles: PR rows x PT tokens of accumulators (of the 32 zmm registers); decode
 * (n_tok == 1) tiles: DR rows. Decode from DRAM, bf16 rows of 896 (2 threads, 2026-12-01): 4 rows
 * (and 2 or 3) read 25-37 GB/s, 8 rows 19-27, in alternating runs: the fewer streams in flight,
 * the better the prefetch keeps up. */
#ifndef QM_AVX512_PR
#define QM_AVX512_PR 6
#endif
#ifndef QM_AVX512_PT
#define QM_AVX512_PT 4
#endif
#ifndef QM_AVX512_DR
#define QM_AVX512_DR 4
#endif
#define CLAMP_T(k) ((k) < TMAX ? (k) : TMAX)

/* Rows [o, o + R_) for every token: tiles of PT tokens, then the 1..PT-1 left. */
#define ROWS_TILE(R_)                                                                              \
    do {                                                                                           \
        const char *w0 = base + (size_t)o * wstride;                                               \
        const float *b0 = bias ? bias + o : NULL;                                                  \
        const int pf_n = (n_tok + QM_AVX512_PT - 1) / QM_AVX512_PT; /* the token tiles */          \
        int t = 0;                                                                                 \
        for (; t + QM_AVX512_PT <= n_tok; t += QM_AVX512_PT)                                       \
            tile(w0, wstride, dt, R_, QM_AVX512_PT, cols, x + (size_t)t * ldx, ldx, b0,            \
                 y + (size_t)t * ldy + o, ldy, t / QM_AVX512_PT, pf_n);                            \
        const float *xt = x + (size_t)t * ldx;                                                     \
        float *yt = y + (size_t)t * ldy + o;                                                       \
        const int pk = t / QM_AVX512_PT; /* the last token tile's part */                          \
        switch (n_tok - t) {                                                                       \
        case 5: tile(w0, wstride, dt, R_, CLAMP_T(5), cols, xt, ldx, b0, yt, ldy, pk, pf_n); break; \
        case 4: tile(w0, wstride, dt, R_, CLAMP_T(4), cols, xt, ldx, b0, yt, ldy, pk, pf_n); break; \
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
        for (; o + QM_AVX512_DR <= o_end; o += QM_AVX512_DR)
            tile(base + (size_t)o * wstride, wstride, dt, QM_AVX512_DR, 1, cols, x, ldx,
                 bias ? bias + o : NULL, y + o, ldy, 0, 1);
    for (; o + QM_AVX512_PR <= o_end; o += QM_AVX512_PR) ROWS_TILE(QM_AVX512_PR);
    for (; o < o_end; o++) ROWS_TILE(1);
}

/* ---- Block-quantized views (the exact mode) ----
 *
 * A view's column i is row element e = col0 + i of the block at its data (col0 % 16 == 0), and goes
 * to lane i % 16 = e % 16: the 16 row elements from a multiple of 16 are one zmm, lanes 0..15.
 *
 * Rows are walked in steps of QSTEP(dt) row elements (a 32-element block; a pair of 32-element
 * sub-blocks of a K-quant superblock, so that the forward's 64-column views of a superblock are one
 * step and only their quarter of it is decoded). qstep dequantizes a step exactly in registers,
 * with the reference's operations (kernels/quant.h): a 4- or 5-bit code indexes a table of its 16
 * (32) dequantized values, each built with the very multiply and add the reference applies to that
 * code, so the same bits; Q8_0 and Q6_K convert the code and multiply. A start or an end of a view
 * inside a step goes through the block path (qm_dequant_avx512 into a buffer, masked FMAs).
 *
 * Decode (one token): register tiles of QM_AVX512_QDR rows (qtile_reg), each step dequantized in
 * registers and FMA'd; views of at most QSHORT columns (the forward's row-parallel 64-column
 * views, one step a row) keep the accumulators of every row in memory and do the halving trees 16
 * rows at a time (qdecode_short), so that no row waits on the tree of the one before. Up to QAT
 * tokens: register tiles of 4 rows x T tokens. Prefill: QGR rows dequantized once into an f32
 * buffer and reused by every tile of QGT tokens (qgemm). Every accumulator sees exactly the
 * canonical sequence of FMAs (lane e % 16, increasing e), so every path gives the same bits. */
#define QSTEP(dt) ((dt) <= QM_DT_BF16 || (dt) >= QM_DT_Q4_K ? 64 : 32) /* plain types: the row-parallel path */
#define QRMAX 8
#define QTMAX 6
_Static_assert(QRMAX * QTMAX <= ACC_MAX, "store_tile's out");
/* Decode prefetch: see qtile_reg. */
#define QPF_AHEAD 512

/* Broadcasts from memory in the integer domain (vpbroadcastd/w: done by the load unit on Zen 4,
 * where vbroadcastss zmm takes the one shuffle port): a float at p; an f16 at p, converted. */
QM_INLINE __m512 qbc_f32(const float *p) {
    int32_t v;
    memcpy(&v, p, 4);
    return _mm512_castsi512_ps(_mm512_set1_epi32(v));
}
QM_INLINE __m512 qbc_f16(const uint8_t *p) {
    int16_t v;
    memcpy(&v, p, 2);
    return _mm512_cvtph_ps(_mm256_set1_epi16(v));
}
QM_INLINE __m512i qld_u8(const uint8_t *p) { return _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)p)); }
QM_INLINE __m512 qiota(float from) {
    return _mm512_add_ps(_mm512_setr_ps(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15), _mm512_set1_ps(from));
}

/* A K-quant superblock's scales (the reference's products, quant.h): Q4_K/Q5_K ks[2s] = d * sc[s],
 * ks[2s + 1] = dmin * mn[s]; Q6_K ks[g] = d * sc[g]. */
QM_INLINE void qkscales(qm_dtype dt, const uint8_t *b, float *ks) {
    if (dt == QM_DT_Q6_K) {
        const __m512i sc = _mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(b + 192)));
        _mm512_store_ps(ks, _mm512_mul_ps(qbc_f16(b + 208), _mm512_cvtepi32_ps(sc)));
        return;
    }
    /* qm_quant_k_scales on 16 bytes at once, into bytes sc[0] mn[0] sc[1] mn[1] ...: s < 4 from
     * x = s[s], s[s + 4] (6 bits); s >= 4 from x = s[s + 4] (low nibble: sc, high: mn) and the top
     * 2 bits of y = s[s - 4] (sc), s[s] (mn) */
    const __m128i l = _mm_loadu_si128((const __m128i *)(b + 4));
    const __m128i x = _mm_shuffle_epi8(l, _mm_setr_epi8(0, 4, 1, 5, 2, 6, 3, 7, 8, 8, 9, 9, 10, 10, 11, 11));
    const __m128i y = _mm_shuffle_epi8(l, _mm_setr_epi8(-1, -1, -1, -1, -1, -1, -1, -1, 0, 4, 1, 5, 2, 6, 3, 7));
    const __m128i lo = _mm_and_si128(x, _mm_setr_epi8(63, 63, 63, 63, 63, 63, 63, 63, 15, 0, 15, 0, 15, 0, 15, 0));
    const __m128i hn = _mm_and_si128(_mm_srli_epi16(x, 4), _mm_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 0, 15, 0, 15, 0, 15, 0, 15));
    const __m128i top = _mm_and_si128(_mm_srli_epi16(y, 2), _mm_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 48, 48, 48, 48, 48, 48, 48, 48));
    const __m128i scmn = _mm_or_si128(_mm_or_si128(lo, hn), top);
    int32_t ddm;
    memcpy(&ddm, b, 4); /* f16 d, dmin */
    const __m512 dd = _mm512_cvtph_ps(_mm256_set1_epi32(ddm)); /* d dmin d dmin ... */
    _mm512_store_ps(ks, _mm512_mul_ps(dd, _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(scmn))));
}

/* Q8_0: (float)q * d */
QM_INLINE void step_q8_0(const uint8_t *b, __m512 w[4]) {
    const __m512 d = qbc_f16(b);
    for (int c = 0; c < 2; c++)
        w[c] = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(b + 2 + 16 * c)))), d);
}

/* Q4_0 Q4_1: d * (float)(q - 8); d * (float)q + m */
QM_INLINE void step_q4(qm_dtype dt, const uint8_t *b, __m512 w[4]) {
    const int hm = dt == QM_DT_Q4_1;
    const __m512 d = qbc_f16(b);
    const __m512i q = qld_u8(b + (hm ? 4 : 2));
    const __m512 lut = hm ? _mm512_add_ps(_mm512_mul_ps(d, qiota(0)), qbc_f16(b + 2)) : _mm512_mul_ps(d, qiota(-8));
    w[0] = _mm512_permutexvar_ps(q, lut); /* vpermps reads the low 4 bits: the low nibble */
    w[1] = _mm512_permutexvar_ps(_mm512_srli_epi32(q, 4), lut);
}

/* Q5_0 Q5_1: d * (float)(q - 16); d * (float)q + m; q = nibble | 5th bit << 4 */
QM_INLINE void step_q5(qm_dtype dt, const uint8_t *b, __m512 w[4]) {
    const int hm = dt == QM_DT_Q5_1;
    const __m512 d = qbc_f16(b);
    const uint32_t qh = qm_quant_rd32(b + (hm ? 4 : 2));
    const __m512i q = qld_u8(b + (hm ? 8 : 6)), sixteen = _mm512_set1_epi32(16);
    const __m512i q0 = _mm512_and_si512(q, _mm512_set1_epi32(15)), q1 = _mm512_srli_epi32(q, 4);
    __m512 la, lb; /* the 32-entry table of the 5-bit codes: 0..15, 16..31 */
    if (hm) {
        const __m512 m = qbc_f16(b + 2);
        la = _mm512_add_ps(_mm512_mul_ps(d, qiota(0)), m);
        lb = _mm512_add_ps(_mm512_mul_ps(d, qiota(16)), m);
    } else {
        la = _mm512_mul_ps(d, qiota(-16));
        lb = _mm512_mul_ps(d, qiota(0));
    }
    w[0] = _mm512_permutex2var_ps(la, _mm512_mask_or_epi32(q0, (__mmask16)qh, q0, sixteen), lb);
    w[1] = _mm512_permutex2var_ps(la, _mm512_mask_or_epi32(q1, (__mmask16)(qh >> 16), q1, sixteen), lb);
}

/* Q4_K Q5_K: (d * sc) * (float)q - dmin * mn, sub-blocks 2j (low nibbles), 2j + 1; the tables'
 * entries by one FMA, the same bits (matmul_avx2.c step_k: the product is exact). */
QM_INLINE void step_k(qm_dtype dt, const uint8_t *b, int j, int fresh, float *ks, __m512 w[4]) {
    const int k5 = dt == QM_DT_Q5_K;
    if (fresh) qkscales(dt, b, ks);
    const int s0 = 2 * j, s1 = 2 * j + 1;
    const uint8_t *qs = b + (k5 ? 48 : 16) + 32 * j;
    const __m512i q0 = qld_u8(qs), q1 = qld_u8(qs + 16);
    const __m512i h0 = _mm512_srli_epi32(q0, 4), h1 = _mm512_srli_epi32(q1, 4);
    const __m512 ds0 = qbc_f32(ks + 2 * s0), dm0 = qbc_f32(ks + 2 * s0 + 1);
    const __m512 ds1 = qbc_f32(ks + 2 * s1), dm1 = qbc_f32(ks + 2 * s1 + 1);
    const __m512 l0 = _mm512_fmsub_ps(ds0, qiota(0), dm0);
    const __m512 l1 = _mm512_fmsub_ps(ds1, qiota(0), dm1);
    w[0] = _mm512_permutexvar_ps(q0, l0);
    w[1] = _mm512_permutexvar_ps(q1, l0);
    w[2] = _mm512_permutexvar_ps(h0, l1);
    w[3] = _mm512_permutexvar_ps(h1, l1);
    if (k5) { /* bit s of qh[l]: the 5th bit of element l of sub-block s */
        const __m512 u0 = _mm512_fmsub_ps(ds0, qiota(16), dm0);
        const __m512 u1 = _mm512_fmsub_ps(ds1, qiota(16), dm1);
        const __m128i qa = _mm_loadu_si128((const __m128i *)(b + 16)), qb = _mm_loadu_si128((const __m128i *)(b + 32));
        const __m128i m0 = _mm_set1_epi8((char)(1 << s0)), m1 = _mm_set1_epi8((char)(1 << s1));
        const __m512i low4 = _mm512_set1_epi32(15), sixteen = _mm512_set1_epi32(16);
        const __m512i i0 = _mm512_and_si512(q0, low4), i1 = _mm512_and_si512(q1, low4);
        w[0] = _mm512_permutex2var_ps(l0, _mm512_mask_or_epi32(i0, _mm_test_epi8_mask(qa, m0), i0, sixteen), u0);
        w[1] = _mm512_permutex2var_ps(l0, _mm512_mask_or_epi32(i1, _mm_test_epi8_mask(qb, m0), i1, sixteen), u0);
        w[2] = _mm512_permutex2var_ps(l1, _mm512_mask_or_epi32(h0, _mm_test_epi8_mask(qa, m1), h0, sixteen), u1);
        w[3] = _mm512_permutex2var_ps(l1, _mm512_mask_or_epi32(h1, _mm_test_epi8_mask(qb, m1), h1, sixteen), u1);
    }
}

/* Q6_K: (d * sc[g]) * (float)(q - 32); layout in quant.h */
QM_INLINE void step_q6_k(qm_dtype dt, const uint8_t *b, int j, int fresh, float *ks, __m512 w[4]) {
    if (fresh) qkscales(dt, b, ks);
    /* step j = elements 64j..64j+63 = (h, k) = (j / 2, 2 (j % 2) + u), u = 0, 1: low 4 bits
     * from ql[64h + 32u..] (nibble j % 2), high 2 bits from qh[32h..] (bits 2k, 2k + 1); the
     * codes q - 32 as bytes (256-bit integer ops, no shuffle), then widened from memory */
    const int h = j >> 1;
    const __m256i hq = _mm256_loadu_si256((const __m256i *)(b + 128 + 32 * h));
    const __m256i m4 = _mm256_set1_epi8(0x0f), m2 = _mm256_set1_epi8(0x30), k32 = _mm256_set1_epi8(32);
    __m256i lo0 = _mm256_loadu_si256((const __m256i *)(b + 64 * h)), lo1 = _mm256_loadu_si256((const __m256i *)(b + 64 * h + 32));
    __m256i hi0, hi1;
    if (j & 1) { /* k = 2, 3: high nibbles; bits 4-5, 6-7 of qh */
        lo0 = _mm256_srli_epi16(lo0, 4);
        lo1 = _mm256_srli_epi16(lo1, 4);
        hi0 = hq;
        hi1 = _mm256_srli_epi16(hq, 2);
    } else { /* k = 0, 1: low nibbles; bits 0-1, 2-3 of qh */
        hi0 = _mm256_slli_epi16(hq, 4);
        hi1 = _mm256_slli_epi16(hq, 2);
    }
    int8_t c[64] __attribute__((aligned(64)));
    _mm256_store_si256((__m256i *)c, _mm256_sub_epi8(_mm256_or_si256(_mm256_and_si256(lo0, m4), _mm256_and_si256(hi0, m2)), k32));
    _mm256_store_si256((__m256i *)(c + 32), _mm256_sub_epi8(_mm256_or_si256(_mm256_and_si256(lo1, m4), _mm256_and_si256(hi1, m2)), k32));
    for (int g = 0; g < 4; g++)
        w[g] = _mm512_mul_ps(qbc_f32(ks + 4 * j + g),
                             _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_load_si128((const __m128i *)(c + 16 * g)))));
}

/* The QSTEP(dt) / 16 weight vectors of row elements [e, e + QSTEP) (e a multiple of QSTEP): b is
 * the block that holds them, j = e % 256 / 64 (K-quants: which pair of sub-blocks). K-quants: ks
 * holds the superblock's scales, refreshed when fresh. */
QM_INLINE void qstep(qm_dtype dt, const uint8_t *b, int j, int fresh, float *ks, __m512 w[4]) {
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
        for (int g = 0; g < 4; g++) w[g] = load_w(b + (size_t)(16 * g) * qm_dtype_block_bytes(dt), dt);
        break;
    }
}

/* Row elements [ea, eb) of R rows (ea a multiple of 16) by the block path: each block dequantized
 * into a buffer, masked FMAs (lanes at and past eb untouched). */
QM_INLINE void qedge(const char *w0, size_t wstride, qm_dtype dt, int col0, int R, int T, int ea, int eb,
                     const float *x, size_t ldx, __m512 acc[QRMAX][QTMAX]) {
    const int qk = qm_dtype_block(dt);
    const size_t bb = qm_dtype_block_bytes(dt);
    float buf[256] __attribute__((aligned(64)));
    for (int c = ea / qk * qk; c < eb; c += qk) {
        const int lo = ea > c ? ea : c, hi = eb < c + qk ? eb : c + qk;
        for (int r = 0; r < R; r++) {
            qm_dequant_avx512(dt, w0 + (size_t)r * wstride + (size_t)(c / qk) * bb, 1, buf);
            for (int j = lo; j < hi; j += 16) {
                const __mmask16 m = hi - j >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (hi - j)) - 1u);
                const __m512 wv = _mm512_maskz_loadu_ps(m, buf + (j - c));
                for (int t = 0; t < T; t++)
                    acc[r][t] = _mm512_mask3_fmadd_ps(wv, _mm512_maskz_loadu_ps(m, x + (size_t)t * ldx + (j - col0)),
                                                      acc[r][t], m);
            }
        }
    }
}

/* The steps of a view's row elements [col0, col0 + cols): [e0, e1), whole steps; the rest, edges. */
QM_INLINE void qsteps(qm_dtype dt, int col0, int cols, int *e0, int *e1) {
    const int S = QSTEP(dt), end = col0 + cols;
    *e0 = (col0 + S - 1) / S * S;
    *e1 = end / S * S;
    if (*e0 >= *e1) *e0 = *e1 = end; /* no whole step: all of it is an edge */
}

/* Steps [ea, eb) of R rows x T tokens into acc (qtile_reg): each step dequantized in registers once
 * for the T tokens; the scales of a K-quant made where a superblock (or the range) starts. pf_next:
 * the next tile's rows prefetched, a line a step from the view's first step e0 (qtile_reg). */
QM_INLINE void qtile_steps(const char *w0, size_t wstride, qm_dtype dt, int col0, int R, int T, int ea, int eb, int e0,
                           int pf_next, size_t vbytes, const float *x, size_t ldx, __m512 acc[QRMAX][QTMAX]) {
    float ks[QRMAX][16] __attribute__((aligned(64)));
    const int S = QSTEP(dt), G = S / 16;
    for (int e = ea; e < eb; e += S) {
        const unsigned ue = (unsigned)e;
        const int fresh = e == ea || ue % 256 == 0, j = (int)(ue % 256 / 64);
        const char *wb = w0 + (size_t)(ue / (unsigned)qm_dtype_block(dt)) * qm_dtype_block_bytes(dt);
        const float *xe = x + (e - col0);
        if (pf_next) qm_prefetch_next_tile(w0, wstride, R, (size_t)((e - e0) / S) * 64, vbytes);
        __m512 w[QRMAX][4];
        for (int r = 0; r < R; r++) qstep(dt, (const uint8_t *)wb + (size_t)r * wstride, j, fresh, ks[r], w[r]);
        for (int g = 0; g < G; g++)
            for (int t = 0; t < T; t++) {
                const __m512 xv = _mm512_loadu_ps(xe + (size_t)t * ldx + 16 * g);
                for (int r = 0; r < R; r++) acc[r][t] = _mm512_fmadd_ps(w[r][g], xv, acc[r][t]);
            }
    }
}

/* One token's whole K-quant superblocks [sa, sb) of R rows into acc: qtile_steps' arithmetic, each
 * row's scales made once a superblock and its four steps unrolled with constant offsets (the
 * general loop works out each step's offsets and whether its scales are fresh). */
QM_INLINE void qtile_superblocks(const char *w0, size_t wstride, qm_dtype dt, int col0, int R, int sa, int sb, int e0,
                                 int pf_next, size_t vbytes, const float *x, __m512 acc[QRMAX][QTMAX]) {
    float ks[QRMAX][16] __attribute__((aligned(64)));
    for (int e = sa; e < sb; e += 256) {
        const uint8_t *b = (const uint8_t *)w0 + (size_t)(e / 256) * qm_dtype_block_bytes(dt);
        const float *xe = x + (e - col0); /* [256] */
        for (int r = 0; r < R; r++) qkscales(dt, b + (size_t)r * wstride, ks[r]);
        __asm__ volatile("" : : "r"(ks) : "memory"); /* ks broadcast from memory (qblocks_superblock) */
#pragma GCC unroll 4
        for (int j = 0; j < 4; j++) {
            if (pf_next) qm_prefetch_next_tile(w0, wstride, R, (size_t)((e + 64 * j - e0) / 64) * 64, vbytes);
            __m512 w[QRMAX][4];
            for (int r = 0; r < R; r++) qstep(dt, b + (size_t)r * wstride, j, 0, ks[r], w[r]);
            for (int g = 0; g < 4; g++) {
                const __m512 xv = _mm512_loadu_ps(xe + 64 * j + 16 * g);
                for (int r = 0; r < R; r++) acc[r][0] = _mm512_fmadd_ps(w[r][g], xv, acc[r][0]);
            }
        }
    }
}

/* R rows x T tokens, every weight step dequantized in registers once for the T tokens. */
QM_INLINE void qtile_reg(const char *w0, size_t wstride, qm_dtype dt, int col0, int R, int T, int cols,
                         const float *x, size_t ldx, const float *bias, float *y, size_t ldy, int keep, float *accout) {
    __m512 acc[QRMAX][QTMAX];
    for (int r = 0; r < R; r++)
        for (int t = 0; t < T; t++) acc[r][t] = _mm512_setzero_ps();
    const int S = QSTEP(dt), end = col0 + cols;
    int e0, e1;
    qsteps(dt, col0, cols, &e0, &e1);
    if (col0 < e0) qedge(w0, wstride, dt, col0, R, T, col0, e0, x, ldx, acc);
    /* Decode is memory-bound: software prefetch into the L2 (prefetcht2: on Zen 4 the software
     * prefetches into the L1 were limited by its miss buffers), one line per row and step (a step
     * is under 64 bytes of a row). A view of several steps: the next tile's rows, from their
     * first block, so that they are in the cache when that tile starts; a short view (the
     * forward's 64-column views, read one after another along the rows): the rows' bytes QPF_AHEAD
     * further on. Never faults, changes no arithmetic. */
    const size_t step_bytes = qm_dtype_block_bytes(dt) * (size_t)S / (size_t)qm_dtype_block(dt); /* about */
    const int nst = (e1 - e0) / S, pf_next = T == 1 && nst >= 4, pf_ahead = T == 1 && nst > 0 && nst < 4;
    const size_t vbytes = (size_t)(end + qm_dtype_block(dt) - 1) / (size_t)qm_dtype_block(dt) * qm_dtype_block_bytes(dt);
    if (pf_ahead)
        for (int r = 0; r < R; r++)
            _mm_prefetch(w0 + (size_t)r * wstride + (size_t)(e0 / S) * step_bytes + QPF_AHEAD, _MM_HINT_T0);
    int sa = e1, sb = e1; /* one token's whole K-quant superblocks */
    if (T == 1 && dt >= QM_DT_Q4_K && (sa = (e0 + 255) / 256 * 256) >= (sb = e1 / 256 * 256)) sa = sb = e1;
    qtile_steps(w0, wstride, dt, col0, R, T, e0, sa, e0, pf_next, vbytes, x, ldx, acc);
    if (sa < sb) {
        qtile_superblocks(w0, wstride, dt, col0, R, sa, sb, e0, pf_next, vbytes, x, acc);
        qtile_steps(w0, wstride, dt, col0, R, T, sb, e1, e0, pf_next, vbytes, x, ldx, acc);
    }
    if (e1 < end) qedge(w0, wstride, dt, col0, R, T, e1, end, x, ldx, acc);
    if (keep) /* T == 1: the accumulators themselves, reduced later (qreduce16) */
        for (int r = 0; r < R; r++) _mm512_store_ps(accout + 16 * r, acc[r][0]);
    else
        store_tile(&acc[0][0], QTMAX, R, T, bias, y, ldy);
}

/* The halving tree of 16 accumulators at once: lane r of the result is the sum of v[r]. Each level
 * pairs lane l with lane l + w of every accumulator, as the canonical order does, just with the
 * lanes of several accumulators side by side: w = 8 across 256-bit halves, 4 across 128-bit
 * quarters, 2 and 1 within. Where a level's two inputs a, b keep their lanes in place (a's first
 * part, b's second), those lanes come by a blend and only the partners by a shuffle: one shuffle
 * an add, not two; x + y against y + x changes no bits. One thread, Zen 5, `bench_qmatmul`: the
 * 16-token bf16 row-parallel blocks (`pre avx512vnni BF16 896 4864 16`) 62.0, 67.2 -> 69.1, 71.0
 * GFLOP/s; the one-token Q4_K ones from DRAM (`rp avx512vnni Q4_K 1536 8960 12`) 0.0403, 0.0396
 * -> 0.0389, 0.0390 ns a weight. */
QM_INLINE __m512 qtree16(const __m512 v[16]) {
    __m512 s8[8], s4[4], s2[2];
    for (int k = 0; k < 8; k++) /* [acc 2k lanes 0-7 + 8-15 | acc 2k+1 lanes 8-15 + 0-7] */
        s8[k] = _mm512_add_ps(_mm512_mask_blend_ps(0xff00, v[2 * k], v[2 * k + 1]),
                              _mm512_shuffle_f32x4(v[2 * k], v[2 * k + 1], _MM_SHUFFLE(1, 0, 3, 2)));
    const __m512i q_swap = _mm512_setr_epi32(4, 5, 6, 7, 16, 17, 18, 19, 12, 13, 14, 15, 24, 25, 26, 27);
    for (int k = 0; k < 4; k++) /* quarters: acc 4k lanes 0-3 + 4-7, acc 4k+2's, acc 4k+1's, acc 4k+3's */
        s4[k] = _mm512_add_ps(_mm512_mask_blend_ps(0xf0f0, s8[2 * k], s8[2 * k + 1]),
                              _mm512_permutex2var_ps(s8[2 * k], q_swap, s8[2 * k + 1]));
    for (int k = 0; k < 2; k++) /* quarter q: (acc of s4[2k]'s quarter q: l0+l2, l1+l3), (s4[2k+1]'s: l2+l0, l3+l1) */
        s2[k] = _mm512_add_ps(_mm512_mask_blend_ps(0xcccc, s4[2 * k], s4[2 * k + 1]),
                              _mm512_shuffle_ps(s4[2 * k], s4[2 * k + 1], _MM_SHUFFLE(1, 0, 3, 2)));
    __m512 s1 = _mm512_add_ps(_mm512_shuffle_ps(s2[0], s2[1], _MM_SHUFFLE(2, 0, 2, 0)),
                              _mm512_shuffle_ps(s2[0], s2[1], _MM_SHUFFLE(3, 1, 3, 1)));
    /* s1's quarter q holds accumulators 4i + (0, 2, 1, 3)[q] in lanes i: back to lane r = v[r] */
    return _mm512_permutexvar_ps(_mm512_setr_epi32(0, 8, 4, 12, 1, 9, 5, 13, 2, 10, 6, 14, 3, 11, 7, 15), s1);
}

/* qtree16 of accumulators in memory: a[16 * r ..], r < n (the rest count as zero), into y[r]. */
QM_INLINE void qreduce16(const float *a, int n, const float *bias, float *y) {
    __m512 v[16];
    for (int r = 0; r < 16; r++) v[r] = r < n ? _mm512_load_ps(a + 16 * r) : _mm512_setzero_ps();
    __m512 s1 = qtree16(v);
    const __mmask16 m = n >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << n) - 1u);
    if (bias) s1 = _mm512_add_ps(s1, _mm512_maskz_loadu_ps(m, bias));
    _mm512_mask_storeu_ps(y, m, s1);
}

/* Decode of short views (the forward's 64-column views): every row's steps first, accumulators
 * kept in memory, then the trees 16 rows at a time, so that no row waits on the one before. */
#define QSB 64
QM_INLINE void qdecode_short(const char *base, size_t wstride, qm_dtype dt, int col0, int cols, const float *x,
                             const float *bias, float *y, int o_begin, int o_end) {
    float acc[QSB * 16] __attribute__((aligned(64)));
    for (int o0 = o_begin; o0 < o_end; o0 += QSB) {
        const int n = o_end - o0 < QSB ? o_end - o0 : QSB;
        int r = 0;
        for (; r + 4 <= n; r += 4)
            qtile_reg(base + (size_t)(o0 + r) * wstride, wstride, dt, col0, 4, 1, cols, x, 0, NULL, NULL, 0, 1, acc + 16 * r);
        for (; r < n; r++)
            qtile_reg(base + (size_t)(o0 + r) * wstride, wstride, dt, col0, 1, 1, cols, x, 0, NULL, NULL, 0, 1, acc + 16 * r);
        for (int k = 0; k < n; k += 16) qreduce16(acc + 16 * k, n - k, bias ? bias + o0 + k : NULL, y + o0 + k);
    }
}

/* One row's view, dequantized exactly into out[0 .. cols) (f32, as qm_dequant_range). */
QM_INLINE void qrow_f32(const char *row, qm_dtype dt, int col0, int cols, float *out) {
    const int S = QSTEP(dt), G = S / 16, qk = qm_dtype_block(dt), end = col0 + cols;
    const size_t bb = qm_dtype_block_bytes(dt);
    float ks[16] __attribute__((aligned(64)));
    float buf[256] __attribute__((aligned(64)));
    int e0, e1;
    qsteps(dt, col0, cols, &e0, &e1);
    for (int part = 0; part < 2; part++) { /* the edges */
        const int ea = part ? e1 : col0, eb = part ? end : e0;
        for (int c = ea / qk * qk; ea < eb && c < eb; c += qk) {
            const int lo = ea > c ? ea : c, hi = eb < c + qk ? eb : c + qk;
            qm_dequant_avx512(dt, row + (size_t)(c / qk) * bb, 1, buf);
            for (int j = lo; j < hi; j++) out[j - col0] = buf[j - c];
        }
    }
    for (int e = e0; e < e1; e += S) {
        __m512 w[4];
        const unsigned ue = (unsigned)e;
        qstep(dt, (const uint8_t *)row + (size_t)(ue / (unsigned)qk) * bb, (int)(ue % 256 / 64), e == e0 || ue % 256 == 0, ks, w);
        for (int g = 0; g < G; g++) _mm512_storeu_ps(out + (e - col0) + 16 * g, w[g]);
    }
}

/* R rows of f32 weights (row r at buf + r*ldb, 64-byte aligned, cols long) x T tokens. A view
 * longer than the buffer goes in column chunks: the accumulators start from am (am[(t*R + r)*16])
 * unless first, and are left there unless last (then reduced into y). */
QM_INLINE void qgemm(const float *buf, size_t ldb, int R, int T, int cols, const float *x, size_t ldx, int first,
                     int last, float *am, const float *bias, float *y, size_t ldy) {
    __m512 acc[QRMAX][QTMAX];
    for (int r = 0; r < R; r++)
        for (int t = 0; t < T; t++) acc[r][t] = first ? _mm512_setzero_ps() : _mm512_load_ps(am + ((size_t)t * R + r) * 16);
    const int nfull = cols & ~15;
    for (int i = 0; i < nfull; i += 16) {
        __m512 wv[QRMAX];
        for (int r = 0; r < R; r++) wv[r] = _mm512_load_ps(buf + (size_t)r * ldb + i);
        for (int t = 0; t < T; t++) {
            const __m512 xv = _mm512_loadu_ps(x + (size_t)t * ldx + i);
            for (int r = 0; r < R; r++) acc[r][t] = _mm512_fmadd_ps(wv[r], xv, acc[r][t]);
        }
    }
    if (nfull < cols) {
        const __mmask16 m = (__mmask16)((1u << (cols - nfull)) - 1u);
        __m512 wv[QRMAX];
        for (int r = 0; r < R; r++) wv[r] = _mm512_maskz_load_ps(m, buf + (size_t)r * ldb + nfull);
        for (int t = 0; t < T; t++) {
            const __m512 xv = _mm512_maskz_loadu_ps(m, x + (size_t)t * ldx + nfull);
            for (int r = 0; r < R; r++) acc[r][t] = _mm512_mask3_fmadd_ps(wv[r], xv, acc[r][t], m);
        }
    }
    if (last)
        store_tile(&acc[0][0], QTMAX, R, T, bias, y, ldy);
    else
        for (int r = 0; r < R; r++)
            for (int t = 0; t < T; t++) _mm512_store_ps(am + ((size_t)t * R + r) * 16, acc[r][t]);
}

/* Every token against rows buf[0..R) (see qgemm): tiles of QGT tokens, then the 1..QGT-1 left;
 * am: the accumulators of token t at am + t * R * 16. */
#define QGR 4
#define QGT 6
QM_INLINE void qgemm_rows(const float *buf, size_t ldb, int R, int cols, const float *x, size_t ldx, int n_tok,
                          int first, int last, float *am, const float *bias, float *y, size_t ldy) {
    int t = 0;
    for (; t + QGT <= n_tok; t += QGT)
        qgemm(buf, ldb, R, QGT, cols, x + (size_t)t * ldx, ldx, first, last, am + (size_t)t * R * 16, bias,
              y + (size_t)t * ldy, ldy);
    const float *xt = x + (size_t)t * ldx;
    float *yt = y + (size_t)t * ldy, *at = am + (size_t)t * R * 16;
    switch (n_tok - t) {
    case 5: qgemm(buf, ldb, R, 5, cols, xt, ldx, first, last, at, bias, yt, ldy); break;
    case 4: qgemm(buf, ldb, R, 4, cols, xt, ldx, first, last, at, bias, yt, ldy); break;
    case 3: qgemm(buf, ldb, R, 3, cols, xt, ldx, first, last, at, bias, yt, ldy); break;
    case 2: qgemm(buf, ldb, R, 2, cols, xt, ldx, first, last, at, bias, yt, ldy); break;
    case 1: qgemm(buf, ldb, R, 1, cols, xt, ldx, first, last, at, bias, yt, ldy); break;
    default: break;
    }
}

static void qgemm_rows4(const float *buf, size_t ldb, int cols, const float *x, size_t ldx, int n_tok, int first,
                        int last, float *am, const float *bias, float *y, size_t ldy) {
    qgemm_rows(buf, ldb, QGR, cols, x, ldx, n_tok, first, last, am, bias, y, ldy);
}
static void qgemm_rows1(const float *buf, size_t ldb, int cols, const float *x, size_t ldx, int n_tok, int first,
                        int last, float *am, const float *bias, float *y, size_t ldy) {
    qgemm_rows(buf, ldb, 1, cols, x, ldx, n_tok, first, last, am, bias, y, ldy);
}

/* Decode (one token): QDR rows in flight; short views: qdecode_short. Up to QAT tokens: register
 * tiles. More: the buffered path, QGR rows of at most QKC columns at a time (a longer view in
 * column chunks, tokens then in groups of QKT, their accumulators in memory in between). */
#ifndef QM_AVX512_QDR
#define QM_AVX512_QDR 4
#endif
#define QAT 3
#define QKC 4096
#define QKT 64
#ifndef QSHORT
#define QSHORT 128 /* decode views of at most this many columns: qdecode_short */
#endif

#define QREG_TOKENS(R_, o_)                                                                        \
    for (int t = 0; t < n_tok; t += 4) {                                                           \
        const char *w0 = base + (size_t)(o_) * wstride;                                            \
        const float *b0 = bias ? bias + (o_) : NULL;                                               \
        const float *xt = x + (size_t)t * ldx;                                                     \
        float *yt = y + (size_t)t * ldy + (o_);                                                    \
        switch (n_tok - t) {                                                                       \
        case 1: qtile_reg(w0, wstride, dt, col0, R_, 1, cols, xt, ldx, b0, yt, ldy, 0, NULL); break;  \
        case 2: qtile_reg(w0, wstride, dt, col0, R_, 2, cols, xt, ldx, b0, yt, ldy, 0, NULL); break;  \
        case 3: qtile_reg(w0, wstride, dt, col0, R_, 3, cols, xt, ldx, b0, yt, ldy, 0, NULL); break;  \
        default: qtile_reg(w0, wstride, dt, col0, R_, 4, cols, xt, ldx, b0, yt, ldy, 0, NULL); break; \
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
            for (o = o_begin; o + QM_AVX512_QDR <= o_end; o += QM_AVX512_QDR)
                qtile_reg(base + (size_t)o * wstride, wstride, dt, col0, QM_AVX512_QDR, 1, cols, xt, ldx,
                          bias ? bias + o : NULL, yt + o, ldy, 0, NULL);
            for (; o < o_end; o++)
                qtile_reg(base + (size_t)o * wstride, wstride, dt, col0, 1, 1, cols, xt, ldx,
                          bias ? bias + o : NULL, yt + o, ldy, 0, NULL);
        }
    } else if (n_tok <= QAT) {
        for (; o + 4 <= o_end; o += 4) QREG_TOKENS(4, o)
        for (; o < o_end; o++) QREG_TOKENS(1, o)
    } else {
        float buf[QGR * QKC] __attribute__((aligned(64)));
        float am[QGR * QKT * 16] __attribute__((aligned(64)));
        const int nck = (cols + QKC - 1) / QKC, tstep = nck > 1 ? QKT : n_tok;
        for (; o < o_end; o += QGR) {
            const int R = o_end - o < QGR ? o_end - o : QGR;
            for (int t0 = 0; t0 < n_tok; t0 += tstep) {
                const int tg = n_tok - t0 < tstep ? n_tok - t0 : tstep;
                const float *xt = x + (size_t)t0 * ldx;
                float *yt = y + (size_t)t0 * ldy + o;
                for (int ck = 0; ck < nck; ck++) {
                    const int cs = ck * QKC, kc = cols - cs < QKC ? cols - cs : QKC, first = ck == 0, last = ck == nck - 1;
                    const size_t ldb = (size_t)(kc + 15) / 16 * 16;
                    for (int r = 0; r < R; r++)
                        qrow_f32(base + (size_t)(o + r) * wstride, dt, col0 + cs, kc, buf + (size_t)r * ldb);
                    if (R == QGR) {
                        qgemm_rows4(buf, ldb, kc, xt + cs, ldx, tg, first, last, am, bias ? bias + o : NULL, yt, ldy);
                    } else {
                        for (int r = 0; r < R; r++)
                            qgemm_rows1(buf + (size_t)r * ldb, ldb, kc, xt + cs, ldx, tg, first, last, am + (size_t)r * QKT * 16,
                                        bias ? bias + o + r : NULL, yt + r, ldy);
                    }
                }
            }
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

static void matmul_avx512(const qm_wview *w, const float *bias, const float *x, size_t ldx,
                          int n_tok, float *y, size_t ldy, int o_begin, int o_end) {
    if (n_tok <= 0 || o_begin >= o_end) return;
    if (qm_dtype_is_quant(w->dtype)) {
        if (w->col0 % 16) qm_kernels_scalar_table.matmul(w, bias, x, ldx, n_tok, y, ldy, o_begin, o_end);
        else matmul_q(w, bias, x, ldx, n_tok, y, ldy, o_begin, o_end);
        return;
    }
    if (n_tok > 16 && w->cols <= QSHORT) {
        /* short rows (attention's keys, the queries of many sequences): 16 tokens at a time, each
         * chunk over all the rows (bench_qmatmul pre avx512 F32 736 64 112: 59 GFLOP/s, 16: 76) */
        for (int t = 0; t < n_tok; t += 16)
            matmul_avx512(w, bias, x + (size_t)t * ldx, ldx, n_tok - t < 16 ? n_tok - t : 16, y + (size_t)t * ldy, ldy,
                          o_begin, o_end);
        return;
    }
    switch (w->dtype) {
    case QM_DT_F32: matmul_dt(w, QM_DT_F32, bias, x, ldx, n_tok, y, ldy, o_begin, o_end); break;
    case QM_DT_F16: matmul_dt(w, QM_DT_F16, bias, x, ldx, n_tok, y, ldy, o_begin, o_end); break;
    case QM_DT_BF16: matmul_dt(w, QM_DT_BF16, bias, x, ldx, n_tok, y, ldy, o_begin, o_end); break;
    default: break;
    }
}

static float dot_avx512(const float *a, const float *b, int n) {
    __m512 acc = _mm512_setzero_ps();
    int i = 0;
    for (; i + 16 <= n; i += 16) acc = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), acc);
    if (i < n) {
        const __mmask16 m = (__mmask16)((1u << (n - i)) - 1u);
        acc = _mm512_mask3_fmadd_ps(_mm512_maskz_loadu_ps(m, a + i), _mm512_maskz_loadu_ps(m, b + i), acc, m);
    }
    return reduce1(acc);
}

static void axpy_avx512(float a, const float *x, float *y, int n) {
    const __m512 av = _mm512_set1_ps(a);
    int i = 0;
    for (; i + 16 <= n; i += 16)
        _mm512_storeu_ps(y + i, _mm512_fmadd_ps(av, _mm512_loadu_ps(x + i), _mm512_loadu_ps(y + i)));
    if (i < n) {
        const __mmask16 m = (__mmask16)((1u << (n - i)) - 1u);
        __m512 r = _mm512_fmadd_ps(av, _mm512_maskz_loadu_ps(m, x + i), _mm512_maskz_loadu_ps(m, y + i));
        _mm512_mask_storeu_ps(y + i, m, r);
    }
}

/* acc + (*w broadcast) * x, the broadcast embedded in the FMA ({1to16}, done by the load unit):
 * where GCC sees one scalar serve several FMAs it broadcasts it once with vbroadcastss zmm, which
 * on Zen 4 takes a shuffle pipe beside the FMAs (kernels above use vpbroadcastd for that, qbc_f32). */
QM_INLINE __m512 fmadd_bcast(__m512 acc, __m512 x, const float *w) {
    __asm__("vfmadd231ps %[w]%{1to16%}, %[x], %[acc]" : [acc] "+v"(acc) : [x] "v"(x), [w] "m"(*w));
    return acc;
}

/* Attention values (kernels.h attn_values): tiles of 4 heads x 64 columns, 16 accumulators (from
 * out) kept over all n rows; each row's 64 columns loaded once for the 4 heads. A tile's missing heads
 * repeat its last one and its missing columns are masked: computed, never stored. */
static void attn_values_avx512(const float *p, size_t ldp, int g, const float *v, size_t ldv, int n, float *out, int hd) {
    for (int h0 = 0; h0 < g; h0 += 4)
        for (int i0 = 0; i0 < hd; i0 += 64) {
            const float *ph[4];
            for (int h = 0; h < 4; h++) ph[h] = p + (size_t)(h0 + h < g ? h0 + h : g - 1) * ldp;
            __mmask16 m[4];
            for (int c = 0; c < 4; c++) {
                const int k = hd - i0 - 16 * c;
                m[c] = k >= 16 ? (__mmask16)0xffff : k > 0 ? (__mmask16)((1u << k) - 1u) : 0;
            }
            __m512 acc[4][4]; /* from out (a missing head repeats the last one; never stored) */
            for (int h = 0; h < 4; h++) {
                const float *o = out + (size_t)(h0 + h < g ? h0 + h : g - 1) * (size_t)hd + i0;
                for (int c = 0; c < 4; c++) acc[h][c] = _mm512_maskz_loadu_ps(m[c], o + 16 * c);
            }
            for (int j = 0; j < n; j++) {
                const float *vj = v + (size_t)j * ldv + i0;
                __m512 x[4];
                for (int c = 0; c < 4; c++) x[c] = _mm512_maskz_loadu_ps(m[c], vj + 16 * c);
                for (int h = 0; h < 4; h++)
                    for (int c = 0; c < 4; c++) acc[h][c] = fmadd_bcast(acc[h][c], x[c], ph[h] + j);
            }
            for (int h = 0; h < 4 && h0 + h < g; h++)
                for (int c = 0; c < 4; c++)
                    _mm512_mask_storeu_ps(out + (size_t)(h0 + h) * (size_t)hd + i0 + 16 * c, m[c], acc[h][c]);
        }
}

/* ---- row-parallel layers of 64- or 128-column blocks (an MLP block, a head), one token (kernels.h, matmul_blocks) ----
 * Register tiles of R rows, each row read once along all its blocks: a block's accumulators are
 * exactly those of its own view (lane i % 16 over the block's columns, from +0), kept in memory,
 * item i = r n + k for row r's block k of the n in hand; then their trees 16 items at a time
 * (qreduce16), whichever rows they belong to. A view of few blocks (a device's one or two heads
 * of o_proj, its two or three MLP blocks on 1x32) takes ntile register tiles in a group, so that
 * its items still fill the reductions. */
#define QB_ITEMS 128 /* items of a group: R * ntile rows x n blocks */
#define QB_ROWS 16   /* rows of a group at most */
_Static_assert(QRMAX * 16 <= QB_ITEMS && QB_ROWS * 3 <= QB_ITEMS, "qblocks_rows' items");

QM_INLINE void qblocks_rows(const char *w0, size_t wstride, qm_dtype dt, int col0, int col_end, int bc, int R,
                            int ntile, int nb, const float *x, float *part, size_t pstride) {
    float accm[QB_ITEMS * 16] __attribute__((aligned(64))); /* [rows * n][16] */
    float ks[QB_ROWS][16] __attribute__((aligned(64)));     /* each row's K-quant scales in hand */
    float out[QB_ITEMS];
    const int S = QSTEP(dt), G = S / 16, qk = qm_dtype_block(dt), rows = R * ntile;
    const size_t bb = qm_dtype_block_bytes(dt);
    /* the next group's rows into the L1 (rowpar.h) */
    qm_rowpar_prefetch pf = qm_rowpar_prefetch_start(w0, wstride, rows, R, nb, bb * (size_t)bc / (size_t)qk);
    for (int b0 = 0; b0 < nb; b0 += 16) {
        const int n = nb - b0 < 16 ? nb - b0 : 16;
        for (int k = 0; k < n; k++) {
            const int e0 = col0 + (b0 + k) * bc, e1 = e0 + bc < col_end ? e0 + bc : col_end;
            qm_rowpar_prefetch_block(&pf, b0 + k);
            for (int t = 0; t < ntile; t++) {
                const char *wt = w0 + (size_t)(t * R) * wstride;
                __m512 acc[QRMAX];
                for (int r = 0; r < R; r++) acc[r] = _mm512_setzero_ps();
                for (int e = e0; e < e1; e += S) {
                    const unsigned ue = (unsigned)e;
                    const int fresh = (b0 + k == 0 && e == e0) || ue % 256 == 0, j = (int)(ue % 256 / 64);
                    const char *wb = wt + (size_t)(ue / (unsigned)qk) * bb;
                    __m512 w[QRMAX][4];
                    for (int r = 0; r < R; r++)
                        qstep(dt, (const uint8_t *)wb + (size_t)r * wstride, j, fresh, ks[t * R + r], w[r]);
                    for (int g = 0; g < G; g++) {
                        const __m512 xv = _mm512_loadu_ps(x + (e - col0) + 16 * g);
                        for (int r = 0; r < R; r++) acc[r] = _mm512_fmadd_ps(w[r][g], xv, acc[r]);
                    }
                }
                for (int r = 0; r < R; r++) _mm512_store_ps(accm + 16 * ((t * R + r) * n + k), acc[r]);
            }
        }
        for (int i = 0; i < rows * n; i += 16) qreduce16(accm + 16 * i, rows * n - i, NULL, out + i);
        for (int r = 0; r < rows; r++)
            for (int k = 0; k < n; k++) part[(size_t)(b0 + k) * pstride + (size_t)r] = out[r * n + k];
    }
}

/* Blocks k0 .. k0 + nk - 1 (nk <= 4) of rows w0 .. (nr <= 4): item 4k + r (block k0 + k of row r)
 * has its own accumulator in a register, from +0 over the block's columns, lane e % 16; one qtree16
 * of the 16 gives lanes 4k .. 4k + 3 = block k0 + k's rows, into part[(k0 + k) * pstride + r].
 * Missing items stay +0 and are not stored. ks: the rows' K-quant scales in hand, kept from tile to
 * tile along the rows. No accumulator goes through memory (qblocks_rows stores each and reloads it
 * for qreduce16). With the weights in the L2 (bench_qmatmul bench, one thread) a Q4_K weight took
 * 0.091 ns that way and 0.082 this way, against 0.054 along whole rows: the rest is the trees
 * (about 2 shuffles and an add a block) and the per-block bookkeeping. */
QM_INLINE void qblocks_tile(const char *w0, size_t wstride, qm_dtype dt, int col0, int col_end, int bc, int nr, int k0,
                            int nk, const float *x, float (*ks)[16], qm_rowpar_prefetch *pf, float *part,
                            size_t pstride) {
    const int S = QSTEP(dt), G = S / 16, qk = qm_dtype_block(dt);
    const size_t bb = qm_dtype_block_bytes(dt);
    __m512 acc[16];
    for (int i = 0; i < 16; i++) acc[i] = _mm512_setzero_ps();
    /* Unrolled, so that acc's indices are constants and the 16 stay in registers: as a loop, GCC
     * kept acc on the stack and loaded and stored a block's 4 around each block (seen in perf
     * annotate). bench_qmatmul rp avx512vnni Q4_K 1536 8960 16 (one thread, from DRAM, three
     * rounds alternating): 0.050-0.076 ns a weight against 0.064-0.106; Q6_K 0.071-0.094 against
     * 0.075-0.110; the 1.5B's exact down_proj 14.9-16.5 ms a step against 16.9-18.8. */
#pragma GCC unroll 4
    for (int k = 0; k < nk; k++) {
        const int e0 = col0 + (k0 + k) * bc, e1 = e0 + bc < col_end ? e0 + bc : col_end;
        qm_rowpar_prefetch_block(pf, k0 + k);
        for (int e = e0; e < e1; e += S) {
            const unsigned ue = (unsigned)e;
            const int fresh = (k0 + k == 0 && e == e0) || ue % 256 == 0, j = (int)(ue % 256 / 64);
            const char *wb = w0 + (size_t)(ue / (unsigned)qk) * bb;
            __m512 xv[4];
            for (int g = 0; g < G; g++) xv[g] = _mm512_loadu_ps(x + (e - col0) + 16 * g);
            for (int r = 0; r < nr; r++) {
                __m512 w[4];
                qstep(dt, (const uint8_t *)wb + (size_t)r * wstride, j, fresh, ks[r], w);
                for (int g = 0; g < G; g++) acc[4 * k + r] = _mm512_fmadd_ps(w[g], xv[g], acc[4 * k + r]);
            }
        }
    }
    float out[16] __attribute__((aligned(64)));
    _mm512_store_ps(out, qtree16(acc));
    for (int k = 0; k < nk; k++) {
        float *pk = part + (size_t)(k0 + k) * pstride;
        if (nr == 4) _mm_storeu_ps(pk, _mm_load_ps(out + 4 * k));
        else memcpy(pk, out + 4 * k, (size_t)nr * sizeof(float));
    }
}

/* Four rows' 64-column blocks k0 .. k0 + 3 that are one K-quant superblock (at row element e, a
 * multiple of 256): qblocks_tile's items and tree, each row's scales made once and the four steps
 * unrolled with constant offsets (qblocks_tile works them out block by block, its scales kept
 * in memory from tile to tile). One thread, weights in the L2, 64 rows x 8960 columns: Q6_K 0.054
 * -> 0.047 ns a weight, Q4_K the same (0.042); the 1.5B's exact down_proj 12.2-15.8 -> 11.1-13.3
 * ms a step (alternating builds; AMD EPYC family 26). */
QM_INLINE void qblocks_superblock(const char *w0, size_t wstride, qm_dtype dt, int col0, int k0, const float *x,
                                  qm_rowpar_prefetch *pf, float *part, size_t pstride) {
    const int e = col0 + k0 * 64;
    const uint8_t *sb = (const uint8_t *)w0 + (size_t)(e / 256) * qm_dtype_block_bytes(dt);
    const float *xe = x + (e - col0); /* [256] */
    float ks[4][16] __attribute__((aligned(64)));
    __m512 acc[16];
    qm_rowpar_prefetch_superblock(pf, k0, 4, (size_t)(e / 256) * qm_dtype_block_bytes(dt), qm_dtype_block_bytes(dt));
    for (int r = 0; r < 4; r++) qkscales(dt, sb + (size_t)r * wstride, ks[r]);
    /* ks from memory below, broadcast by the load unit: without the barrier GCC kept the scales in
     * registers and broadcast each with shuffles (vpextrd, valignd), 20% slower */
    __asm__ volatile("" : : "r"(ks) : "memory");
#pragma GCC unroll 4
    for (int j = 0; j < 4; j++)
#pragma GCC unroll 4
        for (int r = 0; r < 4; r++) {
            __m512 w[4];
            qstep(dt, sb + (size_t)r * wstride, j, 0, ks[r], w);
            __m512 a = _mm512_setzero_ps();
            for (int g = 0; g < 4; g++) a = _mm512_fmadd_ps(w[g], _mm512_loadu_ps(xe + 64 * j + 16 * g), a);
            acc[4 * j + r] = a;
        }
    float out[16] __attribute__((aligned(64)));
    _mm512_store_ps(out, qtree16(acc));
    for (int k = 0; k < 4; k++) _mm_storeu_ps(part + (size_t)(k0 + k) * pstride, _mm_load_ps(out + 4 * k));
}

/* Rows w0 .. (nr <= 4) along all nb blocks, tiles of 4 blocks (qblocks_tile); four rows of a
 * K-quant's 64-column blocks a superblock at a time where the blocks are whole superblocks
 * (qblocks_superblock). */
QM_INLINE void qblocks_rows4(const char *w0, size_t wstride, qm_dtype dt, int col0, int col_end, int bc, int nr, int nb,
                             const float *x, int stretch, float *part, size_t pstride) {
    float ks[4][16] __attribute__((aligned(64)));
    const size_t blk = qm_dtype_block_bytes(dt) * (size_t)bc / (size_t)qm_dtype_block(dt);
    qm_rowpar_prefetch pf = qm_rowpar_prefetch_start(w0, wstride, 4, 4, nb, blk); /* the next 4 rows (rowpar.h) */
    pf.stretch |= stretch; /* qm_rowpar_plain_stretch */
    const int sbk = dt >= QM_DT_Q4_K && bc == 64 && nr == 4; /* QSTEP 64: a block is a step */
    const int lead = sbk ? (256 - col0 % 256) % 256 / 64 : 0; /* blocks before the first superblock */
    int k0 = 0;
    if (sbk && lead < nb) {
        if (lead) qblocks_tile(w0, wstride, dt, col0, col_end, bc, 4, 0, lead, x, ks, &pf, part, pstride);
        for (k0 = lead; k0 + 4 <= nb && col0 + (k0 + 4) * 64 <= col_end; k0 += 4)
            qblocks_superblock(w0, wstride, dt, col0, k0, x, &pf, part, pstride);
    }
    for (; k0 < nb; k0 += 4) {
        const int nk = nb - k0 < 4 ? nb - k0 : 4;
        if (!qm_dtype_is_quant(dt) && !stretch) /* the group after next's blocks into the L2 (as AVX2's pblocks_dt) */
            for (int r = 8; r < 12; r++) qm_prefetch_l2(w0 + (size_t)r * wstride + (size_t)k0 * blk, (size_t)nk * blk);
        if (nr == 4 && nk == 4) qblocks_tile(w0, wstride, dt, col0, col_end, bc, 4, k0, 4, x, ks, &pf, part, pstride);
        else qblocks_tile(w0, wstride, dt, col0, col_end, bc, nr, k0, nk, x, ks, &pf, part, pstride);
    }
}

/* Rows [o_begin, o_end): views of 4 blocks or more by qblocks_rows4; fewer, in groups of register
 * tiles of QM_AVX512_QDR rows (several tiles, so that the items fill the reductions), the rest one
 * by one. */
QM_INLINE void blocks_dt(qm_dtype dt, const qm_wview *w, const float *x, int bc, int nb, float *part, size_t pstride,
                         int o_begin, int o_end) {
    const size_t ws = qm_wview_stride(w);
    const int end = w->col0 + w->cols, R = QM_AVX512_QDR, ntile = QB_ROWS / R; /* below: nb < 4 */
    int o = o_begin;
    if (nb >= 4) {
        for (; o < o_end; o += 4)
            qblocks_rows4(w->data + (size_t)o * ws, ws, dt, w->col0, end, bc, o_end - o < 4 ? o_end - o : 4, nb, x,
                          qm_rowpar_plain_stretch(w), part + o, pstride);
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

/* The file types the AVX-512 tables take interleaved (kernels.h q8_rows8_types): not Q4_K, whose
 * file layout decodes as fast here (one thread, 512 x 1536 from the L2, avx512vnni: 0.0138
 * against 0.0137 ns a weight) and whose tokens go faster in it (16 tokens 0.0057 against 0.0085
 * ns a weight-token). */
#define QM_AVX512_ROWS8_TYPES (1u << QM_DT_Q4_0 | 1u << QM_DT_Q5_0)

/* ---- row-parallel layers of a plain type over several tokens (batched decode, prefill) ----
 * Register tiles of 4 rows x 4 tokens of one block: their 16 accumulators (item t * 4 + r, from +0
 * over the block's columns, lane i % 16) are the 16 items of one qtree16, so no accumulator goes
 * through memory, and lanes 4t .. 4t + 3 of the result are token t's four rows. Tokens go in chunks
 * of 16 (rowpar.h, qm_rowpar_token_tiles). */

/* Block [e0, e1) of rows w0 (nr <= 4) x tokens x (nt <= 4): into p[t * ldy + r]. */
QM_INLINE void dblock_tile(const char *w0, size_t wstride, qm_dtype dt, int nr, int nt, int e0, int e1,
                           const float *x, size_t ldx, float *p, size_t ldy) {
    const size_t esz = qm_dtype_block_bytes(dt);
    __m512 acc[16];
    for (int i = 0; i < 16; i++) acc[i] = _mm512_setzero_ps();
    for (int e = e0; e < e1; e += 16) {
        __m512 wv[4], xv[4];
        for (int r = 0; r < 4; r++) wv[r] = r < nr ? load_w(w0 + (size_t)r * wstride + (size_t)e * esz, dt) : _mm512_setzero_ps();
        for (int t = 0; t < 4; t++) xv[t] = t < nt ? _mm512_loadu_ps(x + (size_t)t * ldx + e) : _mm512_setzero_ps();
        for (int t = 0; t < 4; t++)
            for (int r = 0; r < 4; r++) acc[t * 4 + r] = _mm512_fmadd_ps(wv[r], xv[t], acc[t * 4 + r]);
    }
    float out[16] __attribute__((aligned(64)));
    _mm512_store_ps(out, qtree16(acc));
    for (int t = 0; t < nt; t++) {
        if (nr == 4) _mm_storeu_ps(p + (size_t)t * ldy, _mm_load_ps(out + 4 * t));
        else memcpy(p + (size_t)t * ldy, out + 4 * t, (size_t)nr * sizeof(float));
    }
}

QM_ROWPAR_TOKEN_KERNELS(4) /* blocks_tokens (rowpar.h) */

/* The one-token shapes blocks_fast takes: whole steps, blocks that cover the view. */
static int blocks_fast_shape(const qm_wview *w, int n_tok, int bc, int nb) {
    return n_tok == 1 && (bc == 64 || bc == 128) && nb >= 1 && (unsigned)w->dtype < QM_DT_COUNT &&
           w->col0 % QSTEP(w->dtype) == 0 && w->cols % 64 == 0 && nb == (w->cols + bc - 1) / bc;
}

static void matmul_blocks_avx512(const qm_wview *w, const float *x, size_t ldx, int n_tok, int bc, int nb, float *part,
                                 size_t pstride, size_t ldy, int o_begin, int o_end) {
    const int fast = blocks_fast_shape(w, n_tok, bc, nb);
    if (!fast && n_tok > 1 && qm_rowpar_tokens_shape(w, bc, nb)) {
        if (o_begin < o_end) blocks_tokens(w, x, ldx, n_tok, bc, nb, part, pstride, ldy, o_begin, o_end);
        return;
    }
    if (!fast) {
        qm_blocks_by_views(matmul_avx512, w, x, ldx, n_tok, bc, nb, part, pstride, ldy, o_begin, o_end);
        return;
    }
    if (o_begin < o_end) blocks_fast(w, x, bc, nb, part, pstride, o_begin, o_end);
}

QM_ROWPAR_EXACT_NODES_ENTRY(matmul_nodes_decode, blocks_fast, blocks_fast_shape) /* rowpar.h */

/* ---- row-parallel layers over NMIN tokens or more (batched decode, prefill): the nodes in the kernel ----
 * Tokens side by side: a zmm holds one canonical lane of one row for 16 tokens. The pass's tokens
 * are transposed once (xt[i]: column i of 16 tokens); a block's rows are converted or dequantized
 * exactly into f32 (wb); lane c of row r is then, for i = c, c + 16, ... below the block's end
 * (increasing), fmaf(wb[r][i] (a broadcast), xt[i], acc): the canonical sequence of FMAs of each
 * (row, token, lane). The lane tree (w = 8, 4, 2, 1: lane l + lane l + w) is vertical adds of lane
 * vectors, made as the lanes are: pairs (0, 8), (4, 12) -> u0; (2, 10), (6, 14) -> u2; u0 + u2; the
 * odd lanes likewise; the two added. Each block dot goes straight into the halving tree over the
 * blocks, depth first (AVX2's nodes_tokens: one value a level alive). Against the 4 x 4 register
 * tiles (blocks_tokens), no shuffles: a block's tree is 15 adds for 16 tokens of a row. */
#define NMIN 16 /* tokens from which nodes_tokens takes a row-parallel layer */
#define NTR 4   /* rows a tile */
#define NTP 4   /* passes of 16 tokens a group at most (xt of a group: cols x passes x 64 bytes) */
/* Passes a group: a group's tokens convert or dequantize each block's rows once; its xt should stay
 * in the L2. bench_qmatmul pre, one thread: BF16 896 x 4864 x 512 tokens 78-109 GFLOP/s with 2
 * passes, 58-66 with 4; Q4_K 1536 x 8960 x 128 tokens 59-63 with 2, 85-88 with 4 (dequantizing
 * costs more than converting). */
#define NTP_OF(dt) (qm_dtype_is_quant(dt) ? 4 : 2)
#define NODE_LEVELS 17 /* a tree of up to 2^16 blocks */
/* Tiles a chunk: a block's activations (xt, 64 columns x the group's passes) serve NTC tiles before
 * the next block, so that a view whose xt is wider than the L2 (the 1.5B's down_proj, 8960 columns
 * x 64 tokens: 2.3 MB) reads each block's xt from the L3 once per NTC tiles, not once a tile.
 * bench_qmatmul pre avx512vnni Q4_K 1536 8960 128, one thread, Intel Xeon with a 2 MB L2: 42
 * GFLOP/s at best one tile at a time, 81-85 with 8 to 32 tiles a chunk. */
#ifndef NTC
#define NTC 16
#endif
/* How far ahead in each row the leaves prefetch: the next block (at least NODE_PF_AHEAD bytes).
 * 512 bytes (four bf16 blocks) brought a chunk's 64 rows x 4 blocks into an L1 of 32 KB that
 * evicted them before use: at batch 16 (0.5B bf16, AMD EPYC Zen 4, `perf record -e cpu-clock`,
 * two rounds each) the loads of the rows' conversion held 18-20% of tnode_leaf's samples with
 * 512, 11-13% with 128 or 192, 44-46% with 64 (too late); down_proj 27.9-33.5 ms a step against
 * 26.6-31.0. Prefill (512 tokens, bf16 and the 1.5B's Q4_K) unchanged within the noise. */
#ifndef NODE_PF_AHEAD
#define NODE_PF_AHEAD 128
#endif

typedef struct {
    const char *w0; /* the chunk's first row */
    size_t wstride;
    qm_dtype dt;
    int col0, cols, bc, nr, nt, np; /* view; block columns; the chunk's rows and tiles; the group's passes */
    const float *xt;            /* [np][cols][16]: the group's tokens side by side */
    float *wb;                  /* [NTC * NTR][bc]: the block's rows in f32 (a tile's, or the chunk's at batch 16) */
    __m512 *level;              /* [NODE_LEVELS][NTC][NTP][NTR] */
    float *ks;                  /* [NTC * NTR][16]: each chunk row's K-quant scales in hand (qkscales) */
    int *ks_sb;                 /* [NTC * NTR]: the superblock they are of (-1: none) */
} tnode_walk;

/* Row elements [e, e + kc) of a plain-type row (e a multiple of 16), converted exactly. */
QM_INLINE void plain_f32(const char *row, qm_dtype dt, int e, int kc, float *out) {
    const size_t esz = dt == QM_DT_F32 ? 4 : 2;
    int i = 0;
    for (; i + 16 <= kc; i += 16) _mm512_storeu_ps(out + i, load_w(row + (size_t)(e + i) * esz, dt));
    if (i < kc) {
        const __mmask16 m = (__mmask16)((1u << (kc - i)) - 1u);
        _mm512_mask_storeu_ps(out + i, m, load_w_mask(row + (size_t)(e + i) * esz, dt, m));
    }
}

/* One row's view elements [e, e + kc) (view columns), whatever the type, as f32. */
static void row_f32_any(const char *row, qm_dtype dt, int col0, int e, int kc, float *out) {
#define QROW_DT(dt_) qrow_f32(row, dt_, col0 + e, kc, out)
    switch (dt) {
    case QM_DT_F32: plain_f32(row, QM_DT_F32, col0 + e, kc, out); break;
    case QM_DT_F16: plain_f32(row, QM_DT_F16, col0 + e, kc, out); break;
    case QM_DT_BF16: plain_f32(row, QM_DT_BF16, col0 + e, kc, out); break;
    default: QM_SWITCH_QUANT_DTYPE(dt, QROW_DT); break;
    }
#undef QROW_DT
}

/* Lanes c and c + 8 of R rows (wb: [R][bc]; R * P <= 2 NTR) for P passes (x: the block's xt of
 * the first, the next xs floats on), each from +0, then added: s[p * R + r]. Each FMA broadcasts its
 * weight from the L1 itself (fmadd_bcast): one vbroadcastss for the two passes held a shuffle
 * pipe, prefill's down_proj 8% slower (bf16 896 x 4864 x 512, docs/perf-history.md 2026-12-06 18:14). */
QM_INLINE void lane_pair(const float *wb, int bc, const float *x, size_t xs, int P, int kc, int c, __m512 *s,
                         int R) {
    __m512 a[2 * NTR], b[2 * NTR];
    for (int k = 0; k < P * R; k++) a[k] = b[k] = _mm512_setzero_ps();
    int i = c;
    for (; i + 8 < kc; i += 16) { /* both chains at once: lane c takes column i, lane c + 8 column i + 8 */
        __m512 xa[2], xb[2];
        for (int p = 0; p < P; p++) {
            xa[p] = _mm512_load_ps(x + (size_t)p * xs + (size_t)i * 16);
            xb[p] = _mm512_load_ps(x + (size_t)p * xs + (size_t)(i + 8) * 16);
        }
        for (int r = 0; r < R; r++)
            for (int p = 0; p < P; p++) {
                a[p * R + r] = fmadd_bcast(a[p * R + r], xa[p], wb + r * bc + i);
                b[p * R + r] = fmadd_bcast(b[p * R + r], xb[p], wb + r * bc + i + 8);
            }
    }
    if (i < kc) /* a short last block: lane c's last column */
        for (int p = 0; p < P; p++) {
            const __m512 xa = _mm512_load_ps(x + (size_t)p * xs + (size_t)i * 16);
            for (int r = 0; r < R; r++) a[p * R + r] = fmadd_bcast(a[p * R + r], xa, wb + r * bc + i);
        }
    for (int k = 0; k < P * R; k++) s[k] = _mm512_add_ps(a[k], b[k]);
}

/* z_q of the canonical lane tree (kernels.h) for NTR rows x P passes, q = 0 (the even lanes) or 1
 * (the odd): with pair(c) = lane c + lane c + 8 (level w = 8), u_q = pair(q) + pair(q + 4) and
 * u_(q+2) = pair(q + 2) + pair(q + 6) (w = 4), z_q = u_q + u_(q+2) (w = 2); the root is z_0 + z_1. */
QM_INLINE void lanes_half(const float *wb, int bc, const float *x, size_t xs, int P, int kc, int q, __m512 *z) {
    __m512 s0[2 * NTR], s1[2 * NTR], u[2 * NTR];
    lane_pair(wb, bc, x, xs, P, kc, q, s0, NTR);
    lane_pair(wb, bc, x, xs, P, kc, q + 4, s1, NTR);
    for (int k = 0; k < P * NTR; k++) u[k] = _mm512_add_ps(s0[k], s1[k]);
    lane_pair(wb, bc, x, xs, P, kc, q + 2, s0, NTR);
    lane_pair(wb, bc, x, xs, P, kc, q + 6, s1, NTR);
    for (int k = 0; k < P * NTR; k++) z[k] = _mm512_add_ps(u[k], _mm512_add_ps(s0[k], s1[k]));
}

/* Block dots of P passes from pass p on: v[(p + j) * NTR + r]. */
QM_INLINE void leaf_passes(const tnode_walk *nw, const float *wb, int e0, int kc, int p, int P, __m512 *v) {
    const size_t xs = (size_t)nw->cols * 16;
    const float *x = nw->xt + (size_t)p * xs + (size_t)e0 * 16;
    __m512 z0[2 * NTR], z1[2 * NTR];
    lanes_half(wb, nw->bc, x, xs, P, kc, 0, z0);
    lanes_half(wb, nw->bc, x, xs, P, kc, 1, z1);
    for (int k = 0; k < P * NTR; k++) v[p * NTR + k] = _mm512_add_ps(z0[k], z1[k]);
}

/* Batched decode's leaf (one pass of 16 tokens, a 64-column block): two tiles' 8 rows at once,
 * lanes c and c + 8 of all 8 (16 accumulators, 2 activation loads a step for 16 FMAs), where
 * lanes_half's 4 rows left the FMAs waiting on their chains and spilled: the same FMAs, the same
 * lane tree (pair(c) = lane c + lane c + 8; z_q = (pair(q) + pair(q + 4)) + (pair(q + 2) +
 * pair(q + 6)); the root z_0 + z_1), so the same bits. wb: [8][bc]; x: the block's xt. */
#define LEAF8_ROWS 8
_Static_assert(LEAF8_ROWS == 2 * NTR, "leaf8 makes two tiles (and fills lane_pair's accumulators)");
QM_INLINE void leaf8(const float *wb, int bc, const float *x, __m512 v[LEAF8_ROWS]) {
    __m512 p[8][LEAF8_ROWS]; /* pair(c) of each row */
    for (int c = 0; c < 8; c++) lane_pair(wb, bc, x, 0, 1, 64, c, p[c], LEAF8_ROWS);
    for (int r = 0; r < LEAF8_ROWS; r++) {
        const __m512 z0 = _mm512_add_ps(_mm512_add_ps(p[0][r], p[4][r]), _mm512_add_ps(p[2][r], p[6][r]));
        const __m512 z1 = _mm512_add_ps(_mm512_add_ps(p[1][r], p[5][r]), _mm512_add_ps(p[3][r], p[7][r]));
        v[r] = _mm512_add_ps(z0, z1);
    }
}

/* leaf_rows of a K-quant's whole steps (kc a multiple of 64 columns from a row element a multiple
 * of 64): qstep into wb, each row's superblock scales made once (nw->ks, nw->ks_sb) where
 * qrow_f32 made them again for each of the superblock's 64-column blocks; the type a constant.
 * Q4_K at batch 16 (`bench_qmatmul pre avx512vnni Q4_K 1536 8960 16`) spent a third of its time
 * in row_f32_any. */
QM_INLINE void leaf_rows_k(const tnode_walk *nw, qm_dtype dt, int r0, int n, int e0, int kc, float *wb, size_t b0,
                           size_t nbytes, size_t ahead) {
    const size_t bb = qm_dtype_block_bytes(dt);
    for (int r = 0; r < n; r++) {
        float *out = wb + (size_t)r * (size_t)nw->bc;
        const int cr = r0 + r; /* the chunk's row */
        if (cr >= nw->nr) {
            memset(out, 0, (size_t)kc * sizeof(float));
            continue;
        }
        const char *row = nw->w0 + (size_t)cr * nw->wstride;
        for (size_t o = 0; o < nbytes + 64; o += 64) _mm_prefetch(row + b0 + ahead + o, _MM_HINT_T0);
        for (int i = 0; i < kc; i += 64) {
            const unsigned e = (unsigned)(nw->col0 + e0 + i);
            const int sb = (int)(e / 256), fresh = nw->ks_sb[cr] != sb;
            nw->ks_sb[cr] = sb;
            __m512 w[4];
            qstep(dt, (const uint8_t *)row + (size_t)sb * bb, (int)(e % 256 / 64), fresh, nw->ks + 16 * cr, w);
            for (int g = 0; g < 4; g++) _mm512_store_ps(out + i + 16 * g, w[g]);
        }
    }
}

/* Row elements [e0, e0 + kc) of the chunk's rows [r0, r0 + n) into wb[r - r0][bc] as f32 (rows
 * past the chunk's: zero), each row's next block prefetched (b0, nbytes: the block's place). */
static void leaf_rows(const tnode_walk *nw, int r0, int n, int e0, int kc, float *wb) {
    const size_t b0 = qm_dtype_row_bytes(nw->dt, (size_t)(nw->col0 + e0)), nbytes = qm_dtype_row_bytes(nw->dt, (size_t)kc);
    const size_t ahead = nbytes > NODE_PF_AHEAD ? nbytes : NODE_PF_AHEAD;
    if (nw->dt >= QM_DT_Q4_K && kc % 64 == 0 && (nw->col0 + e0) % 64 == 0 && nw->bc % 16 == 0) {
        switch (nw->dt) {
        case QM_DT_Q4_K: leaf_rows_k(nw, QM_DT_Q4_K, r0, n, e0, kc, wb, b0, nbytes, ahead); return;
        case QM_DT_Q5_K: leaf_rows_k(nw, QM_DT_Q5_K, r0, n, e0, kc, wb, b0, nbytes, ahead); return;
        default: leaf_rows_k(nw, QM_DT_Q6_K, r0, n, e0, kc, wb, b0, nbytes, ahead); return;
        }
    }
    for (int r = 0; r < n; r++) {
        if (r0 + r < nw->nr) {
            const char *row = nw->w0 + (size_t)(r0 + r) * nw->wstride;
            for (size_t o = 0; o < nbytes + 64; o += 64) _mm_prefetch(row + b0 + ahead + o, _MM_HINT_T0);
            row_f32_any(row, nw->dt, nw->col0, e0, kc, wb + (size_t)r * (size_t)nw->bc);
        } else memset(wb + (size_t)r * (size_t)nw->bc, 0, (size_t)kc * sizeof(float));
    }
}

/* leaf_rows for the batched decode's bf16 blocks: rows [0, n) (past the chunk's: zero), 64
 * elements from e0, into wb[n][bc], each row's four vectors converted in line and its next block
 * prefetched into the L2 (into the L1, where wb and the block's activations are, `bench_qmatmul
 * pre avx512vnni BF16 896 4864 16` read 51-57 GFLOP/s, into the L2 63-69; farther ahead than
 * the next block was faster alone and slower in the model, docs/perf-history.md).
 * A tile's 4 rows converted before its FMAs, through row_f32_any, held 22-30% of the 16-token
 * nodes' time (`perf record -e cpu-clock`, bench_qmatmul pre avx512vnni BF16 64 4864 16, the
 * weights in the L2: nodes 62-66 GFLOP/s, 80-84 with no conversion at all, 80 this way). Builds
 * alternated six times, `qmesh bench -m r05-bf16.gguf --prompt 701 --shared-prefix 700 --gen 32
 * --batch 16` (AMD EPYC Zen 4, 2026-12-06 22:20): down_proj 24.8 -> 22.7 ms a step, o_proj 5.3 ->
 * 4.6, 158.6 -> 162.6 tok/s (means). */
static void leaf_rows_bf16(const tnode_walk *nw, int n, int e0, float *wb) {
    const size_t b0 = (size_t)(nw->col0 + e0) * 2;
    for (int r = 0; r < n; r++) {
        float *out = wb + (size_t)r * (size_t)nw->bc;
        if (r >= nw->nr) {
            memset(out, 0, 64 * sizeof(float));
            continue;
        }
        const char *row = nw->w0 + (size_t)r * nw->wstride;
        _mm_prefetch(row + b0 + 128, _MM_HINT_T1);
        _mm_prefetch(row + b0 + 192, _MM_HINT_T1);
        plain_f32(row, QM_DT_BF16, nw->col0 + e0, 64, out);
    }
}

/* Block k's dots of the chunk's tiles (NTR rows each) x the group's tokens: tile i's into
 * v[(i * NTP + p) * NTR + r] (16 tokens each). */
static void tnode_leaf(const tnode_walk *nw, int k, __m512 *v) {
    const int e0 = k * nw->bc, kc = nw->cols - e0 < nw->bc ? nw->cols - e0 : nw->bc;
    if (nw->np == 1 && kc == 64) { /* batched decode's 64-column blocks: the chunk's rows first, then its tiles */
        if (nw->dt == QM_DT_BF16) leaf_rows_bf16(nw, nw->nt * NTR, e0, nw->wb);
        else leaf_rows(nw, 0, nw->nt * NTR, e0, kc, nw->wb);
        const float *x = nw->xt + (size_t)e0 * 16;
        int i = 0;
        for (; i + 2 <= nw->nt; i += 2, v += 2 * NTP * NTR) { /* tiles i, i + 1 */
            __m512 o[LEAF8_ROWS];
            leaf8(nw->wb + (size_t)(i * NTR) * (size_t)nw->bc, nw->bc, x, o);
            for (int r = 0; r < NTR; r++) {
                v[r] = o[r];
                v[NTP * NTR + r] = o[NTR + r];
            }
        }
        if (i < nw->nt) leaf_passes(nw, nw->wb + (size_t)(i * NTR) * (size_t)nw->bc, e0, 64, 0, 1, v);
        return;
    }
    for (int i = 0; i < nw->nt; i++, v += NTP * NTR) {
        leaf_rows(nw, i * NTR, NTR, e0, kc, nw->wb);
        int p = 0;
        for (; p + 2 <= nw->np; p += 2) leaf_passes(nw, nw->wb, e0, kc, p, 2, v);
        if (p < nw->np) leaf_passes(nw, nw->wb, e0, kc, p, 1, v);
    }
}

/* The halving tree of blocks [first, first + count) into level `lv` (its children use lv, lv + 1). */
static const __m512 *tnode_value(const tnode_walk *nw, int first, int count, int lv) {
    __m512 *v = nw->level + (size_t)lv * NTC * NTP * NTR;
    if (count == 1) {
        tnode_leaf(nw, first, v);
        return v;
    }
    tnode_value(nw, first, count / 2, lv);
    const __m512 *right = tnode_value(nw, first + count / 2, count - count / 2, lv + 1);
    for (int i = 0; i < nw->nt * NTP * NTR; i += NTP * NTR)
        for (int j = i; j < i + nw->np * NTR; j++) v[j] = _mm512_add_ps(v[j], right[j]);
    return v;
}

/* transpose16's permutes: [stage h = 8, 4, 2, 1][lo, hi][c]; lo[c] = c & h ? 16 + c - h : c,
 * hi[c] = c & h ? 16 + c : c + h (an index of 16 or more picks the second row's element). */
static const int32_t transpose16_idx[4][2][16] __attribute__((aligned(64))) = {
    {{0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23},
     {8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31}},
    {{0, 1, 2, 3, 16, 17, 18, 19, 8, 9, 10, 11, 24, 25, 26, 27},
     {4, 5, 6, 7, 20, 21, 22, 23, 12, 13, 14, 15, 28, 29, 30, 31}},
    {{0, 1, 16, 17, 4, 5, 20, 21, 8, 9, 24, 25, 12, 13, 28, 29},
     {2, 3, 18, 19, 6, 7, 22, 23, 10, 11, 26, 27, 14, 15, 30, 31}},
    {{0, 16, 2, 18, 4, 20, 6, 22, 8, 24, 10, 26, 12, 28, 14, 30},
     {1, 17, 3, 19, 5, 21, 7, 23, 9, 25, 11, 27, 13, 29, 15, 31}}};

/* The 16 x 16 transpose of r in place (r[i]: row i; after, r[c]: column c): for h = 8, 4, 2, 1
 * each 2h x 2h block's off-diagonal h x h blocks swap, rows i and i + h (i & h == 0) at once. */
QM_INLINE void transpose16(__m512 r[16]) {
#pragma GCC unroll 4
    for (int s = 0, h = 8; s < 4; s++, h /= 2) {
        const __m512i il = _mm512_load_si512(transpose16_idx[s][0]), ih = _mm512_load_si512(transpose16_idx[s][1]);
#pragma GCC unroll 16
        for (int i = 0; i < 16; i++) {
            if (i & h) continue;
            const __m512 a = r[i], b = r[i + h];
            r[i] = _mm512_permutex2var_ps(a, il, b);
            r[i + h] = _mm512_permutex2var_ps(a, ih, b);
        }
    }
}

/* xt[p][i][j] = x[(16p + j) * ldx + i] for the group's tg tokens (16p + j >= tg: 0), 16 x 16 at a
 * time through registers. It replaced a loop of scalar copies: 2.1% of the samples of a `qmesh
 * bench -m r05-bf16 --prompt 701 --shared-prefix 700 --gen 32 --batch 16` run before, 0.6-0.8%
 * after (`perf record -e cpu-clock`, AMD EPYC Zen 4, 2026-12-04). */
static void tokens_side_by_side(const float *x, size_t ldx, int tg, int cols, float *xt) {
    for (int t0 = 0; t0 < tg; t0 += 16) {
        const int nt = tg - t0 < 16 ? tg - t0 : 16;
        float *d = xt + (size_t)(t0 / 16) * (size_t)cols * 16;
        for (int i0 = 0; i0 < cols; i0 += 16) {
            const int nc = cols - i0 < 16 ? cols - i0 : 16;
            const __mmask16 m = (__mmask16)((1u << nc) - 1u);
            __m512 r[16];
#pragma GCC unroll 16
            for (int j = 0; j < 16; j++)
                r[j] = j < nt ? _mm512_maskz_loadu_ps(m, x + (size_t)(t0 + j) * ldx + (size_t)i0) : _mm512_setzero_ps();
            transpose16(r);
#pragma GCC unroll 16
            for (int c = 0; c < 16; c++)
                if (c < nc) _mm512_store_ps(d + (size_t)(i0 + c) * 16, r[c]);
        }
    }
}

/* A chunk's node values v (tnode_value: NTP x NTR vectors a tile) into out[t * ldy + r] for its
 * nw->nr rows and tg tokens. */
static void chunk_store(const tnode_walk *nw, const __m512 *v, int tg, float *out, size_t ldy) {
    float vals[NTP * NTR * 16] __attribute__((aligned(64))); /* [np][NTR][16 tokens]: a tile's values */
    for (int k = 0; k < nw->nt; k++, v += NTP * NTR) { /* tile k: the chunk's rows NTR k .. */
        const int nr = nw->nr - NTR * k < NTR ? nw->nr - NTR * k : NTR;
        float *ok = out + (size_t)(NTR * k);
        for (int j = 0; j < nw->np * NTR; j++) _mm512_store_ps(vals + 16 * j, v[j]);
        for (int t = 0; t < tg; t++)
            for (int r = 0; r < nr; r++) ok[(size_t)t * ldy + (size_t)r] = vals[((t / 16) * NTR + r) * 16 + t % 16];
    }
}

/* The nodes of rows [o_begin, o_end) x n_tok tokens (kernels.h matmul_nodes); 0 without buffers. */
static int nodes_tokens(const qm_wview *w, const float *x, size_t ldx, int n_tok, int bc, const qm_leaf_node *nodes,
                        int n_nodes, float *out, size_t ostride, size_t ldy, int o_begin, int o_end) {
    const int gt = NTP_OF(w->dtype) * 16; /* tokens a group */
    const size_t nxt = (size_t)gt * (size_t)w->cols, nwb = (size_t)NTC * NTR * (size_t)bc;
    const size_t nlv = (size_t)NODE_LEVELS * NTC * NTP * NTR * 16, nks = (size_t)NTC * NTR * 16;
    float *buf = aligned_alloc(64, (nxt + nwb + nlv + nks) * sizeof(float) + (size_t)NTC * NTR * sizeof(int));
    if (!buf) return 0;
    tnode_walk nw = {.wstride = qm_wview_stride(w), .dt = w->dtype, .col0 = w->col0, .cols = w->cols, .bc = bc,
                     .xt = buf, .wb = buf + nxt, .level = (__m512 *)(void *)(buf + nxt + nwb),
                     .ks = buf + nxt + nwb + nlv, .ks_sb = (int *)(void *)(buf + nxt + nwb + nlv + nks)};
    for (int t0 = 0; t0 < n_tok; t0 += gt) {
        const int tg = n_tok - t0 < gt ? n_tok - t0 : gt;
        nw.np = (tg + 15) / 16;
        tokens_side_by_side(x + (size_t)t0 * ldx, ldx, tg, w->cols, buf);
        for (int c0 = o_begin; c0 < o_end; c0 += NTC * NTR) {
            nw.w0 = (const char *)w->data + (size_t)c0 * nw.wstride;
            nw.nr = o_end - c0 < NTC * NTR ? o_end - c0 : NTC * NTR;
            nw.nt = (nw.nr + NTR - 1) / NTR;
            for (int r = 0; r < NTC * NTR; r++) nw.ks_sb[r] = -1; /* the chunk's rows: no scales in hand */
            for (int i = 0; i < n_nodes; i++)
                chunk_store(&nw, tnode_value(&nw, nodes[i].first, nodes[i].count, 0), tg,
                            out + (size_t)i * ostride + (size_t)t0 * ldy + (size_t)c0, ldy);
        }
    }
    free(buf);
    return 1;
}

/* matmul_nodes: one token by the block path; from NMIN tokens nodes_tokens (rowpar.h). */
QM_ROWPAR_TOKENS_NODES_ENTRY(matmul_nodes_avx512, matmul_nodes_decode, nodes_tokens, blocks_tokens,
                             qm_rowpar_tokens_shape_n, NMIN, NODE_LEVELS) /* rowpar.h */

const qm_kernels qm_kernels_avx512_table = {
    .isa = "avx512", .matmul = matmul_avx512, .dot = dot_avx512, .axpy = axpy_avx512, .attn_values = attn_values_avx512,
    .quantize_act = qm_quantize_act_avx512, .matmul_q8 = qm_matmul_q8_avx512,
    .matmul_blocks = matmul_blocks_avx512, .matmul_q8_blocks = qm_matmul_q8_blocks_avx512,
    .matmul_q8_nodes = qm_matmul_q8_nodes_avx512, .matmul_nodes = matmul_nodes_avx512,
    .head_pass = qm_head_pass_avx2, .head_pass_min_outputs = 8, .head_finish = qm_head_finish_avx512,
    .exp_sub = qm_exp_sub_avx512,
    .silu_mul = qm_silu_mul_avx512, .q8_rows8_types = QM_AVX512_ROWS8_TYPES};

/* The same with the fast mode's integer sums on AVX512-VNNI (vpdpbusd): the same bits. */
const qm_kernels qm_kernels_avx512vnni_table = {
    .isa = "avx512vnni", .matmul = matmul_avx512, .dot = dot_avx512, .axpy = axpy_avx512, .attn_values = attn_values_avx512,
    .quantize_act = qm_quantize_act_avx512, .matmul_q8 = qm_matmul_q8_avx512vnni,
    .matmul_blocks = matmul_blocks_avx512, .matmul_q8_blocks = qm_matmul_q8_blocks_avx512vnni,
    .matmul_q8_nodes = qm_matmul_q8_nodes_avx512vnni, .matmul_nodes = matmul_nodes_avx512,
    .head_pass = qm_head_pass_avx512vnni, .head_pass_min_outputs = 4, .head_finish = qm_head_finish_avx512,
    .exp_sub = qm_exp_sub_avx512, .silu_mul = qm_silu_mul_avx512, .q8_rows8_types = QM_AVX512_ROWS8_TYPES};
