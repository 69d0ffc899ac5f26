/* AVX2 twin of qdot.c (the spec: kernels/qdot.h). Two ymm hold the 16 lanes of a group of 16
 * consecutive 32-blocks of the view, lanes 0-7 and 8-15 ("halves"), one block per lane, in block
 * order. The blocks' exact integer sums are made with maddubs/madd, converted, and scaled with
 * the spec's f32 operations lane by lane (vmulps/vaddps/vsubps, never FMA).
 *
 * Exactness: as qdot_avx512.c. maddubs never saturates (u8 weight codes Q4 0..15, Q5 0..31,
 * Q6_K 0..63, Q8_0 |w| <= 128 times s8 activations in [-127, 127]); Q8_0 moves w's sign onto q
 * (vpsignb); Q4_0/Q5_0 subtract 8 s / 16 s; Q6_K subtracts 32 (q0 + q1) per pair in prefill and
 * 32 x the sum of 8 activations in decode (reduce_q6k). Int16 partial sums stay below 32768: 8 x
 * 3810 (Q4), 4 x 7874 (Q5), 4 x 8128 (Q6_K). f32 products and sums of integers are used only
 * where the result is below 2^24 (exact): Q4_K/Q5_K's sc_j * Σ and m_j * s; decode's Q6_K
 * integer (sc_g0 Σ_g0 + sc_g1 Σ_g1) is made in int32.
 *
 * Two ways to the sums, same bits:
 *   decode (one token): one ymm per block; after madd, eight blocks are reduced to eight dwords
 *     (packs + madd while int16 holds, hadd for Q8_0, int16 hadds of the maddubs pairs for the
 *     4-bit types). Weights are unpacked and used at once, DR rows per pass; the token's groups
 *     are made once per call (xcache_decode). Q4_K views of whole superblocks go 8 rows side by
 *     side instead, a lane a row (q4k_decode8): no horizontal adds.
 *   prefill (n_tok >= 2): each half's 8 blocks are transposed (8 x 8 dwords) on both sides, so
 *     the products add up vertically. Tiles of PR rows x PT tokens reuse each unpacked weight
 *     group for PT tokens; the PT tokens' activation groups are transposed once for all the row
 *     tiles (xcache_make). */
#include <immintrin.h>
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>

#include "kernels/qdot.h"
#include "kernels/rows8.h"
#include "kernels/rowpar.h"
#include "kernels/q6k_avx2.h"
#include "kernels/quant.h"

#include "kernels/inline.h"
#define DR 4  /* decode: rows per pass */
#define PR 4  /* prefill: rows per tile */
/* prefill: tokens per tile. 32, not 16: each row tile's weights unpacked (transposed) once for
 * twice the tokens. One thread, `bench_qmatmul pre avx2 Q4_K 8960 1536 512` (fast): matmul
 * 120-122 -> 127-131 GOP/s, nodes 100 -> 107-109; Q6_K 1536 8960: 127 -> 135, 100 -> 104; the
 * 1.5B's fast prefill (2 threads, 512 tokens) 75.7-78.0 -> 77.9-81.8 tok/s. 64 was no faster
 * (Q6_K's nodes 92-96: the tile's activation groups, 2 MB, left the L2). */
#define PT 32

/* One row's 16 blocks, unpacked (decode makes the codes on the fly and uses only the scales). */
typedef struct {
    __m256i q[16];           /* prefill codes (Q8_0: |w|), transposed: q[8h + i] lane l = dword i of
                              * block 8h + l */
    __m256i w[16];           /* prefill: Q8_0 the signed codes; Q6_K [2h + e] int16 scales of groups e;
                              * Q4_K, Q5_K [h] int16 lanes 2l, 2l + 1 = the 6-bit scale of block 8h + l */
    __m256 d[2], m[2];       /* d; m (Q4_1, Q5_1) or dmin (Q4_K, Q5_K) */
    __m256 sc_f[2], mn_f[2]; /* Q4_K, Q5_K: the 6-bit scale and min */
    __m256i sp6[2][2];       /* Q6_K decode: [h][j] int16 lanes 2i, 2i + 1 of the low 128 bits: group 0 of
                              * block 8h + 4j + i (i < 4), of the high 128 bits: its group 1 */
} wgroup;

/* Dword l all ones where block 8h + l is one of the first nb, else 0. */
QM_INLINE __m256i half_mask(int nb, int h) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(nb - 8 * h), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

/* 8 x 8 dword transpose: lane l of v[i] becomes dword i of v[l]. */
QM_INLINE void transpose8(__m256i *v) {
    __m256i t[8], u[8];
    for (int k = 0; k < 8; k += 2) {
        t[k] = _mm256_unpacklo_epi32(v[k], v[k + 1]);
        t[k + 1] = _mm256_unpackhi_epi32(v[k], v[k + 1]);
    }
    for (int k = 0; k < 8; k += 4) {
        u[k] = _mm256_unpacklo_epi64(t[k], t[k + 2]);
        u[k + 1] = _mm256_unpackhi_epi64(t[k], t[k + 2]);
        u[k + 2] = _mm256_unpacklo_epi64(t[k + 1], t[k + 3]);
        u[k + 3] = _mm256_unpackhi_epi64(t[k + 1], t[k + 3]);
    }
    for (int j = 0; j < 4; j++) {
        v[j] = _mm256_permute2x128_si256(u[j], u[j + 4], 0x20);
        v[j + 4] = _mm256_permute2x128_si256(u[j], u[j + 4], 0x31);
    }
}

/* ---- weights: codes ---- */

/* Nibbles of 16 bytes: low nibbles are elements 0..15, high ones 16..31. */
QM_INLINE __m256i nibbles(const uint8_t *qs) {
    const __m128i q = _mm_loadu_si128((const __m128i *)qs);
    const __m256i v = _mm256_inserti128_si256(_mm256_castsi128_si256(q), _mm_srli_epi16(q, 4), 1);
    return _mm256_and_si256(v, _mm256_set1_epi8(15));
}

/* Byte j = 16 where bit j of h is set, else 0. */
QM_INLINE __m256i bit4_from_bits(uint32_t h) {
    const __m256i shuf = _mm256_setr_epi64x(0, 0x0101010101010101ll, 0x0202020202020202ll, 0x0303030303030303ll);
    const __m256i bits = _mm256_set1_epi64x((long long)0x8040201008040201ull);
    const __m256i v = _mm256_and_si256(_mm256_shuffle_epi8(_mm256_set1_epi32((int)h), shuf), bits);
    return _mm256_and_si256(_mm256_cmpeq_epi8(v, bits), _mm256_set1_epi8(16));
}

/* Q8_0 (signed), Q4_0, Q4_1, Q5_0, Q5_1: block b at row + (sb + b) * bb. */
QM_INLINE __m256i code_32(qm_dtype dt, const uint8_t *blk) {
    const int has_m = dt == QM_DT_Q4_1 || dt == QM_DT_Q5_1;
    const uint8_t *p = blk + 2 + 2 * has_m;
    if (dt == QM_DT_Q8_0) return _mm256_loadu_si256((const __m256i *)(blk + 2));
    if (dt == QM_DT_Q4_0 || dt == QM_DT_Q4_1) return nibbles(p);
    return _mm256_or_si256(nibbles(p + 4), bit4_from_bits(qm_quant_rd32(p)));
}

/* Q4_K/Q5_K/Q6_K sub-block s of a row (Q6_K: codes 0..63, q + 32). */
QM_INLINE __m256i code_k(qm_dtype dt, const uint8_t *row, int s) {
    const int j = s & 7;
    const uint8_t *blk = row + (size_t)(s >> 3) * qm_dtype_block_bytes(dt);
    if (dt == QM_DT_Q6_K) {
        const qm_block_q6_k *b = (const qm_block_q6_k *)blk;
        const int h = j >> 2, k = j & 3;
        __m256i lo = _mm256_loadu_si256((const __m256i *)(b->ql + 64 * h + 32 * (k & 1)));
        lo = _mm256_and_si256(_mm256_srl_epi16(lo, _mm_cvtsi32_si128(4 * (k >> 1))), _mm256_set1_epi8(15));
        __m256i hi = _mm256_loadu_si256((const __m256i *)(b->qh + 32 * h));
        hi = _mm256_and_si256(_mm256_srl_epi16(hi, _mm_cvtsi32_si128(2 * k)), _mm256_set1_epi8(3));
        return _mm256_or_si256(lo, _mm256_slli_epi16(hi, 4));
    }
    const uint8_t *qs = blk + (dt == QM_DT_Q5_K ? 48 : 16) + 32 * (j >> 1);
    __m256i v = _mm256_srl_epi16(_mm256_loadu_si256((const __m256i *)qs), _mm_cvtsi32_si128(4 * (j & 1)));
    v = _mm256_and_si256(v, _mm256_set1_epi8(15));
    if (dt == QM_DT_Q5_K) {
        const __m256i h = _mm256_srl_epi16(_mm256_loadu_si256((const __m256i *)(blk + 16)), _mm_cvtsi32_si128(j));
        v = _mm256_or_si256(v, _mm256_slli_epi16(_mm256_and_si256(h, _mm256_set1_epi8(1)), 4));
    }
    return v;
}

/* Q4_K sub-blocks s, s + 1 with s even: the low and high nibbles of one 32-byte chunk. */
QM_INLINE void code_q4k_pair(const uint8_t *row, int s, __m256i out[2]) {
    const uint8_t *qs = row + (size_t)(s >> 3) * 144 + 16 + 16 * (s & 7);
    const __m256i v = _mm256_loadu_si256((const __m256i *)qs), m = _mm256_set1_epi8(15);
    out[0] = _mm256_and_si256(v, m);
    out[1] = _mm256_and_si256(_mm256_srli_epi16(v, 4), m);
}

/* Q6_K sub-blocks s, s + 1 with s even (k = s % 4 in {0, 2}): 64 consecutive ql bytes. */
QM_INLINE void code_q6k_pair(const uint8_t *row, int s, __m256i out[2]) {
    const int j = s & 7, h = j >> 2, k = j & 3;
    const qm_block_q6_k *b = (const qm_block_q6_k *)(row + (size_t)(s >> 3) * 210);
    const __m256i m4 = _mm256_set1_epi8(15), m2 = _mm256_set1_epi8(3);
    const __m256i hq = _mm256_loadu_si256((const __m256i *)(b->qh + 32 * h));
    for (int e = 0; e < 2; e++) {
        const __m256i lo = _mm256_loadu_si256((const __m256i *)(b->ql + 64 * h + 32 * e));
        const __m256i l = _mm256_and_si256(_mm256_srl_epi16(lo, _mm_cvtsi32_si128(2 * k)), m4);
        const __m256i hi = _mm256_and_si256(_mm256_srl_epi16(hq, _mm_cvtsi32_si128(2 * (k + e))), m2);
        out[e] = _mm256_or_si256(l, _mm256_slli_epi16(hi, 4));
    }
}

/* K-quant sub-blocks off .. off + nb - 1 counted from the superblock at base. */
QM_INLINE void codes_k_at(qm_dtype dt, const uint8_t *base, int off, int nb, __m256i q[16]) {
    if ((dt == QM_DT_Q4_K || dt == QM_DT_Q6_K) && !(off & 1)) {
#pragma GCC unroll 8
        for (int b = 0; b < 16; b += 2) {
            if (b < nb && dt == QM_DT_Q4_K) code_q4k_pair(base, off + b, q + b);
            if (b < nb && dt == QM_DT_Q6_K) code_q6k_pair(base, off + b, q + b);
            if (b >= nb) q[b] = _mm256_setzero_si256();
            if (b + 1 >= nb) q[b + 1] = _mm256_setzero_si256();
        }
        return;
    }
#pragma GCC unroll 16
    for (int b = 0; b < 16; b++) q[b] = b < nb ? code_k(dt, base, off + b) : _mm256_setzero_si256();
}

QM_INLINE void codes(qm_dtype dt, const uint8_t *row, int sb, int nb, __m256i q[16]) {
    if (qm_dtype_block(dt) == 32) {
        const size_t bb = qm_dtype_block_bytes(dt);
        for (int b = 0; b < 16; b++)
            q[b] = b < nb ? code_32(dt, row + (size_t)(sb + b) * bb) : _mm256_setzero_si256();
        return;
    }
    /* a literal offset 0 (groups aligned to superblocks, the usual case): constant shifts */
    const uint8_t *base = row + (size_t)(sb >> 3) * qm_dtype_block_bytes(dt);
    if ((sb & 7) == 0) codes_k_at(dt, base, 0, nb, q);
    else codes_k_at(dt, base, sb & 7, nb, q);
}

/* Block 8h + k of a group, alone (Q8_0: signed): base is the group's first block (32-blocks) or
 * the superblock of its first sub-block, off that sub-block's index in it (K-quants). */
QM_INLINE __m256i code_blk(qm_dtype dt, const uint8_t *base, int off, int h, int k) {
    const size_t bb = qm_dtype_block_bytes(dt);
    if (qm_dtype_block(dt) == 32) return code_32(dt, base + (size_t)(8 * h + k) * bb);
    return code_k(dt, base + (size_t)h * bb, off + k);
}

/* ---- weights: scales ---- */

/* Q8_0 .. Q5_1: d (and m) of each block, the f16 words at its start, gathered in two general
 * registers a half (four words each) and moved over with one vmovq and one vpinsrq. A vpgatherdd a
 * half took the vector pipes' time: one thread, the fast decode of Q5_0 512 x 896 from the L2
 * (AMD EPYC Zen 5, --isa avx2) 0.0424 -> 0.0388 ns a weight, Q8_0 0.0310 -> 0.0275. */
QM_INLINE void scales_32(qm_dtype dt, const uint8_t *row, int sb, int nb, wgroup *g) {
    const size_t bb = qm_dtype_block_bytes(dt);
    const int has_m = dt == QM_DT_Q4_1 || dt == QM_DT_Q5_1;
    g->d[1] = g->m[0] = g->m[1] = _mm256_setzero_ps();
    for (int h = 0; h < 2 && 8 * h < nb; h++) {
        const uint8_t *b = row + (size_t)(sb + 8 * h) * bb;
        uint64_t d[2] = {0, 0}, m[2] = {0, 0};
#pragma GCC unroll 8
        for (int l = 0; l < 8; l++) {
            if (8 * h + l >= nb) continue;
            d[l >> 2] |= (uint64_t)qm_quant_rd16(b + l * bb) << (16 * (l & 3));
            if (has_m) m[l >> 2] |= (uint64_t)qm_quant_rd16(b + l * bb + 2) << (16 * (l & 3));
        }
        g->d[h] = _mm256_cvtph_ps(_mm_set_epi64x((long long)d[1], (long long)d[0]));
        if (has_m) g->m[h] = _mm256_cvtph_ps(_mm_set_epi64x((long long)m[1], (long long)m[0]));
    }
}

/* The 8 scales and 8 mins of a Q4_K/Q5_K superblock from its 12 scale bytes at s (16 bytes are
 * read: the block goes on), as f32 (quant.h, qm_quant_k_scales). */
