/* Tokenizer: the reference encode cases for Qwen2.5 and Qwen3, round trips, streaming decode,
 * merge formats, bad inputs, and the speed on the GSM8K test questions. */
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
#include <time.h>
#include <unistd.h>

#include "text/chat.h"
#include "text/tokenizer.h"

#define QWEN25 QMESH_DATA_DIR "/tokenizers/qwen2.5/tokenizer.json"
#define QWEN3 QMESH_DATA_DIR "/tokenizers/qwen3/tokenizer.json"
#define CASES QMESH_DATA_DIR "/tokenizers/qwen2.5/encode_cases.jsonl"
#define GSM8K QMESH_DATA_DIR "/gsm8k/test.jsonl"

typedef struct {
    qm_tokenizer *qwen25, *qwen3;
} fixture;

static int setup(void **state) {
    fixture *f = calloc(1, sizeof *f);
    qm_error err = {0};
    if (!f) return -1;
    if (qm_tokenizer_load(QWEN25, &f->qwen25, &err) || qm_tokenizer_load(QWEN3, &f->qwen3, &err)) {
        fprintf(stderr, "cannot load the tokenizers: %s\n", err.msg);
        qm_tokenizer_free(f->qwen25);
        free(f);
        return -1;
    }
    *state = f;
    return 0;
}

static int teardown(void **state) {
    fixture *f = *state;
    qm_tokenizer_free(f->qwen25);
    qm_tokenizer_free(f->qwen3);
    free(f);
    return 0;
}

/* Reads a JSONL file: one parsed object per line. */
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

static int check_cases(const qm_tokenizer *tok, const char *name) {
    int n_rows, matched = 0, decoded = 0;
    cJSON **rows = read_jsonl(CASES, &n_rows);
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
        else {
            fprintf(stderr, "[%s] case %d differs: %.60s\n  got ", name, r, text);
            for (int i = 0; i < n; i++) fprintf(stderr, " %d", ids[i]);
            fprintf(stderr, "\n");
        }
        char *back;
        size_t blen;
        assert_int_equal(qm_detokenize(tok, ids, n, &back, &blen, &err), QM_OK);
        /* The cases are NFC already, so decoding gives the text back. */
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
    return matched;
}

static void test_cases_qwen25(void **state) {
    fixture *f = *state;
    assert_int_equal(qm_tokenizer_n_ids(f->qwen25), 151665);
    check_cases(f->qwen25, "qwen2.5");
}

static void test_cases_qwen3(void **state) {
    fixture *f = *state;
    assert_int_equal(qm_tokenizer_n_ids(f->qwen3), 151669);
    check_cases(f->qwen3, "qwen3");
}

static void test_ids(void **state) {
    fixture *f = *state;
    assert_int_equal(qm_tokenizer_id(f->qwen25, "<|endoftext|>"), 151643);
    assert_int_equal(qm_tokenizer_id(f->qwen25, "<|im_end|>"), 151645);
    assert_int_equal(qm_tokenizer_id(f->qwen25, "<think>"), -1);
    assert_int_equal(qm_tokenizer_id(f->qwen3, "<think>"), 151667);
    assert_int_equal(qm_tokenizer_id(f->qwen25, "Hello"), 9707);
    assert_int_equal(qm_tokenizer_id(f->qwen25, "no such token at all"), -1);
}

/* \s is Unicode White_Space as in Hugging Face tokenizers: U+180E is not a space there (it is in
 * PCRE2's \s), so it joins the punctuation run "\u180e'" instead of letting "'Re" be a contraction.
 * Expected ids from Hugging Face tokenizers 0.23. */
static void test_unicode_spaces(void **state) {
    fixture *f = *state;
    static const struct {
        const char *text;
        int ids[8];
        int n;
    } cases[] = {
        {"\xE1\xA0\x8E'Re", {123970, 236, 6, 693}, 4},
        {"\tm\xE1\xA0\x8E'Rec", {2109, 123970, 236, 6, 3820}, 5},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        int *ids, n;
        qm_error err = {0};
        assert_int_equal(qm_tokenize(f->qwen25, cases[c].text, strlen(cases[c].text), &ids, &n, &err), QM_OK);
        assert_int_equal(n, cases[c].n);
        for (int i = 0; i < n; i++) assert_int_equal(ids[i], cases[c].ids[i]);
        free(ids);
    }
}

static void round_trip(const qm_tokenizer *tok, const char *text, const char *expect) {
    int *ids, n;
    char *back;
    size_t len;
    qm_error err = {0};
    assert_int_equal(qm_tokenize(tok, text, strlen(text), &ids, &n, &err), QM_OK);
    assert_int_equal(qm_detokenize(tok, ids, n, &back, &len, &err), QM_OK);
    assert_int_equal(len, strlen(expect));
    assert_string_equal(back, expect);
    free(back);
    free(ids);
}

