/* The head filter's first pass over several outputs with AVX2 (kernels.h, head_pass; the
 * definition: head_pass.c, the same f32 operations in the same order).
 *
 * Outputs side by side, one a lane, 8 a ymm, two ymm (16 outputs) a pass; without VNNI:
 *   Q8_0: a tile's rows are first widened to 16-bit codes; a row's block is then 16 code pairs,
 *     pair k broadcast as a dword against the outputs' pair k of that block (16-bit, side by
 *     side): one vpmaddwd adds two products a lane, exactly (a pair at most 2 x 128 x 127:
 *     nothing saturates), one vpaddd into the block's sum Σ w q.
 *   Q6_K: a tile's rows unpacked to a code a byte (0..63, q6k_avx2.h); a group's code dword,
 *     broadcast, meets the outputs' activation dwords in vpmaddubsw (unsigned codes, so a pair
 *     is at most 2 x 63 x 127: no saturation), then vpmaddwd by the group's scale as a 16-bit
 *     pair, a vpaddd; the sums start at -32 (sc_0 Σq_0 + sc_1 Σq_1), so they end at S_b.
 * Then one fmaf a lane, as the definition. The rows of a tile share each activation vector. */
#include <immintrin.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"
#include "kernels/qdot.h"
#include "kernels/q6k_avx2.h"
#include "kernels/quant.h"

#define LANES 8              /* outputs a ymm */
#define HALVES 2             /* ymm a pass: 16 outputs */
#define PASS (LANES * HALVES)
#define PAIRS (QM_Q8_BLOCK / 2) /* code pairs a block */
#define PR 6                 /* rows a tile of one ymm a row (8 outputs or fewer) */
#define PR2 3                /* rows a tile of two (16 registers: 2 PR2 sums, 2 activations, codes) */
#define MAX_BLOCKS (QM_HEAD_PASS_MAX_COLS / QM_Q8_BLOCK)

/* The pass's outputs [t0, t0 + nt) in lanes (lanes past nt zero: computed, never stored), and a
 * tile's rows unpacked. */
typedef struct {
    __m256i *xs;    /* Q8_0 [nb][PAIRS][HALVES]: lane t of half h = pair k of block b of output
                       t0 + 8h + t (2 x s16); Q6_K [nb][8][HALVES]: its dword k (4 x s8) */
    __m256i *xg;    /* Q6_K [nb][HALVES]: its Σq over the block's two groups of 16 (2 x s16) */
    __m256 *dx;     /* [nb][HALVES]: its d */
    __m256 *coef;   /* [groups][2][HALVES]: e_g, h_g */
    int16_t *codes; /* Q8_0 [PR][nb * 32]: the tile's rows' codes, 16-bit; Q6_K: a byte each */
    int nb, groups;
} lanes_x;

/* Output t's activations of block b into the lanes (lane l of half h). */
static void lanes_block(qm_dtype dt, const int8_t *q, int b, int h, int l, lanes_x *L) {
    if (dt == QM_DT_Q6_K) {
        for (int k = 0; k < 8; k++)
            memcpy((int32_t *)&L->xs[((size_t)b * 8 + (size_t)k) * HALVES + (size_t)h] + l, q + 4 * k, 4);
        int16_t g[2] = {0, 0};
        for (int i = 0; i < 16; i++) {
            g[0] = (int16_t)(g[0] + q[i]);
            g[1] = (int16_t)(g[1] + q[i + 16]);
        }
        memcpy((int32_t *)&L->xg[(size_t)b * HALVES + (size_t)h] + l, g, 4);
        return;
    }
    for (int k = 0; k < PAIRS; k++) {
        int16_t *pair = (int16_t *)&L->xs[((size_t)b * PAIRS + (size_t)k) * HALVES + (size_t)h] + 2 * l;
        pair[0] = q[2 * k];
        pair[1] = q[2 * k + 1];
    }
}

