/* Tokens against 8 interleaved Q4_K rows (rows8.h), AVX2 (and AVX512-VNNI: rows8_q4k_avx512vnni.c):
 * lane r of every vector is row r. Sub-block 2j's codes are the low nibbles of the 8 vectors
 * t[j][k] (elements 4k .. 4k + 3 of each row), 2j + 1's the high ones; maddubs against the token's
 * 4 activations of those elements, broadcast, adds up vertically, so each lane ends with its row's
 * exact sub-block sum (int16 pairs: 8 of at most 2 x 15 x 127 fit), which one madd multiplies by
 * the lane's 6-bit scale: the spec's integer sc * isum (VNNI: vpdpbusd's int32 sums, multiplied).
 * Then qdot.c c_k45's f32 operations lane by lane, (d dx) float(sc isum) - (dmin dx) float(mn s),
 * float(mn s) as float(mn) float(s) (exact: |mn s| <= 63 x 32 x 127 < 2^24), c_b into
 * acc[b % 16] in sub-block order and the halving tree: the same bits as every other path. The
 * file layout's kernels sum each row's sub-block across a vector and then across lanes; here the
 * 8 rows' sums come out in the lanes. */
#include "kernels/rows8.h"

#include "kernels/rows8_simd.h"

#define GB (8 * 144) /* a group superblock's bytes */

/* The 8 rows' scales and mins of group superblock g, as bytes: sub-block j's at byte j % 4 of each
 * dword of sc[j / 4] and mn[j / 4] (qm_quant_k_scales, 4 sub-blocks of 8 lanes at once). */
QM_INLINE void k_scales8(const uint8_t *g, __m256i sc[2], __m256i mn[2]) {
    const __m256i s0 = _mm256_loadu_si256((const __m256i *)(g + 32)), s1 = _mm256_loadu_si256((const __m256i *)(g + 64));
    const __m256i s2 = _mm256_loadu_si256((const __m256i *)(g + 96));
    const __m256i m6 = _mm256_set1_epi8(63), m4 = _mm256_set1_epi8(15), top = _mm256_set1_epi8(0x30);
    sc[0] = _mm256_and_si256(s0, m6);
    mn[0] = _mm256_and_si256(s1, m6);
    /* bits 6-7 of s0 / s1's byte to bits 4-5 (a 16-bit shift: the bits it brings in are masked) */
    sc[1] = _mm256_or_si256(_mm256_and_si256(s2, m4), _mm256_and_si256(_mm256_srli_epi16(s0, 2), top));
    mn[1] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(s2, 4), m4), _mm256_and_si256(_mm256_srli_epi16(s1, 2), top));
}

/* Byte jb of each dword of v, zero-extended: as the dword (words 0) or in both of its words (words 1). */
QM_INLINE __m256i dword_byte(__m256i v, int jb, int words) {
    const char z = (char)0x80, w = words ? (char)jb : z;
    const __m128i c = _mm_setr_epi8((char)jb, z, w, z, (char)(4 + jb), z, (char)(words ? 4 + jb : 0x80), z,
                                    (char)(8 + jb), z, (char)(words ? 8 + jb : 0x80), z, (char)(12 + jb), z,
                                    (char)(words ? 12 + jb : 0x80), z);
    return _mm256_shuffle_epi8(v, _mm256_broadcastsi128_si256(c));
}

/* The 4 activations xq[4k .. 4k + 3] in every dword, k < 8: where shuffles (several tokens), the
 * first 4 broadcast from memory and the last 4 by vpshufd of one 16-byte load, since the
 * several-token kernel's loads (these, the spilled codes and scales, the accumulators) outnumber
 * its vector operations (one thread, 512 x 1536 x 16 tokens from the L2: 0.0106 -> 0.0097 ns a
 * weight-token; all 8 by shuffles 0.0104); else 8 broadcasts. */
QM_INLINE void act_dwords(const int8_t *xq, int shuffles, __m256i a[8]) {
    for (int k = 0; k < (shuffles ? 4 : 8); k++) a[k] = _mm256_set1_epi32(rd32(xq + 4 * k));
    if (!shuffles) return;
    const __m256i hi = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(xq + 16)));
    a[4] = _mm256_shuffle_epi32(hi, 0x00);
    a[5] = _mm256_shuffle_epi32(hi, 0x55);
    a[6] = _mm256_shuffle_epi32(hi, 0xAA);
    a[7] = _mm256_shuffle_epi32(hi, 0xFF);
}

/* Lane r: sc_r times the sum of codes c[k] (row r's 4 codes of dword k) x the activations xq[4k ..
 * 4k + 3], k < 8, exactly. scv: the scales as dword_byte made them (words: AVX2; dwords: VNNI). */
