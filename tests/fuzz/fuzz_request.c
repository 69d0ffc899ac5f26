/* libFuzzer entry point for the server's request parser (src/server/request.c), as `qmesh serve`
 * reads a POST body: the first byte picks the endpoint (/v1/completions, /v1/chat/completions,
 * /tokenize, /detokenize), the rest is the body. A request that parses must hold what the parser
 * promises (at most 4 non-empty stop strings, a prompt or ids, a user message for chat, sampling in
 * range); one that does not must come with an error status and message. A parsed request's answer
 * is then formatted with the body as its text (src/server/response.c), and must read back as JSON
 * with that text.
 * Seeds: corpus/request/ (the endpoint byte, then a body: valid requests and broken ones). */
#include <cjson/cJSON.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "server/request.h"
#include "server/response.h"

static void check_parsed(const qm_api_request *r, qm_api_kind kind) {
    if (r->kind != kind || r->n_stop < 0 || r->n_stop > QM_API_MAX_STOP) abort();
    for (int i = 0; i < r->n_stop; i++)
        if (!r->stop[i] || !r->stop[i][0]) abort();
    if (kind == QM_API_CHAT && (!r->user || r->n_messages < 1 || r->n_messages > QM_CHAT_MAX_MESSAGES ||
                                r->user != r->messages[r->n_messages - 1].content))
        abort();
    if (kind == QM_API_COMPLETION && !r->prompt && r->n_prompt_ids < 1) abort();
    if (r->temperature < 0 || r->temperature > 2 || r->top_p <= 0 || r->top_p > 1 || r->top_k < 0) abort();
    if (r->logprobs < 0 || r->logprobs > 21) abort();
}

/* Whether text is valid UTF-8 (then the answer must carry it unchanged; else U+FFFD stands in). */
static int valid_utf8(const unsigned char *p, size_t n) {
    for (size_t i = 0; i < n;) {
        size_t len = p[i] < 0x80 ? 1 : (p[i] & 0xE0) == 0xC0 ? 2 : (p[i] & 0xF0) == 0xE0 ? 3 : (p[i] & 0xF8) == 0xF0 ? 4 : 0;
        if (!len || len > n - i || (len == 2 && p[i] < 0xC2)) return 0;
        for (size_t k = 1; k < len; k++)
            if ((p[i + k] & 0xC0) != 0x80) return 0;
        if (len == 3 && ((p[i] == 0xE0 && p[i + 1] < 0xA0) || (p[i] == 0xED && p[i + 1] >= 0xA0))) return 0;
        if (len == 4 && ((p[i] == 0xF0 && p[i + 1] < 0x90) || p[i] > 0xF4 || (p[i] == 0xF4 && p[i + 1] >= 0x90)))
            return 0;
        i += len;
    }
    return 1;
}

/* The answer with text = the input (and, when asked, logprobs of the input's bytes as token ids),
 * formatted and read back. */
static void check_answer(qm_api_request *r, const char *text, size_t len) {
    qm_job j;
    memset(&j, 0, sizeof j);
    j.api = *r;
    j.text = (char *)text;
    j.len = len;
    j.reason = QM_STOP_STRING;
    int ids[8];
    qm_token_logprobs lps[8];
    if (r->logprobs) {
        j.n_gen = len < 8 ? (int)len : 8;
        for (int i = 0; i < j.n_gen; i++) {
            ids[i] = (unsigned char)text[i];
            memset(&lps[i], 0, sizeof lps[i]);
            lps[i].logprob = -(float)i;
            lps[i].n_top = r->logprobs - 1;
            for (int k = 0; k < lps[i].n_top; k++) lps[i].top_id[k] = k;
        }
        j.ids = ids;
        j.logprobs = lps;
    }
    char *whole = qm_resp_final(&j, "m", 1, NULL);
    char *chunk = qm_resp_chunk(&j, "m", 1, text, len, true, true);
    if (!whole || !chunk || strncmp(chunk, "data: ", 6)) abort();
    cJSON *w = cJSON_Parse(whole), *c = cJSON_Parse(chunk + 6);
    if (!w || !c) abort();
    const cJSON *choice = cJSON_GetArrayItem(cJSON_GetObjectItem(w, "choices"), 0);
    const cJSON *t = r->kind == QM_API_CHAT ? cJSON_GetObjectItem(cJSON_GetObjectItem(choice, "message"), "content")
                                            : cJSON_GetObjectItem(choice, "text");
    if (!cJSON_IsString(t) || (valid_utf8((const unsigned char *)text, len) && strcmp(t->valuestring, text)))
        abort(); /* text holds no NUL here */
    if (r->logprobs && !cJSON_IsObject(cJSON_GetObjectItem(choice, "logprobs"))) abort();
    cJSON_Delete(w);
    cJSON_Delete(c);
    free(whole);
    free(chunk);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    const int which = data[0] % 4;
    const char *body = (const char *)data + 1;
    const size_t len = size - 1;
    qm_api_error e;
    memset(&e, 0, sizeof e);
    if (which < 2) {
        const qm_api_kind kind = which ? QM_API_CHAT : QM_API_COMPLETION;
        qm_api_request r;
        if (qm_api_parse(kind, body, len, &r, &e)) {
            check_parsed(&r, kind);
            char *text = malloc(len + 1);
            if (!text) abort();
            memcpy(text, body, len);
            text[len] = 0;
            check_answer(&r, text, strlen(text));
            free(text);
            qm_api_request_free(&r);
        } else if (e.status < 400 || !e.message[0]) {
            abort();
        }
        return 0;
    }
    if (which == 2) {
        char *text = NULL;
        if (qm_api_parse_tokenize(body, len, &text, &e) != (text != NULL)) abort();
        free(text);
    } else {
        int *ids = NULL, n = 0;
        if (qm_api_parse_detokenize(body, len, &ids, &n, &e)) {
            for (int i = 0; i < n; i++)
                if (ids[i] < 0) abort();
        } else if (ids || n) {
            abort();
        }
        free(ids);
    }
    char *err_json = e.status ? qm_resp_error(&e) : NULL;
    if (e.status && !err_json) abort();
    free(err_json);
    return 0;
}
