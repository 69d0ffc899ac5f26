/* The engine: opening a model on a mesh, and the per-row serving loop (SPMD).
 *
 * Every device of a row runs row_loop with the same inputs and makes the same decisions: the
 * row's leader (column 0) picks the requests and broadcasts them; sampled tokens are agreed by
 * the sampler's collective; the bookkeeping (stops, text) is then computed identically on every
 * device. Only the leader calls the callbacks. */
#include "engine/engine_internal.h"
#include "io/gguf_model.h"
#include "text/chat.h"
#include "util/affinity.h"
#include "util/coop.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static qm_status read_meminfo_available(size_t *bytes) {
    FILE *f = fopen("/proc/meminfo", "r");
    if (!f) return QM_ERR_IO;
    char line[256];
    unsigned long kb = 0;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "MemAvailable: %lu kB", &kb) == 1) break;
    fclose(f);
    *bytes = (size_t)kb * 1024;
    return kb ? QM_OK : QM_ERR_IO;
}

/* The devices will repack Q4_0/Q5_0 matrices (model.h qm_device_repacks, with the ISA asked for). */
static bool will_repack(const qm_engine *e, const char *isa) {
    qm_kernels k;
    qm_error ignored = {0};
    return qm_kernels_select(isa, &k, &ignored) == QM_OK && qm_device_repacks(&e->dims, &k);
}

static size_t kv_bytes_per_device(const qm_config *c, int cols, int col, int slots, int ctx) {
    qm_partition p;
    if (qm_partition_make(cols, col, c->num_attention_heads, c->num_key_value_heads, c->head_dim, c->intermediate_size,
                          c->vocab_size, &p, NULL))
        return 0;
    return (size_t)slots * (size_t)c->num_hidden_layers * 2 * (size_t)qm_range_len(p.kv_heads) * (size_t)ctx *
           (size_t)c->head_dim * sizeof(float);
}

static void add_eos(qm_engine *e, int id) {
    if (id < 0) return;
    for (int i = 0; i < e->n_eos; i++)
        if (e->eos[i] == id) return;
    if (e->n_eos < (int)(sizeof e->eos / sizeof e->eos[0])) e->eos[e->n_eos++] = id;
}

/* The config, the weights and the tokenizer: from one GGUF file, or from a Hugging Face folder
 * (config.json, safetensors, tokenizer.json when present). */
static qm_status open_model(qm_engine *e, qm_error *err) {
    qm_status st;
    if (qm_is_gguf_path(e->model_dir)) {
        if ((st = qm_gguf_model_open(e->model_dir, &e->cfg, &e->ck, err))) return st;
        if ((st = qm_tokenizer_load_gguf(qm_checkpoint_gguf(e->ck), &e->tok, err))) return st;
        qm_tokenizer_specials sp;
        qm_tokenizer_special_ids(e->tok, &sp);
        if (sp.eos >= 0 && e->cfg.n_eos < QM_MAX_EOS) e->cfg.eos_token_ids[e->cfg.n_eos++] = sp.eos;
        return qm_gguf_get_string(qm_checkpoint_gguf(e->ck), "tokenizer.chat_template", false, &e->chat_template, err);
    }
    char path[4200];
    snprintf(path, sizeof path, "%s/config.json", e->model_dir);
    if ((st = qm_config_load(path, &e->cfg, err))) return st;
    if ((st = qm_checkpoint_open(e->model_dir, &e->ck, err))) return st;
    snprintf(path, sizeof path, "%s/tokenizer.json", e->model_dir);
    FILE *tf = fopen(path, "rb");
    if (!tf) return QM_OK;
    fclose(tf);
    return qm_tokenizer_load(path, &e->tok, err);
}

/* pin_threads: thread i of the process's teams (device k's member m is i = k * team + m) runs on
 * the allowed CPU (base + i) mod n, base = the local process index x the threads of a process,
 * so that ranks sharing a machine take their own stretches. */
static qm_status plan_placement(qm_engine *e, qm_error *err) {
    const int n = e->n_local * e->team;
    qm_cpu_list *allowed = malloc(sizeof *allowed);
    e->cpus = malloc((size_t)n * sizeof *e->cpus);
    if (!allowed || !e->cpus) {
        free(allowed);
        return qm_fail(err, QM_ERR_NOMEM, "out of memory planning thread placement");
    }
    qm_cpus_allowed(allowed);
    const long base = (long)qm_local_process_index() * n;
    for (int i = 0; i < n; i++) e->cpus[i] = allowed->cpu[(base + i) % allowed->n];
    free(allowed);
    return QM_OK;
}

