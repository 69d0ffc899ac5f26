/* config.json of a Qwen2-family checkpoint: parse, validate, write.
 *
 * Error codes: a file that cannot be read is QM_ERR_IO, text that is not JSON is QM_ERR_FORMAT,
 * everything else (missing field, wrong type, impossible or unsupported value) is QM_ERR_CONFIG.
 * Every message starts with the file's name and names the field. */
#include "io/config.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/fileutil.h"

/* ---- reading fields ---- */

/* An integer field: absent -> *present = false (when allowed), else must be a JSON number with an
 * integer value that fits in int. */
static qm_status get_int(const cJSON *root, const char *key, bool required, int *out, bool *present,
                         const char *src, qm_error *err) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, key);
    if (present) *present = false;
    if (!v || (!required && cJSON_IsNull(v))) {
        if (required) return qm_fail(err, QM_ERR_CONFIG, "%s: missing required field \"%s\" (an integer)", src, key);
        return QM_OK;
    }
    double d = v->valuedouble;
    if (!cJSON_IsNumber(v) || d != floor(d) || d < -2147483648.0 || d > 2147483647.0)
        return qm_fail(err, QM_ERR_CONFIG, "%s: field \"%s\" must be an integer", src, key);
    *out = (int)d;
    if (present) *present = true;
    return QM_OK;
}

static qm_status get_double(const cJSON *root, const char *key, bool required, double *out, const char *src,
                            qm_error *err) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, key);
    if (!v || (!required && cJSON_IsNull(v))) {
        if (required) return qm_fail(err, QM_ERR_CONFIG, "%s: missing required field \"%s\" (a number)", src, key);
        return QM_OK;
    }
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble))
        return qm_fail(err, QM_ERR_CONFIG, "%s: field \"%s\" must be a number", src, key);
    *out = v->valuedouble;
    return QM_OK;
}

static qm_status get_bool(const cJSON *root, const char *key, bool *out, const char *src, qm_error *err) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, key);
    if (!v || cJSON_IsNull(v)) return QM_OK;
    if (!cJSON_IsBool(v)) return qm_fail(err, QM_ERR_CONFIG, "%s: field \"%s\" must be true or false", src, key);
    *out = cJSON_IsTrue(v);
    return QM_OK;
}

/* A string field; absent or null -> *out = NULL. */
static qm_status get_string(const cJSON *root, const char *key, const char **out, const char *src, qm_error *err) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, key);
    *out = NULL;
    if (!v || cJSON_IsNull(v)) return QM_OK;
    if (!cJSON_IsString(v)) return qm_fail(err, QM_ERR_CONFIG, "%s: field \"%s\" must be a string", src, key);
    *out = v->valuestring;
    return QM_OK;
}

static qm_status get_eos(const cJSON *root, qm_config *cfg, const char *src, qm_error *err) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, "eos_token_id");
    cfg->n_eos = 0;
    if (!v || cJSON_IsNull(v)) return QM_OK;
    if (cJSON_IsNumber(v)) {
        qm_status st = get_int(root, "eos_token_id", true, &cfg->eos_token_ids[0], NULL, src, err);
        if (st) return st;
        cfg->n_eos = 1;
        return QM_OK;
    }
    if (!cJSON_IsArray(v))
        return qm_fail(err, QM_ERR_CONFIG, "%s: field \"eos_token_id\" must be an integer or a list of integers", src);
    int n = cJSON_GetArraySize(v);
    if (n > QM_MAX_EOS)
        return qm_fail(err, QM_ERR_CONFIG, "%s: field \"eos_token_id\" lists %d ids; at most %d are supported", src, n,
                       QM_MAX_EOS);
    const cJSON *it;
    cJSON_ArrayForEach(it, v) {
        double d = it->valuedouble;
        if (!cJSON_IsNumber(it) || d != floor(d) || d < 0 || d > 2147483647.0)
            return qm_fail(err, QM_ERR_CONFIG, "%s: field \"eos_token_id\" must be an integer or a list of integers",
                           src);
        cfg->eos_token_ids[cfg->n_eos++] = (int)d;
    }
    return QM_OK;
}

/* ---- RoPE ---- */

/* rope_scaling (older transformers) and rope_parameters (newer) describe the RoPE variant. qmesh
 * computes plain RoPE only, so any type other than "default" (yarn, dynamic, linear, llama3,
 * longrope, mrope, ...) is refused by name rather than computed as something else. The type may be
 * under "rope_type" or the older "type". In rope_scaling a missing type is refused too (transformers
 * needs one there); in rope_parameters it means "default". */
