#include "text/chat.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DS_BOS "<\xEF\xBD\x9C" "begin\xE2\x96\x81of\xE2\x96\x81sentence\xEF\xBD\x9C>" /* <｜begin▁of▁sentence｜> */
#define DS_USER "<\xEF\xBD\x9CUser\xEF\xBD\x9C>"                                      /* <｜User｜> */
#define DS_ASSISTANT "<\xEF\xBD\x9C" "Assistant\xEF\xBD\x9C>"                          /* <｜Assistant｜> */

/* Concatenates n strings (NULL ones skipped) into a malloc'd string. */
static char *concat(const char *const *parts, int n) {
    size_t len = 1;
    for (int i = 0; i < n; i++) len += parts[i] ? strlen(parts[i]) : 0;
    char *s = malloc(len), *p = s;
    if (!s) return NULL;
    for (int i = 0; i < n; i++) {
        if (!parts[i]) continue;
        size_t k = strlen(parts[i]);
        memcpy(p, parts[i], k);
        p += k;
    }
    *p = 0;
    return s;
}

char *qm_chat_wrap_format(qm_chat_format format, const char *user, const char *system) {
    if (!user) user = "";
    if (format == QM_CHAT_CHATML) {
        const char *parts[] = {system ? "<|im_start|>system\n" : NULL, system, system ? "<|im_end|>\n" : NULL,
                               "<|im_start|>user\n", user, "<|im_end|>\n<|im_start|>assistant\n"};
        return concat(parts, 6);
    }
    if (format == QM_CHAT_DEEPSEEK_R1) {
        const char *parts[] = {DS_BOS, system, DS_USER, user, DS_ASSISTANT "<think>\n"};
        return concat(parts, 5);
    }
    return NULL;
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
