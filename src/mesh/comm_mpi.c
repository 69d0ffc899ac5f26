/* mpi backend of comm.h: one MPI rank per device; world rank = r*C + c; a communicator per
 * row from MPI_Comm_split (color = row, key = column).
 *
 * row_tree_sum (tree_sum.h): reduce-scatter then all-gather. Rank c owns the slice
 * qm_tree_slice(n, C, c) of the n floats. One MPI_Alltoallv sends each of this rank's cover
 * values, cut into the C slices, to the slices' owners; each rank combines the cover values of
 * its slice in the fixed tree order (qm_tree_combine, the same walk as the threads backend and
 * the scalar reference) and one MPI_Allgatherv gives every rank every slice. Per row sum a rank
 * sends m*(n - n/C) + (C-1)*n/C floats, m its cover's size (1 when its blocks are one tree node).
 *
 * Failures: the communicators return errors (MPI_ERRORS_RETURN), which become QM_ERR_COMM. With a
 * timeout_s (comm.h) every exchange is polled (wait_for, wait_all_for: the tree sum point to
 * point, the rest non-blocking collectives), and a peer silent for that long (a host gone or a link cut, which TCP alone may not
 * notice for many minutes) fails the call with QM_ERR_COMM naming the collective.
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
#include "mesh/tree_sum.h"

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

#include "util/pool.h"
#include <stdio.h>
#include <string.h>

typedef struct {
    qm_comm comm;
    MPI_Comm world, row;
    int aborted;
    char why[300];
    float *send;          /* [cols][my cover][slice of column k], grown as needed (partials: [my cover][n]) */
    float *recv;          /* [cols][cover of column k][my slice], grown as needed */
    size_t send_cap, recv_cap; /* floats */
    float **value_at;     /* [n_blocks]: the received value of the cover node starting at a block */
    int value_cap;
    int *scounts, *sdispls, *rcounts, *rdispls, *counts, *displs; /* [cols] */
    int *gcounts, *gdispls; /* [cols]: a polled tree sum's all-gather, what goes to each column */
    qm_tree_node *covers; /* [cols][QM_TREE_MAX_COVER] */
    int *n_cover;         /* [cols] */
    MPI_Request *reqs;    /* [2 * cols]: the point-to-point exchanges of a polled tree sum */
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

/* A blocking collective's return code as a status. */
static qm_status done(qm_comm *c, const char *what, int rc, qm_error *err) {
    return rc == MPI_SUCCESS ? QM_OK : mpi_failed(c, what, rc, err);
}

/* Without a timeout the collectives block; with one the tree sums go point to point and the
 * other collectives (a few a step) are started non-blocking, all of them polled. Open MPI's
 * non-blocking all-to-all and all-gather cost about 20 us more a call than the blocking ones on
 * loopback (0.5B 1x2: 1 ms a token); the point-to-point exchange costs the same (comm_selftest
 * --time: 4.6 us a 2-block row sum either way). */
static int polled(const qm_comm *c) { return c->timeout_s > 0; }

/* Waits for the non-blocking collective started in *req, polling, and fails with QM_ERR_COMM
 * once it has waited timeout_s (the device is then marked failed: the pending request is
 * abandoned, and the program exits). */
static qm_status timed_out(qm_comm *c, const char *what, qm_error *err);

static qm_status wait_for(qm_comm *c, const char *what, int rc, MPI_Request *req, qm_error *err) {
    if (rc != MPI_SUCCESS) return mpi_failed(c, what, rc, err);
    const double deadline = qm_now() + c->timeout_s;
    for (unsigned spin = 1;; spin++) {
        int done = 0;
        if ((rc = MPI_Test(req, &done, MPI_STATUS_IGNORE)) != MPI_SUCCESS) return mpi_failed(c, what, rc, err);
        if (done) return QM_OK;
        if (spin % 256 == 0 && qm_now() > deadline) break;
    }
    return timed_out(c, what, err);
}

