/* Chat formats: a conversation (or one user turn) as the prompt for the assistant's next message,
 * and recognising the format of a model's Jinja chat template (tokenizer.chat_template in a GGUF,
 * chat_template in tokenizer_config.json).
 *
 *   ChatML (Qwen2, Qwen2.5, Qwen3): "<|im_start|>system\n{system}<|im_end|>\n"
 *       "<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n{assistant}<|im_end|>\n" ...
 *       "<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n"
 *   DeepSeek-R1-Distill (Qwen and Llama distills; fullwidth bars U+FF5C, U+2581 between words):
 *       "<｜begin▁of▁sentence｜>{system}<｜User｜>{user}<｜Assistant｜>{assistant}<｜end▁of▁sentence｜>" ...
 *       "<｜User｜>{user}<｜Assistant｜><think>\n"
 *       (the template writes the bos token itself: do not add another one; an assistant message
 *       keeps only what follows its last "</think>", as the template does). */
#ifndef QM_TEXT_CHAT_H
#define QM_TEXT_CHAT_H

#include <qmesh.h>
#include <stdbool.h>
#include <stddef.h>

#include "text/tokenizer.h"

/* Default system prompt of the Qwen2.5 chat template (Qwen2.5-Coder's too). */
#define QM_CHAT_DEFAULT_SYSTEM "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."

typedef enum {
    QM_CHAT_UNKNOWN = 0,
    QM_CHAT_CHATML,
    QM_CHAT_DEEPSEEK_R1,
} qm_chat_format;

/* A conversation: an optional system message first, then user and assistant messages alternating,
 * from a user message to a user message (the prompt asks for the assistant's next message). */
typedef enum { QM_CHAT_ROLE_SYSTEM = 0, QM_CHAT_ROLE_USER, QM_CHAT_ROLE_ASSISTANT } qm_chat_role;

typedef struct {
    qm_chat_role role;
    const char *content;
} qm_chat_message;

#define QM_CHAT_MAX_MESSAGES 256       /* messages in a conversation at most */
#define QM_CHAT_MAX_BYTES (8u << 20)   /* bytes of all the messages' contents together at most */

/* Whether m[0..n) is a conversation as above, within the limits; QM_ERR_ARG naming the message at
 * fault (counted from 0) otherwise. */
qm_status qm_chat_check(const qm_chat_message *m, int n, qm_error *err);

/* Where a message's text (plain text, not the template's) lies in a rendered prompt. */
typedef struct {
    size_t at, len;
} qm_chat_span;

/* The conversation m[0..n) (checked with qm_chat_check) in `format`, malloc'd into *out (*len
 * bytes, NUL-terminated). default_system: the system text when m has no system message (NULL:
 * none; what qm_chat_default_system or the template says). When spans is not NULL, it gets where
 * each piece of plain text lies, in order (the system text included; n + 1 entries are enough)
 * and *n_spans their count. A one-turn conversation gives qm_chat_wrap_format's prompt. */
qm_status qm_chat_render(qm_chat_format format, const qm_chat_message *m, int n, const char *default_system,
                         char **out, size_t *len, qm_chat_span *spans, int *n_spans, qm_error *err);

/* Appends the ids of text[0..len) (special: its special tokens as such) to *ids, which holds *n
 * of *cap allocated (grown with realloc). */
qm_status qm_chat_append_ids(const qm_tokenizer *tok, const char *text, size_t len, bool special, int **ids, int *n,
                             int *cap, qm_error *err);

/* The conversation as token ids: the template's text tokenized with its special tokens, the
 * messages' text as plain text (so that "<|im_start|>" typed by a user stays text) unless
 * messages_special. A one-turn conversation gives what qm_engine_chat_ids gives. */
qm_status qm_chat_ids(const qm_tokenizer *tok, qm_chat_format format, const qm_chat_message *m, int n,
                      const char *default_system, bool messages_special, int **ids, int *n_ids, qm_error *err);

/* The system text of a one-turn prompt in `format` (as qm_chat_wrap_format writes it, with an
 * empty user message), malloc'd into *system; NULL when it has no system turn (ChatML). The way to
 * learn the default a model's template gives (qm_engine_chat_prompt with an empty user message and
 * no system). QM_ERR_ARG when prompt is not such a prompt. */
qm_status qm_chat_prompt_system(qm_chat_format format, const char *prompt, char **system, qm_error *err);

/* Returns a malloc'd ChatML prompt with a system turn; system NULL = QM_CHAT_DEFAULT_SYSTEM.
 * NULL if out of memory. */
char *qm_chat_wrap(const char *user, const char *system);

/* Wraps one user turn in `format` (see above); system NULL = no system turn (ChatML) or nothing
 * between the bos token and the user turn (DeepSeek-R1). NULL if out of memory or the format is
 * QM_CHAT_UNKNOWN. */
char *qm_chat_wrap_format(qm_chat_format format, const char *user, const char *system);

/* The format of a Jinja chat template: ChatML when it writes "<|im_start|>", DeepSeek-R1 when it
 * writes "<｜User｜>" and "<｜Assistant｜>"; QM_CHAT_UNKNOWN otherwise (or both, or NULL). */
qm_chat_format qm_chat_format_detect(const char *jinja_template);

/* "chatml", "deepseek-r1"; "unknown". */
const char *qm_chat_format_name(qm_chat_format format);
/* The name of --chat-format: "chatml" or "deepseek-r1", else QM_ERR_ARG naming both. */
qm_status qm_chat_format_parse(const char *name, qm_chat_format *out, qm_error *err);
/* The format to use: `flag` (the --chat-format value) when not NULL, else the template's. An
 * unrecognised or missing template without a flag is QM_ERR_UNSUPPORTED asking for --chat-format. */
qm_status qm_chat_format_resolve(const char *jinja_template, const char *flag, qm_chat_format *out,
                                 qm_error *err);

/* The default system prompt of a format: QM_CHAT_DEFAULT_SYSTEM for ChatML, NULL (none) for
 * DeepSeek-R1, whose template has no default. */
const char *qm_chat_default_system(qm_chat_format format);
/* The default system prompt written in a ChatML template (the literal after
 * '<|im_start|>system\n' up to '<|im_end|>', Jinja string escapes undone), malloc'd; NULL when the
 * template has none (Qwen3's) or out of memory. */
char *qm_chat_template_system(const char *jinja_template);

#endif
