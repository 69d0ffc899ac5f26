/* Cooperative tasks: n tasks (the devices of a mesh larger than the CPUs given to it) on w OS
 * threads, w <= n. Each thread runs a contiguous stretch of the tasks, each on a stack of its
 * own, and switches between them in user space only where a task waits (qm_coop_wait, from the
 * threads backend's barriers): no task is preempted in the middle of its work, and a barrier
 * between tasks of one thread costs a context switch of a few hundred nanoseconds instead of a
 * trip through the kernel's scheduler. A thread whose tasks all wait spins briefly, then sleeps
 * on the word the first of them waits for (bounded, so that it also sees the others' words).
 *
 * Task i runs on thread i * w / n ... (qm_split_range): with a mesh's devices in rank order,
 * the devices of a row sit together, so that on 2x4 with 2 threads each thread runs one row. */
#ifndef QM_UTIL_COOP_H
#define QM_UTIL_COOP_H

#include <qmesh.h>
#include <stdatomic.h>

typedef struct qm_coop_task qm_coop_task;
typedef void (*qm_coop_fn)(void *arg, int i, qm_coop_task *self);

/* Runs fn(arg, i, task i) for every i in [0, n) on `workers` threads (1 <= workers <= n; the
 * calling thread is one of them), thread k pinned to cpus[k] when cpus is not NULL, and returns
 * when every task has returned. Fails (nothing run) when stacks or threads cannot be had. */
qm_status qm_coop_run(int n, int workers, const int *cpus, qm_coop_fn fn, void *arg, qm_error *err);

/* From inside task t: its thread runs its other tasks until *word != expected; may return
 * before (callers re-check). sleepers: the count of threads sleeping on word, which whoever
 * changes the word reads to decide whether to wake them (qm_futex_wake_all), as mesh/barrier.c
 * does. */
void qm_coop_wait(qm_coop_task *t, atomic_uint *word, unsigned expected, atomic_uint *sleepers);

#endif
