/* Random Qwen2 checkpoints, written streaming: header first, then each tensor generated in chunks. */
#include "io/random_model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/checkpoint.h"
#include "io/fileutil.h"

#define CHUNK_ELEMS ((size_t)1 << 20)

bool qm_random_preset(const char *name, qm_config *c) {
    memset(c, 0, sizeof *c);
    c->rope_theta = 1000000.0;
    c->rms_norm_eps = 1e-6;
    c->bos_token_id = 151643;
    c->eos_token_ids[0] = 151643; /* base models: <|endoftext|> */
    c->n_eos = 1;
    snprintf(c->torch_dtype, sizeof c->torch_dtype, "bfloat16");
    if (!strcmp(name, "tiny")) {
        /* the full Qwen2.5 vocabulary (so any tokenizer id is valid), everything else small: ~20 MB in bf16 */
        c->vocab_size = 151936;
        c->hidden_size = 64;
        c->intermediate_size = 192;
        c->num_hidden_layers = 2;
        c->num_attention_heads = 4;
        c->num_key_value_heads = 2;
        c->max_position_embeddings = 32768;
        c->tie_word_embeddings = true;
    } else if (!strcmp(name, "qwen2.5-0.5b")) {
        c->vocab_size = 151936;
        c->hidden_size = 896;
        c->intermediate_size = 4864;
        c->num_hidden_layers = 24;
        c->num_attention_heads = 14;
        c->num_key_value_heads = 2;
        c->max_position_embeddings = 32768;
        c->tie_word_embeddings = true;
    } else if (!strcmp(name, "qwen2.5-7b")) {
        c->vocab_size = 152064;
        c->hidden_size = 3584;
        c->intermediate_size = 18944;
        c->num_hidden_layers = 28;
        c->num_attention_heads = 28;
        c->num_key_value_heads = 4;
        c->max_position_embeddings = 131072;
        c->tie_word_embeddings = false;
    } else {
        return false;
    }
    c->head_dim = c->hidden_size / c->num_attention_heads;
    return true;
}

/* ---- the generator: splitmix64 of (key + index), so any element is computable on its own ---- */

static inline uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static uint64_t tensor_key(uint64_t seed, const char *name) {
    uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a */
    for (const unsigned char *p = (const unsigned char *)name; *p; p++) h = (h ^ *p) * 0x100000001b3ull;
    return mix64(mix64(seed + 0x9e3779b97f4a7c15ull) ^ h);
}

/* Sum of four 16-bit uniforms, centred and scaled to unit variance: var of one = (65536^2 - 1) / 12. */
static inline float unit_normalish(uint64_t key, uint64_t i) {
    uint64_t z = mix64(key + (i + 1) * 0x9e3779b97f4a7c15ull);
    int64_t s = (int64_t)(z & 0xffff) + (int64_t)((z >> 16) & 0xffff) + (int64_t)((z >> 32) & 0xffff) +
                (int64_t)(z >> 48) - 131070;
    return (float)((double)s * (1.0 / 37837.22626));
}

typedef enum { KIND_MATRIX, KIND_NORM, KIND_BIAS } tensor_kind;

static tensor_kind kind_of(const char *name) {
    size_t n = strlen(name);
    if (n >= 5 && !strcmp(name + n - 5, ".bias")) return KIND_BIAS;
    if (n >= 11 && !strcmp(name + n - 11, "norm.weight")) return KIND_NORM;
    return KIND_MATRIX;
}

static inline float value_of(tensor_kind k, uint64_t key, uint64_t i) {
    float v = 0.02f * unit_normalish(key, i);
    return k == KIND_NORM ? 1.0f + v : v;
}

float qm_random_value(uint64_t seed, const char *name, uint64_t i) {
    return value_of(kind_of(name), tensor_key(seed, name), i);
}

/* ---- the tensor list ---- */

typedef struct {
    qm_tensor_out *t;
    char **names;
    int n, cap;
} tensor_list;

