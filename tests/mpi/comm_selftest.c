/* Self-test of a comm backend: the same checks on every device, over MPI (one process per
 * rank, under mpirun) or over threads (one process), printing one line per device:
 *
 *   rank K (r,c) mesh RxC: ok sums=<checksum of every row_tree_sum output, hex> sent=<bytes> recv=<bytes>
 *
 * Every row_tree_sum output is compared with the scalar reference (mesh/tree_sum.h) by memcmp,
 * and the bytes the device's comm counted for each call (qm_comm_stats) with the bounds of
 * comm.h. sent/recv are this device's row-sum totals over the cases.
 *
 * The checksum lines of the two backends must be equal (tests/test_comm_mpi.sh compares them).
 *
 *   comm_selftest --backend mpi|threads --mesh RxC [--time] [--sleep-in-loop] [--deadline S]
 *
 * --deadline S: the comm's timeout_s (comm.h), so MPI takes its polled paths (point-to-point
 * tree sums, non-blocking collectives); the results must not change.
 *
 * --sleep-in-loop: after the checks, loop forever (tree sum + barrier every 10 ms), so a
 * test can kill one rank and measure how the others stop; prints "pid K P" first.
 */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "comm_testdata.h"
#include "mesh/comm.h"

typedef struct {
    int time, sleep_loop;
    double deadline;
} opts;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static const struct {
    int n_blocks;
    size_t n;
    uint32_t seed;
} cases[] = {{5, 896, 1},  {14, 896, 2}, {76, 896, 3}, {28, 3584, 4}, {64, 96, 5},  {296, 64, 6},
             {14, 1000, 7}, {3, 1, 8},   {1, 100, 9},  {0, 17, 10},   {9, 257, 11}, {2, 5, 12}};
#define N_CASES (int)(sizeof cases / sizeof cases[0])

#define CHECK(cond, ...)                                                                                   \
    do {                                                                                                   \
        if (!(cond)) {                                                                                     \
            snprintf(why, sizeof why, __VA_ARGS__);                                                        \
            goto done;                                                                                     \
        }                                                                                                  \
    } while (0)

static uint8_t pattern(int rank, int round, size_t i) {
    return (uint8_t)(td_hash((uint32_t)(rank * 7919 + round * 104729) ^ (uint32_t)i) & 0xff);
}

static void time_sums(qm_comm *c, int n_blocks) {
    const size_t n = 896;
    const int iters = 2000;
    int b0, nb;
    td_assign(n_blocks, c->cols, c->col, &b0, &nb);
    float *part = malloc(((size_t)nb * n + 1) * sizeof(float)), *out = malloc(n * sizeof(float)); /* [nb][n] */
    td_fill_cover(9, n_blocks, c->cols, c->col, n, nb, part);
    qm_error err = {0};
    c->ops->row_barrier(c, &err);
    double t0 = now_s();
    for (int i = 0; i < iters; i++)
        if (c->ops->row_tree_sum(c, part, n_blocks, n, out, &err) != QM_OK)
            break;
    double t = now_s() - t0;
    if (qm_comm_rank(c) == 0)
        printf("timing: mesh %dx%d: row_tree_sum of %d blocks x 896 floats: %.2f us per call\n", c->rows, c->cols,
               n_blocks, 1e6 * t / iters);
    free(part);
    free(out);
}

static void sleep_loop(qm_comm *c) {
    qm_error err = {0};
    float part[4 * 64] = {0}, out[64]; /* [nb <= 4][64] */
    printf("pid %d %ld\n", qm_comm_rank(c), (long)getpid());
    fflush(stdout);
    double last_ok = now_s();
    for (;;) {
        qm_status st = c->ops->row_tree_sum(c, part, 4, 64, out, &err);
        if (st == QM_OK)
            st = c->ops->world_barrier(c, &err);
        if (st != QM_OK) {
            printf("rank %d: %s %.3f s after the last good step: %s\n", qm_comm_rank(c), qm_status_name(st),
                   now_s() - last_ok, err.msg);
            fflush(stdout);
            c->ops->abort(c, "selftest loop failed");
            return;
        }
        last_ok = now_s();
        usleep(10 * 1000);
    }
}

typedef struct {
    uint64_t sums;                   /* every output's checksum, folded */
    long long sent_total, recv_total; /* row-sum bytes this device counted */
} sum_totals;

/* One row_tree_sum case: the output against the scalar reference (memcmp), the bytes this
 * device's comm counted against the bounds of comm.h. Returns 0, or 1 with why filled. */
