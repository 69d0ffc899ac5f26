/* mpi backend of comm.h: one MPI rank per device; world rank = r*C + c; a communicator per
 * row from MPI_Comm_split (color = row, key = column).
 *
 * row_ordered_sum: an all-gather of the block partials (MPI_Allgatherv) into [n_blocks][n],
 * then every rank adds the blocks in order locally, so the bits are those of the threads
 * backend and of the sequential loop, whatever C is.
 *
 * Failures: the communicators return errors (MPI_ERRORS_RETURN), which become QM_ERR_COMM.
 * abort() marks this device failed (its later calls fail); the program then exits without
 * MPI_Finalize: Open MPI 4 cannot wake a peer blocked in a collective, but mpirun kills the
 * whole job when a rank exits without MPI_Finalize or dies, so peers stop within seconds
 * instead of hanging (tests/test_comm_mpi.sh measures it).
 *
 * MPI is initialised by the first comm created and finalised only by qm_mpi_finalize (the
 * program, once, at a successful end), so comms and engines can be created and destroyed more
 * than once in a process (MPI cannot be initialised again after MPI_Finalize).
 */
#include "mesh/comm.h"

#include <stdlib.h>

int qm_mpi_launched_size(void) {
    static const char *const vars[] = {"OMPI_COMM_WORLD_SIZE", "PMIX_SIZE", "PMI_SIZE"};
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++) {
        const char *v = getenv(vars[i]);
        if (v && *v) {
            long n = strtol(v, NULL, 10);
            if (n > 0 && n < 1L << 30)
                return (int)n;
        }
    }
    return 1;
}

int qm_mpi_launched_rank(void) {
    static const char *const vars[] = {"OMPI_COMM_WORLD_RANK", "PMIX_RANK", "PMI_RANK"};
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++) {
        const char *v = getenv(vars[i]);
        if (v && *v) {
            long n = strtol(v, NULL, 10);
            if (n >= 0 && n < 1L << 30)
                return (int)n;
        }
    }
    return 0;
}

#ifndef QMESH_HAVE_MPI

int qm_mpi_available(void) { return 0; }
void qm_mpi_finalize(void) {}

qm_status qm_mpi_comm_create(int rows, int cols, qm_comm **out, qm_error *err) {
    *out = NULL;
    return qm_fail(err, QM_ERR_UNSUPPORTED,
                   "mpi comm: mesh %dx%d: this qmesh was built without MPI (install Open MPI and rebuild, or use --backend threads)",
                   rows, cols);
}

void qm_mpi_comm_destroy(qm_comm *c) { (void)c; }

#else

#include <limits.h>
#include <mpi.h>
#include <stdio.h>
#include <string.h>

typedef struct {
    qm_comm comm;
    MPI_Comm world, row;
    int aborted;
    char why[300];
    float *gather;      /* [n_blocks][n], grown as needed */
    size_t gather_cap;  /* floats */
    int *counts, *displs; /* [cols] */
    long long *info;      /* [cols][4] */
} mpi_state;

static const qm_comm_ops mpi_ops;

int qm_mpi_available(void) { return 1; }

void qm_mpi_finalize(void) {
    int inited = 0, finalized = 0;
    MPI_Initialized(&inited);
    MPI_Finalized(&finalized);
    if (inited && !finalized)
        MPI_Finalize();
}

static mpi_state *st_of(qm_comm *c) { return (mpi_state *)c->impl; }

static qm_status mpi_failed(qm_comm *c, const char *what, int rc, qm_error *err) {
    mpi_state *s = st_of(c);
    char msg[MPI_MAX_ERROR_STRING];
    int len = 0;
    if (MPI_Error_string(rc, msg, &len) != MPI_SUCCESS)
        len = 0;
    msg[len] = '\0';
    s->aborted = 1;
    snprintf(s->why, sizeof s->why, "%.40s failed earlier: %.200s", what, msg);
    return qm_fail(err, QM_ERR_COMM, "mpi comm: %s on rank %d, device (%d,%d) of mesh %dx%d failed (a peer died?): %s",
                   what, qm_comm_rank(c), c->row, c->col, c->rows, c->cols, msg);
}

