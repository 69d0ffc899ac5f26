/* The head filter's first pass over several outputs with AVX512-VNNI (kernels.h, head_pass; the
 * definition: head_pass.c, the same f32 operations in the same order).
 *
 * Outputs side by side, one a lane, 16 a pass. Q8_0: a row's block is 8 dwords of codes; dword
 * k, broadcast with its bytes plus 128 (an xor: unsigned), meets the 16 outputs' dword k of that
 * block (signed) in one vpdpbusd, whose 16 lanes each add 4 products. The sums start at -128 Σq,
 * so each lane ends with Σ w q exactly (at most 32 x 128 x 127). A block of a row is 8 vpdpbusd
 * and one fmaf a lane for 16 outputs, where the fast mode's kernel (canonical: the block sums of
 * one output in 16 lanes) adds every block's products across lanes, for each output. Q6_K: the
 * tile's rows unpacked to a code (0..63) a byte (q6k_avx2.h); a block's two groups of 16
 * are 4 vpdpbusd each, the sums started at -32 Σq of the group (so Σ (c - 32) q), then times
 * their scales (vpmulld) and added: the definition's S_b, exactly. PR rows a tile share each
 * activation vector. */
#include <immintrin.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"
#include "kernels/qdot.h"
#include "kernels/q6k_avx2.h"
#include "kernels/quant.h"

#define LANES 16
#define PR 4            /* rows a tile */
#define Q8_BYTES sizeof(qm_block_q8_0) /* quant.h: f16 d, then 32 codes */
#define Q8_CODES offsetof(qm_block_q8_0, qs)
#define MAX_BLOCKS (QM_HEAD_PASS_MAX_COLS / QM_Q8_BLOCK)

/* The pass's outputs [t0, t0 + nt) in lanes (lanes past nt zero: computed, never stored). */
typedef struct {
    __m512i *xs;     /* [nb][8]: lane t = dword k of block b of output t0 + t */
    __m512 *dx;      /* [nb]: lane t = its d */
    __m512i *s0;     /* Q8_0 [nb]: lane t = -128 x its Σq; Q6_K [nb][2]: -32 x Σq of each group of 16 */
    __m512 *coef;    /* [groups][2]: lane t = e_g, h_g */
    uint8_t *codes8; /* Q6_K [PR][nb * 32]: the tile's rows' codes, a byte each */
    int nb, groups;
} lanes_x;

static int lanes_make(qm_dtype dt, const qm_q8act *x, const qm_head_bounds *hb, int nb, int t0, int nt, lanes_x *L) {
    const int k6 = dt == QM_DT_Q6_K, ns = k6 ? 2 : 1; /* start vectors a block */
    const size_t n = (size_t)nb * (size_t)(9 + ns) + (size_t)hb->groups * 2;
    const size_t code_bytes = k6 ? (size_t)PR * (size_t)nb * QM_Q8_BLOCK : 0;
    __m512i *mem = aligned_alloc(64, n * sizeof(__m512i) + code_bytes);
    if (!mem) return 0;
    memset(mem, 0, n * sizeof(__m512i));
    L->xs = mem;
    L->dx = (__m512 *)(mem + (size_t)nb * 8);
    L->s0 = mem + (size_t)nb * 9;
    L->coef = (__m512 *)(mem + (size_t)nb * (size_t)(9 + ns));
    L->codes8 = k6 ? (uint8_t *)(mem + n) : NULL;
    L->nb = nb;
    L->groups = hb->groups;
    for (int t = 0; t < nt; t++) {
        const qm_q8act xt = qm_q8act_vector(x, t0 + t);
        for (int b = 0; b < nb; b++) {
            const int8_t *q = xt.q + (size_t)b * QM_Q8_BLOCK;
            int32_t *dw = (int32_t *)&L->xs[(size_t)b * 8];
            for (int k = 0; k < 8; k++) memcpy(&dw[16 * k + t], q + 4 * k, 4);
            ((float *)&L->dx[b])[t] = xt.d[b];
            if (!k6) {
                ((int32_t *)&L->s0[b])[t] = -128 * xt.s[b];
                continue;
            }
            int32_t g0 = 0, g1 = 0;
            for (int i = 0; i < 16; i++) {
                g0 += q[i];
                g1 += q[i + 16];
            }
            ((int32_t *)&L->s0[2 * (size_t)b])[t] = -32 * g0;
            ((int32_t *)&L->s0[2 * (size_t)b + 1])[t] = -32 * g1;
        }
        const float *e = hb->coef + (size_t)(2 * (t0 + t)) * (size_t)hb->groups, *h = e + hb->groups;
        for (int g = 0; g < hb->groups; g++) {
            ((float *)&L->coef[2 * g])[t] = e[g];
            ((float *)&L->coef[2 * g + 1])[t] = h[g];
        }
    }
    return 1;
}

