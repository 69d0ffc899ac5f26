/* The greedy head filter's bounds (model/head_filter.h). */
#include "model/head_filter.h"
#include "kernels/qdot.h"
#include "kernels/quant.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

bool qm_head_filter_supported(const qm_wview *w) {
    const qm_dtype t = w->dtype;
    const bool no_min = t == QM_DT_Q8_0 || t == QM_DT_Q4_0 || t == QM_DT_Q5_0 || t == QM_DT_Q6_K;
    return no_min && w->col0 == 0 && w->cols > 0 && w->cols % QM_Q8_BLOCK == 0 && w->rows > 0;
}

/* The widest of 256, 128, 64, 32 that divides cols (a Q6_K row: 256, whole superblocks). */
static int group_of(int cols) {
    int g = 256;
    while (cols % g) g /= 2;
    return g;
}

bool qm_head_filter_alloc(qm_head_filter *f, const qm_wview *w, int T, int nth) {
    memset(f, 0, sizeof *f);
    if (!qm_head_filter_supported(w)) return true;
    f->rows = w->rows;
    f->group = group_of(w->cols);
    f->groups = w->cols / f->group;
    const size_t cols = (size_t)w->cols, nb = cols / QM_Q8_BLOCK;
    f->bound = malloc((size_t)w->rows * (size_t)f->groups * sizeof *f->bound);
    f->xq = malloc((size_t)T * cols + 64);
    f->xq_d = malloc((size_t)T * nb * sizeof *f->xq_d);
    f->xq_s = malloc((size_t)T * nb * sizeof *f->xq_s);
    f->coef = malloc((size_t)T * (size_t)f->groups * sizeof *f->coef);
    f->low = malloc((size_t)nth * (size_t)T * sizeof *f->low);
    f->cut = malloc((size_t)T * sizeof *f->cut);
    if (f->bound && f->xq && f->xq_d && f->xq_s && f->coef && f->low && f->cut) return true;
    qm_head_filter_free(f);
    return false;
}

void qm_head_filter_free(qm_head_filter *f) {
    free(f->bound);
    free(f->xq);
    free(f->xq_d);
    free(f->xq_s);
    free(f->coef);
    free(f->low);
    free(f->cut);
    memset(f, 0, sizeof *f);
}

/* x rounded up to a float (x >= 0). */
static float float_up(double x) {
    float r = (float)x;
    return (double)r < x ? nextafterf(r, INFINITY) : r;
}

void qm_head_filter_bound_rows(qm_head_filter *f, const qm_wview *w, int r0, int r1) {
    float row[256];
    const size_t stride = qm_wview_stride(w), qk = (size_t)qm_dtype_block(w->dtype);
    const size_t group_bytes = (size_t)f->group / qk * qm_dtype_block_bytes(w->dtype); /* group: whole blocks */
    for (int j = r0; j < r1; j++) {
        const char *src = (const char *)w->data + (size_t)j * stride;
        for (int g = 0; g < f->groups; g++) {
            qm_dequant_scalar(w->dtype, src + (size_t)g * group_bytes, f->group / (int)qk, row);
            double s = 0.0; /* at most 256 terms: exact to about 2^-45, covered by E_j's margin */
            for (int i = 0; i < f->group; i++) s += fabs((double)row[i]);
            f->bound[(size_t)g * (size_t)f->rows + (size_t)j] = float_up(s * (1.0 + 1e-12));
        }
    }
}

bool qm_head_filter_prepare(qm_head_filter *f, const qm_kernels *k, const float *x, int cols, int t) {
    const size_t nb = (size_t)cols / QM_Q8_BLOCK;
    int8_t *q = f->xq + (size_t)t * (size_t)cols;
    float *d = f->xq_d + (size_t)t * nb;
    k->quantize_act(x, cols, q, d, f->xq_s + (size_t)t * nb);
    const double c = 1.01 * ((double)cols + 256.0) * 0x1p-24;
    double *e = f->coef + (size_t)t * (size_t)f->groups;
    for (int g = 0; g < f->groups; g++) {
        double resid = 0.0, mag = 0.0;
        for (int i = g * f->group; i < (g + 1) * f->group; i++) {
            const double xi = x[i], xh = (double)d[i / QM_Q8_BLOCK] * q[i]; /* exact in double */
            if (!isfinite(xi)) {
                memset(e, 0, (size_t)f->groups * sizeof *e);
                return false;
            }
            resid = fmax(resid, fabs(xi - xh));
            mag = fmax(mag, fmax(fabs(xi), fabs(xh)));
        }
        e[g] = resid * (1.0 + 1e-12) + c * mag;
    }
    return true;
}

void qm_head_filter_errors(const qm_head_filter *f, int j0, int n, int t, double *out) {
    const double *e = f->coef + (size_t)t * (size_t)f->groups;
    for (int i = 0; i < n; i++) out[i] = 0.0;
    for (int g = 0; g < f->groups; g++) { /* rows side by side: the loop over them vectorizes */
        const float *s = f->bound + (size_t)g * (size_t)f->rows + (size_t)j0;
        const double eg = e[g];
        for (int i = 0; i < n; i++) out[i] += (double)s[i] * eg;
    }
    for (int i = 0; i < n; i++) out[i] = out[i] * (1.0 + 1e-12) + 1e-35; /* f32 underflow: < 2^-149 an op */
}
