/* qmesh random-model: a Hugging Face Qwen2 folder with random weights and the Qwen2.5 tokenizer. */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cmd.h"
#include "io/config.h"
#include "io/fileutil.h"
#include "io/random_model.h"

static const char *CMD = "random-model";

static void usage(FILE *f) {
    fprintf(f,
            "usage: qmesh random-model (--preset NAME | --config FILE) --out DIR [options]\n\n"
            "Writes a Hugging Face Qwen2 model folder with random weights: config.json, model.safetensors\n"
            "(or N shards and model.safetensors.index.json), tokenizer.json, tokenizer_config.json.\n\n"
            "  --preset NAME     tiny (~20 MB), qwen2.5-0.5b (~1 GB), qwen2.5-7b (~15 GB) in bf16\n"
            "  --config FILE     shapes from a config.json instead of a preset\n"
            "  --out DIR         output folder (created; must be empty or absent unless --force)\n"
            "  --seed S          weights are a function of the seed only (default 0)\n"
            "  --dtype T         bf16 (default) or f32\n"
            "  --shards N        write N shard files and an index (default 1)\n"
            "  --tokenizer DIR   folder with tokenizer.json and tokenizer_config.json\n"
            "                    (default: $QMESH_DATA/tokenizers/qwen2.5, else shared/data next to the build)\n"
            "  --force           write into a non-empty --out, replacing earlier weights\n");
}

static bool has_tokenizer(const char *dir) {
    char p[PATH_MAX + 32];
    snprintf(p, sizeof p, "%s/tokenizer.json", dir);
    return access(p, R_OK) == 0;
}

/* The Qwen2.5 tokenizer folder: $QMESH_DATA, then shared/data relative to the program and the cwd. */
static bool find_tokenizer(char *out, size_t cap, char *tried, size_t tried_cap) {
    char cands[4][PATH_MAX];
    int n = 0;
    const char *env = getenv("QMESH_DATA");
    if (env && *env) snprintf(cands[n++], PATH_MAX, "%.*s", PATH_MAX - 1, env);
    char exe[PATH_MAX];
    ssize_t len = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (len > 0) {
        exe[len] = '\0';
        char *slash = strrchr(exe, '/');
        if (slash) *slash = '\0';
        snprintf(cands[n++], PATH_MAX, "%.*s/../../shared/data", PATH_MAX - 32, exe);
        snprintf(cands[n++], PATH_MAX, "%.*s/../shared/data", PATH_MAX - 32, exe);
    }
    snprintf(cands[n++], PATH_MAX, "../shared/data");
    size_t k = 0;
    tried[0] = '\0';
    for (int i = 0; i < n; i++) {
        snprintf(out, cap, "%.*s/tokenizers/qwen2.5", PATH_MAX - 32, cands[i]);
        if (has_tokenizer(out)) return true;
        if (k < tried_cap) k += (size_t)snprintf(tried + k, tried_cap - k, "%s%s", i ? ", " : "", out);
    }
    return false;
}

static int mkdir_p(const char *dir) {
    char p[PATH_MAX];
    snprintf(p, sizeof p, "%s", dir);
    for (char *s = p + 1; *s; s++) {
        if (*s != '/') continue;
        *s = '\0';
        if (mkdir(p, 0755) != 0 && errno != EEXIST) return -1;
        *s = '/';
    }
    if (mkdir(p, 0755) != 0 && errno != EEXIST) return -1;
    struct stat sb;
    return (stat(p, &sb) == 0 && S_ISDIR(sb.st_mode)) ? 0 : -1;
}