QM_INLINE __m256i k_scaled_isum(const __m256i c[8], const int8_t *xq, __m256i scv, int shuffles) {
    __m256i a[8];
    act_dwords(xq, shuffles, a);
#ifdef QM_ROWS8_VNNI
    __m256i s0 = _mm256_setzero_si256(), s1 = _mm256_setzero_si256();
    for (int k = 0; k < 8; k += 2) { /* two chains: half the latency */
        s0 = _mm256_dpbusd_epi32(s0, c[k], a[k]);
        s1 = _mm256_dpbusd_epi32(s1, c[k + 1], a[k + 1]);
    }
    return _mm256_mullo_epi32(_mm256_add_epi32(s0, s1), scv);
#else
    __m256i p = _mm256_maddubs_epi16(c[0], a[0]);
    for (int k = 1; k < 8; k++) p = _mm256_add_epi16(p, _mm256_maddubs_epi16(c[k], a[k]));
    return _mm256_madd_epi16(p, scv);
#endif
}

#ifdef QM_ROWS8_VNNI
#define SC_WORDS 0
#else
#define SC_WORDS 1
#endif

/* A sub-block's scales, each lane's: scv for k_scaled_isum, fmn = float(mn). */
typedef struct {
    __m256i scv;
    __m256 fmn;
} kscale8;

QM_INLINE kscale8 k_scale8(const __m256i sc[2], const __m256i mn[2], int j) {
    return (kscale8){dword_byte(sc[j / 4], j % 4, SC_WORDS), _mm256_cvtepi32_ps(dword_byte(mn[j / 4], j % 4, 0))};
}

/* Sub-block j's 8 code vectors of group superblock g. */
QM_INLINE void k_codes8(const uint8_t *g, int j, __m256i c[8]) {
    const uint8_t *t = g + 128 + 256 * (j / 2);
    const __m256i m4 = _mm256_set1_epi8(15);
    for (int k = 0; k < 8; k++) {
        const __m256i v = _mm256_loadu_si256((const __m256i *)(t + 32 * k));
        c[k] = _mm256_and_si256(j & 1 ? _mm256_srli_epi16(v, 4) : v, m4);
    }
}

/* c of view 32-block b (sub-block b % 8) for one token from its scaled sum (k_scaled_isum): qdot.c
 * c_k45's f32 operations, lane by lane. */
QM_INLINE __m256 k_finish8(__m256i scaled, __m256 fmn, __m256 d, __m256 dmin, const qm_q8act *x, int b) {
    const __m256 dx = _mm256_set1_ps(x->d[b]);
    const __m256 prod = _mm256_mul_ps(_mm256_mul_ps(d, dx), _mm256_cvtepi32_ps(scaled));
    const __m256 fs = _mm256_cvtepi32_ps(_mm256_set1_epi32(x->s[b])); /* the broadcast from memory, then one convert */
    const __m256 mins = _mm256_mul_ps(_mm256_mul_ps(dmin, dx), _mm256_mul_ps(fmn, fs));
    return _mm256_sub_ps(prod, mins);
}

/* A group superblock's 8 rows' d and dmin (f32) and scales and mins (k_scales8). */
typedef struct {
    __m256 d, dmin;
    __m256i sc[2], mn[2];
} ksuper8;

QM_INLINE ksuper8 k_super8(const uint8_t *g) {
    ksuper8 k;
    k.d = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)g));
    k.dmin = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(g + 16)));
    k_scales8(g, k.sc, k.mn);
    return k;
}

void R8_ISA(qm_rows8_q4k_decode)(const uint8_t *group, int nblk, const qm_q8act *x, const float *bias, float *y) {
    const int nsb = nblk / 8;
    const char *pf = (const char *)group + (size_t)PF_GROUPS * (size_t)nsb * GB; /* never faults */
    __m256 acc[16];
    for (int l = 0; l < 16; l++) acc[l] = _mm256_setzero_ps();
    for (int sb = 0; sb < nsb; sb++) {
        const uint8_t *g = group + (size_t)sb * GB;
        rows8_prefetch(pf + (size_t)sb * GB, GB);
        const ksuper8 k = k_super8(g);
#pragma GCC unroll 8
        for (int j = 0; j < 8; j++) {
            __m256i c[8];
            k_codes8(g, j, c);
            const int b = 8 * sb + j;
            const kscale8 s = k_scale8(k.sc, k.mn, j);
            const __m256i scaled = k_scaled_isum(c, x->q + (size_t)b * 32, s.scv, 0);
            acc[b & 15] = _mm256_add_ps(acc[b & 15], k_finish8(scaled, s.fmn, k.d, k.dmin, x, b));
        }
    }
    rows8_store_tree(acc, bias, y);
}

