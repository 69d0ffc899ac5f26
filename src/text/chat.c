#include "text/chat.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/strbuf.h"

#define DS_BOS "<\xEF\xBD\x9C" "begin\xE2\x96\x81of\xE2\x96\x81sentence\xEF\xBD\x9C>" /* <｜begin▁of▁sentence｜> */
#define DS_USER "<\xEF\xBD\x9CUser\xEF\xBD\x9C>"                                      /* <｜User｜> */
#define DS_ASSISTANT "<\xEF\xBD\x9C" "Assistant\xEF\xBD\x9C>"                          /* <｜Assistant｜> */
#define DS_EOS "<\xEF\xBD\x9C" "end\xE2\x96\x81of\xE2\x96\x81sentence\xEF\xBD\x9C>"     /* <｜end▁of▁sentence｜> */

static const char *role_name(qm_chat_role r) {
    return r == QM_CHAT_ROLE_SYSTEM ? "system" : r == QM_CHAT_ROLE_USER ? "user" : "assistant";
}

qm_status qm_chat_check(const qm_chat_message *m, int n, qm_error *err) {
    if (n < 1 || !m) return qm_fail(err, QM_ERR_ARG, "a conversation needs at least one (user) message");
    if (n > QM_CHAT_MAX_MESSAGES)
        return qm_fail(err, QM_ERR_ARG, "the conversation has %d messages, more than %d", n, QM_CHAT_MAX_MESSAGES);
    const int first = m[0].role == QM_CHAT_ROLE_SYSTEM; /* the first user message */
    size_t bytes = 0;
    for (int i = 0; i < n; i++) {
        if (!m[i].content) return qm_fail(err, QM_ERR_ARG, "message %d has no content", i);
        bytes += strlen(m[i].content);
        const qm_chat_role want = (i - first) % 2 ? QM_CHAT_ROLE_ASSISTANT : QM_CHAT_ROLE_USER;
        if (i >= first && m[i].role != want)
            return qm_fail(err, QM_ERR_ARG,
                           "message %d is a%s %s message where a%s %s message belongs (an optional system message "
                           "first, then user and assistant messages in turn, from a user message)",
                           i, m[i].role == QM_CHAT_ROLE_ASSISTANT ? "n" : "", role_name(m[i].role),
                           want == QM_CHAT_ROLE_ASSISTANT ? "n" : "", role_name(want));
    }
    if (m[n - 1].role != QM_CHAT_ROLE_USER)
        return qm_fail(err, QM_ERR_ARG, "the conversation ends with a%s %s message; it must end with a user message",
                       m[n - 1].role == QM_CHAT_ROLE_ASSISTANT ? "n" : "", role_name(m[n - 1].role));
    if (bytes > QM_CHAT_MAX_BYTES)
        return qm_fail(err, QM_ERR_ARG, "the messages hold %zu bytes together, more than %u", bytes,
                       QM_CHAT_MAX_BYTES);
    return QM_OK;
}

/* A prompt being written: the text, and where its plain text lies. */
typedef struct {
    qm_strbuf text;
    qm_chat_span *spans; /* NULL: not asked */
    int n_spans;
} builder;

static void put(builder *b, const char *t, size_t n, bool plain) {
    if (b->text.oom) return;
    if (plain && b->spans) b->spans[b->n_spans++] = (qm_chat_span){b->text.len, n};
    qm_strbuf_add(&b->text, t, n);
}

static void put_template(builder *b, const char *t) { put(b, t, strlen(t), false); }
static void put_text(builder *b, const char *t) { put(b, t, strlen(t), true); }

/* What DeepSeek-R1's template keeps of an assistant message: the text after its last "</think>". */
static const char *after_think(const char *content) {
    const char *p = content, *t;
    while ((t = strstr(p, "</think>"))) p = t + strlen("</think>");
    return p;
}

/* The turns after the system text (m[first..n)), then the assistant's header. */
static void put_turns(builder *b, qm_chat_format format, const qm_chat_message *m, int first, int n) {
    for (int i = first; i < n; i++) {
        const bool user = m[i].role == QM_CHAT_ROLE_USER;
        if (format == QM_CHAT_CHATML) {
            put_template(b, user ? "<|im_start|>user\n" : "<|im_start|>assistant\n");
            put_text(b, m[i].content);
            put_template(b, "<|im_end|>\n");
        } else {
            put_template(b, user ? DS_USER : DS_ASSISTANT);
            put_text(b, user ? m[i].content : after_think(m[i].content));
            if (!user) put_template(b, DS_EOS);
        }
    }
    put_template(b, format == QM_CHAT_CHATML ? "<|im_start|>assistant\n" : DS_ASSISTANT "<think>\n");
}

