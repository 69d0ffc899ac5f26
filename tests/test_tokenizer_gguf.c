/* Tokenizer in GGUF metadata: a tokenizer.json written with qm_tokenizer_gguf_metadata and read back
 * with qm_tokenizer_load_gguf gives the same ids on the 230 reference cases; the metadata equals what
 * llama.cpp wrote into the real Qwen2.5-Coder GGUFs; the real files' tokenizers (when present); bad
 * metadata refused with clear errors; chat template classification and the chat formats. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/gguf.h"
#include "text/chat.h"
#include "text/tokenizer.h"
#include "text/tokenizer_internal.h" /* qm_tok_qwen2_split */

#define TOKDIR QMESH_DATA_DIR "/tokenizers"
#define CASES TOKDIR "/qwen2.5/encode_cases.jsonl"
#define GSM8K QMESH_DATA_DIR "/gsm8k/test.jsonl"
#define MODEL_05B QMESH_SRC_DIR "/models/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"
#define MODEL_15B QMESH_SRC_DIR "/models/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"

#define DS_BOS "<\xEF\xBD\x9C" "begin\xE2\x96\x81of\xE2\x96\x81sentence\xEF\xBD\x9C>"
#define DS_USER "<\xEF\xBD\x9CUser\xEF\xBD\x9C>"
#define DS_ASSISTANT "<\xEF\xBD\x9C" "Assistant\xEF\xBD\x9C>"

/* ---------------------------------------------------------------- helpers */

static cJSON **read_jsonl(const char *path, int *n) {
    FILE *fp = fopen(path, "r");
    assert_non_null(fp);
    cJSON **rows = NULL;
    int cap = 0;
    *n = 0;
    char *line = NULL;
    size_t lcap = 0;
    ssize_t len;
    while ((len = getline(&line, &lcap, fp)) > 0) {
        if (*n == cap) {
            cap = cap ? cap * 2 : 256;
            rows = realloc(rows, sizeof *rows * (size_t)cap);
            assert_non_null(rows);
        }
        rows[*n] = cJSON_ParseWithLength(line, (size_t)len);
        assert_non_null(rows[*n]);
        (*n)++;
    }
    free(line);
    fclose(fp);
    return rows;
}

static void free_jsonl(cJSON **rows, int n) {
    for (int i = 0; i < n; i++) cJSON_Delete(rows[i]);
    free(rows);
}

/* The 230 reference cases: every one encodes to its ids and decodes back. */
static void check_cases(const qm_tokenizer *tok, const char *name) {
    int n_rows, matched = 0, decoded = 0;
    cJSON **rows = read_jsonl(CASES, &n_rows);
    assert_int_equal(n_rows, 230);
    for (int r = 0; r < n_rows; r++) {
        const char *text = cJSON_GetStringValue(cJSON_GetObjectItem(rows[r], "text"));
        const cJSON *want = cJSON_GetObjectItem(rows[r], "ids");
        assert_non_null(text);
        int *ids, n;
        qm_error err = {0};
        assert_int_equal(qm_tokenize(tok, text, strlen(text), &ids, &n, &err), QM_OK);
        bool same = n == cJSON_GetArraySize(want);
        for (int i = 0; same && i < n; i++) same = ids[i] == cJSON_GetArrayItem(want, i)->valueint;
        if (same)
            matched++;
        else
            fprintf(stderr, "[%s] case %d differs: %.60s\n", name, r, text);
        char *back;
        size_t blen;
        assert_int_equal(qm_detokenize(tok, ids, n, &back, &blen, &err), QM_OK);
        if (blen == strlen(text) && !memcmp(back, text, blen))
            decoded++;
        else
            fprintf(stderr, "[%s] case %d does not decode back\n", name, r);
        free(back);
        free(ids);
    }
    printf("[%s] %d/%d encode cases match, %d decode back\n", name, matched, n_rows, decoded);
    assert_int_equal(matched, n_rows);
    assert_int_equal(decoded, n_rows);
    free_jsonl(rows, n_rows);
}

/* Same ids from both tokenizers on the GSM8K questions and a few hard strings. */
static void check_same(const qm_tokenizer *a, const qm_tokenizer *b) {
    static const char *texts[] = {"", "<|im_start|>user\nhi<|im_end|>\n<|endoftext|>", "   \n\n\t  spaces  ",
                                  "emoji 🤖 and 👍🏽, 中文, العربية, ǅ ſ 'S 'LL", "cafe\xCC\x81 <tool_call>x</tool_call>"};
    int n_rows;
    cJSON **rows = read_jsonl(GSM8K, &n_rows);
    for (int r = 0; r < n_rows + 5; r++) {
        const char *t = r < n_rows ? cJSON_GetStringValue(cJSON_GetObjectItem(rows[r], "question")) : texts[r - n_rows];
        int *x, *y, nx, ny;
        qm_error err = {0};
        assert_int_equal(qm_tokenize(a, t, strlen(t), &x, &nx, &err), QM_OK);
        assert_int_equal(qm_tokenize(b, t, strlen(t), &y, &ny, &err), QM_OK);
        assert_int_equal(nx, ny);
        assert_memory_equal(x, y, sizeof(int) * (size_t)nx);
        free(x);
        free(y);
    }
    free_jsonl(rows, n_rows);
}

static bool file_exists(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0;
}

/* A scratch folder; files in it are removed by remove_dir. */
static void make_dir(char *dir, size_t cap) {
    snprintf(dir, cap, "/tmp/qm_tokgguf_XXXXXX");
    assert_non_null(mkdtemp(dir));
}

static void remove_dir(const char *dir) {
    static const char *names[] = {"tok.gguf", "tokenizer.json", "tokenizer_config.json", "config.json",
                                  "chat_template.jinja"};
    char p[512];
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        snprintf(p, sizeof p, "%s/%s", dir, names[i]);
        unlink(p);
    }
    assert_int_equal(rmdir(dir), 0);
}

/* Writes <dir>/tok.gguf with the tokenizer of hf_dir (no tensors). */
static void write_from_hf(const char *hf_dir, const char *gguf_path) {
    qm_gguf_writer *w = NULL;
    qm_error err = {0};
    assert_int_equal(qm_gguf_writer_open(gguf_path, &w, &err), QM_OK);
    qm_status st = qm_tokenizer_gguf_metadata(hf_dir, w, &err);
    if (st) fail_msg("qm_tokenizer_gguf_metadata: %s", err.msg);
    assert_int_equal(qm_gguf_writer_close(w, true, &err), QM_OK);
}