static qm_status check_alive(qm_comm *c, const char *what, qm_error *err) {
    mpi_state *s = st_of(c);
    if (s->aborted)
        return qm_fail(err, QM_ERR_COMM, "mpi comm: %s on device (%d,%d): this device was marked failed: %s", what,
                       c->row, c->col, s->why);
    return QM_OK;
}

static void state_free(mpi_state *s) {
    if (!s)
        return;
    free(s->gather);
    free(s->counts);
    free(s->displs);
    free(s->info);
    free(s);
}

qm_status qm_mpi_comm_create(int rows, int cols, qm_comm **out, qm_error *err) {
    *out = NULL;
    if (rows < 1 || cols < 1 || (long)rows * cols > INT_MAX / 4)
        return qm_fail(err, QM_ERR_ARG, "mpi comm: mesh %dx%d: rows and cols must be >= 1", rows, cols);
    int inited = 0, we_init = 0;
    MPI_Initialized(&inited);
    if (!inited) {
        int provided = 0;
        /* SERIALIZED, not FUNNELED: the thread that drives the device need not be the one that
         * initialised MPI; compute-team threads never call MPI. */
        if (MPI_Init_thread(NULL, NULL, MPI_THREAD_SERIALIZED, &provided) != MPI_SUCCESS)
            return qm_fail(err, QM_ERR_COMM, "mpi comm: mesh %dx%d: MPI_Init_thread failed", rows, cols);
        we_init = 1;
        if (provided < MPI_THREAD_FUNNELED) {
            MPI_Finalize();
            return qm_fail(err, QM_ERR_UNSUPPORTED, "mpi comm: the MPI library provides thread level %d, qmesh needs FUNNELED",
                           provided);
        }
    }
    int size = 0, rank = 0;
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    if (size != rows * cols) {
        if (we_init)
            MPI_Finalize();
        return qm_fail(err, QM_ERR_ARG,
                       "mpi comm: mesh %dx%d needs %d MPI ranks (one per device) but the MPI world has %d: "
                       "launch with mpirun -np %d, or pick a mesh of %d devices",
                       rows, cols, rows * cols, size, rows * cols, size);
    }
    mpi_state *s = calloc(1, sizeof *s);
    if (s) {
        s->counts = calloc((size_t)cols, sizeof(int));
        s->displs = calloc((size_t)cols, sizeof(int));
        s->info = calloc((size_t)cols * 4, sizeof(long long));
    }
    if (!s || !s->counts || !s->displs || !s->info) {
        state_free(s);
        if (we_init)
            MPI_Abort(MPI_COMM_WORLD, 1); /* peers are past the size check and would hang in the split */
        return qm_fail(err, QM_ERR_NOMEM, "mpi comm: out of memory");
    }
    int rc = MPI_Comm_dup(MPI_COMM_WORLD, &s->world);
    if (rc == MPI_SUCCESS)
        rc = MPI_Comm_set_errhandler(s->world, MPI_ERRORS_RETURN);
    if (rc == MPI_SUCCESS)
        rc = MPI_Comm_split(s->world, rank / cols, rank % cols, &s->row);
    if (rc == MPI_SUCCESS)
        rc = MPI_Comm_set_errhandler(s->row, MPI_ERRORS_RETURN);
    if (rc != MPI_SUCCESS) {
        state_free(s);
        return qm_fail(err, QM_ERR_COMM, "mpi comm: mesh %dx%d: creating the row communicators failed (error %d)", rows,
                       cols, rc);
    }
    s->comm.ops = &mpi_ops;
    s->comm.rows = rows;
    s->comm.cols = cols;
    s->comm.row = rank / cols;
    s->comm.col = rank % cols;
    s->comm.impl = s;
    *out = &s->comm;
    return QM_OK;
}

