/* The fixed binary tree of a row-parallel sum (tree_sum.h). One walk, from a node down to the
 * nodes whose values are given, serves both the local reduction (given: the leaves) and the
 * row's combination (given: every part's cover), so both follow one definition. */
#include "mesh/tree_sum.h"
#include "mesh/partition.h"

#include <assert.h>
#include <string.h>

int qm_tree_top(int n_leaves) {
    int top = 0;
    while (top < 31 && (1L << top) < (long)n_leaves) top++;
    return top;
}

/* A node of count >= 2 leaves: its left child's leaves (the right child has the rest). */
static int left_count(int count) { return count / 2; }

/* The largest p with begin(p) = floor(n_leaves * p / n_parts) <= leaf. */
int qm_tree_part_of(int n_leaves, int n_parts, int leaf) {
    return (int)(((long long)(leaf + 1) * n_parts + n_leaves - 1) / n_leaves - 1);
}

/* The end of the part that holds `leaf`. */
static int part_end_of(int n_leaves, int n_parts, int leaf) {
    return qm_split(n_leaves, n_parts, qm_tree_part_of(n_leaves, n_parts, leaf)).end;
}

typedef struct {
    int n_leaves, n_parts;  /* the given values are the covers of these parts */
    qm_tree_value_fn value;
    void *ctx;
    size_t len;             /* floats per value */
} walk;

/* The value of node [first, first + count), left in the buffer of its first given node. */
static float *walk_node(const walk *w, int first, int count) {
    if (first + count <= part_end_of(w->n_leaves, w->n_parts, first))
        return w->value(w->ctx, first); /* inside one part, its parent is not: a cover node */
    assert(count > 1);                  /* a leaf always lies inside its part */
    const int lc = left_count(count);
    float *left = walk_node(w, first, lc);
    const float *right = walk_node(w, first + lc, count - lc);
    for (size_t i = 0; i < w->len; i++) left[i] = left[i] + right[i];
    return left;
}

static void cover_visit(qm_range part, int first, int count, qm_tree_node *out, int *n) {
    const int end = first + count;
    if (end <= part.begin || first >= part.end) return;
    if (first >= part.begin && end <= part.end) {
        assert(*n < QM_TREE_MAX_COVER);
        out[(*n)++] = (qm_tree_node){first, count};
        return;
    }
    const int lc = left_count(count);
    cover_visit(part, first, lc, out, n);
    cover_visit(part, first + lc, count - lc, out, n);
}

int qm_tree_cover(int n_leaves, int n_parts, int part, qm_tree_node *out) {
    int n = 0;
    if (n_leaves > 0) cover_visit(qm_split(n_leaves, n_parts, part), 0, n_leaves, out, &n);
    return n;
}

static float *span_at(const qm_tree_span *sp, int slot, size_t r) {
    return sp->slots + (size_t)slot * sp->stride + sp->lo + r * sp->rep_stride;
}

typedef struct {
    const qm_tree_span *span;
    int slot0, first; /* leaf `first` is in slot slot0 */
    size_t r;         /* which of the span's ranges */
} group_slots;

static float *group_value(void *ctx, int leaf) {
    const group_slots *g = ctx;
    return span_at(g->span, g->slot0 + (leaf - g->first), g->r);
}

typedef struct {
    int n_leaves, group;
    qm_tree_leaves_fn leaves; /* NULL: a dry run that only counts slots */
    void *ctx;
    const qm_tree_span *span;
    int slots_used;
} producer;

/* The value of node [first, first + count) into slot s: a node of at most `group` leaves from its
 * leaves at once; a larger one from its children (left in s, right in s + 1, then added). */
static void produce_node(producer *p, int first, int count, int s) {
    if (count <= p->group) {
        if (s + count > p->slots_used) p->slots_used = s + count;
        if (!p->leaves) return;
        p->leaves(p->ctx, first, count, s);
        for (size_t r = 0; r < p->span->reps; r++) {
            group_slots g = {p->span, s, first, r};
            walk w = {p->n_leaves, p->n_leaves, group_value, &g, p->span->len}; /* given: every leaf */
            walk_node(&w, first, count);
        }
        return;
    }
    const int lc = left_count(count);
    produce_node(p, first, lc, s);
    produce_node(p, first + lc, count - lc, s + 1);
    for (size_t r = 0; p->leaves && r < p->span->reps; r++) {
        float *left = span_at(p->span, s, r);
        const float *right = span_at(p->span, s + 1, r);
        for (size_t i = 0; i < p->span->len; i++) left[i] = left[i] + right[i];
    }
}