static int check_tree_sum_case(qm_comm *c, int k, sum_totals *t, char *why_out, size_t why_len) {
    char why[1200] = "";
    qm_error err = {0};
    int b0, nb;
    td_assign(cases[k].n_blocks, c->cols, c->col, &b0, &nb);
    size_t n = cases[k].n;
    uint32_t seed = cases[k].seed + 1000u * (uint32_t)c->row;
    float *part = malloc(((size_t)nb * n + 1) * sizeof(float)); /* [nb][n] */
    float *out = malloc(n * sizeof(float)), *ref = malloc(n * sizeof(float));
    CHECK(part && out && ref && td_reference(seed, cases[k].n_blocks, n, ref), "out of memory");
    td_fill_cover(seed, cases[k].n_blocks, c->cols, c->col, n, 1 + k % 3, part); /* groups of 1..3 leaves */
    qm_comm_stats before = c->stats;
    qm_status st = c->ops->row_tree_sum(c, part, cases[k].n_blocks, n, out, &err);
    CHECK(st == QM_OK, "row_tree_sum case %d: %s", k, err.msg);
    for (size_t i = 0; i < n; i++)
        CHECK(memcmp(&out[i], &ref[i], 4) == 0, "row_tree_sum case %d: out[%zu] = %a, reference %a", k, i,
              (double)out[i], (double)ref[i]);
    long long sent = c->stats.bytes_sent[QM_COLL_ROW_SUM] - before.bytes_sent[QM_COLL_ROW_SUM];
    long long got = c->stats.bytes_recv[QM_COLL_ROW_SUM] - before.bytes_recv[QM_COLL_ROW_SUM];
    long long bound = td_volume_bound(cases[k].n_blocks, c->cols, n);
    CHECK(sent <= bound && got <= bound, "row_tree_sum case %d (%d blocks, %zu floats): sent %lld, received %lld bytes, bound %lld",
          k, cases[k].n_blocks, n, sent, got, bound);
    t->sent_total += sent;
    t->recv_total += got;
    t->sums = (t->sums ^ td_checksum(out, n)) * 1099511628211ULL;
done:
    free(part);
    free(out);
    free(ref);
    snprintf(why_out, why_len, "%s", why);
    return why[0] != 0;
}

/* Runs every check on one device; returns 0 when all pass. */
static int device_checks(qm_comm *c, const opts *o) {
    char why[1200] = "";
    qm_error err = {0};
    int rank = qm_comm_rank(c), nd = c->rows * c->cols;
    sum_totals t = {1469598103934665603ULL, 0, 0};
    uint8_t *recv = malloc(16 * (size_t)nd);

    for (int k = 0; k < N_CASES && !why[0]; k++) check_tree_sum_case(c, k, &t, why, sizeof why);
    if (why[0]) goto done;
    for (int round = 0; round < 10; round++) {
        uint8_t send[16], buf[16];
        for (size_t i = 0; i < 16; i++)
            send[i] = pattern(rank, round, i);
        CHECK(c->ops->row_allgather(c, send, 16, recv, &err) == QM_OK, "row_allgather: %s", err.msg);
        for (int k = 0; k < c->cols; k++)
            for (size_t i = 0; i < 16; i++)
                CHECK(recv[16 * k + i] == pattern(c->row * c->cols + k, round, i), "row_allgather: column %d byte %zu", k, i);
        int root = round % c->cols;
        for (size_t i = 0; i < 16; i++)
            buf[i] = c->col == root ? pattern(rank, round + 100, i) : 0;
        CHECK(c->ops->row_bcast(c, buf, 16, root, &err) == QM_OK, "row_bcast: %s", err.msg);
        for (size_t i = 0; i < 16; i++)
            CHECK(buf[i] == pattern(c->row * c->cols + root, round + 100, i), "row_bcast root %d byte %zu", root, i);
        for (size_t i = 0; i < 16; i++)
            send[i] = pattern(rank, round + 200, i);
        CHECK(c->ops->world_gather(c, send, 16, rank == 0 ? recv : NULL, &err) == QM_OK, "world_gather: %s", err.msg);
        if (rank == 0)
            for (int k = 0; k < nd; k++)
                for (size_t i = 0; i < 16; i++)
                    CHECK(recv[16 * k + i] == pattern(k, round + 200, i), "world_gather: rank %d byte %zu", k, i);
        for (size_t i = 0; i < 16; i++)
            buf[i] = rank == 0 ? pattern(0, round + 300, i) : 0;
        CHECK(c->ops->world_bcast(c, buf, 16, &err) == QM_OK, "world_bcast: %s", err.msg);
        for (size_t i = 0; i < 16; i++)
            CHECK(buf[i] == pattern(0, round + 300, i), "world_bcast byte %zu", i);
        CHECK(c->ops->world_barrier(c, &err) == QM_OK, "world_barrier: %s", err.msg);
        CHECK(c->ops->row_barrier(c, &err) == QM_OK, "row_barrier: %s", err.msg);
    }
done:
    free(recv);
    if (why[0]) {
        printf("rank %d (%d,%d) mesh %dx%d: FAILED %s\n", rank, c->row, c->col, c->rows, c->cols, why);
        fflush(stdout);
        c->ops->abort(c, why);
        return 1;
    }
    printf("rank %d (%d,%d) mesh %dx%d: ok sums=%016llx sent=%lld recv=%lld\n", rank, c->row, c->col, c->rows, c->cols,
           (unsigned long long)t.sums, t.sent_total, t.recv_total);
    fflush(stdout);
    if (o->time) {
        time_sums(c, c->cols);
        time_sums(c, 14);
    }
    if (o->sleep_loop)
        sleep_loop(c);
    return 0;
}

