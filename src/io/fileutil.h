/* Small file helpers of the io module: whole-file reads, and atomic writes (a temporary file in the
 * same folder, renamed over the target on commit, so that readers never see a half-written file). */
#ifndef QM_IO_FILEUTIL_H
#define QM_IO_FILEUTIL_H

#include <qmesh.h>
#include <stdbool.h>
#include <stdio.h>

/* Reads a whole file and NUL-terminates it. `what` says what the file is in messages ("config"). */
qm_status qm_read_text_file(const char *path, const char *what, char **text, size_t *len, qm_error *err);

typedef struct {
    char *path;   /* the target */
    char *tmp;    /* path.XXXXXX, renamed to path on commit */
    FILE *f;
    char *buf;    /* stdio buffer */
} qm_atomic_file;

qm_status qm_atomic_begin(qm_atomic_file *af, const char *path, qm_error *err);
qm_status qm_atomic_write(qm_atomic_file *af, const void *data, size_t n, qm_error *err);
/* Flushes, closes and renames; on failure the temporary file is removed. Frees af either way. */
qm_status qm_atomic_commit(qm_atomic_file *af, qm_error *err);
/* Removes the temporary file and frees af (safe on a zeroed or already finished af). */
void qm_atomic_abort(qm_atomic_file *af);

/* begin + write + commit. */
qm_status qm_write_file_atomic(const char *path, const void *data, size_t n, qm_error *err);

/* Copies src to dst (atomically). */
qm_status qm_copy_file(const char *src, const char *dst, qm_error *err);

#endif
