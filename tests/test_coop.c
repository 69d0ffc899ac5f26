/* Cooperative tasks (util/coop.h) with the mesh barrier (mesh/barrier.h): every task runs to its
 * end; tasks on one thread and across threads meet at barriers round after round and never
 * see a peer a round behind or ahead; two groups' barriers and one over all of them mix on one
 * thread; a poisoned barrier releases every waiting task with QM_ERR_COMM; bad arguments are
 * refused. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>

#include "mesh/barrier.h"
#include "util/coop.h"

#define MAX_TASKS 64
#define ROUNDS 300

typedef struct {
    int n, groups;             /* tasks; groups of n / groups consecutive tasks (rows) */
    qm_barrier group_bar[4];   /* one per group */
    qm_barrier all_bar;        /* every task */
    atomic_int aborted;
    atomic_int round[MAX_TASKS];
    atomic_int errors, finished;
    int poison_at;             /* round at which task 0 poisons every barrier; -1: never */
} shared;

/* Each round: publish the round, meet the group, check every group peer reached it, meet all
 * every 10th round and check everyone reached it. */
static void task_main(void *arg, int i, qm_coop_task *self) {
    shared *s = arg;
    const int per = s->n / s->groups, g = i / per;
    for (int r = 1; r <= ROUNDS; r++) {
        atomic_store(&s->round[i], r);
        if (i == 0 && r == s->poison_at) {
            atomic_store(&s->aborted, 1);
            for (int k = 0; k < s->groups; k++) qm_barrier_poison(&s->group_bar[k]);
            qm_barrier_poison(&s->all_bar);
        }
        if (qm_barrier_wait(&s->group_bar[g], &s->aborted, self) != QM_OK) break;
        for (int k = g * per; k < (g + 1) * per; k++) {
            const int rk = atomic_load(&s->round[k]);
            if (rk != r && rk != r + 1) atomic_fetch_add(&s->errors, 1);
        }
        if (r % 10) continue;
        if (qm_barrier_wait(&s->all_bar, &s->aborted, self) != QM_OK) break;
        for (int k = 0; k < s->n; k++) {
            const int rk = atomic_load(&s->round[k]);
            if (rk < r || rk > r + 10) atomic_fetch_add(&s->errors, 1); /* others run on to r + 10 */
        }
    }
    atomic_fetch_add(&s->finished, 1);
}

static shared *make_shared(int n, int groups, int poison_at) {
    shared *s = calloc(1, sizeof *s);
    assert_non_null(s);
    s->n = n;
    s->groups = groups;
    s->poison_at = poison_at;
    for (int k = 0; k < groups; k++) qm_barrier_init(&s->group_bar[k], (unsigned)(n / groups), 64);
    qm_barrier_init(&s->all_bar, (unsigned)n, 64);
    atomic_init(&s->aborted, 0);
    return s;
}

static void run_case(int n, int workers, int groups) {
    shared *s = make_shared(n, groups, -1);
    qm_error err;
    assert_int_equal(qm_coop_run(n, workers, NULL, task_main, s, &err), QM_OK);
    assert_int_equal(atomic_load(&s->errors), 0);
    assert_int_equal(atomic_load(&s->finished), n);
    for (int i = 0; i < n; i++) assert_int_equal(atomic_load(&s->round[i]), ROUNDS);
    free(s);
}

static void test_one_thread(void **state) {
    (void)state;
    run_case(8, 1, 1);
    run_case(8, 1, 2);
    run_case(1, 1, 1);
}

static void test_two_threads(void **state) {
    (void)state;
    run_case(8, 2, 1);  /* one group over both threads */
    run_case(8, 2, 2);  /* a group per thread */
    run_case(32, 2, 4); /* groups of 8: two per thread */
    run_case(3, 2, 1);  /* uneven stretches */
}

static void test_more_threads(void **state) {
    (void)state;
    run_case(12, 3, 4); /* groups across thread borders */
    run_case(6, 6, 2);  /* a task per thread */
}

static void test_poison(void **state) {
    (void)state;
    shared *s = make_shared(8, 2, 57);
    qm_error err;
    assert_int_equal(qm_coop_run(8, 2, NULL, task_main, s, &err), QM_OK);
    assert_int_equal(atomic_load(&s->finished), 8);
    for (int i = 0; i < 8; i++) assert_true(atomic_load(&s->round[i]) <= 60); /* the next all-barrier */
    free(s);
}

static void test_bad_arguments(void **state) {
    (void)state;
    shared *s = make_shared(4, 1, -1);
    qm_error err;
    assert_int_equal(qm_coop_run(0, 1, NULL, task_main, s, &err), QM_ERR_ARG);
    assert_int_equal(qm_coop_run(4, 5, NULL, task_main, s, &err), QM_ERR_ARG);
    assert_int_equal(qm_coop_run(4, 0, NULL, task_main, s, &err), QM_ERR_ARG);
    assert_int_equal(atomic_load(&s->finished), 0);
    free(s);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_one_thread),  cmocka_unit_test(test_two_threads),
        cmocka_unit_test(test_more_threads), cmocka_unit_test(test_poison),
        cmocka_unit_test(test_bad_arguments),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
