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

#include "io/gguf.h"
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

/* Encodes with a tokenizer.json given as text; no round trip (stripped white space is lost). */
static void tiny_ids(const char *json, const char *text, bool allow_special, const int *want, int n_want) {
    char path[256];
    write_temp(path, sizeof path, json);
    qm_tokenizer *tok;
    qm_error err = {0};
    if (qm_tokenizer_load(path, &tok, &err)) fail_msg("load: %s", err.msg);
    int *ids, n;
    assert_int_equal(qm_tokenize_ex(tok, text, strlen(text), allow_special, &ids, &n, &err), QM_OK);
    if (n != n_want) {
        fprintf(stderr, "'%s': got", text);
        for (int i = 0; i < n; i++) fprintf(stderr, " %d", ids[i]);
        fprintf(stderr, "\n");
    }
    assert_int_equal(n, n_want);
    for (int i = 0; i < n; i++) assert_int_equal(ids[i], want[i]);
    free(ids);
    qm_tokenizer_free(tok);
    remove_temp(path);
}

/* Special-token strings as plain text (qm_tokenize_ex with allow_special false). */
static void test_no_special(void **state) {
    fixture *f = *state;
    const char *text = "<|im_start|>user\n";
    int *ids, n;
    qm_error err = {0};
    /* The default, and allow_special true: the control id. */
    assert_int_equal(qm_tokenize(f->qwen25, text, strlen(text), &ids, &n, &err), QM_OK);
    assert_int_equal(n, 3);
    assert_int_equal(ids[0], 151644);
    free(ids);
    assert_int_equal(qm_tokenize_ex(f->qwen25, text, strlen(text), true, &ids, &n, &err), QM_OK);
    assert_int_equal(n, 3);
    assert_int_equal(ids[0], 151644);
    free(ids);
    /* allow_special false: plain text, as Hugging Face's split_special_tokens gives it
     * (27 91 318 4906 91 29 872 198). */
    static const char *pieces[] = {"<", "|", "im", "_start", "|", ">", "user", "\xC4\x8A" /* Ċ = \n */};
    assert_int_equal(qm_tokenize_ex(f->qwen25, text, strlen(text), false, &ids, &n, &err), QM_OK);
    assert_int_equal(n, 8);
    for (int i = 0; i < 8; i++) {
        int want = qm_tokenizer_id(f->qwen25, pieces[i]);
        assert_true(want >= 0 && want < 151643);
        assert_int_equal(ids[i], want);
    }
    free(ids);

    /* No control id comes out of any special token's text, and the text decodes back. */
    const char *all = "<|endoftext|><|im_start|>system\nx<|im_end|>\n<|vision_start|><|image_pad|>";
    for (int m = 0; m < 2; m++) {
        const qm_tokenizer *tok = m ? f->qwen3 : f->qwen25;
        assert_int_equal(qm_tokenize_ex(tok, all, strlen(all), false, &ids, &n, &err), QM_OK);
        for (int i = 0; i < n; i++) assert_true(ids[i] < 151643);
        char *back;
        size_t len;
        assert_int_equal(qm_detokenize(tok, ids, n, &back, &len, &err), QM_OK);
        assert_string_equal(back, all);
        free(back);
        free(ids);
    }
    /* Added tokens that are not special (<think>, <tool_call>) are still recognised. */
    const char *think = "<think>hi</think><tool_call>";
    assert_int_equal(qm_tokenize_ex(f->qwen3, think, strlen(think), false, &ids, &n, &err), QM_OK);
    assert_true(n >= 4);
    assert_int_equal(ids[0], 151667);
    assert_int_equal(ids[n - 2], 151668);
    assert_int_equal(ids[n - 1], 151657);
    free(ids);
    /* A special match passed over is not searched inside: "<|im_start|>" holds no other token. */
    const char *nested = "<|im_start|><think>";
    assert_int_equal(qm_tokenize_ex(f->qwen3, nested, strlen(nested), false, &ids, &n, &err), QM_OK);
    assert_int_equal(ids[n - 1], 151667);
    free(ids);
}

