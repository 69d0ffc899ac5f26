/* Finished results of rows that do not report themselves (rows other than 0 when the mesh's
 * rows live in other processes), relayed to world rank 0, which hands them to on_done.
 *
 * A row's leader packs each finished result into its relay as it finishes; once per pass of
 * the serving loop every device of the mesh calls qm_relay_flush together, and rank 0 reports
 * what every rank held. A crash loses at most the results of the last pass. */
#ifndef QM_ENGINE_RELAY_H
#define QM_ENGINE_RELAY_H

#include <stdbool.h>
#include <stddef.h>

#include "engine/engine.h"
#include "mesh/comm.h"

typedef struct {
    char *buf; /* packed results: header, ids, text; one after another */
    size_t len, cap;
} qm_relay;

/* Packs result res of request req; QM_ERR_NOMEM (the relay unchanged) when it cannot grow. */
qm_status qm_relay_hold(qm_relay *h, int req, const qm_gen_result *res, size_t text_len);

/* Called by every device of the mesh together. Rank 0 gathers every device's held results and
 * hands them to on_done (when cb has it) in rank order; every relay is then empty. done: this
 * device's row has nothing left; *all_done: every device said so (the same on every device). */
qm_status qm_relay_flush(qm_relay *h, qm_comm *c, const qm_gen_callbacks *cb, bool done, bool *all_done,
                         qm_error *err);

void qm_relay_free(qm_relay *h);

#endif
