#include <stdio.h>
#include <string.h>

#include "cmd.h"
#include "mesh/comm.h"
#include "text/chat.h"

const char cli_engine_flags_help[] =
    "  -m, --model PATH     a GGUF file (FILE.gguf), or a Hugging Face model folder (config.json,\n"
    "                       *.safetensors, tokenizer.json)\n"
    "  --mesh RxC           device mesh: R replicas x C tensor shards (default 1x1)\n"
    "  --backend B          threads (default) or mpi (one rank per device, under mpirun)\n"
    "  --threads N          CPU threads in all (default: all cores)\n"
    "  --isa NAME           kernels: auto (default), avx512vnni, avx512, avx2, scalar\n"
    "  --pin                pin each device's threads, one per allowed CPU in device order (MPI ranks\n"
    "                       on one machine take their own CPUs, from their local rank)\n"
    "  --huge-pages M       auto (default), on or off: copy the weights at load into transparent huge\n"
    "                       pages (2 MB) instead of reading them in place from the file's mapping:\n"
    "                       fewer TLB misses, faster decode; each replica then holds its own copy,\n"
    "                       so auto turns it on where the mesh has one replica and the kernel has THP\n"
    "  --repack M           auto (default), on or off: rewrite the layers' Q4_0 and Q5_0 matrices at\n"
    "                       load (the same logits, bit for bit). on: as Q8_0 blocks of the same values\n"
    "                       (34 bytes a block of 32 instead of 18 or 22), which the exact mode's AVX2\n"
    "                       kernels run faster. auto: that in the exact mode with AVX2 kernels; in the\n"
    "                       fast mode (--activations q8) with AVX2 or AVX-512 kernels, the q, k, v, gate\n"
    "                       and up matrices' rows interleaved 8 at a time (the same bytes; Q4_K's too\n"
    "                       with AVX2). off: neither\n"
    "  --ctx N              KV cache positions per sequence (default 4096, at most the model's)\n"
    "  --step-tokens N      tokens per forward step (prefill chunk, default 128)\n"
    "  --batch B            sequences in flight per mesh row (default 1; logits --ids-file: all)\n"
    "  --activations A      f32 (default: exact, f32 on exactly dequantized weights) or q8 (fast:\n"
    "                       8-bit activations, integer dot products against quantized weights;\n"
    "                       still the same bits on every mesh and batch)\n"
    "  --full-head          exact mode, greedy decoding: compute every logit of the output head\n"
    "                       (default: an 8-bit pass with a rigorous error bound picks the rows that\n"
    "                       can hold the largest logit, and only those are computed exactly: the\n"
    "                       same tokens for less time; Q8_0, Q4_0, Q5_0 and Q6_K heads, and f32,\n"
    "                       f16 and bf16 heads through a Q8_0 copy made at load: one replica, steps\n"
    "                       of one sequence)\n"
    "  --chat-format F      chatml or deepseek-r1 (default: from the GGUF's chat template)\n"
    "  --comm-timeout S     MPI: a collective whose peers stay silent S seconds (a host down, a link\n"
    "                       cut) ends the run with an error (default 60; 0: wait for ever)\n";

void cli_engine_defaults(qm_engine_opts *o) {
    memset(o, 0, sizeof *o);
    o->rows = o->cols = 1;
    o->backend = NULL; /* cli_engine_finalize picks one */
    o->batch = 1;
}

const char *cli_default_backend(void) { return qm_mpi_launched_size() > 1 ? "mpi" : "threads"; }

void cli_engine_finalize(qm_engine_opts *o) {
    if (!o->backend) o->backend = cli_default_backend();
}

static const char *value(const char *cmd, int argc, char **argv, int *i) {
    if (*i + 1 >= argc) {
        cli_usage_error(cmd, "%s needs a value", argv[*i]);
        return NULL;
    }
    return argv[++*i];
}

/* A flag's value auto, on or off as 0, 1 or -1 (v NULL: the value was missing, already said). */
static int auto_on_off(const char *cmd, const char *flag, const char *v, int *dst) {
    if (!v) return -1;
    if (strcmp(v, "auto") && strcmp(v, "on") && strcmp(v, "off")) {
        cli_usage_error(cmd, "unknown %s '%s': expected auto, on or off", flag, v);
        return -1;
    }
    *dst = !strcmp(v, "on") ? 1 : !strcmp(v, "off") ? -1 : 0;
    return 1;
}

