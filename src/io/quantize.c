/* qmesh quantize: Hugging Face Qwen2 safetensors -> GGUF (Q8_0 / Q4_0), streamed row by row.
 * A plan lists every tensor of the file (source, GGUF name, shape, type); the writer gets the
 * metadata and the tensor infos, then each tensor's rows are converted a chunk at a time. */
#include "io/quantize.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "io/checkpoint.h"
#include "io/config.h"
#include "io/fileutil.h"
#include "kernels/quant.h"

#define CHUNK_BYTES ((size_t)1 << 20) /* output bytes converted per write */

typedef struct {
    const qm_tensor_ref *src;
    char name[64];            /* GGUF name */
    qm_dtype dtype;           /* type in the file */
    int ndim;                 /* 1 or 2 */
    int64_t rows, cols;       /* 1-D: rows = 1, cols = length */
} qz_tensor;

typedef struct {
    qz_tensor *t;             /* [n] in file order */
    int n;
    size_t max_cols;
    uint64_t total_bytes;     /* tensor data of the file */
} qz_plan;

/* Dimensions of a Qwen2 model, by role. */
typedef enum { DIM_NONE, DIM_D, DIM_Q, DIM_KV, DIM_FF, DIM_VOCAB } dim_id;

typedef struct {
    const char *hf, *gguf;    /* name suffixes inside model.layers.N / blk.N (full names at top level) */
    dim_id rows, cols;        /* cols DIM_NONE: a vector of `rows` elements */
} tensor_spec;

static const tensor_spec layer_specs[] = {
    {"input_layernorm.weight", "attn_norm.weight", DIM_D, DIM_NONE},
    {"self_attn.q_proj.weight", "attn_q.weight", DIM_Q, DIM_D},
    {"self_attn.q_proj.bias", "attn_q.bias", DIM_Q, DIM_NONE},
    {"self_attn.k_proj.weight", "attn_k.weight", DIM_KV, DIM_D},
    {"self_attn.k_proj.bias", "attn_k.bias", DIM_KV, DIM_NONE},
    {"self_attn.v_proj.weight", "attn_v.weight", DIM_KV, DIM_D},
    {"self_attn.v_proj.bias", "attn_v.bias", DIM_KV, DIM_NONE},
    {"self_attn.o_proj.weight", "attn_output.weight", DIM_D, DIM_Q},
    {"post_attention_layernorm.weight", "ffn_norm.weight", DIM_D, DIM_NONE},
    {"mlp.gate_proj.weight", "ffn_gate.weight", DIM_FF, DIM_D},
    {"mlp.up_proj.weight", "ffn_up.weight", DIM_FF, DIM_D},
    {"mlp.down_proj.weight", "ffn_down.weight", DIM_D, DIM_FF},
};
static const tensor_spec embd_spec = {"model.embed_tokens.weight", "token_embd.weight", DIM_VOCAB, DIM_D};
static const tensor_spec norm_spec = {"model.norm.weight", "output_norm.weight", DIM_D, DIM_NONE};
static const tensor_spec head_spec = {"lm_head.weight", "output.weight", DIM_VOCAB, DIM_D};

#define N_LAYER_SPECS ((int)(sizeof layer_specs / sizeof layer_specs[0]))

int qm_quantize_file_type(qm_dtype type) {
    switch (type) {
    case QM_DT_F32: return 0;
    case QM_DT_F16: return 1;
    case QM_DT_Q4_0: return 2;
    case QM_DT_Q8_0: return 7;
    case QM_DT_BF16: return 32;
    default: return -1;
    }
}

static int64_t dim_of(const qm_config *c, dim_id d) {
    switch (d) {
    case DIM_D: return c->hidden_size;
    case DIM_Q: return (int64_t)c->num_attention_heads * c->head_dim;
    case DIM_KV: return (int64_t)c->num_key_value_heads * c->head_dim;
    case DIM_FF: return c->intermediate_size;
    case DIM_VOCAB: return c->vocab_size;
    default: return 0;
    }
}

