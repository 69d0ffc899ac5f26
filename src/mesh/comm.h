/* The collectives of a device mesh: one interface, one backend per transport (threads, mpi).
 *
 * A mesh R x C has R*C devices. Device (r, c): row r is a replica (data parallel), column c
 * is a tensor shard (tensor parallel). Collectives named row_* involve the C devices of one
 * row; world_* involve all R*C devices. Every device of the group must make the same calls
 * in the same order (SPMD). A failed or aborted peer makes every waiting call return
 * QM_ERR_COMM within seconds instead of hanging.
 */
#ifndef QM_MESH_COMM_H
#define QM_MESH_COMM_H

#include <qmesh.h>
#include <stddef.h>

typedef struct qm_comm qm_comm;

typedef struct qm_comm_ops {
    qm_status (*row_barrier)(qm_comm *c, qm_error *err);

    /* Ordered sum of block partials (design: Exactness, rule 2). The row's n_blocks blocks
     * are assigned to devices contiguously in column order; this device holds blocks
     * [b0, b0 + nb) (nb may be 0) as partials[nb][n]. On return, on every device of the row,
     *   out[i] = (((p_0[i] + p_1[i]) + p_2[i]) + ... ) + p_{n_blocks-1}[i]
     * (p_0 taken as is), whatever C is. out may not alias partials. */
    qm_status (*row_ordered_sum)(qm_comm *c, const float *partials, int nb, int b0, int n_blocks,
                                 size_t n, float *out, qm_error *err);

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
} qm_comm_ops;

struct qm_comm {
    const qm_comm_ops *ops;
    int rows, cols;   /* mesh shape R x C */
    int row, col;     /* this device */
    void *impl;       /* backend state */
};

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
