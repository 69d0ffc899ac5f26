/* OpenAI-style request bodies (JSON) -> the server's request struct, with errors the way the
 * OpenAI API reports them. Knows nothing of the engine: the HTTP layer tokenizes and submits. */
#ifndef QM_SERVER_REQUEST_H
#define QM_SERVER_REQUEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "text/chat.h"

#define QM_API_MAX_STOP 4 /* stop strings at most, as in the OpenAI API */

typedef enum { QM_API_COMPLETION = 0, QM_API_CHAT } qm_api_kind;

/* An error answered as {"error": {"message", "type", "param", "code"}} with HTTP status `status`. */
typedef struct {
    int status;
    char message[512];
    const char *type;  /* "invalid_request_error", "authentication_error", ... */
    const char *param; /* the field at fault, NULL = null */
    const char *code;  /* NULL = null */
} qm_api_error;

/* Fills e; returns false (for `return qm_api_fail(...)` in parsers). */
bool qm_api_fail(qm_api_error *e, int status, const char *type, const char *param, const char *code, const char *fmt,
                 ...) __attribute__((format(printf, 6, 7)));

typedef struct {
    qm_api_kind kind;
    char *model;            /* NULL when not given */
    char *prompt;           /* completion: the prompt text, NULL when given as token ids */
    int *prompt_ids;        /* completion: the prompt as token ids */
    int n_prompt_ids;
    qm_chat_message *messages; /* chat: the conversation (contents owned here, malloc'd): an optional system
                                  message, then user and assistant messages in turn, ending with a user message */
    int n_messages;
    const char *system;     /* chat: the system message's content (in messages), NULL = the template's default */
    const char *user;       /* chat: the last user message's content (in messages) */
    int max_tokens;         /* -1: not given (completion: 16; chat: until the context is full) */
    double temperature;     /* default 1 */
    double top_p;           /* default 1 */
    int top_k;              /* 0 = off (-1 is taken as off too) */
    bool has_seed;
    uint64_t seed;
    char *stop[QM_API_MAX_STOP];
    int n_stop;
    bool stream;
    int logprobs;           /* 0: none; 1 + k: each token's logprob and the k most likely alternatives'
                               (completions: "logprobs": k; chat: "logprobs": true, "top_logprobs": k);
                               streamed too: each chunk carries its tokens' */
    bool ignore_eos;        /* an extension (vLLM's): do not stop at end-of-text */
} qm_api_request;

/* Whether a chat request is one turn (an optional system message and a user message). */
bool qm_api_one_turn(const qm_api_request *r);

/* Parses a JSON body of /v1/completions (kind QM_API_COMPLETION) or /v1/chat/completions.
 * false with *err (status 400) when it is not a request this server takes. */
bool qm_api_parse(qm_api_kind kind, const char *body, size_t len, qm_api_request *out, qm_api_error *err);
void qm_api_request_free(qm_api_request *r);

/* /tokenize {"prompt": TEXT} (or "text") -> *text (malloc'd); /detokenize {"tokens": [ids]} -> *ids. */
bool qm_api_parse_tokenize(const char *body, size_t len, char **text, qm_api_error *err);
bool qm_api_parse_detokenize(const char *body, size_t len, int **ids, int *n, qm_api_error *err);

#endif
