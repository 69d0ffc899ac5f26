/* threads backend of comm.h: the R*C devices are threads of one process.
 *
 * Every collective is "publish, barrier, work, barrier": each device publishes pointers to
 * its own buffers in its slot, waits for the group, reads (or writes) its peers' buffers
 * directly, and waits again so that no device returns (and reuses its buffers or its slot)
 * while a peer still touches them. No data is staged in shared buffers, so nothing grows.
 *
 * row_ordered_sum: after the first barrier, device c sums a contiguous slice of the n
 * elements over all n_blocks blocks in block order (reading the blocks from their owners'
 * partials), and writes that slice into the out of every device of the row. The order of
 * the additions of one element is fixed by the block order alone, so the bits do not depend
 * on C.
 */
#include "mesh/barrier.h"
#include "mesh/comm.h"

#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SLICE_ALIGN 16 /* floats per cache line: slices start on a line, no false sharing */
#define MAX_DEVICES 65536

typedef struct {
    const void *src;  /* partials / send buffer / bcast buffer */
    void *dst;        /* out / recv buffer */
    size_t n;         /* elements or bytes */
    int nb, b0, n_blocks, root;
} slot;

typedef struct dev {
    _Alignas(QM_CACHE_LINE) slot s; /* published by this device, read by peers */
    qm_comm comm;
    struct qm_thread_mesh *m;
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
    if (qm_barrier_wait(&m->row[c->row].bar, &m->aborted) != QM_OK)
        return comm_failed(c, what, err);
    return QM_OK;
}

static qm_status world_wait(qm_comm *c, const char *what, qm_error *err) {
    qm_thread_mesh *m = dev_of(c)->m;
    if (qm_barrier_wait(&m->world_bar, &m->aborted) != QM_OK)
        return comm_failed(c, what, err);
    return QM_OK;
}

static const slot *peer(qm_comm *c, int col) { return &dev_of(c)->m->devs[c->row * c->cols + col].s; }

/* ---- collectives ---- */

static qm_status t_row_barrier(qm_comm *c, qm_error *err) { return row_wait(c, "row_barrier", err); }

static qm_status t_world_barrier(qm_comm *c, qm_error *err) { return world_wait(c, "world_barrier", err); }

/* Checks that all devices of the row called row_ordered_sum with the same n and n_blocks and
 * that the blocks are assigned contiguously in column order. Every device reaches the same
 * verdict (it reads the same slots). */
static qm_status check_blocks(qm_comm *c, qm_error *err) {
    const slot *me = peer(c, c->col);
    int next = 0;
    for (int k = 0; k < c->cols; k++) {
        const slot *p = peer(c, k);
        if (p->n != me->n || p->n_blocks != me->n_blocks || p->nb < 0 || p->b0 != next)
            return qm_fail(err, QM_ERR_ARG,
                           "threads comm: row_ordered_sum on row %d: device %d has n=%zu, n_blocks=%d, blocks [%d, %d), "
                           "expected n=%zu, n_blocks=%d, blocks starting at %d (contiguous in column order)",
                           c->row, k, p->n, p->n_blocks, p->b0, p->b0 + p->nb, me->n, me->n_blocks, next);
        next += p->nb;
    }
    if (next != me->n_blocks)
        return qm_fail(err, QM_ERR_ARG, "threads comm: row_ordered_sum on row %d: the devices hold %d blocks, n_blocks is %d",
                       c->row, next, me->n_blocks);
    return QM_OK;
}

static qm_status t_row_ordered_sum(qm_comm *c, const float *partials, int nb, int b0, int n_blocks, size_t n,
                                   float *out, qm_error *err) {
    dev *d = dev_of(c);
    d->s = (slot){.src = partials, .dst = out, .n = n, .nb = nb, .b0 = b0, .n_blocks = n_blocks};
    qm_status st = row_wait(c, "row_ordered_sum", err);
    if (st != QM_OK)
        return st;
    st = check_blocks(c, err);
    if (st == QM_OK && n > 0) {
        size_t per = (n + (size_t)c->cols - 1) / (size_t)c->cols;
        per = (per + SLICE_ALIGN - 1) / SLICE_ALIGN * SLICE_ALIGN;
        size_t lo = per * (size_t)c->col, hi = lo + per;
        if (lo > n)
            lo = n;
        if (hi > n)
            hi = n;
        if (lo < hi) {
            float *acc = out + lo;
            size_t len = hi - lo;
            int first = 1;
            for (int k = 0; k < c->cols; k++) {
                const slot *p = peer(c, k);
                for (int j = 0; j < p->nb; j++) {
                    const float *blk = (const float *)p->src + (size_t)j * n + lo;
                    if (first) {
                        memcpy(acc, blk, len * sizeof(float));
                        first = 0;
                    } else {
                        for (size_t i = 0; i < len; i++)
                            acc[i] += blk[i];
                    }
                }
            }
            if (first)
                memset(acc, 0, len * sizeof(float));
            for (int k = 0; k < c->cols; k++)
                if (k != c->col)
                    memcpy((float *)peer(c, k)->dst + lo, acc, len * sizeof(float));
        }
    }
    qm_error e2;
    qm_status st2 = row_wait(c, "row_ordered_sum", st == QM_OK ? err : &e2);
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
    qm_status st = world_wait(c, "world_gather", err);
    if (st != QM_OK)
        return st;
    int nd = m->rows * m->cols;
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
    qm_status st = world_wait(c, "world_bcast", err);
    if (st != QM_OK)
        return st;
    int nd = m->rows * m->cols;
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

static const qm_comm_ops threads_ops = {
    .row_barrier = t_row_barrier,
    .row_ordered_sum = t_row_ordered_sum,
    .row_allgather = t_row_allgather,
    .row_bcast = t_row_bcast,
    .world_barrier = t_world_barrier,
    .world_gather = t_world_gather,
    .world_bcast = t_world_bcast,
    .abort = t_abort,
};