/* The deadline passed in `what`: this device is marked failed. */
static qm_status timed_out(qm_comm *c, const char *what, qm_error *err) {
    mpi_state *s = st_of(c);
    s->aborted = 1;
    snprintf(s->why, sizeof s->why, "%.40s timed out earlier", what);
    return qm_fail(err, QM_ERR_COMM,
                   "mpi comm: %s on rank %d, device (%d,%d) of mesh %dx%d: no answer from its peers for %g s (a host "
                   "down or a link cut?); --comm-timeout sets the limit",
                   what, qm_comm_rank(c), c->row, c->col, c->rows, c->cols, c->timeout_s);
}

static void state_free(mpi_state *s) {
    if (!s)
        return;
    free(s->send);
    free(s->recv);
    free(s->value_at);
    free(s->scounts); /* and the other [cols] int arrays carved from it */
    free(s->covers);
    free(s->reqs);
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
        int *ints = calloc((size_t)cols * 9, sizeof(int)); /* the nine [cols] arrays, carved */
        s->scounts = ints;
        if (ints) {
            int **a[] = {&s->sdispls, &s->rcounts, &s->rdispls, &s->counts, &s->displs, &s->n_cover, &s->gcounts, &s->gdispls};
            for (size_t i = 0; i < sizeof a / sizeof a[0]; i++) *a[i] = ints + (i + 1) * (size_t)cols;
        }
        s->covers = calloc((size_t)cols * QM_TREE_MAX_COVER, sizeof(qm_tree_node));
        s->reqs = calloc((size_t)cols * 2, sizeof(MPI_Request));
    }
    if (!s || !s->scounts || !s->covers || !s->reqs) {
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
    qm_comm_count(c, QM_COLL_ROW_BARRIER, 0, 0);
    MPI_Request req;
    if (!polled(c)) return done(c, "row_barrier", MPI_Barrier(st_of(c)->row), err);
    return wait_for(c, "row_barrier", MPI_Ibarrier(st_of(c)->row, &req), &req, err);
}

static qm_status m_world_barrier(qm_comm *c, qm_error *err) {
    qm_status st = check_alive(c, "world_barrier", err);
    if (st != QM_OK)
        return st;
    qm_comm_count(c, QM_COLL_WORLD, 0, 0);
    MPI_Request req;
    if (!polled(c)) return done(c, "world_barrier", MPI_Barrier(st_of(c)->world), err);
    return wait_for(c, "world_barrier", MPI_Ibarrier(st_of(c)->world, &req), &req, err);
}

/* Grows *buf to hold `need` elements of `size` bytes. */
static int grow(void **buf, size_t *cap, size_t need, size_t size) {
    if (need <= *cap) return 1;
    void *p = realloc(*buf, need * size);
    if (!p) return 0;
    *buf = p;
    *cap = need;
    return 1;
}

/* Every column's cover and the counts and displacements of the exchange; 0 when out of memory. */
static int lay_out_tree_sum(qm_comm *c, int n_blocks, size_t n) {
    mpi_state *s = st_of(c);
    size_t lo, hi, send = 0, recv = 0;
    qm_tree_slice(n, c->cols, c->col, &lo, &hi);
    for (int k = 0; k < c->cols; k++)
        s->n_cover[k] = qm_tree_cover(n_blocks, c->cols, k, s->covers + (size_t)k * QM_TREE_MAX_COVER);
    for (int k = 0; k < c->cols; k++) {
        size_t klo, khi;
        qm_tree_slice(n, c->cols, k, &klo, &khi);
        s->scounts[k] = s->n_cover[c->col] * (int)(khi - klo);
        s->sdispls[k] = (int)send;
        send += (size_t)s->scounts[k];
        s->rcounts[k] = s->n_cover[k] * (int)(hi - lo);
        s->rdispls[k] = (int)recv;
        recv += (size_t)s->rcounts[k];
        s->counts[k] = (int)(khi - klo);
        s->displs[k] = (int)klo;
    }
    size_t cap = (size_t)s->value_cap;
    int ok = grow((void **)&s->send, &s->send_cap, send, sizeof(float)) &&
             grow((void **)&s->recv, &s->recv_cap, recv, sizeof(float)) &&
             grow((void **)&s->value_at, &cap, (size_t)n_blocks, sizeof(float *));
    s->value_cap = (int)cap;
    return ok;
}

