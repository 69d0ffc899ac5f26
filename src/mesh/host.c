/* Which devices this process runs, by backend (see host.h). */
#include "mesh/host.h"

#include <stdlib.h>
#include <string.h>

#include "util/pool.h"

struct qm_mesh_host {
    int rows, cols;
    int n_devices;           /* run here */
    qm_thread_mesh *threads; /* threads backend */
    qm_comm *mpi;            /* MPI backend: this rank's comm */
};

static qm_status open_mpi(qm_mesh_host *h, qm_error *err) {
    if (!qm_mpi_available())
        return qm_fail(err, QM_ERR_UNSUPPORTED, "this qmesh was built without MPI (install libopenmpi-dev and rebuild)");
    const int n = h->rows * h->cols, world = qm_mpi_launched_size();
    if (world != n)
        return qm_fail(err, QM_ERR_ARG,
                       "mesh %dx%d needs %d MPI ranks but %d were started (mpirun -np %d qmesh ... --mesh %dx%d)",
                       h->rows, h->cols, n, world, n, h->rows, h->cols);
    h->n_devices = 1;
    return qm_mpi_comm_create(h->rows, h->cols, &h->mpi, err);
}

qm_status qm_mesh_host_open(const char *backend, int rows, int cols, qm_mesh_host **out, qm_error *err) {
    *out = NULL;
    const bool mpi = backend && !strcmp(backend, "mpi");
    if (backend && !mpi && strcmp(backend, "threads"))
        return qm_fail(err, QM_ERR_ARG, "unknown backend '%s': expected threads or mpi", backend);
    qm_mesh_host *h = calloc(1, sizeof *h);
    if (!h) return qm_fail(err, QM_ERR_NOMEM, "out of memory");
    h->rows = rows;
    h->cols = cols;
    h->n_devices = rows * cols;
    qm_status st = mpi ? open_mpi(h, err) : qm_thread_mesh_create(rows, cols, &h->threads, err);
    if (st) {
        qm_mesh_host_close(h);
        return st;
    }
    *out = h;
    return QM_OK;
}

void qm_mesh_host_close(qm_mesh_host *h) {
    if (!h) return;
    if (h->threads) qm_thread_mesh_destroy(h->threads);
    if (h->mpi) qm_mpi_comm_destroy(h->mpi);
    free(h);
}

int qm_mesh_host_devices(const qm_mesh_host *h) { return h->n_devices; }

qm_comm *qm_mesh_host_comm(qm_mesh_host *h, int i) {
    if (i < 0 || i >= h->n_devices) return NULL;
    return h->threads ? qm_thread_mesh_comm(h->threads, i) : h->mpi;
}

bool qm_mesh_host_whole(const qm_mesh_host *h) { return h->n_devices == h->rows * h->cols; }

int qm_mesh_host_cores(const qm_mesh_host *h) {
    int cores = qm_cpu_count();
    if (h->threads) return cores;
    const char *local = getenv("OMPI_COMM_WORLD_LOCAL_SIZE"); /* Open MPI; MPICH below */
    if (!local) local = getenv("MPI_LOCALNRANKS");
    const int n = local ? atoi(local) : 0;
    return n > 1 ? (cores / n > 0 ? cores / n : 1) : cores;
}
