/* The greedy head filter's bounds (model/head_filter.h). */
#include "model/head_filter.h"
#include "kernels/qdot.h"
#include "kernels/quant.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static bool is_float(qm_dtype t) { return t == QM_DT_F32 || t == QM_DT_F16 || t == QM_DT_BF16; }

bool qm_head_filter_supported(const qm_wview *w) {
    const qm_dtype t = w->dtype;
    const bool no_min = t == QM_DT_Q8_0 || t == QM_DT_Q4_0 || t == QM_DT_Q5_0 || t == QM_DT_Q6_K;
    return (no_min || is_float(t)) && w->col0 == 0 && w->cols > 0 && w->cols % QM_Q8_BLOCK == 0 && w->rows > 0;
}

/* The widest of 256, 128, 64, 32 that divides cols (a Q6_K row: 256, whole superblocks). */
static int group_of(int cols) {
    int g = 256;
    while (cols % g) g /= 2;
    return g;
}

/* The approx view: w itself, or (a float head) a Q8_0 shadow of its shape. */
static bool alloc_approx(qm_head_filter *f, const qm_wview *w) {
    const size_t rows = (size_t)w->rows, groups = (size_t)f->groups;
    const size_t tiles = (rows + QM_HEAD_TILE - 1) / QM_HEAD_TILE, sub = groups * QM_HEAD_TILE;
    f->approx = *w;
    f->tile = is_float(w->dtype) ? 2 * sub : sub; /* S, and D where there is a shadow */
    f->bound = calloc(tiles, f->tile * sizeof *f->bound);
    if (!is_float(w->dtype)) {
        f->read_bytes = rows * qm_wview_stride(w) + rows * groups * sizeof(float);
        return f->bound != NULL;
    }
    f->approx.dtype = QM_DT_Q8_0;
    f->approx.ld = (size_t)w->cols;
    const size_t shadow_bytes = rows * qm_wview_stride(&f->approx);
    f->shadow = malloc(shadow_bytes);
    f->dev = f->bound ? f->bound + sub : NULL;
    f->approx.data = f->shadow;
    f->read_bytes = shadow_bytes + 2 * rows * groups * sizeof(float);
    return f->shadow && f->bound;
}

bool qm_head_filter_alloc(qm_head_filter *f, const qm_wview *w, bool shadow, int T, int nth) {
    memset(f, 0, sizeof *f);
    if (!qm_head_filter_supported(w) || (is_float(w->dtype) && !shadow)) return true;
    f->rows = w->rows;
    f->group = group_of(w->cols);
    f->groups = w->cols / f->group;
    const size_t cols = (size_t)w->cols, nb = cols / QM_Q8_BLOCK;
    f->xq = malloc((size_t)T * cols + 64);
    f->xq_d = malloc((size_t)T * nb * sizeof *f->xq_d);
    f->xq_s = malloc((size_t)T * nb * sizeof *f->xq_s);
    f->coef = malloc((size_t)T * 2 * (size_t)f->groups * sizeof *f->coef);
    f->coef32 = malloc((size_t)T * 2 * (size_t)f->groups * sizeof *f->coef32);
    f->low = malloc((size_t)nth * (size_t)T * sizeof *f->low);
    f->low32 = malloc((size_t)nth * (size_t)T * sizeof *f->low32);
    f->cut = malloc((size_t)T * sizeof *f->cut);
    const bool approx = alloc_approx(f, w);
    if (approx && f->xq && f->xq_d && f->xq_s && f->coef && f->coef32 && f->low && f->low32 && f->cut)
        return true;
    qm_head_filter_free(f);
    return false;
}

void qm_head_filter_free(qm_head_filter *f) {
    free(f->bound);
    free(f->shadow);
    free(f->xq);
    free(f->xq_d);
    free(f->xq_s);
    free(f->coef);
    free(f->coef32);
    free(f->low);
    free(f->low32);
    free(f->cut);
    memset(f, 0, sizeof *f);
}

/* Group g of row j of w as f32 (the exact mode's weights: dequantized or widened) into out. */
static void group_values(const qm_wview *w, int j, int g, int group, float *out) {
    const char *row = (const char *)w->data + (size_t)j * qm_wview_stride(w);
    const size_t c0 = (size_t)g * (size_t)group;
    if (is_float(w->dtype)) {
        for (int i = 0; i < group; i++) out[i] = qm_load_f32(row, w->dtype, c0 + (size_t)i);
        return;
    }
    const size_t qk = (size_t)qm_dtype_block(w->dtype); /* a group is whole blocks */
    qm_dequant_scalar(w->dtype, row + c0 / qk * qm_dtype_block_bytes(w->dtype), group / (int)qk, out);
}

/* n values (a multiple of 32) as Q8_0 blocks into out, and their dequantized values into back:
 * d = max|x| / 127 stored as f16, q = x / d rounded. Any encoding would do (the bounds are taken
 * from the values it gives back); this one is quick where the reference's (qm_quantize_row) calls
 * floorf for each value. */
static void shadow_blocks(const float *x, int n, qm_block_q8_0 *out, float *back) {
    for (int b = 0; b < n / QM_Q8_BLOCK; b++, x += QM_Q8_BLOCK, back += QM_Q8_BLOCK) {
        float amax = 0.0f;
        for (int i = 0; i < QM_Q8_BLOCK; i++) {
            const float a = fabsf(x[i]);
            amax = amax < a ? a : amax;
        }
        const float d = amax / 127.0f;
        float id = d > 0.0f ? 1.0f / d : 0.0f;
        if (!(id <= FLT_MAX)) id = FLT_MAX; /* x * id: never 0 * inf */
        const uint16_t h = qm_quant_f32_to_f16(d);
        const float dh = qm_f16_to_f32(h);
        out[b].d[0] = (uint8_t)h;
        out[b].d[1] = (uint8_t)(h >> 8);
        for (int i = 0; i < QM_Q8_BLOCK; i++) { /* branch-free: the loop vectorizes */
            float v = x[i] * id;
            v = v < -127.0f ? -127.0f : v;
            v = v > 127.0f ? 127.0f : v;
            const float r = (v + 12582912.0f) - 12582912.0f; /* to nearest: 1.5 * 2^23 */
            out[b].qs[i] = (int8_t)(int)r;
            back[i] = dh * r; /* the f32 dequantization of the block, as every kernel's */
        }
    }
}

