/* Causal attention of a step's tokens over their sequences' KV caches, local heads only.
 *
 * The query heads that share a KV head are scored together, as the "tokens" of one matmul over
 * the cached keys [pos + 1][hd], so each key is loaded once per group. Tokens whose sequences read
 * the same KV base (positions [0, n0) of one slot, read in place: GSM8K's few-shot prefix under a
 * batch of questions) are scored together over it as well: their g query heads each, nt * g
 * "tokens" of one matmul over the base's keys, and one attn_values over its values, where token
 * by token each of them read the whole base again (0.5B at batch 16 over a 700-token prefix:
 * 16 x 2 x 179 KB of keys and as much of values a layer). A prompt chunk's consecutive tokens of
 * one sequence are scored together the same way over the positions before the first of them (a
 * 512-token prompt of the 0.5B: 112 query rows of a matmul at a time, in place of 7). Each score
 * is the canonical dot and each output element's sum runs over the positions in order, base
 * first, whatever the grouping; the softmax is a token's own: the same bits as one token at a time. */
#include "model/attention.h"
#include "util/largest.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define SOFTMAX_HEADS 16
#define SHARE_MIN 16  /* base positions from which tokens that share them are scored together */
#define GROUP_MAX 16  /* tokens a work item at most (its scratch: GROUP_MAX x g x (2 hd + positions)) */
#define ITEM_SCORES (4 << 20) /* bytes of a work item's scores at most (long contexts: fewer tokens) */

/* Row h < g (g <= SOFTMAX_HEADS) of sc [g][ld], its first n scores: s = s * scale; m = the largest;
 * s = qm_expf(s - m) (kernels/expf.h, the ISA's exp_sub); total = the sum of s in position order
 * from +0; s = s / total. Exact however it is vectorized: the maximum is the same whichever order
 * finds it (a zero's sign changes no exponential); the exponentials are element-wise, the same
 * bits on every ISA; the g heads' sums run side by side, each still in position order. */
static void softmax_heads(const qm_kernels *k, float *sc, size_t ld, int g, int n, float scale) {
    float total[SOFTMAX_HEADS] = {0};
    for (int h = 0; h < g; h++) {
        float *s = sc + (size_t)h * ld;
        for (int j = 0; j < n; j++) s[j] = s[j] * scale;
        const float m = qm_largest(s, n);
        k->exp_sub(s, n, m);
    }
    for (int j = 0; j < n; j++)
        for (int h = 0; h < g; h++) total[h] += sc[(size_t)h * ld + (size_t)j];
    for (int h = 0; h < g; h++) {
        float *s = sc + (size_t)h * ld;
        for (int j = 0; j < n; j++) s[j] = s[j] / total[h];
    }
}

typedef struct {
    qm_device *dev;
    const qm_step *s;
    int layer, hq, hd;
    float scale;
} att_ctx;

/* Work item: tokens [t0, t0 + nt) of the step, KV head kvh. Every token of the item reads
 * positions [0, n0) from slot `from` (its KV base) and [n0, n1) from slot `own`, the same for all
 * of them, so those are scored and summed for the whole item at once; then each token's own
 * [n1, pos + 1) from its slot. nt > 1: tokens that share their base (n1 = n0), or consecutive
 * tokens of one sequence (a prompt chunk: n1 the first token's position). */
typedef struct {
    int kvh, t0, nt;
    int from, n0, own, n1;
} att_item;

/* Token t's positions read from its KV base (0: none). */
static int base_len(const qm_device *dev, const qm_step *s, int t) {
    const qm_kv_base *kb = &dev->kv_base[s->slot[t]];
    return kb->n < s->pos[t] + 1 ? kb->n : s->pos[t] + 1;
}

/* Whether tokens t and u read the same positions of the same base. */
static int share_base(const qm_device *dev, const qm_step *s, int t, int u) {
    return dev->kv_base[s->slot[t]].from == dev->kv_base[s->slot[u]].from && base_len(dev, s, t) == base_len(dev, s, u);
}

/* Whether token u (> t) is token t's sequence u - t positions on, with the base wholly before t. */
static int same_chunk(const qm_device *dev, const qm_step *s, int t, int u) {
    return s->slot[u] == s->slot[t] && s->pos[u] == s->pos[t] + (u - t) && base_len(dev, s, t) <= s->pos[t];
}

/* The device's query heads of KV head kvh: [*h0, *h0 + g) of its local heads; returns g (0: none here). */
static int heads_of(const qm_partition *p, int kvh, int *h0) {
    const int kv_global = p->kv_heads.begin + kvh;
    int a = kv_global * p->group, b = a + p->group;
    if (a < p->q_heads.begin) a = p->q_heads.begin;
    if (b > p->q_heads.end) b = p->q_heads.end;
    *h0 = a - p->q_heads.begin;
    return b > a ? b - a : 0;
}

/* Where token t's local query head h0 starts in dev->q and dev->att ([T][hq][hd]). */
static size_t head_at(const att_ctx *A, int t, int h0) {
    return ((size_t)t * (size_t)A->hq + (size_t)h0) * (size_t)A->hd;
}

