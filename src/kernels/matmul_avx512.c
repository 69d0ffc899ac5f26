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

#include "kernels/kernels.h"
#include "kernels/qdot.h"
#include "kernels/quant.h"

#define QM_INLINE static inline __attribute__((always_inline))

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

/* The halving tree of every accumulator, in groups of four (flat index k = t*R + r, padded with
 * zeros), then y[t][r] = sum (+ bias[r], one rounding). */
QM_INLINE void store_tile(__m512 acc[RMAX][TMAX], int R, int T, const float *bias, float *y, size_t ldy) {
    float out[RMAX * TMAX + 4];
    const int nacc = R * T;
    for (int k = 0; k < nacc; k += 4) {
        __m512 v[4];
        for (int j = 0; j < 4; j++)
            v[j] = k + j < nacc ? acc[(k + j) % R][(k + j) / R] : _mm512_setzero_ps();
        _mm_storeu_ps(out + k, reduce4(v[0], v[1], v[2], v[3]));
    }
    for (int t = 0; t < T; t++)
        for (int r = 0; r < R; r++) {
            float d = out[t * R + r];
            y[(size_t)t * ldy + (size_t)r] = bias ? d + bias[r] : d;
        }
}

/* One tile: rows w0 + r*wstride (r < R), tokens x + t*ldx (t < T); y + t*ldy + r. R, T and
 * dt are constants at every call site, so the loops unroll and acc lives in registers. */
QM_INLINE void tile(const char *w0, size_t wstride, qm_dtype dt, int R, int T, int cols,
                    const float *x, size_t ldx, const float *bias, float *y, size_t ldy) {
    const size_t esz = dt == QM_DT_F32 ? 4 : 2;
    __m512 acc[RMAX][TMAX];
    for (int r = 0; r < R; r++)
        for (int t = 0; t < T; t++) acc[r][t] = _mm512_setzero_ps();
    const int nfull = cols & ~15;
    /* Decode of a matrix whose rows are contiguous: while this tile is read, prefetch the next
     * tile's rows (the R rows after these) as one sequential stream, a slice per iteration. The
     * hardware prefetcher alone does not keep R strided streams ahead. Prefetches never fault
     * and change no arithmetic. */
    const char *pf = w0 + (size_t)R * wstride;
    size_t pf_step = 0;
    if (T == 1 && nfull > 0 && wstride == (size_t)cols * esz)
        pf_step = ((size_t)R * wstride + (size_t)(nfull / 16) - 1) / (size_t)(nfull / 16);
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
    store_tile(acc, R, T, bias, y, ldy);
}

/* Block-quantized rows (view column 0 = element col0 of the block at w0, col0 % 16 == 0): the
 * row elements in chunks of QCHUNK; each chunk of the R rows is dequantized exactly into buf and
 * FMA'd as f32 weights, the view's column i into lane i % 16, so every accumulator sees the
 * canonical sequence of FMAs. */
#define QCHUNK 256
QM_INLINE void tile_q(const char *w0, size_t wstride, qm_dtype dt, int col0, int R, int T, int cols,
                      const float *x, size_t ldx, const float *bias, float *y, size_t ldy) {
    const int qk = qm_dtype_block(dt);
    const size_t bb = qm_dtype_block_bytes(dt);
    __m512 acc[RMAX][TMAX];
    float buf[RMAX][QCHUNK] __attribute__((aligned(64)));
    for (int r = 0; r < R; r++)
        for (int t = 0; t < T; t++) acc[r][t] = _mm512_setzero_ps();
    const int end = col0 + cols;
    for (int c = 0; c < end; c += QCHUNK) { /* c: row element of buf[r][0], a block start */
        int hi = end - c < QCHUNK ? end - c : QCHUNK, lo = c < col0 ? col0 - c : 0;
        if (lo >= hi) continue;
        for (int r = 0; r < R; r++)
            qm_dequant_avx512(dt, w0 + (size_t)r * wstride + (size_t)(c / qk) * bb, (hi + qk - 1) / qk, buf[r]);
        for (int j = lo; j < hi; j += 16) {
            const float *xi = x + (c + j - col0);
            const __mmask16 m = hi - j >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (hi - j)) - 1u);
            __m512 xv[TMAX];
            for (int t = 0; t < T; t++) xv[t] = _mm512_maskz_loadu_ps(m, xi + (size_t)t * ldx);
            for (int r = 0; r < R; r++) {
                __m512 wv = _mm512_maskz_loadu_ps(m, buf[r] + j);
                for (int t = 0; t < T; t++) acc[r][t] = _mm512_mask3_fmadd_ps(wv, xv[t], acc[r][t], m);
            }
        }
    }
    store_tile(acc, R, T, bias, y, ldy);
}

