/* qm_quantize_model (io/quantize.h): a small random Qwen2 checkpoint (bf16, f32 and f16 sources) is
 * converted to Q8_0 and Q4_0 and the GGUF read back: the metadata, every tensor's GGUF name, ne and
 * type; the blocks are exactly qm_quantize_row's of the source rows; they dequantize back within the
 * bound of each format (Q8_0: |x - y| <= d (1/2 + 127 * 2^-11), d = max|x| / 127 of the block;
 * Q4_0: <= |d| (1 + 8 * 2^-11), d = the block's value of largest magnitude / 8); f32 tensors and the
 * f16 fallback keep the source values exactly. Then the refusals: a missing folder, no config, a
 * bad type, an unwritable or folder output, a missing or unknown tensor; nothing is left behind. */
#include <dirent.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "scratch_dir.h"

#include "io/checkpoint.h"
#include "io/config.h"
#include "io/fileutil.h"
#include "io/gguf.h"
#include "io/gguf_model.h"
#include "io/quantize.h"
#include "io/random_model.h"
#include "kernels/quant.h"
#include "text/tokenizer.h"

typedef struct {
    char dir[64];    /* scratch folder */
    char model[128]; /* the random checkpoint */
    qm_config cfg;
} fixture;

/* Untied (so output.weight is written), and intermediate 80: ffn_down's rows (80) are not a
 * multiple of 32, so that tensor keeps its exact values. */
static void small_config(qm_config *c) {
    memset(c, 0, sizeof *c);
    c->vocab_size = 320;
    c->hidden_size = 64;
    c->intermediate_size = 80;
    c->num_hidden_layers = 2;
    c->num_attention_heads = 4;
    c->num_key_value_heads = 2;
    c->head_dim = 16;
    c->max_position_embeddings = 4096;
    c->rope_theta = 1000000.0;
    c->rms_norm_eps = 1e-6;
    c->tie_word_embeddings = false;
    c->bos_token_id = -1;
    c->eos_token_ids[0] = 1;
    c->n_eos = 1;
    snprintf(c->torch_dtype, sizeof c->torch_dtype, "bfloat16");
}

static void make_model(const char *dir, const qm_config *c, qm_dtype dt) {
    qm_error err = {0};
    assert_int_equal(mkdir(dir, 0755), 0);
    qm_random_opts o = {.seed = 7, .dtype = dt, .shards = 1};
    if (qm_random_model_write(c, dir, &o, &err)) fail_msg("random model: %s", err.msg);
}

static int setup(void **state) {
    fixture *f = calloc(1, sizeof *f);
    if (!f) return -1;
    if (scratch_dir_make(f->dir, sizeof f->dir, "quantize") != 0) return -1;
    snprintf(f->model, sizeof f->model, "%s/small", f->dir);
    small_config(&f->cfg);
    make_model(f->model, &f->cfg, QM_DT_BF16);
    *state = f;
    return 0;
}

static int teardown(void **state) {
    fixture *f = *state;
    scratch_dir_remove(f->dir);
    free(f);
    return 0;
}

/* ---- checking a converted file ---- */