static qm_status check_rope_block(const cJSON *root, const char *key, bool type_required, const char *src,
                                  qm_error *err) {
    const cJSON *o = cJSON_GetObjectItemCaseSensitive(root, key);
    if (!o || cJSON_IsNull(o)) return QM_OK;
    if (!cJSON_IsObject(o))
        return qm_fail(err, QM_ERR_CONFIG, "%s: field \"%s\" must be an object or null", src, key);
    static const char *const type_keys[] = {"rope_type", "type"};
    bool typed = false;
    for (size_t k = 0; k < sizeof type_keys / sizeof type_keys[0]; k++) {
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(o, type_keys[k]);
        if (!t || cJSON_IsNull(t)) continue;
        if (!cJSON_IsString(t))
            return qm_fail(err, QM_ERR_CONFIG, "%s: field \"%s.%s\" must be a string", src, key, type_keys[k]);
        if (strcmp(t->valuestring, "default") != 0)
            return qm_fail(err, QM_ERR_CONFIG,
                           "%s: %s type \"%s\" is not supported; qmesh implements plain RoPE only (type \"default\" "
                           "or %s null)",
                           src, key, t->valuestring, key);
        typed = true;
    }
    if (type_required && !typed)
        return qm_fail(err, QM_ERR_CONFIG,
                       "%s: %s is set but names no type; only null or type \"default\" is supported", src, key);
    const cJSON *it;
    cJSON_ArrayForEach(it, o) {
        if (cJSON_IsObject(it)) /* per-layer-type parameters ({"full_attention": {...}, ...}) */
            return qm_fail(err, QM_ERR_CONFIG, "%s: %s has per-layer-type entries (\"%s\"); they are not supported",
                           src, key, it->string);
    }
    return QM_OK;
}

/* rope_theta: top level, or rope_parameters.rope_theta; both given must agree. */
static qm_status get_rope_theta(const cJSON *root, qm_config *cfg, const char *src, qm_error *err) {
    qm_status st = get_double(root, "rope_theta", false, &cfg->rope_theta, src, err);
    if (st) return st;
    const cJSON *rp = cJSON_GetObjectItemCaseSensitive(root, "rope_parameters");
    if (!cJSON_IsObject(rp)) return QM_OK; /* absent or null; another type is refused by check_rope_block */
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(rp, "rope_theta");
    if (!v || cJSON_IsNull(v)) return QM_OK;
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble))
        return qm_fail(err, QM_ERR_CONFIG, "%s: field \"rope_parameters.rope_theta\" must be a number", src);
    const cJSON *top = cJSON_GetObjectItemCaseSensitive(root, "rope_theta");
    if (top && !cJSON_IsNull(top) && top->valuedouble != v->valuedouble)
        return qm_fail(err, QM_ERR_CONFIG, "%s: rope_theta (%g) and rope_parameters.rope_theta (%g) disagree", src,
                       top->valuedouble, v->valuedouble);
    cfg->rope_theta = v->valuedouble;
    return QM_OK;
}

/* ---- parse ---- */

