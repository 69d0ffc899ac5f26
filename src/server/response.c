/* Formatting answers (response.h). */
#include "server/response.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *qm_resp_finish_reason(qm_stop_reason r) { return r == QM_STOP_LENGTH ? "length" : "stop"; }

/* Prints and frees o. */
static char *print(cJSON *o) {
    char *s = o ? cJSON_PrintUnformatted(o) : NULL;
    cJSON_Delete(o);
    return s;
}

static cJSON *string_or_null(const char *s) { return s ? cJSON_CreateString(s) : cJSON_CreateNull(); }

char *qm_resp_error(const qm_api_error *e) {
    cJSON *o = cJSON_CreateObject(), *er = cJSON_CreateObject();
    if (!o || !er) {
        cJSON_Delete(o);
        cJSON_Delete(er);
        return NULL;
    }
    cJSON_AddItemToObject(o, "error", er);
    cJSON_AddStringToObject(er, "message", e->message);
    cJSON_AddStringToObject(er, "type", e->type ? e->type : "invalid_request_error");
    cJSON_AddItemToObject(er, "param", string_or_null(e->param));
    cJSON_AddItemToObject(er, "code", string_or_null(e->code));
    return print(o);
}

/* Length of the valid UTF-8 character at p (n bytes left), 0 when it is not one. */
static size_t utf8_char(const unsigned char *p, size_t n) {
    const size_t len = p[0] < 0x80 ? 1 : (p[0] & 0xE0) == 0xC0 ? 2 : (p[0] & 0xF0) == 0xE0 ? 3 : (p[0] & 0xF8) == 0xF0 ? 4 : 0;
    if (!len || len > n || (len == 2 && p[0] < 0xC2)) return 0;
    for (size_t i = 1; i < len; i++)
        if ((p[i] & 0xC0) != 0x80) return 0;
    if (len == 3 && ((p[0] == 0xE0 && p[1] < 0xA0) || (p[0] == 0xED && p[1] >= 0xA0))) return 0;
    if (len == 4 && ((p[0] == 0xF0 && p[1] < 0x90) || p[0] > 0xF4 || (p[0] == 0xF4 && p[1] >= 0x90))) return 0;
    return len;
}

/* A JSON string of len bytes: bytes that are not UTF-8 (a token may be part of a character) become
 * U+FFFD, so that the answer is valid JSON; a NUL byte ends it (cJSON takes C strings). */
static cJSON *text_item(const char *text, size_t len) {
    char *t = malloc(len * 3 + 1);
    if (!t) return NULL;
    size_t w = 0;
    for (size_t i = 0; i < len && text[i];) {
        const size_t k = utf8_char((const unsigned char *)text + i, len - i);
        if (k) {
            memcpy(t + w, text + i, k);
            w += k;
            i += k;
        } else {
            memcpy(t + w, "\xEF\xBF\xBD", 3);
            w += 3;
            i++;
        }
    }
    t[w] = 0;
    cJSON *s = cJSON_CreateString(t);
    free(t);
    return s;
}

/* A token's text for logprobs, malloc'd (its id as text when no namer). */
static char *token_text(const qm_token_namer *nm, int id, size_t *len) {
    char *t = nm ? nm->text(nm->ctx, id, len) : NULL;
    if (!t && (t = malloc(24))) *len = (size_t)snprintf(t, 24, "%d", id);
    return t;
}

/* {"token", "logprob", "bytes"} of one token (chat). */
static cJSON *chat_token(const qm_token_namer *nm, int id, float logprob) {
    size_t len = 0;
    char *t = token_text(nm, id, &len);
    cJSON *o = cJSON_CreateObject(), *bytes = cJSON_CreateArray();
    if (!t || !o || !bytes) {
        free(t);
        cJSON_Delete(o);
        cJSON_Delete(bytes);
        return NULL;
    }
    cJSON_AddItemToObject(o, "token", text_item(t, len));
    cJSON_AddNumberToObject(o, "logprob", logprob);
    for (size_t i = 0; i < len; i++) cJSON_AddItemToArray(bytes, cJSON_CreateNumber((unsigned char)t[i]));
    cJSON_AddItemToObject(o, "bytes", bytes);
    free(t);
    return o;
}

