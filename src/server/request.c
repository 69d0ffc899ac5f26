/* Parsing OpenAI-style request bodies (request.h). */
#include "server/request.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BAD 400
#define INVALID "invalid_request_error"

bool qm_api_fail(qm_api_error *e, int status, const char *type, const char *param, const char *code, const char *fmt,
                 ...) {
    e->status = status;
    e->type = type;
    e->param = param;
    e->code = code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof e->message, fmt, ap);
    va_end(ap);
    return false;
}

static char *dup_str(const char *s) {
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

static bool oom(qm_api_error *e) { return qm_api_fail(e, 500, "server_error", NULL, NULL, "out of memory"); }

/* The body as a JSON object, or a 400 naming what is wrong with it. */
static cJSON *parse_object(const char *body, size_t len, qm_api_error *e) {
    cJSON *j = cJSON_ParseWithLength(body, len);
    if (!j) {
        qm_api_fail(e, BAD, INVALID, NULL, NULL, "the request body is not valid JSON");
        return NULL;
    }
    if (!cJSON_IsObject(j)) {
        cJSON_Delete(j);
        qm_api_fail(e, BAD, INVALID, NULL, NULL, "the request body must be a JSON object");
        return NULL;
    }
    return j;
}

/* Optional number field in [lo, hi] (absent or null: *out unchanged); integer when `integer`. */
static bool get_number(const cJSON *j, const char *name, double lo, double hi, bool integer, double *out,
                       qm_api_error *e) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, name);
    if (!v || cJSON_IsNull(v)) return true;
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble))
        return qm_api_fail(e, BAD, INVALID, name, NULL, "'%s' must be a number", name);
    const double x = v->valuedouble;
    if (integer && x != floor(x)) return qm_api_fail(e, BAD, INVALID, name, NULL, "'%s' must be an integer", name);
    if (x < lo || x > hi) return qm_api_fail(e, BAD, INVALID, name, NULL, "'%s' must be in [%g, %g]", name, lo, hi);
    *out = x;
    return true;
}

static bool get_bool(const cJSON *j, const char *name, bool *out, qm_api_error *e) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, name);
    if (!v || cJSON_IsNull(v)) return true;
    if (!cJSON_IsBool(v)) return qm_api_fail(e, BAD, INVALID, name, NULL, "'%s' must be true or false", name);
    *out = cJSON_IsTrue(v);
    return true;
}

/* "stop": a string or a list of at most QM_API_MAX_STOP non-empty strings. */
static bool get_stop(const cJSON *j, qm_api_request *r, qm_api_error *e) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, "stop");
    if (!v || cJSON_IsNull(v)) return true;
    const cJSON *one = cJSON_IsString(v) ? v : NULL;
    if (!one && !cJSON_IsArray(v))
        return qm_api_fail(e, BAD, INVALID, "stop", NULL, "'stop' must be a string or a list of strings");
    if (!one && cJSON_GetArraySize(v) > QM_API_MAX_STOP)
        return qm_api_fail(e, BAD, INVALID, "stop", NULL, "'stop' takes at most %d strings", QM_API_MAX_STOP);
    const cJSON *s = one ? one : v->child;
    for (; s; s = one ? NULL : s->next) {
        if (!cJSON_IsString(s) || !s->valuestring[0])
            return qm_api_fail(e, BAD, INVALID, "stop", NULL, "'stop' strings must be non-empty strings");
        if (!(r->stop[r->n_stop++] = dup_str(s->valuestring))) return oom(e);
    }
    return true;
}

/* Completions: "logprobs": k (0..20, null = none). Chat: "logprobs": true|false and "top_logprobs": k.
 * With "stream" too: each chunk carries the logprobs of the tokens whose text it carries. */
static bool get_logprobs(const cJSON *j, qm_api_request *r, qm_api_error *e) {
    double top = 0;
    bool on = false;
    if (r->kind == QM_API_CHAT) {
        if (!get_bool(j, "logprobs", &on, e) || !get_number(j, "top_logprobs", 0, 20, true, &top, e)) return false;
        if (!on && top > 0)
            return qm_api_fail(e, BAD, INVALID, "top_logprobs", NULL, "'top_logprobs' needs 'logprobs': true");
    } else {
        top = -1;
        if (!get_number(j, "logprobs", 0, 20, true, &top, e)) return false;
        on = top >= 0;
        if (top < 0) top = 0;
    }
    r->logprobs = on ? 1 + (int)top : 0;
    return true;
}

