/* The fast mode (kernels/qdot.h): the scalar twin against an independent reference written
 * from the spec (codes unpacked per element from the layouts of quant.h, no dequantization);
 * every ISA this CPU has against the scalar twin, bit for bit; batch invariance; the activation
 * quantizer on edge values; accuracy against the f32 dot over the dequantized weights; and a
 * micro-benchmark that prints (never asserts) ns per weight element. */
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

#include "kernels/qdot.h"
#include "kernels/rows8.h"
#include "kernels/quant.h"

#define COUNT(a) ((int)(sizeof(a) / sizeof((a)[0])))

/* ---- random inputs ---- */

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

static const qm_dtype quant_dts[] = {QM_DT_Q8_0, QM_DT_Q4_0, QM_DT_Q4_1, QM_DT_Q5_0,
                                     QM_DT_Q5_1, QM_DT_Q4_K, QM_DT_Q5_K, QM_DT_Q6_K};

/* A finite f16 of moderate size (exponent 5..20) with a random sign. */
static uint16_t rand_scale_f16(rng_t *r) {
    uint64_t u = rng_u64(r);
    return (uint16_t)(((u >> 20) & 1u) << 15 | (uint16_t)(5 + u % 16) << 10 | ((u >> 32) & 0x3ffu));
}

/* rows x nblocks random blocks; every f16 field is a finite random scale. */
static uint8_t *make_qrows(rng_t *r, qm_dtype dt, int rows, int nblocks) {
    size_t bb = qm_dtype_block_bytes(dt), n = (size_t)rows * (size_t)nblocks;
    uint8_t *p = malloc(n * bb);
    assert_non_null(p);
    for (size_t i = 0; i < n * bb; i++) p[i] = (uint8_t)rng_u64(r);
    for (size_t b = 0; b < n; b++) {
        uint8_t *blk = p + b * bb;
        uint16_t s0 = rand_scale_f16(r), s1 = rand_scale_f16(r);
        size_t at0 = dt == QM_DT_Q6_K ? 208 : 0;
        memcpy(blk + at0, &s0, 2);
        if (dt == QM_DT_Q4_1 || dt == QM_DT_Q5_1 || dt == QM_DT_Q4_K || dt == QM_DT_Q5_K) memcpy(blk + 2, &s1, 2);
    }
    return p;
}

/* ---- the ISAs ---- */

/* matmul_q8_blocks (kernels.h) of one ISA. */
typedef void (*q8_blocks_fn)(const qm_wview *w, const qm_q8act *x, int n_tok, int bc, int nb, float *part,
                             size_t pstride, size_t ldy, int o_begin, int o_end);

typedef struct {
    const char *isa;
    qm_quantize_act_fn quantize;
    qm_matmul_q8_fn matmul;
    q8_blocks_fn blocks;
} isa_fns;

/* The scalar twin's row-parallel blocks: one matmul call per block view (kernels/blocks.c). */
static void blocks_scalar(const qm_wview *w, const qm_q8act *x, int n_tok, int bc, int nb, float *part,
                          size_t pstride, size_t ldy, int o_begin, int o_end) {
    qm_q8_blocks_by_views(qm_matmul_q8_scalar, w, x, n_tok, bc, nb, part, pstride, ldy, o_begin, o_end);
}

static int isas(isa_fns *out) {
    int n = 0;
    out[n++] = (isa_fns){"scalar", qm_quantize_act_scalar, qm_matmul_q8_scalar, blocks_scalar};
#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c"))
        out[n++] = (isa_fns){"avx2", qm_quantize_act_avx2, qm_matmul_q8_avx2, qm_matmul_q8_blocks_avx2};
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx2") &&
        __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c"))
        out[n++] = (isa_fns){"avx512", qm_quantize_act_avx512, qm_matmul_q8_avx512, qm_matmul_q8_blocks_avx512};
    if (n == 3 && __builtin_cpu_supports("avx512vnni"))
        out[n++] = (isa_fns){"avx512vnni", qm_quantize_act_avx512, qm_matmul_q8_avx512vnni,
                             qm_matmul_q8_blocks_avx512vnni};
#endif
    return n;
}

/* ---- the reference, from the spec and the layouts in quant.h ---- */

static float f16(const uint8_t *p) { return qm_f16_to_f32((uint16_t)(p[0] | p[1] << 8)); }

/* Weight code of element l of 32-block `sb` of a row (K-quants: sub-block sb % 8 of superblock
 * sb / 8), as the spec's formula uses it: Q8_0 signed; Q4_0/Q5_0/Q6_K already centred
 * (-8, -16, -32); Q4_1/Q5_1/Q4_K/Q5_K unsigned. */
