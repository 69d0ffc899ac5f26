/* threads backend of comm.h: every collective on meshes 1x1 .. 8x4 and 1x32, tree sums bit for
 * bit against the scalar reference (mesh/tree_sum.h) with the volume each device moves, the
 * tree walk itself over many leaf and part counts, abort without hangs, blocking barriers. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "mesh/comm.h"
#include "mpi/comm_testdata.h"

static const int meshes[][2] = {{1, 1}, {1, 2}, {2, 2}, {1, 3}, {1, 7}, {1, 8}, {8, 4}, {1, 32}};
#define N_MESHES (int)(sizeof meshes / sizeof meshes[0])

static double now_s(int clock) {
    struct timespec ts;
    clock_gettime(clock, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* ---- running one function on every device of a mesh, with a hang watchdog ---- */

typedef struct run run;
typedef void (*device_fn)(run *r, qm_comm *c);

struct run {
    qm_thread_mesh *mesh;
    device_fn fn;
    void *arg;
    atomic_int failures;   /* checks that failed on any device */
    atomic_int finished;
    char first_failure[512];
    atomic_int have_failure;
};

typedef struct {
    run *r;
    int rank;
} thread_arg;

static void device_fail(run *r, qm_comm *c, const char *fmt, ...) {
    atomic_fetch_add(&r->failures, 1);
    int expected = 0;
    if (atomic_compare_exchange_strong(&r->have_failure, &expected, 1)) {
        int k = snprintf(r->first_failure, sizeof r->first_failure, "mesh %dx%d device (%d,%d): ", c->rows, c->cols,
                         c->row, c->col);
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(r->first_failure + k, sizeof r->first_failure - (size_t)k, fmt, ap);
        va_end(ap);
    }
}

static void *thread_main(void *p) {
    thread_arg *a = p;
    a->r->fn(a->r, qm_thread_mesh_comm(a->r->mesh, a->rank));
    atomic_fetch_add(&a->r->finished, 1);
    return NULL;
}

/* Runs fn on every device of an R x C mesh; fails the test on a device failure or a hang. */
static void run_mesh(int rows, int cols, device_fn fn, void *arg, double timeout_s) {
    run r = {.fn = fn, .arg = arg};
    qm_error err = {0};
    assert_int_equal(qm_thread_mesh_create(rows, cols, &r.mesh, &err), QM_OK);
    int nd = rows * cols;
    pthread_t *th = calloc((size_t)nd, sizeof *th);
    thread_arg *ta = calloc((size_t)nd, sizeof *ta);
    assert_non_null(th);
    assert_non_null(ta);
    for (int i = 0; i < nd; i++) {
        ta[i] = (thread_arg){&r, i};
        assert_int_equal(pthread_create(&th[i], NULL, thread_main, &ta[i]), 0);
    }
    double t0 = now_s(CLOCK_MONOTONIC);
    while (atomic_load(&r.finished) < nd) {
        if (now_s(CLOCK_MONOTONIC) - t0 > timeout_s)
            fail_msg("mesh %dx%d: %d of %d devices still running after %.0f s (hang)", rows, cols,
                     nd - atomic_load(&r.finished), nd, timeout_s);
        usleep(1000);
    }
    for (int i = 0; i < nd; i++)
        pthread_join(th[i], NULL);
    free(th);
    free(ta);
    qm_thread_mesh_destroy(r.mesh);
    if (atomic_load(&r.failures))
        fail_msg("%d failed checks; first: %s", atomic_load(&r.failures), r.first_failure);
}

/* ---- the tree walk, in one thread ---- */

typedef struct {
    float *values; /* [n_leaves][n]: part k's i-th cover value at row (part k's first leaf + i) */
    size_t n, lo;
} all_covers;

static float *all_cover_value(void *ctx, int leaf) {
    all_covers *a = ctx;
    (void)leaf; /* cover nodes come left to right: the next row */
    float *v = a->values + a->lo;
    a->values += a->n;
    return v;
}

/* Whether [first, first + count) is a node of the halving tree under node [f, f + c). */
static int is_node(int f, int c, int first, int count) {
    if (f == first && c == count) return 1;
    if (c < 2 || first < f || first + count > f + c) return 0;
    return is_node(f, c / 2, first, count) || is_node(f + c / 2, c - c / 2, first, count);
}

