/* The interleaved Q4_K rows' kernels (rows8_q4k_avx2.c) with AVX512-VNNI: each 4 products of a
 * sub-block summed into the int32 lanes by one vpdpbusd on ymm, the same exact integers, so the
 * same bits. */
#define QM_ROWS8_VNNI 1
#include "rows8_q4k_avx2.c"
