/* threads backend of comm.h: the R*C devices are threads of one process.
 *
 * Every collective is "publish, barrier, work, barrier": each device publishes pointers to
 * its own buffers in its slot, waits for the group, reads (or writes) its peers' buffers
 * directly, and waits again so that no device returns (and reuses its buffers or its slot)
 * while a peer still touches them. No data is staged in shared buffers, so nothing grows.
 *
 * row_tree_sum: after the first barrier, device c combines its slice (tree_sum.h qm_tree_slice)
 * of the n elements from every device's cover values in the fixed tree order (tree_sum.h),
 * reading them from their owners' partials and adding in place there (the slices are
 * disjoint, so no two devices touch the same floats), and writes that slice into the out of
 * every device of the row. The order of the additions of one element is fixed by the tree
 * alone, so the bits do not depend on C.
 */
#include "mesh/barrier.h"
#include "mesh/comm.h"
#include "mesh/tree_sum.h"

#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_DEVICES 65536

typedef struct {
    const void *src;  /* send buffer / bcast buffer */
    float *sums;      /* row_tree_sum: cover values [m][n] */
    void *dst;        /* out / recv buffer */
    size_t n;         /* elements or bytes */
    int n_blocks, root;
} slot;

typedef struct dev {
    _Alignas(QM_CACHE_LINE) slot s; /* published by this device, read by peers */
    qm_comm comm;
    struct qm_thread_mesh *m;
    qm_coop_task *task; /* the cooperative task the device runs in; NULL: a thread of its own */
} dev;

typedef struct {
    qm_barrier bar;
} row_state;

struct qm_thread_mesh {
    int rows, cols;
    qm_barrier world_bar;
    row_state *row;      /* [rows] */
    dev *devs;           /* [rows*cols] */
    atomic_int aborted;  /* set (after abort_why is written) when a device aborts */
    atomic_int abort_claim;
    int abort_rank;
    char abort_why[256];
};

static const qm_comm_ops threads_ops;

static void *alloc_lines(size_t bytes) {
    size_t sz = (bytes + QM_CACHE_LINE - 1) / QM_CACHE_LINE * QM_CACHE_LINE;
    void *p = aligned_alloc(QM_CACHE_LINE, sz ? sz : QM_CACHE_LINE);
    if (p)
        memset(p, 0, sz ? sz : QM_CACHE_LINE);
    return p;
}

qm_status qm_thread_mesh_create(int rows, int cols, qm_thread_mesh **out, qm_error *err) {
    *out = NULL;
    if (rows < 1 || cols < 1 || (long)rows * cols > MAX_DEVICES)
        return qm_fail(err, QM_ERR_ARG, "threads comm: mesh %dx%d: rows and cols must be >= 1 with at most %d devices",
                       rows, cols, MAX_DEVICES);
    int nd = rows * cols;
    qm_thread_mesh *m = alloc_lines(sizeof *m);
    if (!m)
        return qm_fail(err, QM_ERR_NOMEM, "threads comm: mesh %dx%d: out of memory", rows, cols);
    m->row = alloc_lines(sizeof(row_state) * (size_t)rows);
    m->devs = alloc_lines(sizeof(dev) * (size_t)nd);
    if (!m->row || !m->devs) {
        qm_thread_mesh_destroy(m);
        return qm_fail(err, QM_ERR_NOMEM, "threads comm: mesh %dx%d: out of memory", rows, cols);
    }
    m->rows = rows;
    m->cols = cols;
    atomic_init(&m->aborted, 0);
    atomic_init(&m->abort_claim, 0);
    m->abort_rank = -1;
    /* Spin (about a microsecond per 10 pauses) only while every device can have its own core;
     * beyond that a spinning waiter only delays the peer it waits for. */
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    unsigned spin = (ncpu > 0 && nd <= ncpu) ? 4000u : 64u;
    qm_barrier_init(&m->world_bar, (unsigned)nd, spin);
    for (int r = 0; r < rows; r++)
        qm_barrier_init(&m->row[r].bar, (unsigned)cols, spin);
    for (int i = 0; i < nd; i++) {
        dev *d = &m->devs[i];
        d->m = m;
        d->comm.ops = &threads_ops;
        d->comm.rows = rows;
        d->comm.cols = cols;
        d->comm.row = i / cols;
        d->comm.col = i % cols;
        d->comm.impl = d;
    }
    *out = m;
    return QM_OK;
}