static qm_tokenizer *load_gguf(const char *path, qm_gguf **g) {
    qm_error err = {0};
    qm_tokenizer *tok = NULL;
    if (qm_gguf_open(path, g, &err)) fail_msg("qm_gguf_open: %s", err.msg);
    if (qm_tokenizer_load_gguf(*g, &tok, &err)) fail_msg("qm_tokenizer_load_gguf: %s", err.msg);
    return tok;
}

static void check_specials(const qm_tokenizer *tok, int bos, int eos, int pad, bool add_bos) {
    qm_tokenizer_specials sp;
    qm_tokenizer_special_ids(tok, &sp);
    assert_int_equal(sp.bos, bos);
    assert_int_equal(sp.eos, eos);
    assert_int_equal(sp.pad, pad);
    assert_int_equal(sp.add_bos, add_bos);
}

static char *gguf_string(const qm_gguf *g, const char *key) {
    char *s = NULL;
    qm_error err = {0};
    assert_int_equal(qm_gguf_get_string(g, key, false, &s, &err), QM_OK);
    return s;
}

/* ---------------------------------------------------------------- (a) written and read back */

static void test_roundtrip_qwen25(void **state) {
    (void)state;
    char dir[64], path[128];
    make_dir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/tok.gguf", dir);
    write_from_hf(TOKDIR "/qwen2.5", path);

    qm_gguf *g = NULL;
    qm_tokenizer *tok = load_gguf(path, &g), *ref = NULL;
    qm_error err = {0};
    assert_int_equal(qm_tokenizer_load(TOKDIR "/qwen2.5", &ref, &err), QM_OK);
    assert_int_equal(qm_tokenizer_n_ids(tok), 151665);
    check_cases(tok, "qwen2.5 via GGUF");
    check_same(ref, tok);
    assert_int_equal(qm_tokenizer_id(tok, "<|im_end|>"), 151645);
    assert_int_equal(qm_tokenizer_id(tok, "<tool_call>"), 151657);
    assert_int_equal(qm_tokenizer_id(tok, "Hello"), 9707);
    /* No config.json in the folder: vocab_size is the tokenizer's, bos falls back to <|endoftext|>. */
    check_specials(tok, 151643, 151645, 151643, false);
    const qm_gguf_kv *kv = qm_gguf_find(g, "tokenizer.ggml.tokens");
    assert_non_null(kv);
    assert_int_equal(kv->count, 151665);
    assert_int_equal(qm_gguf_find(g, "tokenizer.ggml.merges")->count, 151387);
    assert_null(qm_gguf_find(g, "tokenizer.chat_template")); /* this tokenizer_config.json has none */
    char *pre = gguf_string(g, "tokenizer.ggml.pre");
    assert_string_equal(pre, "qwen2");
    free(pre);
    qm_tokenizer_free(ref);
    qm_tokenizer_free(tok);
    qm_gguf_close(g);
    remove_dir(dir);
}

/* Qwen3: ["a", "b"] merges, <think> as a user-defined token, a chat template without a default
 * system prompt. */
static void test_roundtrip_qwen3(void **state) {
    (void)state;
    char dir[64], path[128];
    make_dir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/tok.gguf", dir);
    write_from_hf(TOKDIR "/qwen3", path);
    qm_gguf *g = NULL;
    qm_tokenizer *tok = load_gguf(path, &g);
    assert_int_equal(qm_tokenizer_n_ids(tok), 151669);
    check_cases(tok, "qwen3 via GGUF");
    assert_int_equal(qm_tokenizer_id(tok, "<think>"), 151667);
    const qm_gguf_kv *types = qm_gguf_find(g, "tokenizer.ggml.token_type");
    assert_int_equal(qm_gguf_array_int(types, 151667), 4);     /* <think>: user-defined */
    assert_int_equal(qm_gguf_array_int(types, 151659), 3);     /* <|fim_prefix|>: looks special -> control */
    assert_int_equal(qm_gguf_array_int(types, 151645), 3);     /* <|im_end|> */
    assert_int_equal(qm_gguf_array_int(types, 9707), 1);
    char *tmpl = gguf_string(g, "tokenizer.chat_template");
    assert_non_null(tmpl);
    assert_int_equal(qm_chat_format_detect(tmpl), QM_CHAT_CHATML);
    assert_null(qm_chat_template_system(tmpl)); /* Qwen3 has no default system prompt */
    free(tmpl);
    qm_tokenizer_free(tok);
    qm_gguf_close(g);
    remove_dir(dir);
}

/* Compares two metadata values (same key). */
static void check_same_kv(const qm_gguf_kv *a, const qm_gguf_kv *b) {
    assert_string_equal(a->key, b->key);
    if (a->type != b->type) fail_msg("%s: type %d, llama.cpp wrote %d", a->key, a->type, b->type);
    if (a->type == QM_GGUF_STRING) {
        assert_int_equal(a->v.s.len, b->v.s.len);
        assert_memory_equal(a->v.s.ptr, b->v.s.ptr, a->v.s.len);
    } else if (a->type == QM_GGUF_ARRAY) {
        assert_int_equal(a->elem_type, b->elem_type);
        if (a->count != b->count) fail_msg("%s: %llu entries, llama.cpp wrote %llu", a->key,
                                           (unsigned long long)a->count, (unsigned long long)b->count);
        for (uint64_t i = 0; i < a->count; i++) {
            if (a->elem_type == QM_GGUF_STRING) {
                if (a->strs[i].len != b->strs[i].len || memcmp(a->strs[i].ptr, b->strs[i].ptr, a->strs[i].len))
                    fail_msg("%s[%llu] differs: \"%.*s\" vs llama.cpp's \"%.*s\"", a->key, (unsigned long long)i,
                             (int)a->strs[i].len, a->strs[i].ptr, (int)b->strs[i].len, b->strs[i].ptr);
            } else if (qm_gguf_array_int(a, i) != qm_gguf_array_int(b, i))
                fail_msg("%s[%llu] = %lld, llama.cpp wrote %lld", a->key, (unsigned long long)i,
                         (long long)qm_gguf_array_int(a, i), (long long)qm_gguf_array_int(b, i));
        }
    } else
        assert_int_equal(a->v.u, b->v.u);
}