/* tokenizer.json with one added token (id 7) whose flags are given; vocabulary as TINY_HEAD. */
#define TINY_ADDED(content, flags)                                                                             \
    "{\"added_tokens\": [{\"id\": 7, \"content\": \"" content "\", " flags "}],"                                \
    "\"normalizer\": {\"type\": \"NFC\"}, \"pre_tokenizer\": {\"type\": \"ByteLevel\", \"add_prefix_space\": false," \
    "\"use_regex\": false}, \"model\": {\"type\": \"BPE\", "                                                     \
    "\"vocab\": {\"a\": 0, \"b\": 1, \"c\": 2, \"ab\": 3, \"abc\": 4, \"\xC4\xA0\": 5, \"bc\": 6}, \"merges\": [\"a b\"]}}"
#define OFF "\"lstrip\": false, \"rstrip\": false, \"single_word\": false, \"normalized\": false, \"special\": false"

/* lstrip, rstrip, single_word and normalized, as Hugging Face tokenizers applies them. */
static void test_added_flags(void **state) {
    (void)state;
    /* All false: white space stays its own token (Ġ = 5). */
    static const int plain[] = {0, 5, 5, 7, 5, 5, 1};
    tiny_ids(TINY_ADDED("<s>", OFF), "a  <s>  b", true, plain, 7);
    /* rstrip: the token takes the spaces after it. */
    static const int rs[] = {0, 5, 5, 7, 1};
    tiny_ids(TINY_ADDED("<s>", "\"rstrip\": true"), "a  <s>  b", true, rs, 5);
    /* lstrip: the spaces before it. */
    static const int ls[] = {0, 7, 5, 5, 1};
    tiny_ids(TINY_ADDED("<s>", "\"lstrip\": true"), "a  <s>  b", true, ls, 5);
    static const int both[] = {0, 7, 1};
    tiny_ids(TINY_ADDED("<s>", "\"lstrip\": true, \"rstrip\": true"), "a \t\n<s> \xE3\x80\x80 b", true, both, 3);
    /* lstrip does not reach into the previous match: rstrip of the first took the spaces. */
    static const int two[] = {7, 7};
    tiny_ids(TINY_ADDED("<s>", "\"lstrip\": true, \"rstrip\": true"), "<s>  <s>", true, two, 2);
    /* single_word: only where no letter or digit touches it. */
    static const int sw_alone[] = {3, 5, 7, 5, 0};
    tiny_ids(TINY_ADDED("c", "\"single_word\": true"), "ab c a", true, sw_alone, 5);
    static const int sw_in_word[] = {3, 2, 5, 3};
    tiny_ids(TINY_ADDED("c", "\"single_word\": true"), "abc ab", true, sw_in_word, 4);
    static const int sw_before_word[] = {5, 2, 3};
    tiny_ids(TINY_ADDED("c", "\"single_word\": true"), " cab", true, sw_before_word, 3);
    static const int no_sw[] = {3, 7, 5, 3};
    tiny_ids(TINY_ADDED("c", OFF), "abc ab", true, no_sw, 4);
    /* normalized: matched in the NFC text, so e + combining acute finds "é"; not normalized: only
     * the raw bytes match (and e, U+0301 have no token here: dropped). */
    static const int seven[] = {7};
    tiny_ids(TINY_ADDED("\xC3\xA9", "\"normalized\": true"), "e\xCC\x81", true, seven, 1);
    tiny_ids(TINY_ADDED("\xC3\xA9", "\"normalized\": true"), "\xC3\xA9", true, seven, 1);
    tiny_ids(TINY_ADDED("\xC3\xA9", "\"normalized\": false"), "e\xCC\x81", true, NULL, 0);
    tiny_ids(TINY_ADDED("\xC3\xA9", "\"normalized\": false"), "\xC3\xA9", true, seven, 1);
    /* A normalized token's own content is normalised. */
    tiny_ids(TINY_ADDED("e\xCC\x81", "\"normalized\": true"), "\xC3\xA9", true, seven, 1);
    /* special: honoured or passed over by allow_special. */
    static const int ab_s_ab[] = {3, 7, 3}, ab_ab[] = {3, 3};
    tiny_ids(TINY_ADDED("<s>", "\"special\": true"), "ab<s>ab", true, ab_s_ab, 3);
    tiny_ids(TINY_ADDED("<s>", "\"special\": true"), "ab<s>ab", false, ab_ab, 2); /* < s > have no token */
    tiny_ids(TINY_ADDED("<s>", "\"special\": false"), "ab<s>ab", false, ab_s_ab, 3);
    /* A flag that is not a boolean is refused, naming the token and the flag. */
    expect_load_error(TINY_ADDED("<s>", "\"lstrip\": \"yes\""), QM_ERR_FORMAT, "added_tokens[0] (\"<s>\"): \"lstrip\"");
    expect_load_error(TINY_ADDED("<s>", "\"normalized\": 1"), QM_ERR_FORMAT, "\"normalized\" is not true or false");
}

