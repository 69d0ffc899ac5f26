/* Where a device's time goes (statistics only): the forward pass by part, the collectives, the
 * sampler. Every part is wall time of the device's team call, so a team waiting for its slowest
 * member counts in the part it waits in. */
#ifndef QM_MODEL_TIMING_H
#define QM_MODEL_TIMING_H

typedef enum {
    QM_TIME_NORM,      /* RMSNorm, residual adds, activation quantization (fast mode) */
    QM_TIME_QKV,       /* q, k, v projections (weights) */
    QM_TIME_ROPE_KV,   /* RoPE and the KV cache writes */
    QM_TIME_ATTENTION, /* scores, softmax, weighted values (KV cache reads) */
    QM_TIME_OPROJ,     /* o_proj partials (weights) */
    QM_TIME_GATE_UP,   /* gate and up projections, SiLU (weights) */
    QM_TIME_DOWN,      /* down_proj partials (weights) */
    QM_TIME_LM_HEAD,   /* final norm and the vocabulary slice (weights) */
    QM_TIME_COMM,      /* the row's tree sums (synchronisation and transfer) */
    QM_TIME_SAMPLE,    /* the sampler with its candidate exchange */
    QM_TIME_COUNT
} qm_time_part;

static inline const char *qm_time_part_name(qm_time_part p) {
    static const char *const names[QM_TIME_COUNT] = {"norm", "qkv", "rope_kv", "attention", "o_proj",
                                                     "gate_up", "down", "lm_head", "comm", "sample"};
    return (unsigned)p < QM_TIME_COUNT ? names[p] : "?";
}

#endif