typedef struct {
    qm_comm *c;
    const opts *o;
    int rc;
} thread_job;

static void *thread_main(void *p) {
    thread_job *j = p;
    j->rc = device_checks(j->c, j->o);
    return NULL;
}

int main(int argc, char **argv) {
    const char *backend = "mpi";
    int rows = 1, cols = 1;
    opts o = {0};
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--backend") && i + 1 < argc)
            backend = argv[++i];
        else if (!strcmp(argv[i], "--mesh") && i + 1 < argc) {
            if (sscanf(argv[++i], "%dx%d", &rows, &cols) != 2) {
                fprintf(stderr, "comm_selftest: --mesh wants RxC, got %s\n", argv[i]);
                return 2;
            }
        } else if (!strcmp(argv[i], "--time"))
            o.time = 1;
        else if (!strcmp(argv[i], "--sleep-in-loop"))
            o.sleep_loop = 1;
        else if (!strcmp(argv[i], "--deadline") && i + 1 < argc)
            o.deadline = atof(argv[++i]);
        else {
            fprintf(stderr, "usage: comm_selftest --backend mpi|threads --mesh RxC [--time] [--sleep-in-loop] [--deadline S]\n");
            return 2;
        }
    }
    qm_error err = {0};
    int rc = 0;
    if (!strcmp(backend, "mpi")) {
        qm_comm *c = NULL;
        if (qm_mpi_comm_create(rows, cols, &c, &err) != QM_OK) {
            fprintf(stderr, "comm_selftest: %s\n", err.msg);
            return 1;
        }
        c->timeout_s = o.deadline;
        rc = device_checks(c, &o);
        qm_mpi_comm_destroy(c);
        /* a second comm in the same process (an engine opened twice): MPI stays initialised */
        if (rc == 0 && qm_mpi_comm_create(rows, cols, &c, &err) != QM_OK) {
            fprintf(stderr, "comm_selftest: a second comm: %s\n", err.msg);
            return 1;
        }
        if (rc == 0) {
            if (c->ops->world_barrier(c, &err) != QM_OK) {
                fprintf(stderr, "comm_selftest: a second comm's barrier: %s\n", err.msg);
                rc = 1;
            } else {
                printf("second comm: rank %d ok\n", qm_comm_rank(c));
            }
            qm_mpi_comm_destroy(c);
        }
        if (rc == 0) qm_mpi_finalize();
    } else if (!strcmp(backend, "threads")) {
        qm_thread_mesh *m = NULL;
        if (qm_thread_mesh_create(rows, cols, &m, &err) != QM_OK) {
            fprintf(stderr, "comm_selftest: %s\n", err.msg);
            return 1;
        }
        int nd = rows * cols;
        pthread_t *th = calloc((size_t)nd, sizeof *th);
        thread_job *jobs = calloc((size_t)nd, sizeof *jobs);
        for (int i = 0; i < nd; i++) {
            jobs[i] = (thread_job){qm_thread_mesh_comm(m, i), &o, 0};
            pthread_create(&th[i], NULL, thread_main, &jobs[i]);
        }
        for (int i = 0; i < nd; i++) {
            pthread_join(th[i], NULL);
            rc |= jobs[i].rc;
        }
        free(th);
        free(jobs);
        qm_thread_mesh_destroy(m);
    } else {
        fprintf(stderr, "comm_selftest: unknown backend %s\n", backend);
        return 2;
    }
    return rc;
}