/* A Hugging Face folder like Qwen2.5-Coder-0.5B-Instruct's (its chat template taken from the real
 * GGUF, config.json's vocab_size and token ids): every tokenizer.* key comes out as llama.cpp wrote it. */
static void test_matches_llama_cpp(void **state) {
    (void)state;
    if (!file_exists(MODEL_05B)) {
        printf("skipped: %s is absent\n", MODEL_05B);
        skip();
    }
    qm_gguf *real = NULL;
    qm_error err = {0};
    assert_int_equal(qm_gguf_open(MODEL_05B, &real, &err), QM_OK);
    char *tmpl = gguf_string(real, "tokenizer.chat_template");
    assert_non_null(tmpl);

    char dir[64], p[128];
    make_dir(dir, sizeof dir);
    snprintf(p, sizeof p, "%s/tokenizer.json", dir);
    assert_int_equal(symlink(TOKDIR "/qwen2.5/tokenizer.json", p), 0);
    FILE *f = fopen(TOKDIR "/qwen2.5/tokenizer_config.json", "r");
    assert_non_null(f);
    char buf[16384];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    cJSON *cfg = cJSON_Parse(buf);
    assert_non_null(cfg);
    cJSON_AddStringToObject(cfg, "chat_template", tmpl);
    char *text = cJSON_Print(cfg);
    snprintf(p, sizeof p, "%s/tokenizer_config.json", dir);
    f = fopen(p, "w");
    fputs(text, f);
    fclose(f);
    free(text);
    cJSON_Delete(cfg);
    snprintf(p, sizeof p, "%s/config.json", dir);
    f = fopen(p, "w");
    fputs("{\"vocab_size\": 151936, \"bos_token_id\": 151643, \"eos_token_id\": 151645}", f);
    fclose(f);

    snprintf(p, sizeof p, "%s/tok.gguf", dir);
    write_from_hf(dir, p);
    qm_gguf *mine = NULL;
    assert_int_equal(qm_gguf_open(p, &mine, &err), QM_OK);
    int k = 0;
    for (int i = 0; i < qm_gguf_kv_count(real); i++) {
        const qm_gguf_kv *b = qm_gguf_kv_at(real, i);
        if (strncmp(b->key, "tokenizer.", 10) != 0) continue;
        assert_true(k < qm_gguf_kv_count(mine));
        check_same_kv(qm_gguf_kv_at(mine, k++), b);
    }
    assert_int_equal(k, qm_gguf_kv_count(mine));
    printf("%d tokenizer keys identical to llama.cpp's, in the same order\n", k);
    free(tmpl);
    qm_gguf_close(mine);
    qm_gguf_close(real);
    remove_dir(dir);
}

/* ---------------------------------------------------------------- (b) the real files */

static void test_real_models(void **state) {
    (void)state;
    static const char *models[] = {MODEL_05B, MODEL_15B};
    int found = 0;
    for (size_t m = 0; m < 2; m++) {
        if (!file_exists(models[m])) {
            printf("skipped: %s is absent\n", models[m]);
            continue;
        }
        found++;
        qm_gguf *g = NULL;
        qm_tokenizer *tok = load_gguf(models[m], &g);
        assert_int_equal(qm_tokenizer_n_ids(tok), 151665); /* the 271 "[PAD...]" unused rows left out */
        check_cases(tok, strrchr(models[m], '/') + 1);
        check_specials(tok, 151643, 151645, 151643, false);
        char *chat = qm_chat_wrap("What is 2+2?", NULL);
        int *ids, n;
        qm_error err = {0};
        assert_int_equal(qm_tokenize(tok, chat, strlen(chat), &ids, &n, &err), QM_OK);
        assert_int_equal(ids[0], 151644);
        assert_int_equal(ids[n - 1], 198);
        free(ids);
        free(chat);
        qm_tokenizer_free(tok);
        qm_gguf_close(g);
    }
    if (!found) skip();
}

/* ---------------------------------------------------------------- (c) bad metadata */

/* A tiny tokenizer; each field can be spoiled by a test. */
typedef struct {
    const char *model, *pre;  /* NULL = key left out */
    const char *tokens[8];
    int n_tokens;             /* -1 = key left out */
    int32_t types[8];
    int n_types;
    const char *merges[4];
    int n_merges;
    int64_t eos;              /* -1 = left out */
} tiny;

static tiny tiny_ok(void) {
    return (tiny){.model = "gpt2", .pre = "qwen2",
                  .tokens = {"a", "b", "c", "ab", "abc", "\xC4\xA0", "<s>"}, .n_tokens = 7,
                  .types = {1, 1, 1, 1, 1, 1, 3}, .n_types = 7,
                  .merges = {"a b", "ab c"}, .n_merges = 2, .eos = 6};
}

static void write_tiny(const tiny *t, const char *path) {
    qm_gguf_writer *w = NULL;
    qm_error err = {0};
    assert_int_equal(qm_gguf_writer_open(path, &w, &err), QM_OK);
    if (t->model) assert_int_equal(qm_gguf_add_string(w, "tokenizer.ggml.model", t->model, &err), QM_OK);
    if (t->pre) assert_int_equal(qm_gguf_add_string(w, "tokenizer.ggml.pre", t->pre, &err), QM_OK);
    if (t->n_tokens >= 0)
        assert_int_equal(qm_gguf_add_string_array(w, "tokenizer.ggml.tokens", t->tokens, (uint64_t)t->n_tokens, &err),
                         QM_OK);
    assert_int_equal(qm_gguf_add_array(w, "tokenizer.ggml.token_type", QM_GGUF_INT32, t->types,
                                       (uint64_t)t->n_types, &err), QM_OK);
    assert_int_equal(qm_gguf_add_string_array(w, "tokenizer.ggml.merges", t->merges, (uint64_t)t->n_merges, &err),
                     QM_OK);
    if (t->eos >= 0) assert_int_equal(qm_gguf_add_u32(w, "tokenizer.ggml.eos_token_id", (uint32_t)t->eos, &err), QM_OK);
    assert_int_equal(qm_gguf_writer_close(w, true, &err), QM_OK);
}