QM_INLINE void k_scales(const uint8_t *s, __m256 *sc, __m256 *mn) {
    const __m128i v = _mm_loadu_si128((const __m128i *)s);
    /* low parts: sc0-3 = s0-3 & 63, sc4-7 = s8-11 & 15, mn0-3 = s4-7 & 63, mn4-7 = s8-11 >> 4 */
    __m128i lo = _mm_shuffle_epi8(v, _mm_setr_epi8(0, 1, 2, 3, 8, 9, 10, 11, 4, 5, 6, 7, 8, 9, 10, 11));
    lo = _mm_blend_epi32(lo, _mm_srli_epi16(lo, 4), 8);
    lo = _mm_and_si128(lo, _mm_setr_epi32(0x3f3f3f3f, 0x0f0f0f0f, 0x3f3f3f3f, 0x0f0f0f0f));
    /* high parts of sc4-7 = (s0-3 >> 6) << 4, of mn4-7 = (s4-7 >> 6) << 4 */
    __m128i hi = _mm_shuffle_epi8(v, _mm_setr_epi8(-1, -1, -1, -1, 0, 1, 2, 3, -1, -1, -1, -1, 4, 5, 6, 7));
    hi = _mm_and_si128(_mm_srli_epi16(hi, 2), _mm_set1_epi8(0x30));
    const __m128i b = _mm_or_si128(lo, hi);
    *sc = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(b));
    *mn = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(b, 8)));
}

/* Half h, lane l is sub-block u = off + 8h + l of superblock u / 8: from v[h] or v[h + 1], lane
 * (off + l) % 8. */
QM_INLINE void sb_halves(const __m256 v[3], int off, __m256 out[2]) {
    if (off == 0) {
        out[0] = v[0];
        out[1] = v[1];
        return;
    }
    const __m256i l = _mm256_add_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7), _mm256_set1_epi32(off));
    const __m256 next = _mm256_castsi256_ps(_mm256_cmpgt_epi32(l, _mm256_set1_epi32(7)));
    __m256 p[3];
    for (int i = 0; i < 3; i++) p[i] = _mm256_permutevar8x32_ps(v[i], l); /* uses l % 8 */
    out[0] = _mm256_blendv_ps(p[0], p[1], next);
    out[1] = _mm256_blendv_ps(p[1], p[2], next);
}

/* off = sb % 8 (a literal 0 in the decode tiles where it is: no lane moves, two superblocks). */
QM_INLINE void scales_k45(qm_dtype dt, const uint8_t *row, int sb, int off, int nb, wgroup *g) {
    const size_t bb = qm_dtype_block_bytes(dt);
    const int nsup = ((off + nb - 1) >> 3) + 1;
    __m256 sc[3], mn[3], d[3], dmin[3];
    for (int i = 0; i < 3; i++) {
        const uint8_t *blk = row + (size_t)((sb >> 3) + i) * bb;
        if (i >= nsup) {
            sc[i] = mn[i] = d[i] = dmin[i] = _mm256_setzero_ps();
            continue;
        }
        k_scales(blk + 4, &sc[i], &mn[i]);
        d[i] = _mm256_set1_ps(_cvtsh_ss(qm_quant_rd16(blk)));
        dmin[i] = _mm256_set1_ps(_cvtsh_ss(qm_quant_rd16(blk + 2)));
    }
    sb_halves(sc, off, g->sc_f);
    sb_halves(mn, off, g->mn_f);
    sb_halves(d, off, g->d);
    sb_halves(dmin, off, g->m);
}

/* A Q6_K block's two scale bytes as the low 16 bits (0 for an absent block). */
QM_INLINE int scale_pair(const int8_t *sc) { return sc ? qm_quant_rd16((const uint8_t *)sc) : 0; }

/* Q6_K, any group: d, and the scales as decode's sp6 or prefill's int16 madd operands.
 * Not inlined: the rare path (views from sub-blocks 2 and 6, short groups); inlined into the decode
 * tiles it made their common path slower (Q6_K column-parallel 0.040 -> 0.046-0.049 ns a weight). */
static __attribute__((noinline)) void scales_q6k_any(const uint8_t *row, int sb, int nb, int transposed, wgroup *g) {
    const int nsup = ((sb + nb - 1) >> 3) - (sb >> 3) + 1;
    __m256 d[3];
    for (int i = 0; i < 3; i++)
        d[i] = i < nsup ? _mm256_set1_ps(_cvtsh_ss(qm_quant_rd16(row + (size_t)((sb >> 3) + i) * 210 + 208)))
                        : _mm256_setzero_ps();
    sb_halves(d, sb & 7, g->d);
    const int8_t *sc[16];
    for (int b = 0; b < 16; b++) {
        const int s = sb + b;
        sc[b] = b < nb ? ((const qm_block_q6_k *)(row + (size_t)(s >> 3) * 210))->scales + 2 * (s & 7) : NULL;
    }
    if (!transposed) { /* sp6[h][j] int16 lane 8e + 2i + k (k < 2): group e of block 8h + 4j + i */
        /* dword i: block 4j + i's two scale bytes; byte 4i + e to the high byte of lanes 8e + 2i + k,
         * sign-extended by the shift (built in registers rather than by int16 stores read back
         * as one vector, which cannot be forwarded) */
        const __m256i pick = _mm256_setr_epi8(-1, 0, -1, 0, -1, 4, -1, 4, -1, 8, -1, 8, -1, 12, -1, 12, -1, 1, -1, 1,
                                              -1, 5, -1, 5, -1, 9, -1, 9, -1, 13, -1, 13);
        for (int h = 0; h < 2; h++)
            for (int j = 0; j < 2; j++) {
                const int8_t *const *q = sc + 8 * h + 4 * j;
                const __m128i v = _mm_setr_epi32(scale_pair(q[0]), scale_pair(q[1]), scale_pair(q[2]), scale_pair(q[3]));
                g->sp6[h][j] = _mm256_srai_epi16(_mm256_shuffle_epi8(_mm256_broadcastsi128_si256(v), pick), 8);
            }
        return;
    }
    for (int h = 0; h < 2; h++) /* [2h + e]: int16 lanes 2l, 2l + 1 = group e of block 8h + l */
        for (int e = 0; e < 2; e++) {
            int v[8];
            for (int l = 0; l < 8; l++) v[l] = sc[8 * h + l] ? (int)((uint16_t)sc[8 * h + l][e] * 0x10001u) : 0;
            g->w[2 * h + e] = _mm256_loadu_si256((const __m256i *)v);
        }
}

/* Q6_K, prefill (transposed) of a group of 16 or 8 blocks from a superblock's sub-block off = 0
 * (every group of a whole row) or 4 (a 1x2 mesh's down_proj shard). w[2h + e]'s int16 lanes 2l,
 * 2l + 1 take block 8h + l's scale of group e into their high bytes, sign-extended by the shift:
 * blocks 8h .. 8h + 3 are sub-blocks off .. off + 3 of superblock (sb + 8h) / 8, blocks 8h + 4 ..
 * 8h + 7 sub-blocks (off + 4) % 8 .. of superblock (sb + 8h + 4) / 8, so one load of each
 * superblock's 16 scale bytes (low and high 128 bits) and a pick. scales_q6k_any built them a
 * block at a time and read them back through memory (each row's group, once per 16 tokens).
 * Absent half: 0. */
QM_INLINE void scales_q6k_prefill(const uint8_t *row, int sb, int off, int nb, wgroup *g) {
    /* [off / 4][e]: byte 2 s + e of sub-block s, s = off + l (low 128 bits), (off + 4) % 8 + l (high) */
    const __m256i pick[2][2] = {
        {_mm256_setr_epi8(-1, 0, -1, 0, -1, 2, -1, 2, -1, 4, -1, 4, -1, 6, -1, 6, -1, 8, -1, 8, -1, 10, -1, 10, -1, 12,
                          -1, 12, -1, 14, -1, 14),
         _mm256_setr_epi8(-1, 1, -1, 1, -1, 3, -1, 3, -1, 5, -1, 5, -1, 7, -1, 7, -1, 9, -1, 9, -1, 11, -1, 11, -1, 13,
                          -1, 13, -1, 15, -1, 15)},
        {_mm256_setr_epi8(-1, 8, -1, 8, -1, 10, -1, 10, -1, 12, -1, 12, -1, 14, -1, 14, -1, 0, -1, 0, -1, 2, -1, 2, -1, 4,
                          -1, 4, -1, 6, -1, 6),
         _mm256_setr_epi8(-1, 9, -1, 9, -1, 11, -1, 11, -1, 13, -1, 13, -1, 15, -1, 15, -1, 1, -1, 1, -1, 3, -1, 3, -1, 5,
                          -1, 5, -1, 7, -1, 7)}};
    for (int h = 0; h < 2; h++) {
        if (8 * h >= nb) {
            g->d[h] = _mm256_setzero_ps();
            g->w[2 * h] = g->w[2 * h + 1] = _mm256_setzero_si256();
            continue;
        }
        const uint8_t *lo = row + (size_t)((sb + 8 * h) >> 3) * 210, *hi = row + (size_t)((sb + 8 * h + 4) >> 3) * 210;
        g->d[h] = _mm256_set_m128(_mm_set1_ps(_cvtsh_ss(qm_quant_rd16(hi + 208))),
                                  _mm_set1_ps(_cvtsh_ss(qm_quant_rd16(lo + 208))));
        const __m256i v = _mm256_set_m128i(_mm_loadu_si128((const __m128i *)(hi + 192)),
                                           _mm_loadu_si128((const __m128i *)(lo + 192)));
        for (int e = 0; e < 2; e++) g->w[2 * h + e] = _mm256_srai_epi16(_mm256_shuffle_epi8(v, pick[off >> 2][e]), 8);
    }
}

/* Q6_K's scales: a prefill group from sub-block 0 or 4 by scales_q6k_prefill, other views'
 * groups by scales_q6k_any; decode of a group of 16 or 8 blocks starting at a superblock's
 * sub-block off = 0 (the usual case) or 4 (a 1x2 mesh's down_proj shard) straight from the
 * blocks: the blocks 8h + 4j .. 8h + 4j + 3 are one superblock's half ((off + 8h + 4j) % 8 / 4),
 * whose scales are a pick. */
QM_INLINE void scales_q6k(const uint8_t *row, int sb, int off, int nb, int transposed, wgroup *g) {
    if (transposed && (off == 0 || off == 4) && (nb == 16 || nb == 8)) {
        scales_q6k_prefill(row, sb, off, nb, g);
        return;
    }
    if (transposed || (off != 0 && off != 4) || (nb != 16 && nb != 8)) {
        scales_q6k_any(row, sb, nb, transposed, g);
        return;
    }
    /* int16 lane 8e + 2i + k of sp6[h][j] takes scale byte 2 (4j + i) + e into its high byte; an
     * arithmetic shift by 8 sign-extends it */
    const __m256i pick[2] = {
        _mm256_setr_epi8(-1, 0, -1, 0, -1, 2, -1, 2, -1, 4, -1, 4, -1, 6, -1, 6, -1, 1, -1, 1, -1, 3, -1, 3, -1, 5,
                         -1, 5, -1, 7, -1, 7),
        _mm256_setr_epi8(-1, 8, -1, 8, -1, 10, -1, 10, -1, 12, -1, 12, -1, 14, -1, 14, -1, 9, -1, 9, -1, 11, -1, 11,
                         -1, 13, -1, 13, -1, 15, -1, 15)};
    /* off 0: half h is superblock h, one load of its scales (the off 4 loop below gives the same
     * values from two; kept apart, measured 0.052 against 0.054-0.056 ns a weight, rowpar hot) */
    for (int h = 0; h < nb / 8 && off == 0; h++) {
        const uint8_t *blk = row + (size_t)((sb >> 3) + h) * 210;
        g->d[h] = _mm256_set1_ps(_cvtsh_ss(qm_quant_rd16(blk + 208)));
        const __m256i v = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(blk + 192)));
        for (int j = 0; j < 2; j++) g->sp6[h][j] = _mm256_srai_epi16(_mm256_shuffle_epi8(v, pick[j]), 8);
    }
    for (int h = 0; h < nb / 8 && off == 4; h++) {
        __m128 d[2];
        for (int j = 0; j < 2; j++) {
            const uint8_t *blk = row + (size_t)((sb + 8 * h + 4 * j) >> 3) * 210;
            d[j] = _mm_set1_ps(_cvtsh_ss(qm_quant_rd16(blk + 208)));
            const __m256i v = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(blk + 192)));
            g->sp6[h][j] = _mm256_srai_epi16(_mm256_shuffle_epi8(v, pick[((off + 8 * h + 4 * j) & 7) >> 2]), 8);
        }
        g->d[h] = _mm256_set_m128(d[1], d[0]);
    }
}

/* A group's scales; off = sb % 8 for the K-quants (0 otherwise), a literal where the caller has it. */
QM_INLINE void scales(qm_dtype dt, const uint8_t *row, int sb, int off, int nb, int transposed, wgroup *g) {
    if (dt == QM_DT_Q6_K) scales_q6k(row, sb, off, nb, transposed, g);
    else if (dt == QM_DT_Q4_K || dt == QM_DT_Q5_K) scales_k45(dt, row, sb, off, nb, g);
    else scales_32(dt, row, sb, nb, g);
}

/* Q4_K, Q5_K, a transposed group: w[h] int16 lanes 2l, 2l + 1 = sc_f[h] lane l, the madd operand of
 * isum_prefill. */
QM_INLINE void k_scales16(qm_dtype dt, wgroup *g) {
    if (dt != QM_DT_Q4_K && dt != QM_DT_Q5_K) return;
    for (int h = 0; h < 2; h++) {
        const __m256i sc = _mm256_cvttps_epi32(g->sc_f[h]);
        g->w[h] = _mm256_or_si256(sc, _mm256_slli_epi32(sc, 16));
    }
}

/* Prefill: one row's group, codes transposed. */
QM_INLINE void unpack_prefill(qm_dtype dt, const uint8_t *row, int sb, int nb, wgroup *g) {
    codes(dt, row, sb, nb, g->q);
    transpose8(g->q);
    transpose8(g->q + 8);
    if (dt == QM_DT_Q8_0)
        for (int b = 0; b < 16; b++) {
            g->w[b] = g->q[b];
            g->q[b] = _mm256_abs_epi8(g->q[b]);
        }
    scales(dt, row, sb, sb & 7, nb, 1, g);
    k_scales16(dt, g);
}

/* ---- activations ---- */

/* One token's 16 blocks. */
typedef struct {
    __m256i q[16];   /* as wgroup.q (absent blocks: 0) */
    __m256i q32[16]; /* Q6_K: 32 (q_2i + q_2i+1) per int16 lane */
    __m256i q32s[4]; /* Q6_K, transposed: [2h + e] the sum of q32[8h + 4e + i], i < 4 */
    __m256i x8[2][4]; /* Q6_K decode: 32 x the activation sums in the layout of reduce_q6k's w[i] */
    __m256 dx[2], sf[2];
    __m256i s[2];
} xgroup;

/* Q6_K's q32 and, for the transposed sums, q32s (at most 4 x 32 x 254 = 32512: int16). */
QM_INLINE void q32_of(xgroup *xg) {
    for (int b = 0; b < 16; b++) xg->q32[b] = _mm256_maddubs_epi16(_mm256_set1_epi8(32), xg->q[b]);
    for (int k = 0; k < 4; k++)
        xg->q32s[k] = _mm256_add_epi16(_mm256_add_epi16(xg->q32[4 * k], xg->q32[4 * k + 1]),
                                       _mm256_add_epi16(xg->q32[4 * k + 2], xg->q32[4 * k + 3]));
}

/* Q6_K decode: x8[h][i] = 32 x the sums of 8 activations, the first two levels of reduce_q6k
 * applied to q32 (at most 32 x 8 x 127 = 32512). */