qm_comm *qm_thread_mesh_comm(qm_thread_mesh *m, int rank) {
    if (!m || rank < 0 || rank >= m->rows * m->cols)
        return NULL;
    return &m->devs[rank].comm;
}

void qm_thread_mesh_destroy(qm_thread_mesh *m) {
    if (!m)
        return;
    free(m->row);
    free(m->devs);
    free(m);
}

/* ---- helpers ---- */

static dev *dev_of(qm_comm *c) { return (dev *)c->impl; }

static qm_status comm_failed(qm_comm *c, const char *what, qm_error *err) {
    qm_thread_mesh *m = dev_of(c)->m;
    if (atomic_load(&m->aborted)) {
        int r = m->abort_rank;
        return qm_fail(err, QM_ERR_COMM, "threads comm: %s on device (%d,%d) of mesh %dx%d failed: device (%d,%d) aborted: %s",
                       what, c->row, c->col, c->rows, c->cols, r / m->cols, r % m->cols, m->abort_why);
    }
    return qm_fail(err, QM_ERR_COMM, "threads comm: %s on device (%d,%d) failed", what, c->row, c->col);
}

static qm_status row_wait(qm_comm *c, const char *what, qm_error *err) {
    qm_thread_mesh *m = dev_of(c)->m;
    if (qm_barrier_wait(&m->row[c->row].bar, &m->aborted, dev_of(c)->task) != QM_OK)
        return comm_failed(c, what, err);
    return QM_OK;
}

static qm_status world_wait(qm_comm *c, const char *what, qm_error *err) {
    qm_thread_mesh *m = dev_of(c)->m;
    if (qm_barrier_wait(&m->world_bar, &m->aborted, dev_of(c)->task) != QM_OK)
        return comm_failed(c, what, err);
    return QM_OK;
}

static const slot *peer(qm_comm *c, int col) { return &dev_of(c)->m->devs[c->row * c->cols + col].s; }

/* ---- collectives ---- */

static qm_status t_row_barrier(qm_comm *c, qm_error *err) {
    qm_comm_count(c, QM_COLL_ROW_BARRIER, 0, 0);
    return row_wait(c, "row_barrier", err);
}

static qm_status t_world_barrier(qm_comm *c, qm_error *err) {
    qm_comm_count(c, QM_COLL_WORLD, 0, 0);
    return world_wait(c, "world_barrier", err);
}

/* Checks that all devices of the row called row_tree_sum with the same n and n_blocks. Every
 * device reaches the same verdict (it reads the same slots). */
static qm_status check_tree_sum(qm_comm *c, qm_error *err) {
    const slot *me = peer(c, c->col);
    for (int k = 0; k < c->cols; k++) {
        const slot *p = peer(c, k);
        if (p->n != me->n || p->n_blocks != me->n_blocks || p->n_blocks < 0)
            return qm_fail(err, QM_ERR_ARG,
                           "threads comm: row_tree_sum on row %d: device %d has n=%zu, n_blocks=%d, device %d has n=%zu, "
                           "n_blocks=%d (every device must pass the same)",
                           c->row, k, p->n, p->n_blocks, c->col, me->n, me->n_blocks);
    }
    return QM_OK;
}

typedef struct {
    qm_comm *c;
    int n_blocks;
    size_t n, lo, len;      /* floats per value; this device's slice [lo, lo + len) */
    int part, index;        /* the last cover node asked for: part's index-th */
    long long floats_recv;  /* floats of other devices' cover values read */
} cover_values;

/* The cover nodes come left to right (tree_sum.h), so a part's come one after another. */
static float *peer_cover_value(void *ctx, int leaf) {
    cover_values *v = ctx;
    int k = qm_tree_part_of(v->n_blocks, v->c->cols, leaf);
    v->index = k == v->part ? v->index + 1 : 0;
    v->part = k;
    if (k != v->c->col) v->floats_recv += (long long)v->len;
    return peer(v->c, k)->sums + (size_t)v->index * v->n + v->lo;
}

/* This device's slice of the tree sum, written into every device's out; returns the floats of
 * other devices' cover values it read. */
static long long combine_slice(qm_comm *c, int n_blocks, size_t n) {
    size_t lo, hi;
    qm_tree_slice(n, c->cols, c->col, &lo, &hi);
    if (lo >= hi) return 0;
    cover_values v = {c, n_blocks, n, lo, hi - lo, -1, 0, 0};
    const float *root = qm_tree_combine(n_blocks, c->cols, peer_cover_value, &v, hi - lo);
    for (int k = 0; k < c->cols; k++) {
        float *to = (float *)peer(c, k)->dst + lo;
        if (root) memcpy(to, root, (hi - lo) * sizeof(float));
        else memset(to, 0, (hi - lo) * sizeof(float));
    }
    return v.floats_recv;
}

