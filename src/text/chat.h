/* ChatML, the Qwen chat format. */
#ifndef QM_TEXT_CHAT_H
#define QM_TEXT_CHAT_H

/* Default system prompt of the Qwen2.5 chat template. */
#define QM_CHAT_DEFAULT_SYSTEM "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."

/* Returns a malloc'd string:
 * "<|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n"
 * system NULL = QM_CHAT_DEFAULT_SYSTEM. NULL if out of memory. */
char *qm_chat_wrap(const char *user, const char *system);

#endif