/* HF name of a GGUF tensor name (only the ones the converter writes). */
static void hf_of(const char *g, char *out, size_t cap) {
    static const char *const map[][2] = {
        {"attn_norm.weight", "input_layernorm.weight"}, {"ffn_norm.weight", "post_attention_layernorm.weight"},
        {"attn_q.weight", "self_attn.q_proj.weight"},   {"attn_q.bias", "self_attn.q_proj.bias"},
        {"attn_k.weight", "self_attn.k_proj.weight"},   {"attn_k.bias", "self_attn.k_proj.bias"},
        {"attn_v.weight", "self_attn.v_proj.weight"},   {"attn_v.bias", "self_attn.v_proj.bias"},
        {"attn_output.weight", "self_attn.o_proj.weight"}, {"ffn_gate.weight", "mlp.gate_proj.weight"},
        {"ffn_up.weight", "mlp.up_proj.weight"},        {"ffn_down.weight", "mlp.down_proj.weight"},
    };
    if (!strcmp(g, "token_embd.weight")) snprintf(out, cap, "model.embed_tokens.weight");
    else if (!strcmp(g, "output_norm.weight")) snprintf(out, cap, "model.norm.weight");
    else if (!strcmp(g, "output.weight")) snprintf(out, cap, "lm_head.weight");
    else {
        int layer, n = 0;
        assert_int_equal(sscanf(g, "blk.%d.%n", &layer, &n), 1);
        for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
            if (!strcmp(g + n, map[i][0])) {
                snprintf(out, cap, "model.layers.%d.%s", layer, map[i][1]);
                return;
            }
        fail_msg("unexpected GGUF tensor %s", g);
    }
}

/* Largest |x - y| within the format's bound, over the blocks of one row; returns the worst ratio
 * error / bound. */
static double check_blocks(qm_dtype dt, const float *x, const float *y, size_t n) {
    double worst = 0;
    for (size_t b = 0; b < n; b += 32) {
        float amax = 0, vmax = 0;
        for (size_t j = b; j < b + 32; j++)
            if (fabsf(x[j]) > amax) amax = fabsf(x[j]), vmax = x[j];
        double bound = dt == QM_DT_Q8_0 ? amax / 127.0 * (0.5 + 127.0 / 2048) : fabs(vmax / 8.0) * (1 + 8.0 / 2048);
        for (size_t j = b; j < b + 32; j++) {
            double e = fabs((double)x[j] - (double)y[j]);
            if (e > bound * (1 + 1e-6) + 1e-30) fail_msg("%s: element %zu: %g -> %g, error %g > bound %g",
                                                          qm_dtype_name(dt), j, x[j], y[j], e, bound);
            if (bound > 0 && e / bound > worst) worst = e / bound;
        }
    }
    return worst;
}

/* One tensor: the bytes are the source rows converted (exactly, or qm_quantize_row's blocks),
 * and quantized rows dequantize back within the bound. */
static double check_tensor(const qm_gguf_tensor *t, const qm_tensor_ref *r, qm_dtype want) {
    size_t cols = (size_t)t->ne[0], rows = t->ndim == 2 ? (size_t)t->ne[1] : 1;
    assert_int_equal(r->ndim, t->ndim);
    assert_int_equal(r->shape[r->ndim - 1], (int64_t)cols);
    if (t->ndim == 2) assert_int_equal(r->shape[0], (int64_t)rows);
    qm_dtype expect = t->ndim == 1 ? QM_DT_F32 : cols % 32 == 0 ? want
                      : r->dtype == QM_DT_F16 ? QM_DT_F16 : QM_DT_F32;
    if (t->dtype != expect) fail_msg("%s: %s, expected %s", t->name, qm_dtype_name(t->dtype), qm_dtype_name(expect));
    size_t rb = qm_dtype_row_bytes(t->dtype, cols), sb = cols * qm_dtype_size(r->dtype);
    float *x = malloc(cols * sizeof *x), *y = malloc(cols * sizeof *y);
    unsigned char *q = malloc(rb);
    assert_true(x && y && q);
    double worst = 0;
    for (size_t i = 0; i < rows; i++) {
        const unsigned char *src = (const unsigned char *)r->data + i * sb;
        const unsigned char *got = (const unsigned char *)t->data + i * rb;
        for (size_t j = 0; j < cols; j++) x[j] = qm_load_f32(src, r->dtype, j);
        if (t->dtype == QM_DT_F16 || t->dtype == r->dtype) {
            assert_memory_equal(got, src, rb);
        } else if (t->dtype == QM_DT_F32) {
            assert_memory_equal(got, x, rb);
        } else {
            assert_int_equal(qm_quantize_row(t->dtype, x, cols, q), rb);
            if (memcmp(got, q, rb)) fail_msg("%s row %zu: blocks differ from qm_quantize_row", t->name, i);
            qm_dequant_range(t->dtype, got, 0, cols, y);
            double w = check_blocks(t->dtype, x, y, cols);
            if (w > worst) worst = w;
        }
    }
    free(x);
    free(y);
    free(q);
    return worst;
}