static int ref_code(qm_dtype dt, const uint8_t *row, int sb, int l) {
    const size_t bb = qm_dtype_block_bytes(dt);
    if (qm_dtype_block(dt) == 32) {
        const uint8_t *b = row + (size_t)sb * bb;
        if (dt == QM_DT_Q8_0) return (int)(int8_t)b[2 + l];
        const int hm = dt == QM_DT_Q4_1 || dt == QM_DT_Q5_1, hh = dt == QM_DT_Q5_0 || dt == QM_DT_Q5_1;
        const uint8_t *qs = b + 2 + 2 * hm + 4 * hh;
        int v = l < 16 ? qs[l] % 16 : qs[l - 16] / 16;
        if (hh) v += 16 * ((b[2 + 2 * hm + l / 8] >> (l % 8)) & 1);
        return dt == QM_DT_Q4_0 ? v - 8 : dt == QM_DT_Q5_0 ? v - 16 : v;
    }
    const uint8_t *b = row + (size_t)(sb / 8) * bb;
    const int j = sb % 8;
    if (dt == QM_DT_Q6_K) {
        const int e = 32 * j + l, h = e / 128, k = (e % 128) / 32;
        const int lo = (b[64 * h + 32 * (k % 2) + l] >> (4 * (k / 2))) % 16;
        const int hi = (b[128 + 32 * h + l] >> (2 * k)) % 4;
        return lo + 16 * hi - 32;
    }
    const int q5 = dt == QM_DT_Q5_K;
    int v = (b[16 + 32 * q5 + 32 * (j / 2) + l] >> (4 * (j % 2))) % 16;
    if (q5) v += 16 * ((b[16 + l] >> j) & 1);
    return v;
}

/* 6-bit scale (want_min 0) or min (1) of sub-block j, from the 12 scale bytes s. */
static int ref_k_scale(const uint8_t *s, int j, int want_min) {
    if (j < 4) return s[j + 4 * want_min] % 64;
    return want_min ? s[j + 4] / 16 + 16 * (s[j] / 64) : s[j + 4] % 16 + 16 * (s[j - 4] / 64);
}

/* c_b of 32-block sb against activations q (32), dx, s. */
static float ref_c(qm_dtype dt, const uint8_t *row, int sb, const int8_t *q, float dx, int32_t s) {
    const size_t bb = qm_dtype_block_bytes(dt);
    long long sum = 0, g[2] = {0, 0};
    for (int l = 0; l < 32; l++) {
        const long long p = (long long)ref_code(dt, row, sb, l) * q[l];
        sum += p;
        g[l / 16] += p;
    }
    if (qm_dtype_block(dt) == 32) {
        const uint8_t *b = row + (size_t)sb * bb;
        const float dw = f16(b);
        if (dt == QM_DT_Q4_1 || dt == QM_DT_Q5_1) return (dw * dx) * (float)sum + (f16(b + 2) * dx) * (float)s;
        return (dw * dx) * (float)sum;
    }
    const uint8_t *b = row + (size_t)(sb / 8) * bb;
    const int j = sb % 8;
    if (dt == QM_DT_Q6_K) {
        const int8_t *sc = (const int8_t *)(b + 192);
        return (f16(b + 208) * dx) * (float)(sc[2 * j] * g[0] + sc[2 * j + 1] * g[1]);
    }
    const long long scj = ref_k_scale(b + 4, j, 0), mj = ref_k_scale(b + 4, j, 1);
    return (f16(b) * dx) * (float)(scj * sum) - (f16(b + 2) * dx) * (float)(mj * s);
}

static void ref_matmul(const qm_wview *w, const float *bias, const qm_q8act *x, int n_tok, float *y, size_t ldy) {
    const size_t stride = qm_dtype_row_bytes(w->dtype, w->ld);
    for (int o = 0; o < w->rows; o++)
        for (int t = 0; t < n_tok; t++) {
            float acc[16] = {0};
            const size_t xb = (size_t)t * x->ld_blocks;
            for (int b = 0; b < w->cols / 32; b++)
                acc[b % 16] += ref_c(w->dtype, (const uint8_t *)w->data + (size_t)o * stride, w->col0 / 32 + b,
                                     x->q + (xb + (size_t)b) * 32, x->d[xb + (size_t)b], x->s[xb + (size_t)b]);
            for (int wd = 8; wd >= 1; wd /= 2)
                for (int l = 0; l < wd; l++) acc[l] = acc[l] + acc[l + wd];
            y[(size_t)t * ldy + (size_t)o] = bias ? acc[0] + bias[o] : acc[0];
        }
}

/* ---- one random case ---- */

typedef struct {
    qm_dtype dt;
    int rows, ld, n_tok;
    uint8_t *wq;      /* rows x ld elements, the full rows */
    qm_wview v;       /* a column slice of them */
    float *xf, *bias; /* [n_tok][ldb * 32] f32 activations; bias[rows] or NULL */
    int8_t *q;
    float *d;
    int32_t *s;
    qm_q8act x;
} qcase;

/* nb32: the slice's number of 32-blocks (clamped to the row); the slice starts at a multiple of
 * align columns (32, or 256 for whole K-quant superblocks). */
