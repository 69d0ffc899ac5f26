/* qmesh: Qwen2-family inference with tensor parallelism over an R x C device mesh.
 *
 * Library conventions (every module):
 *   - functions that can fail return a qm_status and fill a caller-owned qm_error
 *     with a message that names the file, the tensor or the flag and what was expected;
 *   - no global mutable state: contexts are passed in;
 *   - the program (tools/qmesh.c) decides to print and exit, never the library.
 */
#ifndef QMESH_H
#define QMESH_H

#include <stddef.h>
#include <stdint.h>

#define QMESH_VERSION "0.1.0"

typedef enum {
    QM_OK = 0,
    QM_ERR_IO,          /* a file is missing, unreadable or unwritable */
    QM_ERR_FORMAT,      /* a file's contents are malformed (header, JSON, offsets, shapes) */
    QM_ERR_CONFIG,      /* a model config is incomplete, impossible or unsupported */
    QM_ERR_ARG,         /* a bad flag or argument */
    QM_ERR_NOMEM,       /* an allocation failed or a plan does not fit in memory */
    QM_ERR_COMM,        /* a collective failed: a peer died or timed out */
    QM_ERR_UNSUPPORTED, /* valid input that qmesh does not handle (yet) */
} qm_status;

typedef struct {
    qm_status code;
    char msg[1024];
} qm_error;

/* Fills err (if not NULL) with a printf-style message and returns code. */
qm_status qm_fail(qm_error *err, qm_status code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

const char *qm_status_name(qm_status s);

#endif