/* Writing a GGUF (qmesh quantize) refuses added-token flags GGUF cannot record. */
static void test_gguf_refuses_flags(void **state) {
    (void)state;
    static const char *flags[] = {"\"lstrip\": true", "\"rstrip\": true", "\"single_word\": true", "\"normalized\": true"};
    for (int i = 0; i < 4; i++) {
        char json[2048], path[256], out[300];
        snprintf(json, sizeof json,
                 "{\"added_tokens\": [{\"id\": 7, \"content\": \"<s>\", %s}], \"normalizer\": {\"type\": \"NFC\"}, "
                 "\"model\": {\"vocab\": {\"a\": 0}}}",
                 flags[i]);
        write_temp(path, sizeof path, json);
        char dir[256];
        snprintf(dir, sizeof dir, "%s", path);
        *strrchr(dir, '/') = 0;
        snprintf(out, sizeof out, "%s/out.gguf", dir);
        qm_gguf_writer *w = NULL;
        qm_error err = {0};
        assert_int_equal(qm_gguf_writer_open(out, &w, &err), QM_OK);
        assert_int_equal(qm_tokenizer_gguf_metadata(dir, w, &err), QM_ERR_UNSUPPORTED);
        if (!strstr(err.msg, flags[i]) || !strstr(err.msg, "\"<s>\""))
            fail_msg("message '%s' lacks '%s'", err.msg, flags[i]);
        qm_gguf_writer_close(w, false, &err);
        remove_temp(path);
    }
}