static void make_case(rng_t *r, qm_dtype dt, int rows, int n_tok, int nb32, int align, qcase *c) {
    const int qk = qm_dtype_block(dt);
    const int nrow_blocks = qk == 32 ? nb32 + rng_int(r, 0, 3) : (nb32 + 7) / 8 + rng_int(r, 0, 1);
    c->dt = dt;
    c->rows = rows;
    c->n_tok = n_tok;
    c->ld = nrow_blocks * qk;
    c->wq = make_qrows(r, dt, rows, nrow_blocks);
    const int total32 = c->ld / 32;
    if (nb32 > total32) nb32 = total32;
    const int c0 = align * rng_int(r, 0, (32 * (total32 - nb32)) / align);
    const qm_wview full = {c->wq, dt, (size_t)c->ld, rows, c->ld, 0};
    c->v = qm_wview_cols(&full, c0, c0 + 32 * nb32);
    const int ldb = nb32 + (rng_int(r, 0, 1) ? 0 : rng_int(r, 1, 3));
    const size_t nx = (size_t)n_tok * (size_t)ldb * 32;
    c->xf = malloc(nx * sizeof(float));
    c->q = malloc(nx);
    c->d = malloc((size_t)n_tok * (size_t)ldb * sizeof(float));
    c->s = malloc((size_t)n_tok * (size_t)ldb * sizeof(int32_t));
    for (size_t i = 0; i < nx; i++) c->xf[i] = rand_f32(r);
    for (size_t b = 0; b < nx / 32; b++) { /* some all-zero blocks (d = 0) and some large ones */
        const int kind = rng_int(r, 0, 15);
        for (int i = 0; i < 32 && kind < 2; i++) c->xf[32 * b + (size_t)i] *= kind == 0 ? 0.0f : 1048576.0f;
    }
    qm_quantize_act_scalar(c->xf, (int)nx, c->q, c->d, c->s);
    c->x = (qm_q8act){c->q, c->d, c->s, (size_t)ldb};
    c->bias = NULL;
    if (rng_int(r, 0, 1)) {
        c->bias = malloc((size_t)rows * sizeof(float));
        for (int o = 0; o < rows; o++) c->bias[o] = rand_f32(r);
    }
}

static void free_case(qcase *c) {
    free(c->wq);
    free(c->xf);
    free(c->q);
    free(c->d);
    free(c->s);
    free(c->bias);
}

static float *make_y(size_t n) { /* poisoned with NaN so an unwritten output shows */
    float *y = malloc(n * sizeof(float));
    assert_non_null(y);
    for (size_t i = 0; i < n; i++) y[i] = NAN;
    return y;
}

static void report(const char *what, const char *isa, const qcase *c, const float *got, const float *want) {
    size_t n = (size_t)c->n_tok * (size_t)c->rows;
    for (size_t i = 0; i < n; i++)
        if (memcmp(&got[i], &want[i], 4) != 0) {
            print_error("%s %s %s rows %d cols %d col0 %d n_tok %d: y[%zu] = %.9g, want %.9g\n", what, isa,
                        qm_dtype_name(c->dt), c->rows, c->v.cols, c->v.col0, c->n_tok, i, (double)got[i],
                        (double)want[i]);
            return;
        }
}

static void check_case(const qcase *c, const isa_fns *fs, int nf) {
    const size_t ny = (size_t)c->n_tok * (size_t)c->rows;
    float *ref = make_y(ny), *got = make_y(ny), *one = make_y((size_t)c->rows);
    ref_matmul(&c->v, c->bias, &c->x, c->n_tok, ref, (size_t)c->rows);
    for (int k = 0; k < nf; k++) {
        /* (1) scalar == the reference; (2) every ISA == scalar (== the reference) */
        fs[k].matmul(&c->v, c->bias, &c->x, c->n_tok, got, (size_t)c->rows, 0, c->rows);
        if (memcmp(ref, got, ny * sizeof(float)) != 0) {
            report("matmul_q8", fs[k].isa, c, got, ref);
            fail();
        }
        /* (3) one token and one row at a time: the same bits */
        for (int t = 0; t < c->n_tok; t++)
            for (int o = 0; o < c->rows; o++) {
                qm_q8act xt = c->x;
                const size_t xb = (size_t)t * c->x.ld_blocks;
                xt.q += xb * 32;
                xt.d += xb;
                xt.s += xb;
                fs[k].matmul(&c->v, c->bias, &xt, 1, one, 0, o, o + 1);
                if (memcmp(&one[o], &ref[(size_t)t * (size_t)c->rows + (size_t)o], 4) != 0) {
                    print_error("%s %s: token %d row %d alone differs\n", fs[k].isa, qm_dtype_name(c->dt), t, o);
                    fail();
                }
            }
    }
    free(ref);
    free(got);
    free(one);
}

/* Slice lengths in 32-blocks: 1, partial groups of 16 (7, 23, 37), whole groups, random. */
static void test_matmul_q8(void **state) {
    (void)state;
    isa_fns fs[8];
    const int nf = isas(fs);
    rng_t r = {11};
    static const int lens[] = {1, 2, 7, 16, 23, 32, 37, 48};
    for (int d = 0; d < COUNT(quant_dts); d++)
        for (int trial = 0; trial < 14; trial++) {
            const int nb32 = trial < COUNT(lens) ? lens[trial] : rng_int(&r, 1, 60);
            const int rows = rng_int(&r, 1, 11), n_tok = trial == 13 ? 40 : rng_int(&r, 1, 9);
            qcase c;
            make_case(&r, quant_dts[d], rows, n_tok, nb32, 32, &c);
            check_case(&c, fs, nf);
            free_case(&c);
        }
}