static int lanes_make(qm_dtype dt, const qm_q8act *x, const qm_head_bounds *hb, int nb, int t0, int nt, lanes_x *L) {
    const size_t nv = (size_t)nb * (PAIRS + 2) * HALVES + (size_t)hb->groups * 2 * HALVES;
    const size_t code_bytes = (size_t)PR * (size_t)nb * QM_Q8_BLOCK * sizeof(int16_t);
    __m256i *mem = aligned_alloc(32, nv * sizeof(__m256i) + code_bytes);
    if (!mem) return 0;
    memset(mem, 0, nv * sizeof(__m256i));
    L->xs = mem;
    L->xg = mem + (size_t)nb * PAIRS * HALVES;
    L->dx = (__m256 *)(mem + (size_t)nb * (PAIRS + 1) * HALVES);
    L->coef = (__m256 *)(mem + (size_t)nb * (PAIRS + 2) * HALVES);
    L->codes = (int16_t *)(mem + nv);
    L->nb = nb;
    L->groups = hb->groups;
    for (int t = 0; t < nt; t++) {
        const qm_q8act xt = qm_q8act_vector(x, t0 + t);
        const int h = t / LANES, l = t % LANES;
        for (int b = 0; b < nb; b++) {
            lanes_block(dt, xt.q + (size_t)b * QM_Q8_BLOCK, b, h, l, L);
            ((float *)&L->dx[(size_t)b * HALVES + (size_t)h])[l] = xt.d[b];
        }
        const float *e = hb->coef + (size_t)(2 * (t0 + t)) * (size_t)hb->groups, *hg = e + hb->groups;
        for (int g = 0; g < hb->groups; g++) {
            ((float *)&L->coef[(size_t)(2 * g) * HALVES + (size_t)h])[l] = e[g];
            ((float *)&L->coef[(size_t)(2 * g + 1) * HALVES + (size_t)h])[l] = hg[g];
        }
    }
    return 1;
}

/* The nb blocks of a Q8_0 row: codes into c[nb * 32], 16-bit; each block's d as f32 into d[nb]. */
static void q8_widen_row(const uint8_t *row, int nb, int16_t *c, float *d) {
    for (int b = 0; b < nb; b++) {
        const qm_block_q8_0 *blk = (const qm_block_q8_0 *)row + b;
        const __m128i lo = _mm_loadu_si128((const __m128i *)blk->qs);
        const __m128i hi = _mm_loadu_si128((const __m128i *)(blk->qs + 16));
        _mm256_storeu_si256((__m256i *)(c + (size_t)b * QM_Q8_BLOCK), _mm256_cvtepi8_epi16(lo));
        _mm256_storeu_si256((__m256i *)(c + (size_t)b * QM_Q8_BLOCK + 16), _mm256_cvtepi8_epi16(hi));
        d[b] = _cvtsh_ss(qm_quant_rd16(blk->d));
    }
}

/* R rows' codes into L->codes and each 32-block's d as f32 into d[r][b]: Q8_0 16-bit; Q6_K a byte
 * each, and its scales as 16-bit pairs: sc[r][2b + g] = (s, s) for group g of block b (s its
 * scale), sc[r][2 MAX_BLOCKS + b] = (-32 s_0, -32 s_1) for the block's start. */
static void rows_unpack(qm_dtype dt, const uint8_t *row0, size_t stride, int R, const lanes_x *L,
                        float d[PR][MAX_BLOCKS], int32_t sc[PR][3 * MAX_BLOCKS]) {
    for (int r = 0; r < R; r++) {
        const uint8_t *row = row0 + (size_t)r * stride;
        if (dt != QM_DT_Q6_K) {
            q8_widen_row(row, L->nb, L->codes + (size_t)r * (size_t)L->nb * QM_Q8_BLOCK, d[r]);
            continue;
        }
        uint8_t *c = (uint8_t *)L->codes + (size_t)r * (size_t)L->nb * QM_Q8_BLOCK;
        for (int sb = 0; sb < L->nb / 8; sb++) {
            const qm_block_q6_k *blk = (const qm_block_q6_k *)row + sb;
            qm_q6k_unpack_avx2(blk, c + 256 * (size_t)sb, &d[r][8 * sb]);
            const __m256i v = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)blk->scales));
            const __m256i lo = _mm256_unpacklo_epi16(v, v), hi = _mm256_unpackhi_epi16(v, v); /* s0-3 s8-11; s4-7 s12-15 */
            _mm256_storeu_si256((__m256i *)&sc[r][16 * sb], _mm256_permute2x128_si256(lo, hi, 0x20));
            _mm256_storeu_si256((__m256i *)&sc[r][16 * sb + 8], _mm256_permute2x128_si256(lo, hi, 0x31));
            _mm256_storeu_si256((__m256i *)&sc[r][2 * MAX_BLOCKS + 8 * sb], _mm256_mullo_epi16(v, _mm256_set1_epi16(-32)));
        }
    }
}