/* Item it's g heads a token: qg [nt][g][hd] their queries, sc [nt * g][lds] their scores (lds at
 * least each token's positions), og [nt][g][hd] their outputs. The base's n0 positions (the same
 * for every token of the item) are scored and summed for all the item's heads at once, then each
 * token's own positions [n0, pos] go on from there. */
static void attend(const att_ctx *A, const att_item *it, int g, const float *qg, float *sc, size_t lds, float *og) {
    qm_device *dev = A->dev;
    const qm_step *s = A->s;
    const int hd = A->hd, n0 = it->n0, n1 = it->n1, q = it->nt * g;
    const size_t rows = (size_t)g * (size_t)hd; /* one token's heads in qg, og */
    if (n0 > 0) { /* the base's keys [n0][hd], all the item's queries */
        const qm_wview keys0 = {qm_kv_at(dev, it->from, A->layer, 0, it->kvh, 0), QM_DT_F32, (size_t)hd, n0, hd, 0};
        dev->kern.matmul(&keys0, NULL, qg, (size_t)hd, q, sc, lds, 0, n0);
    }
    if (n1 > n0) { /* the shared own keys [n0, n1) of slot own */
        const qm_wview keys1 = {qm_kv_at(dev, it->own, A->layer, 0, it->kvh, 0), QM_DT_F32, (size_t)hd, n1, hd, 0};
        dev->kern.matmul(&keys1, NULL, qg, (size_t)hd, q, sc, lds, n0, n1);
    }
    for (int i = 0; i < it->nt; i++) {
        const int pos = s->pos[it->t0 + i];
        float *si = sc + (size_t)i * (size_t)g * lds;
        const qm_wview keys = {qm_kv_at(dev, s->slot[it->t0 + i], A->layer, 0, it->kvh, 0), QM_DT_F32, (size_t)hd,
                               pos + 1, hd, 0};
        dev->kern.matmul(&keys, NULL, qg + (size_t)i * rows, (size_t)hd, g, si, lds, n1, pos + 1);
        for (int h = 0; h < g; h += SOFTMAX_HEADS)
            softmax_heads(&dev->kern, si + (size_t)h * lds, lds, g - h < SOFTMAX_HEADS ? g - h : SOFTMAX_HEADS,
                          pos + 1, A->scale);
    }
    memset(og, 0, (size_t)it->nt * rows * sizeof(float));
    if (n0 > 0)
        dev->kern.attn_values(sc, lds, q, qm_kv_at(dev, it->from, A->layer, 1, it->kvh, 0), (size_t)hd, n0, og, hd);
    if (n1 > n0)
        dev->kern.attn_values(sc + n0, lds, q, qm_kv_at(dev, it->own, A->layer, 1, it->kvh, n0), (size_t)hd, n1 - n0,
                              og, hd);
    for (int i = 0; i < it->nt; i++) {
        const int pos = s->pos[it->t0 + i];
        dev->kern.attn_values(sc + (size_t)i * (size_t)g * lds + (size_t)n1, lds, g,
                              qm_kv_at(dev, s->slot[it->t0 + i], A->layer, 1, it->kvh, n1), (size_t)hd, pos + 1 - n1,
                              og + (size_t)i * rows, hd);
    }
}

/* The item of tokens [t0, t0 + nt) (consecutive tokens that share their base, or that are one
 * sequence's consecutive positions after its base), KV head kvh. */
static att_item item_of(const qm_device *dev, const qm_step *s, int kvh, int t0, int nt) {
    const int n0 = base_len(dev, s, t0);
    att_item it = {kvh, t0, nt, dev->kv_base[s->slot[t0]].from, n0, s->slot[t0], n0};
    int chunk = 1;
    for (int i = 1; i < nt && chunk; i++) chunk = same_chunk(dev, s, t0, t0 + i);
    if (nt > 1 && chunk) it.n1 = s->pos[t0];
    return it;
}

/* One token of an item (in place: its queries and outputs where they live, scores in the member's
 * scratch row of the device, [group][max_context]). */
static void attend_token(const att_ctx *A, int kvh, int t, int ith) {
    qm_device *dev = A->dev;
    const qm_partition *p = &dev->shard.part;
    int h0;
    const int g = heads_of(p, kvh, &h0);
    if (g <= 0) return;
    const size_t ctx = (size_t)dev->dims.max_context, at = head_at(A, t, h0);
    const att_item it = item_of(dev, A->s, kvh, t, 1);
    attend(A, &it, g, dev->q + at, dev->scores + (size_t)ith * (size_t)p->group * ctx, ctx, dev->att + at);
}

/* The most positions a token of [t0, t0 + n) attends to. */
static int most_positions(const qm_step *s, int t0, int n) {
    int npos = 0;
    for (int i = t0; i < t0 + n; i++)
        if (s->pos[i] + 1 > npos) npos = s->pos[i] + 1;
    return npos;
}

