/* Requests arriving while others run: at every step boundary the serving loop asks the request
 * source (qm_request_source, polled on world rank 0 only) for new requests and cancellations,
 * and every device of a row learns the same orders, so that the row's devices stay in step.
 *
 * One process running the whole mesh (threads): each row's leader polls the source under the
 * engine's lock and broadcasts its orders to its row. Rows in other processes (MPI): every
 * device of the mesh takes part; world rank 0 gathers each row's slots, polls the source,
 * assigns new requests to rows with free slots and broadcasts all of it (world_bcast). */
#ifndef QM_ENGINE_DISPATCH_H
#define QM_ENGINE_DISPATCH_H

#include <stdbool.h>
#include <stdint.h>

#include "engine/engine_internal.h"

/* What a row does at this step boundary. */
typedef struct {
    int batch;
    bool stop;              /* the source is closed, nothing runs and nothing waits: the loop ends */
    unsigned char *cancel;  /* [batch] 1: cancel the request in that slot */
    int n_new;              /* requests to start, packed one after another (request_pack.h) into */
    char *payload;          /* the free slots in ascending order */
    size_t len, cap;
    int64_t *msg;           /* scratch: the broadcast header and, on rank 0, the gathered slots */
    char *body;             /* scratch: the world broadcast's body */
    size_t body_cap;
} qm_row_orders;

qm_status qm_orders_init(qm_row_orders *o, int batch, int world, qm_error *err);
void qm_orders_free(qm_row_orders *o);

/* Called by every device of a row (threads) or of the mesh (processes) together at a step
 * boundary; ids[b]: the id of the request in slot b, -1 when free (the same on every device of
 * a row). Fills o. */
qm_status qm_dispatch(qm_engine *e, qm_comm *c, const int *ids, qm_row_orders *o, qm_error *err);

#endif