static void expect_tiny_error(const tiny *t, qm_status want, const char *part1, const char *part2) {
    char dir[64], path[128];
    make_dir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/tok.gguf", dir);
    write_tiny(t, path);
    qm_gguf *g = NULL;
    qm_tokenizer *tok = (qm_tokenizer *)&tok;
    qm_error err = {0};
    assert_int_equal(qm_gguf_open(path, &g, &err), QM_OK);
    qm_status st = qm_tokenizer_load_gguf(g, &tok, &err);
    printf("  %s -> %s\n", qm_status_name(st), err.msg);
    assert_int_equal(st, want);
    assert_null(tok);
    if (!strstr(err.msg, part1)) fail_msg("message '%s' lacks '%s'", err.msg, part1);
    if (part2 && !strstr(err.msg, part2)) fail_msg("message '%s' lacks '%s'", err.msg, part2);
    if (!strstr(err.msg, "tok.gguf")) fail_msg("message '%s' does not name the file", err.msg);
    qm_gguf_close(g);
    remove_dir(dir);
}

static void test_tiny_ok(void **state) {
    (void)state;
    char dir[64], path[128];
    make_dir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/tok.gguf", dir);
    tiny t = tiny_ok();
    write_tiny(&t, path);
    qm_gguf *g = NULL;
    qm_tokenizer *tok = load_gguf(path, &g);
    int *ids, n;
    qm_error err = {0};
    const char *text = "abc<s>ab a";
    assert_int_equal(qm_tokenize(tok, text, strlen(text), &ids, &n, &err), QM_OK);
    static const int want[] = {4, 6, 3, 5, 0};
    assert_int_equal(n, 5);
    assert_memory_equal(ids, want, sizeof want);
    char *back;
    size_t len;
    assert_int_equal(qm_detokenize(tok, ids, n, &back, &len, &err), QM_OK);
    assert_string_equal(back, text);
    free(back);
    free(ids);
    check_specials(tok, -1, 6, -1, false);
    qm_tokenizer_free(tok);
    qm_gguf_close(g);
    remove_dir(dir);
}

static void test_bad_metadata(void **state) {
    (void)state;
    tiny t = tiny_ok();
    t.model = "llama";
    expect_tiny_error(&t, QM_ERR_UNSUPPORTED, "tokenizer.ggml.model", "'llama'");
    t = tiny_ok();
    t.model = NULL;
    expect_tiny_error(&t, QM_ERR_FORMAT, "tokenizer.ggml.model", NULL);
    t = tiny_ok();
    t.pre = "llama-bpe";
    expect_tiny_error(&t, QM_ERR_UNSUPPORTED, "tokenizer.ggml.pre", "'llama-bpe'");
    t = tiny_ok();
    t.n_types = 6;
    expect_tiny_error(&t, QM_ERR_FORMAT, "tokenizer.ggml.token_type has 6", "tokenizer.ggml.tokens has 7");
    t = tiny_ok();
    t.types[2] = 9;
    expect_tiny_error(&t, QM_ERR_FORMAT, "tokenizer.ggml.token_type[2] is 9", NULL);
    t = tiny_ok();
    t.merges[1] = "ab x";
    expect_tiny_error(&t, QM_ERR_FORMAT, "tokenizer.ggml.merges[1]", "not in tokenizer.ggml.tokens");
    t = tiny_ok();
    t.merges[0] = "ab";
    expect_tiny_error(&t, QM_ERR_FORMAT, "tokenizer.ggml.merges[0] \"ab\"", "one space");
    t = tiny_ok();
    t.tokens[2] = "";
    expect_tiny_error(&t, QM_ERR_FORMAT, "token 2 of tokenizer.ggml.tokens is empty", NULL);
    t = tiny_ok();
    t.tokens[6] = "<\xFF>";
    expect_tiny_error(&t, QM_ERR_FORMAT, "token 6 of tokenizer.ggml.tokens", "UTF-8");
    t = tiny_ok();
    t.tokens[3] = "a";
    expect_tiny_error(&t, QM_ERR_FORMAT, "twice", "ids 0 and 3");
    t = tiny_ok();
    t.eos = 7;
    expect_tiny_error(&t, QM_ERR_FORMAT, "tokenizer.ggml.eos_token_id is 7", NULL);
    t = tiny_ok();
    t.n_tokens = -1;
    expect_tiny_error(&t, QM_ERR_FORMAT, "tokenizer.ggml.tokens", NULL);
}

/* Writing from a folder that is not a Qwen2-family one, or is inconsistent. */
static void expect_metadata_error(const char *tokenizer_json, const char *config_json, qm_status want,
                                  const char *part) {
    char dir[64], p[128];
    make_dir(dir, sizeof dir);
    if (tokenizer_json) {
        snprintf(p, sizeof p, "%s/tokenizer.json", dir);
        FILE *f = fopen(p, "w");
        fputs(tokenizer_json, f);
        fclose(f);
    } else {
        snprintf(p, sizeof p, "%s/tokenizer.json", dir);
        assert_int_equal(symlink(TOKDIR "/qwen2.5/tokenizer.json", p), 0);
    }
    if (config_json) {
        snprintf(p, sizeof p, "%s/config.json", dir);
        FILE *f = fopen(p, "w");
        fputs(config_json, f);
        fclose(f);
    }
    snprintf(p, sizeof p, "%s/tok.gguf", dir);
    qm_gguf_writer *w = NULL;
    qm_error err = {0};
    assert_int_equal(qm_gguf_writer_open(p, &w, &err), QM_OK);
    qm_status st = qm_tokenizer_gguf_metadata(dir, w, &err);
    printf("  %s -> %s\n", qm_status_name(st), err.msg);
    assert_int_equal(st, want);
    if (!strstr(err.msg, part)) fail_msg("message '%s' lacks '%s'", err.msg, part);
    qm_error e2 = {0};
    qm_gguf_writer_close(w, false, &e2);
    assert_false(file_exists(p));
    remove_dir(dir);
}

