/* The engine: a model opened on a mesh, serving generation requests.
 * Rows of the mesh (replicas) take requests from one queue; each row runs up to `batch`
 * sequences at once, refilled as they finish. Results are the same bits whatever the mesh,
 * the batch or the row that served them. */
#ifndef QM_ENGINE_ENGINE_H
#define QM_ENGINE_ENGINE_H

#include <qmesh.h>
#include <stdbool.h>
#include <stdint.h>
#include "engine/sampler.h"
#include "text/chat.h"
#include "text/tokenizer.h"

typedef struct {
    const char *model_dir;   /* a GGUF file (*.gguf) or a Hugging Face folder */
    int rows, cols;          /* mesh R x C (1 x 1 default) */
    const char *backend;     /* "threads" (default) or "mpi" */
    const char *isa;         /* kernels: NULL/"auto", "avx512", "avx2", "scalar" */
    int batch;               /* sequences per row at once (default 1) */
    int threads;             /* CPU threads in all (0 = number of cores) */
    int max_context;         /* KV cache positions per sequence (0 = min(model max, 4096)) */
    int max_step_tokens;     /* tokens per forward step at most (0 = 128): prefill chunk */
    bool quiet;              /* no load progress on stderr */
    bool act_q8;             /* fast mode: 8-bit activations, integer dots against quantized
                                weights (kernels/qdot.h); default: f32 on exact dequantization */
    bool full_head;          /* exact mode: greedy steps compute every logit of the lm_head (default:
                                the head filter where the head's type allows, model/head_filter.h:
                                the same tokens, about the fast mode's head cost) */
    const char *chat_format; /* NULL = from the model's chat template; "chatml", "deepseek-r1" */
    bool pin_threads;        /* each device's threads pinned one per allowed CPU, in device order
                                (ranks on one machine take their own stretches: util/affinity.h) */
    int comm_timeout_s;      /* MPI: once loaded, a collective whose peers stay silent this long
                                fails (QM_ERR_COMM) instead of hanging; 0 = 60 s, < 0 = no limit */
    int huge_pages;          /* weights copied at load into transparent huge pages (2 MB) instead of
                                read in place from the file's mapping (util/huge_arena.h): 0 = auto
                                (where the mesh has one replica and the kernel has THP), 1 = on,
                                -1 = off. Replicas in one process or on one host each copy: off (auto)
                                keeps them sharing the mapping. */
    int repack;              /* Q4_0/Q5_0 matrices repacked at load to Q8_0 blocks of the same values
                                (the same logits, more bytes; model/model.h qm_shard_load): 0 = auto
                                (the exact mode, where the ISA's kernels run Q8_0 faster: AVX2),
                                1 = on, -1 = off */
} qm_engine_opts;

typedef struct qm_engine qm_engine;

qm_status qm_engine_open(const qm_engine_opts *opts, qm_engine **out, qm_error *err);
void qm_engine_close(qm_engine *e);

const qm_tokenizer *qm_engine_tokenizer(const qm_engine *e);
/* The chat format: --chat-format when given, else the GGUF's chat template (an unknown template
 * is an error asking for --chat-format), else ChatML (a Hugging Face folder). */
qm_status qm_engine_chat_format(const qm_engine *e, qm_chat_format *out, qm_error *err);
/* One user turn in the model's chat format, malloc'd; system NULL = the template's default. */
qm_status qm_engine_chat_prompt(const qm_engine *e, const char *user, const char *system, char **out, qm_error *err);
/* The chat prompt as token ids: the template's text is tokenized with its special tokens, the user
 * and system messages as plain text, so that "<|im_start|>" typed by a user stays text, unless
 * messages_special (then they are parsed as qm_tokenize does). system NULL: the template's default. */
qm_status qm_engine_chat_ids(const qm_engine *e, const char *user, const char *system, bool messages_special,
                             int **ids, int *n, qm_error *err);
/* True on the one process/device that prints (MPI world rank 0; always true with threads). */
bool qm_engine_is_output_rank(const qm_engine *e);

