/* The AVX-512 integer kernels of the fast mode with AVX512-VNNI: qdot_avx512.c built again with
 * QM_QDOT_VNNI, whose integer sums use vpdpbusd (the same exact integers, so the same bits). */
#define QM_QDOT_VNNI 1
#include "qdot_avx512.c"
