#ifndef QM_TOOLS_MEMBW_H
#define QM_TOOLS_MEMBW_H
#include <stddef.h>
/* Best of 5 passes, GB/s (1e9 bytes/s); 0 if the buffer cannot be allocated. */
double qm_measure_read_bandwidth(int threads, size_t bytes);
#endif