static void expect_u32(const qm_gguf *g, const char *key, int64_t want) {
    const qm_gguf_kv *kv = qm_gguf_find(g, key);
    if (!kv) fail_msg("key %s is missing", key);
    assert_int_equal(kv->type, QM_GGUF_UINT32);
    assert_int_equal((int64_t)kv->v.u, want);
}

static void check_metadata(const qm_gguf *g, const qm_config *c, qm_dtype want, bool has_head_dim) {
    char *s = NULL;
    qm_error err = {0};
    assert_int_equal(qm_gguf_get_string(g, "general.architecture", true, &s, &err), QM_OK);
    assert_string_equal(s, "qwen2");
    free(s);
    assert_int_equal(qm_gguf_get_string(g, "general.name", true, &s, &err), QM_OK);
    assert_string_equal(s, "small");
    free(s);
    expect_u32(g, "general.file_type", want == QM_DT_Q8_0 ? 7 : 2);
    expect_u32(g, "general.quantization_version", 2);
    expect_u32(g, "qwen2.block_count", c->num_hidden_layers);
    expect_u32(g, "qwen2.context_length", c->max_position_embeddings);
    expect_u32(g, "qwen2.embedding_length", c->hidden_size);
    expect_u32(g, "qwen2.feed_forward_length", c->intermediate_size);
    expect_u32(g, "qwen2.attention.head_count", c->num_attention_heads);
    expect_u32(g, "qwen2.attention.head_count_kv", c->num_key_value_heads);
    if (has_head_dim) {
        expect_u32(g, "qwen2.attention.key_length", c->head_dim);
        expect_u32(g, "qwen2.attention.value_length", c->head_dim);
    } else {
        assert_null(qm_gguf_find(g, "qwen2.attention.key_length"));
        assert_null(qm_gguf_find(g, "qwen2.attention.value_length"));
    }
    const qm_gguf_kv *eps = qm_gguf_find(g, "qwen2.attention.layer_norm_rms_epsilon");
    const qm_gguf_kv *base = qm_gguf_find(g, "qwen2.rope.freq_base");
    assert_true(eps && eps->type == QM_GGUF_FLOAT32 && eps->v.f == (double)(float)c->rms_norm_eps);
    assert_true(base && base->type == QM_GGUF_FLOAT32 && base->v.f == c->rope_theta);
}