/* Once every device is loaded (ranks load at their own pace, a large model from a slow disk for
 * minutes), collectives get their deadline (comm.h timeout_s): from then on a silent peer is an
 * error within that time. */
static qm_status start_deadlines(qm_engine *e, qm_error *err) {
    const int t = e->o.comm_timeout_s == 0 ? QM_DEFAULT_COMM_TIMEOUT_S : e->o.comm_timeout_s;
    if (!e->whole_mesh) {
        qm_comm *c = qm_mesh_host_comm(e->host, 0);
        qm_status st = c->ops->world_barrier(c, err);
        if (st) return st;
        c->timeout_s = t > 0 ? t : 0;
    }
    return QM_OK;
}

qm_status qm_engine_open(const qm_engine_opts *opts, qm_engine **out, qm_error *err) {
    qm_engine *e = calloc(1, sizeof *e);
    if (!e) return qm_fail(err, QM_ERR_NOMEM, "out of memory");
    e->o = *opts;
    e->o.model_dir = NULL;
    snprintf(e->model_dir, sizeof e->model_dir, "%s", opts->model_dir ? opts->model_dir : "");
    e->rows = opts->rows > 0 ? opts->rows : 1;
    e->cols = opts->cols > 0 ? opts->cols : 1;
    e->batch = opts->batch > 0 ? opts->batch : 1;
    pthread_mutex_init(&e->mu, NULL);
    qm_status st;
    if ((st = qm_mesh_host_open(opts->backend, e->rows, e->cols, &e->host, err))) goto fail;
    e->n_local = qm_mesh_host_devices(e->host);
    e->whole_mesh = qm_mesh_host_whole(e->host);
    if ((st = open_model(e, err))) goto fail;
    for (int i = 0; i < e->cfg.n_eos; i++) add_eos(e, e->cfg.eos_token_ids[i]);
    if (e->tok) {
        add_eos(e, qm_tokenizer_id(e->tok, "<|endoftext|>"));
        add_eos(e, qm_tokenizer_id(e->tok, "<|im_end|>"));
    }

    int ctx = opts->max_context > 0 ? opts->max_context : 4096;
    if (ctx > e->cfg.max_position_embeddings && e->cfg.max_position_embeddings > 0)
        ctx = e->cfg.max_position_embeddings;
    e->dims.max_context = ctx;
    e->dims.n_slots = e->batch + 1; /* + the shared-prefix slot */
    e->dims.max_tokens = opts->max_step_tokens > 0 ? opts->max_step_tokens : QM_DEFAULT_STEP_TOKENS;
    e->dims.act_q8 = opts->act_q8;
    e->dims.head_filter = !opts->full_head;
    e->dims.head_shadow = e->rows == 1; /* replicas in one process would each hold a copy */
    e->dims.repack_q8 = opts->repack;
    e->dims.huge_pages = opts->huge_pages > 0 || (opts->huge_pages == 0 && e->rows == 1 && qm_huge_pages_available());
    if ((st = qm_engine_check_ranks(e, err))) goto fail;

    const int threads = opts->threads > 0 ? opts->threads : qm_mesh_host_cores(e->host);
    e->team = threads / e->n_local;
    if (e->team < 1) e->team = 1;
    /* More devices than threads: the devices take turns on the threads, switching at their
     * collectives, instead of as many threads as devices preempting each other. */
    e->coop_threads = threads < e->n_local ? threads : 0;
    if (opts->pin_threads && (st = plan_placement(e, err))) goto fail;

    /* Memory: say so before any work when the mesh cannot fit. */
    /* The KV cache of every device here; the weights once per process (rows here share the
     * mapping), a device's slice where this process runs one; with huge pages a slice each;
     * repacked Q4_0/Q5_0 matrices: each device's slice of them at their Q8_0 size besides. */
    size_t need = 0, avail = 0;
    for (int i = 0; i < e->n_local; i++)
        need += kv_bytes_per_device(&e->cfg, e->cols, qm_mesh_host_comm(e->host, i)->col, e->dims.n_slots, ctx);
    const size_t weights = qm_model_weight_bytes(e->ck, &e->cfg);
    const size_t repacked = will_repack(e, opts->isa) ? qm_model_repacked_bytes(e->ck) : 0;
    const size_t weights_here = (e->dims.huge_pages      ? weights / (size_t)e->cols * (size_t)e->n_local
                                 : e->n_local >= e->cols ? weights
                                                         : weights / (size_t)e->cols) +
                                repacked / (size_t)e->cols * (size_t)e->n_local;
    need += weights_here;
    if (read_meminfo_available(&avail) == QM_OK && need > avail) {
        st = qm_fail(err, QM_ERR_NOMEM,
                     "mesh %dx%d with batch %d and context %d needs about %.1f GB (weights %.1f GB + KV cache) but "
                     "%.1f GB are available; use a smaller --ctx or --batch, or more machines",
                     e->rows, e->cols, e->batch, ctx, need / 1e9, weights_here / 1e9,
                     avail / 1e9);
        goto fail;
    }

    e->devs = calloc((size_t)e->n_local, sizeof *e->devs);
    if (!e->devs) {
        st = qm_fail(err, QM_ERR_NOMEM, "out of memory");
        goto fail;
    }
    double t0 = qm_now();
    for (int i = 0; i < e->n_local; i++) {
        qm_comm *c = qm_mesh_host_comm(e->host, i);
        /* Rows hold the same shards: in one process the mapping is shared, so only the
         * copied column slices are per device. */
        if ((st = qm_device_init(&e->devs[i], e->ck, &e->cfg, c, opts->isa, e->team, &e->dims, err))) goto fail;
        e->n_init = i + 1;
        if (!opts->quiet && e->n_local > 1 && qm_engine_is_output_rank(e))
            fprintf(stderr, "\rqmesh: loaded device %d/%d", i + 1, e->n_local);
    }
    if (!opts->quiet && e->n_local > 1 && qm_engine_is_output_rank(e)) fprintf(stderr, "\n");
    if ((st = start_deadlines(e, err))) goto fail;
    e->load_s = qm_now() - t0;
    *out = e;
    return QM_OK;
fail:
    qm_engine_close(e);
    return st;
}