/* The type a source tensor gets in the file (see quantize.h). */
static qm_dtype out_type(const qm_tensor_ref *r, qm_dtype want) {
    if (r->ndim == 1) return QM_DT_F32;
    if (r->shape[1] % qm_dtype_block(want) == 0) return want;
    return r->dtype == QM_DT_F16 ? QM_DT_F16 : QM_DT_F32;
}

/* Finds the tensor `hf` (checked against the config's shape) and appends it to the plan. */
static qm_status plan_add(qz_plan *p, const qm_checkpoint *ck, const qm_config *c, const tensor_spec *s,
                          const char *hf, const char *gguf, qm_dtype want, qm_error *err) {
    int64_t shape[2] = {dim_of(c, s->rows), dim_of(c, s->cols)};
    int ndim = s->cols == DIM_NONE ? 1 : 2;
    const qm_tensor_ref *r;
    qm_status st = qm_checkpoint_expect(ck, hf, ndim, shape, &r, err);
    if (st) return st;
    qz_tensor *t = &p->t[p->n++];
    t->src = r;
    snprintf(t->name, sizeof t->name, "%s", gguf);
    t->ndim = ndim;
    t->rows = ndim == 1 ? 1 : shape[0];
    t->cols = ndim == 1 ? shape[0] : shape[1];
    t->dtype = out_type(r, want);
    if ((size_t)t->cols > p->max_cols) p->max_cols = (size_t)t->cols;
    p->total_bytes += (uint64_t)t->rows * qm_dtype_row_bytes(t->dtype, (size_t)t->cols);
    return QM_OK;
}

static bool in_plan(const qz_plan *p, const qm_tensor_ref *r) {
    for (int i = 0; i < p->n; i++)
        if (p->t[i].src == r) return true;
    return false;
}

/* A checkpoint tensor the plan does not use: lm_head of a tied model and rotary tables are
 * dropped (as convert_hf_to_gguf.py does); anything else is not a Qwen2 tensor. */
static qm_status check_unused(const qz_plan *p, const qm_checkpoint *ck, const char *hf_dir, qm_error *err) {
    for (int i = 0; i < qm_checkpoint_count(ck); i++) {
        const qm_tensor_ref *r = qm_checkpoint_at(ck, i);
        static const char rotary[] = "rotary_emb.inv_freq";
        size_t len = strlen(r->name), rl = sizeof rotary - 1;
        if (in_plan(p, r) || !strcmp(r->name, head_spec.hf)) continue;
        if (len >= rl && !strcmp(r->name + len - rl, rotary)) continue;
        return qm_fail(err, QM_ERR_UNSUPPORTED, "%s: tensor \"%s\" (in %s) is not part of a Qwen2 model; qmesh "
                       "quantize converts Qwen2ForCausalLM checkpoints only", hf_dir, r->name, r->file);
    }
    return QM_OK;
}

static qm_status plan_build(qz_plan *p, const qm_checkpoint *ck, const qm_config *c, qm_dtype want,
                            const char *hf_dir, qm_error *err) {
    int cap = 3 + c->num_hidden_layers * N_LAYER_SPECS;
    memset(p, 0, sizeof *p);
    if (!(p->t = calloc((size_t)cap, sizeof *p->t)))
        return qm_fail(err, QM_ERR_NOMEM, "out of memory for a plan of %d tensors", cap);
    qm_status st = plan_add(p, ck, c, &embd_spec, embd_spec.hf, embd_spec.gguf, want, err);
    for (int l = 0; l < c->num_hidden_layers && !st; l++)
        for (int k = 0; k < N_LAYER_SPECS && !st; k++) {
            char hf[160], gguf[64];
            snprintf(hf, sizeof hf, "model.layers.%d.%s", l, layer_specs[k].hf);
            snprintf(gguf, sizeof gguf, "blk.%d.%s", l, layer_specs[k].gguf);
            st = plan_add(p, ck, c, &layer_specs[k], hf, gguf, want, err);
        }
    if (!st) st = plan_add(p, ck, c, &norm_spec, norm_spec.hf, norm_spec.gguf, want, err);
    if (!st && !c->tie_word_embeddings) st = plan_add(p, ck, c, &head_spec, head_spec.hf, head_spec.gguf, want, err);
    if (!st) st = check_unused(p, ck, hf_dir, err);
    return st;
}

