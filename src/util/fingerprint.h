/* Fingerprints that tell two processes whether they run the same program on the same model:
 * 64-bit FNV-1a hashes, for catching a mistake (a rank started from another build or with
 * another checkpoint), not for security.
 *
 * A file's fingerprint covers its size, its first 1 MiB (a GGUF's metadata and tensor table, a
 * safetensors header) and 64 samples of 4 KiB spread evenly over the rest, so that it costs a
 * few milliseconds whatever the file's size; a folder's covers the names and fingerprints of its
 * regular files, in name order. */
#ifndef QM_UTIL_FINGERPRINT_H
#define QM_UTIL_FINGERPRINT_H

#include <qmesh.h>
#include <stddef.h>
#include <stdint.h>

#define QM_FNV_OFFSET 0xcbf29ce484222325ull

/* h extended by the n bytes at p (start from QM_FNV_OFFSET). */
uint64_t qm_fnv1a(uint64_t h, const void *p, size_t n);

/* A file's or a folder's fingerprint (see above). */
qm_status qm_path_fingerprint(const char *path, uint64_t *out, qm_error *err);

/* The running program's: its whole executable (/proc/self/exe), or, where that cannot be read,
 * the version string alone. */
uint64_t qm_program_fingerprint(void);

#endif