qm_status qm_chat_render(qm_chat_format format, const qm_chat_message *m, int n, const char *default_system,
                         char **out, size_t *len, qm_chat_span *spans, int *n_spans, qm_error *err) {
    *out = NULL;
    if (len) *len = 0;
    if (n_spans) *n_spans = 0;
    if (format != QM_CHAT_CHATML && format != QM_CHAT_DEEPSEEK_R1)
        return qm_fail(err, QM_ERR_ARG, "no chat format to write the conversation in (%s)", qm_chat_format_name(format));
    qm_status st = qm_chat_check(m, n, err);
    if (st) return st;
    builder b = {.spans = spans};
    const int first = m[0].role == QM_CHAT_ROLE_SYSTEM;
    const char *system = first ? m[0].content : default_system;
    if (format == QM_CHAT_CHATML && system) {
        put_template(&b, "<|im_start|>system\n");
        put_text(&b, system);
        put_template(&b, "<|im_end|>\n");
    } else if (format == QM_CHAT_DEEPSEEK_R1) {
        put_template(&b, DS_BOS);
        if (system) put_text(&b, system);
    }
    put_turns(&b, format, m, first, n);
    const size_t n_text = b.text.len;
    if (!(*out = qm_strbuf_take(&b.text))) return qm_fail(err, QM_ERR_NOMEM, "out of memory writing the chat prompt");
    if (len) *len = n_text;
    if (n_spans) *n_spans = b.n_spans;
    return QM_OK;
}

qm_status qm_chat_append_ids(const qm_tokenizer *tok, const char *text, size_t len, bool special, int **ids, int *n,
                             int *cap, qm_error *err) {
    if (len == 0) return QM_OK;
    int *part = NULL, np = 0;
    qm_status st = qm_tokenize_ex(tok, text, len, special, &part, &np, err);
    if (st) return st;
    if (*n + np > *cap) {
        int c = (*n + np) * 2 + 16;
        int *t = realloc(*ids, (size_t)c * sizeof *t);
        if (!t) {
            free(part);
            return qm_fail(err, QM_ERR_NOMEM, "out of memory tokenizing the chat prompt");
        }
        *ids = t;
        *cap = c;
    }
    memcpy(*ids + *n, part, (size_t)np * sizeof *part);
    *n += np;
    free(part);
    return QM_OK;
}

qm_status qm_chat_ids(const qm_tokenizer *tok, qm_chat_format format, const qm_chat_message *m, int n,
                      const char *default_system, bool messages_special, int **ids, int *n_ids, qm_error *err) {
    *ids = NULL;
    *n_ids = 0;
    if (!tok) return qm_fail(err, QM_ERR_ARG, "the model has no tokenizer");
    if (n < 0 || n > QM_CHAT_MAX_MESSAGES) return qm_chat_check(m, n, err);
    qm_chat_span *spans = malloc(((size_t)n + 1) * sizeof *spans);
    if (!spans) return qm_fail(err, QM_ERR_NOMEM, "out of memory tokenizing the chat prompt");
    char *text = NULL;
    size_t len = 0;
    int n_spans = 0, cap = 0;
    qm_status st = qm_chat_render(format, m, n, default_system, &text, &len, spans, &n_spans, err);
    /* the template's text between the messages' with its special tokens, the messages' as asked */
    size_t at = 0;
    for (int k = 0; !st && k <= n_spans; k++) {
        const size_t end = k < n_spans ? spans[k].at : len;
        st = qm_chat_append_ids(tok, text + at, end - at, true, ids, n_ids, &cap, err);
        if (!st && k < n_spans)
            st = qm_chat_append_ids(tok, text + end, spans[k].len, messages_special, ids, n_ids, &cap, err);
        if (k < n_spans) at = end + spans[k].len;
    }
    free(text);
    free(spans);
    if (st) {
        free(*ids);
        *ids = NULL;
        *n_ids = 0;
    }
    return st;
}

qm_status qm_chat_prompt_system(qm_chat_format format, const char *prompt, char **system, qm_error *err) {
    *system = NULL;
    char *bare = qm_chat_wrap_format(format, "", NULL), *frame = qm_chat_wrap_format(format, "", "\x02");
    qm_status st = bare && frame ? QM_OK : qm_fail(err, QM_ERR_NOMEM, "out of memory reading a chat prompt");
    if (!st && strcmp(prompt, bare)) {
        const size_t a = strcspn(frame, "\x02"), b = strlen(frame) - a - 1, n = strlen(prompt);
        if (n < a + b || strncmp(prompt, frame, a) || strcmp(prompt + n - b, frame + a + 1))
            st = qm_fail(err, QM_ERR_ARG, "not a one-turn %s prompt with an empty user message: \"%.60s\"",
                         qm_chat_format_name(format), prompt);
        else if (!(*system = strndup(prompt + a, n - a - b)))
            st = qm_fail(err, QM_ERR_NOMEM, "out of memory reading a chat prompt");
    }
    free(bare);
    free(frame);
    return st;
}