/* The largest and smallest codes (every code byte 0xFF or 0x00, the K-quants' 6-bit scales and mins
 * with them) against activations all +127 or all -127, on enough tokens for the prefill tiles: the
 * bounds the SIMD kernels rely on for their int16 sums (Q6_K's wrap around before Σ 32 q comes off). */
static void test_matmul_q8_extremes(void **state) {
    (void)state;
    isa_fns fs[8];
    const int nf = isas(fs);
    rng_t r = {17};
    for (int d = 0; d < COUNT(quant_dts); d++)
        for (int kind = 0; kind < 8; kind++) { /* kinds 4-7: one token, 16 rows of whole superblocks */
            qcase c;
            make_case(&r, quant_dts[d], kind < 4 ? 8 : 16, kind < 4 ? 20 : 1, 32, kind < 4 ? 32 : 256, &c);
            const size_t bb = qm_dtype_block_bytes(c.dt), nblk = (size_t)c.rows * (size_t)c.ld / (size_t)qm_dtype_block(c.dt);
            const size_t f16_at = c.dt == QM_DT_Q6_K ? 208 : 0;
            const size_t f16_len = c.dt == QM_DT_Q4_1 || c.dt == QM_DT_Q5_1 || c.dt == QM_DT_Q4_K || c.dt == QM_DT_Q5_K ? 4 : 2;
            for (size_t b = 0; b < nblk; b++)
                for (size_t i = 0; i < bb; i++)
                    if (i < f16_at || i >= f16_at + f16_len) c.wq[b * bb + i] = kind & 1 ? 0xFF : 0x00;
            const size_t nxb = (size_t)c.n_tok * c.x.ld_blocks;
            for (size_t b = 0; b < nxb; b++) {
                memset(c.q + 32 * b, kind & 2 ? -127 : 127, 32);
                c.s[b] = kind & 2 ? -32 * 127 : 32 * 127;
                if (c.d[b] == 0.0f) c.d[b] = 1.0f;
            }
            check_case(&c, fs, nf);
            free_case(&c);
        }
}

/* Outputs outside [o_begin, o_end) are not written; uneven row splits give the same bits. */
static void test_matmul_q8_splits(void **state) {
    (void)state;
    isa_fns fs[8];
    const int nf = isas(fs);
    rng_t r = {12};
    for (int d = 0; d < COUNT(quant_dts); d++) {
        qcase c;
        make_case(&r, quant_dts[d], 13, 5, 40, 32, &c);
        const size_t ny = (size_t)c.n_tok * 13;
        float *all = make_y(ny), *part = make_y(ny);
        for (int k = 0; k < nf; k++) {
            fs[k].matmul(&c.v, c.bias, &c.x, c.n_tok, all, 13, 0, 13);
            const int a = rng_int(&r, 0, 13), b = rng_int(&r, a, 13);
            for (size_t i = 0; i < ny; i++) part[i] = NAN;
            fs[k].matmul(&c.v, c.bias, &c.x, c.n_tok, part, 13, a, b);
            for (int t = 0; t < c.n_tok; t++)
                for (int o = 0; o < 13; o++) {
                    const float *p = &part[(size_t)t * 13 + (size_t)o];
                    if (o >= a && o < b) assert_memory_equal(p, &all[(size_t)t * 13 + (size_t)o], 4);
                    else assert_true(isnan(*p));
                }
        }
        free(all);
        free(part);
        free_case(&c);
    }
}

/* One token over views of whole K-quant superblocks (col0 a multiple of 256 columns, lengths a
 * multiple of 256), 8 to 41 rows, any row range: the decode's tiles of 8 rows side by side (Q4_K
 * and Q5_0 on AVX2) and their tails, column-parallel (matmul_q8, check_case) and row-parallel (blocks of
 * 64 columns, matmul_q8_blocks against the scalar twin's per-block calls), bit for bit. Then the
 * row-parallel views a mesh's shards make: starting and ending inside a superblock, on a 64-column
 * chunk (a 1x2 mesh's down_proj, 17.5 superblocks a device) with blocks of 64, or on a 128-column
 * one with blocks of 128 (o_proj's heads). */
static void test_matmul_q8_rows8(void **state) {
    (void)state;
    isa_fns fs[8];
    const int nf = isas(fs);
    rng_t r = {19};
    static const int rows_of[] = {8, 9, 16, 19, 27, 41};
    for (int d = 0; d < COUNT(quant_dts); d++)
        for (int trial = 0; trial < 3 * COUNT(rows_of); trial++) {
            const int kind = trial / COUNT(rows_of), rows = rows_of[trial % COUNT(rows_of)];
            const int align = kind == 0 ? 256 : kind == 1 ? 64 : 128, bc = kind == 2 ? 128 : 64;
            const int nb32 = kind == 0 ? 8 * rng_int(&r, 1, 6) : bc / 32 * rng_int(&r, 1, 24);
            qcase c;
            make_case(&r, quant_dts[d], rows, 1, nb32, align, &c);
            check_case(&c, fs, nf);
            const int nb = (c.v.cols + bc - 1) / bc;
            const int o_b = trial % 2 ? rng_int(&r, 0, 5) : 0, o_e = trial % 3 ? rows - rng_int(&r, 0, 2) : rows;
            const size_t ny = (size_t)nb * (size_t)rows;
            float *want = make_y(ny), *got = make_y(ny); /* both NaN-poisoned alike: unwritten leaves compare equal */
            fs[0].blocks(&c.v, &c.x, 1, bc, nb, want, (size_t)rows, (size_t)rows, o_b, o_e);
            for (int k = 1; k < nf; k++) {
                fs[k].blocks(&c.v, &c.x, 1, bc, nb, got, (size_t)rows, (size_t)rows, o_b, o_e);
                if (memcmp(want, got, ny * sizeof(float)) != 0) {
                    print_error("blocks %s %s rows [%d, %d) of %d cols %d col0 %d differ\n", fs[k].isa,
                                qm_dtype_name(c.dt), o_b, o_e, rows, c.v.cols, c.v.col0);
                    fail();
                }
            }
            free(want);
            free(got);
            free_case(&c);
        }
}

