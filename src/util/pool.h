/* A device's team of worker threads: persistent, blocking when idle (devices may outnumber
 * cores). The calling thread is member 0; kernels get (ith, nth). */
#ifndef QM_UTIL_POOL_H
#define QM_UTIL_POOL_H

#include <qmesh.h>
#include <stddef.h>

typedef struct qm_pool qm_pool;
typedef void (*qm_pool_fn)(void *arg, int ith, int nth);

/* n >= 1 threads in all, the caller included (n - 1 are started). */
qm_status qm_pool_create(int n, qm_pool **out, qm_error *err);
void qm_pool_destroy(qm_pool *p);
int qm_pool_size(const qm_pool *p);
/* Runs fn(arg, ith, nth) on every member (the caller as ith 0) and returns when all are done. */
void qm_pool_run(qm_pool *p, qm_pool_fn fn, void *arg);

/* Pins member ith to CPU cpus[ith] (util/affinity.h), the caller as member 0; a CPU the system
 * refuses leaves that member where it was. */
void qm_pool_pin(qm_pool *p, const int *cpus);

/* [begin, end) of n items for member ith of nth: contiguous, nearly equal. */
static inline void qm_split_range(long n, int ith, int nth, long *begin, long *end) {
    *begin = n * ith / nth;
    *end = n * (ith + 1) / nth;
}

/* Seconds on a monotonic clock. */
double qm_now(void);
/* Resident memory of this process in bytes (VmRSS), 0 if unknown. */
size_t qm_resident_bytes(void);
/* Number of online CPUs (>= 1). */
int qm_cpu_count(void);

#endif