/* The f16 scales of R rows' nb blocks as f32: d[r][b]. */
static void row_scales(const uint8_t *row0, size_t stride, int R, int nb, float d[PR][MAX_BLOCKS]) {
    uint16_t h[MAX_BLOCKS] __attribute__((aligned(64)));
    for (int r = 0; r < R; r++) {
        const uint8_t *row = row0 + (size_t)r * stride;
        for (int b = 0; b < nb; b++) h[b] = qm_quant_rd16(row + (size_t)b * Q8_BYTES);
        for (int b = nb; b % 16; b++) h[b] = 0; /* the last vector's lanes past nb: converted, never read */
        for (int b = 0; b < nb; b += 16)
            _mm512_storeu_ps(&d[r][b], _mm512_cvtph_ps(_mm256_load_si256((const __m256i *)&h[b])));
    }
}

/* a of R rows (lane t: output t0 + t), the definition's fmaf per block in block order. */
static inline __attribute__((always_inline)) void tile_dots(const uint8_t *row0, size_t stride, int R,
                                                            const lanes_x *L, const float d[PR][MAX_BLOCKS],
                                                            __m512 a[PR]) {
    const __m512i k80 = _mm512_set1_epi32((int)0x80808080u);
    for (int r = 0; r < R; r++) a[r] = _mm512_setzero_ps();
    for (int b = 0; b < L->nb; b++) {
        __m512i s[PR];
        for (int r = 0; r < R; r++) s[r] = L->s0[b];
        const uint8_t *codes = row0 + (size_t)b * Q8_BYTES + Q8_CODES;
        /* the tile after next's rows (PR contiguous rows of nb blocks), two lines a block */
        _mm_prefetch((const char *)row0 + 2 * PR * stride + 128 * (size_t)b, _MM_HINT_T0);
        _mm_prefetch((const char *)row0 + 2 * PR * stride + 128 * (size_t)b + 64, _MM_HINT_T0);
#pragma GCC unroll 8
        for (int k = 0; k < 8; k++) {
            const __m512i xk = L->xs[(size_t)b * 8 + (size_t)k];
            for (int r = 0; r < R; r++) {
                int32_t c;
                memcpy(&c, codes + (size_t)r * stride + 4 * k, 4);
                s[r] = _mm512_dpbusd_epi32(s[r], _mm512_xor_si512(_mm512_set1_epi32(c), k80), xk);
            }
        }
        for (int r = 0; r < R; r++)
            a[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s[r]), _mm512_mul_ps(_mm512_set1_ps(d[r][b]), L->dx[b]), a[r]);
    }
}

/* Q6_K: a of R rows from their codes as bytes (L->codes) and group scales sc[r][2b], [2b + 1]: a
 * group's 4 code dwords meet the outputs' in vpdpbusd (codes 0..63 unsigned, the sums started at
 * -32 Σq of the group: Σ (c - 32) q), the two groups' sums times their scales (vpmulld) added:
 * the definition's S_b; then its fmaf. */
static inline __attribute__((always_inline)) void tile_dots_q6k(const uint8_t *row0, size_t stride, int R,
                                                                const lanes_x *L, const float d[PR][MAX_BLOCKS],
                                                                const int32_t sc[PR][2 * MAX_BLOCKS], __m512 a[PR]) {
    for (int r = 0; r < R; r++) a[r] = _mm512_setzero_ps();
    for (int b = 0; b < L->nb; b++) {
        __m512i s0[PR], s1[PR];
        for (int r = 0; r < R; r++) {
            s0[r] = L->s0[2 * (size_t)b];
            s1[r] = L->s0[2 * (size_t)b + 1];
        }
        /* the tile after next's rows (PR contiguous rows of nb 32-blocks of 26.25 bytes), a line a block */
        _mm_prefetch((const char *)row0 + 2 * PR * stride + 64 * (size_t)b, _MM_HINT_T0);
        for (int k = 0; k < 4; k++) {
            const __m512i x0 = L->xs[(size_t)b * 8 + (size_t)k], x1 = L->xs[(size_t)b * 8 + 4 + (size_t)k];
            for (int r = 0; r < R; r++) {
                int32_t c0, c1;
                const uint8_t *cr = L->codes8 + ((size_t)r * (size_t)L->nb + (size_t)b) * QM_Q8_BLOCK;
                memcpy(&c0, cr + 4 * k, 4);
                memcpy(&c1, cr + 16 + 4 * k, 4);
                s0[r] = _mm512_dpbusd_epi32(s0[r], _mm512_set1_epi32(c0), x0);
                s1[r] = _mm512_dpbusd_epi32(s1[r], _mm512_set1_epi32(c1), x1);
            }
        }
        for (int r = 0; r < R; r++) {
            const __m512i S = _mm512_add_epi32(_mm512_mullo_epi32(s0[r], _mm512_set1_epi32(sc[r][2 * b])),
                                               _mm512_mullo_epi32(s1[r], _mm512_set1_epi32(sc[r][2 * b + 1])));
            a[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(S), _mm512_mul_ps(_mm512_set1_ps(d[r][b]), L->dx[b]), a[r]);
        }
    }
}