void qm_mpi_comm_destroy(qm_comm *c) {
    if (!c)
        return;
    mpi_state *s = st_of(c);
    if (!s->aborted) {
        /* Finalize is collective; after a failure it could wait for a dead peer, and exiting
         * without it is what makes mpirun stop the rest of the job. */
        MPI_Comm_free(&s->row);
        MPI_Comm_free(&s->world);
    }
    state_free(s);
}

/* ---- collectives ---- */

static qm_status m_row_barrier(qm_comm *c, qm_error *err) {
    qm_status st = check_alive(c, "row_barrier", err);
    if (st != QM_OK)
        return st;
    int rc = MPI_Barrier(st_of(c)->row);
    return rc == MPI_SUCCESS ? QM_OK : mpi_failed(c, "row_barrier", rc, err);
}

static qm_status m_world_barrier(qm_comm *c, qm_error *err) {
    qm_status st = check_alive(c, "world_barrier", err);
    if (st != QM_OK)
        return st;
    int rc = MPI_Barrier(st_of(c)->world);
    return rc == MPI_SUCCESS ? QM_OK : mpi_failed(c, "world_barrier", rc, err);
}

static qm_status m_row_ordered_sum(qm_comm *c, const float *partials, int nb, int b0, int n_blocks, size_t n,
                                   float *out, qm_error *err) {
    mpi_state *s = st_of(c);
    qm_status st = check_alive(c, "row_ordered_sum", err);
    if (st != QM_OK)
        return st;
    long long mine[4] = {nb, b0, n_blocks, (long long)n};
    int rc = MPI_Allgather(mine, 4, MPI_LONG_LONG, s->info, 4, MPI_LONG_LONG, s->row);
    if (rc != MPI_SUCCESS)
        return mpi_failed(c, "row_ordered_sum", rc, err);
    /* Every rank reads the same info and reaches the same verdict: no rank is left waiting. */
    long long next = 0;
    for (int k = 0; k < c->cols; k++) {
        const long long *p = &s->info[4 * k];
        if (p[3] != (long long)n || p[2] != n_blocks || p[0] < 0 || p[1] != next)
            return qm_fail(err, QM_ERR_ARG,
                           "mpi comm: row_ordered_sum on row %d: column %d has n=%lld, n_blocks=%lld, blocks [%lld, %lld), "
                           "expected n=%zu, n_blocks=%d, blocks starting at %lld (contiguous in column order)",
                           c->row, k, p[3], p[2], p[1], p[1] + p[0], n, n_blocks, next);
        next += p[0];
    }
    if (next != n_blocks)
        return qm_fail(err, QM_ERR_ARG, "mpi comm: row_ordered_sum on row %d: the devices hold %lld blocks, n_blocks is %d",
                       c->row, next, n_blocks);
    if (n_blocks == 0 || n == 0) {
        memset(out, 0, n * sizeof(float));
        return QM_OK;
    }
    if ((unsigned long long)n_blocks * n > (unsigned long long)INT_MAX)
        return qm_fail(err, QM_ERR_UNSUPPORTED, "mpi comm: row_ordered_sum of %d blocks x %zu floats: over 2^31 floats",
                       n_blocks, n);
    size_t need = (size_t)n_blocks * n;
    if (need > s->gather_cap) {
        float *g = realloc(s->gather, need * sizeof(float));
        if (!g) {
            s->aborted = 1; /* peers are already in the all-gather: this device cannot go on */
            snprintf(s->why, sizeof s->why, "out of memory in row_ordered_sum");
            return qm_fail(err, QM_ERR_NOMEM, "mpi comm: row_ordered_sum: out of memory for %zu floats", need);
        }
        s->gather = g;
        s->gather_cap = need;
    }
    for (int k = 0; k < c->cols; k++) {
        s->counts[k] = (int)(s->info[4 * k] * (long long)n);
        s->displs[k] = (int)(s->info[4 * k + 1] * (long long)n);
    }
    rc = MPI_Allgatherv(nb > 0 ? partials : s->gather, nb * (int)n, MPI_FLOAT, s->gather, s->counts, s->displs, MPI_FLOAT,
                        s->row);
    if (rc != MPI_SUCCESS)
        return mpi_failed(c, "row_ordered_sum", rc, err);
    memcpy(out, s->gather, n * sizeof(float));
    for (int b = 1; b < n_blocks; b++) {
        const float *p = s->gather + (size_t)b * n;
        for (size_t i = 0; i < n; i++)
            out[i] += p[i];
    }
    return QM_OK;
}

