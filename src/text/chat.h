/* Chat formats: wrapping one user turn for generation, and recognising the format of a model's
 * Jinja chat template (tokenizer.chat_template in a GGUF, chat_template in tokenizer_config.json).
 *
 *   ChatML (Qwen2, Qwen2.5, Qwen3): "<|im_start|>system\n{system}<|im_end|>\n"
 *       "<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n"
 *   DeepSeek-R1-Distill (Qwen and Llama distills; fullwidth bars U+FF5C, U+2581 between words):
 *       "<｜begin▁of▁sentence｜>{system}<｜User｜>{user}<｜Assistant｜><think>\n"
 *       (the template writes the bos token itself: do not add another one). */
#ifndef QM_TEXT_CHAT_H
#define QM_TEXT_CHAT_H

#include <qmesh.h>

/* Default system prompt of the Qwen2.5 chat template (Qwen2.5-Coder's too). */
#define QM_CHAT_DEFAULT_SYSTEM "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."

typedef enum {
    QM_CHAT_UNKNOWN = 0,
    QM_CHAT_CHATML,
    QM_CHAT_DEEPSEEK_R1,
} qm_chat_format;

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
