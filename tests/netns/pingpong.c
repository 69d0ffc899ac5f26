/* Ping-pong between MPI ranks 0 and 1 of the network-namespace rig (scripts/netns_bench.sh
 * builds it with mpicc): the one-way time of small messages (latency) and the rate of large
 * ones, over whatever the rig's links are shaped to. Prints one line:
 *   pingpong: latency_us L (8 B, median of N) bandwidth_MBps B (4 MiB messages)
 */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* the median of n round trips of `bytes` each way, halved */
static double one_way(char *buf, int bytes, int n, int rank) {
    double *t = malloc(sizeof *t * (size_t)n);
    for (int i = -5; i < n; i++) { /* 5 warm-up trips */
        MPI_Barrier(MPI_COMM_WORLD);
        double t0 = MPI_Wtime();
        if (rank == 0) {
            MPI_Send(buf, bytes, MPI_BYTE, 1, 0, MPI_COMM_WORLD);
            MPI_Recv(buf, bytes, MPI_BYTE, 1, 0, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
        } else if (rank == 1) {
            MPI_Recv(buf, bytes, MPI_BYTE, 0, 0, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
            MPI_Send(buf, bytes, MPI_BYTE, 0, 0, MPI_COMM_WORLD);
        }
        if (i >= 0) t[i] = (MPI_Wtime() - t0) / 2;
    }
    qsort(t, (size_t)n, sizeof *t, cmp_double);
    double m = t[n / 2];
    free(t);
    return m;
}

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    int rank, size;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    if (size < 2) {
        if (rank == 0) fprintf(stderr, "pingpong: needs 2 ranks\n");
        MPI_Finalize();
        return 1;
    }
    const int big = 4 << 20;
    char *buf = calloc(1, (size_t)big);
    double lat = one_way(buf, 8, 201, rank);
    double t_big = one_way(buf, big, 9, rank);
    if (rank == 0)
        printf("pingpong: latency_us %.1f (8 B, median of 201) bandwidth_MBps %.1f (4 MiB messages)\n", lat * 1e6,
               big / t_big / 1e6);
    free(buf);
    MPI_Finalize();
    return 0;
}