static bool add(tensor_list *l, qm_dtype dt, int64_t rows, int64_t cols, const char *fmt, int layer) {
    if (l->n == l->cap) {
        int cap = l->cap ? 2 * l->cap : 64;
        qm_tensor_out *t = realloc(l->t, (size_t)cap * sizeof *t);
        if (!t) return false;
        l->t = t;
        char **nm = realloc(l->names, (size_t)cap * sizeof *nm);
        if (!nm) return false;
        l->names = nm;
        l->cap = cap;
    }
    char buf[160];
    snprintf(buf, sizeof buf, fmt, layer);
    char *name = strdup(buf);
    if (!name) return false;
    qm_tensor_out *t = &l->t[l->n];
    memset(t, 0, sizeof *t);
    t->name = name;
    t->dtype = dt;
    t->ndim = cols ? 2 : 1;
    t->shape[0] = rows;
    t->shape[1] = cols;
    l->names[l->n++] = name;
    return true;
}

static void list_free(tensor_list *l) {
    for (int i = 0; i < l->n; i++) free(l->names[i]);
    free(l->names);
    free(l->t);
}

static bool build_list(const qm_config *c, qm_dtype dt, tensor_list *l) {
    int64_t v = c->vocab_size, h = c->hidden_size, f = c->intermediate_size;
    int64_t q = (int64_t)c->num_attention_heads * c->head_dim, kv = (int64_t)c->num_key_value_heads * c->head_dim;
    bool ok = add(l, dt, v, h, "model.embed_tokens.weight", 0);
    for (int i = 0; ok && i < c->num_hidden_layers; i++) {
        ok = add(l, dt, h, 0, "model.layers.%d.input_layernorm.weight", i) &&
             add(l, dt, q, h, "model.layers.%d.self_attn.q_proj.weight", i) &&
             add(l, dt, q, 0, "model.layers.%d.self_attn.q_proj.bias", i) &&
             add(l, dt, kv, h, "model.layers.%d.self_attn.k_proj.weight", i) &&
             add(l, dt, kv, 0, "model.layers.%d.self_attn.k_proj.bias", i) &&
             add(l, dt, kv, h, "model.layers.%d.self_attn.v_proj.weight", i) &&
             add(l, dt, kv, 0, "model.layers.%d.self_attn.v_proj.bias", i) &&
             add(l, dt, h, q, "model.layers.%d.self_attn.o_proj.weight", i) &&
             add(l, dt, h, 0, "model.layers.%d.post_attention_layernorm.weight", i) &&
             add(l, dt, f, h, "model.layers.%d.mlp.gate_proj.weight", i) &&
             add(l, dt, f, h, "model.layers.%d.mlp.up_proj.weight", i) &&
             add(l, dt, h, f, "model.layers.%d.mlp.down_proj.weight", i);
    }
    ok = ok && add(l, dt, h, 0, "model.norm.weight", 0);
    if (ok && !c->tie_word_embeddings) ok = add(l, dt, v, h, "lm_head.weight", 0);
    return ok;
}

static uint64_t nbytes_of(const qm_tensor_out *t) {
    uint64_t n = qm_dtype_size(t->dtype);
    for (int i = 0; i < t->ndim; i++) n *= (uint64_t)t->shape[i];
    return n;
}

/* Contiguous runs of tensors, balanced by bytes, every shard non-empty (n_shards <= n). */
static void plan_shards(const qm_tensor_out *t, int n, int n_shards, uint64_t total, int *shard_of) {
    int s = 0, in_s = 0;
    uint64_t before = 0;
    for (int i = 0; i < n; i++) {
        if (in_s > 0 && s < n_shards - 1 &&
            ((n - i) <= (n_shards - 1 - s) || (double)before * n_shards >= (double)total * (s + 1))) {
            s++;
            in_s = 0;
        }
        shard_of[i] = s;
        in_s++;
        before += nbytes_of(&t[i]);
    }
}

typedef struct {
    float *f32;
    uint16_t *b16;
    uint64_t done, total;
    const qm_random_opts *o;
} gen_state;

