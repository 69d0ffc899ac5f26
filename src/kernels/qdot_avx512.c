/* AVX-512 twin of qdot.c (the spec: kernels/qdot.h). One zmm holds the 16 lanes of a group of
 * 16 consecutive 32-blocks of the view: the blocks' exact integer sums are made with
 * maddubs/madd (the VNNI build, qdot_avx512vnni.c: vpdpbusd), converted, and scaled with the spec's f32 operations lane by lane
 * (vmulps/vaddps/vsubps, never FMA); acc + c is one vaddps (masked in a partial group). Inside a
 * group, lane l holds block PERM[l] (the order the shuffles below produce); the accumulator is put
 * back in block order once, before the halving tree. A lane's arithmetic does not depend on
 * where it sits.
 *
 * Exactness of the integer sums. maddubs (u8 x s8 -> s16, pairs) never saturates: the u8 side is
 * a weight code (Q4: 0..15, Q5: 0..31, Q6_K: 0..63, Q8_0: |w| <= 128) and the s8 side an
 * activation in [-127, 127], so a pair is at most 2 * 128 * 127 = 32512. Q8_0 moves w's sign
 * onto q (the sign trick); Q4_0/Q5_0 use unsigned codes and subtract 8 s / 16 s; Q6_K subtracts
 * 32 (q0 + q1) per pair (maddubs of 32 with q; the difference is at most 2 * 32 * 127). Int16
 * partial sums of several pairs stay below 32768: 8 x 3810 (Q4), 4 x 7874 (Q5), 4 x 8128 (Q6_K).
 * Products and sums done in f32 are of integers whose results are below 2^24, hence exact and
 * equal to the spec's (float)(integer): Q4_K/Q5_K's sc_j * Σ and m_j * s, and in decode Q6_K's
 * sc * Σ per 16 elements and the sum of a block's two.
 *
 * Two ways to the 16 sums, same bits:
 *   decode (one token): each zmm holds two blocks (2k, 2k + 1; Q4_K: 4(k / 2) + k % 2 and that
 *     + 2, "quads", so that one 64-byte load of qs gives two vectors); after madd the 8 vectors are
 *     reduced across (packs + madd while int16 holds, then shuffles). The weights are unpacked
 *     and used at once, DR rows per pass so that each activation group is loaded once for DR rows.
 *   prefill (n_tok >= 2): weights and activations are both transposed (transpose8): vector i
 *     holds bytes 4i..4i+3 of every block, so the products add up vertically with no reduction.
 *     A tile of PR rows x PT tokens unpacks and transposes each row's group once for PT tokens
 *     and each token's group once for PR rows. */
#include <immintrin.h>
#include <stdint.h>
#include <stdlib.h>

#include "kernels/qdot.h"
#include "kernels/rows8.h"
#include "kernels/rowpar.h"
#include "kernels/quant.h"

#include "kernels/inline.h"

/* qdot_avx512vnni.c builds this file again with QM_QDOT_VNNI: the integer sums with vpdpbusd. */
#ifdef QM_QDOT_VNNI
#define QDOT_ISA(name) name##_avx512vnni
#else
#define QDOT_ISA(name) name##_avx512
#endif
#define DR 4  /* decode: rows per pass */
#define PR 6  /* prefill: rows per tile */
#define PT 16 /* prefill: tokens per tile */

/* Lane l holds block PERM[l] of the group; UNPERM puts lanes back in block order. */
QM_INLINE __m512i perm_idx(void) { return _mm512_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7, 8, 10, 12, 14, 9, 11, 13, 15); }
QM_INLINE __m512i unperm_idx(void) { return _mm512_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7, 8, 12, 9, 13, 10, 14, 11, 15); }

/* Q4_K decode puts its blocks in "quads" (code_quad): lane l holds block QPERM[l], QPERM its own
 * inverse. quads: the group uses this order (dec_quads) instead of PERM. */
QM_INLINE __m512i qperm_idx(void) { return _mm512_setr_epi32(0, 1, 4, 5, 2, 3, 6, 7, 8, 9, 12, 13, 10, 11, 14, 15); }
QM_INLINE int dec_quads(qm_dtype dt) { return dt == QM_DT_Q4_K; }
QM_INLINE __m512i lane_blocks(int quads) { return quads ? qperm_idx() : perm_idx(); }
QM_INLINE __m512i block_lanes(int quads) { return quads ? qperm_idx() : unperm_idx(); }
/* The lanes that hold one of the first nb blocks. */
QM_INLINE __mmask16 lanes_of(int quads, int nb) {
    return _mm512_cmplt_epi32_mask(lane_blocks(quads), _mm512_set1_epi32(nb));
}

/* One row's 16 blocks, unpacked. */
typedef struct {
    __m512i q[8];      /* prefill codes (Q8_0: |w|), transposed (decode makes its codes on the fly) */
    __m512i sc[2];     /* Q6_K prefill: int16 scales of groups 0 and 1 */
    __m512i neg[8];    /* prefill Q8_0: bytes -1 where w < 0, else 0 */
    __m512 d, m;       /* d; m (Q4_1, Q5_1) or dmin (Q4_K, Q5_K) */
    __m512 sc_f, mn_f; /* Q4_K, Q5_K: the 6-bit scale and min */
    __m512 sc6[2];     /* Q6_K decode: the int8 scales as f32, laid out as reduce_groups' u0, u1 */
} wgroup;

QM_INLINE __m512i pair(__m256i lo, __m256i hi) { return _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1); }

/* The 16 x 8 dword transpose: v[k] holds blocks 2k (dwords 0..7) and 2k + 1; afterwards lane l
 * of v[i] is dword i of block PERM[l]. */
QM_INLINE void transpose8(__m512i v[8]) {
    __m512i o[8];
    for (int h = 0; h < 2; h++) {
        const __m512i *a = v + 4 * h;
        const __m512i t0 = _mm512_unpacklo_epi32(a[0], a[1]), t1 = _mm512_unpackhi_epi32(a[0], a[1]);
        const __m512i t2 = _mm512_unpacklo_epi32(a[2], a[3]), t3 = _mm512_unpackhi_epi32(a[2], a[3]);
        o[4 * h + 0] = _mm512_unpacklo_epi64(t0, t2);
        o[4 * h + 1] = _mm512_unpackhi_epi64(t0, t2);
        o[4 * h + 2] = _mm512_unpacklo_epi64(t1, t3);
        o[4 * h + 3] = _mm512_unpackhi_epi64(t1, t3);
    }
    for (int j = 0; j < 4; j++) {
        v[j] = _mm512_shuffle_i32x4(o[j], o[4 + j], _MM_SHUFFLE(2, 0, 2, 0));
        v[4 + j] = _mm512_shuffle_i32x4(o[j], o[4 + j], _MM_SHUFFLE(3, 1, 3, 1));
    }
}

/* ---- weights: codes ---- */

/* Nibbles of 16 bytes: low nibbles are elements 0..15, high ones 16..31. */
QM_INLINE __m256i nibbles(const uint8_t *qs) {
    const __m128i q = _mm_loadu_si128((const __m128i *)qs);
    const __m256i v = _mm256_inserti128_si256(_mm256_castsi128_si256(q), _mm_srli_epi16(q, 4), 1);
    return _mm256_and_si256(v, _mm256_set1_epi8(15));
}

/* Q8_0 (signed), Q4_0, Q4_1, Q5_0, Q5_1: the block at blk. */
QM_INLINE __m256i code_32(qm_dtype dt, const uint8_t *blk) {
    const int has_m = dt == QM_DT_Q4_1 || dt == QM_DT_Q5_1;
    const uint8_t *p = blk + 2 + 2 * has_m;
    if (dt == QM_DT_Q8_0) return _mm256_loadu_si256((const __m256i *)(blk + 2));
    if (dt == QM_DT_Q4_0 || dt == QM_DT_Q4_1) return nibbles(p);
    return _mm256_mask_add_epi8(nibbles(p + 4), (__mmask32)qm_quant_rd32(p), nibbles(p + 4), _mm256_set1_epi8(16));
}

/* Q4_K/Q5_K sub-block s of a row, alone (32 codes). */
QM_INLINE __m256i code_k45(qm_dtype dt, const uint8_t *row, int s) {
    const int j = s & 7;
    const uint8_t *blk = row + (size_t)(s >> 3) * qm_dtype_block_bytes(dt);
    const uint8_t *qs = blk + (dt == QM_DT_Q5_K ? 48 : 16) + 32 * (j >> 1);
    __m256i v = _mm256_srl_epi16(_mm256_loadu_si256((const __m256i *)qs), _mm_cvtsi32_si128(4 * (j & 1)));
    v = _mm256_and_si256(v, _mm256_set1_epi8(15));
    if (dt == QM_DT_Q5_K) {
        const __m256i h = _mm256_srl_epi16(_mm256_loadu_si256((const __m256i *)(blk + 16)), _mm_cvtsi32_si128(j));
        v = _mm256_or_si256(v, _mm256_slli_epi16(_mm256_and_si256(h, _mm256_set1_epi8(1)), 4));
    }
    return v;
}

/* Q4_K/Q5_K sub-blocks s, s + 1 with s even: the low and high nibbles of one 32-byte chunk. */
QM_INLINE __m512i code_k45_pair(qm_dtype dt, const uint8_t *row, int s) {
    const int j = s & 7;
    const uint8_t *blk = row + (size_t)(s >> 3) * qm_dtype_block_bytes(dt);
    const __m512i shift = _mm512_inserti64x4(_mm512_setzero_si512(), _mm256_set1_epi16(4), 1);
    const uint8_t *qs = blk + (dt == QM_DT_Q5_K ? 48 : 16) + 16 * j;
    __m512i v = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)qs));
    v = _mm512_and_si512(_mm512_srlv_epi16(v, shift), _mm512_set1_epi8(15));
    if (dt == QM_DT_Q5_K) {
        const __m512i h = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(blk + 16)));
        const __m512i hs = _mm512_add_epi16(_mm512_set1_epi16((short)j), _mm512_srli_epi16(shift, 2));
        v = _mm512_or_si512(v, _mm512_slli_epi16(_mm512_and_si512(_mm512_srlv_epi16(h, hs), _mm512_set1_epi8(1)), 4));
    }
    return v;
}

/* Q6_K sub-block s of a row, alone: codes 0..63 (q + 32). */
QM_INLINE __m256i code_q6k(const uint8_t *row, int s) {
    const int j = s & 7, h = j >> 2, k = j & 3;
    const qm_block_q6_k *blk = (const qm_block_q6_k *)(row + (size_t)(s >> 3) * 210);
    __m256i lo = _mm256_loadu_si256((const __m256i *)(blk->ql + 64 * h + 32 * (k & 1)));
    lo = _mm256_and_si256(_mm256_srl_epi16(lo, _mm_cvtsi32_si128(4 * (k >> 1))), _mm256_set1_epi8(15));
    __m256i hi = _mm256_loadu_si256((const __m256i *)(blk->qh + 32 * h));
    hi = _mm256_and_si256(_mm256_srl_epi16(hi, _mm_cvtsi32_si128(2 * k)), _mm256_set1_epi8(3));
    return _mm256_or_si256(lo, _mm256_slli_epi16(hi, 4));
}

/* Bits 0-3 of a, 4-7 of b (vpternlogd: c ? a : b with c = 0x0f). */
QM_INLINE __m512i low4_high4(__m512i a, __m512i b) { return _mm512_ternarylogic_epi32(a, b, _mm512_set1_epi8(15), 0xe4); }

/* Q6_K sub-blocks s, s + 1 with s even: half h = s % 8 / 4 of the superblock, its low (n = 0) or
 * high (n = 1) ql nibbles, n = s % 4 / 2. The half's 64 ql bytes give the low 4 bits of both (128-bit
 * lanes 0, 1: s; 2, 3: s + 1); its 32 qh bytes, broadcast and shifted right by 0 (lanes 0, 1) or 2
 * (lanes 2, 3), hold the high 2 bits at bits 0-1 (n = 0) and 4-5 (n = 1). Masked with 0x33, they
 * join the nibbles by one bit select, bits 6-7 zero. */
QM_INLINE __m512i code_q6k_pair(const uint8_t *row, int s) {
    const int j = s & 7, h = j >> 2, n = (j >> 1) & 1;
    const qm_block_q6_k *blk = (const qm_block_q6_k *)(row + (size_t)(s >> 3) * 210);
    const __m512i lo = _mm512_loadu_si512(blk->ql + 64 * h);
    const __m512i shift = _mm512_inserti64x4(_mm512_setzero_si512(), _mm256_set1_epi16(2), 1);
    const __m512i qh = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(blk->qh + 32 * h)));
    const __m512i hb = _mm512_and_si512(_mm512_srlv_epi16(qh, shift), _mm512_set1_epi8(0x33));
    return n == 0 ? low4_high4(lo, _mm512_slli_epi16(hb, 4)) : low4_high4(_mm512_srli_epi16(lo, 4), hb);
}

/* Pair k of a group: blocks 2k, 2k + 1 (absent ones 0; Q8_0 signed). base is the group's first
 * block (32-blocks) or the superblock of its first sub-block, off that sub-block's index in it
 * (K-quants). */