static void test_bad_hf_folder(void **state) {
    (void)state;
    char dir[64];
    make_dir(dir, sizeof dir);
    char p[128];
    snprintf(p, sizeof p, "%s/tok.gguf", dir);
    qm_gguf_writer *w = NULL;
    qm_error err = {0};
    assert_int_equal(qm_gguf_writer_open(p, &w, &err), QM_OK);
    assert_int_equal(qm_tokenizer_gguf_metadata(dir, w, &err), QM_ERR_IO); /* no tokenizer.json */
    assert_non_null(strstr(err.msg, "tokenizer.json"));
    qm_gguf_writer_close(w, false, &err);
    remove_dir(dir);

    /* GPT-2's own split (ByteLevel use_regex): not Qwen2's. */
    expect_metadata_error("{\"model\": {\"vocab\": {\"a\": 0}, \"merges\": []}, \"pre_tokenizer\": {\"type\": "
                          "\"ByteLevel\", \"use_regex\": true}}",
                          NULL, QM_ERR_UNSUPPORTED, "Qwen2");
    expect_metadata_error("{\"model\": {\"vocab\": {\"a\": 0}, \"merges\": [\"a b\"]}}", NULL, QM_ERR_FORMAT,
                          "not in model.vocab");
    expect_metadata_error(NULL, "{\"vocab_size\": 1000}", QM_ERR_FORMAT, "vocab_size");
    expect_metadata_error(NULL, "{\"vocab_size\": 151936, \"bos_token_id\": 200000}", QM_ERR_FORMAT, "bos");
}

/* ---------------------------------------------------------------- (d) chat formats */

static const char deepseek_template[] =
    "{% if not add_generation_prompt is defined %}{% set add_generation_prompt = false %}{% endif %}"
    "{% set ns = namespace(is_first=false, is_tool=false, is_output_first=true, system_prompt='') %}"
    "{%- for message in messages %}{%- if message['role'] == 'system' %}{% set ns.system_prompt = "
    "message['content'] %}{%- endif %}{%- endfor %}{{bos_token}}{{ns.system_prompt}}{%- for message in messages "
    "%}{%- if message['role'] == 'user' %}{%- set ns.is_tool = false -%}{{'" DS_USER "' + message['content']}}"
    "{%- endif %}{% set content = message['content'] %}{{'" DS_ASSISTANT "' + content + '<\xEF\xBD\x9C"
    "end\xE2\x96\x81of\xE2\x96\x81sentence\xEF\xBD\x9C>'}}{%- endfor -%}{% if add_generation_prompt and not "
    "ns.is_tool %}{{'" DS_ASSISTANT "<think>\\n'}}{% endif %}";

static void write_json(const char *dir, const char *name, cJSON *j) {
    char p[256];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    char *text = cJSON_Print(j);
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    free(text);
    cJSON_Delete(j);
}

static void add_token(cJSON *added, int id, const char *content, bool special) {
    cJSON *t = cJSON_CreateObject();
    cJSON_AddNumberToObject(t, "id", id);
    cJSON_AddStringToObject(t, "content", content);
    cJSON_AddBoolToObject(t, "special", special);
    cJSON_AddItemToArray(added, t);
}

/* A tiny DeepSeek-R1-Distill-Qwen-like folder: the Qwen2 split without NFC, fullwidth-bar added
 * tokens, add_bos_token true, DeepSeek's chat template. */
static void make_deepseek_folder(const char *dir, const char *tmpl) {
    cJSON *tok = cJSON_CreateObject(), *added = cJSON_AddArrayToObject(tok, "added_tokens");
    add_token(added, 7, "<\xEF\xBD\x9C" "end\xE2\x96\x81of\xE2\x96\x81sentence\xEF\xBD\x9C>", true);
    add_token(added, 8, DS_USER, false);
    add_token(added, 9, DS_ASSISTANT, false);
    add_token(added, 10, DS_BOS, true);
    add_token(added, 11, "<think>", false);
    cJSON *pre = cJSON_AddObjectToObject(tok, "pre_tokenizer"), *seq = cJSON_AddArrayToObject(pre, "pretokenizers");
    cJSON_AddStringToObject(pre, "type", "Sequence");
    cJSON *split = cJSON_CreateObject();
    cJSON_AddStringToObject(split, "type", "Split");
    cJSON_AddStringToObject(cJSON_AddObjectToObject(split, "pattern"), "Regex", qm_tok_qwen2_split);
    cJSON_AddStringToObject(split, "behavior", "Isolated");
    cJSON_AddItemToArray(seq, split);
    cJSON *model = cJSON_AddObjectToObject(tok, "model"), *vocab = cJSON_AddObjectToObject(model, "vocab");
    static const char *v[] = {"a", "b", "c", "ab", "abc", "\xC4\xA0", "\xC4\x8A"};
    for (int i = 0; i < 7; i++) cJSON_AddNumberToObject(vocab, v[i], i);
    cJSON *merges = cJSON_AddArrayToObject(model, "merges");
    cJSON_AddItemToArray(merges, cJSON_CreateString("a b"));
    cJSON_AddItemToArray(merges, cJSON_CreateString("ab c"));
    write_json(dir, "tokenizer.json", tok);

    cJSON *cfg = cJSON_CreateObject();
    cJSON_AddBoolToObject(cfg, "add_bos_token", true);
    cJSON_AddBoolToObject(cfg, "add_eos_token", false);
    cJSON_AddStringToObject(cJSON_AddObjectToObject(cfg, "bos_token"), "content", DS_BOS);
    cJSON_AddStringToObject(cJSON_AddObjectToObject(cfg, "eos_token"), "content",
                            "<\xEF\xBD\x9C" "end\xE2\x96\x81of\xE2\x96\x81sentence\xEF\xBD\x9C>");
    cJSON_AddNullToObject(cfg, "unk_token");
    cJSON_AddStringToObject(cfg, "chat_template", tmpl);
    write_json(dir, "tokenizer_config.json", cfg);
    write_json(dir, "config.json", cJSON_Parse("{\"vocab_size\": 16, \"bos_token_id\": 10, \"eos_token_id\": 7}"));
}