QM_INLINE void x8_of(xgroup *xg) {
    const __m256i ones = _mm256_set1_epi16(1);
    for (int h = 0; h < 2; h++)
        for (int i = 0; i < 4; i++) {
            const __m256i a = _mm256_madd_epi16(xg->q32[8 * h + 2 * i], ones);
            const __m256i b = _mm256_madd_epi16(xg->q32[8 * h + 2 * i + 1], ones);
            xg->x8[h][i] = _mm256_madd_epi16(_mm256_packs_epi32(a, b), ones);
        }
}

QM_INLINE void load_x(qm_dtype dt, const qm_q8act *x, int t, int b0, int nb, int transposed, xgroup *xg) {
    const size_t xb = (size_t)t * x->ld_blocks + (size_t)b0;
    const int8_t *q = x->q + xb * QM_Q8_BLOCK;
    for (int b = 0; b < 16; b++)
        xg->q[b] = b < nb ? _mm256_loadu_si256((const __m256i *)(q + 32 * b)) : _mm256_setzero_si256();
    if (transposed) {
        transpose8(xg->q);
        transpose8(xg->q + 8);
    }
    if (dt == QM_DT_Q6_K)
        q32_of(xg);
    if (dt == QM_DT_Q6_K && !transposed)
        x8_of(xg);
    for (int h = 0; h < 2; h++) {
        const __m256i m = half_mask(nb, h);
        xg->dx[h] = _mm256_maskload_ps(x->d + xb + 8 * h, m);
        xg->s[h] = _mm256_maskload_epi32(x->s + xb + 8 * h, m);
        xg->sf[h] = _mm256_cvtepi32_ps(xg->s[h]);
    }
}

/* ---- the sums and contributions, per half ---- */

/* Decode: dword l = Σ of v[l]'s 8 dwords. */
QM_INLINE __m256i reduce_blocks(const __m256i v[8]) {
    const __m256i q0 = _mm256_hadd_epi32(_mm256_hadd_epi32(v[0], v[1]), _mm256_hadd_epi32(v[2], v[3]));
    const __m256i q1 = _mm256_hadd_epi32(_mm256_hadd_epi32(v[4], v[5]), _mm256_hadd_epi32(v[6], v[7]));
    return _mm256_add_epi32(_mm256_permute2x128_si256(q0, q1, 0x20), _mm256_permute2x128_si256(q0, q1, 0x31));
}

/* The 5-bit types' first two levels for dwords below 2^14 (4 products of at most 31 * 127):
 * packs + madd halve the vectors while the partial sums fit int16.
 * u[e] lane i (0-3) is the sum of v[4e + i]'s dwords 0-3, lane 4 + i of its dwords 4-7. */
QM_INLINE void reduce_groups(const __m256i v[8], __m256i u[2]) {
    const __m256i ones = _mm256_set1_epi16(1);
    __m256i w[4];
    for (int i = 0; i < 4; i++) w[i] = _mm256_madd_epi16(_mm256_packs_epi32(v[2 * i], v[2 * i + 1]), ones);
    u[0] = _mm256_madd_epi16(_mm256_packs_epi32(w[0], w[1]), ones);
    u[1] = _mm256_madd_epi16(_mm256_packs_epi32(w[2], w[3]), ones);
}

/* Decode, Q6_K: v[k] dword j = Σ c_i q_i over elements 4j..4j+3 of block k (codes 0..63, at most
 * 4 x 63 x 127 = 32004). Level 1 (packs, madd): w[i] = the sums of 8 elements of blocks 2i, 2i + 1
 * (low 128 bits: elements 0-7, 8-15 of each, high: 16-23, 24-31), less 32 x the activations' sums
 * (x8): Σ (c_i - 32) q_i, at most 8 x 32 x 127 = 32512 in int16. Level 2 (packs, madd by sp6):
 * the 16-element sums times their scales, u[j] lane i block 4j + i's group 0, lane 4 + i its group
 * 1 (at most 128 x 16 x 32 x 127 = 8323072); the groups added: dword l = block l's integer. */
QM_INLINE __m256i reduce_q6k(const __m256i v[8], const __m256i x8[4], const __m256i sp6[2]) {
    const __m256i ones = _mm256_set1_epi16(1);
    __m256i w[4], u[2];
    for (int i = 0; i < 4; i++)
        w[i] = _mm256_sub_epi32(_mm256_madd_epi16(_mm256_packs_epi32(v[2 * i], v[2 * i + 1]), ones), x8[i]);
    for (int j = 0; j < 2; j++) u[j] = _mm256_madd_epi16(_mm256_packs_epi32(w[2 * j], w[2 * j + 1]), sp6[j]);
    return _mm256_add_epi32(_mm256_permute2x128_si256(u[0], u[1], 0x20), _mm256_permute2x128_si256(u[0], u[1], 0x31));
}

/* Decode of the 4-bit types: the maddubs products of 8 blocks (int16 pairs, each at most
 * 2 x 15 x 127 = 3810) added straight in int16 by three hadds (a sum of 8 pairs, at most 30480,
 * still fits), then the two 128-bit halves widened and added: dword k = block k's sum. */
QM_INLINE __m256i reduce_pairs16(const __m256i p[8]) {
    const __m256i a = _mm256_hadd_epi16(_mm256_hadd_epi16(p[0], p[1]), _mm256_hadd_epi16(p[2], p[3]));
    const __m256i b = _mm256_hadd_epi16(_mm256_hadd_epi16(p[4], p[5]), _mm256_hadd_epi16(p[6], p[7]));
    const __m256i c = _mm256_hadd_epi16(a, b);
    return _mm256_add_epi32(_mm256_cvtepi16_epi32(_mm256_castsi256_si128(c)),
                            _mm256_cvtepi16_epi32(_mm256_extracti128_si256(c, 1)));
}

/* Decode: the exact integer sums (spec's, Q4_0/Q5_0 centred) of half h, as f32; the codes are
 * made and used at once (base, off: code_blk), the 4-bit types' maddubs pairs added by int16
 * hadds and a whole Q6_K superblock's codes made from shared loads. */
QM_INLINE __m256 sums_decode(qm_dtype dt, const uint8_t *base, int off, int nb, const wgroup *g, const xgroup *xg,
                             int h) {
    const int four_bit = dt == QM_DT_Q4_0 || dt == QM_DT_Q4_1 || dt == QM_DT_Q4_K;
    /* Q6_K, off 0 or 4: half h is two superblock halves */
    const int q6k_whole = dt == QM_DT_Q6_K && (off & 3) == 0 && nb >= 8 * h + 8;
    __m256i v[8], u[2], c6[8];
    if (q6k_whole)
        for (int q = 0; q < 2; q++) {
            const int u0 = off + 8 * h + 4 * q;
            qm_q6k_half_codes_avx2(base + (size_t)(u0 >> 3) * 210, (u0 & 7) >> 2, c6 + 4 * q);
        }
#pragma GCC unroll 8
    for (int k = 0; k < 8; k++) {
        const int b = 8 * h + k;
        if (b >= nb) {
            v[k] = _mm256_setzero_si256();
            continue;
        }
        __m256i c = q6k_whole ? c6[k] : code_blk(dt, base, off, h, k), xs = xg->q[b];
        if (dt == QM_DT_Q8_0) {
            xs = _mm256_sign_epi8(xs, c);
            c = _mm256_abs_epi8(c);
        }
        __m256i p = _mm256_maddubs_epi16(c, xs);
        v[k] = four_bit ? p : _mm256_madd_epi16(p, _mm256_set1_epi16(1));
    }
    if (four_bit) {
        __m256i is = reduce_pairs16(v);
        if (dt == QM_DT_Q4_0) is = _mm256_sub_epi32(is, _mm256_slli_epi32(xg->s[h], 3));
        return _mm256_cvtepi32_ps(is);
    }
    if (dt == QM_DT_Q8_0) return _mm256_cvtepi32_ps(reduce_blocks(v));
    if (dt == QM_DT_Q6_K) /* the block's integer, below 2^24: exact in f32 */
        return _mm256_cvtepi32_ps(reduce_q6k(v, xg->x8[h], g->sp6[h]));
    reduce_groups(v, u); /* the 5-bit types */
    __m256i is = _mm256_add_epi32(_mm256_permute2x128_si256(u[0], u[1], 0x20),
                                  _mm256_permute2x128_si256(u[0], u[1], 0x31));
    if (dt == QM_DT_Q5_0) is = _mm256_sub_epi32(is, _mm256_slli_epi32(xg->s[h], 4));
    return _mm256_cvtepi32_ps(is);
}

/* Prefill: transposed operands, products summed vertically (int16 while the bounds allow; Q6_K's
 * 4 products of codes 0..63, each pair at most 16002, wrap around in int16 before Σ 32 q comes off
 * at once, but the true Σ (w - 32) q, at most 4 x 8128, fits, and int16 adds wrap: it is exact); Q4_K and
 * Q5_K's sums come times the block's 6-bit scale, sc_j Σ, from the last madd (at most 63 x 62992,
 * exact in int32 and, below 2^24, in f32: the spec's (float)(sc_j Σ)), a multiply less a pair (w[h]:
 * k_scales16). */
QM_INLINE __m256i isum_prefill(qm_dtype dt, const wgroup *g, const xgroup *xg, int h) {
    const __m256i ones = _mm256_set1_epi16(1);
    const __m256i *wq = g->q + 8 * h, *xq = xg->q + 8 * h;
    if (dt == QM_DT_Q8_0) {
        __m256i acc = _mm256_setzero_si256();
        for (int i = 0; i < 8; i++) {
            const __m256i p = _mm256_maddubs_epi16(wq[i], _mm256_sign_epi8(xq[i], g->w[8 * h + i]));
            acc = _mm256_add_epi32(acc, _mm256_madd_epi16(p, ones));
        }
        return acc;
    }
    __m256i s[2];
    for (int e = 0; e < 2; e++) {
        s[e] = _mm256_setzero_si256();
        for (int i = 4 * e; i < 4 * e + 4; i++) {
            s[e] = _mm256_add_epi16(s[e], _mm256_maddubs_epi16(wq[i], xq[i]));
        }
        if (dt == QM_DT_Q6_K) s[e] = _mm256_sub_epi16(s[e], xg->q32s[2 * h + e]);
    }
    if (dt == QM_DT_Q6_K)
        return _mm256_add_epi32(_mm256_madd_epi16(s[0], g->w[2 * h]), _mm256_madd_epi16(s[1], g->w[2 * h + 1]));
    const __m256i m = dt == QM_DT_Q4_K || dt == QM_DT_Q5_K ? g->w[h] : ones;
    if (dt == QM_DT_Q4_0 || dt == QM_DT_Q4_1 || dt == QM_DT_Q4_K)
        return _mm256_madd_epi16(_mm256_add_epi16(s[0], s[1]), m);
    return _mm256_add_epi32(_mm256_madd_epi16(s[0], m), _mm256_madd_epi16(s[1], m));
}

QM_INLINE __m256 sums_prefill(qm_dtype dt, const wgroup *g, const xgroup *xg, int h) {
    __m256i is = isum_prefill(dt, g, xg, h);
    if (dt == QM_DT_Q4_0) is = _mm256_sub_epi32(is, _mm256_slli_epi32(xg->s[h], 3));
    if (dt == QM_DT_Q5_0) is = _mm256_sub_epi32(is, _mm256_slli_epi32(xg->s[h], 4));
    return _mm256_cvtepi32_ps(is);
}

/* The 8 contributions c_b of half h from its 8 exact integer sums f (as f32), those of Q4_K and
 * Q5_K already times their scale (sc_j Σ). */
QM_INLINE __m256 contrib_scaled(qm_dtype dt, const wgroup *g, const xgroup *xg, int h, __m256 f) {
    const __m256 c = _mm256_mul_ps(_mm256_mul_ps(g->d[h], xg->dx[h]), f);
    if (dt == QM_DT_Q4_1 || dt == QM_DT_Q5_1)
        return _mm256_add_ps(c, _mm256_mul_ps(_mm256_mul_ps(g->m[h], xg->dx[h]), xg->sf[h]));
    if (dt == QM_DT_Q4_K || dt == QM_DT_Q5_K)
        return _mm256_sub_ps(c, _mm256_mul_ps(_mm256_mul_ps(g->m[h], xg->dx[h]),
                                              _mm256_mul_ps(g->mn_f[h], xg->sf[h])));
    return c;
}

/* contrib_scaled from the plain sums Σ (decode's). */
QM_INLINE __m256 contrib(qm_dtype dt, const wgroup *g, const xgroup *xg, int h, __m256 f) {
    if (dt == QM_DT_Q4_K || dt == QM_DT_Q5_K) f = _mm256_mul_ps(g->sc_f[h], f);
    return contrib_scaled(dt, g, xg, h, f);
}

/* An empty asm that takes v in a register and gives it back. Without it GCC reassociates the
 * running int16 sums below into trees, keeps every maddubs product on the stack until the end and
 * loses what the blocking saves (the same integers either way). */
QM_INLINE void keep_in_register(__m256i *v) { __asm__("" : "+x"(*v)); }

QM_INLINE int four_bit_type(qm_dtype dt) { return dt == QM_DT_Q4_0 || dt == QM_DT_Q4_1 || dt == QM_DT_Q4_K; }

/* Prefill: tokens a whole-tile block takes at once, 2 for the 4-bit types and Q8_0 (PR x 2
 * running sums), 1 for the others (PR x 1 x their two). */
QM_INLINE int block_toks(qm_dtype dt) { return four_bit_type(dt) || dt == QM_DT_Q8_0 ? 2 : 1; }

/* One step of a running sum of isums_block, weight codes w (Q8_0: |w|, ws its signed codes)
 * against activations a: the int16 maddubs pairs added, or for Q8_0 (a pair up to 32512) the
 * pairs madd'ed and added in int32 with w's sign moved onto a, as isum_prefill. */
QM_INLINE __m256i sum_step(qm_dtype dt, __m256i s, __m256i w, __m256i ws, __m256i a) {
    if (dt == QM_DT_Q8_0)
        return _mm256_add_epi32(s, _mm256_madd_epi16(_mm256_maddubs_epi16(w, _mm256_sign_epi8(a, ws)),
                                                     _mm256_set1_epi16(1)));
    return _mm256_add_epi16(s, _mm256_maddubs_epi16(w, a));
}

/* Prefill, the PR rows of wg x tokens x0[0, TB) (TB = block_toks), half h: isum_prefill's
 * integers, is[r][t], with each weight vector loaded once for the TB tokens and each activation
 * vector once for the PR rows (isum_prefill loads both operands of every maddubs: 16 loads for 8,
 * and the loads, not the pipes, bounded the tile). The same int16 and int32 operations, so the
 * same integers: the 4-bit types' two int16 sums s[0] + s[1] are one running sum here (8 pairs of
 * at most 3810 fit, and int16 adds are exact while they fit), the others keep both (Q6_K's wrap
 * as isum_prefill's); Q8_0's int32 sums (sum_step) one running sum too. */