QM_INLINE __m512i code_pair(qm_dtype dt, const uint8_t *base, int off, int nb, int k) {
    const __m256i z = _mm256_setzero_si256();
    if (2 * k >= nb) return _mm512_setzero_si512();
    if (qm_dtype_block(dt) == 32) {
        const size_t bb = qm_dtype_block_bytes(dt);
        const __m256i a = code_32(dt, base + (size_t)(2 * k) * bb);
        return pair(a, 2 * k + 1 < nb ? code_32(dt, base + (size_t)(2 * k + 1) * bb) : z);
    }
    const int s = off + 2 * k;
    if (off & 1) { /* the pair straddles chunks: one sub-block at a time */
        const __m256i a = dt == QM_DT_Q6_K ? code_q6k(base, s) : code_k45(dt, base, s);
        const __m256i b = 2 * k + 1 >= nb ? z : dt == QM_DT_Q6_K ? code_q6k(base, s + 1) : code_k45(dt, base, s + 1);
        return pair(a, b);
    }
    const __m512i v = dt == QM_DT_Q6_K ? code_q6k_pair(base, s) : code_k45_pair(dt, base, s);
    return 2 * k + 1 < nb ? v : _mm512_maskz_mov_epi64(0x0f, v);
}

/* Q4_K decode, quads: vector k holds group blocks quad_blk(k) (128-bit lanes 0, 1) and quad_blk(k) + 2
 * (lanes 2, 3). With off 0, vectors 2j and 2j + 1 are the low and high nibbles of one 64-byte load of
 * qs: sub-blocks 4j .. 4j + 3 (j / 2 the superblock, j % 2 its half) are [4j, 4j + 2] in the low
 * nibbles and [4j + 1, 4j + 3] in the high ones; with off 4 the same, half a superblock further.
 * Absent blocks: 0, or (the second of a vector whose first is present) codes of the same
 * superblock, against activations 0. */
QM_INLINE int quad_blk(int k) { return 4 * (k >> 1) + (k & 1); }

QM_INLINE __m512i code_quad(const uint8_t *base, int off, int nb, int k) {
    const int b = quad_blk(k);
    if (b >= nb) return _mm512_setzero_si512();
    if ((off & 3) == 0) { /* quads on superblock halves (off 4: a 1x2 mesh's second shard) */
        const int u = off + b;
        const __m512i v = _mm512_loadu_si512(base + (size_t)(u >> 3) * 144 + 16 + 64 * ((u >> 2) & 1));
        return _mm512_and_si512(k & 1 ? _mm512_srli_epi16(v, 4) : v, _mm512_set1_epi8(15));
    }
    const __m256i hi = b + 2 < nb ? code_k45(QM_DT_Q4_K, base, off + b + 2) : _mm256_setzero_si256();
    return pair(code_k45(QM_DT_Q4_K, base, off + b), hi);
}

/* base and off of code_pair for the group starting at the row's 32-block sb. */
QM_INLINE const uint8_t *group_base(qm_dtype dt, const uint8_t *row, int sb) {
    const int kq = qm_dtype_block(dt) != 32;
    return row + (size_t)(kq ? sb >> 3 : sb) * qm_dtype_block_bytes(dt);
}

/* All 8 pairs; a literal offset 0 (groups aligned to superblocks, the usual case) makes every
 * shift and address a constant. */
QM_INLINE void codes(qm_dtype dt, const uint8_t *row, int sb, int nb, __m512i q[8]) {
    const uint8_t *base = group_base(dt, row, sb);
    const int off = qm_dtype_block(dt) == 32 ? 0 : sb & 7;
#pragma GCC unroll 8
    for (int k = 0; k < 8; k++) q[k] = off == 0 ? code_pair(dt, base, 0, nb, k) : code_pair(dt, base, off, nb, k);
}

/* ---- weights: scales, lane l = block PERM[l] ---- */

/* The f16 in the low (hi 0) or high (hi 1) half of each dword, as f32. */
QM_INLINE __m512 f16_lanes(__m512i v, int hi) {
    return _mm512_cvtph_ps(_mm512_cvtepi32_epi16(hi ? _mm512_srli_epi32(v, 16) : v));
}

/* Q8_0 .. Q5_1: the dword at the start of each block (d, and m for Q4_1/Q5_1). */
QM_INLINE void scales_32(qm_dtype dt, const uint8_t *row, int sb, int nb, wgroup *g) {
    const size_t bb = qm_dtype_block_bytes(dt);
    const __m512i idx = _mm512_mullo_epi32(perm_idx(), _mm512_set1_epi32((int)bb));
    const __m512i dm =
        _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), lanes_of(0, nb), idx, row + (size_t)sb * bb, 1);
    g->d = f16_lanes(dm, 0);
    if (dt == QM_DT_Q4_1 || dt == QM_DT_Q5_1) g->m = f16_lanes(dm, 1);
}

/* Where group lane l finds its K-quant fields: it is sub-block u = off + PERM[l] (QPERM[l] in quads) (u < 24) of the
 * group's superblocks 0, 1, 2 (off = the view's first sub-block % 8, the same for every group). */
typedef struct {
    __m512i sm;   /* int16 lanes 0..15: 16 (u / 8) + u % 8 (u's scale byte), 16..31: + 8 (its min) */
    __m512i d, m; /* f32 index of u's superblock: 2 (u / 8) (Q6_K: u / 8), + 1 */
} klanes;

QM_INLINE klanes klanes_of(qm_dtype dt, int off, int quads) {
    const __m512i u = _mm512_add_epi32(lane_blocks(quads), _mm512_set1_epi32(off)), sup = _mm512_srli_epi32(u, 3);
    const __m512i sc = _mm512_add_epi32(_mm512_slli_epi32(sup, 4), _mm512_and_si512(u, _mm512_set1_epi32(7)));
    const __m512i sc16 = _mm512_castsi256_si512(_mm512_cvtepi32_epi16(sc));
    klanes k;
    k.sm = _mm512_inserti64x4(sc16, _mm256_add_epi16(_mm512_castsi512_si256(sc16), _mm256_set1_epi16(8)), 1);
    k.d = dt == QM_DT_Q6_K ? sup : _mm512_slli_epi32(sup, 1);
    k.m = _mm512_add_epi32(k.d, _mm512_set1_epi32(1));
    return k;
}

/* The 16 raw bytes at p + i * bb for i < n (n <= 3) in 128-bit lane i. */
QM_INLINE __m512i sup_bytes(const uint8_t *p, size_t bb, int n) {
    __m512i v = _mm512_zextsi128_si512(_mm_loadu_si128((const __m128i *)p));
    if (n > 1) v = _mm512_inserti32x4(v, _mm_loadu_si128((const __m128i *)(p + bb)), 1);
    if (n > 2) v = _mm512_inserti32x4(v, _mm_loadu_si128((const __m128i *)(p + 2 * bb)), 2);
    return v;
}

/* Q4_K/Q5_K: d, dmin, and the 6-bit scales and mins (quant.h, qm_quant_k_scales) of each lane,
 * from the 12 scale bytes of each superblock (16 bytes are read: the block goes on). */
QM_INLINE void scales_k45(qm_dtype dt, const uint8_t *row, int sb, int nb, const klanes *kl, wgroup *g) {
    const size_t bb = qm_dtype_block_bytes(dt);
    const int nsup = ((sb + nb - 1) >> 3) - (sb >> 3) + 1;
    const uint8_t *blk = row + (size_t)(sb >> 3) * bb;
    const __m512i v = sup_bytes(blk + 4, bb, nsup);
    /* per superblock, bytes 0..7 = sc, 8..15 = mn. Low parts: sc0-3 = s0-3 & 63,
     * sc4-7 = s8-11 & 15, mn0-3 = s4-7 & 63, mn4-7 = s8-11 >> 4 */
    const __m512i slo = _mm512_broadcast_i32x4(_mm_setr_epi8(0, 1, 2, 3, 8, 9, 10, 11, 4, 5, 6, 7, 8, 9, 10, 11));
    __m512i lo = _mm512_shuffle_epi8(v, slo);
    lo = _mm512_mask_blend_epi32(0x8888, lo, _mm512_srli_epi16(lo, 4));
    lo = _mm512_and_si512(lo, _mm512_broadcast_i32x4(_mm_setr_epi32(0x3f3f3f3f, 0x0f0f0f0f, 0x3f3f3f3f, 0x0f0f0f0f)));
    /* high parts of sc4-7 = (s0-3 >> 6) << 4, of mn4-7 = (s4-7 >> 6) << 4 */
    const __m512i shi = _mm512_broadcast_i32x4(_mm_setr_epi8(-1, -1, -1, -1, 0, 1, 2, 3, -1, -1, -1, -1, 4, 5, 6, 7));
    const __m512i hi = _mm512_and_si512(_mm512_srli_epi16(_mm512_shuffle_epi8(v, shi), 2), _mm512_set1_epi8(0x30));
    const __m512i b = _mm512_or_si512(lo, hi);
    const __m512i sm = _mm512_permutex2var_epi16(_mm512_cvtepu8_epi16(_mm512_castsi512_si256(b)), kl->sm,
                                                 _mm512_cvtepu8_epi16(_mm512_extracti64x4_epi64(b, 1)));
    g->sc_f = _mm512_cvtepi32_ps(_mm512_cvtepi16_epi32(_mm512_castsi512_si256(sm)));
    g->mn_f = _mm512_cvtepi32_ps(_mm512_cvtepi16_epi32(_mm512_extracti64x4_epi64(sm, 1)));
    /* d, dmin of superblocks 0..2 as [d0 m0 d1 m1 d2 m2] */
    const __m128i dm = _mm_setr_epi32((int)qm_quant_rd32(blk), nsup > 1 ? (int)qm_quant_rd32(blk + bb) : 0,
                                      nsup > 2 ? (int)qm_quant_rd32(blk + 2 * bb) : 0, 0);
    const __m512 f = _mm512_castps256_ps512(_mm256_cvtph_ps(dm));
    g->d = _mm512_permutexvar_ps(kl->d, f);
    g->m = _mm512_permutexvar_ps(kl->m, f);
}

/* Q4_K/Q5_K, a group that starts a superblock (lanes 0-7: superblock 0's sub-blocks in the order
 * of lane_blocks, 8-15: superblock 1's): the 16 bytes from d of each superblock in a 128-bit lane
 * of a ymm (bytes 0-3 d, dmin; 4-15 the scale bytes s[0..11], qm_quant_k_scales), decoded by lane
 * straight into that order: bytes 0-7 of lane L the scales of superblock L, 8-15 its mins. Byte i
 * of a half is sub-block j = lane_blocks[i] (j < 4 at i % 4 < 2 in both orders): low part s[j] & 63
 * (scale) or s[j + 4] & 63 (min) for j < 4; for j >= 4 s[j + 4] & 15 (scale) or s[j + 4] >> 4 (min),
 * with the high part (s[j - 4] (scale) or s[j] (min)) >> 6 << 4. */
QM_INLINE void scales_k45_aligned(const uint8_t *blk, size_t bb, int nsup, int quads, wgroup *g) {
    __m256i v = _mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)blk));
    if (nsup > 1) v = _mm256_inserti128_si256(v, _mm_loadu_si128((const __m128i *)(blk + bb)), 1);
    const __m128i slo = quads ? _mm_setr_epi8(4, 5, 12, 13, 6, 7, 14, 15, 8, 9, 12, 13, 10, 11, 14, 15)
                              : _mm_setr_epi8(4, 6, 12, 14, 5, 7, 13, 15, 8, 10, 12, 14, 9, 11, 13, 15);
    const __m128i shi = quads ? _mm_setr_epi8(-1, -1, 4, 5, -1, -1, 6, 7, -1, -1, 8, 9, -1, -1, 10, 11)
                              : _mm_setr_epi8(-1, -1, 4, 6, -1, -1, 5, 7, -1, -1, 8, 10, -1, -1, 9, 11);
    __m256i lo = _mm256_shuffle_epi8(v, _mm256_broadcastsi128_si256(slo));
    lo = _mm256_mask_blend_epi16(0xa0a0, lo, _mm256_srli_epi16(lo, 4)); /* the mins of j >= 4: words 5, 7 */
    lo = _mm256_and_si256(lo, _mm256_set1_epi32(0x0f0f3f3f));
    const __m256i hi = _mm256_shuffle_epi8(v, _mm256_broadcastsi128_si256(shi));
    const __m256i b = _mm256_or_si256(lo, _mm256_and_si256(_mm256_srli_epi16(hi, 2), _mm256_set1_epi8(0x30)));
    const __m256i t = _mm256_permute4x64_epi64(b, _MM_SHUFFLE(3, 1, 2, 0)); /* scales 0, 1; mins 0, 1 */
    g->sc_f = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm256_castsi256_si128(t)));
    g->mn_f = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm256_extracti128_si256(t, 1)));
    /* d (bytes 0, 1) and dmin (2, 3) of superblock L in words 8L .. 8L + 7 */
    const __m256i dw = _mm256_set1_epi16(0x0100), mw = _mm256_set1_epi16(0x0302);
    g->d = _mm512_cvtph_ps(_mm256_shuffle_epi8(v, dw));
    g->m = _mm512_cvtph_ps(_mm256_shuffle_epi8(v, mw));
}

