/* qmesh quantize: a Hugging Face Qwen2 safetensors folder -> one GGUF file that qmesh and llama.cpp load.
 *
 * The file is what llama.cpp's convert_hf_to_gguf.py writes for Qwen2 at a pure Q8_0 (or, for Q4_0,
 * what a pure llama-quantize of it gives):
 *   metadata  general.architecture "qwen2", general.type "model", general.name (the folder's name),
 *             qwen2.block_count, context_length, embedding_length, feed_forward_length,
 *             attention.head_count, attention.head_count_kv (UINT32), qwen2.rope.freq_base and
 *             qwen2.attention.layer_norm_rms_epsilon (FLOAT32), qwen2.attention.key_length and
 *             value_length (UINT32, only when config.json gives head_dim), general.file_type (UINT32: 7
 *             MOSTLY_Q8_0, 2 MOSTLY_Q4_0, 32 MOSTLY_BF16, 1 MOSTLY_F16, 0 ALL_F32),
 *             general.quantization_version 2, then the tokenizer.* keys
 *             (opts->tokenizer_metadata);
 *   tensors   token_embd, blk.N.{attn_norm, attn_q, attn_k, attn_v (weights and biases), attn_output,
 *             ffn_norm, ffn_gate, ffn_up, ffn_down}, output_norm, output (absent when
 *             tie_word_embeddings), in that order, with ne[0] = columns (Qwen2 is not permuted).
 *   types     every 2-D matrix whose rows are a multiple of 32 long (any length for BF16, F16, F32)
 *             gets the requested type,
 *             token_embd and output included (llama-quantize's mixed modes keep those at
 *             Q8_0/Q6_K; this converter does not); 1-D tensors (norms, biases) are F32; a matrix
 *             whose row length is not a multiple of 32 keeps its exact values (F16 from an F16
 *             source, else F32).
 * BF16, F16 and F32 sources convert to f32 exactly, then each row is quantized as gguf.quants.quantize
 * does (kernels/quant.h), so the blocks are the reference's bit for bit. Streaming: a few rows at a
 * time (about 1 MB), and each source tensor's mapped pages are released once written, so the size
 * of the model does not matter. The file appears at out_path only when complete (a temporary file
 * renamed into place); an existing file there is replaced. */
#ifndef QM_IO_QUANTIZE_H
#define QM_IO_QUANTIZE_H

#include <qmesh.h>
#include <stdbool.h>
#include <stdint.h>

#include "io/gguf.h"
#include "util/dtype.h"

/* Where the conversion stands, after each chunk of rows and after each tensor. */
typedef struct {
    int tensor;              /* index of the tensor being written, 0-based */
    int n_tensors;
    const char *name;        /* its GGUF name */
    qm_dtype dtype;          /* its type in the file */
    uint64_t bytes_done;     /* tensor data written so far, all tensors */
    uint64_t bytes_total;    /* tensor data of the whole file */
} qm_quantize_progress;

/* Adds tokenizer.* keys for the folder (qm_tokenizer_gguf_metadata in text/tokenizer.h has this
 * signature; it is passed in because the text module builds on io, not the reverse). */
typedef qm_status (*qm_quantize_tokenizer_fn)(const char *hf_dir, qm_gguf_writer *w, qm_error *err);

typedef struct {
    qm_quantize_tokenizer_fn tokenizer_metadata; /* NULL: no tokenizer keys (the file then
                                                    cannot generate text, and llama.cpp refuses it) */
    void (*progress)(void *ctx, const qm_quantize_progress *p); /* NULL: none */
    void *progress_ctx;
} qm_quantize_opts;

typedef struct {
    int n_tensors;           /* tensors in the file */
    int n_quantized;         /* of which in the requested type */
    uint64_t tensor_bytes;   /* their data */
    uint64_t file_bytes;     /* the whole file */
    uint64_t n_params;       /* elements of all tensors */
} qm_quantize_summary;

/* Converts hf_dir (config.json, model.safetensors or an index with shards, tokenizer files) to a
 * GGUF at out_path with weights in `type` (QM_DT_Q8_0, QM_DT_Q4_0, or unquantized QM_DT_BF16,
 * QM_DT_F16, QM_DT_F32: every 2-D matrix converted, values rounded to nearest even where the
 * type is narrower than the source, the same bits where it is the source's). opts and summary may be NULL.
 * Errors: QM_ERR_ARG (another type), QM_ERR_IO (hf_dir missing or not a folder, no config.json, no
 * weights, out_path not writable), QM_ERR_CONFIG / QM_ERR_FORMAT (a bad config or checkpoint, a
 * missing tensor or one of the wrong shape: named), QM_ERR_UNSUPPORTED (a tensor that is not part
 * of a Qwen2 model: named). Nothing is left at out_path on failure. */
qm_status qm_quantize_model(const char *hf_dir, qm_dtype type, const char *out_path, const qm_quantize_opts *opts,
                            qm_quantize_summary *summary, qm_error *err);

/* The general.file_type (llama_ftype) of a pure conversion to type: 7 for Q8_0, 2 for Q4_0, 0 for
 * F32, 1 for F16, 32 for BF16, -1 for a type this converter does not write. */
int qm_quantize_file_type(qm_dtype type);

#endif