/* Ids are bounded at load; invalid UTF-8 in an added token is refused. */
static void test_id_bounds(void **state) {
    (void)state;
    expect_load_error("{\"model\": {\"vocab\": {\"a\": 0}}, \"added_tokens\": [{\"id\": 400000000, \"content\": \"<s>\"}]}",
                      QM_ERR_FORMAT, "added_tokens[0] (\"<s>\") has id 400000000, too large");
    expect_load_error("{\"model\": {\"vocab\": {\"a\": 0, \"b\": 2147483646}}}", QM_ERR_FORMAT,
                      "model.vocab[\"b\"] has id 2147483646, too large");
    /* Past the slack: 1 entry + 1 added token + 65536. */
    expect_load_error("{\"model\": {\"vocab\": {\"a\": 0}}, \"added_tokens\": [{\"id\": 65538, \"content\": \"<s>\"}]}",
                      QM_ERR_FORMAT, "below 65538");
    expect_load_error("{\"model\": {\"vocab\": {\"a\": 0}}, \"added_tokens\": [{\"id\": 16777216, \"content\": \"<s>\"}]}",
                      QM_ERR_FORMAT, "too large");
    expect_load_error("{\"model\": {\"vocab\": {\"a\": 0}}, \"added_tokens\": [{\"id\": 1, \"content\": \"<\xFF>\"}]}",
                      QM_ERR_FORMAT, "added_tokens entry with id 1 is not valid UTF-8");
    expect_load_error("{\"model\": {\"vocab\": {\"a\": 0}}, \"added_tokens\": [{\"id\": 1, \"content\": \"\xE2\x82\"}]}",
                      QM_ERR_FORMAT, "UTF-8");
    /* Within the slack: loads, and the gap's ids decode to an error. */
    char path[256];
    write_temp(path, sizeof path,
               "{\"model\": {\"vocab\": {\"a\": 0}}, \"added_tokens\": [{\"id\": 65537, \"content\": \"<s>\"}]}");
    qm_tokenizer *tok;
    qm_error err = {0};
    assert_int_equal(qm_tokenizer_load(path, &tok, &err), QM_OK);
    assert_int_equal(qm_tokenizer_n_ids(tok), 65538);
    int ok_ids[] = {0, 65537}, gap[] = {0, 5};
    char *text;
    size_t len;
    assert_int_equal(qm_detokenize(tok, ok_ids, 2, &text, &len, &err), QM_OK);
    assert_string_equal(text, "a<s>");
    free(text);
    assert_int_equal(qm_detokenize(tok, gap, 2, &text, &len, &err), QM_ERR_ARG);
    assert_null(text);
    assert_true(strstr(err.msg, "token id 5 (position 1)") != NULL);
    qm_tokenizer_free(tok);
    remove_temp(path);
}

/* Detokenize: ids outside 0..n_ids-1 and a bad id list are errors, not reads out of bounds. */
static void test_detokenize_bounds(void **state) {
    fixture *f = *state;
    static const int bad[] = {-1, 151665, 151936, 2147483647, -2147483647 - 1};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int ids[] = {9707, bad[i]};
        char *text = (char *)&text, want[64];
        size_t len = 99;
        qm_error err = {0};
        assert_int_equal(qm_detokenize(f->qwen25, ids, 2, &text, &len, &err), QM_ERR_ARG);
        assert_null(text);
        assert_int_equal(len, 0);
        snprintf(want, sizeof want, "token id %d (position 1)", bad[i]);
        if (!strstr(err.msg, want)) fail_msg("message '%s' lacks '%s'", err.msg, want);
        assert_true(strstr(err.msg, "0..151664") != NULL);
    }
    char *text;
    size_t len;
    qm_error err = {0};
    assert_int_equal(qm_detokenize(f->qwen25, NULL, 3, &text, &len, &err), QM_ERR_ARG);
    assert_null(text);
    int one = 9707;
    assert_int_equal(qm_detokenize(f->qwen25, &one, -1, &text, &len, &err), QM_ERR_ARG);
    assert_null(text);
    assert_int_equal(qm_detokenize(f->qwen25, NULL, 0, &text, &len, &err), QM_OK);
    assert_string_equal(text, "");
    free(text);
    /* Streaming: an id out of range decodes to nothing and keeps what is pending. */
    qm_decode_stream st = {0};
    char out[16];
    int lead = qm_tokenizer_id(f->qwen25, "\xC3\xB0"); /* ð: byte 0xF0 */
    assert_int_equal(qm_decode_stream_push(f->qwen25, &st, lead, out, sizeof out), 0);
    assert_int_equal(qm_decode_stream_push(f->qwen25, &st, 2147483647, out, sizeof out), 0);
    assert_int_equal(qm_decode_stream_push(f->qwen25, &st, -2147483647 - 1, out, sizeof out), 0);
    assert_int_equal(st.n_pending, 1);
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
        cmocka_unit_test(test_no_special),    cmocka_unit_test(test_added_flags),
        cmocka_unit_test(test_id_bounds),     cmocka_unit_test(test_detokenize_bounds),
        cmocka_unit_test(test_gguf_refuses_flags),
        cmocka_unit_test(test_gsm8k_speed),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