/* Converts model (as made by make_model) to want, checks everything; returns the worst error/bound. */
static double convert_and_check(const char *model, const qm_config *c, qm_dtype want, const char *out) {
    qm_error err = {0};
    qm_quantize_summary sum;
    if (qm_quantize_model(model, want, out, NULL, &sum, &err)) fail_msg("quantize: %s", err.msg);
    qm_gguf *g = NULL;
    if (qm_gguf_open(out, &g, &err)) fail_msg("open %s: %s", out, err.msg);
    qm_checkpoint *ck = NULL;
    if (qm_checkpoint_open(model, &ck, &err)) fail_msg("checkpoint: %s", err.msg);
    char cfg_path[256], *text = NULL;
    size_t len;
    snprintf(cfg_path, sizeof cfg_path, "%s/config.json", model);
    assert_int_equal(qm_read_text_file(cfg_path, "config", &text, &len, &err), QM_OK);
    check_metadata(g, c, want, strstr(text, "\"head_dim\"") != NULL);
    free(text);
    int n_expect = 1 + 12 * c->num_hidden_layers + 1 + (c->tie_word_embeddings ? 0 : 1);
    assert_int_equal(qm_gguf_tensor_count(g), n_expect);
    assert_int_equal(sum.n_tensors, n_expect);
    assert_true(qm_gguf_tensor_find(g, "output.weight") != NULL || c->tie_word_embeddings);
    double worst = 0;
    int nq = 0;
    for (int i = 0; i < qm_gguf_tensor_count(g); i++) {
        const qm_gguf_tensor *t = qm_gguf_tensor_at(g, i);
        char hf[160];
        hf_of(t->name, hf, sizeof hf);
        const qm_tensor_ref *r = qm_checkpoint_find(ck, hf);
        if (!r) fail_msg("%s: no source tensor %s", t->name, hf);
        double w = check_tensor(t, r, want);
        if (w > worst) worst = w;
        nq += t->dtype == want;
    }
    assert_int_equal(sum.n_quantized, nq);
    struct stat sb;
    assert_int_equal(stat(out, &sb), 0);
    assert_int_equal((uint64_t)sb.st_size, sum.file_bytes);
    qm_checkpoint_close(ck);
    qm_gguf_close(g);
    return worst;
}

static void test_bf16_q8_0_q4_0(void **state) {
    fixture *f = *state;
    char out[160];
    snprintf(out, sizeof out, "%s/q8.gguf", f->dir);
    double w8 = convert_and_check(f->model, &f->cfg, QM_DT_Q8_0, out);
    snprintf(out, sizeof out, "%s/q4.gguf", f->dir);
    double w4 = convert_and_check(f->model, &f->cfg, QM_DT_Q4_0, out);
    print_message("worst error / bound: Q8_0 %.3f, Q4_0 %.3f\n", w8, w4);
    assert_true(w8 > 0.3 && w4 > 0.3); /* the bound is nearly reached: it is not loose */
}

static void test_f32_source(void **state) {
    fixture *f = *state;
    char dir[160], out[192];
    snprintf(dir, sizeof dir, "%s/small", f->dir); /* general.name is checked as "small" */
    snprintf(out, sizeof out, "%s/f32.gguf", f->dir);
    scratch_dir_remove(dir);
    make_model(dir, &f->cfg, QM_DT_F32);
    convert_and_check(dir, &f->cfg, QM_DT_Q8_0, out);
}

/* Rewrites the fixture's checkpoint into dir/small: to F16, without `drop`, or with an extra tensor. */
static void rewrite(const fixture *f, const char *dir, bool to_f16, const char *drop, const char *extra) {
    qm_error err = {0};
    qm_checkpoint *ck = NULL;
    if (qm_checkpoint_open(f->model, &ck, &err)) fail_msg("%s", err.msg);
    int n = qm_checkpoint_count(ck);
    qm_tensor_out *t = calloc((size_t)n + 1, sizeof *t);
    void **bufs = calloc((size_t)n + 1, sizeof *bufs);
    static const uint16_t extra_data[64];
    int k = 0;
    for (int i = 0; i < n; i++) {
        const qm_tensor_ref *r = qm_checkpoint_at(ck, i);
        if (drop && !strcmp(r->name, drop)) continue;
        t[k] = (qm_tensor_out){.name = r->name, .dtype = r->dtype, .ndim = r->ndim, .data = r->data};
        memcpy(t[k].shape, r->shape, sizeof r->shape);
        if (to_f16) {
            size_t ne = r->nbytes / qm_dtype_size(r->dtype);
            uint16_t *h = bufs[k] = malloc(ne * 2);
            for (size_t j = 0; j < ne; j++) h[j] = qm_quant_f32_to_f16(qm_load_f32(r->data, r->dtype, j));
            t[k].dtype = QM_DT_F16;
            t[k].data = h;
        }
        k++;
    }
    if (extra)
        t[k++] = (qm_tensor_out){.name = extra, .dtype = QM_DT_BF16, .ndim = 1, .shape = {64}, .data = extra_data};
    char p[256], cfg_src[256];
    assert_int_equal(mkdir(dir, 0755), 0);
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    if (qm_safetensors_write(p, t, k, &err)) fail_msg("%s", err.msg);
    /* the config, with head_dim named when converting to F16 (it adds attention.key_length) */
    char *text = NULL;
    size_t len;
    snprintf(cfg_src, sizeof cfg_src, "%s/config.json", f->model);
    assert_int_equal(qm_read_text_file(cfg_src, "config", &text, &len, &err), QM_OK);
    char *brace = strchr(text, '{');
    assert_non_null(brace);
    snprintf(p, sizeof p, "%s/config.json", dir);
    FILE *cf = fopen(p, "w");
    assert_non_null(cf);
    fprintf(cf, "{%s%s", to_f16 ? "\"head_dim\": 16, " : "", brace + 1);
    fclose(cf);
    free(text);
    for (int i = 0; i < k; i++) free(bufs[i]);
    free(bufs);
    free(t);
    qm_checkpoint_close(ck);
}