char *qm_chat_wrap_format(qm_chat_format format, const char *user, const char *system) {
    const qm_chat_message turn = {QM_CHAT_ROLE_USER, user ? user : ""};
    char *out = NULL;
    qm_error err = {0};
    qm_chat_render(format, &turn, 1, system, &out, NULL, NULL, NULL, &err);
    return out;
}

char *qm_chat_wrap(const char *user, const char *system) {
    return qm_chat_wrap_format(QM_CHAT_CHATML, user, system ? system : QM_CHAT_DEFAULT_SYSTEM);
}

qm_chat_format qm_chat_format_detect(const char *t) {
    if (!t) return QM_CHAT_UNKNOWN;
    bool chatml = strstr(t, "<|im_start|>") != NULL;
    bool deepseek = strstr(t, DS_USER) && strstr(t, DS_ASSISTANT);
    if (chatml == deepseek) return QM_CHAT_UNKNOWN;
    return chatml ? QM_CHAT_CHATML : QM_CHAT_DEEPSEEK_R1;
}

const char *qm_chat_format_name(qm_chat_format f) {
    switch (f) {
    case QM_CHAT_CHATML: return "chatml";
    case QM_CHAT_DEEPSEEK_R1: return "deepseek-r1";
    default: return "unknown";
    }
}

qm_status qm_chat_format_parse(const char *name, qm_chat_format *out, qm_error *err) {
    if (name && !strcmp(name, "chatml"))
        *out = QM_CHAT_CHATML;
    else if (name && !strcmp(name, "deepseek-r1"))
        *out = QM_CHAT_DEEPSEEK_R1;
    else
        return qm_fail(err, QM_ERR_ARG, "--chat-format '%s' is not known (expected chatml or deepseek-r1)",
                       name ? name : "");
    return QM_OK;
}

qm_status qm_chat_format_resolve(const char *tmpl, const char *flag, qm_chat_format *out, qm_error *err) {
    if (flag) return qm_chat_format_parse(flag, out, err);
    *out = qm_chat_format_detect(tmpl);
    if (*out != QM_CHAT_UNKNOWN) return QM_OK;
    if (!tmpl)
        return qm_fail(err, QM_ERR_UNSUPPORTED,
                       "the model has no chat template (tokenizer.chat_template); pass --chat-format chatml|deepseek-r1");
    return qm_fail(err, QM_ERR_UNSUPPORTED,
                   "the model's chat template (tokenizer.chat_template, %zu bytes, \"%.40s...\") is neither ChatML nor "
                   "DeepSeek-R1's; pass --chat-format chatml|deepseek-r1",
                   strlen(tmpl), tmpl);
}

const char *qm_chat_default_system(qm_chat_format f) {
    return f == QM_CHAT_CHATML ? QM_CHAT_DEFAULT_SYSTEM : NULL;
}

/* Undoes the escapes of a Jinja string literal (\n, \t, \\, \', \") in s[0..n). */
static char *unescape(const char *s, size_t n) {
    char *out = malloc(n + 1), *p = out;
    if (!out) return NULL;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '\\' && i + 1 < n) {
            char e = s[++i];
            *p++ = e == 'n' ? '\n' : e == 't' ? '\t' : e;
        } else
            *p++ = s[i];
    }
    *p = 0;
    return out;
}

char *qm_chat_template_system(const char *t) {
    static const char open[] = "<|im_start|>system\\n", close[] = "<|im_end|>";
    for (const char *at = t ? strstr(t, open) : NULL; at; at = strstr(at + 1, open)) {
        const char *start = at + strlen(open), *end = strstr(start, close);
        if (!end) return NULL;
        /* A literal runs to <|im_end|> without an unescaped quote (else it is an expression:
         * '<|im_start|>system\n' + messages[0]['content'] + ...). */
        bool literal = end > start;
        for (const char *p = start; p < end && literal; p++) {
            if (*p == '\\' && p + 1 < end)
                p++;
            else if (*p == '\'' || *p == '"')
                literal = false;
        }
        if (literal) return unescape(start, (size_t)(end - start));
    }
    return NULL;
}
