/* Picks the kernel table once at start-up from what the CPU reports (CPUID via
 * __builtin_cpu_supports, which also checks that the OS saves the vector state). */
#include <string.h>

#include "kernels/kernels.h"

/* One constant table per ISA (scalar.c, matmul_avx512.c: avx512 and avx512vnni, matmul_avx2.c). */
#if defined(__x86_64__) || defined(__i386__)
extern const qm_kernels qm_kernels_avx512vnni_table;
extern const qm_kernels qm_kernels_avx512_table;
extern const qm_kernels qm_kernels_avx2_table;
#endif

typedef struct {
    const qm_kernels *table;
    int (*cpu_has)(void);
} isa_entry;

#if defined(__x86_64__) || defined(__i386__)
static int cpu_has_avx512(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
           __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
           __builtin_cpu_supports("f16c");
}

static int cpu_has_avx512vnni(void) { return cpu_has_avx512() && __builtin_cpu_supports("avx512vnni"); }

static int cpu_has_avx2(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
           __builtin_cpu_supports("f16c");
}
#endif

static int cpu_has_scalar(void) { return 1; }

/* Best first. */
static const isa_entry isa_table[] = {
#if defined(__x86_64__) || defined(__i386__)
    {&qm_kernels_avx512vnni_table, cpu_has_avx512vnni},
    {&qm_kernels_avx512_table, cpu_has_avx512},
    {&qm_kernels_avx2_table, cpu_has_avx2},
#endif
    {&qm_kernels_scalar_table, cpu_has_scalar},
};
#define N_ISA ((int)(sizeof isa_table / sizeof isa_table[0]))

int qm_kernels_supported(const char **names, int max) {
    int n = 0;
    for (int i = 0; i < N_ISA && n < max; i++)
        if (isa_table[i].cpu_has()) names[n++] = isa_table[i].table->isa;
    return n;
}

qm_status qm_kernels_select(const char *isa, qm_kernels *out, qm_error *err) {
    if (!out) return qm_fail(err, QM_ERR_ARG, "qm_kernels_select: out is NULL");
    int want_auto = !isa || strcmp(isa, "auto") == 0;
    for (int i = 0; i < N_ISA; i++) {
        const isa_entry *e = &isa_table[i];
        if (!want_auto && strcmp(isa, e->table->isa) != 0) continue;
        if (!e->cpu_has()) {
            if (want_auto) continue;
            return qm_fail(err, QM_ERR_UNSUPPORTED,
                           "kernels: ISA '%s' is not supported by this CPU (try 'auto')", isa);
        }
        *out = *e->table;
        return QM_OK;
    }
    return qm_fail(err, QM_ERR_ARG,
                   "kernels: unknown ISA '%s' (expected auto, avx512vnni, avx512, avx2 or scalar)", isa);
}