/* 1 if dir holds anything, 0 if empty or absent, -1 if it is not a folder. */
static int dir_nonempty(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return errno == ENOENT ? 0 : -1;
    struct dirent *e;
    int any = 0;
    while (!any && (e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) any = 1;
    closedir(d);
    return any;
}

/* With --force: earlier weights would mix with the new ones (model.safetensors wins over shards). */
static void remove_old_weights(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    char p[PATH_MAX + 300];
    while ((e = readdir(d))) {
        const char *n = e->d_name;
        size_t len = strlen(n);
        bool shard = !strncmp(n, "model-", 6) && len > 12 && !strcmp(n + len - 12, ".safetensors");
        if (shard || !strcmp(n, "model.safetensors") || !strcmp(n, "model.safetensors.index.json")) {
            snprintf(p, sizeof p, "%s/%s", dir, n);
            unlink(p);
        }
    }
    closedir(d);
}

typedef struct {
    int last_pct;
    bool enabled;
} progress_state;

static void progress(void *ctx, uint64_t done, uint64_t total) {
    progress_state *ps = ctx;
    if (!ps->enabled || !total) return;
    int pct = (int)(done * 100 / total);
    if (pct / 5 > ps->last_pct / 5 || done == total) {
        if (pct != ps->last_pct)
            fprintf(stderr, "qmesh random-model: %3d%% (%.2f of %.2f GB)\n", pct, done / 1e9, total / 1e9);
        ps->last_pct = pct;
    }
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

typedef struct {
    const char *preset, *config, *out, *tok, *dtype;
    long seed, shards;
    bool force;
} rm_args;

/* 0: run; 1: --help printed; 2: a usage error (printed). */
static int parse_args(int argc, char **argv, rm_args *a) {
    *a = (rm_args){.dtype = "bf16", .shards = 1};
    for (int i = 1; i < argc; i++) {
        const char *f = argv[i];
        if (!strcmp(f, "--help") || !strcmp(f, "-h")) {
            usage(stdout);
            return 1;
        } else if (!strcmp(f, "--force")) {
            a->force = true;
        } else if (!strcmp(f, "--preset") || !strcmp(f, "--config") || !strcmp(f, "--out") ||
                   !strcmp(f, "--seed") || !strcmp(f, "--dtype") || !strcmp(f, "--shards") ||
                   !strcmp(f, "--tokenizer")) {
            if (i + 1 >= argc) return cli_usage_error(CMD, "%s needs a value", f);
            const char *v = argv[++i];
            if (!strcmp(f, "--preset")) a->preset = v;
            else if (!strcmp(f, "--config")) a->config = v;
            else if (!strcmp(f, "--out")) a->out = v;
            else if (!strcmp(f, "--tokenizer")) a->tok = v;
            else if (!strcmp(f, "--dtype")) a->dtype = v;
            else if (!strcmp(f, "--seed")) {
                if (!cli_parse_int(v, 0, LONG_MAX, &a->seed))
                    return cli_usage_error(CMD, "--seed '%s': expected a non-negative integer", v);
            } else if (!cli_parse_int(v, 1, 99999, &a->shards)) {
                return cli_usage_error(CMD, "--shards '%s': expected an integer from 1 to 99999", v);
            }
        } else {
            return cli_usage_error(CMD, "unknown argument '%s'", f);
        }
    }
    if (!a->preset == !a->config) return cli_usage_error(CMD, "give exactly one of --preset NAME and --config FILE");
    if (!a->out) return cli_usage_error(CMD, "--out DIR is required");
    if (strcmp(a->dtype, "bf16") && strcmp(a->dtype, "f32"))
        return cli_usage_error(CMD, "--dtype '%s': expected bf16 or f32", a->dtype);
    return 0;
}

/* The folder holding tokenizer.json: --tokenizer, else the shared data found near us. */
static qm_status locate_tokenizer(const char *tok, char *dir, size_t size, qm_error *err) {
    char tried[800];
    if (tok) {
        snprintf(dir, size, "%s", tok);
        return has_tokenizer(dir) ? QM_OK : qm_fail(err, QM_ERR_IO, "--tokenizer %s: no tokenizer.json there", tok);
    }
    if (find_tokenizer(dir, size, tried, sizeof tried)) return QM_OK;
    return qm_fail(err, QM_ERR_IO,
                   "cannot find the Qwen2.5 tokenizer (tokenizer.json) in $QMESH_DATA/tokenizers/qwen2.5 or shared/data "
                   "near the program or the current folder (tried %.700s); set QMESH_DATA or pass --tokenizer DIR",
                   tried);
}

/* --out: absent or empty, or (--force) emptied of old weights; created. */
static qm_status prepare_out(const char *out, bool force, qm_error *err) {
    const int ne = dir_nonempty(out);
    if (ne < 0) return qm_fail(err, QM_ERR_IO, "--out %s: %s", out, strerror(errno));
    if (ne > 0 && !force)
        return qm_fail(err, QM_ERR_ARG, "--out %s exists and is not empty; pass --force to write into it", out);
    if (mkdir_p(out) != 0) return qm_fail(err, QM_ERR_IO, "cannot create folder %s: %s", out, strerror(errno));
    if (ne > 0) remove_old_weights(out);
    return QM_OK;
}

/* The weights, with progress lines for models that take more than a moment, then the tokenizer. */
static qm_status write_model(const qm_config *cfg, const char *out, qm_random_opts *opts, const char *tokdir,
                             qm_error *err) {
    progress_state ps = {.last_pct = 0};
    opts->progress = progress;
    opts->progress_ctx = &ps;
    const uint64_t params = (uint64_t)cfg->vocab_size * cfg->hidden_size * (cfg->tie_word_embeddings ? 1 : 2) +
                            (uint64_t)cfg->num_hidden_layers * cfg->hidden_size *
                                (3ull * cfg->intermediate_size + 2ull * cfg->hidden_size);
    ps.enabled = params * qm_dtype_size(opts->dtype) > 200000000ull;
    qm_status st = qm_random_model_write(cfg, out, opts, err);
    const char *copy[] = {"tokenizer.json", "tokenizer_config.json"};
    for (size_t i = 0; !st && i < sizeof copy / sizeof copy[0]; i++) {
        char src[PATH_MAX + 64], dst[PATH_MAX + 64];
        snprintf(src, sizeof src, "%s/%s", tokdir, copy[i]);
        snprintf(dst, sizeof dst, "%s/%s", out, copy[i]);
        st = qm_copy_file(src, dst, err);
    }
    return st;
}

int cmd_random_model(int argc, char **argv) {
    rm_args a;
    const int r = parse_args(argc, argv, &a);
    if (r) return r == 1 ? 0 : 2;
    qm_random_opts opts = {.seed = (uint64_t)a.seed, .shards = (int)a.shards,
                           .dtype = strcmp(a.dtype, "f32") ? QM_DT_BF16 : QM_DT_F32};
    qm_error err = {0};
    qm_config cfg;
    if (a.preset) {
        if (!qm_random_preset(a.preset, &cfg))
            return cli_usage_error(CMD, "--preset '%s': expected tiny, qwen2.5-0.5b or qwen2.5-7b", a.preset);
    } else if (qm_config_load(a.config, &cfg, &err)) {
        return cli_error(CMD, &err);
    }
    char tokdir[PATH_MAX];
    if (locate_tokenizer(a.tok, tokdir, sizeof tokdir, &err) || prepare_out(a.out, a.force, &err))
        return cli_error(CMD, &err);
    const double t0 = now_s();
    if (write_model(&cfg, a.out, &opts, tokdir, &err)) return cli_error(CMD, &err);
    fprintf(stderr, "qmesh random-model: wrote %s (%s, %d layers, hidden %d, vocab %d, %s, %ld shard%s) in %.1f s\n",
            a.out, a.preset ? a.preset : a.config, cfg.num_hidden_layers, cfg.hidden_size, cfg.vocab_size, a.dtype,
            a.shards, a.shards > 1 ? "s" : "", now_s() - t0);
    return 0;
}
