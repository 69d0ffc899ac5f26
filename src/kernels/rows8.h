/* Q4_0, Q5_0 and Q4_K rows interleaved 8 at a time (QM_DT_Q4_0_R8, QM_DT_Q5_0_R8, QM_DT_Q4_K_R8):
 * the fast mode's column-parallel matrices of those types, rewritten at load (model/weights.c) so
 * that one token's dot with 8 rows reads each block of the 8 rows as one contiguous run, already
 * in the places the kernels (rows8_avx2.c) want them. The same bytes as the file's blocks, and
 * the same values: the fast mode's dot (kernels/qdot.h) of each row, bit for bit, by any path.
 *
 * A view of such a type has rows % 8 == 0 and whole rows (col0 0, ld = cols, a multiple of 32;
 * Q4_K: of 256); qm_wview_stride is a row's bytes as in the file, and the 8 rows from row 8g start
 * at data + 8 g stride: their blocks (Q4_K: superblocks), one "group block" each, in column order.
 * Group block b (8 x 18 or 8 x 22 bytes) of Q4_0 / Q5_0 holds block b of rows 8g + r, r = 0 .. 7
 * (lane r):
 *   d[8]     f16, lane r's d                                              16 bytes
 *   hb[8]    Q5_0 only: lane r's 32 fifth bits, rearranged (below)         32 bytes
 *   t[4][8]  dword k of lane r's 16 code bytes at t[k][r]: low nibbles     128 bytes
 *            elements 4k .. 4k + 3, high nibbles 16 + 4k .. 16 + 4k + 3
 * hb: bit 8 j + p of lane r's word is the fifth bit of element 4 p + j (p < 4, the low nibbles of
 * t[p]) or 16 + 4 (p - 4) + j (p >= 4, the high nibbles of t[p - 4]), so that one shift and a mask
 * of the word put the fifth bits of a vector of codes in place (byte j, bit 4).
 * Group block b (8 x 144 bytes) of Q4_K holds superblock b of the 8 rows:
 *   d[8], dmin[8]  f16, lane r's                                          32 bytes
 *   s[3][8]        dword k of lane r's 12 packed scale bytes at s[k][r]    96 bytes
 *   t[4][8][8]     dword k of lane r's code bytes 32 j .. 32 j + 31 at     1024 bytes
 *                  t[j][k][r]: low nibbles elements 4k .. 4k + 3 of sub-block 2j, high nibbles
 *                  those of sub-block 2j + 1 */
#ifndef QM_KERNELS_ROWS8_H
#define QM_KERNELS_ROWS8_H

#include <stddef.h>
#include <stdint.h>

#include "kernels/qdot.h"

#define QM_ROWS8 8
#define QM_ROWS8_MAX_BLOCKS 256 /* the most blocks a row of such a view has (the loader's limit) */

/* hb of a block's qh and back: hb bit 8 j + p is qh bit 4 p + j, a transposition of 8 x 4 bits,
 * as four swaps of bit fields (x's bits under mask m with those delta above). */
static inline uint32_t qm_rows8_delta_swap(uint32_t x, int delta, uint32_t m) {
    const uint32_t t = ((x >> delta) ^ x) & m;
    return x ^ t ^ (t << delta);
}
static inline uint32_t qm_rows8_hb_of_qh(uint32_t qh) {
    qh = qm_rows8_delta_swap(qh, 1, 0x22222222u);
    qh = qm_rows8_delta_swap(qh, 3, 0x0a0a0a0au);
    qh = qm_rows8_delta_swap(qh, 6, 0x00cc00ccu);
    return qm_rows8_delta_swap(qh, 12, 0x0000f0f0u);
}
static inline uint32_t qm_rows8_qh_of_hb(uint32_t hb) {
    hb = qm_rows8_delta_swap(hb, 1, 0x22222222u);
    hb = qm_rows8_delta_swap(hb, 7, 0x00aa00aau);
    hb = qm_rows8_delta_swap(hb, 2, 0x0c0c0c0cu);
    return qm_rows8_delta_swap(hb, 14, 0x0000ccccu);
}

/* Rows src + r * src_stride (r < 8), 32-blocks [0, nblk) of each (Q4_K: nblk / 8 superblocks), file
 * type base (Q4_0, Q5_0, Q4_K), into the group blocks at dst. */
void qm_rows8_pack(qm_dtype base, const uint8_t *src, size_t src_stride, int nblk, uint8_t *dst);

/* The inverse, lanes [lane0, lane0 + n) of the group blocks of nblk 32-blocks at group: row
 * lane0 + i into dst + i * dst_stride, as the file had it. */
void qm_rows8_unpack(qm_dtype t, const uint8_t *group, int nblk, int lane0, int n, uint8_t *dst, size_t dst_stride);

/* An ISA's kernels for the layout (nblk: a row's 32-blocks). decode: one token, the 8 rows of the group blocks at
 * group: y[r] (+ bias[r]), each the fast mode's dot of row r. tokens: the same for n_tok tokens
 * (x's vector t into y + t ldy). unpack8: qm_rows8_unpack of all 8 lanes. plain: the ISA's
 * matmul_q8 on the file's layout. */
