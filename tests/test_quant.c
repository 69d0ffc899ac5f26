/* Block quantization tests (kernels/quant.h):
 *  - the scalar dequantization of every type against the reference (gguf.quants.dequantize;
 *    fixtures in tests/fixtures/quant/ by scripts/make_quant_fixtures.py), with memcmp;
 *  - non-finite scales (inf/NaN in d, m, dmin) against the reference: same bits or both NaN;
 *  - AVX2 and AVX-512 (when the CPU has them) against the scalar twin on the fixtures and on
 *    many random blocks, misaligned source and destination included;
 *  - qm_dequant_range on unaligned ranges; qm_quantize_row (Q8_0, Q4_0) against the reference;
 *    qm_quant_f32_to_f16 against F16C;
 *  - a micro-benchmark that prints (never asserts) ns per element of each ISA's dequant. */
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

#include "kernels/quant.h"

#define COUNT(a) ((int)(sizeof(a) / sizeof((a)[0])))

static const qm_dtype quant_types[] = {QM_DT_Q8_0, QM_DT_Q4_0, QM_DT_Q4_1, QM_DT_Q5_0,
                                       QM_DT_Q5_1, QM_DT_Q4_K, QM_DT_Q5_K, QM_DT_Q6_K};

/* ---- random numbers (splitmix64) ---- */

typedef struct {
    uint64_t s;
} rng_t;