/* Q6_K: d, and the int16 scales (16 per superblock, 2 per sub-block) as madd operands. */
QM_INLINE void scales_q6k(const uint8_t *row, int sb, int nb, int transposed, const klanes *kl, wgroup *g) {
    const int nsup = ((sb + nb - 1) >> 3) - (sb >> 3) + 1, off = sb & 7;
    const uint8_t *blk = row + (size_t)(sb >> 3) * 210;
    const __m128i dh = _mm_setr_epi16((short)qm_quant_rd16(blk + 208), nsup > 1 ? (short)qm_quant_rd16(blk + 418) : 0,
                                      nsup > 2 ? (short)qm_quant_rd16(blk + 628) : 0, 0, 0, 0, 0, 0);
    g->d = _mm512_permutexvar_ps(kl->d, _mm512_castps256_ps512(_mm256_cvtph_ps(dh)));
    /* the group's 32 scales start at 2 off in t0 ++ t1 */
    const __m512i v = sup_bytes(blk + 192, 210, nsup);
    const __m512i t0 = _mm512_cvtepi8_epi16(_mm512_castsi512_si256(v));
    const __m512i t1 = _mm512_cvtepi8_epi16(_mm512_extracti64x4_epi64(v, 1));
    if (transposed) { /* int16 lanes 2l, 2l + 1: block PERM[l], its group e */
        const __m512i i32 = _mm512_add_epi32(_mm512_slli_epi32(perm_idx(), 1), _mm512_set1_epi32(2 * off));
        const __m512i i16 = _mm512_or_si512(i32, _mm512_slli_epi32(i32, 16));
        g->sc[0] = _mm512_permutex2var_epi16(t0, i16, t1);
        g->sc[1] = _mm512_permutex2var_epi16(t0, _mm512_add_epi16(i16, _mm512_set1_epi16(1)), t1);
        return;
    }
    /* decode: sc6[e] lane 4L + i = group L % 2 of block 8e + 2i + L / 2 = scale 2 off + 16e + 4i + L */
    static const int16_t at[32] = {0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15,
                                   16, 20, 24, 28, 17, 21, 25, 29, 18, 22, 26, 30, 19, 23, 27, 31};
    const __m512i idx = _mm512_add_epi16(_mm512_loadu_si512(at), _mm512_set1_epi16((short)(2 * off)));
    const __m512i sc = _mm512_permutex2var_epi16(t0, idx, t1);
    g->sc6[0] = _mm512_cvtepi32_ps(_mm512_cvtepi16_epi32(_mm512_castsi512_si256(sc)));
    g->sc6[1] = _mm512_cvtepi32_ps(_mm512_cvtepi16_epi32(_mm512_extracti64x4_epi64(sc, 1)));
}

/* Q6_K decode, a group that starts a superblock: sc6[e] as scales_q6k's (lane 4L + i: scale
 * 16 e + 4 i + L, of superblock e) by one pshufb of each superblock's 16 scales, both in a ymm;
 * d of superblock L (lanes 8L .. 8L + 7) from its f16 at byte 14 of the 16 bytes at 194. */
QM_INLINE void scales_q6k_aligned(const uint8_t *blk, int nsup, wgroup *g) {
    __m256i sc = _mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)(blk + 192)));
    __m256i dv = _mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)(blk + 194)));
    if (nsup > 1) {
        sc = _mm256_inserti128_si256(sc, _mm_loadu_si128((const __m128i *)(blk + 210 + 192)), 1);
        dv = _mm256_inserti128_si256(dv, _mm_loadu_si128((const __m128i *)(blk + 210 + 194)), 1);
    }
    g->d = _mm512_cvtph_ps(_mm256_shuffle_epi8(dv, _mm256_set1_epi16(0x0f0e)));
    const __m128i at = _mm_setr_epi8(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
    sc = _mm256_shuffle_epi8(sc, _mm256_broadcastsi128_si256(at));
    g->sc6[0] = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm256_castsi256_si128(sc)));
    g->sc6[1] = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm256_extracti128_si256(sc, 1)));
}

/* aligned: a literal 1 where the group starts a superblock (sb % 8 == 0); quads: the lane order. */
QM_INLINE void scales(qm_dtype dt, const uint8_t *row, int sb, int nb, int transposed, int aligned, int quads,
                      const klanes *kl, wgroup *g) {
    const size_t bb = qm_dtype_block_bytes(dt);
    if (dt == QM_DT_Q6_K && aligned && !transposed) scales_q6k_aligned(row + (size_t)(sb >> 3) * bb, nb > 8 ? 2 : 1, g);
    else if (dt == QM_DT_Q6_K) scales_q6k(row, sb, nb, transposed, kl, g);
    else if ((dt == QM_DT_Q4_K || dt == QM_DT_Q5_K) && aligned)
        scales_k45_aligned(row + (size_t)(sb >> 3) * bb, bb, nb > 8 ? 2 : 1, quads, g);
    else if (dt == QM_DT_Q4_K || dt == QM_DT_Q5_K) scales_k45(dt, row, sb, nb, kl, g);
    else scales_32(dt, row, sb, nb, g);
}

/* Prefill: one row's group (blocks sb .. sb + nb - 1 of the row), codes transposed. */
#ifdef QM_QDOT_VNNI
/* VNNI prefill, Q6_K: the group scales as int32 lanes (both int16 halves of a lane hold the
 * scale: the low one, sign-extended). */
QM_INLINE void prefill_sc32(wgroup *g) {
    for (int e = 0; e < 2; e++) g->sc[e] = _mm512_madd_epi16(g->sc[e], _mm512_set1_epi32(1));
}
#endif

QM_INLINE void unpack_prefill(qm_dtype dt, const uint8_t *row, int sb, int nb, const klanes *kl, wgroup *g) {
    codes(dt, row, sb, nb, g->q);
    transpose8(g->q);
    if (dt == QM_DT_Q8_0)
        for (int k = 0; k < 8; k++) {
            g->neg[k] = _mm512_movm_epi8(_mm512_movepi8_mask(g->q[k]));
            g->q[k] = _mm512_abs_epi8(g->q[k]);
        }
    scales(dt, row, sb, nb, 1, 0, 0, kl, g);
#ifdef QM_QDOT_VNNI
    if (dt == QM_DT_Q6_K) prefill_sc32(g);
#endif
}

/* ---- activations ---- */

/* One token's 16 blocks. */
typedef struct {
    __m512i q[8];   /* as wgroup.q (absent blocks: 0) */
    __m512i q32[8]; /* Q6_K: 32 (q_2i + q_2i+1) per int16 lane */
    __m512i x32[2]; /* VNNI prefill, Q6_K: 32 x (the sum of each block's 16 elements of group e), int32 */
    __m512i neg32[8]; /* VNNI decode, Q6_K: -32 x the sum of each dword's four activations */
    __m512 dx, sf;  /* d and (float)s */
    __m512i s;
} xgroup;

#ifdef QM_QDOT_VNNI
/* VNNI prefill, Q6_K: 32 x the activation sum of each block's two 16-element groups (int32). */
QM_INLINE void prefill_x32(xgroup *xg) {
    for (int e = 0; e < 2; e++) {
        xg->x32[e] = _mm512_setzero_si512();
        for (int k = 4 * e; k < 4 * e + 4; k++)
            xg->x32[e] = _mm512_dpbusd_epi32(xg->x32[e], _mm512_set1_epi8(32), xg->q[k]);
    }
}
#endif

QM_INLINE void load_x(qm_dtype dt, const qm_q8act *x, int t, int b0, int nb, int transposed, xgroup *xg) {
    const size_t xb = (size_t)t * x->ld_blocks + (size_t)b0;
    const int8_t *q = x->q + xb * QM_Q8_BLOCK;
    for (int k = 0; k < 8; k++) {
        const int n = nb - 2 * k;
        if (n >= 2) xg->q[k] = _mm512_loadu_si512(q + 64 * k);
        else xg->q[k] = _mm512_maskz_loadu_epi8(n == 1 ? (__mmask64)0xffffffffu : 0, q + 64 * k);
    }
    if (transposed) transpose8(xg->q);
    const int quads = !transposed && dec_quads(dt);
    if (quads) /* vector k: blocks quad_blk(k), quad_blk(k) + 2 */
        for (int j = 0; j < 4; j++) {
            const __m512i a = xg->q[2 * j], b = xg->q[2 * j + 1];
            xg->q[2 * j] = _mm512_shuffle_i64x2(a, b, _MM_SHUFFLE(1, 0, 1, 0));
            xg->q[2 * j + 1] = _mm512_shuffle_i64x2(a, b, _MM_SHUFFLE(3, 2, 3, 2));
        }
    if (dt == QM_DT_Q6_K)
        for (int k = 0; k < 8; k++) xg->q32[k] = _mm512_maddubs_epi16(_mm512_set1_epi8(32), xg->q[k]);
#ifdef QM_QDOT_VNNI
    if (dt == QM_DT_Q6_K && transposed) prefill_x32(xg);
    if (dt == QM_DT_Q6_K && !transposed)
        for (int k = 0; k < 8; k++)
            xg->neg32[k] = _mm512_sub_epi32(_mm512_setzero_si512(),
                                            _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_set1_epi8(32), xg->q[k]));
#endif
    const __mmask16 first = (__mmask16)((1u << nb) - 1u);
    const __m512 dx = nb == 16 ? _mm512_loadu_ps(x->d + xb) : _mm512_maskz_loadu_ps(first, x->d + xb);
    const __m512i s = nb == 16 ? _mm512_loadu_si512(x->s + xb) : _mm512_maskz_loadu_epi32(first, x->s + xb);
    xg->dx = _mm512_permutexvar_ps(lane_blocks(quads), dx);
    xg->s = _mm512_permutexvar_epi32(lane_blocks(quads), s);
    xg->sf = _mm512_cvtepi32_ps(xg->s);
}

/* ---- the 16 sums and contributions ---- */

/* Decode: v[k] holds blocks 2k (dwords 0..7) and 2k + 1 (8..15); lane l of the result is the sum
 * of block PERM[l]'s dwords. */
QM_INLINE __m512i reduce_blocks(const __m512i v[8]) {
    __m512i t[4];
    for (int i = 0; i < 4; i++)
        t[i] = _mm512_add_epi32(_mm512_unpacklo_epi32(v[2 * i], v[2 * i + 1]),
                                _mm512_unpackhi_epi32(v[2 * i], v[2 * i + 1]));
    const __m512i u0 = _mm512_add_epi32(_mm512_unpacklo_epi64(t[0], t[1]), _mm512_unpackhi_epi64(t[0], t[1]));
    const __m512i u1 = _mm512_add_epi32(_mm512_unpacklo_epi64(t[2], t[3]), _mm512_unpackhi_epi64(t[2], t[3]));
    return _mm512_add_epi32(_mm512_shuffle_i32x4(u0, u1, _MM_SHUFFLE(2, 0, 2, 0)),
                            _mm512_shuffle_i32x4(u0, u1, _MM_SHUFFLE(3, 1, 3, 1)));
}

/* The first two levels for dwords below 2^14 (Q4, Q5: 4 products of at most 31 * 127; Q6_K:
 * 4 of at most 32 * 127): packs + madd halve the vectors while the partial sums fit int16. Lane
 * 4L + i of u[e] is the sum of 128-bit lane L of v[4e + i]: 16 elements of one block. */
QM_INLINE void reduce_groups(const __m512i v[8], __m512i u[2]) {
    const __m512i ones = _mm512_set1_epi16(1);
    __m512i w[4];
    for (int i = 0; i < 4; i++) w[i] = _mm512_madd_epi16(_mm512_packs_epi32(v[2 * i], v[2 * i + 1]), ones);
    u[0] = _mm512_madd_epi16(_mm512_packs_epi32(w[0], w[1]), ones);
    u[1] = _mm512_madd_epi16(_mm512_packs_epi32(w[2], w[3]), ones);
}

/* Decode: each dword of codes c times activations xs, summed exactly (Q6_K: less 32 x the
 * activations). VNNI: one vpdpbusd, Q6_K's starting from -32 x the activations' sum (load_x);
 * else maddubs + madd. The same integers either way. */
#ifdef QM_QDOT_VNNI
QM_INLINE __m512i dword_sums(qm_dtype dt, __m512i c, __m512i xs, const xgroup *xg, int k) {
    return _mm512_dpbusd_epi32(dt == QM_DT_Q6_K ? xg->neg32[k] : _mm512_setzero_si512(), c, xs);
}
#else
QM_INLINE __m512i dword_sums(qm_dtype dt, __m512i c, __m512i xs, const xgroup *xg, int k) {
    __m512i p = _mm512_maddubs_epi16(c, xs);
    if (dt == QM_DT_Q6_K) p = _mm512_sub_epi16(p, xg->q32[k]);
    return _mm512_madd_epi16(p, _mm512_set1_epi16(1));
}
#endif