#ifndef QM_ROWS8_VNNI /* AVX2 only: with VNNI, the file layout's row-parallel kernel is as fast (kernels.h) */
/* Row-parallel block dots (kernels.h matmul_q8_blocks) of the 8 rows for nt <= TT tokens xt: the
 * view's sub-blocks [s0, s0 + ns) of the group's superblocks (s0 counted from the group's first,
 * even), blocks of bpb sub-blocks (2: 64 columns, 4: 128) from s0, the first at phase ph of a
 * superblock's bpb-aligned blocks (s0 % bpb, 0 or 2); block k of token t's 8 rows to lf + k lstride
 * + t ldt. Each block's dot as qdot.c forms it for the block's own view: f_b = +0 + c_b in lane
 * b % 16, the halving tree: f0 + f1, or (f0 + f2) + (f1 + f3) (a last block's missing f +0: adds
 * nothing). A sub-block's codes are made once for all the tokens. */
QM_INLINE void k_blocks8(const uint8_t *group, int nsb, int s0, int ns, const int bpb, const int ph, const qm_q8act *xt,
                         const int nt, float *lf, size_t lstride, size_t ldt) {
    const char *pf = (const char *)group + (size_t)PF_GROUPS * (size_t)nsb * GB; /* never faults */
    const int s1 = s0 + ns;
    __m256 f[TT][4];
    for (int t = 0; t < nt; t++)
        for (int i = 0; i < 4; i++) f[t][i] = _mm256_setzero_ps();
    for (int sb = s0 / 8; 8 * sb < s1; sb++) {
        const uint8_t *g = group + (size_t)sb * GB;
        rows8_prefetch(pf + (size_t)sb * GB, GB);
        const ksuper8 k = k_super8(g);
#pragma GCC unroll 8
        for (int j = 0; j < 8; j++) {
            const int b = 8 * sb + j - s0, l = (j + bpb - ph) % bpb; /* view sub-block, its place in its block */
            if (b < 0 || b >= ns) continue;
            __m256i c[8];
            k_codes8(g, j, c);
            const kscale8 s = k_scale8(k.sc, k.mn, j);
            __m256i scaled[TT]; /* the integer sums of all the tokens first (the codes in registers), as tokens */
            for (int t = 0; t < nt; t++) scaled[t] = k_scaled_isum(c, xt[t].q + (size_t)b * 32, s.scv, nt > 1);
            for (int t = 0; t < nt; t++)
                f[t][l] =
                    _mm256_add_ps(_mm256_setzero_ps(), k_finish8(scaled[t], s.fmn, k.d, k.dmin, &xt[t], b));
            if (l < bpb - 1 && b < ns - 1) continue;
            for (int t = 0; t < nt; t++) {
                const __m256 *ft = f[t];
                const __m256 v = bpb == 2 ? _mm256_add_ps(ft[0], ft[1])
                                          : _mm256_add_ps(_mm256_add_ps(ft[0], ft[2]), _mm256_add_ps(ft[1], ft[3]));
                _mm256_storeu_ps(lf + (size_t)(b / bpb) * lstride + (size_t)t * ldt, v);
                for (int i = 0; i < 4; i++) f[t][i] = _mm256_setzero_ps();
            }
        }
    }
}

QM_INLINE void k_blocks8_phases(const uint8_t *group, int nsb, int s0, int ns, int bpb, const qm_q8act *xt,
                                const int nt, float *lf, size_t lstride, size_t ldt) {
    if (bpb == 2) k_blocks8(group, nsb, s0, ns, 2, 0, xt, nt, lf, lstride, ldt);
    else if (s0 % 4 == 0) k_blocks8(group, nsb, s0, ns, 4, 0, xt, nt, lf, lstride, ldt);
    else k_blocks8(group, nsb, s0, ns, 4, 2, xt, nt, lf, lstride, ldt);
}

void R8_ISA(qm_rows8_q4k_blocks)(const uint8_t *group, int nsb, int s0, int ns, int bpb, const qm_q8act *x, int n_tok,
                                 float *lf, size_t lstride, size_t ldt) {
    if (n_tok == 1) {
        k_blocks8_phases(group, nsb, s0, ns, bpb, x, 1, lf, lstride, ldt);
        return;
    }
    for (int t0 = 0; t0 < n_tok; t0 += TT) {
        qm_q8act xt[TT];
        const int nt = n_tok - t0 < TT ? n_tok - t0 : TT;
        for (int t = 0; t < nt; t++) xt[t] = qm_q8act_vector(x, t0 + t);
        k_blocks8_phases(group, nsb, s0, ns, bpb, xt, nt, lf + (size_t)t0 * ldt, lstride, ldt);
    }
}
#endif

