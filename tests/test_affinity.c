/* Thread placement (util/affinity.h, qm_pool_pin): the allowed CPU list is the process's mask,
 * a pinned team runs each member on its CPU, a restored thread gets its old mask back, and the
 * local process index comes from the launcher's environment. */
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>

#include "util/affinity.h"
#include "util/pool.h"

static void test_allowed_is_the_mask(void **state) {
    (void)state;
    qm_cpu_list l;
    qm_cpus_allowed(&l);
    cpu_set_t set;
    assert_int_equal(sched_getaffinity(0, sizeof set, &set), 0);
    assert_int_equal(l.n, CPU_COUNT(&set));
    for (int i = 0; i < l.n; i++) {
        assert_true(CPU_ISSET(l.cpu[i], &set));
        if (i) assert_true(l.cpu[i] > l.cpu[i - 1]);
    }
}

/* Each member records the CPUs it may run on. */
static void record_mask(void *arg, int ith, int nth) {
    (void)nth;
    cpu_set_t *masks = arg;
    assert_int_equal(pthread_getaffinity_np(pthread_self(), sizeof masks[ith], &masks[ith]), 0);
}

static void test_pool_pin(void **state) {
    (void)state;
    qm_cpu_list l;
    qm_cpus_allowed(&l);
    qm_pool *p = NULL;
    assert_int_equal(qm_pool_create(3, &p, NULL), QM_OK);
    const int cpus[3] = {l.cpu[l.n - 1], l.cpu[0], l.cpu[(l.n - 1) / 2]};
    qm_thread_affinity saved;
    qm_affinity_save(&saved);
    assert_true(saved.valid);
    qm_pool_pin(p, cpus);
    cpu_set_t masks[3];
    qm_pool_run(p, record_mask, masks);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(CPU_COUNT(&masks[i]), 1);
        assert_true(CPU_ISSET(cpus[i], &masks[i]));
    }
    qm_affinity_restore(&saved);
    cpu_set_t now;
    assert_int_equal(pthread_getaffinity_np(pthread_self(), sizeof now, &now), 0);
    assert_true(CPU_EQUAL(&now, &saved.set));
    assert_false(qm_pin_current_thread(-1));
    qm_pool_destroy(p);
}

static void test_local_index(void **state) {
    (void)state;
    unsetenv("OMPI_COMM_WORLD_LOCAL_RANK");
    unsetenv("MPI_LOCALRANKID");
    assert_int_equal(qm_local_process_index(), 0);
    setenv("MPI_LOCALRANKID", "2", 1);
    assert_int_equal(qm_local_process_index(), 2);
    setenv("OMPI_COMM_WORLD_LOCAL_RANK", "3", 1);
    assert_int_equal(qm_local_process_index(), 3);
    setenv("OMPI_COMM_WORLD_LOCAL_RANK", "x", 1);
    assert_int_equal(qm_local_process_index(), 0);
    unsetenv("OMPI_COMM_WORLD_LOCAL_RANK");
    unsetenv("MPI_LOCALRANKID");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_allowed_is_the_mask),
        cmocka_unit_test(test_pool_pin),
        cmocka_unit_test(test_local_index),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
