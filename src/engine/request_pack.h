/* A generation request as bytes: what the serving loop broadcasts from world rank 0 to the ranks
 * that compute it, and how a sequence keeps its own copy of a request it runs. */
#ifndef QM_ENGINE_REQUEST_PACK_H
#define QM_ENGINE_REQUEST_PACK_H

#include <stddef.h>

#include "engine/engine.h"

/* A request the loop owns: q's pointers (prompt, stop strings) point into mem. */
typedef struct {
    qm_gen_request q;
    int id;
    void *mem;
} qm_live_request;

/* Bytes qm_request_pack writes for q. */
size_t qm_request_packed_size(const qm_gen_request *q);
/* Writes q and its id into out (qm_request_packed_size(q) bytes). */
void qm_request_pack(const qm_gen_request *q, int id, char *out);
/* Reads the packed request at p (n bytes left) into *out (its own copy); *used: its size.
 * QM_ERR_COMM when the bytes are damaged, QM_ERR_NOMEM when the copy cannot be made. */
qm_status qm_request_unpack(const char *p, size_t n, qm_live_request *out, size_t *used, qm_error *err);
void qm_live_request_free(qm_live_request *r);
/* The size of the packed request at p (n bytes left), 0 when it does not fit in n. */
size_t qm_request_packed_at(const char *p, size_t n);

#endif
