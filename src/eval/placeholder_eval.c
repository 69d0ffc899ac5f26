/* placeholder so the module library is never empty */
typedef int qm_eval_placeholder_t;
