/* AVX2 kernels. The 16 lanes of the canonical order (kernels.h) are two ymm registers:
 * lo holds lanes 0-7, hi lanes 8-15. A tail of r < 16 elements is copied into zero-padded
 * buffers, FMA'd, and blended back so that only lanes 0..r-1 change; the halving tree starts
 * with lo + hi (w = 8) and goes on with shuffles, always as acc[l] + acc[l + w].
 *
 * matmul tiles R output rows x T tokens of accumulator pairs, as the AVX-512 file does; every
 * accumulator sees exactly the canonical sequence of FMAs. */
#include <immintrin.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "kernels/kernels.h"
#include "kernels/qdot.h"
#include "kernels/quant.h"

#define QM_INLINE static inline __attribute__((always_inline))

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

/* w = 8 per accumulator (lo + hi), then the rest of the tree in groups of four (flat index
 * k = t*R + r); y[t][r] = sum (+ bias[r], one rounding). */
QM_INLINE void store_tile(__m256 lo[RMAX][TMAX], __m256 hi[RMAX][TMAX], int R, int T, const float *bias, float *y,
                          size_t ldy) {
    float out[RMAX * TMAX + 4];
    const int nacc = R * T;
    for (int k = 0; k < nacc; k += 4) {
        __m256 v[4];
        for (int j = 0; j < 4; j++) {
            int kk = k + j;
            v[j] = kk < nacc ? _mm256_add_ps(lo[kk % R][kk / R], hi[kk % R][kk / R]) : _mm256_setzero_ps();
        }
        reduce4(v[0], v[1], v[2], v[3], out + k);
    }
    for (int t = 0; t < T; t++)
        for (int r = 0; r < R; r++) {
            float d = out[t * R + r];
            y[(size_t)t * ldy + (size_t)r] = bias ? d + bias[r] : d;
        }
}

QM_INLINE void tile(const char *w0, size_t wstride, qm_dtype dt, int R, int T, int cols,
                    const float *x, size_t ldx, const float *bias, float *y, size_t ldy) {
    const size_t esz = dt == QM_DT_F32 ? 4 : 2;
    __m256 lo[RMAX][TMAX], hi[RMAX][TMAX];
    for (int r = 0; r < R; r++)
        for (int t = 0; t < T; t++) lo[r][t] = hi[r][t] = _mm256_setzero_ps();
    const int nfull = cols & ~15;
    /* Decode of contiguous rows: prefetch the next tile's rows as one sequential stream (see
     * matmul_avx512.c); no change to the arithmetic. */
    const char *pf = w0 + (size_t)R * wstride;
    size_t pf_step = 0;
    if (T == 1 && nfull > 0 && wstride == (size_t)cols * esz)
        pf_step = ((size_t)R * wstride + (size_t)(nfull / 16) - 1) / (size_t)(nfull / 16);
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
    store_tile(lo, hi, R, T, bias, y, ldy);
}

/* Block-quantized rows, as in matmul_avx512.c: chunks of QCHUNK row elements dequantized
 * exactly into buf, view column i into lane i % 16 (col0 % 16 == 0). A chunk ends on a multiple
 * of 16 view columns except at the end of the view, whose tail is zero-padded and blended. */
