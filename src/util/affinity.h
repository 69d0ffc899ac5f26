/* Thread placement: the CPUs this process may run on, and pinning a thread to one of them.
 *
 * A device's team (util/pool.h) can be pinned one thread per CPU so that the scheduler does not
 * move threads between cores mid-step (each move costs the thread its L1/L2 contents). Where
 * several processes share a machine (MPI ranks started on one host), each takes its own stretch
 * of the allowed CPUs, from its local rank. */
#ifndef QM_UTIL_AFFINITY_H
#define QM_UTIL_AFFINITY_H

#include <sched.h>
#include <stdbool.h>

#define QM_MAX_CPUS 1024

typedef struct {
    int n;                 /* how many CPUs are allowed (>= 1) */
    int cpu[QM_MAX_CPUS];  /* their ids, increasing */
} qm_cpu_list;

/* The CPUs the calling thread may run on (sched_getaffinity); on failure, CPUs 0 .. n-1 of the
 * online count. */
void qm_cpus_allowed(qm_cpu_list *out);

/* This process's index among the processes a launcher started on this machine (Open MPI's
 * OMPI_COMM_WORLD_LOCAL_RANK, MPICH's MPI_LOCALRANKID), 0 when not launched so. */
int qm_local_process_index(void);

/* The calling thread's placement, to restore later. */
typedef struct {
    cpu_set_t set;
    bool valid;
} qm_thread_affinity;

void qm_affinity_save(qm_thread_affinity *saved);
void qm_affinity_restore(const qm_thread_affinity *saved);
/* Pins the calling thread to one CPU; false (and unchanged) when the system refuses. */
bool qm_pin_current_thread(int cpu);

#endif
