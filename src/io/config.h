/* config.json of a Hugging Face Qwen2-family checkpoint. */
#ifndef QM_IO_CONFIG_H
#define QM_IO_CONFIG_H

#include <qmesh.h>
#include <stdbool.h>

#define QM_MAX_EOS 8

/* Upper bounds on the sizes a config may give (qm_config_validate). They are far above any Qwen2
 * model (vocab 152064, hidden 8192, intermediate 29568, 80 layers, 64 heads, head_dim 128,
 * 131072 positions) and keep every product the loader and the forward pass form in 64 bits:
 * vocab * hidden <= 2^44, layers * positions * kv_heads * head_dim (the KV cache, kv_heads *
 * head_dim <= hidden) <= 2^54 elements, hidden * intermediate <= 2^40, and each size plus a
 * block's rounding stays far below INT_MAX. */
#define QM_CONFIG_MAX_LAYERS 1024          /* num_hidden_layers */
#define QM_CONFIG_MAX_HEADS 1024           /* num_attention_heads, num_key_value_heads */
#define QM_CONFIG_MAX_HEAD_DIM (1 << 16)   /* head_dim */
#define QM_CONFIG_MAX_WIDTH (1 << 20)      /* hidden_size, intermediate_size */
#define QM_CONFIG_MAX_VOCAB (1 << 24)      /* vocab_size (as GGUF's embedding rows) */
#define QM_CONFIG_MAX_POSITIONS (1 << 24)  /* max_position_embeddings */

typedef struct {
    int vocab_size;              /* rows of embed_tokens / lm_head (may exceed the tokenizer's) */
    int hidden_size;             /* d_model */
    int intermediate_size;       /* d_ff of the SwiGLU MLP */
    int num_hidden_layers;
    int num_attention_heads;     /* query heads */
    int num_key_value_heads;     /* KV heads (GQA); query heads are a multiple of it */
    int head_dim;                /* hidden_size / num_attention_heads (or the config's head_dim) */
    int max_position_embeddings;
    double rope_theta;
    double rms_norm_eps;
    bool tie_word_embeddings;    /* lm_head is embed_tokens */
    int bos_token_id;            /* -1 when absent */
    int eos_token_ids[QM_MAX_EOS]; /* eos_token_id: an int or a list */
    int n_eos;
    char torch_dtype[16];        /* "bfloat16", "float16", "float32" or "" */
} qm_config;

/* Parses JSON text; `source` names the file in messages. Validates the result (qm_config_validate).
 * RoPE: rope_theta is read at the top level or from "rope_parameters" (newer transformers; both
 * present and different is an error); a RoPE scaling type other than "default" ("rope_type" or
 * "type" in rope_scaling or rope_parameters: yarn, dynamic, linear, llama3, longrope, ...) is
 * refused by name. */
qm_status qm_config_parse(const char *json, const char *source, qm_config *cfg, qm_error *err);
/* Reads and parses a config.json file. */
qm_status qm_config_load(const char *path, qm_config *cfg, qm_error *err);
/* Impossible values: zero or negative sizes, sizes above the QM_CONFIG_MAX_* bounds, heads not a
 * multiple of KV heads, hidden_size != heads * head_dim, odd head_dim (RoPE). (An enabled sliding
 * window, hidden_act other than silu and RoPE scaling are refused by qm_config_parse.) */
qm_status qm_config_validate(const qm_config *cfg, const char *source, qm_error *err);
/* Writes cfg as a Qwen2 config.json (used by random-model). */
qm_status qm_config_write(const qm_config *cfg, const char *path, qm_error *err);

#endif