/* The bytes an exchange by messages would move (comm.h qm_comm_stats), as the MPI backend
 * sends them: this device's cover values go to the owner of each other slice, its combined
 * slice to every other device; it receives the other covers' values of its slice (floats_recv)
 * and the other slices. */
static void count_tree_sum(qm_comm *c, int n_blocks, size_t n, long long floats_recv) {
    qm_tree_node cover[QM_TREE_MAX_COVER];
    long long m = qm_tree_cover(n_blocks, c->cols, c->col, cover);
    size_t lo, hi;
    qm_tree_slice(n, c->cols, c->col, &lo, &hi);
    long long mine = (long long)(hi - lo), others = (long long)n - mine;
    long long sent = m * others + (long long)(c->cols - 1) * mine, recv = floats_recv + others;
    if (n_blocks == 0) sent = recv = 0; /* every device knows the sum is 0: nothing to move */
    qm_comm_count(c, QM_COLL_ROW_SUM, sent * 4, recv * 4);
}

static qm_status t_row_tree_sum(qm_comm *c, float *partials, int n_blocks, size_t n, float *out, qm_error *err) {
    dev *d = dev_of(c);
    d->s = (slot){.sums = partials, .dst = out, .n = n, .n_blocks = n_blocks};
    qm_status st = row_wait(c, "row_tree_sum", err);
    if (st != QM_OK)
        return st;
    st = check_tree_sum(c, err);
    if (st == QM_OK) {
        long long floats_recv = n > 0 ? combine_slice(c, n_blocks, n) : 0;
        count_tree_sum(c, n_blocks, n, floats_recv);
    }
    qm_error e2;
    qm_status st2 = row_wait(c, "row_tree_sum", st == QM_OK ? err : &e2);
    return st != QM_OK ? st : st2;
}

static qm_status check_bytes(qm_comm *c, const char *what, qm_error *err) {
    const slot *me = peer(c, c->col);
    for (int k = 0; k < c->cols; k++) {
        const slot *p = peer(c, k);
        if (p->n != me->n || p->root != me->root)
            return qm_fail(err, QM_ERR_ARG, "threads comm: %s on row %d: device %d passed %zu bytes (root %d), device %d passed %zu (root %d)",
                           what, c->row, k, p->n, p->root, c->col, me->n, me->root);
    }
    return QM_OK;
}

static qm_status t_row_allgather(qm_comm *c, const void *send, size_t bytes, void *recv, qm_error *err) {
    dev *d = dev_of(c);
    d->s = (slot){.src = send, .dst = recv, .n = bytes};
    long long others = (long long)(c->cols - 1) * (long long)bytes;
    qm_comm_count(c, QM_COLL_ROW_ALLGATHER, others, others);
    qm_status st = row_wait(c, "row_allgather", err);
    if (st != QM_OK)
        return st;
    st = check_bytes(c, "row_allgather", err);
    if (st == QM_OK && bytes > 0)
        for (int k = 0; k < c->cols; k++) {
            char *to = (char *)recv + (size_t)k * bytes;
            const void *from = peer(c, k)->src;
            if (to != from)
                memcpy(to, from, bytes);
        }
    qm_error e2;
    qm_status st2 = row_wait(c, "row_allgather", st == QM_OK ? err : &e2);
    return st != QM_OK ? st : st2;
}

static qm_status t_row_bcast(qm_comm *c, void *buf, size_t bytes, int root_col, qm_error *err) {
    if (root_col < 0 || root_col >= c->cols)
        return qm_fail(err, QM_ERR_ARG, "threads comm: row_bcast: root column %d outside 0..%d", root_col, c->cols - 1);
    dev *d = dev_of(c);
    d->s = (slot){.src = buf, .dst = buf, .n = bytes, .root = root_col};
    int root = c->col == root_col;
    qm_comm_count(c, QM_COLL_ROW_BCAST, root ? (long long)(c->cols - 1) * (long long)bytes : 0, root ? 0 : (long long)bytes);
    qm_status st = row_wait(c, "row_bcast", err);
    if (st != QM_OK)
        return st;
    st = check_bytes(c, "row_bcast", err);
    if (st == QM_OK && bytes > 0 && c->col != root_col)
        memcpy(buf, peer(c, root_col)->src, bytes);
    qm_error e2;
    qm_status st2 = row_wait(c, "row_bcast", st == QM_OK ? err : &e2);
    return st != QM_OK ? st : st2;
}