typedef struct {
    const int *prompt;       /* token ids */
    int n_prompt;
    int shared_prefix;       /* the first shared_prefix tokens are the same for every request of
                                this run: prefilled once and shared (prefix cache); 0 = none */
    int max_new_tokens;
    float temperature;       /* 0 = greedy (global argmax, lowest id on ties) */
    int top_k;               /* 0 = off */
    float top_p;             /* 1 = off */
    uint64_t seed;
    const char *const *stop; /* stop strings (the completion ends before them); may be NULL */
    int n_stop;
    bool stop_at_eos;        /* end-of-text ids of the config and <|im_end|>, <|endoftext|> */
    int logprobs;            /* 0: none; n >= 1: each generated token's log-probability and the n - 1 most
                                likely tokens' (at most 1 + QM_MAX_TOP_LOGPROBS; engine/sampler.h) */
    uint64_t rng_stream;     /* with seed, the sampler's random stream: the same seed and stream give the
                                same draws whatever else runs (qm_engine_generate sets request i's to i) */
} qm_gen_request;

/* QM_STOP_CANCELLED: the request source cancelled it (qm_request_source.cancelled), or refused it
 * (an invalid request from a source: nothing generated). */
typedef enum { QM_STOP_LENGTH = 0, QM_STOP_EOS, QM_STOP_STRING, QM_STOP_CANCELLED } qm_stop_reason;

typedef struct {
    int *ids;                /* generated ids (stop tokens excluded) */
    int n_ids;
    char *text;              /* decoded completion, stop string cut off, NUL-terminated */
    qm_stop_reason reason;
    const qm_token_logprobs *logprobs; /* [n_ids] when the request asked for them, else NULL */
    int prompt_tokens;
    double ms;               /* wall time from the request's start to its end */
} qm_gen_result;

typedef struct {
    /* Called once per finished request, on the output rank, one call at a time. */
    void (*on_done)(void *ctx, int index, const qm_gen_result *r);
    /* Streaming: newly completed text of request `index` (may be NULL). */
    void (*on_text)(void *ctx, int index, const char *text);
    /* Streaming with tokens, called instead of on_text when set (may be NULL): the same text, and
     * for a request that asks for logprobs the generated tokens that text completes (ids[n],
     * lps[n]: those after the previous call's, each once its text has come; n = 0 and lps NULL for
     * other requests). Tokens whose text never streams (a stop string's) come with on_done only. */
    void (*on_tokens)(void *ctx, int index, const char *text, const int *ids, const qm_token_logprobs *lps, int n);
    /* Skip request i when it returns true (resume); may be NULL. */
    bool (*skip)(void *ctx, int index);
    void *ctx;
} qm_gen_callbacks;

/* Whether cb takes streamed text (on_text or on_tokens). */
static inline bool qm_gen_streams(const qm_gen_callbacks *cb) { return cb && (cb->on_text || cb->on_tokens); }

/* A streamed piece of request `index` to cb: on_tokens when it has it, else on_text. */
static inline void qm_gen_stream_piece(const qm_gen_callbacks *cb, int index, const char *text, const int *ids,
                                       const qm_token_logprobs *lps, int n) {
    if (cb->on_tokens) cb->on_tokens(cb->ctx, index, text, ids, lps, n);
    else if (cb->on_text) cb->on_text(cb->ctx, index, text);
}

typedef struct {
    double wall_s;
    long prompt_tokens, prefill_tokens, gen_tokens;  /* prefill_tokens: actually computed */
    double prefill_s, decode_s;
    long decode_tokens; /* tokens picked in steps of decode tokens only (those of decode_s) */
} qm_gen_stats;

/* Serves n requests. Returns after all are done (or on the first error). A thin client of
 * qm_engine_serve: request i has id i and rng_stream i. */
qm_status qm_engine_generate(qm_engine *e, const qm_gen_request *reqs, int n, const qm_gen_callbacks *cb,
                             qm_gen_stats *stats, qm_error *err);

/* Requests that arrive while others run (a server's queue). The serving loop polls it at step
 * boundaries, on world rank 0 only (other ranks get the requests by broadcast), and never two
 * calls at once, except idle_wait, which rows of one process may call together. */
typedef struct {
    /* The next waiting request into *out, its id into *id (>= 0, unique among those not yet
     * reported done); false when none waits now. What *out points to is copied at once. */
    bool (*next)(void *ctx, qm_gen_request *out, int *id);
    /* True when request id should stop (its client went away): its sequence is freed at the next
     * step boundary and on_done reports it with QM_STOP_CANCELLED. May be NULL. */
    bool (*cancelled)(void *ctx, int id);
    /* True once no request will come any more: the loop returns when those running are done. */
    bool (*closed)(void *ctx);
    /* Nothing to run: wait at most max_ms for a request or for closing. May be NULL. */
    void (*idle_wait)(void *ctx, int max_ms);
    void *ctx;
} qm_request_source;