/* Sampling and length fields common to both endpoints. */
static bool get_common(const cJSON *j, qm_api_request *r, qm_api_error *e) {
    double max_tokens = -1, top_k = 0, seed = -1, n = 1;
    bool echo = false;
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(j, "model");
    if (m && !cJSON_IsNull(m) && !cJSON_IsString(m))
        return qm_api_fail(e, BAD, INVALID, "model", NULL, "'model' must be a string");
    if (cJSON_IsString(m) && !(r->model = dup_str(m->valuestring))) return oom(e);
    const char *mt = cJSON_GetObjectItemCaseSensitive(j, "max_completion_tokens") ? "max_completion_tokens"
                                                                                  : "max_tokens";
    if (!get_number(j, mt, 0, 1 << 24, true, &max_tokens, e) ||
        !get_number(j, "temperature", 0, 2, false, &r->temperature, e) ||
        !get_number(j, "top_p", 0, 1, false, &r->top_p, e) || !get_number(j, "top_k", -1, 1 << 20, true, &top_k, e) ||
        !get_number(j, "seed", 0, 9007199254740991.0, true, &seed, e) ||
        !get_number(j, "n", 1, 128, true, &n, e) || !get_bool(j, "stream", &r->stream, e) ||
        !get_bool(j, "echo", &echo, e) ||
        !get_bool(j, "ignore_eos", &r->ignore_eos, e) || !get_stop(j, r, e))
        return false;
    if (r->top_p <= 0) return qm_api_fail(e, BAD, INVALID, "top_p", NULL, "'top_p' must be in (0, 1]");
    if (n != 1) return qm_api_fail(e, BAD, INVALID, "n", NULL, "only n = 1 is supported (one choice per request)");
    if (echo) return qm_api_fail(e, BAD, INVALID, "echo", NULL, "'echo' is not supported by this server");
    if (!get_logprobs(j, r, e)) return false;
    r->max_tokens = (int)max_tokens;
    r->top_k = top_k < 0 ? 0 : (int)top_k;
    r->has_seed = seed >= 0;
    r->seed = r->has_seed ? (uint64_t)seed : 0;
    return true;
}

/* "prompt": a string, a list of one string, or a list of token ids. */
static bool get_prompt(const cJSON *j, qm_api_request *r, qm_api_error *e) {
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(j, "prompt");
    if (!p) return qm_api_fail(e, BAD, INVALID, "prompt", NULL, "'prompt' is required");
    if (cJSON_IsArray(p) && cJSON_GetArraySize(p) == 1 && cJSON_IsString(p->child)) p = p->child;
    if (cJSON_IsString(p)) return (r->prompt = dup_str(p->valuestring)) ? true : oom(e);
    const int n = cJSON_IsArray(p) ? cJSON_GetArraySize(p) : 0;
    if (n == 0)
        return qm_api_fail(e, BAD, INVALID, "prompt", NULL,
                           "'prompt' must be a non-empty string, a list of one string or a list of token ids");
    if (!(r->prompt_ids = malloc((size_t)n * sizeof(int)))) return oom(e);
    for (const cJSON *t = p->child; t; t = t->next) {
        if (!cJSON_IsNumber(t) || t->valuedouble != floor(t->valuedouble) || t->valuedouble < 0 ||
            t->valuedouble > 0x7fffffff)
            return qm_api_fail(e, BAD, INVALID, "prompt", NULL,
                               "'prompt' as a list must hold token ids (integers >= 0) or one string");
        r->prompt_ids[r->n_prompt_ids++] = (int)t->valuedouble;
    }
    return true;
}

