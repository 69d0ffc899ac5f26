/* AVX-512 twin of qdot.c (the spec: kernels/qdot.h). One zmm holds 16 consecutive 32-blocks of
 * the view, lane l = block l of the group: the blocks' exact integer sums are made with
 * maddubs/madd (no VNNI), reduced to one dword per block, converted, and scaled with the spec's
 * f32 operations lane by lane (vmulps/vaddps/vsubps, never FMA); acc + c is one masked vaddps.
 *
 * maddubs (u8 x s8 -> s16, pairs) never saturates here: the u8 side is a weight code (Q4: 0..15,
 * Q5: 0..31, Q6_K: 0..63, Q8_0: |w| <= 128) and the s8 side an activation in [-127, 127], so a
 * pair is at most 2 * 128 * 127 = 32512. Signed weights: Q8_0 moves w's sign onto q (the sign
 * trick); Q4_0/Q5_0 use unsigned codes and subtract 8 s / 16 s; Q6_K subtracts 32 (q0 + q1) per
 * pair (maddubs of 32 with q) before madd with its 16-element scales. Q4_K/Q5_K multiply
 * sc_j * Σ as f32 (both exact integers, product < 2^24: exact, so equal to (float)(sc_j * Σ)),
 * and m_j * s likewise.
 *
 * Tiling: TR rows x up to TT tokens. Per group of 16 blocks each row's codes and scales are
 * unpacked once into a wgroup and reused for every token; each token's activations are loaded
 * once and reused for the TR rows. Tiling changes no bit: every lane sees the spec's sequence. */
#include <immintrin.h>
#include <stdint.h>

#include "kernels/qdot.h"
#include "kernels/quant.h"

#define QM_INLINE static inline __attribute__((always_inline))
#define TR 4  /* rows per tile */
#define TT 16 /* tokens per tile */

/* One row's 16 blocks, unpacked. */
typedef struct {
    __m512i q[8];     /* codes of blocks 2k (bytes 0..31) and 2k + 1 (32..63); Q8_0: |w| */
    __m512i sc[8];    /* Q6_K: each element pair's int16 scale */
    __mmask64 neg[8]; /* Q8_0: w < 0 */
    __m512 d, m;      /* per block: d; m (Q4_1, Q5_1) or dmin (Q4_K, Q5_K) */
    __m512 sc_f, mn_f; /* Q4_K, Q5_K: the 6-bit scale and min */
} wgroup;

QM_INLINE __m512i pair(__m256i lo, __m256i hi) { return _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1); }

QM_INLINE __m512 f16x16(const uint16_t h[16]) { return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)h)); }

/* Nibbles of 16 bytes: low nibbles are elements 0..15, high ones 16..31. */
QM_INLINE __m256i nibbles(const uint8_t *qs) {
    const __m128i q = _mm_loadu_si128((const __m128i *)qs);
    const __m256i v = _mm256_inserti128_si256(_mm256_castsi128_si256(q), _mm_srli_epi16(q, 4), 1);
    return _mm256_and_si256(v, _mm256_set1_epi8(15));
}

/* Q8_0, Q4_0, Q4_1, Q5_0, Q5_1: block b of the group at row + (sb + b) * bb. */
QM_INLINE void unpack_32(qm_dtype dt, const uint8_t *row, int sb, int nb, wgroup *g) {
    const size_t bb = qm_dtype_block_bytes(dt);
    const int has_m = dt == QM_DT_Q4_1 || dt == QM_DT_Q5_1, has_h = dt == QM_DT_Q5_0 || dt == QM_DT_Q5_1;
    uint16_t dh[16] = {0}, mh[16] = {0};
    __m256i c[16];
    for (int b = 0; b < 16; b++) {
        c[b] = _mm256_setzero_si256();
        if (b >= nb) continue;
        const uint8_t *blk = row + (size_t)(sb + b) * bb;
        dh[b] = qm_quant_rd16(blk);
        if (dt == QM_DT_Q8_0) {
            c[b] = _mm256_loadu_si256((const __m256i *)(blk + 2));
            continue;
        }
        if (has_m) mh[b] = qm_quant_rd16(blk + 2);
        const uint8_t *p = blk + 2 + 2 * has_m;
        c[b] = nibbles(p + 4 * has_h);
        if (has_h) c[b] = _mm256_mask_add_epi8(c[b], (__mmask32)qm_quant_rd32(p), c[b], _mm256_set1_epi8(16));
    }
    for (int k = 0; k < 8; k++) {
        g->q[k] = pair(c[2 * k], c[2 * k + 1]);
        if (dt == QM_DT_Q8_0) {
            g->neg[k] = _mm512_movepi8_mask(g->q[k]);
            g->q[k] = _mm512_abs_epi8(g->q[k]);
        }
    }
    g->d = f16x16(dh);
    if (has_m) g->m = f16x16(mh);
}

