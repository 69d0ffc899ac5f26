/* GGUF files (llama.cpp's format), versions 2 and 3: reading (mmap) and writing.
 *
 * Layout (little-endian): magic "GGUF", u32 version, u64 tensor_count, u64 kv_count, then
 * kv_count metadata pairs (gguf string key, u32 value type, value), then tensor_count tensor
 * infos (string name, u32 n_dims, u64 ne[n_dims] with ne[0] the fastest-varying, u32 ggml type,
 * u64 offset relative to the data section), padding to general.alignment (default 32), the data
 * section. A gguf string is u64 length + bytes (no NUL). An array is u32 element type, u64
 * count, elements.
 *
 * The reader checks everything before anything is used: truncation anywhere, the magic, the
 * version, strings and arrays running past the end, counts whose byte sizes overflow, unknown
 * value or tensor types, more than 4 dims, zero dims or element counts that overflow, rows not
 * a multiple of the type's block, tensors past the end of the file, misaligned or overlapping
 * tensors, duplicate keys or tensor names, empty names or names with a NUL byte. Every error names
 * the file and the key or tensor, and where it helps the byte offset. Error codes: QM_ERR_IO (cannot
 * open or map), QM_ERR_FORMAT (malformed), QM_ERR_UNSUPPORTED (version 1, a big-endian file, a
 * tensor type that ggml defines but qmesh does not read). */
#ifndef QM_IO_GGUF_H
#define QM_IO_GGUF_H

#include <qmesh.h>
#include <stdbool.h>
#include <stdint.h>

#include "util/dtype.h"

typedef enum {
    QM_GGUF_UINT8 = 0,
    QM_GGUF_INT8 = 1,
    QM_GGUF_UINT16 = 2,
    QM_GGUF_INT16 = 3,
    QM_GGUF_UINT32 = 4,
    QM_GGUF_INT32 = 5,
    QM_GGUF_FLOAT32 = 6,
    QM_GGUF_BOOL = 7,
    QM_GGUF_STRING = 8,
    QM_GGUF_ARRAY = 9,
    QM_GGUF_UINT64 = 10,
    QM_GGUF_INT64 = 11,
    QM_GGUF_FLOAT64 = 12,
} qm_gguf_type;

/* A string inside the mapping: not NUL-terminated. */
typedef struct {
    const char *ptr;
    uint64_t len;
} qm_gguf_str;

typedef struct {
    char *key;               /* NUL-terminated copy */
    qm_gguf_type type;
    /* scalars (type != ARRAY): the value, widened */
    union {
        uint64_t u;          /* UINT8..UINT64, BOOL (0/1) */
        int64_t i;           /* INT8..INT64 */
        double f;            /* FLOAT32, FLOAT64 */
        qm_gguf_str s;       /* STRING */
    } v;
    /* arrays (type == ARRAY) */
    qm_gguf_type elem_type;  /* ARRAY for nested arrays: they are checked (at most 8 deep) and skipped,
                                with elems pointing at the first inner array and count the number of
                                inner arrays; nothing else is indexed for them */
    uint64_t count;
    const void *elems;       /* first element in the mapping (packed little-endian; for STRING the
                                first gguf string) */
    const qm_gguf_str *strs; /* STRING arrays: count strings, indexed at open; else NULL */
} qm_gguf_kv;

typedef struct {
    char *name;              /* NUL-terminated copy, e.g. "blk.0.attn_q.weight" */
    uint32_t ggml_type;      /* as in the file */
    qm_dtype dtype;          /* the type qmesh knows it as */
    int ndim;                /* 1..4 */
    int64_t ne[4];           /* ne[0] fastest (columns); unused dims are 1 */
    uint64_t offset;         /* from the start of the data section */
    const void *data;        /* into the mapping */
    size_t nbytes;
} qm_gguf_tensor;

typedef struct qm_gguf qm_gguf;

/* Opens and checks a file (mmap, read-only). */
qm_status qm_gguf_open(const char *path, qm_gguf **out, qm_error *err);
/* The same checks on bytes in memory (not copied: they must outlive the handle); `name` is used
 * in messages. For tests and the fuzzer. */
qm_status qm_gguf_open_mem(const void *data, size_t size, const char *name, qm_gguf **out, qm_error *err);
void qm_gguf_close(qm_gguf *g);

const char *qm_gguf_path(const qm_gguf *g);
uint32_t qm_gguf_version(const qm_gguf *g);
uint32_t qm_gguf_alignment(const qm_gguf *g);

int qm_gguf_kv_count(const qm_gguf *g);
const qm_gguf_kv *qm_gguf_kv_at(const qm_gguf *g, int i);
const qm_gguf_kv *qm_gguf_find(const qm_gguf *g, const char *key); /* NULL when absent */

/* Typed getters: QM_OK, or an error naming the key when it is absent (unless a default is
 * given by the caller beforehand: `*out` is left untouched and QM_OK returned when absent and
 * `required` is false), of another type, or out of range. Integers accept any integer type
 * whose value fits; floats accept FLOAT32 and FLOAT64. */