/* Σ |a_i| (b NULL) or Σ |a_i - b_i| over n values, in double, four partial sums. */
static double abs_sum(const float *a, const float *b, int n) {
    double s[4] = {0, 0, 0, 0};
    for (int i = 0; i < n; i += 4)
        for (int k = 0; k < 4; k++) s[k] += fabs((double)a[i + k] - (b ? (double)b[i + k] : 0.0));
    return (s[0] + s[1]) + (s[2] + s[3]);
}

void qm_head_filter_bound_rows(qm_head_filter *f, const qm_wview *w, int r0, int r1) {
    float v[256], vq[256]; /* a group of w, and of the approx view */
    const size_t blocks = (size_t)f->group / QM_Q8_BLOCK;
    const qm_head_bounds hb = qm_head_filter_bounds(f);
    for (int j = r0; j < r1; j++)
        for (int g = 0; g < f->groups; g++) {
            const size_t at = qm_head_bound_at(&hb, g, j);
            group_values(w, j, g, f->group, v);
            /* at most 256 terms: exact to about 2^-45, covered by the margin */
            if (f->shadow) {
                qm_block_q8_0 *q = (qm_block_q8_0 *)((char *)f->shadow + (size_t)j * qm_wview_stride(&f->approx)) +
                                   (size_t)g * blocks;
                shadow_blocks(v, f->group, q, vq);
                f->dev[at] = qm_float_up(abs_sum(v, vq, f->group) * (1.0 + 1e-12));
            }
            const float *wq = f->shadow ? vq : v; /* the approx view's values */
            f->bound[at] = qm_float_up(abs_sum(wq, NULL, f->group) * (1.0 + 1e-12));
        }
}

bool qm_head_filter_prepare(qm_head_filter *f, const qm_kernels *k, const float *x, int cols, int t) {
    const size_t nb = (size_t)cols / QM_Q8_BLOCK;
    int8_t *q = f->xq + (size_t)t * (size_t)cols;
    float *d = f->xq_d + (size_t)t * nb;
    k->quantize_act(x, cols, q, d, f->xq_s + (size_t)t * nb);
    const double c = 1.01 * ((double)cols + 256.0) * 0x1p-24;
    double *e = f->coef + (size_t)t * 2 * (size_t)f->groups, *h = e + f->groups;
    float *e32 = f->coef32 + (size_t)t * 2 * (size_t)f->groups, *h32 = e32 + f->groups;
    for (int g = 0; g < f->groups; g++) {
        double resid = 0.0, mag = 0.0;
        for (int i = g * f->group; i < (g + 1) * f->group; i++) {
            const double xi = x[i], xh = (double)d[i / QM_Q8_BLOCK] * q[i]; /* exact in double */
            if (!isfinite(xi)) {
                memset(e, 0, 2 * (size_t)f->groups * sizeof *e);
                memset(e32, 0, 2 * (size_t)f->groups * sizeof *e32);
                return false;
            }
            resid = fmax(resid, fabs(xi - xh));
            mag = fmax(mag, fmax(fabs(xi), fabs(xh)));
        }
        e[g] = resid * (1.0 + 1e-12) + c * mag;
        h[g] = (1.0 + c) * mag * (1.0 + 1e-12);
        e32[g] = qm_float_up(e[g]);
        h32[g] = qm_float_up(h[g]);
    }
    return true;
}

/* E_j of the rows [j0, j0 + n) inside one tile (tile-relative lane of j0: lane) into out[n]. */
static void tile_errors(const qm_head_filter *f, const float *tile, int lane, int n, const double *e, const double *h,
                        double *out) {
    for (int i = 0; i < n; i++) out[i] = 0.0;
    for (int g = 0; g < f->groups; g++) { /* rows side by side: the loops over them vectorize */
        const float *s = tile + (size_t)g * QM_HEAD_TILE + (size_t)lane;
        const double eg = e[g];
        for (int i = 0; i < n; i++) out[i] += (double)s[i] * eg;
        if (!f->dev) continue;
        const float *dv = s + (size_t)f->groups * QM_HEAD_TILE;
        const double hg = h[g];
        for (int i = 0; i < n; i++) out[i] += (double)dv[i] * hg;
    }
    for (int i = 0; i < n; i++) out[i] = out[i] * (1.0 + 1e-12) + 1e-35; /* f32 underflow: < 2^-149 an op */
}

void qm_head_filter_errors(const qm_head_filter *f, int j0, int n, int t, double *out) {
    const double *e = f->coef + (size_t)t * 2 * (size_t)f->groups, *h = e + f->groups;
    for (int i = 0; i < n;) { /* a tile at a time: its bounds are one stretch of memory */
        const int j = j0 + i, lane = j % QM_HEAD_TILE, m = n - i < QM_HEAD_TILE - lane ? n - i : QM_HEAD_TILE - lane;
        tile_errors(f, f->bound + (size_t)(j / QM_HEAD_TILE) * f->tile, lane, m, e, h, out + i);
        i += m;
    }
}
