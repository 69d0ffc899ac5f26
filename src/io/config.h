/* config.json of a Hugging Face Qwen2-family checkpoint. */
#ifndef QM_IO_CONFIG_H
#define QM_IO_CONFIG_H

#include <qmesh.h>
#include <stdbool.h>

#define QM_MAX_EOS 8

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

/* Parses JSON text; `source` names the file in messages. Validates the result (qm_config_validate). */
qm_status qm_config_parse(const char *json, const char *source, qm_config *cfg, qm_error *err);
/* Reads and parses a config.json file. */
qm_status qm_config_load(const char *path, qm_config *cfg, qm_error *err);
/* Impossible values: zero or negative sizes, heads not a multiple of KV heads,
 * hidden_size != heads * head_dim, odd head_dim (RoPE), an enabled sliding window,
 * hidden_act other than silu, rope_scaling that is not null. */
qm_status qm_config_validate(const qm_config *cfg, const char *source, qm_error *err);
/* Writes cfg as a Qwen2 config.json (used by random-model). */
qm_status qm_config_write(const qm_config *cfg, const char *path, qm_error *err);

#endif