/* One leaf count and part count: the covers tile the leaves in order, each node lies inside its
 * part and is a real node of the tree, no cover has more than max(1, 2*top - 2) nodes, the
 * reduction uses no more slots than the part's leaves; local reduction (groups of 1, 3 and all
 * leaves) + combination of a slice equals the reference. */
static void check_tree(int leaves, int parts, float *values, float *scratch, const float *ref) {
    const size_t n = 5;
    int top = qm_tree_top(leaves), most = 2 * top - 2 > 1 ? 2 * top - 2 : 1, next = 0, row = 0;
    for (int k = 0; k < parts; k++) {
        qm_tree_node cover[QM_TREE_MAX_COVER];
        int m = qm_tree_cover(leaves, parts, k, cover), b0, nb;
        td_assign(leaves, parts, k, &b0, &nb);
        assert_true(m <= most && (m == 0) == (nb == 0));
        for (int i = 0; i < m; i++) {
            int end = cover[i].first + cover[i].count;
            assert_int_equal(cover[i].first, next);
            assert_true(is_node(0, leaves, cover[i].first, cover[i].count));
            assert_true(cover[i].first >= b0 && end <= b0 + nb && end > cover[i].first);
            next = end;
        }
        if ((parts & (parts - 1)) == 0 && leaves % parts == 0) /* then every part is one node */
            assert_true(m == (nb > 0));
        int group = (leaves + parts) % 3 == 0 ? 1 : (leaves + parts) % 3 == 1 ? 3 : nb;
        assert_true(qm_tree_part_slots(leaves, parts, k, group) <= nb);
        td_fill_cover(11u + (uint32_t)leaves, leaves, parts, k, n, group, scratch);
        memcpy(values + (size_t)row * n, scratch, (size_t)m * n * sizeof(float));
        row += m;
    }
    assert_int_equal(next, leaves);
    all_covers a = {values, n, 1}; /* one slice [1, 4) of each value */
    const float *root = qm_tree_combine(leaves, parts, all_cover_value, &a, 3);
    if (leaves == 0) {
        assert_null(root);
        return;
    }
    if (memcmp(root, ref + 1, 3 * sizeof(float)) != 0)
        fail_msg("%d leaves over %d parts: %a, reference %a", leaves, parts, (double)root[0], (double)ref[1]);
}

/* Every leaf count 0..300 over 1..40 parts. */
static void test_tree_walk(void **state) {
    (void)state;
    float *values = malloc(300 * 5 * sizeof(float)), *scratch = malloc(300 * 5 * sizeof(float)), ref[5];
    assert_non_null(values);
    assert_non_null(scratch);
    for (int leaves = 0; leaves <= 300; leaves++) {
        int top = qm_tree_top(leaves);
        assert_true(leaves <= 1 ? top == 0 : (1 << (top - 1)) < leaves && leaves <= (1 << top));
        assert_true(td_reference(11u + (uint32_t)leaves, leaves, 5, ref));
        for (int parts = 1; parts <= 40; parts++) check_tree(leaves, parts, values, scratch, ref);
    }
    free(values);
    free(scratch);
}

/* ---- row_tree_sum ---- */

typedef struct {
    int n_blocks;
    size_t n;
    uint32_t seed;
} sum_case;

static const sum_case sum_cases[] = {
    {5, 896, 1},   /* 5 blocks over 7, 8 or 32 devices: some hold none */
    {14, 896, 2},  /* heads of a 0.5B o_proj */
    {76, 896, 3},  /* 64-column blocks of a 0.5B down_proj */
    {28, 3584, 4}, /* heads of a 7B o_proj */
    {64, 96, 5},   /* a power of two: one node per device on 1x2, 1x8, 1x32 */
    {296, 64, 6},  /* blocks of a 7B down_proj */
    {14, 1000, 7}, {3, 1, 8}, {1, 100, 9}, {0, 17, 10}, {9, 257, 11}, {2, 5, 12},
};
#define N_SUM_CASES (int)(sizeof sum_cases / sizeof sum_cases[0])

