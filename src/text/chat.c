#include "text/chat.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

char *qm_chat_wrap(const char *user, const char *system) {
    static const char fmt[] = "<|im_start|>system\n%s<|im_end|>\n<|im_start|>user\n%s<|im_end|>\n"
                              "<|im_start|>assistant\n";
    if (!system) system = QM_CHAT_DEFAULT_SYSTEM;
    if (!user) user = "";
    size_t n = strlen(fmt) + strlen(system) + strlen(user) + 1;
    char *s = malloc(n);
    if (!s) return NULL;
    snprintf(s, n, fmt, system, user);
    return s;
}