/* Q4_K, Q5_K: block b is sub-block (sb + b) % 8 of superblock (sb + b) / 8. */
QM_INLINE void unpack_k45(qm_dtype dt, const uint8_t *row, int sb, int nb, wgroup *g) {
    const size_t bb = qm_dtype_block_bytes(dt);
    uint16_t dh[16] = {0}, mh[16] = {0};
    float scf[16] = {0}, mnf[16] = {0};
    uint8_t sc[8], mn[8];
    __m256i c[16];
    int cur = -1;
    for (int b = 0; b < 16; b++) {
        c[b] = _mm256_setzero_si256();
        if (b >= nb) continue;
        const int s = sb + b, j = s & 7;
        const uint8_t *blk = row + (size_t)(s >> 3) * bb;
        if (s >> 3 != cur) {
            cur = s >> 3;
            qm_quant_k_scales(blk + 4, sc, mn);
        }
        dh[b] = qm_quant_rd16(blk);
        mh[b] = qm_quant_rd16(blk + 2);
        scf[b] = (float)sc[j];
        mnf[b] = (float)mn[j];
        const uint8_t *qs = blk + (dt == QM_DT_Q5_K ? 48 : 16) + 32 * (j >> 1);
        __m256i v = _mm256_loadu_si256((const __m256i *)qs);
        if (j & 1) v = _mm256_srli_epi16(v, 4);
        v = _mm256_and_si256(v, _mm256_set1_epi8(15));
        if (dt == QM_DT_Q5_K) {
            const __mmask32 h = _mm256_test_epi8_mask(_mm256_loadu_si256((const __m256i *)(blk + 16)),
                                                      _mm256_set1_epi8((char)(1 << j)));
            v = _mm256_mask_add_epi8(v, h, v, _mm256_set1_epi8(16));
        }
        c[b] = v;
    }
    for (int k = 0; k < 8; k++) g->q[k] = pair(c[2 * k], c[2 * k + 1]);
    g->d = f16x16(dh);
    g->m = f16x16(mh);
    g->sc_f = _mm512_loadu_ps(scf);
    g->mn_f = _mm512_loadu_ps(mnf);
}

/* Q6_K: codes 0..63 (q + 32) and the int16 scale of each 16-element group, per element pair. */
QM_INLINE void unpack_q6k(const uint8_t *row, int sb, int nb, wgroup *g) {
    uint16_t dh[16] = {0};
    int16_t sc2[32] = {0};
    __m256i c[16];
    for (int b = 0; b < 16; b++) {
        c[b] = _mm256_setzero_si256();
        if (b >= nb) continue;
        const int s = sb + b, j = s & 7, h = j >> 2, k = j & 3;
        const qm_block_q6_k *blk = (const qm_block_q6_k *)(row + (size_t)(s >> 3) * 210);
        dh[b] = qm_quant_rd16(blk->d);
        sc2[2 * b] = blk->scales[2 * j];
        sc2[2 * b + 1] = blk->scales[2 * j + 1];
        __m256i lo = _mm256_loadu_si256((const __m256i *)(blk->ql + 64 * h + 32 * (k & 1)));
        if (k >> 1) lo = _mm256_srli_epi16(lo, 4);
        __m256i hi = _mm256_loadu_si256((const __m256i *)(blk->qh + 32 * h));
        hi = _mm256_and_si256(_mm256_srl_epi16(hi, _mm_cvtsi32_si128(2 * k)), _mm256_set1_epi8(3));
        c[b] = _mm256_or_si256(_mm256_and_si256(lo, _mm256_set1_epi8(15)), _mm256_slli_epi16(hi, 4));
    }
    /* int16 lane i of pair k covers elements 2i, 2i + 1: group 4k + i / 8 */
    static const int16_t grp[32] = {0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1,
                                    2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3};
    const __m512i scv = _mm512_loadu_si512(sc2), g0 = _mm512_loadu_si512(grp);
    for (int k = 0; k < 8; k++) {
        g->q[k] = pair(c[2 * k], c[2 * k + 1]);
        g->sc[k] = _mm512_permutexvar_epi16(_mm512_add_epi16(g0, _mm512_set1_epi16((short)(4 * k))), scv);
    }
    g->d = f16x16(dh);
}