static void test_f16_source(void **state) {
    fixture *f = *state;
    char dir[160], out[192];
    snprintf(out, sizeof out, "%s/f16/q4.gguf", f->dir);
    snprintf(dir, sizeof dir, "%s/f16", f->dir);
    assert_int_equal(mkdir(dir, 0755), 0);
    snprintf(dir, sizeof dir, "%s/f16/small", f->dir);
    rewrite(f, dir, true, NULL, NULL);
    convert_and_check(dir, &f->cfg, QM_DT_Q4_0, out); /* ffn_down stays F16 */
}

typedef struct {
    int calls, n_tensors, last_tensor;
    uint64_t last_done, total;
} progress_log;

static void on_progress(void *ctx, const qm_quantize_progress *p) {
    progress_log *l = ctx;
    assert_true(p->bytes_done >= l->last_done && p->tensor >= l->last_tensor);
    assert_true(p->bytes_done <= p->bytes_total && p->tensor < p->n_tensors && p->name && *p->name);
    l->calls++;
    l->last_done = p->bytes_done;
    l->last_tensor = p->tensor;
    l->total = p->bytes_total;
    l->n_tensors = p->n_tensors;
}

/* The tokenizer hook and the progress callback; the file opens as a qmesh model. */
static void test_tokenizer_and_progress(void **state) {
    fixture *f = *state;
    char dir[160], out[192], src[300], dst[300];
    qm_error err = {0};
    qm_config c;
    assert_true(qm_random_preset("tiny", &c));
    snprintf(dir, sizeof dir, "%s/tiny", f->dir);
    make_model(dir, &c, QM_DT_BF16);
    const char *files[] = {"tokenizer.json", "tokenizer_config.json"};
    for (int i = 0; i < 2; i++) {
        snprintf(src, sizeof src, "%s/tokenizers/qwen2.5/%s", QMESH_DATA_DIR, files[i]);
        snprintf(dst, sizeof dst, "%s/%s", dir, files[i]);
        if (access(src, R_OK) != 0) skip();
        if (qm_copy_file(src, dst, &err)) fail_msg("%s", err.msg);
    }
    snprintf(out, sizeof out, "%s/tiny.gguf", f->dir);
    progress_log log = {0};
    qm_quantize_opts o = {.tokenizer_metadata = qm_tokenizer_gguf_metadata, .progress = on_progress,
                          .progress_ctx = &log};
    if (qm_quantize_model(dir, QM_DT_Q8_0, out, &o, NULL, &err)) fail_msg("%s", err.msg);
    assert_true(log.calls >= log.n_tensors);
    assert_int_equal(log.last_done, log.total);
    assert_int_equal(log.last_tensor, log.n_tensors - 1);
    qm_config got;
    qm_checkpoint *ck = NULL;
    if (qm_gguf_model_open(out, &got, &ck, &err)) fail_msg("%s", err.msg);
    assert_int_equal(got.vocab_size, c.vocab_size);
    assert_true(got.tie_word_embeddings);
    assert_int_equal(got.eos_token_ids[0], 151645); /* tokenizer_config.json's eos_token, <|im_end|> */
    qm_tokenizer *tok = NULL;
    if (qm_tokenizer_load_gguf(qm_checkpoint_gguf(ck), &tok, &err)) fail_msg("%s", err.msg);
    int *ids = NULL, n = 0;
    assert_int_equal(qm_tokenize(tok, "Hello, world!", 13, &ids, &n, &err), QM_OK);
    int want[] = {9707, 11, 1879, 0};
    assert_int_equal(n, 4);
    assert_memory_equal(ids, want, sizeof want);
    free(ids);
    qm_tokenizer_free(tok);
    qm_checkpoint_close(ck);
}

