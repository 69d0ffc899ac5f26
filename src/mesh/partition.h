/* How a model is split over the C tensor shards (columns) of a mesh row.
 *
 * Terms (Megatron's sense, used throughout qmesh):
 *   - column-parallel linear: the weight's OUTPUT rows are split; each device computes a slice of
 *     the output from the full input; no collective after it (q/k/v, gate/up, lm_head).
 *   - row-parallel linear: the weight's INPUT columns are split; each device computes a partial
 *     sum of the full output from its slice of the input; a tree sum across the row follows
 *     (o_proj, down_proj).
 * Split states of an activation: replicated (every device of the row holds all of it), split
 * (each holds a contiguous slice), partial (each holds addends of the whole).
 *
 * Every split is contiguous and nearly even (qm_split); none requires divisibility: a device may
 * own zero heads or zero MLP blocks. Row-parallel partial sums are formed per fixed block — one
 * attention head for o_proj, QM_MLP_BLOCK intermediate columns for down_proj — and added along one
 * fixed binary tree over the blocks (tree_sum.h, comm.h row_tree_sum), so the sum has the same bits
 * for every C.
 */
#ifndef QM_MESH_PARTITION_H
#define QM_MESH_PARTITION_H

#include <qmesh.h>
#include <stddef.h>

#define QM_MLP_BLOCK 64 /* intermediate columns per down_proj partial-sum block */

typedef struct {
    int begin, end; /* [begin, end) */
} qm_range;

static inline int qm_range_len(qm_range r) { return r.end - r.begin; }

/* Part c of n items split into `parts` contiguous nearly equal ranges. */
static inline qm_range qm_split(int n, int parts, int c) {
    qm_range r = {(int)((long)n * c / parts), (int)((long)n * (c + 1) / parts)};
    return r;
}

typedef struct {
    int cols, col;        /* C shards, this device's column */
    int n_heads, n_kv_heads, head_dim, group; /* group = query heads per KV head */
    qm_range q_heads;     /* query heads of this device (o_proj blocks) */
    qm_range kv_heads;    /* KV heads its query heads use (replicated across devices as needed) */
    int n_mlp_blocks;     /* ceil(intermediate / QM_MLP_BLOCK) */
    qm_range mlp_blocks;  /* this device's blocks */
    qm_range mlp_cols;    /* the intermediate columns of those blocks */
    qm_range vocab;       /* rows of lm_head (vocabulary-parallel) */
} qm_partition;

/* The plan of device `col` of `cols` for a model's dimensions. */
qm_status qm_partition_make(int cols, int col, int n_heads, int n_kv_heads, int head_dim, int intermediate,
                            int vocab, qm_partition *out, qm_error *err);

#endif
