/* Ranks of one mesh in several processes (MPI) must agree on what they run: the same program,
 * the same model and the same options that shape the collectives or the bits. Otherwise their
 * collectives would not match (a hang or garbage) or their shards would not add up to the
 * single device's logits (silently different bits). Each process fingerprints the three
 * (util/fingerprint.h), world rank 0 gathers them and names the first rank that differs, and
 * every rank refuses to go on with that message. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/engine_internal.h"
#include "mesh/comm.h"
#include "util/fingerprint.h"

enum { FP_PROGRAM, FP_MODEL, FP_OPTIONS, FP_KINDS };

/* The options every rank must share: the mesh, the batch, the cache and step sizes, the mode
 * and the chat format (threads, ISA, pinning and verbosity may differ: they change no bit). */
static uint64_t options_fingerprint(const qm_engine *e) {
    const int v[] = {e->rows, e->cols, e->batch, e->dims.max_context, e->dims.max_tokens, e->dims.act_q8};
    const char *cf = e->o.chat_format ? e->o.chat_format : "";
    return qm_fnv1a(qm_fnv1a(QM_FNV_OFFSET, v, sizeof v), cf, strlen(cf) + 1);
}

/* Rank 0: the first rank and fingerprint kind that differ from rank 0's, in v[0], v[1] (v[0] -1
 * when all agree). fp: [ranks][FP_KINDS]. */
static void first_mismatch(const uint64_t *fp, int ranks, int64_t v[2]) {
    v[0] = -1;
    v[1] = 0;
    for (int r = 1; r < ranks && v[0] < 0; r++)
        for (int k = 0; k < FP_KINDS; k++)
            if (fp[(size_t)r * FP_KINDS + k] != fp[k]) {
                v[0] = r;
                v[1] = k;
                break;
            }
}

qm_status qm_engine_check_ranks(qm_engine *e, qm_error *err) {
    if (e->whole_mesh) return QM_OK; /* one process: one program, one model, one set of options */
    qm_comm *c = qm_mesh_host_comm(e->host, 0);
    const int ranks = e->rows * e->cols, root = qm_comm_rank(c) == 0;
    uint64_t mine[FP_KINDS] = {qm_program_fingerprint(), 0, options_fingerprint(e)};
    qm_status st = qm_path_fingerprint(e->model_dir, &mine[FP_MODEL], err);
    if (st) return st;
    uint64_t *all = root ? calloc((size_t)ranks * FP_KINDS, sizeof *all) : NULL;
    if (root && !all) st = qm_fail(err, QM_ERR_NOMEM, "out of memory");
    if (!st) st = c->ops->world_gather(c, mine, sizeof mine, all, err);
    int64_t v[2] = {-1, 0};
    if (!st && root) first_mismatch(all, ranks, v);
    free(all);
    if (!st) st = c->ops->world_bcast(c, v, sizeof v, err);
    if (st || v[0] < 0) return st;
    static const char *const what[FP_KINDS] = {
        "a different qmesh program (another build or version of the binary)",
        "a different model (another file or folder content at the -m path)",
        "different options (--mesh, --batch, --ctx, --step-tokens, --activations or --chat-format)"};
    return qm_fail(err, QM_ERR_ARG,
                   "MPI rank %" PRId64 " runs %s than rank 0: every rank of a mesh must be started with the same "
                   "qmesh, model and options",
                   v[0], what[v[1]]);
}
