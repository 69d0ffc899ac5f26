#include "util/futex.h"

#include <limits.h>
#include <stdint.h>

#if defined(__linux__)
#include <linux/futex.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#else
#include <sched.h>
#endif

void qm_futex_wait(atomic_uint *word, unsigned expected, long timeout_us) {
#if defined(__linux__)
    struct timespec ts = {timeout_us / 1000000, (timeout_us % 1000000) * 1000};
    syscall(SYS_futex, (uint32_t *)word, FUTEX_WAIT_PRIVATE, expected, timeout_us > 0 ? &ts : NULL, NULL, 0);
#else
    (void)word;
    (void)expected;
    (void)timeout_us;
    sched_yield();
#endif
}

void qm_futex_wake_all(atomic_uint *word) {
#if defined(__linux__)
    syscall(SYS_futex, (uint32_t *)word, FUTEX_WAKE_PRIVATE, INT_MAX, NULL, NULL, 0);
#else
    (void)word;
#endif
}