qm_status qm_config_parse(const char *json, const char *source, qm_config *cfg, qm_error *err) {
    const char *src = source ? source : "config.json";
    memset(cfg, 0, sizeof *cfg);
    cfg->rope_theta = 10000.0;
    cfg->bos_token_id = -1;

    cJSON *root = json ? cJSON_Parse(json) : NULL;
    if (!root) return qm_fail(err, QM_ERR_FORMAT, "%s: not valid JSON", src);
    qm_status st = QM_OK;
    if (!cJSON_IsObject(root)) {
        st = qm_fail(err, QM_ERR_CONFIG, "%s: expected a JSON object at the top level", src);
        goto done;
    }

    const char *s;
    if ((st = get_string(root, "model_type", &s, src, err))) goto done;
    if (s && strcmp(s, "qwen2") != 0) {
        st = qm_fail(err, QM_ERR_CONFIG, "%s: model_type is \"%s\"; only \"qwen2\" is supported", src, s);
        goto done;
    }

    bool present = false;
    if ((st = get_int(root, "vocab_size", true, &cfg->vocab_size, NULL, src, err))) goto done;
    if ((st = get_int(root, "hidden_size", true, &cfg->hidden_size, NULL, src, err))) goto done;
    if ((st = get_int(root, "intermediate_size", true, &cfg->intermediate_size, NULL, src, err))) goto done;
    if ((st = get_int(root, "num_hidden_layers", true, &cfg->num_hidden_layers, NULL, src, err))) goto done;
    if ((st = get_int(root, "num_attention_heads", true, &cfg->num_attention_heads, NULL, src, err))) goto done;
    if ((st = get_int(root, "max_position_embeddings", true, &cfg->max_position_embeddings, NULL, src, err)))
        goto done;
    if ((st = get_double(root, "rms_norm_eps", true, &cfg->rms_norm_eps, src, err))) goto done;
    if ((st = get_int(root, "num_key_value_heads", false, &cfg->num_key_value_heads, &present, src, err))) goto done;
    if (!present) cfg->num_key_value_heads = cfg->num_attention_heads;
    if ((st = get_int(root, "head_dim", false, &cfg->head_dim, &present, src, err))) goto done;
    if (!present) cfg->head_dim = cfg->num_attention_heads > 0 ? cfg->hidden_size / cfg->num_attention_heads : 0;
    if ((st = get_rope_theta(root, cfg, src, err))) goto done;
    if ((st = get_bool(root, "tie_word_embeddings", &cfg->tie_word_embeddings, src, err))) goto done;
    if ((st = get_int(root, "bos_token_id", false, &cfg->bos_token_id, NULL, src, err))) goto done;
    if ((st = get_eos(root, cfg, src, err))) goto done;

    const char *dt = NULL;
    if ((st = get_string(root, "torch_dtype", &dt, src, err))) goto done;
    if (!dt && (st = get_string(root, "dtype", &dt, src, err))) goto done;
    if (dt) {
        if (strcmp(dt, "bfloat16") && strcmp(dt, "float16") && strcmp(dt, "float32")) {
            st = qm_fail(err, QM_ERR_CONFIG, "%s: torch_dtype \"%s\" is not supported (expected bfloat16, float16 or float32)",
                         src, dt);
            goto done;
        }
        snprintf(cfg->torch_dtype, sizeof cfg->torch_dtype, "%s", dt);
    }

    /* Features qmesh does not implement: refuse rather than compute something else. */
    bool sliding = false;
    if ((st = get_bool(root, "use_sliding_window", &sliding, src, err))) goto done;
    if (sliding) {
        st = qm_fail(err, QM_ERR_CONFIG, "%s: use_sliding_window is true; sliding window attention is unsupported", src);
        goto done;
    }
    if ((st = get_string(root, "hidden_act", &s, src, err))) goto done;
    if (s && strcmp(s, "silu") != 0) {
        st = qm_fail(err, QM_ERR_CONFIG, "%s: hidden_act is \"%s\"; only \"silu\" is supported", src, s);
        goto done;
    }
    if ((st = check_rope_block(root, "rope_scaling", true, src, err))) goto done;
    if ((st = check_rope_block(root, "rope_parameters", false, src, err))) goto done;
    st = qm_config_validate(cfg, src, err);
done:
    cJSON_Delete(root);
    return st;
}

qm_status qm_config_load(const char *path, qm_config *cfg, qm_error *err) {
    char *text = NULL;
    size_t len = 0;
    qm_status st = qm_read_text_file(path, "config", &text, &len, err);
    if (st) return st;
    st = qm_config_parse(text, path, cfg, err);
    free(text);
    return st;
}

/* ---- validate ---- */

qm_status qm_config_validate(const qm_config *c, const char *source, qm_error *err) {
    const char *src = source ? source : "config.json";
    /* the bounds are chosen in config.h: every product of them fits in 64 bits */
    const struct { const char *name; int v, max; } pos[] = {
        {"vocab_size", c->vocab_size, QM_CONFIG_MAX_VOCAB},
        {"hidden_size", c->hidden_size, QM_CONFIG_MAX_WIDTH},
        {"intermediate_size", c->intermediate_size, QM_CONFIG_MAX_WIDTH},
        {"num_hidden_layers", c->num_hidden_layers, QM_CONFIG_MAX_LAYERS},
        {"num_attention_heads", c->num_attention_heads, QM_CONFIG_MAX_HEADS},
        {"num_key_value_heads", c->num_key_value_heads, QM_CONFIG_MAX_HEADS},
        {"head_dim", c->head_dim, QM_CONFIG_MAX_HEAD_DIM},
        {"max_position_embeddings", c->max_position_embeddings, QM_CONFIG_MAX_POSITIONS},
    };
    for (size_t i = 0; i < sizeof pos / sizeof pos[0]; i++) {
        if (pos[i].v <= 0)
            return qm_fail(err, QM_ERR_CONFIG, "%s: %s is %d; it must be a positive integer", src, pos[i].name,
                           pos[i].v);
        if (pos[i].v > pos[i].max)
            return qm_fail(err, QM_ERR_CONFIG, "%s: %s is %d; at most %d is supported", src, pos[i].name, pos[i].v,
                           pos[i].max);
    }
    if (c->num_attention_heads % c->num_key_value_heads != 0)
        return qm_fail(err, QM_ERR_CONFIG,
                       "%s: num_attention_heads (%d) is not a multiple of num_key_value_heads (%d)", src,
                       c->num_attention_heads, c->num_key_value_heads);
    if ((int64_t)c->num_attention_heads * c->head_dim != c->hidden_size)
        return qm_fail(err, QM_ERR_CONFIG,
                       "%s: hidden_size (%d) != num_attention_heads (%d) * head_dim (%d); Qwen2 needs them equal", src,
                       c->hidden_size, c->num_attention_heads, c->head_dim);
    if (c->head_dim % 2 != 0)
        return qm_fail(err, QM_ERR_CONFIG, "%s: head_dim (%d) is odd; RoPE needs an even head_dim", src, c->head_dim);
    if (!(c->rope_theta > 0) || !isfinite(c->rope_theta))
        return qm_fail(err, QM_ERR_CONFIG, "%s: rope_theta (%g) must be a positive number", src, c->rope_theta);
    if (!(c->rms_norm_eps > 0) || !isfinite(c->rms_norm_eps))
        return qm_fail(err, QM_ERR_CONFIG, "%s: rms_norm_eps (%g) must be a positive number", src, c->rms_norm_eps);
    if (c->n_eos < 0 || c->n_eos > QM_MAX_EOS)
        return qm_fail(err, QM_ERR_CONFIG, "%s: %d eos token ids; at most %d are supported", src, c->n_eos, QM_MAX_EOS);
    for (int i = 0; i < c->n_eos; i++)
        if (c->eos_token_ids[i] < 0)
            return qm_fail(err, QM_ERR_CONFIG, "%s: eos_token_id %d is negative", src, c->eos_token_ids[i]);
    if (c->bos_token_id < -1)
        return qm_fail(err, QM_ERR_CONFIG, "%s: bos_token_id %d is negative", src, c->bos_token_id);
    return QM_OK;
}