/* Q6_K: a of R rows (half h, lane t: output t0 + 8h + t). A group's code dword (unsigned, 0..63)
 * meets the outputs' dwords (signed) in vpmaddubsw (pairs at most 2 x 63 x 127: no saturation),
 * then vpmaddwd by the group's scale (so sc Σ c q over 4 codes a lane), a vpaddd; the sums start
 * at -32 (sc_2j Σq + sc_2j+1 Σq) (one vpmaddwd): the definition's S_b, exactly. */
static inline __attribute__((always_inline)) void tile_dots_q6k(const uint8_t *row0, size_t stride, int R, int H,
                                                                const lanes_x *L, const float d[PR][MAX_BLOCKS],
                                                                const int32_t sc[PR][3 * MAX_BLOCKS],
                                                                __m256 a[PR][HALVES]) {
    for (int r = 0; r < R; r++)
        for (int h = 0; h < HALVES; h++) a[r][h] = _mm256_setzero_ps();
    const uint8_t *codes = (const uint8_t *)L->codes;
    for (int b = 0; b < L->nb; b++) {
        __m256i s[PR][HALVES];
        for (int r = 0; r < R; r++)
            for (int h = 0; h < H; h++)
                s[r][h] = _mm256_madd_epi16(_mm256_set1_epi32(sc[r][2 * MAX_BLOCKS + b]),
                                            L->xg[(size_t)b * HALVES + (size_t)h]);
        /* the tile after next's rows (R contiguous rows of nb 32-blocks of 26.25 bytes), a line a block */
        _mm_prefetch((const char *)row0 + 2 * (size_t)R * stride + 64 * (size_t)b, _MM_HINT_T0);
        const __m256i *xb = L->xs + (size_t)b * 8 * HALVES;
        for (int grp = 0; grp < 2; grp++) {
            __m256i g[PR];
            for (int r = 0; r < R; r++) g[r] = _mm256_set1_epi32(sc[r][2 * b + grp]);
#pragma GCC unroll 4
            for (int k = 4 * grp; k < 4 * grp + 4; k++) {
                const __m256i x0 = xb[2 * k], x1 = H == 2 ? xb[2 * k + 1] : x0;
                for (int r = 0; r < R; r++) {
                    int32_t c;
                    memcpy(&c, codes + ((size_t)r * (size_t)L->nb + (size_t)b) * QM_Q8_BLOCK + 4 * k, 4);
                    const __m256i w = _mm256_set1_epi32(c);
                    s[r][0] = _mm256_add_epi32(s[r][0], _mm256_madd_epi16(_mm256_maddubs_epi16(w, x0), g[r]));
                    if (H == 2)
                        s[r][1] = _mm256_add_epi32(s[r][1], _mm256_madd_epi16(_mm256_maddubs_epi16(w, x1), g[r]));
                }
            }
        }
        for (int r = 0; r < R; r++)
            for (int h = 0; h < H; h++)
                a[r][h] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s[r][h]),
                                          _mm256_mul_ps(_mm256_set1_ps(d[r][b]), L->dx[(size_t)b * HALVES + (size_t)h]),
                                          a[r][h]);
    }
}