#define QCHUNK 256
QM_INLINE void tile_q(const char *w0, size_t wstride, qm_dtype dt, int col0, int R, int T, int cols,
                      const float *x, size_t ldx, const float *bias, float *y, size_t ldy) {
    const int qk = qm_dtype_block(dt);
    const size_t bb = qm_dtype_block_bytes(dt);
    __m256 lo[RMAX][TMAX], hi[RMAX][TMAX];
    float buf[RMAX][QCHUNK + 16] __attribute__((aligned(32)));
    for (int r = 0; r < R; r++)
        for (int t = 0; t < T; t++) lo[r][t] = hi[r][t] = _mm256_setzero_ps();
    const int end = col0 + cols;
    for (int c = 0; c < end; c += QCHUNK) { /* c: row element of buf[r][0], a block start */
        int hiw = end - c < QCHUNK ? end - c : QCHUNK, low = c < col0 ? col0 - c : 0;
        if (low >= hiw) continue;
        for (int r = 0; r < R; r++)
            qm_dequant_avx2(dt, w0 + (size_t)r * wstride + (size_t)(c / qk) * bb, (hiw + qk - 1) / qk, buf[r]);
        int j = low;
        for (; j + 16 <= hiw; j += 16) {
            const float *xi = x + (c + j - col0);
            for (int r = 0; r < R; r++) {
                __m256 wl = _mm256_load_ps(buf[r] + j), wh = _mm256_load_ps(buf[r] + j + 8);
                for (int t = 0; t < T; t++) {
                    const float *xp = xi + (size_t)t * ldx;
                    lo[r][t] = _mm256_fmadd_ps(wl, _mm256_loadu_ps(xp), lo[r][t]);
                    hi[r][t] = _mm256_fmadd_ps(wh, _mm256_loadu_ps(xp + 8), hi[r][t]);
                }
            }
        }
        const int rem = hiw - j;
        if (rem > 0) { /* only at the end of the view */
            const __m256 ml = lane_mask(rem, 0), mh = lane_mask(rem, 8);
            for (int t = 0; t < T; t++) {
                float xb[16] = {0};
                memcpy(xb, x + (size_t)t * ldx + (c + j - col0), (size_t)rem * sizeof(float));
                for (int r = 0; r < R; r++) {
                    __m256 wl = _mm256_and_ps(_mm256_loadu_ps(buf[r] + j), ml);
                    __m256 wh = _mm256_and_ps(_mm256_loadu_ps(buf[r] + j + 8), mh);
                    lo[r][t] = _mm256_blendv_ps(lo[r][t], _mm256_fmadd_ps(wl, _mm256_loadu_ps(xb), lo[r][t]), ml);
                    hi[r][t] = _mm256_blendv_ps(hi[r][t], _mm256_fmadd_ps(wh, _mm256_loadu_ps(xb + 8), hi[r][t]), mh);
                }
            }
        }
    }
    store_tile(lo, hi, R, T, bias, y, ldy);
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
        int t = 0;                                                                                 \
        for (; t + QM_AVX2_PT <= n_tok; t += QM_AVX2_PT)                                           \
            tile(w0, wstride, dt, R_, QM_AVX2_PT, cols, x + (size_t)t * ldx, ldx, b0,              \
                 y + (size_t)t * ldy + o, ldy);                                                    \
        const float *xt = x + (size_t)t * ldx;                                                     \
        float *yt = y + (size_t)t * ldy + o;                                                       \
        switch (n_tok - t) {                                                                       \
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
        for (; o + 4 <= o_end; o += 4)
            tile(base + (size_t)o * wstride, wstride, dt, 4, 1, cols, x, ldx, bias ? bias + o : NULL, y + o, ldy);
    for (; o + QM_AVX2_PR <= o_end; o += QM_AVX2_PR) ROWS_TILE(QM_AVX2_PR);
    for (; o < o_end; o++) ROWS_TILE(1);
}

/* Quantized views: tiles of QR rows x up to QT tokens, the rows left one at a time. */
#define QR 2
#define QT 2
#define Q_TOKENS(R_, o_)                                                                           \
    for (int t = 0; t < n_tok; t += QT) {                                                          \
        const char *w0 = base + (size_t)(o_) * wstride;                                            \
        const float *b0 = bias ? bias + (o_) : NULL;                                               \
        const float *xt = x + (size_t)t * ldx;                                                     \
        float *yt = y + (size_t)t * ldy + (o_);                                                    \
        if (n_tok - t >= 2) tile_q(w0, wstride, dt, w->col0, R_, 2, w->cols, xt, ldx, b0, yt, ldy); \
        else tile_q(w0, wstride, dt, w->col0, R_, 1, w->cols, xt, ldx, b0, yt, ldy);              \
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

static void matmul_avx2(const qm_wview *w, const float *bias, const float *x, size_t ldx,
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

const qm_kernels qm_kernels_avx2_table = {
    .isa = "avx2", .matmul = matmul_avx2, .dot = dot_avx2, .axpy = axpy_avx2,
    .quantize_act = qm_quantize_act_avx2, .matmul_q8 = qm_matmul_q8_avx2};