static void test_round_trips(void **state) {
    fixture *f = *state;
    static const char *texts[] = {
        "",
        "Hello world",
        "   \n\n\t  spaces  ",
        "<|im_start|>user\nhi<|im_end|>\n<|endoftext|>",
        "<|im_start<|im_end|>|>",
        "emoji 🤖 and 👍🏽, 中文, العربية, हिन्दी, ǅ ſ 'S 'LL",
        "numbers 1234567890 \u00A0nbsp \u2028 \u3000 ideographic",
    };
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
        round_trip(f->qwen25, texts[i], texts[i]);
        round_trip(f->qwen3, texts[i], texts[i]);
    }
    /* NFC: e + combining acute becomes é. */
    round_trip(f->qwen25, "cafe\xCC\x81", "caf\xC3\xA9");

    char *chat = qm_chat_wrap("What is 2+2?", NULL);
    assert_non_null(chat);
    round_trip(f->qwen25, chat, chat);
    int *ids, n;
    qm_error err = {0};
    assert_int_equal(qm_tokenize(f->qwen25, chat, strlen(chat), &ids, &n, &err), QM_OK);
    assert_int_equal(ids[0], 151644);
    assert_int_equal(ids[n - 1], 198); /* "\n" after "assistant" */
    free(ids);
    free(chat);

    /* A text with many added tokens and a long run of one character. */
    size_t big = 100000;
    char *s = malloc(big + 1);
    assert_non_null(s);
    memset(s, ' ', big);
    memcpy(s + 5000, "<|endoftext|>", 13);
    s[big] = 0;
    round_trip(f->qwen25, s, s);
    free(s);
}

static void test_stream_decode(void **state) {
    fixture *f = *state;
    const char *text = "emoji 🤖 and 👍🏽 ok";
    int *ids, n;
    qm_error err = {0};
    assert_int_equal(qm_tokenize(f->qwen25, text, strlen(text), &ids, &n, &err), QM_OK);
    qm_decode_stream st = {0};
    char out[64], all[256] = "";
    int held = 0;
    for (int i = 0; i < n; i++) {
        size_t k = qm_decode_stream_push(f->qwen25, &st, ids[i], out, sizeof out);
        assert_int_equal(k, strlen(out));
        /* Each piece is whole characters: never a lead byte at the end without its continuations. */
        int *one, n1;
        assert_int_equal(qm_tokenize(f->qwen25, out, k, &one, &n1, &err), QM_OK);
        free(one);
        if (st.n_pending > 0) held++;
        strcat(all, out);
    }
    assert_true(held > 0); /* 🤖 is split across byte-level tokens */
    assert_int_equal(qm_decode_stream_flush(&st, out, sizeof out), 0);
    assert_string_equal(all, text);
    free(ids);

    /* The first byte of 🤖 alone: held, then U+FFFD at the end. */
    int lead = qm_tokenizer_id(f->qwen25, "ð"); /* byte 0xF0 */
    assert_true(lead >= 0);
    qm_decode_stream s2 = {0};
    assert_int_equal(qm_decode_stream_push(f->qwen25, &s2, lead, out, sizeof out), 0);
    assert_int_equal(qm_decode_stream_flush(&s2, out, sizeof out), 3);
    assert_string_equal(out, "\xEF\xBF\xBD");
    /* An id out of range decodes to nothing. */
    assert_int_equal(qm_decode_stream_push(f->qwen25, &s2, 999999, out, sizeof out), 0);
    assert_int_equal(qm_decode_stream_push(f->qwen25, &s2, -1, out, sizeof out), 0);
}

static void test_invalid_utf8(void **state) {
    fixture *f = *state;
    static const char *bad[] = {"\xFF", "abc\xC3", "\xED\xA0\x80", "\xC0\xAF", "ok \xF4\x90\x80\x80", "\x80"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int *ids = (int *)&ids, n = -1;
        qm_error err = {0};
        assert_int_equal(qm_tokenize(f->qwen25, bad[i], strlen(bad[i]), &ids, &n, &err), QM_ERR_ARG);
        assert_null(ids);
        assert_true(strstr(err.msg, "UTF-8") != NULL);
    }
    /* Decoding ids whose bytes are not UTF-8 replaces them, one U+FFFD per maximal subpart. */
    int ff = qm_tokenizer_id(f->qwen25, "ÿ");  /* byte 0xFF */
    int e0 = qm_tokenizer_id(f->qwen25, "à");  /* byte 0xE0, a 3-byte lead */
    int a = qm_tokenizer_id(f->qwen25, "a");
    assert_true(ff >= 0 && e0 >= 0 && a >= 0);
    int ids[] = {a, ff, e0, a, e0};
    char *text;
    size_t len;
    qm_error err = {0};
    assert_int_equal(qm_detokenize(f->qwen25, ids, 5, &text, &len, &err), QM_OK);
    assert_string_equal(text, "a\xEF\xBF\xBD\xEF\xBF\xBD" "a\xEF\xBF\xBD");
    free(text);
    int out_of_range[] = {a, 151665};
    assert_int_equal(qm_detokenize(f->qwen25, out_of_range, 2, &text, &len, &err), QM_ERR_ARG);
    assert_null(text);
}

