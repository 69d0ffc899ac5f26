#include "util/huge_arena.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#define HUGE_PAGE ((size_t)2 << 20)
#define ARENA_CHUNK ((size_t)64 << 20)

/* A 2 MB-aligned anonymous mapping of n bytes (a multiple of 2 MB), advised MADV_HUGEPAGE; the
 * unaligned head and tail of the over-sized reservation are unmapped. */
static void *map_aligned(size_t n) {
    char *raw = mmap(NULL, n + HUGE_PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (raw == MAP_FAILED) return NULL;
    char *p = (char *)(((uintptr_t)raw + HUGE_PAGE - 1) & ~(uintptr_t)(HUGE_PAGE - 1));
    if (p > raw) munmap(raw, (size_t)(p - raw));
    if (raw + HUGE_PAGE > p) munmap(p + n, (size_t)(raw + HUGE_PAGE - p));
#ifdef MADV_HUGEPAGE
    madvise(p, n, MADV_HUGEPAGE); /* advice: without THP the pages are 4 KB, nothing else changes */
#endif
    return p;
}

void *qm_arena_alloc(qm_arena *a, size_t bytes) {
    const size_t need = (bytes + 63) & ~(size_t)63;
    if (need < bytes) return NULL;
    if (need > a->left) {
        if (a->n_maps == a->cap_maps) {
            const int cap = a->cap_maps ? 2 * a->cap_maps : 8;
            qm_arena_map *grown = realloc(a->maps, (size_t)cap * sizeof *grown);
            if (!grown) return NULL;
            a->maps = grown;
            a->cap_maps = cap;
        }
        const size_t n = need > ARENA_CHUNK ? (need + HUGE_PAGE - 1) & ~(HUGE_PAGE - 1) : ARENA_CHUNK;
        char *p = map_aligned(n);
        if (!p) return NULL;
        a->maps[a->n_maps++] = (qm_arena_map){p, n};
        a->next = p;
        a->left = n;
    }
    void *p = a->next;
    a->next += need;
    a->left -= need;
    a->used += bytes;
    return p;
}

void qm_arena_free(qm_arena *a) {
    for (int i = 0; i < a->n_maps; i++) munmap(a->maps[i].p, a->maps[i].n);
    free(a->maps);
    memset(a, 0, sizeof *a);
}

#if defined(__SANITIZE_ADDRESS__)
#define QM_UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define QM_UNDER_ASAN 1
#endif
#endif

int qm_huge_pages_available(void) {
#ifdef QM_UNDER_ASAN
    return 0; /* malloc's memory for the copies, where an over-read shows */
#endif
    FILE *f = fopen("/sys/kernel/mm/transparent_hugepage/enabled", "r");
    if (!f) return 0;
    char line[128] = {0};
    const int ok = fgets(line, sizeof line, f) != NULL && !strstr(line, "[never]");
    fclose(f);
    return ok;
}
