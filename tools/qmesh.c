/* qmesh: the command-line program. Dispatches to one subcommand per file (tools/cmd_*.c). */
#include <stdio.h>
#include <string.h>

#include "cmd.h"
#include "mesh/comm.h"

typedef struct {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
} subcommand;

static const subcommand subcommands[] = {
    {"tokenize", cmd_tokenize, "text on stdin -> token ids"},
    {"detokenize", cmd_detokenize, "token ids on stdin -> text"},
    {"random-model", cmd_random_model, "write a checkpoint with random weights (tiny, qwen2.5-0.5b, qwen2.5-7b)"},
    {"logits", cmd_logits, "float32 logits of an id sequence, as .npy"},
    {"generate", cmd_generate, "generate text from a prompt"},
    {"eval", cmd_eval, "GSM8K evaluation: gsm8k, extract, compare, report"},
    {"bench", cmd_bench, "prefill and decode speed, one JSON line"},
    {"quantize", cmd_quantize, "Hugging Face folder -> Q8_0/Q4_0 GGUF file (for qmesh and llama.cpp)"},
    {"serve", cmd_serve, "OpenAI-compatible HTTP server (completions, chat, streaming) on any mesh"},
};

static void usage(FILE *f) {
    fprintf(f, "qmesh %s: Qwen2-family inference on an R x C device mesh\n\n"
               "usage: qmesh <command> [options]   (qmesh <command> --help for each)\n\ncommands:\n",
            QMESH_VERSION);
    for (size_t i = 0; i < sizeof subcommands / sizeof subcommands[0]; i++)
        fprintf(f, "  %-13s %s\n", subcommands[i].name, subcommands[i].summary);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(argv[1], "--version")) {
        printf("qmesh %s\n", QMESH_VERSION);
        return 0;
    }
    for (size_t i = 0; i < sizeof subcommands / sizeof subcommands[0]; i++)
        if (!strcmp(argv[1], subcommands[i].name)) {
            int rc = subcommands[i].run(argc - 1, argv + 1);
            if (rc == 0) qm_mpi_finalize(); /* after a failure: exit without it (comm.h) */
            return rc;
        }
    fprintf(stderr, "qmesh: unknown command '%s'\n\n", argv[1]);
    usage(stderr);
    return 2;
}