/* ---- Q4_0 / Q5_0 / Q4_K rows interleaved by 8 (kernels/rows8.h) ---- */

/* The view's rows interleaved (its blocks only; rows % 8 == 0) into a new allocation. */
static qm_wview interleave(const qm_wview *v) {
    const int nblk = v->cols / 32;
    const size_t row = qm_dtype_row_bytes(v->dtype, (size_t)v->cols);
    uint8_t *dst = malloc((size_t)v->rows * row);
    assert_non_null(dst);
    for (int o = 0; o < v->rows; o += QM_ROWS8)
        qm_rows8_pack(v->dtype, (const uint8_t *)v->data + (size_t)o * qm_wview_stride(v), qm_wview_stride(v), nblk,
                      dst + (size_t)o * row);
    return (qm_wview){dst, qm_dtype_rows8_of(v->dtype), (size_t)v->cols, v->rows, v->cols, 0};
}

/* Every ISA's matmul_q8 on the interleaved rows against the scalar twin on the file's layout, bit
 * for bit: one token (decode) and several (tokens), the whole range and ranges that cut groups
 * (outside them nothing written); the largest codes against +-127 (the int16 sums' bound); the
 * layout unpacks to the file's bytes. */
static void test_matmul_q8_interleaved(void **state) {
    (void)state;
    isa_fns fs[8];
    const int nf = isas(fs);
    rng_t r = {23};
    static const int rows_of[] = {8, 16, 40, 64}, nblk_of[] = {9, 16, 28, 33, 47}, tok_of[] = {1, 2, 5, 16, 17, 40};
    static const qm_dtype dts[] = {QM_DT_Q4_0, QM_DT_Q5_0, QM_DT_Q4_K};
    for (int i = 0; i < 1000; i++) {
        const uint32_t u = (uint32_t)rng_u64(&r);
        assert_int_equal(qm_rows8_qh_of_hb(qm_rows8_hb_of_qh(u)), u);
        for (int p = 0; p < 8; p++) /* hb bit 8 j + p is qh bit 4 p + j */
            for (int j = 0; j < 4; j++)
                assert_int_equal((qm_rows8_hb_of_qh(u) >> (8 * j + p)) & 1u, (u >> (4 * p + j)) & 1u);
    }
    for (int d = 0; d < COUNT(dts); d++)
        for (int trial = 0; trial < 30; trial++) {
            const int k4 = dts[d] == QM_DT_Q4_K, rows = rows_of[trial % COUNT(rows_of)];
            const int nblk = k4 ? 8 * (1 + trial % 6) : nblk_of[trial % COUNT(nblk_of)]; /* 32-blocks */
            const int n_tok = tok_of[trial % COUNT(tok_of)], extreme = trial >= 24;
            qcase c;
            make_case(&r, dts[d], rows, n_tok, nblk, k4 ? 256 : 32, &c);
            if (extreme && k4) { /* scales and mins 63, codes 15 or 0 */
                const size_t n = (size_t)rows * (size_t)c.ld / 256;
                for (size_t b = 0; b < n; b++) {
                    memset(c.wq + b * 144 + 4, 0xFF, 12);
                    memset(c.wq + b * 144 + 16, trial & 1 ? 0xFF : 0x00, 128);
                }
            }
            if (extreme) {
                const size_t bb = qm_dtype_block_bytes(c.dt), n = (size_t)rows * (size_t)c.ld / 32;
                for (size_t b = 0; b < n && !k4; b++) memset(c.wq + b * bb + 2, trial & 1 ? 0xFF : 0x00, bb - 2);
                for (size_t b = 0; b < (size_t)n_tok * c.x.ld_blocks; b++) {
                    memset(c.q + 32 * b, trial & 2 ? -127 : 127, 32);
                    c.s[b] = trial & 2 ? -32 * 127 : 32 * 127;
                }
            }
            const qm_wview iv = interleave(&c.v);
            uint8_t *back = malloc((size_t)rows * qm_wview_stride(&iv));
            assert_non_null(back);
            for (int o = 0; o < rows; o += QM_ROWS8)
                qm_rows8_unpack(iv.dtype, (const uint8_t *)iv.data + (size_t)o * qm_wview_stride(&iv), nblk, 0,
                                QM_ROWS8, back + (size_t)o * qm_wview_stride(&iv), qm_wview_stride(&iv));
            for (int o = 0; o < rows; o++)
                assert_memory_equal(back + (size_t)o * qm_wview_stride(&iv),
                                    (const uint8_t *)c.v.data + (size_t)o * qm_wview_stride(&c.v), qm_wview_stride(&iv));
            const size_t ny = (size_t)n_tok * (size_t)rows;
            float *want = make_y(ny), *got = make_y(ny);
            qm_matmul_q8_scalar(&c.v, c.bias, &c.x, n_tok, want, (size_t)rows, 0, rows);
            for (int k = 1; k < nf; k++) /* every ISA but the scalar one takes the layout */
                for (int split = 0; split < 3; split++) {
                    const int a = split == 0 ? 0 : rng_int(&r, 0, rows - 1);
                    const int b = split == 0 ? rows : split == 1 ? rng_int(&r, a + 1, rows) : a + rng_int(&r, 1, 3);
                    for (size_t i = 0; i < ny; i++) got[i] = NAN;
                    fs[k].matmul(&iv, c.bias, &c.x, n_tok, got, (size_t)rows, a, b < rows ? b : rows);
                    for (int t = 0; t < n_tok; t++)
                        for (int o = 0; o < rows; o++) {
                            const size_t at = (size_t)t * (size_t)rows + (size_t)o;
                            if (o < a || o >= b) assert_true(isnan(got[at]));
                            else if (memcmp(&got[at], &want[at], 4) != 0) {
                                print_error("interleaved %s %s rows %d [%d, %d) nblk %d n_tok %d: token %d row %d = "
                                            "%.9g, want %.9g\n", fs[k].isa, qm_dtype_name(c.dt), rows, a, b, nblk,
                                            n_tok, t, o, (double)got[at], (double)want[at]);
                                fail();
                            }
                        }
                }
            free(want);
            free(got);
            free(back);
            free((void *)iv.data);
            free_case(&c);
        }
}

