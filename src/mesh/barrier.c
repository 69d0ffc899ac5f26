#include "mesh/barrier.h"

#include "util/coop.h"
#include "util/futex.h"

void qm_barrier_init(qm_barrier *b, unsigned n, unsigned spin) {
    atomic_init(&b->count, 0);
    atomic_init(&b->gen, 0);
    atomic_init(&b->sleepers, 0);
    b->n = n;
    b->spin = spin;
}

qm_status qm_barrier_wait(qm_barrier *b, const atomic_int *aborted, qm_coop_task *task) {
    if (atomic_load(aborted))
        return QM_ERR_COMM;
    if (b->n <= 1)
        return QM_OK;
    /* Read the generation before arriving: the last arrival bumps it. */
    unsigned gen = atomic_load_explicit(&b->gen, memory_order_acquire);
    unsigned arrived = atomic_fetch_add_explicit(&b->count, 1, memory_order_acq_rel) + 1;
    if (arrived == b->n) {
        atomic_store_explicit(&b->count, 0, memory_order_relaxed);
        atomic_fetch_add(&b->gen, 1); /* seq_cst: orders against the sleepers load below */
        if (atomic_load(&b->sleepers) > 0)
            qm_futex_wake_all(&b->gen);
        return atomic_load(aborted) ? QM_ERR_COMM : QM_OK;
    }
    if (task) { /* the task's thread runs its other tasks meanwhile */
        while (atomic_load_explicit(&b->gen, memory_order_acquire) == gen && !atomic_load(aborted))
            qm_coop_wait(task, &b->gen, gen, &b->sleepers);
        return atomic_load(aborted) ? QM_ERR_COMM : QM_OK;
    }
    for (unsigned i = 0; i < b->spin; i++) {
        if (atomic_load_explicit(&b->gen, memory_order_acquire) != gen)
            return atomic_load(aborted) ? QM_ERR_COMM : QM_OK;
        qm_cpu_pause();
    }
    for (;;) {
        /* seq_cst increment then re-check: either the releaser sees sleepers > 0 and wakes us,
         * or we see the new generation (the futex itself re-checks the word atomically). */
        atomic_fetch_add(&b->sleepers, 1);
        if (atomic_load(&b->gen) == gen && !atomic_load(aborted))
            qm_futex_wait(&b->gen, gen, 0);
        atomic_fetch_sub(&b->sleepers, 1);
        if (atomic_load_explicit(&b->gen, memory_order_acquire) != gen)
            return atomic_load(aborted) ? QM_ERR_COMM : QM_OK;
        if (atomic_load(aborted))
            return QM_ERR_COMM;
    }
}

void qm_barrier_poison(qm_barrier *b) {
    /* Changing the futex word makes every current and future waiter of this generation leave. */
    atomic_fetch_add(&b->gen, 1);
    qm_futex_wake_all(&b->gen);
}
