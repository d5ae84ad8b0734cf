"""SAC networks: a tanh-Gaussian policy and twin Q functions (Flax linen MLPs)."""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

LOG_STD_MIN, LOG_STD_MAX = -5.0, 2.0


class MLP(nn.Module):
    hidden: Sequence[int]
    out: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        for width in self.hidden:
            x = nn.relu(nn.Dense(width)(x))
        return nn.Dense(self.out)(x)


class Policy(nn.Module):
    """Gaussian in pre-tanh space: returns (mean, log_std), log_std squashed into a range."""

    hidden: Sequence[int]
    action_size: int

    @nn.compact
    def __call__(self, obs: jax.Array) -> tuple[jax.Array, jax.Array]:
        out = MLP(self.hidden, 2 * self.action_size)(obs)
        mean, raw = jnp.split(out, 2, axis=-1)
        log_std = LOG_STD_MIN + 0.5 * (LOG_STD_MAX - LOG_STD_MIN) * (jnp.tanh(raw) + 1.0)
        return mean, log_std


class TwinQ(nn.Module):
    """Two independent Q networks; returns shape (..., 2)."""

    hidden: Sequence[int]

    @nn.compact
    def __call__(self, obs: jax.Array, action: jax.Array) -> jax.Array:
        x = jnp.concatenate([obs, action], axis=-1)
        q1 = MLP(self.hidden, 1)(x)
        q2 = MLP(self.hidden, 1)(x)
        return jnp.concatenate([q1, q2], axis=-1)


def sample_action(mean: jax.Array, log_std: jax.Array, rng: jax.Array):
    """Reparameterised tanh-Gaussian sample and its log-probability (with the tanh correction)."""
    std = jnp.exp(log_std)
    u = mean + std * jax.random.normal(rng, mean.shape)
    action = jnp.tanh(u)
    logp = -0.5 * (((u - mean) / std) ** 2 + 2 * log_std + jnp.log(2 * jnp.pi))
    # log(1 - tanh(u)^2), numerically stable form.
    logp = logp - 2.0 * (jnp.log(2.0) - u - jax.nn.softplus(-2.0 * u))
    return action, jnp.sum(logp, axis=-1)