/* a of R rows (half h, lane t: output t0 + 8h + t), the definition's fmaf per block in block order. */
static inline __attribute__((always_inline)) void tile_dots(const uint8_t *row0, size_t stride, int R, int H,
                                                            const lanes_x *L, const float d[PR][MAX_BLOCKS],
                                                            __m256 a[PR][HALVES]) {
    for (int r = 0; r < R; r++)
        for (int h = 0; h < HALVES; h++) a[r][h] = _mm256_setzero_ps();
    for (int b = 0; b < L->nb; b++) {
        __m256i s[PR][HALVES];
        for (int r = 0; r < R; r++)
            for (int h = 0; h < HALVES; h++) s[r][h] = _mm256_setzero_si256();
        /* the tile after next's rows (R contiguous rows of nb 32-blocks of at most 34 bytes), two
         * lines a block */
        _mm_prefetch((const char *)row0 + 2 * (size_t)R * stride + 128 * (size_t)b, _MM_HINT_T0);
        _mm_prefetch((const char *)row0 + 2 * (size_t)R * stride + 128 * (size_t)b + 64, _MM_HINT_T0);
        const __m256i *xb = L->xs + (size_t)b * PAIRS * HALVES;
#pragma GCC unroll 4
        for (int k = 0; k < PAIRS; k++) {
            const __m256i x0 = xb[2 * k], x1 = H == 2 ? xb[2 * k + 1] : x0;
            for (int r = 0; r < R; r++) {
                int32_t c;
                memcpy(&c, L->codes + ((size_t)r * (size_t)L->nb + (size_t)b) * QM_Q8_BLOCK + 2 * k, 4);
                const __m256i w = _mm256_set1_epi32(c);
                s[r][0] = _mm256_add_epi32(s[r][0], _mm256_madd_epi16(w, x0));
                if (H == 2) s[r][1] = _mm256_add_epi32(s[r][1], _mm256_madd_epi16(w, x1));
            }
        }
        for (int r = 0; r < R; r++)
            for (int h = 0; h < H; h++)
                a[r][h] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s[r][h]),
                                          _mm256_mul_ps(_mm256_set1_ps(d[r][b]), L->dx[(size_t)b * HALVES + (size_t)h]),
                                          a[r][h]);
    }
}

/* Row o's E (half h), margin included. */
static inline __m256 row_bound(const qm_head_bounds *hb, const lanes_x *L, int o, int h) {
    __m256 E = _mm256_setzero_ps();
    for (int g = 0; g < L->groups; g++) {
        const size_t at = qm_head_bound_at(hb, g, o);
        E = _mm256_fmadd_ps(_mm256_set1_ps(hb->bound[at]), L->coef[(size_t)(2 * g) * HALVES + (size_t)h], E);
        if (hb->dev)
            E = _mm256_fmadd_ps(_mm256_set1_ps(hb->dev[at]), L->coef[(size_t)(2 * g + 1) * HALVES + (size_t)h], E);
    }
    return _mm256_add_ps(_mm256_mul_ps(E, _mm256_set1_ps(QM_HEAD_PASS_MARGIN)), _mm256_set1_ps(1e-35f));
}

/* R rows from o: y = a + E for the nt outputs, low = the lanes' largest a - E (NaN never taken). */
static void tile(const qm_wview *w, const lanes_x *L, const qm_head_bounds *hb, int R, int o, int nt, float *y,
                 size_t ldy, __m256 low[HALVES]) {
    const size_t stride = qm_wview_stride(w);
    const uint8_t *row0 = (const uint8_t *)w->data + (size_t)o * stride;
    float d[PR][MAX_BLOCKS];
    int32_t sc[PR][3 * MAX_BLOCKS];
    float out[PR][PASS] __attribute__((aligned(32)));
    __m256 a[PR][HALVES];
    rows_unpack(w->dtype, row0, stride, R, L, d, sc);
    const int H = nt > LANES ? 2 : 1; /* ymm a row: 8 outputs or fewer take one */
    if (w->dtype == QM_DT_Q6_K) {
        if (R == PR2 && H == 2) tile_dots_q6k(row0, stride, PR2, 2, L, d, sc, a);
        else if (R == PR && H == 1) tile_dots_q6k(row0, stride, PR, 1, L, d, sc, a);
        else tile_dots_q6k(row0, stride, R, H, L, d, sc, a);
    } else if (R == PR2 && H == 2) tile_dots(row0, stride, PR2, 2, L, d, a);
    else if (R == PR && H == 1) tile_dots(row0, stride, PR, 1, L, d, a);
    else tile_dots(row0, stride, R, H, L, d, a);
    for (int r = 0; r < R; r++)
        for (int h = 0; h < H; h++) {
            const __m256 E = row_bound(hb, L, o + r, h), lo = _mm256_sub_ps(a[r][h], E);
            low[h] = _mm256_blendv_ps(low[h], lo, _mm256_cmp_ps(lo, low[h], _CMP_GT_OQ));
            _mm256_store_ps(out[r] + LANES * h, _mm256_add_ps(a[r][h], E));
        }
    for (int t = 0; t < nt; t++)
        for (int r = 0; r < R; r++) y[(size_t)t * ldy + (size_t)(o + r)] = out[r][t];
}