static uint64_t rng_u64(rng_t *r) {
    uint64_t z = (r->s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Byte offsets of the f16 fields (d, m, dmin) of a block. */
static int f16_fields(qm_dtype dt, int off[2]) {
    switch (dt) {
    case QM_DT_Q8_0:
    case QM_DT_Q4_0:
    case QM_DT_Q5_0: off[0] = 0; return 1;
    case QM_DT_Q6_K: off[0] = 208; return 1;
    default: off[0] = 0; off[1] = 2; return 2;
    }
}

/* nblocks random blocks: every byte random; with finite != 0 the f16 fields are made finite
 * (exponent 31 -> 15), else 1 in 8 of them is set to inf or NaN. */
static void rand_blocks(rng_t *r, qm_dtype dt, uint8_t *p, int nblocks, int finite) {
    const size_t bb = qm_dtype_block_bytes(dt);
    for (size_t i = 0; i < bb * (size_t)nblocks; i++) p[i] = (uint8_t)rng_u64(r);
    int off[2];
    const int nf = f16_fields(dt, off);
    for (int b = 0; b < nblocks; b++)
        for (int k = 0; k < nf; k++) {
            uint8_t *f = p + (size_t)b * bb + off[k];
            uint16_t h = qm_quant_rd16(f);
            if (finite) {
                if ((h & 0x7c00) == 0x7c00) h &= 0xbfff;
            } else if (rng_u64(r) % 8 == 0) {
                static const uint16_t nonfin[] = {0x7c00, 0xfc00, 0x7e00, 0xfe00, 0x7c01, 0x7fff};
                h = nonfin[rng_u64(r) % COUNT(nonfin)];
            }
            f[0] = (uint8_t)h;
            f[1] = (uint8_t)(h >> 8);
        }
}

/* ---- comparison ---- */

static uint32_t f32_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

/* Index of the first element that differs (bits; with nan_eq any NaN equals any NaN), or -1. */
static long first_diff(const float *a, const float *b, size_t n, int nan_eq) {
    if (!nan_eq) {
        if (memcmp(a, b, n * sizeof(float)) == 0) return -1;
    }
    for (size_t i = 0; i < n; i++) {
        if (nan_eq && isnan(a[i]) && isnan(b[i])) continue;
        if (f32_bits(a[i]) != f32_bits(b[i])) return (long)i;
    }
    return -1;
}

/* Fails (printing the first mismatch with its block's bytes) unless got == want. */
static void expect_same(const char *what, const char *isa, qm_dtype dt, const uint8_t *blocks,
                        const float *got, const float *want, size_t n, int nan_eq) {
    long i = first_diff(got, want, n, nan_eq);
    if (i < 0) return;
    const int be = qm_dtype_block(dt);
    const size_t bb = qm_dtype_block_bytes(dt);
    print_error("%s %s %s: element %ld (block %ld, +%ld) got %a (0x%08x) want %a (0x%08x)\n", what,
                isa, qm_dtype_name(dt), i, i / be, i % be, (double)got[i], f32_bits(got[i]),
                (double)want[i], f32_bits(want[i]));
    print_error("block bytes:");
    for (size_t k = 0; k < bb; k++) print_error(" %02x", blocks[(size_t)(i / be) * bb + k]);
    print_error("\n");
    fail();
}

/* ---- ISAs ---- */

typedef void (*dequant_fn)(qm_dtype, const void *, int, float *);
typedef struct {
    const char *name;
    dequant_fn fn;
} isa_t;

/* The ISAs this CPU can run, scalar first; returns how many. */
static int isas(isa_t out[3]) {
    int n = 0;
    out[n++] = (isa_t){"scalar", qm_dequant_scalar};
#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
    const int avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
                     __builtin_cpu_supports("f16c");
    if (avx2) out[n++] = (isa_t){"avx2", qm_dequant_avx2};
    if (avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq"))
        out[n++] = (isa_t){"avx512", qm_dequant_avx512};
#endif
    return n;
}

/* ---- fixtures (format: scripts/make_quant_fixtures.py) ---- */

enum { KIND_DEQUANT = 1, KIND_QUANTIZE = 2, KIND_NONFINITE = 3 };

typedef struct {
    uint32_t nblocks;
    uint8_t *bytes;  /* nblocks * block_bytes */
    float *f32;      /* nblocks * block_elems */
} fixture;

static uint32_t rd_u32(const uint8_t *p) { return qm_quant_rd32(p); }

static void fixture_load(const char *prefix, qm_dtype dt, uint32_t kind, fixture *fx) {
    char path[512], lname[16];
    const char *name = qm_dtype_name(dt);
    size_t k = 0;
    for (; name[k] && k < sizeof lname - 1; k++) lname[k] = (char)(name[k] >= 'A' && name[k] <= 'Z' ? name[k] + 32 : name[k]);
    lname[k] = 0;
    snprintf(path, sizeof path, "%s/tests/fixtures/quant/%s_%s.bin", QMESH_SRC_DIR, prefix, lname);
    FILE *f = fopen(path, "rb");
    if (!f) print_error("cannot open %s\n", path);
    assert_non_null(f);
    uint8_t h[32];
    assert_int_equal(fread(h, 1, 32, f), 32);
    assert_memory_equal(h, "QMQF", 4);
    assert_int_equal(rd_u32(h + 4), 1);
    assert_int_equal(rd_u32(h + 8), kind);
    char tname[9] = {0};
    memcpy(tname, h + 12, 8);
    assert_string_equal(tname, name);
    fx->nblocks = rd_u32(h + 20);
    assert_int_equal(rd_u32(h + 24), qm_dtype_block_bytes(dt));
    assert_int_equal(rd_u32(h + 28), (uint32_t)qm_dtype_block(dt));
    assert_true(fx->nblocks > 0 && fx->nblocks < 100000);
    const size_t nb = fx->nblocks * qm_dtype_block_bytes(dt), ne = (size_t)fx->nblocks * (size_t)qm_dtype_block(dt);
    fx->bytes = malloc(nb);
    fx->f32 = malloc(ne * sizeof(float));
    assert_non_null(fx->bytes);
    assert_non_null(fx->f32);
    if (kind == KIND_QUANTIZE) {
        assert_int_equal(fread(fx->f32, sizeof(float), ne, f), ne);
        assert_int_equal(fread(fx->bytes, 1, nb, f), nb);
    } else {
        assert_int_equal(fread(fx->bytes, 1, nb, f), nb);
        assert_int_equal(fread(fx->f32, sizeof(float), ne, f), ne);
    }
    assert_int_equal(fgetc(f), EOF);
    fclose(f);
}

static void fixture_free(fixture *fx) {
    free(fx->bytes);
    free(fx->f32);
}

/* ---- tests ---- */

/* Every ISA against the reference fixtures: all blocks in one call, and block by block. */
static void test_dequant_fixtures(void **state) {
    (void)state;
    isa_t is[3];
    const int nisa = isas(is);
    for (int t = 0; t < COUNT(quant_types); t++)
        for (int nf = 0; nf < 2; nf++) {
            const qm_dtype dt = quant_types[t];
            fixture fx;
            fixture_load(nf ? "nonfinite" : "dequant", dt, nf ? KIND_NONFINITE : KIND_DEQUANT, &fx);
            const size_t be = (size_t)qm_dtype_block(dt), bb = qm_dtype_block_bytes(dt);
            float *y = malloc(fx.nblocks * be * sizeof(float));
            for (int k = 0; k < nisa; k++) {
                memset(y, 0xff, fx.nblocks * be * sizeof(float));
                is[k].fn(dt, fx.bytes, (int)fx.nblocks, y);
                expect_same(nf ? "non-finite fixture" : "fixture", is[k].name, dt, fx.bytes, y, fx.f32,
                            fx.nblocks * be, nf);
                memset(y, 0xff, fx.nblocks * be * sizeof(float));
                for (uint32_t b = 0; b < fx.nblocks; b++) is[k].fn(dt, fx.bytes + b * bb, 1, y + b * be);
                expect_same("fixture, block by block", is[k].name, dt, fx.bytes, y, fx.f32,
                            fx.nblocks * be, nf);
            }
            free(y);
            fixture_free(&fx);
        }
}

/* Each SIMD ISA against scalar on random blocks, at misaligned source and destination. */
static void test_simd_vs_scalar(void **state) {
    (void)state;
    isa_t is[3];
    const int nisa = isas(is);
    if (nisa == 1) print_message("no SIMD ISA on this CPU: only scalar checked\n");
    rng_t r = {0x5eed0001};
    enum { NB = 64 };
    uint8_t *src = malloc(NB * 210 + 64);
    float *want = malloc((NB * 256 + 16) * sizeof(float)), *got = malloc((NB * 256 + 16) * sizeof(float));
    for (int t = 0; t < COUNT(quant_types); t++) {
        const qm_dtype dt = quant_types[t];
        const size_t be = (size_t)qm_dtype_block(dt);
        const int rounds = be == 32 ? 400 : 60;
        for (int round = 0; round < rounds; round++) {
            const int nb = 1 + (int)(rng_u64(&r) % NB), finite = round % 4 != 3;
            uint8_t *p = src + rng_u64(&r) % 64; /* any alignment */
            float *w = want + rng_u64(&r) % 16, *g = got + rng_u64(&r) % 16;
            rand_blocks(&r, dt, p, nb, finite);
            qm_dequant_scalar(dt, p, nb, w);
            for (int k = 1; k < nisa; k++) {
                memset(g, 0xff, nb * be * sizeof(float));
                is[k].fn(dt, p, nb, g);
                expect_same(finite ? "random blocks" : "random blocks, non-finite scales", is[k].name,
                            dt, p, g, w, nb * be, !finite);
            }
        }
        /* nblocks 0 writes nothing */
        for (int k = 0; k < nisa; k++) {
            got[0] = 1.5f;
            is[k].fn(dt, src, 0, got);
            assert_true(got[0] == 1.5f);
        }
    }
    free(src);
    free(want);
    free(got);
}

/* qm_requant_q8_0 (the load's repacking): Q4_0 and Q5_0 blocks, every code and random scales
 * (non-finite ones too), dequantize as Q8_0 to the same bits as they do themselves; another type
 * returns 0 and writes nothing. */
static void test_requant_q8_0(void **state) {
    (void)state;
    rng_t r = {0x5eed0002};
    enum { NB = 40 };
    uint8_t src[NB * 22], q8[NB * 34 + 1];
    float want[NB * 32], got[NB * 32];
    const qm_dtype from[] = {QM_DT_Q4_0, QM_DT_Q5_0};
    for (int t = 0; t < COUNT(from); t++)
        for (int round = 0; round < 200; round++) {
            const int nb = 1 + (int)(rng_u64(&r) % NB), finite = round % 4 != 3;
            rand_blocks(&r, from[t], src, nb, finite);
            q8[nb * 34] = 0xa5;
            assert_int_equal(qm_requant_q8_0(from[t], src, (size_t)nb, q8), (size_t)nb * 34);
            assert_int_equal(q8[nb * 34], 0xa5);
            qm_dequant_scalar(from[t], src, nb, want);
            qm_dequant_scalar(QM_DT_Q8_0, q8, nb, got);
            expect_same("requantized to Q8_0", "scalar", from[t], src, got, want, (size_t)nb * 32, !finite);
        }
    const qm_dtype other[] = {QM_DT_Q8_0, QM_DT_Q4_1, QM_DT_Q5_1, QM_DT_Q4_K, QM_DT_Q6_K, QM_DT_F32};
    for (int t = 0; t < COUNT(other); t++) {
        q8[0] = 0x5a;
        assert_int_equal(qm_requant_q8_0(other[t], src, 1, q8), 0);
        assert_int_equal(q8[0], 0x5a);
    }
}

/* qm_dequant_range: any [e0, e0 + n) of a row is the same slice of its full dequantization. */
static void test_dequant_range(void **state) {
    (void)state;
    rng_t r = {0x5eed0002};
    for (int t = 0; t < COUNT(quant_types); t++) {
        const qm_dtype dt = quant_types[t];
        const size_t be = (size_t)qm_dtype_block(dt);
        const int nb = be == 32 ? 21 : 5;
        const size_t ne = nb * be;
        uint8_t *row = malloc(qm_dtype_row_bytes(dt, ne));
        float *full = malloc(ne * sizeof(float)), *part = malloc((ne + 2) * sizeof(float));
        rand_blocks(&r, dt, row, nb, 1);
        qm_dequant_scalar(dt, row, nb, full);
        for (int round = 0; round < 300; round++) {
            size_t e0 = rng_u64(&r) % ne, n = rng_u64(&r) % (ne - e0 + 1);
            if (round < 4) { /* whole row, one block, one element, last element */
                const size_t e0s[] = {0, be, 7, ne - 1}, ns[] = {ne, be, 1, 1};
                e0 = e0s[round];
                n = ns[round];
            }
            part[n] = part[n + 1] = 12345.0f; /* guard: nothing written past out[n) */
            qm_dequant_range(dt, row, e0, n, part);
            if (memcmp(part, full + e0, n * sizeof(float)) != 0) {
                print_error("qm_dequant_range %s e0 %zu n %zu differs\n", qm_dtype_name(dt), e0, n);
                fail();
            }
            assert_true(part[n] == 12345.0f && part[n + 1] == 12345.0f);
        }
        free(row);
        free(full);
        free(part);
    }
}

/* qm_quantize_row against the reference quantizer; unsupported types write nothing. */
static void test_quantize(void **state) {
    (void)state;
    const qm_dtype dts[] = {QM_DT_Q8_0, QM_DT_Q4_0};
    for (int t = 0; t < COUNT(dts); t++) {
        const qm_dtype dt = dts[t];
        fixture fx;
        fixture_load("quantize", dt, KIND_QUANTIZE, &fx);
        const size_t n = (size_t)fx.nblocks * 32, nb = qm_dtype_row_bytes(dt, n);
        uint8_t *q = malloc(nb);
        memset(q, 0xa5, nb);
        assert_int_equal(qm_quantize_row(dt, fx.f32, n, q), nb);
        for (size_t i = 0; i < nb; i++)
            if (q[i] != fx.bytes[i]) {
                const size_t bb = qm_dtype_block_bytes(dt), b = i / bb;
                print_error("quantize %s: block %zu byte %zu got %02x want %02x; inputs:", qm_dtype_name(dt),
                            b, i % bb, q[i], fx.bytes[i]);
                for (int j = 0; j < 32; j++) print_error(" %a", (double)fx.f32[b * 32 + j]);
                print_error("\n");
                fail();
            }
        free(q);
        fixture_free(&fx);
    }
    float x[32] = {0};
    uint8_t out[64];
    assert_int_equal(qm_quantize_row(QM_DT_Q4_K, x, 32, out), 0);
    assert_int_equal(qm_quantize_row(QM_DT_Q8_0, x, 31, out), 0);
}

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
__attribute__((target("f16c"))) static uint16_t f16c_cvt(float f) {
    return (uint16_t)_mm_extract_epi16(_mm_cvtps_ph(_mm_set_ss(f), _MM_FROUND_TO_NEAREST_INT), 0);
}
#endif

/* qm_quant_f32_to_f16 against the hardware conversion (F16C, round to nearest even): every
 * f32 whose bits are near a rounding boundary of the half grid, and random ones. */
static void test_f32_to_f16(void **state) {
    (void)state;
#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
    if (!__builtin_cpu_supports("f16c")) {
        print_message("no F16C: qm_quant_f32_to_f16 checked through the quantize fixtures only\n");
        return;
    }
    rng_t r = {0x5eed0003};
    long bad = 0;
    for (uint32_t e = 0; e < 256; e++) /* every exponent, mantissas around ties and ends */
        for (uint32_t s = 0; s < 2; s++)
            for (int k = 0; k < 64; k++) {
                uint32_t man = (uint32_t)(rng_u64(&r) & 0x7fffff);
                if (k < 16) man = (man & ~0x1fffu) | (0x0fffu + (uint32_t)(k % 3)); /* near tie */
                if (k == 16) man = 0;
                if (k == 17) man = 0x7fffff;
                const uint32_t u = s << 31 | e << 23 | man;
                float f;
                memcpy(&f, &u, 4);
                uint16_t a = qm_quant_f32_to_f16(f), b = f16c_cvt(f);
                if (a != b && !(isnan(f) && (a & 0x7c00) == 0x7c00 && (a & 0x3ff))) {
                    if (bad++ < 5) print_error("f32 0x%08x: got %04x want %04x\n", u, a, b);
                }
            }
    for (uint32_t u = 0x33000000u - 4096; u < 0x38800000u + 4096; u += 7) { /* all subnormal halves */
        float f;
        memcpy(&f, &u, 4);
        uint16_t a = qm_quant_f32_to_f16(f), b = f16c_cvt(f);
        if (a != b && bad++ < 5) print_error("f32 0x%08x: got %04x want %04x\n", u, a, b);
    }
    for (int i = 0; i < 1000000; i++) {
        const uint32_t u = (uint32_t)rng_u64(&r);
        float f;
        memcpy(&f, &u, 4);
        if (isnan(f)) continue;
        uint16_t a = qm_quant_f32_to_f16(f), b = f16c_cvt(f);
        if (a != b && bad++ < 5) print_error("f32 0x%08x: got %04x want %04x\n", u, a, b);
    }
    assert_int_equal(bad, 0);
#endif
}

/* ---- micro-benchmark: ns per element, printed only ---- */

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* As a matmul uses it: 256 elements at a time into a small buffer, from a 64K-element row set
 * (in L2). Best of 5 runs of ~2M elements. */
static void test_bench(void **state) {
    (void)state;
    isa_t is[3];
    const int nisa = isas(is);
    rng_t r = {0x5eed0004};
    enum { NE = 65536, PER_CALL = 256 };
    uint8_t *src = malloc(qm_dtype_row_bytes(QM_DT_Q8_0, NE));
    float buf[PER_CALL];
    char line[512];
    int len = snprintf(line, sizeof line, "bench dequant ns/element (256 per call):");
    for (int k = 0; k < nisa; k++) len += snprintf(line + len, sizeof line - (size_t)len, " %9s", is[k].name);
    print_message("%s\n", line);
    volatile float sink = 0;
    for (int t = 0; t < COUNT(quant_types); t++) {
        const qm_dtype dt = quant_types[t];
        const int be = qm_dtype_block(dt), nb = NE / be, per = PER_CALL / be;
        const size_t bb = qm_dtype_block_bytes(dt);
        rand_blocks(&r, dt, src, nb, 1);
        len = snprintf(line, sizeof line, "bench dequant %-4s                        ", qm_dtype_name(dt));
        for (int k = 0; k < nisa; k++) {
            double best = 1e30;
            for (int rep = 0; rep < 5; rep++) {
                const double t0 = now_s();
                for (int pass = 0; pass < 32; pass++)
                    for (int b = 0; b < nb; b += per) {
                        is[k].fn(dt, src + (size_t)b * bb, per, buf);
                        sink += buf[b & (PER_CALL - 1)];
                    }
                const double dt_s = now_s() - t0;
                if (dt_s < best) best = dt_s;
            }
            len += snprintf(line + len, sizeof line - (size_t)len, " %9.3f", best * 1e9 / (32.0 * NE));
        }
        print_message("%s\n", line);
    }
    (void)sink;
    free(src);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dequant_fixtures), cmocka_unit_test(test_simd_vs_scalar),
        cmocka_unit_test(test_dequant_range),    cmocka_unit_test(test_quantize),
        cmocka_unit_test(test_f32_to_f16),       cmocka_unit_test(test_bench),
        cmocka_unit_test(test_requant_q8_0),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
