/* Test data shared by tests/test_comm_threads.c and tests/mpi/comm_selftest.c: block partials
 * whose float sum depends on the order of the additions (magnitudes spread over 2^-20..2^20,
 * both signs), the contiguous block assignment, a device's cover values, the tree-order
 * reference (mesh/tree_sum.h qm_tree_sum_ref), the volume bounds of a row sum and a checksum. */
#ifndef QM_TESTS_COMM_TESTDATA_H
#define QM_TESTS_COMM_TESTDATA_H

#include <math.h>
#include <stdlib.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "mesh/tree_sum.h"

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

typedef struct {
    uint32_t seed;
    float *slots; /* [..][n] */
    size_t n;
} td_leaves;

static inline void td_make_leaves(void *ctx, int first, int count, int slot) {
    const td_leaves *t = ctx;
    td_fill(t->seed, first, count, t->n, t->slots + (size_t)slot * t->n);
}

/* Column `col`'s cover values in partials [m][n], made from its leaves `group` at a time
 * (what a device passes to row_tree_sum). partials must have room for the column's blocks. */
static inline void td_fill_cover(uint32_t seed, int n_blocks, int cols, int col, size_t n, int group, float *partials) {
    td_leaves t = {seed, partials, n};
    qm_tree_span span = {partials, n, 0, n, 1, 0};
    qm_tree_reduce_part(n_blocks, cols, col, group < 1 ? 1 : group, td_make_leaves, &t, &span);
}

/* out[n] = the tree sum of the blocks by the scalar reference; 0 when n_blocks == 0.
 * Returns 0 when out of memory. */
static inline int td_reference(uint32_t seed, int n_blocks, size_t n, float *out) {
    float *leaves = malloc(((size_t)n_blocks * n + 1) * sizeof(float));
    if (!leaves) return 0;
    td_fill(seed, 0, n_blocks, n, leaves);
    qm_tree_sum_ref(leaves, n_blocks, n, out);
    free(leaves);
    return 1;
}

/* The same blocks added in block order ((p0 + p1) + p2) + ...: used to show that the data makes
 * the order visible. */
static inline void td_chain(uint32_t seed, int n_blocks, size_t n, float *out) {
    for (size_t i = 0; i < n; i++) {
        float acc = n_blocks > 0 ? td_value(seed, 0, i) : 0.0f;
        for (int b = 1; b < n_blocks; b++)
            acc += td_value(seed, b, i);
        out[i] = acc;
    }
}

/* 1 when every column's blocks are one tree node (or none). */
static inline int td_aligned(int n_blocks, int cols) {
    qm_tree_node cover[QM_TREE_MAX_COVER];
    for (int k = 0; k < cols; k++)
        if (qm_tree_cover(n_blocks, cols, k, cover) > 1) return 0;
    return 1;
}

/* The most bytes one device may send, and receive, in a row sum of n floats (comm.h): 2*n
 * floats when aligned, max(2, 2*top)*n otherwise; plus the rounding of slices when C does not
 * divide n (at most one float per cover node and device). */
static inline long long td_volume_bound(int n_blocks, int cols, size_t n) {
    int top = qm_tree_top(n_blocks);
    if (cols == 1 || n_blocks == 0) return 0;
    if (td_aligned(n_blocks, cols)) return 4 * (2 * (long long)n + cols);
    long long f = 2 * top > 2 ? 2 * top : 2;
    return 4 * (f * (long long)n + f * cols);
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