/* Row-parallel views interleaved (kernels.h q8_rows8_rowpar_types: Q4_K with AVX2): the held
 * superblocks of 8 to 40 rows, views from a multiple of 64 columns (inside a superblock or not),
 * blocks of 64 and 128 columns, 1 to 16 tokens (the group kernel) and 17 (unpacked), whole ranges
 * and ranges that cut groups: matmul_q8_blocks against the scalar twin's on the file's layout,
 * matmul_q8_nodes (the root node) against the same ISA's on the file's layout, bit for bit. */
static void test_rowpar_interleaved(void **state) {
    (void)state;
#if defined(__x86_64__) || defined(__i386__)
    if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma") || !__builtin_cpu_supports("f16c")) return;
    rng_t r = {29};
    static const int rows_of[] = {8, 16, 24, 40}, tok_of[] = {1, 1, 3, 16, 17};
    for (int trial = 0; trial < 60; trial++) {
        const int rows = rows_of[trial % COUNT(rows_of)], n_tok = tok_of[trial % COUNT(tok_of)];
        const int bc = trial % 2 ? 128 : 64, nb32 = 2 * rng_int(&r, 1, 20);
        qcase c;
        make_case(&r, QM_DT_Q4_K, rows, n_tok, nb32, 64, &c);
        const qm_wview whole = {c.wq, QM_DT_Q4_K, (size_t)c.ld, rows, c.ld, 0};
        qm_wview iv = interleave(&whole);
        iv.cols = c.v.cols;
        iv.col0 = (int)(((const uint8_t *)c.v.data - c.wq) / 144 * 256) + c.v.col0; /* from the row's start */
        const int nb = (c.v.cols + bc - 1) / bc;
        const size_t ny = (size_t)nb * (size_t)n_tok * (size_t)rows, pstride = (size_t)n_tok * (size_t)rows;
        float *want = make_y(ny), *got = make_y(ny);
        for (int split = 0; split < 3; split++) {
            const int a = split == 0 ? 0 : rng_int(&r, 0, rows - 1);
            const int b = split == 0 ? rows : split == 1 ? rng_int(&r, a + 1, rows) : a + rng_int(&r, 1, 3);
            const int e = b < rows ? b : rows;
            for (size_t i = 0; i < ny; i++) want[i] = got[i] = NAN;
            blocks_scalar(&c.v, &c.x, n_tok, bc, nb, want, pstride, (size_t)rows, a, e);
            qm_matmul_q8_blocks_avx2(&iv, &c.x, n_tok, bc, nb, got, pstride, (size_t)rows, a, e);
            if (memcmp(want, got, ny * sizeof(float)) != 0) {
                size_t at = 0;
                while (at < ny && !memcmp(&want[at], &got[at], 4)) at++;
                print_error("rowpar interleaved blocks rows [%d, %d) of %d, cols %d from %d of %d, bc %d, %d tokens: "
                            "[%zu] %.9g, want %.9g\n", a, e, rows, c.v.cols, c.v.col0, c.ld, bc, n_tok, at,
                            (double)got[at], (double)want[at]);
                fail();
            }
            if (nb >= 2) { /* a sub-view from block 1 (the forward's groups of blocks: qm_wview_cols) */
                const qm_wview fsub = qm_wview_cols(&c.v, bc, c.v.cols), isub = qm_wview_cols(&iv, bc, iv.cols);
                const qm_q8act xs = {c.x.q + bc, c.x.d + bc / 32, c.x.s + bc / 32, c.x.ld_blocks};
                for (size_t i = 0; i < ny; i++) want[i] = got[i] = NAN;
                blocks_scalar(&fsub, &xs, n_tok, bc, nb - 1, want, pstride, (size_t)rows, a, e);
                qm_matmul_q8_blocks_avx2(&isub, &xs, n_tok, bc, nb - 1, got, pstride, (size_t)rows, a, e);
                if (memcmp(want, got, ny * sizeof(float)) != 0) {
                    print_error("rowpar interleaved blocks from block 1, rows [%d, %d), bc %d\n", a, e, bc);
                    fail();
                }
            }
            const qm_leaf_node root = {0, nb};
            for (size_t i = 0; i < ny; i++) want[i] = got[i] = NAN;
            const int done_file = qm_matmul_q8_nodes_avx2(&c.v, &c.x, n_tok, bc, nb, &root, 1, want, pstride,
                                                          (size_t)rows, a, e);
            const int done_rows8 = qm_matmul_q8_nodes_avx2(&iv, &c.x, n_tok, bc, nb, &root, 1, got, pstride,
                                                           (size_t)rows, a, e);
            assert_int_equal(done_file, done_rows8);
            if (memcmp(want, got, ny * sizeof(float)) != 0) {
                print_error("rowpar interleaved nodes rows [%d, %d) of %d, cols %d from %d, bc %d, %d tokens\n", a, e,
                            rows, c.v.cols, c.v.col0, bc, n_tok);
                fail();
            }
        }
        free(want);
        free(got);
        free((void *)iv.data);
        free_case(&c);
    }
#endif
}