/* ---- write ---- */

qm_status qm_config_write(const qm_config *c, const char *path, qm_error *err) {
    qm_status st = qm_config_validate(c, path, err);
    if (st) return st;
    cJSON *o = cJSON_CreateObject();
    if (!o) return qm_fail(err, QM_ERR_NOMEM, "%s: out of memory building config.json", path);
    cJSON *arch = cJSON_AddArrayToObject(o, "architectures");
    if (arch) cJSON_AddItemToArray(arch, cJSON_CreateString("Qwen2ForCausalLM"));
    cJSON_AddNumberToObject(o, "attention_dropout", 0.0);
    if (c->bos_token_id >= 0)
        cJSON_AddNumberToObject(o, "bos_token_id", c->bos_token_id);
    else
        cJSON_AddNullToObject(o, "bos_token_id");
    if (c->n_eos == 1) {
        cJSON_AddNumberToObject(o, "eos_token_id", c->eos_token_ids[0]);
    } else if (c->n_eos > 1) {
        cJSON *e = cJSON_AddArrayToObject(o, "eos_token_id");
        for (int i = 0; e && i < c->n_eos; i++) cJSON_AddItemToArray(e, cJSON_CreateNumber(c->eos_token_ids[i]));
    } else {
        cJSON_AddNullToObject(o, "eos_token_id");
    }
    cJSON_AddStringToObject(o, "hidden_act", "silu");
    cJSON_AddNumberToObject(o, "hidden_size", c->hidden_size);
    cJSON_AddNumberToObject(o, "initializer_range", 0.02);
    cJSON_AddNumberToObject(o, "intermediate_size", c->intermediate_size);
    cJSON_AddNumberToObject(o, "max_position_embeddings", c->max_position_embeddings);
    cJSON_AddNumberToObject(o, "max_window_layers", c->num_hidden_layers);
    cJSON_AddStringToObject(o, "model_type", "qwen2");
    cJSON_AddNumberToObject(o, "num_attention_heads", c->num_attention_heads);
    cJSON_AddNumberToObject(o, "num_hidden_layers", c->num_hidden_layers);
    cJSON_AddNumberToObject(o, "num_key_value_heads", c->num_key_value_heads);
    cJSON_AddNumberToObject(o, "rms_norm_eps", c->rms_norm_eps);
    cJSON_AddNullToObject(o, "rope_scaling");
    cJSON_AddNumberToObject(o, "rope_theta", c->rope_theta);
    cJSON_AddNumberToObject(o, "sliding_window", c->max_position_embeddings);
    cJSON_AddBoolToObject(o, "tie_word_embeddings", c->tie_word_embeddings);
    cJSON_AddStringToObject(o, "torch_dtype", c->torch_dtype[0] ? c->torch_dtype : "bfloat16");
    cJSON_AddBoolToObject(o, "use_cache", 1);
    cJSON_AddBoolToObject(o, "use_sliding_window", 0);
    cJSON_AddNumberToObject(o, "vocab_size", c->vocab_size);
    char *text = cJSON_Print(o);
    cJSON_Delete(o);
    if (!text) return qm_fail(err, QM_ERR_NOMEM, "%s: out of memory printing config.json", path);
    size_t n = strlen(text);
    text[n] = '\n'; /* cJSON_Print's buffer holds n+1 bytes: replace the NUL, write n+1 bytes */
    st = qm_write_file_atomic(path, text, n + 1, err);
    cJSON_free(text);
    return st;
}
