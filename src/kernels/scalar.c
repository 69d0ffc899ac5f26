/* The scalar twin: the canonical reduction order (kernels.h) written out literally.
 * Every other ISA must give the same bits as this file; the tests compare with memcmp. */
#include <math.h>
#include <stdint.h>

#include "kernels/kernels.h"

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

static void matmul_scalar(const qm_wview *w, const float *bias, const float *x, size_t ldx, int n_tok,
                          float *y, size_t ldy, int o_begin, int o_end) {
    const char *base = w->data;
    size_t row_bytes = w->ld * qm_dtype_size(w->dtype);
    for (int o = o_begin; o < o_end; o++) {
        const void *row = base + (size_t)o * row_bytes;
        for (int t = 0; t < n_tok; t++) {
            float d = dot_row(row, w->dtype, x + (size_t)t * ldx, w->cols);
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

const qm_kernels qm_kernels_scalar_table = {
    .isa = "scalar", .matmul = matmul_scalar, .dot = dot_scalar, .axpy = axpy_scalar};