QM_INLINE void unpack(qm_dtype dt, const uint8_t *row, int sb, int nb, wgroup *g) {
    if (dt == QM_DT_Q6_K) unpack_q6k(row, sb, nb, g);
    else if (dt == QM_DT_Q4_K || dt == QM_DT_Q5_K) unpack_k45(dt, row, sb, nb, g);
    else unpack_32(dt, row, sb, nb, g);
}

/* One token's 16 blocks. */
typedef struct {
    __m512i q[8];   /* blocks 2k, 2k + 1 (absent blocks: 0) */
    __m512i q32[8]; /* Q6_K: 32 (q_2i + q_2i+1) per int16 lane */
    __m512 dx, sf;  /* d and (float)s per block */
    __m512i s;      /* s per block */
} xgroup;

QM_INLINE void load_x(qm_dtype dt, const qm_q8act *x, int t, int b0, int nb, xgroup *xg) {
    const size_t xb = (size_t)t * x->ld_blocks + (size_t)b0;
    const int8_t *q = x->q + xb * QM_Q8_BLOCK;
    const __mmask16 lanes = (__mmask16)((1u << nb) - 1u);
    for (int k = 0; k < 8; k++) {
        const int n = nb - 2 * k;
        const __mmask64 m = n >= 2 ? ~(__mmask64)0 : n == 1 ? (__mmask64)0xffffffffu : 0;
        xg->q[k] = _mm512_maskz_loadu_epi8(m, q + 64 * k);
        if (dt == QM_DT_Q6_K) xg->q32[k] = _mm512_maddubs_epi16(_mm512_set1_epi8(32), xg->q[k]);
    }
    xg->dx = _mm512_maskz_loadu_ps(lanes, x->d + xb);
    xg->s = _mm512_maskz_loadu_epi32(lanes, x->s + xb);
    xg->sf = _mm512_cvtepi32_ps(xg->s);
}

/* Dword l = Σ of block l's 8 dwords, for 8 vectors v[k] holding blocks 2k (dwords 0..7) and
 * 2k + 1 (8..15). Integer adds: exact in any order. */
QM_INLINE __m512i reduce_blocks(const __m512i v[8]) {
    __m512i t[4];
    for (int i = 0; i < 4; i++)
        t[i] = _mm512_add_epi32(_mm512_unpacklo_epi32(v[2 * i], v[2 * i + 1]),
                                _mm512_unpackhi_epi32(v[2 * i], v[2 * i + 1]));
    const __m512i u0 = _mm512_add_epi32(_mm512_unpacklo_epi64(t[0], t[1]), _mm512_unpackhi_epi64(t[0], t[1]));
    const __m512i u1 = _mm512_add_epi32(_mm512_unpacklo_epi64(t[2], t[3]), _mm512_unpackhi_epi64(t[2], t[3]));
    /* lanes now hold blocks 0 2 4 6 1 3 5 7 8 10 12 14 9 11 13 15 */
    const __m512i r = _mm512_add_epi32(_mm512_shuffle_i32x4(u0, u1, _MM_SHUFFLE(2, 0, 2, 0)),
                                       _mm512_shuffle_i32x4(u0, u1, _MM_SHUFFLE(3, 1, 3, 1)));
    return _mm512_permutexvar_epi32(_mm512_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7, 8, 12, 9, 13, 10, 14, 11, 15), r);
}

