"""Naive CNML: fine-tune a full copy of the classifier for every (query, label). The oracle.

Plain and obviously correct: `jax.grad` of the weighted loss on the support set with the query
added, `steps` SGD steps on materialised parameters, then read p_y(y | q). With `steps=1` and
the same support and weights it is what meta-NML computes (tests check 1e-5 agreement); with
many steps and the whole reference set as support it is (approximately) true CNML.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from mural_jax.rewards import classifier
from mural_jax.rewards.tasks import cnml_normalise, support_weights


def adapt(params, x, labels, weights, lr: float, steps: int):
    """`steps` SGD steps of the weighted soft-label loss on (x, labels, weights)."""
    grad = jax.grad(classifier.weighted_xent)
    for _ in range(steps):
        g = grad(params, x, labels, weights)
        params = jax.tree.map(lambda p, d: p - lr * d, params, g)
    return params


def query_likelihood(params, query, label, ref_x, ref_y, ref_w, query_w, lr, steps):
    """p_y(y | q) after fine-tuning with (q, y) added to the support (ref_x, ref_y)."""
    x = jnp.concatenate([query[None], ref_x], axis=0)
    y = jnp.concatenate([jnp.asarray(label)[None], ref_y], axis=0)
    w = jnp.concatenate([jnp.asarray(query_w)[None], ref_w], axis=0)
    adapted = adapt(params, x, y, w, lr, steps)
    return jax.nn.softmax(classifier.logits(adapted, query))[label]


def naive_cnml(
    params,
    queries,
    ref_x,
    ref_y,
    *,
    lr: float,
    dist_weight_thresh: float,
    query_weight: float,
    steps: int = 1,
    reward_type: str = "prob",
):
    """For each query: (p_1(1|q), p_0(0|q), CNML reward). One query at a time (lax.map)."""

    def one(q):
        ref_w = support_weights(q, ref_x, dist_weight_thresh)
        probs = [
            query_likelihood(params, q, y, ref_x, ref_y, ref_w, query_weight, lr, steps)
            for y in (1, 0)
        ]
        return jnp.stack(probs)

    p = jax.lax.map(one, queries)
    p1, p0 = p[:, 0], p[:, 1]
    return p1, p0, cnml_normalise(jnp.log(p1), jnp.log(p0), reward_type)