static void test_deepseek_folder(void **state) {
    (void)state;
    char dir[64], path[128];
    make_dir(dir, sizeof dir);
    make_deepseek_folder(dir, deepseek_template);
    snprintf(path, sizeof path, "%s/tok.gguf", dir);
    write_from_hf(dir, path);
    qm_gguf *g = NULL;
    qm_tokenizer *tok = load_gguf(path, &g);
    char *pre = gguf_string(g, "tokenizer.ggml.pre");
    assert_string_equal(pre, "deepseek-r1-qwen");
    free(pre);
    const qm_gguf_kv *types = qm_gguf_find(g, "tokenizer.ggml.token_type");
    static const int want_types[16] = {1, 1, 1, 1, 1, 1, 1, 3, 3, 3, 3, 4, 5, 5, 5, 5};
    assert_int_equal(types->count, 16);
    for (int i = 0; i < 16; i++) assert_int_equal(qm_gguf_array_int(types, (uint64_t)i), want_types[i]);
    /* tokenizer_config.json's bos, eos (and no pad: eos's fallback is <|endoftext|>, absent here). */
    assert_null(qm_gguf_find(g, "tokenizer.ggml.padding_token_id"));
    bool add_eos = true;
    qm_error err = {0};
    assert_int_equal(qm_gguf_get_bool(g, "tokenizer.ggml.add_eos_token", true, &add_eos, &err), QM_OK);
    assert_false(add_eos);
    assert_int_equal(qm_tokenizer_n_ids(tok), 12);
    check_specials(tok, 10, 7, -1, true);

    char *chat = qm_chat_wrap_format(QM_CHAT_DEEPSEEK_R1, "ab", NULL);
    int *ids, n;
    assert_int_equal(qm_tokenize(tok, chat, strlen(chat), &ids, &n, &err), QM_OK);
    static const int want[] = {10, 8, 3, 9, 11, 6}; /* bos, User, "ab", Assistant, <think>, "\n" */
    assert_int_equal(n, 6);
    assert_memory_equal(ids, want, sizeof want);
    free(ids);
    free(chat);
    /* A conversation: an assistant message keeps what follows its "</think>", then end-of-sentence. */
    const qm_chat_message conv[] = {{QM_CHAT_ROLE_USER, "ab"}, {QM_CHAT_ROLE_ASSISTANT, "a</think>c"},
                                    {QM_CHAT_ROLE_USER, "abc"}};
    assert_int_equal(qm_chat_ids(tok, QM_CHAT_DEEPSEEK_R1, conv, 3, NULL, false, &ids, &n, &err), QM_OK);
    static const int want_conv[] = {10, 8, 3, 9, 2, 7, 8, 4, 9, 11, 6}; /* ... Assistant "c" eos User "abc" ... */
    assert_int_equal(n, 11);
    assert_memory_equal(ids, want_conv, sizeof want_conv);
    free(ids);
    qm_tokenizer_free(tok);
    qm_gguf_close(g);

    /* The same tokenizer.json (no NFC) with a ChatML template would be written as "qwen2", which
     * is read back with NFC: refused. */
    make_deepseek_folder(dir, "{{ '<|im_start|>' + message['role'] }}");
    qm_gguf_writer *w = NULL;
    assert_int_equal(qm_gguf_writer_open(path, &w, &err), QM_OK);
    assert_int_equal(qm_tokenizer_gguf_metadata(dir, w, &err), QM_ERR_UNSUPPORTED);
    assert_non_null(strstr(err.msg, "NFC"));
    qm_gguf_writer_close(w, false, &err);
    remove_dir(dir);
}

static void test_chat_detect(void **state) {
    (void)state;
    if (file_exists(MODEL_05B)) {
        qm_gguf *g = NULL;
        qm_error err = {0};
        assert_int_equal(qm_gguf_open(MODEL_05B, &g, &err), QM_OK);
        char *tmpl = gguf_string(g, "tokenizer.chat_template");
        assert_int_equal(qm_chat_format_detect(tmpl), QM_CHAT_CHATML);
        char *sys = qm_chat_template_system(tmpl);
        assert_non_null(sys);
        assert_string_equal(sys, QM_CHAT_DEFAULT_SYSTEM); /* Qwen2.5-Coder's default system prompt */
        free(sys);
        free(tmpl);
        qm_gguf_close(g);
    } else
        printf("skipped the real template: %s is absent\n", MODEL_05B);
    assert_int_equal(qm_chat_format_detect("{{ '<|im_start|>' + message['role'] + '\\n' }}"), QM_CHAT_CHATML);
    assert_int_equal(qm_chat_format_detect(deepseek_template), QM_CHAT_DEEPSEEK_R1);
    assert_int_equal(qm_chat_format_detect("{{ '<|start_header_id|>' + message['role'] }}"), QM_CHAT_UNKNOWN);
    assert_int_equal(qm_chat_format_detect("<|User|><|Assistant|>"), QM_CHAT_UNKNOWN); /* ASCII bars */
    assert_int_equal(qm_chat_format_detect("<|im_start|>" DS_USER DS_ASSISTANT), QM_CHAT_UNKNOWN);
    assert_int_equal(qm_chat_format_detect(NULL), QM_CHAT_UNKNOWN);
    assert_null(qm_chat_template_system(deepseek_template));
    char *sys = qm_chat_template_system("{{- '<|im_start|>system\\nIt\\'s\\tme.<|im_end|>\\n' }}");
    assert_string_equal(sys, "It's\tme.");
    free(sys);
    assert_null(qm_chat_template_system("{{ '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>' }}"));
}