void qm_head_pass_avx2(const qm_wview *w, const qm_q8act *x, int n_tok, const qm_head_bounds *hb, float *y, size_t ldy,
                       float *low, int o_begin, int o_end) {
    const int nb = w->cols / QM_Q8_BLOCK;
    for (int t0 = 0; t0 < n_tok; t0 += PASS) {
        const int nt = n_tok - t0 < PASS ? n_tok - t0 : PASS;
        lanes_x L;
        if (!lanes_make(w->dtype, x, hb, nb, t0, nt, &L)) { /* out of memory: the definition, same bits */
            qm_head_pass_scalar_outputs(w, x, t0, nt, hb, y, ldy, low, o_begin, o_end);
            continue;
        }
        __m256 lw[HALVES] = {_mm256_set1_ps(-__builtin_inff()), _mm256_set1_ps(-__builtin_inff())};
        const int tr = nt > LANES ? PR2 : PR;
        int o = o_begin;
        for (; o + tr <= o_end; o += tr) tile(w, &L, hb, tr, o, nt, y + (size_t)t0 * ldy, ldy, lw);
        for (; o < o_end; o++) tile(w, &L, hb, 1, o, nt, y + (size_t)t0 * ldy, ldy, lw);
        float lows[PASS] __attribute__((aligned(32)));
        _mm256_store_ps(lows, lw[0]);
        _mm256_store_ps(lows + LANES, lw[1]);
        for (int t = 0; t < nt; t++)
            if (lows[t] > low[t0 + t]) low[t0 + t] = lows[t];
        free(L.xs);
    }
}

/* kernels.head_finish: 8 rows at a time where they lie in one tile of the bounds (rows from a
 * multiple of 8), the rows before and after by the definition. */
void qm_head_finish_avx2(const qm_head_bounds *hb, int t, float *y, float *low, int o_begin, int o_end) {
    const float *e = hb->coef + (size_t)(2 * t) * (size_t)hb->groups, *h = e + hb->groups;
    int o = o_begin;
    const int head = (8 - o % 8) % 8 < o_end - o ? (8 - o % 8) % 8 : o_end - o;
    qm_head_finish_scalar(hb, t, y, low, o, o + head);
    o += head;
    __m256 lw = _mm256_set1_ps(-__builtin_inff());
    for (; o + 8 <= o_end; o += 8) {
        const size_t at = qm_head_bound_at(hb, 0, o);
        __m256 E = _mm256_setzero_ps();
        for (int g = 0; g < hb->groups; g++) {
            E = _mm256_fmadd_ps(_mm256_loadu_ps(hb->bound + at + (size_t)g * QM_HEAD_TILE), _mm256_set1_ps(e[g]), E);
            if (hb->dev)
                E = _mm256_fmadd_ps(_mm256_loadu_ps(hb->dev + at + (size_t)g * QM_HEAD_TILE), _mm256_set1_ps(h[g]), E);
        }
        E = _mm256_add_ps(_mm256_mul_ps(E, _mm256_set1_ps(QM_HEAD_PASS_MARGIN)), _mm256_set1_ps(1e-35f));
        const __m256 a = _mm256_loadu_ps(y + o), lo = _mm256_sub_ps(a, E);
        _mm256_storeu_ps(y + o, _mm256_add_ps(a, E));
        lw = _mm256_blendv_ps(lw, lo, _mm256_cmp_ps(lo, lw, _CMP_GT_OQ));
    }
    float lows[8] __attribute__((aligned(32)));
    _mm256_store_ps(lows, lw);
    for (int i = 0; i < 8; i++)
        if (lows[i] > *low) *low = lows[i];
    qm_head_finish_scalar(hb, t, y, low, o, o_end);
}