static qm_status t_world_gather(qm_comm *c, const void *send, size_t bytes, void *recv, qm_error *err) {
    dev *d = dev_of(c);
    qm_thread_mesh *m = d->m;
    d->s = (slot){.src = send, .dst = recv, .n = bytes};
    int nd = m->rows * m->cols, root = qm_comm_rank(c) == 0;
    qm_comm_count(c, QM_COLL_WORLD, root ? 0 : (long long)bytes, root ? (long long)(nd - 1) * (long long)bytes : 0);
    qm_status st = world_wait(c, "world_gather", err);
    if (st != QM_OK)
        return st;
    for (int k = 0; k < nd && st == QM_OK; k++)
        if (m->devs[k].s.n != bytes)
            st = qm_fail(err, QM_ERR_ARG, "threads comm: world_gather: rank %d passed %zu bytes, rank %d passed %zu", k,
                         m->devs[k].s.n, qm_comm_rank(c), bytes);
    if (st == QM_OK && qm_comm_rank(c) == 0 && bytes > 0) {
        if (!recv)
            st = qm_fail(err, QM_ERR_ARG, "threads comm: world_gather: recv is NULL on rank 0");
        else
            for (int k = 0; k < nd; k++) {
                char *to = (char *)recv + (size_t)k * bytes;
                if (to != m->devs[k].s.src)
                    memcpy(to, m->devs[k].s.src, bytes);
            }
    }
    qm_error e2;
    qm_status st2 = world_wait(c, "world_gather", st == QM_OK ? err : &e2);
    return st != QM_OK ? st : st2;
}

static qm_status t_world_bcast(qm_comm *c, void *buf, size_t bytes, qm_error *err) {
    dev *d = dev_of(c);
    qm_thread_mesh *m = d->m;
    d->s = (slot){.src = buf, .dst = buf, .n = bytes};
    int nd = m->rows * m->cols, root = qm_comm_rank(c) == 0;
    qm_comm_count(c, QM_COLL_WORLD, root ? (long long)(nd - 1) * (long long)bytes : 0, root ? 0 : (long long)bytes);
    qm_status st = world_wait(c, "world_bcast", err);
    if (st != QM_OK)
        return st;
    for (int k = 0; k < nd && st == QM_OK; k++)
        if (m->devs[k].s.n != bytes)
            st = qm_fail(err, QM_ERR_ARG, "threads comm: world_bcast: rank %d passed %zu bytes, rank %d passed %zu", k,
                         m->devs[k].s.n, qm_comm_rank(c), bytes);
    if (st == QM_OK && bytes > 0 && qm_comm_rank(c) != 0)
        memcpy(buf, m->devs[0].s.src, bytes);
    qm_error e2;
    qm_status st2 = world_wait(c, "world_bcast", st == QM_OK ? err : &e2);
    return st != QM_OK ? st : st2;
}

static void t_abort(qm_comm *c, const char *why) {
    qm_thread_mesh *m = dev_of(c)->m;
    int expected = 0;
    if (atomic_compare_exchange_strong(&m->abort_claim, &expected, 1)) {
        m->abort_rank = qm_comm_rank(c);
        size_t len = why ? strlen(why) : 0;
        if (len >= sizeof m->abort_why)
            len = sizeof m->abort_why - 1;
        if (len)
            memcpy(m->abort_why, why, len);
        m->abort_why[len] = '\0';
        atomic_store(&m->aborted, 1); /* after the message: readers see a complete one */
        qm_barrier_poison(&m->world_bar);
        for (int r = 0; r < m->rows; r++)
            qm_barrier_poison(&m->row[r].bar);
    } else {
        while (!atomic_load(&m->aborted)) /* another device is aborting right now */
            sched_yield();
    }
}

static void t_set_task(qm_comm *c, qm_coop_task *task) { dev_of(c)->task = task; }

static const qm_comm_ops threads_ops = {
    .row_barrier = t_row_barrier,
    .row_tree_sum = t_row_tree_sum,
    .row_allgather = t_row_allgather,
    .row_bcast = t_row_bcast,
    .world_barrier = t_world_barrier,
    .world_gather = t_world_gather,
    .world_bcast = t_world_bcast,
    .abort = t_abort,
    .set_task = t_set_task,
};