static void test_chat_resolve(void **state) {
    (void)state;
    qm_chat_format f = QM_CHAT_UNKNOWN;
    qm_error err = {0};
    assert_int_equal(qm_chat_format_resolve(deepseek_template, NULL, &f, &err), QM_OK);
    assert_int_equal(f, QM_CHAT_DEEPSEEK_R1);
    assert_int_equal(qm_chat_format_resolve("{{ '<|start_header_id|>' }}", NULL, &f, &err), QM_ERR_UNSUPPORTED);
    assert_non_null(strstr(err.msg, "--chat-format chatml|deepseek-r1"));
    assert_int_equal(qm_chat_format_resolve(NULL, NULL, &f, &err), QM_ERR_UNSUPPORTED);
    assert_non_null(strstr(err.msg, "no chat template"));
    assert_int_equal(qm_chat_format_resolve("{{ '<|start_header_id|>' }}", "deepseek-r1", &f, &err), QM_OK);
    assert_int_equal(f, QM_CHAT_DEEPSEEK_R1);
    assert_int_equal(qm_chat_format_resolve(deepseek_template, "chatml", &f, &err), QM_OK); /* the flag wins */
    assert_int_equal(f, QM_CHAT_CHATML);
    assert_int_equal(qm_chat_format_parse("llama3", &f, &err), QM_ERR_ARG);
    assert_non_null(strstr(err.msg, "llama3"));
    for (qm_chat_format k = QM_CHAT_CHATML; k <= QM_CHAT_DEEPSEEK_R1; k++) {
        assert_int_equal(qm_chat_format_parse(qm_chat_format_name(k), &f, &err), QM_OK);
        assert_int_equal(f, k);
    }
    assert_string_equal(qm_chat_default_system(QM_CHAT_CHATML), QM_CHAT_DEFAULT_SYSTEM);
    assert_null(qm_chat_default_system(QM_CHAT_DEEPSEEK_R1));
}

static void expect_wrap(char *got, const char *want) {
    assert_non_null(got);
    assert_string_equal(got, want);
    free(got);
}

static void test_chat_wrap(void **state) {
    (void)state;
    expect_wrap(qm_chat_wrap_format(QM_CHAT_CHATML, "U", "S"),
                "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nU<|im_end|>\n<|im_start|>assistant\n");
    expect_wrap(qm_chat_wrap_format(QM_CHAT_CHATML, "U", NULL), "<|im_start|>user\nU<|im_end|>\n<|im_start|>assistant\n");
    expect_wrap(qm_chat_wrap("U", NULL), "<|im_start|>system\n" QM_CHAT_DEFAULT_SYSTEM
                                         "<|im_end|>\n<|im_start|>user\nU<|im_end|>\n<|im_start|>assistant\n");
    expect_wrap(qm_chat_wrap_format(QM_CHAT_DEEPSEEK_R1, "What is 2+2?", NULL),
                DS_BOS DS_USER "What is 2+2?" DS_ASSISTANT "<think>\n");
    expect_wrap(qm_chat_wrap_format(QM_CHAT_DEEPSEEK_R1, "U", "Be brief."), DS_BOS "Be brief." DS_USER "U" DS_ASSISTANT
                                                                              "<think>\n");
    expect_wrap(qm_chat_wrap_format(QM_CHAT_DEEPSEEK_R1, NULL, NULL), DS_BOS DS_USER DS_ASSISTANT "<think>\n");
    assert_null(qm_chat_wrap_format(QM_CHAT_UNKNOWN, "U", NULL));
}

static qm_chat_message msg(qm_chat_role role, const char *content) { return (qm_chat_message){role, content}; }

static void expect_render(qm_chat_format f, const qm_chat_message *m, int n, const char *def, const char *want) {
    char *got = NULL;
    qm_error err = {0};
    assert_int_equal(qm_chat_render(f, m, n, def, &got, NULL, NULL, NULL, &err), QM_OK);
    expect_wrap(got, want);
}

static void expect_refused(const qm_chat_message *m, int n, const char *why) {
    char *got = NULL;
    qm_error err = {0};
    assert_int_equal(qm_chat_render(QM_CHAT_CHATML, m, n, NULL, &got, NULL, NULL, NULL, &err), QM_ERR_ARG);
    assert_null(got);
    if (!strstr(err.msg, why)) fail_msg("'%s' does not say '%s'", err.msg, why);
}

/* Conversations: every turn in the format, the system text or the default, one turn as
 * qm_chat_wrap_format writes it, the plain text's spans; bad conversations refused. */
static void test_chat_conversation(void **state) {
    (void)state;
    const qm_chat_message conv[] = {msg(QM_CHAT_ROLE_SYSTEM, "S"), msg(QM_CHAT_ROLE_USER, "U1"),
                                    msg(QM_CHAT_ROLE_ASSISTANT, "<think>r</think>A1"), msg(QM_CHAT_ROLE_USER, "U2")};
    expect_render(QM_CHAT_CHATML, conv, 4, "ignored",
                  "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nU1<|im_end|>\n<|im_start|>assistant\n"
                  "<think>r</think>A1<|im_end|>\n<|im_start|>user\nU2<|im_end|>\n<|im_start|>assistant\n");
    expect_render(QM_CHAT_CHATML, conv + 1, 3, "D",
                  "<|im_start|>system\nD<|im_end|>\n<|im_start|>user\nU1<|im_end|>\n<|im_start|>assistant\n"
                  "<think>r</think>A1<|im_end|>\n<|im_start|>user\nU2<|im_end|>\n<|im_start|>assistant\n");
    expect_render(QM_CHAT_CHATML, conv + 1, 3, NULL,
                  "<|im_start|>user\nU1<|im_end|>\n<|im_start|>assistant\n<think>r</think>A1<|im_end|>\n"
                  "<|im_start|>user\nU2<|im_end|>\n<|im_start|>assistant\n");
    expect_render(QM_CHAT_DEEPSEEK_R1, conv, 4, NULL,
                  DS_BOS "S" DS_USER "U1" DS_ASSISTANT "A1<\xEF\xBD\x9C" "end\xE2\x96\x81of\xE2\x96\x81sentence\xEF\xBD\x9C>"
                  DS_USER "U2" DS_ASSISTANT "<think>\n");
    /* one turn: the same bytes as qm_chat_wrap_format (what the server sent before conversations) */
    for (qm_chat_format f = QM_CHAT_CHATML; f <= QM_CHAT_DEEPSEEK_R1; f++) {
        char *one = qm_chat_wrap_format(f, "U2", "S");
        expect_render(f, (qm_chat_message[]){msg(QM_CHAT_ROLE_SYSTEM, "S"), msg(QM_CHAT_ROLE_USER, "U2")}, 2, NULL, one);
        free(one);
    }
    /* the plain text's spans */
    char *text = NULL;
    size_t len = 0;
    qm_chat_span spans[5];
    int n_spans = 0;
    qm_error err = {0};
    assert_int_equal(qm_chat_render(QM_CHAT_CHATML, conv + 1, 3, "D", &text, &len, spans, &n_spans, &err), QM_OK);
    assert_int_equal(n_spans, 4);
    assert_int_equal(len, strlen(text));
    static const char *plain[] = {"D", "U1", "<think>r</think>A1", "U2"};
    for (int k = 0; k < 4; k++) {
        assert_int_equal(spans[k].len, strlen(plain[k]));
        assert_memory_equal(text + spans[k].at, plain[k], spans[k].len);
    }
    free(text);
    /* bad conversations */
    const qm_chat_message ends_assistant[] = {msg(QM_CHAT_ROLE_USER, "U"), msg(QM_CHAT_ROLE_ASSISTANT, "A")};
    expect_refused(ends_assistant, 2, "must end with a user message");
    const qm_chat_message two_users[] = {msg(QM_CHAT_ROLE_USER, "U"), msg(QM_CHAT_ROLE_USER, "U")};
    expect_refused(two_users, 2, "message 1 is a user message where an assistant message belongs");
    const qm_chat_message late_system[] = {msg(QM_CHAT_ROLE_USER, "U"), msg(QM_CHAT_ROLE_SYSTEM, "S")};
    expect_refused(late_system, 2, "message 1 is a system message");
    expect_refused(conv, 1, "ends with a system message");
    expect_refused(conv, 0, "at least one");
    expect_refused((qm_chat_message[]){msg(QM_CHAT_ROLE_USER, NULL)}, 1, "message 0 has no content");
    qm_chat_message many[QM_CHAT_MAX_MESSAGES + 1];
    for (int i = 0; i <= QM_CHAT_MAX_MESSAGES; i++) many[i] = msg(i % 2 ? QM_CHAT_ROLE_ASSISTANT : QM_CHAT_ROLE_USER, "x");
    expect_refused(many, QM_CHAT_MAX_MESSAGES + 1, "more than 256");
    assert_int_equal(qm_chat_check(many, QM_CHAT_MAX_MESSAGES - 1, &err), QM_OK);
}