QM_INLINE void isums_block(qm_dtype dt, const wgroup *wg, const xgroup *x0, int h, __m256i is[PR][2]) {
    const int four_bit = four_bit_type(dt), one_sum = four_bit || dt == QM_DT_Q8_0, tb = block_toks(dt);
    const __m256i ones = _mm256_set1_epi16(1);
    __m256i s[PR][2][2];
#pragma GCC unroll 4
    for (int r = 0; r < PR; r++)
#pragma GCC unroll 2
        for (int t = 0; t < tb; t++) s[r][t][0] = s[r][t][1] = _mm256_setzero_si256();
#pragma GCC unroll 8
    for (int i = 0; i < 8; i++) {
        const int e = one_sum ? 0 : i >> 2;
        __m256i a[2];
#pragma GCC unroll 2
        for (int t = 0; t < tb; t++) a[t] = x0[t].q[8 * h + i];
#pragma GCC unroll 4
        for (int r = 0; r < PR; r++) {
            const __m256i w = wg[r].q[8 * h + i], ws = dt == QM_DT_Q8_0 ? wg[r].w[8 * h + i] : w;
#pragma GCC unroll 2
            for (int t = 0; t < tb; t++) {
                s[r][t][e] = sum_step(dt, s[r][t][e], w, ws, a[t]);
                keep_in_register(&s[r][t][e]);
            }
        }
    }
#pragma GCC unroll 4
    for (int r = 0; r < PR; r++)
#pragma GCC unroll 2
        for (int t = 0; t < tb; t++) {
            const xgroup *xg = &x0[t];
            __m256i v;
            if (dt == QM_DT_Q8_0)
                v = s[r][t][0];
            else if (dt == QM_DT_Q6_K)
                v = _mm256_add_epi32(
                    _mm256_madd_epi16(_mm256_sub_epi16(s[r][t][0], xg->q32s[2 * h]), wg[r].w[2 * h]),
                    _mm256_madd_epi16(_mm256_sub_epi16(s[r][t][1], xg->q32s[2 * h + 1]), wg[r].w[2 * h + 1]));
            else {
                const __m256i m = dt == QM_DT_Q4_K || dt == QM_DT_Q5_K ? wg[r].w[h] : ones;
                v = _mm256_madd_epi16(s[r][t][0], m);
                if (!four_bit) v = _mm256_add_epi32(v, _mm256_madd_epi16(s[r][t][1], m));
            }
            if (dt == QM_DT_Q4_0) v = _mm256_sub_epi32(v, _mm256_slli_epi32(xg->s[h], 3));
            if (dt == QM_DT_Q5_0) v = _mm256_sub_epi32(v, _mm256_slli_epi32(xg->s[h], 4));
            is[r][t] = v;
        }
}

/* prefill_contrib of the PR rows x tokens x0[0, TB), half h: c[r][t]. */
QM_INLINE void contribs_block(qm_dtype dt, const wgroup *wg, const xgroup *x0, int h, __m256 c[PR][2]) {
    __m256i is[PR][2];
    isums_block(dt, wg, x0, h, is);
    for (int r = 0; r < PR; r++)
        for (int t = 0; t < block_toks(dt); t++)
            c[r][t] = contrib_scaled(dt, &wg[r], &x0[t], h, _mm256_cvtepi32_ps(is[r][t]));
}

/* The contributions of half h of a transposed group (prefill's and the narrow views'). */
QM_INLINE __m256 prefill_contrib(qm_dtype dt, const wgroup *g, const xgroup *xg, int h) {
    return contrib_scaled(dt, g, xg, h, sums_prefill(dt, g, xg, h));
}

/* acc + c in the lanes of the first nb blocks of half h; the others keep their bits. */
QM_INLINE __m256 add_lanes(__m256 acc, __m256 c, int nb, int h) {
    if (nb >= 8 * h + 8) return _mm256_add_ps(acc, c);
    return _mm256_blendv_ps(acc, _mm256_add_ps(acc, c), _mm256_castsi256_ps(half_mask(nb, h)));
}

/* The halving tree 8, 4, 2, 1 of lanes 0-7 (a) and 8-15 (b). */
QM_INLINE float tree16(__m256 a, __m256 b) {
    const __m256 s8 = _mm256_add_ps(a, b);
    const __m128 s4 = _mm_add_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps(s8, 1));
    const __m128 s2 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
    return _mm_cvtss_f32(_mm_add_ss(s2, _mm_shuffle_ps(s2, s2, _MM_SHUFFLE(1, 1, 1, 1))));
}

/* ---- tiles ---- */

typedef struct {
    const uint8_t *row0; /* the first row's first block */
    size_t stride;
    int sb0, nblk;       /* view block 0 = 32-block sb0 of the row; nblk blocks */
    int whole;           /* the view is whole rows: the next rows follow these in memory */
} wrows;

/* The next pass's DR rows, prefetched a slice per 16-block group (see qdot_avx512.c): the slice's
 * bytes, 0 where the rows do not follow in memory. */
QM_INLINE size_t prefetch_step(const wrows *w) {
    const size_t ngroups = (size_t)(w->nblk + 15) / 16;
    return w->whole ? ((size_t)DR * w->stride + ngroups - 1) / ngroups : 0;
}

/* load_x of a group of nb blocks, with a literal 16 for a full one: no lane tests. */
QM_INLINE void load_group(qm_dtype dt, const qm_q8act *x, int t, int b0, int nb, int transposed, xgroup *xg) {
    if (nb == 16) load_x(dt, x, t, b0, 16, transposed, xg);
    else load_x(dt, x, t, b0, nb, transposed, xg);
}

/* Prefill: the transposed groups of a token tile (tokens [t0, t0 + nt), nt <= PT), made once for
 * all its row tiles: group g of token t at xc[g * PT + t]. Transposing a group costs about as
 * much as a third of its sums for one row, and a tile of PR rows used to redo it for every tile.
 * NULL when out of memory: the tiles then load each group themselves (xgroup_of), same bits. */
static xgroup *xcache_make(qm_dtype dt, const qm_q8act *x, int t0, int nt, int nblk) {
    const int ng = (nblk + 15) / 16;
    xgroup *xc = aligned_alloc(32, (size_t)ng * PT * sizeof(xgroup));
    if (!xc) return NULL;
    for (int g = 0; g < ng; g++)
        for (int t = 0; t < nt; t++)
            load_group(dt, x, t0 + t, 16 * g, nblk - 16 * g < 16 ? nblk - 16 * g : 16, 1, &xc[(size_t)g * PT + t]);
    return xc;
}

/* Decode: the one token's groups (not transposed), made once per call for all the tiles of DR
 * rows, which used to make each group again; NULL when out of memory (the tiles then make their
 * own, same bits). xcache_make's twin with a literal token and layout: one maker for both
 * (stride and transposition as arguments) measured slower in the Q6_K decode (0.046 -> 0.053 ns
 * a weight, hot), the compiler's code for the tiles changing with it. */
static xgroup *xcache_decode(qm_dtype dt, const qm_q8act *x, int nblk) {
    const int ng = (nblk + 15) / 16;
    xgroup *xc = aligned_alloc(32, (size_t)ng * sizeof(xgroup));
    if (!xc) return NULL;
    for (int g = 0; g < ng; g++) load_group(dt, x, 0, 16 * g, nblk - 16 * g < 16 ? nblk - 16 * g : 16, 0, &xc[g]);
    return xc;
}

/* Decode: the group at block b0, from the cache or made into tmp. */
QM_INLINE const xgroup *xdecode_of(qm_dtype dt, const xgroup *xd, const qm_q8act *x, int b0, int nb, xgroup *tmp) {
    if (xd) return &xd[b0 / 16];
    load_group(dt, x, 0, b0, nb, 0, tmp);
    return tmp;
}

/* Token t0 + t's transposed group at block b0: from the cache, or loaded into tmp. */
QM_INLINE const xgroup *xgroup_of(qm_dtype dt, const xgroup *xc, const qm_q8act *x, int t0, int t, int b0, int nb,
                                  xgroup *tmp) {
    if (xc) return &xc[(size_t)(b0 / 16) * PT + (size_t)t];
    load_group(dt, x, t0 + t, b0, nb, 1, tmp);
    return tmp;
}

QM_INLINE void store(const __m256 acc[2], const float *bias, int r, float *y) {
    const float d = tree16(acc[0], acc[1]);
    *y = bias ? d + bias[r] : d;
}

/* One token, rows [0, nr) (nr <= DR): each row's codes made and used at once. off: the view's
 * first sub-block % 8 (K-quants; 0 otherwise), a literal 0 where it is, for constant shifts. */
QM_INLINE void tile_decode(qm_dtype dt, const wrows *w, int off, int nr, const qm_q8act *x, const xgroup *xd,
                           const float *bias, float *y) {
    const int k_quant = qm_dtype_block(dt) != 32;
    const size_t bb = qm_dtype_block_bytes(dt);
    __m256 acc[DR][2];
    for (int r = 0; r < DR; r++) acc[r][0] = acc[r][1] = _mm256_setzero_ps();
    /* the next pass's rows, a slice per group (see qdot_avx512.c) */
    const char *pf = (const char *)w->row0 + (size_t)DR * w->stride;
    const size_t pf_step = prefetch_step(w);
    for (int b0 = 0; b0 < w->nblk; b0 += 16) {
        const int nb = w->nblk - b0 < 16 ? w->nblk - b0 : 16, sb = w->sb0 + b0;
        for (size_t k = 0; k < pf_step; k += 64) _mm_prefetch(pf + k, _MM_HINT_T0);
        pf += pf_step;
        xgroup tmp;
        const xgroup *xg = xdecode_of(dt, xd, x, b0, nb, &tmp);
        for (int r = 0; r < nr; r++) {
            const uint8_t *row = w->row0 + (size_t)r * w->stride;
            const uint8_t *base = row + (size_t)(k_quant ? sb >> 3 : sb) * bb;
            wgroup g;
            if (nb == 16) { /* literal halves and block count: straight-line code */
                scales(dt, row, sb, off, 16, 0, &g);
                for (int h = 0; h < 2; h++)
                    acc[r][h] = _mm256_add_ps(acc[r][h], contrib(dt, &g, xg, h, sums_decode(dt, base, off, 16, &g, xg, h)));
                continue;
            }
            scales(dt, row, sb, off, nb, 0, &g);
            for (int h = 0; h < 2 && 8 * h < nb; h++) {
                const __m256 f = sums_decode(dt, base, off, nb, &g, xg, h);
                acc[r][h] = add_lanes(acc[r][h], contrib(dt, &g, xg, h, f), nb, h);
            }
        }
    }
    for (int r = 0; r < nr; r++) store(acc[r], bias, r, y + r);
}

/* ---- decode, Q4_K: eight rows side by side ----
 * One lane a row instead of one lane a block: a superblock's 32-byte code chunks of 8 rows are
 * transposed (8 x 8 dwords), so that dword k of every row (elements 4k .. 4k + 3 of two
 * sub-blocks, low and high nibbles) sits in one vector against the token's 4 activations of
 * those elements, broadcast; the products add up vertically and each lane ends with its row's
 * exact sub-block sum, with no horizontal add (decode's int16 hadds took half a superblock's
 * issue on Zen 4). The scales are unpacked for 8 rows at once from the superblocks' heads, also
 * transposed. Each lane then takes the spec's f32 operations for its row, contribution c_b into
 * acc[b % 16] in block order, and the halving tree: the same bits as tile_decode. One thread,
 * Zen 4, 64 x 1536 (in the L1), best of 7: 0.0328 -> 0.0274 ns a weight; the 1.5B's fast decode
 * with AVX2 (2 threads, alternated six times): 29.2-30.5 -> 29.8-32.4 tok/s, down_proj 9.6-9.9 ->
 * 8.9-9.4 ms a token, gate_up 13.3-14.1 -> 12.4-13.9. */
#define Q4K_ROWS 8

/* The heads of 8 rows' Q4_K superblocks (blk[r]): d, dmin and the 8 scales and mins, lane r. */
QM_INLINE void q4k_heads8(const uint8_t *const blk[Q4K_ROWS], __m256 *d, __m256 *dmin, __m256 sc[8], __m256 mn[8]) {
    __m256i v[4], t[4];
    for (int i = 0; i < 4; i++) v[i] = _mm256_loadu2_m128i((const __m128i *)blk[i + 4], (const __m128i *)blk[i]);
    t[0] = _mm256_unpacklo_epi32(v[0], v[1]);
    t[1] = _mm256_unpackhi_epi32(v[0], v[1]);
    t[2] = _mm256_unpacklo_epi32(v[2], v[3]);
    t[3] = _mm256_unpackhi_epi32(v[2], v[3]);
    /* dword i of the head, lane r: D0 d | dmin << 16, D1 s0-s3, D2 s4-s7, D3 s8-s11 */
    const __m256i D0 = _mm256_unpacklo_epi64(t[0], t[2]), D1 = _mm256_unpackhi_epi64(t[0], t[2]);
    const __m256i D2 = _mm256_unpacklo_epi64(t[1], t[3]), D3 = _mm256_unpackhi_epi64(t[1], t[3]);
    const __m256i words = _mm256_shuffle_epi8(
        D0, _mm256_setr_epi8(0, 1, 4, 5, 8, 9, 12, 13, 2, 3, 6, 7, 10, 11, 14, 15, /* low 128 bits: rows 0-3 */
                             0, 1, 4, 5, 8, 9, 12, 13, 2, 3, 6, 7, 10, 11, 14, 15));
    const __m256i dd = _mm256_permute4x64_epi64(words, 0xd8); /* d of rows 0-7 | dmin of rows 0-7 */
    *d = _mm256_cvtph_ps(_mm256_castsi256_si128(dd));
    *dmin = _mm256_cvtph_ps(_mm256_extracti128_si256(dd, 1));
    const __m256i m6 = _mm256_set1_epi32(63), m4 = _mm256_set1_epi32(15), m30 = _mm256_set1_epi32(0x30);
    /* qm_quant_k_scales: j < 4: sc = s[j] & 63, mn = s[j + 4] & 63; j = 4 + i: sc = (s[8 + i] & 15) |
     * (s[i] >> 6) << 4, mn = (s[8 + i] >> 4) | (s[4 + i] >> 6) << 4 */
#pragma GCC unroll 4
    for (int i = 0; i < 4; i++) {
        const __m128i sh = _mm_cvtsi32_si128(8 * i), sh2 = _mm_cvtsi32_si128(8 * i + 2);
        const __m128i sh4 = _mm_cvtsi32_si128(8 * i + 4);
        sc[i] = _mm256_cvtepi32_ps(_mm256_and_si256(_mm256_srl_epi32(D1, sh), m6));
        mn[i] = _mm256_cvtepi32_ps(_mm256_and_si256(_mm256_srl_epi32(D2, sh), m6));
        sc[4 + i] = _mm256_cvtepi32_ps(_mm256_or_si256(_mm256_and_si256(_mm256_srl_epi32(D3, sh), m4),
                                                       _mm256_and_si256(_mm256_srl_epi32(D1, sh2), m30)));
        mn[4 + i] = _mm256_cvtepi32_ps(_mm256_or_si256(_mm256_and_si256(_mm256_srl_epi32(D3, sh4), m4),
                                                       _mm256_and_si256(_mm256_srl_epi32(D2, sh2), m30)));
    }
}

/* The f32 contribution of a sub-block to 8 rows (lane r) from its exact integer sums Σ (as int16
 * pairs p), against view block b of the token (the spec's operations, lane by lane). */
