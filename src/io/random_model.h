/* Checkpoints with random weights in the Hugging Face Qwen2 layout (qmesh random-model, tests). */
#ifndef QM_IO_RANDOM_MODEL_H
#define QM_IO_RANDOM_MODEL_H

#include <qmesh.h>
#include <stdbool.h>

#include "io/config.h"
#include "util/dtype.h"

/* "tiny", "qwen2.5-0.5b", "qwen2.5-7b"; false for another name. */
bool qm_random_preset(const char *name, qm_config *cfg);

typedef struct {
    uint64_t seed;
    qm_dtype dtype;           /* QM_DT_BF16 or QM_DT_F32 */
    int shards;               /* 1: model.safetensors; N > 1: model-0000K-of-0000N + index */
    /* Called after each chunk of data (may be NULL): bytes written so far, of total. */
    void (*progress)(void *ctx, uint64_t done, uint64_t total);
    void *progress_ctx;
} qm_random_opts;

/* Writes dir/config.json and the weights (dir must exist). Memory stays bounded (a few MB) whatever the
 * model size: each tensor is generated in chunks while it is written. Every value is a function of
 * (seed, tensor name, element index) only, so the bytes do not depend on chunking or sharding.
 * Matrices ~ N(0, 0.02^2) (a sum of 4 uniforms, bounded by +-3.5 sigma), norms 1 + N(0, 0.02^2),
 * biases N(0, 0.02^2). */
qm_status qm_random_model_write(const qm_config *cfg, const char *dir, const qm_random_opts *opts, qm_error *err);

/* The value random-model stores for element i of tensor `name` (before rounding to the dtype). */
float qm_random_value(uint64_t seed, const char *name, uint64_t i);

#endif
