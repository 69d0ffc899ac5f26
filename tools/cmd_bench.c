/* qmesh bench: prefill and decode speed on a mesh, one JSON line on stdout. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd.h"
#include "membw.h"
#include "util/pool.h"

static const char usage_text[] =
    "usage: qmesh bench -m PATH [--mesh RxC] [--prompt N] [--gen N] [--batch B] [--reps K]\n"
    "\nMeasures prefill (N prompt tokens per sequence) and decode (N generated tokens per sequence,\n"
    "B sequences per row, all rows busy) and prints one JSON object as the last line of stdout.\n"
    "bytes_per_token is the weight bytes a decode step reads (all devices of a row together),\n"
    "so bytes_per_token x decode_tok_s / batch is the weight bandwidth used.\n\noptions:\n"
    "  --prompt N           prompt tokens per sequence (default 128)\n"
    "  --gen N              tokens generated per sequence (default 32)\n"
    "  --reps K             repeat the measurement, report the best (default 1)\n"
    "  --membw              also measure the machine's memory read bandwidth (1 GiB buffer) and\n"
    "                       report roofline_ratio = bytes_per_token x decode_tok_s / bandwidth\n";

int cmd_bench(int argc, char **argv) {
    const char *cmd = "bench";
    long n_prompt = 128, n_gen = 32, reps = 1;
    qm_engine_opts o;
    cli_engine_defaults(&o);
    char mesh[32] = "1x1";
    bool membw = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            printf("%s%s", usage_text, cli_engine_flags_help);
            return 0;
        }
        if (!strcmp(a, "--membw")) {
            membw = true;
            continue;
        }
        int r = cli_engine_flag(cmd, argc, argv, &i, &o, mesh, sizeof mesh);
        if (r < 0) return 2;
        if (r) continue;
        if (i + 1 >= argc) return cli_usage_error(cmd, "unknown or incomplete option '%s'", a);
        const char *v = argv[++i];
        if (!strcmp(a, "--prompt")) {
            if (!cli_parse_int(v, 1, 1 << 20, &n_prompt)) return cli_usage_error(cmd, "--prompt needs an integer >= 1");
        } else if (!strcmp(a, "--gen")) {
            if (!cli_parse_int(v, 1, 1 << 20, &n_gen)) return cli_usage_error(cmd, "--gen needs an integer >= 1");
        } else if (!strcmp(a, "--reps")) {
            if (!cli_parse_int(v, 1, 100, &reps)) return cli_usage_error(cmd, "--reps needs an integer in [1, 100]");
        } else
            return cli_usage_error(cmd, "unknown option '%s'", a);
    }
    if (!o.model_dir) return cli_usage_error(cmd, "-m PATH (a GGUF file or a model folder) is required");
    cli_engine_finalize(&o);
    if (o.max_context == 0) o.max_context = (int)(n_prompt + n_gen + 1);
    o.quiet = true;
    qm_error err = {0};
    qm_engine *e = NULL;
    if (qm_engine_open(&o, &e, &err)) return cli_error(cmd, &err);
    const qm_config *cfg = qm_engine_config(e);
    int rows = o.rows, B = o.batch, n_seq = rows * B, rc = 0;
    /* Distinct prompts (deterministic ids spread over the vocabulary). */
    int *ids = malloc((size_t)n_seq * (size_t)n_prompt * sizeof(int));
    qm_gen_request *reqs = calloc((size_t)n_seq, sizeof *reqs);
    if (!ids || !reqs) {
        qm_fail(&err, QM_ERR_NOMEM, "out of memory");
        rc = cli_error(cmd, &err);
        goto done;
    }
    uint64_t x = 12345;
    int id_range = cfg->vocab_size < 150000 ? cfg->vocab_size : 150000;
    for (long i = 0; i < n_seq * n_prompt; i++) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        ids[i] = (int)((x >> 33) % (uint64_t)id_range);
    }
    double best_prefill = 0, best_decode = 0, best_comm = 0;
    /* Warm-up (untimed): weights paged in from disk, caches and threads started. */
    for (int s = 0; s < n_seq; s++)
        reqs[s] = (qm_gen_request){.prompt = ids + (size_t)s * n_prompt, .n_prompt = (int)n_prompt,
                                   .max_new_tokens = 1, .stop_at_eos = false};
    if (qm_engine_generate(e, reqs, n_seq, NULL, NULL, &err)) {
        rc = cli_error(cmd, &err);
        goto done;
    }
    for (long rep = 0; rep < reps; rep++) {
        /* prefill: max_new_tokens 1 measures the prompt pass (plus one sampled token) */
        for (int s = 0; s < n_seq; s++)
            reqs[s] = (qm_gen_request){.prompt = ids + (size_t)s * n_prompt, .n_prompt = (int)n_prompt,
                                       .max_new_tokens = 1, .stop_at_eos = false};
        qm_gen_stats a, b;
        qm_engine_info ib;
        qm_engine_get_info(e, &ib);
        if (qm_engine_generate(e, reqs, n_seq, NULL, &a, &err)) {
            rc = cli_error(cmd, &err);
            goto done;
        }
        qm_engine_info i0;
        qm_engine_get_info(e, &i0);
        for (int s = 0; s < n_seq; s++) reqs[s].max_new_tokens = (int)n_gen + 1;
        if (qm_engine_generate(e, reqs, n_seq, NULL, &b, &err)) {
            rc = cli_error(cmd, &err);
            goto done;
        }
        qm_engine_info i1;
        qm_engine_get_info(e, &i1);
        double prefill = (double)a.prefill_tokens / a.wall_s;
        /* decode time = second run minus its prefill part (the first run's time) */
        double dt = b.wall_s - a.wall_s;
        double decode = dt > 0 ? (double)(b.gen_tokens - a.gen_tokens) / dt : 0;
        double comm = (b.gen_tokens - a.gen_tokens) > 0
                          ? ((i1.comm_s - i0.comm_s) - (i0.comm_s - ib.comm_s)) /
                                ((double)(b.gen_tokens - a.gen_tokens) / n_seq)
                          : 0;
        if (prefill > best_prefill) best_prefill = prefill;
        if (decode > best_decode) {
            best_decode = decode;
            best_comm = comm;
        }
    }
    if (qm_engine_is_output_rank(e)) {
        qm_engine_info info;
        qm_engine_get_info(e, &info);
        printf("{\"mesh\":\"%s\",\"backend\":\"%s\",\"batch\":%d,\"isa\":\"%s\",\"threads_per_device\":%d,"
               "\"prompt\":%ld,\"gen\":%ld,\"prefill_tok_s\":%.2f,\"decode_tok_s\":%.3f,"
               "\"decode_tok_s_per_seq\":%.3f,\"bytes_per_token\":%zu,\"weight_bytes_total\":%zu,"
               "\"device_weight_bytes_max\":%zu,\"device_weight_bytes\":[",
               mesh, o.backend, B, info.isa, info.team_threads, n_prompt, n_gen, best_prefill, best_decode,
               best_decode / n_seq, info.weight_bytes_total, info.weight_bytes_total, info.device_weight_bytes_max);
        for (int c = 0; c < o.cols && c < 64; c++) printf("%s%zu", c ? "," : "", info.device_weight_bytes[c]);
        printf("],\"device_copied_bytes_max\":%zu,\"device_shared_block_bytes_max\":%zu,\"activations\":\"%s\","
               "\"comm_ms_per_token\":%.3f,\"load_s\":%.3f,\"rss_bytes\":%zu",
               info.device_copied_bytes_max, info.device_shared_block_bytes_max, o.act_q8 ? "q8" : "f32",
               best_comm * 1e3, info.load_s, qm_resident_bytes());
        if (membw) {
            double bw = qm_measure_read_bandwidth(o.threads > 0 ? o.threads : qm_cpu_count(), (size_t)1 << 30);
            printf(",\"mem_read_gb_s\":%.2f,\"roofline_ratio\":%.3f", bw,
                   bw > 0 ? info.weight_bytes_total * (best_decode / n_seq) / (bw * 1e9) : 0.0);
        }
        printf("}\n");
    }
done:
    free(ids);
    free(reqs);
    qm_engine_close(e);
    return rc;
}