QM_INLINE __m256 q4k_contrib8(__m256i p, const qm_q8act *x, int b, __m256 d, __m256 dmin, __m256 sc, __m256 mn) {
    const __m256 f = _mm256_cvtepi32_ps(_mm256_madd_epi16(p, _mm256_set1_epi16(1)));
    const __m256 dx = _mm256_set1_ps(x->d[b]), sf = _mm256_cvtepi32_ps(_mm256_set1_epi32(x->s[b]));
    return _mm256_sub_ps(_mm256_mul_ps(_mm256_mul_ps(d, dx), _mm256_mul_ps(sc, f)),
                         _mm256_mul_ps(_mm256_mul_ps(dmin, dx), _mm256_mul_ps(mn, sf)));
}

/* Sub-blocks j, j + 1 (j = 8 S + 2 q even: the low and high nibbles of a chunk) of 8 rows whose
 * chunks are at c[r], against view blocks b = j, j + 1 of the token: out[e] = c_{b + e}, lane r. */
QM_INLINE void q4k_pair8(const uint8_t *const c[Q4K_ROWS], const qm_q8act *x, int b, __m256 d, __m256 dmin,
                         const __m256 *sc, const __m256 *mn, __m256 out[2]) {
    const __m256i m4 = _mm256_set1_epi8(15);
    __m256i t[8];
    for (int r = 0; r < Q4K_ROWS; r++) t[r] = _mm256_loadu_si256((const __m256i *)c[r]);
    transpose8(t); /* t[k] lane r: dword k of row r's chunk */
    const uint8_t *x0 = (const uint8_t *)(x->q + (size_t)b * QM_Q8_BLOCK), *x1 = x0 + QM_Q8_BLOCK;
    __m256i p0 = _mm256_setzero_si256(), p1 = _mm256_setzero_si256(); /* int16: 8 pairs of at most 2 x 15 x 127 */
#pragma GCC unroll 8
    for (int k = 0; k < 8; k++) {
        const __m256i lo = _mm256_and_si256(t[k], m4), hi = _mm256_and_si256(_mm256_srli_epi16(t[k], 4), m4);
        p0 = _mm256_add_epi16(p0, _mm256_maddubs_epi16(lo, _mm256_set1_epi32((int)qm_quant_rd32(x0 + 4 * k))));
        p1 = _mm256_add_epi16(p1, _mm256_maddubs_epi16(hi, _mm256_set1_epi32((int)qm_quant_rd32(x1 + 4 * k))));
    }
    out[0] = q4k_contrib8(p0, x, b, d, dmin, sc[0], mn[0]);
    out[1] = q4k_contrib8(p1, x, b + 1, d, dmin, sc[1], mn[1]);
}

/* Superblock S of 8 rows (row0: row 0's superblock that holds the view's first column, rows
 * stride apart), its chunks [q0, q1) (the view's part of it: chunk q is view blocks b = 8 S + 2 q -
 * off, b + 1, off = the view's first block inside its superblock): with part, its leaves as
 * tile_decode_b64 makes them, block k of row r at part[k pstride + r]: bpb 2, the leaves of 64
 * columns, (+0 + c_2k) + (+0 + c_2k+1); bpb 4 (o_proj's heads of 128; off % 4 == 0), those of 128,
 * (a_4m + a_4m+2) + (a_4m+1 + a_4m+3) with a_b = +0 + c_b; else acc[b % 16] += c_b. */
QM_INLINE void q4k_super8(const uint8_t *row0, size_t stride, int S, int q0, int q1, int off, const qm_q8act *x,
                          __m256 *acc, float *part, size_t pstride, int bpb) {
    const uint8_t *blk[Q4K_ROWS];
    for (int r = 0; r < Q4K_ROWS; r++) blk[r] = row0 + (size_t)r * stride + (size_t)S * 144;
    __m256 d, dmin, sc[8], mn[8], first[2] = {_mm256_setzero_ps(), _mm256_setzero_ps()};
    q4k_heads8(blk, &d, &dmin, sc, mn);
    for (int q = q0; q < q1; q++) {
        const uint8_t *c[Q4K_ROWS];
        for (int r = 0; r < Q4K_ROWS; r++) c[r] = blk[r] + 16 + 32 * q;
        const int b = 8 * S + 2 * q - off;
        __m256 cb[2];
        q4k_pair8(c, x, b, d, dmin, sc + 2 * q, mn + 2 * q, cb);
        const __m256 z = _mm256_setzero_ps();
        if (part && bpb == 2) { /* a 64-column leaf: (+0 + c_2k) + (+0 + c_2k+1) */
            _mm256_storeu_ps(part + (size_t)(b / 2) * pstride, _mm256_add_ps(_mm256_add_ps(z, cb[0]), _mm256_add_ps(z, cb[1])));
            continue;
        }
        if (part && !(q & 1)) { /* the first half of a 128-column leaf, kept for the pair after it */
            first[0] = cb[0];
            first[1] = cb[1];
            continue;
        }
        if (part) { /* (a_4m + a_4m+2) + (a_4m+1 + a_4m+3), a_b = +0 + c_b */
            const __m256 e = _mm256_add_ps(_mm256_add_ps(z, first[0]), _mm256_add_ps(z, cb[0]));
            const __m256 o = _mm256_add_ps(_mm256_add_ps(z, first[1]), _mm256_add_ps(z, cb[1]));
            _mm256_storeu_ps(part + (size_t)(b / 4) * pstride, _mm256_add_ps(e, o));
            continue;
        }
        acc[b & 15] = _mm256_add_ps(acc[b & 15], cb[0]);
        acc[(b + 1) & 15] = _mm256_add_ps(acc[(b + 1) & 15], cb[1]);
    }
}

/* The halving tree of 8 rows' 16 accumulators (lane r: row r; acc[l]: blocks b % 16 == l), and
 * the bias: y[0 .. 7], tile_decode's store for 8 rows at once. */
QM_INLINE void store_rows8(__m256 acc[16], const float *bias, float *y) {
    for (int h = 8; h >= 1; h /= 2)
        for (int l = 0; l < h; l++) acc[l] = _mm256_add_ps(acc[l], acc[l + h]);
    _mm256_storeu_ps(y, bias ? _mm256_add_ps(acc[0], _mm256_loadu_ps(bias)) : acc[0]);
}

/* Q4K_PFG groups of 8 rows ahead, into the L2 (a slice a superblock): from DRAM, one thread, 65536
 * x 1536, the next group into the L1 (the decode tiles' way) streamed at 12.5 GB/s against 17 for
 * tile_decode; two groups ahead into the L2 at 17; rows of 8960 columns 17 against 12. */
#define Q4K_PFG 2

/* One token, 8 rows of a Q4_K view whose first and last columns lie on 64-column chunks (w->sb0 % 2
 * == 0, w->nblk % 2 == 0; bpb 4: % 4): y[0 .. 7], or with part the rows' leaves of 32 bpb columns
 * (q4k_super8). A row shard (w->whole 0: a device's columns of down_proj, rows far apart) prefetches
 * each superblock of the rows Q4K_PFG groups ahead as it goes; whole rows, a share of their bytes.
 * The shards of a 1x2 mesh's down_proj (8960 columns: 17.5 superblocks each) took the 32-row tiles
 * of tile_decode_b64 before, with every other type: 1.5B, --activations q8 --isa avx2, 1x2 (AMD EPYC
 * Zen 4, 2026-12-07): down_proj 11.1-11.7 ms a step, 9.5-9.9 on 1x1. */
QM_INLINE void q4k_decode8(const wrows *w, const qm_q8act *x, const float *bias, float *y, float *part,
                           size_t pstride, int bpb) {
    __m256 acc[16];
    for (int l = 0; l < 16; l++) acc[l] = _mm256_setzero_ps();
    const int off = w->sb0 & 7, nsup = (off + w->nblk + 7) / 8;
    const uint8_t *row0 = w->row0 + (size_t)(w->sb0 >> 3) * 144;
    const char *pf = (const char *)row0 + (size_t)Q4K_ROWS * Q4K_PFG * w->stride;
    const size_t pf_step = w->whole ? ((size_t)Q4K_ROWS * w->stride + (size_t)nsup - 1) / (size_t)nsup : 0;
    for (int S = 0; S < nsup; S++) {
        if (w->whole) {
            for (size_t k = 0; k < pf_step; k += 64) _mm_prefetch(pf + k, _MM_HINT_T1);
            pf += pf_step;
        } else
            for (int r = 0; r < Q4K_ROWS; r++) { /* the superblock's 144 bytes: 3 lines at most */
                const char *p = pf + (size_t)r * w->stride + (size_t)S * 144;
                _mm_prefetch(p, _MM_HINT_T1);
                _mm_prefetch(p + 64, _MM_HINT_T1);
                _mm_prefetch(p + 143, _MM_HINT_T1);
            }
        const int q0 = S == 0 ? off / 2 : 0, end = off + w->nblk - 8 * S, q1 = end < 8 ? end / 2 : 4;
        if (q0 == 0 && q1 == 4) q4k_super8(row0, w->stride, S, 0, 4, off, x, acc, part, pstride, bpb);
        else q4k_super8(row0, w->stride, S, q0, q1, off, x, acc, part, pstride, bpb);
    }
    if (!part) store_rows8(acc, bias, y);
}

/* ---- decode, Q5_0: eight rows side by side ----
 * q4k_decode8's way for Q5_0 (the real 0.5B's gate_up, q, k and o_proj): lane r is row r. Per
 * block, the 8 rows' 16 code bytes are transposed (dword k of row r in lane r of t[k]: the low
 * nibbles are elements 4k .. 4k + 3, the high ones 16 + 4k .. 16 + 4k + 3) and their fifth bits
 * spread from the rows' qh words (read into lane r); maddubs against the token's 4 activations of
 * those elements, broadcast, adds up vertically: each lane ends with its row's exact block sum
 * (int16 while 4 pairs of at most 2 x 31 x 127 fit), less 16 s. Then the spec's f32 operations
 * lane by lane, c_b into acc[b % 16] in block order and the halving tree: tile_decode's bits. The
 * horizontal reduction of tile_decode (packs and madds, a third of a block's vector operations)
 * is gone, for a transposition shared by 8 rows. */
#define Q50_ROWS Q4K_ROWS
#define Q50_BYTES 22 /* a block: d (f16), qh (4 bytes), qs (16) */

/* Byte j of each dword = 16 where bit 4 (k % 2) + j of byte `byte` of that dword of h is set. */
QM_INLINE __m256i q50_bit4(__m256i h, int byte, int k) {
    const __m256i sel = _mm256_add_epi8(_mm256_set1_epi8((char)byte),
                                        _mm256_setr_epi8(0, 0, 0, 0, 4, 4, 4, 4, 8, 8, 8, 8, 12, 12, 12, 12,
                                                         0, 0, 0, 0, 4, 4, 4, 4, 8, 8, 8, 8, 12, 12, 12, 12));
    const __m256i bits = _mm256_set1_epi32((int)(0x08040201u << (4 * (k & 1))));
    const __m256i v = _mm256_and_si256(_mm256_shuffle_epi8(h, sel), bits);
    return _mm256_and_si256(_mm256_cmpeq_epi8(v, bits), _mm256_set1_epi8(16));
}

/* View block b of 8 rows whose blocks are at blk[r]: c_b, lane r. */
QM_INLINE __m256 q50_block8(const uint8_t *const blk[Q50_ROWS], const qm_q8act *x, int b) {
    __m256i v[4], t[4];
    for (int i = 0; i < 4; i++) v[i] = _mm256_loadu2_m128i((const __m128i *)(blk[i + 4] + 6), (const __m128i *)(blk[i] + 6));
    const __m256i t0 = _mm256_unpacklo_epi32(v[0], v[1]), t1 = _mm256_unpackhi_epi32(v[0], v[1]);
    const __m256i t2 = _mm256_unpacklo_epi32(v[2], v[3]), t3 = _mm256_unpackhi_epi32(v[2], v[3]);
    t[0] = _mm256_unpacklo_epi64(t0, t2); /* lane r: dword k of row r's codes */
    t[1] = _mm256_unpackhi_epi64(t0, t2);
    t[2] = _mm256_unpacklo_epi64(t1, t3);
    t[3] = _mm256_unpackhi_epi64(t1, t3);
    const __m256i h = _mm256_setr_epi32((int)qm_quant_rd32(blk[0] + 2), (int)qm_quant_rd32(blk[1] + 2),
                                        (int)qm_quant_rd32(blk[2] + 2), (int)qm_quant_rd32(blk[3] + 2),
                                        (int)qm_quant_rd32(blk[4] + 2), (int)qm_quant_rd32(blk[5] + 2),
                                        (int)qm_quant_rd32(blk[6] + 2), (int)qm_quant_rd32(blk[7] + 2));
    const uint8_t *xq = (const uint8_t *)(x->q + (size_t)b * QM_Q8_BLOCK);
    const __m256i m4 = _mm256_set1_epi8(15);
    __m256i plo = _mm256_setzero_si256(), phi = _mm256_setzero_si256(); /* int16: 4 pairs of at most 7874 */
#pragma GCC unroll 4
    for (int k = 0; k < 4; k++) {
        const __m256i lo = _mm256_or_si256(_mm256_and_si256(t[k], m4), q50_bit4(h, k >> 1, k));
        const __m256i hi = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(t[k], 4), m4), q50_bit4(h, 2 + (k >> 1), k));
        plo = _mm256_add_epi16(plo, _mm256_maddubs_epi16(lo, _mm256_set1_epi32((int)qm_quant_rd32(xq + 4 * k))));
        phi = _mm256_add_epi16(phi, _mm256_maddubs_epi16(hi, _mm256_set1_epi32((int)qm_quant_rd32(xq + 16 + 4 * k))));
    }
    const __m256i ones = _mm256_set1_epi16(1);
    __m256i is = _mm256_add_epi32(_mm256_madd_epi16(plo, ones), _mm256_madd_epi16(phi, ones));
    is = _mm256_sub_epi32(is, _mm256_set1_epi32(16 * x->s[b]));
    uint64_t dq[2] = {0, 0};
    for (int r = 0; r < Q50_ROWS; r++) dq[r >> 2] |= (uint64_t)qm_quant_rd16(blk[r]) << (16 * (r & 3));
    const __m256 d = _mm256_cvtph_ps(_mm_set_epi64x((long long)dq[1], (long long)dq[0]));
    return _mm256_mul_ps(_mm256_mul_ps(d, _mm256_set1_ps(x->d[b])), _mm256_cvtepi32_ps(is));
}

/* One token, 8 rows of a Q5_0 view: y[0 .. 7], or with part the rows' leaves of 32 bpb columns
 * (bpb 2 or 4, nblk a multiple of bpb) as q4k_super8 makes them: leaf k of row r at
 * part[k pstride + r]. Whole rows prefetch Q4K_PFG groups ahead, a share of their bytes a block
 * (q4k_decode8's way); a row shard each row's block of the group that far ahead. */