/* One case on one device: the result against the reference, the bytes moved against the bounds. */
static void tree_sum_case(run *r, qm_comm *c, int k) {
    const sum_case *sc = &sum_cases[k];
    int b0, nb;
    td_assign(sc->n_blocks, c->cols, c->col, &b0, &nb);
    uint32_t seed = sc->seed + 1000u * (uint32_t)c->row; /* rows use different data sets: replicas are independent */
    float *part = malloc(((size_t)nb * sc->n + 1) * sizeof(float)); /* [nb][n] */
    float *out = malloc(sc->n * sizeof(float)), *ref = malloc(sc->n * sizeof(float));
    if (!part || !out || !ref || !td_reference(seed, sc->n_blocks, sc->n, ref)) {
        device_fail(r, c, "out of memory");
    } else {
        td_fill_cover(seed, sc->n_blocks, c->cols, c->col, sc->n, 1 + k % 3, part); /* groups of 1..3 leaves */
        memset(out, 0xff, sc->n * sizeof(float));
        qm_error err = {0};
        qm_comm_stats before = c->stats;
        qm_status st = c->ops->row_tree_sum(c, part, sc->n_blocks, sc->n, out, &err);
        long long sent = c->stats.bytes_sent[QM_COLL_ROW_SUM] - before.bytes_sent[QM_COLL_ROW_SUM];
        long long recv = c->stats.bytes_recv[QM_COLL_ROW_SUM] - before.bytes_recv[QM_COLL_ROW_SUM];
        long long bound = td_volume_bound(sc->n_blocks, c->cols, sc->n);
        if (st != QM_OK) {
            device_fail(r, c, "row_tree_sum case %d: %s", k, err.msg);
        } else if (memcmp(out, ref, sc->n * sizeof(float)) != 0) {
            size_t i = 0;
            while (memcmp(&out[i], &ref[i], sizeof(float)) == 0) i++;
            device_fail(r, c, "row_tree_sum case %d (n_blocks %d, n %zu): out[%zu] = %a, reference %a", k, sc->n_blocks,
                        sc->n, i, (double)out[i], (double)ref[i]);
        } else if (sent > bound || recv > bound || c->stats.calls[QM_COLL_ROW_SUM] != before.calls[QM_COLL_ROW_SUM] + 1) {
            device_fail(r, c, "row_tree_sum case %d (n_blocks %d, n %zu): sent %lld, received %lld bytes, bound %lld", k,
                        sc->n_blocks, sc->n, sent, recv, bound);
        }
    }
    free(part);
    free(out);
    free(ref);
}

static void tree_sum_device(run *r, qm_comm *c) {
    for (int rep = 0; rep < 2; rep++)
        for (int k = 0; k < N_SUM_CASES; k++) tree_sum_case(r, c, k);
}

static void test_tree_sum_bitwise(void **state) {
    (void)state;
    for (int m = 0; m < N_MESHES; m++)
        run_mesh(meshes[m][0], meshes[m][1], tree_sum_device, NULL, 60);
}

/* Bytes each device sends per row sum of 896 floats (one decode token of 0.5B):
 * sent[k][col] for the o_proj (k = 0) and down_proj (k = 1) block counts. */
static void volume_device(run *r, qm_comm *c) {
    long long (*sent)[32] = r->arg;
    for (int k = 1; k <= 2; k++) {
        const sum_case *sc = &sum_cases[k];
        float *part = malloc(((size_t)sc->n_blocks * sc->n + 1) * sizeof(float)), *out = malloc(sc->n * sizeof(float));
        td_fill_cover(sc->seed, sc->n_blocks, c->cols, c->col, sc->n, sc->n_blocks, part);
        qm_error err = {0};
        long long before = c->stats.bytes_sent[QM_COLL_ROW_SUM];
        if (c->ops->row_tree_sum(c, part, sc->n_blocks, sc->n, out, &err) != QM_OK) device_fail(r, c, "%s", err.msg);
        sent[k - 1][c->col] = c->stats.bytes_sent[QM_COLL_ROW_SUM] - before;
        free(part);
        free(out);
    }
}

static void test_tree_sum_volume(void **state) {
    (void)state;
    const int cols[] = {2, 3, 4, 7, 8, 32};
    for (int k = 0; k < 6; k++) {
        long long per_dev[2][32] = {{0}}, sent[2] = {0, 0};
        run_mesh(1, cols[k], volume_device, per_dev, 60);
        for (int j = 0; j < 2; j++)
            for (int col = 0; col < cols[k]; col++) sent[j] = per_dev[j][col] > sent[j] ? per_dev[j][col] : sent[j];
        printf("  1x%d: most bytes a device sends per row sum of 896 floats: o_proj (14 blocks) %lld (%.2f x 896 floats), "
               "down_proj (76 blocks) %lld (%.2f x)\n",
               cols[k], sent[0], (double)sent[0] / 3584.0, sent[1], (double)sent[1] / 3584.0);
    }
}