/* Decode: the 16 exact integer sums (spec's, Q4_0/Q5_0 centred), as f32; the codes are made and
 * used at once (base, off: code_pair; Q4_K: code_quad). */
QM_INLINE __m512 sums_decode(qm_dtype dt, const uint8_t *base, int off, int nb, const wgroup *g, const xgroup *xg) {
    __m512i v[8], u[2];
#pragma GCC unroll 8
    for (int k = 0; k < 8; k++) {
        __m512i c = dec_quads(dt) ? code_quad(base, off, nb, k) : code_pair(dt, base, off, nb, k), xs = xg->q[k];
        if (dt == QM_DT_Q8_0) { /* -q where w < 0, then |w| */
            const __m512i neg = _mm512_movm_epi8(_mm512_movepi8_mask(c));
            xs = _mm512_sub_epi8(_mm512_xor_si512(xs, neg), neg);
            c = _mm512_abs_epi8(c);
        }
        v[k] = dword_sums(dt, c, xs, xg, k);
    }
    if (dt == QM_DT_Q8_0) return _mm512_cvtepi32_ps(reduce_blocks(v));
    reduce_groups(v, u);
    if (dt == QM_DT_Q6_K) { /* 16-element sums times their scales: integers below 2^24 in f32, exact */
        const __m512 f0 = _mm512_mul_ps(_mm512_cvtepi32_ps(u[0]), g->sc6[0]);
        const __m512 f1 = _mm512_mul_ps(_mm512_cvtepi32_ps(u[1]), g->sc6[1]);
        return _mm512_add_ps(_mm512_shuffle_f32x4(f0, f1, _MM_SHUFFLE(2, 0, 2, 0)),
                             _mm512_shuffle_f32x4(f0, f1, _MM_SHUFFLE(3, 1, 3, 1)));
    }
    __m512i is = _mm512_add_epi32(_mm512_shuffle_i32x4(u[0], u[1], _MM_SHUFFLE(2, 0, 2, 0)),
                                  _mm512_shuffle_i32x4(u[0], u[1], _MM_SHUFFLE(3, 1, 3, 1)));
    if (dt == QM_DT_Q4_0) is = _mm512_sub_epi32(is, _mm512_slli_epi32(xg->s, 3));
    if (dt == QM_DT_Q5_0) is = _mm512_sub_epi32(is, _mm512_slli_epi32(xg->s, 4));
    return _mm512_cvtepi32_ps(is);
}

#ifndef QM_QDOT_VNNI
/* Prefill: transposed operands, products summed vertically (int16 while the bounds allow). */
QM_INLINE __m512i isum_prefill(qm_dtype dt, const wgroup *g, const xgroup *xg) {
    const __m512i ones = _mm512_set1_epi16(1);
    if (dt == QM_DT_Q8_0) {
        __m512i acc = _mm512_setzero_si512();
        for (int i = 0; i < 8; i++) {
            const __m512i xs = _mm512_sub_epi8(_mm512_xor_si512(xg->q[i], g->neg[i]), g->neg[i]);
            acc = _mm512_add_epi32(acc, _mm512_madd_epi16(_mm512_maddubs_epi16(g->q[i], xs), ones));
        }
        return acc;
    }
    __m512i h[2];
    for (int e = 0; e < 2; e++) {
        h[e] = _mm512_setzero_si512();
        for (int i = 4 * e; i < 4 * e + 4; i++) {
            __m512i p = _mm512_maddubs_epi16(g->q[i], xg->q[i]);
            if (dt == QM_DT_Q6_K) p = _mm512_sub_epi16(p, xg->q32[i]);
            h[e] = _mm512_add_epi16(h[e], p);
        }
    }
    if (dt == QM_DT_Q6_K)
        return _mm512_add_epi32(_mm512_madd_epi16(h[0], g->sc[0]), _mm512_madd_epi16(h[1], g->sc[1]));
    if (dt == QM_DT_Q4_0 || dt == QM_DT_Q4_1 || dt == QM_DT_Q4_K)
        return _mm512_madd_epi16(_mm512_add_epi16(h[0], h[1]), ones);
    return _mm512_add_epi32(_mm512_madd_epi16(h[0], ones), _mm512_madd_epi16(h[1], ones));
}
#else
/* Prefill with VNNI: vpdpbusd adds each lane's four u8 x s8 products into its int32, so the
 * vertical sums need no int16 stage (the same exact integers). Two accumulators per sum halve
 * the dependency chain; Q6_K sums its two 16-element groups apart, takes 32 x their activation
 * sums off and multiplies by the groups' scales (int32 lanes, made in unpack_prefill). */
QM_INLINE __m512i dot4(const __m512i *q, const __m512i *x, int k0) {
    __m512i a = _mm512_dpbusd_epi32(_mm512_setzero_si512(), q[k0], x[k0]);
    __m512i b = _mm512_dpbusd_epi32(_mm512_setzero_si512(), q[k0 + 1], x[k0 + 1]);
    a = _mm512_dpbusd_epi32(a, q[k0 + 2], x[k0 + 2]);
    b = _mm512_dpbusd_epi32(b, q[k0 + 3], x[k0 + 3]);
    return _mm512_add_epi32(a, b);
}

QM_INLINE __m512i isum_prefill(qm_dtype dt, const wgroup *g, const xgroup *xg) {
    if (dt == QM_DT_Q8_0) {
        __m512i xs[8];
        for (int i = 0; i < 8; i++) xs[i] = _mm512_sub_epi8(_mm512_xor_si512(xg->q[i], g->neg[i]), g->neg[i]);
        return _mm512_add_epi32(dot4(g->q, xs, 0), dot4(g->q, xs, 4));
    }
    if (dt == QM_DT_Q6_K) {
        const __m512i s0 = _mm512_sub_epi32(dot4(g->q, xg->q, 0), xg->x32[0]);
        const __m512i s1 = _mm512_sub_epi32(dot4(g->q, xg->q, 4), xg->x32[1]);
        return _mm512_add_epi32(_mm512_mullo_epi32(s0, g->sc[0]), _mm512_mullo_epi32(s1, g->sc[1]));
    }
    return _mm512_add_epi32(dot4(g->q, xg->q, 0), dot4(g->q, xg->q, 4));
}
#endif

QM_INLINE __m512 sums_prefill(qm_dtype dt, const wgroup *g, const xgroup *xg) {
    __m512i is = isum_prefill(dt, g, xg);
    if (dt == QM_DT_Q4_0) is = _mm512_sub_epi32(is, _mm512_slli_epi32(xg->s, 3));
    if (dt == QM_DT_Q5_0) is = _mm512_sub_epi32(is, _mm512_slli_epi32(xg->s, 4));
    return _mm512_cvtepi32_ps(is);
}

/* The 16 contributions c_b from the 16 exact integer sums f (as f32); dx, sf: the activations'
 * d and (float)s. */
QM_INLINE __m512 contrib_x(qm_dtype dt, const wgroup *g, __m512 dx, __m512 sf, __m512 f) {
    if (dt == QM_DT_Q4_K || dt == QM_DT_Q5_K) f = _mm512_mul_ps(g->sc_f, f);
    const __m512 c = _mm512_mul_ps(_mm512_mul_ps(g->d, dx), f);
    if (dt == QM_DT_Q4_1 || dt == QM_DT_Q5_1) return _mm512_add_ps(c, _mm512_mul_ps(_mm512_mul_ps(g->m, dx), sf));
    if (dt == QM_DT_Q4_K || dt == QM_DT_Q5_K)
        return _mm512_sub_ps(c, _mm512_mul_ps(_mm512_mul_ps(g->m, dx), _mm512_mul_ps(g->mn_f, sf)));
    return c;
}

QM_INLINE __m512 contrib(qm_dtype dt, const wgroup *g, const xgroup *xg, __m512 f) {
    return contrib_x(dt, g, xg->dx, xg->sf, f);
}

/* The halving tree 8, 4, 2, 1 of an accumulator whose lane l holds lane PERM[l] (QPERM[l] in quads). */
QM_INLINE float tree16(__m512 p, int quads) {
    const __m512 a = _mm512_permutexvar_ps(block_lanes(quads), p);
    const __m256 s8 = _mm256_add_ps(_mm512_castps512_ps256(a), _mm512_extractf32x8_ps(a, 1));
    const __m128 s4 = _mm_add_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps(s8, 1));
    const __m128 s2 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
    return _mm_cvtss_f32(_mm_add_ss(s2, _mm_shuffle_ps(s2, s2, _MM_SHUFFLE(1, 1, 1, 1))));
}

/* acc + c in the lanes of the first nb blocks; the others keep their bits. */
QM_INLINE __m512 add_lanes(__m512 acc, __m512 c, int quads, int nb) {
    return nb == 16 ? _mm512_add_ps(acc, c) : _mm512_mask_add_ps(acc, lanes_of(quads, nb), acc, c);
}

/* ---- tiles ---- */

typedef struct {
    const uint8_t *row0; /* the first row's first block */
    size_t stride;
    int sb0, nblk;       /* view block 0 = 32-block sb0 of the row; nblk blocks */
    int whole;           /* the view is whole rows: the next rows follow these in memory */
} wrows;

/* The next pass's DR rows, prefetched a slice per 16-block group (see tile_decode): the slice's
 * bytes, 0 where the rows do not follow in memory. */
QM_INLINE size_t prefetch_step(const wrows *w) {
    const size_t ngroups = (size_t)(w->nblk + 15) / 16 * DR;
    return w->whole ? ((size_t)DR * w->stride + ngroups - 1) / ngroups : 0;
}

/* load_x of a group of nb blocks, with a literal 16 for a full one: no lane tests. */
QM_INLINE void load_group(qm_dtype dt, const qm_q8act *x, int t, int b0, int nb, int transposed, xgroup *xg) {
    if (nb == 16) load_x(dt, x, t, b0, 16, transposed, xg);
    else load_x(dt, x, t, b0, nb, transposed, xg);
}

QM_INLINE void store(__m512 acc, int quads, const float *bias, int r, float *y) {
    const float d = tree16(acc, quads);
    *y = bias ? d + bias[r] : d;
}

/* One token, rows [0, nr) (nr <= DR): each row's codes made and used at once. off: the view's
 * first sub-block % 8 (K-quants; 0 otherwise), a literal 0 where it is, for constant shifts. */
QM_INLINE void tile_decode(qm_dtype dt, const wrows *w, int off, int nr, const qm_q8act *x, const float *bias,
                           float *y) {
    __m512 acc[DR];
    const int quads = dec_quads(dt);
    const klanes kl = klanes_of(dt, w->sb0 & 7, quads);
    for (int r = 0; r < DR; r++) acc[r] = _mm512_setzero_ps();
    /* The next pass's rows (when the view is whole rows), a slice per group: the hardware
     * prefetcher alone does not keep DR strided streams ahead. Prefetches never fault. */
    const char *pf = (const char *)w->row0 + (size_t)DR * w->stride;
    const size_t pf_step = prefetch_step(w);
    for (int b0 = 0; b0 < w->nblk; b0 += 16) {
        const int nb = w->nblk - b0 < 16 ? w->nblk - b0 : 16, sb = w->sb0 + b0;
        xgroup xg;
        load_group(dt, x, 0, b0, nb, 0, &xg);
        for (int r = 0; r < nr; r++) {
            for (size_t k = 0; k < pf_step; k += 64) _mm_prefetch(pf + k, _MM_HINT_T0);
            pf += pf_step;
            const uint8_t *row = w->row0 + (size_t)r * w->stride, *base = group_base(dt, row, sb);
            wgroup g;
            scales(dt, row, sb, nb, 0, off == 0, quads, &kl, &g);
            const __m512 f = nb == 16 ? sums_decode(dt, base, off, 16, &g, &xg) : sums_decode(dt, base, off, nb, &g, &xg);
            acc[r] = add_lanes(acc[r], contrib(dt, &g, &xg, f), quads, nb);
        }
    }
    for (int r = 0; r < nr; r++) store(acc[r], quads, bias, r, y + r);
}

/* Rows [0, nr) x tokens [t0, t0 + nt) (nr <= PR, nt <= PT); y points at output (t0, row 0). */
QM_INLINE void tile_prefill(qm_dtype dt, const wrows *w, int nr, const qm_q8act *x, int t0, int nt,
                            const float *bias, float *y, size_t ldy) {
    __m512 acc[PR][PT];
    wgroup wg[PR];
    const klanes kl = klanes_of(dt, w->sb0 & 7, 0);
    for (int r = 0; r < nr; r++)
        for (int t = 0; t < nt; t++) acc[r][t] = _mm512_setzero_ps();
    for (int b0 = 0; b0 < w->nblk; b0 += 16) {
        const int nb = w->nblk - b0 < 16 ? w->nblk - b0 : 16;
        for (int r = 0; r < nr; r++) {
            if (nb == 16) unpack_prefill(dt, w->row0 + (size_t)r * w->stride, w->sb0 + b0, 16, &kl, &wg[r]);
            else unpack_prefill(dt, w->row0 + (size_t)r * w->stride, w->sb0 + b0, nb, &kl, &wg[r]);
        }
        for (int t = 0; t < nt; t++) {
            xgroup xg;
            load_group(dt, x, t0 + t, b0, nb, 1, &xg);
            for (int r = 0; r < nr; r++)
                acc[r][t] = add_lanes(acc[r][t], contrib(dt, &wg[r], &xg, sums_prefill(dt, &wg[r], &xg)), 0, nb);
        }
    }
    for (int r = 0; r < nr; r++)
        for (int t = 0; t < nt; t++) store(acc[r][t], 0, bias, r, y + (size_t)t * ldy + (size_t)r);
}

