/* config.json: real Qwen2.5 configs parse with the right values and defaults; every impossible or
 * unsupported config is refused with a message that names the file and the field. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <limits.h>

#include "io/config.h"
#include "mesh/partition.h"

/* Qwen2.5-7B-Instruct's config.json, as published. */
static const char *QWEN25_7B_INSTRUCT =
    "{\n"
    "  \"architectures\": [\"Qwen2ForCausalLM\"],\n"
    "  \"attention_dropout\": 0.0,\n"
    "  \"bos_token_id\": 151643,\n"
    "  \"eos_token_id\": 151645,\n"
    "  \"hidden_act\": \"silu\",\n"
    "  \"hidden_size\": 3584,\n"
    "  \"initializer_range\": 0.02,\n"
    "  \"intermediate_size\": 18944,\n"
    "  \"max_position_embeddings\": 32768,\n"
    "  \"max_window_layers\": 28,\n"
    "  \"model_type\": \"qwen2\",\n"
    "  \"num_attention_heads\": 28,\n"
    "  \"num_hidden_layers\": 28,\n"
    "  \"num_key_value_heads\": 4,\n"
    "  \"rms_norm_eps\": 1e-06,\n"
    "  \"rope_theta\": 1000000.0,\n"
    "  \"sliding_window\": 131072,\n"
    "  \"tie_word_embeddings\": false,\n"
    "  \"torch_dtype\": \"bfloat16\",\n"
    "  \"transformers_version\": \"4.43.1\",\n"
    "  \"use_cache\": true,\n"
    "  \"use_sliding_window\": false,\n"
    "  \"vocab_size\": 152064\n"
    "}\n";

/* The smallest config: only required fields. */
static const char *MINIMAL =
    "{\"vocab_size\": 100, \"hidden_size\": 64, \"intermediate_size\": 128, \"num_hidden_layers\": 2,"
    " \"num_attention_heads\": 4, \"max_position_embeddings\": 512, \"rms_norm_eps\": 1e-5}";

static void test_qwen25_7b(void **state) {
    (void)state;
    qm_config c;
    qm_error err = {0};
    if (qm_config_parse(QWEN25_7B_INSTRUCT, "7b/config.json", &c, &err)) fail_msg("%s", err.msg);
    assert_int_equal(c.vocab_size, 152064);
    assert_int_equal(c.hidden_size, 3584);
    assert_int_equal(c.intermediate_size, 18944);
    assert_int_equal(c.num_hidden_layers, 28);
    assert_int_equal(c.num_attention_heads, 28);
    assert_int_equal(c.num_key_value_heads, 4);
    assert_int_equal(c.head_dim, 128);
    assert_int_equal(c.max_position_embeddings, 32768);
    assert_true(c.rope_theta == 1000000.0);
    assert_true(c.rms_norm_eps == 1e-6);
    assert_false(c.tie_word_embeddings);
    assert_int_equal(c.bos_token_id, 151643);
    assert_int_equal(c.n_eos, 1);
    assert_int_equal(c.eos_token_ids[0], 151645);
    assert_string_equal(c.torch_dtype, "bfloat16");
}

static void test_defaults(void **state) {
    (void)state;
    qm_config c;
    qm_error err = {0};
    if (qm_config_parse(MINIMAL, "min.json", &c, &err)) fail_msg("%s", err.msg);
    assert_int_equal(c.num_key_value_heads, 4); /* = heads */
    assert_int_equal(c.head_dim, 16);           /* = hidden / heads */
    assert_true(c.rope_theta == 10000.0);
    assert_false(c.tie_word_embeddings);
    assert_int_equal(c.bos_token_id, -1);
    assert_int_equal(c.n_eos, 0);
    assert_string_equal(c.torch_dtype, "");
}

static char *with(const char *extra) {
    /* MINIMAL with extra fields put first (cJSON keeps the first of duplicated keys) */
    size_t n = strlen(MINIMAL) + strlen(extra) + 8;
    char *s = malloc(n);
    snprintf(s, n, "{%s, %s", extra, MINIMAL + 1);
    return s;
}