/* Q6_K: R rows' codes as bytes into L->codes8, their group scales into sc (sc[r][2b + g]: group
 * g of block b), their d into d. */
static void rows_q6k(const uint8_t *row0, size_t stride, int R, const lanes_x *L, float d[PR][MAX_BLOCKS],
                     int32_t sc[PR][2 * MAX_BLOCKS]) {
    for (int r = 0; r < R; r++) {
        const qm_block_q6_k *row = (const qm_block_q6_k *)(row0 + (size_t)r * stride);
        uint8_t *c = L->codes8 + (size_t)r * (size_t)L->nb * QM_Q8_BLOCK;
        for (int sb = 0; sb < L->nb / 8; sb++) {
            qm_q6k_unpack_avx2(row + sb, c + 256 * (size_t)sb, &d[r][8 * sb]);
            _mm512_storeu_si512(&sc[r][16 * sb], _mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)row[sb].scales)));
        }
    }
}

/* Row o's E (lane t), margin included. */
static inline __m512 row_bound(const qm_head_bounds *hb, const lanes_x *L, int o) {
    __m512 E = _mm512_setzero_ps();
    for (int g = 0; g < L->groups; g++) {
        const size_t at = qm_head_bound_at(hb, g, o);
        E = _mm512_fmadd_ps(_mm512_set1_ps(hb->bound[at]), L->coef[2 * g], E);
        if (hb->dev) E = _mm512_fmadd_ps(_mm512_set1_ps(hb->dev[at]), L->coef[2 * g + 1], E);
    }
    return _mm512_add_ps(_mm512_mul_ps(E, _mm512_set1_ps(QM_HEAD_PASS_MARGIN)), _mm512_set1_ps(1e-35f));
}

/* R rows from o: y = a + E for the nt outputs, low = the lanes' largest a - E (NaN never taken). */
static void tile(const qm_wview *w, const lanes_x *L, const qm_head_bounds *hb, int R, int o, int nt, float *y,
                 size_t ldy, __m512 *low) {
    const size_t stride = qm_wview_stride(w);
    const uint8_t *row0 = (const uint8_t *)w->data + (size_t)o * stride;
    float d[PR][MAX_BLOCKS] __attribute__((aligned(64)));
    float out[PR][LANES] __attribute__((aligned(64)));
    __m512 a[PR];
    if (w->dtype == QM_DT_Q6_K) {
        int32_t sc[PR][2 * MAX_BLOCKS];
        rows_q6k(row0, stride, R, L, d, sc);
        if (R == PR) tile_dots_q6k(row0, stride, PR, L, d, sc, a);
        else tile_dots_q6k(row0, stride, R, L, d, sc, a);
    } else {
        row_scales(row0, stride, R, L->nb, d);
        if (R == PR) tile_dots(row0, stride, PR, L, d, a);
        else tile_dots(row0, stride, R, L, d, a);
    }
    for (int r = 0; r < R; r++) {
        const __m512 E = row_bound(hb, L, o + r), lo = _mm512_sub_ps(a[r], E);
        *low = _mm512_mask_mov_ps(*low, _mm512_cmp_ps_mask(lo, *low, _CMP_GT_OQ), lo);
        _mm512_store_ps(out[r], _mm512_add_ps(a[r], E));
    }
    for (int t = 0; t < nt; t++)
        for (int r = 0; r < R; r++) y[(size_t)t * ldy + (size_t)(o + r)] = out[r][t];
}

void qm_head_pass_avx512vnni(const qm_wview *w, const qm_q8act *x, int n_tok, const qm_head_bounds *hb, float *y,
                             size_t ldy, float *low, int o_begin, int o_end) {
    const int nb = w->cols / QM_Q8_BLOCK;
    for (int t0 = 0; t0 < n_tok; t0 += LANES) {
        const int nt = n_tok - t0 < LANES ? n_tok - t0 : LANES;
        lanes_x L;
        if (!lanes_make(w->dtype, x, hb, nb, t0, nt, &L)) { /* out of memory: the definition, same bits */
            qm_head_pass_scalar_outputs(w, x, t0, nt, hb, y, ldy, low, o_begin, o_end);
            continue;
        }
        __m512 lw = _mm512_set1_ps(-__builtin_inff());
        int o = o_begin;
        for (; o + PR <= o_end; o += PR) tile(w, &L, hb, PR, o, nt, y + (size_t)t0 * ldy, ldy, &lw);
        for (; o < o_end; o++) tile(w, &L, hb, 1, o, nt, y + (size_t)t0 * ldy, ldy, &lw);
        float lows[LANES] __attribute__((aligned(64)));
        _mm512_store_ps(lows, lw);
        for (int t = 0; t < nt; t++)
            if (lows[t] > low[t0 + t]) low[t0 + t] = lows[t];
        free(L.xs);
    }
}
