/* A Qwen2 model from a GGUF file: the config from the qwen2.* metadata, the tensors renamed to
 * the Hugging Face names the loader knows (blk.N.attn_q.weight -> model.layers.N.self_attn.
 * q_proj.weight, ...) with shapes in row-major order (GGUF lists ne[0], the columns, first). */
#include "io/gguf_model.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* GGUF name suffix inside a block -> Hugging Face name suffix inside model.layers.N. */
static const char *const layer_names[][2] = {
    {"attn_norm.weight", "input_layernorm.weight"},
    {"ffn_norm.weight", "post_attention_layernorm.weight"},
    {"attn_q.weight", "self_attn.q_proj.weight"},
    {"attn_q.bias", "self_attn.q_proj.bias"},
    {"attn_k.weight", "self_attn.k_proj.weight"},
    {"attn_k.bias", "self_attn.k_proj.bias"},
    {"attn_v.weight", "self_attn.v_proj.weight"},
    {"attn_v.bias", "self_attn.v_proj.bias"},
    {"attn_output.weight", "self_attn.o_proj.weight"},
    {"ffn_gate.weight", "mlp.gate_proj.weight"},
    {"ffn_up.weight", "mlp.up_proj.weight"},
    {"ffn_down.weight", "mlp.down_proj.weight"},
};

static const char *const top_names[][2] = {
    {"token_embd.weight", "model.embed_tokens.weight"},
    {"output_norm.weight", "model.norm.weight"},
    {"output.weight", "lm_head.weight"},
};

/* The Hugging Face name of a GGUF tensor (malloc'd); names qmesh does not know are kept. */
static char *hf_name(const char *g) {
    char buf[256];
    for (size_t i = 0; i < sizeof top_names / sizeof top_names[0]; i++)
        if (!strcmp(g, top_names[i][0])) return strdup(top_names[i][1]);
    int layer, n = 0;
    if (sscanf(g, "blk.%d.%n", &layer, &n) == 1 && n > 0 && layer >= 0)
        for (size_t i = 0; i < sizeof layer_names / sizeof layer_names[0]; i++)
            if (!strcmp(g + n, layer_names[i][0])) {
                snprintf(buf, sizeof buf, "model.layers.%d.%s", layer, layer_names[i][1]);
                return strdup(buf);
            }
    return strdup(g);
}

static qm_status get_int_field(const qm_gguf *g, const char *key, bool required, int *out, qm_error *err) {
    int64_t v = *out;
    qm_status st = qm_gguf_get_int(g, key, required, &v, err);
    if (st) return st;
    if (v < 0 || v > (1 << 30))
        return qm_fail(err, QM_ERR_CONFIG, "%s: %s = %lld is out of range", qm_gguf_path(g), key, (long long)v);
    *out = (int)v;
    return QM_OK;
}