QM_INLINE void q50_decode8(const wrows *w, const qm_q8act *x, const float *bias, float *y, float *part,
                           size_t pstride, int bpb) {
    __m256 acc[16], a[4];
    for (int l = 0; l < 16; l++) acc[l] = _mm256_setzero_ps();
    const uint8_t *row0 = w->row0 + (size_t)w->sb0 * Q50_BYTES;
    const char *pf = (const char *)row0 + (size_t)Q50_ROWS * Q4K_PFG * w->stride;
    const size_t pf_step = w->whole ? ((size_t)Q50_ROWS * w->stride + (size_t)w->nblk - 1) / (size_t)w->nblk : 0;
    const __m256 z = _mm256_setzero_ps();
    for (int b = 0; b < w->nblk; b++) {
        if (w->whole) {
            for (size_t k = 0; k < pf_step; k += 64) _mm_prefetch(pf + k, _MM_HINT_T1);
            pf += pf_step;
        } else
            for (int r = 0; r < Q50_ROWS; r++) _mm_prefetch(pf + (size_t)r * w->stride + (size_t)b * Q50_BYTES, _MM_HINT_T1);
        const uint8_t *blk[Q50_ROWS];
        for (int r = 0; r < Q50_ROWS; r++) blk[r] = row0 + (size_t)r * w->stride + (size_t)b * Q50_BYTES;
        const __m256 c = q50_block8(blk, x, b);
        if (!part) {
            acc[b & 15] = _mm256_add_ps(acc[b & 15], c);
            continue;
        }
        a[b % bpb] = _mm256_add_ps(z, c); /* a_b = +0 + c_b */
        if (b % bpb != bpb - 1) continue;
        const __m256 leaf = bpb == 2 ? _mm256_add_ps(a[0], a[1]) /* a_2k + a_2k+1 */
                                     : _mm256_add_ps(_mm256_add_ps(a[0], a[2]), _mm256_add_ps(a[1], a[3]));
        _mm256_storeu_ps(part + (size_t)(b / bpb) * pstride, leaf);
    }
    if (!part) store_rows8(acc, bias, y);
}

/* The eight-row tiles (Q4_K: q4k_decode8, Q5_0: q50_decode8) for the column-parallel calls
 * (y[0 .. 7]) and the row-parallel ones (the leaves of 32 bpb columns into part). */
static void rows8(qm_dtype dt, const wrows *w, const qm_q8act *x, const float *bias, float *y) {
    if (dt == QM_DT_Q4_K) q4k_decode8(w, x, bias, y, NULL, 0, 2);
    else q50_decode8(w, x, bias, y, NULL, 0, 2);
}
static void leaves8(qm_dtype dt, const wrows *w, const qm_q8act *x, float *part, size_t pstride, int bpb) {
    if (dt == QM_DT_Q4_K && bpb == 4) q4k_decode8(w, x, NULL, NULL, part, pstride, 4);
    else if (dt == QM_DT_Q4_K) q4k_decode8(w, x, NULL, NULL, part, pstride, 2);
    else if (bpb == 4) q50_decode8(w, x, NULL, NULL, part, pstride, 4);
    else q50_decode8(w, x, NULL, NULL, part, pstride, 2);
}

/* The group of nb blocks at view block b0 of rows [0, nr), unpacked for prefill. */
QM_INLINE void unpack_rows(qm_dtype dt, const wrows *w, int nr, int b0, int nb, wgroup *wg) {
    for (int r = 0; r < nr; r++) {
        if (nb == 16) unpack_prefill(dt, w->row0 + (size_t)r * w->stride, w->sb0 + b0, 16, &wg[r]);
        else unpack_prefill(dt, w->row0 + (size_t)r * w->stride, w->sb0 + b0, nb, &wg[r]);
    }
}

/* Prefill: the group after the one at view block b0, rows [0, nr), into the L1 while b0's is
 * used, or past the last group the first group of the next PR rows (there or not: a prefetch
 * does not fault). A tile waited for its rows from memory at every group's first load: in the
 * 1.5B's fast prefill (--isa avx2) about a tenth of the matmuls' samples sat on those loads. */
QM_INLINE void prefetch_next_group(qm_dtype dt, const wrows *w, int nr, int b0) {
    const size_t bb = qm_dtype_block_bytes(dt);
    const int k_quant = qm_dtype_block(dt) != 32, nxt = b0 + 16 < w->nblk;
    const int b = nxt ? b0 + 16 : 0, nb = w->nblk - b < 16 ? w->nblk - b : 16;
    const int first = w->sb0 + b;
    const size_t begin = (size_t)(k_quant ? first >> 3 : first) * bb;
    const size_t end = begin + qm_rowpar_group_bytes(dt, k_quant ? first & 7 : 0, nb);
    const uintptr_t row = (uintptr_t)w->row0 + (nxt ? 0 : (size_t)PR * w->stride); /* maybe past the view */
    for (int r = 0; r < (nxt ? nr : PR); r++)
        for (size_t off = begin & ~(size_t)63; off < end; off += 64)
            _mm_prefetch((const char *)(row + (size_t)r * w->stride + off), _MM_HINT_T0);
}

/* Rows [0, nr) x tokens [t0, t0 + nt) (nr <= PR, nt <= PT); y points at output (t0, row 0). */
QM_INLINE void tile_prefill(qm_dtype dt, const wrows *w, int nr, const qm_q8act *x, const xgroup *xc, int t0, int nt,
                            const float *bias, float *y, size_t ldy) {
    __m256 acc[PR][PT][2];
    wgroup wg[PR];
    for (int r = 0; r < nr; r++)
        for (int t = 0; t < nt; t++) acc[r][t][0] = acc[r][t][1] = _mm256_setzero_ps();
    for (int b0 = 0; b0 < w->nblk; b0 += 16) {
        const int nb = w->nblk - b0 < 16 ? w->nblk - b0 : 16;
        unpack_rows(dt, w, nr, b0, nb, wg);
        prefetch_next_group(dt, w, nr, b0);
        int t = 0;
        if (nr == PR && xc)
            for (; t + block_toks(dt) <= nt; t += block_toks(dt)) {
                const xgroup *x0 = &xc[(size_t)(b0 / 16) * PT + (size_t)t];
                for (int h = 0; h < 2 && 8 * h < nb; h++) {
                    __m256 c[PR][2];
                    contribs_block(dt, wg, x0, h, c);
                    for (int r = 0; r < PR; r++)
                        for (int u = 0; u < block_toks(dt); u++)
                            acc[r][t + u][h] = add_lanes(acc[r][t + u][h], c[r][u], nb, h);
                }
            }
        for (; t < nt; t++) {
            xgroup tmp;
            const xgroup *xg = xgroup_of(dt, xc, x, t0, t, b0, nb, &tmp);
            for (int r = 0; r < nr; r++)
                for (int h = 0; h < 2 && 8 * h < nb; h++)
                    acc[r][t][h] = add_lanes(acc[r][t][h],
                                             prefill_contrib(dt, &wg[r], xg, h), nb, h);
        }
    }
    for (int r = 0; r < nr; r++)
        for (int t = 0; t < nt; t++) store(acc[r][t], bias, r, y + (size_t)t * ldy + (size_t)r);
}

/* ---- narrow views (nblk <= 8): several rows per vector ----
 * As in qdot_avx512.c: a group's 16 items are (row j, block b) pairs, item i = b R + j (here in
 * lane i % 8 of half i / 8), R = 16 / P rows, P the power of two >= nblk. Each lane's c is the
 * same f32 operations on the same exact integer sum as in a 16-block group; a row's accumulator
 * is acc[b] = +0 + c_b for b < nblk and +0 elsewhere, the tree's steps w >= P are no-ops (adding
 * +0 to lanes that are not -0), and its steps w < P add block b + w to block b: the high half of
 * the item vector onto its low half, log2 P times. */
#define SG 4 /* narrow views: row groups per tile */

QM_INLINE __m256i code_one(qm_dtype dt, const uint8_t *row, int u) {
    if (qm_dtype_block(dt) == 32) return code_32(dt, row + (size_t)u * qm_dtype_block_bytes(dt));
    return code_k(dt, row, u);
}

/* Row group: rows [0, nr) (nr <= R) of w, blocks [0, nblk), as items; codes transposed. */
QM_INLINE void unpack_narrow(qm_dtype dt, const wrows *w, int lg, int nr, wgroup *g) {
    const int R = 1 << lg;
    float d[16], m[16], scf[16], mnf[16];
    int w6[2][16];
    for (int i = 0; i < 16; i++) {
        const int b = i >> lg, j = i & (R - 1), u = w->sb0 + b;
        const uint8_t *row = w->row0 + (size_t)j * w->stride;
        d[i] = m[i] = scf[i] = mnf[i] = 0.0f;
        w6[0][i] = w6[1][i] = 0;
        if (b >= w->nblk || j >= nr) {
            g->q[i] = _mm256_setzero_si256();
            continue;
        }
        g->q[i] = code_one(dt, row, u);
        if (qm_dtype_block(dt) == 32) {
            const uint8_t *blk = row + (size_t)u * qm_dtype_block_bytes(dt);
            d[i] = _cvtsh_ss(qm_quant_rd16(blk));
            if (dt == QM_DT_Q4_1 || dt == QM_DT_Q5_1) m[i] = _cvtsh_ss(qm_quant_rd16(blk + 2));
            continue;
        }
        const uint8_t *blk = row + (size_t)(u >> 3) * qm_dtype_block_bytes(dt);
        if (dt == QM_DT_Q6_K) {
            const qm_block_q6_k *q6 = (const qm_block_q6_k *)blk;
            d[i] = _cvtsh_ss(qm_quant_rd16(blk + 208));
            for (int e = 0; e < 2; e++) w6[e][i] = (int)((uint16_t)q6->scales[2 * (u & 7) + e] * 0x10001u);
            continue;
        }
        uint8_t sc[8], mn[8];
        qm_quant_k_scales(blk + 4, sc, mn);
        d[i] = _cvtsh_ss(qm_quant_rd16(blk));
        m[i] = _cvtsh_ss(qm_quant_rd16(blk + 2));
        scf[i] = (float)sc[u & 7];
        mnf[i] = (float)mn[u & 7];
    }
    transpose8(g->q);
    transpose8(g->q + 8);
    if (dt == QM_DT_Q8_0)
        for (int b = 0; b < 16; b++) {
            g->w[b] = g->q[b];
            g->q[b] = _mm256_abs_epi8(g->q[b]);
        }
    for (int h = 0; h < 2; h++) {
        g->d[h] = _mm256_loadu_ps(d + 8 * h);
        g->m[h] = _mm256_loadu_ps(m + 8 * h);
        g->sc_f[h] = _mm256_loadu_ps(scf + 8 * h);
        g->mn_f[h] = _mm256_loadu_ps(mnf + 8 * h);
        if (dt == QM_DT_Q6_K)
            for (int e = 0; e < 2; e++) g->w[2 * h + e] = _mm256_loadu_si256((const __m256i *)(w6[e] + 8 * h));
    }
    k_scales16(dt, g);
}

/* Token t's blocks [0, nblk) as items: block b in the items of every row. */
QM_INLINE void load_x_narrow(qm_dtype dt, const qm_q8act *x, int t, int nblk, int lg, xgroup *xg) {
    const size_t xb = (size_t)t * x->ld_blocks;
    const int8_t *q = x->q + xb * QM_Q8_BLOCK;
    float dx[16];
    int s[16];
    for (int i = 0; i < 16; i++) {
        const int b = i >> lg;
        xg->q[i] = b < nblk ? _mm256_loadu_si256((const __m256i *)(q + 32 * b)) : _mm256_setzero_si256();
        dx[i] = b < nblk ? x->d[xb + (size_t)b] : 0.0f;
        s[i] = b < nblk ? x->s[xb + (size_t)b] : 0;
    }
    transpose8(xg->q);
    transpose8(xg->q + 8);
    if (dt == QM_DT_Q6_K)
        q32_of(xg);
    for (int h = 0; h < 2; h++) {
        xg->dx[h] = _mm256_loadu_ps(dx + 8 * h);
        xg->s[h] = _mm256_loadu_si256((const __m256i *)(s + 8 * h));
        xg->sf[h] = _mm256_cvtepi32_ps(xg->s[h]);
    }
}

/* Rows [0, nr) (nr <= SG R) x tokens [t0, t0 + nt). */
QM_INLINE void tile_narrow(qm_dtype dt, const wrows *w, int lg, int nr, const qm_q8act *x, int t0, int nt,
                           const float *bias, float *y, size_t ldy) {
    const int R = 1 << lg, ng = (nr + R - 1) >> lg;
    wgroup wg[SG];
    for (int gi = 0; gi < ng; gi++) {
        const wrows wr = {w->row0 + (size_t)(gi * R) * w->stride, w->stride, w->sb0, w->nblk, 0};
        unpack_narrow(dt, &wr, lg, nr - gi * R < R ? nr - gi * R : R, &wg[gi]);
    }
    __m256 live[2]; /* lanes of blocks < nblk */
    for (int h = 0; h < 2; h++)
        live[h] = _mm256_castsi256_ps(_mm256_cmpgt_epi32(
            _mm256_set1_epi32(w->nblk),
            _mm256_srli_epi32(_mm256_setr_epi32(8 * h, 8 * h + 1, 8 * h + 2, 8 * h + 3, 8 * h + 4, 8 * h + 5,
                                                8 * h + 6, 8 * h + 7), lg)));
    for (int t = 0; t < nt; t++) {
        xgroup xg;
        load_x_narrow(dt, x, t0 + t, w->nblk, lg, &xg);
        for (int gi = 0; gi < ng; gi++) {
            __m256 a[2];
            for (int h = 0; h < 2; h++) { /* acc = +0 + c in live lanes, +0 elsewhere */
                const __m256 c = prefill_contrib(dt, &wg[gi], &xg, h);
                a[h] = _mm256_and_ps(_mm256_add_ps(_mm256_setzero_ps(), c), live[h]);
            }
            float out[16];
            if (lg == 4) {
                _mm256_storeu_ps(out, a[0]);
                _mm256_storeu_ps(out + 8, a[1]);
            } else {
                const __m256 s8 = _mm256_add_ps(a[0], a[1]);
                if (lg == 3) _mm256_storeu_ps(out, s8);
                else {
                    __m128 s4 = _mm_add_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps(s8, 1));
                    if (lg == 1) s4 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
                    _mm_storeu_ps(out, s4);
                }
            }
            const int nrg = nr - gi * R < R ? nr - gi * R : R;
            float *yo = y + (size_t)t * ldy + (size_t)(gi * R);
            for (int j = 0; j < nrg; j++) yo[j] = bias ? out[j] + bias[gi * R + j] : out[j];
        }
    }
}

QM_INLINE int narrow_lg(int nblk) { return nblk <= 1 ? 4 : nblk <= 2 ? 3 : nblk <= 4 ? 2 : 1; }

QM_INLINE void matmul_narrow(qm_dtype dt, const qm_wview *w, const float *bias, const qm_q8act *x, int n_tok,
                             float *y, size_t ldy, int o_begin, int o_end, int lg) {
    const size_t stride = qm_wview_stride(w);
    const int sb0 = w->col0 / 32, nblk = w->cols / 32, rows = SG << lg;
    for (int t0 = 0; t0 < n_tok; t0 += PT) {
        const int nt = n_tok - t0 < PT ? n_tok - t0 : PT;
        for (int o = o_begin; o < o_end; o += rows) {
            const wrows wr = {(const uint8_t *)w->data + (size_t)o * stride, stride, sb0, nblk, 0};
            tile_narrow(dt, &wr, lg, o_end - o < rows ? o_end - o : rows, x, t0, nt, bias ? bias + o : NULL,
                        y + (size_t)t0 * ldy + (size_t)o, ldy);
        }
    }
}