/* Prefill tiles: PR rows x PT tokens of accumulators (of the 32 zmm registers); decode
 * (n_tok == 1) tiles: DR rows. */
#ifndef QM_AVX512_PR
#define QM_AVX512_PR 6
#endif
#ifndef QM_AVX512_PT
#define QM_AVX512_PT 4
#endif
#ifndef QM_AVX512_DR
#define QM_AVX512_DR 8
#endif
#define CLAMP_T(k) ((k) < TMAX ? (k) : TMAX)

/* Rows [o, o + R_) for every token: tiles of PT tokens, then the 1..PT-1 left. */
#define ROWS_TILE(R_)                                                                              \
    do {                                                                                           \
        const char *w0 = base + (size_t)o * wstride;                                               \
        const float *b0 = bias ? bias + o : NULL;                                                  \
        int t = 0;                                                                                 \
        for (; t + QM_AVX512_PT <= n_tok; t += QM_AVX512_PT)                                       \
            tile(w0, wstride, dt, R_, QM_AVX512_PT, cols, x + (size_t)t * ldx, ldx, b0,            \
                 y + (size_t)t * ldy + o, ldy);                                                    \
        const float *xt = x + (size_t)t * ldx;                                                     \
        float *yt = y + (size_t)t * ldy + o;                                                       \
        switch (n_tok - t) {                                                                       \
        case 5: tile(w0, wstride, dt, R_, CLAMP_T(5), cols, xt, ldx, b0, yt, ldy); break;          \
        case 4: tile(w0, wstride, dt, R_, CLAMP_T(4), cols, xt, ldx, b0, yt, ldy); break;          \
        case 3: tile(w0, wstride, dt, R_, CLAMP_T(3), cols, xt, ldx, b0, yt, ldy); break;          \
        case 2: tile(w0, wstride, dt, R_, CLAMP_T(2), cols, xt, ldx, b0, yt, ldy); break;          \
        case 1: tile(w0, wstride, dt, R_, 1, cols, xt, ldx, b0, yt, ldy); break;                   \
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
                 bias ? bias + o : NULL, y + o, ldy);
    for (; o + QM_AVX512_PR <= o_end; o += QM_AVX512_PR) ROWS_TILE(QM_AVX512_PR);
    for (; o < o_end; o++) ROWS_TILE(1);
}

/* Quantized views: tiles of QR rows x up to TMAX tokens, the rows left one at a time. */
#define QR 4
#define Q_TOKENS(R_, o_)                                                                           \
    for (int t = 0; t < n_tok; t += TMAX) {                                                        \
        int nt = n_tok - t < TMAX ? n_tok - t : TMAX;                                              \
        const char *w0 = base + (size_t)(o_) * wstride;                                            \
        const float *b0 = bias ? bias + (o_) : NULL;                                               \
        const float *xt = x + (size_t)t * ldx;                                                     \
        float *yt = y + (size_t)t * ldy + (o_);                                                    \
        switch (nt) {                                                                              \
        case 4: tile_q(w0, wstride, dt, w->col0, R_, 4, w->cols, xt, ldx, b0, yt, ldy); break;     \
        case 3: tile_q(w0, wstride, dt, w->col0, R_, 3, w->cols, xt, ldx, b0, yt, ldy); break;     \
        case 2: tile_q(w0, wstride, dt, w->col0, R_, 2, w->cols, xt, ldx, b0, yt, ldy); break;     \
        default: tile_q(w0, wstride, dt, w->col0, R_, 1, w->cols, xt, ldx, b0, yt, ldy); break;    \
        }                                                                                          \
    }

static void matmul_q(const qm_wview *w, const float *bias, const float *x, size_t ldx, int n_tok, float *y,
                     size_t ldy, int o_begin, int o_end) {
    const char *base = w->data;
    const size_t wstride = qm_wview_stride(w);
    const qm_dtype dt = w->dtype;
    int o = o_begin;
    for (; o + QR <= o_end; o += QR) Q_TOKENS(QR, o)
    for (; o < o_end; o++) Q_TOKENS(1, o)
}

static void matmul_avx512(const qm_wview *w, const float *bias, const float *x, size_t ldx,
                          int n_tok, float *y, size_t ldy, int o_begin, int o_end) {
    if (n_tok <= 0 || o_begin >= o_end) return;
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

const qm_kernels qm_kernels_avx512_table = {
    .isa = "avx512", .matmul = matmul_avx512, .dot = dot_avx512, .axpy = axpy_avx512,
    .quantize_act = qm_quantize_act_avx512, .matmul_q8 = qm_matmul_q8_avx512};