/* A message's content: a string, or a list of {"type": "text", "text": ...} parts (joined). */
static bool get_content(const cJSON *msg, char **out, qm_api_error *e) {
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(msg, "content");
    if (cJSON_IsString(c)) return (*out = dup_str(c->valuestring)) ? true : oom(e);
    if (!cJSON_IsArray(c))
        return qm_api_fail(e, BAD, INVALID, "messages", NULL, "a message's 'content' must be a string or a list of text parts");
    size_t len = 0;
    for (const cJSON *part = c->child; part; part = part->next) {
        const cJSON *type = cJSON_GetObjectItemCaseSensitive(part, "type");
        const cJSON *text = cJSON_GetObjectItemCaseSensitive(part, "text");
        if (!cJSON_IsString(type) || strcmp(type->valuestring, "text") || !cJSON_IsString(text))
            return qm_api_fail(e, BAD, INVALID, "messages", NULL, "only text content parts are supported");
        len += strlen(text->valuestring);
    }
    if (!(*out = malloc(len + 1))) return oom(e);
    char *p = *out;
    for (const cJSON *part = c->child; part; part = part->next) {
        const char *text = cJSON_GetObjectItemCaseSensitive(part, "text")->valuestring;
        const size_t k = strlen(text);
        memcpy(p, text, k);
        p += k;
    }
    *p = 0;
    return true;
}

static const char *role_name(qm_chat_role r) {
    return r == QM_CHAT_ROLE_SYSTEM ? "system" : r == QM_CHAT_ROLE_USER ? "user" : "assistant";
}

/* Message i's role: "system" (or "developer"), "user" or "assistant". */
static bool get_role(const cJSON *m, int i, qm_chat_role *role, qm_api_error *e) {
    const cJSON *r = cJSON_GetObjectItemCaseSensitive(m, "role");
    if (!cJSON_IsObject(m) || !cJSON_IsString(r))
        return qm_api_fail(e, BAD, INVALID, "messages", NULL, "message %d: each message needs a string 'role'", i);
    const char *name = r->valuestring;
    if (!strcmp(name, "system") || !strcmp(name, "developer")) *role = QM_CHAT_ROLE_SYSTEM;
    else if (!strcmp(name, "user")) *role = QM_CHAT_ROLE_USER;
    else if (!strcmp(name, "assistant")) *role = QM_CHAT_ROLE_ASSISTANT;
    else
        return qm_api_fail(e, BAD, INVALID, "messages", NULL,
                           "message %d: the role '%.64s' is not supported here (system, developer, user or "
                           "assistant)", i, name);
    return true;
}

/* Message i's role where it stands: an optional system message first, then user and assistant
 * messages in turn, from a user message. */
static bool check_order(const qm_api_request *r, int i, qm_api_error *e) {
    const int first = r->messages[0].role == QM_CHAT_ROLE_SYSTEM;
    const qm_chat_role got = r->messages[i].role;
    const qm_chat_role want = i < first ? QM_CHAT_ROLE_SYSTEM : (i - first) % 2 ? QM_CHAT_ROLE_ASSISTANT
                                                                                 : QM_CHAT_ROLE_USER;
    if (got == want) return true;
    return qm_api_fail(e, BAD, INVALID, "messages", NULL,
                       "message %d: a%s %s message where a%s %s message belongs (an optional system message first, "
                       "then user and assistant messages in turn, from a user message to a user message)",
                       i, got == QM_CHAT_ROLE_ASSISTANT ? "n" : "", role_name(got),
                       want == QM_CHAT_ROLE_ASSISTANT ? "n" : "", role_name(want));
}