QM_INLINE void matmul_dt(qm_dtype dt, const qm_wview *w, const float *bias, const qm_q8act *x, int n_tok, float *y,
                         size_t ldy, int o_begin, int o_end) {
    const size_t stride = qm_wview_stride(w);
    const int sb0 = w->col0 / 32, nblk = w->cols / 32, whole = w->col0 == 0 && (size_t)w->cols == w->ld;
    if (nblk <= 8) {
        const int lg = narrow_lg(nblk); /* a literal log2 R per case: constant loops */
        if (lg == 4) matmul_narrow(dt, w, bias, x, n_tok, y, ldy, o_begin, o_end, 4);
        else if (lg == 3) matmul_narrow(dt, w, bias, x, n_tok, y, ldy, o_begin, o_end, 3);
        else if (lg == 2) matmul_narrow(dt, w, bias, x, n_tok, y, ldy, o_begin, o_end, 2);
        else matmul_narrow(dt, w, bias, x, n_tok, y, ldy, o_begin, o_end, 1);
        return;
    }
    if (n_tok == 1 || (dt == QM_DT_Q6_K && n_tok <= 3)) {
        /* 2 or 3 tokens of Q6_K: one at a time, faster than its token tiles (docs/perf-history.md,
         * 2026-12-06 14:57: 2 tokens took 3.1x one) */
        for (int t = 0; t < n_tok; t++) {
            const qm_q8act one = qm_q8act_vector(x, t), *xt = &one;
            float *yt = y + (size_t)t * ldy;
            int o = o_begin;
            if ((dt == QM_DT_Q4_K && sb0 % 8 == 0 && nblk % 8 == 0) || dt == QM_DT_Q5_0)
                for (; o + Q4K_ROWS <= o_end; o += Q4K_ROWS) {
                    const wrows wr = {(const uint8_t *)w->data + (size_t)o * stride, stride, sb0, nblk, whole};
                    rows8(dt, &wr, xt, bias ? bias + o : NULL, yt + o);
                }
            if (o == o_end) continue;
            xgroup *xd = xcache_decode(dt, xt, nblk);
            for (; o < o_end; o += DR) {
                const wrows wr = {(const uint8_t *)w->data + (size_t)o * stride, stride, sb0, nblk, whole};
                const int nr = o_end - o < DR ? o_end - o : DR, off = qm_dtype_block(dt) == 32 ? 0 : sb0 & 7;
                if (off == 0) tile_decode(dt, &wr, 0, nr, xt, xd, bias ? bias + o : NULL, yt + o);
                else if (off == 4) tile_decode(dt, &wr, 4, nr, xt, xd, bias ? bias + o : NULL, yt + o);
                else tile_decode(dt, &wr, off, nr, xt, xd, bias ? bias + o : NULL, yt + o);
            }
            free(xd);
        }
        return;
    }
    for (int t0 = 0; t0 < n_tok; t0 += PT) {
        const int nt = n_tok - t0 < PT ? n_tok - t0 : PT;
        xgroup *xc = xcache_make(dt, x, t0, nt, nblk);
        for (int o = o_begin; o < o_end; o += PR) {
            const wrows wr = {(const uint8_t *)w->data + (size_t)o * stride, stride, sb0, nblk, whole};
            tile_prefill(dt, &wr, o_end - o < PR ? o_end - o : PR, x, xc, t0, nt, bias ? bias + o : NULL,
                         y + (size_t)t0 * ldy + (size_t)o, ldy);
        }
        free(xc);
    }
}

void qm_matmul_q8_avx2(const qm_wview *w, const float *bias, const qm_q8act *x, int n_tok, float *y, size_t ldy,
                       int o_begin, int o_end) {
    if (n_tok <= 0 || o_begin >= o_end) return;
    if (qm_dtype_is_rows8(w->dtype)) {
        const qm_rows8_kernels k = {qm_rows8_decode_avx2, qm_rows8_tokens_avx2, qm_rows8_unpack8_avx2, qm_matmul_q8_avx2, INT_MAX};
        qm_matmul_q8_rows8(w, bias, x, n_tok, y, ldy, o_begin, o_end, &k);
        return;
    }
#define MATMUL_DT(dt_) matmul_dt(dt_, w, bias, x, n_tok, y, ldy, o_begin, o_end)
    QM_SWITCH_QUANT_DTYPE(w->dtype, MATMUL_DT);
#undef MATMUL_DT
}

/* ---- activations: 32 elements = four ymm ---- */

void qm_quantize_act_avx2(const float *x, int n, int8_t *q, float *d, int32_t *s) {
    const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    for (int b = 0; b < n / QM_Q8_BLOCK; b++) {
        const float *xb = x + (size_t)b * QM_Q8_BLOCK;
        __m256 xv[4], m = _mm256_setzero_ps();
        for (int k = 0; k < 4; k++) { /* vmaxps returns its second operand on NaN: NaN is skipped */
            xv[k] = _mm256_loadu_ps(xb + 8 * k);
            m = _mm256_max_ps(_mm256_and_ps(xv[k], absmask), m);
        }
        __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
        m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
        const float amax = _mm_cvtss_f32(_mm_max_ss(m4, _mm_shuffle_ps(m4, m4, _MM_SHUFFLE(1, 1, 1, 1))));
        const float id = amax > 0.0f ? 127.0f / amax : 0.0f;
        d[b] = amax / 127.0f;
        __m256i qi[4];
        for (int k = 0; k < 4; k++) {
            __m256 v = _mm256_mul_ps(xv[k], _mm256_set1_ps(id));
            v = _mm256_and_ps(v, _mm256_cmp_ps(v, v, _CMP_ORD_Q)); /* NaN -> 0 */
            v = _mm256_min_ps(_mm256_max_ps(v, _mm256_set1_ps(-127.0f)), _mm256_set1_ps(127.0f));
            qi[k] = _mm256_cvtps_epi32(v); /* round half to even (MXCSR default) */
        }
        const __m256i s16 = _mm256_packs_epi32(qi[0], qi[1]), s16b = _mm256_packs_epi32(qi[2], qi[3]);
        const __m256i q8 = _mm256_permutevar8x32_epi32(_mm256_packs_epi16(s16, s16b),
                                                       _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
        _mm256_storeu_si256((__m256i *)(q + (size_t)b * QM_Q8_BLOCK), q8);
        __m256i t = _mm256_add_epi32(_mm256_add_epi32(qi[0], qi[1]), _mm256_add_epi32(qi[2], qi[3]));
        __m128i t4 = _mm_add_epi32(_mm256_castsi256_si128(t), _mm256_extracti128_si256(t, 1));
        t4 = _mm_add_epi32(t4, _mm_shuffle_epi32(t4, _MM_SHUFFLE(1, 0, 3, 2)));
        s[b] = _mm_cvtsi128_si32(_mm_add_epi32(t4, _mm_shuffle_epi32(t4, _MM_SHUFFLE(2, 3, 0, 1))));
    }
}

/* ---- row-parallel blocks ---- */

/* Blocks of 64 columns, one token (see qdot_avx512.c): block j of a group is 32-blocks 2j and
 * 2j + 1, its dot a_2j + a_2j+1 with a_b = +0 + c_b (+0 for absent blocks); lanes are blocks in
 * order, so the even and odd lanes of each half, added, give its four block dots. Blocks of 128
 * columns (bpb = 4 32-blocks): (a_4m + a_4m+2) + (a_4m+1 + a_4m+3), one per 128-bit lane. */
QM_INLINE void half_dots(__m256 a, int bpb, float *p) {
    if (bpb == 4) {
        a = _mm256_add_ps(a, _mm256_permute_ps(a, _MM_SHUFFLE(1, 0, 3, 2)));
        _mm256_store_ps(p, _mm256_add_ps(a, _mm256_permute_ps(a, _MM_SHUFFLE(2, 3, 0, 1))));
        return;
    } /* [d0 d1 d0 d1 | d2 d3 d2 d3] */
    _mm256_store_ps(p, _mm256_add_ps(_mm256_shuffle_ps(a, a, _MM_SHUFFLE(2, 0, 2, 0)),
                                     _mm256_shuffle_ps(a, a, _MM_SHUFFLE(3, 1, 3, 1))));
}

/* Block k's dot in the output of half_dots for both halves (p, p + 8). */
QM_INLINE float half_dot_at(const float *p, int bpb, int k) {
    return bpb == 2 ? p[8 * (k / 4) + (k % 4) / 2 * 4 + k % 2] : p[8 * (k / 2) + 4 * (k % 2)];
}

/* The 8 block dots of DR = 4 rows, pairs[r] = hadd(a half 0, a half 1) = blocks [0 1 4 5 | 2 3 6 7]
 * (each a_2j + a_2j+1, as half_dots), transposed so that one 128-bit store writes a block's 4
 * rows: block k at part[k pstride + r]; only blocks [0, nk) (nk 8, or 4 where pairs hold half 0
 * twice). */
QM_INLINE void store_pairs_n(const __m256 pairs[4], int nk, float *part, size_t pstride) {
    const __m256 t0 = _mm256_unpacklo_ps(pairs[0], pairs[1]), t1 = _mm256_unpackhi_ps(pairs[0], pairs[1]);
    const __m256 t2 = _mm256_unpacklo_ps(pairs[2], pairs[3]), t3 = _mm256_unpackhi_ps(pairs[2], pairs[3]);
    const __m256 c[4] = {_mm256_shuffle_ps(t0, t2, 0x44), _mm256_shuffle_ps(t0, t2, 0xEE),
                         _mm256_shuffle_ps(t1, t3, 0x44), _mm256_shuffle_ps(t1, t3, 0xEE)};
    static const int lo_block[4] = {0, 1, 4, 5}; /* c[i]: block lo_block[i] low, lo_block[i] + 2 high */
    for (int i = 0; i < 4; i++) {
        if (lo_block[i] >= nk) continue;
        _mm_storeu_ps(part + (size_t)lo_block[i] * pstride, _mm256_castps256_ps128(c[i]));
        _mm_storeu_ps(part + (size_t)(lo_block[i] + 2) * pstride, _mm256_extractf128_ps(c[i], 1));
    }
}

QM_INLINE void store_pairs(const __m256 pairs[4], float *part, size_t pstride) { store_pairs_n(pairs, 8, part, pstride); }

/* One row's group of nb blocks (a literal where the caller has it) in the row-parallel tile: a[h]
 * lane l = +0 + c_b of block 8h + l, +0 past the nb blocks. */
QM_INLINE void row_group(qm_dtype dt, const uint8_t *row, int sb, int off, int nb, const xgroup *xg, __m256 a[2]) {
    const uint8_t *base = row + (size_t)(qm_dtype_block(dt) != 32 ? sb >> 3 : sb) * qm_dtype_block_bytes(dt);
    wgroup g;
    scales(dt, row, sb, off, nb, 0, &g);
    for (int h = 0; h < 2; h++) {
        a[h] = _mm256_setzero_ps();
        if (8 * h >= nb) continue;
        a[h] = _mm256_add_ps(a[h], contrib(dt, &g, xg, h, sums_decode(dt, base, off, nb, &g, xg, h)));
        if (nb < 8 * h + 8) a[h] = _mm256_and_ps(a[h], _mm256_castsi256_ps(half_mask(nb, h)));
    }
}

/* Row r of a row-parallel decode tile, group sb (nb blocks, a literal where the caller has it):
 * its next pass's group prefetched into the L2 (gbytes: none), a[h] as row_group. */
QM_INLINE void b64_row(qm_dtype dt, const wrows *w, int r, int sb, int off, int nb, size_t gbytes, const xgroup *xg,
                       __m256 a[2]) {
    const uint8_t *row = w->row0 + (size_t)r * w->stride;
    const size_t at = (size_t)(qm_dtype_block(dt) != 32 ? sb >> 3 : sb) * qm_dtype_block_bytes(dt);
    qm_prefetch_l2(row + at + (size_t)DR * w->stride, gbytes);
    row_group(dt, row, sb, off, nb, xg, a);
}

/* A whole tile's group (DR rows, 16 blocks, blocks of 64 columns) with the rows unrolled, so that
 * the pairs stay in registers (the rows' loop kept them on the stack): one thread, Zen 4, rows in
 * the L2 (`bench_qmatmul rp avx2 Q6_K 64 4096 3`, alternated three times), Q6_K 0.0465 -> 0.0431
 * ns a weight (nodes 0.0514 -> 0.0462), Q5_0 0.0669 -> 0.0647; the 4-bit types and Q8_0 went
 * 4-8% slower this way and keep the loop (Q4_K's whole views take the eight-row tiles anyway). */
QM_INLINE int b64_unrolled(qm_dtype dt) { return !four_bit_type(dt) && dt != QM_DT_Q8_0; }

QM_INLINE void tile_decode_b64(qm_dtype dt, const wrows *w, int off, int bpb, int nr, const qm_q8act *x,
                               const xgroup *xd, int nbk, float *part, size_t pstride) {
    /* rowpar.h; a shard of the rows (not whole rows) likewise: its rows do not follow in memory */
    const int long_pass = qm_rowpar_prefetch_long(dt, off, w->nblk, DR) || !w->whole;
    const char *pf = (const char *)w->row0 + (size_t)DR * w->stride;
    const size_t pf_step = long_pass ? 0 : prefetch_step(w);
    for (int b0 = 0; b0 < w->nblk; b0 += 16) {
        const int nb = w->nblk - b0 < 16 ? w->nblk - b0 : 16, sb = w->sb0 + b0;
        const int k0 = b0 / bpb, nk = (nb + bpb - 1) / bpb < nbk - k0 ? (nb + bpb - 1) / bpb : nbk - k0;
        const size_t gbytes = long_pass ? qm_rowpar_group_bytes(dt, off, nb) : 0;
        for (size_t k = 0; k < pf_step; k += 64) _mm_prefetch(pf + k, _MM_HINT_T0);
        pf += pf_step;
        xgroup tmp;
        const xgroup *xg = xdecode_of(dt, xd, x, b0, nb, &tmp);
        const int whole_tile = nb == 16 && bpb == 2 && nr == DR && nk == 8;
        __m256 pairs[DR];
        if (whole_tile && b64_unrolled(dt)) {
#pragma GCC unroll 4
            for (int r = 0; r < DR; r++) {
                __m256 a[2];
                b64_row(dt, w, r, sb, off, 16, gbytes, xg, a);
                pairs[r] = _mm256_hadd_ps(a[0], a[1]);
            }
            store_pairs(pairs, part + (size_t)k0 * pstride, pstride);
            continue;
        }
        for (int r = 0; r < nr; r++) {
            __m256 a[2];
            if (nb == 16) b64_row(dt, w, r, sb, off, 16, gbytes, xg, a);
            else if (nb == 8) b64_row(dt, w, r, sb, off, 8, gbytes, xg, a); /* down_proj's last group */
            else b64_row(dt, w, r, sb, off, nb, gbytes, xg, a);
            if (whole_tile) { /* nb = 16, bpb = 2: both halves' pairs at once, stored below */
                pairs[r] = _mm256_hadd_ps(a[0], a[1]);
                continue;
            }
            float p[16] __attribute__((aligned(32)));
            for (int h = 0; h < 2 && 8 * h < nb; h++) half_dots(a[h], bpb, p + 8 * h);
            for (int k = 0; k < nk; k++) {
                const float pk = half_dot_at(p, bpb, k);
                part[(size_t)(k0 + k) * pstride + (size_t)r] = pk;
            }
        }
        if (whole_tile) store_pairs(pairs, part + (size_t)k0 * pstride, pstride);
    }
}

/* A view of whole blocks and at most 8 32-blocks (a device's one or two heads of o_proj): the
 * narrow items (qdot_avx512.c blocks_narrow), block m of row j a_2m + a_2m+1 (64 columns) or
 * (a_4m + a_4m+2) + (a_4m+1 + a_4m+3) (128), a_b = +0 + c_b. */
QM_INLINE void blocks_narrow(qm_dtype dt, const qm_wview *w, const qm_q8act *x, int bpb, int nbk, float *part,
                             size_t pstride, int o_begin, int o_end) {
    const size_t stride = qm_wview_stride(w);
    const int sb0 = w->col0 / 32, nblk = w->cols / 32, lg = narrow_lg(nblk), R = 1 << lg;
    __m256 live[2]; /* lanes of blocks < nblk */
    for (int h = 0; h < 2; h++)
        live[h] = _mm256_castsi256_ps(_mm256_cmpgt_epi32(
            _mm256_set1_epi32(nblk), _mm256_srli_epi32(_mm256_add_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
                                                                        _mm256_set1_epi32(8 * h)), lg)));
    xgroup xg;
    load_x_narrow(dt, x, 0, nblk, lg, &xg);
    for (int o = o_begin; o < o_end; o += R) {
        const int nr = o_end - o < R ? o_end - o : R;
        const wrows wr = {(const uint8_t *)w->data + (size_t)o * stride, stride, sb0, nblk, 0};
        _mm_prefetch((const char *)wr.row0 + (size_t)(2 * R) * stride, _MM_HINT_T0);
        wgroup g;
        unpack_narrow(dt, &wr, lg, nr, &g);
        float a[16]; /* item order: block b of row j at b R + j */
        for (int h = 0; h < 2; h++) {
            const __m256 c = prefill_contrib(dt, &g, &xg, h);
            _mm256_storeu_ps(a + 8 * h, _mm256_and_ps(_mm256_add_ps(_mm256_setzero_ps(), c), live[h]));
        }
        qm_narrow_block_dots(a, R, bpb, nbk, nr, part + o, pstride);
    }
}