int cli_engine_flag(const char *cmd, int argc, char **argv, int *i, qm_engine_opts *o, char *mesh_str, size_t mesh_cap) {
    const char *a = argv[*i], *v;
    long n;
    if (!strcmp(a, "-m") || !strcmp(a, "--model")) {
        if (!(v = value(cmd, argc, argv, i))) return -1;
        o->model_dir = v;
        return 1;
    }
    if (!strcmp(a, "--mesh")) {
        qm_error err = {0};
        if (!(v = value(cmd, argc, argv, i))) return -1;
        if (!cli_parse_mesh(v, &o->rows, &o->cols, &err)) {
            cli_usage_error(cmd, "%s", err.msg);
            return -1;
        }
        if (mesh_str) snprintf(mesh_str, mesh_cap, "%dx%d", o->rows, o->cols);
        return 1;
    }
    if (!strcmp(a, "--backend")) {
        if (!(v = value(cmd, argc, argv, i))) return -1;
        if (strcmp(v, "threads") && strcmp(v, "mpi")) {
            cli_usage_error(cmd, "unknown backend '%s': expected threads or mpi", v);
            return -1;
        }
        o->backend = v;
        return 1;
    }
    if (!strcmp(a, "--activations")) {
        if (!(v = value(cmd, argc, argv, i))) return -1;
        if (strcmp(v, "f32") && strcmp(v, "q8")) {
            cli_usage_error(cmd, "unknown --activations '%s': expected f32 or q8", v);
            return -1;
        }
        o->act_q8 = !strcmp(v, "q8");
        return 1;
    }
    if (!strcmp(a, "--chat-format")) {
        qm_chat_format f;
        qm_error err = {0};
        if (!(v = value(cmd, argc, argv, i))) return -1;
        if (qm_chat_format_parse(v, &f, &err)) {
            cli_usage_error(cmd, "%s", err.msg);
            return -1;
        }
        o->chat_format = v;
        return 1;
    }
    if (!strcmp(a, "--huge-pages")) return auto_on_off(cmd, a, value(cmd, argc, argv, i), &o->huge_pages);
    if (!strcmp(a, "--repack")) return auto_on_off(cmd, a, value(cmd, argc, argv, i), &o->repack);
    if (!strcmp(a, "--full-head")) {
        o->full_head = true;
        return 1;
    }
    if (!strcmp(a, "--pin")) {
        o->pin_threads = true;
        return 1;
    }
    if (!strcmp(a, "--isa")) {
        if (!(v = value(cmd, argc, argv, i))) return -1;
        o->isa = v;
        return 1;
    }
    struct {
        const char *flag;
        int *dst;
        long min, max;
    } ints[] = {
        {"--threads", &o->threads, 1, 4096},
        {"--ctx", &o->max_context, 2, 1 << 20},
        {"--batch", &o->batch, 1, 4096},
        {"--step-tokens", &o->max_step_tokens, 1, 8192},
        {"--comm-timeout", &o->comm_timeout_s, 0, 86400},
    };
    for (size_t k = 0; k < sizeof ints / sizeof ints[0]; k++) {
        if (strcmp(a, ints[k].flag)) continue;
        if (!(v = value(cmd, argc, argv, i))) return -1;
        if (!cli_parse_int(v, ints[k].min, ints[k].max, &n)) {
            cli_usage_error(cmd, "%s needs an integer in [%ld, %ld], not '%s'", a, ints[k].min, ints[k].max, v);
            return -1;
        }
        *ints[k].dst = (int)n;
        if (ints[k].dst == &o->comm_timeout_s && n == 0) o->comm_timeout_s = -1; /* 0: no limit */
        return 1;
    }
    return 0;
}

int cli_subcommand_flag(const char *cmd, const char *usage, int argc, char **argv, int *i, qm_engine_opts *o,
                        char *mesh_str, size_t mesh_cap) {
    if (!strcmp(argv[*i], "-h") || !strcmp(argv[*i], "--help")) {
        printf("%s%s", usage, cli_engine_flags_help);
        return CLI_FLAG_HELP;
    }
    return cli_engine_flag(cmd, argc, argv, i, o, mesh_str, mesh_cap);
}
