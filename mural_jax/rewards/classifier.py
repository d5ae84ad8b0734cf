"""The success classifier: a ReLU MLP with a 2-logit softmax and a weighted soft-label loss.

Parameters are an explicit list of `{"w", "b"}` layers (not a Flax module) because meta-NML
works with the layers directly: its one-step adaptation is a sum of per-layer outer products.
"""

from __future__ import annotations

from collections.abc import Sequence

import chex
import jax
import jax.numpy as jnp

Params = list  # [{"w": (in, out), "b": (out,)}, ...]


def init(rng: jax.Array, in_dim: int, hidden: Sequence[int]) -> Params:
    """LeCun-normal weights, zero biases; last layer outputs 2 logits."""
    sizes = [in_dim, *hidden, 2]
    keys = jax.random.split(rng, len(sizes) - 1)
    return [
        {
            "w": jax.random.normal(k, (i, o), jnp.float32) / jnp.sqrt(i),
            "b": jnp.zeros((o,), jnp.float32),
        }
        for k, i, o in zip(keys, sizes[:-1], sizes[1:], strict=True)
    ]


def logits(params: Params, x: jax.Array) -> jax.Array:
    """Logits (..., 2) for inputs (..., in_dim)."""
    for layer in params[:-1]:
        x = jax.nn.relu(x @ layer["w"] + layer["b"])
    return x @ params[-1]["w"] + params[-1]["b"]


def weighted_xent(params: Params, x: jax.Array, labels: jax.Array, weights: jax.Array):
    """Soft-label cross-entropy, each point weighted, normalised by the sum of the weights.

    labels: (n, 2) soft labels (rows sum to 1) or (n,) hard labels in {0, 1}.
    """
    if labels.ndim == 1:
        labels = jax.nn.one_hot(labels, 2)
    chex.assert_equal_shape_prefix([x, labels, weights], 1)
    logp = jax.nn.log_softmax(logits(params, x))
    per_point = -jnp.sum(labels * logp, axis=-1)
    return jnp.sum(weights * per_point) / jnp.sum(weights)