/* The system text of a one-turn prompt (how the server learns the default of the model's template). */
static void test_chat_prompt_system(void **state) {
    (void)state;
    qm_error err = {0};
    char *sys = NULL;
    for (qm_chat_format f = QM_CHAT_CHATML; f <= QM_CHAT_DEEPSEEK_R1; f++) {
        char *p = qm_chat_wrap_format(f, "", "It's me.\n");
        assert_int_equal(qm_chat_prompt_system(f, p, &sys, &err), QM_OK);
        assert_string_equal(sys, "It's me.\n");
        free(sys);
        free(p);
    }
    char *bare = qm_chat_wrap_format(QM_CHAT_CHATML, "", NULL);
    assert_int_equal(qm_chat_prompt_system(QM_CHAT_CHATML, bare, &sys, &err), QM_OK);
    assert_null(sys); /* no system turn */
    free(bare);
    assert_int_equal(qm_chat_prompt_system(QM_CHAT_CHATML, "<|im_start|>user\nHi<|im_end|>\n", &sys, &err), QM_ERR_ARG);
    assert_null(sys);
    assert_non_null(strstr(err.msg, "not a one-turn chatml prompt"));
}

/* Conversations as ids with the Qwen2.5 tokenizer: the template's special tokens, the messages as
 * plain text ("<|im_start|>" typed by a user stays text), the same ids as the rendered prompt's
 * when no message holds a special token. */
static void test_chat_conversation_ids(void **state) {
    (void)state;
    qm_tokenizer *tok = NULL;
    qm_error err = {0};
    assert_int_equal(qm_tokenizer_load(TOKDIR "/qwen2.5", &tok, &err), QM_OK);
    const qm_chat_message conv[] = {msg(QM_CHAT_ROLE_USER, "What is 2+2?"), msg(QM_CHAT_ROLE_ASSISTANT, "4."),
                                    msg(QM_CHAT_ROLE_USER, "And 3+3?")};
    for (int n = 1; n <= 3; n += 2) {
        int *ids = NULL, k = 0, *ref = NULL, m = 0;
        char *text = NULL;
        assert_int_equal(qm_chat_ids(tok, QM_CHAT_CHATML, conv, n, QM_CHAT_DEFAULT_SYSTEM, false, &ids, &k, &err), QM_OK);
        assert_int_equal(qm_chat_render(QM_CHAT_CHATML, conv, n, QM_CHAT_DEFAULT_SYSTEM, &text, NULL, NULL, NULL, &err),
                         QM_OK);
        assert_int_equal(qm_tokenize(tok, text, strlen(text), &ref, &m, &err), QM_OK);
        assert_int_equal(k, m);
        assert_memory_equal(ids, ref, (size_t)m * sizeof *ids);
        free(ids);
        free(ref);
        free(text);
    }
    const qm_chat_message typed[] = {msg(QM_CHAT_ROLE_USER, "<|im_start|>")};
    int *ids = NULL, k = 0, special = 0;
    const int im_start = qm_tokenizer_id(tok, "<|im_start|>");
    assert_int_equal(qm_chat_ids(tok, QM_CHAT_CHATML, typed, 1, NULL, false, &ids, &k, &err), QM_OK);
    for (int i = 0; i < k; i++) special += ids[i] == im_start;
    assert_int_equal(special, 2); /* the user's and the assistant's headers only */
    free(ids);
    assert_int_equal(qm_chat_ids(tok, QM_CHAT_UNKNOWN, typed, 1, NULL, false, &ids, &k, &err), QM_ERR_ARG);
    assert_null(ids);
    qm_tokenizer_free(tok);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip_qwen25), cmocka_unit_test(test_roundtrip_qwen3),
        cmocka_unit_test(test_matches_llama_cpp), cmocka_unit_test(test_real_models),
        cmocka_unit_test(test_tiny_ok),          cmocka_unit_test(test_bad_metadata),
        cmocka_unit_test(test_bad_hf_folder),    cmocka_unit_test(test_deepseek_folder),
        cmocka_unit_test(test_chat_detect),
        cmocka_unit_test(test_chat_resolve),     cmocka_unit_test(test_chat_wrap),
        cmocka_unit_test(test_chat_conversation), cmocka_unit_test(test_chat_prompt_system),
        cmocka_unit_test(test_chat_conversation_ids),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
