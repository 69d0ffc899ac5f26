/* placeholder so the module library is never empty */
typedef int qm_kernels_placeholder_t;