/* The 16 contributions c_b of one row and one token. */
QM_INLINE __m512 group_c(qm_dtype dt, const wgroup *g, const xgroup *xg) {
    __m512i v[8];
    for (int k = 0; k < 8; k++) {
        __m512i xs = xg->q[k];
        if (dt == QM_DT_Q8_0) xs = _mm512_mask_sub_epi8(xs, g->neg[k], _mm512_setzero_si512(), xs);
        const __m512i p = _mm512_maddubs_epi16(g->q[k], xs);
        if (dt == QM_DT_Q6_K) v[k] = _mm512_madd_epi16(_mm512_sub_epi16(p, xg->q32[k]), g->sc[k]);
        else v[k] = _mm512_madd_epi16(p, _mm512_set1_epi16(1));
    }
    __m512i is = reduce_blocks(v);
    if (dt == QM_DT_Q4_0) is = _mm512_sub_epi32(is, _mm512_slli_epi32(xg->s, 3));
    if (dt == QM_DT_Q5_0) is = _mm512_sub_epi32(is, _mm512_slli_epi32(xg->s, 4));
    __m512 f = _mm512_cvtepi32_ps(is);
    if (dt == QM_DT_Q4_K || dt == QM_DT_Q5_K) f = _mm512_mul_ps(g->sc_f, f);
    const __m512 c = _mm512_mul_ps(_mm512_mul_ps(g->d, xg->dx), f);
    if (dt == QM_DT_Q4_1 || dt == QM_DT_Q5_1)
        return _mm512_add_ps(c, _mm512_mul_ps(_mm512_mul_ps(g->m, xg->dx), xg->sf));
    if (dt == QM_DT_Q4_K || dt == QM_DT_Q5_K)
        return _mm512_sub_ps(c, _mm512_mul_ps(_mm512_mul_ps(g->m, xg->dx), _mm512_mul_ps(g->mn_f, xg->sf)));
    return c;
}

/* The halving tree 8, 4, 2, 1. */
QM_INLINE float tree16(__m512 a) {
    const __m256 s8 = _mm256_add_ps(_mm512_castps512_ps256(a), _mm512_extractf32x8_ps(a, 1));
    const __m128 s4 = _mm_add_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps(s8, 1));
    const __m128 s2 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
    return _mm_cvtss_f32(_mm_add_ss(s2, _mm_shuffle_ps(s2, s2, _MM_SHUFFLE(1, 1, 1, 1))));
}

typedef struct {
    const uint8_t *row0; /* row o's first block */
    size_t stride;
    int sb0, nblk;       /* view block 0 = 32-block sb0 of the row; nblk blocks */
} wrows;

/* Rows [0, nr) x tokens [t0, t0 + nt) of the tile; y points at output (t0, o). */
QM_INLINE void tile(qm_dtype dt, const wrows *w, int nr, const qm_q8act *x, int t0, int nt, const float *bias,
                    float *y, size_t ldy) {
    __m512 acc[TR][TT];
    wgroup wg[TR];
    for (int r = 0; r < nr; r++)
        for (int t = 0; t < nt; t++) acc[r][t] = _mm512_setzero_ps();
    for (int b0 = 0; b0 < w->nblk; b0 += 16) {
        const int nb = w->nblk - b0 < 16 ? w->nblk - b0 : 16;
        const __mmask16 lanes = (__mmask16)((1u << nb) - 1u);
        for (int r = 0; r < nr; r++) unpack(dt, w->row0 + (size_t)r * w->stride, w->sb0 + b0, nb, &wg[r]);
        for (int t = 0; t < nt; t++) {
            xgroup xg;
            load_x(dt, x, t0 + t, b0, nb, &xg);
            for (int r = 0; r < nr; r++)
                acc[r][t] = _mm512_mask_add_ps(acc[r][t], lanes, acc[r][t], group_c(dt, &wg[r], &xg));
        }
    }
    for (int r = 0; r < nr; r++)
        for (int t = 0; t < nt; t++) {
            const float d = tree16(acc[r][t]);
            y[(size_t)t * ldy + (size_t)r] = bias ? d + bias[r] : d;
        }
}

