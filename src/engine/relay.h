/* What rows that do not report themselves (rows other than 0 when the mesh's rows live in other
 * processes) send to world rank 0: the pieces of text they stream and their finished results.
 * Rank 0 hands pieces to on_tokens (or on_text when on_tokens is NULL) and results to on_done.
 *
 * A row's leader packs each streamed piece and each finished result into its relay as they come;
 * once per pass of the serving loop every device of the mesh calls qm_relay_flush together, and
 * rank 0 reports what every rank held, each rank's records in the order they were packed: a
 * request's pieces in order, then its result. The relay holds a pass of records at most; a crash
 * loses at most the last pass of them. */
#ifndef QM_ENGINE_RELAY_H
#define QM_ENGINE_RELAY_H

#include <stdbool.h>
#include <stddef.h>

#include "engine/engine.h"
#include "mesh/comm.h"

typedef struct {
    char *buf; /* packed records (pieces, results): header, ids, text, logprobs; one after another */
    size_t len, cap;
    bool stream;        /* rank 0 streams (qm_relay_open): leaders pack the pieces of their text */
    bool stream_tokens; /* with the tokens each piece completes (rank 0 has on_tokens) */
} qm_relay;

/* Called by every device of the mesh together, before the first flush: rank 0 (cb: its callbacks)
 * tells every device whether, and how, it streams (h->stream, h->stream_tokens). */
qm_status qm_relay_open(qm_relay *h, qm_comm *c, const qm_gen_callbacks *cb, qm_error *err);

/* Packs a streamed piece of request req: text_len bytes of text, and the n generated tokens whose
 * text it completes (ids; lps their logprobs when the request asks for them, else NULL; n = 0
 * when rank 0 streams text alone). QM_ERR_NOMEM (the relay unchanged) when it cannot grow. */
qm_status qm_relay_piece(qm_relay *h, int req, const char *text, size_t text_len, const int *ids,
                         const qm_token_logprobs *lps, int n);

/* Packs result res of request req; QM_ERR_NOMEM (the relay unchanged) when it cannot grow. */
qm_status qm_relay_hold(qm_relay *h, int req, const qm_gen_result *res, size_t text_len);

/* Called by every device of the mesh together. Rank 0 gathers every device's held records and
 * hands them to cb (pieces to on_tokens or on_text, results to on_done, those it has) in rank
 * order; damaged records are a QM_ERR_COMM error. Every relay is then empty. done: this device's
 * row has nothing left; *all_done: every device said so (the same on every device). */
qm_status qm_relay_flush(qm_relay *h, qm_comm *c, const qm_gen_callbacks *cb, bool done, bool *all_done,
                         qm_error *err);

void qm_relay_free(qm_relay *h);

#endif
