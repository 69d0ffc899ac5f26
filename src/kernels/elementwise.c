/* Element-wise helpers: one implementation for every ISA (no reduction across elements,
 * except RMSNorm's sum of squares, which goes through the canonical dot). */
#include <math.h>

#include "kernels/kernels.h"

void qm_rmsnorm(const qm_kernels *k, const float *x, const void *w, qm_dtype wt, int n, float eps,
                float *y) {
    float ss = k->dot(x, x, n);
    float var = ss / (float)n;
    float r = 1.0f / sqrtf(var + eps);
    if (wt == QM_DT_F32) { /* the usual case, as a loop the compiler vectorizes: the same two roundings */
        const float *wf = w;
        for (int i = 0; i < n; i++) y[i] = wf[i] * (x[i] * r);
        return;
    }
    for (int i = 0; i < n; i++) {
        float xr = x[i] * r;
        y[i] = qm_load_f32(w, wt, (size_t)i) * xr;
    }
}

void qm_rope_apply(float *x, int head_dim, const float *cos_t, const float *sin_t) {
    int h = head_dim / 2;
    for (int i = 0; i < h; i++) {
        float a = x[i], b = x[i + h];
        float ac = a * cos_t[i], bs = b * sin_t[i];
        float bc = b * cos_t[i], as = a * sin_t[i];
        x[i] = ac - bs;
        x[i + h] = bc + as;
    }
}

void qm_rope_table(int pos, int head_dim, double theta, float *cos_t, float *sin_t) {
    int h = head_dim / 2;
    for (int i = 0; i < h; i++) {
        float inv_freq = (float)(1.0 / pow(theta, (double)(2 * i) / (double)head_dim));
        float angle = (float)pos * inv_freq;
        cos_t[i] = (float)cos((double)angle);
        sin_t[i] = (float)sin((double)angle);
    }
}
