/* QM_INLINE: the SIMD kernels' helpers. An optimised build always inlines them, which their loops
 * are written for (accumulators kept in registers, a helper's branches on its constant arguments
 * folded away). A sanitizer build (QMESH_SANITIZE defines QM_NO_FORCED_INLINE) leaves inlining to
 * the compiler: forced, the instrumented kernels took 2-6 minutes each to compile (qdot_avx2.c
 * 346 s, 12 s without; the ASan build's kernels alone 11 minutes on 2 cores). The arithmetic is
 * the same either way (-ffp-contract=off: inlining fuses nothing), which the exactness tests check
 * in that build too. */
#ifndef QM_KERNELS_INLINE_H
#define QM_KERNELS_INLINE_H

#ifdef QM_NO_FORCED_INLINE
#define QM_INLINE static inline
#else
#define QM_INLINE static inline __attribute__((always_inline))
#endif

#endif
