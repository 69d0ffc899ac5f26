/* Opening a Qwen2 model stored as one GGUF file (-m FILE.gguf). */
#ifndef QM_IO_GGUF_MODEL_H
#define QM_IO_GGUF_MODEL_H

#include <qmesh.h>
#include <stdbool.h>

#include "io/checkpoint.h"
#include "io/config.h"
#include "io/gguf.h"

/* Reads the config from the metadata (general.architecture must be qwen2; RoPE scaling other
 * than none is refused; tie_word_embeddings when output.weight is absent) and wraps the tensors
 * as a checkpoint under Hugging Face names. The GGUF stays open inside the checkpoint
 * (qm_checkpoint_gguf) for the tokenizer. */
qm_status qm_gguf_model_open(const char *path, qm_config *cfg, qm_checkpoint **ck, qm_error *err);

/* True when path names a GGUF file (ends in .gguf). */
bool qm_is_gguf_path(const char *path);

#endif