/* Chat: {"content": [{"token", "logprob", "bytes", "top_logprobs": [...]}, ...]}. */
static cJSON *chat_logprobs(const qm_resp_logprobs *t, const qm_token_namer *nm) {
    cJSON *o = cJSON_CreateObject(), *content = cJSON_CreateArray();
    cJSON_AddItemToObject(o, "content", content);
    for (int i = 0; i < t->n && content; i++) {
        const qm_token_logprobs *lp = &t->logprobs[i];
        cJSON *tok = chat_token(nm, t->ids[i], lp->logprob), *top = cJSON_CreateArray();
        for (int k = 0; k < lp->n_top; k++) cJSON_AddItemToArray(top, chat_token(nm, lp->top_id[k], lp->top_logprob[k]));
        cJSON_AddItemToObject(tok, "top_logprobs", top);
        cJSON_AddItemToArray(content, tok);
    }
    return o;
}

/* Completions: {"tokens", "token_logprobs", "top_logprobs": [{text: logprob}], "text_offset"}; the
 * text offsets from *t->offset on, which is advanced past the tokens. */
static cJSON *completion_logprobs(const qm_resp_logprobs *t, const qm_token_namer *nm) {
    cJSON *o = cJSON_CreateObject(), *toks = cJSON_CreateArray(), *lps = cJSON_CreateArray(),
          *tops = cJSON_CreateArray(), *offs = cJSON_CreateArray();
    cJSON_AddItemToObject(o, "tokens", toks);
    cJSON_AddItemToObject(o, "token_logprobs", lps);
    cJSON_AddItemToObject(o, "top_logprobs", tops);
    cJSON_AddItemToObject(o, "text_offset", offs);
    size_t offset = t->offset ? *t->offset : 0;
    for (int i = 0; i < t->n; i++) {
        const qm_token_logprobs *lp = &t->logprobs[i];
        size_t len = 0;
        char *text = token_text(nm, t->ids[i], &len);
        cJSON_AddItemToArray(toks, text ? text_item(text, len) : cJSON_CreateNull());
        cJSON_AddItemToArray(lps, cJSON_CreateNumber(lp->logprob));
        cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)offset));
        offset += len;
        free(text);
        cJSON *top = cJSON_CreateObject();
        for (int k = 0; k < lp->n_top && top; k++) {
            char *name = token_text(nm, lp->top_id[k], &len);
            cJSON *key = name ? text_item(name, len) : NULL;
            if (key) cJSON_AddNumberToObject(top, key->valuestring, lp->top_logprob[k]);
            cJSON_Delete(key);
            free(name);
        }
        cJSON_AddItemToArray(tops, top);
    }
    if (t->offset) *t->offset = offset;
    return o;
}

static void add_head(cJSON *o, const qm_job *j, const char *object, const char *model, long created) {
    char id[48];
    snprintf(id, sizeof id, "%s-%d", j->api.kind == QM_API_CHAT ? "chatcmpl" : "cmpl", j->id);
    cJSON_AddStringToObject(o, "id", id);
    cJSON_AddStringToObject(o, "object", object);
    cJSON_AddNumberToObject(o, "created", (double)created);
    cJSON_AddStringToObject(o, "model", model);
}

static cJSON *usage(const qm_job *j) {
    cJSON *u = cJSON_CreateObject();
    if (!u) return NULL;
    cJSON_AddNumberToObject(u, "prompt_tokens", j->prompt_tokens);
    cJSON_AddNumberToObject(u, "completion_tokens", j->n_gen);
    cJSON_AddNumberToObject(u, "total_tokens", j->prompt_tokens + j->n_gen);
    return u;
}

/* One choice: {"index", "text"|"message"|"delta", "logprobs", "finish_reason"}; logprobs null
 * without tokens (t NULL, or its ids or logprobs NULL). */