/* qwen2.* metadata -> config. */
static qm_status read_config(const qm_gguf *g, qm_config *c, qm_error *err) {
    const char *src = qm_gguf_path(g);
    char *arch = NULL, *scaling = NULL;
    qm_status st = qm_gguf_get_string(g, "general.architecture", true, &arch, err);
    if (st) return st;
    if (strcmp(arch, "qwen2")) {
        st = qm_fail(err, QM_ERR_UNSUPPORTED, "%s: architecture \"%s\" is not supported (qmesh runs qwen2)", src, arch);
        free(arch);
        return st;
    }
    free(arch);
    memset(c, 0, sizeof *c);
    c->bos_token_id = -1;
    c->rope_theta = 10000.0;
    c->rms_norm_eps = 1e-6;
    int eos = -1;
    if ((st = get_int_field(g, "qwen2.embedding_length", true, &c->hidden_size, err)) ||
        (st = get_int_field(g, "qwen2.feed_forward_length", true, &c->intermediate_size, err)) ||
        (st = get_int_field(g, "qwen2.block_count", true, &c->num_hidden_layers, err)) ||
        (st = get_int_field(g, "qwen2.attention.head_count", true, &c->num_attention_heads, err)) ||
        (st = get_int_field(g, "qwen2.context_length", true, &c->max_position_embeddings, err)) ||
        (st = get_int_field(g, "tokenizer.ggml.bos_token_id", false, &c->bos_token_id, err)) ||
        (st = get_int_field(g, "tokenizer.ggml.eos_token_id", false, &eos, err)) ||
        (st = qm_gguf_get_float(g, "qwen2.rope.freq_base", false, &c->rope_theta, err)) ||
        (st = qm_gguf_get_float(g, "qwen2.attention.layer_norm_rms_epsilon", false, &c->rms_norm_eps, err)) ||
        (st = qm_gguf_get_string(g, "qwen2.rope.scaling.type", false, &scaling, err)))
        return st;
    if (scaling && strcmp(scaling, "none")) {
        st = qm_fail(err, QM_ERR_UNSUPPORTED, "%s: RoPE scaling \"%s\" is not supported", src, scaling);
        free(scaling);
        return st;
    }
    free(scaling);
    c->num_key_value_heads = c->num_attention_heads;
    if ((st = get_int_field(g, "qwen2.attention.head_count_kv", false, &c->num_key_value_heads, err))) return st;
    c->head_dim = c->num_attention_heads > 0 ? c->hidden_size / c->num_attention_heads : 0;
    if ((st = get_int_field(g, "qwen2.attention.key_length", false, &c->head_dim, err))) return st;
    if (eos >= 0) c->eos_token_ids[c->n_eos++] = eos;
    const qm_gguf_tensor *emb = qm_gguf_tensor_find(g, "token_embd.weight");
    if (!emb || emb->ndim != 2)
        return qm_fail(err, QM_ERR_FORMAT, "%s: no 2-D tensor \"token_embd.weight\" (the embedding)", src);
    if (emb->ne[1] > (1 << 24))
        return qm_fail(err, QM_ERR_CONFIG, "%s: vocabulary of %lld rows is too large", src, (long long)emb->ne[1]);
    c->vocab_size = (int)emb->ne[1];
    c->tie_word_embeddings = qm_gguf_tensor_find(g, "output.weight") == NULL;
    return qm_config_validate(c, src, err);
}

static qm_status make_refs(const qm_gguf *g, qm_tensor_ref **out, int *n_out, qm_error *err) {
    int n = qm_gguf_tensor_count(g);
    qm_tensor_ref *refs = calloc((size_t)(n ? n : 1), sizeof *refs);
    if (!refs) return qm_fail(err, QM_ERR_NOMEM, "%s: out of memory", qm_gguf_path(g));
    for (int i = 0; i < n; i++) {
        const qm_gguf_tensor *t = qm_gguf_tensor_at(g, i);
        qm_tensor_ref *r = &refs[i];
        r->name = hf_name(t->name);
        if (!r->name) {
            for (int j = 0; j < i; j++) free((char *)refs[j].name);
            free(refs);
            return qm_fail(err, QM_ERR_NOMEM, "%s: out of memory", qm_gguf_path(g));
        }
        r->dtype = t->dtype;
        r->ndim = t->ndim;
        for (int k = 0; k < t->ndim; k++) r->shape[k] = t->ne[t->ndim - 1 - k];
        r->data = t->data;
        r->nbytes = t->nbytes;
        r->file = qm_gguf_path(g);
        r->file_offset = (size_t)t->offset; /* from the start of the data section */
    }
    *out = refs;
    *n_out = n;
    return QM_OK;
}

qm_status qm_gguf_model_open(const char *path, qm_config *cfg, qm_checkpoint **ck, qm_error *err) {
    qm_gguf *g = NULL;
    *ck = NULL;
    qm_status st = qm_gguf_open(path, &g, err);
    if (st) return st;
    qm_tensor_ref *refs = NULL;
    int n = 0;
    if ((st = read_config(g, cfg, err)) || (st = make_refs(g, &refs, &n, err))) {
        qm_gguf_close(g);
        return st;
    }
    st = qm_checkpoint_wrap_gguf(g, refs, n, ck, err);
    free(refs);
    return st;
}

bool qm_is_gguf_path(const char *path) {
    size_t n = path ? strlen(path) : 0;
    return n > 5 && !strcmp(path + n - 5, ".gguf");
}