/* The data really makes the order visible: the old chain order gives other bits than the tree. */
static void test_data_is_order_sensitive(void **state) {
    (void)state;
    for (int k = 0; k < N_SUM_CASES; k++) {
        const sum_case *sc = &sum_cases[k];
        if (sc->n_blocks < 9 || sc->n < 32) /* a few blocks share most additions in both orders */
            continue;
        float *a = malloc(sc->n * sizeof(float)), *b = malloc(sc->n * sizeof(float));
        assert_true(td_reference(sc->seed, sc->n_blocks, sc->n, a));
        td_chain(sc->seed, sc->n_blocks, sc->n, b);
        size_t diff = 0;
        for (size_t i = 0; i < sc->n; i++)
            diff += memcmp(&a[i], &b[i], sizeof(float)) != 0;
        printf("  data set %d (n_blocks %d, n %zu): block order instead of the tree changes %zu of %zu elements\n", k,
               sc->n_blocks, sc->n, diff, sc->n);
        assert_true(diff * 4 > sc->n); /* more than a quarter */
        free(a);
        free(b);
    }
}

/* ---- allgather, bcast, world_gather, interleaved ---- */

static uint8_t pattern(int rank, int round, size_t i) { return (uint8_t)(td_hash((uint32_t)(rank * 7919 + round * 104729) ^ (uint32_t)i) & 0xff); }

static void data_device(run *r, qm_comm *c) {
    qm_error err = {0};
    const size_t bytes = 13;
    int rank = qm_comm_rank(c), nd = c->rows * c->cols;
    uint8_t send[13], *recv = malloc(bytes * (size_t)nd);
    for (int round = 0; round < 20; round++) {
        /* allgather */
        for (size_t i = 0; i < bytes; i++)
            send[i] = pattern(rank, round, i);
        if (c->ops->row_allgather(c, send, bytes, recv, &err) != QM_OK) {
            device_fail(r, c, "row_allgather: %s", err.msg);
            break;
        }
        for (int k = 0; k < c->cols; k++)
            for (size_t i = 0; i < bytes; i++)
                if (recv[(size_t)k * bytes + i] != pattern(c->row * c->cols + k, round, i)) {
                    device_fail(r, c, "row_allgather round %d: column %d byte %zu wrong", round, k, i);
                    k = c->cols;
                    break;
                }
        /* bcast from a moving root */
        int root = round % c->cols;
        uint8_t buf[13];
        for (size_t i = 0; i < bytes; i++)
            buf[i] = c->col == root ? pattern(rank, round + 100, i) : 0;
        if (c->ops->row_bcast(c, buf, bytes, root, &err) != QM_OK) {
            device_fail(r, c, "row_bcast: %s", err.msg);
            break;
        }
        for (size_t i = 0; i < bytes; i++)
            if (buf[i] != pattern(c->row * c->cols + root, round + 100, i)) {
                device_fail(r, c, "row_bcast round %d root %d: byte %zu wrong", round, root, i);
                break;
            }
        /* world_gather */
        for (size_t i = 0; i < bytes; i++)
            send[i] = pattern(rank, round + 200, i);
        memset(recv, 0, bytes * (size_t)nd);
        if (c->ops->world_gather(c, send, bytes, rank == 0 ? recv : NULL, &err) != QM_OK) {
            device_fail(r, c, "world_gather: %s", err.msg);
            break;
        }
        if (rank == 0)
            for (int k = 0; k < nd; k++)
                for (size_t i = 0; i < bytes; i++)
                    if (recv[(size_t)k * bytes + i] != pattern(k, round + 200, i)) {
                        device_fail(r, c, "world_gather round %d: rank %d byte %zu wrong", round, k, i);
                        k = nd;
                        break;
                    }
        /* world_bcast from rank 0 */
        for (size_t i = 0; i < bytes; i++)
            buf[i] = rank == 0 ? pattern(0, round + 300, i) : 0;
        if (c->ops->world_bcast(c, buf, bytes, &err) != QM_OK) {
            device_fail(r, c, "world_bcast: %s", err.msg);
            break;
        }
        for (size_t i = 0; i < bytes; i++)
            if (buf[i] != pattern(0, round + 300, i)) {
                device_fail(r, c, "world_bcast round %d: byte %zu wrong", round, i);
                break;
            }
        if (c->ops->world_barrier(c, &err) != QM_OK || c->ops->row_barrier(c, &err) != QM_OK) {
            device_fail(r, c, "barrier: %s", err.msg);
            break;
        }
    }
    free(recv);
}