static cJSON *choice(const qm_job *j, const char *text, size_t len, bool delta, bool first, const char *finish,
                     const qm_resp_logprobs *t) {
    cJSON *c = cJSON_CreateObject();
    if (!c) return NULL;
    cJSON_AddNumberToObject(c, "index", 0);
    if (j->api.kind == QM_API_CHAT) {
        cJSON *m = cJSON_CreateObject();
        cJSON_AddItemToObject(c, delta ? "delta" : "message", m);
        if (m && (!delta || first)) cJSON_AddStringToObject(m, "role", "assistant");
        if (m && (!delta || len || !finish)) cJSON_AddItemToObject(m, "content", text_item(text, len));
    } else {
        cJSON_AddItemToObject(c, "text", text_item(text, len));
    }
    if (t && t->ids && t->logprobs)
        cJSON_AddItemToObject(c, "logprobs", j->api.kind == QM_API_CHAT ? chat_logprobs(t, t->names)
                                                                         : completion_logprobs(t, t->names));
    else
        cJSON_AddNullToObject(c, "logprobs");
    cJSON_AddItemToObject(c, "finish_reason", string_or_null(finish));
    return c;
}

char *qm_resp_final(const qm_job *j, const char *model, long created, const qm_token_namer *names) {
    cJSON *o = cJSON_CreateObject(), *cs = cJSON_CreateArray();
    if (!o || !cs) {
        cJSON_Delete(o);
        cJSON_Delete(cs);
        return NULL;
    }
    add_head(o, j, j->api.kind == QM_API_CHAT ? "chat.completion" : "text_completion", model, created);
    cJSON_AddItemToObject(o, "choices", cs);
    const qm_resp_logprobs all = {.ids = j->ids, .logprobs = j->logprobs, .n = j->n_gen, .names = names};
    cJSON_AddItemToArray(cs, choice(j, j->text ? j->text : "", j->len, false, true, qm_resp_finish_reason(j->reason),
                                     j->logprobs ? &all : NULL));
    cJSON_AddItemToObject(o, "usage", usage(j));
    return print(o);
}

char *qm_resp_chunk(const qm_job *j, const char *model, long created, const char *text, size_t len, bool first,
                    bool last) {
    return qm_resp_chunk_logprobs(j, model, created, text, len, first, last, NULL);
}

char *qm_resp_chunk_logprobs(const qm_job *j, const char *model, long created, const char *text, size_t len,
                             bool first, bool last, const qm_resp_logprobs *tokens) {
    cJSON *o = cJSON_CreateObject(), *cs = cJSON_CreateArray();
    if (!o || !cs) {
        cJSON_Delete(o);
        cJSON_Delete(cs);
        return NULL;
    }
    add_head(o, j, j->api.kind == QM_API_CHAT ? "chat.completion.chunk" : "text_completion", model, created);
    cJSON_AddItemToObject(o, "choices", cs);
    cJSON_AddItemToArray(cs, choice(j, text, len, true, first, last ? qm_resp_finish_reason(j->reason) : NULL, tokens));
    if (last) cJSON_AddItemToObject(o, "usage", usage(j));
    char *json = print(o);
    if (!json) return NULL;
    const size_t n = strlen(json);
    char *ev = malloc(n + 16);
    if (ev) snprintf(ev, n + 16, "data: %s\n\n", json);
    free(json);
    return ev;
}

char *qm_resp_models(const char *model, long created) {
    cJSON *o = cJSON_CreateObject(), *data = cJSON_CreateArray(), *m = cJSON_CreateObject();
    if (!o || !data || !m) {
        cJSON_Delete(o);
        cJSON_Delete(data);
        cJSON_Delete(m);
        return NULL;
    }
    cJSON_AddStringToObject(o, "object", "list");
    cJSON_AddItemToObject(o, "data", data);
    cJSON_AddItemToArray(data, m);
    cJSON_AddStringToObject(m, "id", model);
    cJSON_AddStringToObject(m, "object", "model");
    cJSON_AddNumberToObject(m, "created", (double)created);
    cJSON_AddStringToObject(m, "owned_by", "qmesh");
    return print(o);
}

char *qm_resp_tokens(const int *ids, int n, int max_model_len) {
    cJSON *o = cJSON_CreateObject(), *t = cJSON_CreateIntArray(ids, n);
    if (!o || !t) {
        cJSON_Delete(o);
        cJSON_Delete(t);
        return NULL;
    }
    cJSON_AddItemToObject(o, "tokens", t);
    cJSON_AddNumberToObject(o, "count", n);
    cJSON_AddNumberToObject(o, "max_model_len", max_model_len);
    return print(o);
}

char *qm_resp_text(const char *text) {
    cJSON *o = cJSON_CreateObject();
    if (!o) return NULL;
    cJSON_AddStringToObject(o, "prompt", text);
    return print(o);
}
