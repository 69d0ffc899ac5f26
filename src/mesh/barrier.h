/* A reusable barrier for the threads of one process: generation counter (sense) barrier that
 * spins briefly with a pause instruction, then blocks in the kernel (futex), so that devices
 * may outnumber cores without burning CPU while they wait.
 *
 * Abort: qm_barrier_poison() wakes every waiter (current and future) of a barrier; the waiter
 * then sees the caller's abort flag (passed to qm_barrier_wait) and returns QM_ERR_COMM.
 */
#ifndef QM_MESH_BARRIER_H
#define QM_MESH_BARRIER_H

#include <qmesh.h>
#include <stdatomic.h>

#include "util/coop.h"

#define QM_CACHE_LINE 64

typedef struct qm_barrier {
    _Alignas(QM_CACHE_LINE) atomic_uint count; /* arrivals in the current generation */
    _Alignas(QM_CACHE_LINE) atomic_uint gen;   /* generation; the futex word */
    atomic_uint sleepers;                      /* threads blocked (or about to) in the futex */
    unsigned n;                                /* participants */
    unsigned spin;                             /* pause iterations before blocking */
} qm_barrier;

void qm_barrier_init(qm_barrier *b, unsigned n, unsigned spin);

/* Waits until all n participants arrived. Returns QM_OK, or QM_ERR_COMM when *aborted becomes
 * non-zero before (or while) this barrier completes. task: the cooperative task the caller runs
 * in (util/coop.h), whose thread then runs its other tasks while this one waits; NULL for a
 * thread of its own, which spins, then sleeps. */
qm_status qm_barrier_wait(qm_barrier *b, const atomic_int *aborted, qm_coop_task *task);

/* After *aborted was set: releases every waiter of b (they return QM_ERR_COMM). */
void qm_barrier_poison(qm_barrier *b);

#endif
