/* placeholder so the module library is never empty */
typedef int qm_io_placeholder_t;
