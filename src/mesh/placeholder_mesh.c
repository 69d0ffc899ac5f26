/* placeholder so the module library is never empty */
typedef int qm_mesh_placeholder_t;