/* "messages": the conversation so far, whose next message (the assistant's) is asked for. */
static bool get_messages(const cJSON *j, qm_api_request *r, qm_api_error *e) {
    const cJSON *ms = cJSON_GetObjectItemCaseSensitive(j, "messages");
    if (!cJSON_IsArray(ms) || cJSON_GetArraySize(ms) == 0)
        return qm_api_fail(e, BAD, INVALID, "messages", NULL, "'messages' must be a non-empty list");
    const int n = cJSON_GetArraySize(ms);
    if (n > QM_CHAT_MAX_MESSAGES)
        return qm_api_fail(e, BAD, INVALID, "messages", NULL, "'messages' has %d messages; this server takes at most %d",
                           n, QM_CHAT_MAX_MESSAGES);
    if (!(r->messages = calloc((size_t)n, sizeof *r->messages))) return oom(e);
    size_t bytes = 0;
    for (const cJSON *m = ms->child; m; m = m->next) {
        const int i = r->n_messages;
        char *content = NULL;
        if (!get_role(m, i, &r->messages[i].role, e) || !check_order(r, i, e) || !get_content(m, &content, e))
            return false;
        r->messages[i].content = content;
        r->n_messages++;
        if ((bytes += strlen(content)) > QM_CHAT_MAX_BYTES)
            return qm_api_fail(e, BAD, INVALID, "messages", NULL, "the messages hold more than %u bytes together",
                               QM_CHAT_MAX_BYTES);
    }
    const qm_chat_message *last = &r->messages[n - 1];
    if (last->role != QM_CHAT_ROLE_USER)
        return qm_api_fail(e, BAD, INVALID, "messages", NULL,
                           "the last message is a%s %s message; the conversation must end with a user message (the "
                           "answer is the assistant's next message)",
                           last->role == QM_CHAT_ROLE_ASSISTANT ? "n" : "", role_name(last->role));
    r->system = r->messages[0].role == QM_CHAT_ROLE_SYSTEM ? r->messages[0].content : NULL;
    r->user = last->content;
    return true;
}

bool qm_api_one_turn(const qm_api_request *r) {
    return r->kind == QM_API_CHAT &&
           (r->n_messages == 1 || (r->n_messages == 2 && r->messages[0].role == QM_CHAT_ROLE_SYSTEM));
}

bool qm_api_parse(qm_api_kind kind, const char *body, size_t len, qm_api_request *out, qm_api_error *err) {
    memset(out, 0, sizeof *out);
    out->kind = kind;
    out->temperature = 1.0;
    out->top_p = 1.0;
    cJSON *j = parse_object(body, len, err);
    if (!j) return false;
    bool ok = get_common(j, out, err) && (kind == QM_API_CHAT ? get_messages(j, out, err) : get_prompt(j, out, err));
    cJSON_Delete(j);
    if (!ok) qm_api_request_free(out);
    return ok;
}

void qm_api_request_free(qm_api_request *r) {
    free(r->model);
    free(r->prompt);
    free(r->prompt_ids);
    for (int i = 0; i < r->n_messages; i++) free((char *)r->messages[i].content);
    free(r->messages);
    for (int i = 0; i < r->n_stop; i++) free(r->stop[i]);
    memset(r, 0, sizeof *r);
}

bool qm_api_parse_tokenize(const char *body, size_t len, char **text, qm_api_error *err) {
    *text = NULL;
    cJSON *j = parse_object(body, len, err);
    if (!j) return false;
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(j, "prompt");
    if (!p) p = cJSON_GetObjectItemCaseSensitive(j, "text");
    bool ok = cJSON_IsString(p) ? (*text = dup_str(p->valuestring)) != NULL || oom(err)
                                : qm_api_fail(err, BAD, INVALID, "prompt", NULL, "'prompt' must be a string");
    cJSON_Delete(j);
    return ok;
}

bool qm_api_parse_detokenize(const char *body, size_t len, int **ids, int *n, qm_api_error *err) {
    *ids = NULL;
    *n = 0;
    cJSON *j = parse_object(body, len, err);
    if (!j) return false;
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(j, "tokens");
    bool ok = cJSON_IsArray(t) || qm_api_fail(err, BAD, INVALID, "tokens", NULL, "'tokens' must be a list of token ids");
    if (ok && !(*ids = malloc((size_t)cJSON_GetArraySize(t) * sizeof(int) + 1))) ok = oom(err);
    for (const cJSON *v = ok ? t->child : NULL; v && ok; v = v->next) {
        if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble) || v->valuedouble < 0 ||
            v->valuedouble > 0x7fffffff)
            ok = qm_api_fail(err, BAD, INVALID, "tokens", NULL, "'tokens' must hold integers >= 0");
        else (*ids)[(*n)++] = (int)v->valuedouble;
    }
    cJSON_Delete(j);
    if (!ok) {
        free(*ids);
        *ids = NULL;
        *n = 0;
    }
    return ok;
}
