/* placeholder so the module library is never empty */
typedef int qm_engine_placeholder_t;
