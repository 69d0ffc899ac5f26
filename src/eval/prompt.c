/* Few-shot prompts for GSM8K (format: shared/data/gsm8k/README.md). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eval/eval.h"
#include "util/strbuf.h"

static void sb_add(qm_strbuf *b, const char *s) { qm_strbuf_add(b, s, strlen(s)); }

qm_status qm_eval_prompt_prefix(qm_eval_prompt_style style, const qm_eval_dataset *shots, int k, char **out,
                                qm_error *err) {
    *out = NULL;
    if (k < 0 || k > (shots ? shots->n : 0))
        return qm_fail(err, QM_ERR_ARG, "%d shots asked for, but only %d examples are available", k,
                       shots ? shots->n : 0);
    qm_strbuf b = {0};
    for (int i = 0; i < k; i++) {
        const qm_eval_problem *p = &shots->items[i];
        if (style == QM_EVAL_PROMPT_COT) {
            if (!p->rationale || !p->answer)
                return free(b.s), qm_fail(err, QM_ERR_FORMAT, "exemplar %d has no rationale or answer", i);
            sb_add(&b, "Q: ");
            sb_add(&b, p->question);
            sb_add(&b, "\nA: ");
            sb_add(&b, p->rationale);
            sb_add(&b, " The answer is ");
            sb_add(&b, p->answer);
            sb_add(&b, ".\n\n");
        } else {
            if (!p->answer)
                return free(b.s), qm_fail(err, QM_ERR_FORMAT, "few-shot problem %d has no answer", p->index + 1);
            sb_add(&b, "Question: ");
            sb_add(&b, p->question);
            sb_add(&b, "\nAnswer: ");
            sb_add(&b, p->answer);
            sb_add(&b, "\n\n");
        }
    }
    *out = qm_strbuf_take(&b);
    return *out ? QM_OK : qm_fail(err, QM_ERR_NOMEM, "out of memory building the few-shot prompt");
}

char *qm_eval_prompt_suffix(qm_eval_prompt_style style, const char *question) {
    qm_strbuf b = {0};
    sb_add(&b, style == QM_EVAL_PROMPT_COT ? "Q: " : "Question: ");
    sb_add(&b, question);
    sb_add(&b, style == QM_EVAL_PROMPT_COT ? "\nA:" : "\nAnswer:");
    return qm_strbuf_take(&b);
}

static const char *const cot_stops[] = {"\n\nQ:"};
static const char *const qa_stops[] = {"\n\nQ:", "Question:"};

const char *const *qm_eval_prompt_stops(qm_eval_prompt_style style, int *n) {
    if (style == QM_EVAL_PROMPT_COT) {
        *n = (int)(sizeof cot_stops / sizeof cot_stops[0]);
        return cot_stops;
    }
    *n = (int)(sizeof qa_stops / sizeof qa_stops[0]);
    return qa_stops;
}

qm_status qm_eval_chat_split(const char *wrapped, const char *prefix, char **shared, char **rest, qm_error *err) {
    static const char user_head[] = "<|im_start|>user\n";
    *shared = *rest = NULL;
    const char *u = strstr(wrapped, user_head);
    if (!u) return qm_fail(err, QM_ERR_FORMAT, "chat template: no \"<|im_start|>user\" header in the wrapped prompt");
    size_t head = (size_t)(u - wrapped) + strlen(user_head), np = strlen(prefix);
    if (strncmp(wrapped + head, prefix, np) != 0)
        return qm_fail(err, QM_ERR_FORMAT, "chat template: the user text does not start with the few-shot prefix");
    size_t ns = head + np, nr = strlen(wrapped) - ns;
    *shared = malloc(ns + 1);
    *rest = malloc(nr + 1);
    if (!*shared || !*rest) {
        free(*shared);
        free(*rest);
        *shared = *rest = NULL;
        return qm_fail(err, QM_ERR_NOMEM, "out of memory splitting the chat prompt");
    }
    memcpy(*shared, wrapped, ns);
    (*shared)[ns] = '\0';
    memcpy(*rest, wrapped + ns, nr + 1);
    return QM_OK;
}