qm_status qm_gguf_get_int(const qm_gguf *g, const char *key, bool required, int64_t *out, qm_error *err);
qm_status qm_gguf_get_float(const qm_gguf *g, const char *key, bool required, double *out, qm_error *err);
qm_status qm_gguf_get_bool(const qm_gguf *g, const char *key, bool required, bool *out, qm_error *err);
/* A malloc'd NUL-terminated copy (an embedded NUL is an error). */
qm_status qm_gguf_get_string(const qm_gguf *g, const char *key, bool required, char **out, qm_error *err);
/* An array of elem_type (NULL *out when absent and not required). */
qm_status qm_gguf_get_array(const qm_gguf *g, const char *key, qm_gguf_type elem_type, bool required,
                            const qm_gguf_kv **out, qm_error *err);
/* An array of any integer element type (UINT8..INT64), to be read with qm_gguf_array_int. */
qm_status qm_gguf_get_int_array(const qm_gguf *g, const char *key, bool required, const qm_gguf_kv **out,
                                qm_error *err);
/* Element i of an integer array of any integer type, widened (UINT64 above INT64_MAX wraps); 0 when
 * i >= count or the array is not of integers. */
int64_t qm_gguf_array_int(const qm_gguf_kv *kv, uint64_t i);
/* Element i of a FLOAT32 or FLOAT64 array, widened; 0 when i >= count or of another type. */
double qm_gguf_array_float(const qm_gguf_kv *kv, uint64_t i);

/* Bytes of one value of a fixed-size type (UINT8..FLOAT64 except STRING and ARRAY); 0 otherwise. */
size_t qm_gguf_type_size(qm_gguf_type t);
/* "UINT32", "STRING", ...; "unknown" for an undefined type. */
const char *qm_gguf_type_name(qm_gguf_type t);
/* Where the data section starts in the file (tensor offsets are relative to it). */
uint64_t qm_gguf_data_offset(const qm_gguf *g);

int qm_gguf_tensor_count(const qm_gguf *g);
const qm_gguf_tensor *qm_gguf_tensor_at(const qm_gguf *g, int i);
const qm_gguf_tensor *qm_gguf_tensor_find(const qm_gguf *g, const char *name); /* NULL when absent */

/* ggml type id <-> qmesh dtype: F32 0, F16 1, Q4_0 2, Q4_1 3, Q5_0 6, Q5_1 7, Q8_0 8, Q4_K 12,
 * Q5_K 13, Q6_K 14, BF16 30. Returns false for a type qmesh does not read. */
bool qm_gguf_dtype_from_ggml(uint32_t ggml_type, qm_dtype *out);
uint32_t qm_gguf_ggml_from_dtype(qm_dtype t);
/* "Q2_K", "IQ4_XS", ... for messages; "unknown" for an id ggml never defined (print the number too). */
const char *qm_gguf_ggml_type_name(uint32_t ggml_type);

/* Writing (qmesh quantize, tests): metadata first, then tensor infos, then data. The file
 * appears at path only on a successful close(commit = true). Version 3, alignment 32 unless
 * general.alignment (UINT32) is added. */
typedef struct qm_gguf_writer qm_gguf_writer;
qm_status qm_gguf_writer_open(const char *path, qm_gguf_writer **out, qm_error *err);
qm_status qm_gguf_add_u32(qm_gguf_writer *w, const char *key, uint32_t v, qm_error *err);
qm_status qm_gguf_add_i32(qm_gguf_writer *w, const char *key, int32_t v, qm_error *err);
qm_status qm_gguf_add_f32(qm_gguf_writer *w, const char *key, float v, qm_error *err);
qm_status qm_gguf_add_bool(qm_gguf_writer *w, const char *key, bool v, qm_error *err);
/* A scalar of any fixed-size type: v points at a value of its C type (uint8_t, int8_t, ..., float,
 * bool, uint64_t, int64_t, double). */
qm_status qm_gguf_add_value(qm_gguf_writer *w, const char *key, qm_gguf_type type, const void *v, qm_error *err);
qm_status qm_gguf_add_string(qm_gguf_writer *w, const char *key, const char *v, qm_error *err);
qm_status qm_gguf_add_string_array(qm_gguf_writer *w, const char *key, const char *const *v, uint64_t n,
                                   qm_error *err);
/* elem_type any fixed-size type (integers, floats, BOOL); elems packed little-endian. */
qm_status qm_gguf_add_array(qm_gguf_writer *w, const char *key, qm_gguf_type elem_type, const void *elems,
                            uint64_t n, qm_error *err);
/* Declares a tensor (ne[0] fastest); its bytes are given later by qm_gguf_write_tensor_data in the same
 * order as declared. */
qm_status qm_gguf_add_tensor(qm_gguf_writer *w, const char *name, qm_dtype dtype, int ndim, const int64_t *ne,
                             qm_error *err);
/* Appends bytes of the tensors' data, in declaration order, in pieces of any size (the writer pads
 * between tensors). The first call writes the header. */
qm_status qm_gguf_write_tensor_data(qm_gguf_writer *w, const void *data, size_t nbytes, qm_error *err);
/* commit = true: writes the header if no data was given, checks that every declared tensor got all its
 * bytes, then renames the temporary file (path.XXXXXX) into place. commit = false, or any failure: the
 * temporary file is removed. Frees w either way. Misuse (a duplicate key or tensor, metadata after
 * data, too much data) is QM_ERR_ARG and names the key or tensor; a write error is QM_ERR_IO. */
qm_status qm_gguf_writer_close(qm_gguf_writer *w, bool commit, qm_error *err);

#endif
