/* The machine's memory read bandwidth, measured the way decode reads weights: every thread
 * streams its own part of a buffer much larger than the caches. */
#include <immintrin.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "membw.h"
#include "util/pool.h"

typedef struct {
    const uint8_t *buf;
    size_t bytes;
    uint64_t sink[64];
} membw_job;

__attribute__((target("avx2"))) static uint64_t read_avx2(const uint8_t *p, size_t n) {
    __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
    for (size_t i = 0; i + 128 <= n; i += 128) {
        a0 = _mm256_or_si256(a0, _mm256_load_si256((const __m256i *)(p + i)));
        a1 = _mm256_or_si256(a1, _mm256_load_si256((const __m256i *)(p + i + 32)));
        a2 = _mm256_or_si256(a2, _mm256_load_si256((const __m256i *)(p + i + 64)));
        a3 = _mm256_or_si256(a3, _mm256_load_si256((const __m256i *)(p + i + 96)));
    }
    a0 = _mm256_or_si256(_mm256_or_si256(a0, a1), _mm256_or_si256(a2, a3));
    uint64_t out[4];
    _mm256_storeu_si256((__m256i *)out, a0);
    return out[0] | out[1] | out[2] | out[3];
}

static uint64_t read_plain(const uint8_t *p, size_t n) {
    uint64_t acc = 0, v;
    for (size_t i = 0; i + 8 <= n; i += 8) {
        memcpy(&v, p + i, 8);
        acc |= v;
    }
    return acc;
}

static void membw_run(void *arg, int ith, int nth) {
    membw_job *J = arg;
    long b, e;
    qm_split_range((long)(J->bytes / 4096), ith, nth, &b, &e);
    const uint8_t *p = J->buf + (size_t)b * 4096;
    size_t n = (size_t)(e - b) * 4096;
    J->sink[ith & 63] = __builtin_cpu_supports("avx2") ? read_avx2(p, n) : read_plain(p, n);
}

double qm_measure_read_bandwidth(int threads, size_t bytes) {
    uint8_t *buf = aligned_alloc(4096, bytes);
    if (!buf) return 0;
    memset(buf, 1, bytes);
    qm_pool *pool = NULL;
    if (qm_pool_create(threads, &pool, NULL)) {
        free(buf);
        return 0;
    }
    membw_job J = {.buf = buf, .bytes = bytes};
    double best = 0;
    for (int rep = 0; rep < 5; rep++) {
        double t0 = qm_now();
        qm_pool_run(pool, membw_run, &J);
        double gbs = (double)bytes / (qm_now() - t0) / 1e9;
        if (gbs > best) best = gbs;
    }
    qm_pool_destroy(pool);
    free(buf);
    return best;
}