/* ---- prefill, blocked: activations prepared once per call, weights once per token block ----
 * tile_prefill above transposes each token's group again for every row tile and each row's group
 * again for every 16 tokens, and keeps its 6 x 16 accumulators on the stack. Here (the same
 * integers, the same f32 operations per lane, the same order over the groups, so the same bits):
 * the token block's groups are transposed once into a buffer (xprep, [group][token]) sized to
 * stay in the L2; for each row tile (MR rows) and group, the rows are unpacked once for the whole
 * block and an MR x MT register tile of integer sums runs over its tokens, one activation vector
 * and one weight vector loaded per MR x MT products; the f32 accumulators wait in a small buffer
 * in the L1 between groups. */
#define MR 4      /* prefill: rows per register tile */
#define MT 4      /* prefill: tokens per register tile */
#define TBMAX 64  /* prefill: tokens per block at most */
#define XBUDGET (256 * 1024) /* prefill: the token block's prepared activations, bytes */

/* One token's group, as load_x (transposed) makes it, less what the sums do not read. */
typedef struct {
    __m512i q[8];   /* the codes, transposed (absent blocks 0) */
    __m512 dx, sf;  /* d and (float)s, lane l = block PERM[l] */
    __m512i aux[2]; /* taken off the sums by fold: Q6_K 32 x the sum of each half's activations
                     * (VNNI: int32 lanes, else int16 lanes, as maddubs' pairs); Q4_0: 8 s;
                     * Q5_0: 16 s; Q8_0 (VNNI): 128 s */
} xprep;

QM_INLINE void prep_x(qm_dtype dt, const qm_q8act *x, int t, int b0, int nb, xprep *p) {
    xgroup xg;
    load_group(dt, x, t, b0, nb, 1, &xg);
    for (int k = 0; k < 8; k++) p->q[k] = xg.q[k];
    p->dx = xg.dx;
    p->sf = xg.sf;
    p->aux[0] = p->aux[1] = _mm512_setzero_si512();
#ifdef QM_QDOT_VNNI
    if (dt == QM_DT_Q6_K) p->aux[0] = xg.x32[0], p->aux[1] = xg.x32[1];
    if (dt == QM_DT_Q8_0) p->aux[0] = _mm512_slli_epi32(xg.s, 7);
#else
    if (dt == QM_DT_Q6_K)
        for (int e = 0; e < 2; e++)
            for (int k = 4 * e; k < 4 * e + 4; k++) p->aux[e] = _mm512_add_epi16(p->aux[e], xg.q32[k]);
#endif
    if (dt == QM_DT_Q4_0) p->aux[0] = _mm512_slli_epi32(xg.s, 3);
    if (dt == QM_DT_Q5_0) p->aux[0] = _mm512_slli_epi32(xg.s, 4);
}

/* Row r's group unpacked for the tile (VNNI Q8_0: the codes w + 128, unsigned, for vpdpbusd). */
QM_INLINE void prep_w(qm_dtype dt, const wrows *w, int r, int sb, int nb, const klanes *kl, wgroup *g) {
    unpack_prefill(dt, w->row0 + (size_t)r * w->stride, sb, nb, kl, g);
#ifdef QM_QDOT_VNNI
    if (dt == QM_DT_Q8_0)
        for (int k = 0; k < 8; k++)
            g->q[k] = _mm512_xor_si512(_mm512_sub_epi8(_mm512_xor_si512(g->q[k], g->neg[k]), g->neg[k]),
                                       _mm512_set1_epi8(-128));
#endif
}

/* The integer sums, vector by vector: h + the vertical products of codes w and activations xv.
 * VNNI: int32 lanes (vpdpbusd); else int16 lanes (maddubs: bounds in the file comment; Q6_K's
 * may wrap, its fold takes aux off to the exact value), Q8_0 int32 with w's sign moved onto x. */
QM_INLINE __m512i qstep(qm_dtype dt, __m512i h, __m512i w, __m512i xv, __m512i neg) {
#ifdef QM_QDOT_VNNI
    (void)dt, (void)neg;
    return _mm512_dpbusd_epi32(h, w, xv);
#else
    if (dt == QM_DT_Q8_0) {
        const __m512i xs = _mm512_sub_epi8(_mm512_xor_si512(xv, neg), neg);
        return _mm512_add_epi32(h, _mm512_madd_epi16(_mm512_maddubs_epi16(w, xs), _mm512_set1_epi16(1)));
    }
    return _mm512_add_epi16(h, _mm512_maddubs_epi16(w, xv));
#endif
}

/* Whether h restarts at 0 for the second half (vectors 4..7). */
QM_INLINE int half_apart(qm_dtype dt) {
#ifdef QM_QDOT_VNNI
    return dt == QM_DT_Q6_K;
#else
    return dt == QM_DT_Q6_K || dt == QM_DT_Q5_0 || dt == QM_DT_Q5_1 || dt == QM_DT_Q5_K;
#endif
}

/* After half e (e = 1, or either where half_apart): the running exact int32 sum given is, the
 * one so far (read at e = 1 only); at the end the spec's (Q4_0/Q5_0 centred). */
QM_INLINE __m512i fold(qm_dtype dt, int e, __m512i h, const wgroup *g, const xprep *p, __m512i is) {
    const int ctr = dt == QM_DT_Q4_0 || dt == QM_DT_Q5_0 || dt == QM_DT_Q8_0;
    if (dt == QM_DT_Q6_K) { /* (sums less 32 x activations) x the groups' scales */
#ifdef QM_QDOT_VNNI
        const __m512i v = _mm512_mullo_epi32(_mm512_sub_epi32(h, p->aux[e]), g->sc[e]);
#else
        const __m512i v = _mm512_madd_epi16(_mm512_sub_epi16(h, p->aux[e]), g->sc[e]);
#endif
        return e ? _mm512_add_epi32(is, v) : v;
    }
#ifndef QM_QDOT_VNNI
    if (dt != QM_DT_Q8_0) h = _mm512_madd_epi16(h, _mm512_set1_epi16(1)); /* int16 pairs to int32 */
    if (half_apart(dt) && e == 0) return h;
    if (half_apart(dt)) h = _mm512_add_epi32(is, h);
#endif
    return ctr ? _mm512_sub_epi32(h, p->aux[0]) : h;
}

/* Rows [0, MR) x tokens [0, nt) (nt <= MT) of one group: is = the exact integer sums. */
QM_INLINE void isums_tile(qm_dtype dt, const wgroup *wg, const xprep *xp, int nt, __m512i is[MR][MT]) {
    __m512i h[MR][MT];
    for (int e = 0; e < 2; e++) {
        if (e == 0 || half_apart(dt))
            for (int r = 0; r < MR; r++)
                for (int t = 0; t < nt; t++) h[r][t] = _mm512_setzero_si512();
        for (int i = 4 * e; i < 4 * e + 4; i++) {
            __m512i xv[MT];
            for (int t = 0; t < nt; t++) xv[t] = xp[t].q[i];
            for (int r = 0; r < MR; r++) {
                const __m512i wv = wg[r].q[i], neg = dt == QM_DT_Q8_0 ? wg[r].neg[i] : _mm512_setzero_si512();
                for (int t = 0; t < nt; t++) h[r][t] = qstep(dt, h[r][t], wv, xv[t], neg);
            }
        }
        if (e == 1 || half_apart(dt))
            for (int r = 0; r < MR; r++)
                for (int t = 0; t < nt; t++) is[r][t] = fold(dt, e, h[r][t], &wg[r], &xp[t], e ? is[r][t] : h[r][t]);
    }
}

/* acc[r * TBMAX + t] += the contributions of rows [0, MR) x tokens [0, nt) of one group. */
QM_INLINE void tile_rt(qm_dtype dt, int nb, const wgroup *wg, const xprep *xp, int nt, __m512 *acc) {
    __m512i is[MR][MT];
    for (int r = 0; r < MR; r++) /* (isums_tile writes them all; zeros for the compiler's sake) */
        for (int t = 0; t < MT; t++) is[r][t] = _mm512_setzero_si512();
    isums_tile(dt, wg, xp, nt, is);
    for (int r = 0; r < MR; r++)
        for (int t = 0; t < nt; t++) {
            const __m512 c = contrib_x(dt, &wg[r], xp[t].dx, xp[t].sf, _mm512_cvtepi32_ps(is[r][t]));
            acc[r * TBMAX + t] = add_lanes(acc[r * TBMAX + t], c, 0, nb);
        }
}

/* One group, all ntb tokens of the block: MT at a time, then the rest. */
QM_INLINE void group_tokens(qm_dtype dt, int nb, const wgroup *wg, const xprep *xp, int ntb, __m512 *acc) {
    int t = 0;
    for (; t + MT <= ntb; t += MT) tile_rt(dt, nb, wg, xp + t, MT, acc + t);
    const int rest = ntb - t;
    if (rest == 1) tile_rt(dt, nb, wg, xp + t, 1, acc + t);
    else if (rest == 2) tile_rt(dt, nb, wg, xp + t, 2, acc + t);
    else if (rest == 3) tile_rt(dt, nb, wg, xp + t, 3, acc + t);
}

/* Rows [0, nr) (nr <= MR) x the block's ntb tokens (xb: [group][ldx tokens]); y at (token 0, row 0).
 * Rows past nr are zero codes and scales, their sums unused. */
QM_INLINE void rows_block(qm_dtype dt, const wrows *w, int nr, const xprep *xb, int ldx, int ntb, const float *bias,
                          float *y, size_t ldy) {
    __m512 acc[MR * TBMAX];
    wgroup wg[MR];
    const klanes kl = klanes_of(dt, w->sb0 & 7, 0);
    for (int r = 0; r < MR; r++)
        for (int t = 0; t < ntb; t++) acc[r * TBMAX + t] = _mm512_setzero_ps();
    for (int r = nr; r < MR; r++) wg[r] = (wgroup){0};
    for (int b0 = 0; b0 < w->nblk; b0 += 16) {
        const int nb = w->nblk - b0 < 16 ? w->nblk - b0 : 16;
        const xprep *xp = xb + (size_t)(b0 / 16) * (size_t)ldx;
        for (int r = 0; r < nr; r++) {
            if (nb == 16) prep_w(dt, w, r, w->sb0 + b0, 16, &kl, &wg[r]);
            else prep_w(dt, w, r, w->sb0 + b0, nb, &kl, &wg[r]);
        }
        if (nb == 16) group_tokens(dt, 16, wg, xp, ntb, acc);
        else group_tokens(dt, nb, wg, xp, ntb, acc);
    }
    for (int r = 0; r < nr; r++)
        for (int t = 0; t < ntb; t++) store(acc[r * TBMAX + t], 0, bias, r, y + (size_t)t * ldy + (size_t)r);
}

/* Tokens per block: as many as keep the block's xprep within XBUDGET, a multiple of MT, at most TBMAX. */
QM_INLINE int token_block(int ngroups, int n_tok) {
    int tb = (int)(XBUDGET / ((size_t)ngroups * sizeof(xprep)));
    tb = tb > TBMAX ? TBMAX : tb < MT ? MT : tb - tb % MT;
    return n_tok < tb ? n_tok : tb;
}

/* Tokens [t0, t0 + ntb) of x, every group of its nblk blocks, into xb ([group][ldx tokens]). */
QM_INLINE void prep_tokens(qm_dtype dt, const qm_q8act *x, int nblk, int t0, int ntb, xprep *xb, int ldx) {
    for (int g = 0; g < (nblk + 15) / 16; g++) {
        const int nb = nblk - 16 * g < 16 ? nblk - 16 * g : 16;
        for (int t = 0; t < ntb; t++) {
            if (nb == 16) prep_x(dt, x, t0 + t, 16 * g, 16, &xb[(size_t)g * (size_t)ldx + (size_t)t]);
            else prep_x(dt, x, t0 + t, 16 * g, nb, &xb[(size_t)g * (size_t)ldx + (size_t)t]);
        }
    }
}

/* The prefill of rows [o_begin, o_end); 0 (nothing done) where the buffer cannot be had. */
QM_INLINE int matmul_blocked(qm_dtype dt, const wrows *w, const float *bias, const qm_q8act *x, int n_tok, float *y,
                             size_t ldy, int o_begin, int o_end) {
    const int ng = (w->nblk + 15) / 16, tb = token_block(ng, n_tok);
    xprep *xb = aligned_alloc(64, (size_t)ng * (size_t)tb * sizeof(xprep));
    if (!xb) return 0;
    for (int t0 = 0; t0 < n_tok; t0 += tb) {
        const int ntb = n_tok - t0 < tb ? n_tok - t0 : tb;
        prep_tokens(dt, x, w->nblk, t0, ntb, xb, tb);
        for (int o = o_begin; o < o_end; o += MR) {
            const wrows wr = {w->row0 + (size_t)(o - o_begin) * w->stride, w->stride, w->sb0, w->nblk, 0};
            rows_block(dt, &wr, o_end - o < MR ? o_end - o : MR, xb, tb, ntb, bias ? bias + o : NULL,
                       y + (size_t)t0 * ldy + (size_t)o, ldy);
        }
    }
    free(xb);
    return 1;
}