/* The folder's last path component (without trailing slashes), for general.name. */
static void folder_name(const char *dir, char *out, size_t cap) {
    size_t n = strlen(dir);
    while (n > 1 && dir[n - 1] == '/') n--;
    size_t b = n;
    while (b > 0 && dir[b - 1] != '/') b--;
    snprintf(out, cap, "%.*s", (int)(n - b), dir + b);
}

/* convert_hf_to_gguf.py writes attention.key_length/value_length only when config.json names a head_dim. */
static bool config_has_head_dim(const char *cfg_path) {
    char *text = NULL;
    size_t len = 0;
    qm_error ignored;
    if (qm_read_text_file(cfg_path, "config", &text, &len, &ignored)) return false;
    cJSON *root = cJSON_ParseWithLength(text, len);
    bool has = cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(root, "head_dim"));
    cJSON_Delete(root);
    free(text);
    return has;
}

static qm_status write_metadata(qm_gguf_writer *w, const qm_config *c, qm_dtype type, const char *hf_dir,
                                const char *cfg_path, const qm_quantize_opts *o, qm_error *err) {
    char name[256];
    folder_name(hf_dir, name, sizeof name);
    qm_status st = qm_gguf_add_string(w, "general.architecture", "qwen2", err);
    if (!st) st = qm_gguf_add_string(w, "general.type", "model", err);
    if (!st) st = qm_gguf_add_string(w, "general.name", name, err);
    if (!st) st = qm_gguf_add_u32(w, "qwen2.block_count", (uint32_t)c->num_hidden_layers, err);
    if (!st) st = qm_gguf_add_u32(w, "qwen2.context_length", (uint32_t)c->max_position_embeddings, err);
    if (!st) st = qm_gguf_add_u32(w, "qwen2.embedding_length", (uint32_t)c->hidden_size, err);
    if (!st) st = qm_gguf_add_u32(w, "qwen2.feed_forward_length", (uint32_t)c->intermediate_size, err);
    if (!st) st = qm_gguf_add_u32(w, "qwen2.attention.head_count", (uint32_t)c->num_attention_heads, err);
    if (!st) st = qm_gguf_add_u32(w, "qwen2.attention.head_count_kv", (uint32_t)c->num_key_value_heads, err);
    if (!st) st = qm_gguf_add_f32(w, "qwen2.rope.freq_base", (float)c->rope_theta, err);
    if (!st) st = qm_gguf_add_f32(w, "qwen2.attention.layer_norm_rms_epsilon", (float)c->rms_norm_eps, err);
    if (!st && config_has_head_dim(cfg_path)) {
        st = qm_gguf_add_u32(w, "qwen2.attention.key_length", (uint32_t)c->head_dim, err);
        if (!st) st = qm_gguf_add_u32(w, "qwen2.attention.value_length", (uint32_t)c->head_dim, err);
    }
    if (!st) st = qm_gguf_add_u32(w, "general.file_type", (uint32_t)qm_quantize_file_type(type), err);
    if (!st) st = qm_gguf_add_u32(w, "general.quantization_version", 2, err);
    if (!st && o && o->tokenizer_metadata) st = o->tokenizer_metadata(hf_dir, w, err);
    return st;
}

static qm_status declare_tensors(qm_gguf_writer *w, const qz_plan *p, qm_error *err) {
    qm_status st = QM_OK;
    for (int i = 0; i < p->n && !st; i++) {
        const qz_tensor *t = &p->t[i];
        int64_t ne[2] = {t->cols, t->rows}; /* ne[0] = columns */
        st = qm_gguf_add_tensor(w, t->name, t->dtype, t->ndim, ne, err);
    }
    return st;
}

/* One source row (any plain dtype, possibly unaligned) -> f32. */
static void row_to_f32(const unsigned char *src, qm_dtype dt, size_t n, float *out) {
    if (dt == QM_DT_F32) {
        memcpy(out, src, n * sizeof *out);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        uint16_t h;
        memcpy(&h, src + 2 * i, 2);
        out[i] = dt == QM_DT_BF16 ? qm_bf16_to_f32(h) : qm_f16_to_f32(h);
    }
}

