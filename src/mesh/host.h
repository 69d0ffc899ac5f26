/* The devices of a mesh that this process runs, whatever carries the collectives.
 *
 * The threads backend hosts every device of the mesh (a thread each, one process); MPI hosts
 * one (this rank). The engine opens a host and then works through it and the comm interface
 * alone: this module is the one place that names the backends. */
#ifndef QM_MESH_HOST_H
#define QM_MESH_HOST_H

#include <qmesh.h>
#include <stdbool.h>

#include "mesh/comm.h"

typedef struct qm_mesh_host qm_mesh_host;

/* backend: "threads" (NULL too) or "mpi". Checks what the backend needs (MPI built in, as many
 * ranks started as the mesh has devices) and creates the comms of this process's devices. */
qm_status qm_mesh_host_open(const char *backend, int rows, int cols, qm_mesh_host **out, qm_error *err);
void qm_mesh_host_close(qm_mesh_host *h);

/* How many devices this process runs, and device i's comm (0 <= i < that). Device i of a
 * process that runs the whole mesh is world rank i. */
int qm_mesh_host_devices(const qm_mesh_host *h);
qm_comm *qm_mesh_host_comm(qm_mesh_host *h, int i);

/* This process runs every device of the mesh: its rows can share a request queue and report to
 * the caller themselves. Otherwise rows live in other processes, and only world rank 0 reports. */
bool qm_mesh_host_whole(const qm_mesh_host *h);

/* CPU cores this process may use: all of the machine's, shared with the other ranks started on
 * the same machine (from the launcher's environment). */
int qm_mesh_host_cores(const qm_mesh_host *h);

#endif
