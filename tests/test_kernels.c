/* Kernel tests: every ISA this CPU supports against the scalar twin, bit for bit; the scalar
 * twin and the element-wise helpers against double-precision references; selection errors;
 * and a micro-benchmark that reports (never asserts) GB/s and GFLOP/s. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "kernels/expf.h"
#include "kernels/kernels.h"
#include "kernels/quant.h"

/* ---- random inputs that are really spread out (sign, exponent and mantissa all random) ---- */

typedef struct {
    uint64_t s;
} rng_t;

static uint64_t rng_u64(rng_t *r) { /* splitmix64 */
    uint64_t z = (r->s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static int rng_int(rng_t *r, int lo, int hi) { /* [lo, hi] */
    return lo + (int)(rng_u64(r) % (uint64_t)(hi - lo + 1));
}

static float bits_f32(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* |v| in [2^-6, 2^7), random sign and mantissa; 1 in 64 is an exact zero. */
static float rand_f32(rng_t *r) {
    uint64_t u = rng_u64(r);
    if ((u & 63) == 0) return 0.0f;
    uint32_t sign = (uint32_t)(u >> 63) << 31;
    uint32_t exp = (uint32_t)(127 - 6 + (int)((u >> 32) % 13));
    return bits_f32(sign | exp << 23 | ((uint32_t)(u >> 6) & 0x7fffffu));
}

static void fill_f32(rng_t *r, float *v, size_t n) {
    for (size_t i = 0; i < n; i++) v[i] = rand_f32(r);
}

/* One weight element of dtype dt, stored at p[i]. */
static void rand_weight(rng_t *r, qm_dtype dt, void *p, size_t i) {
    if (dt == QM_DT_F32) {
        ((float *)p)[i] = rand_f32(r);
    } else if (dt == QM_DT_BF16) {
        uint32_t u;
        float f = rand_f32(r);
        memcpy(&u, &f, 4);
        ((uint16_t *)p)[i] = (uint16_t)(u >> 16);
    } else { /* f16: exponent field 0 (subnormal) to 22, random mantissa and sign */
        uint64_t u = rng_u64(r);
        uint16_t exp = (uint16_t)(u % 23);
        ((uint16_t *)p)[i] = (uint16_t)(((u >> 20) & 1u) << 15 | exp << 10 | ((u >> 32) & 0x3ffu));
    }
}

/* ---- the ISAs under test ---- */

static int supported(qm_kernels *ks, int max) {
    const char *names[8];
    int n = qm_kernels_supported(names, 8);
    assert_true(n >= 1 && n <= max);
    assert_string_equal(names[n - 1], "scalar");
    for (int i = 0; i < n; i++) {
        qm_error err = {0};
        assert_int_equal(qm_kernels_select(names[i], &ks[i], &err), QM_OK);
        assert_string_equal(ks[i].isa, names[i]);
    }
    return n;
}

static const qm_kernels *scalar_of(const qm_kernels *ks, int n) { return &ks[n - 1]; }

/* A weight view: rows x cols at column offset coff inside rows of ld elements. The buffer ends
 * right after the last row, so an overread is caught by ASan. */
typedef struct {
    void *buf;
    qm_wview v;
} wmat;

static wmat make_w(rng_t *r, qm_dtype dt, int rows, int cols, int coff, int ld) {
    wmat m;
    size_t esz = qm_dtype_size(dt);
    m.buf = malloc((size_t)rows * (size_t)ld * esz);
    assert_non_null(m.buf);
    for (size_t i = 0; i < (size_t)rows * (size_t)ld; i++) rand_weight(r, dt, m.buf, i);
    m.v.data = (const char *)m.buf + (size_t)coff * esz;
    m.v.dtype = dt;
    m.v.ld = (size_t)ld;
    m.v.rows = rows;
    m.v.cols = cols;
    return m;
}

static float *make_y(size_t n) { /* filled with a sentinel NaN pattern */
    float *y = malloc(n * sizeof(float));
    assert_non_null(y);
    uint32_t s = 0x7fc0dead;
    for (size_t i = 0; i < n; i++) memcpy(&y[i], &s, 4);
    return y;
}

static void report_mismatch(const char *what, const char *isa, qm_dtype dt, int rows, int cols,
                            int n_tok, const float *a, const float *b, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (memcmp(&a[i], &b[i], 4) != 0) {
            print_error("%s: isa %s dtype %s rows %d cols %d n_tok %d: first difference at %zu: "
                        "%.9g vs %.9g\n",
                        what, isa, qm_dtype_name(dt), rows, cols, n_tok, i, (double)a[i], (double)b[i]);
            break;
        }
}

static const int test_cols[] = {1, 2, 15, 16, 17, 31, 33, 64, 100, 896};
static const int test_rows[] = {1, 3, 4, 5, 8, 11, 13, 17};
static const qm_dtype test_dts[] = {QM_DT_F32, QM_DT_F16, QM_DT_BF16};
#define COUNT(a) ((int)(sizeof(a) / sizeof(a)[0]))

/* Every ISA vs the scalar twin, memcmp, on views with ld > cols, with and without bias. */
static void test_matmul_vs_scalar(void **state) {
    (void)state;
    qm_kernels ks[8];
    int nk = supported(ks, 8);
    const qm_kernels *sc = scalar_of(ks, nk);
    rng_t r = {42};
    for (int d = 0; d < COUNT(test_dts); d++)
        for (int ci = 0; ci < COUNT(test_cols); ci++)
            for (int ri = 0; ri < COUNT(test_rows); ri++) {
                qm_dtype dt = test_dts[d];
                int cols = test_cols[ci], rows = test_rows[ri];
                int coff = rng_int(&r, 0, 5), ld = cols + coff + rng_int(&r, 0, 7);
                wmat w = make_w(&r, dt, rows, cols, coff, ld);
                float *bias = malloc((size_t)rows * sizeof(float));
                fill_f32(&r, bias, (size_t)rows);
                for (int n_tok = 1; n_tok <= 9; n_tok++) {
                    size_t ldx = (size_t)cols + (size_t)(n_tok % 2 ? 0 : rng_int(&r, 1, 9));
                    size_t ldy = (size_t)rows + (size_t)(n_tok % 3);
                    size_t nx = (size_t)(n_tok - 1) * ldx + (size_t)cols; /* tight: no slack */
                    float *x = malloc(nx * sizeof(float));
                    fill_f32(&r, x, nx);
                    size_t ny = (size_t)n_tok * ldy;
                    for (int b = 0; b < 2; b++) {
                        const float *bp = b ? bias : NULL;
                        float *ref = make_y(ny);
                        sc->matmul(&w.v, bp, x, ldx, n_tok, ref, ldy, 0, rows);
                        for (int k = 0; k < nk - 1; k++) {
                            float *got = make_y(ny);
                            ks[k].matmul(&w.v, bp, x, ldx, n_tok, got, ldy, 0, rows);
                            if (memcmp(ref, got, ny * sizeof(float)) != 0) {
                                report_mismatch("matmul", ks[k].isa, dt, rows, cols, n_tok, got, ref, ny);
                                fail();
                            }
                            free(got);
                        }
                        free(ref);
                    }
                    free(x);
                }
                free(bias);
                free(w.buf);
            }
}

/* ---- block-quantized weights ---- */

static const qm_dtype quant_dts[] = {QM_DT_Q8_0, QM_DT_Q4_0, QM_DT_Q4_1, QM_DT_Q5_0,
                                     QM_DT_Q5_1, QM_DT_Q4_K, QM_DT_Q5_K, QM_DT_Q6_K};

/* A finite f16 of moderate size (exponent 5..20) with a random sign. */
static uint16_t rand_scale_f16(rng_t *r) {
    uint64_t u = rng_u64(r);
    return (uint16_t)(((u >> 20) & 1u) << 15 | (uint16_t)(5 + u % 16) << 10 | ((u >> 32) & 0x3ffu));
}

/* Random blocks with finite scales: the f16 fields of each block are rewritten. */
static void *make_qrows(rng_t *r, qm_dtype dt, int rows, int nblocks) {
    size_t bb = qm_dtype_block_bytes(dt), n = (size_t)rows * (size_t)nblocks;
    unsigned char *p = malloc(n * bb);
    assert_non_null(p);
    for (size_t i = 0; i < n * bb; i++) p[i] = (unsigned char)rng_u64(r);
    for (size_t b = 0; b < n; b++) {
        unsigned char *blk = p + b * bb;
        uint16_t s0 = rand_scale_f16(r), s1 = rand_scale_f16(r);
        size_t at0 = dt == QM_DT_Q6_K ? 208 : 0;
        memcpy(blk + at0, &s0, 2);
        if (dt == QM_DT_Q4_1 || dt == QM_DT_Q5_1 || dt == QM_DT_Q4_K || dt == QM_DT_Q5_K) memcpy(blk + 2, &s1, 2);
    }
    return p;
}

/* Quantized views (every type, column offsets inside a block, partial last blocks): every ISA
 * equals the scalar twin, and the scalar twin equals the canonical dot over the exactly
 * dequantized f32 weights (so a quantized matmul is the f32 matmul of its dequantized matrix). */
static void test_matmul_quant(void **state) {
    (void)state;
    qm_kernels ks[8];
    int nk = supported(ks, 8);
    const qm_kernels *sc = scalar_of(ks, nk);
    rng_t r = {7};
    for (int d = 0; d < COUNT(quant_dts); d++)
        for (int trial = 0; trial < 12; trial++) {
            qm_dtype dt = quant_dts[d];
            int qk = qm_dtype_block(dt), nblocks = rng_int(&r, 1, qk == 32 ? 40 : 5), rows = rng_int(&r, 1, 11);
            int ld = nblocks * qk, col0 = 16 * rng_int(&r, 0, (qk - 1) / 16);
            if (col0 >= ld) col0 = 0;
            int cols = ld - col0 - (trial % 3 == 0 ? 0 : rng_int(&r, 0, (ld - col0) - 1));
            void *q = make_qrows(&r, dt, rows, nblocks);
            qm_wview v = {(const char *)q + (size_t)(col0 / qk) * qm_dtype_block_bytes(dt), dt, (size_t)ld, rows, cols,
                          col0 % qk};
            float *deq = malloc((size_t)rows * (size_t)cols * sizeof(float));
            for (int o = 0; o < rows; o++)
                qm_dequant_range(dt, (const char *)q + (size_t)o * qm_dtype_row_bytes(dt, (size_t)ld), (size_t)col0,
                                 (size_t)cols, deq + (size_t)o * (size_t)cols);
            qm_wview vf = {deq, QM_DT_F32, (size_t)cols, rows, cols, 0};
            int n_tok = rng_int(&r, 1, 9);
            float *x = malloc((size_t)n_tok * (size_t)cols * sizeof(float));
            fill_f32(&r, x, (size_t)n_tok * (size_t)cols);
            size_t ny = (size_t)n_tok * (size_t)rows;
            float *ref = make_y(ny), *got = make_y(ny);
            sc->matmul(&vf, NULL, x, (size_t)cols, n_tok, ref, (size_t)rows, 0, rows);
            for (int k = 0; k < nk; k++) {
                ks[k].matmul(&v, NULL, x, (size_t)cols, n_tok, got, (size_t)rows, 0, rows);
                if (memcmp(ref, got, ny * sizeof(float)) != 0) {
                    report_mismatch("quantized matmul", ks[k].isa, dt, rows, cols, n_tok, got, ref, ny);
                    fail();
                }
                /* one token and one row at a time: the same bits */
                for (int t = 0; t < n_tok; t++)
                    for (int o = 0; o < rows; o++) {
                        ks[k].matmul(&v, NULL, x + (size_t)t * (size_t)cols, (size_t)cols, 1, got, (size_t)rows, o,
                                     o + 1);
                        assert_memory_equal(&got[o], &ref[(size_t)t * (size_t)rows + (size_t)o], 4);
                    }
            }
            free(ref);
            free(got);
            free(x);
            free(deq);
            free(q);
        }
}

/* Same bits whatever n_tok (one token at a time vs all at once) and whatever o_begin/o_end
 * split; outputs outside [o_begin, o_end) are not written. */
static void test_matmul_invariance(void **state) {
    (void)state;
    qm_kernels ks[8];
    int nk = supported(ks, 8);
    rng_t r = {7};
    for (int k = 0; k < nk; k++)
        for (int d = 0; d < COUNT(test_dts); d++) {
            qm_dtype dt = test_dts[d];
            int cols = k == nk - 1 ? 100 : 896, rows = 37, n_tok = 9;
            wmat w = make_w(&r, dt, rows, cols, 3, cols + 5);
            float *bias = malloc((size_t)rows * sizeof(float));
            fill_f32(&r, bias, (size_t)rows);
            size_t ldx = (size_t)cols + 1, ldy = (size_t)rows;
            float *x = malloc((size_t)n_tok * ldx * sizeof(float));
            fill_f32(&r, x, (size_t)n_tok * ldx);
            size_t ny = (size_t)n_tok * ldy;
            float *all = make_y(ny), *one = make_y(ny);
            ks[k].matmul(&w.v, bias, x, ldx, n_tok, all, ldy, 0, rows);
            for (int t = 0; t < n_tok; t++)
                ks[k].matmul(&w.v, bias, x + (size_t)t * ldx, ldx, 1, one + (size_t)t * ldy, ldy, 0, rows);
            assert_memory_equal(all, one, ny * sizeof(float));
            /* uneven splits: 0..a, a..b, b..rows (some empty or single-row) */
            for (int rep = 0; rep < 8; rep++) {
                int a = rng_int(&r, 0, rows), b = rng_int(&r, a, rows);
                int tk = rng_int(&r, 1, n_tok);
                float *part = make_y(ny);
                ks[k].matmul(&w.v, bias, x, ldx, tk, part, ldy, 0, a);
                ks[k].matmul(&w.v, bias, x, ldx, tk, part, ldy, a, b);
                ks[k].matmul(&w.v, bias, x, ldx, tk, part, ldy, b, rows);
                assert_memory_equal(all, part, (size_t)tk * ldy * sizeof(float));
                free(part);
            }
            /* a middle range writes only that range */
            float *mid = make_y(ny), *sent = make_y(ny);
            ks[k].matmul(&w.v, bias, x, ldx, n_tok, mid, ldy, 5, 30);
            for (int t = 0; t < n_tok; t++)
                for (int o = 0; o < rows; o++) {
                    size_t i = (size_t)t * ldy + (size_t)o;
                    const float *want = (o >= 5 && o < 30) ? &all[i] : &sent[i];
                    assert_memory_equal(&mid[i], want, sizeof(float));
                }
            free(mid);
            free(sent);
            free(all);
            free(one);
            free(x);
            free(bias);
            free(w.buf);
        }
}

/* The scalar twin against a double-precision dot, within the error bound of its order. */
static void test_scalar_vs_double(void **state) {
    (void)state;
    qm_kernels sc;
    qm_error err = {0};
    assert_int_equal(qm_kernels_select("scalar", &sc, &err), QM_OK);
    rng_t r = {99};
    for (int d = 0; d < COUNT(test_dts); d++)
        for (int ci = 0; ci < COUNT(test_cols); ci++) {
            qm_dtype dt = test_dts[d];
            int cols = test_cols[ci], rows = 9, n_tok = 3;
            wmat w = make_w(&r, dt, rows, cols, 1, cols + 2);
            float bias[9], x[3 * 896], y[3 * 9];
            fill_f32(&r, bias, 9);
            fill_f32(&r, x, (size_t)n_tok * (size_t)cols);
            sc.matmul(&w.v, bias, x, (size_t)cols, n_tok, y, rows, 0, rows);
            for (int t = 0; t < n_tok; t++)
                for (int o = 0; o < rows; o++) {
                    const char *row = (const char *)w.v.data + (size_t)o * w.v.ld * qm_dtype_size(dt);
                    double s = 0, sa = 0;
                    for (int i = 0; i < cols; i++) {
                        double p = (double)qm_load_f32(row, dt, (size_t)i) * x[t * cols + i];
                        s += p;
                        sa += fabs(p);
                    }
                    double want = s + bias[o];
                    double tol = (cols / 16 + 6) * ldexp(1.0, -23) * (sa + fabs(bias[o])) + 1e-30;
                    double got = y[t * rows + o];
                    if (fabs(got - want) > tol)
                        fail_msg("scalar matmul %s cols %d: y[%d][%d] = %.9g, double %.9g, tol %.3g",
                                 qm_dtype_name(dt), cols, t, o, got, want, tol);
                }
            free(w.buf);
        }
}

/* attn_values of every ISA: bit for bit its definition, one axpy per value row in order, from what
 * out holds (kernels.h), over head counts, head sizes (multiples of 8 and 16 and not) and row
 * counts; and two calls over rows [0, n1) and [n1, n) give the bits of one (a shared prefix). */
static void test_attn_values(void **state) {
    (void)state;
    qm_kernels ks[8];
    int nk = supported(ks, 8);
    const qm_kernels *sc = scalar_of(ks, nk);
    rng_t r = {17};
    const int hds[] = {64, 128, 16, 8, 80, 72, 3, 1};
    for (int trial = 0; trial < 60; trial++) {
        const int g = rng_int(&r, 1, 20), hd = hds[trial % 8], n = trial % 5 == 0 ? trial / 5 : rng_int(&r, 1, 300);
        const int n1 = n ? rng_int(&r, 0, n) : 0;
        const size_t ldp = (size_t)n + (size_t)rng_int(&r, 0, 5), ldv = (size_t)hd + (size_t)rng_int(&r, 0, 3);
        const size_t no = (size_t)g * (size_t)hd;
        float *p = malloc(((size_t)g * ldp + 1) * sizeof(float)), *v = malloc(((size_t)n * ldv + 1) * sizeof(float));
        float *start = malloc(no * sizeof(float)), *want = malloc(no * sizeof(float)), *got = malloc(no * sizeof(float));
        fill_f32(&r, p, (size_t)g * ldp + 1);
        fill_f32(&r, v, (size_t)n * ldv + 1);
        fill_f32(&r, start, no);
        if (trial % 2) memset(start, 0, no * sizeof(float)); /* the forward's case: from +0 */
        memcpy(want, start, no * sizeof(float));
        for (int h = 0; h < g; h++)
            for (int j = 0; j < n; j++) sc->axpy(p[(size_t)h * ldp + j], v + (size_t)j * ldv, want + (size_t)h * hd, hd);
        for (int k = 0; k < nk; k++) {
            memcpy(got, start, no * sizeof(float));
            ks[k].attn_values(p, ldp, g, v, ldv, n, got, hd);
            if (memcmp(got, want, no * sizeof(float)))
                fail_msg("attn_values %s g %d hd %d n %d differs from the axpy definition", ks[k].isa, g, hd, n);
            memcpy(got, start, no * sizeof(float));
            ks[k].attn_values(p, ldp, g, v, ldv, n1, got, hd);
            ks[k].attn_values(p + n1, ldp, g, v + (size_t)n1 * ldv, ldv, n - n1, got, hd);
            if (memcmp(got, want, no * sizeof(float)))
                fail_msg("attn_values %s g %d hd %d n %d split at %d differs from one call", ks[k].isa, g, hd, n, n1);
        }
        free(start);
        free(p);
        free(v);
        free(want);
        free(got);
    }
}

/* dot and axpy of every ISA vs the scalar twin, bit for bit, at many lengths and offsets. */
static void test_dot_axpy(void **state) {
    (void)state;
    qm_kernels ks[8];
    int nk = supported(ks, 8);
    const qm_kernels *sc = scalar_of(ks, nk);
    rng_t r = {5};
    for (int n = 0; n <= 200; n += (n < 40 ? 1 : 13)) {
        for (int rep = 0; rep < 3; rep++) {
            int off = rng_int(&r, 0, 3);
            float *a = malloc((size_t)(n + off + 1) * sizeof(float));
            float *b = malloc((size_t)(n + off + 1) * sizeof(float));
            fill_f32(&r, a, (size_t)(n + off + 1));
            fill_f32(&r, b, (size_t)(n + off + 1));
            float want = sc->dot(a + off, b + off, n);
            float alpha = rand_f32(&r);
            float *yref = malloc((size_t)(n + 1) * sizeof(float));
            memcpy(yref, b + off, (size_t)n * sizeof(float));
            sc->axpy(alpha, a + off, yref, n);
            for (int k = 0; k < nk - 1; k++) {
                float got = ks[k].dot(a + off, b + off, n);
                if (memcmp(&got, &want, 4) != 0)
                    fail_msg("dot %s n %d: %.9g vs scalar %.9g", ks[k].isa, n, (double)got, (double)want);
                float *yg = malloc((size_t)(n + 1) * sizeof(float));
                memcpy(yg, b + off, (size_t)n * sizeof(float));
                ks[k].axpy(alpha, a + off, yg, n);
                assert_memory_equal(yg, yref, (size_t)n * sizeof(float));
                free(yg);
            }
            /* the dot is the matmul's dot: one f32 row, one token */
            if (n > 0) {
                qm_wview v = {a + off, QM_DT_F32, (size_t)n, 1, n, 0};
                float y1;
                sc->matmul(&v, NULL, b + off, (size_t)n, 1, &y1, 1, 0, 1);
                assert_memory_equal(&y1, &want, 4);
            }
            free(a);
            free(b);
            free(yref);
        }
    }
    /* a long one, 896 = Qwen2-0.5B d_model */
    float a[896], b[896];
    fill_f32(&r, a, 896);
    fill_f32(&r, b, 896);
    float want = sc->dot(a, b, 896);
    for (int k = 0; k < nk - 1; k++) {
        float got = ks[k].dot(a, b, 896);
        assert_memory_equal(&got, &want, 4);
    }
}

static void test_rmsnorm(void **state) {
    (void)state;
    qm_kernels ks[8];
    int nk = supported(ks, 8);
    rng_t r = {11};
    for (int d = 0; d < COUNT(test_dts); d++) {
        qm_dtype dt = test_dts[d];
        int n = 896;
        float x[896], y[896], y0[896];
        uint16_t w16[896];
        float w32[896];
        const void *w = dt == QM_DT_F32 ? (const void *)w32 : (const void *)w16;
        fill_f32(&r, x, 896);
        for (int i = 0; i < n; i++) rand_weight(&r, dt, dt == QM_DT_F32 ? (void *)w32 : (void *)w16, (size_t)i);
        double ss = 0;
        for (int i = 0; i < n; i++) ss += (double)x[i] * x[i];
        double rr = 1.0 / sqrt(ss / n + 1e-6);
        for (int k = 0; k < nk; k++) {
            qm_rmsnorm(&ks[k], x, w, dt, n, 1e-6f, y);
            if (k == 0) memcpy(y0, y, sizeof y);
            assert_memory_equal(y, y0, sizeof y); /* same bits on every ISA */
            for (int i = 0; i < n; i++) {
                double want = (double)qm_load_f32(w, dt, (size_t)i) * x[i] * rr;
                double tol = 1e-5 * fabs(want) + 1e-30;
                if (fabs(y[i] - want) > tol)
                    fail_msg("rmsnorm %s %s: y[%d] = %.9g, double %.9g", ks[k].isa, qm_dtype_name(dt), i,
                             (double)y[i], want);
            }
        }
        /* in place */
        float xi[896];
        memcpy(xi, x, sizeof x);
        qm_rmsnorm(&ks[0], xi, w, dt, n, 1e-6f, xi);
        assert_memory_equal(xi, y0, sizeof xi);
    }
}

static void test_silu_mul(void **state) {
    (void)state;
    rng_t r = {3};
    enum { N = 1000 };
    float g[N], u[N], h[N], hv[N];
    qm_kernels ks[8];
    int nk = supported(ks, 8);
    fill_f32(&r, g, N);
    fill_f32(&r, u, N);
    g[0] = 0.0f;
    g[1] = -100.0f; /* expf(100) overflows to inf: silu -> -0 */
    g[2] = 100.0f;
    g[3] = NAN;
    g[4] = -INFINITY;
    qm_silu_mul_scalar(g, u, h, N);
    for (int i = 5; i < N; i++) {
        double want = (double)g[i] / (1.0 + exp(-(double)g[i])) * u[i];
        double tol = 1e-6 * fabs(want) + 1e-37;
        if (!(fabs(h[i] - want) <= tol))
            fail_msg("silu_mul[%d] g %.9g u %.9g: %.9g, double %.9g", i, (double)g[i], (double)u[i],
                     (double)h[i], want);
    }
    for (int k = 0; k < nk; k++)
        for (int n = 0; n <= N; n += n < 40 ? 1 : 97) { /* every tail length */
            ks[k].silu_mul(g, u, hv, n);
            if (n && memcmp(hv, h, (size_t)n * sizeof(float)))
                fail_msg("silu_mul %s n %d: not the scalar twin's bits", ks[k].isa, n);
        }
}

/* ulps between two finite floats of the same sign (or both zero). */
static int64_t ulps_apart(float a, float b) {
    int32_t ia, ib;
    memcpy(&ia, &a, 4);
    memcpy(&ib, &b, 4);
    return ia > ib ? (int64_t)ia - ib : (int64_t)ib - ia;
}

/* qm_expf against the C library's expf over every step-th float (every float when step is 1):
 * within one ulp (on x86-64 glibc 2.36 it is every bit the same: expf.h), and each ISA's exp_sub
 * the same bits as qm_expf. Returns the count where libm's bits differ. */
static uint64_t check_expf(const qm_kernels *ks, int nk, uint64_t step) {
    enum { B = 4096 };
    float x[B], want[B], got[B];
    uint64_t differ = 0;
    for (uint64_t u0 = 0; u0 < (1ull << 32); u0 += (uint64_t)B * step) {
        int n = 0;
        for (uint64_t u = u0; u < (1ull << 32) && n < B; u += step) x[n++] = bits_f32((uint32_t)u);
        for (int i = 0; i < n; i++) {
            want[i] = qm_expf(x[i]);
            const float lib = expf(x[i]);
            if (memcmp(&lib, &want[i], 4)) {
                differ++;
                if (!(isnan(lib) && isnan(want[i])) && !(isfinite(lib) && ulps_apart(lib, want[i]) <= 1))
                    fail_msg("qm_expf(%a) = %a, expf %a", (double)x[i], (double)want[i], (double)lib);
            }
        }
        for (int k = 0; k < nk; k++) {
            memcpy(got, x, (size_t)n * sizeof(float));
            ks[k].exp_sub(got, n, 0.0f);
            for (int i = 0; i < n; i++)
                if (memcmp(&got[i], &want[i], 4))
                    fail_msg("%s exp_sub(%a) = %a, qm_expf %a", ks[k].isa, (double)x[i], (double)got[i],
                             (double)want[i]);
        }
    }
    return differ;
}

/* Every 257th float pattern; QM_TEST_EXPF_ALL=1 takes all 2^32 (a minute or two). */
static void test_expf(void **state) {
    (void)state;
    qm_kernels ks[8];
    int nk = supported(ks, 8);
    const char *all = getenv("QM_TEST_EXPF_ALL");
    const uint64_t step = all && strcmp(all, "1") == 0 ? 1 : 257;
    const uint64_t differ = check_expf(ks, nk, step);
    print_message("qm_expf: every %llu-th float, %llu results not the C library's bits (all within 1 ulp)\n",
                  (unsigned long long)step, (unsigned long long)differ);
    /* exp_sub's subtraction and tails, softmax's shape: s - max <= 0 */
    rng_t r = {5};
    float s[300], a[300], m = 3.25f;
    for (int i = 0; i < 300; i++) s[i] = m - (float)(rng_u64(&r) % 100000) / 997.0f;
    s[7] = -INFINITY;
    for (int k = 0; k < nk; k++)
        for (int n = 0; n <= 300; n += n < 40 ? 1 : 37) {
            memcpy(a, s, sizeof s);
            ks[k].exp_sub(a, n, m);
            for (int i = 0; i < n; i++)
                if (memcmp(&a[i], &(float){qm_expf(s[i] - m)}, 4)) fail_msg("%s exp_sub n %d [%d]", ks[k].isa, n, i);
        }
}

static void test_rope(void **state) {
    (void)state;
    const int positions[] = {0, 1, 2, 17, 300, 4095, 32767};
    const int dims[] = {2, 64, 128};
    rng_t r = {21};
    for (int di = 0; di < COUNT(dims); di++)
        for (int pi = 0; pi < COUNT(positions); pi++) {
            int hd = dims[di], h = hd / 2, pos = positions[pi];
            double theta = 1000000.0;
            float c[64], s[64], x[128], x0[128];
            qm_rope_table(pos, hd, theta, c, s);
            for (int i = 0; i < h; i++) {
                double inv = 1.0 / pow(theta, (double)(2 * i) / hd);
                double ang = (double)pos * inv;
                /* angle rounded to f32 first: error up to half an ulp of the angle */
                double tol = ang * ldexp(1.0, -23) + 1e-7;
                assert_true(fabs(c[i] - cos(ang)) <= tol);
                assert_true(fabs(s[i] - sin(ang)) <= tol);
                assert_true(c[i] * c[i] + s[i] * s[i] > 0.9999f);
                if (pos == 0) {
                    assert_true(c[i] == 1.0f && s[i] == 0.0f);
                }
            }
            fill_f32(&r, x, (size_t)hd);
            memcpy(x0, x, sizeof x);
            qm_rope_apply(x, hd, c, s);
            for (int i = 0; i < h; i++) {
                double a = x0[i], b = x0[i + h];
                double w0 = a * c[i] - b * s[i], w1 = b * c[i] + a * s[i];
                double tol = 2e-7 * (fabs(a) + fabs(b)) + 1e-37;
                assert_true(fabs(x[i] - w0) <= tol);
                assert_true(fabs(x[i + h] - w1) <= tol);
            }
        }
}

static void test_select(void **state) {
    (void)state;
    qm_kernels k;
    qm_error err = {0};
    const char *names[8];
    int n = qm_kernels_supported(names, 8);
    assert_int_equal(qm_kernels_select(NULL, &k, &err), QM_OK);
    assert_string_equal(k.isa, names[0]); /* auto = the best */
    assert_int_equal(qm_kernels_select("auto", &k, &err), QM_OK);
    assert_string_equal(k.isa, names[0]);
    assert_int_equal(qm_kernels_select("scalar", &k, &err), QM_OK);
    const char *isas[] = {"avx512vnni", "avx512", "avx2"};
    for (int i = 0; i < 3; i++) {
        int have = 0;
        for (int j = 0; j < n; j++) have |= strcmp(names[j], isas[i]) == 0;
        qm_status st = qm_kernels_select(isas[i], &k, &err);
        if (have) {
            assert_int_equal(st, QM_OK);
            assert_string_equal(k.isa, isas[i]);
        } else {
            assert_int_equal(st, QM_ERR_UNSUPPORTED);
            assert_non_null(strstr(err.msg, isas[i]));
        }
    }
    err.msg[0] = 0;
    assert_int_equal(qm_kernels_select("sse9", &k, &err), QM_ERR_ARG);
    assert_non_null(strstr(err.msg, "sse9"));
    assert_int_equal(qm_kernels_select("", &k, &err), QM_ERR_ARG);
    assert_int_equal(qm_kernels_select("scalar", NULL, &err), QM_ERR_ARG);
    assert_int_equal(qm_kernels_supported(names, 1), 1);
}

/* ---- micro-benchmark: report only ---- */

/* Thread CPU time, so that other processes on a shared machine disturb the figure less. */
static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Best of 5 runs of at least 50 ms each (one call at least): seconds per call. */
static double time_matmul(const qm_kernels *k, const qm_wview *w, const float *x, int n_tok, float *y) {
    k->matmul(w, NULL, x, (size_t)w->cols, n_tok, y, (size_t)w->rows, 0, w->rows); /* warm up */
    double best = 1e30;
    for (int rep = 0; rep < 5; rep++) {
        int iters = 0;
        double t0 = now_s(), t;
        do {
            k->matmul(w, NULL, x, (size_t)w->cols, n_tok, y, (size_t)w->rows, 0, w->rows);
            iters++;
            t = now_s() - t0;
        } while (t < 0.05);
        if (t / iters < best) best = t / iters;
    }
    return best;
}

static void test_bench(void **state) {
    (void)state;
    qm_kernels ks[8];
    int nk = supported(ks, 8);
    rng_t r = {1};
    const int rows = 4864, cols = 896;
    wmat w = make_w(&r, QM_DT_BF16, rows, cols, 0, cols);
    float *x = malloc((size_t)32 * cols * sizeof(float));
    float *y = malloc((size_t)32 * rows * sizeof(float));
    fill_f32(&r, x, (size_t)32 * cols);
    double bytes = (double)rows * cols * 2, flops1 = 2.0 * rows * cols;
    for (int k = 0; k < nk; k++) {
        double t1 = time_matmul(&ks[k], &w.v, x, 1, y);
        double t32 = time_matmul(&ks[k], &w.v, x, 32, y);
        print_message("bench %-6s bf16 %dx%d, one thread, best CPU time: n_tok=1 %7.2f GB/s (%.3f ms), "
                      "n_tok=32 %7.2f GFLOP/s (%.3f ms)\n",
                      ks[k].isa, rows, cols, bytes / t1 * 1e-9, t1 * 1e3, 32 * flops1 / t32 * 1e-9, t32 * 1e3);
    }
    free(x);
    free(y);
    free(w.buf);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_select),
        cmocka_unit_test(test_dot_axpy),
        cmocka_unit_test(test_attn_values),
        cmocka_unit_test(test_matmul_vs_scalar),
        cmocka_unit_test(test_matmul_invariance),
        cmocka_unit_test(test_matmul_quant),
        cmocka_unit_test(test_scalar_vs_double),
        cmocka_unit_test(test_rmsnorm),
        cmocka_unit_test(test_silu_mul),
        cmocka_unit_test(test_expf),
        cmocka_unit_test(test_rope),
        cmocka_unit_test(test_bench),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
