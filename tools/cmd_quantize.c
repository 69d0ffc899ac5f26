/* qmesh quantize: a Hugging Face Qwen2 folder -> a Q8_0, Q4_0, BF16, F16 or F32 GGUF file (io/quantize.h). */
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "cmd.h"
#include "io/quantize.h"
#include "text/tokenizer.h"

static const char *CMD = "quantize";

static void usage(FILE *f) {
    fprintf(f,
            "usage: qmesh quantize -m HF_DIR --type q8_0|q4_0|bf16|f16|f32 --out FILE.gguf [--force]\n\n"
            "Converts a Hugging Face Qwen2 safetensors checkpoint (config.json, model.safetensors or shards,\n"
            "tokenizer.json, tokenizer_config.json) into one GGUF file that qmesh (-m FILE.gguf) and llama.cpp\n"
            "load: the qwen2.* metadata and tokenizer keys of llama.cpp's convert_hf_to_gguf.py, tensors under\n"
            "GGUF names. Weights are streamed a few rows at a time, so any model size fits in memory.\n\n"
            "  -m, --model DIR   the Hugging Face model folder (bf16, f16 or f32 weights)\n"
            "  --type T          q8_0 or q4_0: every 2-D weight matrix whose rows are a multiple of 32 long,\n"
            "                    token_embd and output included (llama-quantize would keep those two at\n"
            "                    Q8_0/Q6_K in its mixed modes; this converter does not); norms and biases\n"
            "                    stay f32; a matrix whose rows are not a multiple of 32 keeps f16/f32.\n"
            "                    bf16, f16 or f32: every 2-D matrix in that type, unquantized (the same\n"
            "                    bits when it is the checkpoint's type, else rounded to nearest even):\n"
            "                    the same weights for llama.cpp as qmesh runs from the folder\n"
            "  --out FILE        the GGUF to write (appears only when complete; name it *.gguf for qmesh -m)\n"
            "  --force           replace an existing FILE\n\n"
            "Progress goes to stderr; the last line of stdout is one JSON object:\n"
            "  {\"tensors\": N, \"quantized\": N, \"params\": N, \"bytes\": N, \"seconds\": S,\n"
            "   \"type\": \"q8_0\", \"out\": \"FILE\"}   (bytes: the file's size)\n");
}

typedef struct {
    int last_pct;
} progress_state;

#define PROGRESS_MIN_BYTES 100000000ull /* smaller files are done before a progress line helps */

static void progress(void *ctx, const qm_quantize_progress *p) {
    progress_state *ps = ctx;
    if (p->bytes_total < PROGRESS_MIN_BYTES) return;
    int pct = (int)(p->bytes_done * 100 / p->bytes_total);
    if (pct / 5 > ps->last_pct / 5) {
        fprintf(stderr, "qmesh quantize: %3d%% (%.2f of %.2f GB, tensor %d of %d: %s)\n", pct, p->bytes_done / 1e9,
                p->bytes_total / 1e9, p->tensor + 1, p->n_tensors, p->name);
        ps->last_pct = pct;
    }
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* s as a JSON string body (quotes, backslashes and control characters escaped). */
static void print_json_str(const char *s) {
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\') printf("\\%c", *p);
        else if (*p < 0x20) printf("\\u%04x", *p);
        else putchar(*p);
    }
}

/* The --type names; QM_DT_COUNT for another. */
static qm_dtype type_of(const char *name) {
    static const struct {
        const char *name;
        qm_dtype dt;
    } types[] = {{"q8_0", QM_DT_Q8_0}, {"q4_0", QM_DT_Q4_0}, {"bf16", QM_DT_BF16}, {"f16", QM_DT_F16}, {"f32", QM_DT_F32}};
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
        if (!strcmp(name, types[i].name)) return types[i].dt;
    return QM_DT_COUNT;
}

/* Parses the flags; returns -1 to go on, else the exit code (0 after --help, 2 on bad usage). */
static int parse(int argc, char **argv, const char **model, const char **type, const char **out, bool *force) {
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--force")) {
            *force = true;
        } else if (!strcmp(a, "-m") || !strcmp(a, "--model") || !strcmp(a, "--type") || !strcmp(a, "--out")) {
            if (i + 1 >= argc) return cli_usage_error(CMD, "%s needs a value", a);
            const char *v = argv[++i];
            if (!strcmp(a, "--type")) *type = v;
            else if (!strcmp(a, "--out")) *out = v;
            else *model = v;
        } else {
            return cli_usage_error(CMD, "unknown argument '%s'", a);
        }
    }
    if (!*model) return cli_usage_error(CMD, "-m HF_DIR is required");
    if (!*type) return cli_usage_error(CMD, "--type q8_0|q4_0|bf16|f16|f32 is required");
    if (type_of(*type) == QM_DT_COUNT)
        return cli_usage_error(CMD, "--type '%s': expected q8_0, q4_0, bf16, f16 or f32", *type);
    if (!*out) return cli_usage_error(CMD, "--out FILE.gguf is required");
    return -1;
}

int cmd_quantize(int argc, char **argv) {
    const char *model = NULL, *type_s = NULL, *out = NULL;
    bool force = false;
    int rc = parse(argc, argv, &model, &type_s, &out, &force);
    if (rc >= 0) return rc;
    qm_dtype type = type_of(type_s);

    qm_error err = {0};
    struct stat sb;
    if (stat(out, &sb) == 0 && !force) {
        qm_fail(&err, QM_ERR_IO, "--out %s already exists; pass --force to replace it", out);
        return cli_error(CMD, &err);
    }
    double t0 = now_s();
    progress_state ps = {.last_pct = 0};
    qm_quantize_opts opts = {.tokenizer_metadata = qm_tokenizer_gguf_metadata, .progress = progress,
                             .progress_ctx = &ps};
    qm_quantize_summary sum;
    if (qm_quantize_model(model, type, out, &opts, &sum, &err)) return cli_error(CMD, &err);
    double secs = now_s() - t0;
    fprintf(stderr, "qmesh quantize: wrote %s (%s, %d tensors, %d of them %s, %.1f MB) in %.1f s\n", out, model,
            sum.n_tensors, sum.n_quantized, qm_dtype_name(type), sum.file_bytes / 1e6, secs);
    printf("{\"tensors\": %d, \"quantized\": %d, \"params\": %llu, \"bytes\": %llu, \"seconds\": %.3f, "
           "\"type\": \"%s\", \"out\": \"",
           sum.n_tensors, sum.n_quantized, (unsigned long long)sum.n_params, (unsigned long long)sum.file_bytes, secs,
           type_s);
    print_json_str(out);
    printf("\"}\n");
    return 0;
}