static void test_optional_forms(void **state) {
    (void)state;
    qm_config c;
    qm_error err = {0};
    char *s = with("\"eos_token_id\": [151645, 151643], \"dtype\": \"float32\", \"head_dim\": 16, "
                   "\"tie_word_embeddings\": true, \"rope_scaling\": null, \"bos_token_id\": null, "
                   "\"num_key_value_heads\": 2, \"model_type\": \"qwen2\", \"use_sliding_window\": false");
    qm_status st = qm_config_parse(s, "opt.json", &c, &err);
    free(s);
    if (st) fail_msg("%s", err.msg);
    assert_int_equal(c.n_eos, 2);
    assert_int_equal(c.eos_token_ids[0], 151645);
    assert_int_equal(c.eos_token_ids[1], 151643);
    assert_string_equal(c.torch_dtype, "float32");
    assert_true(c.tie_word_embeddings);
    assert_int_equal(c.bos_token_id, -1);
    assert_int_equal(c.num_key_value_heads, 2);
}

typedef struct {
    const char *json;      /* full text, or NULL to use `extra` on top of MINIMAL */
    const char *extra;
    qm_status code;
    const char *needle1, *needle2;
} bad_case;

static void test_refusals(void **state) {
    (void)state;
    const bad_case cases[] = {
        {"{\"vocab_size\": 1", NULL, QM_ERR_FORMAT, "bad.json", "JSON"},
        {"", NULL, QM_ERR_FORMAT, "bad.json", "JSON"},
        {"[1, 2]", NULL, QM_ERR_CONFIG, "bad.json", "object"},
        {"{\"hidden_size\": 64, \"intermediate_size\": 128, \"num_hidden_layers\": 2, \"num_attention_heads\": 4,"
         " \"max_position_embeddings\": 512, \"rms_norm_eps\": 1e-5}",
         NULL, QM_ERR_CONFIG, "bad.json", "vocab_size"},
        {"{\"vocab_size\": 100, \"hidden_size\": 64, \"intermediate_size\": 128, \"num_hidden_layers\": 2,"
         " \"max_position_embeddings\": 512, \"rms_norm_eps\": 1e-5}",
         NULL, QM_ERR_CONFIG, "missing", "num_attention_heads"},
        {"{\"vocab_size\": 100, \"hidden_size\": 64, \"intermediate_size\": 128, \"num_hidden_layers\": 2,"
         " \"num_attention_heads\": 4, \"max_position_embeddings\": 512}",
         NULL, QM_ERR_CONFIG, "missing", "rms_norm_eps"},
        {NULL, "\"hidden_size\": \"64\"", QM_ERR_CONFIG, "bad.json", "hidden_size"},
        {NULL, "\"hidden_size\": 64.5", QM_ERR_CONFIG, "hidden_size", "integer"},
        {NULL, "\"vocab_size\": 0", QM_ERR_CONFIG, "vocab_size", "positive"},
        {NULL, "\"num_hidden_layers\": -3", QM_ERR_CONFIG, "num_hidden_layers", "positive"},
        {NULL, "\"intermediate_size\": 0", QM_ERR_CONFIG, "intermediate_size", NULL},
        {NULL, "\"rms_norm_eps\": \"small\"", QM_ERR_CONFIG, "rms_norm_eps", NULL},
        {NULL, "\"rms_norm_eps\": 0", QM_ERR_CONFIG, "rms_norm_eps", NULL},
        {NULL, "\"rope_theta\": -1", QM_ERR_CONFIG, "rope_theta", NULL},
        {NULL, "\"tie_word_embeddings\": 1", QM_ERR_CONFIG, "tie_word_embeddings", NULL},
        {NULL, "\"num_key_value_heads\": 3", QM_ERR_CONFIG, "num_key_value_heads", "multiple"},
        {NULL, "\"num_key_value_heads\": 0", QM_ERR_CONFIG, "num_key_value_heads", NULL},
        {NULL, "\"head_dim\": 32", QM_ERR_CONFIG, "hidden_size", "head_dim"},
        {NULL, "\"num_attention_heads\": 5", QM_ERR_CONFIG, "hidden_size", "num_attention_heads"},
        {"{\"vocab_size\": 100, \"hidden_size\": 60, \"intermediate_size\": 128, \"num_hidden_layers\": 2,"
         " \"num_attention_heads\": 4, \"max_position_embeddings\": 512, \"rms_norm_eps\": 1e-5}",
         NULL, QM_ERR_CONFIG, "head_dim (15)", "odd"},
        {NULL, "\"use_sliding_window\": true", QM_ERR_CONFIG, "sliding window", "unsupported"},
        {NULL, "\"hidden_act\": \"gelu\"", QM_ERR_CONFIG, "hidden_act", "silu"},
        {NULL, "\"rope_scaling\": {\"type\": \"yarn\", \"factor\": 4.0}", QM_ERR_CONFIG, "rope_scaling", "\"yarn\""},
        /* RoPE scaling types qmesh does not implement, wherever they are written */
        {NULL, "\"rope_scaling\": {\"rope_type\": \"dynamic\", \"factor\": 2.0}", QM_ERR_CONFIG, "rope_scaling",
         "\"dynamic\""},
        {NULL, "\"rope_scaling\": {\"type\": \"linear\", \"factor\": 2.0}", QM_ERR_CONFIG, "rope_scaling", "\"linear\""},
        {NULL, "\"rope_scaling\": {\"rope_type\": \"default\", \"type\": \"yarn\"}", QM_ERR_CONFIG, "rope_scaling",
         "\"yarn\""},
        {NULL, "\"rope_scaling\": {\"factor\": 4.0}", QM_ERR_CONFIG, "rope_scaling", "no type"},
        {NULL, "\"rope_scaling\": \"yarn\"", QM_ERR_CONFIG, "rope_scaling", "object"},
        {NULL, "\"rope_parameters\": {\"rope_type\": \"llama3\", \"rope_theta\": 500000.0, \"factor\": 8.0}",
         QM_ERR_CONFIG, "rope_parameters", "\"llama3\""},
        {NULL, "\"rope_parameters\": {\"rope_type\": \"longrope\", \"rope_theta\": 10000.0}", QM_ERR_CONFIG,
         "rope_parameters", "\"longrope\""},
        {NULL, "\"rope_scaling\": null, \"rope_parameters\": {\"type\": \"yarn\", \"rope_theta\": 10000.0}", QM_ERR_CONFIG,
         "rope_parameters", "\"yarn\""},
        {NULL, "\"rope_parameters\": {\"rope_type\": 1}", QM_ERR_CONFIG, "rope_parameters.rope_type", "string"},
        {NULL, "\"rope_parameters\": {\"rope_theta\": \"big\"}", QM_ERR_CONFIG, "rope_parameters.rope_theta", NULL},
        {NULL, "\"rope_parameters\": {\"rope_theta\": -5}", QM_ERR_CONFIG, "rope_theta", "positive"},
        {NULL, "\"rope_parameters\": {\"full_attention\": {\"rope_type\": \"default\", \"rope_theta\": 10000.0}}",
         QM_ERR_CONFIG, "rope_parameters", "full_attention"},
        {NULL, "\"rope_theta\": 10000.0, \"rope_parameters\": {\"rope_type\": \"default\", \"rope_theta\": 1000000.0}",
         QM_ERR_CONFIG, "rope_theta", "disagree"},
        /* upper bounds on sizes (config.h), named with the bound */
        {NULL, "\"num_hidden_layers\": 1025", QM_ERR_CONFIG, "num_hidden_layers is 1025", "at most 1024"},
        {NULL, "\"num_attention_heads\": 1025", QM_ERR_CONFIG, "num_attention_heads is 1025", "at most 1024"},
        {NULL, "\"num_key_value_heads\": 2048", QM_ERR_CONFIG, "num_key_value_heads is 2048", "at most 1024"},
        {NULL, "\"hidden_size\": 1048577", QM_ERR_CONFIG, "hidden_size is 1048577", "at most 1048576"},
        {NULL, "\"intermediate_size\": 2147483647", QM_ERR_CONFIG, "intermediate_size is 2147483647",
         "at most 1048576"},
        {NULL, "\"vocab_size\": 16777217", QM_ERR_CONFIG, "vocab_size is 16777217", "at most 16777216"},
        {NULL, "\"max_position_embeddings\": 16777217", QM_ERR_CONFIG, "max_position_embeddings is 16777217",
         "at most 16777216"},
        {NULL, "\"head_dim\": 65538", QM_ERR_CONFIG, "head_dim is 65538", "at most 65536"},
        {NULL, "\"model_type\": \"llama\"", QM_ERR_CONFIG, "llama", "qwen2"},
        {NULL, "\"eos_token_id\": \"</s>\"", QM_ERR_CONFIG, "eos_token_id", NULL},
        {NULL, "\"eos_token_id\": [1, 2, 3, 4, 5, 6, 7, 8, 9]", QM_ERR_CONFIG, "eos_token_id", "at most"},
        {NULL, "\"torch_dtype\": \"int8\"", QM_ERR_CONFIG, "torch_dtype", "int8"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const bad_case *b = &cases[i];
        char *text = b->json ? strdup(b->json) : with(b->extra);
        qm_config c;
        qm_error err = {0};
        qm_status st = qm_config_parse(text, "dir/bad.json", &c, &err);
        if (st != b->code || !strstr(err.msg, "dir/bad.json") || (b->needle1 && !strstr(err.msg, b->needle1)) ||
            (b->needle2 && !strstr(err.msg, b->needle2)))
            fail_msg("case %zu (%s): status %s (want %s), message \"%s\"", i, text, qm_status_name(st),
                     qm_status_name(b->code), err.msg);
        free(text);
    }
}

/* RoPE parameters as newer transformers write them: {"rope_parameters": {"rope_type", "rope_theta"}}. */
static void test_rope_parameters(void **state) {
    (void)state;
    const struct {
        const char *extra;
        double theta;
    } ok[] = {
        {"\"rope_parameters\": {\"rope_type\": \"default\", \"rope_theta\": 1000000.0}", 1000000.0},
        {"\"rope_parameters\": {\"rope_theta\": 500000.0}", 500000.0}, /* no type: default */
        {"\"rope_theta\": 1e6, \"rope_scaling\": null, \"rope_parameters\": {\"rope_type\": \"default\", "
         "\"rope_theta\": 1000000.0}",
         1000000.0},
        {"\"rope_theta\": 20000.0, \"rope_parameters\": {\"rope_type\": \"default\"}", 20000.0},
        {"\"rope_theta\": 30000.0, \"rope_parameters\": null", 30000.0},
        {"\"rope_scaling\": {\"rope_type\": \"default\"}", 10000.0},
        {"\"rope_scaling\": {\"type\": \"default\", \"rope_type\": null}", 10000.0},
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        char *s = with(ok[i].extra);
        qm_config c;
        qm_error err = {0};
        qm_status st = qm_config_parse(s, "rope.json", &c, &err);
        if (st) fail_msg("case %zu (%s): %s", i, s, err.msg);
        if (c.rope_theta != ok[i].theta) fail_msg("case %zu: rope_theta %g, want %g", i, c.rope_theta, ok[i].theta);
        free(s);
    }
}

/* Sizes at the bounds of config.h are accepted (the real vocabularies among them), and a
 * partition of them is exact. */
static void test_size_bounds(void **state) {
    (void)state;
    char buf[512];
    qm_config c;
    qm_error err = {0};
    snprintf(buf, sizeof buf,
             "{\"vocab_size\": %d, \"hidden_size\": %d, \"intermediate_size\": %d, \"num_hidden_layers\": %d,"
             " \"num_attention_heads\": %d, \"num_key_value_heads\": %d, \"max_position_embeddings\": %d,"
             " \"rms_norm_eps\": 1e-6}",
             QM_CONFIG_MAX_VOCAB, QM_CONFIG_MAX_WIDTH, QM_CONFIG_MAX_WIDTH, QM_CONFIG_MAX_LAYERS, QM_CONFIG_MAX_HEADS,
             QM_CONFIG_MAX_HEADS, QM_CONFIG_MAX_POSITIONS);
    if (qm_config_parse(buf, "max.json", &c, &err)) fail_msg("%s", err.msg);
    assert_int_equal(c.head_dim, QM_CONFIG_MAX_WIDTH / QM_CONFIG_MAX_HEADS);
    const int vocabs[] = {151936, 152064};
    for (int i = 0; i < 2; i++) {
        snprintf(buf, sizeof buf, "\"vocab_size\": %d", vocabs[i]);
        char *s = with(buf);
        if (qm_config_parse(s, "vocab.json", &c, &err)) fail_msg("%s", err.msg);
        assert_int_equal(c.vocab_size, vocabs[i]);
        free(s);
    }
    /* head_dim at its own bound (heads * head_dim = hidden) */
    snprintf(buf, sizeof buf, "\"head_dim\": %d, \"num_attention_heads\": 16, \"hidden_size\": %d",
             QM_CONFIG_MAX_HEAD_DIM, 16 * QM_CONFIG_MAX_HEAD_DIM);
    char *s = with(buf);
    if (qm_config_parse(s, "hd.json", &c, &err)) fail_msg("%s", err.msg);
    free(s);
}

/* qm_partition_make takes any int sizes: the MLP block count and columns must not overflow even
 * for intermediate = INT_MAX (it once computed intermediate + 63 in int). */
static void test_partition_extreme_sizes(void **state) {
    (void)state;
    const int sizes[] = {INT_MAX, INT_MAX - 63, QM_CONFIG_MAX_WIDTH, 1};
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        int inter = sizes[k];
        int blocks = (int)(((int64_t)inter + QM_MLP_BLOCK - 1) / QM_MLP_BLOCK);
        for (int cols = 1; cols <= 7; cols += 3) {
            int next = 0, next_block = 0, next_vocab = 0;
            for (int col = 0; col < cols; col++) {
                qm_partition p;
                qm_error err = {0};
                if (qm_partition_make(cols, col, 4, 2, 8, inter, INT_MAX, &p, &err)) fail_msg("%s", err.msg);
                assert_int_equal(p.n_mlp_blocks, blocks);
                assert_int_equal(p.mlp_blocks.begin, next_block);
                assert_int_equal(p.mlp_cols.begin, next);
                assert_true(p.mlp_cols.end >= p.mlp_cols.begin && p.mlp_cols.end <= inter);
                assert_int_equal(p.vocab.begin, next_vocab);
                next_block = p.mlp_blocks.end;
                next = p.mlp_cols.end;
                next_vocab = p.vocab.end;
            }
            assert_int_equal(next_block, blocks);
            assert_int_equal(next, inter);
            assert_int_equal(next_vocab, INT_MAX);
        }
    }
}