void qm_engine_close(qm_engine *e) {
    if (!e) return;
    for (int i = 0; i < e->n_init; i++) qm_device_free(&e->devs[i]);
    free(e->devs);
    qm_mesh_host_close(e->host);
    if (e->tok) qm_tokenizer_free(e->tok);
    if (e->ck) qm_checkpoint_close(e->ck);
    free(e->chat_template);
    free(e->cpus);
    pthread_mutex_destroy(&e->mu);
    free(e);
}

const qm_tokenizer *qm_engine_tokenizer(const qm_engine *e) { return e->tok; }

qm_status qm_engine_chat_format(const qm_engine *e, qm_chat_format *out, qm_error *err) {
    *out = QM_CHAT_CHATML; /* a Hugging Face folder: Qwen's ChatML */
    if (!e->chat_template && !e->o.chat_format) return QM_OK;
    return qm_chat_format_resolve(e->chat_template, e->o.chat_format, out, err);
}

qm_status qm_engine_chat_prompt(const qm_engine *e, const char *user, const char *system, char **out, qm_error *err) {
    qm_chat_format fmt;
    qm_status st = qm_engine_chat_format(e, &fmt, err);
    if (st) return st;
    char *from_template = NULL;
    if (!system) {
        if (e->chat_template && fmt == QM_CHAT_CHATML) from_template = qm_chat_template_system(e->chat_template);
        system = from_template ? from_template : qm_chat_default_system(fmt);
    }
    *out = qm_chat_wrap_format(fmt, user, system);
    free(from_template);
    return *out ? QM_OK : qm_fail(err, QM_ERR_NOMEM, "out of memory building the chat prompt");
}

qm_status qm_engine_chat_ids(const qm_engine *e, const char *user, const char *system, bool messages_special,
                             int **ids, int *n, qm_error *err) {
    *ids = NULL;
    *n = 0;
    if (!e->tok) return qm_fail(err, QM_ERR_ARG, "the model has no tokenizer");
    char *sys = NULL;
    qm_chat_format fmt;
    qm_status st = qm_engine_chat_format(e, &fmt, err);
    if (st) return st;
    if (!system) { /* the same default as qm_engine_chat_prompt */
        if (e->chat_template && fmt == QM_CHAT_CHATML) sys = qm_chat_template_system(e->chat_template);
        system = sys ? sys : qm_chat_default_system(fmt);
    }
    /* The template around two markers (control bytes no template uses), then piece by piece: the
     * template's text with its special tokens, the messages as plain text unless asked. */
    char *frame = qm_chat_wrap_format(fmt, "\x01", "\x02");
    if (!frame) st = qm_fail(err, QM_ERR_NOMEM, "out of memory building the chat prompt");
    int cap = 0;
    for (const char *p = frame; !st && p && *p;) {
        size_t k = strcspn(p, "\x01\x02");
        if (k) st = qm_chat_append_ids(e->tok, p, k, true, ids, n, &cap, err);
        if (st || !p[k]) break;
        const char *msg = p[k] == '\x01' ? user : system;
        st = qm_chat_append_ids(e->tok, msg, strlen(msg), messages_special, ids, n, &cap, err);
        p += k + 1;
    }
    free(frame);
    free(sys);
    if (st) {
        free(*ids);
        *ids = NULL;
        *n = 0;
    }
    return st;
}