typedef void (*qm_rows8_unpack8_fn)(qm_dtype t, const uint8_t *group, int nblk, uint8_t *dst, size_t dst_stride);
typedef struct {
    void (*decode)(qm_dtype t, const uint8_t *group, int nblk, const qm_q8act *x, const float *bias, float *y);
    void (*tokens)(qm_dtype t, const uint8_t *group, int nblk, const qm_q8act *x, int n_tok, const float *bias,
                   float *y, size_t ldy);
    qm_rows8_unpack8_fn unpack8;
    qm_matmul_q8_fn plain;
    int tokens_max; /* tokens takes up to this many tokens (>= 1), plain (on an unpacked copy) more */
} qm_rows8_kernels;
#if defined(__x86_64__) || defined(__i386__)
void qm_rows8_decode_avx2(qm_dtype t, const uint8_t *group, int nblk, const qm_q8act *x, const float *bias, float *y);
void qm_rows8_tokens_avx2(qm_dtype t, const uint8_t *group, int nblk, const qm_q8act *x, int n_tok, const float *bias,
                          float *y, size_t ldy);
void qm_rows8_unpack8_avx2(qm_dtype t, const uint8_t *group, int nblk, uint8_t *dst, size_t dst_stride);
void qm_rows8_decode_avx512vnni(qm_dtype t, const uint8_t *group, int nblk, const qm_q8act *x, const float *bias,
                                float *y);
void qm_rows8_tokens_avx512vnni(qm_dtype t, const uint8_t *group, int nblk, const qm_q8act *x, int n_tok,
                                const float *bias, float *y, size_t ldy);
void qm_rows8_unpack8_avx512vnni(qm_dtype t, const uint8_t *group, int nblk, uint8_t *dst, size_t dst_stride);
/* Q4_K's (rows8_q4k_avx2.c), which those of the type's argument call */
void qm_rows8_q4k_decode_avx2(const uint8_t *group, int nblk, const qm_q8act *x, const float *bias, float *y);
void qm_rows8_q4k_tokens_avx2(const uint8_t *group, int nblk, const qm_q8act *x, int n_tok, const float *bias,
                              float *y, size_t ldy);
void qm_rows8_q4k_unpack8_avx2(const uint8_t *group, int nblk, uint8_t *dst, size_t dst_stride);
void qm_rows8_q4k_blocks_avx2(const uint8_t *group, int nsb, int s0, int ns, int bpb, const qm_q8act *x, int n_tok,
                              float *lf, size_t lstride, size_t ldt);
void qm_rows8_q4k_decode_avx512vnni(const uint8_t *group, int nblk, const qm_q8act *x, const float *bias, float *y);
void qm_rows8_q4k_tokens_avx512vnni(const uint8_t *group, int nblk, const qm_q8act *x, int n_tok, const float *bias,
                                    float *y, size_t ldy);
void qm_rows8_q4k_unpack8_avx512vnni(const uint8_t *group, int nblk, uint8_t *dst, size_t dst_stride);
#endif

/* Row-parallel views (kernels.h q8_rows8_rowpar_types; Q4_K): rows whole groups of 8, each row the
 * superblocks that hold the device's columns (w->ld / 256 of them, interleaved as above), the view
 * from w->col0 (a multiple of 64) of them. A row's bytes at most QM_ROWS8_ROWPAR_ROW_MAX. An ISA's
 * kernels: blocks, the block dots of a group's 8 rows: the view's sub-blocks [s0, s0 + ns)
 * of the group's nsb superblocks, blocks of bpb (2 or 4) sub-blocks from s0, block k's 8 rows to
 * lf + k lstride (qm_rows8_q4k_blocks_*); unpack8 as above; plain_blocks and plain_nodes, the
 * ISA's matmul_q8_blocks and matmul_q8_nodes on the file's layout. blocks takes n_tok tokens (up to
 * tokens_max; more go unpacked), token t's block k at lf + k lstride + t ldt. */
#define QM_ROWS8_ROWPAR_ROW_MAX 8192
typedef struct {
    void (*blocks)(const uint8_t *group, int nsb, int s0, int ns, int bpb, const qm_q8act *x, int n_tok, float *lf,
                   size_t lstride, size_t ldt);
    qm_rows8_unpack8_fn unpack8;
    void (*plain_blocks)(const qm_wview *w, const qm_q8act *x, int n_tok, int bc, int nb, float *part, size_t pstride,
                         size_t ldy, int o_begin, int o_end);
    int (*plain_nodes)(const qm_wview *w, const qm_q8act *x, int n_tok, int bc, int nb, const qm_leaf_node *nodes,
                       int n_nodes, float *out, size_t ostride, size_t ldy, int o_begin, int o_end);
    int tokens_max;
} qm_rows8_rowpar_kernels;

/* matmul_q8_blocks and matmul_q8_nodes (kernels.h) on a row-parallel interleaved view: one token's
 * whole groups by k->blocks, the same bits as the file layout's; other rows (groups the range
 * cuts) and several tokens unpacked into the file's layout, for k->plain_blocks / plain_nodes. */
void qm_matmul_q8_blocks_rows8(const qm_wview *w, const qm_q8act *x, int n_tok, int bc, int nb, float *part,
                               size_t pstride, size_t ldy, int o_begin, int o_end, const qm_rows8_rowpar_kernels *k);
int qm_matmul_q8_nodes_rows8(const qm_wview *w, const qm_q8act *x, int n_tok, int bc, int nb,
                             const qm_leaf_node *nodes, int n_nodes, float *out, size_t ostride, size_t ldy,
                             int o_begin, int o_end, const qm_rows8_rowpar_kernels *k);

/* matmul_q8 (kernels.h) on an interleaved view: its whole groups by k->decode (one token) or
 * k->tokens; the rows of a group the range [o_begin, o_end) cuts unpacked into the file's layout
 * and handed to k->plain on that copy. */
void qm_matmul_q8_rows8(const qm_wview *w, const float *bias, const qm_q8act *x, int n_tok, float *y, size_t ldy,
                        int o_begin, int o_end, const qm_rows8_kernels *k);

#endif
