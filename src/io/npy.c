#include "io/npy.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/fileutil.h"

qm_status qm_npy_write_f32(const char *path, const float *data, int ndim, const int64_t *shape, qm_error *err) {
    if (ndim < 0 || ndim > 8) return qm_fail(err, QM_ERR_ARG, "%s: npy rank %d out of range 0..8", path, ndim);
    char dict[512];
    int len = snprintf(dict, sizeof dict, "{'descr': '<f4', 'fortran_order': False, 'shape': (");
    size_t count = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0) return qm_fail(err, QM_ERR_ARG, "%s: npy dimension %d is negative", path, i);
        len += snprintf(dict + len, sizeof dict - (size_t)len, "%lld,%s", (long long)shape[i],
                        (ndim > 1 && i < ndim - 1) ? " " : "");
        count *= (size_t)shape[i];
    }
    if (ndim > 1) len--; /* "(2, 3," -> drop the trailing comma below */
    if (ndim > 1) dict[len] = '\0';
    len += snprintf(dict + len, sizeof dict - (size_t)len, "), }");
    /* magic(6) + version(2) + header length(2) + dict + padding + '\n', a multiple of 64 */
    size_t total = 10 + (size_t)len + 1;
    size_t pad = (64 - total % 64) % 64;
    size_t hlen = (size_t)len + pad + 1;
    unsigned char head[640];
    memcpy(head, "\x93NUMPY\x01\x00", 8);
    head[8] = (unsigned char)(hlen & 0xff);
    head[9] = (unsigned char)(hlen >> 8);
    memcpy(head + 10, dict, (size_t)len);
    memset(head + 10 + len, ' ', pad);
    head[10 + hlen - 1] = '\n';

    qm_atomic_file af;
    qm_status st = qm_atomic_begin(&af, path, err);
    if (st) return st;
    st = qm_atomic_write(&af, head, 10 + hlen, err);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    for (size_t i = 0; !st && i < count; i++) {
        uint32_t u;
        memcpy(&u, &data[i], 4);
        u = __builtin_bswap32(u);
        st = qm_atomic_write(&af, &u, 4, err);
    }
#else
    if (!st) st = qm_atomic_write(&af, data, count * sizeof(float), err);
#endif
    if (st) {
        qm_atomic_abort(&af);
        return st;
    }
    return qm_atomic_commit(&af, err);
}
