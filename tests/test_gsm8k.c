/* GSM8K evaluation library: extraction, normalization, prompts, results files, Wilson intervals. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "eval/eval.h"

#define EXEMPLARS QMESH_DATA_DIR "/gsm8k/cot8_exemplars.jsonl"

/* ---- extraction ---- */

typedef struct {
    const char *text, *strict, *flex; /* NULL = null */
} ex_case;

static const ex_case ex_cases[] = {
    {"The answer is 18.", "18", "18"},
    {"So she makes 9 * 2 = $18. The answer is $18.", "18", "18"},
    {"The answer is: $1,234.", "1234", "1234"},
    {"the answer is:   $ 1,234.50 dollars", "1234.5", "1234.5"},
    {"THE ANSWER IS 7", "7", "7"},
    {"Total 3 + 4 = 7\n#### 72", "72", "72"},
    {"#### 72\nThe answer is 5.", "5", "5"},           /* the later marker wins */
    {"The answer is 5.\n#### 72", "72", "72"},
    {"The answer is 18.00", "18", "18"},
    {"The answer is 007.", "7", "7"},
    {"The answer is -0.25.", "-0.25", "-0.25"},
    {"The answer is -3. It dropped 3 degrees.", "-3", "3"},
    {"The temperature is -12 now.", NULL, "-12"},
    {"It costs $1,234. Then he left.", NULL, "1234"},
    {"He ate 5. Then 6.", NULL, "6"},                  /* a . with no digit after ends the sentence */
    {"The answer is 50%.", "50", "50"},
    {"The answer is 12kg of flour.", "12", "12"},
    {"It grew by 25% to 3.5 meters", NULL, "3.5"},
    {"The answer is 10 and then 20", "10", "20"},
    {"The answer is therefore 42.", NULL, "42"},         /* strict: right after the marker only */
    {"The answer is 7. The answer is 8.", "8", "8"},
    {"no number here.", NULL, NULL},
    {"The answer is unknown.", NULL, NULL},
    {"", NULL, NULL},
    {"#### ", NULL, NULL},
    {"The answer is 1,000,000.", "1000000", "1000000"},
    {"The answer is 0.", "0", "0"},
    {"The answer is 0.50", "0.5", "0.5"},
    {"The answer is $0", "0", "0"},
    {"The answer is 3.14159.", "3.14159", "3.14159"},
    {"x=10.5.", NULL, "10.5"},
    {"The answer is $ 5", "5", "5"},
};

static void test_extract_cases(void **state) {
    (void)state;
    for (size_t i = 0; i < sizeof ex_cases / sizeof ex_cases[0]; i++) {
        const ex_case *c = &ex_cases[i];
        qm_eval_extraction ex;
        qm_eval_extract(c->text, &ex);
        if (c->strict) {
            if (!ex.has_strict || strcmp(ex.strict, c->strict) != 0)
                fail_msg("case %zu \"%s\": strict %s, expected %s", i, c->text, ex.has_strict ? ex.strict : "null",
                         c->strict);
        } else if (ex.has_strict) {
            fail_msg("case %zu \"%s\": strict %s, expected null", i, c->text, ex.strict);
        }
        if (c->flex) {
            if (!ex.has_flex || strcmp(ex.flex, c->flex) != 0)
                fail_msg("case %zu \"%s\": flex %s, expected %s", i, c->text, ex.has_flex ? ex.flex : "null", c->flex);
        } else if (ex.has_flex) {
            fail_msg("case %zu \"%s\": flex %s, expected null", i, c->text, ex.flex);
        }
    }
    qm_eval_extraction ex;
    qm_eval_extract(NULL, &ex);
    assert_false(ex.has_strict);
    assert_false(ex.has_flex);
}

static void norm_is(const char *in, const char *want) {
    char out[QM_EVAL_NUM_MAX];
    bool ok = qm_eval_normalize(in, strlen(in), out);
    if (!want) {
        if (ok) fail_msg("normalize(\"%s\") = %s, expected failure", in, out);
        return;
    }
    if (!ok || strcmp(out, want) != 0) fail_msg("normalize(\"%s\") = %s, expected %s", in, ok ? out : "(fail)", want);
}