static void test_load_write(void **state) {
    (void)state;
    char dir[] = "/tmp/qm_test_config_XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[128];
    snprintf(path, sizeof path, "%s/config.json", dir);
    qm_config c, back;
    qm_error err = {0};
    assert_int_equal(qm_config_load(path, &c, &err), QM_ERR_IO);
    assert_non_null(strstr(err.msg, path));

    assert_int_equal(qm_config_parse(QWEN25_7B_INSTRUCT, "x", &c, &err), QM_OK);
    c.n_eos = 2;
    c.eos_token_ids[1] = 151643;
    if (qm_config_write(&c, path, &err)) fail_msg("%s", err.msg);
    if (qm_config_load(path, &back, &err)) fail_msg("%s", err.msg);
    assert_memory_equal(&c, &back, sizeof c);

    /* writing refuses an impossible config */
    c.head_dim = 7;
    assert_int_equal(qm_config_write(&c, path, &err), QM_ERR_CONFIG);

    FILE *f = fopen(path, "w");
    fputs("{\"vocab_size\": 3", f);
    fclose(f);
    assert_int_equal(qm_config_load(path, &back, &err), QM_ERR_FORMAT);
    assert_non_null(strstr(err.msg, path));
    unlink(path);
    rmdir(dir);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_qwen25_7b),
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_optional_forms),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_rope_parameters),
        cmocka_unit_test(test_size_bounds),
        cmocka_unit_test(test_partition_extreme_sizes),
        cmocka_unit_test(test_load_write),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
