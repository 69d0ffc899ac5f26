/* Safetensors checkpoints: model.safetensors, or shards listed by model.safetensors.index.json.
 * Every file is mapped with mmap; tensors point into the mapping (no copy). */
#ifndef QM_IO_CHECKPOINT_H
#define QM_IO_CHECKPOINT_H

#include <qmesh.h>
#include <stdbool.h>

#include "util/dtype.h"

#define QM_MAX_DIMS 4
#define QM_ST_MAX_HEADER 100000000 /* bytes: the safetensors format's cap on the JSON header */

typedef struct {
    const char *name;            /* e.g. "model.layers.0.self_attn.q_proj.weight" */
    qm_dtype dtype;
    int ndim;
    int64_t shape[QM_MAX_DIMS];  /* row-major; shape[0] is rows */
    const void *data;            /* into the file's mapping, nbytes long */
    size_t nbytes;
    const char *file;            /* path of the shard that holds it */
    size_t file_offset;          /* byte offset of data in that file */
} qm_tensor_ref;

typedef struct qm_checkpoint qm_checkpoint;

/* Opens model_dir/model.safetensors, or the shards named by model_dir/model.safetensors.index.json.
 * Checks: file exists, is non-empty, header length at most QM_ST_MAX_HEADER and inside the file,
 * header is JSON, known dtypes (F32, F16, BF16), offsets begin <= end inside the data and matching
 * shape x dtype size, no two tensors of a file sharing bytes, no duplicate tensor across shards,
 * every tensor the index names present in its shard. Errors name the file and the tensor. */
qm_status qm_checkpoint_open(const char *model_dir, qm_checkpoint **out, qm_error *err);
typedef struct qm_gguf qm_gguf;
/* A checkpoint over an open GGUF file, taking ownership of g (closed with the checkpoint, also on
 * failure) and of the refs' names (malloc'd): refs name tensors the Hugging Face way, with
 * shape[0] = rows (see io/gguf_model.c). */
qm_status qm_checkpoint_wrap_gguf(qm_gguf *g, const qm_tensor_ref *refs, int n, qm_checkpoint **out, qm_error *err);
/* The GGUF file behind a checkpoint, or NULL for safetensors. */
qm_gguf *qm_checkpoint_gguf(const qm_checkpoint *ck);

/* Opens one .safetensors file on its own. */
qm_status qm_checkpoint_open_file(const char *path, qm_checkpoint **out, qm_error *err);
void qm_checkpoint_close(qm_checkpoint *ck);

int qm_checkpoint_count(const qm_checkpoint *ck);
const qm_tensor_ref *qm_checkpoint_at(const qm_checkpoint *ck, int i);
/* NULL when absent. */
const qm_tensor_ref *qm_checkpoint_find(const qm_checkpoint *ck, const char *name);

/* Finds `name` and checks its rank and shape ({rows} or {rows, cols}); a missing tensor or a
 * different shape is an error naming the tensor, its file, and both shapes. */
qm_status qm_checkpoint_expect(const qm_checkpoint *ck, const char *name, int ndim, const int64_t *shape,
                               const qm_tensor_ref **out, qm_error *err);

/* Writing (random-model, tests): one safetensors file from a list of tensors. */
typedef struct {
    const char *name;
    qm_dtype dtype;
    int ndim;
    int64_t shape[QM_MAX_DIMS];
    const void *data;            /* nbytes = prod(shape) * dtype size */
} qm_tensor_out;
qm_status qm_safetensors_write(const char *path, const qm_tensor_out *tensors, int n, qm_error *err);

/* Streaming writer for files too big to hold in memory (random-model): the header is written from the
 * list (data pointers unused; data laid out in list order), then the tensors' bytes are appended in
 * that order, in pieces of any size. The file appears at `path` only when close(commit = true)
 * finds every byte written. */
typedef struct qm_st_writer qm_st_writer;
qm_status qm_st_writer_open(const char *path, const qm_tensor_out *tensors, int n, qm_st_writer **out,
                            qm_error *err);
qm_status qm_st_writer_write(qm_st_writer *w, const void *data, size_t nbytes, qm_error *err);
/* commit = false discards the file; either way w is freed. */
qm_status qm_st_writer_close(qm_st_writer *w, bool commit, qm_error *err);

/* model.safetensors.index.json: {"metadata": {"total_size": N}, "weight_map": {names[i]: files[i]}}. */
qm_status qm_safetensors_write_index(const char *path, const char *const *names, const char *const *files, int n,
                                     uint64_t total_size, qm_error *err);

#endif