/* Serves requests from src until it is closed and every request taken is done; results through
 * cb (on_done with the source's id) on world rank 0. A request the engine cannot run (see
 * qm_engine_check_request) is reported done at once with QM_STOP_CANCELLED and nothing generated. */
qm_status qm_engine_serve(qm_engine *e, const qm_request_source *src, const qm_gen_callbacks *cb,
                          qm_gen_stats *stats, qm_error *err);
/* Whether the engine can run q (prompt fits the context, ids in the vocabulary, ...); err says why not. */
qm_status qm_engine_check_request(const qm_engine *e, const qm_gen_request *q, qm_error *err);
/* KV positions per sequence (prompt + generated tokens at most). */
int qm_engine_max_context(const qm_engine *e);


/* Extras for the program (logits, bench). */
#include "io/config.h"
#include "model/timing.h"
#include "mesh/comm.h"
const qm_config *qm_engine_config(const qm_engine *e);

/* Full-vocabulary float32 logits of every position of one id sequence: out [n][vocab_size]
 * (on the output rank; gathered from the shards of row 0). */
qm_status qm_engine_logits(qm_engine *e, const int *ids, int n, float *out, qm_error *err);
/* The same for n_seq sequences computed together (packed into the same steps, one KV slot
 * each; needs batch >= n_seq - 1): out[k] -> [lens[k]][vocab_size]. */
qm_status qm_engine_logits_batch(qm_engine *e, const int *const *ids, const int *lens, int n_seq, float *const *out,
                                 qm_error *err);

typedef struct {
    double load_s;
    size_t weight_bytes_total;       /* whole model, bytes read per token */
    double matmul_flops_per_token;   /* model/model.h qm_model_matmul_flops */
    double lm_head_flops;            /* its lm_head part (qm_model_lm_head_flops) */
    size_t device_weight_bytes_max;  /* the largest device shard */
    size_t device_weight_bytes[64];  /* per column of a row (first 64) */
    size_t device_copied_bytes_max;
    size_t device_shared_block_bytes_max; /* quantization blocks a device holds that span its
                                             neighbour's columns too (held by both) */
    double time_s[QM_TIME_COUNT];    /* by part (model/timing.h: collectives in QM_TIME_COMM), summed over
                                        the devices of row 0 / cols */
    double decode_time_s[QM_TIME_COUNT]; /* the same, in steps of decode tokens only */
    long decode_steps;               /* such steps of row 0's first device */
    const char *isa;
    int team_threads;
    qm_comm_stats comm;              /* collectives so far (mesh/comm.h), the largest count of each field
                                        over the devices of row 0 that this process runs */
    bool pinned;                     /* pin_threads: teams are pinned (first_cpu: device 0's member 0) */
    int first_cpu;
    bool huge_pages;                 /* the weights were copied into huge pages (opts huge_pages) */
    size_t device_huge_bytes_max;    /* the most weight bytes a device copied there */
    bool repacked;                   /* Q4_0/Q5_0 matrices were repacked to Q8_0 (opts repack) */
    size_t device_repack_bytes_max;  /* the most bytes that added to a device's weights */
    size_t device_rows8_bytes_max;   /* the most weight bytes a device holds interleaved by 8 rows (the
                                        fast mode's Q4_0/Q5_0/Q4_K column-parallel matrices, opts repack) */
    size_t repack_bytes;             /* ... to a row's devices together (a decode step reads them) */
    bool head_filter;                /* greedy steps filter the lm_head (model/head_filter.h) */
    long head_filtered_outputs;      /* outputs that went through it (row 0's first device) */
    long head_exact_rows;            /* lm_head rows computed exactly for them (the devices of row 0
                                        in this process: all of them with threads) */
    size_t head_bytes;               /* the lm_head's weight bytes, whole vocabulary */
    size_t head_filter_bytes;        /* what a filtered step reads instead, whole vocabulary (the
                                        8-bit view and its bounds: qm_head_filter.read_bytes) */
} qm_engine_info;
void qm_engine_get_info(const qm_engine *e, qm_engine_info *info);

#endif
