/* The canonical order of a row-parallel sum (docs/architecture.md, Exactness rule 2 and "Row sum").
 *
 * The n_leaves block partials of a row-parallel layer are the leaves of one fixed binary tree,
 * whatever the number of devices: the halving tree. The root covers the leaves [0, n_leaves); a
 * node of count >= 2 leaves [f, f + count) has the left child [f, f + count/2) (count/2 rounded
 * down) and the right child [f + count/2, f + count); a leaf is its block partial as is, an inner
 * node is left + right. The sum is the root. Its depth is top = ceil(log2(n_leaves)) (0 for one
 * leaf). A node is named by its first leaf and its count.
 *
 * The row's blocks are split into parts, one per device: part p holds qm_split(n_leaves, n_parts, p)
 * (partition.h). The cover of a part is the list of the highest nodes that lie inside it
 * (nodes whose parent does not), left to right: at most 2*top of them, and one when the part is
 * itself a node. Every part is a node when n_parts is a power of two that divides n_leaves: the
 * halving tree's splits are then qm_split's bounds (x + floor((y - x)/2) = floor((x + y)/2) for
 * integers), level by level. A device first reduces its blocks to the values of its cover
 * (qm_tree_reduce_part), producing its leaves a group at a time so that only a few of them are
 * stored at once; the row then combines all covers in tree order (qm_tree_combine). Both evaluate
 * each node by the definition, left child before right, so the bits are those of qm_tree_sum_ref
 * for every n_parts.
 */
#ifndef QM_MESH_TREE_SUM_H
#define QM_MESH_TREE_SUM_H

#include <stddef.h>

#define QM_TREE_MAX_COVER 64 /* 2 * 31 levels, rounded up */

typedef struct {
    int first; /* the node's first leaf */
    int count; /* and how many it covers */
} qm_tree_node;

/* The depth of the tree: ceil(log2(n_leaves)), 0 for n_leaves <= 1. */
int qm_tree_top(int n_leaves);

/* The part (of n_parts, qm_split) that holds leaf `leaf` of n_leaves. */
int qm_tree_part_of(int n_leaves, int n_parts, int leaf);

/* The cover of part `part` of n_parts (nodes left to right into out, at most QM_TREE_MAX_COVER);
 * returns how many (0 for an empty part). */
int qm_tree_cover(int n_leaves, int n_parts, int part, qm_tree_node *out);

/* Writes the partials of leaves [first, first + count) into slots slot .. slot + count - 1. */
typedef void (*qm_tree_leaves_fn)(void *ctx, int first, int count, int slot);

/* The floats of the slots a reduction works on: slot k is slots + k * stride; of each slot it
 * reads and writes the elements [lo + r * rep_stride, lo + r * rep_stride + len) for r < reps
 * (for example one range of output rows for each of T tokens). */
typedef struct {
    float *slots;
    size_t stride, lo, len, reps, rep_stride;
} qm_tree_span;

/* Reduces part `part`'s leaves to its cover: the value of cover node i ends in slot i. A part of
 * at most `group` leaves asks for all of them at once (leaves(), one call); a larger one asks for
 * at most `group` at a time, node by node, each group reduced at once, with slots above the
 * cover's as scratch. Uses qm_tree_part_slots(...) slots, never more than the part's leaves. */
void qm_tree_reduce_part(int n_leaves, int n_parts, int part, int group, qm_tree_leaves_fn leaves, void *ctx,
                         const qm_tree_span *span);

/* The slots qm_tree_reduce_part uses with that group. */
int qm_tree_part_slots(int n_leaves, int n_parts, int part, int group);

/* The group for a part of nb leaves of leaf_floats floats each: all of them when they fit in
 * QM_TREE_GROUP_BYTES (a decode step: one kernel call for every block), else the largest power of
 * two of leaves that fits, at least 1 (a prefill chunk: a few blocks at a time, in cache). */
#define QM_TREE_GROUP_BYTES (2u << 20)
int qm_tree_group(int nb, size_t leaf_floats);

/* The most floats the slots of qm_tree_reduce_part take for part `part`, over steps of 1..max_rows
 * rows of row_floats floats per leaf, each with qm_tree_group's group (a device's buffer size). */
size_t qm_tree_part_floats(int n_leaves, int n_parts, int part, int max_rows, size_t row_floats);

/* Where the value of the cover node that starts at first_leaf lies: len floats, which the
 * combination may overwrite. Called once for every cover node, left to right. */
typedef float *(*qm_tree_value_fn)(void *ctx, int first_leaf);

/* The root of the tree from the covers of all n_parts parts, in tree order; len floats per value.
 * Returns the buffer (one of value()'s) that holds the root, or NULL when n_leaves is 0. */
float *qm_tree_combine(int n_leaves, int n_parts, qm_tree_value_fn value, void *ctx, size_t len);

/* Plain scalar reference: out[i] = the tree sum of leaves[b][i], leaves [n_leaves][n]; 0 when
 * n_leaves is 0. Written without the walk above, to check it. */
void qm_tree_sum_ref(const float *leaves, int n_leaves, size_t n, float *out);

/* Slice k [lo, hi) of n floats split over `parts` devices: contiguous, nearly equal (floor(n*k/parts)),
 * so that no device combines or sends more than its share. */
void qm_tree_slice(size_t n, int parts, int k, size_t *lo, size_t *hi);

#endif