/* Writes a file in a fresh temporary folder; returns its path (static buffer of the caller). */
static void write_temp(char *path, size_t cap, const char *content) {
    char dir[] = "/tmp/qm_tok_XXXXXX";
    assert_non_null(mkdtemp(dir));
    snprintf(path, cap, "%s/tokenizer.json", dir);
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    fputs(content, fp);
    fclose(fp);
}

static void remove_temp(const char *path) {
    char dir[256];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    unlink(path);
    *slash = 0;
    rmdir(dir);
}

static void tiny_encode(const char *json, const char *text, const int *want, int n_want) {
    char path[256];
    write_temp(path, sizeof path, json);
    qm_tokenizer *tok;
    qm_error err = {0};
    assert_int_equal(qm_tokenizer_load(path, &tok, &err), QM_OK);
    int *ids, n;
    assert_int_equal(qm_tokenize(tok, text, strlen(text), &ids, &n, &err), QM_OK);
    assert_int_equal(n, n_want);
    for (int i = 0; i < n; i++) assert_int_equal(ids[i], want[i]);
    char *back;
    size_t len;
    assert_int_equal(qm_detokenize(tok, ids, n, &back, &len, &err), QM_OK);
    assert_string_equal(back, text);
    free(back);
    free(ids);
    qm_tokenizer_free(tok);
    /* The folder works as well as the file. */
    char dir[256];
    snprintf(dir, sizeof dir, "%s", path);
    *strrchr(dir, '/') = 0;
    assert_int_equal(qm_tokenizer_load(dir, &tok, &err), QM_OK);
    qm_tokenizer_free(tok);
    remove_temp(path);
}

#define TINY_HEAD                                                                                              \
    "{\"added_tokens\": [{\"id\": 7, \"content\": \"<s>\", \"special\": true}],"                                \
    "\"normalizer\": {\"type\": \"NFC\"}, \"pre_tokenizer\": {\"type\": \"ByteLevel\", \"add_prefix_space\": false," \
    "\"use_regex\": false}, \"model\": {\"type\": \"BPE\", "                                                     \
    "\"vocab\": {\"a\": 0, \"b\": 1, \"c\": 2, \"ab\": 3, \"abc\": 4, \"Ġ\": 5, \"bc\": 6},"

static void test_merge_formats(void **state) {
    (void)state;
    /* Lowest rank first: a+b, then ab+c. */
    static const int abc[] = {4, 7, 4};
    tiny_encode(TINY_HEAD "\"merges\": [\"a b\", \"ab c\", \"b c\"]}}", "abc<s>abc", abc, 3);
    tiny_encode(TINY_HEAD "\"merges\": [[\"a\", \"b\"], [\"ab\", \"c\"], [\"b\", \"c\"]]}}", "abc<s>abc", abc, 3);
    /* b+c first leaves a + bc, which has no merge. */
    static const int a_bc[] = {0, 6};
    tiny_encode(TINY_HEAD "\"merges\": [\"b c\", \"a b\", \"ab c\"]}}", "abc", a_bc, 2);
    tiny_encode(TINY_HEAD "\"merges\": [[\"b\", \"c\"], [\"a\", \"b\"], [\"ab\", \"c\"]]}}", "abc", a_bc, 2);
    /* Leftmost first among equal ranks. */
    static const int abab[] = {3, 3, 5, 1, 2};
    tiny_encode(TINY_HEAD "\"merges\": [\"a b\"]}}", "abab bc", abab, 5);
}

static void expect_load_error(const char *json, qm_status want, const char *msg_part) {
    char path[256];
    write_temp(path, sizeof path, json);
    qm_tokenizer *tok = (qm_tokenizer *)&tok;
    qm_error err = {0};
    assert_int_equal(qm_tokenizer_load(path, &tok, &err), want);
    assert_null(tok);
    if (!strstr(err.msg, msg_part)) fail_msg("message '%s' lacks '%s'", err.msg, msg_part);
    remove_temp(path);
}