/* This rank's cover values, cut into the columns' slices: send [k][node][slice k]. */
static void pack_covers(qm_comm *c, const float *partials, size_t n) {
    mpi_state *s = st_of(c);
    for (int k = 0; k < c->cols; k++) {
        size_t klo, khi;
        qm_tree_slice(n, c->cols, k, &klo, &khi);
        float *to = s->send + s->sdispls[k];
        for (int i = 0; i < s->n_cover[c->col]; i++, to += khi - klo)
            memcpy(to, partials + (size_t)i * n + klo, (khi - klo) * sizeof(float));
    }
}

static float *received_value(void *ctx, int leaf) { return ((mpi_state *)ctx)->value_at[leaf]; }

/* Combines this rank's slice from the received cover values into out. */
static void combine_slice(qm_comm *c, int n_blocks, size_t n, float *out) {
    mpi_state *s = st_of(c);
    size_t lo, hi;
    qm_tree_slice(n, c->cols, c->col, &lo, &hi);
    if (lo >= hi) return;
    for (int k = 0; k < c->cols; k++)
        for (int i = 0; i < s->n_cover[k]; i++)
            s->value_at[s->covers[(size_t)k * QM_TREE_MAX_COVER + i].first] =
                s->recv + s->rdispls[k] + (size_t)i * (hi - lo);
    const float *root = qm_tree_combine(n_blocks, c->cols, received_value, s, hi - lo);
    memcpy(out + lo, root, (hi - lo) * sizeof(float));
}

/* comm.h qm_comm_stats: what went to and came from other ranks in both steps. */
static void count_tree_sum(qm_comm *c) {
    mpi_state *s = st_of(c);
    long long sent = 0, recv = 0;
    for (int k = 0; k < c->cols; k++)
        if (k != c->col) {
            sent += s->scounts[k] + (long long)s->counts[c->col];
            recv += s->rcounts[k] + (long long)s->counts[k];
        }
    qm_comm_count(c, QM_COLL_ROW_SUM, sent * 4, recv * 4);
}

/* With a deadline the tree sum's two exchanges are point to point (a message to and from each
 * peer with data, tags of their own, MPI's order between two ranks keeping successive sums
 * apart), polled by wait_all_for: cheaper than the non-blocking collectives, about as fast as
 * the blocking ones. */
enum { TAG_COVERS = 0x51a, TAG_SLICES = 0x51b };

/* Waits for reqs[0..n) as wait_for does. */
static qm_status wait_all_for(qm_comm *c, const char *what, int n, MPI_Request *reqs, qm_error *err) {
    const double deadline = qm_now() + c->timeout_s;
    for (unsigned spin = 1;; spin++) {
        int done_all = 0;
        const int rc = MPI_Testall(n, reqs, &done_all, MPI_STATUSES_IGNORE);
        if (rc != MPI_SUCCESS) return mpi_failed(c, what, rc, err);
        if (done_all) return QM_OK;
        if (spin % 256 == 0 && qm_now() > deadline) break;
    }
    return timed_out(c, what, err);
}

/* Posts a receive and a send with each peer that has data for this exchange; *n requests. */
static int post_pairs(qm_comm *c, const float *send, const int *scount, const int *sdispl, float *recv,
                      const int *rcount, const int *rdispl, int tag, MPI_Request *reqs, int *n) {
    mpi_state *s = st_of(c);
    *n = 0;
    for (int k = 0; k < c->cols; k++) {
        if (k == c->col) continue;
        if (rcount[k] > 0 &&
            MPI_Irecv(recv + rdispl[k], rcount[k], MPI_FLOAT, k, tag, s->row, &reqs[(*n)++]) != MPI_SUCCESS)
            return 0;
        if (scount[k] > 0 &&
            MPI_Isend(send + sdispl[k], scount[k], MPI_FLOAT, k, tag, s->row, &reqs[(*n)++]) != MPI_SUCCESS)
            return 0;
    }
    return 1;
}

