/* Engine internals shared by engine.c, generate.c and logits.c. */
#ifndef QM_ENGINE_INTERNAL_H
#define QM_ENGINE_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>

#include "engine/engine.h"
#include "engine/sampler.h"
#include "io/checkpoint.h"
#include "io/config.h"
#include "mesh/comm.h"
#include "mesh/host.h"
#include "model/model.h"

#define QM_DEFAULT_STEP_TOKENS 128
#define QM_DEFAULT_COMM_TIMEOUT_S 60 /* qm_engine_opts.comm_timeout_s 0 */

struct qm_engine {
    qm_engine_opts o;
    char model_dir[4096];
    qm_config cfg;
    qm_checkpoint *ck;
    qm_tokenizer *tok;     /* NULL when the folder has no tokenizer.json */
    char *chat_template;   /* a GGUF's tokenizer.chat_template (Jinja), else NULL */
    int rows, cols, batch;
    qm_mesh_host *host;    /* the devices this process runs, and their comms */
    bool whole_mesh;       /* this process runs every device (qm_mesh_host_whole) */
    qm_device *devs;       /* the devices of this process */
    int n_local, n_init, team;
    int coop_threads;      /* > 0: the devices run as cooperative tasks on this many threads (util/coop.h) */
    int *cpus;             /* pin_threads: [n_local * team], device k's member m on cpus[k * team + m]; else NULL */
    qm_device_dims dims;
    int eos[16];
    int n_eos;
    double load_s;
    pthread_mutex_t mu;    /* callbacks and the request source */
    /* the current run */
    const qm_request_source *src;
    const qm_gen_callbacks *cb;
    qm_gen_stats stats;
};

/* Ranks in other processes (MPI) run the same program, model and options, else an error naming
 * the first rank that does not (engine/ranks.c); nothing to check where one process runs all. */
qm_status qm_engine_check_ranks(qm_engine *e, qm_error *err);

typedef qm_status (*qm_device_fn)(qm_engine *e, qm_device *dev, void *arg, qm_error *err);
qm_status qm_engine_run_devices(qm_engine *e, qm_device_fn fn, void *arg, qm_error *err);

#endif
