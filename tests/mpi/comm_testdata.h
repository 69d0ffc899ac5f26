/* Test data shared by tests/test_comm_threads.c and tests/mpi/comm_selftest.c: block partials
 * whose float sum depends on the order of the additions (magnitudes spread over 2^-20..2^20,
 * both signs), the contiguous block assignment, the sequential reference and a checksum. */
#ifndef QM_TESTS_COMM_TESTDATA_H
#define QM_TESTS_COMM_TESTDATA_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

static inline uint32_t td_hash(uint32_t x) {
    x ^= x >> 16;
    x *= 0x7feb352dU;
    x ^= x >> 15;
    x *= 0x846ca68bU;
    x ^= x >> 16;
    return x;
}

/* Element i of block b of data set `seed`. */
static inline float td_value(uint32_t seed, int b, size_t i) {
    uint32_t h = td_hash(seed * 0x9e3779b9U ^ td_hash((uint32_t)b * 0x85ebca6bU ^ td_hash((uint32_t)i)));
    float mant = 1.0f + (float)(h & 0xffffffu) / 16777216.0f; /* [1, 2) with 24 random bits */
    int e = (int)((h >> 24) % 41u) - 20;                        /* 2^-20 .. 2^20 */
    float v = ldexpf(mant, e);
    return (h & 0x80000000u) ? -v : v;
}

/* Blocks of a row: n_blocks split into cols nearly equal contiguous parts (some may be empty). */
static inline void td_assign(int n_blocks, int cols, int col, int *b0, int *nb) {
    long lo = (long)n_blocks * col / cols, hi = (long)n_blocks * (col + 1) / cols;
    *b0 = (int)lo;
    *nb = (int)(hi - lo);
}

/* partials[nb][n] for blocks [b0, b0+nb). */
static inline void td_fill(uint32_t seed, int b0, int nb, size_t n, float *partials) {
    for (int j = 0; j < nb; j++)
        for (size_t i = 0; i < n; i++)
            partials[(size_t)j * n + i] = td_value(seed, b0 + j, i);
}

/* out[i] = ((p_0 + p_1) + ...) + p_{n_blocks-1}; 0 when n_blocks == 0. */
static inline void td_reference(uint32_t seed, int n_blocks, size_t n, float *out) {
    for (size_t i = 0; i < n; i++) {
        float acc = n_blocks > 0 ? td_value(seed, 0, i) : 0.0f;
        for (int b = 1; b < n_blocks; b++)
            acc += td_value(seed, b, i);
        out[i] = acc;
    }
}

/* The same sum in reverse block order: used to show that the data makes the order visible. */
static inline void td_reversed(uint32_t seed, int n_blocks, size_t n, float *out) {
    for (size_t i = 0; i < n; i++) {
        float acc = n_blocks > 0 ? td_value(seed, n_blocks - 1, i) : 0.0f;
        for (int b = n_blocks - 2; b >= 0; b--)
            acc += td_value(seed, b, i);
        out[i] = acc;
    }
}

/* FNV-1a over the bits of the floats. */
static inline uint64_t td_checksum(const float *x, size_t n) {
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, &x[i], 4);
        for (int k = 0; k < 4; k++) {
            h ^= (u >> (8 * k)) & 0xffu;
            h *= 1099511628211ULL;
        }
    }
    return h;
}

#endif
