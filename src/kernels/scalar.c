/* The scalar twin: the canonical reduction order (kernels.h) written out literally.
 * Every other ISA must give the same bits as this file; the tests compare with memcmp. */
#include <math.h>
#include <stdint.h>

#include "kernels/expf.h"
#include "kernels/kernels.h"
#include "kernels/qdot.h"
#include "kernels/quant.h"

/* The halving tree 8, 4, 2, 1 of the canonical order. */
static float tree16(float acc[16]) {
    for (int w = 8; w >= 1; w /= 2)
        for (int l = 0; l < w; l++) acc[l] = acc[l] + acc[l + w];
    return acc[0];
}

/* One canonical dot of a weight row (any dtype) with an f32 vector. The dtype switch is
 * hoisted out of the loop so each loop converts with one cheap inline function. */
static float dot_row(const void *row, qm_dtype dt, const float *x, int n) {
    float acc[16] = {0};
    if (dt == QM_DT_F32) {
        const float *r = row;
        for (int i = 0; i < n; i++) acc[i % 16] = fmaf(r[i], x[i], acc[i % 16]);
    } else if (dt == QM_DT_BF16) {
        const uint16_t *r = row;
        for (int i = 0; i < n; i++) acc[i % 16] = fmaf(qm_bf16_to_f32(r[i]), x[i], acc[i % 16]);
    } else {
        const uint16_t *r = row;
        for (int i = 0; i < n; i++) acc[i % 16] = fmaf(qm_f16_to_f32(r[i]), x[i], acc[i % 16]);
    }
    return tree16(acc);
}

/* The canonical dot of a block-quantized row slice (n elements from element col0 of the block at
 * row) with x: the row is dequantized exactly, 256 elements at a time, and element i of the
 * slice goes to lane i % 16, whatever col0 is. */
static float dot_qrow(const char *row, qm_dtype dt, int col0, const float *x, int n) {
    const int qk = qm_dtype_block(dt), chunk = 256;
    const size_t bb = qm_dtype_block_bytes(dt);
    float acc[16] = {0}, buf[256];
    const int end = col0 + n;
    for (int c = 0; c < end; c += chunk) { /* c: row element of buf[0] */
        int hi = end - c < chunk ? end - c : chunk, lo = c < col0 ? col0 - c : 0;
        if (lo >= hi) continue;
        qm_dequant_scalar(dt, row + (size_t)(c / qk) * bb, (hi + qk - 1) / qk, buf);
        for (int j = lo; j < hi; j++) {
            int i = c + j - col0;
            acc[i % 16] = fmaf(buf[j], x[i], acc[i % 16]);
        }
    }
    return tree16(acc);
}

static void matmul_scalar(const qm_wview *w, const float *bias, const float *x, size_t ldx, int n_tok,
                          float *y, size_t ldy, int o_begin, int o_end) {
    const char *base = w->data;
    size_t row_bytes = qm_wview_stride(w);
    const int quant = qm_dtype_is_quant(w->dtype);
    for (int o = o_begin; o < o_end; o++) {
        const void *row = base + (size_t)o * row_bytes;
        for (int t = 0; t < n_tok; t++) {
            const float *xt = x + (size_t)t * ldx;
            float d = quant ? dot_qrow(row, w->dtype, w->col0, xt, w->cols) : dot_row(row, w->dtype, xt, w->cols);
            y[(size_t)t * ldy + (size_t)o] = bias ? d + bias[o] : d;
        }
    }
}

static float dot_scalar(const float *a, const float *b, int n) {
    return dot_row(a, QM_DT_F32, b, n);
}

static void axpy_scalar(float a, const float *x, float *y, int n) {
    for (int i = 0; i < n; i++) y[i] = fmaf(a, x[i], y[i]);
}

static void attn_values_scalar(const float *p, size_t ldp, int g, const float *v, size_t ldv, int n, float *out,
                               int hd) {
    for (int h = 0; h < g; h++) {
        float *o = out + (size_t)h * (size_t)hd;
        for (int j = 0; j < n; j++) axpy_scalar(p[(size_t)h * ldp + (size_t)j], v + (size_t)j * ldv, o, hd);
    }
}

static void matmul_blocks_scalar(const qm_wview *w, const float *x, size_t ldx, int n_tok, int bc, int nb, float *part,
                          size_t pstride, size_t ldy, int o_begin, int o_end) {
    qm_blocks_by_views(matmul_scalar, w, x, ldx, n_tok, bc, nb, part, pstride, ldy, o_begin, o_end);
}
static void matmul_q8_blocks_scalar(const qm_wview *w, const qm_q8act *x, int n_tok, int bc, int nb, float *part,
                                    size_t pstride, size_t ldy, int o_begin, int o_end) {
    qm_q8_blocks_by_views(qm_matmul_q8_scalar, w, x, n_tok, bc, nb, part, pstride, ldy, o_begin, o_end);
}

const qm_kernels qm_kernels_scalar_table = {
    .isa = "scalar", .matmul = matmul_scalar, .dot = dot_scalar, .axpy = axpy_scalar, .attn_values = attn_values_scalar,
    .quantize_act = qm_quantize_act_scalar, .matmul_q8 = qm_matmul_q8_scalar,
    .matmul_blocks = matmul_blocks_scalar, .matmul_q8_blocks = matmul_q8_blocks_scalar,
    .head_finish = qm_head_finish_scalar, .exp_sub = qm_exp_sub_scalar, .silu_mul = qm_silu_mul_scalar};