/* ---- narrow views (nblk <= 8): several rows per vector ----
 * The row-parallel layers hand over views of 1..8 blocks (a head, an MLP block), where one row
 * would fill nblk of the 16 lanes. Here a group's 16 items are (row j, block b) pairs, item
 * i = b R + j for R = 16 / P rows and P the power of two >= nblk (blocks b >= nblk: +0 lanes);
 * lane l holds item PERM[l] as above, and each lane's c is the same f32 operations on the same
 * exact integer sum as in a 16-block group. A row's accumulator would be acc[b] = +0 + c_b for
 * b < nblk and +0 elsewhere, and the tree's steps w >= P only add +0 to lanes that are not -0
 * (no-ops); its steps w < P add block b + w to block b, which here is lane b R + j plus lane
 * (b + w) R + j: the low half of the item vector plus its high half, halved log2 P times. */
#define SG 4 /* narrow views: row groups per tile */

/* Lane l's item: row j = PERM[l] % R, block b = PERM[l] / R (lg = log2 R). */
QM_INLINE __m512i item_row(int lg) {
    return _mm512_and_si512(perm_idx(), _mm512_set1_epi32((1 << lg) - 1));
}
QM_INLINE __m512i item_blk(int lg) { return _mm512_srli_epi32(perm_idx(), (unsigned)lg); }

/* The code of row `row`'s 32-block u (Q8_0 signed), alone. */
QM_INLINE __m256i code_one(qm_dtype dt, const uint8_t *row, int u) {
    if (qm_dtype_block(dt) == 32) return code_32(dt, row + (size_t)u * qm_dtype_block_bytes(dt));
    return dt == QM_DT_Q6_K ? code_q6k(row, u) : code_k45(dt, row, u);
}

/* Row group: rows [0, nr) of w (nr <= R), blocks [0, nblk), as items; codes transposed. */
QM_INLINE void unpack_narrow(qm_dtype dt, const wrows *w, int lg, int nr, wgroup *g) {
    const int R = 1 << lg;
    const __m256i z = _mm256_setzero_si256();
    for (int k = 0; k < 8; k++) {
        const int b = (2 * k) >> lg, j = (2 * k) & (R - 1), u = w->sb0 + b;
        const uint8_t *r0 = w->row0 + (size_t)j * w->stride;
        if (b >= w->nblk || j >= nr) {
            g->q[k] = _mm512_setzero_si512();
            continue;
        }
        g->q[k] = pair(code_one(dt, r0, u), j + 1 < nr ? code_one(dt, r0 + w->stride, u) : z);
    }
    transpose8(g->q);
    if (dt == QM_DT_Q8_0)
        for (int k = 0; k < 8; k++) {
            g->neg[k] = _mm512_movm_epi8(_mm512_movepi8_mask(g->q[k]));
            g->q[k] = _mm512_abs_epi8(g->q[k]);
        }
    const __m512i jr = item_row(lg), bk = item_blk(lg);
    const __mmask16 live = _mm512_cmplt_epi32_mask(jr, _mm512_set1_epi32(nr)) &
                           _mm512_cmplt_epi32_mask(bk, _mm512_set1_epi32(w->nblk));
    const __m512i roff = _mm512_mullo_epi32(jr, _mm512_set1_epi32((int)w->stride));
    const __m512i u = _mm512_add_epi32(bk, _mm512_set1_epi32(w->sb0));
    const __m512i z5 = _mm512_setzero_si512();
    if (qm_dtype_block(dt) == 32) {
        const __m512i idx = _mm512_add_epi32(roff, _mm512_mullo_epi32(u, _mm512_set1_epi32((int)qm_dtype_block_bytes(dt))));
        const __m512i dm = _mm512_mask_i32gather_epi32(z5, live, idx, w->row0, 1);
        g->d = f16_lanes(dm, 0);
        if (dt == QM_DT_Q4_1 || dt == QM_DT_Q5_1) g->m = f16_lanes(dm, 1);
        return;
    }
    const __m512i js = _mm512_and_si512(u, _mm512_set1_epi32(7));
    const __m512i sup = _mm512_add_epi32(roff, _mm512_mullo_epi32(_mm512_srli_epi32(u, 3),
                                                                  _mm512_set1_epi32((int)qm_dtype_block_bytes(dt))));
    if (dt == QM_DT_Q6_K) {
        /* d: the high half of the dword at 206 (stays inside the block); scales at 192 + 2 js */
        const __m512i dh = _mm512_mask_i32gather_epi32(z5, live, _mm512_add_epi32(sup, _mm512_set1_epi32(206)), w->row0, 1);
        g->d = f16_lanes(dh, 1);
        const __m512i at = _mm512_add_epi32(sup, _mm512_add_epi32(_mm512_slli_epi32(js, 1), _mm512_set1_epi32(192)));
        const __m512i s = _mm512_mask_i32gather_epi32(z5, live, at, w->row0, 1);
        const __m512i s0 = _mm512_srai_epi32(_mm512_slli_epi32(s, 24), 24), s1 = _mm512_srai_epi32(_mm512_slli_epi32(s, 16), 24);
        const __m512i lo16 = _mm512_set1_epi32(0xffff);
        g->sc[0] = _mm512_or_si512(_mm512_and_si512(s0, lo16), _mm512_slli_epi32(s0, 16));
        g->sc[1] = _mm512_or_si512(_mm512_and_si512(s1, lo16), _mm512_slli_epi32(s1, 16));
#ifdef QM_QDOT_VNNI
        prefill_sc32(g);
#endif
        return;
    }
    /* Q4_K, Q5_K (qm_quant_k_scales): js < 4: sc = s[js] & 63, mn = s[js + 4] & 63; js >= 4:
     * sc = (s[js + 4] & 15) | (s[js - 4] >> 6) << 4, mn = (s[js + 4] >> 4) | (s[js] >> 6) << 4 */
    const __m512i dm = _mm512_mask_i32gather_epi32(z5, live, sup, w->row0, 1);
    g->d = f16_lanes(dm, 0);
    g->m = f16_lanes(dm, 1);
    const __m512i b255 = _mm512_set1_epi32(255);
    const __m512i a = _mm512_and_si512(
        _mm512_mask_i32gather_epi32(z5, live, _mm512_add_epi32(sup, _mm512_add_epi32(js, _mm512_set1_epi32(4))), w->row0, 1), b255);
    const __m512i bb = _mm512_and_si512(
        _mm512_mask_i32gather_epi32(z5, live, _mm512_add_epi32(sup, _mm512_add_epi32(js, _mm512_set1_epi32(8))), w->row0, 1), b255);
    const __m512i c = _mm512_and_si512(_mm512_mask_i32gather_epi32(z5, live, _mm512_add_epi32(sup, js), w->row0, 1), b255);
    const __mmask16 hi = _mm512_cmpge_epi32_mask(js, _mm512_set1_epi32(4));
    const __m512i m63 = _mm512_set1_epi32(63), m15 = _mm512_set1_epi32(15);
    const __m512i sc_lo = _mm512_and_si512(a, m63), mn_lo = _mm512_and_si512(bb, m63);
    const __m512i sc_hi = _mm512_or_si512(_mm512_and_si512(bb, m15), _mm512_slli_epi32(_mm512_srli_epi32(c, 6), 4));
    const __m512i mn_hi = _mm512_or_si512(_mm512_srli_epi32(bb, 4), _mm512_slli_epi32(_mm512_srli_epi32(a, 6), 4));
    g->sc_f = _mm512_cvtepi32_ps(_mm512_mask_blend_epi32(hi, sc_lo, sc_hi));
    g->mn_f = _mm512_cvtepi32_ps(_mm512_mask_blend_epi32(hi, mn_lo, mn_hi));
}

/* Token t's blocks [b0, b0 + nblk) as items: block b in the items of every row. */
QM_INLINE void load_x_narrow(qm_dtype dt, const qm_q8act *x, int t, int b0, int nblk, int lg, xgroup *xg) {
    const size_t xb = (size_t)t * x->ld_blocks + (size_t)b0;
    const int8_t *q = x->q + xb * QM_Q8_BLOCK;
    for (int k = 0; k < 8; k++) {
        const int b = (2 * k) >> lg;
        xg->q[k] = b < nblk ? _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(q + 32 * b)))
                            : _mm512_setzero_si512();
    }
    transpose8(xg->q);
    if (dt == QM_DT_Q6_K)
        for (int k = 0; k < 8; k++) xg->q32[k] = _mm512_maddubs_epi16(_mm512_set1_epi8(32), xg->q[k]);
#ifdef QM_QDOT_VNNI
    if (dt == QM_DT_Q6_K) prefill_x32(xg);
#endif
    const __mmask16 first = (__mmask16)((1u << nblk) - 1u);
    const __m512i bk = item_blk(lg);
    xg->dx = _mm512_permutexvar_ps(bk, _mm512_maskz_loadu_ps(first, x->d + xb));
    xg->s = _mm512_permutexvar_epi32(bk, _mm512_maskz_loadu_epi32(first, x->s + xb));
    xg->sf = _mm512_cvtepi32_ps(xg->s);
}

/* Row groups [0, ng) x tokens [t0, t0 + nt); rows [0, nr) in all. */
QM_INLINE void tile_narrow(qm_dtype dt, const wrows *w, int lg, int nr, const qm_q8act *x, int t0, int nt,
                           const float *bias, float *y, size_t ldy) {
    const int R = 1 << lg, ng = (nr + R - 1) >> lg;
    wgroup wg[SG];
    for (int gi = 0; gi < ng; gi++) {
        const wrows wr = {w->row0 + (size_t)(gi * R) * w->stride, w->stride, w->sb0, w->nblk, 0};
        unpack_narrow(dt, &wr, lg, nr - gi * R < R ? nr - gi * R : R, &wg[gi]);
    }
    const __mmask16 blk_live = _mm512_cmplt_epi32_mask(item_blk(lg), _mm512_set1_epi32(w->nblk));
    for (int t = 0; t < nt; t++) {
        xgroup xg;
        load_x_narrow(dt, x, t0 + t, 0, w->nblk, lg, &xg);
        for (int gi = 0; gi < ng; gi++) {
            const __m512 c = contrib(dt, &wg[gi], &xg, sums_prefill(dt, &wg[gi], &xg));
            /* acc = +0 + c in the lanes of blocks < nblk, +0 elsewhere; then item order */
            const __m512 a = _mm512_permutexvar_ps(unperm_idx(), _mm512_maskz_add_ps(blk_live, _mm512_setzero_ps(), c));
            const int nrg = nr - gi * R < R ? nr - gi * R : R;
            float *yo = y + (size_t)t * ldy + (size_t)(gi * R);
            const float *bo = bias ? bias + gi * R : NULL;
            if (lg == 4) { /* P = 1 */
                __m512 r = a;
                if (bo) r = _mm512_add_ps(r, _mm512_maskz_loadu_ps((__mmask16)((1u << nrg) - 1u), bo));
                _mm512_mask_storeu_ps(yo, (__mmask16)((1u << nrg) - 1u), r);
                continue;
            }
            __m256 s8 = _mm256_add_ps(_mm512_castps512_ps256(a), _mm512_extractf32x8_ps(a, 1));
            const __mmask8 m8 = (__mmask8)((1u << nrg) - 1u);
            if (lg == 3) { /* P = 2 */
                if (bo) s8 = _mm256_add_ps(s8, _mm256_maskz_loadu_ps(m8, bo));
                _mm256_mask_storeu_ps(yo, m8, s8);
                continue;
            }
            __m128 s4 = _mm_add_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps(s8, 1));
            if (lg == 1) s4 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4)); /* P = 8: lanes 0, 1 */
            if (bo) s4 = _mm_add_ps(s4, _mm_maskz_loadu_ps(m8, bo));
            _mm_mask_storeu_ps(yo, m8, s4);
        }
    }
}