/* xd: the token's groups (xcache_decode) where the caller made them, else NULL: made here. */
QM_INLINE void blocks_dt(qm_dtype dt, const qm_wview *w, const qm_q8act *x, const xgroup *xd_in, int bc, int nbk,
                         float *part, size_t pstride, int o_begin, int o_end) {
    const size_t stride = qm_wview_stride(w);
    if (qm_rowpar_narrow(dt, w, bc, nbk)) {
        blocks_narrow(dt, w, x, bc / 32, nbk, part, pstride, o_begin, o_end);
        return;
    }
    const int sb0 = w->col0 / 32, nblk = w->cols / 32, whole = qm_rowpar_whole_rows(w);
    const int off = qm_dtype_block(dt) == 32 ? 0 : sb0 & 7;
    int o = o_begin;
    /* the eight-row tiles: the view's ends on bc-column chunks (Q4_K: from its superblocks' starts) */
    const int chunks = bc == 64 ? off % 2 == 0 && nblk % 2 == 0 : bc == 128 && off % 4 == 0 && nblk % 4 == 0;
    if ((dt == QM_DT_Q4_K || dt == QM_DT_Q5_0) && chunks && bc / 32 * nbk == nblk)
        for (; o + Q4K_ROWS <= o_end; o += Q4K_ROWS) {
            const wrows wr = {(const uint8_t *)w->data + (size_t)o * stride, stride, sb0, nblk, whole};
            leaves8(dt, &wr, x, part + o, pstride, bc / 32);
        }
    if (o == o_end) return;
    xgroup *own = xd_in ? NULL : xcache_decode(dt, x, nblk);
    const xgroup *xd = xd_in ? xd_in : own;
    for (; o < o_end; o += DR) {
        const wrows wr = {(const uint8_t *)w->data + (size_t)o * stride, stride, sb0, nblk, whole};
        const int nr = o_end - o < DR ? o_end - o : DR;
        float *po = part + o;
        if (bc == 128 && off == 0) tile_decode_b64(dt, &wr, 0, 4, nr, x, xd, nbk, po, pstride); /* o_proj */
        else if (bc == 128) tile_decode_b64(dt, &wr, off, 4, nr, x, xd, nbk, po, pstride);
        else if (off == 0) tile_decode_b64(dt, &wr, 0, 2, nr, x, xd, nbk, po, pstride);
        else if (off == 4) tile_decode_b64(dt, &wr, 4, 2, nr, x, xd, nbk, po, pstride); /* a 1x2 shard */
        else if (off == 2) tile_decode_b64(dt, &wr, 2, 2, nr, x, xd, nbk, po, pstride); /* 1x4, 2x4 shards */
        else if (off == 6) tile_decode_b64(dt, &wr, 6, 2, nr, x, xd, nbk, po, pstride);
        else tile_decode_b64(dt, &wr, off, 2, nr, x, xd, nbk, po, pstride);
    }
    free(own);
}

/* ---- row-parallel tree nodes over several tokens (kernels.h, matmul_q8_nodes; see qdot_avx512.c) ----
 * tile_prefill's sums, each group's block dots (half_dots, as tile_decode_b64 forms them) into a
 * buffer of the PR-row tile's blocks, lf[block][token][row], which the nodes are then added up in. */

/* The leaves of PR rows' group into lf (leaf k of row r at part[k pstride + r]): a[h][r] lane l
 * = +0 + c of block 8h + l, halves [0, nh) (nh 2, or 1 for a last group of 8 blocks); leaves of
 * bpb = 2 blocks (64 columns) or 4 (128): half_dots' sums, stored 4 rows at a time. */
QM_INLINE void leaves_of_rows(const __m256 a[2][PR], int nh, int bpb, float *part, size_t pstride) {
    if (bpb == 2) {
        __m256 pairs[PR];
        for (int r = 0; r < PR; r++) pairs[r] = _mm256_hadd_ps(a[0][r], a[nh - 1][r]);
        store_pairs_n(pairs, 4 * nh, part, pstride);
        return;
    }
    for (int h = 0; h < nh; h++) { /* half_dots' (a_4m + a_4m+2) + (a_4m+1 + a_4m+3): lanes 0 and 4 */
        __m256 q[PR];
        for (int r = 0; r < PR; r++) {
            const __m256 v = _mm256_add_ps(a[h][r], _mm256_permute_ps(a[h][r], _MM_SHUFFLE(1, 0, 3, 2)));
            q[r] = _mm256_add_ps(v, _mm256_permute_ps(v, _MM_SHUFFLE(2, 3, 0, 1)));
        }
        const __m256 c = _mm256_shuffle_ps(_mm256_unpacklo_ps(q[0], q[1]), _mm256_unpacklo_ps(q[2], q[3]), 0x44);
        _mm_storeu_ps(part + (size_t)(2 * h) * pstride, _mm256_castps256_ps128(c));
        _mm_storeu_ps(part + (size_t)(2 * h + 1) * pstride, _mm256_extractf128_ps(c, 1));
    }
}

/* Rows [0, nr) x tokens [t0, t0 + nt) (nt <= PT): every block dot into lf (block k of token t, row
 * r at lf[(k nt + t) PR + r]). A whole tile's group (16 blocks, or a last 8) of 64- or 128-column
 * blocks is written by leaves_of_rows, a block's PR rows with one store (half_dots' sums). */
QM_INLINE void tile_leaves(qm_dtype dt, const wrows *w, int nr, const qm_q8act *x, const xgroup *xc, int t0, int nt,
                           int bpb, int nbk, float *lf) {
    wgroup wg[PR];
    const size_t L = (size_t)nt * PR;
    for (int b0 = 0; b0 < w->nblk; b0 += 16) {
        const int nb = w->nblk - b0 < 16 ? w->nblk - b0 : 16, k0 = b0 / bpb;
        const int nk = (nb + bpb - 1) / bpb < nbk - k0 ? (nb + bpb - 1) / bpb : nbk - k0;
        unpack_rows(dt, w, nr, b0, nb, wg);
        prefetch_next_group(dt, w, nr, b0);
        if (nr == PR && (nb == 16 || nb == 8) && nk == nb / bpb) { /* a whole tile's leaves: leaves_of_rows */
            const int nh = nb / 8;
            float *lk = lf + (size_t)k0 * L;
            int t = 0;
            if (xc)
                for (; t + block_toks(dt) <= nt; t += block_toks(dt)) {
                    const xgroup *x0 = &xc[(size_t)(b0 / 16) * PT + (size_t)t];
                    __m256 a[2][2][PR]; /* [token][h][row] = +0 + c */
                    for (int h = 0; h < nh; h++) {
                        __m256 c[PR][2];
                        contribs_block(dt, wg, x0, h, c);
                        for (int r = 0; r < PR; r++)
                            for (int u = 0; u < block_toks(dt); u++)
                                a[u][h][r] = _mm256_add_ps(_mm256_setzero_ps(), c[r][u]);
                    }
                    for (int u = 0; u < block_toks(dt); u++) leaves_of_rows(a[u], nh, bpb, lk + (size_t)(t + u) * PR, L);
                }
            for (; t < nt; t++) {
                xgroup tmp;
                const xgroup *xg = xgroup_of(dt, xc, x, t0, t, b0, nb, &tmp);
                __m256 a[2][PR];
                for (int h = 0; h < nh; h++)
                    for (int r = 0; r < PR; r++)
                        a[h][r] = _mm256_add_ps(_mm256_setzero_ps(), prefill_contrib(dt, &wg[r], xg, h));
                leaves_of_rows(a, nh, bpb, lk + (size_t)t * PR, L);
            }
            continue;
        }
        for (int t = 0; t < nt; t++) {
            xgroup tmp;
            const xgroup *xg = xgroup_of(dt, xc, x, t0, t, b0, nb, &tmp);
            for (int r = 0; r < nr; r++) {
                float p[16] __attribute__((aligned(32)));
                for (int h = 0; h < 2 && 8 * h < nb; h++) {
                    __m256 a = _mm256_add_ps(_mm256_setzero_ps(), prefill_contrib(dt, &wg[r], xg, h));
                    if (nb < 8 * h + 8) a = _mm256_and_ps(a, _mm256_castsi256_ps(half_mask(nb, h)));
                    half_dots(a, bpb, p + 8 * h);
                }
                float *lt = lf + (size_t)k0 * L + (size_t)t * PR + (size_t)r;
                for (int k = 0; k < nk; k++)
                    lt[(size_t)k * L] = half_dot_at(p, bpb, k);
            }
        }
    }
}

QM_INLINE int nodes_dt(qm_dtype dt, const qm_wview *w, const qm_q8act *x, int n_tok, int bpb, int nbk,
                       const qm_leaf_node *nodes, int n_nodes, float *out, size_t ostride, size_t ldy, int o_begin,
                       int o_end) {
    const size_t stride = qm_wview_stride(w);
    const int nblk = w->cols / 32;
    float *lf = aligned_alloc(32, ((size_t)nbk * PT * PR * sizeof(float) + 31) / 32 * 32);
    if (!lf) return 0;
    for (int t0 = 0; t0 < n_tok; t0 += PT) {
        const int nt = n_tok - t0 < PT ? n_tok - t0 : PT;
        xgroup *xc = xcache_make(dt, x, t0, nt, nblk);
        for (int o = o_begin; o < o_end; o += PR) {
            const int nr = o_end - o < PR ? o_end - o : PR;
            const wrows wr = {(const uint8_t *)w->data + (size_t)o * stride, stride, w->col0 / 32, nblk, 0};
            if (bpb == 2) tile_leaves(dt, &wr, nr, x, xc, t0, nt, 2, nbk, lf);
            else tile_leaves(dt, &wr, nr, x, xc, t0, nt, 4, nbk, lf);
            qm_rowpar_store_nodes(lf, PR, nt, nr, nodes, n_nodes, out + (size_t)t0 * ldy + (size_t)o, ostride, ldy);
        }
        free(xc);
    }
    free(lf);
    return 1;
}

/* The one-token row tiles of qm_rowpar_nodes_decode with the token's groups made once per call: made
 * for every 32-row tile before, which in the 1.5B's decode (--isa avx2, 1 thread) left o_proj at
 * 0.056 ns a weight against bench_qmatmul rp's 0.045-0.051. x: a q8_groups. */
typedef struct {
    const qm_q8act *x;
    const xgroup *xd; /* NULL: each tile makes its own */
} q8_groups;

static void blocks_with_groups(const qm_wview *w, const void *xv, int bc, int nb, float *part, size_t pstride,
                               int o_begin, int o_end) {
    const q8_groups *g = xv;
#define BLOCKS_DT(dt_) blocks_dt(dt_, w, g->x, g->xd, bc, nb, part, pstride, o_begin, o_end)
    QM_SWITCH_QUANT_DTYPE(w->dtype, BLOCKS_DT);
#undef BLOCKS_DT
}

static int nodes_decode(const qm_wview *w, const qm_q8act *x, int bc, int nb, const qm_leaf_node *nodes, int n_nodes,
                        float *out, size_t ostride, size_t ldy, int o_begin, int o_end) {
    xgroup *xd = qm_rowpar_narrow(w->dtype, w, bc, nb) ? NULL : xcache_decode(w->dtype, x, w->cols / 32);
    const q8_groups g = {x, xd};
    const int done =
        qm_rowpar_nodes_decode(blocks_with_groups, w, &g, bc, nb, nodes, n_nodes, out, ostride, ldy, o_begin, o_end);
    free(xd);
    return done;
}

static QM_ROWPAR_NODES_ENTRY_DECODE(nodes_file_layout, nodes_decode)

static const qm_rows8_rowpar_kernels rows8_rowpar = {qm_rows8_q4k_blocks_avx2, qm_rows8_unpack8_avx2,
                                                     qm_matmul_q8_blocks_avx2, qm_matmul_q8_nodes_avx2, 16};

int qm_matmul_q8_nodes_avx2(const qm_wview *w, const qm_q8act *x, int n_tok, int bc, int nb, const qm_leaf_node *nodes,
                            int n_nodes, float *out, size_t ostride, size_t ldy, int o_begin, int o_end) {
    if (qm_dtype_is_rows8(w->dtype))
        return qm_matmul_q8_nodes_rows8(w, x, n_tok, bc, nb, nodes, n_nodes, out, ostride, ldy, o_begin, o_end,
                                        &rows8_rowpar);
    return nodes_file_layout(w, x, n_tok, bc, nb, nodes, n_nodes, out, ostride, ldy, o_begin, o_end);
}

void qm_matmul_q8_blocks_avx2(const qm_wview *w, const qm_q8act *x, int n_tok, int bc, int nb, float *part,
                              size_t pstride, size_t ldy, int o_begin, int o_end) {
    if (qm_dtype_is_rows8(w->dtype)) {
        qm_matmul_q8_blocks_rows8(w, x, n_tok, bc, nb, part, pstride, ldy, o_begin, o_end, &rows8_rowpar);
        return;
    }
    if (n_tok != 1 || (bc != 64 && bc != 128) || nb < 1 || (nb - 1) * bc >= w->cols || nb * bc < w->cols) {
        qm_q8_blocks_by_views(qm_matmul_q8_avx2, w, x, n_tok, bc, nb, part, pstride, ldy, o_begin, o_end);
        return;
    }
    if (o_begin >= o_end) return;
#define BLOCKS_DT(dt_) blocks_dt(dt_, w, x, NULL, bc, nb, part, pstride, o_begin, o_end)
    QM_SWITCH_QUANT_DTYPE(w->dtype, BLOCKS_DT);
#undef BLOCKS_DT
}