/* Reduce-scatter's exchange: send [k][node][slice k] to column k, recv [k][node of k][my slice]. */
static qm_status exchange_covers(qm_comm *c, qm_error *err) {
    mpi_state *s = st_of(c);
    if (!polled(c))
        return done(c, "row_tree_sum", MPI_Alltoallv(s->send, s->scounts, s->sdispls, MPI_FLOAT, s->recv, s->rcounts,
                                                     s->rdispls, MPI_FLOAT, s->row), err);
    const int me = c->col;
    if (s->scounts[me] > 0) /* (no buffer at all when nothing is sent: no pointer arithmetic on NULL) */
        memcpy(s->recv + s->rdispls[me], s->send + s->sdispls[me], (size_t)s->scounts[me] * sizeof(float));
    int n = 0;
    if (!post_pairs(c, s->send, s->scounts, s->sdispls, s->recv, s->rcounts, s->rdispls, TAG_COVERS, s->reqs, &n))
        return mpi_failed(c, "row_tree_sum", MPI_ERR_OTHER, err);
    return wait_all_for(c, "row_tree_sum", n, s->reqs, err);
}

/* All-gather of the combined slices into out (each column's slice at its displacement). */
static qm_status gather_slices(qm_comm *c, float *out, qm_error *err) {
    mpi_state *s = st_of(c);
    if (!polled(c))
        return done(c, "row_tree_sum", MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_FLOAT, out, s->counts, s->displs, MPI_FLOAT,
                                                      s->row), err);
    int n = 0;
    for (int k = 0; k < c->cols; k++) { /* column k gets my slice */
        s->gcounts[k] = s->counts[c->col];
        s->gdispls[k] = s->displs[c->col];
    }
    if (!post_pairs(c, out, s->gcounts, s->gdispls, out, s->counts, s->displs, TAG_SLICES, s->reqs, &n))
        return mpi_failed(c, "row_tree_sum", MPI_ERR_OTHER, err);
    return wait_all_for(c, "row_tree_sum", n, s->reqs, err);
}

static qm_status m_row_tree_sum(qm_comm *c, float *partials, int n_blocks, size_t n, float *out, qm_error *err) {
    mpi_state *s = st_of(c);
    qm_status st = check_alive(c, "row_tree_sum", err);
    if (st != QM_OK)
        return st;
    if (n_blocks <= 0 || n == 0 || c->cols == 1) { /* the same on every rank of the row: nothing to exchange */
        qm_comm_count(c, QM_COLL_ROW_SUM, 0, 0);
        if (n_blocks > 0 && n > 0) memcpy(out, partials, n * sizeof(float)); /* one part: its cover is the root */
        else memset(out, 0, n * sizeof(float));
        return QM_OK;
    }
    if ((unsigned long long)n * QM_TREE_MAX_COVER > (unsigned long long)INT_MAX)
        return qm_fail(err, QM_ERR_UNSUPPORTED, "mpi comm: row_tree_sum of %zu floats: over 2^31 / %d floats", n,
                       QM_TREE_MAX_COVER);
    if (!lay_out_tree_sum(c, n_blocks, n)) {
        s->aborted = 1; /* peers are going into the exchange: this device cannot go on */
        snprintf(s->why, sizeof s->why, "out of memory in row_tree_sum");
        return qm_fail(err, QM_ERR_NOMEM, "mpi comm: row_tree_sum: out of memory for %zu floats", n);
    }
    pack_covers(c, partials, n);
    if ((st = exchange_covers(c, err)))
        return st;
    combine_slice(c, n_blocks, n, out);
    if ((st = gather_slices(c, out, err)))
        return st;
    count_tree_sum(c);
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
    long long others = (long long)(c->cols - 1) * (long long)bytes;
    qm_comm_count(c, QM_COLL_ROW_ALLGATHER, others, others);
    const void *sb = send == (char *)recv + (size_t)c->col * bytes ? MPI_IN_PLACE : send;
    MPI_Request req;
    if (!polled(c))
        return done(c, "row_allgather", MPI_Allgather(sb, (int)bytes, MPI_BYTE, recv, (int)bytes, MPI_BYTE, st_of(c)->row),
                    err);
    int rc = MPI_Iallgather(sb, (int)bytes, MPI_BYTE, recv, (int)bytes, MPI_BYTE, st_of(c)->row, &req);
    return wait_for(c, "row_allgather", rc, &req, err);
}

