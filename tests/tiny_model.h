/* A tiny random Qwen2 checkpoint with the Qwen2.5 tokenizer's files, for the tests that open an
 * engine on one. */
#ifndef QM_TESTS_TINY_MODEL_H
#define QM_TESTS_TINY_MODEL_H

#include <stdint.h>
#include <stdio.h>
#include <sys/stat.h>

#include "io/fileutil.h"
#include "io/random_model.h"

/* The "tiny" preset in bf16 (seed `seed`) written to the new folder `model`, with tokenizer.json
 * and tokenizer_config.json copied from the folder `tokenizer`; 0, or -1. */
static inline int tiny_model_write(const char *model, const char *tokenizer, uint64_t seed) {
    qm_error err = {0};
    qm_config cfg;
    if (!qm_random_preset("tiny", &cfg) || mkdir(model, 0755) != 0) return -1;
    qm_random_opts ro = {.seed = seed, .dtype = QM_DT_BF16, .shards = 1};
    if (qm_random_model_write(&cfg, model, &ro, &err) != QM_OK) return -1;
    const char *copy[] = {"tokenizer.json", "tokenizer_config.json"};
    for (int i = 0; i < 2; i++) {
        char src[512], dst[512];
        snprintf(src, sizeof src, "%s/%s", tokenizer, copy[i]);
        snprintf(dst, sizeof dst, "%s/%s", model, copy[i]);
        if (qm_copy_file(src, dst, &err) != QM_OK) return -1;
    }
    return 0;
}

#endif
