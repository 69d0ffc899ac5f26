/* The scalar twin of the fast mode (kernels/qdot.h): the spec written out literally, block by
 * block. qdot_avx2.c and qdot_avx512.c must give the same bits; tests/test_qdot.c compares them
 * with memcmp, and this file with an independent reference written from the spec.
 *
 * What the spec leaves open, fixed here (every ISA does the same):
 *   - amax ignores NaN inputs (amax = a > amax ? a : amax, from +0.0f).
 *   - clamp(v, -127, 127) of a NaN v is 0. A NaN arises where x_i * id is 0 * inf (a block whose
 *     amax is so small that 127 / amax overflows; its zeros stay 0) or from a NaN/inf input.
 *     +-inf clamps to +-127. Clamping before rounding equals rounding before clamping, since
 *     -127 and 127 are integers and rounding is monotonic.
 *   - The activations are q in [-127, 127], as the quantizer makes them (the SIMD kernels negate
 *     q for Q8_0's sign trick). */
#include <math.h>
#include <stdint.h>

#include "kernels/qdot.h"
#include "kernels/quant.h"

void qm_quantize_act_scalar(const float *x, int n, int8_t *q, float *d, int32_t *s) {
    for (int b = 0; b < n / QM_Q8_BLOCK; b++) {
        const float *xb = x + (size_t)b * QM_Q8_BLOCK;
        int8_t *qb = q + (size_t)b * QM_Q8_BLOCK;
        float amax = 0.0f;
        for (int i = 0; i < QM_Q8_BLOCK; i++) {
            const float a = fabsf(xb[i]);
            if (a > amax) amax = a;
        }
        const float id = amax > 0.0f ? 127.0f / amax : 0.0f;
        d[b] = amax / 127.0f;
        int32_t sum = 0;
        for (int i = 0; i < QM_Q8_BLOCK; i++) {
            float v = xb[i] * id;
            if (v != v) v = 0.0f;
            if (v > 127.0f) v = 127.0f;
            if (v < -127.0f) v = -127.0f;
            const int qi = (int)nearbyintf(v);
            qb[i] = (int8_t)qi;
            sum += qi;
        }
        s[b] = sum;
    }
}

/* Σ code_i * q_i over n elements of an int code array. */
static int32_t isum(const int *c, const int8_t *q, int n) {
    int32_t s = 0;
    for (int i = 0; i < n; i++) s += c[i] * q[i];
    return s;
}

/* One 32-block type (Q8_0, Q4_0, Q4_1, Q5_0, Q5_1): c of block blk with activations q, dx, s. */
static float c_block32(qm_dtype dt, const uint8_t *blk, const int8_t *q, float dx, int32_t s) {
    const float dw = qm_f16_to_f32(qm_quant_rd16(blk));
    int c[32];
    if (dt == QM_DT_Q8_0) {
        for (int i = 0; i < 32; i++) c[i] = (int8_t)blk[2 + i];
        return (dw * dx) * (float)isum(c, q, 32);
    }
    const int has_m = dt == QM_DT_Q4_1 || dt == QM_DT_Q5_1, has_h = dt == QM_DT_Q5_0 || dt == QM_DT_Q5_1;
    const uint8_t *p = blk + 2 + 2 * has_m;
    const uint32_t qh = has_h ? qm_quant_rd32(p) : 0;
    const uint8_t *qs = p + 4 * has_h;
    for (int i = 0; i < 16; i++) {
        c[i] = (qs[i] & 15) | (int)((qh >> i) & 1) << 4;
        c[i + 16] = (qs[i] >> 4) | (int)((qh >> (i + 16)) & 1) << 4;
    }
    if (has_m) {
        const float mw = qm_f16_to_f32(qm_quant_rd16(blk + 2));
        return (dw * dx) * (float)isum(c, q, 32) + (mw * dx) * (float)s;
    }
    const int off = has_h ? 16 : 8;
    for (int i = 0; i < 32; i++) c[i] -= off;
    return (dw * dx) * (float)isum(c, q, 32);
}

/* Q4_K / Q5_K: sub-block j of the superblock at blk. */
static float c_k45(qm_dtype dt, const uint8_t *blk, int j, const int8_t *q, float dx, int32_t s) {
    const float d = qm_f16_to_f32(qm_quant_rd16(blk)), dmin = qm_f16_to_f32(qm_quant_rd16(blk + 2));
    uint8_t sc[8], mn[8];
    qm_quant_k_scales(blk + 4, sc, mn);
    const uint8_t *qh = dt == QM_DT_Q5_K ? blk + 16 : NULL;
    const uint8_t *qs = blk + (qh ? 48 : 16) + 32 * (j / 2);
    int c[32];
    for (int l = 0; l < 32; l++) {
        c[l] = (qs[l] >> (4 * (j & 1))) & 15;
        if (qh) c[l] |= ((qh[l] >> j) & 1) << 4;
    }
    return (d * dx) * (float)(sc[j] * isum(c, q, 32)) - (dmin * dx) * (float)(mn[j] * s);
}

/* Q6_K: sub-block j (elements 32j .. 32j + 31) of the superblock at blk. */
static float c_q6k(const uint8_t *blk, int j, const int8_t *q, float dx) {
    const qm_block_q6_k *b = (const qm_block_q6_k *)blk;
    const float d = qm_f16_to_f32(qm_quant_rd16(b->d));
    int c[32];
    qm_q6k_codes(b, j, c);
    const int32_t sum = b->scales[2 * j] * isum(c, q, 16) + b->scales[2 * j + 1] * isum(c + 16, q + 16, 16);
    return (d * dx) * (float)sum;
}

/* c of view block b: sb = col0 / 32 + b counts 32-blocks from the row's first block. */
static float c_of(qm_dtype dt, const uint8_t *row, int sb, const int8_t *q, float dx, int32_t s) {
    const size_t bb = qm_dtype_block_bytes(dt);
    if (qm_dtype_block(dt) == 32) return c_block32(dt, row + (size_t)sb * bb, q, dx, s);
    const uint8_t *blk = row + (size_t)(sb / 8) * bb;
    return dt == QM_DT_Q6_K ? c_q6k(blk, sb % 8, q, dx) : c_k45(dt, blk, sb % 8, q, dx, s);
}

static float dot_q8(qm_dtype dt, const uint8_t *row, int col0, int cols, const int8_t *q, const float *d,
                    const int32_t *s) {
    float acc[16] = {0};
    for (int b = 0; b < cols / QM_Q8_BLOCK; b++)
        acc[b % 16] = acc[b % 16] + c_of(dt, row, col0 / 32 + b, q + (size_t)b * QM_Q8_BLOCK, d[b], s[b]);
    for (int w = 8; w >= 1; w /= 2)
        for (int l = 0; l < w; l++) acc[l] = acc[l] + acc[l + w];
    return acc[0];
}

void qm_matmul_q8_scalar(const qm_wview *w, const float *bias, const qm_q8act *x, int n_tok, float *y, size_t ldy,
                         int o_begin, int o_end) {
    const size_t stride = qm_wview_stride(w);
    for (int o = o_begin; o < o_end; o++) {
        const uint8_t *row = (const uint8_t *)w->data + (size_t)o * stride;
        for (int t = 0; t < n_tok; t++) {
            const size_t xb = (size_t)t * x->ld_blocks;
            const float dot = dot_q8(w->dtype, row, w->col0, w->cols, x->q + xb * QM_Q8_BLOCK, x->d + xb, x->s + xb);
            y[(size_t)t * ldy + (size_t)o] = bias ? dot + bias[o] : dot;
        }
    }
}