/* No file and no temporary file in dir starting with `base`. */
static void assert_nothing_left(const char *dir, const char *base) {
    DIR *d = opendir(dir);
    assert_non_null(d);
    struct dirent *e;
    while ((e = readdir(d)))
        if (!strncmp(e->d_name, base, strlen(base))) fail_msg("left behind: %s/%s", dir, e->d_name);
    closedir(d);
}

static void expect_error(const char *model, qm_dtype dt, const char *out, qm_status code, const char *needle) {
    qm_error err = {0};
    qm_status st = qm_quantize_model(model, dt, out, NULL, NULL, &err);
    if (st != code || !strstr(err.msg, needle))
        fail_msg("got %s \"%s\", expected %s with \"%s\"", qm_status_name(st), err.msg, qm_status_name(code), needle);
}

static void test_refusals(void **state) {
    fixture *f = *state;
    char out[160], dir[160];
    snprintf(out, sizeof out, "%s/bad.gguf", f->dir);
    expect_error("/nonexistent/model", QM_DT_Q8_0, out, QM_ERR_IO, "/nonexistent/model");
    expect_error(f->model, QM_DT_Q4_K, out, QM_ERR_ARG, "Q4_K");
    expect_error(f->model, QM_DT_Q5_0, out, QM_ERR_ARG, "Q5_0");
    expect_error(f->dir, QM_DT_Q8_0, out, QM_ERR_IO, "config.json"); /* a folder without config.json */
    snprintf(dir, sizeof dir, "%s/model.safetensors", f->model);
    expect_error(dir, QM_DT_Q8_0, out, QM_ERR_IO, "not a folder");
    expect_error(f->model, QM_DT_Q8_0, "/nonexistent/dir/x.gguf", QM_ERR_IO, "/nonexistent/dir/x.gguf");
    expect_error(f->model, QM_DT_Q8_0, f->dir, QM_ERR_IO, "is a folder");
    snprintf(dir, sizeof dir, "%s/missing", f->dir);
    rewrite(f, dir, false, "model.layers.1.self_attn.k_proj.bias", NULL);
    expect_error(dir, QM_DT_Q8_0, out, QM_ERR_FORMAT, "model.layers.1.self_attn.k_proj.bias");
    snprintf(dir, sizeof dir, "%s/extra", f->dir);
    rewrite(f, dir, false, NULL, "model.layers.0.mlp.extra_norm.weight");
    expect_error(dir, QM_DT_Q8_0, out, QM_ERR_UNSUPPORTED, "model.layers.0.mlp.extra_norm.weight");
    assert_nothing_left(f->dir, "bad.gguf");
    assert_nothing_left(f->dir, "x.gguf");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_bf16_q8_0_q4_0, setup, teardown),
        cmocka_unit_test_setup_teardown(test_f32_source, setup, teardown),
        cmocka_unit_test_setup_teardown(test_f16_source, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tokenizer_and_progress, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refusals, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
