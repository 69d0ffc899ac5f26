/* OpenAI-style response bodies (JSON text, malloc'd; NULL when out of memory). */
#ifndef QM_SERVER_RESPONSE_H
#define QM_SERVER_RESPONSE_H

#include <stddef.h>

#include "server/jobs.h"
#include "server/request.h"

/* The text of one token for logprobs: its bytes (malloc'd, NUL-terminated; may be part of a
 * character), *len of them; NULL when unknown. */
typedef struct {
    char *(*text)(void *ctx, int id, size_t *len);
    void *ctx;
} qm_token_namer;

/* Tokens with their logprobs, as an answer carries them. */
typedef struct {
    const int *ids;
    const qm_token_logprobs *logprobs;
    int n;
    size_t *offset;               /* completions' text_offset of the first token, advanced past them
                                     (NULL: from 0) */
    const qm_token_namer *names;  /* token texts (NULL: ids as text) */
} qm_resp_logprobs;

/* {"error": {"message", "type", "param", "code"}} */
char *qm_resp_error(const qm_api_error *e);
/* The whole answer to a finished job: a text_completion or a chat.completion, usage included, and
 * the logprobs when asked (token texts from names; NULL: ids as text). */
char *qm_resp_final(const qm_job *j, const char *model, long created, const qm_token_namer *names);
/* One server-sent event "data: {...}\n\n" of a streamed answer: text (may be empty); finish set
 * on the last one, which carries usage too. */
char *qm_resp_chunk(const qm_job *j, const char *model, long created, const char *text, size_t len,
                    bool first, bool last);
/* The same with the logprobs of the tokens whose text it carries (tokens NULL, or its ids NULL: null), in
 * the shapes of the whole answer's: the chunks' lists, one after the other, are the whole answer's. */
char *qm_resp_chunk_logprobs(const qm_job *j, const char *model, long created, const char *text, size_t len,
                             bool first, bool last, const qm_resp_logprobs *tokens);
/* "stop" or "length". */
const char *qm_resp_finish_reason(qm_stop_reason r);
char *qm_resp_models(const char *model, long created);
char *qm_resp_tokens(const int *ids, int n, int max_model_len);
char *qm_resp_text(const char *text);

#endif