/* log2 R for a view of nblk <= 8 blocks: R = 16 / P, P the power of two >= nblk. */
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
         * 2026-12-06 14:57: 2 tokens took 5x one) */
        for (int t = 0; t < n_tok; t++) {
            const qm_q8act xt = qm_q8act_vector(x, t);
            for (int o = o_begin; o < o_end; o += DR) {
                const wrows wr = {(const uint8_t *)w->data + (size_t)o * stride, stride, sb0, nblk, whole};
                const int nr = o_end - o < DR ? o_end - o : DR, off = qm_dtype_block(dt) == 32 ? 0 : sb0 & 7;
                float *yt = y + (size_t)t * ldy + (size_t)o;
                if (off == 0) tile_decode(dt, &wr, 0, nr, &xt, bias ? bias + o : NULL, yt);
                else tile_decode(dt, &wr, off, nr, &xt, bias ? bias + o : NULL, yt);
            }
        }
        return;
    }
    const wrows all = {(const uint8_t *)w->data + (size_t)o_begin * stride, stride, sb0, nblk, whole};
    if (matmul_blocked(dt, &all, bias, x, n_tok, y, ldy, o_begin, o_end)) return;
    for (int t0 = 0; t0 < n_tok; t0 += PT) { /* no buffer: tile by tile */
        const int nt = n_tok - t0 < PT ? n_tok - t0 : PT;
        for (int o = o_begin; o < o_end; o += PR) {
            const wrows wr = {(const uint8_t *)w->data + (size_t)o * stride, stride, sb0, nblk, whole};
            tile_prefill(dt, &wr, o_end - o < PR ? o_end - o : PR, x, t0, nt, bias ? bias + o : NULL,
                         y + (size_t)t0 * ldy + (size_t)o, ldy);
        }
    }
}

/* Interleaved rows (rows8.h): up to this many tokens their own kernels (rows8_avx512vnni.c, or
 * rows8_avx2.c without VNNI), more (prefill) this file's blocked tiles on an unpacked copy, faster
 * there (the 0.5B's fast prefill of 512, gate_up 363-389 ms so, 484-568 by the VNNI kernel's
 * 16-token passes, 360-401 on the file's layout; at 16 tokens the kernel's 14.5-14.9 ms a step
 * against the file layout's tiles' 14.3-14.6; Zen 5, 2026-12-07). */
#define ROWS8_TOKENS_MAX 16

void QDOT_ISA(qm_matmul_q8)(const qm_wview *w, const float *bias, const qm_q8act *x, int n_tok, float *y, size_t ldy,
                         int o_begin, int o_end) {
    if (n_tok <= 0 || o_begin >= o_end) return;
    if (qm_dtype_is_rows8(w->dtype)) {
#ifdef QM_QDOT_VNNI
        const qm_rows8_kernels k = {qm_rows8_decode_avx512vnni, qm_rows8_tokens_avx512vnni, qm_rows8_unpack8_avx512vnni,
                                    QDOT_ISA(qm_matmul_q8), ROWS8_TOKENS_MAX};
#else
        const qm_rows8_kernels k = {qm_rows8_decode_avx2, qm_rows8_tokens_avx2, qm_rows8_unpack8_avx2,
                                    QDOT_ISA(qm_matmul_q8), ROWS8_TOKENS_MAX};
#endif
        qm_matmul_q8_rows8(w, bias, x, n_tok, y, ldy, o_begin, o_end, &k);
        return;
    }
#define MATMUL_DT(dt_) matmul_dt(dt_, w, bias, x, n_tok, y, ldy, o_begin, o_end)
    QM_SWITCH_QUANT_DTYPE(w->dtype, MATMUL_DT);
#undef MATMUL_DT
}

/* ---- row-parallel blocks of 64 or 128 columns, one token ----
 * A 64-column block is two 32-blocks, b = 2j and 2j + 1 of the group; as a view of its own its
 * accumulator would be a_b = +0 + c_b in lanes 0 and 1 and +0 elsewhere, and the halving tree's
 * steps 8, 4, 2 only add +0 to lanes that are not -0 (no-ops), so its dot is a_2j + a_2j+1 (an
 * absent block: a = +0, again a no-op). In the group vector, lanes 0..3 hold the even blocks
 * 0, 2, 4, 6 and lanes 4..7 the odd ones (PERM), likewise 8..15: one add of the vector and its
 * 128-bit halves swapped gives the group's 8 block dots. A 128-column block (a head of 128) is
 * 32-blocks 4m .. 4m + 3, its dot (a_4m + a_4m+2) + (a_4m+1 + a_4m+3) (the tree's steps 2 and 1):
 * lanes 2i, 2i + 1 hold blocks 4i', 4i' + 2 (and lanes 4 on, the odd ones), so adjacent lanes
 * added, then the halves swapped and added, leave block m's dot in lane 2 (m % 2) + 8 (m / 2).
 * Each row is read once, contiguously. bpb: 32-blocks per block (2 or 4). */
QM_INLINE __m512 block_dot_lanes(__m512 a, int bpb) {
    if (bpb == 4) a = _mm512_add_ps(a, _mm512_permute_ps(a, _MM_SHUFFLE(2, 3, 0, 1)));
    return _mm512_add_ps(a, _mm512_shuffle_f32x4(a, a, _MM_SHUFFLE(2, 3, 0, 1)));
}

/* The same in quads (QPERM): lanes 4i .. 4i + 3 hold blocks 8(i / 2) + 2(i % 2) + (0, 1, 4, 5), so a
 * 64-column block's two are adjacent lanes, and a 128-column block's (4m, 4m + 1, 4m + 2, 4m + 3)
 * lanes 2i', 2i' + 1, 2i' + 4, 2i' + 5: halves swapped and added first, then adjacent lanes. Block
 * k's dot (64 columns) in lane 8 (k / 4) + 4 (k % 2) + 2 (k / 2 % 2); block m's (128) in lane
 * 2 (m % 2) + 8 (m / 2) as above. */
QM_INLINE __m512 block_dot_lanes_quads(__m512 a, int bpb) {
    if (bpb == 4) a = _mm512_add_ps(a, _mm512_shuffle_f32x4(a, a, _MM_SHUFFLE(2, 3, 0, 1)));
    return _mm512_add_ps(a, _mm512_permute_ps(a, _MM_SHUFFLE(2, 3, 0, 1)));
}

/* Lane of block_dot_lanes(_quads)'s output that holds the group's block k. */
QM_INLINE int block_dot_lane(int quads, int bpb, int k) {
    if (bpb == 4) return 2 * (k % 2) + 8 * (k / 2);
    return quads ? 8 * (k / 4) + 4 * (k % 2) + 2 * (k / 2 % 2) : k < 4 ? k : k + 4;
}

/* The 4 x 4 transpose in each 128-bit lane: lane j of u[i] is lanes 4j + i of a[0..3]. */
QM_INLINE void transpose4_lanes(const __m512 a[4], __m512 u[4]) {
    const __m512d t0 = _mm512_castps_pd(_mm512_unpacklo_ps(a[0], a[1])), t1 = _mm512_castps_pd(_mm512_unpackhi_ps(a[0], a[1]));
    const __m512d t2 = _mm512_castps_pd(_mm512_unpacklo_ps(a[2], a[3])), t3 = _mm512_castps_pd(_mm512_unpackhi_ps(a[2], a[3]));
    u[0] = _mm512_castpd_ps(_mm512_unpacklo_pd(t0, t2));
    u[1] = _mm512_castpd_ps(_mm512_unpackhi_pd(t0, t2));
    u[2] = _mm512_castpd_ps(_mm512_unpacklo_pd(t1, t3));
    u[3] = _mm512_castpd_ps(_mm512_unpackhi_pd(t1, t3));
}

QM_INLINE __m128 lane128(__m512 v, int j) {
    switch (j) {
    case 0: return _mm512_castps512_ps128(v);
    case 1: return _mm512_extractf32x4_ps(v, 1);
    case 2: return _mm512_extractf32x4_ps(v, 2);
    default: return _mm512_extractf32x4_ps(v, 3);
    }
}

/* The group's nk block dots of rows [0, nr) (a[r]: block_dot_lanes(_quads) of row r) to
 * part[k * pstride + r]: a whole tile of DR = 4 rows transposed, a 128-bit store a block. */
QM_INLINE void store_block_dots(const __m512 *a, int nr, int quads, int bpb, int nk, float *part, size_t pstride) {
    if (nr == 4) {
        __m512 u[4];
        transpose4_lanes(a, u);
        for (int k = 0; k < nk; k++) {
            const int p = block_dot_lane(quads, bpb, k);
            _mm_storeu_ps(part + (size_t)k * pstride, lane128(u[p & 3], p >> 2));
        }
        return;
    }
    for (int r = 0; r < nr; r++) {
        float p[16] __attribute__((aligned(64)));
        _mm512_store_ps(p, a[r]);
        for (int k = 0; k < nk; k++) part[(size_t)k * pstride + (size_t)r] = p[block_dot_lane(quads, bpb, k)];
    }
}

QM_INLINE void tile_decode_b64(qm_dtype dt, const wrows *w, int off, int bpb, int nr, const qm_q8act *x, int nbk,
                               float *part, size_t pstride) {
    const int quads = dec_quads(dt);
    const klanes kl = klanes_of(dt, w->sb0 & 7, quads);
    const int long_pass = qm_rowpar_prefetch_long(dt, off, w->nblk, DR); /* rowpar.h */
    const char *pf = (const char *)w->row0 + (size_t)DR * w->stride;
    const size_t pf_step = long_pass ? 0 : prefetch_step(w);
    for (int b0 = 0; b0 < w->nblk; b0 += 16) {
        const int nb = w->nblk - b0 < 16 ? w->nblk - b0 : 16, sb = w->sb0 + b0;
        const int k0 = b0 / bpb, nk = (nb + bpb - 1) / bpb < nbk - k0 ? (nb + bpb - 1) / bpb : nbk - k0;
        const size_t gbytes = long_pass ? qm_rowpar_group_bytes(dt, off, nb) : 0;
        xgroup xg;
        load_group(dt, x, 0, b0, nb, 0, &xg);
        __m512 a[DR];
        for (int r = 0; r < nr; r++) {
            for (size_t k = 0; k < pf_step; k += 64) _mm_prefetch(pf + k, _MM_HINT_T0);
            pf += pf_step;
            const uint8_t *row = w->row0 + (size_t)r * w->stride, *base = group_base(dt, row, sb);
            qm_prefetch_l2(group_base(dt, row + (size_t)DR * w->stride, sb), gbytes);
            wgroup g;
            scales(dt, row, sb, nb, 0, off == 0, quads, &kl, &g);
            const __m512 f = nb == 16 ? sums_decode(dt, base, off, 16, &g, &xg) : sums_decode(dt, base, off, nb, &g, &xg);
            const __m512 c = _mm512_maskz_add_ps(lanes_of(quads, nb), _mm512_setzero_ps(), contrib(dt, &g, &xg, f));
            a[r] = quads ? block_dot_lanes_quads(c, bpb) : block_dot_lanes(c, bpb);
        }
        store_block_dots(a, nr, quads, bpb, nk, part + (size_t)k0 * pstride, pstride);
    }
}

/* A view of whole blocks and at most 8 32-blocks (a device's one or two heads of o_proj): the
 * narrow items of tile_narrow (several rows per vector), block m of row j the sum of its items'
 * +0 + c as tile_decode_b64 forms it: a_2m + a_2m+1 (64 columns), (a_4m + a_4m+2) + (a_4m+1 +
 * a_4m+3) (128). Every item a block needs exists: P >= nblk = nbk bpb. */
QM_INLINE void blocks_narrow(qm_dtype dt, const qm_wview *w, const qm_q8act *x, int bpb, int nbk, float *part,
                             size_t pstride, int o_begin, int o_end) {
    const size_t stride = qm_wview_stride(w);
    const int sb0 = w->col0 / 32, nblk = w->cols / 32, lg = narrow_lg(nblk), R = 1 << lg;
    const __mmask16 blk_live = _mm512_cmplt_epi32_mask(item_blk(lg), _mm512_set1_epi32(nblk));
    xgroup xg;
    load_x_narrow(dt, x, 0, 0, nblk, lg, &xg);
    for (int o = o_begin; o < o_end; o += R) {
        const int nr = o_end - o < R ? o_end - o : R;
        const wrows wr = {(const uint8_t *)w->data + (size_t)o * stride, stride, sb0, nblk, 0};
        _mm_prefetch((const char *)wr.row0 + (size_t)(2 * R) * stride, _MM_HINT_T0);
        wgroup g;
        unpack_narrow(dt, &wr, lg, nr, &g);
        const __m512 c = contrib(dt, &g, &xg, sums_prefill(dt, &g, &xg));
        float a[16] __attribute__((aligned(64))); /* item order: block b of row j at b R + j */
        _mm512_store_ps(a, _mm512_permutexvar_ps(unperm_idx(), _mm512_maskz_add_ps(blk_live, _mm512_setzero_ps(), c)));
        qm_narrow_block_dots(a, R, bpb, nbk, nr, part + o, pstride);
    }
}

/* A K-quant shard's offset inside its superblock (off, sb0 % 8) is passed as a literal where a
 * mesh makes it (1x2: 4; 1x4 and 2x4: 2, 4, 6), so that every code load and scale index is a
 * constant: with off in a register, a 1x2 mesh's second device took 1.5-1.7x the first's time
 * for the 1.5B's Q6_K down_proj (bench_qmatmul rp avx512vnni Q6_K 1536 4480 1 4480 8960, one
 * thread, AMD EPYC Zen 4, 2026-12-07: fast nodes 0.083-0.093 ns a weight against 0.051-0.054 from
 * column 0; 0.060 with the literal; Q4_K 0.064 -> 0.051), and the first device waited for it. */