/* ---- the activation quantizer ---- */

/* A block of edge values: kind 0 random, 1 zeros, 2 ties (amax 127: x * id = k + 0.5 exactly),
 * 3 huge, 4 tiny (subnormal amax: 127 / amax overflows), 5 one spike among tiny, 6 mixed scales,
 * 7 +-inf and NaN. */
static void edge_block(rng_t *r, int kind, float *x) {
    for (int i = 0; i < 32; i++) {
        const uint64_t u = rng_u64(r);
        const float sg = (u & 1) ? -1.0f : 1.0f;
        switch (kind) {
        case 0: x[i] = rand_f32(r); break;
        case 1: x[i] = (u & 2) ? -0.0f : 0.0f; break;
        case 2: x[i] = i == 0 ? 127.0f : sg * ((float)(u % 127) + 0.5f); break;
        case 3: x[i] = sg * bits_f32((uint32_t)(0x7e000000u + (u >> 40))); break;
        case 4: x[i] = (u & 6) == 0 ? 0.0f : sg * bits_f32((uint32_t)((u >> 8) & 0x3fffu)); break;
        case 5: x[i] = i == 7 ? sg * 3e38f : sg * bits_f32((uint32_t)((u >> 8) & 0x7fffu)); break;
        case 6: x[i] = sg * ldexpf((float)(u >> 40) / 16777216.0f, (int)((u >> 8) % 60) - 30); break;
        default: x[i] = i % 3 == 0 ? sg * INFINITY : i % 3 == 1 ? NAN : rand_f32(r); break;
        }
    }
}

static void test_quantize_act(void **state) {
    (void)state;
    isa_fns fs[8];
    const int nf = isas(fs);
    rng_t r = {13};
    enum { NB = 64 };
    float x[NB * 32], d[NB], d2[NB];
    int8_t q[NB * 32], q2[NB * 32];
    int32_t s[NB], s2[NB];
    for (int rep = 0; rep < 40; rep++) {
        for (int b = 0; b < NB; b++) edge_block(&r, rep == 0 ? b % 8 : rng_int(&r, 0, 7), x + 32 * b);
        qm_quantize_act_scalar(x, NB * 32, q, d, s);
        for (int b = 0; b < NB; b++) { /* the spec's invariants */
            int32_t sum = 0;
            for (int i = 0; i < 32; i++) {
                assert_true(q[32 * b + i] >= -127 && q[32 * b + i] <= 127);
                sum += q[32 * b + i];
            }
            assert_int_equal(sum, s[b]);
        }
        for (int k = 1; k < nf; k++) {
            fs[k].quantize(x, NB * 32, q2, d2, s2);
            if (memcmp(q, q2, sizeof q) || memcmp(d, d2, sizeof d) || memcmp(s, s2, sizeof s)) {
                print_error("quantize_act %s differs from scalar (rep %d)\n", fs[k].isa, rep);
                fail();
            }
        }
    }
    /* ties round half to even: amax 127 gives id 1, so x = k + 0.5 is an exact tie */
    float t[32] = {127.0f, 0.5f, 1.5f, 2.5f, -0.5f, -1.5f, -2.5f, 126.5f, -126.5f};
    const int8_t want[9] = {127, 0, 2, 2, 0, -2, -2, 126, -126};
    for (int k = 0; k < nf; k++) {
        fs[k].quantize(t, 32, q, d, s);
        assert_memory_equal(q, want, sizeof want);
        assert_true(d[0] == 1.0f);
    }
}

/* ---- accuracy: the q8 dot is the f32 dot over the dequantized weights, up to x's rounding ---- */