bool qm_engine_is_output_rank(const qm_engine *e) {
    return !e->host || qm_comm_rank(qm_mesh_host_comm(e->host, 0)) == 0;
}

const qm_config *qm_engine_config(const qm_engine *e) { return &e->cfg; }

qm_device *qm_engine_device(qm_engine *e, int i) { return i < e->n_local ? &e->devs[i] : NULL; }
int qm_engine_n_devices(const qm_engine *e) { return e->n_local; }

/* Runs fn(e, dev, arg) on every device of this process, each in its own thread, or directly
 * where the process runs one; returns the first error. */
typedef struct {
    qm_engine *e;
    qm_device *dev;
    qm_device_fn fn;
    void *arg;
    qm_status st;
    qm_error err;
} dev_thread;

/* fn on one device, its team pinned first where the engine pins (plan_placement); the calling
 * thread gets its placement back after. */
static qm_status run_device(qm_engine *e, qm_device *dev, qm_device_fn fn, void *arg, qm_error *err) {
    if (!e->cpus) return fn(e, dev, arg, err);
    qm_thread_affinity saved;
    qm_affinity_save(&saved);
    qm_pool_pin(dev->pool, e->cpus + (dev - e->devs) * e->team);
    qm_status st = fn(e, dev, arg, err);
    qm_affinity_restore(&saved);
    return st;
}

static void *dev_thread_main(void *a) {
    dev_thread *t = a;
    t->st = run_device(t->e, t->dev, t->fn, t->arg, &t->err);
    if (t->st) t->dev->comm->ops->abort(t->dev->comm, t->err.msg);
    return NULL;
}

/* Device i as cooperative task i (util/coop.h); placement is the threads' (qm_coop_run). */
static void dev_task_main(void *arg, int i, qm_coop_task *task) {
    dev_thread *t = (dev_thread *)arg + i;
    qm_comm *c = t->dev->comm;
    c->ops->set_task(c, task);
    t->st = t->fn(t->e, t->dev, t->arg, &t->err);
    if (t->st) c->ops->abort(c, t->err.msg);
    c->ops->set_task(c, NULL);
}

/* Every device's fn on its own thread; returns how many ran (all unless one failed to start). */
static int run_on_threads(qm_engine *e, dev_thread *t, pthread_t *th, qm_error *err, qm_status *st) {
    int started = 0;
    for (int i = 0; i < e->n_local; i++) {
        if (pthread_create(&th[i], NULL, dev_thread_main, &t[i])) {
            *st = qm_fail(err, QM_ERR_NOMEM, "cannot start device thread %d", i);
            e->devs[0].comm->ops->abort(e->devs[0].comm, "thread start failed");
            break;
        }
        started++;
    }
    for (int i = 0; i < started; i++) pthread_join(th[i], NULL);
    return started;
}

qm_status qm_engine_run_devices(qm_engine *e, qm_device_fn fn, void *arg, qm_error *err) {
    if (e->n_local == 1) {
        qm_status st = run_device(e, &e->devs[0], fn, arg, err);
        if (st) e->devs[0].comm->ops->abort(e->devs[0].comm, err->msg); /* peers in other processes stop */
        return st;
    }
    dev_thread *t = calloc((size_t)e->n_local, sizeof *t);
    pthread_t *th = calloc((size_t)e->n_local, sizeof *th);
    if (!t || !th) {
        free(t);
        free(th);
        return qm_fail(err, QM_ERR_NOMEM, "out of memory");
    }
    for (int i = 0; i < e->n_local; i++) t[i] = (dev_thread){.e = e, .dev = &e->devs[i], .fn = fn, .arg = arg};
    qm_status st = QM_OK;
    int started = e->n_local;
    if (e->coop_threads > 0 && e->devs[0].comm->ops->set_task) {
        if ((st = qm_coop_run(e->n_local, e->coop_threads, e->cpus, dev_task_main, t, err))) started = 0;
    } else {
        started = run_on_threads(e, t, th, err, &st);
    }
    /* Report the root cause: the first device error that is not a consequence of an abort. */
    for (int i = 0; i < started && st == QM_OK; i++)
        if (t[i].st && t[i].st != QM_ERR_COMM) {
            st = t[i].st;
            if (err) *err = t[i].err;
        }
    for (int i = 0; i < started && st == QM_OK; i++)
        if (t[i].st) {
            st = t[i].st;
            if (err) *err = t[i].err;
        }
    free(t);
    free(th);
    return st;
}
