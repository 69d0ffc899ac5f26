/* Element types of weights as stored in checkpoints. Activations are always f32. */
#ifndef QM_UTIL_DTYPE_H
#define QM_UTIL_DTYPE_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

typedef enum { QM_DT_F32 = 0, QM_DT_F16 = 1, QM_DT_BF16 = 2 } qm_dtype;

static inline size_t qm_dtype_size(qm_dtype t) { return t == QM_DT_F32 ? 4 : 2; }
static inline const char *qm_dtype_name(qm_dtype t) {
    return t == QM_DT_F32 ? "F32" : t == QM_DT_F16 ? "F16" : "BF16";
}

/* bf16 -> f32 is exact: the bf16 bits are the top half of the f32. */
static inline float qm_bf16_to_f32(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* f32 -> bf16, round to nearest even (NaN stays NaN), as torch does. */
static inline uint16_t qm_f32_to_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

/* IEEE half -> f32, exact (subnormals included). */
static inline float qm_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu, man = h & 0x3ffu, u;
    if (exp == 0) {
        if (man == 0) {
            u = sign;
        } else { /* subnormal: renormalise */
            int e = -1;
            do { man <<= 1; e++; } while (!(man & 0x400u));
            u = sign | ((uint32_t)(127 - 15 - e) << 23) | ((man & 0x3ffu) << 13);
        }
    } else if (exp == 31) {
        u = sign | 0x7f800000u | (man << 13);
    } else {
        u = sign | ((exp + 127 - 15) << 23) | (man << 13);
    }
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* Loads element i of a row of any weight dtype as f32 (exact). */
static inline float qm_load_f32(const void *row, qm_dtype t, size_t i) {
    if (t == QM_DT_F32) return ((const float *)row)[i];
    uint16_t h = ((const uint16_t *)row)[i];
    return t == QM_DT_BF16 ? qm_bf16_to_f32(h) : qm_f16_to_f32(h);
}

#endif