static void test_gather_bcast(void **state) {
    (void)state;
    for (int m = 0; m < N_MESHES; m++)
        run_mesh(meshes[m][0], meshes[m][1], data_device, NULL, 60);
}

/* ---- abort ---- */

static void abort_device(run *r, qm_comm *c) {
    qm_error err = {0};
    int rank = qm_comm_rank(c);
    if (rank == 5) {
        usleep(100 * 1000); /* let the others block first */
        c->ops->abort(c, "test abort");
        return;
    }
    float part[16] = {0}, out[16]; /* [nb <= 4][4] */
    for (int i = 0;; i++) {
        qm_status st;
        switch (i % 3) {
        case 0: st = c->ops->world_barrier(c, &err); break;
        case 1: st = c->ops->row_barrier(c, &err); break;
        default: st = c->ops->row_tree_sum(c, part, 4, 16 / 4, out, &err); break;
        }
        if (st == QM_ERR_COMM)
            break;
        if (st != QM_OK) {
            device_fail(r, c, "expected QM_ERR_COMM, got %s: %s", qm_status_name(st), err.msg);
            return;
        }
        if (i > 10000000) {
            device_fail(r, c, "never saw the abort");
            return;
        }
    }
    if (!strstr(err.msg, "test abort") || !strstr(err.msg, "(1,1)"))
        device_fail(r, c, "abort message does not name the device and reason: %s", err.msg);
    /* later calls fail too */
    if (c->ops->row_barrier(c, &err) != QM_ERR_COMM || c->ops->world_barrier(c, &err) != QM_ERR_COMM)
        device_fail(r, c, "a call after the abort did not fail");
}

static void test_abort_wakes_waiters(void **state) {
    (void)state;
    double t0 = now_s(CLOCK_MONOTONIC);
    run_mesh(2, 4, abort_device, NULL, 10); /* rank 5 = device (1,1) */
    printf("  abort on 2x4: all devices returned QM_ERR_COMM after %.3f s (abort at 0.1 s)\n",
           now_s(CLOCK_MONOTONIC) - t0);
    run_mesh(8, 4, abort_device, NULL, 10);
}

/* ---- blocking barriers ---- */

static void barriers_device(run *r, qm_comm *c) {
    qm_error err = {0};
    for (int i = 0; i < 2000; i++) {
        qm_status st = (i & 1) ? c->ops->row_barrier(c, &err) : c->ops->world_barrier(c, &err);
        if (st != QM_OK) {
            device_fail(r, c, "barrier %d: %s", i, err.msg);
            return;
        }
    }
}

static void idle_device(run *r, qm_comm *c) {
    qm_error err = {0};
    if (qm_comm_rank(c) == 0)
        usleep(300 * 1000);
    if (c->ops->world_barrier(c, &err) != QM_OK)
        device_fail(r, c, "%s", err.msg);
}