QM_INLINE void blocks_dt(qm_dtype dt, const qm_wview *w, const qm_q8act *x, int bc, int nbk, float *part,
                         size_t pstride, int o_begin, int o_end) {
    const size_t stride = qm_wview_stride(w);
    if (qm_rowpar_narrow(dt, w, bc, nbk)) {
        blocks_narrow(dt, w, x, bc / 32, nbk, part, pstride, o_begin, o_end);
        return;
    }
    const int sb0 = w->col0 / 32, nblk = w->cols / 32, whole = qm_rowpar_whole_rows(w);
    const int off = qm_dtype_block(dt) == 32 ? 0 : sb0 & 7;
    for (int o = o_begin; o < o_end; o += DR) {
        const wrows wr = {(const uint8_t *)w->data + (size_t)o * stride, stride, sb0, nblk, whole};
        const int nr = o_end - o < DR ? o_end - o : DR;
        float *po = part + o;
        if (bc == 128 && off == 0) tile_decode_b64(dt, &wr, 0, 4, nr, x, nbk, po, pstride); /* o_proj */
        else if (bc == 128) tile_decode_b64(dt, &wr, off, 4, nr, x, nbk, po, pstride);
        else if (off == 0) tile_decode_b64(dt, &wr, 0, 2, nr, x, nbk, po, pstride);
        else if (off == 4) tile_decode_b64(dt, &wr, 4, 2, nr, x, nbk, po, pstride); /* a 1x2 shard */
        else if (off == 2) tile_decode_b64(dt, &wr, 2, 2, nr, x, nbk, po, pstride); /* 1x4, 2x4 shards */
        else if (off == 6) tile_decode_b64(dt, &wr, 6, 2, nr, x, nbk, po, pstride);
        else tile_decode_b64(dt, &wr, off, 2, nr, x, nbk, po, pstride);
    }
}

/* ---- row-parallel tree nodes over several tokens (kernels.h, matmul_q8_nodes) ----
 * matmul_blocked's tiles (the same integer sums and contributions c, lane l = block PERM[l]), but
 * a group's c is not added into a row's accumulator: each of the group's 64- or 128-column blocks
 * gets its dot as tile_decode_b64 forms it (+0 + c in the live lanes, block_dot_lanes) into a leaf
 * buffer lf[block][token][row] of the MR-row tile, MR x ntb floats a block, which stays in the L2.
 * After the tile's last group every node is added up there along the halving tree, 4 rows x ntb
 * tokens per add, and only the nodes' values are stored. */

/* Rows [0, MR) x tokens [0, nt) of one group of nb 32-blocks, its nk blocks of bpb: block k of
 * token t, rows 0..3 to lf + k * L + t * MR. */
QM_INLINE void tile_leaves(qm_dtype dt, int nb, int bpb, int nk, const wgroup *wg, const xprep *xp, int nt, float *lf,
                           size_t L) {
    __m512i is[MR][MT];
    for (int r = 0; r < MR; r++)
        for (int t = 0; t < MT; t++) is[r][t] = _mm512_setzero_si512();
    isums_tile(dt, wg, xp, nt, is);
    const __mmask16 live = lanes_of(0, nb);
    for (int t = 0; t < nt; t++) {
        __m512 a[MR], u[4];
        for (int r = 0; r < MR; r++) {
            const __m512 c = contrib_x(dt, &wg[r], xp[t].dx, xp[t].sf, _mm512_cvtepi32_ps(is[r][t]));
            a[r] = block_dot_lanes(_mm512_maskz_add_ps(live, _mm512_setzero_ps(), c), bpb);
        }
        transpose4_lanes(a, u);
        for (int k = 0; k < nk; k++) {
            const int p = block_dot_lane(0, bpb, k);
            _mm_store_ps(lf + (size_t)k * L + (size_t)t * MR, lane128(u[p & 3], p >> 2));
        }
    }
}

/* A whole tile of 64-column blocks (bpb 2): the same block dots, but transposed across the tile
 * so that block k of all 16 items (item 4 t + r) is one vector, stored whole at lf + k * L.
 * Items 2m and 2m + 1 first give one vector of both items' 8 block dots (their even lanes plus
 * their odd ones, as block_dot_lanes adds them); three steps of two-vector permutes then move a
 * block bit out of the lanes and an item bit in, each. */
QM_INLINE void tile_leaves_b64(qm_dtype dt, int nb, int nk, const wgroup *wg, const xprep *xp, float *lf, size_t L) {
    __m512i is[MR][MT];
    for (int r = 0; r < MR; r++) /* (isums_tile writes them all; zeros for the compiler's sake) */
        for (int t = 0; t < MT; t++) is[r][t] = _mm512_setzero_si512();
    isums_tile(dt, wg, xp, MT, is);
    const __mmask16 live = lanes_of(0, nb);
    __m512 p[8], y[8], z[8];
    for (int m = 0; m < 8; m++) { /* lane 8 h + k: block k of item 2m + h (t = m / 2, r = 2 (m % 2) + h) */
        const int t = m >> 1, r = 2 * (m & 1);
        __m512 a[2];
        for (int h = 0; h < 2; h++)
            a[h] = _mm512_maskz_add_ps(live, _mm512_setzero_ps(),
                                       contrib_x(dt, &wg[r + h], xp[t].dx, xp[t].sf, _mm512_cvtepi32_ps(is[r + h][t])));
        p[m] = _mm512_add_ps(_mm512_shuffle_f32x4(a[0], a[1], _MM_SHUFFLE(2, 0, 2, 0)),
                             _mm512_shuffle_f32x4(a[0], a[1], _MM_SHUFFLE(3, 1, 3, 1)));
    }
    for (int m = 0; m < 4; m++) { /* item bit 3 in, block bit 2 out */
        y[m] = _mm512_shuffle_f32x4(p[m], p[m + 4], _MM_SHUFFLE(2, 0, 2, 0));
        y[m + 4] = _mm512_shuffle_f32x4(p[m], p[m + 4], _MM_SHUFFLE(3, 1, 3, 1));
    }
    const __m512i s2a = _mm512_setr_epi32(0, 1, 4, 5, 8, 9, 12, 13, 16, 17, 20, 21, 24, 25, 28, 29);
    const __m512i s2b = _mm512_setr_epi32(2, 3, 6, 7, 10, 11, 14, 15, 18, 19, 22, 23, 26, 27, 30, 31);
    for (int v = 0; v < 8; v += (v & 1) ? 3 : 1) { /* v = 0, 1, 4, 5: item bit 2 in, block bit 1 out */
        z[v] = _mm512_permutex2var_ps(y[v], s2a, y[v + 2]);
        z[v + 2] = _mm512_permutex2var_ps(y[v], s2b, y[v + 2]);
    }
    const __m512i s3a = _mm512_setr_epi32(0, 2, 16, 18, 8, 10, 24, 26, 4, 6, 20, 22, 12, 14, 28, 30);
    const __m512i s3b = _mm512_setr_epi32(1, 3, 17, 19, 9, 11, 25, 27, 5, 7, 21, 23, 13, 15, 29, 31);
    for (int v = 0; v < 8; v += 2) { /* item bit 1 in, block bit 0 out: z[k] is block k of items 0..15 */
        const __m512 lo = _mm512_permutex2var_ps(z[v], s3a, z[v + 1]), hi = _mm512_permutex2var_ps(z[v], s3b, z[v + 1]);
        if (v < nk) _mm512_storeu_ps(lf + (size_t)v * L, lo);
        if (v + 1 < nk) _mm512_storeu_ps(lf + (size_t)(v + 1) * L, hi);
    }
}

/* One group, all ntb tokens: MT at a time, then the rest. */
QM_INLINE void group_leaves(qm_dtype dt, int nb, int bpb, int nk, const wgroup *wg, const xprep *xp, int ntb, float *lf,
                            size_t L) {
    int t = 0;
    for (; t + MT <= ntb; t += MT) {
        if (bpb == 2) tile_leaves_b64(dt, nb, nk, wg, xp + t, lf + (size_t)t * MR, L);
        else tile_leaves(dt, nb, bpb, nk, wg, xp + t, MT, lf + (size_t)t * MR, L);
    }
    const int rest = ntb - t;
    float *lt = lf + (size_t)t * MR;
    if (rest == 1) tile_leaves(dt, nb, bpb, nk, wg, xp + t, 1, lt, L);
    else if (rest == 2) tile_leaves(dt, nb, bpb, nk, wg, xp + t, 2, lt, L);
    else if (rest == 3) tile_leaves(dt, nb, bpb, nk, wg, xp + t, 3, lt, L);
}

/* Rows [0, nr) (nr <= MR) x the token block's ntb tokens (xb: [group][ldx tokens]): the dots of
 * all nbk blocks into lf (L = ntb * MR floats a block). */
QM_INLINE void rows_leaves(qm_dtype dt, const wrows *w, int nr, const xprep *xb, int ldx, int ntb, int bpb, int nbk,
                           float *lf) {
    wgroup wg[MR];
    const klanes kl = klanes_of(dt, w->sb0 & 7, 0);
    const size_t L = (size_t)ntb * MR;
    for (int r = nr; r < MR; r++) wg[r] = (wgroup){0};
    for (int b0 = 0; b0 < w->nblk; b0 += 16) {
        const int nb = w->nblk - b0 < 16 ? w->nblk - b0 : 16, k0 = b0 / bpb;
        const int nk = (nb + bpb - 1) / bpb < nbk - k0 ? (nb + bpb - 1) / bpb : nbk - k0;
        const xprep *xp = xb + (size_t)(b0 / 16) * (size_t)ldx;
        for (int r = 0; r < nr; r++) {
            if (nb == 16) prep_w(dt, w, r, w->sb0 + b0, 16, &kl, &wg[r]);
            else prep_w(dt, w, r, w->sb0 + b0, nb, &kl, &wg[r]);
        }
        float *lk = lf + (size_t)k0 * L;
        if (nb == 16 && bpb == 2) group_leaves(dt, 16, 2, 8, wg, xp, ntb, lk, L);
        else if (nb == 16 && bpb == 4) group_leaves(dt, 16, 4, 4, wg, xp, ntb, lk, L);
        else group_leaves(dt, nb, bpb, nk, wg, xp, ntb, lk, L);
    }
}

/* Rows [o_begin, o_end) x every token, node by node; 0 where the buffers cannot be had. */
QM_INLINE int nodes_dt(qm_dtype dt, const qm_wview *w, const qm_q8act *x, int n_tok, int bpb, int nbk,
                       const qm_leaf_node *nodes, int n_nodes, float *out, size_t ostride, size_t ldy, int o_begin,
                       int o_end) {
    const size_t stride = qm_wview_stride(w);
    const int nblk = w->cols / 32, ng = (nblk + 15) / 16, tb = token_block(ng, n_tok);
    xprep *xb = aligned_alloc(64, (size_t)ng * (size_t)tb * sizeof(xprep));
    float *lf = aligned_alloc(64, ((size_t)nbk * (size_t)tb * MR * sizeof(float) + 63) / 64 * 64);
    if (!xb || !lf) {
        free(xb);
        free(lf);
        return 0;
    }
    for (int t0 = 0; t0 < n_tok; t0 += tb) {
        const int ntb = n_tok - t0 < tb ? n_tok - t0 : tb;
        prep_tokens(dt, x, nblk, t0, ntb, xb, tb);
        for (int o = o_begin; o < o_end; o += MR) {
            const int nr = o_end - o < MR ? o_end - o : MR;
            const wrows wr = {(const uint8_t *)w->data + (size_t)o * stride, stride, w->col0 / 32, nblk, 0};
            if (bpb == 2) rows_leaves(dt, &wr, nr, xb, tb, ntb, 2, nbk, lf);
            else rows_leaves(dt, &wr, nr, xb, tb, ntb, 4, nbk, lf);
            qm_rowpar_store_nodes(lf, MR, ntb, nr, nodes, n_nodes, out + (size_t)t0 * ldy + (size_t)o, ostride, ldy);
        }
    }
    free(xb);
    free(lf);
    return 1;
}

QM_ROWPAR_NODES_ENTRY(QDOT_ISA(qm_matmul_q8_nodes), QDOT_ISA(qm_matmul_q8_blocks))

void QDOT_ISA(qm_matmul_q8_blocks)(const qm_wview *w, const qm_q8act *x, int n_tok, int bc, int nb, float *part,
                                size_t pstride, size_t ldy, int o_begin, int o_end) {
    if (n_tok != 1 || (bc != 64 && bc != 128) || nb < 1 || (nb - 1) * bc >= w->cols || nb * bc < w->cols) {
        qm_q8_blocks_by_views(QDOT_ISA(qm_matmul_q8), w, x, n_tok, bc, nb, part, pstride, ldy, o_begin, o_end);
        return;
    }
    if (o_begin >= o_end) return;
#define BLOCKS_DT(dt_) blocks_dt(dt_, w, x, bc, nb, part, pstride, o_begin, o_end)
    QM_SWITCH_QUANT_DTYPE(w->dtype, BLOCKS_DT);
#undef BLOCKS_DT
}

#ifndef QM_QDOT_VNNI /* the VNNI table uses this one */
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
#endif
