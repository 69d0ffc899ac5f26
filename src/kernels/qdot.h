/* The fast mode (--activations q8): 8-bit activations and integer dot products against
 * block-quantized weights, as llama.cpp computes, in ONE canonical order so that it too is
 * byte-identical on every mesh, batch, ISA and thread count.
 *
 * ACTIVATIONS. A vector x[n] (n a multiple of 32) is quantized per block of 32 elements:
 *     amax = max |x_i| (f32)             d  = amax / 127.0f
 *     id   = amax > 0 ? 127.0f / amax : 0.0f
 *     q_i  = (int8) clamp(nearbyintf(x_i * id), -127, 127)     (round half to even)
 *     s    = sum q_i (int32)
 * Every ISA computes exactly these f32 operations (IEEE division and multiplication, RNE).
 *
 * THE DOT OF A WEIGHT ROW SLICE WITH A QUANTIZED x. The slice's 32-element sub-blocks b = 0, 1,
 * ... (counted from the view's column 0, which must be a multiple of 32 inside the row) each give
 * an exact integer sum and then one f32 contribution c_b, with dx = x's d of that block:
 *   Q8_0:        c = (dw * dx) * (float)Σ qw_i·q_i
 *   Q4_0, Q5_0:  c = (dw * dx) * (float)Σ (qw_i − 8 | − 16)·q_i
 *   Q4_1, Q5_1:  c = (dw * dx) * (float)Σ qw_i·q_i + (mw * dx) * (float)s
 *   Q4_K, Q5_K:  sub-block j of its superblock, 6-bit scale sc_j and min m_j:
 *                c = (d * dx) * (float)(sc_j · Σ qw_i·q_i) − (dmin * dx) * (float)(m_j · s)
 *   Q6_K:        its two 16-element groups g0, g1 with int8 scales:
 *                c = (d * dx) * (float)(sc_g0 · Σ_g0 (qw_i − 32)·q_i + sc_g1 · Σ_g1 (qw_i − 32)·q_i)
 * (dw, mw, d, dmin: the block's f16 fields as f32; each * + − one f32 rounding, in the order
 * written; integer sums are exact in any order.) The contributions go to 16 lanes,
 *     acc[b % 16] = acc[b % 16] + c_b        (increasing b; acc starts at +0.0f)
 * and the halving tree 8, 4, 2, 1 of kernels.h gives the dot. A SIMD kernel holds the sums of
 * 16 consecutive blocks in the 16 lanes of one vector, which is this order. A bias is added
 * after, with one rounding, as in the f32 path. */
#ifndef QM_KERNELS_QDOT_H
#define QM_KERNELS_QDOT_H

#include <stddef.h>
#include <stdint.h>

#include "kernels/kernels.h"

#define QM_Q8_BLOCK 32

/* One or more quantized activation vectors: vector t's block k is at t * ld_blocks + k. */
typedef struct qm_q8act {
    const int8_t *q;    /* [n_vec][ld_blocks * 32] */
    const float *d;     /* [n_vec][ld_blocks] */
    const int32_t *s;   /* [n_vec][ld_blocks] */
    size_t ld_blocks;
} qm_q8act;

/* Vector t of x, as a one-vector qm_q8act. */
static inline qm_q8act qm_q8act_vector(const qm_q8act *x, int t) {
    const size_t b = (size_t)t * x->ld_blocks;
    return (qm_q8act){x->q + b * 32, x->d + b, x->s + b, x->ld_blocks};
}

/* Quantizes x[n] (n a multiple of 32) into q[n], d[n/32], s[n/32]. */
typedef void (*qm_quantize_act_fn)(const float *x, int n, int8_t *q, float *d, int32_t *s);

/* y[t*ldy + o] = dot(W row o, vector t of x, starting at x's block 0) (+ bias[o]) for o in
 * [o_begin, o_end), t in [0, n_tok). w: a quantized view with col0 % 32 == 0 and cols a multiple
 * of 32. */
typedef void (*qm_matmul_q8_fn)(const qm_wview *w, const float *bias, const qm_q8act *x, int n_tok, float *y,
                                size_t ldy, int o_begin, int o_end);

/* matmul_q8_blocks (kernels.h) as one mm call per block view (kernels/blocks.c). */
void qm_q8_blocks_by_views(qm_matmul_q8_fn mm, const qm_wview *w, const qm_q8act *x, int n_tok, int bc, int nb,
                           float *part, size_t pstride, size_t ldy, int o_begin, int o_end);
#if defined(__x86_64__) || defined(__i386__)
void qm_matmul_q8_blocks_avx2(const qm_wview *w, const qm_q8act *x, int n_tok, int bc, int nb, float *part,
                              size_t pstride, size_t ldy, int o_begin, int o_end);
void qm_matmul_q8_blocks_avx512(const qm_wview *w, const qm_q8act *x, int n_tok, int bc, int nb, float *part,
                                size_t pstride, size_t ldy, int o_begin, int o_end);
int qm_matmul_q8_nodes_avx2(const qm_wview *w, const qm_q8act *x, int n_tok, int bc, int nb, const qm_leaf_node *nodes,
                            int n_nodes, float *out, size_t ostride, size_t ldy, int o_begin, int o_end);
int qm_matmul_q8_nodes_avx512(const qm_wview *w, const qm_q8act *x, int n_tok, int bc, int nb, const qm_leaf_node *nodes,
                              int n_nodes, float *out, size_t ostride, size_t ldy, int o_begin, int o_end);
int qm_matmul_q8_nodes_avx512vnni(const qm_wview *w, const qm_q8act *x, int n_tok, int bc, int nb,
                                  const qm_leaf_node *nodes, int n_nodes, float *out, size_t ostride, size_t ldy,
                                  int o_begin, int o_end);
void qm_matmul_q8_blocks_avx512vnni(const qm_wview *w, const qm_q8act *x, int n_tok, int bc, int nb, float *part,
                                    size_t pstride, size_t ldy, int o_begin, int o_end);
#endif

void qm_quantize_act_scalar(const float *x, int n, int8_t *q, float *d, int32_t *s);
void qm_matmul_q8_scalar(const qm_wview *w, const float *bias, const qm_q8act *x, int n_tok, float *y, size_t ldy,
                         int o_begin, int o_end);
#if defined(__x86_64__) || defined(__i386__)
void qm_quantize_act_avx2(const float *x, int n, int8_t *q, float *d, int32_t *s);
void qm_matmul_q8_avx2(const qm_wview *w, const float *bias, const qm_q8act *x, int n_tok, float *y, size_t ldy,
                       int o_begin, int o_end);
void qm_quantize_act_avx512(const float *x, int n, int8_t *q, float *d, int32_t *s);
void qm_matmul_q8_avx512(const qm_wview *w, const float *bias, const qm_q8act *x, int n_tok, float *y, size_t ldy,
                         int o_begin, int o_end);
/* The same with AVX512-VNNI dot products in the prefill sums (qdot_avx512vnni.c): the same bits. */
void qm_matmul_q8_avx512vnni(const qm_wview *w, const float *bias, const qm_q8act *x, int n_tok, float *y,
                             size_t ldy, int o_begin, int o_end);
#endif

#endif
