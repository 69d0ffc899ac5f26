#include "mesh/partition.h"

#include <stdint.h>

qm_status qm_partition_make(int cols, int col, int n_heads, int n_kv_heads, int head_dim, int intermediate,
                            int vocab, qm_partition *p, qm_error *err) {
    if (cols < 1 || col < 0 || col >= cols)
        return qm_fail(err, QM_ERR_ARG, "device column %d is outside a row of %d", col, cols);
    if (n_heads < 1 || n_kv_heads < 1 || n_heads % n_kv_heads || head_dim < 1 || intermediate < 1 || vocab < 1)
        return qm_fail(err, QM_ERR_CONFIG, "cannot partition heads %d / kv %d / head_dim %d / intermediate %d / vocab %d",
                       n_heads, n_kv_heads, head_dim, intermediate, vocab);
    p->cols = cols;
    p->col = col;
    p->n_heads = n_heads;
    p->n_kv_heads = n_kv_heads;
    p->head_dim = head_dim;
    p->group = n_heads / n_kv_heads;
    p->q_heads = qm_split(n_heads, cols, col);
    if (qm_range_len(p->q_heads) > 0) {
        p->kv_heads.begin = p->q_heads.begin / p->group;
        p->kv_heads.end = (p->q_heads.end - 1) / p->group + 1;
    } else {
        p->kv_heads.begin = p->kv_heads.end = 0;
    }
    /* ceil(intermediate / QM_MLP_BLOCK) without adding to intermediate (it may be near INT_MAX),
     * and the blocks' columns in 64 bits: the last block's end may pass INT_MAX before the clamp */
    p->n_mlp_blocks = intermediate / QM_MLP_BLOCK + (intermediate % QM_MLP_BLOCK != 0);
    p->mlp_blocks = qm_split(p->n_mlp_blocks, cols, col);
    int64_t c0 = (int64_t)p->mlp_blocks.begin * QM_MLP_BLOCK, c1 = (int64_t)p->mlp_blocks.end * QM_MLP_BLOCK;
    if (c1 > intermediate) c1 = intermediate;
    if (c0 > c1) c0 = c1;
    p->mlp_cols.begin = (int)c0;
    p->mlp_cols.end = (int)c1;
    p->vocab = qm_split(vocab, cols, col);
    return QM_OK;
}
