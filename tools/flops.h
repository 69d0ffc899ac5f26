#ifndef QM_TOOLS_FLOPS_H
#define QM_TOOLS_FLOPS_H
/* The machine's f32 FMA peak on `threads` threads with the vectors of ISA isa ("avx512vnni" and
 * "avx512": 16 lanes, "avx2": 8, "scalar": fmaf), GFLOP/s (an FMA counts 2), best of 5; 0 if the
 * threads cannot be had. */
double qm_measure_fma_peak(const char *isa, int threads);
#endif
