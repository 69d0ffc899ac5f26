/* The machine's f32 FMA peak, measured the way the kernels compute: every thread runs 12
 * independent chains of vector FMAs on registers (no memory), more than the FMA latency times
 * the FMA units, so the units never wait. */
#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "flops.h"
#include "util/pool.h"

#define FMA_ITERS 4000000L /* per thread and pass: 12 x 16 x 2 x 4e6 = 1.5 GFLOP with AVX-512 */
#define CHAINS 12

typedef struct {
    int lanes; /* 16, 8 or 1 */
    float sink[64];
} fma_job;

/* CHAINS independent chains a[i] = a[i] * m + c (type T, FMA fma_), FMA_ITERS steps each; the
 * chains added into a[0], whose first lane is returned so that nothing is optimised away. */
#define FMA_CHAINS(T, set1_, fma_, add_)                                                          \
    T a[CHAINS];                                                                                 \
    const T m = set1_(0.999999f), c = set1_(1e-7f);                                              \
    for (int i = 0; i < CHAINS; i++) a[i] = set1_((float)i);                                     \
    for (long it = 0; it < FMA_ITERS; it++)                                                      \
        for (int i = 0; i < CHAINS; i++) a[i] = fma_(a[i], m, c);                                \
    for (int i = 1; i < CHAINS; i++) a[0] = add_(a[0], a[i])

__attribute__((target("avx512f"))) static float chains512(void) {
    FMA_CHAINS(__m512, _mm512_set1_ps, _mm512_fmadd_ps, _mm512_add_ps);
    return _mm512_cvtss_f32(a[0]);
}

__attribute__((target("avx2,fma"))) static float chains256(void) {
    FMA_CHAINS(__m256, _mm256_set1_ps, _mm256_fmadd_ps, _mm256_add_ps);
    return _mm256_cvtss_f32(a[0]);
}

static float set1f(float v) { return v; }
static float add1(float x, float y) { return x + y; }

static float chains1(void) {
    FMA_CHAINS(float, set1f, fmaf, add1);
    return a[0];
}

static void fma_run(void *arg, int ith, int nth) {
    (void)nth;
    fma_job *J = arg;
    J->sink[ith & 63] = J->lanes == 16 ? chains512() : J->lanes == 8 ? chains256() : chains1();
}

double qm_measure_fma_peak(const char *isa, int threads) {
    fma_job J = {.lanes = !strncmp(isa, "avx512", 6) ? 16 : !strcmp(isa, "avx2") ? 8 : 1};
    qm_pool *pool = NULL;
    if (qm_pool_create(threads, &pool, NULL)) return 0;
    double best = 0;
    for (int rep = 0; rep < 5; rep++) {
        const double t0 = qm_now();
        qm_pool_run(pool, fma_run, &J);
        const double flops = 2.0 * CHAINS * J.lanes * (double)FMA_ITERS * threads;
        const double g = flops / (qm_now() - t0) / 1e9;
        if (g > best) best = g;
    }
    qm_pool_destroy(pool);
    return best;
}