/* Several tokens: each sub-block's codes and scales made once for TT tokens at a time, the tokens'
 * accumulators in memory; the same sums and f32 operations as one token's. The integer sums of all
 * the tokens first (the 8 code vectors in registers), then their f32 steps (the scales in
 * registers). Against the file layout's tiles (qdot_avx2.c, one thread, 8960 x 1536 from the L3,
 * ns a weight-token): 8 tokens 0.0112 against 0.0130, 16 0.0096 against 0.0101, 64 and 512
 * 0.0096-0.0097 against 0.0091-0.0094. */
void R8_ISA(qm_rows8_q4k_tokens)(const uint8_t *group, int nblk, const qm_q8act *x, int n_tok, const float *bias,
                                 float *y, size_t ldy) {
    const int nsb = nblk / 8;
    __m256 acc[TT][16];
    for (int t0 = 0; t0 < n_tok; t0 += TT) {
        qm_q8act xt[TT];
        const int nt = rows8_chunk(x, n_tok, t0, xt, acc);
        for (int sb = 0; sb < nsb; sb++) {
            const uint8_t *g = group + (size_t)sb * GB;
            if (t0 == 0) rows8_prefetch(g + (size_t)nsb * GB, GB); /* the next group, a share a superblock */
            const ksuper8 k = k_super8(g);
            for (int j = 0; j < 8; j++) {
                __m256i c[8];
                k_codes8(g, j, c);
                const kscale8 s = k_scale8(k.sc, k.mn, j);
                const int b = 8 * sb + j;
                __m256i scaled[TT];
                for (int t = 0; t < nt; t++) scaled[t] = k_scaled_isum(c, xt[t].q + (size_t)b * 32, s.scv, 1);
                for (int t = 0; t < nt; t++)
                    acc[t][b & 15] =
                        _mm256_add_ps(acc[t][b & 15], k_finish8(scaled[t], s.fmn, k.d, k.dmin, &xt[t], b));
            }
        }
        for (int t = 0; t < nt; t++) rows8_store_tree(acc[t], bias, y + (size_t)(t0 + t) * ldy);
    }
}

/* The 8 x 8 dwords v[k] (lane r: dword k of row r) transposed: v[r] = row r's dwords 0 .. 7. */
QM_INLINE void transpose8x8(__m256i v[8]) {
    __m256i a[8], b[8];
    for (int i = 0; i < 8; i += 2) {
        a[i] = _mm256_unpacklo_epi32(v[i], v[i + 1]);
        a[i + 1] = _mm256_unpackhi_epi32(v[i], v[i + 1]);
    }
    for (int i = 0; i < 8; i += 4)
        for (int h = 0; h < 2; h++) {
            b[i + h] = _mm256_unpacklo_epi64(a[i + h], a[i + 2 + h]);
            b[i + 2 + h] = _mm256_unpackhi_epi64(a[i + h], a[i + 2 + h]);
        }
    /* b[i + q] (i = 0, 4): dwords i .. i + 3 of row (q & 1) 2 + q / 2 in its low half, of that
     * row + 4 in its high half */
    for (int q = 0; q < 4; q++) {
        const int r = (q & 1) * 2 + (q >> 1); /* b[q]: row r (low half), r + 4 (high half) */
        v[r] = _mm256_permute2x128_si256(b[q], b[4 + q], 0x20);
        v[r + 4] = _mm256_permute2x128_si256(b[q], b[4 + q], 0x31);
    }
}

/* qm_rows8_unpack of all 8 lanes: the code vectors transposed back to rows, the rest as pieces. */
void R8_ISA(qm_rows8_q4k_unpack8)(const uint8_t *group, int nblk, uint8_t *dst, size_t dst_stride) {
    for (int sb = 0; sb < nblk / 8; sb++) {
        const uint8_t *g = group + (size_t)sb * GB;
        uint8_t *blk = dst + (size_t)sb * 144; /* row r's superblock at blk + r dst_stride */
        for (int j = 0; j < 4; j++) {
            __m256i v[8];
            for (int k = 0; k < 8; k++) v[k] = _mm256_loadu_si256((const __m256i *)(g + 128 + 256 * j + 32 * k));
            transpose8x8(v);
            for (int r = 0; r < 8; r++) _mm256_storeu_si256((__m256i *)(blk + (size_t)r * dst_stride + 16 + 32 * j), v[r]);
        }
        for (int r = 0; r < 8; r++) {
            uint8_t *row = blk + (size_t)r * dst_stride;
            memcpy(row, g + 2 * r, 2);
            memcpy(row + 2, g + 16 + 2 * r, 2);
            for (int k = 0; k < 3; k++) memcpy(row + 4 + 4 * k, g + 32 + 32 * k + 4 * r, 4);
        }
    }
}
