/* NumPy .npy files (format 1.0). */
#ifndef QM_IO_NPY_H
#define QM_IO_NPY_H

#include <qmesh.h>

/* Writes a C-order little-endian float32 ('<f4') array of `ndim` dimensions (0..8); ndim 0 is a scalar.
 * Atomic: a temporary file in the same folder is renamed to `path` when complete. */
qm_status qm_npy_write_f32(const char *path, const float *data, int ndim, const int64_t *shape, qm_error *err);

#endif