/* f32 values -> the 16-bit type dt (BF16 or F16), rounded to nearest even. */
static void f32_to_half(const float *x, qm_dtype dt, size_t n, unsigned char *dst) {
    for (size_t i = 0; i < n; i++) {
        uint16_t h = dt == QM_DT_BF16 ? qm_f32_to_bf16(x[i]) : qm_quant_f32_to_f16(x[i]);
        memcpy(dst + 2 * i, &h, 2);
    }
}

/* One row in the file's type: the same bits (same type), the f32 values, the values rounded to
 * BF16/F16, or its quantized blocks. */
static void convert_row(const qz_tensor *t, const unsigned char *src, float *tmp, unsigned char *dst) {
    size_t n = (size_t)t->cols;
    if (t->dtype == t->src->dtype) {
        memcpy(dst, src, qm_dtype_row_bytes(t->dtype, n));
        return;
    }
    row_to_f32(src, t->src->dtype, n, tmp);
    if (qm_dtype_is_quant(t->dtype)) qm_quantize_row(t->dtype, tmp, n, dst);
    else if (t->dtype == QM_DT_F32) memcpy(dst, tmp, n * sizeof *tmp);
    else f32_to_half(tmp, t->dtype, n, dst);
}

/* Drops the mapped pages of a source tensor that lie wholly inside [p, p + n) and above *done
 * (the part already converted), so that the resident set stays a few MB whatever the model size
 * (the pages are file-backed and read-only: a later read maps them in again). *done: the page
 * boundary released up to so far, 0 at the start of a tensor. */
static void release_pages(const unsigned char *p, size_t n, uintptr_t *done) {
    long pg = sysconf(_SC_PAGESIZE);
    if (pg <= 0) return;
    uintptr_t mask = ~(uintptr_t)(pg - 1);
    uintptr_t a = ((uintptr_t)p + (uintptr_t)pg - 1) & mask, e = ((uintptr_t)p + n) & mask;
    if (*done > a) a = *done;
    if (e > a) {
        (void)madvise((void *)a, e - a, MADV_DONTNEED);
        *done = e;
    }
}

typedef struct {
    float *tmp;               /* [max_cols] */
    unsigned char *out;       /* [cap] */
    size_t cap;
    uint64_t done;            /* bytes of tensor data written */
} qz_buffers;

static void report(const qz_plan *p, int i, const qz_buffers *b, const qm_quantize_opts *o) {
    if (!o || !o->progress) return;
    qm_quantize_progress pr = {.tensor = i, .n_tensors = p->n, .name = p->t[i].name, .dtype = p->t[i].dtype,
                               .bytes_done = b->done, .bytes_total = p->total_bytes};
    o->progress(o->progress_ctx, &pr);
}

static qm_status write_tensor(qm_gguf_writer *w, const qz_plan *p, int i, qz_buffers *b,
                              const qm_quantize_opts *o, qm_error *err) {
    const qz_tensor *t = &p->t[i];
    const unsigned char *src = t->src->data;
    size_t src_row = (size_t)t->cols * qm_dtype_size(t->src->dtype);
    size_t dst_row = qm_dtype_row_bytes(t->dtype, (size_t)t->cols);
    size_t per_chunk = b->cap / dst_row;
    uintptr_t released = 0;
    qm_status st = QM_OK;
    for (int64_t r0 = 0; r0 < t->rows && !st; r0 += (int64_t)per_chunk) {
        int64_t r1 = r0 + (int64_t)per_chunk < t->rows ? r0 + (int64_t)per_chunk : t->rows;
        for (int64_t r = r0; r < r1; r++)
            convert_row(t, src + (size_t)r * src_row, b->tmp, b->out + (size_t)(r - r0) * dst_row);
        st = qm_gguf_write_tensor_data(w, b->out, (size_t)(r1 - r0) * dst_row, err);
        b->done += (uint64_t)(r1 - r0) * dst_row;
        release_pages(src, (size_t)r1 * src_row, &released);
        if (!st) report(p, i, b, o);
    }
    return st;
}

