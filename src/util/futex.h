/* Waiting on a 32-bit word: the kernel's futex on Linux, a yield elsewhere. The word is the
 * "expected value" protocol: a waiter sleeps only while the word still holds what it saw, so a
 * change made before the wait begins is never missed; spurious returns are fine (callers
 * re-check). */
#ifndef QM_UTIL_FUTEX_H
#define QM_UTIL_FUTEX_H

#include <stdatomic.h>

/* Blocks while *word == expected, for at most timeout_us microseconds (0: no limit). */
void qm_futex_wait(atomic_uint *word, unsigned expected, long timeout_us);

/* Wakes every thread blocked on word. */
void qm_futex_wake_all(atomic_uint *word);

/* A pause for spin loops (the CPU's hint, nothing on others). */
static inline void qm_cpu_pause(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

#endif
