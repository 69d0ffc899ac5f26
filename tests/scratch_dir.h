/* A scratch folder for a cmocka test: made under /tmp, removed with everything in it. */
#ifndef QM_TESTS_SCRATCH_DIR_H
#define QM_TESTS_SCRATCH_DIR_H

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

/* Makes the folder /tmp/qm_test_<tag>_XXXXXX and leaves its name in dir; 0, or -1. */
static inline int scratch_dir_make(char *dir, size_t size, const char *tag) {
    if (snprintf(dir, size, "/tmp/qm_test_%s_XXXXXX", tag) >= (int)size) return -1;
    return mkdtemp(dir) ? 0 : -1;
}

static inline int scratch_remove_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb, (void)flag, (void)ftw;
    return remove(path);
}

/* Removes dir and everything below it (links are removed, not followed). */
static inline void scratch_dir_remove(const char *dir) {
    nftw(dir, scratch_remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

#endif
