#include "util/affinity.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "util/pool.h"

void qm_cpus_allowed(qm_cpu_list *out) {
    cpu_set_t set;
    out->n = 0;
    if (sched_getaffinity(0, sizeof set, &set) == 0)
        for (int c = 0; c < CPU_SETSIZE && c < QM_MAX_CPUS; c++)
            if (CPU_ISSET(c, &set)) out->cpu[out->n++] = c;
    if (out->n > 0) return;
    int n = qm_cpu_count();
    for (int c = 0; c < n && c < QM_MAX_CPUS; c++) out->cpu[out->n++] = c;
}

int qm_local_process_index(void) {
    const char *v = getenv("OMPI_COMM_WORLD_LOCAL_RANK");
    if (!v) v = getenv("MPI_LOCALRANKID");
    if (!v) return 0;
    char *end;
    long r = strtol(v, &end, 10);
    return *end == '\0' && r >= 0 && r < QM_MAX_CPUS ? (int)r : 0;
}

void qm_affinity_save(qm_thread_affinity *saved) {
    saved->valid = pthread_getaffinity_np(pthread_self(), sizeof saved->set, &saved->set) == 0;
}

void qm_affinity_restore(const qm_thread_affinity *saved) {
    if (saved->valid) (void)pthread_setaffinity_np(pthread_self(), sizeof saved->set, &saved->set);
}

bool qm_pin_current_thread(int cpu) {
    if (cpu < 0 || cpu >= CPU_SETSIZE) return false;
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    return pthread_setaffinity_np(pthread_self(), sizeof set, &set) == 0;
}
