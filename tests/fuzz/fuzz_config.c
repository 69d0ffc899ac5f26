/* libFuzzer entry point for config.json parsing. The bytes become a NUL-terminated string (cut at a
 * NUL byte inside, as reading a file would leave it) and go through qm_config_parse; an accepted
 * config must then pass qm_config_validate again and hold values inside the bounds config.h promises.
 * Seeds: corpus/config/ (Qwen2.5-like configs, rope blocks, eos lists, broken variants). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "io/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *json = malloc(size + 1);
    if (!json) return 0;
    memcpy(json, data, size);
    json[size] = 0;
    qm_config c;
    qm_error err;
    if (qm_config_parse(json, "fuzz/config.json", &c, &err) == QM_OK) {
        if (qm_config_validate(&c, NULL, &err) != QM_OK) abort();
        if (c.vocab_size < 1 || c.vocab_size > QM_CONFIG_MAX_VOCAB || c.hidden_size < 1 ||
            c.hidden_size > QM_CONFIG_MAX_WIDTH || c.num_hidden_layers < 1 ||
            c.num_hidden_layers > QM_CONFIG_MAX_LAYERS || c.num_attention_heads < 1 ||
            c.num_key_value_heads < 1 || c.num_attention_heads % c.num_key_value_heads || c.head_dim < 1 ||
            c.head_dim > QM_CONFIG_MAX_HEAD_DIM || c.n_eos < 0 || c.n_eos > QM_MAX_EOS ||
            memchr(c.torch_dtype, 0, sizeof c.torch_dtype) == NULL)
            abort();
    }
    free(json);
    return 0;
}
