/* placeholder so the module library is never empty */
typedef int qm_text_placeholder_t;
