/* The collectives of a device mesh: one interface, one backend per transport (threads, mpi).
 *
 * A mesh R x C has R*C devices. Device (r, c): row r is a replica (data parallel), column c
 * is a tensor shard (tensor parallel). Collectives named row_* involve the C devices of one
 * row; world_* involve all R*C devices. Every device of the group must make the same calls
 * in the same order (SPMD). A failed or aborted peer makes every waiting call return
 * QM_ERR_COMM within seconds instead of hanging; a peer that falls silent (MPI: its host or its
 * link gone) within timeout_s.
 */
#ifndef QM_MESH_COMM_H
#define QM_MESH_COMM_H

#include <qmesh.h>
#include <stddef.h>

#include "util/coop.h"

typedef struct qm_comm qm_comm;

typedef struct qm_comm_ops {
    qm_status (*row_barrier)(qm_comm *c, qm_error *err);

    /* Sum of block partials in the fixed tree order (tree_sum.h; design: Exactness, rule 2).
     * The row's n_blocks blocks are split over its devices by qm_split(n_blocks, cols, col);
     * this device has already reduced its own blocks to the values of its cover
     * (qm_tree_reduce_part) in partials [m][n]: the value of its i-th cover node is at
     * partials + i * n. On return, on every device of the row, out [n] is
     * the tree sum of all n_blocks blocks (0 when n_blocks is 0), the same bits whatever C is.
     * Each device combines a 1/C slice of the n floats from every cover value (reduce-scatter)
     * and the slices are then gathered by every device. partials is clobbered; out may not
     * alias it. Volume per device: at most 2*n floats sent and received (plus rounding of
     * the slices) when every part is one tree node, at most 2*top*n otherwise. */
    qm_status (*row_tree_sum)(qm_comm *c, float *partials, int n_blocks, size_t n, float *out, qm_error *err);

    /* Every device sends `bytes` bytes; recv[c*bytes ...] receives column c's, on every device. */
    qm_status (*row_allgather)(qm_comm *c, const void *send, size_t bytes, void *recv, qm_error *err);

    /* buf (bytes long) of column root is copied to every device of the row. */
    qm_status (*row_bcast)(qm_comm *c, void *buf, size_t bytes, int root_col, qm_error *err);

    qm_status (*world_barrier)(qm_comm *c, qm_error *err);

    /* Every device sends `bytes` bytes; world rank 0 receives them in rank order
     * (rank = r*C + c) in recv (NULL elsewhere). */
    qm_status (*world_gather)(qm_comm *c, const void *send, size_t bytes, void *recv, qm_error *err);

    /* buf (bytes long) of world rank 0 is copied to every device of the mesh. */
    qm_status (*world_bcast)(qm_comm *c, void *buf, size_t bytes, qm_error *err);

    /* Marks this device failed: peers' pending and later calls return QM_ERR_COMM. */
    void (*abort)(qm_comm *c, const char *why);

    /* Optional (NULL where a device is a process of its own): the cooperative task this
     * device's code runs in from now on (util/coop.h; NULL: a thread of its own), whose thread
     * runs its other tasks while this device waits in a collective. */
    void (*set_task)(qm_comm *c, qm_coop_task *task);
} qm_comm_ops;

/* What this device's collectives moved, by kind (counted by both backends the same way: the
 * bytes of this device that go to other devices, and those it takes from them; a device's own
 * part is not counted). Written only by the device's own thread. */
typedef enum {
    QM_COLL_ROW_SUM,       /* row_tree_sum */
    QM_COLL_ROW_ALLGATHER, /* row_allgather (sampler, gathered logits) */
    QM_COLL_ROW_BCAST,     /* row_bcast (requests of a step) */
    QM_COLL_ROW_BARRIER,
    QM_COLL_WORLD,         /* world_barrier, world_gather, world_bcast */
    QM_COLL_KINDS
} qm_coll_kind;

typedef struct {
    long long calls[QM_COLL_KINDS];
    long long bytes_sent[QM_COLL_KINDS];
    long long bytes_recv[QM_COLL_KINDS];
} qm_comm_stats;

struct qm_comm {
    const qm_comm_ops *ops;
    int rows, cols;   /* mesh shape R x C */
    int row, col;     /* this device */
    void *impl;       /* backend state */
    qm_comm_stats stats;
    double timeout_s; /* MPI: a collective still waiting for its peers after this many seconds
                         fails with QM_ERR_COMM (a silent host or a cut link); 0: no limit. The
                         engine sets it once every device is loaded. Threads ignore it: a failed
                         device there aborts its peers itself. */
};

static inline const char *qm_coll_kind_name(qm_coll_kind k) {
    static const char *const names[QM_COLL_KINDS] = {"row_sum", "row_allgather", "row_bcast", "row_barrier", "world"};
    return k >= 0 && k < QM_COLL_KINDS ? names[k] : "?";
}

static inline void qm_comm_count(qm_comm *c, qm_coll_kind kind, long long sent, long long recv) {
    c->stats.calls[kind]++;
    c->stats.bytes_sent[kind] += sent;
    c->stats.bytes_recv[kind] += recv;
}

static inline int qm_comm_rank(const qm_comm *c) { return c->row * c->cols + c->col; }

/* --- threads backend (comm_threads.c): all devices in one process. --- */
typedef struct qm_thread_mesh qm_thread_mesh;
/* Shared state for an R x C mesh of threads; comms[r*C+c] is device (r,c)'s handle. */
qm_status qm_thread_mesh_create(int rows, int cols, qm_thread_mesh **out, qm_error *err);
qm_comm *qm_thread_mesh_comm(qm_thread_mesh *m, int rank);
void qm_thread_mesh_destroy(qm_thread_mesh *m);

/* --- MPI backend (comm_mpi.c): one rank per device; only when built with QMESH_HAVE_MPI. --- */
/* Initialises MPI if needed (MPI_Init_thread), checks world size == rows*cols (else a clear
 * QM_ERR_ARG naming both), splits a communicator per row. */
qm_status qm_mpi_comm_create(int rows, int cols, qm_comm **out, qm_error *err);
void qm_mpi_comm_destroy(qm_comm *c); /* frees the communicators; MPI stays initialised */
/* Finalises MPI if it was initialised and is not finalised yet; no-op without MPI. The program
 * calls it once, at a successful end (after a failure it exits without it, which makes mpirun
 * stop the job instead of waiting in a collective for a dead peer). */
void qm_mpi_finalize(void);
/* 1 when built with MPI; 0 otherwise (qm_mpi_comm_create then returns QM_ERR_UNSUPPORTED). */
int qm_mpi_available(void);
/* World size and rank when launched under mpirun (reads the launcher's environment, no MPI call), else 1/0. */
int qm_mpi_launched_size(void);
int qm_mpi_launched_rank(void); /* the rank from the same environment, else 0 */

#endif