static qm_status write_tensor(qm_st_writer *w, const qm_tensor_out *t, gen_state *g, qm_error *err) {
    tensor_kind k = kind_of(t->name);
    uint64_t key = tensor_key(g->o->seed, t->name);
    uint64_t count = nbytes_of(t) / qm_dtype_size(t->dtype);
    for (uint64_t start = 0; start < count; start += CHUNK_ELEMS) {
        size_t m = (size_t)(count - start < CHUNK_ELEMS ? count - start : CHUNK_ELEMS);
        for (size_t j = 0; j < m; j++) g->f32[j] = value_of(k, key, start + j);
        qm_status st;
        if (t->dtype == QM_DT_F32) {
            st = qm_st_writer_write(w, g->f32, m * 4, err);
        } else {
            for (size_t j = 0; j < m; j++) g->b16[j] = qm_f32_to_bf16(g->f32[j]);
            st = qm_st_writer_write(w, g->b16, m * 2, err);
        }
        if (st) return st;
        g->done += (uint64_t)m * qm_dtype_size(t->dtype);
        if (g->o->progress) g->o->progress(g->o->progress_ctx, g->done, g->total);
    }
    return QM_OK;
}

static qm_status write_file(const char *path, const qm_tensor_out *t, int n, gen_state *g, qm_error *err) {
    qm_st_writer *w;
    qm_status st = qm_st_writer_open(path, t, n, &w, err);
    if (st) return st;
    for (int i = 0; i < n && !st; i++) st = write_tensor(w, &t[i], g, err);
    if (st) {
        qm_st_writer_close(w, false, NULL);
        return st;
    }
    return qm_st_writer_close(w, true, err);
}

qm_status qm_random_model_write(const qm_config *cfg_in, const char *dir, const qm_random_opts *o, qm_error *err) {
    if (o->dtype != QM_DT_BF16 && o->dtype != QM_DT_F32)
        return qm_fail(err, QM_ERR_ARG, "random-model: dtype %s; expected BF16 or F32", qm_dtype_name(o->dtype));
    qm_config cfg = *cfg_in;
    snprintf(cfg.torch_dtype, sizeof cfg.torch_dtype, "%s", o->dtype == QM_DT_F32 ? "float32" : "bfloat16");
    char path[4096];
    snprintf(path, sizeof path, "%s/config.json", dir);
    qm_status st = qm_config_write(&cfg, path, err);
    if (st) return st;

    tensor_list l = {0};
    gen_state g = {0};
    int *shard_of = NULL;
    char **files = NULL;
    if (!build_list(&cfg, o->dtype, &l)) {
        st = qm_fail(err, QM_ERR_NOMEM, "random-model: out of memory for the tensor list");
        goto done;
    }
    int shards = o->shards < 1 ? 1 : o->shards;
    if (shards > l.n) {
        st = qm_fail(err, QM_ERR_ARG, "random-model: %d shards for %d tensors; at most one shard per tensor", shards,
                     l.n);
        goto done;
    }
    for (int i = 0; i < l.n; i++) g.total += nbytes_of(&l.t[i]);
    g.o = o;
    g.f32 = malloc(CHUNK_ELEMS * sizeof(float));
    g.b16 = malloc(CHUNK_ELEMS * sizeof(uint16_t));
    shard_of = calloc((size_t)l.n, sizeof *shard_of);
    files = calloc((size_t)l.n, sizeof *files);
    if (!g.f32 || !g.b16 || !shard_of || !files) {
        st = qm_fail(err, QM_ERR_NOMEM, "random-model: out of memory");
        goto done;
    }
    if (shards == 1) {
        snprintf(path, sizeof path, "%s/model.safetensors", dir);
        st = write_file(path, l.t, l.n, &g, err);
        goto done;
    }
    plan_shards(l.t, l.n, shards, g.total, shard_of);
    char fname[64];
    for (int s = 0, first = 0; s < shards && !st; s++) {
        int last = first;
        while (last < l.n && shard_of[last] == s) last++;
        snprintf(fname, sizeof fname, "model-%05d-of-%05d.safetensors", s + 1, shards);
        for (int i = first; i < last; i++) files[i] = strdup(fname);
        snprintf(path, sizeof path, "%s/%s", dir, fname);
        st = write_file(path, l.t + first, last - first, &g, err);
        first = last;
    }
    for (int i = 0; !st && i < l.n; i++)
        if (!files[i]) st = qm_fail(err, QM_ERR_NOMEM, "random-model: out of memory");
    if (!st) {
        snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
        st = qm_safetensors_write_index(path, (const char *const *)l.names, (const char *const *)files, l.n, g.total,
                                        err);
    }
done:
    if (files)
        for (int i = 0; i < l.n; i++) free(files[i]);
    free(files);
    free(shard_of);
    free(g.f32);
    free(g.b16);
    list_free(&l);
    return st;
}
