"""CNML task construction shared by meta-NML and naive CNML (from the original code).

A task is one query point q with one proposed label y. Its support set is q (weight
query_point_weight / ceil(reference_size / support_size)) plus support_size - 1 points of the
reference set, each weighted by the distance kernel exp(-2.3 ||x - q|| / dist_weight_thresh)
(0.1 at the threshold). The reference set is half visited states (label 0), half resampled
success examples (label 1).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from mural_jax import replay as replay_lib


def support_weights(query: jax.Array, x: jax.Array, dist_weight_thresh: float) -> jax.Array:
    """Distance-kernel weights of points x (n, d) for one query (d,)."""
    return kernel_weights(query[None], x, dist_weight_thresh)[0]


def kernel_weights(queries: jax.Array, x: jax.Array, dist_weight_thresh: float) -> jax.Array:
    """Distance-kernel weights (B, n) of points x (n, d) for queries (B, d).

    The differences are laid out (d, B, n) so the sum over the (small) feature axis is a few
    elementwise adds; `vmap` of the one-query form reduces over a minor axis of size d, which
    XLA's CPU backend ran 3x slower.
    """
    diff = queries.T[:, :, None] - x.T[:, None, :]
    dist = jnp.sqrt(jnp.sum(diff**2, axis=0) + 1e-12)
    return jnp.exp(-2.3 * dist / dist_weight_thresh)


def query_weight(query_point_weight: float, reference_size: int, support_size: int) -> float:
    """The query's own weight in its support set (the original's normalisation)."""
    return query_point_weight / math.ceil(reference_size / support_size)


def cnml_normalise(logp1: jax.Array, logp0: jax.Array, reward_type: str) -> jax.Array:
    """r = p1 / (p1 + p0) from log-likelihoods, as a probability or a log-probability."""
    log_r = logp1 - jnp.logaddexp(logp1, logp0)
    return log_r if reward_type == "log_prob" else jnp.exp(log_r)


def reference_set(
    rng: jax.Array, replay: replay_lib.ReplayBuffer, success_features, features_fn, size: int
):
    """`size` points: size/2 visited states (label 0), then size/2 success examples (label 1)."""
    k_neg, k_pos = jax.random.split(rng)
    half = size // 2
    neg = features_fn(replay_lib.sample_obs(replay, k_neg, half))
    pos = success_features[jax.random.randint(k_pos, (half,), 0, success_features.shape[0])]
    x = jnp.concatenate([neg, pos], axis=0)
    y = jnp.concatenate([jnp.zeros((half,), jnp.int32), jnp.ones((half,), jnp.int32)])
    return x, y