/* All of the part's leaves at once (one kernel call: each weight row read once along all the
 * blocks), each cover node reduced where its leaves lie, its value then moved down to slot i. */
static void reduce_all_at_once(producer *p, const qm_tree_node *cover, int m, qm_range part) {
    p->slots_used = qm_range_len(part);
    if (!p->leaves) return;
    p->leaves(p->ctx, part.begin, qm_range_len(part), 0);
    for (int i = 0; i < m; i++) {
        int from = cover[i].first - part.begin; /* >= i: the earlier nodes hold a leaf each at least */
        for (size_t r = 0; r < p->span->reps; r++) {
            group_slots g = {p->span, 0, part.begin, r};
            walk w = {p->n_leaves, p->n_leaves, group_value, &g, p->span->len}; /* given: every leaf */
            walk_node(&w, cover[i].first, cover[i].count);
            if (from != i) memcpy(span_at(p->span, i, r), span_at(p->span, from, r), p->span->len * sizeof(float));
        }
    }
}

static int reduce_part(int n_leaves, int n_parts, int part, producer *p) {
    qm_tree_node cover[QM_TREE_MAX_COVER];
    int m = qm_tree_cover(n_leaves, n_parts, part, cover);
    if (m == 0) return 0;
    qm_range range = qm_split(n_leaves, n_parts, part);
    if (qm_range_len(range) <= p->group) {
        reduce_all_at_once(p, cover, m, range);
        return p->slots_used;
    }
    for (int i = 0; i < m; i++) produce_node(p, cover[i].first, cover[i].count, i); /* cover node i into slot i */
    return p->slots_used;
}

void qm_tree_reduce_part(int n_leaves, int n_parts, int part, int group, qm_tree_leaves_fn leaves, void *ctx,
                         const qm_tree_span *span) {
    assert(group >= 1 && leaves);
    producer p = {n_leaves, group, leaves, ctx, span, 0};
    reduce_part(n_leaves, n_parts, part, &p);
}

int qm_tree_part_slots(int n_leaves, int n_parts, int part, int group) {
    producer p = {n_leaves, group < 1 ? 1 : group, NULL, NULL, NULL, 0};
    return reduce_part(n_leaves, n_parts, part, &p);
}

int qm_tree_group(int nb, size_t leaf_floats) {
    size_t leaf_bytes = leaf_floats * sizeof(float);
    if (nb < 1 || leaf_bytes == 0 || (size_t)nb * leaf_bytes <= QM_TREE_GROUP_BYTES) return nb > 1 ? nb : 1;
    int g = 1;
    while (g * 2 < nb && (size_t)g * 2 * leaf_bytes <= QM_TREE_GROUP_BYTES) g *= 2;
    return g;
}

size_t qm_tree_part_floats(int n_leaves, int n_parts, int part, int max_rows, size_t row_floats) {
    int nb = n_leaves > 0 ? qm_range_len(qm_split(n_leaves, n_parts, part)) : 0;
    size_t most = 0;
    for (int rows = 1; rows <= max_rows && nb > 0; rows++) {
        size_t leaf = (size_t)rows * row_floats;
        size_t floats = (size_t)qm_tree_part_slots(n_leaves, n_parts, part, qm_tree_group(nb, leaf)) * leaf;
        if (floats > most) most = floats;
    }
    return most;
}

float *qm_tree_combine(int n_leaves, int n_parts, qm_tree_value_fn value, void *ctx, size_t len) {
    if (n_leaves <= 0) return 0;
    walk w = {n_leaves, n_parts, value, ctx, len};
    return walk_node(&w, 0, n_leaves);
}

/* Element i of node [first, first + count) by the definition, recursively. */
static float ref_node(const float *leaves, size_t n, size_t i, int first, int count) {
    if (count == 1) return leaves[(size_t)first * n + i];
    const int half = count / 2;
    return ref_node(leaves, n, i, first, half) + ref_node(leaves, n, i, first + half, count - half);
}

void qm_tree_sum_ref(const float *leaves, int n_leaves, size_t n, float *out) {
    for (size_t i = 0; i < n; i++) out[i] = n_leaves > 0 ? ref_node(leaves, n, i, 0, n_leaves) : 0.0f;
}

void qm_tree_slice(size_t n, int parts, int k, size_t *lo, size_t *hi) {
    *lo = (size_t)((unsigned long long)n * (unsigned)k / (unsigned)parts);
    *hi = (size_t)((unsigned long long)n * (unsigned)(k + 1) / (unsigned)parts);
}