QM_INLINE void matmul_dt(qm_dtype dt, const qm_wview *w, const float *bias, const qm_q8act *x, int n_tok, float *y,
                         size_t ldy, int o_begin, int o_end) {
    const size_t stride = qm_wview_stride(w);
    for (int t0 = 0; t0 < n_tok; t0 += TT) {
        const int nt = n_tok - t0 < TT ? n_tok - t0 : TT;
        for (int o = o_begin; o < o_end; o += TR) {
            const int nr = o_end - o < TR ? o_end - o : TR;
            const wrows wr = {(const uint8_t *)w->data + (size_t)o * stride, stride, w->col0 / 32, w->cols / 32};
            tile(dt, &wr, nr, x, t0, nt, bias ? bias + o : NULL, y + (size_t)t0 * ldy + (size_t)o, ldy);
        }
    }
}

void qm_matmul_q8_avx512(const qm_wview *w, const float *bias, const qm_q8act *x, int n_tok, float *y, size_t ldy,
                         int o_begin, int o_end) {
    if (n_tok <= 0 || o_begin >= o_end) return;
    switch (w->dtype) {
    case QM_DT_Q8_0: matmul_dt(QM_DT_Q8_0, w, bias, x, n_tok, y, ldy, o_begin, o_end); break;
    case QM_DT_Q4_0: matmul_dt(QM_DT_Q4_0, w, bias, x, n_tok, y, ldy, o_begin, o_end); break;
    case QM_DT_Q4_1: matmul_dt(QM_DT_Q4_1, w, bias, x, n_tok, y, ldy, o_begin, o_end); break;
    case QM_DT_Q5_0: matmul_dt(QM_DT_Q5_0, w, bias, x, n_tok, y, ldy, o_begin, o_end); break;
    case QM_DT_Q5_1: matmul_dt(QM_DT_Q5_1, w, bias, x, n_tok, y, ldy, o_begin, o_end); break;
    case QM_DT_Q4_K: matmul_dt(QM_DT_Q4_K, w, bias, x, n_tok, y, ldy, o_begin, o_end); break;
    case QM_DT_Q5_K: matmul_dt(QM_DT_Q5_K, w, bias, x, n_tok, y, ldy, o_begin, o_end); break;
    case QM_DT_Q6_K: matmul_dt(QM_DT_Q6_K, w, bias, x, n_tok, y, ldy, o_begin, o_end); break;
    default: break;
    }
}

/* ---- activations: 32 elements = two zmm ---- */

void qm_quantize_act_avx512(const float *x, int n, int8_t *q, float *d, int32_t *s) {
    for (int b = 0; b < n / QM_Q8_BLOCK; b++) {
        const float *xb = x + (size_t)b * QM_Q8_BLOCK;
        const __m512 x0 = _mm512_loadu_ps(xb), x1 = _mm512_loadu_ps(xb + 16);
        /* vmaxps returns its second operand when either is NaN: NaN inputs are skipped */
        __m512 m = _mm512_max_ps(_mm512_abs_ps(x0), _mm512_setzero_ps());
        m = _mm512_max_ps(_mm512_abs_ps(x1), m);
        const float amax = _mm512_reduce_max_ps(m);
        const float id = amax > 0.0f ? 127.0f / amax : 0.0f;
        d[b] = amax / 127.0f;
        const __m512 idv = _mm512_set1_ps(id), lim = _mm512_set1_ps(127.0f), nlim = _mm512_set1_ps(-127.0f);
        __m512i qi[2];
        for (int h = 0; h < 2; h++) {
            __m512 v = _mm512_mul_ps(h ? x1 : x0, idv);
            v = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(v, v, _CMP_ORD_Q), v); /* NaN -> 0 */
            v = _mm512_min_ps(_mm512_max_ps(v, nlim), lim);
            qi[h] = _mm512_cvtps_epi32(v); /* round half to even (MXCSR default) */
            _mm_storeu_si128((__m128i *)(q + (size_t)b * QM_Q8_BLOCK + 16 * h), _mm512_cvtepi32_epi8(qi[h]));
        }
        s[b] = _mm512_reduce_add_epi32(_mm512_add_epi32(qi[0], qi[1]));
    }
}