static void test_barrier_blocks(void **state) {
    (void)state;
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    double w0 = now_s(CLOCK_MONOTONIC), c0 = now_s(CLOCK_PROCESS_CPUTIME_ID);
    run_mesh(8, 4, barriers_device, NULL, 120);
    double wall = now_s(CLOCK_MONOTONIC) - w0, cpu = now_s(CLOCK_PROCESS_CPUTIME_ID) - c0;
    printf("  8x4 mesh, 2000 barriers (world and row alternating): wall %.3f s, cpu %.3f s, %.1f us per barrier, %ld cpus\n",
           wall, cpu, 1e6 * wall / 2000, ncpu);
    assert_true(wall < 30.0); /* no hang; the times themselves are measurements, not limits */

    /* 31 devices wait 0.3 s for the 32nd: they must sleep, not spin */
    w0 = now_s(CLOCK_MONOTONIC);
    c0 = now_s(CLOCK_PROCESS_CPUTIME_ID);
    run_mesh(8, 4, idle_device, NULL, 10);
    wall = now_s(CLOCK_MONOTONIC) - w0;
    cpu = now_s(CLOCK_PROCESS_CPUTIME_ID) - c0;
    printf("  8x4 mesh, 31 devices waiting 0.3 s at a barrier: wall %.3f s, cpu %.3f s (spinning: up to %.1f s)\n",
           wall, cpu, 0.3 * (double)(ncpu < 31 ? ncpu : 31));
    assert_true(wall >= 0.3 && wall < 30.0);
    w0 = now_s(CLOCK_MONOTONIC);
    c0 = now_s(CLOCK_PROCESS_CPUTIME_ID);
    run_mesh(1, 2, idle_device, NULL, 10);
    wall = now_s(CLOCK_MONOTONIC) - w0;
    cpu = now_s(CLOCK_PROCESS_CPUTIME_ID) - c0;
    printf("  1x2 mesh, 1 device waiting 0.3 s at a barrier: wall %.3f s, cpu %.3f s\n", wall, cpu);
    assert_true(cpu < 0.1);
}

/* ---- timing of row_tree_sum, 896 floats ---- */

typedef struct {
    int n_blocks, iters;
    double seconds; /* measured on device 0 */
} timing;

static void timing_device(run *r, qm_comm *c) {
    timing *t = r->arg;
    const size_t n = 896;
    int b0, nb;
    td_assign(t->n_blocks, c->cols, c->col, &b0, &nb);
    float *part = malloc(((size_t)nb * n + 1) * sizeof(float)), out[896]; /* [nb][n] */
    td_fill_cover(9, t->n_blocks, c->cols, c->col, n, nb, part);
    qm_error err = {0};
    if (c->ops->row_barrier(c, &err) != QM_OK)
        device_fail(r, c, "%s", err.msg);
    double t0 = now_s(CLOCK_MONOTONIC);
    for (int i = 0; i < t->iters; i++)
        if (c->ops->row_tree_sum(c, part, t->n_blocks, n, out, &err) != QM_OK) {
            device_fail(r, c, "%s", err.msg);
            break;
        }
    if (c->col == 0)
        t->seconds = now_s(CLOCK_MONOTONIC) - t0;
    free(part);
}

static void test_tree_sum_timing(void **state) {
    (void)state;
    const int cols[] = {2, 8};
    for (int k = 0; k < 2; k++) {
        for (int nbk = 0; nbk < 2; nbk++) {
            timing t = {.n_blocks = nbk ? 14 : cols[k], .iters = 5000};
            run_mesh(1, cols[k], timing_device, &t, 120);
            printf("  1x%d threads: row_tree_sum of %d blocks x 896 floats: %.2f us per call\n", cols[k],
                   t.n_blocks, 1e6 * t.seconds / t.iters);
        }
    }
}

static void test_bad_args(void **state) {
    (void)state;
    qm_thread_mesh *m = NULL;
    qm_error err = {0};
    assert_int_equal(qm_thread_mesh_create(0, 4, &m, &err), QM_ERR_ARG);
    assert_null(m);
    assert_non_null(strstr(err.msg, "0x4"));
    assert_int_equal(qm_thread_mesh_create(1, 1, &m, &err), QM_OK);
    assert_null(qm_thread_mesh_comm(m, 1));
    qm_comm *c = qm_thread_mesh_comm(m, 0);
    assert_int_equal(c->ops->row_bcast(c, &err, 1, 3, &err), QM_ERR_ARG);
    c->ops->abort(c, "solo");
    assert_int_equal(c->ops->row_barrier(c, &err), QM_ERR_COMM);
    qm_thread_mesh_destroy(m);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bad_args),
        cmocka_unit_test(test_data_is_order_sensitive),
        cmocka_unit_test(test_tree_walk),
        cmocka_unit_test(test_tree_sum_bitwise),
        cmocka_unit_test(test_tree_sum_volume),
        cmocka_unit_test(test_gather_bcast),
        cmocka_unit_test(test_abort_wakes_waiters),
        cmocka_unit_test(test_barrier_blocks),
        cmocka_unit_test(test_tree_sum_timing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
