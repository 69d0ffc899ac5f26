/* The largest of n floats, NaN ignored (-inf when there is none): 8 running maxima side by side, so
 * the compiler can keep them in one vector. The result is the same value in any order (only a zero's
 * sign may differ, which no caller can tell: they compare with == or subtract it). */
#ifndef QM_UTIL_LARGEST_H
#define QM_UTIL_LARGEST_H

#include <math.h>

static inline float qm_largest(const float *x, int n) {
    float mk[8];
    for (int j = 0; j < 8; j++) mk[j] = -INFINITY;
    int i = 0;
    for (; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; j++) mk[j] = x[i + j] > mk[j] ? x[i + j] : mk[j];
    for (; i < n; i++) mk[0] = x[i] > mk[0] ? x[i] : mk[0];
    float m = mk[0];
    for (int j = 1; j < 8; j++) m = mk[j] > m ? mk[j] : m;
    return m;
}

#endif