static void test_normalize(void **state) {
    (void)state;
    norm_is("$1,234", "1234");
    norm_is("18.00", "18");
    norm_is("007", "7");
    norm_is("-0.25", "-0.25");
    norm_is("0", "0");
    norm_is("-0", "0");
    norm_is("-0.000", "0");
    norm_is("000.500", "0.5");
    norm_is("$ 12", "12");
    norm_is("-$3", "-3");
    norm_is("1,2,3", "123");
    norm_is("10.", "10");
    norm_is("", NULL);
    norm_is("abc", NULL);
    norm_is("12a", NULL);
    norm_is("-", NULL);
    char big[200];
    memset(big, '9', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    norm_is(big, NULL); /* does not fit */
    /* number_at: where a number ends */
    assert_int_equal(qm_eval_number_at("$1,234. More"), 6);
    assert_int_equal(qm_eval_number_at("12.5kg"), 4);
    assert_int_equal(qm_eval_number_at("-3 apples"), 2);
    assert_int_equal(qm_eval_number_at("- 3"), 0);
    assert_int_equal(qm_eval_number_at(".5"), 0);
    assert_int_equal(qm_eval_number_at("50%"), 2);
}

static void test_gold_and_equal(void **state) {
    (void)state;
    char g[QM_EVAL_NUM_MAX];
    assert_true(qm_eval_gold("She makes 9 * 2 = $<<9*2=18>>18 every day.\n#### 18", g));
    assert_string_equal(g, "18");
    assert_true(qm_eval_gold("x\n#### 1,000", g));
    assert_string_equal(g, "1000");
    assert_true(qm_eval_gold("x\n#### -4", g));
    assert_string_equal(g, "-4");
    assert_false(qm_eval_gold("no gold", g));
    assert_false(qm_eval_gold(NULL, g));
    assert_true(qm_eval_numbers_equal("18", "18.00"));
    assert_true(qm_eval_numbers_equal("1234", "1,234"));
    assert_true(qm_eval_numbers_equal("-0.25", "-0.250"));
    assert_false(qm_eval_numbers_equal("18", "-18"));
    assert_false(qm_eval_numbers_equal("18", "180"));
    assert_false(qm_eval_numbers_equal(NULL, "1"));
    assert_false(qm_eval_numbers_equal("1", "abc"));
}

/* ---- prompts ---- */

static char *read_whole(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = malloc((size_t)n + 1);
    size_t got = fread(s, 1, (size_t)n, f);
    s[got] = '\0';
    fclose(f);
    return s;
}

/* The README format, built straight from the raw JSON (not through the library's loader). */
static char *expected_cot(int k) {
    char *raw = read_whole(EXEMPLARS);
    assert_non_null(raw);
    size_t cap = 1 << 16, len = 0;
    char *out = calloc(cap, 1);
    char *save = NULL;
    int i = 0;
    for (char *line = strtok_r(raw, "\n", &save); line && i < k; line = strtok_r(NULL, "\n", &save), i++) {
        cJSON *o = cJSON_Parse(line);
        assert_non_null(o);
        len += (size_t)snprintf(out + len, cap - len, "Q: %s\nA: %s The answer is %s.\n\n",
                                cJSON_GetObjectItem(o, "question")->valuestring,
                                cJSON_GetObjectItem(o, "rationale")->valuestring,
                                cJSON_GetObjectItem(o, "answer")->valuestring);
        cJSON_Delete(o);
    }
    free(raw);
    return out;
}

static void test_prompt_cot(void **state) {
    (void)state;
    qm_eval_dataset ex;
    qm_error err = {0};
    assert_int_equal(qm_eval_data_load(EXEMPLARS, QM_EVAL_DATA_EXEMPLARS, 0, &ex, &err), QM_OK);
    assert_int_equal(ex.n, 8);
    char *p = NULL;
    assert_int_equal(qm_eval_prompt_prefix(QM_EVAL_PROMPT_COT, &ex, 0, &p, &err), QM_OK);
    assert_string_equal(p, "");
    free(p);
    assert_int_equal(qm_eval_prompt_prefix(QM_EVAL_PROMPT_COT, &ex, 1, &p, &err), QM_OK);
    assert_string_equal(p, "Q: There are 15 trees in the grove. Grove workers will plant trees in the grove today. "
                           "After they are done, there will be 21 trees. How many trees did the grove workers plant "
                           "today?\nA: There are 15 trees originally. Then there were 21 trees after some more were "
                           "planted. So there must have been 21 - 15 = 6. The answer is 6.\n\n");
    free(p);
    for (int k = 0; k <= 8; k++) {
        char *want = expected_cot(k);
        assert_int_equal(qm_eval_prompt_prefix(QM_EVAL_PROMPT_COT, &ex, k, &p, &err), QM_OK);
        assert_string_equal(p, want);
        if (k == 8) assert_non_null(strstr(p, " The answer is 8.\n\n"));
        free(p);
        free(want);
    }
    assert_int_equal(qm_eval_prompt_prefix(QM_EVAL_PROMPT_COT, &ex, 9, &p, &err), QM_ERR_ARG);
    char *s = qm_eval_prompt_suffix(QM_EVAL_PROMPT_COT, "How many?");
    assert_string_equal(s, "Q: How many?\nA:");
    free(s);
    int n;
    const char *const *stops = qm_eval_prompt_stops(QM_EVAL_PROMPT_COT, &n);
    assert_int_equal(n, 1);
    assert_string_equal(stops[0], "\n\nQ:");
    qm_eval_data_free(&ex);
}

static char *tmp_file(const char *content) {
    char *path = strdup("/tmp/test_gsm8k_XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    size_t n = strlen(content);
    assert_int_equal(write(fd, content, n), (ssize_t)n);
    close(fd);
    return path;
}

static void test_prompt_qa(void **state) {
    (void)state;
    char *path = tmp_file("{\"question\": \"Q1?\", \"answer\": \"1+1=<<1+1=2>>2\\n#### 2\"}\n"
                          "\n"
                          "{\"question\": \"Q2?\", \"answer\": \"#### 1,000\"}\n"
                          "{\"question\": \"Q3?\"}\n");
    qm_eval_dataset d;
    qm_error err = {0};
    assert_int_equal(qm_eval_data_load(path, QM_EVAL_DATA_GSM8K, 0, &d, &err), QM_OK);
    assert_int_equal(d.n, 3);
    assert_int_equal(d.items[1].index, 2); /* 0-based line, the blank line counted */
    assert_true(d.items[0].has_gold);
    assert_string_equal(d.items[0].gold, "2");
    assert_string_equal(d.items[1].gold, "1000");
    assert_false(d.items[2].has_gold);
    char *p = NULL;
    assert_int_equal(qm_eval_prompt_prefix(QM_EVAL_PROMPT_QA, &d, 2, &p, &err), QM_OK);
    assert_string_equal(p, "Question: Q1?\nAnswer: 1+1=<<1+1=2>>2\n#### 2\n\nQuestion: Q2?\nAnswer: #### 1,000\n\n");
    free(p);
    char *s = qm_eval_prompt_suffix(QM_EVAL_PROMPT_QA, "Q9?");
    assert_string_equal(s, "Question: Q9?\nAnswer:");
    free(s);
    int n;
    const char *const *stops = qm_eval_prompt_stops(QM_EVAL_PROMPT_QA, &n);
    bool has_question = false;
    for (int i = 0; i < n; i++) has_question |= !strcmp(stops[i], "Question:");
    assert_true(has_question);
    qm_eval_data_free(&d);
    /* limit */
    assert_int_equal(qm_eval_data_load(path, QM_EVAL_DATA_GSM8K, 1, &d, &err), QM_OK);
    assert_int_equal(d.n, 1);
    qm_eval_data_free(&d);
    /* exemplars need rationale */
    assert_int_equal(qm_eval_data_load(path, QM_EVAL_DATA_EXEMPLARS, 0, &d, &err), QM_ERR_FORMAT);
    assert_non_null(strstr(err.msg, "rationale"));
    unlink(path);
    free(path);
}

static void test_chat_split(void **state) {
    (void)state;
    const char *w = "<|im_start|>system\nSYS<|im_end|>\n<|im_start|>user\nPRE\n\nQ: x\nA:<|im_end|>\n"
                    "<|im_start|>assistant\n";
    char *sh, *rest;
    qm_error err = {0};
    assert_int_equal(qm_eval_chat_split(w, "PRE\n\n", &sh, &rest, &err), QM_OK);
    assert_string_equal(sh, "<|im_start|>system\nSYS<|im_end|>\n<|im_start|>user\nPRE\n\n");
    assert_string_equal(rest, "Q: x\nA:<|im_end|>\n<|im_start|>assistant\n");
    free(sh);
    free(rest);
    assert_int_equal(qm_eval_chat_split(w, "OTHER", &sh, &rest, &err), QM_ERR_FORMAT);
    assert_int_equal(qm_eval_chat_split("no template", "", &sh, &rest, &err), QM_ERR_FORMAT);
}

static void test_data_errors(void **state) {
    (void)state;
    qm_eval_dataset d;
    qm_error err = {0};
    char *p = tmp_file("question,answer\nfoo,bar\n");
    assert_int_equal(qm_eval_data_load(p, QM_EVAL_DATA_GSM8K, 0, &d, &err), QM_ERR_FORMAT);
    assert_non_null(strstr(err.msg, ":1:"));
    unlink(p);
    free(p);
    p = tmp_file("{\"question\": \"ok\"}\n{\"answer\": \"#### 3\"}\n");
    assert_int_equal(qm_eval_data_load(p, QM_EVAL_DATA_GSM8K, 0, &d, &err), QM_ERR_FORMAT);
    assert_non_null(strstr(err.msg, ":2:"));
    assert_non_null(strstr(err.msg, "question"));
    unlink(p);
    free(p);
    p = tmp_file("");
    assert_int_equal(qm_eval_data_load(p, QM_EVAL_DATA_GSM8K, 0, &d, &err), QM_ERR_FORMAT);
    unlink(p);
    free(p);
    assert_int_equal(qm_eval_data_load("/nonexistent/x.jsonl", QM_EVAL_DATA_GSM8K, 0, &d, &err), QM_ERR_IO);
}

/* ---- results files ---- */

static qm_eval_result make_result(int index, const char *completion) {
    qm_eval_result r = {.index = index, .question = "What?", .gold = "18", .completion = (char *)completion,
                        .strict = "18", .flex = NULL, .strict_correct = true, .flex_correct = false,
                        .prompt_tokens = 100, .gen_tokens = 10, .ms = 250.0, .batch = 3, .run = 1, .t_ms = 1000.0};
    snprintf(r.mesh, sizeof r.mesh, "2x4");
    return r;
}

static void test_results_roundtrip_and_repair(void **state) {
    (void)state;
    char *text = calloc(1, 1 << 16);
    for (int i = 0; i < 3; i++) {
        qm_eval_result r = make_result(i, i == 1 ? "quote \" and newline \n and \xc3\xa9" : "The answer is 18.");
        r.t_ms = 1000.0 * (i + 1);
        char *line = qm_eval_result_line(&r);
        assert_non_null(line);
        assert_int_equal(line[strlen(line) - 1], '\n');
        assert_null(strchr(line, '\n') == line + strlen(line) - 1 ? NULL : "inner newline");
        strcat(text, line);
        free(line);
    }
    size_t whole = strlen(text);
    strcat(text, "{\"index\":3,\"question\":\"Wh"); /* killed mid-line */
    char *path = tmp_file(text);
    qm_eval_results r;
    qm_error err = {0};
    assert_int_equal(qm_eval_results_load(path, false, &r, &err), QM_OK);
    assert_int_equal(r.n, 3);
    assert_true(r.had_partial);
    assert_int_equal(r.valid_bytes, (long)whole);
    assert_string_equal(qm_eval_results_find(&r, 1)->completion, "quote \" and newline \n and \xc3\xa9");
    const qm_eval_result *x = qm_eval_results_find(&r, 2);
    assert_non_null(x);
    assert_string_equal(x->gold, "18");
    assert_string_equal(x->strict, "18");
    assert_null(x->flex);
    assert_true(x->strict_correct);
    assert_false(x->flex_correct);
    assert_int_equal(x->prompt_tokens, 100);
    assert_int_equal(x->gen_tokens, 10);
    assert_string_equal(x->mesh, "2x4");
    assert_int_equal(x->batch, 3);
    assert_null(qm_eval_results_find(&r, 3));
    qm_eval_summary s;
    qm_eval_summarize(&r, &s);
    assert_int_equal(s.n, 3);
    assert_int_equal(s.strict_correct, 3);
    assert_int_equal(s.flex_correct, 0);
    assert_true(fabs(s.wall_s - 3.0) < 1e-9);
    assert_true(fabs(s.tokens_per_s - 10.0) < 1e-9);
    assert_string_equal(s.mesh, "2x4");
    qm_eval_results_free(&r);
    /* the file is untouched without repair; repaired (truncated) with it */
    char *now = read_whole(path);
    assert_int_equal(strlen(now), strlen(text));
    free(now);
    assert_int_equal(qm_eval_results_load(path, true, &r, &err), QM_OK);
    qm_eval_results_free(&r);
    now = read_whole(path);
    assert_int_equal(strlen(now), whole);
    free(now);
    assert_int_equal(qm_eval_results_load(path, true, &r, &err), QM_OK);
    assert_false(r.had_partial);
    assert_int_equal(r.n, 3);
    qm_eval_results_free(&r);
    unlink(path);
    free(path);

    /* a bad line in the middle, and a duplicated index, are errors */
    char *p2 = tmp_file("{\"index\":0,\"completion\":\"a\",\"strict_correct\":true,\"flex_correct\":true}\n"
                        "garbage\n"
                        "{\"index\":1,\"completion\":\"b\",\"strict_correct\":true,\"flex_correct\":true}\n");
    assert_int_equal(qm_eval_results_load(p2, true, &r, &err), QM_ERR_FORMAT);
    assert_non_null(strstr(err.msg, ":2:"));
    unlink(p2);
    free(p2);
    p2 = tmp_file("{\"index\":0,\"completion\":\"a\",\"strict_correct\":true,\"flex_correct\":true}\n"
                  "{\"index\":0,\"completion\":\"b\",\"strict_correct\":true,\"flex_correct\":true}\n");
    assert_int_equal(qm_eval_results_load(p2, false, &r, &err), QM_ERR_FORMAT);
    assert_non_null(strstr(err.msg, "twice"));
    unlink(p2);
    free(p2);
    free(text);
}

static void test_summary_runs(void **state) {
    (void)state;
    qm_eval_results r = {0};
    qm_error err = {0};
    for (int i = 0; i < 4; i++) {
        qm_eval_result x = make_result(i, "c");
        x.run = i < 2 ? 1 : 2;                /* a resumed file: two runs */
        x.t_ms = i < 2 ? 500.0 * (i + 1) : 250.0 * (i - 1);
        x.batch = i == 3 ? 8 : 3;
        assert_int_equal(qm_eval_results_add(&r, &x, &err), QM_OK);
    }
    qm_eval_summary s;
    qm_eval_summarize(&r, &s);
    assert_int_equal(s.runs, 2);
    assert_true(fabs(s.wall_s - 1.5) < 1e-9); /* 1000 ms + 500 ms */
    assert_true(fabs(s.tokens_per_s - 40.0 / 1.5) < 1e-9);
    assert_int_equal(s.batch, -1);
    qm_eval_results_free(&r);
}

/* ---- Wilson ---- */

static void test_wilson(void **state) {
    (void)state;
    double lo, hi;
    qm_eval_wilson(50, 100, 1.96, &lo, &hi);
    assert_true(fabs(lo - 0.403830) < 1e-5 && fabs(hi - 0.596170) < 1e-5);
    qm_eval_wilson(0, 10, 1.96, &lo, &hi);
    assert_true(fabs(lo - 0.0) < 1e-12 && fabs(hi - 0.277540) < 1e-5);
    qm_eval_wilson(10, 10, 1.96, &lo, &hi);
    assert_true(fabs(lo - 0.722460) < 1e-5 && fabs(hi - 1.0) < 1e-12);
    qm_eval_wilson(1, 5, 1.96, &lo, &hi);
    assert_true(fabs(lo - 0.036223) < 1e-5 && fabs(hi - 0.624472) < 1e-5);
    qm_eval_wilson(1000, 1319, 1.96, &lo, &hi);
    assert_true(fabs(lo - 0.734313) < 1e-5 && fabs(hi - 0.780488) < 1e-5);
    qm_eval_wilson(0, 0, 1.96, &lo, &hi);
    assert_true(lo == 0.0 && hi == 1.0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_extract_cases),
        cmocka_unit_test(test_normalize),
        cmocka_unit_test(test_gold_and_equal),
        cmocka_unit_test(test_prompt_cot),
        cmocka_unit_test(test_prompt_qa),
        cmocka_unit_test(test_chat_split),
        cmocka_unit_test(test_data_errors),
        cmocka_unit_test(test_results_roundtrip_and_repair),
        cmocka_unit_test(test_summary_runs),
        cmocka_unit_test(test_wilson),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
