/* placeholder so the module library is never empty */
typedef int qm_model_placeholder_t;