static qm_status write_data(qm_gguf_writer *w, const qz_plan *p, const qm_quantize_opts *o, qm_error *err) {
    qz_buffers b = {0};
    size_t max_row = p->max_cols * sizeof(float); /* no row in the file is wider than f32 */
    b.cap = max_row > CHUNK_BYTES ? max_row : CHUNK_BYTES;
    b.tmp = malloc(p->max_cols * sizeof *b.tmp);
    b.out = malloc(b.cap);
    qm_status st = QM_OK;
    if (!b.tmp || !b.out) st = qm_fail(err, QM_ERR_NOMEM, "out of memory for conversion buffers");
    for (int i = 0; i < p->n && !st; i++) st = write_tensor(w, p, i, &b, o, err);
    free(b.tmp);
    free(b.out);
    return st;
}

static void summarize(const qz_plan *p, qm_dtype type, const char *out_path, qm_quantize_summary *s) {
    if (!s) return;
    memset(s, 0, sizeof *s);
    s->n_tensors = p->n;
    s->tensor_bytes = p->total_bytes;
    for (int i = 0; i < p->n; i++) {
        s->n_quantized += p->t[i].dtype == type;
        s->n_params += (uint64_t)p->t[i].rows * (uint64_t)p->t[i].cols;
    }
    struct stat sb;
    if (stat(out_path, &sb) == 0) s->file_bytes = (uint64_t)sb.st_size;
}

/* The model folder exists and is a folder; the output is not a folder. */
static qm_status check_paths(const char *dir, const char *out_path, qm_error *err) {
    struct stat sb;
    if (stat(out_path, &sb) == 0 && S_ISDIR(sb.st_mode))
        return qm_fail(err, QM_ERR_IO, "output %s is a folder (expected a file name, e.g. model-q8_0.gguf)", out_path);
    if (stat(dir, &sb) != 0) return qm_fail(err, QM_ERR_IO, "model folder %s: %s", dir, strerror(errno));
    if (!S_ISDIR(sb.st_mode))
        return qm_fail(err, QM_ERR_IO, "%s is not a folder (expected a Hugging Face model folder with config.json "
                       "and model.safetensors)", dir);
    return QM_OK;
}

qm_status qm_quantize_model(const char *hf_dir, qm_dtype type, const char *out_path, const qm_quantize_opts *opts,
                            qm_quantize_summary *summary, qm_error *err) {
    if (!hf_dir || !out_path) return qm_fail(err, QM_ERR_ARG, "quantize: no model folder or no output path given");
    if (qm_quantize_file_type(type) < 0)
        return qm_fail(err, QM_ERR_ARG, "quantize: type %s is not supported (Q8_0, Q4_0, BF16, F16 or F32)", qm_dtype_name(type));
    qm_status st = check_paths(hf_dir, out_path, err);
    if (st) return st;
    char cfg_path[4096];
    snprintf(cfg_path, sizeof cfg_path, "%s/config.json", hf_dir);
    qm_config cfg;
    if ((st = qm_config_load(cfg_path, &cfg, err))) return st;
    qm_checkpoint *ck = NULL;
    if ((st = qm_checkpoint_open(hf_dir, &ck, err))) return st;
    qz_plan plan;
    qm_gguf_writer *w = NULL;
    st = plan_build(&plan, ck, &cfg, type, hf_dir, err);
    if (!st) st = qm_gguf_writer_open(out_path, &w, err);
    if (!st) st = write_metadata(w, &cfg, type, hf_dir, cfg_path, opts, err);
    if (!st) st = declare_tensors(w, &plan, err);
    if (!st) st = write_data(w, &plan, opts, err);
    if (w) {
        qm_error close_err = {0};
        qm_status cst = qm_gguf_writer_close(w, st == QM_OK, &close_err);
        if (!st && cst) st = qm_fail(err, cst, "%s", close_err.msg);
    }
    if (!st) summarize(&plan, type, out_path, summary);
    free(plan.t);
    qm_checkpoint_close(ck);
    return st;
}