static qm_status check_bytes(qm_comm *c, const char *what, size_t bytes, qm_error *err) {
    if (bytes > (size_t)INT_MAX)
        return qm_fail(err, QM_ERR_UNSUPPORTED, "mpi comm: %s of %zu bytes: over 2^31 bytes", what, bytes);
    return check_alive(c, what, err);
}

static qm_status m_row_allgather(qm_comm *c, const void *send, size_t bytes, void *recv, qm_error *err) {
    qm_status st = check_bytes(c, "row_allgather", bytes, err);
    if (st != QM_OK)
        return st;
    const void *sb = send == (char *)recv + (size_t)c->col * bytes ? MPI_IN_PLACE : send;
    int rc = MPI_Allgather(sb, (int)bytes, MPI_BYTE, recv, (int)bytes, MPI_BYTE, st_of(c)->row);
    return rc == MPI_SUCCESS ? QM_OK : mpi_failed(c, "row_allgather", rc, err);
}

static qm_status m_row_bcast(qm_comm *c, void *buf, size_t bytes, int root_col, qm_error *err) {
    if (root_col < 0 || root_col >= c->cols)
        return qm_fail(err, QM_ERR_ARG, "mpi comm: row_bcast: root column %d outside 0..%d", root_col, c->cols - 1);
    qm_status st = check_bytes(c, "row_bcast", bytes, err);
    if (st != QM_OK)
        return st;
    int rc = MPI_Bcast(buf, (int)bytes, MPI_BYTE, root_col, st_of(c)->row);
    return rc == MPI_SUCCESS ? QM_OK : mpi_failed(c, "row_bcast", rc, err);
}

static qm_status m_world_gather(qm_comm *c, const void *send, size_t bytes, void *recv, qm_error *err) {
    qm_status st = check_bytes(c, "world_gather", bytes, err);
    if (st != QM_OK)
        return st;
    int root = qm_comm_rank(c) == 0;
    const void *sb = root && send == recv ? MPI_IN_PLACE : send;
    int rc = MPI_Gather(sb, (int)bytes, MPI_BYTE, root ? recv : NULL, (int)bytes, MPI_BYTE, 0, st_of(c)->world);
    return rc == MPI_SUCCESS ? QM_OK : mpi_failed(c, "world_gather", rc, err);
}

static qm_status m_world_bcast(qm_comm *c, void *buf, size_t bytes, qm_error *err) {
    qm_status st = check_bytes(c, "world_bcast", bytes, err);
    if (st != QM_OK)
        return st;
    int rc = MPI_Bcast(buf, (int)bytes, MPI_BYTE, 0, st_of(c)->world);
    return rc == MPI_SUCCESS ? QM_OK : mpi_failed(c, "world_bcast", rc, err);
}

static void m_abort(qm_comm *c, const char *why) {
    mpi_state *s = st_of(c);
    s->aborted = 1;
    snprintf(s->why, sizeof s->why, "%s", why ? why : "aborted");
}

static const qm_comm_ops mpi_ops = {
    .row_barrier = m_row_barrier,
    .row_ordered_sum = m_row_ordered_sum,
    .row_allgather = m_row_allgather,
    .row_bcast = m_row_bcast,
    .world_barrier = m_world_barrier,
    .world_gather = m_world_gather,
    .world_bcast = m_world_bcast,
    .abort = m_abort,
};

#endif