static void test_bad_inputs(void **state) {
    (void)state;
    qm_tokenizer *tok;
    qm_error err = {0};
    assert_int_equal(qm_tokenizer_load("/nonexistent/tokenizer.json", &tok, &err), QM_ERR_IO);
    assert_null(tok);
    assert_true(strstr(err.msg, "/nonexistent/tokenizer.json") != NULL);
    assert_int_equal(qm_tokenizer_load("/tmp", &tok, &err), QM_ERR_IO); /* a folder without tokenizer.json */
    assert_int_equal(qm_tokenizer_load(NULL, &tok, &err), QM_ERR_ARG);

    expect_load_error("this is not JSON {", QM_ERR_FORMAT, "not valid JSON");
    expect_load_error("", QM_ERR_FORMAT, "not valid JSON");
    expect_load_error("[1, 2]", QM_ERR_FORMAT, "not a JSON object");
    expect_load_error("{\"model\": {\"type\": \"BPE\", \"merges\": []}}", QM_ERR_FORMAT, "model.vocab");
    expect_load_error("{\"model\": {\"vocab\": {}, \"merges\": []}}", QM_ERR_FORMAT, "empty");
    expect_load_error("{\"model\": {\"vocab\": {\"a\": -1}}}", QM_ERR_FORMAT, "model.vocab[\"a\"]");
    expect_load_error("{\"model\": {\"vocab\": {\"a\": \"x\"}}}", QM_ERR_FORMAT, "model.vocab[\"a\"]");
    expect_load_error("{\"model\": {\"vocab\": {\"a\": 0, \"b\": 0}}}", QM_ERR_FORMAT, "twice");
    expect_load_error("{\"model\": {\"vocab\": {\"a\": 0}, \"merges\": [\"a a\"]}}", QM_ERR_FORMAT, "not in model.vocab");
    expect_load_error("{\"model\": {\"vocab\": {\"a\": 0}, \"merges\": [\"aa\"]}}", QM_ERR_FORMAT, "merge 0");
    expect_load_error("{\"model\": {\"vocab\": {\"a\": 0}, \"merges\": [[\"a\"]]}}", QM_ERR_FORMAT, "merge 0");
    expect_load_error("{\"model\": {\"vocab\": {\"a\": 0}, \"merges\": 3}}", QM_ERR_FORMAT, "model.merges");
    expect_load_error("{\"model\": {\"type\": \"WordPiece\", \"vocab\": {\"a\": 0}}}", QM_ERR_UNSUPPORTED, "WordPiece");
    expect_load_error("{\"model\": {\"vocab\": {\"a\": 0}}, \"added_tokens\": [{\"id\": 1}]}", QM_ERR_FORMAT,
                      "added_tokens[0]");
    expect_load_error("{\"model\": {\"vocab\": {\"a\": 0}}, \"pre_tokenizer\": {\"type\": \"Split\", \"pattern\": "
                      "{\"Regex\": \"(\"}, \"behavior\": \"Isolated\"}}",
                      QM_ERR_FORMAT, "regex");
    expect_load_error("{\"model\": {\"vocab\": {\"a\": 0}}, \"normalizer\": {\"type\": \"Lowercase\"}}",
                      QM_ERR_UNSUPPORTED, "Lowercase");
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void test_gsm8k_speed(void **state) {
    fixture *f = *state;
    int n_rows;
    cJSON **rows = read_jsonl(GSM8K, &n_rows);
    assert_int_equal(n_rows, 1319);
    long total = 0;
    double t0 = now_s();
    for (int r = 0; r < n_rows; r++) {
        const char *q = cJSON_GetStringValue(cJSON_GetObjectItem(rows[r], "question"));
        assert_non_null(q);
        int *ids, n;
        qm_error err = {0};
        assert_int_equal(qm_tokenize(f->qwen25, q, strlen(q), &ids, &n, &err), QM_OK);
        total += n;
        free(ids);
    }
    double dt = now_s() - t0;
    /* a measurement, not a limit: a loaded 2-core machine under ASan is no place for one */
    printf("GSM8K test: %d questions, %ld tokens in %.3f s\n", n_rows, total, dt);
    assert_true(total > 50000); /* every question tokenized to something */
    free_jsonl(rows, n_rows);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cases_qwen25), cmocka_unit_test(test_cases_qwen3),
        cmocka_unit_test(test_ids),          cmocka_unit_test(test_unicode_spaces),
        cmocka_unit_test(test_round_trips),
        cmocka_unit_test(test_stream_decode), cmocka_unit_test(test_invalid_utf8),
        cmocka_unit_test(test_merge_formats), cmocka_unit_test(test_bad_inputs),
        cmocka_unit_test(test_gsm8k_speed),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