/* The row length of an item's scores over npos positions (whole vectors of 16). */
static size_t scores_ld(int npos) { return ((size_t)npos + 15) / 16 * 16; }

/* An item: one token in place; several, their queries gathered, attended together, outputs
 * scattered back (token by token where that scratch cannot be had). */
static void attend_item(const att_ctx *A, const att_item *it, int ith) {
    qm_device *dev = A->dev;
    const qm_step *s = A->s;
    if (it->nt == 1) {
        attend_token(A, it->kvh, it->t0, ith);
        return;
    }
    int h0;
    const int g = heads_of(&dev->shard.part, it->kvh, &h0);
    if (g <= 0) return;
    const size_t rows = (size_t)g * (size_t)A->hd, nq = (size_t)it->nt * rows;
    const size_t lds = scores_ld(most_positions(s, it->t0, it->nt));
    float *buf = malloc((2 * nq + (size_t)it->nt * (size_t)g * lds) * sizeof(float));
    if (!buf) {
        for (int i = 0; i < it->nt; i++) attend_token(A, it->kvh, it->t0 + i, ith);
        return;
    }
    float *qg = buf, *og = buf + nq, *sc = og + nq; /* [nt][g][hd], [nt][g][hd], [nt * g][lds] */
    for (int i = 0; i < it->nt; i++)
        memcpy(qg + (size_t)i * rows, dev->q + head_at(A, it->t0 + i, h0), rows * sizeof(float));
    attend(A, it, g, qg, sc, lds, og);
    for (int i = 0; i < it->nt; i++)
        memcpy(dev->att + head_at(A, it->t0 + i, h0), og + (size_t)i * rows, rows * sizeof(float));
    free(buf);
}

/* Tokens an item of the run [t, t + len) at most: the run over `parts` members, at most GROUP_MAX,
 * and at most ITEM_SCORES of scores (attend_item's scratch). */
static int chunk_tokens(const qm_device *dev, const qm_step *s, int t, int len, int parts) {
    int chunk = (len + parts - 1) / parts;
    if (chunk > GROUP_MAX) chunk = GROUP_MAX;
    const int64_t token_scores =
        (int64_t)dev->shard.part.group * (int64_t)scores_ld(most_positions(s, t, len)) * (int64_t)sizeof(float);
    if (chunk > 1 && chunk * token_scores > ITEM_SCORES)
        chunk = ITEM_SCORES / token_scores > 1 ? (int)(ITEM_SCORES / token_scores) : 1;
    return chunk;
}

/* The step's work items: each run of consecutive tokens that share a base of SHARE_MIN positions
 * or more, or that are one sequence's consecutive positions (a prompt chunk), in chunks (of at
 * most GROUP_MAX tokens and ITEM_SCORES of scores, small enough that every team member gets one
 * where there are fewer KV heads than members), any other token alone; each for every local KV
 * head. An item costs its tokens' positions; with total > 0 (the sum of all items' costs) member
 * ith attends the items whose cost's middle falls in its ith nth of the total (the later tokens
 * of a prompt attend to more positions: an even count of items gave the last member most of the
 * work). Returns the total: every member walks the items the same, so a first call with total < 0
 * sums them. */
static int64_t for_items(const att_ctx *A, int hkv, int nth, int64_t total, int ith) {
    const qm_device *dev = A->dev;
    const qm_step *s = A->s;
    const int parts = (nth + hkv - 1) / hkv;
    int64_t done = 0;
    for (int t = 0; t < s->n_tok;) {
        int len = 1;
        if (base_len(dev, s, t) >= SHARE_MIN)
            while (t + len < s->n_tok && share_base(dev, s, t, t + len)) len++;
        if (len == 1)
            while (t + len < s->n_tok && same_chunk(dev, s, t, t + len)) len++;
        const int chunk = chunk_tokens(dev, s, t, len, parts);
        for (int c = t; c < t + len; c += chunk) {
            const int nt = t + len - c < chunk ? t + len - c : chunk;
            int64_t cost = 0;
            for (int i = 0; i < nt; i++) cost += s->pos[c + i] + 1;
            for (int kvh = 0; kvh < hkv; kvh++, done += cost)
                if (total > 0 && (2 * done + cost) * nth / (2 * total) == ith) { /* < nth: 2 done + cost < 2 total */
                    const att_item it = item_of(dev, s, kvh, c, nt);
                    attend_item(A, &it, ith);
                }
        }
        t += len;
    }
    return done;
}

void qm_attention(qm_device *dev, const qm_step *s, int layer, int ith, int nth) {
    const qm_shard *sh = &dev->shard;
    const int hkv = qm_range_len(sh->part.kv_heads), hd = sh->cfg.head_dim;
    if (hkv <= 0) return; /* a device that owns no KV head (more devices than heads) */
    const att_ctx A = {dev, s, layer, qm_range_len(sh->part.q_heads), hd, (float)(1.0 / sqrt((double)hd))};
    for_items(&A, hkv, nth, for_items(&A, hkv, nth, -1, ith), ith);
}
