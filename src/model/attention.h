/* Causal attention of a step's tokens over their sequences' KV caches (model/attention.c). */
#ifndef QM_MODEL_ATTENTION_H
#define QM_MODEL_ATTENTION_H

#include "model/model.h"

/* Team member ith of nth: its share of the step's attention in layer `layer`, local heads only:
 * dev->att [T][hq*hd] from dev->q and the KV cache (positions up to each token's own, written). */
void qm_attention(qm_device *dev, const qm_step *s, int layer, int ith, int nth);

#endif
