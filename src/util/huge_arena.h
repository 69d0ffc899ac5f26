/* Memory for weights copied at load, in transparent huge pages (2 MB): a bump allocator over
 * 2 MB-aligned anonymous mappings advised MADV_HUGEPAGE.
 *
 * Why: a decode step streams every weight once, and in 4 KB pages (the model file's mapping) each
 * page costs a TLB miss and restarts the hardware prefetcher's stream. The 1.5B's AVX2 fast decode,
 * weights copied into 2 MB pages against used in place from the mapping (qmesh bench --activations
 * q8 --isa avx2 --threads 2, Zen 4, alternated 3 times): 29.7-30.0 against 28.6-28.7 tok/s, mostly
 * down_proj (9.5-9.7 against 10.7-10.9 ms a step), whose 4-row tiles read four 7 KB rows at once. */
#ifndef QM_UTIL_HUGE_ARENA_H
#define QM_UTIL_HUGE_ARENA_H

#include <stddef.h>

typedef struct {
    void *p;
    size_t n;
} qm_arena_map;

typedef struct {
    qm_arena_map *maps; /* [n_maps] the mappings, unmapped by qm_arena_free */
    int n_maps, cap_maps;
    char *next;         /* the current mapping's first free byte */
    size_t left;        /* its free bytes */
    size_t used;        /* bytes handed out, in all */
} qm_arena;

/* bytes (64-byte aligned) from the arena, NULL when out of memory. Mappings are 64 MB or the
 * request's size; a mapping's untouched tail is never backed by memory. */
void *qm_arena_alloc(qm_arena *a, size_t bytes);
void qm_arena_free(qm_arena *a);

/* Whether the kernel gives transparent huge pages to memory advised MADV_HUGEPAGE (Linux: THP
 * "always" or "madvise"); 0 under AddressSanitizer, whose checks do not reach mapped memory (the
 * column slices then stay in malloc's, where a kernel's over-read shows). */
int qm_huge_pages_available(void);

#endif