static void test_accuracy(void **state) {
    (void)state;
    rng_t r = {14};
    for (int d = 0; d < COUNT(quant_dts); d++) {
        qcase c;
        make_case(&r, quant_dts[d], 7, 3, 40, 32, &c);
        const int cols = c.v.cols, nb = cols / 32;
        float *w = malloc((size_t)cols * sizeof(float)), *y = make_y(21);
        qm_matmul_q8_scalar(&c.v, NULL, &c.x, 3, y, 7, 0, 7);
        for (int o = 0; o < 7; o++) {
            const uint8_t *row = (const uint8_t *)c.v.data + (size_t)o * qm_wview_stride(&c.v);
            qm_dequant_range(c.dt, row, (size_t)c.v.col0, (size_t)cols, w);
            for (int t = 0; t < 3; t++) {
                const float *xt = c.xf + (size_t)t * c.x.ld_blocks * 32;
                double exact = 0.0, bound = 0.0, mag = 0.0;
                for (int b = 0; b < nb; b++)
                    for (int i = 0; i < 32; i++) {
                        const double wi = w[32 * b + i];
                        exact += wi * xt[32 * b + i];
                        mag += fabs(wi * xt[32 * b + i]);
                        /* |x - q dx| <= dx / 2 (plus f32 rounding of id and the product) */
                        bound += fabs(wi) * (0.5 + 1e-4) * c.x.d[(size_t)t * c.x.ld_blocks + (size_t)b];
                    }
                const double got = y[(size_t)t * 7 + (size_t)o];
                if (!(fabs(got - exact) <= bound + 1e-5 * mag + 1e-30)) {
                    print_error("%s row %d tok %d: q8 dot %.9g, f32 dot %.9g, bound %.3g\n", qm_dtype_name(c.dt), o,
                                t, got, exact, bound);
                    fail();
                }
            }
        }
        free(w);
        free(y);
        free_case(&c);
    }
}

/* ---- micro-benchmark (printed, never asserted) ---- */

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

#if defined(__SANITIZE_ADDRESS__)
#define BENCH_SCALE 8
#else
#define BENCH_SCALE 1
#endif

static void bench_one(const isa_fns *f, qm_dtype dt, int rows, int cols, int n_tok, rng_t *r) {
    const int qk = qm_dtype_block(dt), nblk = cols / 32;
    if (strcmp(f->isa, "scalar") == 0) rows /= 16;
    rows /= BENCH_SCALE;
    if (rows < 4) rows = 4;
    uint8_t *w = make_qrows(r, dt, rows, cols / qk);
    const qm_wview v = {w, dt, (size_t)cols, rows, cols, 0};
    float *xf = malloc((size_t)n_tok * (size_t)cols * sizeof(float)), *y = malloc((size_t)n_tok * (size_t)rows * 4);
    int8_t *q = malloc((size_t)n_tok * (size_t)cols);
    float *d = malloc((size_t)n_tok * (size_t)nblk * sizeof(float));
    int32_t *s = malloc((size_t)n_tok * (size_t)nblk * sizeof(int32_t));
    for (size_t i = 0; i < (size_t)n_tok * (size_t)cols; i++) xf[i] = rand_f32(r);
    f->quantize(xf, n_tok * cols, q, d, s);
    const qm_q8act x = {q, d, s, (size_t)nblk};
    double best = 1e30;
    for (int rep = 0; rep < 3; rep++) {
        const double t0 = now_s();
        f->matmul(&v, NULL, &x, n_tok, y, (size_t)rows, 0, rows);
        const double t1 = now_s();
        if (t1 - t0 < best) best = t1 - t0;
    }
    const double elems = (double)rows * (double)cols * (double)n_tok;
    printf("  %-6s %-4s %5dx%-5d n_tok %3d: %.4f ns per weight element", f->isa, qm_dtype_name(dt), rows, cols, n_tok,
           1e9 * best / elems);
    if (n_tok == 1) printf(" (%.1f GB/s of weights)", (double)qm_dtype_row_bytes(dt, (size_t)cols) * rows / best * 1e-9);
    printf("\n");
    free(w);
    free(xf);
    free(y);
    free(q);
    free(d);
    free(s);
}

static void test_bench(void **state) {
    (void)state;
    isa_fns fs[8];
    const int nf = isas(fs);
    rng_t r = {15};
    printf("matmul_q8 (1 thread; decode n_tok 1 and prefill n_tok 64):\n");
    for (int d = 0; d < COUNT(quant_dts); d++)
        for (int k = 0; k < nf; k++) {
            bench_one(&fs[k], quant_dts[d], 1536, 8960, 1, &r);
            bench_one(&fs[k], quant_dts[d], 1536 / 4, 8960, 64, &r);
        }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_matmul_q8),
        cmocka_unit_test(test_matmul_q8_extremes),
        cmocka_unit_test(test_matmul_q8_splits),
        cmocka_unit_test(test_matmul_q8_rows8),
        cmocka_unit_test(test_matmul_q8_interleaved),
        cmocka_unit_test(test_rowpar_interleaved),
        cmocka_unit_test(test_quantize_act),
        cmocka_unit_test(test_accuracy),
        cmocka_unit_test(test_bench),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