static qm_status m_row_bcast(qm_comm *c, void *buf, size_t bytes, int root_col, qm_error *err) {
    if (root_col < 0 || root_col >= c->cols)
        return qm_fail(err, QM_ERR_ARG, "mpi comm: row_bcast: root column %d outside 0..%d", root_col, c->cols - 1);
    qm_status st = check_bytes(c, "row_bcast", bytes, err);
    if (st != QM_OK)
        return st;
    int root = c->col == root_col;
    qm_comm_count(c, QM_COLL_ROW_BCAST, root ? (long long)(c->cols - 1) * (long long)bytes : 0, root ? 0 : (long long)bytes);
    MPI_Request req;
    if (!polled(c)) return done(c, "row_bcast", MPI_Bcast(buf, (int)bytes, MPI_BYTE, root_col, st_of(c)->row), err);
    return wait_for(c, "row_bcast", MPI_Ibcast(buf, (int)bytes, MPI_BYTE, root_col, st_of(c)->row, &req), &req, err);
}

static qm_status m_world_gather(qm_comm *c, const void *send, size_t bytes, void *recv, qm_error *err) {
    qm_status st = check_bytes(c, "world_gather", bytes, err);
    if (st != QM_OK)
        return st;
    int root = qm_comm_rank(c) == 0;
    long long nd = (long long)c->rows * c->cols;
    qm_comm_count(c, QM_COLL_WORLD, root ? 0 : (long long)bytes, root ? (nd - 1) * (long long)bytes : 0);
    const void *sb = root && send == recv ? MPI_IN_PLACE : send;
    void *rb = root ? recv : NULL;
    MPI_Request req;
    if (!polled(c))
        return done(c, "world_gather", MPI_Gather(sb, (int)bytes, MPI_BYTE, rb, (int)bytes, MPI_BYTE, 0, st_of(c)->world),
                    err);
    int rc = MPI_Igather(sb, (int)bytes, MPI_BYTE, rb, (int)bytes, MPI_BYTE, 0, st_of(c)->world, &req);
    return wait_for(c, "world_gather", rc, &req, err);
}

static qm_status m_world_bcast(qm_comm *c, void *buf, size_t bytes, qm_error *err) {
    qm_status st = check_bytes(c, "world_bcast", bytes, err);
    if (st != QM_OK)
        return st;
    int root = qm_comm_rank(c) == 0;
    long long nd = (long long)c->rows * c->cols;
    qm_comm_count(c, QM_COLL_WORLD, root ? (nd - 1) * (long long)bytes : 0, root ? 0 : (long long)bytes);
    MPI_Request req;
    if (!polled(c)) return done(c, "world_bcast", MPI_Bcast(buf, (int)bytes, MPI_BYTE, 0, st_of(c)->world), err);
    return wait_for(c, "world_bcast", MPI_Ibcast(buf, (int)bytes, MPI_BYTE, 0, st_of(c)->world, &req), &req, err);
}

static void m_abort(qm_comm *c, const char *why) {
    mpi_state *s = st_of(c);
    s->aborted = 1;
    snprintf(s->why, sizeof s->why, "%s", why ? why : "aborted");
}

static const qm_comm_ops mpi_ops = {
    .row_barrier = m_row_barrier,
    .row_tree_sum = m_row_tree_sum,
    .row_allgather = m_row_allgather,
    .row_bcast = m_row_bcast,
    .world_barrier = m_world_barrier,
    .world_gather = m_world_gather,
    .world_bcast = m_world_bcast,
    .abort = m_abort,
};

#endif
